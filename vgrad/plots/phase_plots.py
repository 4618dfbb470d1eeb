"""The phase-diagram figure, drawn from a run's ``results.json`` alone.

Left: the measured trainability heat map (median training accuracy over
seeds, depth L against sigma_w^2) with the mean-field prediction
``L = 6 xi_c(sigma_w^2)`` and the critical sigma_w^2 overlaid (Schoenholz et
al. 2017, Fig. 5). Right: the mean-field phase plane, log10 chi_1 over
(sigma_w^2, sigma_b^2), with the order-to-chaos line chi_1 = 1 (Poole et al.
2016, Fig. 1; Schoenholz et al. 2017, Fig. 1).
"""

from matplotlib import colors
from matplotlib.figure import Figure
import numpy as np

from vgrad.plots import style


def _array(values) -> np.ndarray:
  """A JSON list (or list of lists) with nulls as NaN."""
  return np.array(values, dtype=object).astype(np.float64)


def _edges(centers: np.ndarray, low: float = -np.inf) -> np.ndarray:
  """Cell edges for a (possibly uneven) axis of cell centres, the first
  no lower than ``low`` (depths: 0.5, never a negative depth)."""
  c = np.asarray(centers, np.float64)
  if c.size == 1:
    edges = np.array([c[0] - 0.5, c[0] + 0.5])
  else:
    mid = (c[1:] + c[:-1]) / 2
    edges = np.concatenate([[2 * c[0] - mid[0]], mid,
                            [2 * c[-1] - mid[-1]]])
  edges[0] = max(edges[0], min(low, c[0] - 0.5 if c.size == 1 else mid[0]))
  return edges


def _draw_trainability(ax, fig, results):
  c, s, t = results["config"], results["summary"], results["theory"]
  acc = np.asarray(s["median_train_accuracy"], np.float64)
  depths = np.asarray(c["depths"], np.float64)
  depth_edges = _edges(depths, low=0.5)
  mesh = ax.pcolormesh(_edges(np.asarray(c["sigma_w2"])), depth_edges,
                       acc, cmap="viridis", vmin=0.0, vmax=1.0)
  fig.colorbar(mesh, ax=ax, label=f"training accuracy after {c['steps']} "
               f"steps (median of {c['seeds']})")
  sw2 = _array(t["sigma_w2"])
  six_xi = 6 * _array(t["xi_c"])
  ax.plot(sw2, six_xi, color="white", lw=1.6, ls="--",
          label=r"$6\,\xi_c$ (mean field)")
  if t["critical_sigma_w2"] is not None:
    ax.axvline(t["critical_sigma_w2"], color=style.PALETTE[1], lw=1.2,
               label=rf"critical $\sigma_w^2$ = {t['critical_sigma_w2']:.3f}")
  ax.set_ylim(depth_edges[0], depth_edges[-1])
  ax.set_xlabel(r"weight variance $\sigma_w^2$")
  ax.set_ylabel("depth L (hidden layers)")
  ax.set_title(f"(a) trainability, {c['act']}, $\\sigma_b^2$ = "
               f"{c['sigma_b2']:g}, {c['dataset']}")


def _draw_plane(ax, fig, results):
  c, p = results["config"], results["theory"]["plane"]
  sw2, sb2 = _array(p["sigma_w2"]), _array(p["sigma_b2"])
  log_chi = _array(p["log10_chi_1"])
  limit = np.nanmax(np.abs(log_chi))
  # The plane has ~75 000 cells: drawn as an image inside the PDF
  # (rasterized at the figure's dpi) rather than as one vector path per
  # cell, which made the PDF ~20x slower to write and view; the axes, the
  # critical line and the text stay vector.
  mesh = ax.pcolormesh(_edges(sw2), _edges(sb2), log_chi.T, cmap="RdBu_r",
                       norm=colors.TwoSlopeNorm(0.0, -limit, limit),
                       rasterized=True)
  fig.colorbar(mesh, ax=ax, label=r"$\log_{10}\chi_1$")
  ax.plot(_array(p["critical_sigma_w2"]), _array(p["critical_sigma_b2"]),
          color="black", lw=1.4,
          label=r"$\chi_1 = 1$ (order $\leftrightarrow$ chaos)")
  ax.axhline(c["sigma_b2"], color="black", lw=0.8, ls=":",
             label=rf"$\sigma_b^2$ = {c['sigma_b2']:g} (panel a)")
  ax.set_xlim(sw2[0], sw2[-1])
  ax.set_ylim(sb2[0], sb2[-1])
  ax.text(0.05, 0.92, "ordered", transform=ax.transAxes)
  ax.text(0.78, 0.08, "chaotic", transform=ax.transAxes)
  ax.set_xlabel(r"weight variance $\sigma_w^2$")
  ax.set_ylabel(r"bias variance $\sigma_b^2$")
  ax.set_title(f"(b) mean-field phase diagram, {c['act']}")


def plot_phase_diagram(results: dict) -> Figure:
  """The two-panel figure for a ``phase_diagram`` run."""
  with style.style_context():
    fig = style.new_figure("page", 3.2)
    left, right = fig.subplots(1, 2)
    _draw_trainability(left, fig, results)
    _draw_plane(right, fig, results)
    # One legend under both panels: inside, it covered the heat maps.
    handles, labels = [], []
    for ax in (left, right):
      h, l = ax.get_legend_handles_labels()
      handles, labels = handles + h, labels + l
    fig.legend(handles, labels, loc="outside lower center", ncol=2,
               frameon=False)
  return fig
