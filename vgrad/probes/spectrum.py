"""The dense method's precision floor: which singular values are measured.

A singular value ``s`` of a computed ``M x N`` matrix is *resolved* when

    s >= floor = s_max * max(M, N) * eps(dtype)   and   s >= tiny(dtype),

the tolerance NumPy's ``matrix_rank`` uses (Press et al., Numerical Recipes
2.6). Singular values past a known rank bound (``rank_bound``: the matrix has
that many nonzero rows, e.g. inactive ReLU units) are exact zeros, reported
as 0.0 and counted as measured, whatever the SVD returned. Values below it
are dominated by rounding error in the product and the SVD and are never
reported as measurements: the record stores them as ``None`` and
statistics that would need them (min, median, condition number, mean log) are
``None`` too. Calibration (BUILD_NOTES.md): for tanh/sigmoid/ReLU/linear
chains of width 256 and depth 10-50, every float32 value this rule calls
resolved agrees with float64 to better than 5e-4 relative; the rule is
conservative (it resolves about 75 % of the values that happen to agree
within 1 %).

The statistics and the results record of a spectrum, the same for every
method, are :mod:`vgrad.io.spectrum_records`'s; :func:`log_singular_values`
hands it the dense method's values.
"""

import numpy as np


def resolution_floor(sv_BxR: np.ndarray, matrix_shape: tuple[int, int],
                     dtype) -> np.ndarray:
  """``(B,)`` floors ``s_max * max(M, N) * eps`` for descending spectra."""
  return sv_BxR[:, 0] * max(matrix_shape) * np.finfo(dtype).eps


def exact_zero_mask(sv_BxR: np.ndarray, rank_bound) -> np.ndarray:
  """``(B, R)`` True past each input's ``rank_bound`` (None: nowhere)."""
  if rank_bound is None:
    return np.zeros(sv_BxR.shape, bool)
  index = np.arange(sv_BxR.shape[1])[None, :]
  return index >= np.asarray(rank_bound)[:, None]


def resolved_mask(sv_BxR: np.ndarray, matrix_shape: tuple[int, int],
                  dtype, rank_bound=None) -> np.ndarray:
  """``(B, R)`` True where a value is measured: a finite value at or above
  the floor (module doc), or an exact zero past ``rank_bound`` ``(B,)``."""
  floor = resolution_floor(sv_BxR, matrix_shape, dtype)[:, None]
  with np.errstate(invalid="ignore"):
    above = (np.isfinite(sv_BxR) & np.isfinite(floor) & (sv_BxR >= floor)
             & (sv_BxR >= np.finfo(dtype).tiny))
  return above | exact_zero_mask(sv_BxR, rank_bound)


def log_singular_values(sv_BxR: np.ndarray, matrix_shape: tuple[int, int],
                        dtype, rank_bound=None):
  """The dense method's spectra as :func:`vgrad.io.spectrum_records.make_record`
  takes them.

  Returns:
    ``(log_sv, measured, sv, floor)``: float64 ``ln s`` (``-inf`` for exact
    zeros, which are set to 0.0 in ``sv``), the :func:`resolved_mask`, the
    values, and the per-input :func:`resolution_floor`.
  """
  sv = np.asarray(sv_BxR, np.float64)
  sv = np.where(exact_zero_mask(sv, rank_bound), 0.0, sv)
  measured = resolved_mask(sv, matrix_shape, dtype, rank_bound)
  with np.errstate(divide="ignore", invalid="ignore"):
    log_sv = np.log(sv)
  return log_sv, measured, sv, resolution_floor(sv, matrix_shape, dtype)
