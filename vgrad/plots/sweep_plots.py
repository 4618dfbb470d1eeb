"""The sweep figure, drawn from the consolidated rows alone.

``plot_sweep(rows, task)`` takes the rows of ``results.csv`` (as
:func:`vgrad.studies.sweep.rows_of` returns them) and draws, per width, the
task's primary metric against depth (one line per activation and init, mean
and seed standard deviation), or, when the sweep has a single depth, a heat
map over activation x init.
"""

import math

from matplotlib.figure import Figure
import numpy as np

from vgrad.plots import style
from vgrad.studies import sweep_summary

MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", ":", "-.")
LABELS = {
    "spectrum": "input-output rms gain $\\|J\\|_F/\\sqrt{N}$",
    "train": "test accuracy",
}


def _ordered(values):
  return list(dict.fromkeys(values))


def _value(summary: dict, task: str) -> tuple[float, float, float]:
  """(centre, low, high) of one cell in plot units (gain or accuracy)."""
  mean, std = summary["mean"], summary["std"]
  std = 0.0 if math.isnan(std) else std
  if task == "spectrum":   # mean and std of log10 gain: a log-space band
    return 10.0 ** mean, 10.0 ** (mean - std), 10.0 ** (mean + std)
  # An accuracy's band stays within what an accuracy can be.
  return mean, max(mean - std, 0.0), min(mean + std, 1.0)


def _title(rows: list[dict], task: str) -> str:
  seeds = len({r["seed"] for r in rows})
  what = ("exact input-output Jacobian spectrum" if task == "spectrum"
          else "training")
  over = ("seeds" if task == "spectrum"
          else "seeds that did not diverge; band within [0, 1]")
  return f"sweep: {what}, {seeds} seeds per cell (mean ± std over {over})"


def _draw_lines(ax, summaries, task):
  acts = _ordered(s["act"] for s in summaries)
  inits = _ordered(s["init"] for s in summaries)
  for a, act in enumerate(acts):
    for i, init in enumerate(inits):
      pts = sorted((s["depth"], *_value(s, task)) for s in summaries
                   if s["act"] == act and s["init"] == init
                   and not math.isnan(s["mean"]))
      if not pts:
        continue
      d, mid, lo, hi = (np.array(v) for v in zip(*pts))
      color = style.PALETTE[a % len(style.PALETTE)]
      dash = LINESTYLES[(a // len(style.PALETTE)) % len(LINESTYLES)]
      ax.plot(d, mid, dash, color=color, marker=MARKERS[i % len(MARKERS)],
              ms=3.5, label=f"{act}, {init}")
      ax.fill_between(d, lo, hi, color=color, alpha=0.12, lw=0)
  depths = sorted({s["depth"] for s in summaries})
  if max(depths) >= 8 * min(depths):
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
  ax.set_xticks(depths, [str(d) for d in depths])
  ax.set_xlabel("depth L (hidden layers)")
  ax.set_ylabel(LABELS[task])
  if task == "spectrum":
    # Gains are multiplicative: a log axis once they span a decade.
    style.log_scale_if_wide(ax, [_value(s, task) for s in summaries], "y",
                            decades=1.0)
    ax.axhline(1.0, color="0.5", lw=0.6, ls=":")
  else:
    ax.set_ylim(0, 1.02)


def _draw_heatmap(fig, ax, summaries, task):
  acts = _ordered(s["act"] for s in summaries)
  inits = _ordered(s["init"] for s in summaries)
  grid = np.full((len(acts), len(inits)), np.nan)
  for s in summaries:
    grid[acts.index(s["act"]), inits.index(s["init"])] = s["mean"]
  if task == "spectrum":
    span = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-span, vmax=span,
                      aspect="auto")
    label = "log$_{10}$ input-output rms gain"
    text = lambda v: f"{v:+.1f}"
  else:
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    label = "test accuracy"
    text = lambda v: f"{v:.2f}"
  for (r, c), v in np.ndenumerate(grid):
    ax.text(c, r, "—" if np.isnan(v) else text(v), ha="center",
            va="center", fontsize=6.5)
  ax.set_xticks(range(len(inits)), inits, rotation=30, ha="right")
  ax.set_yticks(range(len(acts)), acts)
  fig.colorbar(image, ax=ax, label=label, shrink=0.9)


def plot_sweep(rows: list[dict], task: str) -> Figure:
  """The figure of a sweep; see the module docstring."""
  summaries = sweep_summary.summarize(rows, task)
  widths = sorted({s["width"] for s in summaries})
  single_depth = len({s["depth"] for s in summaries}) == 1
  with style.style_context():
    fig = style.new_figure("page", 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(widths), squeeze=False)[0])
    for ax, width in zip(axes, widths):
      mine = [s for s in summaries if s["width"] == width]
      if single_depth:
        _draw_heatmap(fig, ax, mine, task)
        ax.set_title(f"width {width}, depth {mine[0]['depth']}")
      else:
        _draw_lines(ax, mine, task)
        ax.set_title(f"width {width}")
    if not single_depth:
      handles, labels = axes[0].get_legend_handles_labels()
      fig.legend(handles, labels, loc="outside right center", frameon=False,
                 ncol=1 + len(labels) // 16)
    fig.suptitle(_title(rows, task))
  return fig
