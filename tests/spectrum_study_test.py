"""Tests for vgrad.spectrum_study and vgrad.plotting on real probes."""

import json

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from vgrad import plotting
from vgrad import spectrum_study

STAT_FIELDS = {"layer", "singular_values", "mean_sq_singular_value",
               "min_singular_value", "median_singular_value",
               "max_singular_value", "condition_number",
               "mean_log_singular_value", "num_resolved", "num_exact_zeros",
               "num_singular_values", "resolution_floor", "finite"}


def _study(**kw):
  defaults = dict(depth=6, width=32, num_inputs=3)
  return spectrum_study.run_study(
      spectrum_study.SpectrumConfig(**(defaults | kw)))


class VerdictTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("orthogonal_linear", dict(act="linear", init="orthogonal", depth=20),
       "near-isometric"),
      ("sigmoid_glorot", dict(act="sigmoid", init="glorot_uniform",
                              depth=10), "vanishing"),
      ("relu_large", dict(act="relu", init="large_normal", depth=10),
       "exploding"),
      ("tanh_critical", dict(act="tanh", init="gaussian", sigma_w=1.0,
                             depth=20), "norm-preserving on average"),
      ("relu_he", dict(act="relu", init="he_normal", depth=10),
       "norm-preserving on average but not isometric"),
  )
  def test_verdicts(self, config, expected):
    results = _study(**config)
    self.assertStartsWith(spectrum_study.verdict(results), expected)

  def test_sigmoid_glorot_gain_per_layer_is_below_a_quarter(self):
    # Glorot keeps Var(W) = 1/N, so each layer multiplies ||v||^2 by
    # E[phi'(h)^2] <= 1/16: the rms gain per layer is at most 1/4.
    results = _study(act="sigmoid", init="glorot_normal", depth=10, width=64)
    gains = [spectrum_study.gain(r) for r in results["per_layer"][1:]]
    self.assertLess(max(gains), 0.25)
    io_gain = spectrum_study.gain(results["input_output"])
    self.assertLess(io_gain, 0.25 ** 9)

  def test_relu_zeros_are_exact_not_unresolved(self):
    results = _study(act="relu", init="he_normal", depth=3)
    io = results["input_output"]
    self.assertGreater(min(io["num_exact_zeros"]), 0)
    self.assertIn("rank-deficient", spectrum_study.verdict(results))
    self.assertEqual(io["min_singular_value"], 0.0)
    self.assertEqual(spectrum_study.unresolved_layers(results), [])

  def test_overflow_is_reported_not_crashed_on(self):
    results = _study(act="relu", init="large_normal", depth=60, width=64)
    self.assertNotEmpty(spectrum_study.nonfinite_layers(results))
    self.assertIn("overflowed", spectrum_study.verdict(results))
    self.assertIn("non-finite", spectrum_study.precision_note(results))
    json.dumps(results, allow_nan=False)  # still a valid results file

  def test_results_schema_and_table(self):
    results = _study(act="maxout", init="glorot_uniform",
                     act_params={"k": 3})
    self.assertEqual(set(results),
                     {"config", "convention", "dtype_eps", "layers",
                      "per_layer", "input_output"})
    self.assertLen(results["layers"], 6)
    self.assertLen(results["per_layer"], 6)
    for record in results["layers"] + results["per_layer"] + [
        results["input_output"]]:
      self.assertContainsSubset(STAT_FIELDS, set(record))
      self.assertLen(record["singular_values"], 3)
      self.assertLen(record["singular_values"][0], 32)
    self.assertEqual([r["layer"] for r in results["layers"]], list(
        range(1, 7)))
    table = spectrum_study.format_table(results)
    self.assertLen(table.splitlines(), 2 + 6)

  def test_float64_resolves_what_float32_cannot(self):
    kw = dict(act="tanh", init="gaussian", sigma_w=1.0, depth=40, width=64)
    r32 = _study(**kw)
    with jax.enable_x64(True):
      r64 = _study(dtype="float64", **kw)
    n32 = min(r32["input_output"]["num_resolved"])
    n64 = min(r64["input_output"]["num_resolved"])
    self.assertLess(n32, n64)
    self.assertIn("--dtype=float64 resolves more",
                  spectrum_study.precision_note(r32))


class PlottingTest(absltest.TestCase):

  def test_figure_from_saved_results(self):
    results = json.loads(json.dumps(_study(act="tanh", init="gaussian",
                                           sigma_w=1.0, depth=30)))
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


if __name__ == "__main__":
  absltest.main()
