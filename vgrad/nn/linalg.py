"""LAPACK decompositions that are safe to batch on CPU: QR and SVD.

jaxlib 0.10's CPU LAPACK kernels split a batched call over XLA's intra-op
thread pool (``jax::ParallelBatchMap``) and block a pool thread until the
pieces finish. Two or more batched calls in flight at once (two independent
SVDs in one program, the two branches of a ``lax.cond`` under ``vmap``, one
call per simulated device) can occupy every pool thread while their pieces
wait in its queue: the program hangs with every thread idle. The pool has
one thread per core, so a 2-core machine hangs first; seen in vgrad's qr
method (an SVD and a QR in flight) and in its sweeps (one call per device).

The functions here are ``jnp.linalg``'s, with a batching rule: on a stack
``(..., m, n)`` or under ``vmap``, on CPU they run one matrix at a time
(``lax.map``; an unbatched LAPACK call runs inline on its thread and cannot
wait for the pool), on an accelerator the batched call is kept. Measured on
a 2-core CPU the one-at-a-time map is as fast as the batched call (0.8-1.1x:
LAPACK's own BLAS threads do the work either way; BUILD_NOTES.md). The
values are the same: only the batching differs. Not differentiable (nothing
in vgrad differentiates through a decomposition).
"""

import functools

import jax
import jax.numpy as jnp


def _cpu() -> bool:
  return jax.default_backend() == "cpu"


def _map(fn, a):
  """``lax.map(fn, a)`` over ``a``'s leading axis; a batch of one is ``fn``
  of its one element (no loop around a single call)."""
  if a.shape[0] == 1:
    return jax.tree.map(lambda o: o[None], fn(a[0]))
  return jax.lax.map(fn, a)


def _one_at_a_time_on_cpu(fn):
  """``fn`` (one array in, a pytree out) whose ``vmap`` is a ``lax.map`` on
  CPU and a ``vmap`` elsewhere."""
  wrapped = jax.custom_batching.custom_vmap(fn)

  @wrapped.def_vmap
  def _rule(axis_size, in_batched, a):
    del axis_size
    (batched,) = in_batched
    if not batched:
      out = fn(a)
      return out, jax.tree.map(lambda _: False, out)
    # The rule's own ``wrapped`` inside: a nested vmap maps again.
    out = _map(wrapped, a) if _cpu() else jax.vmap(fn)(a)
    return out, jax.tree.map(lambda _: True, out)

  return wrapped


@functools.cache
def _qr():
  return _one_at_a_time_on_cpu(lambda a: jnp.linalg.qr(a))


@functools.cache
def _svd(full_matrices: bool, compute_uv: bool):
  return _one_at_a_time_on_cpu(lambda a: jnp.linalg.svd(
      a, full_matrices=full_matrices, compute_uv=compute_uv))


def _leading(fn, a: jax.Array):
  """``fn`` on every matrix of ``a (..., m, n)``: one at a time on CPU."""
  if a.ndim <= 2 or not _cpu():
    return fn(a)
  flat = a.reshape((-1,) + a.shape[-2:])
  out = _map(fn, flat)
  return jax.tree.map(lambda o: o.reshape(a.shape[:-2] + o.shape[1:]), out)


def qr(a: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Reduced QR of ``a (..., m, n)``: ``(q (..., m, k), r (..., k, n))``,
  ``k = min(m, n)`` (``jnp.linalg.qr``)."""
  return _leading(_qr(), a)


def svd(a: jax.Array, full_matrices: bool = True, compute_uv: bool = True):
  """``jnp.linalg.svd(a, full_matrices, compute_uv)`` of ``a (..., m, n)``:
  ``(u, s, vh)``, or ``s (..., min(m, n))`` descending without
  ``compute_uv``."""
  return _leading(_svd(bool(full_matrices), bool(compute_uv)), a)


def svdvals(a: jax.Array) -> jax.Array:
  """Singular values of ``a (..., m, n)``, descending: ``(..., min(m, n))``."""
  return svd(a, full_matrices=False, compute_uv=False)
