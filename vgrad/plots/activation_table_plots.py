"""The heat map of the activation x initialisation table, drawn from a
:class:`vgrad.studies.activation_table.Table` or a run directory's
``table.json``."""

import os

from matplotlib import patches
from matplotlib.figure import Figure
import numpy as np

from vgrad.io import records
from vgrad.plots import style
from vgrad.studies import activation_table

NC_FACE = "0.88"    # grey of an n/c cell
NC_HATCH = "////"


def _text_colour(value: float, cmap) -> str:
  """Black on light cells and white on dark ones (by the colour's
  luminance, Rec. 709 weights)."""
  r, g, b, _ = cmap(value)
  return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def plot_heatmap(table: activation_table.Table) -> Figure:
  """Heat map of the table: rows activations, columns initialisations.

  Colour is the mean test accuracy on a fixed 0..1 viridis scale (with a
  colorbar), so tables of different runs compare by eye; each cell is
  annotated with its table text; n/c cells are grey and hatched, cells not
  run are blank. The title says the dataset, depth, width, steps and
  seeds.
  """
  grid = np.array([[table.cell(a, i).mean for i in table.inits]
                   for a in table.acts], np.float64)
  with style.style_context():
    fig = style.new_figure("page", 1.3 + 0.36 * len(table.acts))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0,
                      vmax=1.0, aspect="auto")
    cmap = image.get_cmap()
    for r, act in enumerate(table.acts):
      for c, init in enumerate(table.inits):
        cell = table.cell(act, init)
        colour = "black"
        if cell.status == "n/c":
          ax.add_patch(patches.Rectangle(
              (c - 0.5, r - 0.5), 1, 1, facecolor=NC_FACE, edgecolor="0.6",
              hatch=NC_HATCH, lw=0.0))
        elif cell.status != "missing":
          colour = _text_colour(cell.mean, cmap)
        ax.text(c, r, cell.text(sep="\n"), ha="center", va="center",
                fontsize=style.NOTE_SIZE, color=colour, linespacing=1.0)
    ax.set_xticks(range(len(table.inits)),
                  [activation_table.INIT_LABELS[i] for i in table.inits])
    ax.set_yticks(range(len(table.acts)),
                  [activation_table.ACT_LABELS[a] for a in table.acts])
    ax.tick_params(length=0)
    # White lines between cells, so neighbouring cells of one colour and
    # the hatched ones stay apart.
    ax.set_xticks(np.arange(len(table.inits) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(table.acts) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    ax.xaxis.tick_top()
    for spine in ax.spines.values():
      spine.set_visible(False)
    fig.colorbar(image, ax=ax, label="test accuracy", shrink=0.9,
                 ticks=np.linspace(0, 1, 6))
    fig.suptitle(f"Test accuracy by activation and initialisation: "
                 f"{activation_table.describe(table)}\n"
                 f"(mean ± std over converged seeds; "
                 f"grey hatched: n/c; †: a seed diverged)")
  return fig



def read_record(run_dir: str) -> dict:
  """``run_dir/table.json``; ValueError if it cannot be read."""
  return records.read_json(run_dir, activation_table.TABLE_JSON)


def is_run(run_dir: str) -> bool:
  """Whether ``run_dir`` holds an activation table (``table.json`` of this
  schema); for the gallery's detector."""
  if not os.path.isfile(os.path.join(run_dir, activation_table.TABLE_JSON)):
    return False
  return read_record(run_dir).get("schema") == activation_table.SCHEMA


def redraw(run_dir: str) -> dict[str, Figure]:
  """``{'heatmap': Figure}`` of the table in ``run_dir`` (one dataset's
  directory, e.g. ``runs/activation_table/<hash>/digits``), from its
  ``table.json`` alone."""
  return {"heatmap": plot_heatmap(
      activation_table.table_from_record(read_record(run_dir)))}
