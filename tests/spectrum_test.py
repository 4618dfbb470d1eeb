"""Tests for vgrad.probes.spectrum: the dense method's resolution floor."""

from absl.testing import absltest
import numpy as np

from vgrad.probes import spectrum

EPS32 = float(np.finfo(np.float32).eps)


class ResolutionFloorTest(absltest.TestCase):

  def test_floor_is_s_max_n_eps(self):
    sv = np.array([[4.0, 2.0, 1.0], [2.0, 1.0, 0.5]])
    np.testing.assert_allclose(spectrum.resolution_floor(sv, (3, 3),
                                                         np.float32),
                               [4.0 * 3 * EPS32, 2.0 * 3 * EPS32])
    self.assertTrue(spectrum.resolved_mask(sv, (3, 3), np.float32).all())

  def test_values_below_the_floor_are_not_measured(self):
    # 1e-9 is below 1 * 4 * eps32 = 4.8e-7 but above float64's floor.
    sv = np.array([[1.0, 0.5, 1e-3, 1e-9]])
    self.assertEqual(spectrum.resolved_mask(sv, (4, 4), np.float32).tolist(),
                     [[True, True, True, False]])
    self.assertTrue(spectrum.resolved_mask(sv, (4, 4), np.float64).all())
    # Below float32's smallest normal number: never measured.
    self.assertFalse(spectrum.resolved_mask(np.array([[1e-39]]), (1, 1),
                                            np.float32).any())

  def test_values_past_the_rank_bound_are_exact_zeros(self):
    sv = np.array([[2.0, 1.0, 3e-8, 1e-9], [1.0, 0.5, 0.25, 2e-8]])
    log_sv, measured, values, floor = spectrum.log_singular_values(
        sv, (4, 4), np.float32, rank_bound=[2, 3])
    self.assertTrue(measured.all())
    self.assertEqual(values.tolist(), [[2.0, 1.0, 0.0, 0.0],
                                       [1.0, 0.5, 0.25, 0.0]])
    self.assertEqual(np.isneginf(log_sv).sum(axis=1).tolist(), [2, 1])
    np.testing.assert_allclose(log_sv[:, :2], np.log(sv[:, :2]))
    np.testing.assert_allclose(floor, [2.0 * 4 * EPS32, 4 * EPS32])

  def test_non_finite_values_are_not_measured(self):
    sv = np.array([[np.inf, 1.0], [np.nan, np.nan]])
    self.assertFalse(spectrum.resolved_mask(sv, (2, 2), np.float32).any())


if __name__ == "__main__":
  absltest.main()
