"""The Jacobian-spectrum study: build a net, probe it, summarise, judge.

``run_study(config)`` returns the ``results.json`` dictionary documented in
README.md; ``format_table`` and ``verdict`` turn it into the terminal report.
Nothing here reads flags or writes files.

Two methods measure the spectra (``SpectrumConfig.method``):

* ``dense``: :func:`vgrad.probes.jacobian.make_spectrum_probe` multiplies the
  Jacobians out and takes SVDs; values below the working precision's
  resolution floor are flagged, not reported (:mod:`vgrad.probes.spectrum`).
* ``qr``: :func:`vgrad.probes.log_spectrum.make_log_spectrum_probe` computes the
  exact log singular values at every layer (or the ``qr_layers``), and the
  finite-time Lyapunov sums at every layer, without forming the product, so
  nothing is lost at any depth.
* ``auto`` (default) runs the cheap forward QR pass first and picks
  ``qr`` when the dense product would lose values (:func:`choose_method`),
  else ``dense``; the results say which and why.

Both methods write the same records (:mod:`vgrad.io.spectrum_records`:
linear and log values and statistics, :func:`dense_record` and
:func:`qr_record`), so a reader never needs to know which ran.
"""

import dataclasses
import math
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.io import schemas
from vgrad.io import spectrum_records
from vgrad.nn import config as nn_config
from vgrad.nn import lsuv
from vgrad.nn import models
from vgrad.probes import block_lanczos
from vgrad.probes import blocks as blocks_lib
from vgrad.probes import jacobian
from vgrad.probes import log_spectrum
from vgrad.probes import spectrum
from vgrad.studies import lanczos_spectra

METHODS = ("auto", "dense", "qr", "lanczos")

# The verdict's words and the numbers they stand for (g: the input-output
# rms gain, the factor by which the whole net scales a random direction's
# norm on average; verdict_words):
#   g < VANISHING_GAIN (a 10x loss)                  vanishing
#   g > EXPLODING_GAIN (a 10x gain)                  exploding
#   every singular value inside ISOMETRY_BAND        near-isometric
#   g inside ISOMETRY_BAND                           norm-preserving on average
#   VANISHING_GAIN <= g < ISOMETRY_BAND[0]           shrinking
#   ISOMETRY_BAND[1] < g <= EXPLODING_GAIN           growing
VANISHING_GAIN = 0.1
EXPLODING_GAIN = 10.0
ISOMETRY_BAND = (0.5, 2.0)


def verdict_words(log_gain_io: float, log_lo: float | None = None,
                  log_hi: float | None = None) -> str:
  """The verdict's first words for the input-output rms gain
  ``exp(log_gain_io)`` and, when known, the smallest and largest singular
  values ``exp(log_lo)``, ``exp(log_hi)`` (the table above)."""
  if log_gain_io < math.log(VANISHING_GAIN):
    return "vanishing"
  if log_gain_io > math.log(EXPLODING_GAIN):
    return "exploding"
  low, high = (math.log(b) for b in ISOMETRY_BAND)
  if log_lo is not None and log_hi is not None and (
      low <= log_lo and log_hi <= high):
    return "near-isometric"
  if low <= log_gain_io <= high:
    return "norm-preserving on average but not isometric"
  return "shrinking" if log_gain_io < low else "growing"


@dataclasses.dataclass(frozen=True)
class SpectrumConfig:
  """One probe of an MLP of ``depth`` hidden layers of ``width`` units.

  The network is square (input size = width) with no readout, so the
  input-output Jacobian is ``J_{<=depth} = D_depth W_depth ... D_1 W_1``.
  Inputs are ``x_0 ~ N(0, I_width)``. The network fields (``act``,
  ``act_params``, ``init``, ``depth``, ``width`` and the weight and bias
  variances ``sigma_w2``, ``sigma_b2``) are those of
  :class:`vgrad.nn.config.NetworkConfig`. ``method`` is one of ``METHODS``;
  ``qr_layers`` are the layers whose exact log spectra the ``qr`` method
  computes (default every layer, one Jacobi per layer and input; ``depth``
  is always added: it is the input-output Jacobian) and ``qr_sweeps`` caps
  its Jacobi sweeps per layer. ``lanczos`` (:mod:`vgrad.studies
  .lanczos_spectra`) computes the extremes and the SLQ density at the same
  layers, with ``lanczos_steps`` Golub-Kahan steps per matrix.
  """
  act: str = "sigmoid"
  init: str = "glorot_uniform"
  depth: int = 10
  width: int = 256
  sigma_w2: float | None = None
  sigma_b2: float | None = None
  num_inputs: int = 16
  seed: int = 0
  dtype: str = "float32"
  act_params: dict = dataclasses.field(default_factory=dict)
  method: str = "auto"
  qr_layers: tuple[int, ...] | None = None
  qr_sweeps: int = log_spectrum.DEFAULT_MAX_SWEEPS
  lanczos_steps: int = block_lanczos.DEFAULT_STEPS

  def network(self) -> nn_config.NetworkConfig:
    """The probed network's settings, validated (ConfigError if bad)."""
    return nn_config.NetworkConfig(
        act=self.act, init=self.init, depth=self.depth, width=self.width,
        sigma_w2=self.sigma_w2, sigma_b2=self.sigma_b2,
        act_params=self.act_params)


def build_model(config: SpectrumConfig) -> models.MLP:
  return models.make_mlp(**config.network().mlp_kwargs(),
                         param_dtype=jnp.dtype(config.dtype))


def qr_layers(config: SpectrumConfig) -> tuple[int, ...]:
  """The ``qr`` method's target layers: every layer, or ``qr_layers``
  (``depth`` always included)."""
  layers = (range(1, config.depth + 1) if config.qr_layers is None
            else config.qr_layers)
  return log_spectrum.check_layers(tuple(layers) + (config.depth,),
                                   config.depth)


def check_config(config: SpectrumConfig):
  """ValueError naming the field for a bad network (see
  :class:`vgrad.nn.config.NetworkConfig`), method, qr_layers or qr_sweeps."""
  config.network()
  if config.method not in METHODS:
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got "
                     f"{config.method!r}")
  if int(config.qr_sweeps) != config.qr_sweeps or config.qr_sweeps < 1:
    raise ValueError(f"qr_sweeps must be an integer >= 1, got "
                     f"{config.qr_sweeps}")
  if (int(config.lanczos_steps) != config.lanczos_steps
      or config.lanczos_steps < 2):
    raise ValueError(f"lanczos_steps must be an integer >= 2, got "
                     f"{config.lanczos_steps}")
  if config.qr_layers is not None:
    bad = [l for l in config.qr_layers
           if int(l) != l or not 1 <= l <= config.depth]
    if bad or not config.qr_layers:
      raise ValueError(f"qr_layers must be integers in [1, depth="
                       f"{config.depth}], got {list(config.qr_layers)}")


# The dtype of the qr method's forward pass, QR and SVDs (the network keeps
# its own): float64 holds the products of float32 layers to ~1e-16, so the
# final stage rarely needs Jacobi sweeps and the error estimate is tiny.
PASS_DTYPE = jnp.float64

# Largest snapshot of the qr probe's forward pass (B x layers x N x N) for
# which method='auto' decides from that pass (no pass of its own).
AUTO_SHARED_PASS_BYTES = 2 ** 29


def run_study(config: SpectrumConfig) -> dict:
  """Initialises the net, probes ``num_inputs`` inputs, returns results.

  float64 needs ``jax_enable_x64``; the caller sets it before calling.
  With ``init='lsuv'`` the orthonormal net is rescaled on the probe inputs
  (:func:`vgrad.nn.lsuv.initialize`) before it is probed.
  """
  check_config(config)
  dtype = jnp.dtype(config.dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs jax.config.update("
                     "'jax_enable_x64', True) before the study runs")
  model = build_model(config)
  init_key, data_key = jax.random.split(jax.random.key(config.seed))
  xs = jax.random.normal(data_key, (config.num_inputs, config.width), dtype)
  # A data-dependent init (LSUV) is fitted to the probe's own inputs.
  params = lsuv.initialize(model, init_key, xs)
  method, reason, lyapunov = config.method, "requested", None
  layers = qr_layers(config)
  if method == "lanczos":
    body = lanczos_spectra.lanczos_body(
        blocks_lib.mlp_as_blocks(model, params), xs, layers, dtype,
        config.lanczos_steps, jax.random.fold_in(data_key, 1))
    return {"schema": schemas.JACOBIAN_SPECTRUM,
            "config": dataclasses.asdict(config), "convention": CONVENTION,
            "dtype_eps": float(np.finfo(dtype).eps)} | body | {
                "method": method, "method_reason": reason}
  # The qr pass runs in float64 whatever the net's dtype (PASS_DTYPE).
  probe = log_spectrum.make_log_spectrum_probe(model, layers,
                                               config.qr_sweeps,
                                               dtype=PASS_DTYPE)
  forward_pass = None
  if method == "auto":
    # The qr probe's own forward pass decides, and serves qr if chosen; when
    # its snapshots of T_l would be large (dense is then likely, and memory
    # dear), the cheaper Lyapunov pass without them decides instead.
    snapshot_bytes = (config.num_inputs * len(layers) * config.width ** 2
                      * dtype.itemsize)
    if snapshot_bytes <= AUTO_SHARED_PASS_BYTES:
      with jax.enable_x64(True):
        forward_pass = probe.forward(params, xs)
      sums, rank = forward_pass.partial_sums, forward_pass.rank_bound
    else:
      sums, rank = log_spectrum.make_lyapunov_probe(model)(params, xs)[:2]
    sums = jax.device_get(sums)
    method, reason = choose_method(sums, dtype)
    if method == "dense":   # keep the sums auto computed to decide
      lyapunov = lyapunov_record(sums, jax.device_get(rank), dtype)
  if method == "dense":
    spectra = jax.device_get(jacobian.make_spectrum_probe(model)(params, xs))
    results = summarize(config, spectra) | {"lyapunov": lyapunov}
  else:
    with jax.enable_x64(True):
      if forward_pass is None:
        forward_pass = probe.forward(params, xs)
      spectra = jax.device_get(probe.finish(forward_pass))
    own = jax.device_get(
        jacobian.make_layer_spectrum_probe(model)(params, xs))
    conditions = jacobian.row_normalized_conditions(model, params)
    if not np.all(np.isfinite(conditions)):   # maxout: from the layers
      conditions = layer_conditions(own_spectra_list(own), dtype)
    results = summarize_qr(config, layers, spectra, own, conditions)
  # "schema" first: the file names its format before anything else.
  return ({"schema": schemas.JACOBIAN_SPECTRUM} | results
          | {"method": method, "method_reason": reason})


def _float_limits(dtype) -> tuple[float, float, float]:
  """``(log(1 / eps), log tiny, log max)`` of ``dtype``."""
  info = np.finfo(dtype)
  return (-math.log(float(info.eps)), math.log(float(info.tiny)),
          math.log(float(info.max)))


def choose_method(partial_sums, dtype) -> tuple[str, str]:
  """``('qr' | 'dense', reason)`` from the forward QR pass.

  The dense probe loses singular values that lie more than a factor
  ``1 / (N eps)`` below the largest (:mod:`vgrad.probes.spectrum`'s floor) or
  outside the float range. The finite-time Lyapunov sums ``S_l`` are
  log-majorised by the exact ``log sigma(J_{<=l})`` (``max S <= log
  sigma_max``, ``min S >= log sigma_min``) and fall short of them by about
  ``(1/2) log N`` at each end (``S_1 = log ||J e_1||`` and a random unit
  vector has overlap ``~ N^{-1/2}`` with the top singular vector), so the
  predicted extremes are ``max S + (1/2) log N`` and
  ``min S - (1/2) log N``. Where that margin is too small the dense path's
  own precision note still flags every lost value.

  Args:
    partial_sums: ``(B, L, N)`` Lyapunov sums (``-inf``: exact zeros, which
      the dense path reports exactly and which do not count).
    dtype: the working dtype.
  """
  sums = np.asarray(partial_sums, np.float64)
  n = sums.shape[-1]
  live = np.isfinite(sums)
  margin = 0.5 * math.log(n)
  with np.errstate(invalid="ignore"):
    top = np.max(np.where(live, sums, -np.inf), axis=-1) + margin
    bottom = np.min(np.where(live, sums, np.inf), axis=-1) - margin
  spread = np.where(live.any(axis=-1), top - bottom, 0.0)  # (B, L)
  per_n, log_tiny, log_max = _float_limits(dtype)
  # The dense floor grows about linearly with the number of products
  # (vgrad.probes.spectrum.product_floors): ln l less resolution at layer l.
  resolved = per_n - math.log(n) - np.log(np.arange(1, sums.shape[1] + 1))
  name = np.dtype(dtype).name
  widest = spread.max(axis=0)
  layer = int(np.argmax(widest)) + 1
  high = np.where(np.isfinite(top), top, -np.inf).max(axis=0)
  low = np.where(np.isfinite(bottom), bottom, np.inf).min(axis=0)
  reasons = []
  out = np.nonzero((high > log_max) | (low < log_tiny))[0]
  if out.size:
    l = out[0]
    value = high[l] if high[l] > log_max else low[l]
    reasons.append(f"the singular values leave the {name} range from layer "
                   f"{l + 1} (predicted e^{value:.0f}; {name} holds "
                   f"e^{log_tiny:.0f} to e^{log_max:.0f})")
  lost = np.nonzero(widest > resolved)[0]
  if lost.size:
    first = lost[0]
    reasons.append(f"{name} resolves singular values within a factor "
                   f"{math.exp(resolved[0]):.2g} of the largest (less with "
                   f"each product), and the forward pass's estimate (the "
                   f"Lyapunov sums) puts the largest over the smallest at "
                   f"e^{widest.max():.0f} by layer {layer} (beyond "
                   f"e^{resolved[first]:.1f} from layer {first + 1})")
  if reasons:
    return "qr", "; ".join(reasons)
  return "dense", (f"{name} resolves the predicted spread (at most "
                   f"e^{widest.max():.1f}, layer {layer}; resolution "
                   f"e^{resolved[layer - 1]:.1f}) and the values stay in "
                   f"range")


CONVENTION = ("J_l = D_l W_l, D_l = diag(phi'(h_l)); per_layer[l - 1] is "
              "J_l; each record of layers is J_{<=l} = D_l W_l ... D_1 W_1 "
              "at its layer l; input_output is J_{<=depth}; log values in "
              "nats; null: not measured, not representable in the working "
              "dtype (linear values), or ln 0 (log values)")


def dense_record(sv_BxR, matrix_shape: tuple[int, int], dtype,
                 rank_bound=None, *, layer: int, floor=None) -> dict:
  """The record of B dense spectra (:mod:`vgrad.io.spectrum_records`): values
  below the floor of :mod:`vgrad.probes.spectrum` (``floor`` (B,), default
  the SVD's) not measured, those past ``rank_bound`` exact zeros."""
  log_sv, measured, sv, floor = spectrum.log_singular_values(
      sv_BxR, matrix_shape, dtype, rank_bound, floor)
  return spectrum_records.make_record(layer, log_sv, dtype, measured=measured,
                                      singular_values=sv,
                                      resolution_floor=floor)


# A qr value is reported when its estimated relative error is at most this
# (1 %); the others are not measured (null), as below the dense floor.
RESOLVED_ERROR = spectrum_records.RESOLVED_ERROR


def qr_record(log_sv_BxR, dtype, *, layer: int, error_bound,
              sweeps, log_error=None, relative_error=None,
              rank=None, log_dropped=None) -> dict:
  """The record of B exact log spectra (``-inf``: exact zero).

  ``error_bound`` (B,) is the final stage's certificate (nats). With the
  forward pass's ``log_error`` (B,: log of its normwise absolute bound on
  ``T_l``), ``relative_error`` (B,: :func:`vgrad.probes.log_spectrum
  .forward_error_estimate`, inf where it does not apply), ``rank`` (B,:
  the exact-zero bound) and ``log_dropped`` (B,: what derivatives below
  the dtype's range took out of ``T_l``), each value's relative error is
  estimated as ``delta_i = min(relative_error, exp(log_error) / sigma_i)
  + exp(log_dropped) / sigma_i``: values with
  ``delta_i > RESOLVED_ERROR`` (and zeros past no rank bound) are not
  measured, and the reported ``error_bound`` becomes the certificate plus
  the largest ``-ln(1 - delta_i)`` of the measured values: the whole
  computation's error, in nats.
  """
  log_sv = np.asarray(log_sv_BxR, np.float64)
  certificate = np.asarray(error_bound, np.float64)
  measured = None
  if log_error is not None:
    measured, certificate = qr_uncertainty(log_sv, certificate, log_error,
                                           relative_error, rank, log_dropped)
  return spectrum_records.make_record(
      layer, log_sv, dtype, measured=measured, error_bound=certificate,
      sweeps=np.asarray(sweeps),
      log_dtype=np.promote_types(log_sv.dtype, dtype))


def qr_uncertainty(log_sv, certificate, log_error, relative_error, rank,
                   log_dropped=None):
  """``(measured (B, R), total bound (B,))`` of :func:`qr_record`."""
  b, r = log_sv.shape
  log_error = np.asarray(log_error, np.float64).reshape(b, 1)
  log_dropped = (np.full((b, 1), -np.inf) if log_dropped is None else
                 np.asarray(log_dropped, np.float64).reshape(b, 1))
  relative = np.broadcast_to(np.asarray(relative_error, np.float64),
                             (b,)).reshape(b, 1)
  rank = np.broadcast_to(np.asarray(rank), (b,)).reshape(b, 1)
  exact_zero = np.arange(r)[None, :] >= rank
  finite = np.isfinite(log_sv)
  with np.errstate(over="ignore", invalid="ignore"):
    absolute = np.exp(np.minimum(log_error - log_sv, 700.0))
    dropped = np.exp(np.minimum(log_dropped - log_sv, 700.0))
  delta = np.where(finite, np.minimum(relative, absolute) + dropped, np.inf)
  measured = exact_zero | (finite & (delta <= RESOLVED_ERROR))
  worst = np.max(np.where(measured & finite, delta, 0.0), axis=1)
  return measured, certificate - np.log1p(-np.minimum(worst, 0.5))


def own_spectra_list(own) -> list:
  """The layer spectra of :func:`vgrad.probes.jacobian
  .make_layer_spectrum_probe` as a list of ``(B, R)`` arrays."""
  first, rest = np.asarray(own[0]), np.asarray(own[1])
  return [first] + [rest[:, l] for l in range(rest.shape[1])]


def layer_conditions(spectra: list, dtype) -> np.ndarray:
  """``(B, L)`` ``sqrt(n) kappa(J_m)`` from each layer's own singular values
  (``(B, R)`` per layer), bounding the condition number of ``J_m`` with
  unit rows (van der Sluis); inf where the smallest is below the layer's
  dense floor (not measured) or zero."""
  out = []
  for sv in spectra:
    sv = np.asarray(sv, np.float64)
    top, low = sv[:, 0], sv[:, -1]
    floor = top * sv.shape[1] * float(np.finfo(dtype).eps)
    with np.errstate(divide="ignore", invalid="ignore"):
      kappa = np.where(low > floor, np.sqrt(sv.shape[1]) * top / low, np.inf)
    out.append(kappa)
  return np.stack(out, axis=1)


def summarize(config: SpectrumConfig, spectra: jacobian.Spectra) -> dict:
  """The results dictionary from the probe's singular values (``lyapunov``
  is the caller's)."""
  n, dtype = config.width, np.dtype(config.dtype)
  rows = np.asarray(spectra.nonzero_rows)
  chain_rank = np.minimum.accumulate(rows, axis=1)
  floors = mlp_product_floors(spectra, [(n, n)] * config.depth, dtype)
  cumulative = [
      dense_record(spectra.cumulative[:, l], (n, n), dtype,
                   rank_bound=chain_rank[:, l], layer=l + 1,
                   floor=floors[:, l])
      for l in range(config.depth)]
  return {
      "config": dataclasses.asdict(config),
      "convention": CONVENTION,
      "dtype_eps": float(np.finfo(dtype).eps),
      "layers": cumulative,
      "per_layer": per_layer_records(config, spectra.first_layer,
                                     spectra.per_layer, rows),
      "input_output": cumulative[-1],
  }


def mlp_product_floors(spectra: jacobian.Spectra, shapes: list,
                       dtype) -> np.ndarray:
  """``(B, L)`` :func:`vgrad.probes.spectrum.product_floors` of the dense
  probe's products."""
  cumulative = np.asarray(spectra.cumulative, np.float64)
  return spectrum.product_floors(
      own_spectra_list((spectra.first_layer, spectra.per_layer)),
      cumulative[:, :, 0], shapes, dtype)


def per_layer_records(config: SpectrumConfig, first_layer, rest,
                      nonzero_rows) -> list[dict]:
  """Each layer's own spectrum (``J_l`` alone) as a :func:`dense_record`,
  for either method (one layer's Jacobian stays in range).

  ``first_layer`` ``(B, R)``, ``rest`` ``(B, depth - 1, N)`` and
  ``nonzero_rows`` ``(B, depth)`` as :class:`vgrad.probes.jacobian.Spectra`
  holds them.
  """
  n, dtype = config.width, np.dtype(config.dtype)
  rows = np.asarray(nonzero_rows)
  single = [first_layer] + [rest[:, l] for l in range(config.depth - 1)]
  return [dense_record(sv, (n, n), dtype, rank_bound=rows[:, l], layer=l + 1)
          for l, sv in enumerate(single)]


QUANTILES = {"min": 0.0, "p10": 0.1, "median": 0.5, "p90": 0.9, "max": 1.0}


def summarize_qr(config: SpectrumConfig, layers: tuple[int, ...],
                 spectra: log_spectrum.LogSpectra, own,
                 conditions=None) -> dict:
  """The results dictionary of the ``qr`` method.

  ``layers`` holds a :func:`qr_record` per target layer (exact log singular
  values, nats, with the Jacobi ``error_bound`` and ``sweeps`` per input);
  ``lyapunov`` the finite-time Lyapunov sums' quantiles at every layer and
  the exponents ``S_L / L``; ``per_layer`` each layer's own spectrum from
  ``own``, the output of
  :func:`vgrad.probes.jacobian.make_layer_spectrum_probe`, as
  :func:`dense_record` s (one layer's Jacobian stays in range).
  ``conditions`` ((L,) or (B, L)) are the layers' row-normalised condition
  numbers of :func:`vgrad.probes.log_spectrum.forward_error_estimate`;
  None leaves the forward pass's rounding out of ``error_bound``.
  """
  dtype = np.dtype(config.dtype)
  log_sv = np.asarray(spectra.log_singular_values)
  bounds, sweeps = np.asarray(spectra.error_bound), np.asarray(spectra.sweeps)
  extra = [{} for _ in layers]
  if conditions is not None and spectra.log_error is not None:
    relative = log_spectrum.forward_error_estimate(
        np.broadcast_to(conditions, (log_sv.shape[0], config.depth)),
        config.width, log_sv.dtype)
    relative = relative[:, np.asarray(layers) - 1]
    rank = np.asarray(spectra.rank_bound)[:, np.asarray(layers) - 1]
    extra = [dict(log_error=np.asarray(spectra.log_error)[:, t],
                  relative_error=relative[:, t], rank=rank[:, t],
                  log_dropped=np.asarray(spectra.log_dropped)[:, t])
             for t in range(len(layers))]
  records = [qr_record(log_sv[:, t], dtype, layer=l, error_bound=bounds[:, t],
                       sweeps=sweeps[:, t], **extra[t])
             for t, l in enumerate(layers)]
  return {
      "config": dataclasses.asdict(config),
      "convention": CONVENTION,
      "dtype_eps": float(np.finfo(dtype).eps),
      "layers": records,
      "per_layer": per_layer_records(config, *own),
      "lyapunov": lyapunov_record(spectra.partial_sums, spectra.rank_bound,
                                  dtype),
      "input_output": records[-1],
  }


def lyapunov_record(partial_sums, rank_bound, dtype) -> dict:
  """Per-layer quantiles of the finite-time Lyapunov sums and exponents.

  ``partial_sums`` (B, L, N): pooled over inputs and the live positions
  (exact zeros left out, counted in ``num_exact_zeros``).
  """
  sums = np.asarray(partial_sums, np.float64)
  depth, n = sums.shape[1], sums.shape[2]
  quantiles = {key: [] for key in QUANTILES}
  for l in range(depth):
    live = sums[:, l][np.isfinite(sums[:, l])]
    values = (np.quantile(live, list(QUANTILES.values()), method="nearest")
              if live.size else [None] * len(QUANTILES))
    for key, value in zip(QUANTILES, values):
      quantiles[key].append(None if value is None
                            else spectrum_records.json_float(value, dtype))
  exponents = log_spectrum.lyapunov_exponents(sums)
  return {
      "partial_sums": quantiles,
      "num_exact_zeros": (n - np.asarray(rank_bound).min(axis=0)).tolist(),
      "exponents": [[spectrum_records.json_float(v, dtype) for v in row]
                    for row in exponents],
      "top_exponent": spectrum_records.json_float(np.mean(exponents[:, 0]),
                                                  dtype),
  }


# --------------------------------------------------------------------------
# Judging results from the record's log values (the same under every method).

def is_qr(results: dict) -> bool:
  return results.get("method") == "qr"


def is_lanczos(results: dict) -> bool:
  return results.get("method") == "lanczos"


def gain_is_estimate(record: dict) -> bool:
  """Whether :func:`log_gain` is the SLQ estimate (lanczos), not exact."""
  return (record["log_rms_gain"] is None
          and record["mean_sq_singular_value"] is None
          and record.get("slq") is not None)


def _log_stat(record: dict, name: str) -> float | None:
  """``ln`` of a statistic (``min``, ``median``, ``max``): ``-inf`` where it
  is an exact zero, None where it was not measured."""
  if record[f"{name}_singular_value"] == 0.0:
    return -math.inf
  return record[f"{name}_log_singular_value"]


def log_gain(record: dict) -> float | None:
  """Log of the RMS singular value sqrt(tr(J J^T) / N) (-inf: exactly 0;
  None: not measured, after an overflow); under lanczos the SLQ estimate
  (:func:`gain_is_estimate`)."""
  if gain_is_estimate(record):
    value = record["slq"]["log_rms_gain"]
    return -math.inf if value is None else value
  if record["log_rms_gain"] is None:
    return -math.inf if record["mean_sq_singular_value"] == 0.0 else None
  return record["log_rms_gain"]


def gain(record: dict) -> float | None:
  """RMS singular value sqrt(tr(J J^T) / N): the mean factor on ||v||^2.

  None when it leaves the float64 range (use :func:`log_gain`).
  """
  if record["mean_sq_singular_value"] is not None:
    return math.sqrt(record["mean_sq_singular_value"])
  value = log_gain(record)
  return None if value is None or value > 700 else math.exp(value)


def _log_extremes(record: dict):
  """``(log min, log max, log condition number)``, None where unmeasured."""
  return (_log_stat(record, "min"), _log_stat(record, "max"),
          record["log_condition_number"])


def format_power(log_value: float | None, digits: int = 3) -> str:
  """``e^log_value`` as ``1.23e-06``, or ``1.23e-4521`` beyond float64."""
  if log_value is None:
    return "-"
  if log_value == -math.inf:
    return "0"
  if abs(log_value) < 700:
    return f"{math.exp(log_value):.{digits}g}"
  exponent10 = log_value / math.log(10)
  power = math.floor(exponent10)
  mantissa = 10 ** (exponent10 - power)
  if round(mantissa, digits - 1) >= 10:
    mantissa, power = mantissa / 10, power + 1
  return f"{mantissa:.{digits}g}e{power:+d}"


def unresolved_layers(results: dict) -> list[int]:
  """Layers whose cumulative spectrum has values below resolution (for the
  ``qr`` method: values whose estimated error exceeds RESOLVED_ERROR)."""
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
  g = log_gain(io)
  if g == -math.inf:
    return ("vanishing: the input-output Jacobian is exactly zero "
            "(dead units, zero weights, or underflow)")
  rate = math.exp(g / depth)
  head = f"input-output gain {format_power(g)} (x{rate:.3g} per layer)"
  if gain_is_estimate(io):
    error = io["slq"]["log_rms_gain_error"]
    spread = "" if error is None else f" +- {error:.2g} nats"
    head = (f"input-output gain ~{format_power(g)}{spread} (SLQ estimate; "
            f"x{rate:.3g} per layer)")
  lo, hi, log_cond = _log_extremes(io)
  words = verdict_words(g, lo, hi)
  if words in ("vanishing", "exploding"):
    return f"{words}: {head}"
  if words == "near-isometric":
    return (f"near-isometric: {head}, singular values in "
            f"[{format_power(lo)}, {format_power(hi)}]")
  if words in ("shrinking", "growing"):
    limit = VANISHING_GAIN if words == "shrinking" else EXPLODING_GAIN
    reach = math.ceil(math.log(limit) / math.log(rate))
    fate = ("vanishing, below" if words == "shrinking"
            else "exploding, above")
    head += f"; at this rate {fate} {limit:g} from layer {reach}"
  if max(io["num_exact_zeros"]):
    spread = (f"rank-deficient: up to {max(io['num_exact_zeros'])} of "
              f"{io['num_singular_values']} singular values exactly zero "
              f"(inactive units)")
  elif log_cond is not None:
    spread = f"condition number {format_power(log_cond)}"
  elif is_lanczos(results):
    spread = (f"smallest singular values not converged in "
              f"{io['slq']['steps']} Lanczos steps")
  else:
    spread = "smallest singular values below resolution"
  return f"{words}: {head}, {spread}"


def _fmt(value: float | None) -> str:
  return "-" if value is None else f"{value:.3e}"


def _fmt_log(value: float | None) -> str:
  """A log value as a power of ten with 4 digits, ``1.234e-4521``."""
  if value is None:
    return "-"
  if value == -math.inf:
    return "0"
  exponent10 = value / math.log(10)
  power = math.floor(exponent10)
  mantissa = 10 ** (exponent10 - power)
  if round(mantissa, 3) >= 10:
    mantissa, power = mantissa / 10, power + 1
  return f"{mantissa:.3f}e{power:+03d}"


def format_table(results: dict) -> str:
  """Per-layer table of the cumulative (input-to-layer-l) spectra.

  Dense: ``resolved`` is the worst input's count of measured values (exact
  zeros included); ``zeros`` the most exact zeros (inactive units) of any
  input. QR (the target layers: every layer unless ``qr_layers`` narrows
  them; values as powers of ten, which may leave the float range):
  ``Lyapunov max`` is ``exp(max_i S_{l,i})``, the finite-time estimate of
  the largest singular value, and ``bound`` the largest Jacobi error bound
  (nats) of any input. Past ``TABLE_ROWS`` layers about 12 log-spaced
  ones are shown (results.json holds every one).
  """
  if is_qr(results):
    return _format_qr_table(results)
  if is_lanczos(results):
    return _format_lanczos_table(results)
  head = (f"{'l':>4} {'rms gain':>10} {'min sv':>10} {'median sv':>10} "
          f"{'max sv':>10} {'max/min':>10} {'layer gain':>10} "
          f"{'resolved':>9} {'zeros':>5}")
  lines = [head, "-" * len(head)]
  own = {r["layer"]: r for r in results["per_layer"]}
  for cum in _shown(results["layers"]):
    one = own[cum["layer"]]
    lines.append(
        f"{cum['layer']:>4} {_fmt(gain(cum)):>10} "
        f"{_fmt(cum['min_singular_value']):>10} "
        f"{_fmt(cum['median_singular_value']):>10} "
        f"{_fmt(cum['max_singular_value']):>10} "
        f"{_fmt(cum['condition_number']):>10} {_fmt(gain(one)):>10} "
        f"{min(cum['num_resolved']):>4}/{cum['num_singular_values']:<4} "
        f"{max(cum['num_exact_zeros']):>5}")
  return "\n".join(lines + _more(results["layers"]) + _skipped(results)
                   + _legend(
      "layer gain: layer l's own rms gain; resolved: the values float32 "
      "measures at the worst input (the rest are below its rounding, not "
      "reported)."))


# What every table's columns mean, in words (printed under the table).
_LEGEND = ("columns: singular values (sv) of the Jacobian from the input to "
           "layer l, each a gain (output norm / input norm, no unit); rms "
           "gain = sqrt(mean sv^2); max/min = the condition number ('-': "
           "infinite or not measured); zeros: exact zeros (inactive units) at "
           "the input with most, counted in min and median sv as 0;")


def _legend(more: str) -> list[str]:
  """The table's legend: the shared columns and ``more``, wrapped."""
  return textwrap.wrap(f"{_LEGEND} {more}", width=88)


# Tables show every layer up to this many, else about 12 log-spaced ones.
TABLE_ROWS = 24


def _shown(records: list) -> list:
  if len(records) <= TABLE_ROWS:
    return records
  picks = {round(float(v)) - 1 for v in np.geomspace(1, len(records), 12)}
  return [records[i] for i in sorted(picks)]


def _skipped(results: dict) -> list[str]:
  """A line naming the layers not computed (``--qr_layers``), if any."""
  depth = results["config"]["depth"]
  done = [r["layer"] for r in results["layers"]]
  if len(done) >= depth:
    return []
  shown = ", ".join(map(str, done))
  return [f"(layers {shown} of {depth} computed, as --qr_layers asked; the "
          f"others are in neither this table nor results.json)"]


def _more(records: list) -> list[str]:
  """The table's last line when it leaves layers out."""
  shown = len(_shown(records))
  if shown == len(records):
    return []
  return [f"({shown} of {len(records)} layers shown; results.json holds "
          f"every one)"]


def _format_qr_table(results: dict) -> str:
  w = 12
  head = (f"{'l':>5} {'rms gain':>{w}} {'min sv':>{w}} {'median sv':>{w}} "
          f"{'max sv':>{w}} {'max/min':>{w}} {'est. max sv':>{w + 1}} "
          f"{'bound nats':>10} {'zeros':>5}")
  lines = [head, "-" * len(head)]
  lyap_max = results["lyapunov"]["partial_sums"]["max"]
  for rec in _shown(results["layers"]):
    worst = "-" if not rec["finite"] else f"{_worst_bound(rec):.1e}"
    lines.append(
        f"{rec['layer']:>5} {_fmt_log(log_gain(rec)):>{w}} "
        f"{_fmt_log(_log_stat(rec, 'min')):>{w}} "
        f"{_fmt_log(_log_stat(rec, 'median')):>{w}} "
        f"{_fmt_log(_log_stat(rec, 'max')):>{w}} "
        f"{_fmt_log(rec['log_condition_number']):>{w}} "
        f"{_fmt_log(lyap_max[rec['layer'] - 1]):>{w + 1}} "
        f"{worst:>10} {max(rec['num_exact_zeros']):>5}")
  return "\n".join(lines + _more(results["layers"]) + _skipped(results)
                   + _legend(
      "est. max sv: the largest sv the Lyapunov sums estimate (exp(max_i "
      "S_l,i), before the exact values); bound nats: the largest error of "
      "any log sv at any input, in nats (0.01 nats = 1 %)."))


def _format_lanczos_table(results: dict) -> str:
  own = {r["layer"]: r for r in results["per_layer"]}
  head = (f"{'l':>4} {'~rms gain':>10} {'s.e. nats':>9} {'max sv':>10} "
          f"{'min sv':>10} {'max/min':>10} {'layer max':>10} "
          f"{'extremes':>9} {'bound nats':>10}")
  lines = [head, "-" * len(head)]
  for rec in _shown(results["layers"]):
    slq = rec["slq"]
    error = slq["log_rms_gain_error"]
    gained = log_gain(rec)
    ends = len(lanczos_positions(rec))
    bounds = [b for b in rec["error_bound"] if b is not None]
    lines.append(
        f"{rec['layer']:>4} "
        f"{_fmt(None if gained is None else math.exp(gained)):>10} "
        f"{'-' if error is None else f'{error:.1e}':>9} "
        f"{_fmt(rec['max_singular_value']):>10} "
        f"{_fmt(rec['min_singular_value']):>10} "
        f"{_fmt(rec['condition_number']):>10} "
        f"{_fmt(own[rec['layer']]['max_singular_value']):>10} "
        f"{min(rec['num_resolved']):>4}/{ends:<4} "
        f"{f'{max(bounds):.1e}' if bounds else '-':>10}")
  return "\n".join(lines + _more(results["layers"]) + _skipped(results)
                   + _legend(
      "~rms gain: the SLQ estimate, s.e. its standard error (nats); layer "
      "max: layer l's own largest sv; extremes: the largest and smallest "
      "values Lanczos resolved at the worst input (the rest are not "
      "computed); bound nats: their largest residual bound."))


def lanczos_positions(record: dict) -> list[int]:
  """The positions a lanczos record computed (its extremes)."""
  steps, r = record["slq"]["steps"], record["num_singular_values"]
  if steps >= r:
    return list(range(r))
  q = min(lanczos_spectra.EXTREMES, steps // 2)
  return list(range(q)) + list(range(r - q, r))


def _worst_bound(record: dict) -> float:
  """The largest Jacobi error bound of any input (inf: not converged)."""
  return max(math.inf if b is None else b for b in record["error_bound"])


# Jacobi error bounds above this (nats; 1e-3 relative in sigma) are noted.
BOUND_NOTE = 1e-3


def precision_note(results: dict) -> str | None:
  """Says where values fell below resolution or overflowed, or (qr) where
  Jacobi stopped at its sweep cap, else None."""
  cfg, notes = results["config"], []
  missing = unresolved_layers(results)
  if is_lanczos(results):
    lost = sum(len(lanczos_positions(r)) * len(r["num_resolved"])
               - sum(r["num_resolved"]) for r in results["layers"])
    notes.append(
        f"lanczos computes the {lanczos_spectra.EXTREMES} largest and "
        f"smallest singular values and an SLQ estimate of the rms gain; "
        f"the values between are not computed (null)")
    if lost:
      total = sum(len(lanczos_positions(r)) * len(r["num_resolved"])
                  for r in results["layers"])
      notes.append(
          f"{lost} of {total} extreme values not reported: their bound "
          f"exceeds {RESOLVED_ERROR:.0%} after {cfg['lanczos_steps']} "
          f"steps (the smallest converge slowly; raise --lanczos_steps)")
    missing = []
  if missing and is_qr(results):
    lost = sum(r["num_singular_values"] * len(r["num_resolved"])
               - sum(r["num_resolved"]) for r in results["layers"])
    notes.append(
        f"{lost} value(s) at {len(missing)} layer(s) (first {missing[0]}) "
        f"not reported: their estimated error exceeds "
        f"{RESOLVED_ERROR:.0%} (the forward pass's rounding or a derivative "
        f"below float64's range)")
  elif missing:
    worst = {r["layer"]: r for r in results["layers"]}[missing[-1]]
    notes.append(
        f"{cfg['dtype']} resolves only {min(worst['num_resolved'])} of "
        f"{worst['num_singular_values']} singular values at layer "
        f"{worst['layer']} (unresolved from layer {missing[0]}: below "
        f"s_max * N * eps); they are flagged, not reported")
    if cfg["dtype"] == "float32":
      notes.append("--dtype=float64 resolves more, --method=qr all")
  bad = nonfinite_layers(results)
  if bad:
    notes.append(f"non-finite singular values (overflow) from layer {bad[0]}")
  if is_qr(results):
    loose = [(r["layer"], _worst_bound(r)) for r in results["layers"]
             if r["finite"]]
    loose = [(l, b) for l, b in loose if b > BOUND_NOTE]
    if loose:
      notes.append(
          f"Jacobi stopped at {cfg['qr_sweeps']} sweeps with error bounds "
          f"up to {max(b for _, b in loose):.2g} nats at layers "
          f"{', '.join(str(l) for l, _ in loose)}; raise --qr_sweeps")
  return "; ".join(notes) + "." if notes else None


def method_line(results: dict) -> str:
  """``auto chose qr: <reason>`` or ``qr (requested)``."""
  if results["config"]["method"] == "auto":
    return f"auto chose {results['method']}: {results['method_reason']}"
  return f"{results['method']} (requested)"
