"""A training study: S seeds of one configuration, logged and diagnosed.

``run_training(config, dataset)`` trains ``config.seeds`` seeds at once (one
vmapped program), evaluates them every ``log_every`` steps, and returns one
*arm* of the ``metrics.json`` file documented in README.md: the config, the
history (medians are taken by readers, every seed is kept), and each seed's
final numbers, outcome and diagnosis. TensorBoard event files are written
when ``tb_dir`` is given. Nothing here reads flags. The jitted programs
(training chunk, probe, evaluation) are kept per :func:`program_key`, so
arms that differ only by their initialisation compile them once.
"""

from collections.abc import Callable
import dataclasses
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import config as nn_config
from vgrad.nn import models
from vgrad.training import data as data_lib
from vgrad.training import monitor
from vgrad.training import monitor_log
from vgrad.training import train

# Gradient-flow and saturation thresholds used by the diagnosis.
VANISHING_RATIO = 1e-3   # ||dL/dW_1|| / ||dL/dW_out|| below this: vanishing
EXPLODING_RATIO = 1e3
SATURATED_LAYER = 0.9    # fraction of saturated (example, unit) pairs
HISTOGRAM_POINTS = 6    # logged steps with TensorBoard histograms
PROBE_EXAMPLES = 512     # fixed batch for gradient-flow curves, histograms
EVAL_EXAMPLES = 10_000   # training-set examples used for the train metrics

# What "solved" means: (history key, threshold, comparison).
SOLVED = {
    "xor": ("train_accuracy", 1.0, ">="),
    "digits": ("test_accuracy", 0.9, ">="),
    "mnist": ("test_accuracy", 0.9, ">="),
    "diabetes": ("test_loss", 0.6, "<="),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One arm of a training study (defaults: the lecture's deep XOR net).

  The network fields (``act``, ``act_params``, ``init``, the weight and
  bias variances ``sigma_w2``, ``sigma_b2``, ``depth``, ``width``) are
  those of :class:`vgrad.nn.config.NetworkConfig`.
  """
  label: str = ""
  dataset: str = "xor"
  act: str = "sigmoid"
  act_params: dict = dataclasses.field(default_factory=dict)
  init: str = "uniform"
  sigma_w2: float | None = None
  sigma_b2: float | None = None
  depth: int = 10
  width: int = 5
  loss: str | None = None
  optimizer: str = "sgd"
  lr: float = 0.1
  momentum: float = 0.9
  clip_norm: float | None = None
  dropout: float = 0.0
  steps: int = 20_000
  batch_size: int = 0
  seeds: int = 8
  seed: int = 0
  log_every: int = 1000

  def name(self) -> str:
    return self.label or self.act

  def network(self) -> nn_config.NetworkConfig:
    """The trained network's settings, validated (ConfigError if bad)."""
    return nn_config.NetworkConfig(
        act=self.act, init=self.init, depth=self.depth, width=self.width,
        sigma_w2=self.sigma_w2, sigma_b2=self.sigma_b2,
        act_params=self.act_params)


def build(config: TrainConfig, dataset: data_lib.Dataset):
  """``(model, optimizer, loss)`` for ``config`` on ``dataset``; validates."""
  loss = config.loss or train.DEFAULT_LOSS[dataset.task]
  train.check_loss(loss, dataset.task)
  for field, lo in (("steps", 1), ("seeds", 1), ("log_every", 1),
                    ("batch_size", 0)):
    if getattr(config, field) < lo:
      raise ValueError(f"{field} must be >= {lo}, got "
                       f"{getattr(config, field)}")
  model = models.make_mlp(
      **config.network().mlp_kwargs(), num_outputs=dataset.num_outputs,
      dropout_rate=config.dropout)
  optimizer = train.make_optimizer(config.optimizer, config.lr,
                                   momentum=config.momentum,
                                   clip_norm=config.clip_norm)
  return model, optimizer, loss


def seed_keys(config: TrainConfig) -> tuple[jax.Array, jax.Array]:
  """Seed ``s`` uses ``key(config.seed + s)`` split into (init, train) keys,
  so any seed can be rerun alone and gives the same run."""
  keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(
      config.seed + jnp.arange(config.seeds))
  return keys[:, 0], keys[:, 1]


def log_steps(config: TrainConfig) -> list[int]:
  """0, log_every, 2 log_every, ..., steps."""
  steps = list(range(0, config.steps, config.log_every)) + [config.steps]
  return sorted(set(steps))


def _host(tree):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def _tolist(a):
  """Nested lists of floats with non-finite values as None (JSON null)."""
  a = np.asarray(a, dtype=np.float64)
  if a.ndim == 0:
    return _scalar(a)
  return [_tolist(v) for v in a]


def symmetric_layers(model: models.MLP, params) -> np.ndarray:
  """Per seed and hidden layer: are all units' incoming weights identical?

  Returns bool ``(S, L)``; zero initialisation keeps them identical forever
  because every unit of a layer then receives the same gradient.
  """
  leaves = monitor.float_leaves(params, "parameter")
  out = []
  for path in models.layer_paths(model)[:model.depth]:
    w = np.asarray(leaves[f"{path}/kernel"])   # (S, n_in, N) or (S, k, n_in, N)
    b = np.asarray(leaves[f"{path}/bias"])
    same_w = np.all(w == w[..., :1], axis=tuple(range(1, w.ndim)))
    same_b = np.all(b == b[..., :1], axis=tuple(range(1, b.ndim)))
    out.append(same_w & same_b & (w.shape[-1] > 1))
  return np.stack(out, axis=1)


def collapsed_layer(activations, y) -> list[int | None]:
  """Per seed, the first hidden layer that maps two examples of different
  classes to exactly the same vector (no readout can then separate them).

  Args:
    activations: ``[x_1, ..., x_L]``, each ``(S, B, N)``.
    y: integer labels ``(B,)``.

  Returns:
    A 1-based layer index or None per seed. Exact equality is what dead
    ReLU units produce (both vectors zero in the same coordinates).
  """
  y = np.asarray(y)
  out = []
  for s in range(np.asarray(activations[0]).shape[0]):
    found = None
    for l, a in enumerate(activations):
      _, group = np.unique(np.asarray(a[s]), axis=0, return_inverse=True)
      group = group.reshape(-1)
      labels_per_group = {}
      for g, label in zip(group, y):
        labels_per_group.setdefault(g, set()).add(int(label))
      if any(len(v) > 1 for v in labels_per_group.values()):
        found = l + 1
        break
    out.append(found)
  return out


# One compiled program per leaf shape (the logger measures every layer of
# every seed at each histogram step).
_leaf_stats = jax.jit(monitor.leaf_stats)


class _Logger:
  """Writes one TensorBoard run per seed: ``tb_dir/seed_<s>``."""

  def __init__(self, tb_dir: str | None, config: TrainConfig, labels,
               model: models.MLP):
    self.writers = []
    self.labels = labels
    self.paths = models.layer_paths(model)
    if tb_dir is not None:
      from vgrad.training import tensorboard_log  # pylint: disable=g-import-not-at-top
      self.writers = [
          tensorboard_log.SummaryWriter(f"{tb_dir}/seed_{config.seed + s}")
          for s in range(config.seeds)]

  def log(self, step, record, probe_params, grads, activations,
          histograms=True):
    if self.writers and histograms:
      params = monitor.float_leaves(probe_params, "parameter")
      grads = monitor.float_leaves(grads)
    for s, w in enumerate(self.writers):
      for key in ("train_loss", "train_accuracy", "test_loss",
                  "test_accuracy", "batch_loss"):
        if key in record:
          w.scalar(key.replace("train_", ""), record[key][s], step)
      w.scalar("diverged", float(record["diverged_at"][s] > 0), step)
      for key in ("grad_norm_w", "grad_norm_b", "update_ratio", "saturated",
                  "dead", "activation_rms"):
        if key in record:
          for name, value in zip(self.labels, record[key][s]):
            w.scalar(f"{key}/{name}", value, step)
      if not histograms:
        continue
      for path, name in zip(self.paths, self.labels):
        kernel, grad = params[f"{path}/kernel"][s], grads[f"{path}/kernel"][s]
        w.histogram(f"weights/{name}", kernel, step)
        w.histogram(f"gradients/{name}", grad, step)
        # log10|dL/dW| on the monitor's fixed grid; what it cannot bin (exact
        # zeros, NaN, Inf, beyond the grid) as scalars beside it.
        counts = monitor_log.host_stats(_leaf_stats(grad))
        histogram = monitor_log.grid_histogram(counts["log10_hist"])
        if histogram is not None:
          w.write_histogram(f"log10_abs_gradient/{name}", histogram, step)
        for key in ("num_zero", "num_nan", "num_inf", "hist_below",
                    "hist_above"):
          w.scalar(f"log10_abs_gradient_{key}/{name}", counts[key], step)
      for name, a in zip(self.labels, activations):
        w.histogram(f"activations/{name}", a[s], step)

  def close(self):
    for w in self.writers:
      w.close()


def _subset(x, y, n):
  return x[:n], y[:n]


# The metrics of a chunk's last step that a history entry records (the
# loss of every step leaves the chunk anyway).
CHUNK_METRICS = ("loss", "update_ratio")


class _Programs(NamedTuple):
  """An arm's jitted programs: the chunk of ``n`` steps per ``n`` (built on
  demand), the evaluation and the probe."""
  step_fn: Callable
  chunks: dict
  evaluate: Callable
  probe: Callable


_PROGRAMS: dict = {}
_MAX_PROGRAMS = 8


def program_key(config: TrainConfig, dataset: data_lib.Dataset,
                loss: str) -> tuple:
  """Every setting the training programs depend on.

  Not the initialisation (``init``, ``sigma_w2``, ``sigma_b2``: the
  parameters are an argument of every program), the seeds, the steps or the
  label: arms that differ only by those (``init_failures``' tanh arms)
  share one set of programs, compiled once.
  """
  return (dataset.task, dataset.num_outputs, config.act,
          repr(sorted(config.act_params.items())), config.depth,
          config.width, config.dropout, loss, config.optimizer, config.lr,
          config.momentum, config.clip_norm, config.batch_size)


def _programs(config, dataset, model, optimizer, loss) -> _Programs:
  """The arm's programs, kept per :func:`program_key` (the oldest of
  ``_MAX_PROGRAMS`` dropped); built from ``model`` and ``optimizer`` when
  new, and they never call the model's initializers."""
  key = program_key(config, dataset, loss)
  programs = _PROGRAMS.get(key)
  if programs is None:
    step_fn = train.make_step_fn(model, optimizer, loss, dataset.task,
                                 config.batch_size)

    def lean_step(state, key, step, x, y):
      # Only CHUNK_METRICS leave the chunk: XLA drops the rest of its last
      # step's metrics (the probe measures them on a fixed batch).
      state, metrics = step_fn(state, key, step, x, y)
      return state, {k: metrics[k] for k in CHUNK_METRICS}

    if len(_PROGRAMS) >= _MAX_PROGRAMS:
      _PROGRAMS.pop(next(iter(_PROGRAMS)))
    programs = _PROGRAMS[key] = _Programs(
        lean_step, {}, train.make_evaluate(model, loss, dataset.task),
        train.make_probe(model, loss, dataset.task))
  return programs


def run_training(config: TrainConfig, dataset: data_lib.Dataset, *,
                 tb_dir: str | None = None,
                 progress: Callable[[int, int, float], None] | None = None
                 ) -> dict:
  """Trains ``config.seeds`` seeds and returns the arm's results dictionary.

  Parameters come from ``train.init_states``, so a data-dependent init
  (``config.init='lsuv'``) is normalised on the first
  ``train.LSUV_EXAMPLES`` training examples (all of them if fewer).

  Args:
    config: the arm.
    dataset: the data (its name selects the "solved" criterion).
    tb_dir: directory for TensorBoard runs (one per seed), or None.
    progress: called as ``progress(step, steps, median_loss)`` after every
      logged chunk.
  """
  model, optimizer, loss = build(config, dataset)
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  x_eval, y_eval = _subset(x, y, EVAL_EXAMPLES)
  x_probe, y_probe = _subset(x, y, PROBE_EXAMPLES)
  x_test, y_test = jnp.asarray(dataset.x_test), jnp.asarray(dataset.y_test)
  init_keys, train_keys = seed_keys(config)
  states = train.init_states(model, optimizer, init_keys, x)
  programs = _programs(config, dataset, model, optimizer, loss)
  evaluate, probe, chunks = (programs.evaluate, programs.probe,
                             programs.chunks)
  labels = train.layer_labels(config.depth)
  logger = _Logger(tb_dir, config, labels, model)
  history, batch_metrics, batch_loss = [], None, None
  start = time.perf_counter()
  previous = 0
  steps = log_steps(config)
  with_histograms = {steps[i] for i in np.unique(np.linspace(
      0, len(steps) - 1, HISTOGRAM_POINTS).round().astype(int))}
  try:
    for step in steps:
      if step > previous:
        n = step - previous
        if n not in chunks:
          chunks[n] = train.make_train_chunk(programs.step_fn, n)
        states, batch_metrics, losses = chunks[n](states, train_keys,
                                                  previous, x, y)
        batch_loss = losses[-1]
      grads, probe_metrics, activations = probe(states.params, x_probe,
                                                y_probe)
      record = _record(step, evaluate, states, (x_eval, y_eval),
                       (x_test, y_test), probe_metrics, batch_metrics,
                       batch_loss)
      history.append(record)
      if logger.writers:
        logger.log(step, record, _host(states.params), _host(grads),
                   _host(activations), step in with_histograms)
      previous = step
      if progress is not None:
        progress(step, config.steps, _median(record["train_loss"]))
  finally:
    logger.close()
  seconds = time.perf_counter() - start
  collapsed = ([None] * config.seeds if dataset.task == "regression" else
               collapsed_layer(_host(activations), y_probe))
  return _arm(config, dataset, loss, labels, history, _host(states.params),
              collapsed, seconds, model)


def _record(step, evaluate, states, train_data, test_data, probe_metrics,
            batch_metrics, batch_loss) -> dict:
  """One history entry, host numpy arrays with a leading seed axis."""
  tr = _host(evaluate(states.params, *train_data))
  te = _host(evaluate(states.params, *test_data))
  record = {"step": step, "diverged_at": np.asarray(states.diverged_at)}
  for k, v in tr.items():
    record[f"train_{k}"] = v
  for k, v in te.items():
    record[f"test_{k}"] = v
  pm = _host(probe_metrics)
  for key in ("grad_norm_w", "grad_norm_b", "saturated", "dead",
              "activation_rms"):
    if key in pm:
      record[key] = pm[key]
  if batch_metrics is not None:
    record["update_ratio"] = np.asarray(batch_metrics["update_ratio"])
    record["batch_loss"] = np.asarray(batch_loss)
  return record


def solved_criterion(dataset_name: str) -> str:
  """E.g. ``'train_accuracy >= 1'``."""
  key, threshold, op = SOLVED[dataset_name]
  return f"{key} {op} {threshold:g}"


def _solved(dataset_name: str, final: dict) -> bool:
  key, threshold, op = SOLVED[dataset_name]
  value = final.get(key)
  if value is None:
    return False
  return value >= threshold if op == ">=" else value <= threshold


FINDINGS = {
    "diverged": "diverged (NaN/Inf)",
    "dead_units": "a layer of dead ReLUs",
    "inactive_units": "a layer with all units inactive",
    "collapsed": "classes merged in a hidden layer",
    "symmetric": "symmetry never broken",
    "saturated": "saturated layer",
    "vanishing_signal": "forward signal vanishes at init",
    "exploding_signal": "forward signal explodes at init",
    "vanishing_gradient": "vanishing gradient at init",
    "exploding_gradient": "exploding gradient at init",
    "stuck_at_chance": "loss stuck at chance",
    "still_improving": "still improving at the end",
}
STILL_IMPROVING = 0.01   # relative loss drop over the last 10 % of steps


def diagnose(final: dict, initial: dict, chance_loss: float | None,
             symmetric: list[bool], act: str,
             collapsed: int | None = None,
             recent_drop: float | None = None) -> list[dict]:
  """Why a seed ended where it did, from its first and last measurements.

  Args:
    final, initial: one seed's history entries (scalars and per-layer lists).
    chance_loss: the loss of a constant prediction at the class prior
      (``ln 2`` for balanced binary data), or None.
    symmetric: per hidden layer, whether all units are still identical.
    act: the activation name.
    collapsed: the first layer mapping two classes to one vector, or None.
    recent_drop: relative fall of the training loss over the last 10 % of
      the logged steps, or None.

  Returns:
    ``[{'finding': code, 'detail': text}]``, codes from ``FINDINGS``, most
    decisive first.
  """
  out = []

  def add(code, detail):
    out.append({"finding": code, "detail": detail})

  if final.get("diverged_at"):
    add("diverged", f"diverged at step {final['diverged_at']}")
  gone = _layers_at_least(final.get("dead"), 1.0)
  if gone and act == "relu":
    add("dead_units", f"all units dead in layer(s) {_ranges(gone)}: no "
        "gradient reaches the layers below")
  elif gone:
    add("inactive_units", f"all units inactive (h <= 0) in layer(s) "
        f"{_ranges(gone)}")
  if collapsed is not None:
    add("collapsed", f"layer {collapsed} maps examples of different classes "
        "to the same vector")
  if symmetric and all(symmetric):
    add("symmetric", "units of every layer identical: symmetry never broken")
  hot = _layers_at_least(final.get("saturated"), SATURATED_LAYER)
  if hot:
    add("saturated", f"layer(s) {_ranges(hot)} saturated "
        f"(>= {SATURATED_LAYER:.0%} of unit activations)")
  a0 = initial.get("activation_rms") or []
  if len(a0) > 1 and a0[0] and a0[-1] is not None:
    ratio = a0[-1] / a0[0]
    if ratio < VANISHING_RATIO:
      add("vanishing_signal", f"rms activation falls from {a0[0]:.1e} in "
          f"layer 1 to {a0[-1]:.1e} in layer {len(a0)} at init")
    elif ratio > EXPLODING_RATIO:
      add("exploding_signal", f"rms activation grows from {a0[0]:.1e} in "
          f"layer 1 to {a0[-1]:.1e} in layer {len(a0)} at init")
  g0 = initial.get("grad_norm_w") or []
  if len(g0) > 1 and g0[0] == 0 and g0[-1]:
    add("vanishing_gradient", "dL/dW_1 is exactly zero at init")
  elif len(g0) > 1 and g0[0] is not None and g0[-1]:
    ratio = g0[0] / g0[-1]
    if ratio < VANISHING_RATIO:
      add("vanishing_gradient", f"||dL/dW_1|| / ||dL/dW_out|| = {ratio:.1e} "
          "at init")
    elif ratio > EXPLODING_RATIO:
      add("exploding_gradient", f"||dL/dW_1|| / ||dL/dW_out|| = "
          f"{ratio:.1e} at init")
  loss = final.get("train_loss")
  if (chance_loss is not None and loss is not None
      and abs(loss - chance_loss) < 1e-3 * chance_loss):
    add("stuck_at_chance", f"training loss {loss:.4f} = chance level "
        f"{chance_loss:.4f}")
  if recent_drop is not None and recent_drop > STILL_IMPROVING:
    add("still_improving", f"loss fell {recent_drop:.0%} over the last 10 % "
        "of training: more steps may solve it")
  return out


def _layers_at_least(fractions, level) -> list[int]:
  return [i + 1 for i, f in enumerate(fractions or [])
          if f is not None and f >= level]


def _ranges(layers: list[int]) -> str:
  """[1, 2, 3, 7] -> '1-3, 7'."""
  parts, start = [], layers[0]
  for a, b in zip(layers, layers[1:] + [None]):
    if b != a + 1:
      parts.append(f"{start}-{a}" if a > start else f"{a}")
      start = b
  return ", ".join(parts)


def chance_loss(dataset: data_lib.Dataset, loss: str) -> float | None:
  """The cross-entropy of predicting the training-set class frequencies."""
  if dataset.task == "regression" or loss == "mean_squared_error":
    return None
  counts = np.bincount(np.asarray(dataset.y_train),
                       minlength=dataset.num_classes).astype(np.float64)
  p = counts[counts > 0] / counts.sum()
  return float(-np.sum(p * np.log(p)))


def _seed_view(record: dict, s: int) -> dict:
  out = {}
  for k, v in record.items():
    if k == "step":
      out[k] = v
    elif k == "diverged_at":
      out[k] = int(v[s]) or None
    else:
      out[k] = _tolist(v[s])
  return out


def _median(values) -> float:
  finite = np.asarray(values)[np.isfinite(values)]
  return float(np.median(finite)) if finite.size else float("nan")


def _scalar(v) -> float | None:
  v = float(v)
  return v if math.isfinite(v) else None


def _arm(config, dataset, loss, labels, history, params, collapsed,
         seconds, model) -> dict:
  symmetric = symmetric_layers(model, params)
  chance = chance_loss(dataset, loss)
  seeds = []
  late = history[min(len(history) - 2, int(0.9 * (len(history) - 1)))]
  for s in range(config.seeds):
    first, last = _seed_view(history[0], s), _seed_view(history[-1], s)
    before = _scalar(late["train_loss"][s])
    drop = (None if before is None or last["train_loss"] is None or
            before <= 0 else (before - last["train_loss"]) / before)
    solved = _solved(dataset.name, last) and not last["diverged_at"]
    seeds.append({
        "seed": config.seed + s, "solved": bool(solved),
        "diverged_at": last["diverged_at"], "final": last,
        "symmetric_layers": symmetric[s].tolist(),
        "collapsed_layer": collapsed[s],
        "diagnosis": diagnose(last, first, chance, symmetric[s].tolist(),
                              config.act, collapsed[s], drop)})
  hist = {"step": [r["step"] for r in history],
          "diverged_at": [[int(v) or None for v in r["diverged_at"]]
                          for r in history]}
  for key in history[-1]:
    if key not in hist:
      hist[key] = [_tolist(r[key]) if key in r else None for r in history]
  return {
      "label": config.name(), "config": dataclasses.asdict(config),
      "loss": loss, "chance_loss": chance, "layers": labels,
      "solved_by": solved_criterion(dataset.name),
      "history": hist, "seeds": seeds, "summary": summarize(seeds),
      "seconds": seconds}


def summarize(seeds: list[dict]) -> dict:
  """Fraction solved, divergence count, and medians of the final metrics
  over the seeds that did not diverge (None if every seed diverged)."""
  def median(key):
    vals = [s["final"].get(key) for s in seeds if not s["diverged_at"]]
    vals = [v for v in vals if v is not None]
    return float(np.median(vals)) if vals else None
  findings = {}
  for s in seeds:
    if not s["solved"]:
      for code in dict.fromkeys(f["finding"] for f in s["diagnosis"]):
        findings[code] = findings.get(code, 0) + 1
  return {
      "seeds": len(seeds),
      "failed_findings": findings,
      "solved": sum(s["solved"] for s in seeds),
      "fraction_solved": sum(s["solved"] for s in seeds) / len(seeds),
      "diverged": sum(bool(s["diverged_at"]) for s in seeds),
      "first_divergence": min((s["diverged_at"] for s in seeds
                               if s["diverged_at"]), default=None),
      "median_train_loss": median("train_loss"),
      "median_train_accuracy": median("train_accuracy"),
      "median_test_loss": median("test_loss"),
      "median_test_accuracy": median("test_accuracy"),
  }
