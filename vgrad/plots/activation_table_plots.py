"""The heat map of the activation x initialisation table, drawn from a
:class:`vgrad.studies.activation_table.Table` or a run directory's
``table.json``."""

import os

from matplotlib import colors
from matplotlib import patches
from matplotlib.figure import Figure
import numpy as np

from vgrad.io import records
from vgrad.plots import style
from vgrad.studies import activation_table

NC_FACE = "0.88"    # grey of an n/c cell
NC_HATCH = "////"


# The colour scale counts "nines" of accuracy, -log10(1 - accuracy): 0 at
# 0, 1 at 0.9, 2 at 0.99 (the top; above it, the top colour). On a linear
# 0-1 scale every converged cell (0.94-0.97) got one colour; here 0.94 and
# 0.97 are 15 % of the colour map apart, and chance (0.1) stays far off.
TOP_ACCURACY = 0.99
ACCURACY_TICKS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)


def _nines(accuracy):
  return -np.log10(np.clip(1.0 - np.asarray(accuracy, np.float64),
                           1.0 - TOP_ACCURACY, 1.0))


def _from_nines(nines):
  return 1.0 - 10.0 ** -np.asarray(nines, np.float64)


def accuracy_norm() -> colors.Normalize:
  """The heat map's colour scale: accuracy 0 to ``TOP_ACCURACY`` by its
  nines (a :class:`matplotlib.colors.FuncNorm`)."""
  return colors.FuncNorm((_nines, _from_nines), vmin=0.0, vmax=TOP_ACCURACY)


def _text_colour(value: float, cmap, norm) -> str:
  """Black on light cells and white on dark ones (by the colour's
  luminance, Rec. 709 weights)."""
  r, g, b, _ = cmap(norm(value))
  return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def plot_heatmap(table: activation_table.Table) -> Figure:
  """Heat map of the table: rows activations, columns initialisations.

  Colour is the mean test accuracy on a fixed viridis scale of its nines
  (:func:`accuracy_norm`: 0, 0.9 and 0.99 equally spaced, with a
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
    norm = accuracy_norm()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", norm=norm,
                      aspect="auto")
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
          colour = _text_colour(cell.mean, cmap, norm)
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
    fig.colorbar(image, ax=ax, label="test accuracy (by its nines)",
                 shrink=0.9, ticks=ACCURACY_TICKS, format="%g")
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
