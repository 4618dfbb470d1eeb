"""Progress bars on stderr, drawn by tqdm: grids of cells (sweeps, tables)
and training steps.

On a terminal tqdm redraws the bar in place; anywhere else (a pipe, a log
file) every update is one plain line, so logs stay readable. Each line
shows the count done out of the total, the percentage, the elapsed time,
the ETA and the rate.
"""

import sys
import time

import tqdm

# ``|#####     | 12.5/60 cells  21%  00:42 elapsed  ETA 02:38  3.55s/cells``
FORMAT = ("{desc}|{bar:24}| {n_fmt}/{total_fmt} {unit} {percentage:3.0f}%  "
          "{elapsed} elapsed  ETA {remaining}  {rate_fmt}{postfix}")


def _count(done: float) -> float:
  """``done`` to one decimal, an int when whole (``12.5``, ``4``)."""
  rounded = round(done, 1)
  return int(rounded) if rounded == int(rounded) else rounded


class _Tqdm(tqdm.tqdm):
  """tqdm showing a fractional count as :func:`_count` does."""

  @property
  def format_dict(self):
    return super().format_dict | {"n": _count(self.n)}


class Bar:
  """One bar of ``total`` ``unit`` on ``stream`` (default stderr).

  ``update(n, postfix)`` sets the count done (it may be fractional) and the
  text after the rate. The rate and the ETA count only the work done after
  ``initial``, in the time since ``start`` (a ``time.perf_counter()``
  reading; default now). The bar ends (its line is finished) once
  ``n >= total``; later updates are ignored.
  """

  def __init__(self, total: float, *, initial: float = 0, unit: str = "cells",
               desc: str = "", stream=None, start: float | None = None):
    self.stream = stream or sys.stderr
    self.total, self.initial = total, initial
    self.unit, self.desc = unit, desc
    self.start = time.perf_counter() if start is None else start
    self.done = False
    self.bar = None
    if self.stream.isatty():
      self.bar = _Tqdm(total=total, initial=initial, unit=unit,
                      desc=desc, file=self.stream, bar_format=FORMAT,
                      dynamic_ncols=True, leave=True, miniters=0)
      lag = time.perf_counter() - self.start   # started before the bar
      self.bar.start_t -= lag
      self.bar.last_print_t -= lag

  def update(self, n: float, postfix: str | None = None) -> None:
    if self.done:
      return
    self.done = n >= self.total
    if self.bar is not None:
      if postfix is not None:
        self.bar.set_postfix_str(postfix, refresh=False)
      self.bar.update(n - self.bar.n)
      if self.done:
        self.bar.close()
      return
    print(tqdm.tqdm.format_meter(
        _count(n), self.total, time.perf_counter() - self.start,
        prefix=self.desc, ascii=True, unit=self.unit, bar_format=FORMAT,
        postfix=postfix, initial=self.initial), file=self.stream, flush=True)

  def close(self) -> None:
    """Ends the bar where it stands (a terminal's line is finished)."""
    if self.bar is not None and not self.done:
      self.bar.close()
    self.done = True


class ProgressBar:
  """``bar(done, total, computed)`` for ``sweep.run_sweep``: redrawn in place
  on a terminal, one line per finished cell otherwise.

  The rate and the ETA count only cells computed in this run: cells reused
  from an earlier run cost nothing and would make the ETA optimistic.
  """

  def __init__(self, stream=None, label: str = "cells"):
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty()
    self.label = label
    self.bar = None
    self.last = None

  def __call__(self, done: float, total: int, computed: int) -> None:
    del computed
    if not total:
      return
    if self.bar is None:   # the cells already done when this run started
      self.bar = Bar(total, initial=done, unit=self.label,
                     stream=self.stream)
    if self.tty:
      self.bar.update(done)
    elif int(done) != self.last and (done == int(done) or done >= total):
      self.bar.update(done)
      self.last = int(done)
