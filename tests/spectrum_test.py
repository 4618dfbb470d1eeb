"""Tests for vgrad.probes.spectrum: statistics and the resolution floor."""

import math

from absl.testing import absltest
import numpy as np

from vgrad.probes import spectrum

EPS32 = float(np.finfo(np.float32).eps)


class SpectrumStatsTest(absltest.TestCase):

  def test_fully_resolved_statistics(self):
    sv = np.array([[4.0, 2.0, 1.0], [2.0, 1.0, 0.5]])
    stats = spectrum.compute_stats(sv, (3, 3), np.float32)
    self.assertTrue(stats["finite"])
    self.assertEqual(stats["num_resolved"], [3, 3])
    self.assertAlmostEqual(stats["mean_sq_singular_value"],
                           (16 + 4 + 1 + 4 + 1 + 0.25) / 6)
    self.assertEqual(stats["min_singular_value"], 0.5)
    self.assertEqual(stats["max_singular_value"], 4.0)
    self.assertEqual(stats["median_singular_value"], 1.5)
    self.assertAlmostEqual(stats["condition_number"], 4.0)  # geo-mean(4, 4)
    self.assertAlmostEqual(stats["mean_log_singular_value"],
                           np.mean(np.log(sv)))
    self.assertAlmostEqual(stats["resolution_floor"][0], 4.0 * 3 * EPS32,
                           places=12)

  def test_values_below_the_floor_are_not_reported(self):
    # 1e-9 is below 1 * 4 * eps32 = 4.8e-7 but above float64's floor.
    sv = np.array([[1.0, 0.5, 1e-3, 1e-9]])
    stats = spectrum.compute_stats(sv, (4, 4), np.float32)
    self.assertEqual(stats["num_resolved"], [3])
    for key in ("min_singular_value", "condition_number",
                "mean_log_singular_value"):
      self.assertIsNone(stats[key])
    self.assertEqual(stats["max_singular_value"], 1.0)
    self.assertAlmostEqual(stats["median_singular_value"], 0.2505)
    record = spectrum.spectrum_record(sv, (4, 4), np.float32, layer=3)
    self.assertEqual(record["layer"], 3)
    self.assertEqual(record["singular_values"], [[1.0, 0.5, 0.001, None]])
    stats64 = spectrum.compute_stats(sv, (4, 4), np.float64)
    self.assertEqual(stats64["num_resolved"], [4])
    self.assertAlmostEqual(stats64["min_singular_value"], 1e-9)

  def test_values_past_the_rank_bound_are_exact_zeros(self):
    sv = np.array([[2.0, 1.0, 3e-8, 1e-9], [1.0, 0.5, 0.25, 2e-8]])
    stats = spectrum.compute_stats(sv, (4, 4), np.float32, rank_bound=[2, 3])
    self.assertEqual(stats["num_exact_zeros"], [2, 1])
    self.assertEqual(stats["num_resolved"], [4, 4])
    self.assertEqual(stats["min_singular_value"], 0.0)
    self.assertIsNone(stats["condition_number"])
    self.assertIsNone(stats["mean_log_singular_value"])
    self.assertAlmostEqual(stats["mean_sq_singular_value"],
                           (4 + 1 + 1 + 0.25 + 0.0625) / 8)
    record = spectrum.spectrum_record(sv, (4, 4), np.float32,
                                      rank_bound=[2, 3])
    self.assertEqual(record["singular_values"],
                     [[2.0, 1.0, 0.0, 0.0], [1.0, 0.5, 0.25, 0.0]])

  def test_median_on_an_unresolved_value_is_none(self):
    sv = np.array([[1.0, 1e-12, 1e-13]])
    self.assertIsNone(spectrum.compute_stats(sv, (3, 3), np.float32)
                      ["median_singular_value"])

  def test_flushed_to_zero_spectrum(self):
    stats = spectrum.compute_stats(np.zeros((2, 3)), (3, 3), np.float32)
    self.assertEqual(stats["num_resolved"], [0, 0])
    self.assertEqual(stats["mean_sq_singular_value"], 0.0)
    self.assertIsNone(stats["max_singular_value"])

  def test_non_finite_spectrum(self):
    sv = np.array([[math.inf, 1.0], [math.nan, math.nan]])
    stats = spectrum.compute_stats(sv, (2, 2), np.float32)
    self.assertFalse(stats["finite"])
    for key in spectrum.STAT_KEYS:
      self.assertIsNone(stats[key])

  def test_record_rounds_to_the_working_precision(self):
    value = float(np.float32(1 / 3))
    record = spectrum.spectrum_record(np.array([[value]]), (1, 1), np.float32)
    self.assertEqual(np.float32(record["singular_values"][0][0]),
                     np.float32(value))
    self.assertLessEqual(len(repr(record["singular_values"][0][0])), 11)


class LogStatsTest(absltest.TestCase):

  def test_log_stats_match_the_linear_ones(self):
    # An odd number of pooled values: the median is one of them (for an
    # even number the log median averages logs, a geometric mean).
    sv = np.array([[4.0, 2.0, 1.0], [2.0, 1.0, 0.5], [8.0, 3.0, 0.25]])
    linear = spectrum.compute_stats(sv, (3, 3), np.float64)
    logs = spectrum.compute_log_stats(np.log(sv))
    self.assertAlmostEqual(logs["log_rms_gain"],
                           0.5 * math.log(linear["mean_sq_singular_value"]))
    for key in ("min", "median", "max"):
      self.assertAlmostEqual(logs[f"{key}_log_singular_value"],
                             math.log(linear[f"{key}_singular_value"]))
    self.assertAlmostEqual(logs["log_condition_number"],
                           math.log(linear["condition_number"]))
    self.assertAlmostEqual(logs["mean_log_singular_value"],
                           linear["mean_log_singular_value"])
    self.assertEqual(logs["num_exact_zeros"], [0, 0, 0])

  def test_far_beyond_the_float_range(self):
    # e^-5000 and e^+5000: no overflow, and the rms gain is dominated by
    # the largest value: (1/2) log((e^10000 + e^-10000) / 2).
    logs = spectrum.compute_log_stats(np.array([[5000.0, -5000.0]]))
    self.assertTrue(logs["finite"])
    self.assertAlmostEqual(logs["log_rms_gain"], 5000 - 0.5 * math.log(2))
    self.assertAlmostEqual(logs["log_condition_number"], 10000.0)

  def test_exact_zeros(self):
    log_sv = np.array([[1.0, -2.0, -np.inf, -np.inf],
                       [0.5, -np.inf, -np.inf, -np.inf]])
    logs = spectrum.compute_log_stats(log_sv)
    self.assertEqual(logs["num_exact_zeros"], [2, 3])
    self.assertEqual(logs["min_log_singular_value"], -2.0)
    self.assertIsNone(logs["median_log_singular_value"])  # on a zero
    self.assertIsNone(logs["log_condition_number"])
    self.assertIsNone(logs["mean_log_singular_value"])
    self.assertAlmostEqual(logs["log_rms_gain"], 0.5 * math.log(
        (math.exp(2) + math.exp(-4) + math.exp(1)) / 8))
    record = spectrum.log_spectrum_record(log_sv, np.float32, layer=4)
    self.assertEqual(record["layer"], 4)
    self.assertEqual(record["log_singular_values"],
                     [[1.0, -2.0, None, None], [0.5, None, None, None]])

  def test_all_zero_and_non_finite(self):
    zero = spectrum.log_spectrum_record(np.full((1, 2), -np.inf), np.float32)
    self.assertTrue(zero["finite"])
    self.assertIsNone(zero["log_rms_gain"])  # log 0; JSON has no -inf
    self.assertEqual(zero["num_exact_zeros"], [2])
    bad = spectrum.compute_log_stats(np.array([[np.nan, 1.0]]))
    self.assertFalse(bad["finite"])
    for key in spectrum.LOG_STAT_KEYS:
      self.assertIsNone(bad[key])

  def test_json_float(self):
    self.assertIsNone(spectrum.json_float(np.inf, np.float32))
    self.assertIsNone(spectrum.json_float(np.nan, np.float64))
    self.assertEqual(spectrum.json_float(np.float32(1 / 3), np.float32),
                     0.333333343)


if __name__ == "__main__":
  absltest.main()
