"""Tests for vgrad.studies.gradient_histograms, vgrad.plots.histogram_plots and
``python -m experiments.gradient_histograms`` (run as a user runs it).

The exact checks run in float64 against ``jax.grad`` and the chain rule
written out by hand. The statistical check of Glorot & Bengio's linear-regime
ratio uses a six-standard-deviation bound derived in its docstring from the
very batch it tests, so a correct implementation fails with negligible
probability while a wrong factor (1 instead of 1/3) is off by far more.
"""

import functools
import json
import math
import os

from absl.testing import absltest
from absl.testing import parameterized
import chex
import cli_testing  # tests/cli_testing.py
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vgrad.nn import models
from vgrad.plots import histogram_plots
from vgrad.studies import gradient_histograms as gh
from vgrad.training import data

RUN_FILES = ["config.json", "histograms.pdf", "histograms.png", "report.md",
             "results.json"]
TINY = ["--acts=tanh", "--depth=2", "--width=8", "--num_examples=16",
        "--num_bins=10"]


@functools.cache
def _net(act, init, depth, width, n_in, num_classes, dtype, sigma_b2=None,
         seed=0):
  """``(model, params)``, built once per configuration for the whole file
  (a float64 one must first be asked for under ``enable_x64``)."""
  model = models.make_mlp(depth=depth, width=width, activation=act, init=init,
                          sigma_b2=sigma_b2, num_outputs=num_classes,
                          param_dtype=dtype)
  return model, model.init(jax.random.key(seed), jnp.zeros((n_in,), dtype))


def _batch(n, n_in, num_classes, dtype, scale=1.0, seed=1):
  """Standard normal inputs times ``scale`` and uniform labels, drawn by
  NumPy: an eager ``jax.random`` draw compiles once per shape."""
  rng = np.random.default_rng(seed)
  x = scale * rng.standard_normal((n, n_in))
  return (jnp.asarray(x, dtype),
          jnp.asarray(rng.integers(0, num_classes, n), jnp.int32))


@pytest.mark.slow  # ~14 s: float64 programs and the eager variants
class SignalsTest(chex.TestCase):
  """Exact: the recorded gradients are those of the loss, in float64."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("tanh", "relu")
  def test_gradients_reproduce_jax_grad_of_the_parameters(self, act):
    with jax.enable_x64(True):
      model, params = _net(act, "glorot_uniform", depth=3, width=5, n_in=4,
                           num_classes=3, dtype=jnp.float64, sigma_b2=0.09)
      x, y = _batch(6, 4, 3, jnp.float64)
      signals = self.variant(functools.partial(gh.compute_signals, model))(
          params, x, y)
      chex.assert_shape([signals.preactivations, signals.activations,
                         signals.gradients], (3, 6, 5))

      def mean_loss(p):
        logits = model.apply(p, x)
        return jnp.mean(
            optax.softmax_cross_entropy_with_integer_labels(logits, y))

      # The reference values, in one compiled program (eagerly, every op
      # would compile on its own).
      @jax.jit
      def reference(p):
        logits, hs = model.apply(p, x, return_preactivations=True)
        hs = jnp.stack(hs)
        # The top layer by hand: g_L[i] = phi'(h_L[i]) * W_out (p_i - e_{y_i}).
        delta = jax.nn.softmax(logits) - jax.nn.one_hot(y, 3, dtype=x.dtype)
        kernel = p["params"]["readout"]["kernel"]  # (N, C)
        top = model.activation.deriv(hs[-1]) * (delta @ kernel.T)
        return (hs, model.activation.fn(hs), mean_loss(p),
                jax.grad(mean_loss)(p), top)

      hs, xs, loss, grads, top = reference(params)
      chex.assert_trees_all_close(signals.preactivations, hs, rtol=1e-13,
                                  atol=1e-15)
      chex.assert_trees_all_close(signals.activations, xs, rtol=1e-13,
                                  atol=1e-15)
      chex.assert_trees_all_close(signals.loss, loss, rtol=1e-13)
      # dL/dkernel_l = x_{l-1}^T g_l / B and dL/dbias_l = sum_i g_l[i] / B.
      for l, w_grad in enumerate(gh.weight_gradients(signals), start=1):
        expected = models.layer_params(grads, l)
        chex.assert_trees_all_close(w_grad, expected["kernel"], rtol=1e-12,
                                    atol=1e-15)
        chex.assert_trees_all_close(
            np.mean(np.asarray(signals.gradients[l - 1]), 0),
            expected["bias"], rtol=1e-12, atol=1e-15)
      chex.assert_trees_all_close(signals.gradients[-1], top, rtol=1e-12,
                                  atol=1e-15)

  def test_maxout_and_models_without_readout_are_refused(self):
    # Zero weights: the values do not matter here, and no random draw has
    # to be compiled for them.
    for kwargs in ({"activation": "maxout", "num_outputs": 2},
                   {"activation": "tanh"}):
      model = models.make_mlp(depth=1, width=3, init="zeros", **kwargs)
      params = model.init(jax.random.key(0), jnp.zeros((2,)))
      with self.assertRaisesRegex(ValueError, "maxout"):
        gh.compute_signals(model, params, jnp.ones((1, 2)), jnp.zeros(
            (1,), jnp.int32))


class LinearRegimeTest(parameterized.TestCase):
  """Glorot & Bengio (2010) eq. 6: E[g_l^2] / E[g_{l+1}^2] = n Var[W]."""

  @parameterized.named_parameters(
      ("tanh_standard", "tanh", "standard_uniform", 1 / 3),
      ("tanh_normalized", "tanh", "glorot_uniform", 1.0),
      ("linear_standard", "linear", "standard_uniform", 1 / 3),
  )
  def test_gradient_variance_ratio(self, act, init, factor):
    """Measured ratio within six standard deviations of n Var[W].

    Square layers of n units, inputs of scale 1e-3, so every |h| < 1e-2.
    With A = G^T G for the (B, n) gradients G = g_{l+1} and W = W_{l+1},
    the ratio is R = tr(D W^T A W D) / tr(A) with D = diag(phi'(h_l)).
    Take D = 1 first. W's columns w_j (j = 1..n) are independent with iid
    entries of mean 0, variance s^2 and kurtosis 9/5 (uniform), and G does
    not depend on W_{l+1} in the linear regime, so conditionally on G
    E[w^T A w] = s^2 tr A and Var[w^T A w] = 2 s^4 tr(A^2) - (6/5) s^4
    sum_i A_ii^2 <= 2 s^4 tr(A^2). Hence E[R] = n s^2 and
    std[R] / (n s^2) <= sqrt(2 tr(A^2) / (n tr(A)^2)); R is a sum of n
    independent terms, so six of these bound it. D = 1 - O(h^2) moves R,
    and through the softmax and phi'(h_{l+1}) the weights reach G, by a
    relative 2 max h^2 < 2e-4 at most: added to the bound.
    """
    n, depth, batch = 128, 4, 128
    with jax.enable_x64(True):
      model, params = _net(act, init, depth=depth, width=n, n_in=n,
                           num_classes=n, dtype=jnp.float64)
      x, y = _batch(batch, n, n, jnp.float64, scale=1e-3)
      signals, w_grads, msd = gh.measure(model, params, x, y)
    max_h = float(np.max(np.abs(signals.preactivations)))
    self.assertLess(max_h, 1e-2)  # the premise: the linear regime
    records = gh.layer_records(act, init, model, signals, w_grads, msd)
    self.assertIsNone(records[-1]["gradient_ratio"])
    for l, record in enumerate(records[:-1]):
      ratio = record["gradient_ratio"]
      self.assertAlmostEqual(ratio["linear_regime"], factor, places=12)
      self.assertAlmostEqual(ratio["predicted"],
                             factor * record["mean_sq_deriv"], places=12)
      a = signals.gradients[l + 1].T @ signals.gradients[l + 1]
      rel_std = math.sqrt(2 * np.trace(a @ a) / (n * np.trace(a) ** 2))
      tol = 6 * rel_std + 2 * max_h ** 2
      self.assertLess(rel_std, 0.05)  # the bound is informative
      self.assertAlmostEqual(ratio["measured"] / factor, 1.0, delta=tol,
                             msg=f"layer {l + 1}: tolerance {tol:.3f}")


class HistogramTest(parameterized.TestCase):

  def test_counts_sum_to_the_number_of_values(self):
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(7, 9)) * s for s in (1.0, 0.1, 3.0)]
    layers[1][0, 0] = np.nan
    layers[2][1, 1] = np.inf
    edges = gh.shared_edges(layers, 12, symmetric=True)
    self.assertEqual(edges[0], -edges[-1])
    self.assertEqual(edges[-1], np.max(np.abs(layers[2][np.isfinite(
        layers[2])])))
    record = gh.histogram_record(layers, edges)
    self.assertEqual(record["num_nonfinite"], [0, 1, 1])
    for counts, total, bad in zip(record["counts"], record["num_values"],
                                  record["num_nonfinite"]):
      self.assertLen(counts, 12)
      self.assertEqual(sum(counts) + bad, total)
      self.assertEqual(total, 63)
    # The zero-centred bins split the symmetric values evenly in sign.
    self.assertEqual(sum(record["counts"][0][:6]),
                     int(np.sum(layers[0] < 0)))

  def test_activation_edges_cover_the_output_range(self):
    edges = gh.shared_edges([np.array([-0.2, 0.3])], 4, symmetric=False,
                            value_range=(-1.0, 1.0))
    np.testing.assert_array_equal(edges, [-1, -0.5, 0, 0.5, 1])
    edges = gh.shared_edges([np.array([0.5, 3.0])], 2, symmetric=False,
                            value_range=(0.0, 1.0))
    np.testing.assert_array_equal(edges, [0, 1.5, 3])

  @parameterized.parameters(
      ("tanh", [0.95, -0.91, 0.5, 0.0], 0.5),
      ("softsign", [0.9, -0.89, 0.91, 0.0], 0.25),
      ("sigmoid", [0.04, 0.96, 0.5, 0.94], 0.5),
      ("relu", [0.0, 5.0], None),
  )
  def test_saturated_fraction(self, act, values, expected):
    self.assertEqual(gh.saturated_fraction(act, np.array(values)), expected)

  @pytest.mark.slow
  def test_study_shares_edges_across_layers_and_inits(self):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    y = (np.arange(30) % 4).astype(np.int32)
    dataset = data.Dataset("toy", "multiclass", x, y, x, y, 4, "toy")
    config = gh.HistogramConfig(acts=("sigmoid",), depth=3, width=7,
                                num_examples=20, num_bins=16)
    results = gh.run_study(config, dataset)
    standard, normalized = results["runs"]
    self.assertEqual([(r["act"], r["init"]) for r in results["runs"]],
                     [("sigmoid", "standard_uniform"),
                      ("sigmoid", "glorot_uniform")])
    for q in gh.QUANTITIES:
      self.assertEqual(standard["histograms"][q]["edges"],
                       normalized["histograms"][q]["edges"])
    self.assertEqual(standard["histograms"]["activation"]["edges"][::16],
                     [0.0, 1.0])  # sigmoid's output range
    for run in results["runs"]:
      hist = run["histograms"]
      self.assertEqual(hist["activation"]["num_values"], [20 * 7] * 3)
      self.assertEqual(hist["weight_gradient"]["num_values"],
                       [6 * 7, 7 * 7, 7 * 7])
      for q, record in hist.items():
        self.assertLen(record["edges"], 17)
        self.assertEqual([sum(c) for c in record["counts"]],
                         record["num_values"], q)
        if gh.QUANTITIES[q]:
          self.assertEqual(record["edges"][0], -record["edges"][-1])
      layers = run["layers"]
      for l in range(2):  # the ratio is that of the layers' mean squares
        self.assertAlmostEqual(
            layers[l]["gradient_ratio"]["measured"],
            (layers[l]["gradient"]["rms"] / layers[l + 1]["gradient"]["rms"])
            ** 2, places=6)
    with self.assertRaisesRegex(ValueError, "num_examples must be <= 30"):
      gh.run_study(gh.HistogramConfig(num_examples=31), dataset)
    with self.assertRaisesRegex(ValueError, "inits must be .* glorot_uniform"):
      gh.run_study(gh.HistogramConfig(inits=("xavier",)), dataset)
    # Depth and width: vgrad.nn.config.NetworkConfig's check.
    with self.assertRaisesRegex(ValueError, "depth: must be an integer >= 1"):
      gh.check_config(gh.HistogramConfig(depth=0))
    with self.assertRaisesRegex(ValueError, "width: must be an integer >= 1"):
      gh.check_config(gh.HistogramConfig(width=2.5))


class ReportTest(parameterized.TestCase):

  def _run(self, ratios):
    layers = [{"layer": l + 1, "activation": {"std": 0.5 / (l + 1),
                                              "saturated_fraction": 0.01 * l},
               "weight_gradient": {"std": 1e-3 * (l + 1)},
               "gradient_ratio": None if l == len(ratios) else {
                   "measured": r, "predicted": r * 1.1,
                   "linear_regime": 1 / 3}}
              for l, r in enumerate(ratios + [None])]
    return {"act": "tanh", "init": "standard_uniform",
            "init_label": "standard", "layers": layers}

  @parameterized.parameters(
      ([0.25, 0.25], "falls, x0.25 per layer", "x0.0625 from layer 3 to 1"),
      ([1.04, 1.04], "stays about constant, x1.04 per", "x1.08 from layer"),
      ([2.0, 8.0], "grows, x4 per layer", "x16 from layer 3 to 1"),
  )
  def test_conclusion_is_computed_from_the_numbers(self, ratios, trend,
                                                   total):
    text = gh.conclusion(self._run(ratios))
    self.assertStartsWith(text, "tanh, standard init: the back-propagated")
    self.assertIn(trend, text)
    self.assertIn(total, text)
    self.assertIn(f"predicted x{math.sqrt(ratios[0] * ratios[1]) * 1.1:.3g}",
                  text)
    self.assertIn("x0.333 in the linear regime", text)
    self.assertIn("at most 2.0% of the activations saturated (layer 3)",
                  text)
    self.assertIn("a spread of x3", gh.weight_gradient_note(self._run(ratios)))


def _run_cli(*args, cwd):
  return cli_testing.run_module("experiments.gradient_histograms", *args,
                                cwd=cwd)


def _read(path):
  with open(path) as f:
    return f.read()


@pytest.mark.slow  # end to end: an interpreter start and full runs
class MainTest(absltest.TestCase):

  def _check_one_line_error(self, proc, needles):
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertStartsWith(lines[0], "error:")
    for needle in needles:
      self.assertIn(needle, lines[0])
    self.assertEqual(proc.stdout, "")

  def test_run_replot_and_no_silent_overwrite(self):
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    proc = _run_cli(*TINY, f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(sorted(os.listdir(out)), RUN_FILES)
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    with open(os.path.join(out, "config.json")) as f:
      self.assertEqual(json.load(f), results["config"])
    self.assertEqual(next(iter(results.items())),
                     ("schema", "vgrad.gradient_histograms/1"))
    self.assertEqual(results["config"]["acts"], ["tanh"])
    self.assertEqual(results["dataset"]["name"], "digits")
    self.assertLen(results["runs"], 2)
    for run in results["runs"]:
      hist = run["histograms"]
      self.assertEqual([sum(c) for c in hist["gradient"]["counts"]],
                       [16 * 8] * 2)
      self.assertEqual([sum(c) for c in hist["weight_gradient"]["counts"]],
                       [64 * 8, 8 * 8])
    report = _read(os.path.join(out, "report.md"))
    self.assertEqual(report, gh.format_report(results))
    self.assertIn(gh.format_report(results).strip(), proc.stdout)
    self.assertIn("## tanh, standard init (`standard_uniform`)", report)
    # The figure: 1 act x (2 inits x {activations, gradients}) panels,
    # gradient panels symmetric about 0.
    fig = histogram_plots.plot_histograms(results)
    self.assertLen(fig.axes, 4)
    for ax in fig.axes[2:4]:
      left, right = ax.get_xlim()
      self.assertAlmostEqual(left, -right)
    # Every layer's peak below the top, with headroom for the panel's note.
    for ax in fig.axes:
      peak = max(np.nanmax(line.get_ydata()) for line in ax.get_lines()
                 if line.get_label().startswith("layer"))
      self.assertGreaterEqual(ax.get_ylim()[1], peak * (
          histogram_plots.HEADROOM_LOG if ax.get_yscale() == "log"
          else histogram_plots.HEADROOM_LINEAR) * (1 - 1e-9))
    # A layer narrower than two bins is named as a spike in the note.
    record = {"counts": [[0, 5, 0, 0], [0, 3, 2, 0], [1, 1, 1, 1]]}
    self.assertEqual(histogram_plots.narrow_layers(record), [1, 2])

    # Redraw from results.json alone.
    os.remove(os.path.join(out, "histograms.png"))
    os.remove(os.path.join(out, "report.md"))
    proc = _run_cli(f"--replot={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(sorted(os.listdir(out)), RUN_FILES)
    self.assertEqual(_read(os.path.join(out, "report.md")), report)
    self._check_one_line_error(
        _run_cli(f"--replot={out}", "--depth=3", cwd=cwd),
        ["--replot", "--depth"])

    # An existing run is never replaced silently.
    before = _read(os.path.join(out, "results.json"))
    self._check_one_line_error(_run_cli(*TINY, f"--out_dir={out}", cwd=cwd),
                               ["--overwrite", out])
    self.assertEqual(_read(os.path.join(out, "results.json")), before)
    self.assertEqual(os.listdir(cwd), ["run"])

  def test_bad_input_is_one_line_and_writes_nothing(self):
    # The cases the brief names, and the one that fails only after the
    # data are loaded; all in one process (cli_testing.run_cases).
    cases = [
        (["--acts=tanh,sigmod"], ["--acts", "sigmod", "softsign"]),
        (["--inits=xavier"], ["--inits", "xavier", "standard_uniform"]),
        (["--depth=0"], ["--depth", ">= 1"]),
        (["--width=0"], ["--width", ">= 1"]),
        (["--num_examples=0"], ["--num_examples", ">= 1"]),
        (["--num_examples=100000"], ["--num_examples", "<= 14"]),
    ]
    cwds = [self.create_tempdir().full_path for _ in cases]
    procs = cli_testing.run_cases(
        "experiments.gradient_histograms",
        [(cwd, [*args, f"--out_dir={cwd}/run"])
         for cwd, (args, _) in zip(cwds, cases)])
    for cwd, (args, needles), proc in zip(cwds, cases, procs):
      with self.subTest(args=args):
        self._check_one_line_error(proc, needles)
        self.assertEqual(os.listdir(cwd), [])


if __name__ == "__main__":
  absltest.main()
