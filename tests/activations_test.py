"""Tests for vgrad.nn.activations: every entry, derivatives, known constants."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import activations

# The base activations; the transformed dks_*/tat_* entries need a depth
# (tests/kernel_shaping_test.py builds each).
BASE = sorted(set(activations.ACTIVATIONS) - set(activations.TRANSFORMED))
ELEMENTWISE = sorted(set(BASE) - {"maxout"})
# Points spanning both sides of every kink, away from the kinks themselves
# (NumPy: no eager op compiled to build them).
_GRID = np.concatenate([np.linspace(-6.0, 6.0, 97), [-0.3, 0.7]])
_GRID = _GRID[(np.abs(np.abs(_GRID) - 1.0) > 1e-3) & (np.abs(_GRID) > 1e-3)]
GRID = jnp.asarray(_GRID, jnp.float32)


def _points(values) -> jax.Array:
  """``values`` repeated to GRID's length: every eager op of the tests then
  runs at one shape and compiles once per activation, not once per test."""
  return jnp.asarray(np.resize(np.asarray(values, np.float32), GRID.shape))


def _gauss_hermite_mean(f, n=80):
  """E[f(z)] for z ~ N(0, 1) by Gauss-Hermite quadrature."""
  x, w = np.polynomial.hermite_e.hermegauss(n)
  return float(np.sum(w * f(x)) / np.sqrt(2 * np.pi))


class ActivationsTest(parameterized.TestCase):

  @parameterized.parameters(*BASE)
  def test_every_entry_builds_and_is_finite(self, name):
    act = activations.get_activation(name)
    self.assertEqual(act.name, name)
    x = _points(np.linspace(-50.0, 50.0, GRID.shape[0]))
    y = act.fn(jnp.asarray(np.repeat(np.asarray(x)[:, None], act.pieces, 1))
               if act.is_maxout else x)
    chex.assert_shape(y, GRID.shape)
    chex.assert_tree_all_finite(y)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*ELEMENTWISE)
  def test_closed_form_derivative_matches_autodiff(self, name):
    act = activations.get_activation(name)
    closed = self.variant(act.deriv)(GRID)
    auto = self.variant(jax.vmap(jax.grad(act.fn)))(GRID)
    chex.assert_trees_all_close(closed, auto, rtol=1e-5, atol=1e-6)

  @parameterized.parameters(*ELEMENTWISE)
  def test_autodiff_is_finite_for_huge_inputs(self, name):
    act = activations.get_activation(name)
    x = _points([-1e4, -100.0, 100.0, 1e4])
    chex.assert_tree_all_finite(jax.vmap(jax.grad(act.fn))(x))
    chex.assert_tree_all_finite(act.deriv(x))

  def test_sigmoid_derivative_is_at_most_one_quarter(self):
    # The 1601 points in chunks of GRID's length (whose eager ops are
    # compiled already), the last chunk padded with repeats.
    x = np.linspace(-8, 8, 1601)
    n = GRID.shape[0]
    x = np.resize(x, -(-x.size // n) * n).reshape(-1, n)
    deriv = activations.get_activation("sigmoid").deriv
    d = np.concatenate([np.asarray(deriv(jnp.asarray(c, jnp.float32)))
                        for c in x])
    self.assertAlmostEqual(float(d.max()), 0.25, places=6)

  @parameterized.parameters(0.01, 0.1)
  def test_leaky_relu_slope(self, slope):
    act = activations.get_activation("leaky_relu", slope=slope)
    chex.assert_trees_all_close(act.fn(jnp.array([-2.0, 3.0])),
                                jnp.array([-2.0 * slope, 3.0]))
    self.assertEqual(act.params, (("slope", slope),))

  def test_selu_is_self_normalising(self):
    # Klambauer et al. 2017: for z ~ N(0, 1), E selu(z) = 0, E selu(z)^2 = 1.
    selu = activations.get_activation("selu")
    fn = lambda x: np.asarray(selu.fn(jnp.asarray(x, jnp.float32)), float)
    self.assertAlmostEqual(_gauss_hermite_mean(fn), 0.0, delta=2e-3)
    self.assertAlmostEqual(_gauss_hermite_mean(lambda x: fn(x) ** 2), 1.0,
                           delta=2e-3)

  def test_gelu_is_exact(self):
    gelu = activations.get_activation("gelu")
    chex.assert_trees_all_close(gelu.fn(GRID),
                                jax.nn.gelu(GRID, approximate=False),
                                rtol=1e-5, atol=1e-6)

  def test_maxout_takes_the_largest_piece(self):
    act = activations.get_activation("maxout", k=3)
    self.assertTrue(act.is_maxout)
    self.assertEqual(act.pieces, 3)
    h = jnp.array([[1.0, -2.0, 0.5], [-1.0, -3.0, -0.5]])
    chex.assert_trees_all_close(act.fn(h), jnp.array([1.0, -0.5]))

  @parameterized.parameters(1, 0, 2.5)
  def test_maxout_needs_at_least_two_pieces(self, k):
    with self.assertRaisesRegex(ValueError, "k >= 2"):
      activations.get_activation("maxout", k=k)

  def test_unknown_name_lists_valid_names(self):
    with self.assertRaisesRegex(ValueError,
                                "valid names: dks_leaky_relu, dks_softplus, "
                                "dks_tanh, elu, erf, gelu"):
      activations.get_activation("sigmod")

  def test_unknown_parameter_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "takes no parameter"):
      activations.get_activation("tanh", slope=0.1)

  def test_invalid_parameters(self):
    with self.assertRaises(ValueError):
      activations.get_activation("leaky_relu", slope=-0.1)
    with self.assertRaises(ValueError):
      activations.get_activation("elu", alpha=0.0)


if __name__ == "__main__":
  absltest.main()
