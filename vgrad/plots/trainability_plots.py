"""The deep-trainability figure from a results dictionary of
:mod:`vgrad.studies.deep_trainability` (``results.json``), never from live
objects and without JAX.

Three panels, one colour per arm throughout, the arms' legend below:

(a) final test accuracy against depth (log axis): the median over seeds,
    the bars spanning the seeds' min and max; chance and the threshold as
    horizontal lines;
(b) test accuracy against the training step (log axis from the first
    evaluation, so the cures' first tens of steps and the baseline's
    hundreds both show) at the deepest depth: the median over seeds, the
    band spanning min and max;
(c) the spread of the input-output Jacobian's singular values at
    initialisation (std of log10 s) against the median steps to the
    threshold (log axis), one marker per (arm, depth), the depth by marker
    shape; cells whose median never got there sit on the "not reached" row
    above the axis' range, as open markers.
"""

import math

from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

from vgrad.plots import style
from vgrad.studies import trainability_report

DEPTH_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _floats(values) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], float)


def _cells(results: dict) -> dict:
  return {(c["arm"], c["depth"]): c for c in results["cells"]}


def _colours(arms: list[str]) -> dict:
  """One colour per arm, the same in every run (by its place in
  ``ARM_ORDER``; an arm not there takes the next free colour)."""
  order = list(trainability_report.ARM_ORDER)
  order += [a for a in arms if a not in order]
  return {a: style.PALETTE[order.index(a) % len(style.PALETTE)]
          for a in arms}


def _reference_lines(ax, results: dict) -> None:
  chance = 1.0 / results["dataset"]["classes"]
  ax.axhline(chance, color="0.55", ls="--", lw=0.8)
  ax.axhline(results["config"]["threshold"], color="0.55", ls=":", lw=0.8)


def _depth_axis(ax, depths: list[int]) -> None:
  if len(depths) > 1 and max(depths) / min(depths) > 1:
    ax.set_xscale("log")
    ax.set_xlim(min(depths) / 1.3, max(depths) * 1.3)
  ax.set_xticks(depths)
  ax.set_xticklabels([str(d) for d in depths])
  ax.minorticks_off()


def _panel_accuracy(ax, results, arms, depths, colours) -> None:
  cells = _cells(results)
  for arm in arms:
    ds = [d for d in depths if (arm, d) in cells]
    med = [cells[(arm, d)]["median"] for d in ds]
    y = _floats([m["final_test_accuracy"] for m in med])
    lo = _floats([m["final_test_accuracy_min"] for m in med])
    hi = _floats([m["final_test_accuracy_max"] for m in med])
    ax.errorbar(ds, y, yerr=np.abs(np.stack([y - lo, hi - y])),
                color=colours[arm], marker="o", capsize=2, lw=1.1,
                elinewidth=0.8)
  _reference_lines(ax, results)
  _depth_axis(ax, depths)
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("depth $L$ (hidden layers)")
  ax.set_ylabel("final test accuracy")
  ax.set_title("(a) accuracy after the budget")


def _panel_curves(ax, results, arms, depth, colours) -> None:
  cells = _cells(results)
  steps = np.asarray(results["eval_steps"], float)
  for arm in arms:
    cell = cells.get((arm, depth))
    if cell is None:
      continue
    acc = np.stack([_floats(s["curves"]["test_accuracy"])
                    for s in cell["seeds"]])
    with np.errstate(all="ignore"):
      finite = np.isfinite(acc).any(axis=0)
      med = np.full(steps.shape, np.nan)
      lo, hi = med.copy(), med.copy()
      med[finite] = np.nanmedian(acc[:, finite], axis=0)
      lo[finite] = np.nanmin(acc[:, finite], axis=0)
      hi[finite] = np.nanmax(acc[:, finite], axis=0)
    ax.plot(steps, med, color=colours[arm], lw=1.1)
    ax.fill_between(steps, lo, hi, color=colours[arm], alpha=0.15, lw=0)
  _reference_lines(ax, results)
  if len(steps) > 2 and steps[-1] / steps[1] > 10:
    ax.set_xscale("log")
    ax.set_xlim(steps[1], steps[-1])
    _plain_ticks(ax.xaxis)
  else:
    ax.set_xlim(0, steps[-1])
  ax.set_ylim(0, 1.02)
  ax.set_xlabel("training step")
  ax.set_ylabel("test accuracy")
  ax.set_title(f"(b) training curves, depth {depth}")


def _plain_ticks(axis) -> None:
  """Tick labels of a log axis as plain numbers (20, 100, 1000)."""
  axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  axis.set_minor_formatter(ticker.NullFormatter())


def _panel_scatter(ax, results, arms, depths, colours) -> None:
  cells = _cells(results)
  total = results["config"]["steps"]
  never = total * 2.0
  xs, ys = [], []
  for arm in arms:
    for i, depth in enumerate(depths):
      cell = cells.get((arm, depth))
      if cell is None:
        continue
      x = cell["median"]["jacobian"]["log10_sv_std"]
      y = cell["median"]["steps_to_threshold"]
      if x is None:
        continue
      marker = DEPTH_MARKERS[i % len(DEPTH_MARKERS)]
      reached = y is not None
      ax.plot([x], [y if reached else never], ls="none", marker=marker,
              ms=4.5, color=colours[arm],
              mfc=colours[arm] if reached else "none", mew=1.0)
      xs.append(x)
      ys.append(y if reached else never)
  ax.set_yscale("log")
  low = min([y for y in ys if y < never] + [results["config"]["eval_every"]])
  ax.set_ylim(low / 1.6, never * 2.2)
  ax.axhline(math.sqrt(total * never), color="0.7", lw=0.6)
  ax.text(0.02, never * 1.3, f"not reached in {total} steps",
          va="bottom", transform=ax.get_yaxis_transform(),
          fontsize=style.NOTE_SIZE, color="0.35")
  _plain_ticks(ax.yaxis)
  if style.log_scale_if_wide(ax, xs, "x", decades=1.5):
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 3.0)))
    _plain_ticks(ax.xaxis)
  ax.set_xlabel(r"spread at init: std of $\log_{10} s$ of $J$")
  ax.set_ylabel("median steps to threshold")
  ax.set_title("(c) isometry at init vs. speed")
  handles = [Line2D([], [], ls="none", marker=DEPTH_MARKERS[i % len(
      DEPTH_MARKERS)], color="0.3", mfc="0.3", ms=4) for i in
      range(len(depths))]
  ax.legend(handles, [f"depth {d}" for d in depths], loc="lower right",
            frameon=False, fontsize=style.NOTE_SIZE, handletextpad=0.2,
            borderaxespad=0.2)


def describe(results: dict) -> str:
  """The setup, as the figure's title."""
  c = results["config"]
  opt = c["optimizer"] + (f" {c['momentum']:g}" if c["optimizer"] ==
                          "momentum" else "")
  return (f"Vanilla MLPs (width {c['width']}, no skips, no normalisation) "
          f"on {results['dataset']['name']}: {opt}, lr {c['lr']:g}, batch "
          f"{c['batch_size']}, {c['steps']} steps, {c['seeds']} seeds; "
          f"threshold {c['threshold']:g} test accuracy")


def plot_trainability(results: dict) -> Figure:
  """The figure of one run (page width, three panels, module docstring).

  Args:
    results: a results dictionary of schema ``vgrad.deep_trainability/1``.
  """
  arms = list(results["config"]["arms"])
  depths = sorted(results["config"]["depths"])
  colours = _colours(arms)
  with style.style_context():
    fig = style.new_figure("page", 3.0)
    axes = fig.subplots(1, 3)
    _panel_accuracy(axes[0], results, arms, depths, colours)
    _panel_curves(axes[1], results, arms, max(depths), colours)
    _panel_scatter(axes[2], results, arms, depths, colours)
    handles = [Line2D([], [], color=colours[a], lw=1.5) for a in arms]
    handles += [Line2D([], [], color="0.55", ls="--", lw=0.8),
                Line2D([], [], color="0.55", ls=":", lw=0.8)]
    labels = arms + ["chance", "threshold"]
    fig.legend(handles, labels, loc="outside lower center",
               ncols=min(len(labels), 4), frameon=False,
               fontsize=style.SMALL_SIZE)
    fig.suptitle(style.wrap(describe(results), "page"))
  return fig
