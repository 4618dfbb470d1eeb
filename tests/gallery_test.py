"""Tests for vgrad.plots.style, vgrad.plots.gallery, vgrad.cli.gallery and
``cli.command_line``: a gallery redrawn from real (tiny) run directories."""

import contextlib
import importlib.machinery
import io
import json
import os
import shlex
import shutil
import struct
import sys
import tempfile
import types
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pytest

from vgrad.cli import app as cli
from vgrad.cli import gallery as gallery_main
from vgrad.cli import jacobian_spectrum
from vgrad.cli import reproduction
from vgrad.cli import training_run
from vgrad.io import records
from vgrad.plots import gallery
from vgrad.plots import style
from vgrad.studies import gradient_histograms as gh
from vgrad.studies import spectrum_study
from vgrad.studies import training_study
from vgrad.training import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECTRUM_COMMAND = "python -m experiments.jacobian_spectrum --depth=4"
TRAIN_COMMAND = "python -m experiments.lecture --preset=xor_deep --steps=20"
HISTOGRAM_COMMAND = "python -m experiments.gradient_histograms --depth=1"


def _png_size(path: str) -> tuple[int, int]:
  """(width, height) in pixels from the PNG's IHDR chunk."""
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n", path
  return struct.unpack(">II", head[16:24])


def _run_quietly(fn, *args):
  """``fn(*args)`` with stdout and stderr captured; returns (value or the
  SystemExit code, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      value = fn(*args)
    except SystemExit as e:
      value = e.code
  return value, out.getvalue(), err.getvalue()


class StyleTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("three_decades", [1e-3, 0.5, 1.0], True),
      # Exactly two decades is not more than two.
      ("two_decades", [1.0, 10.0, 100.0], False),
      ("just_over_two", [1.0, 100.1], True),
      # Zeros, negatives and non-finite values cannot sit on a log axis
      # and do not count: 1 to 50 is 1.7 decades.
      ("ignores_non_positive", [0.0, -5e6, 1.0, 50.0, np.nan, np.inf], False),
      ("zero_and_tiny", [0.0, 1e-6, 1.0], True),
      ("no_positive_value", [0.0, -1.0], False),
  )
  def test_log_scale_if_wide(self, values, expected):
    with style.style_context():
      fig = style.new_figure("column", 2.0)
      ax_y, ax_x = fig.subplots(1, 2)
    self.assertEqual(style.log_scale_if_wide(ax_y, values), expected)
    self.assertEqual(ax_y.get_yscale(), "log" if expected else "linear")
    self.assertEqual(ax_y.get_xscale(), "linear")
    self.assertEqual(style.log_scale_if_wide(ax_x, np.array(values)[None, :],
                                             axis="x"), expected)
    self.assertEqual(ax_x.get_xscale(), "log" if expected else "linear")

  def test_bad_arguments_name_the_valid_values(self):
    with style.style_context():
      fig = style.new_figure("page", 1.0)
    with self.assertRaisesRegex(ValueError, "axis must be 'x' or 'y'"):
      style.log_scale_if_wide(fig.subplots(), [1, 1e5], axis="z")
    with self.assertRaisesRegex(ValueError, "width must be one of column, "
                                "page"):
      style.new_figure("wide", 2.0)
    with self.assertRaisesRegex(ValueError, "height must be > 0"):
      style.new_figure("page", 0.0)

  def test_wrap_keeps_every_word_within_the_width(self):
    title = ("leaky_relu, slope=0.1 net, gaussian init, $\\sigma_w^2$=1.96: "
             "depth 2, width 4, 1 inputs, float64, QR\nsecond line")
    chars = int(style.COLUMN * 72 / (0.6 * (style.FONT_SIZE + 1)))
    wrapped = style.wrap(title, "column")
    self.assertTrue(all(len(line) <= chars
                        for line in wrapped.splitlines()))
    self.assertEqual(wrapped.split(), title.split())
    self.assertEqual(wrapped.splitlines()[-1], "second line")

  def test_save_figure_is_standard_width_and_leaves_no_temp_file(self):
    out = self.create_tempdir().full_path
    with style.style_context():
      fig = style.new_figure("column", 2.0)
      fig.subplots().plot([1, 2], [3, 4])
    paths = style.save_figure(fig, os.path.join(out, "fig"))
    self.assertEqual(paths, [os.path.join(out, "fig.png"),
                             os.path.join(out, "fig.pdf")])
    self.assertEqual(sorted(os.listdir(out)), ["fig.pdf", "fig.png"])
    # Width in pixels is exactly width in inches x DPI (no tight bbox).
    self.assertEqual(_png_size(paths[0]),
                     (round(style.COLUMN * style.DPI), round(2 * style.DPI)))
    with open(paths[1], "rb") as f:
      self.assertEqual(f.read(5), b"%PDF-")


class CommandLineTest(absltest.TestCase):

  def _main_module(self, spec_name):
    main = types.ModuleType("__main__")
    main.__spec__ = (importlib.machinery.ModuleSpec(spec_name, None)
                     if spec_name else None)
    return mock.patch.dict(sys.modules, {"__main__": main})

  def test_module_run_with_dash_m(self):
    argv = [os.path.join(REPO, "experiments", "train.py"), "--act=a b",
            "--lr=0.1", "--out_dir=it's"]
    with self._main_module("experiments.train"):
      command = cli.command_line(argv)
    self.assertEqual(command, "python -m experiments.train '--act=a b' "
                     "--lr=0.1 '--out_dir=it'\"'\"'s'")
    self.assertEqual(shlex.split(command), ["python", "-m",
                                            "experiments.train", *argv[1:]])

  def test_script_run_by_path_gets_its_package(self):
    argv = [os.path.join(REPO, "experiments", "lecture.py"),
            "--preset=xor_deep"]
    with self._main_module(None):
      self.assertEqual(cli.command_line(argv),
                       "python -m experiments.lecture --preset=xor_deep")
    with self._main_module(None), mock.patch.object(sys, "argv", argv):
      self.assertEqual(cli.command_line(),
                       "python -m experiments.lecture --preset=xor_deep")


def _no_render(fig, stem: str) -> list[str]:
  """Stands in for ``style.save_figure`` while the runs are written: the
  paths it would write, nothing rendered. The runs' own figures are not
  what the gallery reads (it redraws every figure from the results), and
  rendering them (6 figures, PNG and PDF) was a third of this file's time."""
  del fig
  return [f"{stem}.png", f"{stem}.pdf"]


def _write_runs(root: str) -> dict:
  """Real tiny runs written by the entry points' own write functions (the
  runs' own figures built but not rendered: :func:`_no_render`), plus broken
  ones. Returns their directories by role."""
  with mock.patch.object(style, "save_figure", _no_render):
    return _write_runs_unrendered(root)


def _write_runs_unrendered(root: str) -> dict:
  runs = {"spectrum": os.path.join(root, "jacobian_spectrum", "tiny"),
          "lecture": os.path.join(root, "lecture", "tiny"),
          "histograms": os.path.join(root, "gradient_histograms", "tiny"),
          "corrupt": os.path.join(root, "broken"),
          "malformed": os.path.join(root, "phase_diagram", "malformed")}
  results = spectrum_study.run_study(spectrum_study.SpectrumConfig(
      act="tanh", init="gaussian", sigma_w2=1.0, depth=4, width=8,
      num_inputs=2, method="dense"))
  jacobian_spectrum.write_run(runs["spectrum"],
                              results | {"command": SPECTRUM_COMMAND}, False)

  # A lecture run holding an mnist/ sub-run made before commands were
  # recorded (the same arms stand in for MNIST's).
  # Depth 1 here and in the histograms: one hidden layer and the readout
  # make every figure the gallery draws, and each further layer shape is
  # one more initialiser compilation.
  config = training_study.TrainConfig(label="tanh", act="tanh", depth=1,
                                      width=4, steps=20, log_every=10,
                                      seeds=2)
  with contextlib.redirect_stderr(io.StringIO()):   # progress lines
    metrics = training_run.train_arms("xor_deep", "tiny", [config],
                                      data.xor(), None)
  os.makedirs(os.path.join(runs["lecture"], "mnist"))
  training_run.write_run(runs["lecture"], {"command": TRAIN_COMMAND},
                            metrics | {"command": TRAIN_COMMAND})
  del metrics["command"]
  training_run.write_run(os.path.join(runs["lecture"], "mnist"), {},
                            metrics)

  hist = gh.run_study(gh.HistogramConfig(acts=("tanh",), depth=1, width=8,
                                         num_examples=16, num_bins=10),
                      data.load_dataset("digits"))
  reproduction.write_run(runs["histograms"],
                         hist | {"command": HISTOGRAM_COMMAND}, False)
  # A staging directory of a run being written is not a run yet.
  shutil.copytree(runs["histograms"],
                  os.path.join(root, "gradient_histograms", ".tiny.tmp-1"))

  for key, text in (("corrupt", '{"schema": "vgrad.phase_diagram/1", '),
                    ("malformed", json.dumps({
                        "schema": "vgrad.phase_diagram/1", "config": {}}))):
    os.makedirs(runs[key])
    with open(os.path.join(runs[key], "results.json"), "w") as f:
      f.write(text)
  os.makedirs(os.path.join(root, "notes"))    # not a run: ignored
  return runs


@pytest.mark.slow
class GalleryTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
    cls.runs_dir = os.path.join(cls.tmp, "runs")
    cls.out_dir = os.path.join(cls.tmp, "figures")
    cls.runs = _write_runs(cls.runs_dir)
    cls.entries, cls.stdout, cls.stderr = _run_quietly(
        gallery_main.generate, cls.runs_dir, cls.out_dir)
    with open(os.path.join(cls.out_dir, "README.md")) as f:
      cls.page = f.read()

  def test_every_figure_of_every_run_in_png_and_pdf(self):
    stems = ["jacobian_spectrum-tiny-spectrum",
             "training-lecture.tiny-curves",
             "training-lecture.tiny-gradient_flow",
             "training-lecture.tiny.mnist-curves",
             "training-lecture.tiny.mnist-gradient_flow",
             "gradient_histograms-tiny-histograms"]
    self.assertEqual([e.stem for e in self.entries], stems)
    self.assertEqual(sorted(os.listdir(self.out_dir)), sorted(
        ["README.md"] + [f"{s}.{ext}" for s in stems
                         for ext in ("png", "pdf")]))
    for stem in stems:
      _png_size(os.path.join(self.out_dir, f"{stem}.png"))
      with open(os.path.join(self.out_dir, f"{stem}.pdf"), "rb") as f:
        self.assertEqual(f.read(5), b"%PDF-")
      self.assertIn(f"{self.out_dir}/{stem}.{{png,pdf}}", self.stdout)

  def test_figures_have_the_standard_widths(self):
    page = round(style.PAGE * style.DPI)
    column = round(style.COLUMN * style.DPI)
    widths = {e.stem: _png_size(os.path.join(self.out_dir,
                                             f"{e.stem}.png"))[0]
              for e in self.entries}
    # Two-panel and grid figures span the page; the one-arm gradient
    # flow (one panel) fits a column.
    self.assertEqual(widths, {
        "jacobian_spectrum-tiny-spectrum": page,
        "training-lecture.tiny-curves": page,
        "training-lecture.tiny-gradient_flow": column,
        "training-lecture.tiny.mnist-curves": page,
        "training-lecture.tiny.mnist-gradient_flow": column,
        "gradient_histograms-tiny-histograms": page})

  def test_page_lists_each_figure_with_its_commands(self):
    made = {"jacobian_spectrum": SPECTRUM_COMMAND,
            "training-lecture.tiny-": TRAIN_COMMAND,
            "training-lecture.tiny.mnist": records.NOT_RECORDED,
            "gradient_histograms": HISTOGRAM_COMMAND}
    redraw = {"jacobian_spectrum": "plot_jacobian_spectrum",
              "training": "plot_training", "gradient_histograms": "replot"}
    sections = self.page.split("\n### ")[1:]
    self.assertLen(sections, len(self.entries))
    for entry, section in zip(self.entries, sections):
      self.assertStartsWith(section, f"`{entry.stem}`\n")
      self.assertIn(f"]({entry.stem}.png)", section)
      self.assertIn(f"[PDF]({entry.stem}.pdf)", section)
      [command] = [c for k, c in made.items() if entry.stem.startswith(k)]
      if command != records.NOT_RECORDED:
        command = f"`{command}`"
      self.assertIn(f"- Results made by: {command}\n", section)
      [module] = [m for k, m in redraw.items() if entry.stem.startswith(k)]
      self.assertIn(f"`python -m experiments.{module} --run_dir="
                    f"{entry.run.path}`", section)
    self.assertIn(gallery_main.gallery_command(self.runs_dir, self.out_dir),
                  self.page)

  def test_unreadable_runs_are_one_warning_line_each(self):
    lines = self.stderr.splitlines()
    self.assertLen(lines, 2, self.stderr)
    corrupt, malformed = lines
    self.assertStartsWith(corrupt, f"warning: skipped {self.runs['corrupt']}:"
                          f" cannot read")
    self.assertStartsWith(malformed, f"warning: skipped "
                          f"{self.runs['malformed']} (phase_diagram): "
                          f"KeyError")
    self.assertIn("## Skipped", self.page)
    self.assertIn(self.runs["corrupt"], self.page.split("## Skipped")[1])

  def test_regenerating_gives_the_same_files(self):
    before = {}
    for name in os.listdir(self.out_dir):
      with open(os.path.join(self.out_dir, name), "rb") as f:
        before[name] = f.read()
    out = self.create_tempdir().full_path
    shutil.copytree(self.out_dir, out, dirs_exist_ok=True)
    _run_quietly(gallery_main.generate, self.runs_dir, out)
    for name, content in before.items():
      with open(os.path.join(out, name), "rb") as f:
        self.assertEqual(f.read(), content.replace(
            self.out_dir.encode(), out.encode()), name)

  def test_no_runs_and_no_runs_dir_are_one_line_errors(self):
    empty = self.create_tempdir().full_path
    out = os.path.join(empty, "figures")
    code, stdout, stderr = _run_quietly(gallery_main.generate, empty, out)
    self.assertEqual(code, 1)
    self.assertEqual(stdout, "")
    self.assertLen(stderr.splitlines(), 1)
    self.assertStartsWith(stderr, f"error: no runs found under {empty}")
    for kind in gallery_main.KINDS.values():
      self.assertIn(kind.make_command, stderr)
    self.assertFalse(os.path.exists(out))
    code, _, stderr = _run_quietly(gallery_main.generate,
                                   os.path.join(empty, "nope"), out)
    self.assertEqual(code, 2)
    self.assertLen(stderr.splitlines(), 1)
    self.assertStartsWith(stderr, "error: --runs_dir:")

  def test_a_new_kind_is_one_registry_entry(self):
    root = self.create_tempdir().full_path
    os.makedirs(os.path.join(root, "toys", "a"))
    with open(os.path.join(root, "toys", "a", "toy.json"), "w") as f:
      json.dump({"command": "python -m experiments.toy", "y": [1, 2]}, f)

    def redraw(run_dir):
      with style.style_context():
        fig = style.new_figure("column", 1.5)
        fig.subplots().plot(records.read_json(run_dir, "toy.json")["y"])
      return {"line": fig}

    kinds = {"toy": gallery.Kind(
        title="Toys", redraw=redraw,
        detect=lambda d: os.path.isfile(os.path.join(d, "toy.json")),
        redraw_command="python -m experiments.toy --run_dir={run_dir}",
        make_command="python -m experiments.toy",
        made_by=lambda d: records.read_json(d, "toy.json")["command"])}
    runs, warnings = gallery.find_runs(root, kinds)
    self.assertEqual(runs, [gallery.Run("toy", os.path.join(root, "toys",
                                                            "a"), "toys.a")])
    self.assertEmpty(warnings)
    entries, _ = gallery.draw(runs, kinds, root)
    self.assertEqual(entries[0].made_by, "python -m experiments.toy")
    self.assertTrue(os.path.isfile(os.path.join(root, "toy-toys.a-line.png")))

  def test_spectrum_runs_of_every_schema_version(self):
    """A spectrum run written before results carried a schema is redrawn;
    one of a newer version is skipped with a warning naming both."""
    with open(os.path.join(self.runs["spectrum"], "results.json")) as f:
      results = json.load(f)
    self.assertEqual(next(iter(results.items())),
                     ("schema", "vgrad.jacobian_spectrum/3"))
    root = self.create_tempdir().full_path
    runs = os.path.join(root, "runs")
    for name, schema in (("old", None),
                         ("future", "vgrad.jacobian_spectrum/99")):
      record = {k: v for k, v in results.items() if k != "schema"}
      if schema:
        record = {"schema": schema} | record
      os.makedirs(os.path.join(runs, name))
      with open(os.path.join(runs, name, "results.json"), "w") as f:
        json.dump(record, f)
    entries, _, stderr = _run_quietly(gallery_main.generate, runs,
                                      os.path.join(root, "figures"))
    self.assertEqual([e.stem for e in entries],
                     ["jacobian_spectrum-old-spectrum"])
    [warning] = stderr.splitlines()
    self.assertStartsWith(warning, f"warning: skipped "
                          f"{os.path.join(runs, 'future')} "
                          f"(jacobian_spectrum): ")
    self.assertIn("holds schema vgrad.jacobian_spectrum/99", warning)
    self.assertIn("reads vgrad.jacobian_spectrum/3", warning)

  def test_histogram_runs_older_than_the_schema_field_are_recognised(self):
    with open(os.path.join(self.runs["histograms"], "results.json")) as f:
      results = json.load(f)
    del results["schema"]
    self.assertEqual(reproduction.schema_of(results), gh.SCHEMA)
    self.assertIsNone(reproduction.schema_of({"config": {}}))


if __name__ == "__main__":
  absltest.main()
