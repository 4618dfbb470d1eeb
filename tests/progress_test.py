"""Tests of vgrad.cli.progress (tqdm bars) and training_run.Progress: what a
log and a terminal get on stderr."""

import contextlib
import io
from unittest import mock

from absl.testing import absltest

from vgrad.cli import progress
from vgrad.cli import training_run


class _Terminal(io.StringIO):

  def isatty(self):
    return True


class ProgressBarTest(absltest.TestCase):

  def test_a_log_gets_one_line_per_finished_cell(self):
    stream = io.StringIO()
    bar = progress.ProgressBar(stream)
    for done in (2, 2.5, 3, 3.7, 4, 4):   # 2 cells reused from a past run
      bar(done, 4, 0)
    lines = stream.getvalue().splitlines()
    self.assertLen(lines, 3)
    self.assertNotIn("\r", stream.getvalue())
    for line, text in zip(lines, ("2/4 cells  50%", "3/4 cells  75%",
                                  "4/4 cells 100%")):
      self.assertIn(text, line)
      self.assertIn("elapsed  ETA ", line)

  def test_rate_and_eta_count_only_the_cells_computed_now(self):
    stream = io.StringIO()
    with mock.patch.object(progress.time, "perf_counter",
                           side_effect=[0.0, 0.0, 10.0]):
      bar = progress.ProgressBar(stream)
      bar(2, 4, 0)    # reused: no rate yet
      bar(3, 4, 1)    # one cell in 10 s: 1 more to go
    first, second = stream.getvalue().splitlines()
    self.assertIn("ETA ?", first)
    self.assertIn("3/4 cells  75%  00:10 elapsed  ETA 00:10  10.00s/cells",
                  second)

  def test_fractional_counts_show_one_decimal(self):
    stream = io.StringIO()
    progress.Bar(60, stream=stream).update(12.5)
    progress.Bar(60, stream=stream).update(12.0)
    first, second = stream.getvalue().splitlines()
    self.assertIn("12.5/60 cells", first)
    self.assertIn("12/60 cells", second)

  def test_a_terminal_gets_the_bar_redrawn_in_place(self):
    stream = _Terminal()
    bar = progress.ProgressBar(stream)
    for done in (0, 0.5, 1, 2):
      bar(done, 2, 0)
    bar(2, 2, 0)   # after the end: ignored
    text = stream.getvalue()
    self.assertIn("\r", text)
    self.assertTrue(text.endswith("\n"))
    self.assertEqual(text.count("\n"), 1)
    self.assertIn("2/2 cells 100%", text.splitlines()[-1])


class TrainingProgressTest(absltest.TestCase):

  def test_one_line_per_logged_step_in_a_log(self):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      bars = training_run.Progress(2)
      for label in ("sigmoid", "relu"):
        bars.next_arm(label)
        for step in (0, 50, 100):
          bars(step, 100, 0.6931)
    lines = err.getvalue().splitlines()
    self.assertLen(lines, 6)
    self.assertTrue(lines[1].startswith("[1/2] sigmoid: |"), lines[1])
    self.assertIn("50/100 steps  50%", lines[1])
    self.assertTrue(lines[1].endswith(", median loss 0.6931"), lines[1])
    self.assertTrue(lines[5].startswith("[2/2] relu: |"), lines[5])
    self.assertIn("100/100 steps 100%", lines[5])


if __name__ == "__main__":
  absltest.main()
