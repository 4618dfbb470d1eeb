"""Jacobian spectra of any network cut into blocks, as one results record.

``jacobian_spectra(blocks, x)`` returns the keys of the spectrum
experiment's results.json but ``schema`` and ``config`` (``layers``,
``per_layer``, ``input_output``, ``lyapunov``, ``method``,
``method_reason``, ``convention``, ``dtype_eps``; the records of
:mod:`vgrad.io.spectrum_records`, the same keys under every method) for

* a list of block callables or a :class:`vgrad.probes.blocks.Blocks`
  (the general path: each block's Jacobian by ``jax.jacfwd``/``jacrev``);
* :func:`mlp_blocks` ``(model, params)``: vgrad's MLP, whose hidden layers
  are its blocks, through its analytic ``D_l W_l`` probes (the fast path,
  chosen by the type; tested equal to the general path on the same net).

``method``: ``"dense"`` (products and SVDs in the working dtype; values
below the dense floor are reported unresolved), ``"qr"`` (the stable
forward QR pass and graded Jacobi: log values that never under- or
overflow), or ``"auto"`` (the forward QR pass's Lyapunov sums predict
whether the dense path resolves every value:
:func:`vgrad.studies.spectrum_study.choose_method`), or ``"lanczos"``
(matrix-free: the extremes with residual bounds and the SLQ estimates,
:mod:`vgrad.studies.lanczos_spectra`; for widths where a dense Jacobian
costs too much).

Left for issue 12: one forward pass serving ``auto``'s choice and the probe
(``qr`` runs the pass twice).
"""

from collections.abc import Sequence
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import models
from vgrad.probes import block_lanczos
from vgrad.probes import blocks as blocks_lib
from vgrad.probes import jacobian
from vgrad.probes import log_spectrum
from vgrad.probes import spectrum
from vgrad.studies import lanczos_spectra
from vgrad.studies import spectrum_study

METHODS = ("auto", "dense", "qr", "lanczos")


class MLPBlocks(NamedTuple):
  """vgrad's MLP as blocks: its hidden layers (the readout is not a block)."""
  model: models.MLP
  params: Any

  @property
  def depth(self) -> int:
    return self.model.depth

  def as_callables(self) -> list:
    """The hidden layers as general block callables (for the general path)."""
    layer = lambda m, i, v: m.apply_layer(i, v)[0]
    return [lambda v, i=i: self.model.apply(self.params, i, v, method=layer)
            for i in range(1, self.depth + 1)]


def mlp_blocks(model: models.MLP, params) -> MLPBlocks:
  return MLPBlocks(model, params)


@functools.lru_cache(maxsize=32)
def _mlp_probe(kind: str, model: models.MLP, *args):
  """The MLP's jitted probe of ``kind``, made once per model and settings
  (probing the same model again compiles nothing)."""
  if kind == "dense":
    return jacobian.make_spectrum_probe(model)
  if kind == "own":
    return jacobian.make_layer_spectrum_probe(model)
  if kind == "lyapunov":
    return log_spectrum.make_lyapunov_probe(model)
  return log_spectrum.make_log_spectrum_probe(
      model, *args, dtype=spectrum_study.PASS_DTYPE)


def _depth(blocks) -> int:
  if isinstance(blocks, (MLPBlocks, blocks_lib.Blocks)):
    return blocks.depth
  return len(blocks)


def _cast(x, dtype):
  if dtype is None:
    return x
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs jax.config.update("
                     "'jax_enable_x64', True) first")
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), x)


def jacobian_spectra(blocks, x, *, method: str = "auto", dtype=None,
                     layers: Sequence[int] | None = None,
                     max_sweeps: int = log_spectrum.DEFAULT_MAX_SWEEPS,
                     lanczos_steps: int = block_lanczos.DEFAULT_STEPS,
                     key: jax.Array | None = None) -> dict:
  """Each block's own spectrum, the input-to-block-l spectrum for every
  ``l`` (or those in ``layers``) and the input-output spectrum.

  Args:
    blocks: a list of callables ``x -> x``, a
      :class:`vgrad.probes.blocks.Blocks`, or :func:`mlp_blocks`.
    x: inputs with a leading batch axis (``x[None]`` for one input); each
      block sees one input at a time.
    method: one of ``METHODS``.
    dtype: the working float dtype (default: the inputs'); the inputs are
      cast to it (a list of callables keeps its own parameters' dtype).
    layers: the blocks whose input-to-block spectra to report (1-based);
      default every block.
    max_sweeps: the Jacobi sweep cap of the ``qr`` method.
    lanczos_steps: Golub-Kahan steps per matrix of the ``lanczos`` method
      (:mod:`vgrad.studies.lanczos_spectra`; at most the matrix's R).
    key: PRNG key of the ``lanczos`` method's start vectors (default
      ``key(0)``).

  Returns:
    The results body (:data:`vgrad.io.spectrum_records.BODY_KEYS`: a
    results.json of ``experiments.jacobian_spectrum`` but its ``schema`` and
    ``config``), whose records have the same keys under every method;
    ``lyapunov`` holds the finite-time Lyapunov sums whenever they were
    computed (``qr``, and ``auto``'s choice), else None.

  Raises:
    ValueError: an unknown method, bad layers, or blocks whose shapes do
      not chain, before any work; a block not differentiable at an input
      (NaN or Inf in its Jacobian where its input and output are finite),
      before the probe (``dense``: by the probe's own program, before any
      record).
  """
  if method not in METHODS:
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got "
                     f"{method!r}")
  xs = _cast(x, dtype)
  depth = _depth(blocks)
  wanted = log_spectrum.check_layers(
      range(1, depth + 1) if layers is None else layers, depth)
  work_dtype = np.dtype(jax.tree.leaves(xs)[0].dtype)
  block_shapes = None
  if not isinstance(blocks, MLPBlocks):   # the MLP's derivatives are analytic
    # Blocks that do not chain, named first.
    block_shapes = blocks_lib.shapes(blocks, xs)
    if method != "dense":   # the dense probe's own program checks
      blocks_lib.check_differentiable(blocks, xs)
  reason, lyapunov, forward = "requested", None, None
  if method == "auto":
    sums, rank, forward = _lyapunov_sums(blocks, xs, depth, wanted,
                                         block_shapes)
    method, reason = spectrum_study.choose_method(sums, work_dtype)
    if method == "dense":   # keep the sums auto computed to decide
      lyapunov = spectrum_study.lyapunov_record(sums, rank, work_dtype)
  if method == "lanczos":
    general = (blocks.as_callables() if isinstance(blocks, MLPBlocks)
               else blocks)
    record = lanczos_spectra.lanczos_body(general, xs, wanted, work_dtype,
                                          lanczos_steps, key)
  elif method == "dense":
    record = _dense(blocks, xs, wanted, work_dtype) | {"lyapunov": lyapunov}
  else:
    record = _qr(blocks, xs, wanted, work_dtype, max_sweeps, forward)
  convention = (spectrum_study.CONVENTION if isinstance(blocks, MLPBlocks)
                else CONVENTION)
  return {"convention": convention,
          "dtype_eps": float(np.finfo(work_dtype).eps),
          "method": method, "method_reason": reason} | record


CONVENTION = ("J_l = d vec(x_l) / d vec(x_{l-1}) of block l; per_layer[l - 1] "
              "is J_l; each record of layers is J_{<=l} = J_l ... J_1 at its "
              "layer l; input_output is J_{<=L}; log values in nats; null: "
              "not measured, not representable in the working dtype (linear "
              "values), or ln 0 (log values)")


def _pad(sums_list, width) -> np.ndarray:
  """Per-block ``(B, k_l)`` sums as ``(B, L, width)``, NaN-padded."""
  b = np.shape(sums_list[0])[0]
  out = np.full((b, len(sums_list), width), np.nan)
  for l, s in enumerate(sums_list):
    s = np.asarray(s, np.float64)
    out[:, l, :s.shape[1]] = s
  return out


def _targets(wanted, depth) -> tuple[int, ...]:
  """The qr method's target blocks: the wanted ones and the last."""
  return tuple(sorted(set(wanted) | {depth}))


def _lyapunov_sums(blocks, xs, depth, wanted, block_shapes):
  """``(partial sums (B, L, k), rank bounds (B, L), pass)`` for ``auto``.

  General blocks: the qr method's own forward pass (float64, every
  target), which :func:`_qr` then finishes when auto picks qr: one pass
  serves the choice and the probe. Where its snapshots would pass
  ``spectrum_study.AUTO_SHARED_PASS_BYTES``, a pass with the last block as
  the only target decides, and ``pass`` is None. ``block_shapes``: the
  general blocks' :func:`vgrad.probes.blocks.shapes`."""
  if isinstance(blocks, MLPBlocks):
    sums = jax.device_get(_mlp_probe("lyapunov", blocks.model)(
        blocks.params, xs))
    return np.asarray(sums.partial_sums), np.asarray(sums.rank_bound), None
  targets = _targets(wanted, depth)
  width = max(max(shape) for shape in block_shapes)
  pass_dtype = np.dtype(spectrum_study.PASS_DTYPE)
  snapshot_bytes = (len(jax.tree.leaves(xs)[0]) * len(targets) * width ** 2
                    * pass_dtype.itemsize)
  shared = snapshot_bytes <= spectrum_study.AUTO_SHARED_PASS_BYTES
  forward = blocks_lib.qr_forward(blocks, xs, targets if shared else (depth,),
                                  dtype=pass_dtype if shared else None)
  partial = jax.device_get(forward.partial_sums)
  sums = _pad(partial, max(np.shape(p)[1] for p in partial))
  return (sums, np.full(sums.shape[:2], sums.shape[2]),
          forward if shared else None)


def _own_records(result: blocks_lib.BlockSpectra, dtype) -> list[dict]:
  """Each block's own spectrum as a record (``per_layer``); general blocks
  claim no exact zero."""
  return [spectrum_study.dense_record(np.asarray(sv), shape, dtype,
                                      layer=l + 1)
          for l, (sv, shape) in enumerate(zip(result.own, result.shapes))]


def _dense(blocks, xs, wanted, dtype) -> dict:
  if not isinstance(blocks, MLPBlocks):
    result, bad = blocks_lib.checked_dense_spectra(blocks, xs)
    blocks_lib.refuse_not_differentiable(bad)
    n0 = result.shapes[0][1]
    floors = spectrum.product_floors(
        result.own, np.stack([np.asarray(c)[:, 0] for c in result.cumulative],
                             axis=1), result.shapes, dtype)
    cumulative = {l: spectrum_study.dense_record(
        np.asarray(result.cumulative[l - 1]), (result.shapes[l - 1][0], n0),
        dtype, layer=l, floor=floors[:, l - 1])
                  for l in sorted(set(wanted) | {len(result.shapes)})}
    return {"layers": [cumulative[l] for l in wanted],
            "per_layer": _own_records(result, dtype),
            "input_output": cumulative[len(result.shapes)]}
  model, params = blocks
  n_in = np.shape(xs)[-1]
  spectra = jax.device_get(_mlp_probe("dense", model)(params, xs))
  rows = np.asarray(spectra.nonzero_rows)
  chain = np.minimum.accumulate(rows, axis=1)
  floors = spectrum_study.mlp_product_floors(
      spectra, [(model.width, n_in)] + [(model.width, model.width)] * (
          model.depth - 1), dtype)
  cumulative = {l: spectrum_study.dense_record(
      spectra.cumulative[:, l - 1], (model.width, n_in), dtype,
      rank_bound=chain[:, l - 1], layer=l, floor=floors[:, l - 1])
                for l in sorted(set(wanted) | {model.depth})}
  return {
      "layers": [cumulative[l] for l in wanted],
      "per_layer": _mlp_per_layer(model, n_in, dtype, spectra.first_layer,
                                  spectra.per_layer, rows),
      "input_output": cumulative[model.depth],
  }


def _mlp_per_layer(model, n_in, dtype, first, rest, nonzero_rows) -> list:
  """Each hidden layer's own spectrum as records (exact zeros from the
  layer's inactive units: ``nonzero_rows`` bounds its rank)."""
  rows = np.asarray(nonzero_rows)
  own = [first] + [rest[:, l] for l in range(model.depth - 1)]
  shapes = [(model.width, n_in)] + [(model.width, model.width)] * (
      model.depth - 1)
  return [spectrum_study.dense_record(np.asarray(sv), shape, dtype,
                                      rank_bound=rows[:, l], layer=l + 1)
          for l, (sv, shape) in enumerate(zip(own, shapes))]


def _qr(blocks, xs, wanted, dtype, max_sweeps, forward=None) -> dict:
  """The qr method's records; general blocks finish ``forward`` (auto's
  pass, at every target) when given."""
  depth = _depth(blocks)
  targets = _targets(wanted, depth)
  index = np.asarray(targets) - 1
  pass_dtype = spectrum_study.PASS_DTYPE
  if isinstance(blocks, MLPBlocks):
    model, params = blocks
    with jax.enable_x64(True):
      spectra = jax.device_get(_mlp_probe("qr", model, targets, max_sweeps)(
          params, xs))
    log_sv = [spectra.log_singular_values[:, t] for t in range(len(targets))]
    bounds = [spectra.error_bound[:, t] for t in range(len(targets))]
    sweeps = [spectra.sweeps[:, t] for t in range(len(targets))]
    sums, rank = np.asarray(spectra.partial_sums), spectra.rank_bound
    own = jax.device_get(_mlp_probe("own", model)(params, xs))
    per_layer = _mlp_per_layer(model, np.shape(xs)[-1], dtype, *own)
    conditions = jacobian.row_normalized_conditions(model, params)
    if not np.all(np.isfinite(conditions)):   # maxout: from the layers
      conditions = spectrum_study.layer_conditions(
          spectrum_study.own_spectra_list(own), dtype)
    width = max(model.width, np.shape(xs)[-1])
    log_error = np.asarray(spectra.log_error)
    log_dropped = np.asarray(spectra.log_dropped)
    target_rank = np.asarray(rank)[:, index]
  else:
    if forward is None:
      forward = blocks_lib.qr_forward(blocks, xs, targets, dtype=pass_dtype)
    result = jax.device_get(blocks_lib.qr_finish(forward,
                                                 max_sweeps=max_sweeps))
    log_sv, bounds, sweeps = (result.log_singular_values,
                              result.error_bound, result.sweeps)
    width = max(np.shape(s)[1] for s in result.partial_sums)
    sums = _pad(result.partial_sums, width)
    rank = np.full(sums.shape[:2], width)
    own = blocks_lib.dense_spectra(blocks, xs, products=False)
    per_layer = _own_records(own, dtype)
    conditions = spectrum_study.layer_conditions(own.own, dtype)
    width = max(max(shape) for shape in own.shapes)
    log_error = np.stack(result.log_error, axis=1)
    log_dropped = np.full_like(log_error, -np.inf)
    # No exact zeros: the rank bound of each target is its width.
    target_rank = np.stack([np.full(len(v), np.shape(v)[1]) for v in log_sv],
                           axis=1)
  relative = log_spectrum.forward_error_estimate(
      np.broadcast_to(conditions, (len(log_sv[0]), depth)), width,
      pass_dtype)[:, index]
  records = {
      l: spectrum_study.qr_record(
          v, dtype, layer=l, error_bound=e, sweeps=s,
          log_error=log_error[:, t], relative_error=relative[:, t],
          rank=target_rank[:, t], log_dropped=log_dropped[:, t])
      for t, (l, v, e, s) in enumerate(zip(targets, log_sv, bounds, sweeps))}
  return {
      "layers": [records[l] for l in wanted],
      "per_layer": per_layer,
      "input_output": records[depth],
      "lyapunov": spectrum_study.lyapunov_record(sums, rank, dtype),
  }
