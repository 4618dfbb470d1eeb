r"""Does a vanilla deep MLP train, and which cure makes it train?

A grid of *cells* (arm, depth): each arm is an activation and an
initialisation (:data:`ARMS`), every cell trains ``seeds`` seeds of a plain
fully connected net (``depth`` hidden layers of ``width`` units, no skip
connections, no normalisation, a linear readout) with the same optimizer,
learning rate, batch size and number of steps (the same optimizer budget),
and records per seed:

* the test-accuracy curve (every ``eval_every`` steps, step 0 included),
  the test loss and the mean minibatch training loss of each chunk;
* ``steps_to_threshold``: the first evaluated step whose test accuracy is
  at least ``threshold`` (None: never within ``steps``); its resolution is
  ``eval_every``;
* the final test accuracy (of the last finite parameters: a seed whose
  loss, gradients or update turn non-finite is frozen there, and
  ``diverged_at`` holds that 1-based step, as in
  :mod:`vgrad.training.train`);
* the spectrum at initialisation of the input-output Jacobian of the hidden
  stack, ``J = d x_L / d x_0 = D_L W_L ... D_1 W_1`` (no readout), at
  ``jacobian_inputs`` training inputs: exact log singular values by the
  stable QR probe (:mod:`vgrad.probes.log_spectrum`, float64 pass over the
  float32 net, exact zeros of ReLU nets counted apart), summarised by
  :func:`vgrad.studies.trainability_report.jacobian_summary`.

Data (:func:`prepare`): a dataset of :mod:`vgrad.training.data`, its
features standardised with the training split's statistics (the loader's),
then every example scaled to ``||x||^2 = d``, the input dimension: the
per-example length ``q = ||x||^2 / d = 1`` that Deep Kernel Shaping and TAT
assume (Martens et al. 2021; Zhang et al. 2022). Every arm sees the same
arrays and, seed for seed, the same minibatches.

How it runs. The nets are trained by :mod:`vgrad.training.scanned_mlp`:
hidden layers 2..L stacked and applied by a ``lax.scan`` of the model's own
layer module, so a program compiles in a time independent of depth; the
seeds of a cell are one vmapped batch; programs are kept per (activation,
depth, optimizer) so arms that share an activation compile them once.
Every parameter is drawn by the model's own initializers (hidden layer
``l`` of seed ``s`` from ``fold_in(init key, l)``, the readout from
``fold_in(init key, 0)``, the init key from ``key(seed + s)`` as in
:mod:`vgrad.studies.training_study`; LSUV's arm then normalised by
:func:`vgrad.nn.lsuv.lsuv_init` on the first ``train.LSUV_EXAMPLES``
training inputs): the distributions of :func:`vgrad.nn.lsuv.initialize`,
other random numbers.

How it stays resumable. A run directory holds ``config.json`` (the settings,
their ``fingerprint``, the grid) and ``cells/<arm>_d<depth>.json``, one
file per finished cell, written atomically (:mod:`vgrad.io.cell_store`).
A rerun into the same directory reads the finished cells whose fingerprint
and network match and computes only the others; a directory whose settings
differ is refused (:class:`SettingsMismatchError`).
"""

from collections.abc import Callable
import dataclasses
import functools
import hashlib
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.io import cell_store
from vgrad.io import records
from vgrad.io import rundir
from vgrad.io import schemas
from vgrad.nn import activations
from vgrad.nn import config as nn_config
from vgrad.nn import models
from vgrad.probes import log_spectrum
from vgrad.studies import trainability_report as report
from vgrad.theory import critical
from vgrad.training import data as data_lib
from vgrad.training import scanned_mlp as scanned
from vgrad.training import train

SCHEMA = schemas.DEEP_TRAINABILITY   # config.json, results.json, cells
CELLS_DIR = "cells"
PREPROCESSING = report.PREPROCESSING


@dataclasses.dataclass(frozen=True)
class Arm:
  """One cure (or the baseline): an activation and an initialisation.

  ``sigma_w2``/``sigma_b2`` as in :class:`vgrad.nn.config.NetworkConfig`;
  ``critical``: ``("sigma_b2", v)`` or ``("q_star", v)``, the point of the
  critical line chi_1 = 1 (:func:`vgrad.critical_point`) that sets both
  variances instead.
  """
  act: str
  init: str
  description: str
  sigma_w2: float | None = None
  sigma_b2: float | None = None
  critical: tuple[str, float] | None = None


ARMS = {
    "he_relu": Arm(
        "relu", "he_normal",
        "ReLU, He-normal weights, zero biases (the common default)"),
    "critical_tanh": Arm(
        "tanh", "gaussian",
        "tanh, Gaussian weights and biases at chi_1 = 1 with "
        "sigma_b^2 = 0.05 (Schoenholz et al. 2017)",
        critical=("sigma_b2", 0.05)),
    "critical_orthogonal_tanh": Arm(
        "tanh", "orthogonal",
        "tanh, orthogonal weights (gain sqrt(sigma_w^2)) and Gaussian "
        "biases at chi_1 = 1 with q* = 1/64 (Pennington et al. 2017); the "
        "inputs' length q = 1 relaxes towards q* over the first layers",
        critical=("q_star", 1 / 64)),
    "lsuv_relu": Arm(
        "relu", "lsuv",
        "ReLU, LSUV: orthogonal, then each layer rescaled to unit "
        "pre-activation variance on a training batch (Mishkin & Matas "
        "2016)"),
    "tat_leaky_relu": Arm(
        "tat_leaky_relu", "orthogonal",
        "TAT leaky ReLU, slope solved for the depth (Zhang et al. 2022), "
        "orthogonal weights gain 1, zero biases", sigma_w2=1.0),
    "dks_tanh": Arm(
        "dks_tanh", "orthogonal",
        "DKS-transformed tanh (Martens et al. 2021), orthogonal weights "
        "gain 1, zero biases", sigma_w2=1.0),
}
BASELINE = report.BASELINE


@dataclasses.dataclass(frozen=True)
class TrainabilityConfig:
  """The grid (``arms`` x ``depths``) and what every cell shares.

  ``optimizer`` is a name of :data:`vgrad.training.train.OPTIMIZERS`
  (``momentum``: SGD with heavy-ball ``momentum``); ``batch_size``
  examples per step, reshuffled every epoch; ``threshold`` the test
  accuracy that counts as "trains"; ``jacobian_inputs`` the training
  inputs the Jacobian spectrum at initialisation is measured on.
  """
  arms: tuple[str, ...] = tuple(ARMS)
  depths: tuple[int, ...] = (20, 50, 100, 200)
  width: int = 64
  seeds: int = 4
  seed: int = 0
  dataset: str = "digits"
  optimizer: str = "momentum"
  lr: float = 1e-3
  momentum: float = 0.9
  batch_size: int = 64
  steps: int = 1500
  eval_every: int = 10
  threshold: float = 0.5
  jacobian_inputs: int = 4

  def settings(self) -> dict:
    """Everything but the grid: what every cell of a run directory shares
    (with the preprocessing and the schema, which change its meaning)."""
    fields = dataclasses.asdict(self)
    del fields["arms"], fields["depths"]
    return fields | {"preprocessing": PREPROCESSING, "schema": SCHEMA}

  def eval_steps(self) -> list[int]:
    return report.eval_steps(self.steps, self.eval_every)


def fingerprint(settings: dict) -> str:
  """12 hex digits of sha256 of the settings' sorted JSON."""
  text = json.dumps(settings, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_config(config: TrainabilityConfig) -> None:
  """ValueError whose first word is the bad field, before any work."""
  if not config.arms:
    raise ValueError(f"arms must name at least one arm of: "
                     f"{', '.join(ARMS)}")
  unknown = [a for a in config.arms if a not in ARMS]
  if unknown:
    raise ValueError(f"arms: unknown arm(s) {', '.join(unknown)}; valid "
                     f"arms: {', '.join(ARMS)}")
  for field in ("arms", "depths"):
    values = getattr(config, field)
    if len(set(values)) != len(values):
      raise ValueError(f"{field} lists a value twice: "
                       f"{','.join(map(str, values))}")
  if not config.depths:
    raise ValueError("depths must name at least one depth (integers >= 1)")
  for field, values, low in (
      ("depths", config.depths, 1), ("width", (config.width,), 1),
      ("seeds", (config.seeds,), 1), ("seed", (config.seed,), 0),
      ("batch_size", (config.batch_size,), 1), ("steps", (config.steps,), 1),
      ("eval_every", (config.eval_every,), 1),
      ("jacobian_inputs", (config.jacobian_inputs,), 1)):
    for v in values:
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or (
          v < low):
        raise ValueError(f"{field} must be integers >= {low}, got {v}")
  if config.eval_every > config.steps:
    raise ValueError(f"eval_every must be at most steps ({config.steps}), "
                     f"got {config.eval_every}")
  if config.dataset not in data_lib.DATASETS or config.dataset in (
      "xor", "diabetes"):
    raise ValueError(f"dataset must be digits or mnist (a classification "
                     f"set), got {config.dataset!r}")
  if config.optimizer not in train.OPTIMIZERS:
    raise ValueError(f"optimizer: unknown optimizer {config.optimizer!r}; "
                     f"valid: {', '.join(sorted(train.OPTIMIZERS))}")
  for field in ("lr", "momentum", "threshold"):
    value = getattr(config, field)
    if not math.isfinite(value):
      raise ValueError(f"{field} must be a finite number, got {value}")
  if not config.lr > 0:
    raise ValueError(f"lr must be > 0, got {config.lr}")
  if not 0 <= config.momentum < 1:
    raise ValueError(f"momentum must be in [0, 1), got {config.momentum}")
  if not 0 < config.threshold <= 1:
    raise ValueError(f"threshold must be in (0, 1] (a test accuracy), got "
                     f"{config.threshold}")
  for arm in config.arms:
    for depth in config.depths:
      try:
        network(arm, depth, config.width)
      except ValueError as e:
        reason = getattr(e, "reason", str(e))
        raise ValueError(f"depths: arm {arm} has no network at depth "
                         f"{depth}: {reason}") from None


# --------------------------------------------------------------------------
# Data and networks.

def scale_examples(x: np.ndarray) -> np.ndarray:
  """Each row of ``x (n, d)`` scaled to ``||x||^2 = d`` (float32); an
  all-zero row stays zero."""
  x = np.asarray(x, np.float64)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  scale = np.sqrt(x.shape[1]) / np.where(norms > 0, norms, 1.0)
  return (x * scale).astype(np.float32)


def prepare(dataset: data_lib.Dataset) -> data_lib.Dataset:
  """``dataset`` (standardised by its loader) with every example scaled to
  ``||x||^2 = d`` (:data:`PREPROCESSING`)."""
  if dataset.task != "multiclass":
    raise ValueError(f"dataset {dataset.name!r} is a {dataset.task} task; "
                     "the study classifies (digits, mnist)")
  return dataclasses.replace(
      dataset, x_train=scale_examples(dataset.x_train),
      x_test=scale_examples(dataset.x_test),
      description=f"{dataset.description}; {PREPROCESSING}")


@functools.lru_cache(maxsize=256)
def network(arm: str, depth: int, width: int) -> nn_config.NetworkConfig:
  """The arm's validated network at ``depth`` x ``width`` (a critical
  arm's variances from :func:`vgrad.critical_point`; a transformed
  activation's ``depth`` in ``act_params``, its transform solved once per
  depth: cached). Raises ValueError (ConfigError) where the arm has no
  network, e.g. TAT's leaky ReLU below depth 16."""
  spec = ARMS[arm]
  sigma_w2, sigma_b2 = spec.sigma_w2, spec.sigma_b2
  if spec.critical is not None:
    kind, value = spec.critical
    point = critical.critical_point(spec.act, **{kind: value})
    sigma_w2, sigma_b2 = point.sigma_w2, point.sigma_b2
  return nn_config.NetworkConfig(
      act=spec.act, init=spec.init, depth=depth, width=width,
      sigma_w2=sigma_w2, sigma_b2=sigma_b2)


def transform(arm: str, depth: int, width: int) -> dict:
  """The parameters DKS or TAT solved for the arm's activation at
  ``depth`` (``negative_slope``, ``input_scale``, ...; empty for a plain
  activation)."""
  net = network(arm, depth, width)
  return dict(activations.get_activation(net.act, **net.act_params)
              .transform)


def network_record(net: nn_config.NetworkConfig) -> dict:
  """The network as a cell records it (what a resumed cell must match)."""
  return {"act": net.act, "act_params": dict(net.act_params),
          "init": net.init, "depth": net.depth, "width": net.width,
          "sigma_w2": net.sigma_w2, "sigma_b2": net.sigma_b2}


# --------------------------------------------------------------------------
# The programs of a cell.

def programs(config: TrainabilityConfig,
             model: models.MLP) -> scanned.Programs:
  """The cell's programs for ``model`` (:func:`canonical_model`: arms that
  share an activation and a depth share them) and the config's optimizer
  (:func:`vgrad.training.scanned_mlp.programs`)."""
  return scanned.programs(model, config.optimizer, config.lr,
                          config.momentum, config.batch_size)


# --------------------------------------------------------------------------
# The Jacobian spectrum at initialisation.

def canonical_model(net: nn_config.NetworkConfig,
                    num_outputs: int | None = None) -> models.MLP:
  """``net``'s architecture with a fixed initializer, for the programs
  that never initialise (training, evaluation, the Jacobian probe; without
  ``num_outputs`` the hidden stack alone): one model, hence one compiled
  program, for every arm of an activation at a depth."""
  return models.make_mlp(depth=net.depth, width=net.width, activation=net.act,
                         activation_params=net.act_params, init="orthogonal",
                         num_outputs=num_outputs)


def jacobian_spectra(net: nn_config.NetworkConfig, params: dict,
                     xs: np.ndarray) -> list[dict]:
  """Per seed, the summary (:func:`vgrad.studies.trainability_report.
  jacobian_summary`) of the exact log singular values of ``d x_L / d x_0``
  at the inputs ``xs (B, n_in)``, from the stacked ``params`` of S seeds.
  """
  model = canonical_model(net)
  probe = log_spectrum.make_log_spectrum_probe(model, (net.depth,),
                                               dtype=np.float64)
  host = jax.device_get(params)
  out = []
  for s in range(jax.tree.leaves(host)[0].shape[0]):
    one = jax.tree.map(lambda a, s=s: a[s], host)
    tree = scanned.to_flax(one, net.depth)
    del tree["params"]["readout"]
    with jax.enable_x64(True):
      spectra = probe(tree, np.asarray(xs, np.float32))
      log_sv = np.asarray(spectra.log_singular_values, np.float64)[:, -1]
      bound = np.asarray(spectra.error_bound, np.float64)[:, -1]
    out.append(report.jacobian_summary(log_sv, bound))
  return out


# --------------------------------------------------------------------------
# One cell.

def seed_keys(config: TrainabilityConfig) -> tuple[jax.Array, jax.Array]:
  """Seed ``s`` uses ``key(config.seed + s)`` split into (init, train)
  keys, as :func:`vgrad.studies.training_study.seed_keys`."""
  keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(
      config.seed + jnp.arange(config.seeds))
  return keys[:, 0], keys[:, 1]


def _finite_list(values) -> list:
  return [float(v) if math.isfinite(v) else None
          for v in np.asarray(values, np.float64)]


def run_cell(config: TrainabilityConfig, arm: str, depth: int,
             dataset: data_lib.Dataset,
             tick: Callable[[float], None] | None = None) -> dict:
  """Trains the cell's seeds and returns its record (module docstring).

  ``dataset`` is :func:`prepare`'s; ``tick(fraction)`` reports progress.
  """
  start_time = time.perf_counter()
  net = network(arm, depth, config.width)
  model = models.make_mlp(**net.mlp_kwargs(),
                          num_outputs=dataset.num_outputs)
  p = programs(config, canonical_model(net, dataset.num_outputs))
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  x_test, y_test = jnp.asarray(dataset.x_test), jnp.asarray(dataset.y_test)
  init_keys, train_keys = seed_keys(config)
  params = scanned.init_params(model, dataset.input_dim, init_keys)
  lsuv_variance = None
  if model.data_init == "lsuv":
    params, lsuv_variance = scanned.lsuv_normalize(model, params,
                                           x[:train.LSUV_EXAMPLES])
  jacobian = jacobian_spectra(net, params,
                              dataset.x_train[:config.jacobian_inputs])
  states = p.start(params)
  steps = config.eval_steps()
  curves = {"test_accuracy": [], "test_loss": [], "train_loss": []}

  def record(train_loss):
    loss, accuracy = jax.device_get(p.evaluate(states.params, x_test,
                                               y_test))
    curves["test_accuracy"].append(_finite_list(accuracy))
    curves["test_loss"].append(_finite_list(loss))
    curves["train_loss"].append(
        [None] * config.seeds if train_loss is None
        else _finite_list(train_loss))

  record(None)
  for previous, step in zip(steps, steps[1:]):
    states, train_loss = p.chunk(step - previous)(
        states, train_keys, jnp.int32(previous), x, y)
    record(jax.device_get(train_loss))
    if tick is not None:
      tick(step / config.steps)
  diverged_at = np.asarray(jax.device_get(states.diverged_at))
  seeds = []
  for s in range(config.seeds):
    seed_curves = {k: [row[s] for row in v] for k, v in curves.items()}
    seeds.append(report.seed_record(
        config.seed + s, steps, seed_curves, config.threshold,
        int(diverged_at[s]) or None, jacobian[s]))
    if lsuv_variance is not None:
      seeds[-1]["lsuv_variance"] = _finite_list(
          np.asarray(lsuv_variance)[s])
  return {"schema": SCHEMA, "arm": arm, "depth": depth,
          "network": network_record(net),
          "activation": model.activation.describe(),
          "seeds": seeds, "median": report.cell_medians(seeds),
          "seconds": time.perf_counter() - start_time}


# --------------------------------------------------------------------------
# The run directory.

class SettingsMismatchError(ValueError):
  """The run directory holds a run of other settings."""


def cell_id(arm: str, depth: int) -> str:
  return f"{arm}_d{depth}"


def _valid_cell(record, config: TrainabilityConfig, fp: str) -> bool:
  if not isinstance(record, dict) or record.get("schema") != SCHEMA:
    return False
  arm, depth = record.get("arm"), record.get("depth")
  if arm not in ARMS or not isinstance(depth, int) or depth < 1:
    return False
  try:
    expected = network_record(network(arm, depth, config.width))
  except ValueError:
    return False
  seeds = [s.get("seed") for s in record.get("seeds", [])
           if isinstance(s, dict)]
  return (record.get("fingerprint") == fp
          and record.get("network") == expected
          and seeds == list(range(config.seed, config.seed + config.seeds)))


def read_cells(out_dir: str, config: TrainabilityConfig,
               warn: Callable[[str], None] | None = None) -> dict:
  """``{(arm, depth): record}`` of the whole cell files of this run's
  settings in ``out_dir/cells`` (others reported through ``warn``)."""
  fp = fingerprint(config.settings())
  found = cell_store.read_cells(
      os.path.join(out_dir, CELLS_DIR),
      lambda r: _valid_cell(r, config, fp), warn)
  return {(r["arm"], r["depth"]): r for r in found}


def check_run_dir(out_dir: str, config: TrainabilityConfig) -> str:
  """Before any work: ``"new"`` (absent or empty) or ``"resume"`` (a run
  of the same settings). Raises :class:`SettingsMismatchError` (one line)
  for a directory of other settings or one that is not such a run."""
  if not os.path.lexists(out_dir):
    return "new"
  if not os.path.isdir(out_dir):
    raise SettingsMismatchError(f"{out_dir} exists and is not a folder")
  names = [n for n in os.listdir(out_dir) if not n.startswith(".")]
  if not names:
    return "new"
  path = os.path.join(out_dir, "config.json")
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError):
    raise SettingsMismatchError(
        f"{out_dir} is not empty and holds no readable config.json of a "
        "deep-trainability run; choose another --out_dir") from None
  old = records.upgrade_keys(old) if isinstance(old, dict) else {}
  settings = config.settings()
  if old.get("fingerprint") == fingerprint(settings):
    return "resume"
  before = old.get("settings") or {}
  diff = sorted(k for k in set(before) | set(settings)
                if before.get(k) != settings.get(k))
  raise SettingsMismatchError(
      f"{out_dir} holds a run of other settings (fingerprint "
      f"{old.get('fingerprint')}, here {fingerprint(settings)}: "
      + ", ".join(f"{k} {before.get(k)!r} there, {settings.get(k)!r} here"
                  for k in diff)
      + "); choose another --out_dir or the same settings")


def write_config(out_dir: str, config: TrainabilityConfig,
                 extra: dict | None = None) -> dict:
  """``out_dir/config.json`` (created or rewritten with this grid)."""
  settings = config.settings()
  record = {"schema": SCHEMA, "fingerprint": fingerprint(settings),
            "settings": settings, "arms": list(config.arms),
            "depths": list(config.depths), **(extra or {})}
  os.makedirs(os.path.join(out_dir, CELLS_DIR), exist_ok=True)
  rundir.write_json(os.path.join(out_dir, "config.json"), record)
  return record


@dataclasses.dataclass
class StudyResult:
  """What :func:`run_study` did."""
  results: dict
  computed: int
  reused: int
  seconds: float


def run_study(config: TrainabilityConfig, out_dir: str, dataset:
              data_lib.Dataset | None = None, *,
              progress: Callable[[float, int, int], None] | None = None,
              warn: Callable[[str], None] | None = None,
              extra: dict | None = None) -> StudyResult:
  """Computes every missing cell of ``config`` into ``out_dir`` and
  returns the results dictionary (``results.json``) of the whole grid.

  Args:
    config: the grid; validated first.
    out_dir: the run directory (created; one of the same settings is
      resumed).
    dataset: the loaded dataset (default: loaded by name), prepared here.
    progress: ``progress(done, total, computed)`` with ``done`` the
      (fractional) cells finished.
    warn: one-line warnings (ignored cell files).
    extra: more fields for config.json (the command line, the platform).

  Raises:
    ValueError: a bad config; :class:`SettingsMismatchError`.
  """
  check_config(config)
  check_run_dir(out_dir, config)
  if dataset is None:
    dataset = data_lib.load_dataset(config.dataset)
  data = prepare(dataset)
  write_config(out_dir, config, extra)
  cell_store.remove_stale_temporaries(os.path.join(out_dir, CELLS_DIR))
  fp = fingerprint(config.settings())
  found = read_cells(out_dir, config, warn)
  grid = [(a, d) for d in config.depths for a in config.arms]
  todo = [c for c in grid if c not in found]
  start = time.perf_counter()
  done = len(grid) - len(todo)
  if progress is not None:
    progress(done, len(grid), 0)
  for n, (arm, depth) in enumerate(todo):
    def tick(fraction, base=done + n, n=n):
      if progress is not None:
        progress(base + fraction, len(grid), n)
    record = run_cell(config, arm, depth, data, tick)
    record = {"schema": SCHEMA, "fingerprint": fp} | record
    cell_store.write_cell(os.path.join(out_dir, CELLS_DIR),
                          cell_id(arm, depth), record)
    found[(arm, depth)] = record
    if progress is not None:
      progress(done + n + 1, len(grid), n + 1)
  seconds = time.perf_counter() - start
  cells = [found[c] | {"transform": transform(*c, config.width)}
           for c in grid]
  results = report.make_results(
      config.settings() | {"arms": list(config.arms),
                           "depths": list(config.depths)},
      fp, {a: dataclasses.asdict(ARMS[a]) for a in config.arms},
      {"name": data.name, "description": data.description,
       "train_examples": int(data.x_train.shape[0]),
       "test_examples": int(data.x_test.shape[0]),
       "input_dim": int(data.input_dim), "classes": int(data.num_classes)},
      cells)
  return StudyResult(results, len(todo), len(grid) - len(todo), seconds)
