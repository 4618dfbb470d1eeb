"""The width coordinate check's figure, from a coord_check results record.

Laid out like Fig. 5 of Yang et al. (2021, "Tensor Programs V"): one row per
parameterisation (SP above muP), one column per layer, each panel the
coordinate size mean |x| against the width on log-log axes, one line per
training step t coloured along a ramp (a colour bar reads the step). A
width-stable layer's lines are flat; SP's hidden layers and logits fan out
upwards once training starts. Reads only the results dictionary (never
JAX).
"""

import matplotlib
from matplotlib.figure import Figure
import matplotlib.lines
import matplotlib.ticker
import numpy as np

from vgrad.plots import style

NAMES = {"sp": "SP", "mup": r"$\mu$P"}
# A figure shows at most this many layers: the first, the last ones and
# evenly spaced ones between.
MAX_COLUMNS = 5
CMAP = "viridis"


def chosen_layers(layers: list[str], max_columns: int = MAX_COLUMNS
                  ) -> list[str]:
  """``layers`` when there are at most ``max_columns``; otherwise that many,
  evenly spaced, always with the first and the last."""
  if len(layers) <= max_columns:
    return list(layers)
  picks = np.unique(np.round(np.linspace(0, len(layers) - 1, max_columns)))
  return [layers[int(i)] for i in picks]


def _positive(values) -> np.ndarray:
  """Floats with None, zero and negative entries as NaN (a log axis cannot
  show them)."""
  v = np.array([np.nan if x is None else x for x in values], np.float64)
  return np.where(v > 0, v, np.nan)


def _draw_panel(ax, results: dict, name: str, layer: str, colours) -> None:
  arm = results["parameterizations"][name]
  widths = np.asarray(results["widths"], np.float64)
  coord = arm["coord"][layer]
  for t, (mean, std) in enumerate(zip(coord["mean"], coord["std"])):
    mean = _positive(mean)
    std = np.array([0.0 if s is None else s for s in std])
    ax.fill_between(widths, _positive(mean - std), mean + std,
                    color=colours[t], alpha=0.15, linewidth=0)
    ax.plot(widths, mean, "o-", color=colours[t], markersize=2.2,
            linewidth=1.0)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xticks(widths)
  ax.set_xticklabels([f"{int(w)}" for w in widths], rotation=45)
  ax.minorticks_off()
  # Labelled ticks at 1, 2, 3, 5 x 10^k: a panel often spans less than a
  # decade, where plain decade ticks would leave it unlabelled.
  ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(
      base=10, subs=(1.0, 2.0, 3.0, 5.0)))
  ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
      lambda v, _: f"{v:g}"))
  ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
  slope = arm["slope"][layer]
  last = slope["mean"][-1]
  if last is not None:
    # A one-entry legend without a handle: loc="best" keeps the note off
    # the lines.
    ax.legend([matplotlib.lines.Line2D([], [], linestyle="none")],
              [f"slope {last:+.2f} at t={results['steps'][-1]}"],
              loc="best", handlelength=0, handletextpad=0, frameon=False,
              fontsize=style.NOTE_SIZE, borderaxespad=0.3)


def plot_coord_check(results: dict) -> Figure:
  """The coord-check figure of a results record (module docstring)."""
  names = list(results["parameterizations"])
  layers = chosen_layers(results["parameterizations"][names[0]]["layers"])
  steps = results["steps"]
  cmap = matplotlib.colormaps[CMAP]
  colours = [cmap(0.9 * t / max(len(steps) - 1, 1)) for t in range(len(steps))]
  c = results["config"]
  with style.style_context():
    fig = style.new_figure("page", 1.75 * len(names) + 0.9)
    axes = fig.subplots(len(names), len(layers), squeeze=False,
                        sharex=True, sharey="col")
    for i, name in enumerate(names):
      for j, layer in enumerate(layers):
        ax = axes[i, j]
        _draw_panel(ax, results, name, layer, colours)
        if i == 0:
          ax.set_title(layer.replace("_", " "))
        if j == 0:
          ax.set_ylabel(f"{NAMES.get(name, name)}\nmean |x| (coordinate)")
        if i == len(names) - 1:
          ax.set_xlabel("width n (units)")
    norm = matplotlib.colors.BoundaryNorm(np.arange(len(steps) + 1) - 0.5,
                                          len(steps))
    ramp = matplotlib.colors.ListedColormap(colours)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=ramp),
                       ax=axes, ticks=steps, aspect=30, pad=0.01)
    bar.set_label("training step t")
    fig.suptitle(style.wrap(
        f"Coordinate check: {c['act']} MLP, {c['depth']} hidden layers, "
        f"{c['optimizer']} (lr {c['lr']:g}, base width {c['base_width']}), "
        f"{results['dataset']['name']}, mean over {c['seeds']} seeds "
        f"(band: ±1 std)", "page"))
  return fig
