"""Tests of vgrad.studies.sweep and experiments.sweep: the grid computes what the
single-run studies compute, shards without changing a number, and never
loses, duplicates or corrupts a finished cell."""

import atexit
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import tempfile
import textwrap
import time

from absl.testing import absltest
from absl.testing import parameterized
import chex
import cli_testing
import jax
import numpy as np
import pandas as pd
import pytest

from vgrad.nn import lsuv
from vgrad.nn import models
from vgrad.plots import sweep_plots
from vgrad.studies import spectrum_study
from vgrad.studies import sweep
from vgrad.studies import sweep_summary
from vgrad.studies import training_study
from vgrad.training import data

# The spectrum grid of the file: the library tests, the multi-process run
# and the command-line runs all use it (the command line as flags), so its
# two groups' programs compile once per test run (the persistent compilation
# cache of tests/conftest.py serves every later in-process sweep and every
# subprocess of the same program). 3 seeds: B = 6 pairs per group, padded to
# 8 on the multi-process test's 4 devices.
SPECTRUM = sweep.SweepConfig(task="spectrum", acts=("tanh", "relu"),
                             inits=("orthogonal", "glorot_normal"),
                             depths=(3,), widths=(8,), seeds=3,
                             num_inputs=2)
# ReLU with sigma_w2 = 1e24: activations grow by sqrt(sigma_w2 / 2) ~ 7e11
# per layer (rms ~ 4e35 at layer 3) and pass float32's 3e38 at layer 4; at
# width 8 layer 5 adds +inf and -inf (the forward pass is NaN from there).
# Shared by the library test and the command line's case (one program).
OVERFLOW = sweep.SweepConfig(task="spectrum", acts=("relu",),
                             inits=("gaussian",), depths=(5,), widths=(8,),
                             seeds=1, num_inputs=1, sigma_w2=1e24)


def _flags(config: sweep.SweepConfig) -> list[str]:
  """The experiments.sweep flags of a spectrum sweep config."""
  flags = [f"--acts={','.join(config.acts)}",
           f"--inits={','.join(config.inits)}",
           f"--depths={','.join(map(str, config.depths))}",
           f"--widths={','.join(map(str, config.widths))}",
           f"--seeds={config.seeds}", f"--num_inputs={config.num_inputs}"]
  if config.sigma_w2 is not None:
    flags.append(f"--sigma_w2={config.sigma_w2!r}")
  return flags


@functools.cache
def _spectrum_sweep() -> tuple[str, sweep.SweepResult]:
  """The SPECTRUM sweep, run once per process: ``(its directory, result)``.
  Tests copy the directory before changing anything in it."""
  root = tempfile.mkdtemp(prefix="sweep_test-")
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  out = os.path.join(root, "spectrum_sweep")
  return out, sweep.run_sweep(SPECTRUM, out)


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


# phi and phi' in float64 numpy, for the activations of SPECTRUM.
_NUMPY_ACTS = {"tanh": (np.tanh, lambda h: 1.0 - np.tanh(h) ** 2),
               "relu": (lambda h: np.maximum(h, 0.0),
                        lambda h: (h > 0).astype(np.float64))}


def _direct_spectrum_row(cell: sweep.Cell, seed: int, num_inputs: int):
  """The row recomputed without the sweep: the same keys and parameters,
  the Jacobian J = D_L W_L^T ... D_1 W_1^T (D_l = diag phi'(h_l)) of the
  same float32 net and inputs in float64 numpy per input, and a dense SVD.
  (numpy, not jax.jacrev: nothing here compiles.)"""
  name, params = sweep.parse_act(cell.act)
  model = models.make_mlp(depth=cell.depth, width=cell.width,
                          activation=name, activation_params=params,
                          init=cell.init)
  init_key, data_key = jax.random.split(jax.random.key(seed))
  xs = jax.random.normal(data_key, (num_inputs, cell.width))
  p = lsuv.initialize(model, init_key, xs)["params"]
  assert set(p) == {f"layers_{l}" for l in range(cell.depth)}, set(p)
  phi, dphi = _NUMPY_ACTS[name]
  sv = []
  for x in np.asarray(xs, np.float64):
    jac = np.eye(cell.width)
    for l in range(cell.depth):
      kernel = np.asarray(p[f"layers_{l}"]["kernel"], np.float64)
      h = x @ kernel + np.asarray(p[f"layers_{l}"]["bias"], np.float64)
      jac = (dphi(h)[:, None] * kernel.T) @ jac
      x = phi(h)
    sv.append(np.linalg.svd(jac, compute_uv=False))
  sv = np.stack(sv)
  with np.errstate(divide="ignore"):   # a float64 SVD may return 0 too
    return {"log10_gain": 0.5 * np.log10(np.mean(sv ** 2)),
            "log10_sv_max": np.log10(sv.max()),
            "log10_sv_median": np.median(np.log10(sv)),   # as vgrad pools
            "log10_sv_min": np.log10(sv.min())}


class SweepLibraryTest(parameterized.TestCase):
  """The tests that use the SPECTRUM sweep compute it (once per process,
  two compiled groups) and are marked slow; the config checks are not."""

  @property
  def out(self) -> str:
    return _spectrum_sweep()[0]

  @property
  def result(self) -> sweep.SweepResult:
    return _spectrum_sweep()[1]

  @pytest.mark.slow
  def test_every_cell_and_seed_once(self):
    self.assertEqual(self.result.computed, 4)
    self.assertEqual(self.result.reused, 0)
    keys = [(r["cell"], r["seed"]) for r in self.result.rows]
    self.assertLen(keys, 4 * SPECTRUM.seeds)
    self.assertLen(set(keys), 4 * SPECTRUM.seeds)
    self.assertLen(os.listdir(sweep.cells_dir(self.out)), 4)

  @pytest.mark.slow
  def test_rows_equal_the_direct_jacobian(self):
    # The reference is the float64 Jacobian of the same float32 net. The
    # sweep's float32 QR probe perturbs each factor D_l W_l only through
    # phi'(h_l) (relative ~1e-7 per entry), a diagonal scaling that moves
    # every singular value, even the smallest (~1e-8 of the largest here),
    # by ~1e-6 relative: ~1e-6 in log10. 1e-4 leaves room and still catches
    # any wrong key, init, input or metric (those move values by >= 1e-2).
    for row in self.result.rows:
      cell = sweep.Cell(row["act"], row["init"], row["depth"], row["width"])
      want = _direct_spectrum_row(cell, row["seed"], SPECTRUM.num_inputs)
      for k, v in want.items():
        if row[k] == -np.inf:
          # An exact zero (a unit inactive in some layer caps the rank;
          # at width 8 it can be most of the values): the dense SVD
          # returns it as rounding noise, far below the top.
          self.assertEqual(row["act"], "relu")
          self.assertIn(k, ("log10_sv_min", "log10_sv_median"))
          self.assertLess(v, want["log10_sv_max"] - 6)
          continue
        self.assertAlmostEqual(row[k], v, delta=1e-4, msg=(row["cell"], k))
      # The gain experiments.jacobian_spectrum reports for the same seed
      # (one row: each run_study compiles its own probe).
      if (row["act"], row["init"], row["seed"]) == ("tanh", "orthogonal", 1):
        name, params = sweep.parse_act(row["act"])
        results = spectrum_study.run_study(spectrum_study.SpectrumConfig(
            act=name, act_params=params, init=row["init"], depth=row["depth"],
            width=row["width"], num_inputs=SPECTRUM.num_inputs,
            seed=row["seed"], method="qr"))
        self.assertAlmostEqual(
            row["log10_gain"],
            spectrum_study.log_gain(results["input_output"]) / np.log(10),
            delta=1e-5)
      self.assertTrue(row["finite"])
      self.assertAlmostEqual(row["log10_gain_per_layer"],
                             row["log10_gain"] / row["depth"], places=6)

  @pytest.mark.slow
  def test_csv_reads_with_pandas(self):
    frame = pd.read_csv(os.path.join(self.out, sweep.CSV_NAME))
    chex.assert_shape(frame.values, (4 * SPECTRUM.seeds,
                                     len(sweep.KEY_COLUMNS)
                                     + len(sweep.SPECTRUM_COLUMNS)))
    self.assertEqual(frame["finite"].dtype, bool)
    for column in sweep.SPECTRUM_COLUMNS[:-1]:
      self.assertEqual(frame[column].dtype, np.float64, column)
    self.assertFalse(frame.duplicated(["cell", "seed"]).any())
    mine = {(r["cell"], r["seed"]): r["log10_gain"] for r in self.result.rows}
    for _, line in frame.iterrows():
      self.assertEqual(line["log10_gain"], mine[(line["cell"], line["seed"])])

  @pytest.mark.slow
  def test_rerun_computes_only_missing_and_corrupt_cells(self):
    out = self.create_tempdir().full_path + "/s"
    shutil.copytree(self.out, out)
    files = sorted(os.listdir(sweep.cells_dir(out)))
    os.remove(os.path.join(sweep.cells_dir(out), files[0]))
    with open(os.path.join(sweep.cells_dir(out), files[1]), "w") as f:
      f.write('{"schema": "vgrad.sweep/1", "rows": [')   # a torn write
    untouched = {n: _read(os.path.join(sweep.cells_dir(out), n))
                 for n in files[2:]}
    warnings = []
    result = sweep.run_sweep(SPECTRUM, out, warn=warnings.append)
    self.assertEqual((result.computed, result.reused), (2, 2))
    self.assertLen(warnings, 1)
    self.assertIn(files[1], warnings[0])
    for name, text in untouched.items():
      self.assertEqual(_read(os.path.join(sweep.cells_dir(out), name)), text)
    # Recomputed cells equal the first run's (they ran in a smaller batch:
    # the same per-pair program, so equal up to float32 rounding).
    first = {(r["cell"], r["seed"]): r for r in self.result.rows}
    self.assertLen(result.rows, len(first))
    for row in result.rows:
      old = first[(row["cell"], row["seed"])]
      for k in ("log10_gain", "log10_sv_max", "log10_sv_min"):
        self.assertAlmostEqual(row[k], old[k], delta=1e-5)

  @pytest.mark.slow
  def test_larger_grid_reuses_cells_other_settings_refused(self):
    # A sweep of tanh alone grown to SPECTRUM's tanh and relu: the relu
    # cells are computed, the tanh ones reused. (Both groups are SPECTRUM's
    # own programs: no new compilation.)
    out = self.create_tempdir().full_path + "/s"
    smaller = sweep.SweepConfig(**{**SPECTRUM.__dict__, "acts": ("tanh",)})
    first = sweep.run_sweep(smaller, out)
    self.assertEqual((first.computed, first.reused), (2, 0))
    self.assertLen(first.rows, 2 * SPECTRUM.seeds)
    tanh_cells = {n: _read(os.path.join(sweep.cells_dir(out), n))
                  for n in os.listdir(sweep.cells_dir(out))}
    result = sweep.run_sweep(SPECTRUM, out)
    self.assertEqual((result.computed, result.reused), (2, 2))
    self.assertLen(result.rows, 4 * SPECTRUM.seeds)
    for name, text in tanh_cells.items():   # reused, not rewritten
      self.assertEqual(_read(os.path.join(sweep.cells_dir(out), name)), text)
    other = sweep.SweepConfig(**{**SPECTRUM.__dict__, "num_inputs": 3})
    with self.assertRaisesRegex(ValueError, "num_inputs: 2 there, 3 here"):
      sweep.run_sweep(other, out)

  @pytest.mark.slow
  def test_overflow_is_recorded_not_crashed_on(self):
    # OVERFLOW: ReLU at sigma_w2 = 1e24 overflows float32 at layer 4 and is
    # NaN from layer 5 (see OVERFLOW).
    out = self.create_tempdir().full_path + "/s"
    result = sweep.run_sweep(OVERFLOW, out)
    (row,) = result.rows
    self.assertFalse(row["finite"])
    self.assertTrue(np.isnan(row["log10_gain"]))
    frame = pd.read_csv(os.path.join(out, sweep.CSV_NAME))
    self.assertTrue(np.isnan(frame["log10_gain"][0]))
    self.assertIn("| relu | gaussian | 5 | 8 | — | 0/1 |",
                  sweep.format_summary(result.rows, "spectrum"))

  @pytest.mark.slow
  def test_gallery_redraws_the_sweep(self):
    from vgrad.cli import gallery  # pylint: disable=g-import-not-at-top
    runs = self.create_tempdir().full_path
    shutil.copytree(self.out, os.path.join(runs, "s"))
    figures = os.path.join(runs, "figures")
    (entry,) = gallery.generate(runs, figures)
    self.assertEqual(entry.run.kind, "sweep")
    for ext in ("png", "pdf"):
      self.assertTrue(os.path.exists(os.path.join(figures,
                                                  f"{entry.stem}.{ext}")))
    self.assertIn("python -m experiments.sweep --replot=",
                  _read(os.path.join(figures, "README.md")))

  @parameterized.named_parameters(
      ("unknown_task", {"task": "fit"}, "task must be one of spectrum"),
      ("unknown_act", {"acts": ("sigmod",)}, "unknown activation 'sigmod'"),
      ("act_value", {"acts": ("tanh:2",)}, "only elu, leaky_relu"),
      ("act_not_number", {"acts": ("elu:x",)}, "'x' is not a number"),
      ("unknown_init", {"inits": ("nope",)}, "unknown initializer"),
      ("repeated", {"depths": (3, 3)}, "depths lists a value twice"),
      ("zero_width", {"widths": (0,)}, "widths: must be an integer >= 1"),
      ("zero_depth", {"depths": (2, 0)}, "depths: must be an integer >= 1"),
      ("sigma_w2_fixed_init", {"sigma_w2": 1.0},
       "sigma_w2: applies only to init"),
      ("negative_sigma_b2", {"sigma_b2": -1.0}, "sigma_b2: must be"),
      ("no_seeds", {"seeds": 0}, "seeds must be integers >= 1"),
  )
  def test_bad_config(self, change, message):
    with self.assertRaisesRegex(ValueError, message):
      sweep.check_config(sweep.SweepConfig(**{**SPECTRUM.__dict__, **change}))

  def test_parse_act(self):
    self.assertEqual(sweep.parse_act("leaky_relu:0.3"),
                     ("leaky_relu", {"slope": 0.3}))
    self.assertEqual(sweep.parse_act("maxout:3"), ("maxout", {"k": 3}))
    self.assertEqual(sweep.parse_act("gelu"), ("gelu", {}))
    self.assertEqual(sweep.Cell("leaky_relu:0.3", "he_normal", 10, 64).id,
                     "leaky_relu-0.3_he_normal_d10_w64")


# The training grid of the file: tanh (a smooth net: the 4-device run
# below equals this one to float32 rounding; a ReLU unit can flip across its
# kink and move a loss by 1e-5). Depth 2 keeps a hidden layer between the
# two ends of the gradient ratio (the first layer and the readout); width
# 10 makes the hidden and readout kernels one shape (10, 10), so the direct
# run's eager initialisers compile for two shapes, not three. 2 inits x 2
# seeds: B = 4 pairs, one per device on 4 devices.
TRAIN = sweep.SweepConfig(task="train", acts=("tanh",),
                          inits=("he_normal", "lsuv"), depths=(2,),
                          widths=(10,), seeds=2, steps=20, lr=0.05,
                          batch_size=32)


@functools.cache
def _train_sweep() -> list[dict]:
  """The TRAIN sweep's rows on one device, run once per process."""
  root = tempfile.mkdtemp(prefix="sweep_test-")
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  return sweep.run_sweep(TRAIN, os.path.join(root, "t"),
                         dataset=data.load_dataset("digits")).rows


@pytest.mark.slow
class SweepTrainTest(absltest.TestCase):

  def test_rows_equal_experiments_train(self):
    """A training cell is exactly the arm experiments.train trains."""
    digits = data.load_dataset("digits")
    rows = _train_sweep()
    self.assertLen(rows, 4)
    chance = training_study.chance_loss(digits, "categorical_cross_entropy")
    for init in TRAIN.inits:
      arm = training_study.run_training(training_study.TrainConfig(
          dataset="digits", act="tanh", init=init, depth=2, width=10,
          optimizer="sgd", lr=0.05, steps=20, batch_size=32, seeds=2,
          log_every=20), digits)
      for s, final in enumerate(arm["seeds"]):
        row = next(r for r in rows if r["init"] == init and r["seed"] == s)
        f = final["final"]
        # Same keys and the same per-seed program: float32 rounding only.
        self.assertAlmostEqual(row["train_loss"], f["train_loss"], delta=1e-5)
        self.assertAlmostEqual(row["test_accuracy"], f["test_accuracy"],
                               delta=1e-6)
        self.assertEqual(row["converged"],
                         f["train_loss"] <= 0.5 * chance)
        g0 = arm["history"]["grad_norm_w"][0][s]
        self.assertAlmostEqual(row["grad_ratio_init"], g0[0] / g0[-1],
                               delta=1e-5 * row["grad_ratio_init"])



@pytest.mark.slow
class GroupingTest(absltest.TestCase):
  """How much a cell's numbers depend on the cells it is batched with.
  The inits of one shape share a compiled program (a ``lax.switch`` picks
  each pair's init; the pairs are one batch), and the number of seeds
  sets the batch's shape: the same cell and seed computed beside other
  inits, alone, or with fewer seeds agree to float32 rounding (measured:
  2e-7 relative, in the gradient ratio at init). Training can amplify that
  rounding (an LSUV cell of the activation table: test accuracy 0.9499
  beside the other inits, 0.9554 alone, after 2000 steps); README, "How it
  runs"."""

  def test_a_cell_beside_other_inits_alone_or_with_fewer_seeds(self):
    root = self.create_tempdir().full_path
    digits = data.load_dataset("digits")
    keys = ("train_loss", "test_accuracy", "grad_ratio_init",
            "grad_ratio_final")
    beside = _train_sweep()
    for init in TRAIN.inits:
      alone = sweep.run_sweep(dataclasses.replace(TRAIN, inits=(init,)),
                              os.path.join(root, init), dataset=digits).rows
      for row in alone:
        (other,) = [r for r in beside
                    if r["init"] == init and r["seed"] == row["seed"]]
        for k in keys:
          self.assertAlmostEqual(row[k], other[k], delta=1e-6 * abs(other[k]))
    (one,) = sweep.run_sweep(
        dataclasses.replace(TRAIN, inits=("he_normal",), seeds=1),
        os.path.join(root, "one"), dataset=digits).rows
    (two,) = [r for r in beside
              if r["init"] == "he_normal" and r["seed"] == 0]
    for k in keys:
      self.assertAlmostEqual(one[k], two[k], delta=1e-6 * abs(two[k]))

# The 4-device run of TRAIN: the 1-device rows it is compared with are this
# test process's own (_train_sweep), computed once for the whole file.
MESH_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from vgrad.studies import sweep
    assert jax.device_count() == 4, jax.devices()
    out = {}
    for name, config in json.loads(sys.argv[2]).items():
      r = sweep.run_sweep(sweep.SweepConfig(**config), f"{sys.argv[1]}/{name}",
                          num_devices=4)
      out[name] = {"devices": r.devices, "rows": r.rows}
    mesh = sweep.make_mesh()
    array = sweep._global_array(list(range(8)), jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(sweep.AXIS)))
    out["shards"] = [s.data.tolist() for s in array.addressable_shards]
    print(json.dumps(out))
""")


def _as_json(config: sweep.SweepConfig) -> dict:
  return {k: list(v) if isinstance(v, tuple) else v
          for k, v in config.__dict__.items()}


@pytest.mark.slow
class ShardedSweepTest(absltest.TestCase):

  def test_four_devices_equal_one(self):
    """On 4 simulated CPU devices of one process the pairs are split 4 ways
    (TRAIN, with LSUV beside He init: B = 4) and every number equals the
    1-device run's; a batch of 8 is split 2 per device. (The spectrum
    group's 4-way split, B = 6 padded to 8, is MultiProcessTest's, on a
    4-device mesh of two processes. The sizes that once hung 4 CPU devices
    are tests/linalg_test.py's: their programs make no batched LAPACK
    call.)"""
    tmp = self.create_tempdir().full_path
    configs = {"train": _as_json(TRAIN)}
    proc = cli_testing.run_python(MESH_SCRIPT, tmp, json.dumps(configs),
                                  cwd=tmp, num_cpu_devices=4, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    out = json.loads(proc.stdout)
    self.assertEqual(out["shards"], [[0, 1], [2, 3], [4, 5], [6, 7]])
    ones = {"train": _train_sweep()}
    for name, one in ones.items():
      four = out[name]
      self.assertEqual(four["devices"], 4)
      self.assertLen(four["rows"], len(one))
      self.assertNotEmpty(one)
      key = lambda r: (r["cell"], r["seed"])  # noqa: E731
      for a, b in zip(sorted(one, key=key), sorted(four["rows"], key=key)):
        self.assertEqual(a.keys(), b.keys())
        for k, v in a.items():
          # The same per-pair program on another slice of the batch: the
          # batched GEMMs (4 pairs on one device, 1 per device on 4) may sum
          # in other orders, ~1e-7 relative per step, and a smooth (tanh)
          # net carries that through 20 steps at ~1e-6. (A ReLU net does
          # not: one rounding can flip a unit across the kink and move its
          # loss by 1e-5 and its gradients by 1e-3, as measured.) 1e-5
          # relative still catches a wrong pair, key or padding, which
          # change the metrics at the 1e-2 level.
          if isinstance(v, float):
            self.assertAlmostEqual(v, b[k], delta=1e-5 * max(1.0, abs(v)),
                                   msg=(name, k))
          else:
            self.assertEqual(v, b[k], (name, k))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
class MultiProcessTest(absltest.TestCase):

  def test_two_processes_equal_one(self):
    """--distributed: 2 processes x 2 CPU devices (jax.distributed with the
    CPU collectives) form one 4-device mesh; process 0 writes results that
    equal a single process's: SPECTRUM's tanh group, whose rows the
    SPECTRUM sweep run in this process holds (B = 6 pairs, padded to 8 on
    the 4 devices; one group, not two, for the two processes to compile)."""
    cwd = self.create_tempdir().full_path
    grid = _flags(sweep.SweepConfig(**{**SPECTRUM.__dict__,
                                       "acts": ("tanh",)}))
    port = _free_port()
    # Two children of the forkserver (the imports already paid, no JAX
    # backend started yet), each on 2 CPU devices.
    procs = [cli_testing.start_module(
        "experiments.sweep", *grid, "--distributed",
        f"--coordinator_address=localhost:{port}", "--num_processes=2",
        f"--process_id={i}", f"--out_dir={cwd}/multi", cwd=cwd,
        num_cpu_devices=2) for i in range(2)]
    for p in procs:
      self.addCleanup(p.close)
    for p in procs:
      self.assertEqual(p.wait(timeout=600), 0, p.output())
    outs = [(p.stdout(), p.stderr()) for p in procs]
    self.assertIn("on 4 cpu device(s)", outs[0][0])
    # Only process 0 reports and writes (the CPU collectives' own log lines
    # may appear on both).
    self.assertNotIn("wrote", outs[1][0])
    self.assertNotIn("cells x", outs[1][0])
    multi = pd.read_csv(os.path.join(cwd, "multi", sweep.CSV_NAME))
    one = pd.read_csv(os.path.join(_spectrum_sweep()[0], sweep.CSV_NAME))
    one = one[one["act"] == "tanh"].reset_index(drop=True)
    self.assertLen(multi, 2 * SPECTRUM.seeds)
    # The same per-pair program on another slice of the batch: equal up to
    # float32 rounding of batched kernels.
    pd.testing.assert_frame_equal(multi, one, atol=1e-5, rtol=0)


# The command-line sweep: SPECTRUM with linear first. The killed run compiles
# the linear group; tanh and relu are SPECTRUM's programs (compiled once per
# test run, see SPECTRUM).
KILLED = sweep.SweepConfig(**{**SPECTRUM.__dict__,
                              "acts": ("linear",) + SPECTRUM.acts})
KILLED_CELLS = len(sweep.cells(KILLED))   # 6


def _cli_args(out_dir):
  return _flags(KILLED) + [f"--out_dir={out_dir}"]


class SweepCommandTest(absltest.TestCase):

  @pytest.mark.slow
  def test_sigkill_then_rerun_loses_and_repeats_nothing(self):
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "sweep")
    cells = os.path.join(out, sweep.CELLS_DIR)
    # The run to kill: a process of its own (a forked interpreter that has
    # the imports, not a warm one that would be lost).
    proc = cli_testing.start_module("experiments.sweep", *_cli_args(out),
                                    cwd=cwd)
    self.addCleanup(proc.close)
    deadline = time.monotonic() + 300
    # Kill as soon as the first cell is on disk (3 groups, each compiled
    # separately, so the rest are still to come).
    while time.monotonic() < deadline and proc.poll() is None:
      if os.path.isdir(cells) and any(n.endswith(".json")
                                      for n in os.listdir(cells)):
        os.kill(proc.pid, signal.SIGKILL)
        break
      time.sleep(0.01)
    self.assertEqual(proc.wait(), -signal.SIGKILL, proc.output())
    done = {n: _read(os.path.join(cells, n))
            for n in os.listdir(cells) if n.endswith(".json")}
    self.assertBetween(len(done), 1, KILLED_CELLS - 1)
    rerun = cli_testing.run_module("experiments.sweep", *_cli_args(out),
                                   cwd=cwd)
    self.assertEqual(rerun.returncode, 0, rerun.stderr)
    self.assertIn(f"computed {KILLED_CELLS - len(done)}, reused {len(done)}",
                  rerun.stdout)
    self.assertIn("ETA", rerun.stderr)
    for name, text in done.items():   # finished cells untouched
      self.assertEqual(_read(os.path.join(cells, name)), text)
    self.assertFalse([n for n in os.listdir(cells) if n.startswith(".")])
    frame = pd.read_csv(os.path.join(out, sweep.CSV_NAME))
    self.assertLen(frame, KILLED_CELLS * KILLED.seeds)
    self.assertFalse(frame.duplicated(["cell", "seed"]).any())
    self.assertTrue(frame["finite"].all())
    self.assertTrue(np.isfinite(frame["log10_gain"]).all())
    for name in ("summary.md", "sweep.png", "sweep.pdf"):
      self.assertTrue(os.path.exists(os.path.join(out, name)), name)
    with open(os.path.join(out, "sweep.json")) as f:
      record = json.load(f)
    self.assertEqual(record["schema"], "vgrad.sweep/1")
    self.assertEqual(record["command"].split()[:3],
                     ["python", "-m", "experiments.sweep"])
    cells = os.path.join(out, sweep.CELLS_DIR)
    for name in [n for n in os.listdir(cells) if n.endswith(".json")]:
      # every cell file names its schema too
      with open(os.path.join(cells, name)) as f:
        self.assertEqual(json.load(f)["schema"], "vgrad.sweep/1", name)
    # --replot redraws from the saved cells alone; it takes no other flag.
    summary = _read(os.path.join(out, "summary.md"))
    os.remove(os.path.join(out, "summary.md"))
    os.remove(os.path.join(out, "sweep.png"))
    # OVERFLOW (ReLU at sigma_w2 = 1e24) overflows float32 at layer 4 (see
    # test_overflow_is_recorded_not_crashed_on): reported, not crashed on.
    # A torn cell file (a copy of the sweep): --replot warns and counts it.
    torn = os.path.join(cwd, "torn")
    shutil.copytree(out, torn)
    torn_cells = os.path.join(torn, sweep.CELLS_DIR)
    victim = sorted(n for n in os.listdir(torn_cells) if n.endswith(".json"))[0]
    text = _read(os.path.join(torn_cells, victim))
    with open(os.path.join(torn_cells, victim), "w") as f:
      f.write(text[:len(text) // 2])
    ok, bad, blown, torn_run = cli_testing.run_cases("experiments.sweep", [
        (cwd, [f"--replot={out}"]), (cwd, [f"--replot={out}", "--seeds=3"]),
        (cwd, _flags(OVERFLOW) + [f"--out_dir={cwd}/blown"]),
        (cwd, [f"--replot={torn}"])])
    self.assertEqual(torn_run.returncode, 0, torn_run.stderr)
    self.assertIn(f"warning: ignoring {os.path.join(torn_cells, victim)}",
                  torn_run.stderr)
    self.assertIn("warning: 1 cell file(s) ignored", torn_run.stderr)
    self.assertNotIn("Traceback", torn_run.stderr)
    self.assertNotEqual(_read(os.path.join(torn, "summary.md")), summary)
    self.assertEqual(blown.returncode, 0, blown.stderr)
    self.assertIn("note: 1 of 1 rows overflowed in the forward pass",
                  blown.stdout)
    self.assertEqual(ok.returncode, 0, ok.stderr)
    self.assertEqual(_read(os.path.join(out, "summary.md")), summary)
    self.assertTrue(os.path.exists(os.path.join(out, "sweep.png")))
    self.assertEqual(bad.returncode, 2)
    self.assertIn("--replot", bad.stderr)
    self.assertIn("--seeds", bad.stderr)

  @pytest.mark.slow
  def test_bad_input_one_line_each(self):
    cwd = self.create_tempdir().full_path
    taken = os.path.join(cwd, "taken")
    os.makedirs(taken)
    with open(os.path.join(taken, "sweep.json"), "w") as f:
      json.dump({"schema": sweep.SCHEMA, "settings": {"task": "spectrum",
                                                      "seeds": 9}}, f)
    cases = {
        "unknown act": (["--acts=tanh,sigmod"], ["--acts", "sigmod", "relu"]),
        "unknown init": (["--inits=he"], ["--inits", "he_normal"]),
        "act value": (["--acts=relu:2"], ["--acts", "leaky_relu"]),
        "depth not int": (["--depths=3,x"], ["--depths", "integers"]),
        "zero width": (["--widths=0"], ["--widths", ">= 1"]),
        "no seeds": (["--seeds=0"], ["--seeds", ">= 1"]),
        "nan lr": (["--task=train", "--lr=nan"],
                   ["--lr must be a finite number, got nan"]),
        "inf lr": (["--task=train", "--lr=inf"], ["--lr", "finite", "inf"]),
        "nan sigma_w2": (["--inits=gaussian", "--sigma_w2=nan"],
                         ["--sigma_w2", "finite"]),
        "inf act value": (["--acts=leaky_relu:inf"],
                          ["--acts", "leaky_relu:inf", "finite"]),
        "conflict": (["--task=train", "--num_inputs=3"],
                     ["--num_inputs", "--task=train"]),
        "conflict 2": (["--steps=5"], ["--steps", "--task=spectrum"]),
        "sigma_w2": (["--sigma_w2=2"], ["--sigma_w2", "orthogonal"]),
        "old sigma_w": (["--sigma_w=1.5"], [
            "--sigma_w was renamed: pass --sigma_w2", "1.5^2 = 2.25"]),
        "old sigma_b": (["--sigma_b", "0.5"], [
            "--sigma_b was renamed: pass --sigma_b2", "0.5^2 = 0.25"]),
        "devices": (["--devices=5"], ["--devices", "[0, 1]"]),
        "distributed": (["--process_id=1"], ["--process_id",
                                             "--distributed"]),
        "other sweep": ([f"--out_dir={taken}"], ["--out_dir", "seeds: 9"]),
    }
    args = [a if any(x.startswith("--out_dir") for x in a)
            else a + [f"--out_dir={cwd}/run"] for a, _ in cases.values()]
    results = cli_testing.run_cases("experiments.sweep",
                                    [(cwd, a) for a in args])
    for (name, (_, needles)), proc in zip(cases.items(), results):
      self.assertEqual(proc.returncode, 2, (name, proc.stderr))
      self.assertNotIn("Traceback", proc.stderr, name)
      lines = proc.stderr.strip().splitlines()
      self.assertLen(lines, 1, (name, proc.stderr))
      for needle in needles:
        self.assertIn(needle, lines[0], name)
    self.assertEqual(sorted(os.listdir(cwd)), ["taken"])
    self.assertEqual(os.listdir(taken), ["sweep.json"])



class TrainSummaryTest(absltest.TestCase):
  """A cell's accuracy leaves out its diverged seeds, and the band stays
  within [0, 1] (no training: rows written by hand)."""

  def test_diverged_seed_left_out_and_band_within_one(self):
    def row(seed, accuracy, diverged_at=None):
      return {"cell": "c", "act": "relu", "init": "he_normal", "depth": 4,
              "width": 8, "seed": seed, "test_accuracy": accuracy,
              "diverged_at": diverged_at, "converged": diverged_at is None}
    rows = [row(0, 0.99), row(1, 0.90), row(2, 0.1, diverged_at=40)]
    (cell,) = sweep_summary.summarize(rows, "train")
    self.assertAlmostEqual(cell["mean"], 0.945)
    self.assertEqual((cell["diverged"], cell["ok"], cell["seeds"]), (1, 2, 3))
    self.assertIn("(1 diverged, left out)",
                  sweep_summary.format_summary(rows, "train"))
    fig = sweep_plots.plot_sweep(rows, "train")
    bands = [c for ax in fig.axes for c in ax.collections
             if hasattr(c, "get_paths") and c.get_paths()]
    top = max(p.vertices[:, 1].max() for c in bands for p in c.get_paths())
    self.assertLessEqual(top, 1.0)   # mean + std = 1.009 before clipping
    self.assertIn("did not diverge", fig.get_suptitle())

if __name__ == "__main__":
  absltest.main()
