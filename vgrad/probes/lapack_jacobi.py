"""LAPACK's preconditioned one-sided Jacobi SVD (``dgejsv``) on the host.

The exact probe's final stage (:mod:`vgrad.probes.log_spectrum`) rotates
the rows of a graded triangular ``T = diag(2^e) M`` until they are
orthogonal. Its first rotation is ``U^T`` from an SVD of ``T`` scaled into
range. LAPACK's divide-and-conquer SVD (``jnp.linalg.svd``) is accurate
only relative to the largest singular value: once ``T`` spans more than
float64 resolves (``e^36``; a sigmoid net of width 512 passes that by layer
~12 and spans ``e^190`` at layer 50), ``U^T`` mixes eps-size parts of the
large rows into the small ones, the stage is dropped, and float64 Jacobi
sweeps in JAX do the work (5-6 sweeps, ~1 s per 512 x 512 target).

``dgejsv`` (Drmac & Veselic 2008) is accurate relative to *each* singular
value for ``A = B D`` with ``B`` well conditioned and any diagonal ``D``:
QR with column pivoting, then one-sided Jacobi on the triangular factor.
``T^T = M^T diag(2^e)`` is such a matrix (the rows of ``M`` are the ones
the final stage orthogonalises; it is ``M``'s conditioning that the whole
method relies on, Demmel & Veselic 1992), so the right singular vectors
``V`` of ``T^T`` (the left ones of ``T``) keep the grading, and ``V^T T``
has orthogonal rows to within ~1e-9 where the JAX sweeps needed 5-6 sweeps
(measured on the sigmoid net at N = 512, layers 15-50: values equal to the
swept ones to 2e-13 nats, 0.15-0.35 s each with one BLAS thread). The
result is used like the SVD's ``U``: as a rotation whose rounding is
checked row by row and by the determinant, then certified; nothing here
is trusted unchecked.

The routine is SciPy's own LAPACK (the library behind ``scipy.linalg`` and
jaxlib's CPU kernels), called through its Cython function pointer with
``ctypes``, which releases the GIL: the targets run on every core.
``scipy.linalg.lapack.dgejsv`` holds the GIL (measured: 2 threads no
faster than one).
"""

import ctypes
import functools

import numpy as np

from vgrad.probes import host

# Rows further than this below the largest (in binary exponent) would leave
# float64's normal range when the matrix is scaled into range: such a ``T``
# is left to the JAX stages (graded arithmetic, no range limit).
MAX_EXPONENT_SPAN = 900


@functools.cache
def _routine():
  """``dgejsv`` as a ctypes function, or None where SciPy has none."""
  try:
    from scipy.linalg import cython_lapack
    capsule = cython_lapack.__pyx_capi__["dgejsv"]
  except (ImportError, KeyError, AttributeError):
    return None
  name = ctypes.pythonapi.PyCapsule_GetName
  name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
  pointer = ctypes.pythonapi.PyCapsule_GetPointer
  pointer.restype = ctypes.c_void_p
  pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
  address = pointer(capsule, name(capsule))
  return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 19))(address)


def available() -> bool:
  """Whether this host has ``dgejsv`` (SciPy's LAPACK)."""
  return _routine() is not None


def left_singular_vectors(t: np.ndarray) -> np.ndarray | None:
  """``V (k, k)`` with ``t = V S W^T`` for ``t (k, n)``, ``k <= n``, float64:
  the right singular vectors of ``t^T`` from ``dgejsv`` with column-scaling
  accuracy (``JOBA='C'``), the full range of values (``JOBR='N'``) and no
  perturbation of tiny entries (``JOBP='N'``); None if LAPACK reports an
  error (``INFO != 0``) or returns a non-finite ``V``."""
  routine = _routine()
  k, n = t.shape
  if routine is None or k > n:
    return None
  # t row-major (k, n) is t^T column-major (n, k): LAPACK's m = n, n = k.
  a = np.array(t, dtype=np.float64, order="C")
  rows, cols = n, k
  lwork = (max(6 * cols + 2 * cols * cols, 2 * rows + cols,
               4 * cols + cols * cols, 2 * cols + cols * cols + 6, 7)
           + rows + cols * cols)
  values = np.empty(cols)
  unused = np.empty((1, 1))
  v = np.empty((cols, cols), order="F")
  work = np.empty(lwork)
  iwork = np.empty(rows + 3 * cols, np.int32)
  info = np.zeros(1, np.int32)
  job = lambda c: ctypes.c_char_p(c)
  num = lambda i: ctypes.byref(ctypes.c_int(i))
  routine(job(b"C"), job(b"N"), job(b"V"), job(b"N"), job(b"N"), job(b"N"),
          num(rows), num(cols), a.ctypes.data, num(rows), values.ctypes.data,
          unused.ctypes.data, num(1), v.ctypes.data, num(cols),
          work.ctypes.data, num(lwork), iwork.ctypes.data, info.ctypes.data)
  if info[0] != 0 or not np.all(np.isfinite(v)):
    return None
  return np.ascontiguousarray(v)


def eligible(m, e, rank) -> np.ndarray:
  """``(N,)``: whether the graded ``diag(2^e[i]) m[i]`` (``m (N, k, n)``,
  ``e (N, k)``, ``rank (N,)``) can go to :func:`left_singular_vectors`:
  full rank, finite, and no row further than ``MAX_EXPONENT_SPAN`` binary
  orders below the largest (scaled into range, every row stays normal)."""
  m, e, rank = np.asarray(m), np.asarray(e, np.int64), np.asarray(rank)
  span = e.max(axis=1) - e.min(axis=1)
  return ((rank == m.shape[1]) & np.all(np.isfinite(m), axis=(1, 2))
          & (span <= MAX_EXPONENT_SPAN))


def _basis(m: np.ndarray, e: np.ndarray, rank: int):
  """``V`` of the graded ``T = diag(2^e) m`` scaled into range, or None
  where the stage does not apply (:func:`eligible`) or LAPACK fails."""
  if not eligible(m[None], e[None], np.asarray([rank]))[0]:
    return None
  return left_singular_vectors(np.ldexp(m, (e - e.max())[:, None]))


def graded_bases(m, e, rank, workers: int | None = None):
  """``(bases (N, k, k), usable (N,))`` for ``N`` graded matrices
  ``diag(2^e[i]) m[i]`` (``m (N, k, n)`` float64, ``e (N, k)``, ``rank
  (N,)``): each one's ``V`` (:func:`left_singular_vectors`), computed on
  every core with BLAS at one thread; ``usable[i]`` False (and an identity
  basis) where the stage does not apply or LAPACK failed."""
  m, e, rank = np.asarray(m, np.float64), np.asarray(e), np.asarray(rank)
  count, k = m.shape[:2]
  bases = np.broadcast_to(np.eye(k), (count, k, k)).copy()
  usable = np.zeros(count, bool)

  def one(i):
    return _basis(m[i], e[i], int(rank[i]))

  for i, v in enumerate(host.thread_map(one, range(count), workers)):
    if v is not None:
      bases[i], usable[i] = v, True
  return bases, usable
