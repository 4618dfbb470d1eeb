r"""Critical initialisation for any activation: a point on chi_1 = 1.

Along the critical line every point is reached by one pre-activation
length q* (Poole et al. 2016; Schoenholz et al. 2017). With

    mu_1(q) = E[phi'(sqrt(q) z)^2],    m_2(q) = E[phi(sqrt(q) z)^2],

a fixed point q* with chi_1 = sigma_w^2 mu_1(q*) = 1 needs

    sigma_w^2(q*) = 1 / mu_1(q*),
    sigma_b^2(q*) = q* - sigma_w^2(q*) m_2(q*)   (q*: the length map's
                                                   fixed point),

so the line is a curve parametrised by q*, valid where sigma_b^2(q*) >= 0.
:func:`critical_point` takes q* (closed form) or sigma_b^2 (solved for q*
on that curve, over q* in ``[Q_MIN, Q_MAX]``: no cap on sigma_w^2, so
sigmoid's critical point at sigma_b^2 = 0, sigma_w^2 ~ 103, is found where
``meanfield.critical_sigma_w2``'s bisection on [0, 16] answers +inf). The
expectations are :mod:`vgrad.theory.meanfield`'s (piecewise quadrature,
exact at kinks), computed in float64.

Where no critical point exists the error says why in one line: the
values sigma_b^2 takes along the line, or the q* the line does not reach.
"""

import functools
from typing import NamedTuple

import jax
import numpy as np

from vgrad.nn import activations as activations_lib
from vgrad.theory import meanfield

Q_MIN, Q_MAX = 1e-8, 1e8
GRID_POINTS = 481          # 20 per decade over [Q_MIN, Q_MAX]
BISECTION_STEPS = 200
# sigma_b^2 of the line within SB2_ATOL max(1, q*) of the target counts as
# on it (the whole ReLU line sits at sigma_b^2 = 0 to the rounding of
# q* - 2 m_2(q*), which grows with q*).
SB2_ATOL = 1e-12


class CriticalPoint(NamedTuple):
  """A point on chi_1 = 1: the variances, the fixed point q* it holds and
  chi_1 there (1 to rounding)."""
  sigma_w2: float
  sigma_b2: float
  q_star: float
  chi_1: float


def _activation(act) -> activations_lib.Activation:
  if isinstance(act, activations_lib.Activation):
    return act
  return activations_lib.get_activation(act)


@functools.partial(jax.jit, static_argnums=0)
def _moments_program(activation, q):
  return jax.vmap(lambda x: (meanfield.derivative_moment(activation, x, 1),
                             meanfield.length_map(x, activation, 1.0,
                                                  0.0)))(q)


def _moments(activation, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(mu_1(q), m_2(q))`` for an array of lengths, float64 (one compiled
  program per activation and array size)."""
  with jax.enable_x64(True):
    mu1, m2 = _moments_program(activation, np.asarray(q, np.float64))
    return np.asarray(mu1), np.asarray(m2)


def _point(activation, q: float) -> CriticalPoint:
  mu1, m2 = (float(v[0]) for v in _moments(activation, np.array([q])))
  sw2 = 1.0 / mu1
  return CriticalPoint(sw2, q - sw2 * m2, float(q), sw2 * mu1)


def line(act, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(sigma_w2, sigma_b2)`` of the critical line at lengths ``q``
  (float64 arrays; sigma_b2 < 0 where the line does not exist)."""
  activation = _activation(act)
  mu1, m2 = _moments(activation, q)
  with np.errstate(divide="ignore", invalid="ignore"):
    sw2 = 1.0 / mu1
  return sw2, np.asarray(q, np.float64) - sw2 * m2


def critical_point(act, *, sigma_b2: float | None = None,
                   q_star: float | None = None) -> CriticalPoint:
  """The point on chi_1 = 1 with the given bias variance or fixed point.

  Args:
    act: a registry name (``"tanh"``) or an elementwise Activation.
    sigma_b2: the bias variance (>= 0); or
    q_star: the pre-activation length q* (> 0). Exactly one of the two.

  Returns:
    :class:`CriticalPoint`. For ``sigma_b2`` the smallest q* on the line
    with that bias variance (the line is single-valued for the registered
    activations but one not monotone in q* could have several).

  Raises:
    ValueError: in one line: neither or both arguments, an invalid value,
      a maxout activation, or no critical point (with the reason).
  """
  activation = _activation(act)
  name = activation.describe()
  if activation.deriv is None:
    raise ValueError(f"{name}: critical points need an elementwise "
                     "activation (mean field does not cover maxout)")
  if (sigma_b2 is None) == (q_star is None):
    raise ValueError("critical_point needs exactly one of sigma_b2 and "
                     "q_star")
  if q_star is not None:
    if not (np.isfinite(q_star) and q_star > 0):
      raise ValueError(f"q_star must be a finite number > 0, got {q_star}")
    point = _point(activation, float(q_star))
    if not np.isfinite(point.sigma_w2):
      raise ValueError(f"{name} has no critical point with q*={q_star:g}: "
                       "phi' vanishes there, so chi_1 = 0 at any sigma_w2")
    if point.sigma_b2 < -SB2_ATOL:
      raise ValueError(
          f"{name} has no critical point with q*={q_star:g}: chi_1 = 1 "
          f"there needs sigma_w2 = {point.sigma_w2:.6g}, whose fixed point "
          f"would need sigma_b2 = {point.sigma_b2:.3g} < 0")
    return point._replace(sigma_b2=max(point.sigma_b2, 0.0))
  if not (np.isfinite(sigma_b2) and sigma_b2 >= 0):
    raise ValueError(f"sigma_b2 must be a finite number >= 0, got {sigma_b2}")
  target = float(sigma_b2)
  q = np.geomspace(Q_MIN, Q_MAX, GRID_POINTS)
  sw2, sb2 = line(activation, q)
  ok = np.isfinite(sw2) & np.isfinite(sb2)
  gap = np.where(ok, sb2 - target, np.nan)
  on = ok & (np.abs(gap) <= SB2_ATOL * np.maximum(1.0, q))
  if on.all():
    # The whole line at this sigma_b2 (ReLU, linear at sigma_b2 = 0):
    # every q is fixed; q* = 1, fixed_point_q's convention.
    return _point(activation, 1.0)._replace(sigma_b2=target)
  if on.any():
    # The smallest q* on the line (odd activations at sigma_b2 = 0: the
    # limit q* -> 0, sigma_w2 -> 1 / phi'(0)^2).
    return _point(activation, float(q[np.argmax(on)]))._replace(
        sigma_b2=target)
  signs = np.sign(gap)
  cross = np.flatnonzero(ok[:-1] & ok[1:] & (signs[:-1] * signs[1:] < 0))
  if cross.size == 0:
    finite = sb2[ok]
    reach = (f"sigma_b2 ranges over [{finite.min():.3g}, {finite.max():.3g}]"
             if finite.size else "chi_1 = 0 everywhere")
    raise ValueError(
        f"{name} has no critical point (chi_1 = 1 with a finite q*) at "
        f"sigma_b2={target:g}: along chi_1 = 1, {reach} for q* in "
        f"[{Q_MIN:g}, {Q_MAX:g}]")
  i = int(cross[0])
  lo, hi = np.log(q[i]), np.log(q[i + 1])
  sign_lo = signs[i]
  # Bisection in log q, 64 candidates per round in one call.
  for _ in range(BISECTION_STEPS):
    grid = np.linspace(lo, hi, 66)[1:-1]
    values = line(activation, np.exp(grid))[1] - target
    same = np.sign(values) == sign_lo
    k = int(np.argmin(same)) if not same.all() else grid.size
    new_lo = grid[k - 1] if k > 0 else lo
    new_hi = grid[k] if k < grid.size else hi
    if (new_lo, new_hi) == (lo, hi) or new_hi - new_lo < 1e-15:
      lo, hi = new_lo, new_hi
      break
    lo, hi = new_lo, new_hi
  point = _point(activation, float(np.exp(0.5 * (lo + hi))))
  return point._replace(sigma_b2=target)
