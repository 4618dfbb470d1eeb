"""Tests of vgrad.probes.lapack_jacobi (LAPACK's Jacobi SVD on the host)
and of the exact probe's final stage that uses it
(vgrad.probes.log_spectrum.finish)."""

from unittest import mock

from absl.testing import absltest
import chex
import jax
import numpy as np

from vgrad.nn import lsuv
from vgrad.probes import lapack_jacobi
from vgrad.probes import log_spectrum
from vgrad.studies import spectrum_study


def _graded(k=40, n=40, rate=2.0, seed=0):
  """``T = diag(e^{-rate i}) F`` (``F`` upper triangular, unit diagonal,
  well conditioned): singular values near ``e^{-rate i}``, spanning
  ``e^{rate k}``."""
  rng = np.random.default_rng(seed)
  f = np.triu(rng.standard_normal((k, n)) / np.sqrt(n), 1) + np.eye(k, n)
  return np.exp(-rate * np.arange(k))[:, None] * f


def _graded_jacobi(t):
  """Log singular values of ``t`` by vgrad's own graded QR steps and
  Jacobi sweeps (no SVD anywhere): the independent reference."""
  exponents = np.frexp(np.linalg.norm(t, axis=1))[1].astype(np.int32)
  m, e = np.ldexp(t, -exponents[:, None]), exponents
  with jax.enable_x64(True):
    log_sv, bound, _ = jax.device_get(jax.jit(
        lambda m, e: log_spectrum._jacobi(m, e, t.shape[0], 30, 1e-15,
                                          use_svd=False))(m, e))
  return np.asarray(log_sv), float(bound)


def _rows_log_norms(v, t):
  """Sorted log row norms of ``V^T T`` (the singular values once the rows
  are orthogonal) and the largest cosine between two rows."""
  rows = v.T @ t
  norms = np.linalg.norm(rows, axis=1)
  unit = rows / norms[:, None]
  cosines = np.abs(unit @ unit.T - np.eye(len(norms)))
  return -np.sort(-np.log(norms)), float(cosines.max())


@absltest.skipUnless(lapack_jacobi.available(), "SciPy without dgejsv")
class LeftSingularVectorsTest(absltest.TestCase):

  def test_equals_numpy_on_a_well_scaled_matrix(self):
    rng = np.random.default_rng(1)
    t = rng.standard_normal((6, 9))
    v = lapack_jacobi.left_singular_vectors(t)
    chex.assert_shape(v, (6, 6))
    np.testing.assert_allclose(v.T @ v, np.eye(6), atol=1e-14)
    log_sv, cosine = _rows_log_norms(v, t)
    np.testing.assert_allclose(
        log_sv, np.log(np.linalg.svd(t, compute_uv=False)), atol=1e-13)
    self.assertLess(cosine, 1e-14)

  def test_keeps_every_value_of_a_matrix_graded_past_float64(self):
    """Values spanning e^80 (float64 resolves e^36): the rows of ``V^T T``
    are orthogonal (to the rounding of a plain product) and their norms
    equal the graded Jacobi's values to
    1e-12 relative, down to the smallest; with numpy's ``U`` (an SVD
    accurate relative to the largest value) they are not."""
    t = _graded()
    reference, bound = _graded_jacobi(t)
    self.assertLess(bound, 1e-12)
    log_sv, cosine = _rows_log_norms(lapack_jacobi.left_singular_vectors(t),
                                     t)
    np.testing.assert_allclose(log_sv, reference, rtol=0, atol=1e-12)
    self.assertLess(cosine, 1e-10)
    # The rotation the first stage takes from LAPACK's divide-and-conquer
    # SVD loses the grading: its rows of U^T T are neither orthogonal nor
    # of the right norms.
    log_sv, cosine = _rows_log_norms(np.linalg.svd(t)[0], t)
    self.assertGreater(np.abs(log_sv - reference).max(), 1.0)
    self.assertGreater(cosine, 0.5)

  def test_a_tall_matrix_has_no_basis(self):
    self.assertIsNone(lapack_jacobi.left_singular_vectors(np.ones((5, 3))))

  def test_graded_bases_only_where_the_stage_applies(self):
    t = _graded(k=12, n=12, rate=1.0)
    m, e = np.frexp(t)
    exponents = e.max(axis=1)
    m = np.ldexp(t, -exponents[:, None])
    ms = np.stack([m, m, m, m, np.where(np.eye(12), np.nan, m)])
    es = np.stack([exponents] * 5).astype(np.int32)
    es[2, -1] -= lapack_jacobi.MAX_EXPONENT_SPAN + 5  # beyond the range
    ranks = np.array([12, 11, 12, 12, 12])             # 1: rank deficient
    for workers in (1, 2):
      bases, usable = lapack_jacobi.graded_bases(ms, es, ranks, workers)
      chex.assert_shape(bases, (5, 12, 12))
      np.testing.assert_array_equal(usable, [True, False, False, True, False])
      np.testing.assert_array_equal(bases[1], np.eye(12))
      np.testing.assert_array_equal(bases[0], bases[3])
      log_sv, _ = _rows_log_norms(bases[0], t)
      np.testing.assert_allclose(
          log_sv, np.log(np.linalg.svd(t, compute_uv=False)), atol=1e-12)


@absltest.skipUnless(lapack_jacobi.available(), "SciPy without dgejsv")
class FinishTest(absltest.TestCase):
  """The exact probe of a sigmoid net, width 64, depth 40 (values spread
  over e^100 by layer 40): the LAPACK SVD stage loses the grading at the
  deep targets, where float64 Jacobi sweeps ran; with the Jacobi SVD
  stage, routed directly (spread above ``JACOBI_SVD_SPREAD``) or after the
  first stage failed, no sweep runs and every value is the same to within
  the two certificates."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    config = spectrum_study.SpectrumConfig(act="sigmoid", depth=40, width=64,
                                           num_inputs=2)
    model = spectrum_study.build_model(config)
    init_key, data_key = jax.random.split(jax.random.key(0))
    xs = jax.random.normal(data_key, (2, 64))
    params = lsuv.initialize(model, init_key, xs)
    cls.probe = log_spectrum.make_log_spectrum_probe(
        model, (10, 20, 30, 40), dtype=np.float64)
    with jax.enable_x64(True):
      cls.forward = jax.device_get(cls.probe.forward(params, xs))
      with mock.patch.object(lapack_jacobi, "available", lambda: False):
        cls.swept = jax.device_get(cls.probe.finish(cls.forward))

  def finish(self, spread):
    with jax.enable_x64(True), mock.patch.object(
        log_spectrum, "JACOBI_SVD_SPREAD", spread):
      return jax.device_get(self.probe.finish(self.forward))

  def test_sweeps_were_needed_without_the_stage(self):
    self.assertGreater(int(self.swept.sweeps.max()), 0)
    spread = np.ptp(self.forward.snapshot[6][:, -1], axis=-1)
    self.assertTrue(np.all(spread > log_spectrum.JACOBI_SVD_SPREAD))

  def test_direct_and_fallback_routes_agree_with_the_sweeps(self):
    for spread in (log_spectrum.JACOBI_SVD_SPREAD, np.inf):
      with self.subTest(spread=spread):
        out = self.finish(spread)
        np.testing.assert_array_equal(out.sweeps, 0)
        self.assertLess(float(out.error_bound.max()), 1e-8)
        tolerance = (out.error_bound + self.swept.error_bound)[..., None]
        difference = np.abs(out.log_singular_values
                            - self.swept.log_singular_values)
        self.assertTrue(np.all(difference <= tolerance + 1e-12))


if __name__ == "__main__":
  absltest.main()
