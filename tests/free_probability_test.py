"""Tests for vgrad.theory.free_probability against exact results and measurement.

Exact checks: closed-form Gaussian moments of erf', ReLU's two-point law,
Marchenko-Pastur (L = 1) and Fuss-Catalan (linear Gaussian, depth L)
spectra, the closed-form S-transforms of linear and ReLU nets, and the
first two moments of the numerical density against the S-transform series.
Measured: the variance ratio and mean of the squared singular values of
real width-256 networks at the mean-field fixed point. Each tolerance is
derived in a comment next to it.
"""

import functools
import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrad.nn import activations
from vgrad.nn import models
from vgrad.probes import jacobian
from vgrad.theory import free_probability as fp
from vgrad.theory import meanfield
from vgrad.theory import quadrature

SIGMA_B2 = 0.05  # Bias variance of the critical tanh nets.


def _tanh_fixed_point(sigma_w2: float, sigma_b2: float) -> float:
  """q* of q -> sigma_w2 E[tanh(sqrt(q) z)^2] + sigma_b2 (Poole et al.)."""
  z, w = (np.asarray(a, np.float64)
          for a in quadrature.gauss_hermite(100, jnp.float32))
  q = 1.0
  for _ in range(300):  # A contraction with slope < 1 at these sigma_w2.
    q = sigma_w2 * w @ np.tanh(math.sqrt(q) * z) ** 2 + sigma_b2
  return q


@functools.cache
def _tanh_critical(sigma_b2: float = SIGMA_B2) -> tuple[float, float]:
  """(sigma_w2, q*) with chi = sigma_w2 E[tanh'(sqrt(q*) z)^2] = 1."""
  z, w = (np.asarray(a, np.float64)
          for a in quadrature.gauss_hermite(100, jnp.float32))
  lo, hi = 1.0, 3.0  # chi < 1 at sigma_w2 = 1, > 1 at 3.
  for _ in range(45):
    mid = (lo + hi) / 2
    q = _tanh_fixed_point(mid, sigma_b2)
    chi = mid * w @ (1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2
    lo, hi = (mid, hi) if chi < 1 else (lo, mid)
  return mid, _tanh_fixed_point(mid, sigma_b2)


def _network(name: str):
  """(activation, weights, sigma_w2, sigma_b2, q*) of the named test net."""
  if name.startswith("tanh"):
    sigma_w2, q = _tanh_critical()
    return "tanh", name.split("_")[1], sigma_w2, SIGMA_B2, q
  act, weights = name.split("_")
  # ReLU at sigma_w2 = 2 (chi = 1) and linear nets: q only sets the scale
  # of h, and phi' does not depend on it.
  return act, weights, 2.0 if act == "relu" else 1.0, 0.0, 1.0


def _mp_stieltjes(zeta):
  """G of Marchenko-Pastur, ratio 1: (zeta - sqrt(zeta^2 - 4 zeta)) / (2 zeta).

  Written as sqrt(zeta) sqrt(zeta - 4): the branch with G ~ 1 / zeta.
  """
  return (zeta - np.sqrt(zeta) * np.sqrt(zeta - 4)) / (2 * zeta)


class LawTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((1, 0.3), (2, 0.3), (3, 0.2))
  def test_erf_derivative_moments_closed_form(self, k, q):
    """E[erf'(sqrt(q) z)^(2k)] = (4/pi)^k / sqrt(1 + 4 k q).

    On this module's rule: the one derivative_moment (mean field's) with
    fp.DEFAULT_POINTS nodes, as predicted_moments takes it.
    erf'(sqrt(q) z)^(2k) = (4/pi)^k exp(-a z^2), a = 2 k q. The n-point
    rule's relative error on exp(-a z^2) is about 2 (a / (1 + a))^n (1e-11
    at a = 3.4, 2e-6 at 6.8 for n = 100); here a <= 1.2 gives < 1e-26, so
    only rounding is left: rtol 1e-12.
    """
    erf = activations.get_activation("erf")
    with jax.enable_x64(True):
      got = self.variant(lambda q: meanfield.derivative_moment(
          erf, q, k, num_points=fp.DEFAULT_POINTS, dtype=jnp.float64))(q)
      want = (4 / math.pi) ** k / math.sqrt(1 + 4 * k * q)
      self.assertAlmostEqual(float(got), want, delta=1e-12 * want)

  def test_relu_law_is_exactly_two_halves(self):
    """The rule split at ReLU's kink (no node at 0), symmetric weights:
    P(0) = P(1) = 1/2."""
    with jax.enable_x64(True):
      values, weights = fp.squared_derivative_distribution(
          "relu", 0.7, dtype=jnp.float64)
      # Two halves (z < 0, z > 0) of 3 pieces (cut at 1/sqrt(q) and
      # 4/sqrt(q)) of 3 sub-pieces of 20 Legendre nodes.
      chex.assert_shape([values, weights], [(360,), (360,)])
      self.assertEqual(set(np.asarray(values).tolist()), {0.0, 1.0})
      # Summation rounding of 60 weights and the Legendre nodes' rounding:
      # a few ulp.
      self.assertAlmostEqual(float(jnp.sum(weights[values == 1])), 0.5,
                             delta=4e-15)
      self.assertAlmostEqual(float(fp.atom_at_zero("relu", 0.7)), 0.5,
                             delta=4e-15)
      # m1 = (sigma_w2 mu_1)^L = 1 at sigma_w2 = 2, any q and depth.
      for depth in (1, 2, 5):
        m1, _ = fp.predicted_moments("relu", 2.0, 2.0, depth, "gaussian")
        self.assertAlmostEqual(float(m1), 1.0, delta=1e-14)

  @parameterized.parameters("tanh", "gelu", "hard_tanh")
  def test_law_is_a_probability_measure_with_the_right_moments(self, act):
    with jax.enable_x64(True):
      values, weights = fp.squared_derivative_distribution(
          act, 0.4, dtype=jnp.float64)
      self.assertAlmostEqual(float(jnp.sum(weights)), 1.0, delta=1e-14)
      self.assertTrue(bool(jnp.all(weights > 0)))
      # The one derivative_moment on this module's rule: the law's moments.
      for k in (1, 2):
        self.assertAlmostEqual(
            float(jnp.sum(weights * values ** k)),
            float(meanfield.derivative_moment(
                activations.get_activation(act), 0.4, k,
                num_points=fp.DEFAULT_POINTS, dtype=jnp.float64)),
            delta=1e-15)
    self.assertEqual(float(fp.atom_at_zero("tanh", 0.4)), 0.0)

  def test_s1_and_invalid_arguments(self):
    self.assertEqual(fp.s1("gaussian"), -1.0)
    self.assertEqual(fp.s1("orthogonal"), 0.0)
    self.assertEqual(fp.WEIGHTS, ("gaussian", "orthogonal"))
    with self.assertRaisesRegex(ValueError, "gaussian, orthogonal"):
      fp.s1("uniform")
    with self.assertRaisesRegex(ValueError, "elementwise"):
      fp.predicted_moments("maxout", 1.0, 1.0, 2, "gaussian")
    with self.assertRaisesRegex(ValueError, "unknown activation"):
      fp.predicted_moments("tahn", 1.0, 1.0, 2, "gaussian")
    with self.assertRaisesRegex(ValueError, "depth"):
      fp.predicted_moments("tanh", 1.0, 1.0, 0, "gaussian")
    with self.assertRaisesRegex(ValueError, "q must be"):
      fp.predicted_moments("tanh", -1.0, 1.0, 2, "gaussian")
    with self.assertRaisesRegex(ValueError, "sigma_w2"):
      fp.squared_singular_value_density("tanh", 1.0, 0.0, 2, "gaussian",
                                        [1.0])
    with self.assertRaisesRegex(ValueError, "eta"):
      fp.squared_singular_value_density("tanh", 1.0, 1.0, 2, "gaussian",
                                        [1.0], eta=0.0)
    with self.assertRaisesRegex(ValueError, "linear, log"):
      fp.density_grid("tanh", 1.0, 1.0, 2, "gaussian", spacing="cubic")


class MomentsTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(1, 2, 5, 10)
  def test_linear_gaussian_moments_are_fuss_catalan(self, depth):
    """m1 = sigma_w2^L and m2 = sigma_w2^(2L) (L + 1) (Fuss-Catalan)."""
    with jax.enable_x64(True):
      m1, m2 = self.variant(lambda s: fp.predicted_moments(
          "linear", 1.0, s, depth, "gaussian", dtype=jnp.float64))(1.3)
      np.testing.assert_allclose([m1, m2],
                                 [1.3 ** depth, 1.3 ** (2 * depth)
                                  * (depth + 1)], rtol=1e-13)

  @parameterized.parameters(("linear", "orthogonal", 0.0),
                            ("relu", "gaussian", 2.0),
                            ("relu", "orthogonal", 1.0))
  def test_variance_ratio_closed_forms(self, act, weights, per_layer):
    """L (mu2/mu1^2 - 1 - s1): 0 (isometry), 2L and L for ReLU (mu = 1/2)."""
    for depth in (1, 7):
      self.assertAlmostEqual(
          float(fp.predicted_variance_ratio(act, 0.9, 2.0, depth, weights)),
          per_layer * depth, delta=1e-5 * depth)

  def test_tanh_critical_point_has_unit_mean(self):
    sigma_w2, q = _tanh_critical()
    m1, m2 = fp.predicted_moments("tanh", q, sigma_w2, 6, "orthogonal")
    # float32 quadrature and a 45-step bisection: chi = 1 to ~1e-7.
    self.assertAlmostEqual(float(m1), 1.0, delta=1e-5)
    self.assertGreater(float(m2), 1.0)

  def test_orthogonal_linear_net_is_measured_isometric(self):
    """Every singular value of sqrt(sigma_w2)^L Q_L ... Q_1 is
    sigma_w2^(L/2)."""
    model = models.make_mlp(depth=6, width=32, activation="linear",
                            init="orthogonal", sigma_w2=1.21)
    params = model.init(jax.random.key(0), jnp.zeros((32,)))
    xs = np.random.default_rng(1).standard_normal((2, 32)).astype(np.float32)
    sv = jacobian.make_input_output_probe(model)(params, xs)
    m1, m2 = fp.measured_moments(sv)
    # float32, norm-wise: each s^2 within rel = 2 L N eps ~ 2.3e-5 of
    # sigma_w2^L (L products and an SVD); the ratio's own float32
    # cancellation, mean(s^4) / mean(s^2)^2 - 1, adds ~2 N eps ~ 4e-6.
    rel, eps = 2 * 6 * 32 * 6e-8, 6e-8
    np.testing.assert_allclose(fp.variance_ratio(sv), 0.0,
                               atol=rel ** 2 + 2 * 32 * eps)
    self.assertAlmostEqual(float(m1), 1.1 ** 12, delta=rel * 1.1 ** 12)
    self.assertAlmostEqual(float(m2), 1.1 ** 24, delta=2 * rel * 1.1 ** 24)
    # mu2 / mu1^2 - 1 = 1 / mu1 - 1 with float32 weights summing to 1
    # within ~1e-7: the prediction is 0 to 6 x 2e-7.
    self.assertAlmostEqual(float(fp.predicted_variance_ratio(
        "linear", 1.0, 1.21, 6, "orthogonal")), 0.0, delta=1.2e-6)

  def test_measured_moments_and_ratio_definitions(self):
    sv = jnp.array([[1.0, 2.0], [3.0, 0.0]])
    m1, m2 = fp.measured_moments(sv)
    self.assertAlmostEqual(float(m1), 14 / 4)
    self.assertAlmostEqual(float(m2), 98 / 4)
    # Per row: (1 + 16)/2 / (5/2)^2 - 1 = 0.36 and 81/2 / (9/2)^2 - 1 = 1.
    np.testing.assert_allclose(fp.variance_ratio(sv), [0.36, 1.0],
                               rtol=1e-6)


class STransformTest(parameterized.TestCase):

  Z = np.array([-0.3, -0.1, 0.0, 0.2, 1.0, 5.0, 0.1 + 0.2j, -0.2 - 0.3j])

  @parameterized.parameters(
      ("relu", "gaussian", 2.0,
       lambda z, s, L: (2 / (s * (1 + 2 * z))) ** L),
      ("relu", "orthogonal", 1.7,
       lambda z, s, L: (2 * (1 + z) / (s * (1 + 2 * z))) ** L),
      ("linear", "gaussian", 1.3, lambda z, s, L: (1 / (s * (1 + z))) ** L),
      ("linear", "orthogonal", 1.3, lambda z, s, L: s ** -L + 0 * z))
  def test_closed_forms(self, act, weights, sigma_w2, want):
    """S_{D^2} = 2 (1 + z) / (1 + 2 z) for the Bernoulli(1/2) ReLU law.

    psi_D(w) = w / (2 (1 - w)) inverts to w = 2 psi / (1 + 2 psi). Newton
    converges to rounding: rtol 1e-12.
    """
    got = fp.s_transform(act, 0.8, sigma_w2, 3, weights, self.Z)
    np.testing.assert_allclose(got, want(self.Z, sigma_w2, 3), rtol=1e-12)

  @parameterized.parameters("gaussian", "orthogonal")
  def test_series_gives_the_predicted_moments(self, weights):
    """S(z) = (1/m1) [1 - (m2/m1^2 - 1) z + O(z^2)] (module docstring).

    Central difference with h = 1e-4: error h^2 |S'''| / 6 ~ 1e-8 |S|
    for |S'''| = O(10) |S|; rtol 1e-6.
    """
    sigma_w2, q = _tanh_critical()
    with jax.enable_x64(True):
      m1, m2 = (float(m) for m in fp.predicted_moments(
          "tanh", q, sigma_w2, 4, weights, dtype=jnp.float64))
    h = 1e-4
    s_minus, s0, s_plus = fp.s_transform("tanh", q, sigma_w2, 4, weights,
                                         [-h, 0.0, h]).real
    self.assertAlmostEqual(s0, 1 / m1, delta=1e-12)
    self.assertAlmostEqual((s_plus - s_minus) / (2 * h) * m1,
                           -(m2 / m1 ** 2 - 1), delta=1e-6 * m2 / m1 ** 2)

  @parameterized.parameters(("tanh_gaussian", 4), ("tanh_orthogonal", 4),
                            ("relu_gaussian", 3), ("relu_orthogonal", 3))
  def test_density_solution_satisfies_the_s_transform(self, name, depth):
    """psi = zeta G - 1 from the density solve obeys psi S(psi) / (1 + psi) = z.

    Two independent routes: the density solve eliminates S_{D^2} through
    the explicit subordination w(psi); s_transform inverts psi_D by its own
    Newton iteration. Both converge to ~1e-13 relative; rtol 1e-9.
    """
    act, weights, sigma_w2, _, q = _network(name)
    edge = fp.support_upper_edge(act, q, sigma_w2, depth, weights)
    x = edge * np.array([0.01, 0.1, 0.3, 0.6, 0.9])
    zeta = x * (1 + 1e-3j)
    g = fp.stieltjes_transform(act, q, sigma_w2, depth, weights, x, eta=1e-3)
    psi = zeta * g - 1
    s = fp.s_transform(act, q, sigma_w2, depth, weights, psi)
    np.testing.assert_allclose(psi * s / (1 + psi) * zeta, 1.0, rtol=1e-9)


def _integrals(name, depth, n=600, decades=24):
  """Trapezoid integrals of x^k rho(x), k = 0, 1, 2 (and 3), two ways.

  Grid: log-spaced on [edge 10^-decades, edge / 2] (integrand x^(k+1) rho
  in log x, smooth although rho ~ x^(-L/(L+1)) at 0), then x = edge (1 -
  t^2 / 2), t in [0, 1] (integrand x^k rho edge t, smooth at a square-root
  edge). Below the grid rho ~ x^(-alpha) with alpha the local log-slope,
  so the missing mass is x rho / (1 - alpha) at the bottom. Returns
  (fine, coarse, tail) arrays over k; coarse uses every other point.
  """
  act, weights, sigma_w2, _, q = _network(name)
  edge = fp.support_upper_edge(act, q, sigma_w2, depth, weights)
  s = np.linspace(math.log(edge) - decades * math.log(10),
                  math.log(edge / 2), 2 * n + 1)
  t = np.linspace(0.0, 1.0, n + 1)
  x_log, x_edge = np.exp(s), edge * (1 - t ** 2 / 2)
  rho = fp.squared_singular_value_density(
      act, q, sigma_w2, depth, weights, np.concatenate([x_log, x_edge]))
  rho_log, rho_edge = rho[:2 * n + 1], rho[2 * n + 1:]
  if rho_log[0] > 0 and rho_log[1] > 0:
    alpha = -math.log(rho_log[1] / rho_log[0]) / (s[1] - s[0])
  else:  # No density at the bottom, no tail.
    alpha = 0.0
  fine, coarse, tail = [], [], []
  for k in range(4):
    f_log = x_log ** (k + 1) * rho_log
    f_edge = x_edge ** k * rho_edge * edge * t
    fine.append(np.trapezoid(f_log, s) + np.trapezoid(f_edge, t))
    coarse.append(np.trapezoid(f_log[::2], s[::2])
                  + np.trapezoid(f_edge[::2], t[::2]))
    tail.append(x_log[0] ** (k + 1) * rho_log[0] / (k + 1 - alpha))
  return np.array(fine), np.array(coarse), np.array(tail)


class DensityTest(parameterized.TestCase):

  def test_marchenko_pastur(self):
    """L = 1, Gaussian, sigma_w2 = 1: rho = sqrt(x (4 - x)) / (2 pi x).

    Broadening: |G(x + i eps) - G(x + i0)| <= eps sup|G'| with eps = eta x
    and |G'(x)| = 1 / (x^1.5 sqrt(4 - x)) for MP, i.e. a relative density
    error 2 eta / (4 - x) to first order. Solver: |omega| accurate to 1e-8
    relative, and |G| / Im G <= 10 on [0.05, 3.95], so 1e-7. Tolerance:
    twice their sum. The exact broadened density (closed-form G at
    x (1 + i eta)) is matched to the solver accuracy alone.
    """
    eta = fp.DEFAULT_ETA
    x = np.linspace(0.05, 3.95, 79)
    rho = fp.squared_singular_value_density("linear", 1.0, 1.0, 1,
                                            "gaussian", x)
    exact = np.sqrt(x * (4 - x)) / (2 * np.pi * x)
    bound = 2 * (2 * eta / (4 - x) + 1e-7) * exact
    np.testing.assert_array_less(np.abs(rho - exact), bound)
    broadened = -np.imag(_mp_stieltjes(x * (1 + 1j * eta))) / np.pi
    np.testing.assert_allclose(rho, broadened, rtol=1e-7)
    # sigma = sqrt(lambda) follows the quarter-circle law sqrt(4 - s^2)/pi.
    s = np.sqrt(x)
    np.testing.assert_allclose(
        fp.singular_value_density("linear", 1.0, 1.0, 1, "gaussian", s),
        np.sqrt(4 - s ** 2) / np.pi, rtol=2 * (2 * eta / 0.05 + 1e-7))

  @parameterized.parameters(1, 2, 3, 6)
  def test_fuss_catalan_edge_and_nothing_beyond(self, depth):
    """Edge (L + 1)^(L + 1) / L^L; above it only the Cauchy tail is left.

    The broadened density at x > edge is int rho(l) (eta x / pi) /
    ((x - l)^2 + (eta x)^2) dl <= eta x / (pi (x - edge)^2).
    """
    edge = fp.support_upper_edge("linear", 1.0, 1.0, depth, "gaussian")
    self.assertAlmostEqual(edge, (depth + 1) ** (depth + 1) / depth ** depth,
                           delta=1e-9 * edge)
    x = edge * np.array([1.01, 1.1, 2.0])
    rho = fp.squared_singular_value_density("linear", 1.0, 1.0, depth,
                                            "gaussian", x)
    np.testing.assert_array_less(
        rho, fp.DEFAULT_ETA * x / (np.pi * (x - edge) ** 2))
    inside = fp.squared_singular_value_density(
        "linear", 1.0, 1.0, depth, "gaussian", 0.99 * edge)
    self.assertGreater(float(inside), 1e-3 / edge)

  @parameterized.parameters(("linear_gaussian", 2), ("linear_gaussian", 4),
                            ("tanh_gaussian", 4), ("tanh_orthogonal", 4),
                            ("relu_gaussian", 4), ("relu_orthogonal", 4))
  def test_density_reproduces_mass_and_moments(self, name, depth):
    """int rho = 1 - atoms, int x rho = m1, int x^2 rho = m2 (+ atoms).

    Tolerance per moment: the trapezoid error of the fine grid, ~1/3 of
    |fine - coarse| for a smooth integrand (error ~ h^2), allowed 3 times
    over; plus the extrapolated tail below the grid, allowed in full; plus
    1e-6 relative for broadening (O(eta log(1/eta)) of mass moves past the
    edge) and the solver (1e-8). For linear Gaussian nets the third moment
    is Fuss-Catalan too: C(3L + 3, 3) / (3L + 1).
    """
    act, weights, sigma_w2, _, q = _network(name)
    fine, coarse, tail = _integrals(name, depth)
    locations, masses = fp.spectral_atoms(act, q, sigma_w2, depth, weights)
    with jax.enable_x64(True):
      m1, m2 = (float(m) for m in fp.predicted_moments(
          act, q, sigma_w2, depth, weights, dtype=jnp.float64))
    want = [1 - masses.sum(), m1, m2]
    if act == "linear":
      want.append(math.comb(3 * depth + 3, 3) / (3 * depth + 1))
    for k, value in enumerate(want):
      atoms = float(np.sum(locations ** k * masses)) if k else 0.0
      tol = 3 * abs(fine[k] - coarse[k]) + abs(tail[k]) + 1e-6 * abs(value)
      self.assertAlmostEqual(fine[k] + tail[k] + atoms, value, delta=tol,
                             msg=f"moment {k}")
      # The tolerance is not vacuous: well below 1 % of the moment.
      self.assertLess(tol, 1e-2 * abs(value), msg=f"moment {k}")

  def test_atoms(self):
    loc, mass = fp.spectral_atoms("relu", 1.0, 2.0, 5, "gaussian")
    np.testing.assert_allclose([loc, mass], [[0.0], [0.5]], atol=1e-15)
    loc, mass = fp.spectral_atoms("relu", 1.0, 2.0, 1, "orthogonal")
    np.testing.assert_allclose([loc, mass], [[0.0, 2.0], [0.5, 0.5]],
                               atol=1e-15)
    loc, mass = fp.spectral_atoms("linear", 1.0, 1.5, 3, "orthogonal")
    np.testing.assert_allclose([loc, mass], [[1.5 ** 3], [1.0]], rtol=1e-15)
    self.assertEqual(fp.spectral_atoms("tanh", 1.0, 1.5, 3, "gaussian")[0]
                     .size, 0)
    # Orthogonal ReLU at L = 1 is 2 D^2: atoms only, so the continuous part
    # is 0 up to the cancellation of the subtracted atoms' Cauchy terms
    # (~1e-16 relative of m / (pi eta x)).
    rho = fp.squared_singular_value_density("relu", 1.0, 2.0, 1,
                                            "orthogonal", [0.5, 1.9, 2.5])
    np.testing.assert_allclose(rho, 0.0, atol=1e-8)
    # At the atom, G(a (1 + i eta)) ~ m / (i eta a): the mass 1/2 is read
    # off to the solver's relative accuracy (1e-8) plus O(eta).
    g = fp.stieltjes_transform("relu", 1.0, 2.0, 1, "orthogonal", 2.0)
    self.assertAlmostEqual(float(-g.imag) * fp.DEFAULT_ETA * 2.0, 0.5,
                           delta=1e-6)

  def test_density_grid_and_nonpositive_x(self):
    name = "tanh_orthogonal"
    act, weights, sigma_w2, _, q = _network(name)
    edge = fp.support_upper_edge(act, q, sigma_w2, 8, weights)
    for spacing in fp.SPACINGS:
      x = fp.density_grid(act, q, sigma_w2, 8, weights, num=50,
                          spacing=spacing)
      chex.assert_shape(x, (50,))
      self.assertTrue(np.all(np.diff(x) > 0) and x[0] > 0)
      # The top is 1.02 edge (linear: the last cell's midpoint).
      self.assertBetween(x[-1], 0.99 * 1.02 * edge, 1.02 * edge * (1 + 1e-12))
    x = np.array([[-1.0, 0.0], [0.5, 1.0]])
    rho = fp.squared_singular_value_density(act, q, sigma_w2, 8, weights, x)
    chex.assert_shape(rho, (2, 2))
    np.testing.assert_array_equal(rho[0], 0.0)
    self.assertTrue(np.all(rho[1] > 0))


def _init_networks(model: models.MLP, key, num: int):
  """``num`` draws of ``model.init``'s parameters, by the model's initializers.

  All ``num * depth`` kernels come from one jitted, vmapped call of
  ``model.kernel_init`` (one small compilation, instead of a whole-network
  init per model); the tree is checked against ``model.init``'s.
  """
  n, depth = model.width, model.depth
  kernel_keys, bias_keys = jax.random.split(key)
  kernels = jax.jit(jax.vmap(
      lambda k: model.kernel_init(k, (n, n), jnp.float32)))(
          jax.random.split(kernel_keys, num * depth))
  biases = jax.vmap(lambda k: model.bias_init(k, (n,), jnp.float32))(
      jax.random.split(bias_keys, num * depth))
  # Split on the host: indexing a device array by each Python int compiles
  # one slice per index (48 here); NumPy views are free, same values.
  kernels, biases = np.asarray(kernels), np.asarray(biases)
  nets = [{"params": {f"layers_{l}": {"kernel": kernels[i * depth + l],
                                      "bias": biases[i * depth + l]}
                      for l in range(depth)}} for i in range(num)]
  chex.assert_trees_all_equal_shapes_and_dtypes(
      nets[0], jax.eval_shape(model.init, key, jnp.zeros((n,))))
  return nets


@pytest.mark.slow
class MeasurementTest(parameterized.TestCase):
  """Free-probability predictions against probed width-256 networks.

  Calibration (this file's nets, L = 8 and 16, N = 32 to 128, 64 to 256
  networks each, one input each): the mean measured variance ratio over the
  prediction is 1 + c L / N with |c| <= 0.8 for linear, tanh and ReLU
  nets, Gaussian and orthogonal, once L / N <= 1/4 (finite-width
  corrections: Wishart moments, the dependence of D_l on W_l, fluctuations
  of q^l); the standard deviation of one Jacobian's ratio was <= 2.2 (L / N)
  x prediction, and for L / N <= 1/8 that of its mean squared singular
  value <= sqrt(2 L / N) x m1 (each D_l's mean fluctuates by O(1/sqrt(N))).
  Here L / N = 1/32. Tolerance: the
  bias bound L / N, relative, plus 4 standard errors of the mean over the
  networks, each the larger of the measured spread and the calibrated one
  (so that a lucky small spread cannot tighten it).
  """

  WIDTH, DEPTH, NETS, INPUTS = 256, 8, 6, 1

  def _measure(self, name):
    act, weights, sigma_w2, sigma_b2, q = _network(name)
    model = models.make_mlp(depth=self.DEPTH, width=self.WIDTH,
                            activation=act, init=weights,
                            sigma_w2=sigma_w2, sigma_b2=sigma_b2 or None)
    probe = jacobian.make_input_output_probe(model)
    nets = _init_networks(model, jax.random.key(42), self.NETS)
    # The inputs' z ~ N(0, I) by NumPy (no random program to compile).
    data = np.random.default_rng(42).standard_normal(
        (self.NETS, self.INPUTS, self.WIDTH)).astype(np.float32)
    ratios, means = [], []
    for params, z in zip(nets, data):
      # x0 = phi(sqrt(q*) z): the first pre-activations have variance
      # sigma_w2 E[phi^2] + sigma_b2 = q*, the fixed point.
      sv = np.asarray(probe(params, model.activation.fn(math.sqrt(q) * z)),
                      np.float64)
      ratios.append(np.mean(fp.variance_ratio(sv)))
      means.append(np.mean(sv ** 2))
    return np.array(ratios), np.array(means)

  @parameterized.parameters("tanh_gaussian", "tanh_orthogonal",
                            "relu_gaussian", "relu_orthogonal")
  def test_variance_ratio_and_mean_match_measurement(self, name):
    act, weights, sigma_w2, _, q = _network(name)
    ratios, means = self._measure(name)
    predicted = float(fp.predicted_variance_ratio(act, q, sigma_w2,
                                                  self.DEPTH, weights))
    m1 = float(fp.predicted_moments(act, q, sigma_w2, self.DEPTH,
                                    weights)[0])
    bias, root_n = self.DEPTH / self.WIDTH, math.sqrt(self.NETS)
    se = max(ratios.std(ddof=1), 2.2 * bias * predicted) / root_n
    tol = bias * predicted + 4 * se
    self.assertAlmostEqual(ratios.mean(), predicted, delta=tol)
    se_mean = max(means.std(ddof=1), math.sqrt(2 * bias) * m1) / root_n
    self.assertAlmostEqual(means.mean(), m1, delta=bias * m1 + 4 * se_mean)
    # The check discriminates: the other weight law's prediction differs
    # by L |s1| = 8, far outside the tolerance.
    self.assertLess(tol, 0.5 * self.DEPTH)


if __name__ == "__main__":
  absltest.main()
