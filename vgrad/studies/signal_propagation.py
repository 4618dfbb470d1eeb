r"""Signal-propagation plots (Brock, De & Smith 2021, "Characterizing signal
propagation to close the performance gap in unnormalized ResNets", the
NFNets diagnostic), for any network cut into blocks, at initialisation.

For a block output ``x`` of shape ``(B, ..., C)`` (a batch of ``B``
inputs, channels last; an MLP layer's units are its channels, a CNN's or a
transformer's spatial positions / tokens are the ``...``), with ``S`` the
positions per input and averages over the ``B S`` rows of channel ``c``:

    channel mean                 m_c = mean_{b, s} x[b, s, c]
    average squared channel mean     = mean_c m_c^2                (mean_sq)
    channel variance             v_c = mean_{b, s} (x[b, s, c] - m_c)^2
    average channel variance         = mean_c v_c                  (var)
    residual branch variance         = the average channel variance of
                                       f(x_in), for a residual block
                                       x_out = x_in + f(x_in)   (residual_var)

``mean_sq + var = mean_{b, s, c} x^2``, the mean squared entry. The
variance is the population one (divided by ``B S``, not ``B S - 1``): a
fixed batch's statistic, whose expectation the mean-field prediction gives
exactly (below).

:func:`signal_propagation` takes the blocks in the forms vgrad's probes
take (:mod:`vgrad.probes.blocks`): a list of callables ``x -> x`` on ONE
input (no batch axis; they are vmapped), a
:class:`vgrad.probes.blocks.Blocks` (scanned: one compiled block whatever
the depth), :func:`vgrad.probes.blocks.flax_blocks` cuts of any Flax model,
or :func:`vgrad.studies.block_spectra.mlp_blocks` (vgrad's MLP, its hidden
layers as blocks). Which blocks are residual is the caller's to say:
``residual=True`` (every block), or the 1-based indices of those that are;
their branch is ``x_out - x_in`` (same shape needed). Or give the branches
themselves: ``branches[l - 1]`` a callable ``x_in -> f(x_in)`` (None: not
residual), for a list of callables, or one ``branch_fn(params_l, x)`` for a
``Blocks``. One jitted program per model computes every statistic.

A block whose output holds NaN or Inf (an overflow) is a result, not an
error: its record counts the non-finite entries (``nonfinite``) and its
statistics are None.

The mean-field prediction (vgrad's MLP; :mod:`vgrad.theory.nngp`): with
``E^l_ab = E[x_l,a x_l,b]`` the second-moment matrix of one unit over the
batch at infinite width,

    E[mean_sq_l] = (1/B^2) sum_ab E^l_ab
    E[var_l]     = (1/B) sum_a E^l_aa - (1/B^2) sum_ab E^l_ab

exactly (the batch variance is ``(1/B) sum_a x_a^2 - m^2``; no O(1/B)
term is dropped). At width ``N`` the measurement fluctuates about it by
O(1/sqrt(N)) relative (an average over N channels, and the kernel's own
O(1/sqrt(N)) fluctuations accumulated over the layers).
"""

from collections.abc import Callable
import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.io import schemas
from vgrad.nn import activations as activations_lib
from vgrad.nn import config as nn_config
from vgrad.nn import initializers
from vgrad.nn import lsuv
from vgrad.nn import models
from vgrad.probes import blocks as blocks_lib
from vgrad.studies import block_spectra
from vgrad.studies import model_spectra
from vgrad.theory import nngp

SCHEMA = schemas.SIGNAL_PROPAGATION
STATISTICS = ("mean_sq", "var", "residual_var")
# --model's values: vgrad's MLP and the worked examples of vgrad.nn.zoo.
MODELS = model_spectra.MODELS
CONVENTION = {
    "x": "block output (B, ..., C): B inputs, channels last, S positions "
         "per input",
    "mean_sq": "mean_c m_c^2, m_c = mean over the B S rows of x[..., c]",
    "var": "mean_c v_c, v_c = mean over the B S rows of (x[..., c] - m_c)^2",
    "residual_var": "var of the residual branch f(x_in) of x_out = x_in + "
                    "f(x_in) (x_out - x_in unless the branch is given)",
    "block": "0 is the input; 1..L the blocks' outputs",
}


# --------------------------------------------------------------------------
# The statistics, inside the program.

def channel_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array,
                                              jax.Array]:
  """``(mean_sq, var, nonfinite)`` of a block output ``x (B, ..., C)``.

  ``mean_sq = mean_c m_c^2`` and ``var = mean_c v_c`` with ``m_c, v_c`` the
  mean and (population) variance of channel ``c`` over the batch and
  positions (module docstring); ``nonfinite`` counts NaN/Inf entries.
  A ``(B,)`` output is one channel.
  """
  rows = x[:, None] if x.ndim == 1 else x.reshape(-1, x.shape[-1])
  means = jnp.mean(rows, axis=0, keepdims=True)                # (1, C)
  variances = jnp.mean(jnp.square(rows - means), axis=0)
  return (jnp.mean(jnp.square(means)), jnp.mean(variances),
          jnp.sum(~jnp.isfinite(rows)))


def _stacked_stats(pairs):
  return jnp.stack([jnp.stack(p[:2]) for p in pairs]), jnp.stack(
      [p[2] for p in pairs])


def _list_program(blocks: tuple, branches: tuple):
  """``xs -> (stats (L+1, 2), nonfinite (L+1,), branch stats (L, 2),
  branch nonfinite (L,))`` for callables on one input; ``branches[l]`` is
  a callable, ``"diff"`` (``x_out - x_in``) or None."""
  def program(xs):
    outs, branch_outs, x = [channel_statistics(xs)], [], xs
    for fn, branch in zip(blocks, branches):
      y = jax.vmap(fn)(x)
      outs.append(channel_statistics(y))
      if branch is None:
        part = jnp.zeros_like(y)
      elif branch == "diff":
        part = y - x
      else:
        part = jax.vmap(branch)(x)
      branch_outs.append(channel_statistics(part))
      x = y
    return (*_stacked_stats(outs), *_stacked_stats(branch_outs))
  return program


def _scan_program(block_fn: Callable, branch_fn: Callable | None):
  """The same as :func:`_list_program` for a :class:`Blocks`: one block
  compiled, the branch ``x_out - x_in`` unless ``branch_fn`` is given."""
  def program(xs, stacked):
    def body(x, params):
      y = jax.vmap(lambda v: block_fn(params, v))(x)
      part = (y - x if branch_fn is None else
              jax.vmap(lambda v: branch_fn(params, v))(x))
      ms, v, bad = channel_statistics(y)
      bms, bv, bbad = channel_statistics(part)
      return y, (jnp.stack([ms, v]), bad, jnp.stack([bms, bv]), bbad)
    first = channel_statistics(xs)
    _, (stats, bad, bstats, bbad) = jax.lax.scan(body, xs, stacked)
    return (jnp.concatenate([jnp.stack(first[:2])[None], stats]),
            jnp.concatenate([first[2][None], bad]), bstats, bbad)
  return program


# --------------------------------------------------------------------------
# Checking the blocks, before any work.

def _as_array(out, where: str) -> jax.ShapeDtypeStruct:
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise ValueError(f"{where} must be one array (channels last), got "
                     f"{jax.tree.structure(out)}")
  if not jnp.issubdtype(out.dtype, jnp.inexact):
    raise ValueError(f"{where} holds {out.dtype} values: the statistics "
                     "need floating-point arrays")
  return out


def _residual_set(residual, depth: int) -> frozenset:
  if residual is None or residual is False:
    return frozenset()
  if residual is True:
    return frozenset(range(1, depth + 1))
  chosen = frozenset(int(l) for l in residual)
  bad = sorted(l for l in chosen if not 1 <= l <= depth)
  if bad:
    raise ValueError(f"residual blocks must be in [1, {depth}] (1-based), "
                     f"got {bad}")
  return chosen


def _list_shapes(blocks, one, branches) -> list:
  """Every block's output shape; one-line errors for blocks that do not
  chain, non-array or integer outputs, and branches of the wrong shape."""
  current, shapes = one, []
  for l, fn in enumerate(blocks, start=1):
    try:
      out = jax.eval_shape(fn, current)
    except Exception as e:  # a shape mismatch between blocks, named
      raise ValueError(f"block {l} cannot take the output of block {l - 1} "
                       f"(shape {current.shape}): {type(e).__name__}: "
                       f"{str(e).splitlines()[0]}") from None
    out = _as_array(out, f"block {l}'s output")
    branch = branches[l - 1]
    if branch == "diff" and out.shape != current.shape:
      raise ValueError(f"residual block {l} maps shape {current.shape} to "
                       f"{out.shape}: x_out - x_in needs equal shapes; give "
                       "its branch explicitly (branches=)")
    if callable(branch):
      got = _as_array(jax.eval_shape(branch, current), f"branch {l}'s output")
      if got.shape != out.shape:
        raise ValueError(f"branch {l} maps to shape {got.shape}, its block "
                         f"to {out.shape}: a residual branch has the "
                         "block's output shape")
    shapes.append(out.shape)
    current = out
  return shapes


# --------------------------------------------------------------------------
# The mean-field prediction (vgrad's MLP).

class MeanFieldPrior(NamedTuple):
  """The weight distribution the NNGP prediction describes.

  Attributes:
    activation: the elementwise activation.
    sigma_w2s: per hidden layer ``fan_in Var W_l``, length L.
    sigma_b2: the bias variance (0: zero biases).
    exact_gaussian: whether the weights are Gaussian (the prediction is
      then the infinite-width limit given the inputs; for i.i.d. uniform
      or orthogonal weights it is the same limit, reached by the CLT).
  """
  activation: activations_lib.Activation
  sigma_w2s: tuple
  sigma_b2: float
  exact_gaussian: bool


GAUSSIAN_INITS = frozenset({"gaussian", "lecun_normal", "glorot_normal",
                            "he_normal", "small_normal", "large_normal",
                            "zeros"})


def mean_field_prior(network: nn_config.NetworkConfig,
                     n_in: int | None = None) -> MeanFieldPrior | None:
  """The prior of vgrad's MLP ``network`` with ``n_in`` inputs (default
  its width), or None where no prediction exists (maxout; ``lsuv``, whose
  weights are set from data)."""
  activation = activations_lib.get_activation(network.act,
                                              **network.act_params)
  if activation.is_maxout or network.init in initializers.DATA_DEPENDENT:
    return None
  fans = [n_in or network.width] + [network.width] * (network.depth - 1)
  sigma_w2s = tuple(fan * initializers.weight_variance(
      network.init, fan, network.width, network.sigma_w2) for fan in fans)
  return MeanFieldPrior(activation, sigma_w2s, float(network.sigma_b2 or 0),
                        network.init in GAUSSIAN_INITS)


def predicted_statistics(prior: MeanFieldPrior, x0) -> dict:
  """The NNGP prediction of ``mean_sq`` and ``var`` of every hidden
  layer's output ``x_l`` (l = 1..L), for the inputs ``x0 (B, n_in)``
  (module docstring), computed in float64.

  Returns:
    ``{"mean_sq": [L floats], "var": [L floats]}``.
  """
  with jax.enable_x64(True):
    moments = np.asarray(nngp.moment_sequence(
        np.asarray(x0, np.float64), prior.activation,
        np.asarray(prior.sigma_w2s, np.float64), prior.sigma_b2))
  mean_sq = moments.mean(axis=(1, 2))
  second = np.einsum("lbb->lb", moments).mean(axis=1)
  return {"mean_sq": mean_sq.tolist(), "var": (second - mean_sq).tolist()}


# --------------------------------------------------------------------------
# The library function.

def _finite_or_none(value: float) -> float | None:
  return float(value) if math.isfinite(value) else None


def _records(stats, bad, bstats, bbad, shapes, residual, one_shape) -> list:
  records = []
  for l in range(len(shapes) + 1):
    shape = tuple(one_shape if l == 0 else shapes[l - 1])
    channels = shape[-1] if shape else 1
    finite = int(bad[l]) == 0
    record = {"block": l, "shape": list(shape), "channels": int(channels),
              "positions": int(np.prod(shape[:-1])) if shape else 1,
              "mean_sq": _finite_or_none(stats[l, 0]) if finite else None,
              "var": _finite_or_none(stats[l, 1]) if finite else None,
              "nonfinite": int(bad[l]), "residual": l in residual,
              "residual_var": None, "residual_nonfinite": 0}
    if l in residual:
      record["residual_nonfinite"] = int(bbad[l - 1])
      if int(bbad[l - 1]) == 0:
        record["residual_var"] = _finite_or_none(bstats[l - 1, 1])
    records.append(record)
  return records


def _measure_list(blocks, xs, residual, branches):
  blocks = tuple(blocks)
  depth = len(blocks)
  if branches is not None:
    if residual is not None:
      raise ValueError("give residual= or branches=, not both")
    if len(branches) != depth:
      raise ValueError(f"branches must have one entry per block ({depth}), "
                       f"got {len(branches)}")
    kinds = tuple(branches)
    residual_set = frozenset(l + 1 for l, b in enumerate(kinds)
                             if b is not None)
  else:
    residual_set = _residual_set(residual, depth)
    kinds = tuple("diff" if l in residual_set else None
                  for l in range(1, depth + 1))
  one = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)
  shapes = _list_shapes(blocks, one, kinds)
  program = blocks_lib.cached_program(
      ("signal-list", blocks, kinds), lambda: _list_program(blocks, kinds))
  return program(xs), shapes, residual_set


def _measure_scanned(blocks: blocks_lib.Blocks, xs, residual, branches):
  depth = blocks.depth
  if branches is not None and residual is not None:
    raise ValueError("give residual= or branches=, not both")
  if branches is not None and not callable(branches):
    raise ValueError("branches of a Blocks is one callable branch_fn("
                     "params_l, x)")
  params0 = jax.tree.map(lambda a: a[0], blocks.stacked_params)
  one = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)
  out = _as_array(jax.eval_shape(lambda v: blocks.block_fn(params0, v), one),
                  "the blocks' output")
  if out.shape != one.shape:
    raise ValueError(f"Blocks must map x to an x of the same shape: input "
                     f"{one.shape}, output {out.shape}")
  residual_set = (frozenset(range(1, depth + 1)) if branches is not None
                  else _residual_set(residual, depth))
  program = blocks_lib.cached_program(
      ("signal-scan", blocks.block_fn, branches),
      lambda: _scan_program(blocks.block_fn, branches))
  return (program(xs, blocks.stacked_params), [out.shape] * depth,
          residual_set)


def signal_propagation(blocks, x, *, residual=None, branches=None,
                       mean_field: MeanFieldPrior | None = None) -> dict:
  """Per block: average squared channel mean, average channel variance
  and, for residual blocks, the residual branch's variance (module
  docstring), with the mean-field prediction where ``mean_field`` is given.

  Args:
    blocks: a list of callables on one input, a
      :class:`vgrad.probes.blocks.Blocks`, ``flax_blocks(...)`` or
      ``mlp_blocks(model, params)``.
    x: the inputs ``(B, ...)``, one floating array with a batch axis.
    residual: None/False (no block is residual), True (every block), or the
      1-based indices of the residual blocks; their branch is x_out - x_in.
    branches: instead of ``residual``, the branches themselves: a list with
      a callable ``x_in -> f(x_in)`` or None per block (list form), or one
      ``branch_fn(params_l, x)`` (``Blocks``: every block residual).
    mean_field: the MLP's :class:`MeanFieldPrior`
      (:func:`mean_field_prior`); needs ``x`` of shape ``(B, n_in)`` and one
      ``sigma_w2`` per block.

  Returns:
    ``{"schema", "num_inputs", "num_blocks", "blocks": [records for block
    0 (the input) .. L], "nonfinite_blocks": [blocks with NaN/Inf],
    "theory": None or {"source", "activation", "sigma_w2s", "sigma_b2",
    "exact_gaussian", "blocks": [1..L], "mean_sq": [..], "var": [..]},
    "convention"}``. A record: ``block``, ``shape`` (one input's),
    ``channels``, ``positions``, ``mean_sq``, ``var`` (None where the
    output is not finite), ``nonfinite`` (count), ``residual``,
    ``residual_var`` (None unless residual and finite),
    ``residual_nonfinite``.

  Raises:
    ValueError: (one line, before any work) inputs without a batch axis or
      not floating point, blocks that do not chain or whose outputs are not
      one floating array, residual indices out of range, a residual block
      whose output and input shapes differ, a prior that does not fit.
  """
  if not isinstance(x, (jax.Array, np.ndarray)) or np.ndim(x) < 1 or (
      np.shape(x)[0] < 1):
    raise ValueError("x must be one array of inputs with a leading batch "
                     "axis (x[None] for one input)")
  xs = jnp.asarray(x)
  if not jnp.issubdtype(xs.dtype, jnp.inexact):
    raise ValueError(f"x holds {xs.dtype} values: the statistics need "
                     "floating-point inputs")
  if isinstance(blocks, block_spectra.MLPBlocks):
    blocks = blocks_lib.mlp_as_blocks(blocks.model, blocks.params)
  if isinstance(blocks, blocks_lib.Blocks):
    outputs, shapes, residual_set = _measure_scanned(blocks, xs, residual,
                                                     branches)
  else:
    outputs, shapes, residual_set = _measure_list(blocks, xs, residual,
                                                  branches)
  stats, bad, bstats, bbad = (np.asarray(a, np.float64) for a in outputs)
  records = _records(stats, bad, bstats, bbad, shapes, residual_set,
                     xs.shape[1:])
  return {"schema": SCHEMA, "num_inputs": int(xs.shape[0]),
          "num_blocks": len(shapes), "blocks": records,
          "nonfinite_blocks": [r["block"] for r in records
                               if r["nonfinite"] or r["residual_nonfinite"]],
          "theory": _theory(mean_field, xs, len(shapes)),
          "convention": dict(CONVENTION)}


def _theory(prior: MeanFieldPrior | None, xs, depth: int) -> dict | None:
  if prior is None:
    return None
  if xs.ndim != 2 or len(prior.sigma_w2s) != depth:
    raise ValueError(f"the mean-field prior describes an MLP of "
                     f"{len(prior.sigma_w2s)} layers on inputs (B, n_in); "
                     f"got {depth} blocks and inputs of shape {xs.shape}")
  predicted = predicted_statistics(prior, xs)
  return {"source": "nngp", "activation": prior.activation.describe(),
          "sigma_w2s": list(prior.sigma_w2s), "sigma_b2": prior.sigma_b2,
          "exact_gaussian": prior.exact_gaussian,
          "blocks": list(range(1, depth + 1)), **predicted}


# --------------------------------------------------------------------------
# The study: a config in, the results dictionary out.

# The MLP's settings when not given: He's critical ReLU net.
MLP_DEFAULTS = {"act": "relu", "init": "he_normal", "depth": 20,
                "width": 256}


@dataclasses.dataclass(frozen=True)
class SignalConfig:
  """One signal-propagation measurement.

  ``model`` is ``"mlp"`` (vgrad's MLP: ``depth`` hidden layers of
  ``width`` units, input size ``width``, no readout) or a name of
  :data:`vgrad.nn.zoo.MODELS`; ``act`` .. ``sigma_b2`` its settings
  (``act_params``: the MLP's only; None for a zoo model: its default,
  :func:`vgrad.studies.model_spectra.model_defaults`), ``skip`` the skip
  connections of resnet and transformer, ``image_size`` the cnn's image
  side. ``num_inputs`` inputs with ``N(0, 1)`` entries. Settings left
  None take the model's defaults (the MLP's: :data:`MLP_DEFAULTS`).
  """
  model: str = "mlp"
  act: str | None = None
  init: str | None = None
  depth: int | None = None
  width: int | None = None
  sigma_w2: float | None = None
  sigma_b2: float | None = None
  act_params: dict = dataclasses.field(default_factory=dict)
  skip: bool | None = None
  image_size: int | None = None
  num_inputs: int = 16
  seed: int = 0


def network_config(config: SignalConfig) -> nn_config.NetworkConfig:
  """The MLP's validated network (ConfigError naming a bad field)."""
  return nn_config.NetworkConfig(
      act=config.act, init=config.init, depth=config.depth,
      width=config.width, sigma_w2=config.sigma_w2,
      sigma_b2=config.sigma_b2, act_params=dict(config.act_params))


def resolve(config: SignalConfig) -> SignalConfig:
  """``config`` with its unset settings at the model's defaults."""
  if config.model not in MODELS:
    raise ValueError(f"unknown model {config.model!r}; valid names: "
                     f"{', '.join(MODELS)}")
  settings = (dict(MLP_DEFAULTS) if config.model == "mlp" else
              model_spectra.model_defaults(config.model))
  given = {k: v for k, v in settings.items()
           if getattr(config, k) is not None}
  settings.update({k: getattr(config, k) for k in given})
  return dataclasses.replace(config, **settings)


def build(config: SignalConfig) -> tuple[Any, jax.Array, dict]:
  """``(blocks, inputs (B, ...), keyword arguments of
  signal_propagation)`` from ``key(seed)``: the MLP's parameters from its
  first split and inputs from the second (as the spectrum study); a zoo
  model as :func:`vgrad.studies.model_spectra.run_study` builds it (inputs
  from ``key(seed + 1)``), every block of resnet and transformer residual
  when ``skip``.

  Raises:
    vgrad.nn.config.ConfigError: a setting the model cannot take.
  """
  config = resolve(config)
  if config.model == "mlp":
    network = network_config(config)
    model = models.make_mlp(**network.mlp_kwargs())
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    xs = jax.random.normal(data_key, (config.num_inputs, config.width))
    params = _initialize(model, init_key, xs)
    return (block_spectra.mlp_blocks(model, params), xs,
            {"mean_field": mean_field_prior(network)})
  spectrum_config = model_spectra.make_config(
      config.model, act=config.act, init=config.init, depth=config.depth,
      width=config.width, sigma_w2=config.sigma_w2,
      sigma_b2=config.sigma_b2, skip=config.skip,
      image_size=config.image_size, num_inputs=config.num_inputs,
      seed=config.seed)
  example = model_spectra.build(spectrum_config)
  xs = jax.random.normal(jax.random.key(config.seed + 1),
                         (config.num_inputs,) + example.x.shape)
  residual = bool(config.skip) if config.model in model_spectra.SKIP_MODELS \
      else None
  return blocks_lib.flax_blocks(*example), xs, {"residual": residual}


# One compiled init per model (eagerly, every operation compiles on its own).
_initialize = jax.jit(lsuv.initialize, static_argnums=0)


def run_study(config: SignalConfig) -> dict:
  """The results dictionary (``results.json`` without ``command``)."""
  config = resolve(config)
  blocks, xs, kwargs = build(config)
  results = signal_propagation(blocks, xs, **kwargs)
  return {**results, "config": dataclasses.asdict(config)}


# --------------------------------------------------------------------------
# Text.

def _fmt(value) -> str:
  return "nonfinite" if value is None else f"{value:.3e}"


def format_report(results: dict, max_rows: int = 12) -> str:
  """A markdown table of the measured statistics (and the prediction),
  at most ``max_rows`` evenly spaced blocks plus the last; from
  results.json alone."""
  theory = results.get("theory")
  predicted = {}
  if theory:
    predicted = {l: (m, v) for l, m, v in zip(theory["blocks"],
                                              theory["mean_sq"],
                                              theory["var"])}
  records = results["blocks"]
  step = max(1, math.ceil(len(records) / max_rows))
  shown = records[::step] + ([records[-1]] if (len(records) - 1) % step
                             else [])
  residual = any(r["residual"] for r in records)
  head = ["block", "mean_sq", "var"] + (["residual_var"] if residual else [])
  if theory:
    head += ["mean_sq (theory)", "var (theory)"]
  lines = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" for _ in head) + "|"]
  for r in shown:
    row = [str(r["block"]), _fmt(r["mean_sq"]), _fmt(r["var"])]
    if residual:
      row.append(_fmt(r["residual_var"]) if r["residual"] else "-")
    if theory:
      m, v = predicted.get(r["block"], (None, None))
      row += ["-" if m is None else f"{m:.3e}",
              "-" if v is None else f"{v:.3e}"]
    lines.append("| " + " | ".join(row) + " |")
  config = results.get("config", {})
  title = (f"# Signal propagation: {config.get('model', '?')}, "
           f"{config.get('act')} / {config.get('init')}, depth "
           f"{results['num_blocks']}, width {config.get('width')}, "
           f"{results['num_inputs']} inputs")
  notes = []
  if results["nonfinite_blocks"]:
    notes.append(f"non-finite values (NaN/Inf) in blocks "
                 f"{results['nonfinite_blocks']}")
  if theory:
    notes.append("theory: the exact NNGP kernel recursion over the batch "
                 "(vgrad/theory/nngp.py); finite width fluctuates about it "
                 "by O(1/sqrt(width))")
  return "\n".join([title, ""] + lines + [""] + [f"- {n}" for n in notes]
                   ) + "\n"
