"""Grids of studies: activation x init x depth x width x seed, sharded and
resumable.

A sweep is a :class:`SweepConfig`: the grid (``acts``, ``inits``,
``depths``, ``widths``), ``seeds`` per cell, and the settings of one task:

* ``'spectrum'``: the exact input-output Jacobian spectrum of a square,
  readout-free MLP at ``num_inputs`` inputs ``x ~ N(0, I_width)``, by the
  stable QR probe (:mod:`vgrad.probes.log_spectrum`, exact at any depth in
  float32), as ``experiments.jacobian_spectrum --method=qr`` computes it;
* ``'train'``: Optax training on a dataset, as ``experiments.train`` trains
  one arm: the final loss and accuracy on the training and test sets, the
  step a seed diverged at, and the gradient ratio ||dL/dW_1|| /
  ||dL/dW_out|| at init and at the end.

Seed ``s`` of a cell uses ``jax.random.key(seed + s)`` split the way the
single-run studies split it, so every row can be reproduced alone with
``experiments.jacobian_spectrum`` or ``experiments.train``.

How it runs. Cells that share an activation, a depth and a width form a
*group*: their parameters have one shape, so the group's (cell, seed) pairs
are one batch axis of length ``B = cells x seeds``, computed by one
compiled program that vmaps a pure per-pair function (the init is chosen
per pair by ``lax.switch`` over the group's initialisers). That batch axis
is sharded over a 1-D ``jax.sharding.Mesh`` of all devices (padded to a
multiple of the device count), so on 4 devices each computes a quarter of
the pairs, and on a multi-host cluster (``jax.distributed.initialize``)
the mesh spans every process's devices.

How it stays lossless. Each finished cell is written as one JSON file in
``out_dir/cells/`` by write-to-temporary, fsync, rename, fsync of the
directory: a cell file is either absent or whole. A rerun of the same sweep
reads the finished cells and computes only the missing ones, so a sweep
killed at any instant (SIGKILL included) loses at most the groups in flight.
``out_dir/sweep.json`` records the settings; a rerun with other settings is
refused (the grid itself may grow: new cells are added). ``results.csv``
consolidates every finished cell, one row per (cell, seed).
"""

from collections.abc import Callable
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

from vgrad.io import cell_store
from vgrad.io import records
from vgrad.io import rundir
from vgrad.io import schemas
from vgrad.nn import activations
from vgrad.nn import config as nn_config
from vgrad.nn import lsuv
from vgrad.nn import models
from vgrad.probes import log_spectrum
from vgrad.studies import sweep_summary
from vgrad.studies import training_study
from vgrad.training import data as data_lib
from vgrad.training import train

SCHEMA = schemas.SWEEP   # sweep.json and every cell file
TASKS = ("spectrum", "train")
AXIS = "cells"
CELLS_DIR = "cells"
CSV_NAME = "results.csv"
# The single parameter an activation spec ``name:value`` sets.
ACT_PARAMETER = {"leaky_relu": "slope", "elu": "alpha", "swish": "beta",
                 "maxout": "k"}
# The grid field a NetworkConfig field comes from (errors name the former).
GRID_FIELDS = {"act": "acts", "act_params": "acts", "init": "inits",
               "depth": "depths", "width": "widths"}
# A training seed has converged when it never diverged and its final
# training loss is at most this fraction of the chance-level loss (the
# cross-entropy of predicting the class prior): it left the plateau.
CONVERGED_LOSS_FRACTION = 0.5
CHUNKS = 10   # training chunks per group: the progress bar's resolution

SPECTRUM_COLUMNS = ("log10_gain", "log10_sv_max", "log10_sv_median",
                    "log10_sv_min", "log10_gain_per_layer", "error_bound",
                    "finite")
TRAIN_COLUMNS = ("train_loss", "train_accuracy", "test_loss",
                 "test_accuracy", "diverged_at", "converged",
                 "grad_ratio_init", "grad_ratio_final")
KEY_COLUMNS = ("cell", "act", "init", "depth", "width", "seed")


def parse_act(spec: str) -> tuple[str, dict]:
  """``'leaky_relu:0.3'`` -> ``('leaky_relu', {'slope': 0.3})``.

  A bare name takes the activation's default parameter. Raises ValueError
  naming the valid names and which activations take a value.
  """
  name, _, value = spec.partition(":")
  params = {}
  if value:
    if name not in ACT_PARAMETER:
      raise ValueError(
          f"activation {spec!r}: only {', '.join(sorted(ACT_PARAMETER))} "
          f"take a value (name:value)")
    try:
      params[ACT_PARAMETER[name]] = (int(value) if name == "maxout"
                                     else float(value))
    except ValueError:
      raise ValueError(f"activation {spec!r}: {value!r} is not a "
                       "number") from None
    if not math.isfinite(params[ACT_PARAMETER[name]]):
      raise ValueError(f"activation {spec!r}: {value!r} is not a finite "
                       "number")
  if name not in activations.TRANSFORMED:   # solved per cell, at its depth
    activations.get_activation(name, **params)   # validates name and value
  return name, params


@dataclasses.dataclass(frozen=True)
class Cell:
  """One grid point; its seeds are the rows of the results."""
  act: str     # an activation spec, e.g. 'relu' or 'leaky_relu:0.3'
  init: str
  depth: int
  width: int

  @property
  def id(self) -> str:
    """A file-name-safe unique name, e.g. ``leaky_relu-0.3_he_normal_d10_w64``.
    """
    return f"{self.act.replace(':', '-')}_{self.init}_d{self.depth}_w" \
           f"{self.width}"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """A grid and the settings every cell shares (see the module docstring).

  The weight variance ``sigma_w2`` applies to the initialisers that take a
  scale (``gaussian``, ``orthogonal``); the bias variance ``sigma_b2`` to
  all. Every cell's network is checked by
  :class:`vgrad.nn.config.NetworkConfig`. The training fields are those of
  :class:`vgrad.studies.training_study.TrainConfig`.
  """
  task: str = "spectrum"
  acts: tuple[str, ...] = ("tanh", "relu")
  inits: tuple[str, ...] = ("glorot_normal", "he_normal")
  depths: tuple[int, ...] = (10,)
  widths: tuple[int, ...] = (64,)
  seeds: int = 4
  seed: int = 0
  sigma_w2: float | None = None
  sigma_b2: float | None = None
  # task 'spectrum'
  num_inputs: int = 4
  # task 'train'
  dataset: str = "digits"
  optimizer: str = "sgd"
  lr: float = 0.01
  momentum: float = 0.9
  steps: int = 1000
  batch_size: int = 64

  def settings(self) -> dict:
    """Everything but the grid: what every cell of a sweep directory shares.
    """
    grid = ("acts", "inits", "depths", "widths")
    fields = {k: v for k, v in dataclasses.asdict(self).items()
              if k not in grid}
    drop = (("dataset", "optimizer", "lr", "momentum", "steps",
             "batch_size") if self.task == "spectrum" else ("num_inputs",))
    return {k: v for k, v in fields.items() if k not in drop}


def settings_digest(settings: dict) -> str:
  """8 hex digits of ``settings`` (sha256 of its sorted JSON): the default
  directory name, so the same command finds its directory again.

  Unset scales (None) are hashed under their names from before the
  variance convention (``sigma_w``, ``sigma_b``), so a command that sets
  neither still finds the directory an older vgrad made for it.
  """
  legacy = {"sigma_w2": "sigma_w", "sigma_b2": "sigma_b"}
  settings = {(legacy[k] if k in legacy and v is None else k): v
              for k, v in settings.items()}
  text = json.dumps(settings, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:8]


def cells(config: SweepConfig) -> list[Cell]:
  """The grid in row-major order (act, init, depth, width)."""
  return [Cell(a, i, d, w) for a in config.acts for i in config.inits
          for d in config.depths for w in config.widths]


def check_config(config: SweepConfig) -> None:
  """ValueError naming the field and the valid values, before any work."""
  if config.task not in TASKS:
    raise ValueError(f"task must be one of {', '.join(TASKS)}, got "
                     f"{config.task!r}")
  for field in ("acts", "inits", "depths", "widths"):
    values = getattr(config, field)
    if not values:
      raise ValueError(f"{field} must name at least one value")
    if len(set(values)) != len(values):
      raise ValueError(f"{field} lists a value twice: {list(values)}")
  for cell in cells(config):
    name, params = parse_act(cell.act)
    try:
      nn_config.NetworkConfig(
          act=name, act_params=params, init=cell.init, depth=cell.depth,
          width=cell.width, sigma_w2=config.sigma_w2,
          sigma_b2=config.sigma_b2)
    except nn_config.ConfigError as e:
      raise ValueError(f"{GRID_FIELDS.get(e.field, e.field)}: "
                       f"{e.reason}") from None
  lows = {"seeds": 1, "num_inputs": 1, "steps": 1, "batch_size": 0}
  for field, lo in lows.items():
    values = getattr(config, field)
    for v in values if isinstance(values, tuple) else (values,):
      if int(v) != v or v < lo:
        raise ValueError(f"{field} must be integers >= {lo}, got {v}")
  if config.seed < 0:
    raise ValueError(f"seed must be >= 0, got {config.seed}")
  if config.task == "train":
    if config.dataset not in data_lib.DATASETS:
      raise ValueError(f"unknown dataset {config.dataset!r}; valid names: "
                       f"{', '.join(sorted(data_lib.DATASETS))}")
    if config.optimizer not in train.OPTIMIZERS:
      raise ValueError(f"unknown optimizer {config.optimizer!r}; valid "
                       f"names: {', '.join(sorted(train.OPTIMIZERS))}")
    if config.lr <= 0:
      raise ValueError(f"lr must be > 0, got {config.lr}")


# ----------------------------------------------------------------- devices


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh (axis ``'cells'``) over the first ``num_devices`` of
  ``jax.devices()`` (all of them, across every process, by default)."""
  devices = jax.devices()
  if num_devices is None or num_devices == 0:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"devices must be in [1, {len(devices)}] (the devices "
                     f"JAX sees), got {num_devices}")
  return Mesh(np.array(devices[:num_devices]), (AXIS,))


def _global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """``host`` (identical on every process) as a global array laid out by
  ``sharding``: each process fills only its own devices' shards."""
  host = np.asarray(host)
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def _to_host(tree):
  """Fetches a (possibly multi-process) sharded result to every host."""
  if jax.process_count() > 1:
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, jax.device_get(tree))


# ------------------------------------------------------------ the programs


def _models(config: SweepConfig, act: str, depth: int, width: int,
            inits: tuple[str, ...], num_outputs: int | None, dtype):
  """One model per init (same apply, same parameter shapes)."""
  name, params = parse_act(act)
  return [models.make_mlp(
      depth=depth, width=width, activation=name, activation_params=params,
      init=init, sigma_w2=config.sigma_w2, sigma_b2=config.sigma_b2,
      num_outputs=num_outputs, param_dtype=dtype) for init in inits]


def _switch(branches: list[Callable], index, *args):
  """``branches[index](*args)``; no switch for a single branch."""
  if len(branches) == 1:
    return branches[0](*args)
  return jax.lax.switch(index, branches, *args)


def _log10(x):
  return x / math.log(10.0)


def spectrum_metrics(log_sv: jax.Array, bound: jax.Array,
                     depth: int) -> dict:
  """Row metrics from the input-output log singular values of one seed.

  Pooled over the inputs the way
  :func:`vgrad.io.spectrum_records.make_record` pools them, so
  ``log10_gain`` is the gain ``experiments.jacobian_spectrum`` reports for the
  same net and inputs.

  Args:
    log_sv: ``(B, k)`` ``log sigma_i`` (nats) of ``B`` inputs, descending;
      ``-inf`` for exact zeros, NaN after a forward overflow.
    bound: ``(B,)`` certified error bounds (nats).
    depth: the number of layers.

  Returns:
    Scalars, base-10 logs over the ``B k`` pooled values:
    ``log10_gain`` = log10 sqrt(mean sigma^2) (the rms gain
    ||J||_F / sqrt(k), averaged in sigma^2 over the inputs),
    ``log10_sv_max``, ``log10_sv_median``, ``log10_sv_min`` (``-inf`` when
    some value is an exact zero), ``log10_gain_per_layer`` = log10_gain /
    depth, the worst ``error_bound`` (nats) and ``finite``; every metric is
    NaN when the forward pass overflowed (``finite`` False).
  """
  pooled = log_sv.reshape(-1)
  finite = jnp.all(~jnp.isnan(pooled))
  gain = 0.5 * (jax.nn.logsumexp(2.0 * pooled) - math.log(pooled.size))
  out = {
      "log10_gain": _log10(gain),
      "log10_sv_max": _log10(jnp.max(pooled)),
      "log10_sv_median": _log10(jnp.median(pooled)),
      "log10_sv_min": _log10(jnp.min(pooled)),
      "error_bound": jnp.max(bound),
  }
  out["log10_gain_per_layer"] = out["log10_gain"] / depth
  # NaN (overflow) must stay NaN: a fused XLA reduction was seen to turn
  # logsumexp of all-NaN inputs into a finite number.
  out = {k: jnp.where(finite, v, jnp.nan) for k, v in out.items()}
  out["finite"] = finite
  return out


def _per_shard(fn: Callable, mesh: Mesh, batched: tuple[bool, ...]):
  """``jit(shard_map(fn))``: each device runs ``fn`` on its own block of the
  batch axis (arguments flagged in ``batched``; the others replicated), and
  the outputs are concatenated back along it.

  No pair ever talks to another, so there must be no collective: under
  plain GSPMD a vmapped ``while_loop`` (LSUV's rounds, the Jacobi sweeps)
  reduces its predicate over the whole batch, i.e. across devices, every
  iteration, which serialises the devices and deadlocked XLA:CPU with 4
  host devices on 2 cores. Under ``shard_map`` each device loops on its own.
  """
  specs = tuple(PartitionSpec(AXIS) if b else PartitionSpec()
                for b in batched)
  # check_vma=False: the library's loops (Jacobi, LSUV, the training scan)
  # start from constants that would otherwise need marking as per-device.
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs,
                               out_specs=PartitionSpec(AXIS),
                               check_vma=False))


def _pair_map(fn: Callable, mesh: Mesh) -> Callable:
  """``f(idx (b,), seed (b,), *shared)``: ``fn(idx_i, seed_i, *shared)`` for
  each pair of a device's block, stacked.

  On accelerators the pairs are vmapped (one batched program). On CPU they
  run one after another (``lax.map``): jaxlib's CPU LAPACK kernels (QR,
  SVD) split a large enough batch over the intra-op thread pool and block a
  pool thread until the pieces finish, so two such calls in flight (two
  simulated devices, or two independent layers' orthogonal inits under
  XLA's concurrent scheduler) on a 2-thread pool wait for each other
  forever. Seen with jax 0.10.2 as a hang with every thread idle;
  unbatched calls run inline and cannot hang. vgrad's own decompositions
  (:mod:`vgrad.nn.linalg`) are unbatched on CPU whatever the caller does;
  the per-pair map keeps the sweep's programs as they were measured. The
  arithmetic is the same; only the batching differs.
  """
  if mesh.devices.flat[0].platform != "cpu":
    return lambda idx, seeds, *shared: jax.vmap(
        lambda i, s: fn(i, s, *shared))(idx, seeds)

  def mapped(idx, seeds, *shared):
    return jax.lax.map(lambda pair: fn(*pair, *shared), (idx, seeds))
  return mapped


def _spectrum_program(config: SweepConfig, act, depth, width, inits,
                      mesh: Mesh):
  """``f(init_index (B,), seed (B,)) -> metrics (B,)``, jitted, sharded."""
  dtype = jnp.float32
  group = _models(config, act, depth, width, inits, None, dtype)
  probe = log_spectrum.make_log_spectrum_probe(group[0], (depth,))

  def one(init_index, seed):
    init_key, data_key = jax.random.split(jax.random.key(seed))
    xs = jax.random.normal(data_key, (config.num_inputs, width), dtype)
    params = _switch([functools.partial(lsuv.initialize, m) for m in group],
                     init_index, init_key, xs)
    if cpu:   # one input at a time: no batched LAPACK call (_pair_map)
      spectra = jax.lax.map(lambda x: probe(params, x[None]), xs)
      spectra = jax.tree.map(lambda a: a[:, 0], spectra)
    else:
      spectra = probe(params, xs)
    return spectrum_metrics(spectra.log_singular_values[:, -1],
                            spectra.error_bound[:, -1], depth)

  cpu = mesh.devices.flat[0].platform == "cpu"
  return _per_shard(_pair_map(one, mesh), mesh, (True, True))


@dataclasses.dataclass(frozen=True)
class _TrainPrograms:
  init: Callable        # (init_index, seed, x) -> (states, train keys)
  chunk: Callable       # num_steps -> (states, keys, start, x, y) -> states
  metrics: Callable     # (states, init params, data...) -> metrics (B,)


def _grad_ratio(probe, params, x, y):
  """||dL/dW_1|| / ||dL/dW_out|| per seed on the batch ``(x, y)``."""
  norms = probe(params, x, y)[1]["grad_norm_w"]
  return norms[:, 0] / norms[:, -1]


def _train_programs(config: SweepConfig, act, depth, width, inits,
                    dataset: data_lib.Dataset, mesh: Mesh) -> _TrainPrograms:
  """The group's jitted programs, each sharded over ``mesh`` (B axis)."""
  loss = train.DEFAULT_LOSS[dataset.task]
  group = _models(config, act, depth, width, inits, dataset.num_outputs,
                  jnp.float32)
  optimizer = train.make_optimizer(config.optimizer, config.lr,
                                   momentum=config.momentum)

  def init_one(init_index, seed, x):
    init_key, train_key = jax.random.split(jax.random.key(seed))
    branches = [functools.partial(train.init_state, m, optimizer)
                for m in group]
    return _switch(branches, init_index, init_key, x), train_key

  step_fn = train.make_step_fn(group[0], optimizer, loss, dataset.task,
                               config.batch_size)
  evaluate = train.make_evaluate(group[0], loss, dataset.task)
  probe = train.make_probe(group[0], loss, dataset.task)

  def final(states, params0, x_train, y_train, x_test, y_test, probe_data):
    tr = evaluate(states.params, x_train, y_train)
    te = evaluate(states.params, x_test, y_test)
    out = {"train_loss": tr["loss"], "test_loss": te["loss"],
           "diverged_at": states.diverged_at}
    if "accuracy" in tr:
      out["train_accuracy"] = tr["accuracy"]
      out["test_accuracy"] = te["accuracy"]
    # Both gradient ratios, at init (params0) and at the end, in one probe
    # of the 2B stacked parameters (per seed, as two calls would be).
    b = states.diverged_at.shape[0]
    both = jax.tree.map(lambda p0, p: jnp.concatenate([p0, p]), params0,
                        states.params)
    ratios = _grad_ratio(probe, both, *probe_data)
    out["grad_ratio_init"] = ratios[:b]
    out["grad_ratio_final"] = ratios[b:]
    return out

  def chunk(num_steps: int) -> Callable:
    run = train.make_train_chunk(step_fn, num_steps)
    return _per_shard(lambda *args: run(*args)[0], mesh,
                      (True, True, False, False, False))

  return _TrainPrograms(
      init=_per_shard(_pair_map(init_one, mesh), mesh, (True, True, False)),
      chunk=chunk,
      metrics=_per_shard(final, mesh, (True, True) + (False,) * 5))


# ----------------------------------------------------------------- storage


def cells_dir(out_dir: str) -> str:
  return os.path.join(out_dir, CELLS_DIR)


def write_cell(out_dir: str, cell: Cell, settings: dict, rows: list[dict],
               seconds: float) -> str:
  """One finished cell, atomically and durably (:mod:`vgrad.io.cell_store`)."""
  return cell_store.write_cell(
      cells_dir(out_dir), cell.id,
      {"schema": SCHEMA, "cell": dataclasses.asdict(cell),
       "settings": settings, "seconds": seconds, "rows": rows})


def _valid_cell(record, settings: dict) -> bool:
  if not isinstance(record, dict) or record.get("schema") != SCHEMA:
    return False
  rows = record.get("rows")
  return (record.get("settings") == settings and isinstance(rows, list)
          and sorted(r.get("seed") for r in rows)
          == list(range(settings["seed"], settings["seed"]
                        + settings["seeds"])))


def read_cells(out_dir: str, settings: dict,
               warn: Callable[[str], None] | None = None) -> dict:
  """``{cell id: record}`` of every whole, matching cell file in ``out_dir``.

  A file that does not parse, or whose settings or seeds differ, is left
  out (and reported through ``warn``): its cell counts as missing and is
  recomputed, then replaced.
  """
  records = cell_store.read_cells(
      cells_dir(out_dir), lambda r: _valid_cell(r, settings), warn)
  return {Cell(**r["cell"]).id: r for r in records}


def _check_sweep_file(out_dir: str, config: SweepConfig,
                      command: str | None = None) -> None:
  """Creates ``sweep.json`` or checks that it records the same settings;
  records the grid and ``command`` (the latest run's) in it."""
  path = os.path.join(out_dir, "sweep.json")
  settings = config.settings()
  if os.path.exists(path):
    with open(path) as f:
      old = records.upgrade_keys(json.load(f)).get("settings")
    if old != settings:
      diff = sorted(k for k in set(old or {}) | set(settings)
                    if (old or {}).get(k) != settings.get(k))
      raise ValueError(
          f"out_dir {out_dir} holds a sweep with other settings ("
          + ", ".join(f"{k}: {(old or {}).get(k)!r} there, "
                      f"{settings.get(k)!r} here" for k in diff)
          + "); choose another out_dir")
  os.makedirs(cells_dir(out_dir), exist_ok=True)
  grid = {k: list(getattr(config, k)) for k in ("acts", "inits", "depths",
                                                 "widths")}
  record = {"schema": SCHEMA, "settings": settings, "grid": grid}
  if command:
    record["command"] = command
  rundir.write_json(path, record)


def read_sweep(out_dir: str, warn: Callable[[str], None] | None = None
               ) -> tuple[dict, list[dict]]:
  """``(sweep.json, rows of every finished cell)`` of a sweep directory,
  from the saved files alone; a cell file that cannot be read or does not
  belong to the sweep is left out and reported through ``warn``.

  Raises:
    ValueError: ``out_dir`` holds no readable sweep.
  """
  path = os.path.join(out_dir, "sweep.json")
  try:
    with open(path) as f:
      record = records.upgrade_keys(json.load(f))
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read {path}: {e}") from None
  record = schemas.check_schema(record, SCHEMA, path)
  settings = record["settings"]
  return record, rows_of(read_cells(out_dir, settings, warn),
                         settings["task"])


def rows_of(records: dict, task: str) -> list[dict]:
  """The CSV rows (one per cell and seed), sorted by (act, init, depth,
  width, seed)."""
  columns = SPECTRUM_COLUMNS if task == "spectrum" else TRAIN_COLUMNS
  out = []
  order = lambda i: tuple(records[i]["cell"][k] for k in (
      "act", "init", "depth", "width"))
  for cell_id in sorted(records, key=order):
    record = records[cell_id]
    cell = record["cell"]
    for row in sorted(record["rows"], key=lambda r: r["seed"]):
      out.append({"cell": cell_id, **cell, "seed": row["seed"]}
                 | {c: cell_store.from_json(row.get(c)) for c in columns})
  return out


def write_csv(path: str, rows: list[dict], task: str) -> None:
  """``rows`` as ``results.csv`` (:func:`vgrad.io.cell_store.write_csv`)."""
  cell_store.write_csv(path, KEY_COLUMNS + (
      SPECTRUM_COLUMNS if task == "spectrum" else TRAIN_COLUMNS), rows)


def consolidate(out_dir: str, task: str, settings: dict) -> list[dict]:
  """Rewrites ``out_dir/results.csv`` from the cell files; returns rows."""
  rows = rows_of(read_cells(out_dir, settings), task)
  write_csv(os.path.join(out_dir, CSV_NAME), rows, task)
  return rows


# --------------------------------------------------------------- the sweep


@dataclasses.dataclass
class SweepResult:
  """What :func:`run_sweep` did: rows of every finished cell in the
  directory, cells computed now and reused from an earlier run."""
  rows: list[dict]
  computed: int
  reused: int
  seconds: float
  devices: int


def groups(todo: list[Cell]) -> list[tuple[tuple, list[Cell]]]:
  """Cells sharing (act, depth, width), in grid order."""
  out: dict[tuple, list[Cell]] = {}
  for cell in todo:
    out.setdefault((cell.act, cell.depth, cell.width), []).append(cell)
  return list(out.items())


def _batch(group_cells: list[Cell], inits: tuple[str, ...],
           config: SweepConfig, devices: int):
  """Host ``(init_index (P,), seed (P,))`` for every (cell, seed) pair,
  padded with copies of the last pair to a multiple of ``devices``; and
  the number ``B`` of real pairs."""
  idx = [inits.index(c.init) for c in group_cells for _ in range(
      config.seeds)]
  seeds = [config.seed + s for _ in group_cells for s in range(config.seeds)]
  b = len(idx)
  pad = -b % devices
  return (np.array(idx + idx[-1:] * pad, np.int32),
          np.array(seeds + seeds[-1:] * pad, np.int32), b)


def _json_value(v):
  v = v.item() if hasattr(v, "item") else v
  if isinstance(v, float) and not math.isfinite(v):
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
  return v


def _rows(metrics: dict, group_cells: list[Cell], config: SweepConfig,
          extra: Callable[[dict], dict] | None = None) -> dict:
  """``{cell id: [row per seed]}`` from host metrics with a batch axis."""
  out = {}
  for c, cell in enumerate(group_cells):
    rows = []
    for s in range(config.seeds):
      i = c * config.seeds + s
      row = {"seed": config.seed + s}
      row |= {k: _json_value(v[i]) for k, v in metrics.items()}
      if extra is not None:
        row |= extra(row)
      rows.append(row)
    out[cell.id] = rows
  return out


def converged(row: dict, chance: float | None) -> bool:
  """Never diverged and, for classification, left the chance plateau:
  final training loss <= CONVERGED_LOSS_FRACTION x chance-level loss."""
  loss = cell_store.from_json(row.get("train_loss"))
  if row.get("diverged_at") or loss is None or not math.isfinite(loss):
    return False
  return chance is None or loss <= CONVERGED_LOSS_FRACTION * chance


class _Runner:
  """Runs the groups of one sweep on one mesh."""

  def __init__(self, config: SweepConfig, mesh: Mesh,
               dataset: data_lib.Dataset | None):
    self.config, self.mesh, self.dataset = config, mesh, dataset
    self.batched = NamedSharding(mesh, PartitionSpec(AXIS))
    self.replicated = NamedSharding(mesh, PartitionSpec())
    if dataset is not None:
      self.data = tuple(_global_array(a, self.replicated) for a in (
          dataset.x_train[:training_study.EVAL_EXAMPLES],
          dataset.y_train[:training_study.EVAL_EXAMPLES],
          dataset.x_test, dataset.y_test))
      self.x_full = _global_array(dataset.x_train, self.replicated)
      self.y_full = _global_array(dataset.y_train, self.replicated)
      n = training_study.PROBE_EXAMPLES
      self.probe_data = tuple(_global_array(a[:n], self.replicated)
                              for a in (dataset.x_train, dataset.y_train))
      self.chance = training_study.chance_loss(
          dataset, train.DEFAULT_LOSS[dataset.task])

  def run_group(self, key: tuple, group_cells: list[Cell],
                tick: Callable[[float], None]) -> dict:
    """``{cell id: rows}``; ``tick(fraction)`` reports progress in it."""
    act, depth, width = key
    inits = tuple(dict.fromkeys(c.init for c in group_cells))
    idx, seeds, b = _batch(group_cells, inits, self.config,
                           self.mesh.devices.size)
    idx = _global_array(idx, self.batched)
    seeds = _global_array(seeds, self.batched)
    if self.config.task == "spectrum":
      program = _spectrum_program(self.config, act, depth, width, inits,
                                  self.mesh)
      metrics = _to_host(program(idx, seeds))
      tick(1.0)
    else:
      metrics = self._train(act, depth, width, inits, idx, seeds, tick)
    metrics = {k: v[:b] for k, v in metrics.items()}
    extra = None
    if self.config.task == "train":
      extra = lambda row: {"converged": converged(row, self.chance)}
    return _rows(metrics, group_cells, self.config, extra)

  def _train(self, act, depth, width, inits, idx, seeds, tick) -> dict:
    c = self.config
    p = _train_programs(c, act, depth, width, inits, self.dataset,
                        self.mesh)
    states, keys = p.init(idx, seeds, self.x_full)
    params0 = states.params
    size = math.ceil(c.steps / CHUNKS)
    chunks = {}
    done = 0
    while done < c.steps:
      n_steps = min(size, c.steps - done)
      if n_steps not in chunks:
        chunks[n_steps] = p.chunk(n_steps)
      states = chunks[n_steps](states, keys, np.int32(done), self.x_full,
                               self.y_full)
      done += n_steps
      jax.block_until_ready(states.diverged_at)
      tick(done / c.steps)
    metrics = p.metrics(states, params0, *self.data, self.probe_data)
    return _to_host(metrics)


def _done_mask(out_dir: str, grid: list[Cell], settings: dict,
               warn: Callable[[str], None]) -> np.ndarray:
  """Which grid cells have a finished file; decided by process 0 and
  broadcast, so every process computes the same remaining cells."""
  done = np.zeros(len(grid), np.int32)
  if jax.process_index() == 0:
    finished = read_cells(
        out_dir, settings,
        lambda line: warn(f"{line}; its cell will be recomputed"))
    done = np.array([cell.id in finished for cell in grid], np.int32)
  if jax.process_count() > 1:
    done = np.asarray(multihost_utils.broadcast_one_to_all(done))
  return done.astype(bool)


def run_sweep(config: SweepConfig, out_dir: str, *,
              num_devices: int | None = None,
              dataset: data_lib.Dataset | None = None,
              progress: Callable[[float, int, int], None] | None = None,
              warn: Callable[[str], None] | None = None,
              command: str | None = None) -> SweepResult:
  """Computes every missing cell of ``config`` into ``out_dir``.

  Args:
    config: the sweep; validated first.
    out_dir: the sweep directory (created; an existing one with the same
      settings is resumed).
    num_devices: devices of the mesh (default: all devices of all
      processes).
    dataset: for ``task='train'``, the loaded dataset (default: loaded by
      name; pass it to use a ``data_dir``).
    progress: called as ``progress(done, total, computed)`` with ``done``
      the (fractional) number of finished cells of the grid.
    warn: receives one-line warnings (ignored cell files).
    command: the command line, recorded in ``sweep.json``.

  Returns:
    A :class:`SweepResult`; ``out_dir/results.csv`` holds its rows.

  Raises:
    ValueError: a bad config, device count or a directory holding other
      settings.
  """
  check_config(config)
  mesh = make_mesh(num_devices)
  warn = warn or (lambda line: print(f"warning: {line}", file=sys.stderr))
  settings = config.settings()
  writer = jax.process_index() == 0
  if writer:
    _check_sweep_file(out_dir, config, command)
    cell_store.remove_stale_temporaries(out_dir, cells_dir(out_dir))
  grid = cells(config)
  done = _done_mask(out_dir, grid, settings, warn)
  todo = [cell for cell, d in zip(grid, done) if not d]
  if config.task == "train" and todo and dataset is None:
    dataset = data_lib.load_dataset(config.dataset)
  if dataset is not None and dataset.name != config.dataset:
    raise ValueError(f"dataset {dataset.name!r} was passed for a sweep of "
                     f"dataset {config.dataset!r}")
  runner = _Runner(config, mesh, dataset if config.task == "train" else None)
  start = time.perf_counter()
  finished = int(done.sum())
  if progress is not None:
    progress(finished, len(grid), 0)
  computed = 0
  for key, group_cells in groups(todo):
    t0 = time.perf_counter()
    n = len(group_cells)

    def tick(fraction, base=finished, n=n, computed=computed):
      if progress is not None:
        progress(base + fraction * n, len(grid), computed)

    rows = runner.run_group(key, group_cells, tick)
    seconds = (time.perf_counter() - t0) / n
    if writer:
      for cell in group_cells:
        write_cell(out_dir, cell, settings, rows[cell.id], seconds)
    finished += n
    computed += n
    if progress is not None:
      progress(finished, len(grid), computed)
  seconds = time.perf_counter() - start
  rows = (consolidate(out_dir, config.task, settings) if writer
          else [])
  return SweepResult(rows, computed, len(grid) - len(todo), seconds,
                     mesh.devices.size)


# ----------------------------------------------------------------- summary


# Per-cell summaries live in a module without JAX, for the plots.
PRIMARY = sweep_summary.PRIMARY
summarize = sweep_summary.summarize
format_summary = sweep_summary.format_summary
