"""The Jacobian-spectrum study: build a net, probe it, summarise, judge.

``run_study(config)`` returns the ``results.json`` dictionary documented in
README.md; ``format_table`` and ``verdict`` turn it into the terminal report.
Nothing here reads flags or writes files.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from vgrad import jacobian
from vgrad import models
from vgrad import spectrum

# |gain| beyond these factors (a 10x change of a vector's norm through the
# whole net) is called vanishing / exploding; inside, a spectrum whose
# singular values all lie within ISOMETRY_BAND of 1 is near-isometric.
VANISHING_GAIN = 0.1
EXPLODING_GAIN = 10.0
ISOMETRY_BAND = (0.5, 2.0)


@dataclasses.dataclass(frozen=True)
class SpectrumConfig:
  """One probe of an MLP of ``depth`` hidden layers of ``width`` units.

  The network is square (input size = width) with no readout, so the
  input-output Jacobian is ``J_{<=depth} = D_depth W_depth ... D_1 W_1``.
  Inputs are ``x_0 ~ N(0, I_width)``.
  """
  act: str = "sigmoid"
  init: str = "glorot_uniform"
  depth: int = 10
  width: int = 256
  sigma_w: float | None = None
  sigma_b: float | None = None
  num_inputs: int = 16
  seed: int = 0
  dtype: str = "float32"
  act_params: dict = dataclasses.field(default_factory=dict)


def build_model(config: SpectrumConfig) -> models.MLP:
  return models.make_mlp(
      depth=config.depth, width=config.width, activation=config.act,
      activation_params=config.act_params, init=config.init,
      sigma_w=config.sigma_w, sigma_b=config.sigma_b,
      param_dtype=jnp.dtype(config.dtype))


def run_study(config: SpectrumConfig) -> dict:
  """Initialises the net, probes ``num_inputs`` inputs, returns results.

  float64 needs ``jax_enable_x64``; the caller sets it before calling.
  """
  dtype = jnp.dtype(config.dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs jax.config.update("
                     "'jax_enable_x64', True) before the study runs")
  model = build_model(config)
  init_key, data_key = jax.random.split(jax.random.key(config.seed))
  params = model.init(init_key, jnp.zeros((config.width,), dtype))
  xs = jax.random.normal(data_key, (config.num_inputs, config.width), dtype)
  spectra = jax.device_get(jacobian.make_spectrum_probe(model)(params, xs))
  return summarize(config, spectra)


def summarize(config: SpectrumConfig, spectra: jacobian.Spectra) -> dict:
  """The results dictionary from the probe's singular values."""
  n, dtype = config.width, np.dtype(config.dtype)
  rows = np.asarray(spectra.nonzero_rows)
  chain_rank = np.minimum.accumulate(rows, axis=1)
  cumulative = [
      spectrum.spectrum_record(spectra.cumulative[:, l], (n, n), dtype,
                               rank_bound=chain_rank[:, l], layer=l + 1)
      for l in range(config.depth)]
  single = [spectra.first_layer] + [spectra.per_layer[:, l]
                                    for l in range(config.depth - 1)]
  per_layer = [spectrum.spectrum_record(sv, (n, n), dtype,
                                        rank_bound=rows[:, l], layer=l + 1)
               for l, sv in enumerate(single)]
  return {
      "config": dataclasses.asdict(config),
      "convention": "J_l = D_l W_l, D_l = diag(phi'(h_l)); layers[l] is "
                    "J_{<=l} = D_l W_l ... D_1 W_1; per_layer[l] is J_l",
      "dtype_eps": float(np.finfo(dtype).eps),
      "layers": cumulative,
      "per_layer": per_layer,
      "input_output": spectrum.spectrum_record(
          spectra.input_output, (n, n), dtype, rank_bound=chain_rank[:, -1],
          layer=config.depth),
  }


def gain(record: dict) -> float | None:
  """RMS singular value sqrt(tr(J J^T) / N): the mean factor on ||v||^2."""
  ms = record["mean_sq_singular_value"]
  return None if ms is None else math.sqrt(ms)


def unresolved_layers(results: dict) -> list[int]:
  """Layers whose cumulative spectrum has values below resolution."""
  return [r["layer"] for r in results["layers"]
          if r["finite"] and min(r["num_resolved"]) < r["num_singular_values"]]


def nonfinite_layers(results: dict) -> list[int]:
  return [r["layer"] for r in results["layers"] if not r["finite"]]


def verdict(results: dict) -> str:
  """One line: input-output gain and vanishing / exploding / near-isometric."""
  io, depth = results["input_output"], results["config"]["depth"]
  bad = nonfinite_layers(results)
  if bad:
    return (f"exploding: the Jacobian overflowed {results['config']['dtype']}"
            f" (Inf/NaN) from layer {bad[0]} on")
  g = gain(io)
  if g == 0.0:
    return ("vanishing: the input-output Jacobian is exactly zero "
            "(dead units, zero weights, or underflow)")
  rate = g ** (1 / depth)
  head = f"input-output gain {g:.3g} (x{rate:.3g} per layer)"
  if g < VANISHING_GAIN:
    return f"vanishing: {head}"
  if g > EXPLODING_GAIN:
    return f"exploding: {head}"
  lo, hi = io["min_singular_value"], io["max_singular_value"]
  if lo is not None and ISOMETRY_BAND[0] <= lo and hi <= ISOMETRY_BAND[1]:
    return f"near-isometric: {head}, singular values in [{lo:.3g}, {hi:.3g}]"
  if max(io["num_exact_zeros"]):
    spread = (f"rank-deficient: up to {max(io['num_exact_zeros'])} of "
              f"{io['num_singular_values']} singular values exactly zero "
              f"(inactive units)")
  elif io["condition_number"] is not None:
    spread = f"condition number {io['condition_number']:.3g}"
  else:
    spread = "smallest singular values below resolution"
  return (f"norm-preserving on average but not isometric: {head}, {spread}")


def _fmt(value: float | None) -> str:
  return "-" if value is None else f"{value:.3e}"


def format_table(results: dict) -> str:
  """Per-layer table of the cumulative (input-to-layer-l) spectra.

  ``resolved`` is the worst input's count of measured values (exact zeros
  included); ``zeros`` the most exact zeros (inactive units) of any input.
  """
  head = (f"{'l':>4} {'rms gain':>10} {'min sv':>10} {'median sv':>10} "
          f"{'max sv':>10} {'cond':>10} {'layer gain':>10} {'resolved':>9} "
          f"{'zeros':>5}")
  lines = [head, "-" * len(head)]
  for cum, one in zip(results["layers"], results["per_layer"]):
    lines.append(
        f"{cum['layer']:>4} {_fmt(gain(cum)):>10} "
        f"{_fmt(cum['min_singular_value']):>10} "
        f"{_fmt(cum['median_singular_value']):>10} "
        f"{_fmt(cum['max_singular_value']):>10} "
        f"{_fmt(cum['condition_number']):>10} {_fmt(gain(one)):>10} "
        f"{min(cum['num_resolved']):>4}/{cum['num_singular_values']:<4} "
        f"{max(cum['num_exact_zeros']):>5}")
  return "\n".join(lines)


def precision_note(results: dict) -> str | None:
  """Says where values fell below resolution or overflowed, else None."""
  cfg, notes = results["config"], []
  missing = unresolved_layers(results)
  if missing:
    worst = results["layers"][missing[-1] - 1]
    notes.append(
        f"{cfg['dtype']} resolves only {min(worst['num_resolved'])} of "
        f"{worst['num_singular_values']} singular values at layer "
        f"{worst['layer']} (unresolved from layer {missing[0]}: below "
        f"s_max * N * eps); they are flagged, not reported")
    if cfg["dtype"] == "float32":
      notes.append("--dtype=float64 resolves more")
  bad = nonfinite_layers(results)
  if bad:
    notes.append(f"non-finite singular values (overflow) from layer {bad[0]}")
  return "; ".join(notes) + "." if notes else None
