"""TensorBoard logs without TensorFlow.

``SummaryWriter`` writes scalars and histograms in the standard event-file
format (TFRecord-framed ``Event`` protos, starting with the ``file_version``
event) that ``tensorboard --logdir`` reads. It needs only the ``tensorboard``
pip package, protobuf and numpy: TensorFlow is neither needed nor imported
(without it, TensorBoard uses its own stub for file I/O). ``read_run`` reads
a run back with TensorBoard's own reader, for tests and figures.

Tags are free strings and their conventions belong to the caller, e.g.
``loss``, ``grad_norm/layer_01``, ``weights/layer_03``; TensorBoard groups
tags by the part before the first ``/``.
"""

import dataclasses
import os
import time

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.summary.writer import event_file_writer


def make_histogram(values, bins: int = 30):
  """Histogram of the finite entries of ``values``.

  Buckets split [min, max] into ``bins`` equal widths; ``bucket_limit`` holds
  their right edges. A bucket counts values in [left, right), the last one
  also max, as TensorFlow's histograms do. Edges that coincide in float64 are
  merged, so all-equal values give one bucket whose limit is that value.

  Args:
    values: array-like of any shape (numpy or JAX); NaN and Inf are dropped.
    bins: number of buckets, at least 1.

  Returns:
    A ``summary_pb2.HistogramProto``, or None if no entry is finite.
  """
  if bins < 1:
    raise ValueError(f"bins must be at least 1, got {bins}")
  x = np.asarray(values, dtype=np.float64).ravel()
  x = x[np.isfinite(x)]
  if x.size == 0:
    return None
  lo, hi = float(x.min()), float(x.max())
  edges = np.unique(np.linspace(lo, hi, bins + 1))
  if edges.size < 2:
    limits, counts = [hi], [x.size]
  else:
    counts, _ = np.histogram(x, bins=edges)
    limits, counts = edges[1:].tolist(), counts.tolist()
  return summary_pb2.HistogramProto(
      min=lo, max=hi, num=x.size, sum=float(x.sum()),
      sum_squares=float(np.dot(x, x)), bucket_limit=limits, bucket=counts)


class SummaryWriter:
  """Writes scalars and histograms for one TensorBoard run directory.

  Each writer creates ``logdir`` if needed and writes one new events file in
  it; one logdir is one run in TensorBoard. Events are buffered and written
  by a background thread; ``flush`` or ``close`` puts them on disk. Use as a
  context manager to close on exit.
  """

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    self.logdir = logdir
    self._writer = event_file_writer.EventFileWriter(logdir)

  def _write(self, value: summary_pb2.Summary.Value, step: int) -> None:
    summary = summary_pb2.Summary(value=[value])
    self._writer.add_event(
        event_pb2.Event(wall_time=time.time(), step=int(step),
                        summary=summary))

  def scalar(self, tag: str, value: float, step: int) -> None:
    """Writes ``float(value)`` at ``step``; NaN and Inf are kept as is."""
    self._write(
        summary_pb2.Summary.Value(tag=tag, simple_value=float(value)), step)

  def histogram(self, tag: str, values, step: int, bins: int = 30) -> bool:
    """Writes a histogram of the finite entries of ``values`` at ``step``.

    Args:
      tag: TensorBoard tag.
      values: array-like of any shape (numpy or JAX); NaN and Inf are dropped.
      step: training step.
      bins: number of equal-width buckets between min and max.

    Returns:
      True if written; False (nothing written) if no entry is finite.
    """
    histo = make_histogram(values, bins)
    if histo is None:
      return False
    self.write_histogram(tag, histo, step)
    return True

  def write_histogram(self, tag: str, histo: summary_pb2.HistogramProto,
                      step: int) -> None:
    """Writes a histogram already binned (e.g. on a fixed grid)."""
    self._write(summary_pb2.Summary.Value(tag=tag, histo=histo), step)

  def flush(self) -> None:
    """Puts every event written so far on disk."""
    self._writer.flush()

  def close(self) -> None:
    """Flushes and closes the events file; closing again does nothing."""
    self._writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def read_run(logdir: str) -> dict:
  """Reads every scalar and histogram of a run with TensorBoard's reader.

  Args:
    logdir: a run directory (all its events files are read).

  Returns:
    ``{"scalars": {tag: [(step, value), ...]}, "histograms": {tag: [(step,
    dict), ...]}}``, in the order written; each histogram dict has keys
    min, max, num, sum, sum_squares, bucket_limit and bucket.
  """
  if not os.path.isdir(logdir):
    raise FileNotFoundError(f"no run directory {logdir}")
  keep_all = {event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
  acc = event_accumulator.EventAccumulator(logdir, size_guidance=keep_all)
  acc.Reload()
  tags = acc.Tags()
  scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
             for tag in tags[event_accumulator.SCALARS]}
  histograms = {
      tag: [(e.step, dataclasses.asdict(e.histogram_value))
            for e in acc.Histograms(tag)]
      for tag in tags[event_accumulator.HISTOGRAMS]}
  return {"scalars": scalars, "histograms": histograms}
