"""Gauss-Hermite quadrature for Gaussian expectations.

Mean-field and free-probability theory need expectations over Gaussian
pre-activations, ``E_{z ~ N(0, 1)}[f(z)]``, to near machine precision and
inside ``jit``/``vmap``. An ``n``-point Gauss-Hermite rule (probabilists'
weight ``exp(-z^2 / 2)``) is exact for polynomials of degree ``2n - 1`` and
converges exponentially fast for smooth ``f``; for kinked ``f`` (ReLU, hard
tanh) it converges algebraically, which is why the default is generous.
The default rules have an even number of nodes, so no node sits on the kink
at 0 of ReLU-like activations: by symmetry E[1(z > 0)] = 1/2 exactly.

    E[f(z)] ~= sum_i w_i f(z_i),   sum_i w_i = 1.

The nodes and weights are computed once on the host in float64
(``numpy.polynomial.hermite_e.hermegauss``) and cached.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_POINTS = 100


@functools.lru_cache(maxsize=None)
def _rule(num_points: int) -> tuple[np.ndarray, np.ndarray]:
  if int(num_points) != num_points or num_points < 1:
    raise ValueError(f"num_points must be an integer >= 1, got {num_points}")
  nodes, weights = np.polynomial.hermite_e.hermegauss(int(num_points))
  return nodes, weights / np.sqrt(2 * np.pi)


def gauss_hermite(num_points: int = DEFAULT_POINTS,
                  dtype=None) -> tuple[jax.Array, jax.Array]:
  """Nodes ``z (n,)`` and weights ``w (n,)`` with ``sum w = 1``.

  ``sum_i w_i f(z_i)`` approximates ``E_{z ~ N(0,1)}[f(z)]``. ``dtype``
  defaults to JAX's default float (float64 under ``jax_enable_x64``).
  """
  nodes, weights = _rule(num_points)
  dtype = dtype or jnp.result_type(float)
  return jnp.asarray(nodes, dtype), jnp.asarray(weights, dtype)


def gaussian_expectation(f: Callable[[jax.Array], jax.Array],
                         num_points: int = DEFAULT_POINTS,
                         dtype=None) -> jax.Array:
  """``E_{z ~ N(0, 1)}[f(z)]``; ``f`` maps ``(n,)`` nodes to ``(n, ...)``."""
  z, w = gauss_hermite(num_points, dtype)
  values = f(z)
  return jnp.tensordot(w, values, axes=(0, 0))


def bivariate_gaussian_expectation(
    f: Callable[[jax.Array, jax.Array], jax.Array], num_points: int = 50,
    dtype=None) -> jax.Array:
  """``E[f(z1, z2)]`` for independent ``z1, z2 ~ N(0, 1)`` (tensor rule).

  ``f`` receives two ``(n, n)`` grids and returns ``(n, n)`` values.
  Correlated pairs are written as ``u2 = c z1 + sqrt(1 - c^2) z2``.
  """
  z, w = gauss_hermite(num_points, dtype)
  z1, z2 = jnp.meshgrid(z, z, indexing="ij")
  return jnp.sum(w[:, None] * w[None, :] * f(z1, z2))
