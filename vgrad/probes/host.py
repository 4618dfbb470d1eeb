"""A probe's batched program on every core of a CPU host.

On CPU a probe's vmapped program (the dense probe over inputs, the forward
QR pass over inputs, the final stage over targets) runs on one core, save
for XLA's own matrix products: its LAPACK calls (QR, SVD) run one matrix at
a time (:mod:`vgrad.nn.linalg`), and OpenBLAS's threads inside them, at the
widths probed here, spin more than they compute (the exact probe's final
stage at N = 256: 12 CPU-s for 6.1 s with OpenBLAS's 2 threads, 5.9 CPU-s
for 4.6 s with one). :func:`split_batch` runs such a program one element
of the batch per call, the calls spread over every core from a thread pool
(a running XLA program releases the GIL), with BLAS at one thread, and
joins their results on the host.

Each element of the batch runs as a batch of one, so an input's values
come from the same compiled program whatever the batch size and the number
of cores (``tests/host_test.py``); a single batched call can round
differently in the last bits (XLA picks other kernels for other batch
sizes; seen with XLA's optimisations off). JAX's thread-local settings that
change what a program computes (``jax.enable_x64``,
``jax.default_matmul_precision``) are carried into the worker threads.
Off CPU or under a trace the program is called once on the whole batch.
"""

import concurrent.futures
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl


def cores() -> int:
  """The CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


@functools.cache
def _controller() -> threadpoolctl.ThreadpoolController:
  """BLAS thread control, made once (limiting through it takes a few
  microseconds, making one ~1 ms). A controller sees the libraries loaded
  when it is made, and JAX loads the OpenBLAS behind its LAPACK calls
  (SciPy's) when it first compiles one: one tiny LAPACK call first."""
  jax.block_until_ready(jnp.linalg.qr(jnp.eye(2)))
  return threadpoolctl.ThreadpoolController()


@functools.cache
def _pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
  return concurrent.futures.ThreadPoolExecutor(
      max_workers=workers, thread_name_prefix="vgrad-probe")


def is_traced(tree) -> bool:
  """Whether any leaf of ``tree`` is a tracer (a caller's ``jit``, ``vmap``
  or ``shard_map``): then there is no host to split the work on."""
  return any(isinstance(leaf, jax.core.Tracer)
             for leaf in jax.tree.leaves(tree))


def split_batch(fn, batched: tuple, shared: tuple = (),
                workers: int | None = None):
  """``fn(*shared, *batched)``, on CPU as one call per element of the batch.

  ``batched``: arrays (or pytrees of arrays) that share a leading batch
  axis of size ``B``; ``shared``: arguments every call gets whole. ``fn``
  must treat the batch's elements independently (a ``vmap``), and every
  leaf of its result must have a leading axis proportional to the batch
  (``B`` rows, or ``B * T`` for a result flattened over ``(B, T)``).

  On CPU each element runs alone (a batch of one), the calls spread over
  ``workers`` threads (default :func:`cores`) with BLAS at one thread, and
  the result is their results joined along the leading axis (JAX arrays,
  as from one call). Every element is so computed by the same program
  whatever the batch and the number of cores: its values do not depend on
  which other elements share its batch (a batched call may round
  differently, e.g. another matrix-product kernel). Off CPU, or under a
  trace, ``fn`` is called once on the whole batch.
  """
  size = jax.tree.leaves(batched)[0].shape[0]
  if jax.default_backend() != "cpu" or is_traced((shared, batched)):
    return fn(*shared, *batched)
  if size < 2:
    with _controller().limit(limits=1, user_api="blas"):
      return fn(*shared, *batched)
  hosted = jax.tree.map(np.asarray, batched)
  x64 = bool(jax.config.jax_enable_x64)
  precision = jax.config.jax_default_matmul_precision

  def run(i):
    args = jax.tree.map(lambda leaf: leaf[i:i + 1], hosted)
    with jax.enable_x64(x64), jax.default_matmul_precision(precision):
      return jax.device_get(fn(*shared, *args))

  results = thread_map(run, range(size), workers)
  return jax.tree.map(lambda *rows: jax.device_put(np.concatenate(rows)),
                      *results)


def thread_map(fn, items, workers: int | None = None) -> list:
  """``[fn(item) for item in items]``, the calls spread over ``workers``
  threads (default :func:`cores`) with BLAS at one thread: for host work
  that releases the GIL (a compiled XLA program, a LAPACK call through
  ``ctypes``). Exceptions reach the caller."""
  items = list(items)
  workers = cores() if workers is None else workers
  with _controller().limit(limits=1, user_api="blas"):
    if workers < 2 or len(items) < 2:
      return [fn(item) for item in items]
    return list(_pool(workers).map(fn, items))
