"""A text progress bar with ETA for long grids (sweeps, tables)."""

import math
import sys
import time

BAR = 24


def _clock(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "--:--"
  seconds = round(seconds)
  h, rest = divmod(seconds, 3600)
  return (f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h
          else f"{rest // 60}:{rest % 60:02d}")


def render(done: float, total: int, elapsed: float, rate: float | None,
           label: str = "cells") -> str:
  """``[#####.....] 12.5/60 cells  21%  0:42 elapsed  ETA 2:38``.

  ``rate`` is cells per second of the work done in this run (None before
  the first cell finishes); the ETA is the remaining cells at that rate.
  """
  frac = done / total if total else 1.0
  filled = int(BAR * frac)
  eta = (total - done) / rate if rate else float("nan")
  count = f"{done:.1f}" if done != int(done) else f"{int(done)}"
  return (f"[{'#' * filled}{'.' * (BAR - filled)}] {count}/{total} {label} "
          f"{frac:4.0%}  {_clock(elapsed)} elapsed  ETA {_clock(eta)}")


class ProgressBar:
  """``bar(done, total, computed)``: redrawn in place on a terminal, one
  line per finished cell otherwise (logs stay readable).

  The ETA counts only cells computed in this run: cells reused from an
  earlier run cost nothing and would make it optimistic.
  """

  def __init__(self, stream=None, label: str = "cells"):
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty()
    self.label = label
    self.start = time.perf_counter()
    self.base = None    # cells already done when this run started
    self.last = None

  def __call__(self, done: float, total: int, computed: int) -> None:
    if self.base is None:
      self.base = done
    elapsed = time.perf_counter() - self.start
    work = done - self.base
    rate = work / elapsed if work > 0 and elapsed > 0 else None
    line = render(done, total, elapsed, rate, self.label)
    if self.tty:
      end = "\n" if done >= total else ""
      print(f"\r{line}\033[K", end=end, file=self.stream, flush=True)
    elif int(done) != self.last and (done == int(done) or done >= total):
      print(line, file=self.stream, flush=True)
      self.last = int(done)
