"""Tests of the lanczos method: vgrad.probes.block_lanczos, its records
(vgrad.studies.lanczos_spectra) and the SLQ bracket of its figure.

Facts checked, each able to fail:
  * ``k = R`` Golub-Kahan steps give every singular value (float64: within
    ``1e-10 ||J||`` of a float64 SVD) through each program (any-shape list,
    one-shape list, scanned Blocks), for square, wide and tall blocks;
  * every value a record reports lies within its ``error_bound`` (nats) of
    the float64 singular value at its place, at the 48-step default on a
    wider net (the residual bound plus the products' rounding);
  * a delta-orthogonal linear CNN (an exact isometry) has every singular
    value 1: bidiagonalisation breaks down at once and restarts, and the
    record says max = min = 1, condition number 1, rms gain 1 exactly;
  * the rms-gain estimate is Hutchinson's: within 4 standard errors of the
    exact ``tr(J^T J) / R`` (a fixed seed; 4 s.e. fail with p < 1e-4);
  * the Chebyshev-Markov-Stieltjes bracket of the figure contains the start
    vector's exact spectral distribution at every point.
"""

import dataclasses

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np

from vgrad.io import spectrum_records
from vgrad.nn import zoo
from vgrad.plots import spectrum_plots
from vgrad.probes import block_lanczos
from vgrad.probes import blocks as blocks_lib
from vgrad.probes import matrix_free
from vgrad.studies import block_spectra
from vgrad.studies import lanczos_spectra
from vgrad.studies import spectrum_study


def _tanh_blocks(shapes, seed=0, gain=1.2):
  """``x -> tanh(W x)`` blocks of the given ``(n_out, n_in)`` (NumPy
  weights, float64)."""
  rng = np.random.default_rng(seed)
  weights = [gain * rng.standard_normal(s) / np.sqrt(s[1]) for s in shapes]
  # NumPy weights, made JAX arrays where traced: float64 under x64.
  return [lambda x, w=w: jnp.tanh(jnp.asarray(w) @ x) for w in weights], \
      weights


def _dense_reference(weights, x):
  """Float64 own and cumulative singular values of tanh(W x) blocks."""
  own, cumulative, product = [], [], None
  for w in weights:
    h = w @ x
    jac = (1 - np.tanh(h) ** 2)[:, None] * w
    x = np.tanh(h)
    own.append(np.linalg.svd(jac, compute_uv=False))
    product = jac if product is None else jac @ product
    cumulative.append(np.linalg.svd(product, compute_uv=False))
  return own, cumulative


class FullSpectrumTest(absltest.TestCase):
  """k = R steps: the whole spectrum, through every program."""

  def _check(self, blocks, weights, xs, layers, steps=64):
    with jax.enable_x64(True):
      result = jax.device_get(block_lanczos.lanczos_spectra(
          blocks, jnp.asarray(xs), jax.random.key(1), layers, steps))
    for b, x in enumerate(xs):
      own, cumulative = _dense_reference(weights, x)
      for l, ritz in enumerate(result.own):
        np.testing.assert_allclose(ritz.singular_values[b], own[l],
                                   atol=1e-10 * own[l][0])
      for t, l in enumerate(result.layers):
        want = cumulative[l - 1]
        got = result.cumulative[t].singular_values[b]
        np.testing.assert_allclose(got, want, atol=1e-10 * want[0])
        chex.assert_trees_all_close(
            result.cumulative[t].weights[b].sum(), 1.0, atol=1e-12)

  def test_any_shape_list_square_wide_and_tall(self):
    # Own Jacobians tall, square and wide; products tall (12 x 10) and
    # wide (7 x 10): each bidiagonalisation is one more loop to compile,
    # and these three blocks have every kind.
    shapes = [(12, 10), (12, 12), (7, 12)]
    blocks, weights = _tanh_blocks(shapes)
    xs = np.random.default_rng(2).standard_normal((2, 10))
    # Every product through the blocks: J_{<=1} = J_1 is own[0], checked
    # by the same _ritz on the same block (a target 1 would add another
    # bidiagonalisation to the program, not a check).
    self._check(blocks, weights, xs, (2, 3))

  def test_one_shape_list_and_scanned_blocks_agree(self):
    blocks, weights = _tanh_blocks([(10, 10)] * 4, seed=3)
    xs = np.random.default_rng(4).standard_normal((2, 10))
    self._check(blocks, weights, xs, (2, 4))
    with jax.enable_x64(True):
      stacked = blocks_lib.Blocks(lambda w, x: jnp.tanh(w @ x),
                                  jnp.asarray(np.stack(weights)))
    self._check(stacked, weights, xs, (2, 4))


class RecordTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.blocks, cls.weights = _tanh_blocks([(96, 96)] * 5, seed=5)
    cls.xs = np.random.default_rng(6).standard_normal((3, 96))
    with jax.enable_x64(True):
      cls.body = block_spectra.jacobian_spectra(
          cls.blocks, jnp.asarray(cls.xs), method="lanczos")

  def test_schema_and_what_is_absent(self):
    self.assertEqual(spectrum_records.check_results(self.body), [])
    self.assertEqual(self.body["method"], "lanczos")
    self.assertIsNone(self.body["lyapunov"])
    io = self.body["input_output"]
    # The mean square needs every value: absent, its estimate under slq.
    self.assertIsNone(io["mean_sq_singular_value"])
    self.assertIsNone(io["log_rms_gain"])
    self.assertIsNotNone(io["slq"]["log_rms_gain"])
    self.assertEqual(io["slq"]["steps"], block_lanczos.DEFAULT_STEPS)
    # The values between the extremes are not computed: null, not zero.
    for row in io["singular_values"]:
      self.assertTrue(all(v is None for v in row[5:-5]))
      self.assertNotIn(0.0, row)

  def test_every_reported_value_within_its_bound(self):
    reported = 0
    for b, x in enumerate(self.xs):
      own, cumulative = _dense_reference(self.weights, x)
      for records, truth in ((self.body["per_layer"], own),
                             (self.body["layers"], cumulative)):
        for record in records:
          want = np.log(truth[record["layer"] - 1])
          bound = record["error_bound"][b]
          for i, v in enumerate(record["log_singular_values"][b]):
            if v is not None:
              reported += 1
              self.assertLessEqual(abs(v - want[i]), bound + 1e-12,
                                   (record["layer"], i))
    self.assertGreater(reported, 100)

  def test_rms_gain_estimate_is_hutchinson(self):
    for record in self.body["layers"]:
      truth = [np.mean(_dense_reference(self.weights, x)[1][
          record["layer"] - 1] ** 2) for x in self.xs]
      exact = 0.5 * np.log(np.mean(truth))
      slq = record["slq"]
      self.assertLessEqual(abs(slq["log_rms_gain"] - exact),
                           4 * slq["log_rms_gain_error"] + 1e-12)


class IsometryTest(absltest.TestCase):

  def test_delta_orthogonal_linear_cnn_has_every_value_one(self):
    example = zoo.build("cnn", jax.random.key(0), depth=3, width=2, size=5)
    blocks = blocks_lib.flax_blocks(*example)
    # Any input will do (the net is linear): NumPy's, not a compiled draw.
    xs = np.random.default_rng(1).standard_normal(
        (2,) + example.x.shape).astype(np.float32)
    body = block_spectra.jacobian_spectra(blocks, xs, method="lanczos",
                                          lanczos_steps=10)
    self.assertEqual(spectrum_records.check_results(body), [])
    for record in body["layers"] + body["per_layer"]:
      self.assertEqual(record["num_resolved"], [10, 10])
      self.assertAlmostEqual(record["max_singular_value"], 1.0, places=5)
      self.assertAlmostEqual(record["min_singular_value"], 1.0, places=5)
      self.assertAlmostEqual(record["log_condition_number"], 0.0, places=5)
      self.assertAlmostEqual(record["slq"]["log_rms_gain"], 0.0, places=5)


class MLPTest(absltest.TestCase):

  def test_mlp_study_full_steps_equal_dense(self):
    """vgrad's MLP through the scanned-blocks path: at k = R = width every
    value is computed and agrees with the dense probe's to float32
    rounding; both records follow the schema."""
    config = spectrum_study.SpectrumConfig(act="tanh", depth=4, width=8,
                                           num_inputs=2, method="lanczos")
    lanczos = spectrum_study.run_study(config)
    dense = spectrum_study.run_study(
        dataclasses.replace(config, method="dense"))
    for key in ("layers", "per_layer"):
      for got, want in zip(lanczos[key], dense[key]):
        self.assertEqual(got["slq"]["steps"], 8)
        want = np.array(want["singular_values"], np.float64)
        np.testing.assert_allclose(
            np.array(got["singular_values"], np.float64), want, rtol=2e-5,
            atol=8 * np.finfo(np.float32).eps * np.nanmax(want))
    body = {k: lanczos[k] for k in spectrum_records.BODY_KEYS}
    self.assertEqual(spectrum_records.check_results(body), [])
    self.assertIn("SLQ estimate", spectrum_study.verdict(lanczos))


class BracketTest(absltest.TestCase):

  def test_bracket_holds_the_exact_spectral_distribution(self):
    """For J = diag(s) and a unit start u, the spectral measure of J^T J
    is sum_j u_j^2 delta(s_j^2): the bracket drawn from k < n Gauss nodes
    must contain its distribution function everywhere."""
    rng = np.random.default_rng(7)
    s = np.exp(rng.uniform(-6, 0, 40))
    u = rng.standard_normal(40)
    u /= np.linalg.norm(u)

    def bracket_ritz(op, start):
      gk = matrix_free.golub_kahan(lambda v: op * v, lambda v: op * v,
                                   start, 6)
      return matrix_free.ritz_decomposition(gk.alphas, gk.betas)

    # One jitted program (op by op, every eager op compiles its own).
    with jax.enable_x64(True):
      ritz = jax.device_get(jax.jit(bracket_ritz)(s, u))
    grid = np.linspace(-7, 0.5, 500) / 1.0
    gauss, lower, upper = spectrum_plots.slq_distribution(
        np.log10(ritz.singular_values)[None], ritz.weights[None], grid)
    exact = np.array([np.sum(u[np.log10(s) <= g] ** 2) for g in grid])
    self.assertTrue(np.all(lower <= exact + 1e-9))
    self.assertTrue(np.all(exact <= upper + 1e-9))
    # Not vacuous: the bracket is narrow somewhere and the rule moves.
    self.assertLess(np.min(upper - lower), 0.3)
    self.assertGreater(np.ptp(gauss), 0.9)


class PlacementTest(absltest.TestCase):

  def test_extremes_and_full(self):
    theta = np.zeros((1, 48))
    columns, positions = lanczos_spectra.placed(theta, 256)
    np.testing.assert_array_equal(columns, [0, 1, 2, 3, 4, 43, 44, 45, 46,
                                            47])
    np.testing.assert_array_equal(positions[5:], [251, 252, 253, 254, 255])
    columns, positions = lanczos_spectra.placed(np.zeros((1, 8)), 8)
    np.testing.assert_array_equal(positions, np.arange(8))


if __name__ == "__main__":
  absltest.main()
