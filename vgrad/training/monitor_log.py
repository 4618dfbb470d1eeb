"""Writing the monitor's statistics: TensorBoard and JSON lines.

``MonitorWriter(tb_dir=..., jsonl_path=...)`` takes the ``{path:
{statistic: value}}`` dicts of :func:`vgrad.gradient_stats` or
:func:`vgrad.tracked_stats` (one run, no seed axis: slice a vmapped one
first) and writes, per step:

* TensorBoard (``tb_dir``, one run): tags grouped per layer, ``<path>/<stat>``
  (TensorBoard groups by the part before the first ``/``, so
  ``Dense_0/kernel/norm`` and ``Dense_0/kernel/num_nan`` sit together under
  ``Dense_0``); the log10|g| histogram as ``<path>/log10_abs`` on the
  monitor's fixed grid (bucket limits :data:`monitor.LOG10_EDGES`), with
  ``num_zero``, ``num_nan``, ``num_inf``, ``hist_below`` and ``hist_above``
  as scalars beside it: a histogram never hides what it cannot bin;
* JSON lines (``jsonl_path``): one object per (step, path) with
  ``"schema"`` (:data:`vgrad.io.schemas.MONITOR`), ``step``, ``path``,
  every statistic
  (``log10_hist`` as a list of counts; NaN and Inf as null, the counts tell
  which) and any extra columns given to :meth:`MonitorWriter.write` (a seed,
  a run name). ``pandas.read_json(path, lines=True)`` reads it.
"""

import numpy as np
from tensorboard.compat.proto import summary_pb2

from vgrad.io import jsonl
from vgrad.io import schemas
from vgrad.training import monitor
from vgrad.training import tensorboard_log


def grid_histogram(counts) -> summary_pb2.HistogramProto | None:
  """A TensorBoard histogram of log10|g| from the monitor's fixed-grid
  ``counts (HIST_BINS,)``, trimmed to the occupied buckets (None if
  none). min/max are the outer edges of the occupied buckets; sum and
  sum_squares use bucket centres."""
  counts = np.asarray(counts, np.int64)
  if counts.shape != (monitor.HIST_BINS,):
    raise ValueError(f"expected {monitor.HIST_BINS} counts, got shape "
                     f"{counts.shape}")
  occupied = np.flatnonzero(counts)
  if occupied.size == 0:
    return None
  lo, hi = occupied[0], occupied[-1] + 1
  edges = monitor.LOG10_EDGES
  centres = (edges[lo:hi] + edges[lo + 1:hi + 1]) / 2
  kept = counts[lo:hi]
  return summary_pb2.HistogramProto(
      min=float(edges[lo]), max=float(edges[hi]), num=float(kept.sum()),
      sum=float(np.dot(kept, centres)),
      sum_squares=float(np.dot(kept, centres ** 2)),
      bucket_limit=edges[lo + 1:hi + 1].tolist(), bucket=kept.tolist())


def host_stats(values: dict, path: str = "") -> dict:
  """One leaf's statistics as numpy; refuses a batched (per-seed) one."""
  row = {}
  for key, value in values.items():
    value = np.asarray(value)
    if key != "log10_hist" and value.ndim:
      raise ValueError(
          f"MonitorWriter.write takes one run's statistics; {path}/{key} "
          f"has shape {value.shape} (slice the seed axis first: "
          "jax.tree.map(lambda a: a[s], stats))")
    row[key] = value
  return row


def _host(stats) -> dict:
  return {path: host_stats(values, path) for path, values in stats.items()}


class MonitorWriter:
  """Writes monitor statistics to a TensorBoard run and/or a JSON-lines
  file (module docstring). Use as a context manager, or :meth:`close`."""

  def __init__(self, *, tb_dir: str | None = None,
               jsonl_path: str | None = None):
    if tb_dir is None and jsonl_path is None:
      raise ValueError("MonitorWriter needs tb_dir, jsonl_path or both")
    self._tb = (tensorboard_log.SummaryWriter(tb_dir) if tb_dir is not None
                else None)
    self._jsonl = (jsonl.JsonlWriter(jsonl_path, schemas.MONITOR)
                   if jsonl_path is not None else None)

  def write(self, step: int, stats, **columns) -> None:
    """Writes one step's ``{path: {statistic: value}}``; ``columns`` are
    added to every JSON line (e.g. ``seed=3``)."""
    stats = _host(stats)
    for path, row in stats.items():
      if self._tb is not None:
        for key, value in row.items():
          if key == "log10_hist":
            histogram = grid_histogram(value)
            if histogram is not None:
              self._tb.write_histogram(f"{path}/log10_abs", histogram, step)
          else:
            self._tb.scalar(f"{path}/{key}", float(value), step)
      if self._jsonl is not None:
        self._jsonl.write({"step": int(step), "path": path} | columns
                          | row)

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def read_jsonl(path: str) -> list[dict]:
  """The records of a monitor's JSON-lines file (schema checked)."""
  return jsonl.read_jsonl(path, schemas.MONITOR)
