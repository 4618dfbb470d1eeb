"""Tests of vgrad.studies.sweep and experiments.sweep: the grid computes what the
single-run studies compute, shards without changing a number, and never
loses, duplicates or corrupts a finished cell."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

from absl.testing import absltest
from absl.testing import parameterized
import chex
import cli_testing
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from vgrad.nn import lsuv
from vgrad.nn import models
from vgrad.studies import spectrum_study
from vgrad.studies import sweep
from vgrad.studies import training_study
from vgrad.training import data

SPECTRUM = sweep.SweepConfig(task="spectrum", acts=("tanh", "relu"),
                             inits=("orthogonal", "glorot_normal"),
                             depths=(3,), widths=(8,), seeds=2,
                             num_inputs=2)


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


def _direct_spectrum_row(cell: sweep.Cell, seed: int, num_inputs: int):
  """The row recomputed without the sweep: the same keys, the model's
  Jacobian by jax.jacrev of model.apply per input, and a dense SVD."""
  name, params = sweep.parse_act(cell.act)
  model = models.make_mlp(depth=cell.depth, width=cell.width,
                          activation=name, activation_params=params,
                          init=cell.init)
  init_key, data_key = jax.random.split(jax.random.key(seed))
  xs = jax.random.normal(data_key, (num_inputs, cell.width))
  p = lsuv.initialize(model, init_key, xs)
  with jax.enable_x64(True):   # the same float32 net and inputs, in float64
    p64, xs64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (p, xs))
    sv = np.stack([np.linalg.svd(np.asarray(
        jax.jacrev(lambda z: model.apply(p64, z))(x)), compute_uv=False)
                   for x in xs64])
  with np.errstate(divide="ignore"):   # a float64 SVD may return 0 too
    return {"log10_gain": 0.5 * np.log10(np.mean(sv ** 2)),
            "log10_sv_max": np.log10(sv.max()),
            "log10_sv_median": np.median(np.log10(sv)),   # as vgrad pools
            "log10_sv_min": np.log10(sv.min())}


class SweepLibraryTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = absltest.get_default_test_tmpdir()
    cls.out = os.path.join(cls.root, "spectrum_sweep")
    shutil.rmtree(cls.out, ignore_errors=True)
    cls.result = sweep.run_sweep(SPECTRUM, cls.out)

  def test_every_cell_and_seed_once(self):
    self.assertEqual(self.result.computed, 4)
    self.assertEqual(self.result.reused, 0)
    keys = [(r["cell"], r["seed"]) for r in self.result.rows]
    self.assertLen(keys, 4 * 2)
    self.assertLen(set(keys), 4 * 2)
    self.assertLen(os.listdir(sweep.cells_dir(self.out)), 4)

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
        self.assertAlmostEqual(row[k], v, delta=1e-4, msg=(row["cell"], k))
      self.assertTrue(row["finite"])
      self.assertAlmostEqual(row["log10_gain_per_layer"],
                             row["log10_gain"] / row["depth"], places=6)

  def test_csv_reads_with_pandas(self):
    frame = pd.read_csv(os.path.join(self.out, sweep.CSV_NAME))
    chex.assert_shape(frame.values, (8, len(sweep.KEY_COLUMNS)
                                     + len(sweep.SPECTRUM_COLUMNS)))
    self.assertEqual(frame["finite"].dtype, bool)
    for column in sweep.SPECTRUM_COLUMNS[:-1]:
      self.assertEqual(frame[column].dtype, np.float64, column)
    self.assertFalse(frame.duplicated(["cell", "seed"]).any())
    mine = {(r["cell"], r["seed"]): r["log10_gain"] for r in self.result.rows}
    for _, line in frame.iterrows():
      self.assertEqual(line["log10_gain"], mine[(line["cell"], line["seed"])])

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

  def test_larger_grid_reuses_cells_other_settings_refused(self):
    out = self.create_tempdir().full_path + "/s"
    shutil.copytree(self.out, out)
    bigger = sweep.SweepConfig(**{**SPECTRUM.__dict__,
                                  "acts": ("tanh", "relu", "linear")})
    result = sweep.run_sweep(bigger, out)
    self.assertEqual((result.computed, result.reused), (2, 4))
    self.assertLen(result.rows, 6 * 2)
    other = sweep.SweepConfig(**{**SPECTRUM.__dict__, "num_inputs": 3})
    with self.assertRaisesRegex(ValueError, "num_inputs: 2 there, 3 here"):
      sweep.run_sweep(other, out)

  def test_overflow_is_recorded_not_crashed_on(self):
    # ReLU with sigma_w2 = 1e12: activations grow ~1e6 per layer and pass
    # float32's 3e38 by layer 7; at width 8 the next layer adds +inf and
    # -inf (the forward pass is NaN from there).
    config = sweep.SweepConfig(task="spectrum", acts=("relu",),
                               inits=("gaussian",), depths=(10,),
                               widths=(8,), seeds=1, num_inputs=1,
                               sigma_w2=1e12)
    out = self.create_tempdir().full_path + "/s"
    result = sweep.run_sweep(config, out)
    (row,) = result.rows
    self.assertFalse(row["finite"])
    self.assertTrue(np.isnan(row["log10_gain"]))
    frame = pd.read_csv(os.path.join(out, sweep.CSV_NAME))
    self.assertTrue(np.isnan(frame["log10_gain"][0]))
    self.assertIn("| relu | gaussian | 10 | 8 | — | 0/1 |",
                  sweep.format_summary(result.rows, "spectrum"))

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


class SweepTrainTest(absltest.TestCase):

  def test_rows_equal_experiments_train(self):
    """A training cell is exactly the arm experiments.train trains."""
    config = sweep.SweepConfig(task="train", acts=("relu",),
                               inits=("he_normal", "lsuv"), depths=(3,),
                               widths=(16,), seeds=2, steps=20, lr=0.05,
                               batch_size=32)
    digits = data.load_dataset("digits")
    out = self.create_tempdir().full_path + "/t"
    rows = sweep.run_sweep(config, out, dataset=digits).rows
    self.assertLen(rows, 4)
    chance = training_study.chance_loss(digits, "categorical_cross_entropy")
    for init in config.inits:
      arm = training_study.run_training(training_study.TrainConfig(
          dataset="digits", act="relu", init=init, depth=3, width=16,
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


MESH_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from vgrad.studies import sweep
    assert jax.device_count() == 4, jax.devices()
    out = {}
    for name, config in (
        ("spectrum", sweep.SweepConfig(
            task="spectrum", acts=("tanh",), inits=("orthogonal",
            "glorot_normal", "he_normal"), depths=(8,), widths=(32,),
            seeds=2, num_inputs=4)),
        ("train", sweep.SweepConfig(
            task="train", acts=("tanh",), inits=("he_normal", "lsuv"),
            depths=(5,), widths=(64,), seeds=2, steps=10, batch_size=32))):
      for devices in (1, 4):
        r = sweep.run_sweep(config, f"{sys.argv[1]}/{name}{devices}",
                            num_devices=devices)
        out[f"{name}{devices}"] = {"devices": r.devices, "rows": r.rows}
    mesh = sweep.make_mesh()
    array = sweep._global_array(list(range(8)), jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(sweep.AXIS)))
    out["shards"] = [s.data.tolist() for s in array.addressable_shards]
    print(json.dumps(out))
""")


class ShardedSweepTest(absltest.TestCase):

  def test_four_devices_equal_one(self):
    """On 4 simulated CPU devices the pairs are split 4 ways (B = 6 padded
    to 8, and B = 4) and every number equals the 1-device run.

    The sizes are ones that hung before the CPU path stopped batching LAPACK
    calls (see sweep._pair_map): width 32 x 3 inits on 4 devices, and LSUV
    beside another init at depth 5, width 64; a hang fails the timeout.
    """
    tmp = self.create_tempdir().full_path
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count"
               "=4", JAX_PLATFORMS="cpu", PYTHONPATH=cli_testing.REPO)
    proc = subprocess.run([sys.executable, "-c", MESH_SCRIPT, tmp],
                          capture_output=True, text=True, env=env,
                          check=False, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    out = json.loads(proc.stdout)
    self.assertEqual(out["shards"], [[0, 1], [2, 3], [4, 5], [6, 7]])
    for name in ("spectrum", "train"):
      one, four = out[f"{name}1"], out[f"{name}4"]
      self.assertEqual((one["devices"], four["devices"]), (1, 4))
      self.assertLen(four["rows"], len(one["rows"]))
      for a, b in zip(one["rows"], four["rows"]):
        self.assertEqual(a.keys(), b.keys())
        for k, v in a.items():
          # The same per-pair program on another slice of the batch: the
          # batched GEMMs (4 pairs on one device, 1 per device on 4) may sum
          # in other orders, ~1e-7 relative per step, and a smooth (tanh)
          # net carries that through 10 steps at ~1e-6. (A ReLU net does
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


class MultiProcessTest(absltest.TestCase):

  def test_two_processes_equal_one(self):
    """--distributed: 2 processes x 2 CPU devices (jax.distributed with the
    CPU collectives) form one 4-device mesh; process 0 writes results that
    equal a single process's."""
    cwd = self.create_tempdir().full_path
    grid = ["--acts=tanh,relu", "--inits=orthogonal", "--depths=3",
            "--widths=8", "--seeds=3", "--num_inputs=2"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
               PYTHONPATH=cli_testing.REPO,
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *grid, "--distributed",
         f"--coordinator_address=localhost:{port}", "--num_processes=2",
         f"--process_id={i}", f"--out_dir={cwd}/multi"], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
      self.assertEqual(p.returncode, 0, err)
    self.assertIn("on 4 cpu device(s)", outs[0][0])
    # Only process 0 reports and writes (the CPU collectives' own log lines
    # may appear on both).
    self.assertNotIn("wrote", outs[1][0])
    self.assertNotIn("cells x", outs[1][0])
    single = cli_testing.run_module("experiments.sweep", *grid,
                                    f"--out_dir={cwd}/single", cwd=cwd)
    self.assertEqual(single.returncode, 0, single.stderr)
    multi = pd.read_csv(os.path.join(cwd, "multi", sweep.CSV_NAME))
    one = pd.read_csv(os.path.join(cwd, "single", sweep.CSV_NAME))
    self.assertLen(multi, 2 * 3)
    # The same per-pair program on another slice of the batch: equal up to
    # float32 rounding of batched kernels.
    pd.testing.assert_frame_equal(multi, one, atol=1e-5, rtol=0)


def _cli_args(out_dir):
  return ["--acts=linear,tanh,relu,sigmoid,softplus", "--inits=orthogonal",
          "--depths=2", "--widths=4", "--seeds=2", "--num_inputs=1",
          f"--out_dir={out_dir}"]


class SweepCommandTest(absltest.TestCase):

  def test_sigkill_then_rerun_loses_and_repeats_nothing(self):
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "sweep")
    cells = os.path.join(out, sweep.CELLS_DIR)
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
               PYTHONPATH=cli_testing.REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *_cli_args(out)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    # Kill as soon as the first cell is on disk (5 groups, each compiled
    # separately, so the rest are still to come).
    while time.monotonic() < deadline and proc.poll() is None:
      if os.path.isdir(cells) and any(n.endswith(".json")
                                      for n in os.listdir(cells)):
        os.kill(proc.pid, signal.SIGKILL)
        break
      time.sleep(0.01)
    proc.wait()
    self.assertEqual(proc.returncode, -signal.SIGKILL, proc.stderr.read())
    proc.stderr.close()
    done = {n: _read(os.path.join(cells, n))
            for n in os.listdir(cells) if n.endswith(".json")}
    self.assertBetween(len(done), 1, 4)
    rerun = cli_testing.run_module("experiments.sweep", *_cli_args(out),
                                   cwd=cwd)
    self.assertEqual(rerun.returncode, 0, rerun.stderr)
    self.assertIn(f"computed {5 - len(done)}, reused {len(done)}",
                  rerun.stdout)
    self.assertIn("ETA", rerun.stderr)
    for name, text in done.items():   # finished cells untouched
      self.assertEqual(_read(os.path.join(cells, name)), text)
    self.assertFalse([n for n in os.listdir(cells) if n.startswith(".")])
    frame = pd.read_csv(os.path.join(out, sweep.CSV_NAME))
    self.assertLen(frame, 5 * 2)
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
    # ReLU at sigma_w2 = 1e12 overflows float32 by layer 7 (see
    # test_overflow_is_recorded_not_crashed_on): reported, not crashed on.
    ok, bad, blown = cli_testing.run_cases("experiments.sweep", [
        (cwd, [f"--replot={out}"]), (cwd, [f"--replot={out}", "--seeds=3"]),
        (cwd, ["--acts=relu", "--inits=gaussian", "--sigma_w2=1e12",
               "--depths=10", "--widths=8", "--seeds=1", "--num_inputs=1",
               f"--out_dir={cwd}/blown"])])
    self.assertEqual(blown.returncode, 0, blown.stderr)
    self.assertIn("note: 1 of 1 rows overflowed in the forward pass",
                  blown.stdout)
    self.assertEqual(ok.returncode, 0, ok.stderr)
    self.assertEqual(_read(os.path.join(out, "summary.md")), summary)
    self.assertTrue(os.path.exists(os.path.join(out, "sweep.png")))
    self.assertEqual(bad.returncode, 2)
    self.assertIn("--replot", bad.stderr)
    self.assertIn("--seeds", bad.stderr)

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


if __name__ == "__main__":
  absltest.main()
