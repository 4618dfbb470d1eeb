"""The one matplotlib style of every vgrad figure.

Every figure function builds its ``Figure`` inside :func:`style_context`
with :func:`new_figure` (one of the standard widths ``COLUMN`` or ``PAGE``,
so figures drop into a two-column paper at their natural size), draws with
the Okabe-Ito ``PALETTE`` (colour-blind safe; Okabe & Ito 2008, "Color
universal design"), puts axes whose positive values span decades on a log
scale with :func:`log_scale_if_wide`, and is written as PNG and PDF by
:func:`save_figure`. Uses matplotlib's object API only: no pyplot state, no
display needed.
"""

import os
import textwrap

import matplotlib
from matplotlib.figure import Figure
import numpy as np

# Okabe-Ito: blue, vermillion, bluish green, reddish purple, orange, sky
# blue, black, yellow. Yellow comes last: it is faint on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
           "#000000", "#F0E442")

# Standard figure widths in inches: one column and the full text width of a
# two-column paper (heights are free).
COLUMN = 3.4
PAGE = 7.0
WIDTHS = {"column": COLUMN, "page": PAGE}
DPI = 200           # PNG resolution; PDFs are vector

FONT_SIZE = 8.0     # axis labels and body text, in points
SMALL_SIZE = 7.0    # tick labels and legends
NOTE_SIZE = 6.5     # notes written inside a panel

# The shared rc parameters: serif text (with matching mathtext) at paper
# size, thin spines, the palette as the colour cycle, TrueType fonts in the
# PDF (editable text, accepted by publishers).
RC_PARAMS = {
    "font.family": "serif",
    "mathtext.fontset": "dejavuserif",
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE,
    "axes.labelsize": FONT_SIZE,
    "figure.titlesize": FONT_SIZE + 1,
    "figure.labelsize": FONT_SIZE,
    "legend.fontsize": SMALL_SIZE,
    "legend.title_fontsize": SMALL_SIZE,
    "xtick.labelsize": SMALL_SIZE,
    "ytick.labelsize": SMALL_SIZE,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "lines.linewidth": 1.3,
    "lines.markersize": 3.0,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "image.cmap": "viridis",
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,
}

# Positive values spanning more than this many decades get a log axis.
LOG_DECADES = 2.0


def style_context():
  """A ``matplotlib.rc_context`` with ``RC_PARAMS``; build figures in it."""
  return matplotlib.rc_context(RC_PARAMS)


def new_figure(width: str, height: float) -> Figure:
  """A constrained-layout Figure of a standard width.

  Call inside :func:`style_context` (text picks up the rc parameters when it
  is created).

  Args:
    width: ``"column"`` (``COLUMN`` inches) or ``"page"`` (``PAGE``).
    height: height in inches, > 0.

  Returns:
    An empty ``matplotlib.figure.Figure`` of size ``(WIDTHS[width],
    height)``.

  Raises:
    ValueError: ``width`` is not a standard width or ``height`` <= 0.
  """
  if width not in WIDTHS:
    raise ValueError(f"width must be one of {', '.join(sorted(WIDTHS))}, "
                     f"got {width!r}")
  if not height > 0:
    raise ValueError(f"height must be > 0 inches, got {height}")
  return Figure(figsize=(WIDTHS[width], height), layout="constrained")


def wrap(text: str, width: str, size: float = FONT_SIZE + 1) -> str:
  """``text`` with its lines broken at spaces to fit a standard width.

  A line holds ``width`` inches over 0.6 em per character (the mean advance
  of DejaVu Serif, generous for lower case) at ``size`` points (default the
  figure title's). Existing line breaks are kept; a word is never split.

  Raises:
    ValueError: ``width`` is not a standard width.
  """
  if width not in WIDTHS:
    raise ValueError(f"width must be one of {', '.join(sorted(WIDTHS))}, "
                     f"got {width!r}")
  chars = int(WIDTHS[width] * 72 / (0.6 * size))
  return "\n".join(textwrap.fill(line, chars, break_long_words=False,
                                 break_on_hyphens=False) or line
                   for line in text.split("\n"))


def decades_spanned(values) -> float:
  """log10(max / min) of the finite positive entries of ``values``.

  Zero, negative and non-finite entries are ignored (a log axis cannot show
  them); 0.0 when fewer than one positive value remains.
  """
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v) & (v > 0)]
  return float(np.log10(v.max() / v.min())) if v.size else 0.0


def log_scale_if_wide(ax, values, axis: str = "y",
                      decades: float = LOG_DECADES) -> bool:
  """Puts ``axis`` of ``ax`` on a log scale when ``values`` span decades.

  Args:
    ax: a matplotlib Axes.
    values: the plotted values along that axis (any shape); only the finite
      positive ones count, see :func:`decades_spanned`.
    axis: ``"x"`` or ``"y"``.
    decades: the log scale is used when max/min > 10**decades.

  Returns:
    True when the axis was put on a log scale (otherwise it is unchanged).

  Raises:
    ValueError: ``axis`` is not ``"x"`` or ``"y"``.
  """
  if axis not in ("x", "y"):
    raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
  if decades_spanned(values) <= decades:
    return False
  (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
  return True


def save_figure(fig: Figure, stem: str) -> list[str]:
  """Writes ``stem.png`` (at ``DPI``) and ``stem.pdf``; returns the paths.

  Each file is written to a temporary file beside it and renamed into
  place, so a reader never sees a half-written figure and an old one is
  replaced only by a complete new one. The PDF carries no creation date,
  so redrawing unchanged results gives the same bytes.
  """
  paths = []
  directory = os.path.dirname(os.path.abspath(stem))
  engine = fig.get_layout_engine()
  try:
    for ext in ("png", "pdf"):
      path = f"{stem}.{ext}"
      # Named by process id (not mkstemp, which would make the figure
      # private to its owner): concurrent galleries never share a temp
      # file.
      tmp = os.path.join(directory,
                         f".tmp-{os.getpid()}-{os.path.basename(path)}")
      try:
        fig.savefig(tmp, format=ext, dpi=DPI,
                    metadata={"CreationDate": None} if ext == "pdf" else None)
        os.replace(tmp, path)
      except BaseException:
        if os.path.exists(tmp):
          os.remove(tmp)
        raise
      paths.append(path)
      # The PDF keeps the layout the PNG's draw computed (constrained
      # layout works in figure fractions, the same at any dpi): computing
      # it again was half of the PDF's time.
      if engine is not None:
        fig.set_layout_engine("none")
  finally:
    if engine is not None:
      fig.set_layout_engine(engine)
  return paths
