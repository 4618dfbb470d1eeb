"""Tests for vgrad.theory.meanfield against closed forms, references and networks.

Exactness checks run in float64. Their tolerances come from the quadrature:
the 300-node Gauss-Hermite rule is exact for polynomials of degree 599, so
ReLU's and the linear activation's length maps and chi_1 are exact up to
summation rounding (300 terms: < 1e-13 relative); for the smooth erf and
tanh the rule has converged to rounding at q <= 3 (each test that relies on
this asserts it by comparing with a 200-node rule). Monte-Carlo bounds are
five standard deviations of a delta-method variance derived below, so a
correct implementation fails with probability < 1e-6 per comparison.
"""

import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import optimize
from scipy import special

from vgrad.nn import activations
from vgrad.nn import models
from vgrad.theory import meanfield
from vgrad.theory import quadrature

# One object per activation, so that the jitted solvers compile once.
ACT = {name: activations.get_activation(name)
       for name in activations.ACTIVATIONS
       if name != "maxout" and name not in activations.TRANSFORMED}
SMOOTH = ("tanh", "erf", "sigmoid", "softplus", "gelu", "swish")


def _erf_pair(s11, s22, s12):
  """E[erf(u1) erf(u2)], (u1, u2) ~ N(0, [[s11, s12], [s12, s22]]).

  Williams (1997), eq. 11 with the erf of unit slope:
  (2/pi) arcsin(2 s12 / sqrt((1 + 2 s11)(1 + 2 s22))).
  """
  return (2 / np.pi) * np.arcsin(2 * s12 / np.sqrt((1 + 2 * s11)
                                                   * (1 + 2 * s22)))


def _erf_dpair(q, c):
  """E[erf'(u1) erf'(u2)] at equal lengths q and correlation c.

  erf'(u) = (2/sqrt(pi)) exp(-u^2), so the expectation is (4/pi)
  E[exp(-u^T u)] = (4/pi) det(I + 2 Sigma)^(-1/2), with det(I + 2 Sigma) =
  (1 + 2q)^2 - (2qc)^2. At c = 1 this is (4/pi) / sqrt(1 + 4q).
  """
  return (4 / np.pi) / np.sqrt((1 + 2 * q) ** 2 - (2 * q * c) ** 2)


class ClosedFormTest(parameterized.TestCase):

  @parameterized.parameters((0.0,), (0.3,), (2.0,), (50.0,))
  def test_relu_maps_are_exact(self, q):
    """ReLU: L(q) = sigma_w2 q/2 + sigma_b2 and chi_1 = L'(q) = sigma_w2/2.

    Exact for the symmetric rule: sum_{z_i > 0} w_i z_i^2 is half of
    sum_i w_i z_i^2 = 1, and sum_{z_i > 0} w_i = 1/2 (no node at 0).
    """
    with jax.enable_x64(True):
      relu = ACT["relu"]
      for sw2, sb2 in ((0.7, 0.0), (2.0, 0.3), (3.5, 1.2)):
        self.assertAlmostEqual(
            float(meanfield.length_map(q, relu, sw2, sb2)),
            sw2 * q / 2 + sb2, delta=1e-13 * (sw2 * q / 2 + sb2))
        for value in (meanfield.chi_1(relu, sw2, sb2, q),
                      meanfield.length_map_slope(q, relu, sw2, sb2)):
          self.assertAlmostEqual(float(value), sw2 / 2, delta=1e-13)
      # q* = +inf is the q -> infinity limit: still sigma_w2 / 2.
      self.assertAlmostEqual(float(meanfield.chi_1(relu, 3.0, 0.1, np.inf)),
                             1.5, delta=1e-13)

  @parameterized.parameters(("linear", 0.3, 0.5), ("linear", 0.8, 2.0),
                            ("relu", 0.5, 0.1), ("relu", 1.5, 0.7),
                            ("relu", 1.2, 0.0))
  def test_fixed_point_closed_forms(self, name, sw2, sb2):
    """Linear q* = sb2/(1 - sw2), chi_1 = sw2; ReLU q* = sb2/(1 - sw2/2).

    Newton solves these affine maps exactly; the rounding of the rule's
    sums (~1e-14) is amplified by 1 / (1 - L') <= 5.
    """
    with jax.enable_x64(True):
      act = ACT[name]
      slope = sw2 if name == "linear" else sw2 / 2
      expected = sb2 / (1 - slope)
      q_star = float(meanfield.fixed_point_q(act, sw2, sb2))
      self.assertAlmostEqual(q_star, expected, delta=1e-12 * (1 + expected))
      self.assertAlmostEqual(float(meanfield.chi_1(act, sw2, sb2, q_star)),
                             slope, delta=1e-13)

  @pytest.mark.slow
  def test_no_finite_fixed_point_is_inf(self):
    """L(q) > q for all large q: q^l grows without bound, q* = +inf.

    softplus at sigma_w2 = 2 diverges only like q^l ~ l^(2/3) (L(q) - q
    ~ q^(-1/2)), which a bare residual test would take for convergence.
    The other quantities are then the q -> infinity limits (finite).
    """
    cases = {"relu": [(2.5, 0.0), (2.5, 0.3), (2.0, 0.1)],
             "linear": [(1.2, 0.0), (1.0, 0.1)],
             "leaky_relu": [(2.0, 0.0)], "softplus": [(2.0, 0.0)]}
    for name, pairs in cases.items():
      for sw2, sb2 in pairs:
        self.assertEqual(
            float(meanfield.fixed_point_q(ACT[name], sw2, sb2)), np.inf)
        if (name, sw2) == ("relu", 2.0):  # the rounding-sensitive case
          with jax.enable_x64(True):
            self.assertEqual(
                float(meanfield.fixed_point_q(ACT[name], sw2, sb2)), np.inf)
    mf = meanfield.solve(ACT["relu"], 2.5, 0.3)
    chex.assert_tree_all_finite((mf.c_star, mf.chi_1, mf.chi_c))
    self.assertAlmostEqual(float(mf.chi_1), 1.25, delta=1e-6)
    self.assertEqual(float(mf.xi_q), np.inf)

  @parameterized.parameters(("relu", 2.0), ("linear", 1.0))
  def test_every_q_fixed_returns_the_start(self, name, sw2):
    q_star = meanfield.fixed_point_q(ACT[name], sw2, 0.0)
    self.assertEqual(float(q_star), 1.0)

  @parameterized.parameters((0.1,), (1.0,), (3.0,))
  def test_erf_maps_match_williams(self, q):
    """Length map, correlation map, their slopes and chi_1 for erf.

    Closed forms from _erf_pair / _erf_dpair: L(q) = sw2 (2/pi)
    arcsin(2q / (1 + 2q)) + sb2; c' = (sw2 (2/pi) arcsin(2qc / (1 + 2q)) +
    sb2) / L(q); chi_1 = sw2 (4/pi) / sqrt(1 + 4q); L'(q) = (4 sw2 / pi) /
    ((1 + 2q) sqrt(1 + 4q)); dc'/dc = sw2 q E[erf' erf'] / L(q).
    """
    sw2, sb2 = 1.7, 0.3
    erf = ACT["erf"]
    with jax.enable_x64(True):
      length = sw2 * _erf_pair(q, q, q) + sb2
      # The rule has converged: 200 nodes agree with 300 to rounding.
      coarse = meanfield.length_map(q, erf, sw2, sb2, num_points=200)
      self.assertAlmostEqual(float(coarse), length, delta=1e-14 * length)
      self.assertAlmostEqual(float(meanfield.length_map(q, erf, sw2, sb2)),
                             length, delta=1e-14 * length)
      self.assertAlmostEqual(
          float(meanfield.length_map_slope(q, erf, sw2, sb2)),
          4 * sw2 / np.pi / ((1 + 2 * q) * np.sqrt(1 + 4 * q)), delta=1e-13)
      self.assertAlmostEqual(float(meanfield.chi_1(erf, sw2, sb2, q)),
                             sw2 * _erf_dpair(q, 1.0), delta=1e-13)
      for c in (-0.9, -0.3, 0.0, 0.4, 0.9, 0.99, 1.0):
        expected = (sw2 * _erf_pair(q, q, c * q) + sb2) / length
        self.assertAlmostEqual(
            float(meanfield.correlation_map(c, q, erf, sw2, sb2)), expected,
            delta=1e-12)
        # The derivative series weights k a_k^2 (k <= 128): ~100x the
        # rounding of the map itself.
        slope = sw2 * q * _erf_dpair(q, c) / length
        self.assertAlmostEqual(
            float(meanfield.correlation_map_slope(c, q, erf, sw2, sb2)),
            slope, delta=1e-11 * slope)

  @parameterized.parameters((1,), (2,), (3,))
  def test_derivative_moments(self, k):
    """mu_k = E[phi'^(2k)]: erf (4/pi)^k / sqrt(1 + 4kq); ReLU 1/2."""
    with jax.enable_x64(True):
      for q in (0.2, 1.5):
        self.assertAlmostEqual(
            float(meanfield.derivative_moment(ACT["erf"], q, k)),
            (4 / np.pi) ** k / np.sqrt(1 + 4 * k * q), delta=1e-13)
        self.assertAlmostEqual(
            float(meanfield.derivative_moment(ACT["relu"], q, k)), 0.5,
            delta=1e-14)
      # q = 0 is the limit q -> 0+, not phi'(0) = 0 at ReLU's kink.
      self.assertAlmostEqual(
          float(meanfield.derivative_moment(ACT["relu"], 0.0, k)), 0.5,
          delta=1e-14)

  @parameterized.parameters(0.0, 1e-8, 0.3, 7.0, 1e4, float("inf"))
  def test_the_one_derivative_moment_matches_closed_forms_at_any_q(self, q):
    """E[phi'(sqrt(q) z)^2]: ReLU 1/2, leaky ReLU (1 + a^2)/2, linear 1.

    Positively homogeneous phi: phi' does not depend on the scale sqrt(q),
    so the moment is the same at every q, q = 0 and +inf (limits)
    included. Exact for any even rule (no node at 0, symmetric weights),
    so both rules (mean field's 300 nodes and free probability's 100,
    which free_probability.predicted_moments uses) give it to rounding.
    """
    leaky = activations.get_activation("leaky_relu", slope=0.2)
    for num_points in (meanfield.POINTS_1D, 100):
      kw = {"num_points": num_points}
      # float32 (the default): a sum of 100-300 weights, to a few ulp.
      self.assertAlmostEqual(float(meanfield.derivative_moment(
          ACT["relu"], q, 1, **kw)), 0.5, delta=1e-6)
      self.assertAlmostEqual(float(meanfield.derivative_moment(
          leaky, q, 1, **kw)), (1 + 0.2 ** 2) / 2, delta=1e-6)
      self.assertAlmostEqual(float(meanfield.derivative_moment(
          ACT["linear"], q, 1, **kw)), 1.0, delta=1e-6)
      with jax.enable_x64(True):
        self.assertAlmostEqual(float(meanfield.derivative_moment(
            ACT["relu"], q, 1, dtype=jnp.float64, **kw)), 0.5, delta=1e-14)

  @chex.variants(with_jit=True, without_jit=True)
  def test_maps_are_jittable(self):
    erf = ACT["erf"]
    q, c = 0.8, 0.6
    length = self.variant(
        lambda q: meanfield.length_map(q, erf, 1.5, 0.2))(q)
    cmap = self.variant(
        lambda c, q: meanfield.correlation_map(c, q, erf, 1.5, 0.2))(c, q)
    chi = self.variant(lambda q: meanfield.chi_1(erf, 1.5, 0.2, q))(q)
    # float32: the sums' rounding, a few eps.
    expected = 1.5 * _erf_pair(q, q, q) + 0.2
    self.assertAlmostEqual(float(length), expected, delta=1e-6)
    self.assertAlmostEqual(
        float(cmap), (1.5 * _erf_pair(q, q, c * q) + 0.2) / expected,
        delta=1e-6)
    self.assertAlmostEqual(float(chi), 1.5 * _erf_dpair(q, 1.0), delta=1e-6)


class SlopeTest(parameterized.TestCase):

  @parameterized.parameters(*ACT)
  def test_length_map_slope_is_its_derivative(self, name):
    """L'(q) in the integration-by-parts form = autodiff of length_map.

    d/dq sum_i w_i phi(sqrt(q) z_i)^2 = sum_i w_i phi phi' z_i / sqrt(q)
    term by term: the same sums, equal to rounding.
    """
    with jax.enable_x64(True):
      act = ACT[name]
      for q in (0.3, 2.0):
        auto = jax.grad(lambda q: meanfield.length_map(q, act, 1.4, 0.2))(q)
        chex.assert_trees_all_close(
            meanfield.length_map_slope(q, act, 1.4, 0.2), auto, rtol=1e-12,
            atol=1e-14)

  @parameterized.parameters(*SMOOTH)
  def test_slope_is_schoenholz_form(self, name):
    """L'(q) = chi_1 + sw2 E[phi'' phi] (Schoenholz eq. 8), phi'' by autodiff.

    The forms agree by integration by parts; both integrands are analytic,
    and at q <= 1 the rule has converged (asserted against 200 nodes), so
    they agree to ~100 eps.
    """
    with jax.enable_x64(True):
      act = ACT[name]
      second = jax.vmap(jax.grad(act.deriv))
      for q in (0.3, 1.0):
        def schoenholz(n, q=q):
          z, w = quadrature.gauss_hermite(n)
          u = jnp.sqrt(q) * z
          return 1.4 * jnp.dot(w, act.deriv(u) ** 2 + act.fn(u) * second(u))
        reference = schoenholz(300)
        self.assertAlmostEqual(float(schoenholz(200)), float(reference),
                               delta=1e-13)
        self.assertAlmostEqual(
            float(meanfield.length_map_slope(q, act, 1.4, 0.2)),
            float(reference), delta=1e-12)

  def test_hard_tanh_slope_includes_the_kinks(self):
    """hard tanh: d/dq E[min(u^2, 1)] = P(|u| < 1) - 2 p_u(1), u ~ N(0, q).

    (1/2) E[F''] with F = min(u^2, 1), whose F' jumps by -2 at u = +-1. The
    pointwise phi'' = 0 would give only P(|u| < 1). The rule sums a jump of
    height 1/sqrt(q) (the integrand sqrt(q) z^2 at z = 1/sqrt(q)); moving it
    past one node changes the sum by that node's weight, so the error is at
    most the jump times the largest weight of the nodes beside it.
    """
    with jax.enable_x64(True):
      sw2 = 1.5
      z, w = np.polynomial.hermite_e.hermegauss(meanfield.POINTS_1D)
      w = w / np.sqrt(2 * np.pi)
      for q in (0.5, 2.0):
        edge = 1 / np.sqrt(q)
        p_edge = np.exp(-0.5 / q) / np.sqrt(2 * np.pi * q)
        exact = sw2 * (special.erf(edge / np.sqrt(2)) - 2 * p_edge)
        near = np.argsort(np.abs(np.abs(z) - edge))[:4]
        bound = 2 * sw2 * edge * w[near].max()  # both kinks, +-1
        slope = float(meanfield.length_map_slope(q, ACT["hard_tanh"], sw2,
                                                 0.0))
        self.assertAlmostEqual(slope, exact, delta=bound)
        self.assertGreater(2 * sw2 * p_edge, 4 * bound)  # the kink term


class FixedPointTest(parameterized.TestCase):

  @parameterized.parameters(("tanh",), ("erf",), ("selu",))
  @pytest.mark.slow  # under the parameters: absl copies it to each case
  def test_fixed_points_are_fixed(self, name):
    """L(q*) = q*, f(c*) = c*; c* = 1 iff chi_1 <= 1; chi_c = chi_1 there.

    float64; Newton has converged to rounding, relative 1e-12 leaves room
    for the 1 / (1 - L') amplification of the sums' rounding.
    """
    act = ACT[name]
    with jax.enable_x64(True):
      for sw2, sb2 in ((0.8, 0.1), (1.5, 0.05), (2.5, 0.0), (2.5, 0.3),
                       (4.0, 1.5)):
        mf = meanfield.solve(act, sw2, sb2)
        q_star = float(mf.q_star)
        if not np.isfinite(q_star):
          continue
        self.assertAlmostEqual(
            float(meanfield.length_map(q_star, act, sw2, sb2)), q_star,
            delta=1e-12 * max(q_star, 1e-30) + 1e-15)
        c_star = float(mf.c_star)
        self.assertAlmostEqual(
            float(meanfield.correlation_map(c_star, q_star, act, sw2, sb2)),
            c_star, delta=1e-12)
        if float(mf.chi_1) <= 1:
          self.assertEqual(c_star, 1.0)
          self.assertEqual(float(mf.chi_c), float(mf.chi_1))
        else:
          self.assertLess(c_star, 1.0)
          self.assertLess(float(mf.chi_c), 1.0)  # c* attracts

  def test_odd_activation_without_bias(self):
    """tanh, sigma_b2 = 0: q* = 0, c* = 1 when ordered; c* = 0 in chaos."""
    with jax.enable_x64(True):
      tanh = ACT["tanh"]
      ordered = meanfield.solve(tanh, 0.7, 0.0)
      self.assertLess(float(ordered.q_star), 1e-20)
      self.assertEqual(float(ordered.c_star), 1.0)
      self.assertAlmostEqual(float(ordered.chi_1), 0.7, delta=1e-12)
      chaotic = meanfield.solve(tanh, 2.0, 0.0)
      self.assertGreater(float(chaotic.q_star), 0.1)
      self.assertEqual(float(chaotic.c_star), 0.0)
      # chi_c at c* = 0 is sw2 E[phi']^2 < 1: c* = 0 is stable.
      z, w = quadrature.gauss_hermite(300)
      mean_dphi = jnp.dot(w, tanh.deriv(jnp.sqrt(chaotic.q_star) * z))
      self.assertAlmostEqual(float(chaotic.chi_c),
                             float(2.0 * mean_dphi ** 2), delta=1e-12)
      self.assertLess(float(chaotic.chi_c), 1.0)

  @pytest.mark.slow
  def test_converges_on_the_whole_domain(self):
    """Bounded activations: finite q*, c*, chi's, no NaN on (0,5] x [0,2].

    q* is checked against plain iteration of the length map in numpy
    float64 (400 steps from q = 1), i.e. it is the fixed point the network's
    q^l reach, wherever plain iteration converges: L'(q*) <= 0.96 leaves a
    residual 0.96^400 ~ 1e-7 (near criticality with sigma_b2 = 0, q* = 0
    is approached only like 1/(2l)). Tolerance: float32 rounding of the
    sums (a few 1e-7) amplified by 1 / (1 - L') <= 25.
    """
    numpy_fns = {"tanh": np.tanh, "erf": special.erf,
                 "sigmoid": special.expit}
    sw2 = np.linspace(0.25, 5.0, 20, dtype=np.float32)
    sb2 = np.linspace(0.0, 2.0, 5, dtype=np.float32)
    w64, b64 = np.meshgrid(sw2.astype(np.float64), sb2.astype(np.float64),
                           indexing="ij")
    z, w = np.polynomial.hermite_e.hermegauss(meanfield.POINTS_1D)
    w = w / np.sqrt(2 * np.pi)
    for name, fn in numpy_fns.items():
      # tanh's grid in chunks of 7 (the 100 points leave a remainder of 2,
      # padded with copies of the last point), the others' in one chunk:
      # each grid is one compiled program, so both paths are checked
      # without a second tanh grid.
      chunk = 7 if name == "tanh" else 1024
      mf = jax.device_get(meanfield.solve_grid(ACT[name], sw2, sb2,
                                               chunk_size=chunk))
      for field in mf:
        chex.assert_shape(field, (20, 5))
        self.assertFalse(np.isnan(field).any())
      chex.assert_tree_all_finite((mf.q_star, mf.c_star, mf.chi_1, mf.chi_c))

      def length(q, fn=fn):
        values = fn(np.sqrt(q)[..., None] * z) ** 2
        return w64 * (values @ w) + b64

      plain = np.ones_like(w64)
      for _ in range(400):
        plain = length(plain)
      slope = (length(plain * (1 + 1e-6)) - length(plain * (1 - 1e-6))) / (
          2e-6 * np.maximum(plain, 1e-300))
      fast = slope < 0.96
      self.assertGreater(fast.mean(), 0.8)
      np.testing.assert_allclose(mf.q_star[fast], plain[fast],
                                 rtol=1e-5, atol=1e-6)
      if name == "tanh":
        # solve_grid (chunked) is solve at every point, the same values in
        # the same places (padding included). Same arithmetic up to how XLA
        # fuses the vmapped program: float32 rounding (1e-6 relative) of
        # the chi's, so the depth scales are compared as rates
        # 1 / xi = -log(chi), to which that rounding passes unamplified;
        # c* near the critical line amplifies it by 1 / (1 - chi_c) (1.5e-5
        # seen), hence the looser bound at every point than at the four
        # below. Neighbouring grid points differ by 1e-2 or more.
        point = jax.device_get([[meanfield.solve(ACT[name], w_, b_)
                                 for b_ in sb2] for w_ in sw2])
        for k, field in enumerate(mf._fields):
          a = getattr(mf, field)
          b = np.array([[p[k] for p in row] for row in point])
          if field.startswith("xi"):
            a, b = 1 / a, 1 / b
          np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4,
                                     err_msg=field)
          for i, j in ((0, 0), (7, 1), (13, 4), (19, 2)):
            self.assertAlmostEqual(float(a[i, j]), float(b[i, j]),
                                   delta=1e-5 * (1 + abs(float(b[i, j]))))


class CriticalLineTest(parameterized.TestCase):

  def test_known_values(self):
    sb2 = jnp.asarray([0.0, 0.05, 0.5, 2.0])
    for name, value in (("relu", 2.0), ("linear", 1.0)):
      crit = jax.vmap(lambda b, n=name: meanfield.critical_sigma_w2(
          ACT[n], b))(sb2)
      # Bisection to float32 resolution of a chi_1 exact to rounding.
      np.testing.assert_allclose(np.asarray(crit), value, rtol=1e-6)
    with jax.enable_x64(True):  # the float64 program of the tests below
      self.assertAlmostEqual(
          float(meanfield.critical_sigma_w2(ACT["tanh"], 0.05)), 1.76,
          delta=0.01)  # Schoenholz et al. Fig. 1, read off the figure

  def test_odd_activations_without_bias(self):
    """sigma_b2 = 0: critical sigma_w2 = 1 / phi'(0)^2 (tanh 1, erf pi/4).

    Below it q* = 0 and chi_1 = sigma_w2 phi'(0)^2; above it chi_1 - 1 =
    (x - 1)^2 / 3 + ... with x = sigma_w2 phi'(0)^2 (tangent, not
    crossing), so a rounding error r of chi_1 moves the root by
    sqrt(3 r). float64 with r = 100 eps.
    """
    with jax.enable_x64(True):
      tol = math.sqrt(3 * 100 * np.finfo(np.float64).eps)
      for name, value in (("tanh", 1.0), ("erf", np.pi / 4)):
        crit = float(meanfield.critical_sigma_w2(ACT[name], 0.0))
        self.assertAlmostEqual(crit, value, delta=tol * value)

  @parameterized.parameters(("tanh",), ("erf",))
  def test_against_float64_reference(self, name):
    """The critical sigma_w2 against scipy quad + brentq (float64).

    Tolerance: the library's only error is the rule's on chi_1 and L at
    q* <= 5, asserted below to be <= 1e-6 relative (measured: 2e-7 for
    tanh at q = 5); it moves the root by 1e-6 chi_1 / |d chi_1/d sw2|, and
    we allow 3x that (bisection and the reference add < 1e-12).
    """
    fn = {"tanh": np.tanh, "erf": special.erf}[name]
    dfn = {"tanh": lambda u: 1 - np.tanh(u) ** 2,
           "erf": lambda u: 2 / np.sqrt(np.pi) * np.exp(-u * u)}[name]

    def expect(f, q):
      def integrand(z):
        return f(np.sqrt(q) * z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
      return integrate.quad(integrand, -12, 12, points=[0.0], limit=200,
                            epsabs=1e-14, epsrel=1e-13)[0]

    def q_star(sw2, sb2):
      return optimize.brentq(
          lambda q: sw2 * expect(lambda u: fn(u) ** 2, q) + sb2 - q,
          sb2, sw2 + sb2, xtol=1e-14)

    def chi(sw2, sb2):
      return sw2 * expect(lambda u: dfn(u) ** 2, q_star(sw2, sb2))

    act = ACT[name]
    with jax.enable_x64(True):
      for sb2 in (0.05, 0.5, 2.0):
        root = optimize.brentq(lambda w, b=sb2: chi(w, b) - 1, 0.5, 5.0,
                               xtol=1e-12)
        q_ref = q_star(root, sb2)
        self.assertLess(q_ref, 5.0)
        self.assertAlmostEqual(
            float(meanfield.chi_1(act, root, sb2, q_ref)), 1.0, delta=1e-6)
        dchi = (chi(root * (1 + 1e-4), sb2) - chi(root * (1 - 1e-4), sb2)) / (
            2e-4 * root)
        crit = float(meanfield.critical_sigma_w2(act, sb2))
        self.assertAlmostEqual(crit, root, delta=3e-6 / abs(dchi))
        mf = meanfield.solve(act, crit, sb2)
        self.assertAlmostEqual(float(mf.chi_1), 1.0, delta=1e-9)

  def test_depth_scales_diverge_at_the_critical_line(self):
    """xi_c = -1/log chi_c grows like 1/|1 - chi_c| as sigma_w2 -> critical.

    On both sides; at criticality (chi_1 = 1 exactly: ReLU sigma_w2 = 2,
    tanh sigma_w2 = 1, both sigma_b2 = 0) xi_c = +inf, never NaN.
    """
    with jax.enable_x64(True):
      tanh = ACT["tanh"]
      crit = float(meanfield.critical_sigma_w2(tanh, 0.05))
      for side in (-1, 1):
        xi = []
        for delta in (1e-1, 1e-2, 1e-3):
          mf = meanfield.solve(tanh, crit * (1 + side * delta), 0.05)
          self.assertEqual(side > 0, float(mf.c_star) < 1)
          chi_c = float(mf.chi_c)
          # -log x = (1 - x) (1 + (1 - x)/2 + ...): relative 0.6 |1 - x|.
          self.assertAlmostEqual(float(mf.xi_c) * (1 - chi_c), 1.0,
                                 delta=0.6 * abs(1 - chi_c))
          xi.append(float(mf.xi_c))
        self.assertGreater(xi[1], 5 * xi[0])
        self.assertGreater(xi[2], 5 * xi[1])
      # chi_1 = 1 up to the sums' rounding (< RATE_ULPS eps).
      eps = np.finfo(np.float64).eps
      mf = meanfield.solve(tanh, 1.0, 0.0)
      self.assertAlmostEqual(float(mf.chi_1), 1.0, delta=16 * eps)
      self.assertEqual(float(mf.xi_c), np.inf)
      self.assertEqual(float(mf.xi_q), np.inf)
    mf = meanfield.solve(ACT["relu"], 2.0, 0.0)
    self.assertEqual(float(mf.q_star), 1.0)  # every q is fixed
    self.assertAlmostEqual(float(mf.chi_1), 1.0,
                           delta=16 * np.finfo(np.float32).eps)
    self.assertEqual(float(mf.xi_c), np.inf)


class GridTest(absltest.TestCase):

  def test_fixed_point_q_vmaps(self):
    sw2 = jnp.linspace(0.5, 4.0, 5)
    batched = jax.vmap(lambda w: meanfield.fixed_point_q(ACT["erf"], w, 0.2))(
        sw2)
    single = [float(meanfield.fixed_point_q(ACT["erf"], w, 0.2)) for w in sw2]
    np.testing.assert_allclose(np.asarray(batched), single, rtol=1e-5)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "elementwise.*valid"):
      meanfield.solve(activations.get_activation("maxout"), 1.0, 0.1)
    with self.assertRaisesRegex(ValueError, "Activation"):
      meanfield.length_map(1.0, "tanh", 1.0, 0.1)
    with self.assertRaisesRegex(ValueError, "depth"):
      meanfield.q_sequence(1.0, ACT["tanh"], 1.0, 0.1, 0)
    with self.assertRaisesRegex(ValueError, "1-D"):
      meanfield.solve_grid(ACT["tanh"], jnp.ones((2, 2)), jnp.ones(3))
    with self.assertRaisesRegex(ValueError, "chunk_size"):
      meanfield.solve_grid(ACT["tanh"], jnp.ones(2), jnp.ones(3),
                           chunk_size=0)


def _delta_method_std(fn, sw2, sb2, qs, cs, width, n=80):
  """Std of measured q^l and c^l of two inputs of equal length (numpy).

  Given layer l-1, the pairs (h^l_ai, h^l_bi) are i.i.d. Gaussian with
  covariance s_l = (q_a, q_b, q_ab) = sw2 m_{l-1} + sb2, where m_{l-1} is
  the mean over N units of v(h) = (phi(h_a)^2, phi(h_b)^2, phi(h_a)
  phi(h_b)) at layer l-1. Linearising s_{l+1} = sw2 m_l + sb2 around the
  mean-field values: Cov(s_{l+1}) = V_{l+1} = J_l V_l J_l^T + sw2^2
  Cov[v] / N, with J_l the Jacobian of s -> sw2 E_s[v] + sb2 and V_1 = 0
  (h^1 given the inputs is exactly Gaussian). The measured (||h_a||^2,
  ||h_b||^2, <h_a, h_b>) / N adds the Wishart covariance W / N (Isserlis).
  c = q_ab / sqrt(q_a q_b) has gradient (-c/(2q), -c/(2q), 1/q).

  Returns:
    (std of q_a-hat, std of c-hat), each (depth,).
  """
  z, w = np.polynomial.hermite_e.hermegauss(n)
  w = w / np.sqrt(2 * np.pi)
  z1, z2 = np.meshgrid(z, z, indexing="ij")
  ww = w[:, None] * w[None, :]

  def moments(s):
    qa, qb, qab = s
    ua = np.sqrt(qa) * z1
    ub = qab / np.sqrt(qa) * z1 + np.sqrt(qb - qab ** 2 / qa) * z2
    pa, pb = fn(ua), fn(ub)
    v = np.stack([pa * pa, pb * pb, pa * pb])
    mean = np.einsum("ij,kij->k", ww, v)
    second = np.einsum("ij,kij,lij->kl", ww, v, v)
    return mean, second - np.outer(mean, mean)

  stds_q, stds_c = [], []
  cov = np.zeros((3, 3))
  for q, c in zip(qs, cs):
    s = np.array([q, q, c * q])
    qa, qb, qab = s
    wishart = np.array([
        [2 * qa * qa, 2 * qab * qab, 2 * qa * qab],
        [2 * qab * qab, 2 * qb * qb, 2 * qb * qab],
        [2 * qa * qab, 2 * qb * qab, qa * qb + qab * qab]]) / width
    total = cov + wishart
    grad = np.array([-c / (2 * q), -c / (2 * q), 1 / q])
    stds_q.append(np.sqrt(total[0, 0]))
    stds_c.append(np.sqrt(grad @ total @ grad))
    # Propagate to the next layer.
    _, v_cov = moments(s)
    jac = np.stack([
        (moments(s + h)[0] - moments(s - h)[0]) / (2 * h[k]) * sw2
        for k, h in enumerate(np.eye(3) * 1e-5 * q)], axis=1)
    cov = jac @ cov @ jac.T + sw2 ** 2 * v_cov / width
  return np.array(stds_q), np.array(stds_c)


def _init_eagerly(model, key, n_in):
  """``model.init``'s parameters, drawn by the model's own initializers.

  Called eagerly, layer by layer: the random draws compile once per shape
  and are shared by every model of these shapes (a jitted ``model.init``
  compiles the whole network for each model). The tree is checked against
  ``model.init``'s (traced, not compiled)."""
  keys = jax.random.split(key, 2 * model.depth)
  fan_ins = [n_in] + [model.width] * (model.depth - 1)
  params = {"params": {f"layers_{l}": {
      "kernel": model.kernel_init(keys[2 * l], (fan_in, model.width)),
      "bias": model.bias_init(keys[2 * l + 1], (model.width,))}
      for l, fan_in in enumerate(fan_ins)}}
  chex.assert_trees_all_equal_shapes_and_dtypes(params, jax.eval_shape(
      model.init, key, jax.ShapeDtypeStruct((n_in,), jnp.float32)))
  return params


@pytest.mark.slow
class MonteCarloTest(parameterized.TestCase):

  @parameterized.parameters(
      ("tanh", np.tanh, 1.2, 0.3, 3.0, 0.2),
      ("relu", lambda u: np.maximum(u, 0.0), 1.5, 0.5, 4.0, -0.5))
  def test_wide_network_matches_q_and_c_sequences(self, name, fn, sw2, sb2,
                                                  norm2, c0):
    """||h^l||^2 / N and corr(h_a^l, h_b^l) of a width-1000 net vs theory.

    Two inputs of equal squared norm norm2 * N0 and correlation c0 through
    ``seeds`` independent Gaussian nets (float32). The seed means are
    compared with q_sequence and c_sequence within 5 standard deviations of
    the delta-method variance (_delta_method_std) divided by the number of
    seeds; its O(1/N) bias is ~1e-3 of the tolerance.
    """
    width, n_in, depth, seeds = 1000, 400, 5, 2
    x = np.random.default_rng(7).standard_normal((2, n_in))
    xa = x[0] * np.sqrt(norm2 * n_in) / np.linalg.norm(x[0])
    perp = x[1] - np.dot(x[1], xa) / np.dot(xa, xa) * xa
    perp = perp * np.linalg.norm(xa) / np.linalg.norm(perp)
    xb = c0 * xa + math.sqrt(1 - c0 * c0) * perp
    inputs = np.stack([xa, xb]).astype(np.float32)
    xa, xb = inputs

    act = ACT[name]
    q1 = meanfield.input_q(xa, sw2, sb2)
    self.assertAlmostEqual(float(q1), sw2 * norm2 + sb2, delta=1e-5)
    c1 = meanfield.input_correlation(xa, xb, sw2, sb2)
    self.assertAlmostEqual(
        float(c1), (sw2 * norm2 * c0 + sb2) / (sw2 * norm2 + sb2), delta=1e-5)
    qs = np.asarray(meanfield.q_sequence(q1, act, sw2, sb2, depth))
    cs = np.asarray(meanfield.c_sequence(c1, q1, act, sw2, sb2, depth))

    model = models.make_mlp(depth=depth, width=width, activation=name,
                            init="gaussian", sigma_w2=sw2, sigma_b2=sb2)
    q_hat, c_hat = np.zeros((2, depth)), np.zeros(depth)
    for seed in range(seeds):
      params = _init_eagerly(model, jax.random.key(seed), n_in)
      _, hs = model.apply(params, inputs, return_preactivations=True)
      h = np.stack(jax.device_get(hs)).astype(np.float64)
      sq = np.mean(h * h, axis=-1)  # (depth, 2)
      q_hat += sq.T / seeds
      c_hat += np.mean(h[:, 0] * h[:, 1], axis=-1) / np.sqrt(
          sq[:, 0] * sq[:, 1]) / seeds
    std_q, std_c = _delta_method_std(fn, sw2, sb2, qs, cs, width)
    for l in range(depth):
      for k in range(2):
        self.assertAlmostEqual(q_hat[k, l], qs[l],
                               delta=5 * std_q[l] / math.sqrt(seeds))
      self.assertAlmostEqual(c_hat[l], cs[l],
                             delta=5 * std_c[l] / math.sqrt(seeds))
    # The test has power: the sequences move by many tolerances.
    self.assertGreater(abs(cs[-1] - cs[0]), 10 * std_c[-1] / math.sqrt(seeds))
    self.assertGreater(abs(qs[-1] - qs[0]), 10 * std_q[-1] / math.sqrt(seeds))


if __name__ == "__main__":
  absltest.main()
