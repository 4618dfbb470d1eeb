r"""Matrix-free Jacobian spectra of any blocks: Golub-Kahan on JVP/VJP.

For networks too wide to form a block's Jacobian (a conv net's
``32 x 32 x 16`` activations: ``N = 16 384``, a dense ``J_{<=l}`` of 1 GiB
and an SVD of ``N^3`` flops), the Jacobians of :mod:`vgrad.probes.blocks`

    J_l = d vec(x_l) / d vec(x_{l-1}),    J_{<=l} = J_l ... J_1,

are touched only through Jacobian-vector products: ``k`` steps of
Golub-Kahan bidiagonalisation (:func:`vgrad.probes.matrix_free.golub_kahan`,
full reorthogonalisation) from a random Rademacher start give, for one
input and one matrix,

* the Ritz singular values ``theta_1 >= ... >= theta_k`` with residual
  bounds ``r_i``: a singular value of ``J`` lies in ``theta_i +- r_i``
  (:func:`vgrad.probes.matrix_free.ritz_decomposition`; a certificate in
  exact arithmetic). The extreme ones converge first: the largest within a
  few tens of steps, the smallest only where the small end is graded.
  Interlacing places them (``theta_i <= sigma_i``, and ``theta_{k+1-i} >=
  sigma_{R+1-i}`` when the start lives in the smaller dimension, as here),
  and a random start finds the top of the spectrum with probability one;
  that the ``i``-th Ritz value belongs to the ``i``-th singular value is
  this, not a certificate.
* the ``k``-node Gauss quadrature rule of the start vector's spectral
  measure (nodes ``theta_i^2``, weights ``tau_i^2``): stochastic Lanczos
  quadrature (Ubaru, Chen & Saad 2017). One probe per input: pooled over
  the ``B`` inputs it estimates the spectral density of ``ln sigma`` and,
  exactly per probe, ``u^T J^T J u``: Hutchinson's estimate of
  ``tr(J^T J) / R``.

Cost: ``2k`` JVP/VJP passes per matrix; block ``l``'s own Jacobian costs
``2k`` passes of one block, ``J_{<=l}`` ``2k`` passes of ``l`` blocks, so all
``L`` layers cost ``O(k L^2)`` block passes (name fewer ``layers`` for deep
nets). ``k = R`` (``R = min(n_l, n_0)``) steps give the whole spectrum.

Each bidiagonalisation starts in the smaller of the matrix's two
dimensions (``J`` when ``n_in <= n_out``, else ``J^T``), so no Ritz value
is a structural zero of ``J^T J``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp

from vgrad.probes import blocks as blocks_lib
from vgrad.probes import log_spectrum
from vgrad.probes import matrix_free

DEFAULT_STEPS = 48
# The extreme Ritz values reported at each end of a spectrum.
EXTREMES = 5


class LanczosSpectra(NamedTuple):
  """Ritz values of ``B`` inputs' block Jacobians, descending.

  Attributes (per block for ``own``, per target for ``cumulative``; each
  ``(B, k)`` with ``k = min(steps, R)`` of that matrix):
    singular_values: the Ritz singular values ``theta_i``.
    error_bounds: their residual bounds ``r_i`` (exact arithmetic).
    weights: Gauss quadrature weights ``tau_i^2`` (each row sums to 1).
  Plus:
    layers: the target blocks of ``cumulative`` (1-based), ascending.
    shapes: per block, ``(n_l, n_{l-1})``.
  """
  own: list
  cumulative: list
  layers: tuple
  shapes: list


def _flat(fn: Callable, x) -> tuple[Callable, jax.Array]:
  """``fn`` on flat vectors, and the flat ``x``."""
  flat_x, unravel = ravel_pytree(x)
  return (lambda v: ravel_pytree(fn(unravel(v)))[0]), flat_x


def _ritz(fn: Callable, x, key: jax.Array, steps: int) -> matrix_free.Ritz:
  """``min(steps, R)`` Golub-Kahan steps on the Jacobian of ``fn`` at ``x``
  from a Rademacher start in the smaller dimension."""
  flat_fn, flat_x = _flat(fn, x)
  matvec, rmatvec = matrix_free.linear_operators(flat_fn, flat_x)
  n_in = flat_x.size
  n_out = jax.eval_shape(flat_fn, flat_x).shape[0]
  if n_out < n_in:   # bidiagonalise J^T: same singular values
    matvec, rmatvec = rmatvec, matvec
  dim = min(n_in, n_out)
  v0 = jax.random.rademacher(key, (dim,), flat_x.dtype)
  gk = matrix_free.golub_kahan(matvec, rmatvec, v0, min(steps, dim))
  return matrix_free.ritz_decomposition(gk.alphas, gk.betas)


def _keys(key: jax.Array, b: int, depth: int) -> jax.Array:
  """``(B, 2, depth)`` keys: per input, own and cumulative, per block."""
  return jax.random.split(key, (b, 2, depth))


def lanczos_spectra(blocks, xs, key: jax.Array, layers=None,
                    steps: int = DEFAULT_STEPS) -> LanczosSpectra:
  """Golub-Kahan Ritz values of every block's own Jacobian and of the
  input-to-block Jacobians at ``layers`` (default every block).

  Args:
    blocks: a list of callables or a :class:`vgrad.probes.blocks.Blocks`.
    xs: the inputs, a pytree whose leaves share a leading batch axis ``B``.
    key: PRNG key of the start vectors (one per input and matrix).
    layers: target blocks (1-based) of the cumulative spectra.
    steps: Golub-Kahan steps per matrix (at most its ``R``), >= 2.

  Returns:
    :class:`LanczosSpectra`.

  Raises:
    ValueError: ``steps < 2``, bad ``layers``, or blocks that do not chain
      (before any work).
  """
  if int(steps) != steps or steps < 2:
    raise ValueError(f"steps must be an integer >= 2, got {steps}")
  shapes = blocks_lib.shapes(blocks, xs)
  depth = len(shapes)
  layers = log_spectrum.check_layers(
      range(1, depth + 1) if layers is None else layers, depth)
  b = jax.tree.leaves(xs)[0].shape[0]
  keys = _keys(key, b, depth)
  if isinstance(blocks, blocks_lib.Blocks):
    run = blocks_lib.cached_program(
        ("lanczos-scan", blocks.block_fn, layers, depth, steps),
        lambda: jax.vmap(_scanned(blocks.block_fn, layers, depth, steps),
                         in_axes=(0, 0, None)))
    own, cumulative = run(xs, keys, blocks.stacked_params)
    own = [matrix_free.Ritz(*(a[:, l] for a in own)) for l in range(depth)]
    cumulative = [matrix_free.Ritz(*(a[:, t] for a in cumulative))
                  for t in range(len(layers))]
  else:
    blocks = tuple(blocks)
    one = _uniform if _is_uniform(blocks, xs) else _chained
    run = blocks_lib.cached_program(
        ("lanczos", one, blocks, layers, steps),
        lambda: jax.vmap(one(blocks, layers, steps)))
    own, cumulative = run(xs, keys)
    if one is _uniform:
      own = [matrix_free.Ritz(*(a[:, l] for a in own)) for l in range(depth)]
      cumulative = [matrix_free.Ritz(*(a[:, t] for a in cumulative))
                    for t in range(len(layers))]
  return LanczosSpectra(list(own), list(cumulative), layers, shapes)


def _is_uniform(blocks: tuple, xs) -> bool:
  """Whether every block maps one input structure and shape to itself."""
  one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), xs)
  h = one
  for fn in blocks:
    h = jax.eval_shape(fn, h)
    if jax.tree.structure(h) != jax.tree.structure(one) or any(
        a.shape != b.shape or a.dtype != b.dtype
        for a, b in zip(jax.tree.leaves(h), jax.tree.leaves(one))):
      return False
  return True


def _chained(blocks: tuple, layers: tuple, steps: int) -> Callable:
  """One input through a list of blocks of any shapes: each block's Ritz
  values at its input, and those of each target's prefix map
  ``x_0 -> x_l`` (one bidiagonalisation program per matrix)."""
  def one(x, keys):
    own, h = [], x
    for l, fn in enumerate(blocks):
      own.append(_ritz(fn, h, keys[0, l], steps))
      h = fn(h)
    cumulative = []
    for t in layers:
      def prefix(v, t=t):
        for fn in blocks[:t]:
          v = fn(v)
        return v
      cumulative.append(_ritz(prefix, x, keys[1, t - 1], steps))
    return own, cumulative
  return one


def _uniform(blocks: tuple, layers: tuple, steps: int) -> Callable:
  """One input through a list of blocks of one shape: one bidiagonalisation
  program for the own spectra (block ``l`` picked by ``lax.switch``) and
  one for every target's prefix map (blocks past the target skipped by
  ``lax.cond``), each mapped over the blocks / targets; the block index
  is not batched, so each branch runs only where it is taken."""
  depth = len(blocks)

  def one(x, keys):
    inputs, h = [], x
    for fn in blocks:
      inputs.append(h)
      h = fn(h)
    inputs = jax.tree.map(lambda *a: jnp.stack(a), *inputs)

    def own_ritz(args):
      l, h, k = args
      return _ritz(lambda v: jax.lax.switch(l, blocks, v), h, k, steps)

    own = jax.lax.map(own_ritz, (jnp.arange(depth), inputs, keys[0]))

    def prefix(t):
      def fn(v):
        for l, block in enumerate(blocks):
          v = jax.lax.cond(l < t, block, lambda u: u, v)
        return v
      return fn

    return own, _targets_ritz(prefix, x, keys, layers, steps)
  return one


def _targets_ritz(prefix: Callable, x, keys, layers: tuple, steps: int):
  """Ritz values of every target's prefix map ``prefix(t)`` at ``x``: one
  bidiagonalisation program mapped over the targets."""
  targets = jnp.asarray(layers)
  return jax.lax.map(lambda tk: _ritz(prefix(tk[0]), x, tk[1], steps),
                     (targets, keys[1][targets - 1]))


def _scanned(block_fn: Callable, layers: tuple, depth: int,
             steps: int) -> Callable:
  """One input through scanned blocks of one shape: own Ritz values in a
  scan, each target's prefix map as a scan over every block with blocks
  past the target skipped (one compiled map for all targets)."""
  def one(x, keys, stacked):
    def own_step(h, inputs):
      params, k = inputs
      fn = lambda v: block_fn(params, v)   # noqa: E731
      return fn(h), _ritz(fn, h, k, steps)

    _, own = jax.lax.scan(own_step, x, (stacked, keys[0]))

    def prefix(t):
      def fn(v):
        def body(h, inputs):
          params, index = inputs
          return jax.lax.cond(index < t, lambda u: block_fn(params, u),
                              lambda u: u, h), None
        return jax.lax.scan(body, v, (stacked, jnp.arange(depth)))[0]
      return fn

    return own, _targets_ritz(prefix, x, keys, layers, steps)
  return one


def hutchinson(weights: jax.Array, singular_values: jax.Array) -> Any:
  """``(B,)`` per-probe ``sum_i tau_i^2 theta_i^2 = u^T J^T J u`` (unit
  ``u`` in the smaller dimension): unbiased for ``tr(J^T J) / R``."""
  return jnp.sum(weights * singular_values ** 2, axis=-1)
