"""Gaussian expectations of every activation, kinks and jumps included,
against closed forms and scipy's adaptive quadrature (issue 15, item 1)."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate
from scipy import optimize
from scipy import stats

from vgrad.nn import activations
from vgrad.theory import free_probability as fp
from vgrad.theory import meanfield
from vgrad.theory import quadrature

# The base activations (the transformed dks_*/tat_* entries are these
# bases with shifts and scales: tests/kernel_shaping_test.py).
ELEMENTWISE = [name for name in activations.ACTIVATIONS
               if name != "maxout" and name not in activations.TRANSFORMED]
# Activations whose phi or phi' is not smooth, and where.
KINKED = {"relu": (0.0,), "leaky_relu": (0.0,), "elu": (0.0,),
          "selu": (0.0,), "hard_tanh": (-1.0, 1.0), "softsign": (0.0,)}


def _adaptive(f, q: float, breakpoints) -> float:
  """E[f(u)], u ~ N(0, q), by scipy's adaptive quadrature split at the
  breakpoints (an independent computation)."""
  s = math.sqrt(q)
  cuts = (*breakpoints, 0.0, -1.0, 1.0, -4.0, 4.0)
  edges = sorted({-14 * s, 14 * s, *(b for b in cuts if abs(b) < 14 * s)})
  total = 0.0
  for a, b in zip(edges[:-1], edges[1:]):
    value, _ = integrate.quad(lambda u: f(u) * stats.norm.pdf(u, scale=s), a,
                              b, epsabs=1e-15, epsrel=1e-13, limit=200)
    total += value
  return total


class RuleTest(absltest.TestCase):

  def test_gauss_hermite_refuses_rules_that_do_not_compute(self):
    z, w = quadrature.gauss_hermite(quadrature.MAX_POINTS, jnp.float32)
    self.assertTrue(np.all(np.asarray(w) >= 0))
    for n in (quadrature.MAX_POINTS + 1, 400, 0, 2.5):
      with self.assertRaisesRegex(ValueError, r"integer in \[1, 370\]"):
        quadrature.gauss_hermite(n)

  def test_piecewise_rule_is_symmetric_and_integrates_moments(self):
    with jax.enable_x64(True):
      for breakpoints, zero in (([0.7, 2.0], False), ([], True),
                                ([30.0], False)):
        z, w = quadrature.piecewise_rule(jnp.asarray(breakpoints), 100,
                                         zero=zero, dtype=jnp.float64)
        z, w = np.asarray(z), np.asarray(w)
        np.testing.assert_array_equal(z[::-1], -z)
        self.assertTrue(np.all(np.diff(z) >= 0))
        for k, moment in ((0, 1.0), (2, 1.0), (4, 3.0), (6, 15.0)):
          np.testing.assert_allclose(np.dot(w, z ** k), moment, rtol=1e-13)
        # The mass of a piece: P(0.7 < z < 2) exactly.
        inside = np.dot(w, (z > 0.7) & (z < 2.0))
        if breakpoints == [0.7, 2.0]:
          np.testing.assert_allclose(
              inside, stats.norm.cdf(2.0) - stats.norm.cdf(0.7), rtol=1e-13)


class KinkedActivationTest(parameterized.TestCase):

  def test_every_kinked_activation_names_its_breakpoints(self):
    for name in ELEMENTWISE:
      self.assertEqual(tuple(activations.get_activation(name).breakpoints),
                       KINKED.get(name, ()), name)

  @parameterized.parameters(*ELEMENTWISE)
  def test_moments_match_adaptive_quadrature(self, name):
    # Kinked activations to 1e-10; smooth ones to 1e-7 (tanh, sigmoid,
    # gelu at q = 1000: ~2e-8; one Gauss-Hermite rule erred by 40 % on
    # E[tanh'^4] at q = 50).
    rtol = 1e-10 if name in KINKED and name != "softsign" else 1e-7
    act = activations.get_activation(name)
    phi = lambda u: float(act.fn(np.float64(u)))        # noqa: E731
    dphi = lambda u: float(act.deriv(np.float64(u)))    # noqa: E731
    with jax.enable_x64(True):
      for q in (0.001, 0.05, 1.0, 7.0, 50.0, 1000.0):
        e2 = _adaptive(lambda u: phi(u) ** 2, q, act.breakpoints)
        d2 = _adaptive(lambda u: dphi(u) ** 2, q, act.breakpoints)
        d4 = _adaptive(lambda u: dphi(u) ** 4, q, act.breakpoints)
        np.testing.assert_allclose(
            meanfield.length_map(q, act, 1.0, 0.0), e2, rtol=rtol,
            err_msg=f"{name} E[phi^2] at q={q}")
        np.testing.assert_allclose(
            meanfield.derivative_moment(act, q, 1), d2, rtol=rtol,
            err_msg=f"{name} E[phi'^2] at q={q}")
        np.testing.assert_allclose(
            meanfield.derivative_moment(act, q, 2), d4, rtol=rtol,
            err_msg=f"{name} E[phi'^4] at q={q}")

  def test_hard_tanh_closed_forms(self):
    with jax.enable_x64(True):
      act = activations.get_activation("hard_tanh")
      for q in (0.01, 0.3, 1.0, 4.0, 100.0):
        a = 1 / math.sqrt(q)
        inside = 2 * stats.norm.cdf(a) - 1            # P(|u| < 1)
        second = q * (inside - 2 * a * stats.norm.pdf(a)) + (1 - inside)
        np.testing.assert_allclose(meanfield.derivative_moment(act, q, 1),
                                   inside, rtol=1e-12)
        np.testing.assert_allclose(meanfield.length_map(q, act, 1.0, 0.0),
                                   second, rtol=1e-12)

  def test_selu_at_lecun_init(self):
    """q* = 1 at (sigma_w2, sigma_b2) = (1, 0) (SELU's design), and
    mu_k = lambda^2k [1/2 + alpha^2k e^(2k^2) Phi(-2k)] in closed form:
    chi_1 = 1.07157 (a single Gauss-Hermite rule gave 1.06820) and
    mu_2 = 1.51135 (1.4908)."""
    lam, alpha = activations.SELU_SCALE, activations.SELU_ALPHA
    with jax.enable_x64(True):
      act = activations.get_activation("selu")
      q_star = meanfield.fixed_point_q(act, 1.0, 0.0)
      np.testing.assert_allclose(q_star, 1.0, atol=1e-9)
      for k in (1, 2):
        closed = lam ** (2 * k) * (0.5 + alpha ** (2 * k) * math.exp(
            2 * k * k) * stats.norm.cdf(-2 * k))
        np.testing.assert_allclose(
            meanfield.derivative_moment(act, 1.0, k), closed, rtol=1e-12)
      np.testing.assert_allclose(meanfield.chi_1(act, 1.0, 0.0, q_star),
                                 1.0715749, rtol=1e-6)

  def test_hard_tanh_critical_point_and_free_probability_m1(self):
    """The critical sigma_w2 of hard tanh at sigma_b2 = 0.05 is 1.16554
    (one rule gave 1.17155), found here independently with scipy; at
    criticality m1 = chi_1^L = 1 at every depth and bias variance (one
    rule gave 0.988, 0.902, 0.733, 2.673)."""
    def critical(sb2):
      def q_star(sw2):
        a = lambda q: 1 / math.sqrt(q)                      # noqa: E731
        second = lambda q: (q * ((2 * stats.norm.cdf(a(q)) - 1)   # noqa: E731
                                 - 2 * a(q) * stats.norm.pdf(a(q)))
                            + 2 * stats.norm.cdf(-a(q)))
        return optimize.brentq(lambda q: sw2 * second(q) + sb2 - q, 1e-9,
                               sw2 + sb2 + 1, xtol=1e-15)
      return optimize.brentq(
          lambda sw2: sw2 * (2 * stats.norm.cdf(1 / math.sqrt(
              q_star(sw2))) - 1) - 1, 1.0001, 5.0, xtol=1e-14)

    act = activations.get_activation("hard_tanh")
    with jax.enable_x64(True):
      np.testing.assert_allclose(critical(0.05), 1.16554, atol=5e-6)
      for sb2 in (0.01, 0.05, 0.2, 1.0):
        sw2 = float(meanfield.critical_sigma_w2(act, sb2))
        np.testing.assert_allclose(sw2, critical(sb2), rtol=1e-8)
        q = float(meanfield.fixed_point_q(act, sw2, sb2))
        m1, _ = fp.predicted_moments(act, q, sw2, 32, "orthogonal")
        np.testing.assert_allclose(m1, 1.0, rtol=1e-6, err_msg=f"{sb2=}")


if __name__ == "__main__":
  absltest.main()
