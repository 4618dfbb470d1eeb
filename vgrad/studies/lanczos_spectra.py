r"""The ``lanczos`` method's results records: extremes and SLQ, matrix-free.

:func:`lanczos_body` runs :func:`vgrad.probes.block_lanczos.lanczos_spectra`
on any blocks and turns its Ritz values into the records of
:mod:`vgrad.io.spectrum_records` (the same keys as ``dense`` and ``qr``):

* **values**: the ``EXTREMES`` largest and smallest Ritz values of each
  input sit at their places in the ``R``-value rows (the i-th largest at
  position i, the i-th smallest at ``R - i``); the values between are not
  computed and stay ``null`` (with ``k = R`` steps every value is
  computed). A Ritz value ``theta`` with residual bound ``r`` counts as
  measured when

      r / theta <= RESOLVED_ERROR (1 %)   and   theta >= floor,

  ``floor`` the rounding of the Jacobian-vector products: the dense
  product's floor (:func:`vgrad.probes.spectrum.chain_floors`, from the
  blocks' own largest and rms singular values) plus ``k eps theta_1`` for
  the bidiagonalisation. As for the dense method, a value at or above the
  floor is a measurement: the floor bounds the products' rounding error
  ``E`` pessimistically (a singular value of ``J`` lies within ``r +
  ||E||`` of ``theta``, Weyl), and values above it were found within 1 %
  (BUILD_NOTES.md). ``error_bound`` (per input) is the largest
  ``-ln(1 - r/theta - min(floor/theta, 1 %))`` of the measured values, in
  nats: the residual bound plus that rounding allowance.
* **statistics**: max, min and condition number where the ends are
  measured, the median where it falls on one; ``mean_sq_singular_value``,
  ``log_rms_gain`` and the mean log are ``null`` (they need every value);
* **slq**: each input's Gauss quadrature rule (nodes ``ln theta_i``,
  weights ``tau_i^2``: its probe's spectral measure, pooled over inputs the
  spectral density) and Hutchinson's estimate of the rms gain with its
  standard error (:func:`vgrad.io.spectrum_records.slq_object`).
"""

import jax
import numpy as np

from vgrad.io import spectrum_records
from vgrad.probes import block_lanczos
from vgrad.probes import blocks as blocks_lib
from vgrad.probes import spectrum

RESOLVED_ERROR = spectrum_records.RESOLVED_ERROR
EXTREMES = block_lanczos.EXTREMES


def placed(ritz_BxK, num_values: int) -> tuple[np.ndarray, np.ndarray]:
  """``(columns (m,), positions (m,))``: which Ritz values go where in a row
  of ``num_values`` (all when ``k = R``, else the ``EXTREMES`` largest and
  smallest, at most ``k // 2`` each)."""
  k = ritz_BxK.shape[1]
  if k >= num_values:
    index = np.arange(num_values)
    return index, index
  q = min(EXTREMES, k // 2)
  columns = np.concatenate([np.arange(q), np.arange(k - q, k)])
  positions = np.concatenate([np.arange(q),
                              np.arange(num_values - q, num_values)])
  return columns, positions


def lanczos_record(ritz, num_values: int, dtype, *, layer: int,
                   floor) -> dict:
  """The record of B inputs' Ritz values of one matrix (module doc).

  Args:
    ritz: a :class:`vgrad.probes.matrix_free.Ritz` of ``(B, k)`` fields.
    num_values: ``R``, the matrix's number of singular values.
    dtype: the working dtype.
    layer: the record's layer.
    floor: ``(B,)`` the rounding floor of the products (absolute).
  """
  theta = np.asarray(ritz.singular_values, np.float64)
  bounds = np.asarray(ritz.error_bounds, np.float64)
  columns, positions = placed(theta, num_values)
  b = theta.shape[0]
  floor = np.asarray(floor, np.float64)[:, None]
  log_sv = np.full((b, num_values), np.nan)
  residual = np.full((b, num_values), np.inf)
  rounding = np.full((b, num_values), np.inf)
  with np.errstate(divide="ignore", invalid="ignore"):
    log_sv[:, positions] = np.log(theta[:, columns])
    live = theta[:, columns] > 0
    residual[:, positions] = np.where(
        live, bounds[:, columns] / theta[:, columns], np.inf)
    rounding[:, positions] = np.where(live, floor / theta[:, columns],
                                      np.inf)
  # As the dense method: a value at or above the floor is a measurement
  # (calibrated: its rounding error stays below RESOLVED_ERROR), and the
  # Lanczos residual must be within RESOLVED_ERROR too.
  measured = (rounding <= 1.0) & (residual <= RESOLVED_ERROR)
  delta = residual + np.minimum(rounding, RESOLVED_ERROR)
  finite = bool(np.all(np.isfinite(theta)) and np.all(np.isfinite(bounds)))
  worst = np.max(np.where(measured, delta, 0.0), axis=1)
  error_bound = [(-np.log1p(-w) if m.any() else None)
                 for w, m in zip(worst, measured)]
  weights = np.asarray(ritz.weights, np.float64)
  with np.errstate(divide="ignore"):
    nodes = np.log(theta)
  slq = spectrum_records.slq_object(
      theta.shape[1], nodes, weights, np.sum(weights * theta ** 2, axis=1),
      dtype)
  return spectrum_records.make_record(
      layer, log_sv, dtype, measured=measured, finite=finite,
      error_bound=error_bound, slq=slq, mean_sq_measured=False)


def _cumulative_tops(own_top, targets: dict, depth: int) -> np.ndarray:
  """``(B, L)`` the norm of every ``J_{<=l}``: measured at the targets
  (``theta_1 + r_1``), elsewhere bounded by ``||J_l|| ||J_{<=l-1}||``."""
  tops, previous = [], np.ones(own_top.shape[0])
  for l in range(depth):
    previous = targets.get(l + 1, own_top[:, l] * previous)
    tops.append(previous)
  return np.stack(tops, axis=1)


def lanczos_body(blocks, xs, wanted, dtype,
                 steps: int = block_lanczos.DEFAULT_STEPS,
                 key=None) -> dict:
  """``layers``, ``per_layer``, ``input_output`` and ``lyapunov`` (null) of
  the lanczos method for ``blocks`` (a list of callables or a
  :class:`vgrad.probes.blocks.Blocks`) at the inputs ``xs``.

  Args:
    wanted: the layers of ``layers`` (1-based); the last block is added.
    dtype: the working dtype (floors, digits).
    steps: Golub-Kahan steps per matrix (at most its ``R``).
    key: the start vectors' PRNG key (default ``key(0)``).
  """
  shapes = blocks_lib.shapes(blocks, xs)
  depth = len(shapes)
  targets = tuple(sorted(set(wanted) | {depth}))
  key = jax.random.key(0) if key is None else key
  result = jax.device_get(block_lanczos.lanczos_spectra(
      blocks, xs, key, targets, steps))
  eps = float(np.finfo(dtype).eps)

  def top(ritz):
    return (np.asarray(ritz.singular_values, np.float64)[:, 0]
            + np.asarray(ritz.error_bounds, np.float64)[:, 0])

  own_top = np.stack([top(r) for r in result.own], axis=1)
  own_rms = np.stack([np.sqrt(np.asarray(block_lanczos.hutchinson(
      r.weights, r.singular_values), np.float64)) for r in result.own],
      axis=1)
  per_layer = [
      lanczos_record(r, min(shape), dtype, layer=l + 1,
                     floor=(max(shape) + np.shape(r.singular_values)[1])
                     * eps * own_top[:, l])
      for l, (r, shape) in enumerate(zip(result.own, shapes))]
  tops = _cumulative_tops(
      own_top, {l: top(r) for l, r in zip(targets, result.cumulative)},
      depth)
  floors = spectrum.chain_floors(own_top, own_rms, tops,
                                 [max(s) for s in shapes], dtype)
  n0 = shapes[0][1]
  records = {}
  for l, r in zip(targets, result.cumulative):
    k = np.shape(r.singular_values)[1]
    records[l] = lanczos_record(
        r, min(shapes[l - 1][0], n0), dtype, layer=l,
        floor=floors[:, l - 1] + k * eps * tops[:, l - 1])
  return {"layers": [records[l] for l in sorted(set(wanted))],
          "per_layer": per_layer,
          "input_output": records[depth],
          "lyapunov": None}
