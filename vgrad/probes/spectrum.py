"""The dense method's precision floor: which singular values are measured.

A singular value ``s`` of a computed ``M x N`` matrix is *resolved* when

    s >= floor = s_max * max(M, N) * eps(dtype)   and   s >= tiny(dtype),

the tolerance NumPy's ``matrix_rank`` uses (Press et al., Numerical Recipes
2.6): the error of the SVD itself. A product ``J_{<=l} = J_l ... J_1``
formed in the working dtype also carries the rounding of its ``l - 1``
products, which grows with ``l``: :func:`product_floors` adds it, and the
cumulative spectra use that floor (the per-layer ones the SVD floor).
Singular values past a known rank bound (``rank_bound``: the matrix has
that many nonzero rows, e.g. inactive ReLU units) are exact zeros, reported
as 0.0 and counted as measured, whatever the SVD returned. Values below the
floor are dominated by rounding error in the product and the SVD and are never
reported as measurements: the record stores them as ``None`` and
statistics that would need them (min, median, condition number, mean log) are
``None`` too. Calibration (:func:`product_floors`, tests/precision_test.py):
no value above the product floor is 1 % off on sigmoid and tanh nets of
width 5 to 256 and depth 10 to 30.

The statistics and the results record of a spectrum, the same for every
method, are :mod:`vgrad.io.spectrum_records`'s; :func:`log_singular_values`
hands it the dense method's values.
"""

import numpy as np


def resolution_floor(sv_BxR: np.ndarray, matrix_shape: tuple[int, int],
                     dtype) -> np.ndarray:
  """``(B,)`` floors ``s_max * max(M, N) * eps`` for descending spectra."""
  return sv_BxR[:, 0] * max(matrix_shape) * np.finfo(dtype).eps


def product_floors(own: list, cumulative_top, shapes: list,
                   dtype) -> np.ndarray:
  """``(B, L)`` floors of the computed products ``J_{<=l}``.

  With ``g_l = ||J_l||_F / sqrt(R_l)`` (the layer's rms singular value),
  ``n_l`` its largest dimension and ``eps`` the working dtype's,

      E_1 = 0,   E_l = g_l E_{l-1} + n_l eps ||J_l|| ||J_{<=l-1}||,
      floor_l = E_l + n_l eps ||J_{<=l}||.

  Each product ``J_l J_{<=l-1}`` adds at most about ``n eps ||J_l||
  ||J_{<=l-1}||`` of rounding, and the error already in ``J_{<=l-1}`` is
  carried on by ``J_l``: a random error matrix grows by the layer's rms
  gain, not by its largest singular value (which would make the floor grow
  like ``prod ||J_m||``, far above what the products carry). Calibrated
  against the float32 net's layer Jacobians multiplied in float64
  (BUILD_NOTES.md): on sigmoid and tanh nets of width 5 to 256 and depth 10
  to 30, no value above this floor is 1 % off (the worst lies 5x below
  the floor), where the SVD floor alone let values 2-3 % off through.

  Args:
    own: per layer, ``(B, R_l)`` each layer's own singular values.
    cumulative_top: ``(B, L)`` the largest singular value of each
      ``J_{<=l}``.
    shapes: per layer, ``(n_l, n_{l-1})``.
    dtype: the working dtype.
  """
  own = [np.asarray(sv, np.float64) for sv in own]
  with np.errstate(over="ignore", invalid="ignore"):
    rms = np.stack([np.sqrt(np.mean(sv * sv, axis=1)) for sv in own], axis=1)
  return chain_floors(np.stack([sv[:, 0] for sv in own], axis=1), rms,
                      cumulative_top, [max(shape) for shape in shapes],
                      dtype)


def chain_floors(own_top, own_rms, cumulative_top, sizes,
                 dtype) -> np.ndarray:
  """:func:`product_floors` from ``(B, L)`` each layer's largest and rms
  singular values, ``(B, L)`` each product's largest, and each layer's
  largest dimension ``n_l`` (``sizes``, L)."""
  eps = float(np.finfo(dtype).eps)
  top = np.asarray(cumulative_top, np.float64)
  own_top = np.asarray(own_top, np.float64)
  own_rms = np.asarray(own_rms, np.float64)
  error = np.zeros(top.shape[0])
  floors = []
  for l, n in enumerate(sizes):
    with np.errstate(over="ignore", invalid="ignore"):
      if l:
        error = own_rms[:, l] * error + n * eps * own_top[:, l] * top[:, l - 1]
      floors.append(error + n * eps * top[:, l])
  return np.stack(floors, axis=1)


def exact_zero_mask(sv_BxR: np.ndarray, rank_bound) -> np.ndarray:
  """``(B, R)`` True past each input's ``rank_bound`` (None: nowhere)."""
  if rank_bound is None:
    return np.zeros(sv_BxR.shape, bool)
  index = np.arange(sv_BxR.shape[1])[None, :]
  return index >= np.asarray(rank_bound)[:, None]


def resolved_mask(sv_BxR: np.ndarray, matrix_shape: tuple[int, int],
                  dtype, rank_bound=None, floor=None) -> np.ndarray:
  """``(B, R)`` True where a value is measured: a finite value at or above
  the floor (module doc; ``floor`` (B,) overrides the SVD floor), or an
  exact zero past ``rank_bound`` ``(B,)``."""
  if floor is None:
    floor = resolution_floor(sv_BxR, matrix_shape, dtype)
  floor = np.asarray(floor, np.float64)[:, None]
  with np.errstate(invalid="ignore"):
    above = (np.isfinite(sv_BxR) & np.isfinite(floor) & (sv_BxR >= floor)
             & (sv_BxR >= np.finfo(dtype).tiny))
  return above | exact_zero_mask(sv_BxR, rank_bound)


def log_singular_values(sv_BxR: np.ndarray, matrix_shape: tuple[int, int],
                        dtype, rank_bound=None, floor=None):
  """The dense method's spectra as :func:`vgrad.io.spectrum_records.make_record`
  takes them.

  Returns:
    ``(log_sv, measured, sv, floor)``: float64 ``ln s`` (``-inf`` for exact
    zeros, which are set to 0.0 in ``sv``), the :func:`resolved_mask`, the
    values, and the per-input floor (``floor``, default the
    :func:`resolution_floor`).
  """
  sv = np.asarray(sv_BxR, np.float64)
  sv = np.where(exact_zero_mask(sv, rank_bound), 0.0, sv)
  if floor is None:
    floor = resolution_floor(sv, matrix_shape, dtype)
  measured = resolved_mask(sv, matrix_shape, dtype, rank_bound, floor)
  with np.errstate(divide="ignore", invalid="ignore"):
    log_sv = np.log(sv)
  return log_sv, measured, sv, np.asarray(floor, np.float64)
