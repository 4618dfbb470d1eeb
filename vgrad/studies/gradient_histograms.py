r"""Activation and gradient histograms at initialisation (Glorot & Bengio 2010).

Reproduces the measurement behind Figs. 6 and 7 of Glorot & Bengio (2010),
"Understanding the difficulty of training deep feedforward neural networks":
an MLP of ``depth`` hidden layers of ``width`` units with a softmax readout,
freshly initialised, sees a batch of B labelled examples; per hidden layer l
we record the activations ``x_l = phi(h_l)`` and the back-propagated
gradients ``g_l = d loss / d h_l`` of every (example, unit) pair, their
histograms on bin edges shared by all layers, and the linear-regime theory.

Notation (as in :mod:`vgrad.nn.models`)::

    h_l = W_l x_{l-1} + b_l,  x_l = phi(h_l),  l = 1 .. L
    z = W_out x_L + b_out                             (B, C) logits
    ell_i = -log softmax(z_i)_{y_i},  L = (1/B) sum_i ell_i
    g_l[i] = d ell_i / d h_l[i]                       (B, N): per example i
    dL/dW_l = (1/B) sum_i g_l[i] x_{l-1}[i]^T,  i.e. dL/dkernel_l =
              x_{l-1}^T g_l / B with the (fan_in, fan_out) kernel

``g_l`` is exact reverse-mode autodiff: a zero perturbation ``delta_l`` is
added to every ``h_l`` and ``g = d(sum_i ell_i)/d delta`` at ``delta = 0``
(example i's loss depends only on its own row of ``h_l``).

Theory (Glorot & Bengio 2010, eqs. 5-6 and 14-16). Back-propagation gives
``g_l = phi'(h_l) * (W_{l+1}^T g_{l+1})``. With W_{l+1}'s entries independent
of mean 0 and variance Var[W_{l+1}], and ``phi'(h_l)`` treated as
independent of the backward signal, the second moments over (example, unit)
pairs obey::

    E[g_l^2] = n_{l+1} Var[W_{l+1}] E[phi'(h_l)^2] E[g_{l+1}^2]        (*)

with ``n_{l+1}`` the number of units of layer l+1 (the kernel's fan_out).
We report the measured ratio ``E[g_l^2] / E[g_{l+1}^2]`` beside (*) with the
measured ``E[phi'(h_l)^2]`` of this batch ("predicted"), and beside the pure
linear regime ``n_{l+1} Var[W_{l+1}] phi'(0)^2`` (their eq. 6, ``f' = 1``):
1/3 for tanh and softsign with the standard init ``U(-1/sqrt(n), 1/sqrt(n))``,
1 with the normalized init ``U(+-sqrt(6/(n_in + n_out)))`` on square layers,
1/48 and 1/16 for sigmoid (``phi'(0) = 1/4``). The gradients have mean 0 by
the sign symmetry of W (measured |mean| is stored), so the second moment is
the variance of Glorot & Bengio's Var[...].
"""

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vgrad.io import schemas
from vgrad.nn import activations as activations_lib
from vgrad.nn import config as nn_config
from vgrad.nn import initializers as initializers_lib
from vgrad.nn import models
from vgrad.training import data as data_lib

SCHEMA = schemas.GRADIENT_HISTOGRAMS

# Output ranges of the bounded activations. A value counts as saturated when
# it lies in the outer SATURATION_LEVEL of the half-range around the middle:
# |x| > 0.9 for tanh and softsign, x < 0.05 or x > 0.95 for sigmoid.
OUTPUT_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0),
                 "softsign": (-1.0, 1.0), "erf": (-1.0, 1.0),
                 "hard_tanh": (-1.0, 1.0)}
SATURATION_LEVEL = 0.9

# Glorot & Bengio's names for the two initialisations they compare.
INIT_LABELS = {"standard_uniform": "standard", "glorot_uniform": "normalized"}

# The quantities histogrammed, and whether their edges are symmetric about 0.
QUANTITIES = {"activation": False, "gradient": True, "weight_gradient": True}

# Activations this study accepts: the elementwise ones (maxout's layer is
# not phi(h) of one pre-activation per unit).
ELEMENTWISE = tuple(sorted(
    name for name in activations_lib.ACTIVATIONS
    if name != "maxout" and name not in activations_lib.TRANSFORMED))
# Initializers this study accepts: those that fix the weights by themselves
# (a data-dependent init such as LSUV would be measured before its data
# step, mislabelled).
STATIC_INITS = tuple(sorted(
    set(initializers_lib.INITIALIZERS) -
    getattr(initializers_lib, "DATA_DEPENDENT", frozenset())))


@dataclasses.dataclass(frozen=True)
class HistogramConfig:
  """One study: every activation in ``acts`` with every init in ``inits``.

  ``depth`` hidden layers of ``width`` units and a softmax readout, on the
  first ``num_examples`` of a fixed random order of the training set.
  """
  acts: tuple[str, ...] = ("sigmoid", "tanh", "softsign")
  inits: tuple[str, ...] = ("standard_uniform", "glorot_uniform")
  depth: int = 5
  width: int = 1000
  num_examples: int = 1000
  num_bins: int = 100
  seed: int = 0
  dataset: str = "digits"


def check_config(config: HistogramConfig) -> None:
  """Raises ValueError naming the bad field and its valid values; each
  network is checked by :class:`vgrad.nn.config.NetworkConfig`."""
  _check_names("acts", config.acts, ELEMENTWISE)
  _check_names("inits", config.inits, STATIC_INITS)
  for act in config.acts:
    for init in config.inits:
      nn_config.NetworkConfig(act=act, init=init, depth=config.depth,
                              width=config.width)
  for field, low in (("num_examples", 1), ("num_bins", 2)):
    value = getattr(config, field)
    if int(value) != value or value < low:
      raise ValueError(f"{field} must be an integer >= {low}, got {value}")


def _check_names(field, names, valid):
  bad = [n for n in names if n not in valid]
  if not names or bad or len(set(names)) != len(names):
    raise ValueError(f"{field} must be distinct names from: "
                     f"{', '.join(valid)}; got {', '.join(names) or 'none'}")


class Signals(NamedTuple):
  """What one forward and backward pass of a batch of B examples records.

  Attributes:
    loss: () mean cross-entropy L over the batch.
    inputs: (B, n_0) the input x_0.
    preactivations: (L, B, N) h_l.
    activations: (L, B, N) x_l = phi(h_l).
    gradients: (L, B, N) g_l[i] = d ell_i / d h_l[i].
  """
  loss: jax.Array
  inputs: jax.Array
  preactivations: jax.Array
  activations: jax.Array
  gradients: jax.Array


def _forward(model: models.MLP, params, x, deltas):
  """Logits ``(B, C)`` and ``(h, x)`` stacks ``(L, B, N)``, with ``h_l``
  shifted by ``deltas[l - 1]``; the affine maps are the model's own."""
  layer = models.hidden_layer(model)
  hs, xs = [], []
  for l in range(1, model.depth + 1):
    _, h = layer.apply({"params": models.layer_params(params, l)}, x)
    h = h + deltas[l - 1]
    x = model.activation.fn(h)
    hs.append(h)
    xs.append(x)
  logits = model.apply(params, x, method=models.MLP.apply_output)
  return logits, (jnp.stack(hs), jnp.stack(xs))


def compute_signals(model: models.MLP, params, x: jax.Array,
                    y: jax.Array) -> Signals:
  """One exact forward and backward pass of a batch.

  Args:
    model: an MLP with ``depth >= 1``, a readout and head ``'none'`` (the
      softmax is in the loss); not maxout.
    params: its parameters.
    x: (B, n_0) inputs.
    y: (B,) integer labels in ``[0, num_outputs)``.

  Returns:
    The :class:`Signals`; ``gradients`` is ``d(sum_i ell_i)/d delta`` at a
    zero perturbation ``delta`` of every pre-activation.
  """
  if model.activation.is_maxout or model.num_outputs is None:
    raise ValueError("model must be elementwise (not maxout) with a readout")

  def total_loss(deltas):
    logits, stacks = _forward(model, params, x, deltas)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(losses), (jnp.mean(losses), stacks)

  deltas = jnp.zeros((model.depth, x.shape[0], model.width), x.dtype)
  grads, (loss, (hs, xs)) = jax.grad(total_loss, has_aux=True)(deltas)
  return Signals(loss, x, hs, xs, grads)


def weight_gradients(signals: Signals) -> list[jax.Array]:
  """``[dL/dkernel_l for l = 1..L]``: ``x_{l-1}^T g_l / B``, ``(n_{l-1}, N)``.

  The gradient of the mean loss L w.r.t. layer l's ``(fan_in, fan_out)``
  kernel, summed over the batch from the per-example ``g_l``.
  """
  batch = signals.inputs.shape[0]
  prev = [signals.inputs] + list(signals.activations[:-1])
  return [jnp.matmul(p.T, g, precision=models.PRECISION) / batch
          for p, g in zip(prev, signals.gradients)]


def mean_sq_derivative(activation: activations_lib.Activation,
                       preactivations: jax.Array) -> jax.Array:
  """``(L,)`` E[phi'(h_l)^2] over the batch and units of ``(L, B, N)``."""
  return jnp.mean(jnp.square(activation.deriv(preactivations)), axis=(1, 2))


def linear_regime_factor(activation: activations_lib.Activation, init: str,
                         fan_in: int, fan_out: int) -> float:
  """``n_{l+1} Var[W_{l+1}] phi'(0)^2`` (Glorot & Bengio 2010, eq. 6).

  The factor on E[g^2] per layer towards the input when every unit works at
  ``h = 0``, for a ``(fan_in, fan_out)`` kernel W_{l+1}: the sum in
  ``W_{l+1}^T g_{l+1}`` runs over its ``fan_out`` rows.
  """
  slope = float(activation.deriv(jnp.zeros(())))
  return backward_factor(init, fan_in, fan_out) * slope ** 2


def backward_factor(init: str, fan_in: int, fan_out: int) -> float:
  """``n_{l+1} Var[W_{l+1}]`` = fan_out Var[W] of a ``(fan_in, fan_out)``
  kernel drawn by ``init``: the weights' factor in eq. (*)."""
  return fan_out * initializers_lib.weight_variance(init, fan_in, fan_out)


def saturated_fraction(act: str, x: np.ndarray) -> float | None:
  """Fraction of ``x = phi(h)`` in the outer 10 % of phi's output range
  (``|x| > 0.9`` for tanh); None for an unbounded activation."""
  if act not in OUTPUT_RANGES:
    return None
  lo, hi = OUTPUT_RANGES[act]
  centred = np.abs(x - (lo + hi) / 2) / ((hi - lo) / 2)
  return float(np.mean(centred > SATURATION_LEVEL))


def summary_stats(values: np.ndarray) -> dict:
  """Mean, std, rms (sqrt E[v^2]), min, max of the finite values, and the
  number of non-finite ones; the statistics are None if none is finite."""
  values = np.asarray(values, np.float64).ravel()
  finite = values[np.isfinite(values)]
  stats = {"num_nonfinite": int(values.size - finite.size)}
  if not finite.size:
    return stats | dict.fromkeys(("mean", "std", "rms", "min", "max"))
  return stats | {"mean": float(finite.mean()), "std": float(finite.std()),
                  "rms": float(np.sqrt(np.mean(finite ** 2))),
                  "min": float(finite.min()), "max": float(finite.max())}


def shared_edges(arrays, num_bins: int, symmetric: bool,
                 value_range: tuple[float, float] | None = None) -> np.ndarray:
  """``num_bins + 1`` uniform edges covering every finite value of ``arrays``.

  Args:
    arrays: arrays whose values must all fall inside the edges.
    num_bins: number of bins, >= 1.
    symmetric: edges ``[-m, m]`` with m the largest |value|, so that 0 is a
      bin edge for an even ``num_bins`` and positive and negative values are
      binned alike.
    value_range: a fixed ``(lo, hi)`` (phi's output range), widened if a
      value falls outside it.

  Returns:
    ``(num_bins + 1,)`` float64 edges.
  """
  finite = [v[np.isfinite(v)] for v in map(np.asarray, arrays)]
  finite = [v for v in finite if v.size]
  lo = min((float(v.min()) for v in finite), default=-1.0)
  hi = max((float(v.max()) for v in finite), default=1.0)
  if symmetric:
    m = max(abs(lo), abs(hi))
    lo, hi = -m, m
  if value_range is not None:
    lo, hi = min(lo, value_range[0]), max(hi, value_range[1])
  if hi <= lo:  # all values equal: a bin of width 1 around them
    lo, hi = lo - 0.5, hi + 0.5
  return np.linspace(lo, hi, num_bins + 1)


def histogram_record(values_per_layer, edges: np.ndarray) -> dict:
  """Counts of each layer's values in ``edges`` (all finite values land in
  a bin: the last bin is closed), and the number of non-finite values."""
  counts, nonfinite = [], []
  for values in values_per_layer:
    values = np.asarray(values).ravel()
    ok = np.isfinite(values)
    counts.append(np.histogram(values[ok], edges)[0].tolist())
    nonfinite.append(int(values.size - ok.sum()))
  return {"edges": edges.tolist(), "counts": counts,
          "num_values": [int(np.asarray(v).size) for v in values_per_layer],
          "num_nonfinite": nonfinite}


def build_model(act: str, init: str, depth: int, width: int,
                num_classes: int, dtype=jnp.float32) -> models.MLP:
  return models.make_mlp(depth=depth, width=width, activation=act, init=init,
                         num_outputs=num_classes, head="none",
                         param_dtype=dtype)


def _measured(model: models.MLP, params, x, y):
  """``(Signals, weight gradients, E[phi'(h_l)^2])`` of a batch."""
  signals = compute_signals(model, params, x, y)
  return (signals, weight_gradients(signals),
          mean_sq_derivative(model.activation, signals.preactivations))


def measure(model: models.MLP, params, x, y):
  """Host-side ``(Signals, weight gradients, E[phi'(h_l)^2])`` of a batch,
  from one compiled program (the weight gradients and the mean derivative
  in it too, not one small program per operation)."""
  return jax.device_get(
      jax.jit(functools.partial(_measured, model))(params, x, y))


def layer_records(act: str, init: str, model: models.MLP, signals: Signals,
                  weight_grads, mean_sq_deriv) -> list[dict]:
  """Per-layer statistics and the gradient ratio ``E[g_l^2]/E[g_{l+1}^2]``
  beside eq. (*) (module docstring); the last layer has no ratio."""
  records = []
  for l in range(model.depth):
    x_l = np.asarray(signals.activations[l])
    record = {
        "layer": l + 1,
        "activation": summary_stats(x_l) | {
            "saturated_fraction": saturated_fraction(act, x_l)},
        "preactivation": summary_stats(signals.preactivations[l]),
        "mean_sq_deriv": float(mean_sq_deriv[l]),
        "gradient": summary_stats(signals.gradients[l]),
        "weight_gradient": summary_stats(weight_grads[l]),
        "gradient_ratio": None,
    }
    if l + 1 < model.depth:
      factor = backward_factor(init, model.width, model.width)
      rms = [np.sqrt(np.mean(np.square(signals.gradients[k], dtype=np.float64)))
             for k in (l, l + 1)]
      record["gradient_ratio"] = {
          "measured": float((rms[0] / rms[1]) ** 2) if rms[1] else None,
          "predicted": factor * float(mean_sq_deriv[l]),
          "linear_regime": linear_regime_factor(
              model.activation, init, model.width, model.width)}
    records.append(record)
  return records


def _init_params(model, key, input_dim):
  return model.init(key, jnp.zeros((input_dim,), jnp.float32))


def run_study(config: HistogramConfig, dataset: data_lib.Dataset,
              key: jax.Array | None = None) -> dict:
  """Measures every (activation, init) pair; returns the results dictionary.

  Every pair uses the same parameter key and the same batch, so the two
  uniform inits' weights are the same draws rescaled.

  Args:
    config: the study.
    dataset: a multiclass dataset with at least ``num_examples`` training
      examples.
    key: PRNG key; default ``jax.random.key(config.seed)``.

  Raises:
    ValueError: a bad config or a dataset that cannot serve it.
  """
  check_config(config)
  n = dataset.x_train.shape[0]
  if dataset.task != "multiclass" or config.num_examples > n:
    raise ValueError(f"num_examples must be <= {n} (the {dataset.name} "
                     f"training examples) on a multiclass dataset, got "
                     f"{config.num_examples}")
  key = jax.random.key(config.seed) if key is None else key
  init_key, data_key = jax.random.split(key)
  idx = jax.random.permutation(data_key, n)[:config.num_examples]
  x = jnp.asarray(dataset.x_train)[idx]
  y = jnp.asarray(dataset.y_train)[idx]
  runs = []
  for act in config.acts:
    measured = {}
    for init in config.inits:
      model = build_model(act, init, config.depth, config.width,
                          dataset.num_classes)
      params = _init_params(model, init_key, dataset.input_dim)
      measured[init] = (model, *measure(model, params, x, y))
    runs += _histogram_runs(act, config, measured)
  return {
      "schema": SCHEMA,
      "config": dataclasses.asdict(config),
      "dataset": {"name": dataset.name, "description": dataset.description,
                  "input_dim": dataset.input_dim,
                  "num_classes": dataset.num_classes,
                  "num_examples": config.num_examples},
      "convention": "h_l = W_l x_{l-1} + b_l, x_l = phi(h_l); gradient "
                    "g_l[i] = d ell_i / d h_l[i] per example i (ell_i its "
                    "cross-entropy); weight_gradient = dL/dkernel_l = "
                    "x_{l-1}^T g_l / B for the mean loss L; gradient_ratio "
                    "= E[g_l^2] / E[g_{l+1}^2]",
      "runs": runs,
  }


def _histogram_runs(act: str, config: HistogramConfig, measured) -> list:
  """One run record per init of ``act``; edges shared by layers and inits."""
  edges = {}
  for quantity, symmetric in QUANTITIES.items():
    arrays = [a for _, s, w, _ in measured.values()
              for a in _values(quantity, s, w)]
    edges[quantity] = shared_edges(
        arrays, config.num_bins, symmetric,
        OUTPUT_RANGES.get(act) if quantity == "activation" else None)
  runs = []
  for init, (model, signals, weight_grads, msd) in measured.items():
    runs.append({
        "act": act, "init": init, "init_label": INIT_LABELS.get(init, init),
        "loss": float(signals.loss),
        "layers": layer_records(act, init, model, signals, weight_grads, msd),
        "histograms": {q: histogram_record(_values(q, signals, weight_grads),
                                           edges[q]) for q in QUANTITIES},
    })
  return runs


def _values(quantity: str, signals: Signals, weight_grads) -> list:
  return {"activation": list(signals.activations),
          "gradient": list(signals.gradients),
          "weight_gradient": list(weight_grads)}[quantity]


# ---------------------------------------------------------------- report --

# A per-layer factor within this band of 1 counts as "about constant".
CONSTANT_BAND = 0.1


def geometric_mean_ratio(layers: list[dict], key: str) -> float | None:
  """Geometric mean over l of ``gradient_ratio[key]`` (None if any is)."""
  values = [r["gradient_ratio"][key] for r in layers[:-1]]
  if not values or any(v is None or v <= 0 for v in values):
    return None
  return math.exp(sum(math.log(v) for v in values) / len(values))


def conclusion(run: dict) -> str:
  """One sentence computed from the run's numbers."""
  layers = run["layers"]
  depth = len(layers)
  head = f"{run['act']}, {run['init_label']} init"
  first, last = layers[0]["activation"], layers[-1]["activation"]
  forward = (f"activation std {_fmt(first['std'])} at layer 1, "
             f"{_fmt(last['std'])} at layer {depth}{_saturation(layers)}")
  measured = geometric_mean_ratio(layers, "measured")
  if measured is None:
    return f"{head}: {forward}; no layer-to-layer gradient ratio."
  if abs(math.log(measured)) <= math.log1p(CONSTANT_BAND):
    trend = "stays about constant"
  else:
    trend = "falls" if measured < 1 else "grows"
  predicted = geometric_mean_ratio(layers, "predicted")
  linear = geometric_mean_ratio(layers, "linear_regime")
  return (f"{head}: the back-propagated gradient variance {trend}, "
          f"x{measured:.3g} per layer towards the input (x"
          f"{measured ** (depth - 1):.3g} from layer {depth} to 1; predicted "
          f"x{_fmt(predicted)} per layer from the measured E[phi'(h)^2], "
          f"x{_fmt(linear)} in the linear regime); {forward}.")


def _saturation(layers: list[dict]) -> str:
  fractions = [r["activation"]["saturated_fraction"] for r in layers]
  if any(f is None for f in fractions):
    return ""
  worst = max(range(len(fractions)), key=fractions.__getitem__)
  return (f"; at most {fractions[worst]:.1%} of the activations saturated "
          f"(layer {worst + 1})")


def weight_gradient_note(run: dict) -> str:
  """One sentence on how much the weight-gradient std varies over layers.

  Glorot & Bengio (2010, Sec. 4.2) show that in the linear regime with the
  standard init Var[dL/dW_l] is about the same in every layer even while
  Var[g_l] shrinks towards the input: x_{l-1} grows by the inverse factor.
  """
  stds = [r["weight_gradient"]["std"] for r in run["layers"]]
  if any(not s for s in stds):
    return "Weight gradients: some layer has no finite nonzero gradient."
  low, high = min(stds), max(stds)
  return (f"Weight gradients: std dL/dW_l between {low:.3g} (layer "
          f"{stds.index(low) + 1}) and {high:.3g} (layer "
          f"{stds.index(high) + 1}), a spread of x{high / low:.3g}.")


def _fmt(value, spec=".3g") -> str:
  return "-" if value is None else format(value, spec)


def format_run_table(run: dict) -> str:
  """Markdown table of one (activation, init) run, one row per layer."""
  head = ("| layer | std x_l | saturated | std h_l | E[phi'(h_l)^2] | "
          "std g_l | E[g_l^2]/E[g_{l+1}^2] | predicted | linear regime | "
          "std dL/dW_l |")
  rows = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
  for r in run["layers"]:
    ratio = r["gradient_ratio"] or {}
    sat = r["activation"]["saturated_fraction"]
    rows.append("| " + " | ".join([
        str(r["layer"]), _fmt(r["activation"]["std"]),
        "-" if sat is None else f"{sat:.1%}", _fmt(r["preactivation"]["std"]),
        _fmt(r["mean_sq_deriv"]), _fmt(r["gradient"]["std"]),
        _fmt(ratio.get("measured")), _fmt(ratio.get("predicted")),
        _fmt(ratio.get("linear_regime")),
        _fmt(r["weight_gradient"]["std"])]) + " |")
  return "\n".join(rows)


THEORY_NOTE = (
    "Theory (Glorot & Bengio 2010, eqs. 5-6, 14-16): E[g_l^2] = "
    "n_{l+1} Var[W_{l+1}] E[phi'(h_l)^2] E[g_{l+1}^2]. \"predicted\" uses "
    "the measured E[phi'(h_l)^2] of this batch; \"linear regime\" is "
    "n Var[W] phi'(0)^2 (1/3 for tanh with the standard init, 1 with the "
    "normalized init on square layers). A value counts as saturated in the "
    "outer 10 % of phi's range (|x| > 0.9 for tanh; sigmoid below 0.05 or "
    "above 0.95).")


def _setup_note(results: dict) -> str:
  c, ds = results["config"], results["dataset"]
  return (f"Glorot & Bengio (2010), Figs. 6-7: {c['depth']} hidden layers of "
          f"{c['width']} units and a softmax readout on "
          f"{ds['num_examples']} {ds['name']} training examples "
          f"({ds['description']}); seed {c['seed']}. g_l = d ell_i / d h_l "
          f"is the gradient of example i's cross-entropy ell_i, per example "
          f"and unit; dL/dW_l is the gradient of the mean loss L. Every std "
          f"is over all (example, unit) pairs or weight entries of a layer.")


def format_report(results: dict) -> str:
  """The run's report.md: setup, one conclusion per run, one table each."""
  lines = ["# Activations and back-propagated gradients at initialisation",
           "", _setup_note(results), "", THEORY_NOTE, "", "## Conclusions",
           ""]
  lines += [f"- {conclusion(run)}" for run in results["runs"]]
  for run in results["runs"]:
    title = (f"## {run['act']}, {run['init_label']} init (`{run['init']}`), "
             f"initial loss {run['loss']:.4f}")
    lines += ["", title, "", format_run_table(run), "", conclusion(run), "",
              weight_gradient_note(run)]
  if results.get("seconds") is not None:
    platform = results.get("platform", "an unknown device")
    lines += ["", f"Measured in {results['seconds']:.1f} s on {platform}."]
  return "\n".join(lines) + "\n"
