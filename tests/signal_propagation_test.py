"""Tests for vgrad.studies.signal_propagation, vgrad.theory.nngp,
vgrad.plots.signal_plots and ``python -m experiments.signal_propagation``.

Exact checks: the statistics against NumPy on a (B, S, C) array, the
polar quadrature against closed-form kernels (ReLU's arc-cosine) and
against vgrad.theory.meanfield's Mehler series (tanh), the invariance of
mean_sq + var through an orthogonal linear net, and the residual branch of a
zoo residual MLP. Statistical check: the measured statistics of wide MLPs
against the NNGP prediction, with a bound derived from the spread over
seeds (see :class:`MeanFieldTest`).
"""

import json
import os

from absl.testing import absltest
from absl.testing import parameterized
import chex
import cli_testing  # tests/cli_testing.py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrad.nn import activations
from vgrad.nn import zoo
from vgrad.plots import signal_plots
from vgrad.probes import blocks as blocks_lib
from vgrad.studies import signal_propagation as sp
from vgrad.theory import meanfield
from vgrad.theory import nngp

MODULE = "experiments.signal_propagation"
RUN_FILES = ["config.json", "report.md", "results.json",
             "signal_propagation.pdf", "signal_propagation.png"]
TINY = ["--act=tanh", "--depth=3", "--width=16", "--num_inputs=4"]


class StatisticsTest(chex.TestCase):

  def test_channel_statistics_match_numpy_over_batch_and_positions(self):
    x = np.random.default_rng(0).normal(0.3, 2.0, (5, 3, 4, 6))
    ms, var, bad = sp.channel_statistics(jnp.asarray(x, jnp.float32))
    rows = x.reshape(-1, 6)
    means = rows.mean(0)
    np.testing.assert_allclose(ms, np.mean(means ** 2), rtol=1e-5)
    np.testing.assert_allclose(var, np.mean(rows.var(0)), rtol=1e-5)
    self.assertEqual(int(bad), 0)
    # mean_sq + var is the mean squared entry.
    np.testing.assert_allclose(ms + var, np.mean(x ** 2), rtol=1e-5)

  def test_orthogonal_linear_net_keeps_mean_sq_plus_var(self):
    # ||Q x|| = ||x|| for orthogonal Q, zero bias: the mean squared entry
    # (1/(B C)) sum_b ||x_b||^2 = mean_sq + var is the input's at every
    # block, to float32 rounding. So is each: the channel means map as
    # m -> Q m (mean_sq = ||m||^2 / C) and the channel covariance as
    # Q S Q^T (var = tr S / C).
    rng = np.random.default_rng(0)
    qs = [np.linalg.qr(rng.normal(size=(16, 16)))[0].astype(np.float32)
          for _ in range(4)]
    blocks = blocks_lib.Blocks(lambda q, v: q @ v, jnp.asarray(np.stack(qs)))
    xs = jnp.asarray(rng.normal(0.5, 1.0, (5, 16)), jnp.float32)
    results = sp.signal_propagation(blocks, xs)
    totals = [r["mean_sq"] + r["var"] for r in results["blocks"]]
    np.testing.assert_allclose(totals, totals[0], rtol=2e-5)
    for key in ("mean_sq", "var"):
      values = [r[key] for r in results["blocks"]]
      np.testing.assert_allclose(values, values[0], rtol=1e-4)
    self.assertEqual(results["nonfinite_blocks"], [])

  def test_residual_branch_variance_of_a_zoo_residual_mlp(self):
    example = zoo.make_residual_mlp(jax.random.key(0), depth=2, width=8,
                                    act="relu")
    blocks = blocks_lib.flax_blocks(*example)
    xs = jax.random.normal(jax.random.key(1), (6, 8))
    results = sp.signal_propagation(blocks, xs, residual=True)
    # The reference: the block outputs by the model's own maps, in NumPy.
    phi = activations.get_activation("relu").fn
    x = np.asarray(xs)
    branches = []
    for l in range(2):
      params = example.variables["params"][f"block_{l}"]
      y = np.asarray(jax.vmap(lambda v, p=params: zoo.mlp_map(p, v, phi))(x))
      branches.append(lambda v, p=params: zoo.mlp_map(p, v, phi, False))
      np.testing.assert_allclose(results["blocks"][l + 1]["residual_var"],
                                 np.mean((y - x).var(0)), rtol=1e-5)
      np.testing.assert_allclose(results["blocks"][l + 1]["var"],
                                 np.mean(y.var(0)), rtol=1e-5)
      x = y
    # The branches given explicitly: f(x_in), the same up to rounding.
    given = sp.signal_propagation(blocks, xs, branches=branches)
    for a, b in zip(results["blocks"][1:], given["blocks"][1:]):
      self.assertTrue(a["residual"] and b["residual"])
      np.testing.assert_allclose(a["residual_var"], b["residual_var"],
                                 rtol=1e-5)
    fig = signal_plots.plot_signal_propagation(results)
    self.assertLen(fig.axes[0].get_lines(), 3)   # mean_sq, var, branch

  def test_nonfinite_blocks_are_counted_not_raised(self):
    blocks = [lambda v: v * 1e30, lambda v: v * 1e30, lambda v: v - v]
    xs = jnp.ones((3, 4), jnp.float32)
    results = sp.signal_propagation(blocks, xs, residual=[3])
    records = results["blocks"]
    self.assertEqual(records[1]["nonfinite"], 0)
    self.assertEqual(records[2]["nonfinite"], 12)      # inf * 1e30
    self.assertEqual(records[3]["nonfinite"], 12)      # inf - inf = nan
    self.assertIsNone(records[2]["var"])
    self.assertIsNone(records[3]["residual_var"])
    self.assertEqual(results["nonfinite_blocks"], [2, 3])
    json.dumps(results, allow_nan=False)                # writable as is
    self.assertIn("non-finite", sp.format_report(results))
    signal_plots.plot_signal_propagation(results)

  def test_bad_blocks_end_in_one_line(self):
    xs = jnp.ones((2, 4))
    for kwargs, words in (
        ({"residual": [0]}, "residual blocks must be in [1, 1]"),
        ({"residual": True, "branches": [None]}, "not both")):
      with self.assertRaisesRegex(ValueError, words.replace("[", r"\[")):
        sp.signal_propagation([lambda v: v], xs, **kwargs)
    with self.assertRaisesRegex(ValueError, "x_out - x_in needs equal"):
      sp.signal_propagation([lambda v: v[:2]], xs, residual=True)
    with self.assertRaisesRegex(ValueError, "one array"):
      sp.signal_propagation([lambda v: (v, v)], xs)
    with self.assertRaisesRegex(ValueError, "batch axis"):
      sp.signal_propagation([lambda v: v], 1.0)


class QuadratureTest(parameterized.TestCase):

  def test_relu_pairs_are_the_arc_cosine_kernel(self):
    with jax.enable_x64(True):
      c = np.array([-0.7, 0.0, 0.5, 0.99, 1.0])
      k_aa, k_bb = 0.7, 2.3
      got = nngp.pair_expectation(k_aa, k_bb, c * np.sqrt(k_aa * k_bb),
                                  activations.get_activation("relu"))
      theta = np.arccos(c)
      want = np.sqrt(k_aa * k_bb) * (np.sin(theta) + (np.pi - theta) * c
                                     ) / (2 * np.pi)
      np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)

  def test_erf_pairs_are_williams_arcsine_kernel(self):
    # Unequal lengths and both signs of the covariance: E[erf(u) erf(v)] =
    # (2/pi) arcsin(2 K_ab / sqrt((1 + 2 K_aa)(1 + 2 K_bb))).
    k_aa = np.array([1.0, 0.5, 0.1, 2.0])
    k_bb = np.array([1.0, 3.0, 5.0, 2.0])
    k_ab = np.array([0.3, 1.1, -0.6, 2.0])
    with jax.enable_x64(True):
      got = nngp.pair_expectation(k_aa, k_bb, k_ab,
                                  activations.get_activation("erf"))
    want = 2 / np.pi * np.arcsin(2 * k_ab / np.sqrt((1 + 2 * k_aa)
                                                    * (1 + 2 * k_bb)))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)

  def test_tanh_diagonal_is_the_mean_field_length_map(self):
    tanh = activations.get_activation("tanh")
    with jax.enable_x64(True):
      q = np.array([0.3, 1.3, 2.0])
      got = nngp.pair_expectation(q, q, q, tanh)
      want = [meanfield.length_map(v, tanh, 1.0, 0.0) for v in q]
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.slow  # ~6 s: two activations' programs at width 1024
class MeanFieldTest(parameterized.TestCase):
  """Measured statistics of MLPs of width N = 1024 against the NNGP
  prediction, over S = 6 seeds (new weights and inputs each), B = 4 inputs.

  The prediction is the expectation over the weights given the inputs, up
  to O(1/N) finite-width corrections (1e-3 here). Per seed, the relative
  error e_s = measured / predicted - 1 fluctuates by O(1/sqrt(N)) (an
  average over N channels; measured sd 0.01-0.1 across seeds, larger for
  ReLU's deeper layers, whose kernel's fluctuations accumulate). So the
  mean over seeds must lie within 6 standard errors sd(e) / sqrt(S) of 0
  (a t statistic with 5 degrees of freedom exceeds 6 with probability
  2e-3), plus 1e-2 for the finite-width bias and the float32 forward pass.
  Dropping the exact O(1/B) term of the variance's expectation (predicting
  mean_a E[x_a^2] - mean_{a != b} E[x_a x_b]) moves the tanh prediction by
  ~30% (about 25 standard errors): the test tells the two apart.
  """

  @parameterized.parameters(("tanh", "gaussian", 1.5, 0.05),
                            ("relu", "he_normal", None, None))
  def test_measurement_matches_prediction_at_large_width(self, act, init,
                                                         sigma_w2, sigma_b2):
    errors = []
    for seed in range(6):
      results = sp.run_study(sp.SignalConfig(
          act=act, init=init, sigma_w2=sigma_w2, sigma_b2=sigma_b2, depth=3,
          width=1024, num_inputs=4, seed=seed))
      measured = np.array([[r["mean_sq"], r["var"]]
                           for r in results["blocks"][1:]])
      theory = results["theory"]
      predicted = np.array([theory["mean_sq"], theory["var"]]).T
      errors.append(measured / predicted - 1)
    errors = np.array(errors)                       # (S, L, 2)
    bound = 6 * errors.std(0, ddof=1) / np.sqrt(len(errors)) + 1e-2
    self.assertTrue(np.all(np.abs(errors.mean(0)) < bound),
                    f"mean errors {errors.mean(0)}, bounds {bound}")
    self.assertTrue(np.all(errors.std(0) < 0.2), errors.std(0))
    self.assertTrue(theory["exact_gaussian"])


@pytest.mark.slow  # ~7 s: the warm interpreter's start-up and one run
class CommandTest(absltest.TestCase):

  def _run(self, *args, cwd):
    return cli_testing.run_module(MODULE, *args, cwd=cwd)

  def test_run_then_replot(self):
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    proc = self._run(*TINY, f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("| block | mean_sq | var |", proc.stdout)
    self.assertEqual(sorted(os.listdir(out)), RUN_FILES)
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(results["schema"], "vgrad.signal_propagation/1")
    self.assertLen(results["blocks"], 4)
    self.assertLen(results["theory"]["var"], 3)
    self.assertEqual(results["config"]["act"], "tanh")
    self.assertIn("--act=tanh", results["command"])
    os.remove(os.path.join(out, "signal_propagation.png"))
    proc = self._run(f"--replot={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(sorted(os.listdir(out)), RUN_FILES)

  def test_bad_inputs_end_in_one_line(self):
    cwd = self.create_tempdir().full_path
    cases = [
        (["--num_inputs=1"], ["--num_inputs", ">= 2"]),
        (["--image_size=8"], ["--image_size", "--model=cnn"]),
        (["--model=rnn", "--leaky_slope=0.1"], ["--leaky_slope", "mlp"]),
        (["--model=cnn", "--noskip"], ["--skip", "resnet"]),
        (["--replot=" + os.path.join(cwd, "none")], ["--replot", "none"]),
        (["--replot=" + cwd, "--depth=3"], ["--replot", "--depth"]),
        (["--width=1000000"], ["--width=1000000", "GB"]),
        (["--model=mlp", "--init=he_normal", "--sigma_w2=2"],
         ["--sigma_w2", "gaussian"]),
    ]
    for args, words in cases:
      proc = self._run(*args, cwd=cwd)
      self.assertEqual(proc.returncode, 2, (args, proc.stderr))
      lines = proc.stderr.strip().splitlines()
      self.assertLen(lines, 1, (args, proc.stderr))
      for word in words:
        self.assertIn(word, lines[0], args)
      self.assertEqual(os.listdir(cwd), [], args)


if __name__ == "__main__":
  absltest.main()
