r"""Mean-field signal propagation in wide random networks.

Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (2016), "Exponential
expressivity in deep neural networks through transient chaos" ("Poole"), and
Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), "Deep information
propagation" ("Schoenholz"). For the fully connected net of
:mod:`vgrad.nn.models`,

    h^l = W^l phi(h^{l-1}) + b^l,   W_ij ~ N(0, sigma_w2 / N),
                                    b_i ~ N(0, sigma_b2),

(h^1 = W^1 x^0 + b^1), in the limit of infinite width every pre-activation
is Gaussian with variance ("length") q^l and, between two inputs,
correlation c^l. Everything is parametrised by the VARIANCES ``sigma_w2``
and ``sigma_b2``, as in the papers and everywhere in vgrad
(``models.make_mlp(init='gaussian', sigma_w2=..., sigma_b2=...)`` builds
exactly this network; see :mod:`vgrad.nn.config`).
With z, z1, z2 independent standard normals:

    length map (Poole eq. 3)       q^{l+1} = sigma_w2 E[phi(sqrt(q^l) z)^2]
                                             + sigma_b2
    correlation map (Poole eq. 5)  c^{l+1} = (sigma_w2 E[phi(u1) phi(u2)]
                                             + sigma_b2) / q^{l+1},
                                   u1 = sqrt(q) z1,
                                   u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)
    chi_1 (Poole eq. 7)            sigma_w2 E[phi'(sqrt(q*) z)^2]
    chi_c (Schoenholz eq. 9)       sigma_w2 E[phi'(u1) phi'(u2)] at c*
    depth scales (Schoenholz       xi_q^{-1} = -log(chi_1 + sigma_w2
      eqs. 8 and 9)                        E[phi''(sqrt(q*) z) phi(sqrt(q*) z)])
                                   xi_c^{-1} = -log chi_c

chi_1 is the mean squared singular value of a layer Jacobian D^l W^l:
chi_1 < 1 is the ordered phase (vanishing gradients, c* = 1), chi_1 > 1 the
chaotic phase (exploding gradients, c* < 1), chi_1 = 1 the critical line.

How the expectations are computed:

* 1-D: :func:`vgrad.theory.quadrature.activation_rule`, composite
  Gauss-Legendre against the Gaussian density cut at 0, at the
  activation's kinks and jumps (``Activation.breakpoints``) and at its
  scale points, all divided by sqrt(q), so that phi(sqrt(q) z) is smooth
  on every piece whatever q; ``num_points`` = ``POINTS_1D`` = 300 gives
  ~150 nodes per piece. Every registered activation is within 1e-10
  (kinked) or 1e-7 (smooth) of adaptive quadrature for q in [1e-3, 1e3].
  (One 300-node Gauss-Hermite rule, used before: E[tanh'^2] off by 5e-6 at
  q = 7 and E[tanh'^4] by 40 % at q = 50; hard tanh's sums step
  functions of q, errors up to 1e-2.)
* 2-D (the correlation map, chi_c): Mehler's formula. With a_k =
  E[phi(sqrt(q) z) He_k(z)] / sqrt(k!) (1-D integrals, same rule),
  E[phi(u1) phi(u2)] = sum_k a_k^2 c^k, a power series with non-negative
  coefficients; its derivative is q E[phi'(u1) phi'(u2)] (Price's theorem).
  ``HERMITE_TERMS`` = 128 terms are summed; the rest, whose even and odd
  parts have values and slopes at c = 1 known from 1-D integrals (Parseval:
  sum_k a_k^2 = E[phi^2], sum_k k a_k^2 = q E[phi'^2]), is closed by
  R(c) = R(1) |c|^m matching both. So the map is exactly 1 at c = 1 with
  slope chi_1 there, and costs one matrix-vector product per q instead of
  an n^2-node tensor rule (which at q = 7 would need n ~ 300 per axis).
  Measured in float64 against closed forms: erf (Williams 1997) map and
  slope within 1e-13 at q <= 3 and 3e-8 at q = 7; tanh against a
  200 x 200 tensor rule at q <= 1: 1e-15. Where phi has a kink the
  coefficients converge only algebraically: ReLU's map (against the arc-
  cosine kernel) is off by up to 8e-4 and its slope by 2e-2 near |c| = 1;
  SELU's map by 5e-5 and its slope by 1e-3 (at q = 3, against nested
  adaptive quadrature), and the slope at c = 1 differs from chi_1 by 5e-3.
* Precision: JAX's default float dtype, float32, or float64 under
  ``jax_enable_x64`` (then quadrature-limited as above). float32 gives
  about 1e-6 relative away from criticality; near it, what rounding
  cannot resolve is: a c* within ~1e-4 of 1, and for odd activations with
  sigma_b2 = 0 the critical sigma_w2 to ~sqrt(eps) (chi_1 - 1 is quadratic
  there), 6e-4 for tanh in float32, 2e-8 in float64.

Conventions (details in each function's docstring):

* The correlation map divides by q^{l+1} = length_map(q^l) rather than by
  q^l, so that off the fixed point it is the exact layer map of two inputs
  of equal length q^l; at q = q* the two are Poole's eq. 5.
* q = 0 is evaluated as the limit q -> 0+ (at q = ``Q_SMALL`` = 1e-30), so
  the value of phi' at a kink (ReLU's phi'(0) = 0) does not matter.
* q* = +inf where the length map has no finite fixed point (ReLU-like with
  sigma_w2 > 2, ...; see :func:`fixed_point_q`). The other quantities are
  then their q -> infinity limits, evaluated at q = ``Q_LARGE`` = 1e8: exact
  for positively homogeneous activations (ReLU, leaky ReLU, linear), whose
  chi_1 does not depend on q, within O(Q_LARGE^{-1/2}) otherwise; xi_q is
  +inf (the length never settles).
* A depth scale is +inf where its rate is >= 1 - 16 eps (xi_c on the
  critical line chi_c = 1, within rounding); never NaN for finite inputs.

All functions take scalars and are pure and ``jit``- and ``vmap``-able over
``sigma_w2``, ``sigma_b2``, ``q`` and ``c``; the activation, node counts,
depths and iteration counts are static. The solvers are jitted (compiled
once per activation object).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vgrad.nn import activations as activations_lib
from vgrad.theory import quadrature

Array = jax.Array
Activation = activations_lib.Activation

POINTS_1D = 300
HERMITE_TERMS = 128
# Newton steps for q* (stopped early once converged): quadratic convergence
# at a simple root; at a double root (tanh, sigma_w2 = 1, sigma_b2 = 0,
# q* = 0) each step halves q. Plain steps where Newton is refused.
Q_ITERATIONS = 100
# Most Newton steps for c* (stopped early once converged): from c = 0 the
# iterates increase monotonically (the map is convex on [0, 1]); 40
# halvings near the double root c* = 1 at criticality leave 1e-12.
C_ITERATIONS = 40
BISECTION_ITERATIONS = 64
# Where the limits q -> 0+ and q -> infinity are evaluated.
Q_SMALL = 1e-30
Q_LARGE = 1e8
# An increasing q^l has a finite limit q* when, after the Newton steps, the
# remaining correction |g(q)| / (1 - L'(q)) is at most Q_CORRECTION_RTOL q.
# That needs 1 - L'(q*) >= Q_MIN_GAP_ULPS eps: g(q) is known only to a few
# eps q, so a flatter crossing moves q* by more than Q_CORRECTION_RTOL q.
Q_CORRECTION_RTOL = 1e-2
Q_MIN_GAP_ULPS = 1e3
# The iteration stops where |g(q)| <= Q_STALL_ULPS eps (2 q + |g|), the
# rounding level of g = L(q) - q.
Q_STALL_ULPS = 4
# Depth scales are +inf where the rate is within RATE_ULPS eps of 1.
RATE_ULPS = 16
# critical_sigma_w2 searches sigma_w2 in [0, SIGMA_W2_MAX]: beyond it the
# q* of bounded activations exceeds what POINTS_1D nodes resolve.
SIGMA_W2_MAX = 16.0


class MeanField(NamedTuple):
  """Mean-field fixed point and depth scales (scalars or (n, m) grids).

  Attributes:
    q_star: fixed point of the length map (+inf: none, see fixed_point_q).
    c_star: stable fixed point of the correlation map in [0, 1].
    chi_1: sigma_w2 E[phi'(sqrt(q*) z)^2], the mean squared singular value
      of a layer Jacobian (Poole eq. 7).
    chi_c: slope of the correlation map at c* (Schoenholz eq. 9).
    xi_q: depth scale of the length's convergence (Schoenholz eq. 8).
    xi_c: depth scale of the correlation's convergence (Schoenholz eq. 9);
      +inf on the critical line.
  """
  q_star: Array
  c_star: Array
  chi_1: Array
  chi_c: Array
  xi_q: Array
  xi_c: Array


# --------------------------------------------------------------------------
# Helpers.

def _check_elementwise(activation: Activation) -> None:
  if not isinstance(activation, Activation):
    raise ValueError("activation must be a vgrad.nn.activations.Activation "
                     f"(see get_activation), got {type(activation).__name__}")
  if activation.is_maxout or activation.deriv is None:
    valid = sorted(n for n in activations_lib.ACTIVATIONS if n != "maxout")
    raise ValueError(f"mean-field theory needs an elementwise activation, "
                     f"got {activation.describe()}; valid activations: "
                     f"{', '.join(valid)}")


def _check_depth(depth: int) -> None:
  if int(depth) != depth or depth < 1:
    raise ValueError(f"depth must be an integer >= 1, got {depth}")


def _float(x) -> Array:
  """``x`` as an array of JAX's default float dtype."""
  return jnp.asarray(x, jnp.result_type(float))


def _effective_q(q: Array) -> Array:
  """q with q <= Q_SMALL -> Q_SMALL (q -> 0+) and +inf -> Q_LARGE."""
  return jnp.where(jnp.isinf(q), Q_LARGE, jnp.maximum(q, Q_SMALL))


def _expect(values_fn, q: Array, num_points: int, dtype=None,
            breakpoints: tuple[float, ...] = ()) -> Array:
  """E[f] with ``values_fn(u, z)`` the (n,) values at u = sqrt(q) z; split
  at the activation's ``breakpoints`` (:func:`quadrature.activation_rule`)."""
  z, w = quadrature.activation_rule(breakpoints, q, num_points, dtype)
  return jnp.dot(w, values_fn(jnp.sqrt(q) * z, z))


def _inverse_rate(rate: Array) -> Array:
  """xi = -1 / log(rate); 0 for rate <= 0 and +inf for rate >= 1 - RATE_ULPS
  eps (a rate within rounding of 1: chi_1 of ReLU at sigma_w2 = 2 is
  2 sum_{z_i > 0} w_i, which rounds to 1 - eps in float64)."""
  one = 1 - RATE_ULPS * jnp.finfo(rate.dtype).eps
  inside = (rate > 0) & (rate < one)
  xi = -1.0 / jnp.log(jnp.where(inside, rate, 0.5))
  return jnp.where(rate >= one, jnp.inf, jnp.where(rate <= 0, 0.0, xi))


# --------------------------------------------------------------------------
# Inputs and the length map.

def input_q(x0: Array, sigma_w2, sigma_b2) -> Array:
  """q^1 = sigma_w2 ||x0||^2 / N0 + sigma_b2 of inputs ``x0`` (..., N0).

  The variance of every first-layer pre-activation h^1_i = (W^1 x0 + b^1)_i,
  which given x0 is exactly Gaussian. Returns shape (...,).
  """
  x0 = _float(x0)
  return _float(sigma_w2) * jnp.mean(x0 * x0, axis=-1) + _float(sigma_b2)


def input_correlation(x0a: Array, x0b: Array, sigma_w2, sigma_b2) -> Array:
  """c^1 = q^1_ab / sqrt(q^1_a q^1_b) of two inputs (..., N0) -> (...,).

  q^1_ab = sigma_w2 <x0a, x0b> / N0 + sigma_b2 is the covariance of the two
  inputs' first-layer pre-activations.
  """
  x0a, x0b = _float(x0a), _float(x0b)
  q_ab = _float(sigma_w2) * jnp.mean(x0a * x0b, axis=-1) + _float(sigma_b2)
  return q_ab / jnp.sqrt(input_q(x0a, sigma_w2, sigma_b2)
                         * input_q(x0b, sigma_w2, sigma_b2))


def length_map(q, activation: Activation, sigma_w2, sigma_b2, *,
               num_points: int = POINTS_1D) -> Array:
  """q -> sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2 (Poole eq. 3).

  Args:
    q: scalar length q^l >= 0.
    activation: an elementwise Activation.
    sigma_w2, sigma_b2: scalar weight and bias variances.
    num_points: sets the quadrature's size (quadrature.activation_rule).

  Returns:
    The scalar q^{l+1}.
  """
  _check_elementwise(activation)
  phi = activation.fn
  second = _expect(lambda u, z: phi(u) ** 2, _float(q), num_points,
                   breakpoints=activation.breakpoints)
  return _float(sigma_w2) * second + _float(sigma_b2)


def length_map_slope(q, activation: Activation, sigma_w2, sigma_b2, *,
                     num_points: int = POINTS_1D) -> Array:
  """L'(q) = chi_1 + sigma_w2 E[phi''(u) phi(u)], u = sqrt(q) z.

  The rate in Schoenholz eq. 8 (xi_q^{-1} = -log L'(q*)). Computed in the
  equivalent form (Gaussian integration by parts, E[g'(u)] = E[g(u) u] / q
  with g = phi phi')

      L'(q) = sigma_w2 E[phi(u) phi'(u) z] / sqrt(q),

  which needs only the closed-form phi'. Both agree whenever phi' is
  continuous or jumps only where phi = 0 (the tests check this against
  phi'' by autodiff); for hard tanh, whose phi' jumps at +-1 where
  phi = +-1, the pointwise phi'' misses the delta functions of the
  distributional one and only this form is d length_map / dq. q = 0 is the
  limit q -> 0+. Arguments as :func:`length_map` (``sigma_b2`` does not
  enter).
  """
  del sigma_b2
  _check_elementwise(activation)
  phi, dphi = activation.fn, activation.deriv
  q = _effective_q(_float(q))
  moment = _expect(lambda u, z: phi(u) * dphi(u) * z, q, num_points,
                   breakpoints=activation.breakpoints)
  return _float(sigma_w2) * moment / jnp.sqrt(q)


@functools.partial(jax.jit,
                   static_argnames=("activation", "depth", "num_points"))
def q_sequence(q1, activation: Activation, sigma_w2, sigma_b2, depth: int, *,
               num_points: int = POINTS_1D) -> Array:
  """Lengths q^1, ..., q^depth of layers 1..depth (Poole eq. 3 iterated).

  Args:
    q1: scalar first-layer length, e.g. ``input_q(x0, sigma_w2, sigma_b2)``.
    activation, sigma_w2, sigma_b2: as :func:`length_map`.
    depth: number of layers, a Python int >= 1.

  Returns:
    Shape (depth,); entry l - 1 is the predicted ||h^l||^2 / N.
  """
  _check_elementwise(activation)
  _check_depth(depth)

  def body(q, _):
    return length_map(q, activation, sigma_w2, sigma_b2,
                      num_points=num_points), q

  _, qs = jax.lax.scan(body, _float(q1), None, length=int(depth))
  return qs


@functools.partial(jax.jit, static_argnames=("activation", "num_points",
                                             "iterations"))
def fixed_point_q(activation: Activation, sigma_w2, sigma_b2, *,
                  num_points: int = POINTS_1D,
                  iterations: int = Q_ITERATIONS) -> Array:
  """q* = length_map(q*), the limit of q^l from q = 1 (Poole Sec. 3).

  Safeguarded Newton on g(q) = length_map(q) - q from q = 1, at most
  ``iterations`` steps (a ``lax.while_loop`` that stops when a step no
  longer changes q). The length map is increasing, so plain iteration
  q -> length_map(q) moves monotonically to the nearest fixed point in the
  direction of g(1); that is the q* returned. A Newton step is taken only
  if it moves the same way and does not cross a fixed point (g keeps its
  sign); if it crosses one, the secant point between q and the Newton
  point, under the same conditions; otherwise the plain step. The
  iteration stops where |g| is at its rounding level. Newton matters near
  criticality, where plain iteration converges only algebraically (tanh,
  sigma_w2 = 1, sigma_b2 = 0: q^l ~ 1 / (2 l)).

  Conventions:
    * Moving down (g(1) <= 0) q^l is bounded below and q* is finite.
    * Moving up, q* = +inf unless the final remaining Newton correction
      |g| / (1 - L') is at most ``Q_CORRECTION_RTOL`` q* with
      1 - L'(q*) >= ``Q_MIN_GAP_ULPS`` eps (below that, g's rounding error
      moves the crossing by more than 1 %): no finite fixed point for
      ReLU-like activations with sigma_w2 > 2, or sigma_w2 = 2 < sigma_b2 /
      eps (ReLU: 1 - L' = 1 - sigma_w2 / 2, so in float32 sigma_w2 >
      2 - 2e-4 with sigma_b2 > 0 gives +inf), for linear with
      sigma_w2 >= 1 and sigma_b2 > 0, and for slowly diverging smooth
      ReLU-likes (softplus at sigma_w2 = 2: g(q) ~ q^{-1/2} > 0).
    * Every q fixed (ReLU with sigma_w2 = 2, linear with sigma_w2 = 1, both
      with sigma_b2 = 0): q* = 1, the starting q.
    * Closed forms: linear q* = sigma_b2 / (1 - sigma_w2) for sigma_w2 < 1;
      ReLU q* = sigma_b2 / (1 - sigma_w2 / 2) for sigma_w2 < 2.

  Bounded activations (tanh, erf, sigmoid, softsign, hard tanh) always have
  q* <= sigma_w2 sup phi^2 + sigma_b2.

  Args:
    activation: an elementwise Activation.
    sigma_w2, sigma_b2: scalar variances (sigma_w2 > 0, sigma_b2 >= 0).
    num_points: sets the quadrature's size (quadrature.activation_rule).
    iterations: most Newton steps.

  Returns:
    The scalar q* in [0, +inf].
  """
  _check_elementwise(activation)
  sw2, sb2 = _float(sigma_w2), _float(sigma_b2)
  kwargs = {"activation": activation, "sigma_w2": sw2, "sigma_b2": sb2,
            "num_points": num_points}

  def residual(q):
    return length_map(q, **kwargs) - q

  eps = jnp.finfo(sw2.dtype).eps

  def safe(candidate, q, g):
    """Whether ``candidate`` moves like the plain step from q without
    crossing a fixed point; and g(candidate)."""
    # Signs, not products: near q* = 0 the products underflow.
    sign = jnp.sign(g)
    moves = jnp.isfinite(candidate) & (sign * jnp.sign(candidate - q) > 0)
    g_candidate = residual(jnp.where(moves, candidate, q))
    return moves & (sign * jnp.sign(g_candidate) >= 0), g_candidate

  def step(q):
    g = residual(q)
    newton = jnp.maximum(q - g / (length_map_slope(q, **kwargs) - 1), 0.0)
    newton_ok, g_newton = safe(newton, q, g)
    # Newton crossed the root: the chord to its point does not (for a g of
    # one curvature over the bracket), and the pair converges fast.
    secant = q - (newton - q) * (g / (g_newton - g))
    secant_ok, _ = safe(secant, q, g)
    # |g| at the level of its own rounding: q is fixed as far as the
    # arithmetic can tell (every q is, for ReLU at sigma_w2 = 2).
    fixed = jnp.abs(g) <= Q_STALL_ULPS * eps * (2 * q + jnp.abs(g))
    return jnp.where(fixed, q, jnp.where(
        newton_ok, newton, jnp.where(secant_ok, secant, q + g)))

  def cond(state):
    i, _, moved = state
    return (i < iterations) & moved

  def body(state):
    i, q, _ = state
    new = step(q)
    return i + 1, new, jnp.isfinite(new) & (new != q)

  one = jnp.ones_like(sw2 + sb2)
  _, q, _ = jax.lax.while_loop(cond, body, (0, one, jnp.ones_like(one, bool)))
  g = residual(q)
  gap = 1 - length_map_slope(q, **kwargs)
  correction = jnp.abs(g) / jnp.where(gap > 0, gap, 1.0)
  resolved = gap >= Q_MIN_GAP_ULPS * jnp.finfo(q.dtype).eps
  # |g| at its rounding level at the start, which the iteration never
  # left: every q is fixed as far as the arithmetic can tell (ReLU at
  # sigma_w2 = 2 and sigma_b2 = 0, whichever way g(1) rounds). A q that
  # drifted up until a constant g fell below its rounding is not.
  stalled = (q == one) & (jnp.abs(g) <= Q_STALL_ULPS * eps
                          * (2 * q + jnp.abs(g)))
  converged = jnp.isfinite(q) & ((residual(one) <= 0) | stalled | (
      resolved & (correction <= Q_CORRECTION_RTOL * q)))
  return jnp.where(converged, q, jnp.inf)


# --------------------------------------------------------------------------
# Gradient moments.

def derivative_moment(activation: Activation, q, k, *,
                      num_points: int = POINTS_1D, dtype=None) -> Array:
  """mu_k = E[phi'(sqrt(q) z)^(2k)] (Pennington et al. 2017, Sec. 2.4).

  The one implementation: :mod:`vgrad.theory.free_probability` calls it
  with its own (coarser) rule, so its predicted moments are those of its
  predicted density. mu_1 = chi_1 / sigma_w2; the moments of the squared
  singular values of a deep network's Jacobian are polynomials in these.
  q = 0 and q = +inf are the limits q -> 0+ and q -> infinity (see the
  module docstring): ReLU's mu_k is 1/2 at every q, q = 0 included.

  Args:
    activation: an elementwise Activation.
    q: scalar length.
    k: scalar moment order >= 0.
    num_points: sets the quadrature's size (quadrature.activation_rule).
    dtype: float dtype of the rule and of q (JAX's default float if None).

  Returns:
    The scalar mu_k.
  """
  _check_elementwise(activation)
  dphi = activation.deriv
  dtype = jnp.result_type(float) if dtype is None else dtype
  power = 2 * jnp.asarray(k, dtype)
  return _expect(lambda u, z: dphi(u) ** power,
                 _effective_q(jnp.asarray(q, dtype)), num_points, dtype,
                 breakpoints=activation.breakpoints)


def chi_1(activation: Activation, sigma_w2, sigma_b2, q_star, *,
          num_points: int = POINTS_1D) -> Array:
  """chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2] (Poole eq. 7; Schoenholz eq. 5).

  The mean squared singular value of a layer's Jacobian D^l W^l at the fixed
  point, and the slope of the correlation map at c = 1; closed-form phi'.
  ``sigma_b2`` enters only through q*. q* = 0 and +inf are limits.

  Returns:
    The scalar chi_1.
  """
  del sigma_b2
  return _float(sigma_w2) * derivative_moment(activation, q_star, 1,
                                              num_points=num_points)


# --------------------------------------------------------------------------
# The correlation map (Mehler series) and its fixed point.

def _hermite_matrix(z: Array, w: Array, terms: int) -> Array:
  """(terms + 1, n): w_i He_k(z_i) / sqrt(k!) for the rule (z, w).

  ``a = M @ phi(sqrt(q) z)`` are the Hermite coefficients a_0..a_terms. By
  the three-term recurrence h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k+1)
  of h_k = He_k / sqrt(k!), run on w h_k so that nothing overflows (|w h_k|
  <= exp(-z^2 / 4)); computed in the graph, as it is cheap and a constant
  of this size slows compilation.
  """
  def step(rows, k):
    prev, cur = rows
    nxt = (z * cur - jnp.sqrt(k) * prev) / jnp.sqrt(k + 1)
    return (cur, nxt), nxt

  ks = jnp.arange(1, terms, dtype=z.dtype)
  _, rest = jax.lax.scan(step, (w, w * z), ks)
  return jnp.concatenate([w[None, :], (w * z)[None, :], rest])[:terms + 1]


class _Series(NamedTuple):
  """E[phi(u1) phi(u2)] = sum_k weights_k c^k + tails, at one q."""
  weights: Array       # (K + 1,): a_k^2
  tails: Array         # (2,): R(1) of the even and odd terms beyond K
  orders: Array        # (2,): m of the closures R(1) c^m
  second_moment: Array  # E[phi(u)^2] = the series at c = 1


def _mehler_series(activation: Activation, q: Array, num_points: int,
                   terms: int) -> _Series:
  """The Hermite coefficients of phi(sqrt(q) z) and the tail closure.

  Parseval per parity: sum over even (odd) k of a_k^2 = E[phi_e^2]
  (E[phi_o^2]) and of k a_k^2 = q E[(phi_e')^2] (q E[(phi_o')^2]), with
  phi_e, phi_o the even and odd parts. The terms beyond ``terms`` of each
  parity are closed by R(1) |c|^m, matching both sums (m >= 1 keeps the
  series convex on [0, 1]; both remainders are clipped at 0, which only
  happens at the level of the quadrature error).
  The rule's nodes are symmetric, so values at -u are the reversed values.
  """
  z, w = quadrature.activation_rule(activation.breakpoints, q, num_points)
  num_points = z.shape[0]    # the piecewise rule has its own count
  u = jnp.sqrt(q) * z
  phi, dphi = activation.fn(u), activation.deriv(u)
  matrix = _hermite_matrix(z, w, terms)
  k = jnp.arange(terms + 1, dtype=z.dtype)
  odd_k = (jnp.arange(terms + 1) % 2).astype(bool)
  # Even coefficients from the even part of phi, odd from the odd part: an
  # odd phi then has a_0 = 0 exactly (c = 0 stays a fixed point). Each
  # part times its rows of M is symmetric in z: sum over z > 0, twice.
  parts = [0.5 * (phi + sign * phi[::-1]) for sign in (1.0, -1.0)]
  half = num_points // 2
  positive = matrix[:, num_points - half:]
  even = 2 * positive[0::2] @ parts[0][num_points - half:]
  odd = 2 * positive[1::2] @ parts[1][num_points - half:]
  if num_points % 2:  # the node at z = 0, counted once
    even = even + matrix[0::2, half] * parts[0][half]
  coef = jnp.zeros(terms + 1, z.dtype).at[0::2].set(even).at[1::2].set(odd)
  weights = coef * coef
  tails, orders = [], []
  for mask, sign, part in ((~odd_k, 1.0, parts[0]), (odd_k, -1.0, parts[1])):
    # The derivative of the even (sign +1) or odd (-1) part of phi.
    dpart = 0.5 * (dphi - sign * dphi[::-1])
    tail = jnp.maximum(jnp.dot(w, part * part)
                       - jnp.sum(jnp.where(mask, weights, 0.0)), 0.0)
    dtail = jnp.maximum(q * jnp.dot(w, dpart * dpart)
                        - jnp.sum(jnp.where(mask, k * weights, 0.0)), 0.0)
    order = jnp.where(tail > 0, dtail / jnp.where(tail > 0, tail, 1.0), 0.0)
    tails.append(tail)
    orders.append(jnp.maximum(order, 1.0))
  return _Series(weights, jnp.stack(tails), jnp.stack(orders),
                 jnp.dot(w, phi * phi))


def _powers(c: Array, terms: int) -> Array:
  """(terms + 1,): c^0..c^terms, vectorised (exp(k log|c|) with signs)."""
  k = jnp.arange(terms + 1)
  a = jnp.abs(c)
  logs = jnp.log(jnp.where(a > 0, a, 1.0))
  mags = jnp.where(a > 0, jnp.exp(k.astype(c.dtype) * logs), 0.0)
  mags = jnp.where(k == 0, 1.0, mags)
  return jnp.where((c < 0) & (k % 2 == 1), -mags, mags)


def _series_value(series: _Series, c: Array) -> tuple[Array, Array]:
  """(N(c), N'(c)) for N(c) = E[phi(u1) phi(u2)], c in [-1, 1]."""
  terms = series.weights.shape[0] - 1
  powers = _powers(c, terms)
  k = jnp.arange(1, terms + 1, dtype=c.dtype)
  value = jnp.dot(series.weights, powers)
  slope = jnp.dot(series.weights[1:] * k, powers[:-1])
  a = jnp.abs(c)
  signs = jnp.stack([jnp.ones_like(c), jnp.sign(c)])
  m = series.orders
  value = value + jnp.sum(series.tails * signs * a ** m)
  # d/dc (s(c) |c|^m) = m |c|^(m-1) for the even part and for the odd part.
  slope = slope + jnp.sum(series.tails * m * a ** (m - 1)
                          * jnp.stack([jnp.sign(c), jnp.ones_like(c)]))
  return value, slope


def _correlation_parts(c, q, activation, sigma_w2, sigma_b2, num_points,
                       terms):
  """(c^{l+1}, dc^{l+1}/dc^l, E[phi'(u1) phi'(u2)]) at (c, q)."""
  _check_elementwise(activation)
  q = _effective_q(_float(q))
  c = jnp.clip(_float(c), -1.0, 1.0)
  sw2, sb2 = _float(sigma_w2), _float(sigma_b2)
  series = _mehler_series(activation, q, num_points, terms)
  cross, dcross = _series_value(series, c)
  length = sw2 * series.second_moment + sb2
  return (sw2 * cross + sb2) / length, sw2 * dcross / length, dcross / q


@functools.partial(jax.jit,
                   static_argnames=("activation", "num_points", "terms"))
def correlation_map(c, q, activation: Activation, sigma_w2, sigma_b2, *,
                    num_points: int = POINTS_1D,
                    terms: int = HERMITE_TERMS) -> Array:
  """c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q' (Poole eq. 5).

  u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2) and q' =
  sigma_w2 E[phi(u1)^2] + sigma_b2 = :func:`length_map` (q). At q = q* (the
  intended use) q' = q*: Poole's eq. 5. Elsewhere this is the exact map
  between consecutive layers of the correlation of two inputs of equal
  length q; c = 1 maps to 1. E[phi(u1) phi(u2)] is Mehler's series (module
  docstring). q = 0 and +inf are limits, as in :func:`chi_1`.

  Args:
    c: scalar correlation in [-1, 1].
    q: scalar length, normally q*.
    activation, sigma_w2, sigma_b2: as :func:`length_map`.
    num_points: sets the size of the 1-D integrals' quadrature.
    terms: Hermite terms summed before the tail closure.

  Returns:
    The scalar c^{l+1}.
  """
  return _correlation_parts(c, q, activation, sigma_w2, sigma_b2,
                            num_points, terms)[0]


@functools.partial(jax.jit,
                   static_argnames=("activation", "num_points", "terms"))
def correlation_map_slope(c, q, activation: Activation, sigma_w2, sigma_b2,
                          *, num_points: int = POINTS_1D,
                          terms: int = HERMITE_TERMS) -> Array:
  """dc^{l+1}/dc^l = sigma_w2 q E[phi'(u1) phi'(u2)] / q' (Price's theorem).

  At q = q* (q' = q) this is sigma_w2 E[phi'(u1) phi'(u2)], chi_c at c
  (Schoenholz eq. 9), and at c = 1 it is chi_1. Arguments as
  :func:`correlation_map`.
  """
  return _correlation_parts(c, q, activation, sigma_w2, sigma_b2,
                            num_points, terms)[1]


@functools.partial(
    jax.jit, static_argnames=("activation", "depth", "num_points", "terms"))
def c_sequence(c1, q1, activation: Activation, sigma_w2, sigma_b2,
               depth: int, *, num_points: int = POINTS_1D,
               terms: int = HERMITE_TERMS) -> Array:
  """Correlations c^1..c^depth of two inputs of equal length q^1 (Poole 5).

  Iterates (q, c) -> (length_map(q), correlation_map(c, q)), so the length
  need not be at its fixed point.

  Args:
    c1: scalar first-layer correlation, e.g. :func:`input_correlation`.
    q1: scalar first-layer length of both inputs.
    activation, sigma_w2, sigma_b2: as :func:`length_map`.
    depth: number of layers, a Python int >= 1.

  Returns:
    Shape (depth,); entry l - 1 is the predicted correlation of h^l.
  """
  _check_elementwise(activation)
  _check_depth(depth)

  def body(carry, _):
    q, c = carry
    q_next = length_map(q, activation, sigma_w2, sigma_b2,
                        num_points=num_points)
    c_next = correlation_map(c, q, activation, sigma_w2, sigma_b2,
                             num_points=num_points, terms=terms)
    return (q_next, c_next), c

  _, cs = jax.lax.scan(body, (_float(q1), _float(c1)), None,
                       length=int(depth))
  return cs


@functools.partial(jax.jit, static_argnames=("activation", "num_points",
                                             "terms", "iterations"))
def fixed_point_c(activation: Activation, sigma_w2, sigma_b2, q_star, *,
                  num_points: int = POINTS_1D, terms: int = HERMITE_TERMS,
                  iterations: int = C_ITERATIONS) -> Array:
  """c*: the stable fixed point of the correlation map in [0, 1].

  Structure (Mehler): f(c) = (sigma_w2 sum_k a_k^2 c^k + sigma_b2) / q' is
  increasing and convex on [0, 1], with f(0) >= 0, f(1) = 1, f'(1) = chi_1
  (at q = q*). Hence, with g(c) = f(c) - c convex and g(1) = 0:

    * chi_1 <= 1 (ordered): g'(1) <= 0, so g > 0 on [0, 1): c* = 1 is the
      only fixed point in [0, 1] and attracts all of it. Returned as is.
    * chi_1 > 1 (chaotic): c = 1 repels and g has exactly one root in
      [0, 1), the stable c*, attracting [0, 1). Newton from c = 0 finds it
      (at most ``iterations`` steps, stopping when c no longer changes):
      for convex decreasing g the iterates increase monotonically to the
      root without overshooting.

  Odd activations with sigma_b2 = 0 have f(0) = 0, so c = 0 is a fixed
  point, and in the chaotic phase it is c* (Newton stays at 0). It is
  stable, not the unstable one might expect: convexity with f(0) = 0 and
  f(1) = 1 gives f(c) <= c, so f'(0) <= 1, with equality only for a linear
  f (a linear activation, where every c is fixed); by oddness c* = 0 also
  attracts [-1, 0). In the ordered phase of this case q* = 0 and in the
  limit q -> 0+ the map is the identity; c* = 1 by the rule above, the
  limit sigma_b2 -> 0+.

  Args:
    activation: an elementwise Activation.
    sigma_w2, sigma_b2: scalar variances.
    q_star: scalar fixed point from :func:`fixed_point_q`.
    num_points, terms: as :func:`correlation_map`.
    iterations: most Newton steps (static).

  Returns:
    The scalar c* in [0, 1].
  """
  _check_elementwise(activation)
  q = _effective_q(_float(q_star))
  series = _mehler_series(activation, q, num_points, terms)
  slope_at_1 = chi_1(activation, sigma_w2, sigma_b2, q_star,
                     num_points=num_points)
  return _c_star(series, q_star, _float(sigma_w2), _float(sigma_b2),
                 slope_at_1, iterations)


def _c_star(series: _Series, q_star: Array, sigma_w2: Array,
            sigma_b2: Array, chi1: Array, iterations: int) -> Array:
  """fixed_point_c's iteration on a computed Mehler series."""
  q = _effective_q(_float(q_star))
  length = sigma_w2 * series.second_moment + sigma_b2

  def step(c):
    value, slope = _series_value(series, c)
    g = (sigma_w2 * value + sigma_b2) / length - c
    gp = sigma_w2 * slope / length - 1
    newton = jnp.where(gp < 0, c - g / jnp.where(gp < 0, gp, -1.0), 1.0)
    return jnp.where(g > 0, jnp.clip(newton, c, 1.0), c)

  def body(state):
    i, c, _ = state
    new = step(c)
    return i + 1, new, new != c

  zero = jnp.zeros_like(q + sigma_w2 + sigma_b2)
  _, c, _ = jax.lax.while_loop(lambda s: (s[0] < iterations) & s[2], body,
                               (0, zero, jnp.ones_like(zero, bool)))
  # The map's slope at c = 1 is chi_1 q / q'; q' = q at a finite q*. For
  # q* = +inf (evaluated at Q_LARGE, where q' != q) use the slope itself.
  slope_at_1 = jnp.where(jnp.isinf(_float(q_star)), chi1 * q / length, chi1)
  return jnp.where(slope_at_1 > 1, c, jnp.ones_like(c))


def _chi_c(series: _Series, q_star: Array, c_star: Array, sigma_w2: Array,
           chi1: Array) -> Array:
  """chi_c from a computed Mehler series: sigma_w2 N'(c*) / q (Price)."""
  pair = _series_value(series, c_star)[1] / _effective_q(_float(q_star))
  return jnp.where(c_star >= 1, chi1, sigma_w2 * pair)


def chi_c(activation: Activation, sigma_w2, sigma_b2, q_star, c_star=None, *,
          num_points: int = POINTS_1D, terms: int = HERMITE_TERMS) -> Array:
  """chi_c = sigma_w2 E[phi'(u1) phi'(u2)] at c = c* (Schoenholz eq. 9).

  The slope of the correlation map at its fixed point (at q = q*). At c* = 1
  the expectation is E[phi'(u)^2] and chi_c = chi_1 exactly.

  Args:
    activation, sigma_w2, sigma_b2, q_star: as :func:`fixed_point_c`.
    c_star: scalar c*; computed with :func:`fixed_point_c` if None.

  Returns:
    The scalar chi_c.
  """
  _check_elementwise(activation)
  if c_star is None:
    c_star = fixed_point_c(activation, sigma_w2, sigma_b2, q_star,
                           num_points=num_points, terms=terms)
  series = _mehler_series(activation, _effective_q(_float(q_star)),
                          num_points, terms)
  chi1 = chi_1(activation, sigma_w2, sigma_b2, q_star, num_points=num_points)
  return _chi_c(series, q_star, jnp.clip(_float(c_star), -1.0, 1.0),
                _float(sigma_w2), chi1)


# --------------------------------------------------------------------------
# Whole solutions and the critical line.

@functools.partial(jax.jit, static_argnames=("activation",))
def solve(activation: Activation, sigma_w2, sigma_b2) -> MeanField:
  """The fixed points, chi's and depth scales at scalar (sigma_w2, sigma_b2).

  Jitted; ``vmap``-able (:func:`solve_grid` is the vmapped grid version).
  """
  _check_elementwise(activation)
  sw2, sb2 = _float(sigma_w2), _float(sigma_b2)
  q_star = fixed_point_q(activation, sw2, sb2)
  series = _mehler_series(activation, _effective_q(q_star), POINTS_1D,
                          HERMITE_TERMS)
  chi1 = chi_1(activation, sw2, sb2, q_star)
  c_star = _c_star(series, q_star, sw2, sb2, chi1, C_ITERATIONS)
  chic = _chi_c(series, q_star, c_star, sw2, chi1)
  rate_q = length_map_slope(q_star, activation, sw2, sb2)
  return MeanField(
      q_star=q_star, c_star=c_star, chi_1=chi1, chi_c=chic,
      xi_q=jnp.where(jnp.isinf(q_star), jnp.inf, _inverse_rate(rate_q)),
      xi_c=_inverse_rate(chic))


@functools.partial(jax.jit, static_argnames=("activation", "chunk_size"))
def _solve_flat(activation: Activation, sigma_w2: Array, sigma_b2: Array,
                chunk_size: int) -> MeanField:
  return jax.lax.map(lambda p: solve(activation, *p), (sigma_w2, sigma_b2),
                     batch_size=chunk_size)


def solve_grid(activation: Activation, sigma_w2: Array, sigma_b2: Array, *,
               chunk_size: int = 1024) -> MeanField:
  """:func:`solve` on the grid sigma_w2 (n,) x sigma_b2 (m,).

  One jitted program (compiled once per activation object, grid size and
  chunk size): the n m points are flattened and solved by ``jax.vmap`` in
  chunks of ``chunk_size`` points (``lax.map(..., batch_size=...)``), which
  bounds the memory (chunk_size x POINTS_1D x HERMITE_TERMS values) with no
  Python loop.

  Args:
    activation: an elementwise Activation.
    sigma_w2: (n,) weight variances.
    sigma_b2: (m,) bias variances.
    chunk_size: grid points per vmapped chunk, >= 1.

  Returns:
    A MeanField of (n, m) arrays; entry [i, j] is at (sigma_w2[i],
    sigma_b2[j]).

  Raises:
    ValueError: a non-elementwise activation, non-1-D variances or a bad
      chunk_size.
  """
  _check_elementwise(activation)
  sw2, sb2 = _float(sigma_w2), _float(sigma_b2)
  if sw2.ndim != 1 or sb2.ndim != 1:
    raise ValueError(f"sigma_w2 and sigma_b2 must be 1-D, got shapes "
                     f"{sw2.shape} and {sb2.shape}")
  if int(chunk_size) != chunk_size or chunk_size < 1:
    raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size}")
  n, m = sw2.shape[0], sb2.shape[0]
  size = n * m
  chunk = int(min(chunk_size, max(size, 1)))
  # Padded to whole chunks (with copies of the last point, sliced off
  # below): lax.map would otherwise compile solve a second time for the
  # remainder, doubling the compilation of a 300 x 250 plane.
  padded = -(-size // chunk) * chunk
  flat_w = jnp.pad(jnp.broadcast_to(sw2[:, None], (n, m)).reshape(-1),
                   (0, padded - size), mode="edge")
  flat_b = jnp.pad(jnp.broadcast_to(sb2[None, :], (n, m)).reshape(-1),
                   (0, padded - size), mode="edge")
  flat = _solve_flat(activation, flat_w, flat_b, chunk)
  return MeanField(*(v[:size].reshape(n, m) for v in flat))


@functools.partial(jax.jit, static_argnames=("activation", "iterations"))
def critical_sigma_w2(activation: Activation, sigma_b2, *,
                      iterations: int = BISECTION_ITERATIONS) -> Array:
  """The sigma_w2 where chi_1(q*) = 1: the order-to-chaos transition.

  Bisection on [0, ``SIGMA_W2_MAX``] with a fixed number of steps
  (``vmap``-able over ``sigma_b2``) for the sign change of chi_1 - 1, with
  chi_1 at q*(sigma_w2, sigma_b2) (for q* = +inf its q -> infinity limit,
  which puts ReLU's transition at 2 for every sigma_b2). chi_1(0) = 0; if
  chi_1 < 1 at SIGMA_W2_MAX the result is +inf (sigmoid, with phi' <= 1/4,
  for one). Where chi_1 jumps across 1 instead of crossing it (GELU with
  sigma_b2 = 0, where q* jumps from 0 to infinity) the jump is returned.
  Known values: linear 1, ReLU 2, tanh 1 at sigma_b2 = 0 and about 1.76 at
  sigma_b2 = 0.05 (Schoenholz Fig. 1). For odd activations at sigma_b2 = 0
  chi_1 - 1 grows only quadratically past the root, so rounding r of
  chi_1 moves it by ~sqrt(3 r): 6e-4 in float32, 2e-8 in float64.

  Args:
    activation: an elementwise Activation.
    sigma_b2: scalar bias variance.
    iterations: bisection steps (static); 64 halve the interval below
      float64 resolution.

  Returns:
    The scalar critical sigma_w2 (+inf if none in the interval): the lower
    end of the final bracket, so chi_1 <= 1 there (ReLU: exactly 2, where
    q* = 1 is finite, rather than the midpoint 2 + 2 ulp, where it is not).
  """
  _check_elementwise(activation)
  sb2 = _float(sigma_b2)

  def excess(sw2):
    q_star = fixed_point_q(activation, sw2, sb2)
    return chi_1(activation, sw2, sb2, q_star) - 1

  def step(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    above = excess(mid) > 0
    return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

  top = jnp.full_like(sb2, SIGMA_W2_MAX)
  lo, _ = jax.lax.fori_loop(0, iterations, step, (jnp.zeros_like(sb2), top))
  return jnp.where(excess(top) > 0, lo, jnp.inf)
