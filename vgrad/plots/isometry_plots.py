"""The dynamical-isometry figure, drawn from a run's ``results.json`` alone.

One row per (activation, weight ensemble), one column per depth; each panel
overlays, for every bias variance (hence every q*), the histogram of the
measured singular values of J (steps) and the free-probability density
(lines), both per unit log10 sigma on a log sigma axis (Pennington et al.
2017, Figs. 2-3). Values below the probe's precision floor s_max N eps
(exact zeros of inactive ReLU units among them; the predicted atom at 0)
cannot be placed on a log axis and are counted in the panel instead.
"""

from matplotlib.figure import Figure
import numpy as np

from vgrad.plots import style

BINS = 40


def _groups(results: dict) -> list[tuple[str, list[dict]]]:
  """Arms grouped by (activation, weight ensemble), in first-seen order."""
  groups: dict[str, list[dict]] = {}
  for arm in results["arms"]:
    key = f"{arm['arm']['act']}, {arm['arm']['ensemble']} weights"
    groups.setdefault(key, []).append(arm)
  return list(groups.items())


def _resolved(sv, floor: float) -> np.ndarray:
  values = np.asarray(sv, np.float64).ravel()
  return values[values >= floor]


def _draw_panel(ax, arms: list[dict], column: int):
  lows, highs = [], []
  hidden = 0
  for i, arm in enumerate(arms):
    color = style.PALETTE[i % len(style.PALETTE)]
    d = arm["depths"][column]
    floor = d["measured"]["floor"]
    values = _resolved(d["singular_values"], floor)
    hidden += np.asarray(d["singular_values"]).size - values.size
    p = d["predicted"]
    grid = np.asarray(p["log10_sigma"])
    grid_ok = grid >= np.log10(floor)
    grid, density = grid[grid_ok], np.asarray(p["density"])[grid_ok]
    lo = min(grid.min(), np.log10(values.min())) if values.size else grid.min()
    hi = max(grid.max(), np.log10(values.max())) if values.size else grid.max()
    lows.append(lo)
    highs.append(hi)
    if values.size:
      edges = np.linspace(lo, hi, BINS + 1)
      counts, _ = np.histogram(np.log10(values), edges)
      total = np.asarray(d["singular_values"]).size
      ax.stairs(counts / (total * np.diff(edges)), 10.0 ** edges,
                color=color, alpha=0.75, lw=1.0)
    ax.plot(10.0 ** grid, density, color=color, lw=1.4, ls="--",
            label=f"$q^*$ = {arm['q_star']:.3g}")
  ax.set_xscale("log")
  # At least two decades, so a narrow spectrum keeps major tick labels.
  ax.set_xlim(10.0 ** min(min(lows), max(highs) - 2), 10.0 ** max(highs))
  if hidden:
    total = sum(np.asarray(a["depths"][column]["singular_values"]).size
                for a in arms)
    atom = arms[0]["depths"][column]["predicted"]["atom_at_zero"]
    # Short lines: a page-wide figure of four columns has narrow panels.
    note = (f"{100 * hidden / total:.0f} % below\nprecision floor"
            if hidden >= total / 100 else
            f"{hidden} of {total} below\nprecision floor")
    if atom > 1e-3:
      note += f"\n(predicted atom\nat 0: {100 * atom:.0f} %)"
    ax.text(0.03, 0.95, note, transform=ax.transAxes,
            fontsize=style.NOTE_SIZE, va="top",
            bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.5})
    # Headroom for the note: about an eighth of the axis per line of text.
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * (1 + 0.13 * (note.count("\n") + 1)))


def plot_isometry(results: dict) -> Figure:
  """Rows (activation, weight ensemble) x columns (depth); measured and
  predicted."""
  groups = _groups(results)
  depths = results["config"]["depths"]
  with style.style_context():
    # Page wide; panels about as tall as they are wide (at most 1.6 in).
    panel = min(1.6, (style.PAGE - 0.6) / len(depths))
    fig = style.new_figure("page", panel * len(groups) + 0.9)
    axes = np.atleast_2d(fig.subplots(len(groups), len(depths),
                                      squeeze=False))
    for r, (name, arms) in enumerate(groups):
      for c, depth in enumerate(depths):
        ax = axes[r, c]
        _draw_panel(ax, arms, c)
        if r == 0:
          ax.set_title(f"depth L = {depth}")
        if c == 0:
          ax.set_ylabel(f"{name}\ndensity per unit $\\log_{{10}}\\sigma$")
        if r == len(groups) - 1:
          ax.set_xlabel(r"singular value $\sigma$ of $J$")
      axes[r, 0].legend(loc="center left", frameon=False,
                        fontsize=style.NOTE_SIZE)
    fig.suptitle(
        f"Singular values of the input-output Jacobian at criticality, width "
        f"{results['config']['width']}\nmeasured (steps) and free-probability"
        f" prediction (dashed)")
  return fig
