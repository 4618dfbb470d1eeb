"""Tests for vgrad.studies.spectrum_study and vgrad.plots.spectrum_plots on real probes."""

import copy
import dataclasses
import json
import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
import pytest

from vgrad.io import records
from vgrad.io import schemas
from vgrad.io import spectrum_records
from vgrad.nn import lsuv
from vgrad.nn import models as models_lib
from vgrad.plots import spectrum_plots as plotting
from vgrad.studies import spectrum_study

# The top-level keys of results.json, whatever the method.
RESULTS_KEYS = {"schema", "config", "convention", "dtype_eps", "layers",
                "per_layer", "input_output", "lyapunov", "method",
                "method_reason"}


_STUDIES = {}


def _study(**kw):
  """``run_study`` of a small config, run once per config for the whole
  file (a deep copy each call: the tests may change it). The tests share a
  few (activation, depth, width, num_inputs) combinations where their
  checks allow: each distinct one compiles its own probe."""
  defaults = dict(depth=6, width=32, num_inputs=3, method="dense")
  key = repr(sorted((defaults | kw).items()))
  if key not in _STUDIES:
    _STUDIES[key] = spectrum_study.run_study(
        spectrum_study.SpectrumConfig(**(defaults | kw)))
  return copy.deepcopy(_STUDIES[key])


class VerdictTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("orthogonal_linear", dict(act="linear", init="orthogonal", depth=20),
       "near-isometric"),
      ("sigmoid_glorot", dict(act="sigmoid", init="glorot_uniform",
                              depth=10), "vanishing"),
      ("relu_large", dict(act="relu", init="large_normal", depth=10),
       "exploding"),
      # sigma_w^2 = 1, sigma_b^2 = 0 is tanh's critical point, but the
      # gain still decays like a power of depth: 0.116 at depth 20.
      ("tanh_critical", dict(act="tanh", init="gaussian", sigma_w2=1.0,
                             depth=20), "shrinking: input-output gain 0.116"),
      ("relu_he", dict(act="relu", init="he_normal", depth=10),
       "norm-preserving on average but not isometric"),
  )
  def test_verdicts(self, config, expected):
    results = _study(**config)
    self.assertStartsWith(spectrum_study.verdict(results), expected)

  @parameterized.parameters(
      (0.099, None, None, "vanishing"), (0.1, None, None, "shrinking"),
      (0.49, None, None, "shrinking"),
      (0.5, None, None, "norm-preserving on average but not isometric"),
      (1.0, 0.01, 1.5, "norm-preserving on average but not isometric"),
      (1.0, 0.5, 2.0, "near-isometric"), (0.3, 0.25, 0.4, "shrinking"),
      (2.0, None, None, "norm-preserving on average but not isometric"),
      (2.01, None, None, "growing"), (10.0, None, None, "growing"),
      (10.01, None, None, "exploding"))
  def test_words_follow_the_thresholds(self, g, lo, hi, words):
    log = lambda v: None if v is None else math.log(v)
    self.assertEqual(spectrum_study.verdict_words(log(g), log(lo), log(hi)),
                     words)

  def test_shrinking_says_when_it_vanishes(self):
    results = _study(act="tanh", init="orthogonal", depth=10)
    rate = spectrum_study.gain(results["input_output"]) ** (1 / 10)
    layer = math.ceil(math.log(0.1) / math.log(rate))
    self.assertIn(f"vanishing, below 0.1 from layer {layer}",
                  spectrum_study.verdict(results))
    self.assertStartsWith(spectrum_study.verdict(results), "shrinking")

  def test_sigmoid_glorot_gain_per_layer_is_below_a_quarter(self):
    # Glorot keeps Var(W) = 1/N, so each layer multiplies ||v||^2 by
    # E[phi'(h)^2] <= 1/16: the rms gain per layer is at most 1/4.
    results = _study(act="sigmoid", init="glorot_normal", depth=10, width=64)
    gains = [spectrum_study.gain(r) for r in results["per_layer"][1:]]
    self.assertLess(max(gains), 0.25)
    io_gain = spectrum_study.gain(results["input_output"])
    self.assertLess(io_gain, 0.25 ** 9)

  def test_relu_zeros_are_exact_not_unresolved(self):
    # relu_he's network of test_verdicts.
    results = _study(act="relu", init="he_normal", depth=10)
    io = results["input_output"]
    self.assertGreater(min(io["num_exact_zeros"]), 0)
    self.assertIn("rank-deficient", spectrum_study.verdict(results))
    self.assertEqual(io["min_singular_value"], 0.0)
    # Every value of the input-output Jacobian is measured: its zeros as
    # exact zeros (the product's floor leaves some small nonzero values of
    # layers 8 and 9 unresolved: they sit within its rounding).
    self.assertNotIn(10, spectrum_study.unresolved_layers(results))
    self.assertEqual(io["num_resolved"], [io["num_singular_values"]] * 3)

  def test_overflow_is_reported_not_crashed_on(self):
    results = _study(act="relu", init="large_normal", depth=60, width=64)
    self.assertNotEmpty(spectrum_study.nonfinite_layers(results))
    self.assertIn("overflowed", spectrum_study.verdict(results))
    self.assertIn("non-finite", spectrum_study.precision_note(results))
    json.dumps(results, allow_nan=False)  # still a valid results file
    schemas.validate(results)
    # 60 layers: the table shows about 12, first and last included.
    lines = spectrum_study.format_table(results).splitlines()
    rows = [int(line.split()[0]) for line in lines[2:]
            if line.split()[0].isdigit()]
    self.assertEqual((rows[0], rows[-1]), (1, 60))
    self.assertBetween(len(rows), 10, 12)
    self.assertEqual(lines[2 + len(rows)],
                     f"({len(rows)} of 60 layers shown; results.json holds "
                     f"every one)")

  def test_results_schema_and_table(self):
    results = _study(act="maxout", init="glorot_uniform",
                     act_params={"k": 3})
    self.assertEqual(set(results), RESULTS_KEYS)
    self.assertEqual(next(iter(results)), "schema")
    self.assertEqual(results["schema"], schemas.JACOBIAN_SPECTRUM)
    schemas.validate(results)
    self.assertEqual(results["method"], "dense")
    self.assertIsNone(results["lyapunov"])   # not computed
    self.assertLen(results["layers"], 6)
    self.assertLen(results["per_layer"], 6)
    for record in results["layers"] + results["per_layer"] + [
        results["input_output"]]:
      self.assertEqual(tuple(record), spectrum_records.RECORD_KEYS)
      self.assertLen(record["singular_values"], 3)
      self.assertLen(record["singular_values"][0], 32)
      # Log values beside the linear ones, where measured.
      for lin, log in zip(record["singular_values"],
                          record["log_singular_values"]):
        for a, b in zip(lin, log):
          if a:
            self.assertAlmostEqual(b, math.log(a), delta=1e-6)
          else:
            self.assertIsNone(b)
    self.assertEqual([r["layer"] for r in results["layers"]], list(
        range(1, 7)))
    table = spectrum_study.format_table(results).splitlines()
    self.assertEqual([int(line.split()[0]) for line in table[2:8]],
                     list(range(1, 7)))
    # Under the rows, a legend says what every column means.
    legend = " ".join(table[8:])
    self.assertStartsWith(legend, "columns: singular values (sv)")
    for column in table[0].split()[1:]:
      if column not in ("sv", "gain"):
        self.assertIn(column, legend)

  @pytest.mark.slow
  def test_lsuv_is_fitted_to_the_probe_inputs(self):
    # run_study must apply LSUV (not just its orthonormal pre-init): the
    # gain equals that of the net rescaled on the probe's own inputs, and
    # tanh's orthonormal net, whose pre-activations shrink layer by layer,
    # has a much smaller gain (0.26 against 1.45 at depth 10).
    config = spectrum_study.SpectrumConfig(act="tanh", init="lsuv", depth=10,
                                           width=64, method="dense")
    gain = spectrum_study.gain(spectrum_study.run_study(config)[
        "input_output"])
    # Equal to run_study's model (equal settings build equal models), so
    # LSUV's jitted fit, static on the model, is not compiled again.
    model = spectrum_study.build_model(config)
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    xs = jax.random.normal(data_key, (config.num_inputs, 64))
    params = lsuv.initialize(model, init_key, xs)
    # The reference: the input-output Jacobian of the fitted net, a NumPy
    # float64 product of the layers' D_l W_l (no probe to compile). Its
    # float32 rounding in run_study is ~1e-6 relative, below places=5.
    sq = []
    for x in np.asarray(xs, np.float64):
      jac = np.eye(64)
      for l in range(1, config.depth + 1):
        layer = models_lib.layer_params(params, l)
        kernel = np.asarray(layer["kernel"], np.float64)
        x = np.tanh(x @ kernel + np.asarray(layer["bias"], np.float64))
        jac = (1 - x ** 2)[:, None] * (kernel.T @ jac)
      sq.append(np.linalg.svd(jac, compute_uv=False) ** 2)
    self.assertAlmostEqual(gain, float(np.sqrt(np.mean(sq))), places=5)
    orthogonal = spectrum_study.gain(spectrum_study.run_study(
        dataclasses.replace(config, init="orthogonal"))["input_output"])
    self.assertGreater(gain, 4 * orthogonal)

  @pytest.mark.slow
  def test_float64_resolves_what_float32_cannot(self):
    # tanh_critical's network of test_verdicts: float32 resolves 20 of the
    # 32 singular values at layer 20, float64 30.
    kw = dict(act="tanh", init="gaussian", sigma_w2=1.0, depth=20)
    r32 = _study(**kw)
    with jax.enable_x64(True):
      r64 = _study(dtype="float64", **kw)
    n32 = min(r32["input_output"]["num_resolved"])
    n64 = min(r64["input_output"]["num_resolved"])
    self.assertLess(n32, n64)
    self.assertIn("--dtype=float64 resolves more",
                  spectrum_study.precision_note(r32))


class MethodTest(parameterized.TestCase):
  """--method: auto picks qr exactly when the dense product loses values."""

  # Each qr test compiles its own QR probe, ~6 s of CPU.
  @pytest.mark.slow
  def test_auto_picks_qr_and_agrees_with_dense_where_dense_resolves(self):
    kw = {"act": "sigmoid", "init": "glorot_normal", "depth": 10,
          "width": 32}
    # QR at layers 1, 6 and 10: the probe tests/jacobian_spectrum_main_test.py
    # compiles too (MethodTest, --qr_layers=6,1), shared through the
    # suite's persistent compilation cache.
    auto = _study(method="auto", qr_layers=(6, 1), **kw)
    dense = _study(**kw)
    self.assertEqual(auto["method"], "qr")
    self.assertStartsWith(auto["method_reason"],
                          "float32 resolves singular values within")
    # The dense path really does lose values here (its own floor).
    self.assertNotEmpty(spectrum_study.unresolved_layers(dense))
    self.assertEqual(spectrum_study.unresolved_layers(auto), [])
    self.assertStartsWith(spectrum_study.method_line(auto), "auto chose qr: ")
    # One schema whatever the method: the same keys everywhere, and the
    # validator passes both (qr_layers narrows qr's layers).
    for results in (auto, dense):
      schemas.validate(json.loads(json.dumps(results, allow_nan=False)))
      self.assertEqual(set(results), RESULTS_KEYS)
      for record in results["layers"] + results["per_layer"]:
        self.assertEqual(tuple(record), spectrum_records.RECORD_KEYS)
    self.assertEqual([r["layer"] for r in auto["layers"]], [1, 6, 10])
    self.assertIsNone(dense["lyapunov"])
    self.assertIsNone(dense["layers"][0]["error_bound"])
    self.assertIsNone(auto["layers"][0]["resolution_floor"])
    # Each layer's own spectrum is the dense method's under qr too: the
    # same layer Jacobians and SVDs, in another compiled program (float32
    # rounding of the program only).
    self.assertLen(auto["per_layer"], kw["depth"])
    for got, want in zip(auto["per_layer"], dense["per_layer"]):
      self.assertEqual(got.keys(), want.keys())
      self.assertEqual(got["num_resolved"], want["num_resolved"])
      np.testing.assert_allclose(
          np.array(got["singular_values"], dtype=float),
          np.array(want["singular_values"], dtype=float), rtol=1e-5)
    by_layer = {r["layer"]: r for r in dense["layers"]}
    u = np.finfo(np.float32).eps / 2
    for record in auto["layers"]:
      ref = by_layer[record["layer"]]
      # A float32 dense value is off by up to ~N u per factor of the
      # product (Higham 2002, sec. 3.5) plus the SVD's N u s_1, i.e.
      # N u (l + s_1 / s) relative; the QR values are far closer.
      for got, lin, want in zip(record["log_singular_values"],
                                record["singular_values"],
                                ref["singular_values"]):
        for g, v, w in zip(got, lin, want):
          if w:
            tol = 32 * u * (record["layer"] + want[0] / w)
            self.assertAlmostEqual(g, math.log(w), delta=tol)
            # The linear values (all in float32's range here) too.
            self.assertAlmostEqual(v, w, delta=tol * w)
      self.assertAlmostEqual(spectrum_study.log_gain(record),
                             math.log(spectrum_study.gain(ref)),
                             delta=32 * u * (record["layer"] + 1))
    self.assertEqual(spectrum_study.verdict(auto).split(":")[0],
                     spectrum_study.verdict(dense).split(":")[0])

  def test_auto_keeps_dense_when_float32_resolves_everything(self):
    # orthogonal_linear's network of test_verdicts.
    results = _study(method="auto", act="linear", init="orthogonal",
                     depth=20)
    self.assertEqual(results["method"], "dense")
    self.assertIn("resolves the predicted spread", results["method_reason"])
    self.assertIn("per_layer", results)
    # The Lyapunov sums auto computed to decide are kept.
    self.assertLen(results["lyapunov"]["partial_sums"]["median"], 20)
    schemas.validate(results)

  @pytest.mark.slow
  def test_auto_picks_qr_beyond_the_float32_range(self):
    """tanh with N(0, 1) weights is chaotic: its activations stay in
    [-1, 1] while each layer multiplies the Jacobian by ~sqrt(chi) ~ 2
    (chi = N E[tanh'(h)^2] with h ~ N(0, O(N))), past float32's e^88
    within 150 layers, where the dense product overflows."""
    kw = {"act": "tanh", "init": "large_normal", "depth": 150, "width": 64,
          "num_inputs": 2}
    dense = _study(**kw)
    self.assertNotEmpty(spectrum_study.nonfinite_layers(dense))
    # Three exact layers: every layer (the default) costs one Jacobi per
    # layer and input, ~9 s more here under the tests' compile flags.
    results = _study(method="auto", qr_layers=(1, 75), **kw)
    self.assertEqual(results["method"], "qr")
    self.assertStartsWith(results["method_reason"],
                          "the singular values leave the float32 range")
    self.assertEqual(spectrum_study.nonfinite_layers(results), [])
    self.assertRegex(spectrum_study.verdict(results),
                     r"^exploding: input-output gain \d\.\d+e\+\d+ ")
    self.assertGreater(spectrum_study.log_gain(results["input_output"]),
                       math.log(np.finfo(np.float32).max))
    # The linear values where float32 holds them, the logs everywhere.
    self.assertEqual([r["layer"] for r in results["layers"]], [1, 75, 150])
    io = results["input_output"]
    self.assertIsNone(io["max_singular_value"])
    self.assertIsNone(io["mean_sq_singular_value"])
    self.assertGreater(io["max_log_singular_value"],
                       math.log(np.finfo(np.float32).max))
    self.assertEqual(io["singular_values"][0][0], None)
    self.assertIsNotNone(io["log_singular_values"][0][0])
    self.assertIsNotNone(results["layers"][0]["mean_sq_singular_value"])
    schemas.validate(json.loads(json.dumps(results, allow_nan=False)))

  def test_qr_reports_every_layer_unless_narrowed(self):
    config = spectrum_study.SpectrumConfig(depth=150, method="qr")
    self.assertEqual(spectrum_study.qr_layers(config), tuple(range(1, 151)))
    self.assertEqual(spectrum_study.qr_layers(dataclasses.replace(
        config, qr_layers=(75, 1, 75))), (1, 75, 150))

  @pytest.mark.slow
  def test_overflowing_activations_are_reported_as_overflow(self):
    """ReLU with N(0, 1) weights: the activations themselves overflow
    float32 (x grows like sqrt(N/2)^l); the QR path says so (NaN, not the
    zero derivatives relu'(NaN) would give)."""
    # Layers 10, 30 (finite: the activations reach float32's max near
    # layer 51) and 60: two inputs and three targets at width 64, the
    # shapes of test_auto_picks_qr_beyond_the_float32_range, whose Jacobi
    # stage program this run shares.
    results = _study(method="qr", act="relu", init="large_normal",
                     depth=60, width=64, num_inputs=2, qr_layers=(10, 30))
    self.assertEqual(spectrum_study.nonfinite_layers(results), [60])
    self.assertTrue(results["layers"][0]["finite"])
    self.assertIn("overflowed", spectrum_study.verdict(results))
    json.dumps(results, allow_nan=False)

  @pytest.mark.slow
  def test_qr_schema_table_and_figure(self):
    results = json.loads(json.dumps(_study(
        method="qr", act="relu", init="he_normal", depth=12, width=16,
        qr_layers=(3, 1, 3), qr_sweeps=20), allow_nan=False))
    self.assertEqual(set(results), RESULTS_KEYS)
    self.assertEqual([r["layer"] for r in results["per_layer"]],
                     list(range(1, 13)))
    schemas.validate(results)
    self.assertEqual(results["method_reason"], "requested")
    self.assertEqual([r["layer"] for r in results["layers"]], [1, 3, 12])
    self.assertEqual(results["input_output"], results["layers"][-1])
    for record in results["layers"]:
      self.assertEqual(tuple(record), spectrum_records.RECORD_KEYS)
      self.assertLen(record["log_singular_values"], 3)
      # ReLU: exact zeros (inactive units) are null in logs, 0.0 in linear
      # values, at the end, and counted; min and median are exact zeros.
      for row, lin, zeros in zip(record["log_singular_values"],
                                 record["singular_values"],
                                 record["num_exact_zeros"]):
        self.assertGreater(zeros, 0)
        self.assertEqual(row[16 - zeros:], [None] * zeros)
        self.assertNotIn(None, row[:16 - zeros])
        self.assertEqual(lin[16 - zeros:], [0.0] * zeros)
      self.assertEqual(record["min_singular_value"], 0.0)
      self.assertEqual(record["num_resolved"], [16] * 3)
      self.assertTrue(all(s <= 20 for s in record["sweeps"]))
    lyap = results["lyapunov"]
    for key in spectrum_study.QUANTILES:
      self.assertLen(lyap["partial_sums"][key], 12)
    self.assertLen(lyap["exponents"], 3)
    self.assertIn("rank-deficient", spectrum_study.verdict(results))
    table = spectrum_study.format_table(results).splitlines()
    self.assertEqual([int(line.split()[0]) for line in table[2:5]],
                     [1, 3, 12])
    self.assertStartsWith(table[5], "(layers 1, 3, 12 of 12 computed, as "
                          "--qr_layers asked")
    self.assertIn("in nats", " ".join(table[6:]))
    self.assertIsNone(spectrum_study.precision_note(results))
    fig = plotting.plot_jacobian_spectrum(results)
    left, right = fig.axes
    self.assertIn("log_{10}", left.get_ylabel())
    # Both panels in decades; the layer axis linear (a constant per-layer
    # rate is a straight line, at any depth).
    self.assertIn("decades per layer", right.get_ylabel())
    self.assertEqual(left.get_xscale(), "linear")
    self.assertEqual(left.get_xlim()[0], 0)
    for ax in (left, right):
      self.assertNotEmpty(ax.get_xlabel())

  @parameterized.parameters(
      ({"method": "svd"}, "method must be one of auto, dense, qr"),
      ({"qr_layers": (0, 2)}, r"qr_layers must be integers in \[1, depth=6"),
      ({"qr_sweeps": 0}, "qr_sweeps must be an integer >= 1"),
      # The network fields are checked by vgrad.nn.config.NetworkConfig.
      ({"depth": 0}, "depth: must be an integer >= 1, got 0"),
      ({"act": "tahn"}, "act: unknown activation 'tahn'"),
      ({"init": "he_normal", "sigma_w2": 2.0},
       r"sigma_w2: applies only to init delta_orthogonal\|gaussian\|orthogonal"),
      ({"sigma_b2": -1.0}, "sigma_b2: must be a finite number >= 0"),
  )
  def test_bad_config(self, kw, message):
    with self.assertRaisesRegex(ValueError, message):
      _study(**kw)

  @parameterized.parameters(
      (math.log(4.74e-07), "4.74e-07"),
      (-4521.3 * math.log(10), "5.01e-4522"),
      (1000 * math.log(10), "1e+1000"),
      (-math.inf, "0"),
      (None, "-"),
  )
  def test_format_power(self, value, text):
    self.assertEqual(spectrum_study.format_power(value), text)


class PlottingTest(absltest.TestCase):

  def test_layer_axis_integers_when_linear_decades_when_log(self):
    """Depth 10 000 is drawn on a log layer axis: its ticks stay decades
    (an integer locator there printed overlapping labels), and a line of
    10 000 layers carries no per-layer markers."""
    from matplotlib import ticker  # pylint: disable=g-import-not-at-top
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, (linear, log) = plt.subplots(1, 2)
    log.set_xscale("log")
    for ax in (linear, log):
      plotting._integer_ticks(ax)  # pylint: disable=protected-access
    self.assertIsInstance(linear.xaxis.get_major_locator(),
                          ticker.MaxNLocator)
    self.assertIsInstance(log.xaxis.get_major_locator(), ticker.LogLocator)
    plt.close(fig)
    marks = plotting._marks  # pylint: disable=protected-access
    self.assertEqual(marks(range(1, 11), "o"), "o")
    self.assertIsNone(marks(range(1, 10001), "o"))

  def test_figure_from_saved_results(self):
    # tanh_critical's network of VerdictTest.test_verdicts.
    results = json.loads(json.dumps(_study(act="tanh", init="gaussian",
                                           sigma_w2=1.0, depth=20)))
    fig = plotting.plot_jacobian_spectrum(results)
    left, right = fig.axes
    self.assertEqual(left.get_yscale(), "log")
    self.assertEqual(right.get_xscale(), "log")
    for ax in (left, right):
      self.assertNotEmpty(ax.get_xlabel())
      self.assertNotEmpty(ax.get_ylabel())
    self.assertIsNotNone(right.get_legend())
    self.assertLen(fig.legends, 1)
    # The median line is the pooled median of the resolved values.
    median = left.get_lines()[1].get_ydata()
    first = np.array(results["layers"][0]["singular_values"]).ravel()
    self.assertAlmostEqual(median[0], np.quantile(first, 0.5,
                                                  method="nearest"))
    stem = self.create_tempdir().full_path + "/fig"
    paths = plotting.save_figure(fig, stem)
    self.assertEqual([p[-3:] for p in paths], ["png", "pdf"])

  def test_results_with_the_old_standard_deviation_keys_redraw(self):
    """Before the variance convention config held sigma_w, sigma_b (std);
    readers (records.upgrade_keys) see sigma_w2 = sigma_w ** 2."""
    new = json.loads(json.dumps(_study(act="tanh", init="gaussian",
                                       sigma_w2=2.25, sigma_b2=0.25,
                                       depth=20)))
    self.assertEqual(records.upgrade_keys(new), new)
    old = dict(new, config={
        {"sigma_w2": "sigma_w", "sigma_b2": "sigma_b"}.get(k, k): v
        for k, v in new["config"].items()} | {"sigma_w": 1.5,
                                               "sigma_b": 0.5})
    self.assertNotIn("sigma_w2", old["config"])
    self.assertEqual(records.upgrade_keys(old), new)
    self.assertEqual(records.upgrade_keys({"sigma_w": None}),
                     {"sigma_w2": None})
    fig = plotting.plot_jacobian_spectrum(records.upgrade_keys(old))
    title = fig._suptitle.get_text()  # pylint: disable=protected-access
    self.assertIn(r"$\sigma_w^2$=2.25,", title)
    self.assertIn(r"$\sigma_b^2$=0.25", title)


if __name__ == "__main__":
  absltest.main()
