"""Tests for vgrad.training.tensorboard_log: real event files, read by TensorBoard."""

import glob
import importlib.util
import math
import os
import sys

from absl.testing import absltest
import jax.numpy as jnp
import numpy as np
from tensorboard.backend.event_processing import event_file_loader

from vgrad.training import tensorboard_log


def _bucket_counts(x, histo):
  """Counts of ``x`` in each [left, right) bucket, the last one closed."""
  left = [histo["min"]] + histo["bucket_limit"][:-1]
  right = histo["bucket_limit"]
  counts = [np.sum((x >= a) & (x < b)) for a, b in zip(left, right)]
  counts[-1] += np.sum(x == right[-1])
  return counts


class TensorboardLogTest(absltest.TestCase):

  def _logdir(self, name="run"):
    return os.path.join(self.create_tempdir().full_path, name)

  def test_scalars_round_trip(self):
    logdir = self._logdir()
    values = np.random.default_rng(0).normal(size=(3, 200)) * 1e3
    tags = ["loss", "grad_norm/layer_01", "grad_norm/layer_02"]
    with tensorboard_log.SummaryWriter(logdir) as writer:
      for step in range(values.shape[1]):
        for tag, row in zip(tags, values):
          writer.scalar(tag, row[step], step)
    scalars = tensorboard_log.read_run(logdir)["scalars"]
    self.assertCountEqual(scalars, tags)
    for tag, row in zip(tags, values):
      steps, read = zip(*scalars[tag])
      self.assertEqual(list(steps), list(range(200)))
      # simple_value is a float32.
      np.testing.assert_array_equal(read, row.astype(np.float32))

  def test_nan_and_inf_scalars_stay_visible(self):
    logdir = self._logdir()
    with tensorboard_log.SummaryWriter(logdir) as writer:
      for step, value in enumerate([1.0, math.inf, -math.inf, math.nan]):
        writer.scalar("loss", value, step)
    read = [v for _, v in tensorboard_log.read_run(logdir)["scalars"]["loss"]]
    self.assertEqual(read[:3], [1.0, math.inf, -math.inf])
    self.assertTrue(math.isnan(read[3]))

  def test_histogram_round_trip_drops_non_finite(self):
    logdir = self._logdir()
    x = np.random.default_rng(1).normal(size=(50, 40)).astype(np.float32)
    x[0, :3] = [np.nan, np.inf, -np.inf]
    finite = x[np.isfinite(x)].astype(np.float64)
    with tensorboard_log.SummaryWriter(logdir) as writer:
      self.assertTrue(writer.histogram("weights/layer_03", x, 7, bins=25))
    [(step, histo)] = tensorboard_log.read_run(logdir)["histograms"][
        "weights/layer_03"]
    self.assertEqual(step, 7)
    self.assertEqual(histo["num"], finite.size)
    self.assertEqual(histo["min"], finite.min())
    self.assertEqual(histo["max"], finite.max())
    self.assertAlmostEqual(histo["sum"], finite.sum(), places=9)
    self.assertAlmostEqual(histo["sum_squares"] / np.dot(finite, finite), 1.0,
                           places=12)
    self.assertLen(histo["bucket"], 25)
    self.assertEqual(sum(histo["bucket"]), histo["num"])
    self.assertTrue(np.all(np.diff(histo["bucket_limit"]) > 0))
    self.assertEqual(histo["bucket_limit"][-1], histo["max"])
    self.assertEqual(histo["bucket"], _bucket_counts(finite, histo))

  def test_all_nan_histogram_writes_nothing(self):
    logdir = self._logdir()
    with tensorboard_log.SummaryWriter(logdir) as writer:
      self.assertFalse(writer.histogram("grads", [np.nan, np.inf], 0))
      self.assertTrue(writer.histogram("weights", [1.0, 2.0], 0))
    self.assertEqual(list(tensorboard_log.read_run(logdir)["histograms"]),
                     ["weights"])

  def test_constant_values_give_one_bucket(self):
    logdir = self._logdir()
    with tensorboard_log.SummaryWriter(logdir) as writer:
      writer.histogram("c", np.full(17, -0.25), 0)
    [(_, histo)] = tensorboard_log.read_run(logdir)["histograms"]["c"]
    self.assertEqual(histo["bucket_limit"], [-0.25])
    self.assertEqual(histo["bucket"], [17.0])
    self.assertEqual((histo["min"], histo["max"]), (-0.25, -0.25))

  def test_range_of_one_ulp_keeps_limits_increasing(self):
    histo = tensorboard_log.make_histogram([1.0, np.nextafter(1.0, 2.0)])
    self.assertEqual(list(histo.bucket_limit), [np.nextafter(1.0, 2.0)])
    self.assertEqual(list(histo.bucket), [2.0])

  def test_jax_array_histogram_over_steps(self):
    logdir = self._logdir()
    x = jnp.arange(20, dtype=jnp.float32).reshape(4, 5)
    with tensorboard_log.SummaryWriter(logdir) as writer:
      for step in range(3):
        writer.histogram("w", x * step + 1, step)
    read = tensorboard_log.read_run(logdir)["histograms"]["w"]
    self.assertEqual([step for step, _ in read], [0, 1, 2])
    self.assertEqual(read[2][1]["num"], 20)
    self.assertEqual(read[2][1]["sum"], float(np.sum(2 * np.arange(20) + 1)))

  def test_bins_must_be_positive(self):
    with self.assertRaisesRegex(ValueError, "bins"):
      tensorboard_log.make_histogram([1.0], bins=0)

  def test_two_runs_are_independent(self):
    root = self.create_tempdir().full_path
    dirs = [os.path.join(root, "relu"), os.path.join(root, "tanh")]
    writers = [tensorboard_log.SummaryWriter(d) for d in dirs]
    for step in range(5):
      for i, writer in enumerate(writers):
        writer.scalar("loss", 10 * i + step, step)
    writers[0].histogram("w", [1.0], 0)
    for writer in writers:
      writer.close()
    relu, tanh = (tensorboard_log.read_run(d) for d in dirs)
    self.assertEqual(relu["scalars"]["loss"], [(s, s) for s in range(5)])
    self.assertEqual(tanh["scalars"]["loss"], [(s, 10 + s) for s in range(5)])
    self.assertEqual(list(relu["histograms"]), ["w"])
    self.assertEqual(tanh["histograms"], {})

  def test_writes_one_standard_event_file(self):
    logdir = self._logdir()
    with tensorboard_log.SummaryWriter(logdir) as writer:
      writer.scalar("loss", 0.5, 3)
    paths = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    self.assertEqual(os.listdir(logdir), [os.path.basename(p) for p in paths])
    events = list(event_file_loader.EventFileLoader(paths[0]).Load())
    self.assertEqual(events[0].file_version, "brain.Event:2")
    self.assertLen(events, 2)
    self.assertEqual(events[1].step, 3)
    self.assertGreater(events[1].wall_time, 0)

  def test_flush_makes_events_readable_and_close_is_idempotent(self):
    logdir = self._logdir()
    writer = tensorboard_log.SummaryWriter(logdir)
    writer.scalar("loss", 2.0, 0)
    writer.flush()
    self.assertEqual(tensorboard_log.read_run(logdir)["scalars"]["loss"],
                     [(0, 2.0)])
    writer.close()
    writer.close()
    with self.assertRaises(OSError):
      writer.scalar("loss", 1.0, 1)

  def test_read_run_of_missing_dir_raises(self):
    with self.assertRaises(FileNotFoundError):
      tensorboard_log.read_run(self._logdir("absent"))

  def test_tensorflow_is_not_imported(self):
    if importlib.util.find_spec("tensorflow") is not None:
      # TensorBoard's compat layer then imports it on its own.
      self.skipTest("tensorflow is installed")
    logdir = self._logdir()
    with tensorboard_log.SummaryWriter(logdir) as writer:
      writer.scalar("loss", 1.0, 0)
      writer.histogram("w", [1.0, 2.0], 0)
    tensorboard_log.read_run(logdir)
    self.assertNotIn("tensorflow", sys.modules)


if __name__ == "__main__":
  absltest.main()
