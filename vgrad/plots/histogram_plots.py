"""The Glorot & Bengio (2010) Figs. 6-7 style figure, from results.json alone.

``plot_histograms(results)`` takes the dictionary that
:func:`vgrad.studies.gradient_histograms.run_study` returns (a run's
``results.json``) and never touches JAX: one row per activation; columns
are the activations ``x_l`` under each init, then the back-propagated
gradients ``d ell / d h_l`` under each init. Each panel overlays the
layers' histograms as densities on the bin edges the layers share.
"""

from matplotlib import colormaps
from matplotlib.figure import Figure
import numpy as np

from vgrad.plots import style

COLUMN_LABELS = {"activation": "activations $x_l$",
                 "gradient": r"gradients $\partial\ell/\partial h_l$"}
X_LABELS = {"activation": r"$x_l = \phi(h_l)$",
            "gradient": r"$\partial\ell_i/\partial h_l$ (per example)"}


NARROW_BINS = 2
HEADROOM_LOG = 20.0
HEADROOM_LINEAR = 1.35


def narrow_layers(record: dict) -> list[int]:
  """The layers (1-based) whose values all fall in at most
  ``NARROW_BINS`` bins of the shared edges: their histogram is a spike
  whose height is set by the bin width, not by their spread (sigmoid's
  first gradients at the standard init, hundreds of times narrower than
  the last layer's)."""
  counts = np.asarray(record["counts"])
  return [l + 1 for l, row in enumerate(counts)
          if 0 < np.count_nonzero(row) <= NARROW_BINS]


def layer_densities(record: dict) -> np.ndarray:
  """``(L, bins)`` densities: counts / (finite values x bin width), so each
  layer's histogram integrates to 1 over the edges."""
  edges = np.asarray(record["edges"], np.float64)
  counts = np.asarray(record["counts"], np.float64)
  finite = (np.asarray(record["num_values"]) -
            np.asarray(record["num_nonfinite"]))
  return counts / np.maximum(finite, 1)[:, None] / np.diff(edges)[None, :]


def _layer_colors(depth: int):
  # Stop short of viridis' pale yellow end, which vanishes on white.
  return colormaps["viridis"](np.linspace(0.0, 0.85, depth))


def _draw_panel(ax, record: dict, symmetric: bool):
  """Step lines of every layer's density; log y where it spans decades."""
  edges = np.asarray(record["edges"], np.float64)
  density = layer_densities(record)
  for l, (d, color) in enumerate(zip(density, _layer_colors(len(density)))):
    steps = np.append(d, d[-1])
    ax.step(edges, np.where(steps > 0, steps, np.nan), where="post",
            color=color, lw=0.9, label=f"layer {l + 1}")
  positive = density[density > 0]
  # The standard init's gradient densities span many decades. Headroom
  # above the tallest layer (a decade on a log axis, a third on a linear
  # one) keeps every peak and the panel's note apart.
  if style.log_scale_if_wide(ax, positive):
    ax.set_ylim(positive.min() / 2, positive.max() * HEADROOM_LOG)
  else:
    ax.set_ylim(0, HEADROOM_LINEAR * (positive.max() if positive.size
                                      else 1))
  lim = max(abs(edges[0]), abs(edges[-1])) if symmetric else None
  ax.set_xlim((-lim, lim) if symmetric else (edges[0], edges[-1]))
  if symmetric:
    ax.axvline(0, color="0.8", lw=0.5, zorder=0)


def _title(results: dict) -> str:
  c, ds = results["config"], results["dataset"]
  return (f"Activations and back-propagated gradients at initialisation "
          f"(Glorot & Bengio 2010, Figs. 6-7)\n{c['depth']} hidden layers "
          f"of {c['width']} units, softmax readout, cross-entropy on "
          f"{ds['num_examples']} {ds['name']} examples")


def _layer_list(layers: list[int]) -> str:
  return (f"layer {layers[0]}" if len(layers) == 1 else
          f"layers {layers[0]}-{layers[-1]}"
          if layers == list(range(layers[0], layers[-1] + 1))
          else "layers " + ", ".join(map(str, layers)))


def _std_ratio_note(ax, run: dict):
  """Writes sigma_1 / sigma_L of the gradients in the panel's corner, and
  which layers are narrower than one bin (drawn as one spike)."""
  first = run["layers"][0]["gradient"]["std"]
  last = run["layers"][-1]["gradient"]["std"]
  if first is None or not last:
    return
  depth = len(run["layers"])
  text = f"$\\sigma_1/\\sigma_{depth}$ = {first / last:.2g}"
  narrow = narrow_layers(run["histograms"]["gradient"])
  if narrow:
    text += (f"\n{_layer_list(narrow)}: within {NARROW_BINS} bins "
             f"(spikes)")
  ax.text(0.03, 0.97, text,
          transform=ax.transAxes, ha="left", va="top",
          fontsize=style.NOTE_SIZE,
          bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 0.5})


def plot_histograms(results: dict) -> Figure:
  """Rows: activations; columns: {activations, gradients} x inits."""
  runs = {(r["act"], r["init"]): r for r in results["runs"]}
  acts, inits = results["config"]["acts"], results["config"]["inits"]
  columns = [(q, init) for q in ("activation", "gradient") for init in inits]
  with style.style_context():
    fig = style.new_figure("page", 1.6 * len(acts) + 0.9)
    axes = fig.subplots(len(acts), len(columns), squeeze=False)
    for i, act in enumerate(acts):
      for j, (quantity, init) in enumerate(columns):
        ax, run = axes[i, j], runs[(act, init)]
        _draw_panel(ax, run["histograms"][quantity], quantity == "gradient")
        if quantity == "gradient" and len(run["layers"]) > 1:
          _std_ratio_note(ax, run)
        if i == 0:
          ax.set_title(f"{COLUMN_LABELS[quantity]},\n{run['init_label']} "
                       f"init")
        if i == len(acts) - 1:
          ax.set_xlabel(X_LABELS[quantity])
        if j == 0:
          ax.set_ylabel(f"{act}\ndensity")
    fig.legend(*axes[0, 0].get_legend_handles_labels(),
               loc="outside lower center", ncol=len(runs[(acts[0],
                                                          inits[0])]
                                                     ["layers"]),
               frameon=False)
    fig.suptitle(style.wrap(_title(results), "page"))
  return fig
