"""End-to-end tests of ``python -m experiments.train``, ``experiments.lecture``
and ``experiments.plot_training``, run as a user runs them (subprocesses),
including every bad-input path.

Every training run is tiny; one xor run is shared by most assertions.
Runs log every step (one-step chunks: the cheapest training program to
compile) and take as few steps as their assertions need.
"""

import csv
import gzip
import json
import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import cli_testing  # tests/cli_testing.py
import numpy as np
import pytest

from vgrad.cli import training_run
from vgrad.studies import presets
from vgrad.studies import training_report
from vgrad.studies import training_study
from vgrad.training import data
from vgrad.training import tensorboard_log

XOR = ["--dataset=xor", "--act=sigmoid,relu", "--depth=3", "--width=4",
       "--steps=2", "--log_every=1", "--seeds=2"]
LABELS = ["layer_01", "layer_02", "layer_03", "readout"]
RUN_FILES = ["config.json", "curves.pdf", "curves.png", "gradient_flow.pdf",
             "gradient_flow.png", "metrics.json", "table.csv", "table.md"]


def _train(*args, cwd):
  return cli_testing.run_module("experiments.train", *args, cwd=cwd)


def _lecture(*args, cwd):
  return cli_testing.run_module("experiments.lecture", *args, cwd=cwd)


def _no_nan(token):
  raise ValueError(f"metrics.json holds {token}, which is not JSON")


def _load(path):
  """JSON file; NaN and Infinity (invalid JSON) fail the test."""
  with open(path) as f:
    return json.load(f, parse_constant=_no_nan)


def _read(path):
  with open(path) as f:
    return f.read()


@pytest.mark.slow   # the shared run: a training run and its figures
class XorRunTest(absltest.TestCase):
  """One two-arm xor run, inspected from every side."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cwd = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.cwd, ignore_errors=True)
    cls.out = os.path.join(cls.cwd, "run")
    cls.proc = _train(*XOR, f"--out_dir={cls.out}", cwd=cls.cwd)
    if cls.proc.returncode != 0:
      raise AssertionError(f"shared run failed:\n{cls.proc.stderr}")
    cls.metrics = _load(os.path.join(cls.out, "metrics.json"))
    cls.config = _load(os.path.join(cls.out, "config.json"))

  def _copy_run(self):
    """A private copy of the shared run (tests must not change it)."""
    parent = self.create_tempdir().full_path
    shutil.copytree(self.out, os.path.join(parent, "run"))
    return parent, os.path.join(parent, "run")

  def test_prints_table_and_what_it_wrote(self):
    lines = self.proc.stdout.splitlines()
    self.assertTrue(any(l.startswith("| arm") for l in lines),
                    self.proc.stdout)
    self.assertIn("wrote", self.proc.stdout)
    self.assertIn(self.out, self.proc.stdout)
    # The printed table is the one in table.md.
    self.assertIn(_read(os.path.join(self.out, "table.md")).strip(),
                  self.proc.stdout)
    self.assertNotIn("Traceback", self.proc.stderr)
    self.assertNotIn("RuntimeWarning", self.proc.stderr)

  def test_run_directory_holds_exactly_the_run_files(self):
    self.assertEqual(sorted(os.listdir(self.out)), sorted(RUN_FILES + ["tb"]))
    # No staging directories are left beside the run.
    self.assertEqual(os.listdir(self.cwd), ["run"])
    for name in RUN_FILES:
      self.assertGreater(os.path.getsize(os.path.join(self.out, name)), 0,
                         name)

  def test_metrics_layout(self):
    m = self.metrics
    self.assertEqual(m["schema"], "vgrad.train/1")
    self.assertEqual(m["dataset"]["name"], "xor")
    self.assertEqual([a["label"] for a in m["arms"]], ["sigmoid", "relu"])
    for arm in m["arms"]:
      with self.subTest(arm=arm["label"]):
        self.assertEqual(arm["config"]["act"], arm["label"])
        self.assertEqual(arm["config"]["depth"], 3)
        self.assertEqual(arm["layers"], LABELS)
        h = arm["history"]
        self.assertEqual(h["step"], [0, 1, 2])
        self.assertLen(h["grad_norm_w"], 3)
        for per_step in h["grad_norm_w"]:
          self.assertLen(per_step, 2)           # seeds
          for row in per_step:
            self.assertLen(row, 4)              # depth + 1
            self.assertTrue(all(isinstance(v, float) and v >= 0
                                for v in row), row)
        self.assertLen(h["train_loss"], 3)
        self.assertTrue(all(len(r) == 2 for r in h["train_loss"]))
        self.assertEqual([s["seed"] for s in arm["seeds"]], [0, 1])
        for i, s in enumerate(arm["seeds"]):
          self.assertIsNone(s["diverged_at"])
          self.assertEqual(s["final"]["step"], 2)
          self.assertEqual(s["final"]["train_loss"], h["train_loss"][-1][i])
          self.assertIsInstance(s["solved"], bool)
          self.assertIsInstance(s["diagnosis"], list)
        summary = arm["summary"]
        self.assertContainsSubset(
            {"seeds", "solved", "fraction_solved", "diverged",
             "first_divergence", "failed_findings", "median_train_loss",
             "median_train_accuracy", "median_test_loss",
             "median_test_accuracy"}, set(summary))
        self.assertEqual(summary["seeds"], 2)
        self.assertEqual(summary["diverged"], 0)
        self.assertIsNone(summary["first_divergence"])
        self.assertEqual(summary["solved"],
                         sum(s["solved"] for s in arm["seeds"]))
        self.assertAlmostEqual(summary["fraction_solved"],
                               summary["solved"] / 2)
        self.assertEqual(arm["solved_by"], "train_accuracy >= 1")

  def test_config_records_the_flags_given(self):
    c = self.config
    self.assertEqual(c["act"], ["sigmoid", "relu"])
    self.assertEqual(c["dataset"], "xor")
    self.assertEqual(c["depth"], 3)
    self.assertEqual(c["width"], 4)
    self.assertEqual(c["steps"], 2)
    self.assertEqual(c["log_every"], 1)
    self.assertEqual(c["seeds"], 2)
    self.assertEqual(c["out_dir"], self.out)
    self.assertEqual(c["init"], "uniform")
    self.assertEqual(c["optimizer"], "sgd")
    self.assertEqual(c["lr"], 0.1)
    self.assertIs(c["overwrite"], False)
    self.assertIs(c["tensorboard"], True)
    # Only the experiments' flags, not absl's own.
    self.assertNotIn("verbosity", c)
    self.assertNotIn("logtostderr", c)

  def test_table_csv_one_row_per_arm_and_seed(self):
    with open(os.path.join(self.out, "table.csv"), newline="") as f:
      reader = csv.DictReader(f)
      rows = list(reader)
    self.assertEqual(reader.fieldnames, list(training_report.CSV_FIELDS))
    self.assertEqual([(r["arm"], r["seed"]) for r in rows],
                     [("sigmoid", "0"), ("sigmoid", "1"), ("relu", "0"),
                      ("relu", "1")])
    by_key = {(a["label"], s["seed"]): s
              for a in self.metrics["arms"] for s in a["seeds"]}
    for r in rows:
      seed = by_key[(r["arm"], int(r["seed"]))]
      self.assertEqual(r["act"], r["arm"])
      self.assertEqual((r["depth"], r["width"], r["steps"]), ("3", "4", "2"))
      self.assertAlmostEqual(float(r["train_loss"]),
                             seed["final"]["train_loss"])
      self.assertEqual(r["solved"], str(seed["solved"]))
      self.assertEqual(r["diverged_at"], "")

  def test_table_md_has_one_row_per_arm(self):
    table = _read(os.path.join(self.out, "table.md"))
    rows = [l for l in table.splitlines() if l.startswith("| ")]
    self.assertLen(rows, 3)   # header + two arms
    self.assertTrue(rows[0].startswith("| arm"))
    self.assertTrue(rows[1].startswith("| sigmoid |"))
    self.assertTrue(rows[2].startswith("| relu |"))
    self.assertIn("after 2 steps", table)

  def test_tensorboard_runs_per_arm_and_seed(self):
    tb = os.path.join(self.out, "tb")
    self.assertEqual(sorted(os.listdir(tb)), ["relu", "sigmoid"])
    for act in ("relu", "sigmoid"):
      self.assertEqual(sorted(os.listdir(os.path.join(tb, act))),
                       ["seed_0", "seed_1"])

  def test_tensorboard_tags(self):
    for arm in self.metrics["arms"]:
      act = arm["label"]
      with self.subTest(act=act):
        run = tensorboard_log.read_run(
            os.path.join(self.out, "tb", act, "seed_1"))
        scalars, histograms = run["scalars"], run["histograms"]
        unit_key = "saturated" if act == "sigmoid" else "dead"
        other_key = "dead" if act == "sigmoid" else "saturated"
        expected = {"loss", "accuracy", "test_loss", "test_accuracy",
                    "diverged", f"{unit_key}/layer_01",
                    "update_ratio/layer_01", "activation_rms/layer_01"}
        expected |= {f"grad_norm_w/{l}" for l in LABELS}
        self.assertContainsSubset(expected, set(scalars))
        # Every layer of every per-layer metric in metrics.json is logged.
        for key in ("grad_norm_w", "grad_norm_b", "update_ratio", unit_key,
                    "activation_rms"):
          n = len(arm["history"][key][-1][1])
          self.assertEqual(
              sorted(t for t in scalars if t.startswith(key + "/")),
              [f"{key}/{l}" for l in LABELS[:n]], key)
        self.assertFalse(any(t.startswith(other_key + "/") for t in scalars))
        self.assertEqual([s for s, _ in scalars["loss"]], [0, 1, 2])
        self.assertEqual([s for s, _ in scalars["update_ratio/layer_01"]],
                         [1, 2])
        self.assertEqual([v for _, v in scalars["diverged"]], [0.0] * 3)
        self.assertContainsSubset(
            {"weights/layer_01", "gradients/layer_01",
             "log10_abs_gradient/layer_01", "activations/layer_01",
             "weights/readout"}, set(histograms))
        # What the log10|dL/dW| histogram cannot bin sits beside it.
        for key in ("num_zero", "num_nan", "num_inf", "hist_below",
                    "hist_above"):
          counts = scalars[f"log10_abs_gradient_{key}/layer_01"]
          self.assertEqual([s for s, _ in counts], [0, 1, 2])
        binned = histograms["log10_abs_gradient/layer_01"][0][1]["num"]
        counted = sum(scalars[f"log10_abs_gradient_{k}/layer_01"][0][1]
                      for k in ("num_zero", "num_nan", "num_inf",
                                "hist_below", "hist_above"))
        self.assertEqual(binned + counted, 2 * 4)   # every entry, once
        weights = histograms["weights/layer_01"]
        self.assertEqual([s for s, _ in weights], [0, 1, 2])
        self.assertEqual(weights[0][1]["num"], 2 * 4)   # 2 inputs x 4 units
        self.assertEqual(histograms["weights/readout"][0][1]["num"], 4)

  def test_tensorboard_scalars_match_metrics(self):
    for arm in self.metrics["arms"]:
      for i, seed in enumerate(arm["seeds"]):
        with self.subTest(arm=arm["label"], seed=seed["seed"]):
          run = tensorboard_log.read_run(os.path.join(
              self.out, "tb", arm["label"], f"seed_{seed['seed']}"))
          step, loss = run["scalars"]["loss"][-1]
          self.assertEqual(step, 2)
          self.assertAlmostEqual(loss, seed["final"]["train_loss"],
                                 delta=1e-6)
          grads = arm["history"]["grad_norm_w"][-1][i]
          for label, expected in zip(LABELS, grads):
            step, value = run["scalars"][f"grad_norm_w/{label}"][-1]
            self.assertAlmostEqual(value, expected,
                                   delta=1e-6 * max(1.0, expected),
                                   msg=label)

  def test_plot_training_redraws_from_metrics(self):
    parent, out = self._copy_run()
    os.remove(os.path.join(out, "curves.png"))
    os.remove(os.path.join(out, "table.csv"))
    proc = cli_testing.run_module("experiments.plot_training", f"--run_dir={out}", cwd=parent)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("wrote", proc.stdout)
    self.assertGreater(os.path.getsize(os.path.join(out, "curves.png")), 0)
    self.assertEqual(_read(os.path.join(out, "table.csv")),
                     _read(os.path.join(self.out, "table.csv")))
    self.assertEqual(sorted(os.listdir(out)), sorted(RUN_FILES + ["tb"]))
    # A figure that cannot be written (its name taken by a folder): one
    # line naming --run_dir, no traceback.
    os.remove(os.path.join(out, "curves.png"))
    os.makedirs(os.path.join(out, "curves.png"))
    proc = cli_testing.run_module("experiments.plot_training",
                                  f"--run_dir={out}", cwd=parent)
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertLen(proc.stderr.strip().splitlines(), 1, proc.stderr)
    self.assertIn("--run_dir: cannot write the figures and tables",
                  proc.stderr)

  def test_existing_run_is_never_overwritten_silently(self):
    parent, out = self._copy_run()
    before = _read(os.path.join(out, "metrics.json"))
    proc = _train(*XOR, f"--out_dir={out}", cwd=parent)
    self.assertEqual(proc.returncode, 2, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertTrue(lines[0].startswith("error:"), lines[0])
    self.assertIn("--overwrite", lines[0])
    self.assertIn(out, lines[0])
    self.assertEqual(proc.stdout, "")
    self.assertEqual(_read(os.path.join(out, "metrics.json")), before)
    self.assertEqual(sorted(os.listdir(out)), sorted(RUN_FILES + ["tb"]))
    self.assertEqual(os.listdir(parent), ["run"])
    # With --overwrite a (smaller) run replaces it. More seeds than layers
    # (3 > depth + 1) once crashed the TensorBoard logger.
    proc = _train("--dataset=xor", "--act=relu", "--depth=1", "--width=2",
                  "--steps=2", "--log_every=1", "--seeds=3",
                  f"--out_dir={out}", "--overwrite", cwd=parent)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    metrics = _load(os.path.join(out, "metrics.json"))
    self.assertEqual([a["label"] for a in metrics["arms"]], ["relu"])
    self.assertEqual([s["seed"] for s in metrics["arms"][0]["seeds"]],
                     [0, 1, 2])
    self.assertEqual(sorted(os.listdir(out)), sorted(RUN_FILES + ["tb"]))
    self.assertEqual(os.listdir(os.path.join(out, "tb")), ["relu"])  # new tb
    run = tensorboard_log.read_run(os.path.join(out, "tb", "relu", "seed_2"))
    self.assertEqual(
        sorted(t for t in run["scalars"] if t.startswith("grad_norm_w/")),
        ["grad_norm_w/layer_01", "grad_norm_w/readout"])
    self.assertEqual(sorted(t for t in run["scalars"] if t.startswith("dead/")),
                     ["dead/layer_01"])
    self.assertEqual(os.listdir(parent), ["run"])


@pytest.mark.slow   # each test is a training run, the presets several
class OtherRunsTest(absltest.TestCase):

  def test_digits_adam_dropout_clipping_without_tensorboard(self):
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    proc = _train("--dataset=digits", "--act=tanh", "--depth=2", "--width=8",
                  "--batch_size=32", "--steps=2", "--log_every=1",
                  "--seeds=2", "--optimizer=adam", "--lr=0.01",
                  "--dropout=0.1", "--clip_norm=1", "--tensorboard=false",
                  f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertEqual(sorted(os.listdir(out)), RUN_FILES)
    self.assertNotIn("tb/", proc.stdout)
    config = _load(os.path.join(out, "config.json"))
    self.assertEqual((config["optimizer"], config["lr"], config["dropout"],
                      config["clip_norm"], config["batch_size"],
                      config["tensorboard"]),
                     ("adam", 0.01, 0.1, 1.0, 32, False))
    metrics = _load(os.path.join(out, "metrics.json"))
    (arm,) = metrics["arms"]
    self.assertEqual(arm["label"], "tanh")
    self.assertEqual(arm["loss"], "categorical_cross_entropy")
    self.assertEqual(arm["solved_by"], "test_accuracy >= 0.9")
    self.assertEqual(arm["history"]["step"], [0, 1, 2])
    for row in arm["history"]["test_accuracy"]:
      self.assertLen(row, 2)
      self.assertTrue(all(0 <= v <= 1 for v in row), row)
    for seed in arm["seeds"]:
      self.assertIsInstance(seed["final"]["test_accuracy"], float)
      self.assertIsNone(seed["diverged_at"])
    self.assertIsInstance(arm["summary"]["median_test_accuracy"], float)
    self.assertIn("median test accuracy",
                  _read(os.path.join(out, "table.md")))

  def test_divergence_is_reported_not_crashed_on(self):
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    # Checked by hand: both seeds reach NaN at step 3. Full batch: no
    # shuffle to compile (minibatches are the adam test's above).
    proc = _train("--dataset=digits", "--act=relu", "--init=large_normal",
                  "--depth=6", "--width=32", "--lr=1", "--steps=4",
                  "--log_every=1", "--seeds=2", f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertIn("diverged at step", proc.stdout)
    metrics = _load(os.path.join(out, "metrics.json"))   # no NaN in the JSON
    (arm,) = metrics["arms"]
    diverged = [s["diverged_at"] for s in arm["seeds"]]
    self.assertTrue(all(isinstance(d, int) and 0 < d <= 4
                        for d in diverged), diverged)
    summary = arm["summary"]
    self.assertEqual(summary["diverged"], 2)
    self.assertEqual(summary["first_divergence"], min(diverged))
    self.assertEqual(summary["solved"], 0)
    for seed in arm["seeds"]:
      self.assertFalse(seed["solved"])
      self.assertIn("diverged", [d["finding"] for d in seed["diagnosis"]])
    table = _read(os.path.join(out, "table.md"))
    self.assertIn(f"2 (first at step {min(diverged)})", table)
    with open(os.path.join(out, "table.csv"), newline="") as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([r["diverged_at"] for r in rows],
                     [str(d) for d in diverged])
    # TensorBoard shows the divergence too.
    run = tensorboard_log.read_run(os.path.join(out, "tb", "relu", "seed_0"))
    self.assertEqual(run["scalars"]["diverged"],
                     [(0, 0.0), (1, 0.0), (2, 0.0), (3, 1.0), (4, 1.0)])

  def test_lecture_preset(self):
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    # Arms 3 and 4 (relu, U(-1,1) and He normal) as they are, one step each
    # (--steps and --seeds are what the lecture lets a user change). They
    # differ only by their initialisation, so they share one set of
    # training programs; PresetTest checks every arm of every preset.
    proc = _lecture("--preset=xor_deep", "--arms=3,4", "--steps=1",
                    "--seeds=2", f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertGreaterEqual(len(presets.PRESETS["xor_deep"].arms), 6)
    labels = [a.label for a in presets.PRESETS["xor_deep"].arms[2:4]]
    self.assertLen(set(labels), 2)
    self.assertEqual(sorted(os.listdir(out)), sorted(RUN_FILES + ["tb"]))
    table = _read(os.path.join(out, "table.md"))
    rows = [l for l in table.splitlines() if l.startswith("| ")][1:]
    self.assertEqual([r.split(" | ")[0][2:] for r in rows], labels)
    self.assertIn(table.strip(), proc.stdout)
    metrics = _load(os.path.join(out, "metrics.json"))
    self.assertEqual([a["label"] for a in metrics["arms"]], labels)
    for arm in metrics["arms"]:
      self.assertEqual(arm["config"]["steps"], 1)
      self.assertEqual([s["seed"] for s in arm["seeds"]], [0, 1])
    config = _load(os.path.join(out, "config.json"))
    self.assertEqual(config["preset"], "xor_deep")
    self.assertLen(config["arms"], len(labels))
    self.assertLen(os.listdir(os.path.join(out, "tb")), len(labels))
    # The two arms shared their programs and got their own parameters.
    self.assertNotEqual(
        metrics["arms"][0]["history"]["grad_norm_w"][0],
        metrics["arms"][1]["history"]["grad_norm_w"][0])

  def test_digits_deep_adds_mnist_when_its_files_are_present(self):
    cwd = self.create_tempdir().full_path
    mnist_dir = os.path.join(cwd, "mnist")
    os.makedirs(mnist_dir)
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
      data.write_idx(os.path.join(mnist_dir, f"{split}-images-idx3-ubyte.gz"),
                     rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
      data.write_idx(os.path.join(mnist_dir, f"{split}-labels-idx1-ubyte"),
                     (np.arange(n) % 10).astype(np.uint8))
    out = os.path.join(cwd, "run")
    # --arms: the preset's arm 4 (leaky ReLU) here and on MNIST (each arm
    # is a training program of its own per dataset: all eight would cost 8x
    # this test; test_lecture_preset runs two arms in one table).
    proc = _lecture("--preset=digits_deep", "--arms=4", "--steps=1",
                    "--seeds=1", "--tensorboard=false",
                    f"--data_dir={mnist_dir}", f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    chosen = [presets.PRESETS["digits_deep"].arms[3].label]
    digits = _load(os.path.join(out, "metrics.json"))
    self.assertEqual([a["label"] for a in digits["arms"]], chosen)
    mnist = _load(os.path.join(out, "mnist", "metrics.json"))
    self.assertEqual(mnist["dataset"]["name"], "mnist")
    self.assertEqual(mnist["dataset"]["n_train"], 60)
    self.assertEqual([a["label"] for a in mnist["arms"]], chosen)
    self.assertEqual(
        [a.label for a in presets.PRESETS["mnist_deep"].arms[3:4]], chosen)
    self.assertTrue(os.path.exists(os.path.join(out, "mnist", "table.md")))
    self.assertIn("mnist_deep", proc.stdout)


class PresetTest(absltest.TestCase):
  """What a full lecture run checks of every arm of every preset, without
  training: each arm builds (its settings validated, its network made) on
  the preset's data, and labels and TensorBoard directories are distinct."""

  def test_every_arm_builds_with_distinct_label_and_directory(self):
    # Building an arm reads only the data's task and number of outputs:
    # digits and MNIST are 10-class data (stand-ins: no sklearn import, no
    # MNIST files needed).
    x, y = np.zeros((1, 64), np.float32), np.zeros((1,), np.int32)
    stand_in = {"xor": data.xor()} | {
        name: data.Dataset(name, "multiclass", x, y, x, y, 10, name)
        for name in ("digits", "mnist")}
    self.assertContainsSubset(["xor_deep", "digits_deep", "init_failures"],
                              presets.PRESETS)
    for name, preset in presets.PRESETS.items():
      with self.subTest(preset=name):
        labels = [a.name() for a in preset.arms]
        self.assertGreaterEqual(len(labels), 2)
        self.assertLen(set(labels), len(labels))
        slugs = [training_run.slug(label) for label in labels]
        self.assertTrue(all(slugs), slugs)
        self.assertLen(set(slugs), len(slugs))
        for arm in preset.arms:
          self.assertEqual(arm.dataset, preset.dataset)
          training_study.build(arm, stand_in[preset.dataset])


TRAIN_BAD_INPUTS = (
      ("unknown_act", ["--act=sigmod"], ["--act", "sigmod", "relu"]),
      ("duplicate_act", ["--act=relu,relu"], ["--act", "distinct"]),
      ("unknown_dataset", ["--dataset=cifar"], ["--dataset", "cifar", "xor"]),
      ("unknown_init", ["--init=nope"], ["--init", "nope", "he_normal"]),
      ("unknown_optimizer", ["--optimizer=rmsprop"],
       ["--optimizer", "rmsprop", "adam"]),
      ("loss_not_fitting_task",
       ["--dataset=xor", "--loss=categorical_cross_entropy"],
       ["--loss", "categorical_cross_entropy", "binary_cross_entropy"]),
      ("momentum_without_momentum_optimizer",
       ["--optimizer=sgd", "--momentum=0.5"],
       ["--momentum", "--optimizer=momentum"]),
      ("leaky_slope_without_leaky_relu",
       ["--act=tanh", "--leaky_slope=0.1"],
       ["--leaky_slope", "--act=leaky_relu"]),
      ("zero_steps", ["--steps=0"], ["--steps", ">= 1"]),
      ("zero_seeds", ["--seeds=0"], ["--seeds", ">= 1"]),
      ("zero_lr", ["--lr=0"], ["--lr", "> 0"]),
      ("infinite_lr", ["--lr=inf"], ["--lr must be a finite number, got inf"]),
      ("out_dir_in_a_file", ["--out_dir=/dev/null/run"],
       ["--out_dir: cannot create run directory", "/dev/null is not a folder"]),
      ("nan_clip_norm", ["--clip_norm=nan"], ["--clip_norm", "finite", "nan"]),
      ("dropout_one", ["--dropout=1"], ["--dropout", "[0, 1)"]),
      ("negative_batch_size", ["--batch_size=-1"], ["--batch_size", ">= 0"]),
      ("batch_size_beyond_the_data", ["--dataset=xor", "--batch_size=100000"],
       ["--batch_size=100000 exceeds the 4 training examples of --dataset=xor",
        "use 0 for full-batch"]),
      ("mnist_missing", ["--dataset=mnist", "--data_dir={data_dir}"],
       ["--dataset=mnist", "--download", "{data_dir}",
        "train-images-idx3-ubyte"]),
      ("stray_positional", ["--act=relu", "stray"], ["unexpected", "stray"]),
      ("zero_depth", ["--depth=0"], ["--depth", ">= 1", "got 0"]),
      ("sigma_w2_fixed_init", ["--init=uniform", "--sigma_w2=2"],
       ["--sigma_w2", "delta_orthogonal|gaussian|orthogonal",
        "'uniform' fixes its own"]),
      ("negative_sigma_b2", ["--sigma_b2=-1"], ["--sigma_b2", ">= 0"]),
      # The old standard-deviation flags: one line naming the new flag.
      ("old_sigma_w", ["--init=gaussian", "--sigma_w=2"],
       ["--sigma_w was renamed: pass --sigma_w2 (the weight variance, "
        "sigma_w^2 = 2^2 = 4 for --sigma_w=2)"]),
      ("old_sigma_b", ["--act=relu", "--sigma_b=0.3"],
       ["--sigma_b was renamed: pass --sigma_b2 (the bias variance, "
        "sigma_b^2 = 0.3^2 = 0.09 for --sigma_b=0.3)"]),
)
# Corrupt MNIST files (written into the case's --data_dir before it runs):
# file -> how it is broken.
CORRUPT_MNIST = {
    "truncated": ("train-images-idx3-ubyte", lambda raw: raw[:len(raw) // 2]),
    "half_gz": ("train-images-idx3-ubyte.gz",
                lambda raw: gzip.compress(raw)[:200]),
    "bad_magic": ("t10k-labels-idx1-ubyte", lambda raw: b"\x01\x02" + raw[2:]),
    "label_200": ("train-labels-idx1-ubyte",
                  lambda raw: raw[:-1] + bytes([200])),
}


def _write_corrupt_mnist(directory: str, how: str) -> None:
  """Small valid MNIST files in ``directory``, one broken as ``how``."""
  rng = np.random.default_rng(0)
  arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
            "train-labels-idx1-ubyte": np.arange(12) % 10,
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
            "t10k-labels-idx1-ubyte": np.arange(5) % 10}
  broken, damage = CORRUPT_MNIST[how]
  for name, array in arrays.items():
    path = os.path.join(directory, name)
    data.write_idx(path, array.astype(np.uint8))
    if broken.startswith(name):
      with open(path, "rb") as f:
        raw = f.read()
      os.remove(path)
      with open(os.path.join(directory, broken), "wb") as f:
        f.write(damage(raw))


TRAIN_BAD_INPUTS += tuple(
    (f"mnist_{how}", ["--dataset=mnist", "--data_dir={data_dir}"],
     ["--data_dir", "{data_dir}"]) for how in CORRUPT_MNIST)
LECTURE_BAD_INPUTS = (
      ("no_preset", [], ["--preset"] + sorted(presets.PRESETS)),
      ("unknown_preset", ["--preset=nope"], ["--preset", "nope", "xor_deep"]),
      ("zero_seeds", ["--preset=xor_deep", "--seeds=0"], ["--seeds", ">= 1"]),
      ("out_dir_in_a_file", ["--preset=xor_deep", "--out_dir=/dev/null/x"],
       ["--out_dir: cannot create run directory", "/dev/null is not a folder"]),
      ("arm_out_of_range", ["--preset=digits_deep", "--arms=2,5"],
       ["--arms=2,5", "1-4", "2 = relu"]),
      ("arm_not_a_number", ["--preset=xor_deep", "--arms=relu"],
       ["--arms=relu", "1-7", "1 = sigmoid, U(-1,1)"]),
      ("arm_repeated", ["--preset=xor_deep", "--arms=3,3"],
       ["--arms=3,3", "repeats"]),
      ("mnist_truncated", ["--preset=digits_deep", "--arms=4",
                           "--data_dir={data_dir}"], ["--data_dir"]),
)


BAD_INPUTS = tuple(
    (f"{module.split('.')[1]}_{name}", module, args, needles)
    for module, cases in (("experiments.train", TRAIN_BAD_INPUTS),
                          ("experiments.lecture", LECTURE_BAD_INPUTS))
    for name, args, needles in cases)


@pytest.mark.slow   # starts both entry points' interpreters (~4 s each)
class BadInputTest(parameterized.TestCase):
  """Every case in one process per module (cli_testing.run_cases): flags
  reset to their defaults between cases, the same absl parsing and main as
  python -m, without 4 s of start-up per case."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = absltest.get_default_test_tmpdir()
    cls.runs, cls.before = {}, {}
    for module in ("experiments.train", "experiments.lecture"):
      runs = {}
      for name, mod, args, _ in BAD_INPUTS:
        if mod == module:
          cwd, data = tempfile.mkdtemp(dir=root), tempfile.mkdtemp(dir=root)
          how = name.partition("_mnist_")[2]   # train_mnist_truncated: ...
          if how in CORRUPT_MNIST:
            _write_corrupt_mnist(data, how)
          cls.before[name] = sorted(os.listdir(data))
          given = [a.format(data_dir=data) for a in args]
          runs[name] = (cwd, data, given if any(
              a.startswith("--out_dir") for a in given)
                        else given + [f"--out_dir={cwd}/run"])
      procs = cli_testing.run_cases(module, [(cwd, args) for cwd, _, args
                                             in runs.values()])
      for (name, (cwd, data, _)), proc in zip(runs.items(), procs):
        cls.runs[name] = (cwd, data, proc)


  @parameterized.named_parameters(*BAD_INPUTS)
  def test_one_line_error(self, module, args, needles):
    del module, args
    name = self._testMethodName[len("test_one_line_error_"):]
    cwd, data_dir, proc = self.runs[name]
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertTrue(lines[0].startswith("error:"), lines[0])
    for needle in needles:
      self.assertIn(needle.format(data_dir=data_dir), lines[0])
    self.assertEqual(proc.stdout, "")
    self.assertEqual(os.listdir(cwd), [])
    self.assertEqual(sorted(os.listdir(data_dir)), self.before[name])


if __name__ == "__main__":
  absltest.main()
