"""Quadrature for Gaussian expectations of activations.

Mean-field and free-probability theory need expectations over Gaussian
pre-activations, ``E_{z ~ N(0, 1)}[f(sqrt(q) z)]``, to near machine
precision and inside ``jit``/``vmap``:

    E[f(z)] ~= sum_i w_i f(z_i),   sum_i w_i = 1.

:func:`activation_rule` is the rule the theory uses. One Gauss-Hermite
rule converges exponentially only for ``f`` analytic on the scale of its
node spacing. An activation with a kink or a jump (a breakpoint of phi or
phi': ReLU's 0, hard tanh's +-1) makes it sum across the jump, however
many nodes it has: hard tanh's critical sigma_w^2 at sigma_b^2 = 0.05 came
out 1.17155 (true 1.16554) and SELU's chi_1 at LeCun init 1.06820 (true
1.07157). A smooth activation at large q has features at z ~ 1/sqrt(q),
below the spacing: E[tanh'(u)^4] at q = 50 erred by 40 %. So
:func:`piecewise_rule` cuts the half line z >= 0 at 0, at the breakpoints
and at the activation's scale points (``SCALE_POINTS``), all in z units
(``b / sqrt(q)``), integrates each piece with composite Gauss-Legendre
against the Gaussian density, truncated at ``|z| = TRUNCATION`` (mass
beyond: 2e-45), and mirrors it onto z < 0. The rule is exactly symmetric,
no node sits on a kink, and ReLU's E[1(z > 0)] is 1/2 to rounding.
Tests (tests/quadrature_test.py): every registered activation against
scipy's adaptive quadrature for q in [1e-3, 1e3] (kinked ones to 1e-10,
smooth ones to 1e-7), closed forms for hard tanh and SELU.

:func:`gauss_hermite` is the plain rule (nodes and weights computed once
on the host in float64 by ``numpy.polynomial.hermite_e.hermegauss`` and
cached). Beyond ``MAX_POINTS`` nodes numpy's weights underflow to zero and
then NaN: such a rule is refused, not returned.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_POINTS = 100
# numpy's hermegauss: every weight is positive and finite up to 370 nodes;
# at 371 they underflow to 0, beyond they are NaN.
MAX_POINTS = 370
TRUNCATION = 14.0


@functools.cache
def _rule(num_points: int) -> tuple[np.ndarray, np.ndarray]:
  if (isinstance(num_points, bool) or int(num_points) != num_points
      or not 1 <= num_points <= MAX_POINTS):
    raise ValueError(f"num_points must be an integer in [1, {MAX_POINTS}] "
                     f"(a Gauss-Hermite rule of more nodes cannot be "
                     f"computed in float64), got {num_points}")
  nodes, weights = np.polynomial.hermite_e.hermegauss(int(num_points))
  weights = weights / np.sqrt(2 * np.pi)
  if not (np.all(np.isfinite(weights)) and np.all(weights > 0)
          and abs(weights.sum() - 1) < 1e-12):
    raise ValueError(f"the {num_points}-point Gauss-Hermite rule did not "
                     f"compute in float64 (weights sum to {weights.sum()})")
  return nodes, weights


@functools.cache
def _legendre(num_points: int) -> tuple[np.ndarray, np.ndarray]:
  if isinstance(num_points, bool) or int(num_points) != num_points or (
      num_points < 1):
    raise ValueError(f"num_points must be an integer >= 1, got {num_points}")
  return np.polynomial.legendre.leggauss(int(num_points))


# Gauss-Legendre order of each sub-piece: numpy's nodes are accurate to
# rounding at this order (at 100-150 nodes its rules err by ~1e-14), and
# a piece is cut into sub-pieces instead of raising the order.
LEGENDRE_ORDER = 20


def piecewise_rule(breakpoints, num_points: int = DEFAULT_POINTS, *,
                   zero: bool = False, dtype=None
                   ) -> tuple[jax.Array, jax.Array]:
  """A Gaussian rule split at ``+-breakpoints`` (and 0 if ``zero``):
  nodes ``z`` ascending and symmetric (``z[::-1] == -z``), weights ``w``
  with ``sum_i w_i f(z_i) ~= E_{z ~ N(0,1)}[f(z)]`` for ``f`` smooth
  between the breakpoints.

  ``breakpoints``: ``(m,)`` positive points in z units (traced values
  allowed: inside ``jit`` they may depend on q). With 0 (always an edge:
  ``zero`` is accepted for callers that name a breakpoint there) and the
  truncation they cut ``[0, TRUNCATION]`` into ``m + 1`` pieces (a piece
  beyond the truncation has zero length and weight), mirrored onto the
  negative half. Each piece is cut into ``ceil(num_points /
  LEGENDRE_ORDER)`` equal sub-pieces of ``LEGENDRE_ORDER`` Gauss-Legendre
  nodes each, weighted by the standard normal density: ``2 (m + 1)
  num_points`` nodes, rounded up.
  """
  dtype = dtype or jnp.result_type(float)
  del zero   # the rule always has an edge at 0 (built on z >= 0, mirrored)
  t, g = (jnp.asarray(a, dtype) for a in _legendre(LEGENDRE_ORDER))
  subs = -(-int(num_points) // LEGENDRE_ORDER)
  b = jnp.sort(jnp.clip(jnp.abs(jnp.reshape(jnp.asarray(breakpoints, dtype),
                                            (-1,))), 0.0, TRUNCATION))
  # The half line z >= 0 cut at 0, the breakpoints and the truncation; the
  # negative half is its mirror image, so the rule is exactly symmetric.
  edges = jnp.concatenate([jnp.zeros((1,), dtype), b,
                           jnp.full((1,), TRUNCATION, dtype)])
  frac = jnp.arange(subs + 1, dtype=dtype) / subs
  sub = edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * frac[None, :]
  lo, hi = sub[:, :-1].reshape(-1), sub[:, 1:].reshape(-1)
  half, mid = (hi - lo)[:, None] / 2, (hi + lo)[:, None] / 2
  z = (mid + half * t[None, :]).reshape(-1)
  density = jnp.exp(-0.5 * z * z) / jnp.sqrt(2 * jnp.pi).astype(dtype)
  w = (half * g[None, :]).reshape(-1) * density
  z = jnp.concatenate([-z[::-1], z])
  w = jnp.concatenate([w[::-1], w])
  # The mass beyond the truncation is 2e-45: normalising to a total of 1
  # removes the nodes' rounding from the zeroth moment, and the symmetric
  # halves then weigh 1/2 each to summation rounding.
  return z, w / jnp.sum(w)


# Where every activation's expectation is cut besides its own breakpoints
# (pre-activation units): phi changes shape at |u| ~ 1 (saturation,
# curvature), so at large q its features shrink to z ~ 1/sqrt(q), below
# one rule's node spacing. One Gauss-Hermite rule of 300 nodes erred by
# 40 % on E[tanh'(u)^4] at q = 50; cut here, every registered activation
# is within 2e-8 of scipy's adaptive quadrature for q in [1e-3, 1e3]
# (tests/quadrature_test.py).
SCALE_POINTS = (1.0, 4.0)


def activation_rule(breakpoints: tuple[float, ...], q,
                    num_points: int = DEFAULT_POINTS, dtype=None
                    ) -> tuple[jax.Array, jax.Array]:
  """The rule for ``E[f(sqrt(q) z)]`` of an activation with
  ``breakpoints`` (its kinks and jumps, in pre-activation units, a static
  tuple): :func:`piecewise_rule` cut at ``b / sqrt(q)`` for every
  breakpoint and every :data:`SCALE_POINTS`, with about ``num_points / 2``
  nodes per piece (at least 40)."""
  moduli = sorted({abs(float(b)) for b in (*breakpoints, *SCALE_POINTS)}
                  - {0.0})
  dtype = dtype or jnp.result_type(float)
  scale = 1.0 / jnp.sqrt(jnp.asarray(q, dtype))
  return piecewise_rule(jnp.asarray(moduli, dtype) * scale,
                        max(num_points // 2, 2 * LEGENDRE_ORDER), dtype=dtype)


def gauss_hermite(num_points: int = DEFAULT_POINTS,
                  dtype=None) -> tuple[jax.Array, jax.Array]:
  """Nodes ``z (n,)`` and weights ``w (n,)`` with ``sum w = 1``.

  ``sum_i w_i f(z_i)`` approximates ``E_{z ~ N(0,1)}[f(z)]``. ``dtype``
  defaults to JAX's default float (float64 under ``jax_enable_x64``).
  """
  nodes, weights = _rule(num_points)
  dtype = dtype or jnp.result_type(float)
  return jnp.asarray(nodes, dtype), jnp.asarray(weights, dtype)
