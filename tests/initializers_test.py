"""Tests for vgrad.nn.initializers: statistics against derived bounds."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import initializers
from vgrad.nn import models
from vgrad.nn import zoo
from vgrad.probes import blocks as blocks_lib
from vgrad.probes import jacobian

SHAPE = (400, 300)  # n = 120 000 entries
N = SHAPE[0] * SHAPE[1]
# For n i.i.d. entries of variance s^2 and kurtosis K, the sample variance has
# relative standard deviation sqrt((K - 1) / n) (K = 3 Gaussian, 9/5 uniform)
# and the sample mean standard deviation s / sqrt(n). Six standard
# deviations: a correct initializer fails with probability < 1e-8.
VAR_RTOL = 6 * math.sqrt(2 / N)
MEAN_ATOL_IN_STD = 6 / math.sqrt(N)


def _draw(name, shape=SHAPE, sigma_w2=None, seed=0, dtype=jnp.float32,
          jit=False):
  """A draw as float64 NumPy. ``jit``: one compiled program for the whole
  initializer (the orthogonal ones: a draw, a QR and a sign fix) instead of
  an op-by-op compilation of each of its operations for this shape."""
  init = initializers.get_initializer(name, sigma_w2)
  if jit:
    init = jax.jit(init, static_argnums=(1, 2))
  return np.asarray(init(jax.random.key(seed), shape, dtype), np.float64)


class InitializersTest(parameterized.TestCase):

  @parameterized.parameters(*sorted(initializers.INITIALIZERS))
  def test_every_entry_has_shape_dtype_and_variance(self, name):
    w = _draw(name)
    chex.assert_shape(w, SHAPE)
    chex.assert_tree_all_finite(w)
    expected = initializers.weight_variance(name, *SHAPE)
    if expected == 0:
      np.testing.assert_array_equal(w, 0.0)
      return
    self.assertAlmostEqual(w.var() / expected, 1.0, delta=VAR_RTOL)
    self.assertLess(abs(w.mean()), MEAN_ATOL_IN_STD * math.sqrt(expected))

  @parameterized.parameters(("uniform", 1.0), ("lecun_uniform", 3 / 400),
                            ("standard_uniform", 1 / 400),
                            ("glorot_uniform", 6 / 700), ("he_uniform", 6 / 400))
  def test_uniform_limits(self, name, limit_sq):
    w = _draw(name)
    limit = math.sqrt(limit_sq)
    self.assertLessEqual(np.abs(w).max(), limit)
    # The largest of 120 000 uniform draws is within 1e-3 of the limit
    # with probability 1 - exp(-120) .
    self.assertGreater(np.abs(w).max(), limit * (1 - 1e-3))

  @parameterized.parameters(((64, 64), 1.0), ((100, 40), 1.69),
                            ((40, 100), 0.49))
  def test_orthogonal_is_orthogonal(self, shape, sigma_w2):
    """W = sqrt(sigma_w2) Q: the Gram matrix is sigma_w2 I."""
    with jax.enable_x64(True):
      w = _draw("orthogonal", shape, sigma_w2=sigma_w2, dtype=jnp.float64,
                jit=True)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, sigma_w2 * np.eye(min(shape)),
                               atol=1e-12)
    w32 = _draw("orthogonal", shape, sigma_w2=sigma_w2, jit=True)
    gram = w32.T @ w32 if shape[0] >= shape[1] else w32 @ w32.T
    np.testing.assert_allclose(gram, sigma_w2 * np.eye(min(shape)),
                               atol=1e-5)

  def test_orthogonal_is_haar(self):
    # Haar measure: E[Q_11] = 0 and E[Q_11^2] = 1/n; the sign fix matters
    # (without it, QR's diagonal convention biases Q_11 positive).
    n, draws = 8, 4000
    init = initializers.get_initializer("orthogonal")
    # One compiled program for the keys and the vmapped draws.
    q11 = np.asarray(jax.jit(lambda: jax.vmap(
        lambda k: init(k, (n, n), jnp.float32))(
            jax.random.split(jax.random.key(1), draws)))()[:, 0, 0],
                     np.float64)
    std = math.sqrt(1 / n)
    self.assertLess(abs(q11.mean()), 6 * std / math.sqrt(draws))
    self.assertAlmostEqual(np.mean(q11 ** 2) * n, 1.0,
                           delta=6 * math.sqrt(2 / draws))

  @parameterized.parameters(0.25, 1.0, 4.0)
  def test_gaussian_sigma_w2_is_the_variance_times_fan_in(self, sigma_w2):
    w = _draw("gaussian", sigma_w2=sigma_w2)
    self.assertAlmostEqual(w.var() * SHAPE[0] / sigma_w2, 1.0,
                           delta=VAR_RTOL)
    self.assertEqual(initializers.weight_variance("gaussian", *SHAPE,
                                                  sigma_w2=sigma_w2),
                     sigma_w2 / SHAPE[0])

  def test_sigma_w2_is_rejected_where_the_scale_is_fixed(self):
    with self.assertRaisesRegex(ValueError, "sigma_w2 applies only to init "
                                r"delta_orthogonal\|gaussian\|orthogonal"):
      initializers.get_initializer("glorot_uniform", sigma_w2=1.0)

  def test_lsuv_is_a_data_dependent_unit_gain_orthogonal_pre_init(self):
    self.assertLessEqual(initializers.DATA_DEPENDENT,
                         set(initializers.INITIALIZERS))
    self.assertIn("lsuv", initializers.DATA_DEPENDENT)
    self.assertFalse(initializers.DATA_DEPENDENT
                     & initializers.TAKES_SIGMA_W2)
    with jax.enable_x64(True):
      w = _draw("lsuv", (64, 64), dtype=jnp.float64, jit=True)
    np.testing.assert_allclose(w.T @ w, np.eye(64), atol=1e-12)
    self.assertEqual(initializers.weight_variance("lsuv", 100, 40), 1 / 100)
    with self.assertRaisesRegex(ValueError, "sets its own scale from data"):
      initializers.get_initializer("lsuv", sigma_w2=1.0)

  def test_negative_variance_is_rejected(self):
    with self.assertRaisesRegex(ValueError, "sigma_w2 must be"):
      initializers.get_initializer("gaussian", sigma_w2=-1.0)
    with self.assertRaisesRegex(ValueError, "sigma_b2 must be"):
      initializers.get_bias_initializer(-0.1)

  def test_unknown_name_lists_valid_names(self):
    with self.assertRaisesRegex(ValueError, "valid names: delta_orthogonal, gaussian, "
                                "glorot_normal"):
      initializers.get_initializer("xavier")

  def test_bias_is_zero_unless_sigma_b2(self):
    key = jax.random.key(0)
    np.testing.assert_array_equal(
        initializers.get_bias_initializer(None)(key, (1000,)), 0.0)
    np.testing.assert_array_equal(
        initializers.get_bias_initializer(0.0)(key, (1000,)), 0.0)
    b = np.asarray(initializers.get_bias_initializer(0.09)(key, (N,)))
    self.assertAlmostEqual(b.var() / 0.09, 1.0, delta=VAR_RTOL)


class DeltaOrthogonalTest(absltest.TestCase):
  """Xiao et al. (2018)'s delta-orthogonal kernels, dense and convolutional,
  in the one registry, isometric through the probes (issue 15, item 3)."""

  def test_dense_kernel_is_the_orthogonal_one(self):
    key = jax.random.key(3)
    for shape in ((5, 7), (7, 5)):
      np.testing.assert_array_equal(
          initializers.get_initializer("delta_orthogonal", 2.0)(key, shape),
          initializers.get_initializer("orthogonal", 2.0)(key, shape))

  def test_conv_kernel_has_one_orthogonal_centre_tap(self):
    kernel = np.array(initializers.get_initializer("delta_orthogonal")(
        jax.random.key(0), (3, 5, 4, 6)))
    centre = kernel[1, 2]
    np.testing.assert_allclose(centre @ centre.T, np.eye(4), atol=1e-6)
    kernel[1, 2] = 0
    self.assertEqual(np.count_nonzero(kernel), 0)
    for shape in ((2, 3, 4, 6), (3, 3, 6, 4)):
      with self.assertRaisesRegex(ValueError, "odd kernel sizes and c_in"):
        initializers.get_initializer("delta_orthogonal")(jax.random.key(0),
                                                         shape)
    self.assertIs(zoo.CONV_INITIALIZERS["delta_orthogonal"],
                  initializers.delta_orthogonal)

  def test_linear_nets_are_isometries_through_the_probes(self):
    # Dense: every singular value of every J_{<=l} is 1.
    model = models.make_mlp(depth=6, width=8, activation="linear",
                            init="delta_orthogonal")
    x = jax.random.normal(jax.random.key(1), (2, 8))
    params = model.init(jax.random.key(2), x[:1])
    spectra = jacobian.make_spectrum_probe(model)(params, x)
    np.testing.assert_allclose(spectra.cumulative, 1.0, atol=1e-5)
    # Convolutional: the zoo's circular CNN with the registry's kernels.
    example = zoo.build("cnn", jax.random.key(4), depth=3, width=4,
                        init="delta_orthogonal")
    cut = blocks_lib.flax_blocks(*example)
    dense = blocks_lib.dense_spectra(cut, example.x[None])
    for values in dense.cumulative:
      np.testing.assert_allclose(values, 1.0, atol=1e-5)


if __name__ == "__main__":
  absltest.main()
