"""Tests for vgrad.io.spectrum_records: one record whatever the method."""

import math

from absl.testing import absltest
import numpy as np

from vgrad.io import spectrum_records
from vgrad.probes import spectrum

EPS32 = float(np.finfo(np.float32).eps)


def _dense(sv, shape, dtype=np.float32, rank_bound=None, layer=1):
  """A dense record as the studies build it (vgrad.studies.spectrum_study
  .dense_record, without importing JAX)."""
  log_sv, measured, values, floor = spectrum.log_singular_values(
      np.asarray(sv, np.float64), shape, dtype, rank_bound)
  return spectrum_records.make_record(layer, log_sv, dtype, measured=measured,
                                      singular_values=values,
                                      resolution_floor=floor)


def _log(log_sv, dtype=np.float32, layer=1, **kw):
  return spectrum_records.make_record(layer, np.asarray(log_sv, np.float64),
                                      dtype, **kw)


class DenseRecordTest(absltest.TestCase):

  def test_fully_resolved_statistics(self):
    sv = np.array([[4.0, 2.0, 1.0], [2.0, 1.0, 0.5]])
    r = _dense(sv, (3, 3), layer=3)
    self.assertEqual(tuple(r), spectrum_records.RECORD_KEYS)
    self.assertEqual(r["layer"], 3)
    self.assertTrue(r["finite"])
    self.assertEqual(r["num_resolved"], [3, 3])
    self.assertAlmostEqual(r["mean_sq_singular_value"], 26.25 / 6)
    self.assertAlmostEqual(r["log_rms_gain"], 0.5 * math.log(26.25 / 6),
                           places=7)
    self.assertEqual(r["min_singular_value"], 0.5)
    self.assertEqual(r["max_singular_value"], 4.0)
    # Pooled 0.5, 1, 1, 2, 2, 4: the median of the logs, the geometric
    # mean of the middle two (a linear average would be 1.5).
    self.assertAlmostEqual(r["median_singular_value"], math.sqrt(2),
                           places=7)
    self.assertAlmostEqual(r["median_log_singular_value"], math.log(2) / 2,
                           places=7)
    self.assertAlmostEqual(r["condition_number"], 4.0)  # geo-mean(4, 4)
    self.assertAlmostEqual(r["log_condition_number"], math.log(4), places=7)
    self.assertAlmostEqual(r["mean_log_singular_value"],
                           np.mean(np.log(sv)), places=7)
    self.assertAlmostEqual(r["resolution_floor"][0], 4.0 * 3 * EPS32,
                           places=12)
    self.assertIsNone(r["error_bound"])
    self.assertIsNone(r["sweeps"])
    self.assertEqual(r["singular_values"], sv.tolist())
    np.testing.assert_allclose(r["log_singular_values"], np.log(sv),
                               rtol=1e-8)
    self.assertEqual(spectrum_records.check_record(r, 2), [])

  def test_values_below_the_floor_are_not_reported(self):
    # 1e-9 is below 1 * 4 * eps32 = 4.8e-7 but above float64's floor.
    sv = np.array([[1.0, 0.5, 1e-3, 1e-9]])
    r = _dense(sv, (4, 4))
    self.assertEqual(r["num_resolved"], [3])
    for key in ("min_singular_value", "min_log_singular_value",
                "condition_number", "log_condition_number",
                "mean_log_singular_value"):
      self.assertIsNone(r[key], key)
    self.assertEqual(r["max_singular_value"], 1.0)
    # The middle two of 1e-9 (unmeasured), 1e-3, 0.5, 1 are measured.
    self.assertAlmostEqual(r["median_singular_value"], math.sqrt(5e-4))
    self.assertEqual(r["singular_values"], [[1.0, 0.5, 0.001, None]])
    self.assertEqual(r["log_singular_values"][0][3], None)
    # Not measured counts as 0 in the mean square.
    self.assertAlmostEqual(r["mean_sq_singular_value"],
                           (1 + 0.25 + 1e-6) / 4)
    r64 = _dense(sv, (4, 4), np.float64)
    self.assertEqual(r64["num_resolved"], [4])
    self.assertAlmostEqual(r64["min_singular_value"], 1e-9)
    self.assertEqual(spectrum_records.check_record(r, 1), [])

  def test_values_past_the_rank_bound_are_exact_zeros(self):
    sv = np.array([[2.0, 1.0, 3e-8, 1e-9], [1.0, 0.5, 0.25, 2e-8]])
    r = _dense(sv, (4, 4), rank_bound=[2, 3])
    self.assertEqual(r["num_exact_zeros"], [2, 1])
    self.assertEqual(r["num_resolved"], [4, 4])
    self.assertEqual(r["min_singular_value"], 0.0)
    self.assertIsNone(r["min_log_singular_value"])   # ln 0
    for key in ("condition_number", "log_condition_number",
                "mean_log_singular_value"):
      self.assertIsNone(r[key], key)
    self.assertAlmostEqual(r["mean_sq_singular_value"],
                           (4 + 1 + 1 + 0.25 + 0.0625) / 8)
    self.assertEqual(r["singular_values"],
                     [[2.0, 1.0, 0.0, 0.0], [1.0, 0.5, 0.25, 0.0]])
    self.assertEqual([row[2:] for row in r["log_singular_values"]],
                     [[None, None], [r["log_singular_values"][1][2], None]])
    self.assertEqual(spectrum_records.check_record(r, 2), [])

  def test_median_on_an_unresolved_value_is_none(self):
    r = _dense(np.array([[1.0, 1e-12, 1e-13]]), (3, 3))
    self.assertIsNone(r["median_singular_value"])
    self.assertIsNone(r["median_log_singular_value"])

  def test_flushed_to_zero_spectrum(self):
    r = _dense(np.zeros((2, 3)), (3, 3))
    self.assertEqual(r["num_resolved"], [0, 0])
    self.assertEqual(r["mean_sq_singular_value"], 0.0)
    self.assertIsNone(r["log_rms_gain"])
    self.assertIsNone(r["max_singular_value"])

  def test_non_finite_spectrum(self):
    r = _dense(np.array([[math.inf, 1.0], [math.nan, math.nan]]), (2, 2))
    self.assertFalse(r["finite"])
    for key in spectrum_records.STAT_KEYS:
      self.assertIsNone(r[key], key)
    self.assertEqual(r["singular_values"], [[None, None], [None, None]])
    self.assertEqual(spectrum_records.check_record(r, 2), [])

  def test_record_rounds_to_the_working_precision(self):
    value = float(np.float32(1 / 3))
    r = _dense(np.array([[value]]), (1, 1))
    self.assertEqual(np.float32(r["singular_values"][0][0]),
                     np.float32(value))
    self.assertLessEqual(len(repr(r["singular_values"][0][0])), 11)


class LogRecordTest(absltest.TestCase):

  def test_one_record_from_either_method(self):
    """The same spectrum given as dense values or as logs gives the same
    record: the same keys, the same values to rounding; only the method's
    uncertainty (floor or Jacobi bound) differs."""
    sv = np.array([[4.0, 2.0, 1.0], [2.0, 1.0, 0.5], [8.0, 3.0, 0.25]])
    dense = _dense(sv, (3, 3), np.float64)
    log = _log(np.log(sv), np.float64, error_bound=[1e-7] * 3,
               sweeps=[2, 3, 2])
    self.assertEqual(tuple(log), tuple(dense))
    self.assertEqual(log["error_bound"], [1e-7] * 3)
    self.assertEqual(log["sweeps"], [2, 3, 2])
    self.assertIsNone(log["resolution_floor"])
    for key in spectrum_records.RECORD_KEYS:
      if key in spectrum_records.UNCERTAINTY_KEYS:
        continue
      np.testing.assert_allclose(np.array(log[key], float),
                                 np.array(dense[key], float), rtol=1e-13,
                                 err_msg=key)

  def test_far_beyond_the_float_range(self):
    # e^-5000 and e^+5000: no overflow; the linear values and statistics
    # are null (not representable), the log ones are not, and the rms gain
    # is dominated by the largest value: (1/2) log((e^10000 + e^-10000)/2).
    r = _log([[5000.0, -5000.0]])
    self.assertTrue(r["finite"])
    self.assertAlmostEqual(r["log_rms_gain"], 5000 - 0.5 * math.log(2),
                           places=4)   # 9 significant digits (float32)
    self.assertAlmostEqual(r["log_condition_number"], 10000.0)
    self.assertEqual(r["singular_values"], [[None, None]])
    self.assertEqual(r["log_singular_values"], [[5000.0, -5000.0]])
    for key in ("mean_sq_singular_value", "min_singular_value",
                "max_singular_value", "condition_number"):
      self.assertIsNone(r[key], key)
    self.assertEqual(r["num_resolved"], [2])
    self.assertEqual(spectrum_records.check_record(r, 1), [])

  def test_linear_values_where_the_working_dtype_holds_them(self):
    # e^-100 = 3.7e-44: below float32's normal range, inside float64's.
    r32, r64 = _log([[0.0, -100.0]]), _log([[0.0, -100.0]], np.float64)
    self.assertEqual(r32["singular_values"], [[1.0, None]])
    self.assertEqual(r32["min_log_singular_value"], -100.0)
    self.assertIsNone(r32["min_singular_value"])
    self.assertAlmostEqual(r64["singular_values"][0][1], math.exp(-100))
    self.assertAlmostEqual(r64["min_singular_value"], math.exp(-100))

  def test_exact_zeros(self):
    log_sv = np.array([[1.0, -2.0, -np.inf, -np.inf],
                       [0.5, -np.inf, -np.inf, -np.inf]])
    r = _log(log_sv, layer=4)
    self.assertEqual(r["layer"], 4)
    self.assertEqual(r["num_exact_zeros"], [2, 3])
    self.assertEqual(r["num_resolved"], [4, 4])
    self.assertEqual(r["min_singular_value"], 0.0)
    self.assertIsNone(r["min_log_singular_value"])
    self.assertEqual(r["max_log_singular_value"], 1.0)
    self.assertEqual(r["median_singular_value"], 0.0)  # on a zero
    self.assertIsNone(r["median_log_singular_value"])
    self.assertIsNone(r["log_condition_number"])
    self.assertIsNone(r["mean_log_singular_value"])
    self.assertAlmostEqual(r["log_rms_gain"], 0.5 * math.log(
        (math.exp(2) + math.exp(-4) + math.exp(1)) / 8))
    self.assertEqual(r["log_singular_values"],
                     [[1.0, -2.0, None, None], [0.5, None, None, None]])
    self.assertEqual([row[1:] for row in r["singular_values"]],
                     [[r["singular_values"][0][1], 0.0, 0.0],
                      [0.0, 0.0, 0.0]])
    self.assertEqual(spectrum_records.check_record(r, 2), [])

  def test_all_zero_and_non_finite(self):
    zero = _log(np.full((1, 2), -np.inf))
    self.assertTrue(zero["finite"])
    self.assertIsNone(zero["log_rms_gain"])  # log 0; JSON has no -inf
    self.assertEqual(zero["mean_sq_singular_value"], 0.0)
    self.assertEqual(zero["max_singular_value"], 0.0)
    self.assertEqual(zero["num_exact_zeros"], [2])
    bad = _log(np.array([[np.nan, 1.0]]))
    self.assertFalse(bad["finite"])
    for key in spectrum_records.STAT_KEYS:
      self.assertIsNone(bad[key], key)

  def test_json_float(self):
    self.assertIsNone(spectrum_records.json_float(np.inf, np.float32))
    self.assertIsNone(spectrum_records.json_float(np.nan, np.float64))
    self.assertEqual(spectrum_records.json_float(np.float32(1 / 3),
                                                 np.float32), 0.333333343)


def _body(method="dense", layers=(1, 2), depth=2, lyapunov=None):
  """A results body of ``depth`` layers and 2 inputs of 3 values."""
  sv = np.array([[2.0, 1.0, 0.5], [1.0, 0.5, 0.25]])
  records = {l: _dense(sv ** l, (3, 3), layer=l) for l in range(1, depth + 1)}
  return {"convention": "", "dtype_eps": EPS32, "method": method,
          "method_reason": "requested",
          "layers": [records[l] for l in layers],
          "per_layer": [_dense(sv, (3, 3), layer=l)
                        for l in range(1, depth + 1)],
          "input_output": records[depth], "lyapunov": lyapunov}


class CheckResultsTest(absltest.TestCase):

  def test_a_complete_body_passes(self):
    self.assertEqual(spectrum_records.check_results(_body()), [])
    self.assertEqual(spectrum_records.check_results(_body(layers=(2,)),
                                                    layers=[2]), [])

  def test_problems_are_named(self):
    def problems(body, **kw):
      return "; ".join(spectrum_records.check_results(body, **kw))

    self.assertIn("layers holds layers [2], expected [1, 2]",
                  problems(_body(layers=(2,))))
    self.assertIn("lyapunov is null under method qr",
                  problems(_body(method="qr")))
    self.assertIn("missing keys ['lyapunov']",
                  problems({k: v for k, v in _body().items()
                            if k != "lyapunov"}))
    body = _body()
    del body["layers"][0]["log_rms_gain"]
    self.assertIn("layers[0] misses keys ['log_rms_gain']", problems(body))
    body = _body()
    body["per_layer"][1]["singular_values"][1] = [1.0, 0.5]
    self.assertIn("per_layer[1].singular_values[1] is not a list of 3",
                  problems(body))
    body = _body()
    body["input_output"]["num_exact_zeros"] = [1, 0]
    self.assertIn("input 0 has 0 zeros in singular_values, num_exact_zeros "
                  "says 1", problems(body))
    self.assertIn("not a list of 3 inputs",
                  problems(_body(), num_inputs=3))
    body = _body()
    body["per_layer"] = body["per_layer"][:1]
    self.assertIn("input_output is layer 2, not 1", problems(body))


if __name__ == "__main__":
  absltest.main()
