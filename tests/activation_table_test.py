"""Tests for vgrad.studies.activation_table and ``python -m
experiments.activation_table``.

The table logic is checked on rows built here, against numpy on the same
rows (exact up to float64 rounding: the mean and the ddof-1 std of at most
a handful of numbers in [0, 1] agree with numpy's to ~1e-16, so 1e-12 is a
safe bound that any wrong seed selection or ddof misses by > 1e-3). One
tiny real run (ReLU x 2 initialisations, depth 10, width 16, 300 steps, 2
seeds) checks the files and that the chance-level cell is n/c because its
computed loss sits at chance.
"""

import contextlib
import csv
import io
import json
import math
import os
import shutil
import tempfile

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import cli_testing  # tests/cli_testing.py
import numpy as np
import pytest

from vgrad.cli import activation_table as cli_table
from vgrad.io import records
from vgrad.plots import activation_table_plots
from vgrad.studies import activation_table
from vgrad.training import data

EXACT = 1e-12


def _row(act, init, seed, acc, *, converged=True, diverged_at=0,
         loss=0.1, depth=10, width=64):
  return {"cell": f"{act}_{init}", "act": act, "init": init,
          "depth": depth, "width": width, "seed": seed, "train_loss": loss,
          "test_accuracy": acc, "diverged_at": diverged_at,
          "converged": converged}


def _full_rows(seeds=3):
  """Every cell of the table; accuracy encodes (row, column, seed), all
  converged."""
  rows = []
  for a, act in enumerate(activation_table.ACTS):
    for i, init in enumerate(activation_table.INITS):
      for s in range(seeds):
        rows.append(_row(act, init, s, 0.5 + 0.03 * a + 0.005 * i
                         + 0.001 * s * (a + 1)))
  return rows


def _markdown_cells(text):
  """Header labels, row labels and cell texts of the Markdown table."""
  def split(line):
    return [c.strip() for c in line.strip("|").split("|")]

  lines = [l for l in text.splitlines() if l.startswith("|")]
  header = split(lines[0])[1:]
  body = [split(l) for l in lines[2:]]
  return header, [b[0] for b in body], [b[1:] for b in body]


class CellTest(parameterized.TestCase):
  """The n/c rules and the statistics of one cell."""

  def test_all_converged_mean_std_are_numpy(self):
    acc = [0.93, 0.95, 0.96]
    cell = activation_table.summarize_cell(
        "relu", "lsuv", [_row("relu", "lsuv", s, a)
                         for s, a in enumerate(acc)])
    self.assertEqual(cell.status, "ok")
    self.assertLess(abs(cell.mean - np.mean(acc)), EXACT)
    self.assertLess(abs(cell.std - np.std(acc, ddof=1)), EXACT)
    self.assertEqual(cell.text(), f"{np.mean(acc):.3f} ± "
                     f"{np.std(acc, ddof=1):.3f}")

  def test_partial_uses_converged_seeds_only_and_is_marked(self):
    rows = [_row("tanh", "he_normal", 0, 0.90),
            _row("tanh", "he_normal", 1, 0.94),
            _row("tanh", "he_normal", 2, 0.11, converged=False, loss=2.3)]
    cell = activation_table.summarize_cell("tanh", "he_normal", rows)
    self.assertEqual((cell.status, cell.converged, cell.seeds),
                     ("partial", 2, 3))
    self.assertLess(abs(cell.mean - 0.92), EXACT)
    self.assertLess(abs(cell.std - np.std([0.90, 0.94], ddof=1)), EXACT)
    self.assertEqual(cell.text(), "0.920 ± 0.028 (2/3)")

  def test_single_converged_seed_has_no_std(self):
    rows = [_row("elu", "uniform", 0, 0.8),
            _row("elu", "uniform", 1, 0.1, converged=False)]
    cell = activation_table.summarize_cell("elu", "uniform", rows)
    self.assertTrue(math.isnan(cell.std))
    self.assertEqual(cell.text(), "0.800 (1/2)")

  def test_stuck_is_nc(self):
    rows = [_row("sigmoid", "small_normal", s, 0.1, converged=False,
                 loss=2.30) for s in range(3)]
    cell = activation_table.summarize_cell("sigmoid", "small_normal", rows)
    self.assertEqual((cell.status, cell.text()), ("n/c", "n/c"))
    self.assertTrue(math.isnan(cell.mean))

  def test_diverged_is_marked_nc(self):
    # As read back from JSON: non-finite values are strings.
    rows = [_row("relu", "uniform", 0, "nan", converged=False,
                 diverged_at=3, loss="nan"),
            _row("relu", "uniform", 1, 0.1, converged=False, loss=2.3)]
    cell = activation_table.summarize_cell("relu", "uniform", rows)
    self.assertEqual((cell.status, cell.diverged, cell.text()),
                     ("n/c", 1, "n/c†"))

  def test_converged_flag_from_csv_strings_and_nan_accuracy(self):
    # A seed flagged converged but with no finite accuracy cannot be
    # averaged: it does not count.
    rows = [_row("gelu", "lsuv", 0, "0.9", converged="true"),
            _row("gelu", "lsuv", 1, "nan", converged="true"),
            _row("gelu", "lsuv", 2, "0.2", converged="false")]
    cell = activation_table.summarize_cell("gelu", "lsuv", rows)
    self.assertEqual((cell.converged, cell.mean), (1, 0.9))

  def test_no_rows_is_missing(self):
    cell = activation_table.summarize_cell("selu", "lsuv", [])
    self.assertEqual((cell.status, cell.text()), ("missing", "—"))


class TableTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.rows = _full_rows()
    self.info = {"dataset": "digits", "steps": 500, "optimizer": "momentum",
                 "lr": 0.01, "momentum": 0.9, "batch_size": 64}
    self.table = activation_table.build_table(self.rows, info=self.info)

  def test_rows_and_columns_are_the_issues(self):
    self.assertEqual(activation_table.ACTS, (
        "maxout", "relu", "leaky_relu:0.01", "leaky_relu:0.333", "elu",
        "tanh", "sigmoid", "softplus", "selu", "gelu"))
    self.assertEqual(activation_table.INITS, (
        "lsuv", "orthogonal", "glorot_uniform", "he_normal", "uniform",
        "small_normal"))
    self.assertEqual([l for _, l in activation_table.COLUMNS],
                     ["LSUV", "orthogonal", "Glorot", "He", "U(-1,1)",
                      "N(0,0.01²)"])

  def test_every_cell_is_numpy_on_its_rows(self):
    for (act, init), cell in self.table.cells.items():
      acc = [r["test_accuracy"] for r in self.rows
             if r["act"] == act and r["init"] == init]
      self.assertEqual(cell.seeds, 3)
      self.assertLess(abs(cell.mean - np.mean(acc)), EXACT)
      self.assertLess(abs(cell.std - np.std(acc, ddof=1)), EXACT)
    self.assertEqual({k: self.table.info[k] for k in ("depth", "width",
                                                      "seeds")},
                     {"depth": 10, "width": 64, "seeds": 3})

  def test_markdown_has_all_cells_in_order(self):
    text = activation_table.format_markdown(self.table)
    header, labels, cells = _markdown_cells(text)
    self.assertEqual(header, [l for _, l in activation_table.COLUMNS])
    self.assertEqual(labels, [l for _, l in activation_table.ROWS])
    self.assertEqual(np.shape(cells), (10, 6))
    for r, act in enumerate(activation_table.ACTS):
      for c, init in enumerate(activation_table.INITS):
        self.assertEqual(cells[r][c], self.table.cell(act, init).text())
    self.assertIn("digits, depth 10, width 64, 500 steps, 3 seeds", text)
    self.assertIn("SGD with momentum 0.9 (lr 0.01, batch 64)", text)
    self.assertIn(activation_table.FOOTNOTE, text)

  def test_csv_reads_back(self):
    rows = list(csv.DictReader(io.StringIO(
        activation_table.csv_text(self.table))))
    self.assertEqual(len(rows), 60)
    self.assertEqual(tuple(rows[0]), activation_table.CSV_FIELDS)
    for r in rows:
      cell = self.table.cell(r["act"], r["init"])
      self.assertEqual(float(r["mean"]), cell.mean)   # repr round-trips
      self.assertEqual(float(r["std"]), cell.std)
      self.assertEqual((r["status"], r["text"], int(r["seeds"]),
                        r["depth"]), ("ok", cell.text(), 3, "10"))

  def test_subset_keeps_table_order_and_marks_missing(self):
    rows = [_row("relu", "he_normal", 0, 0.9)]
    table = activation_table.build_table(
        rows, acts=("sigmoid", "relu"), inits=("he_normal", "lsuv"))
    self.assertEqual(table.acts, ("relu", "sigmoid"))
    self.assertEqual(table.inits, ("lsuv", "he_normal"))
    self.assertEqual(table.cell("relu", "lsuv").status, "missing")
    text = activation_table.csv_text(table)
    self.assertIn("relu,ReLU,lsuv,LSUV,,10,64,,0,0,0,nan,nan,missing,—",
                  text)

  @parameterized.named_parameters(
      ("unknown_act", {"acts": ("swish",)}, "acts"),
      ("repeated_init", {"inits": ("lsuv", "lsuv")}, "inits"),
      ("no_init", {"inits": ()}, "inits"))
  def test_bad_names(self, kwargs, field):
    with self.assertRaisesRegex(ValueError, f"^{field} must be"):
      activation_table.build_table([], **kwargs)

  def test_mixed_depths_refused(self):
    rows = [_row("relu", "lsuv", 0, 0.9),
            _row("relu", "he_normal", 0, 0.9, depth=20)]
    with self.assertRaisesRegex(ValueError, "one depth and width"):
      activation_table.build_table(rows)

  def test_heatmap(self):
    rows = self.rows[:]
    # Make one n/c and one partial cell.
    for r in rows:
      if (r["act"], r["init"]) == ("sigmoid", "small_normal"):
        r.update(converged=False, test_accuracy=0.1)
      if (r["act"], r["init"]) == ("tanh", "uniform") and r["seed"] == 0:
        r.update(converged=False)
    table = activation_table.build_table(rows, info=self.info)
    fig = activation_table_plots.plot_heatmap(table)
    ax, bar = fig.axes
    texts = [t.get_text() for t in ax.texts]
    self.assertEqual(texts, [table.cell(a, i).text(sep="\n")
                             for a in table.acts for i in table.inits])
    self.assertIn("n/c", texts)
    self.assertIn("(2/3)", texts[5 * 6 + 4])   # tanh x U(-1,1)
    hatched = [p for p in ax.patches if p.get_hatch()]
    self.assertLen(hatched, 1)
    self.assertEqual(hatched[0].get_xy(), (5 - 0.5, 6 - 0.5))
    self.assertEqual(ax.images[0].get_clim(),
                     (0.0, activation_table_plots.TOP_ACCURACY))
    self.assertEqual(bar.get_ylabel(), "test accuracy (by its nines)")
    # Converged cells 0.94 and 0.97 15 % of the colour map apart (on a
    # linear 0-1 scale: 3 %); 0, 0.9 and 0.99 equally spaced.
    norm = ax.images[0].norm
    self.assertGreater(norm(0.97) - norm(0.94), 0.14)
    self.assertAlmostEqual(norm(0.99) - norm(0.9), norm(0.9) - norm(0.0))
    self.assertEqual((norm(0.0), norm(0.99)), (0.0, 1.0))
    self.assertEqual([t.get_text() for t in ax.get_yticklabels()],
                     [l for _, l in activation_table.ROWS])
    self.assertIn("digits, depth 10, width 64, 500 steps, 3 seeds",
                  fig.get_suptitle())

  def test_record_is_json_and_redraws(self):
    rows = self.rows[:] + [_row("relu", "he_normal", 9, math.nan)]
    rows[-1]["depth"] = np.int64(10)   # numpy scalars from the sweep
    record = activation_table.table_record(
        rows, activation_table.ACTS, activation_table.INITS, self.info,
        command="python -m experiments.activation_table")
    text = json.dumps(record, allow_nan=False)
    run_dir = self.create_tempdir().full_path
    self.assertFalse(activation_table_plots.is_run(run_dir))
    with open(os.path.join(run_dir, activation_table.TABLE_JSON), "w") as f:
      f.write(text)
    self.assertTrue(activation_table_plots.is_run(run_dir))
    self.assertEqual(records.recorded_command(run_dir),
                     "python -m experiments.activation_table")
    table = activation_table.table_from_record(json.loads(text))
    self.assertEqual(table.cell("relu", "he_normal").seeds, 4)
    self.assertEqual(table.cell("relu", "he_normal").converged, 3)
    figures = activation_table_plots.redraw(run_dir)
    self.assertEqual(list(figures), ["heatmap"])
    with self.assertRaisesRegex(ValueError, "not an activation table"):
      activation_table.table_from_record({"schema": "other"})


class FlagsTest(parameterized.TestCase):
  """Bad flags end in one ``error:`` line and exit status 2, in-process."""

  def _values(self, *argv):
    fv = flags.FlagValues()
    cli_table.define_flags(fv)
    fv(["activation_table", *argv])
    return fv

  def _fails(self, fv, flag):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as e:
      cli_table.make_config(fv)
    self.assertEqual(e.exception.code, 2)
    lines = err.getvalue().splitlines()
    self.assertLen(lines, 1)
    self.assertTrue(lines[0].startswith(f"error: --{flag}"), lines[0])

  @parameterized.named_parameters(
      ("unknown_act", ["--acts=relu,swish"], "acts"),
      ("repeated_init", ["--inits=lsuv,lsuv"], "inits"),
      ("init_outside_table", ["--inits=gaussian"], "inits"),
      ("lr", ["--lr=0"], "lr"),
      ("lr_inf", ["--lr=inf"], "lr"),
      ("momentum_nan", ["--momentum=nan"], "momentum"),
      ("momentum_range", ["--momentum=1"], "momentum"),
      ("momentum_without_momentum", ["--optimizer=adam", "--momentum=0.5"],
       "momentum"))
  def test_bad_flag(self, argv, flag):
    self._fails(self._values(*argv), flag)

  @parameterized.parameters("--depth=0", "--width=0", "--seeds=0",
                            "--steps=0", "--batch_size=-1")
  def test_bounds_refused_at_parse_time(self, arg):
    with self.assertRaises(flags.IllegalFlagValueError):
      self._values(arg)

  def test_config_keeps_table_order(self):
    config = cli_table.make_config(self._values(
        "--acts=sigmoid,maxout", "--inits=small_normal,lsuv", "--depth=12"))
    self.assertEqual((config.acts, config.inits, config.depths),
                     (("maxout", "sigmoid"), ("lsuv", "small_normal"),
                      (12,)))
    self.assertEqual((config.optimizer, config.momentum), ("momentum", 0.9))

  def test_default_out_dir(self):
    base = cli_table.make_config(self._values())
    same = cli_table.make_config(self._values("--acts=relu"), "mnist")
    deeper = cli_table.make_config(self._values("--depth=20"))
    path = cli_table.default_out_dir(base)
    self.assertEqual(path, cli_table.default_out_dir(same))
    self.assertNotEqual(path, cli_table.default_out_dir(deeper))
    self.assertTrue(path.startswith(os.path.join("runs",
                                                 "activation_table", "")))

  def test_mnist_found_or_not(self):
    empty = self.create_tempdir().full_path
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      self.assertIsNone(cli_table.load_mnist(empty))
    self.assertEqual(out.getvalue(),
                     f"MNIST files not found in {empty}: digits only\n")
    rng = np.random.default_rng(0)
    for name, shape in zip(data.MNIST_FILES, [(20, 28, 28), (20,),
                                              (10, 28, 28), (10,)]):
      array = rng.integers(0, 10 if len(shape) == 1 else 256, shape)
      data.write_idx(os.path.join(empty, name), array.astype(np.uint8))
    mnist = cli_table.load_mnist(empty)
    self.assertEqual((mnist.name, mnist.x_train.shape), ("mnist", (20, 784)))


@pytest.mark.slow
class EndToEndTest(absltest.TestCase):
  """One tiny real run of the program, as a user runs it.

  One activation, so the table is ONE sweep group (the group's four training
  programs are the run's cost: a second activation doubled it): ReLU with
  N(0, 0.01^2) weights is stuck at chance, ReLU with He's init trains.
  """

  ARGS = ("--acts=relu", "--inits=small_normal,he_normal",
          "--depth=10", "--width=16", "--steps=300", "--seeds=2")

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cwd = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.cwd, ignore_errors=True)
    cls.out = os.path.join(cls.cwd, "table")
    cls.proc = cli_testing.run_module(
        "experiments.activation_table", *cls.ARGS, f"--out_dir={cls.out}",
        f"--data_dir={os.path.join(cls.cwd, 'no_mnist')}", cwd=cls.cwd)
    if cls.proc.returncode != 0:
      raise AssertionError(f"run failed:\n{cls.proc.stderr}")
    cls.dir = os.path.join(cls.out, "digits")
    with open(os.path.join(cls.dir, "table.json")) as f:
      cls.record = json.load(f)

  def test_files_and_printout(self):
    self.assertEqual(self.record["schema"], "vgrad.activation_table/1")
    for name in ("table.md", "table.csv", "table.json", "heatmap.png",
                 "heatmap.pdf", "results.csv", "sweep.json"):
      self.assertTrue(os.path.isfile(os.path.join(self.dir, name)), name)
    self.assertFalse(os.path.exists(os.path.join(self.out, "mnist")))
    self.assertIn("MNIST files not found in", self.proc.stdout)
    with open(os.path.join(self.dir, "table.md")) as f:
      self.assertIn(f.read().strip(), self.proc.stdout)
    self.assertIn("2/2 cells 100%", self.proc.stderr)   # the progress bar
    self.assertNotIn("Traceback", self.proc.stderr)
    self.assertIn("digits: computed 2 cells, reused 0", self.proc.stdout)
    self.assertEqual(self.record["command"].split()[:3],
                     ["python", "-m", "experiments.activation_table"])

  def test_chance_level_cell_is_computed_nc(self):
    # ReLU with N(0, 0.01^2) weights at depth 10, width 16: the signal's
    # rms shrinks by 0.01 * sqrt(16) / sqrt(2) = 0.028 per layer (weight std
    # x sqrt(fan_in) x ReLU's rms gain on a centred input; 0.057 in the
    # first, fan_in 64), to ~1e-15 after 10 layers, so the logits carry no
    # input information and the best loss
    # is the class prior's, ln 10 for digits' ~balanced 10 classes. A loss
    # within 5% of ln 10 is far above the converged threshold 0.5 ln 10.
    stuck = [r for r in self.record["rows"]
             if (r["act"], r["init"]) == ("relu", "small_normal")]
    self.assertLen(stuck, 2)
    for r in stuck:
      self.assertLess(abs(float(r["train_loss"]) / math.log(10) - 1), 0.05)
      self.assertFalse(r["converged"])
      self.assertEqual(r["diverged_at"], 0)
    trained = [r for r in self.record["rows"]
               if (r["act"], r["init"]) == ("relu", "he_normal")]
    self.assertTrue(all(r["converged"] for r in trained))
    with open(os.path.join(self.dir, "table.csv")) as f:
      rows = {(r["act"], r["init"]): r for r in csv.DictReader(f)}
    self.assertLen(rows, 2)
    self.assertEqual(rows[("relu", "small_normal")]["text"], "n/c")
    relu = rows[("relu", "he_normal")]
    self.assertEqual(relu["status"], "ok")
    acc = [float(r["test_accuracy"]) for r in trained]
    self.assertLess(abs(float(relu["mean"]) - np.mean(acc)), EXACT)


if __name__ == "__main__":
  absltest.main()
