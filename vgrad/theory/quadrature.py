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

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_POINTS = 100


@functools.cache
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
