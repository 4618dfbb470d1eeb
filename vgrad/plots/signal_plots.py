"""The signal-propagation plot (Brock, De & Smith 2021, Fig. 1) from a
results dictionary of :mod:`vgrad.studies.signal_propagation`.

One panel: x is the block index (0 = the input), y (log) each statistic of
the block output, measured as markers on solid lines, the mean-field
(NNGP) prediction dashed in the same colour where one exists; the legend
below the panel names the statistics by colour and the two line styles.
Blocks whose output holds NaN/Inf are shaded and named in a note. Never
imports JAX: reads the saved records only.
"""

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

from vgrad.plots import style

# statistic -> (legend label, colour, marker)
CURVES = {
    "mean_sq": (r"sq. channel mean $\langle m_c^2\rangle_c$",
                style.PALETTE[0], "o"),
    "var": (r"channel variance $\langle v_c\rangle_c$", style.PALETTE[1],
            "s"),
    "residual_var": (r"residual branch $\langle v_c\rangle_c$",
                     style.PALETTE[2], "^"),
}


def _values(records, key) -> tuple[np.ndarray, np.ndarray]:
  """Block indices and values of ``key``; None and values <= 0 (not on a
  log axis) become NaN, so the line breaks there."""
  blocks = np.array([r["block"] for r in records], float)
  values = np.array([np.nan if r.get(key) is None else r[key]
                     for r in records], float)
  values[~(values > 0)] = np.nan
  return blocks, values


def describe(results: dict) -> str:
  """The network, as the figure's title."""
  config = results.get("config", {})
  model = config.get("model", "blocks")
  parts = [f"{model}: {config.get('act')}, {config.get('init')}"]
  if config.get("sigma_w2") is not None:
    parts.append(rf"$\sigma_w^2={config['sigma_w2']:g}$")
  if config.get("sigma_b2") is not None:
    parts.append(rf"$\sigma_b^2={config['sigma_b2']:g}$")
  parts.append(f"width {config.get('width')}, {results['num_inputs']} "
               "inputs")
  return ", ".join(parts)


def plot_signal_propagation(results: dict) -> Figure:
  """The figure of one run: every statistic against the block index.

  Args:
    results: a results dictionary (``results.json``) of schema
      ``vgrad.signal_propagation/1``.

  Returns:
    A ``Figure`` (column width).
  """
  records = results["blocks"]
  theory = results.get("theory")
  with style.style_context():
    fig = style.new_figure("column", 3.0)
    ax = fig.add_subplot()
    drawn = []
    for key, (label, colour, marker) in CURVES.items():
      if key == "residual_var" and not any(r["residual"] for r in records):
        continue
      blocks, values = _values(records, key)
      if key == "residual_var":
        keep = np.array([r["residual"] for r in records])
        blocks, values = blocks[keep], values[keep]
      ax.plot(blocks, values, color=colour, marker=marker, ls="-",
              label=label)
      drawn.append(values)
      if theory and key in theory:
        predicted = np.asarray(theory[key], float)
        ax.plot(theory["blocks"], predicted, color=colour, ls="--", lw=1.0)
        drawn.append(predicted)
    bad = results.get("nonfinite_blocks", [])
    for block in bad:
      ax.axvspan(block - 0.5, block + 0.5, color="0.85", lw=0)
    if bad:
      ax.text(0.02, 0.02, f"NaN/Inf in blocks {_ranges(bad)}",
              transform=ax.transAxes, fontsize=style.NOTE_SIZE, va="bottom")
    finite = np.concatenate([d[np.isfinite(d)] for d in drawn] or [[]])
    if finite.size and finite.min() > 0:
      ax.set_yscale("log")
    ax.set_xlabel("block $l$ (depth; 0 = input)")
    ax.set_ylabel("statistic of block output $x_l$ (units of $x^2$)")
    ax.set_xlim(-0.5, max(r["block"] for r in records) + 0.5)
    handles, labels = ax.get_legend_handles_labels()
    if theory:   # the line styles, once
      handles += [Line2D([], [], color="0.2", marker="o", ls="-"),
                  Line2D([], [], color="0.2", ls="--", lw=1.0)]
      labels += ["measured", "mean field (NNGP)"]
    fig.legend(handles, labels, loc="outside lower center", ncols=2,
               frameon=False, fontsize=style.NOTE_SIZE)
    ax.set_title(style.wrap(describe(results), "column"))
  return fig


def _ranges(blocks) -> str:
  """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
  parts, start = [], None
  for i, b in enumerate(blocks):
    if start is None:
      start = b
    if i + 1 == len(blocks) or blocks[i + 1] != b + 1:
      parts.append(str(start) if start == b else f"{start}-{b}")
      start = None
  return ", ".join(parts)
