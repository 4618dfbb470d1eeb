"""The activation x initialisation table of Mishkin & Matas, from sweep rows.

Mishkin & Matas (2016), "All you need is a good init" (ICLR), Table 3,
compares activations under several initialisations by the test accuracy of
one deep network each, writing "n/c" where training did not converge. This
module builds that table from the rows of a training sweep
(:func:`vgrad.studies.sweep.run_sweep`, one row per (cell, seed)) of a single
depth and width:

* rows (``ROWS``): activations in the order of vgrad issue 5 (maxout, ReLU,
  leaky ReLU 0.01, very leaky ReLU 1/3 (Graham 2014; the paper's VLReLU),
  ELU, tanh, sigmoid, softplus, SELU, GELU);
* columns (``COLUMNS``): LSUV, orthogonal, Glorot, He, U(-1, 1) and
  N(0, 0.01^2);
* a cell: ``mean ± std`` (sample std, ddof 1) of the test accuracy over the
  seeds that *converged* in the sense of :func:`vgrad.studies.sweep.converged`
  (never diverged, final training loss <= 0.5 x the chance-level loss, the
  row's ``converged`` field); ``n/c`` when no seed converged, ``n/c†``
  when at least one of them diverged; a ``(k/n)`` suffix when only ``k`` of
  the ``n`` seeds converged (the mean and std are then over those ``k``).

Everything here is pure and reads no flags: :func:`build_table`,
:func:`format_markdown`, :func:`csv_text`, and the record of
``table.json``, :func:`table_record` / :func:`table_from_record`
(JSON-safe). The heat map and its redraw from a run directory live in
:mod:`vgrad.plots.activation_table_plots`.
"""

import csv
import dataclasses
import io
import math

import numpy as np

from vgrad.io import schemas

SCHEMA = schemas.ACTIVATION_TABLE
TABLE_JSON = "table.json"

# (activation spec for vgrad.studies.sweep, display label), in issue order.
ROWS = (
    ("maxout", "maxout (k=2)"),
    ("relu", "ReLU"),
    ("leaky_relu:0.01", "leaky ReLU (0.01)"),
    ("leaky_relu:0.333", "very leaky ReLU (1/3)"),
    ("elu", "ELU"),
    ("tanh", "tanh"),
    ("sigmoid", "sigmoid"),
    ("softplus", "softplus"),
    ("selu", "SELU"),
    ("gelu", "GELU"),
)
# (initialiser name in vgrad.nn.initializers, display label).
COLUMNS = (
    ("lsuv", "LSUV"),
    ("orthogonal", "orthogonal"),
    ("glorot_uniform", "Glorot"),
    ("he_normal", "He"),
    ("uniform", "U(-1,1)"),
    ("small_normal", "N(0,0.01²)"),
)
ACTS = tuple(spec for spec, _ in ROWS)
INITS = tuple(name for name, _ in COLUMNS)
ACT_LABELS = dict(ROWS)
INIT_LABELS = dict(COLUMNS)

NOT_CONVERGED = "n/c"
DIVERGED_MARK = "†"
MISSING = "—"

FOOTNOTE = (
    "Test accuracy, mean ± sample std over the seeds that converged "
    "(never diverged and final training loss <= 0.5 x the chance-level "
    "loss). (k/n): only k of the n seeds converged; the mean ± std is over "
    "those k. n/c: no seed converged (stuck near chance); n/c†: no seed "
    "converged and at least one diverged (a non-finite loss or gradient). "
    "— : not run.")

CSV_FIELDS = ("act", "act_label", "init", "init_label", "dataset", "depth",
              "width", "steps", "seeds", "converged", "diverged", "mean",
              "std", "status", "text")


@dataclasses.dataclass(frozen=True)
class TableCell:
  """One activation x init cell.

  Attributes:
    act: activation spec (e.g. ``'leaky_relu:0.333'``).
    init: initialiser name.
    seeds: seeds run (0 for a cell that was not run).
    converged: seeds that converged.
    diverged: seeds that diverged (``diverged_at > 0``).
    mean: mean test accuracy over the converged seeds (NaN if none).
    std: sample std (ddof 1) over the converged seeds (NaN if fewer than
      two).
  """
  act: str
  init: str
  seeds: int
  converged: int
  diverged: int
  mean: float
  std: float

  @property
  def status(self) -> str:
    """``'ok'`` (every seed converged), ``'partial'`` (some did), ``'n/c'``
    (none did) or ``'missing'`` (not run)."""
    if self.seeds == 0:
      return "missing"
    if self.converged == 0:
      return "n/c"
    return "ok" if self.converged == self.seeds else "partial"

  def text(self, sep: str = " ") -> str:
    """``0.953 ± 0.004``, ``0.91 ± 0.02 (2/3)``-style, ``n/c``, ``n/c†``
    or ``—``; ``sep`` goes between the mean and ``± std`` (a newline in the
    heat map)."""
    status = self.status
    if status == "missing":
      return MISSING
    if status == "n/c":
      return NOT_CONVERGED + (DIVERGED_MARK if self.diverged else "")
    text = f"{self.mean:.3f}"
    if not math.isnan(self.std):
      text += f"{sep}± {self.std:.3f}"
    if status == "partial":
      text += f" ({self.converged}/{self.seeds})"
    return text


@dataclasses.dataclass(frozen=True)
class Table:
  """The table: ``cells[(act, init)]`` for every act in ``acts`` and init
  in ``inits`` (display order), and ``info`` (dataset, depth, width, steps,
  seeds and the training settings) for titles and the CSV."""
  acts: tuple[str, ...]
  inits: tuple[str, ...]
  cells: dict
  info: dict

  def cell(self, act: str, init: str) -> TableCell:
    return self.cells[(act, init)]


def _as_float(v) -> float:
  """A row value as a float: JSON rows hold non-finite floats as the
  strings ``'nan'``/``'inf'``/``'-inf'`` and a missing value as None."""
  return math.nan if v is None else float(v)


def _as_bool(v) -> bool:
  """``converged`` as stored by the sweep (bool) or read from its CSV."""
  if isinstance(v, str):
    return v.strip().lower() == "true"
  return bool(v)


def _check_names(acts, inits) -> None:
  for field, values, valid in (("acts", acts, ACTS), ("inits", inits, INITS)):
    bad = [v for v in values if v not in valid]
    if bad or not values or len(set(values)) != len(values):
      raise ValueError(
          f"{field} must be distinct values from {', '.join(valid)}; got "
          f"{', '.join(values) or 'none'}")


def summarize_cell(act: str, init: str, rows: list[dict]) -> TableCell:
  """The cell of ``act`` x ``init`` from its rows (one per seed).

  A seed counts as converged when its row says so and its test accuracy is
  finite; only those seeds enter the mean and std.
  """
  acc = np.array([_as_float(r.get("test_accuracy")) for r in rows],
                 np.float64)
  ok = np.array([_as_bool(r.get("converged")) for r in rows], bool)
  ok &= np.isfinite(acc)
  good = acc[ok]
  steps = np.array([_as_float(r.get("diverged_at")) for r in rows],
                   np.float64)
  diverged = int(np.sum(np.isfinite(steps) & (steps > 0)))
  return TableCell(
      act=act, init=init, seeds=len(rows), converged=int(ok.sum()),
      diverged=diverged,
      mean=float(good.mean()) if good.size else math.nan,
      std=float(good.std(ddof=1)) if good.size > 1 else math.nan)


def build_table(rows: list[dict], *, acts: tuple[str, ...] = ACTS,
                inits: tuple[str, ...] = INITS,
                info: dict | None = None) -> Table:
  """The table of ``acts`` x ``inits`` from training-sweep rows.

  Args:
    rows: sweep rows (:func:`vgrad.studies.sweep.rows_of`), each with ``act``,
      ``init``, ``depth``, ``width``, ``seed``, ``test_accuracy``,
      ``diverged_at`` and ``converged``. Rows of other activations or
      initialisers are ignored; those kept must share one depth and width.
    acts: the row specs, a subset of ``ACTS``; shown in ``ACTS`` order.
    inits: the column names, a subset of ``INITS``; shown in ``INITS``
      order.
    info: settings for titles and the CSV (``dataset``, ``steps``, ...);
      ``depth``, ``width`` and ``seeds`` are filled in from the rows.

  Returns:
    A :class:`Table`; cells without rows have status ``'missing'``.

  Raises:
    ValueError: an unknown or repeated act or init, or rows of several
      depths or widths.
  """
  _check_names(acts, inits)
  acts = tuple(a for a in ACTS if a in acts)
  inits = tuple(i for i in INITS if i in inits)
  kept = [r for r in rows if r["act"] in acts and r["init"] in inits]
  shapes = sorted({(int(r["depth"]), int(r["width"])) for r in kept})
  if len(shapes) > 1:
    raise ValueError(f"rows must share one depth and width, got (depth, "
                     f"width) = {shapes}")
  by_cell: dict[tuple[str, str], list[dict]] = {}
  for r in kept:
    by_cell.setdefault((r["act"], r["init"]), []).append(r)
  cells = {(a, i): summarize_cell(a, i, by_cell.get((a, i), []))
           for a in acts for i in inits}
  info = dict(info or {})
  if shapes:
    info["depth"], info["width"] = shapes[0]
  if kept:
    info["seeds"] = max(c.seeds for c in cells.values())
  return Table(acts, inits, cells, info)


def describe(table: Table) -> str:
  """``digits, depth 10, width 64, 2000 steps, 3 seeds``: what was run."""
  info = table.info
  parts = [str(info.get("dataset", "?"))]
  for key, unit in (("depth", "depth {}"), ("width", "width {}"),
                    ("steps", "{} steps"), ("seeds", "{} seeds")):
    if key in info:
      parts.append(unit.format(info[key]))
  return ", ".join(parts)


def _training(info: dict) -> str:
  """`` Trained with SGD with momentum 0.9 (lr 0.01, batch 64).`` or ''."""
  if "optimizer" not in info:
    return ""
  name = {"sgd": "SGD", "adam": "Adam",
          "momentum": f"SGD with momentum {info.get('momentum')}"}
  batch = info.get("batch_size")
  return (f" Trained with {name.get(info['optimizer'], info['optimizer'])} "
          f"(lr {info.get('lr')}, "
          f"{'full batch' if batch == 0 else f'batch {batch}'}).")


def format_markdown(table: Table) -> str:
  """The table in Markdown: a caption, one row per activation, one column
  per initialisation (labels from ``ROWS``/``COLUMNS``), the footnote."""
  caption = (f"Test accuracy by activation and initialisation: "
             f"{describe(table)}.{_training(table.info)}")
  lines = [caption, "",
           "| activation | " + " | ".join(INIT_LABELS[i]
                                         for i in table.inits) + " |",
           "|---|" + "---|" * len(table.inits)]
  for act in table.acts:
    texts = [table.cell(act, i).text() for i in table.inits]
    lines.append(f"| {ACT_LABELS[act]} | " + " | ".join(texts) + " |")
  return "\n".join(lines) + "\n\n" + FOOTNOTE + "\n"


def _csv_number(v) -> str:
  if isinstance(v, float) and math.isnan(v):
    return "nan"
  return repr(v) if isinstance(v, float) else str(v)


def csv_text(table: Table) -> str:
  """One CSV line per activation x init (``CSV_FIELDS``), in table order.

  ``mean``/``std`` are ``nan`` where undefined; ``pandas.read_csv`` or
  ``csv.DictReader`` read it as is.
  """
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(CSV_FIELDS)
  info = table.info
  for act in table.acts:
    for init in table.inits:
      c = table.cell(act, init)
      writer.writerow([
          act, ACT_LABELS[act], init, INIT_LABELS[init],
          info.get("dataset", ""), info.get("depth", ""),
          info.get("width", ""), info.get("steps", ""), c.seeds,
          c.converged, c.diverged, _csv_number(c.mean), _csv_number(c.std),
          c.status, c.text()])
  return out.getvalue()


# ----------------------------------------------------------- run files


def _json_safe(v):
  """JSON rows: non-finite floats as ``'nan'``/``'inf'``/``'-inf'``, as
  the sweep stores them; numpy scalars as Python values."""
  v = v.item() if hasattr(v, "item") else v
  if isinstance(v, float) and not math.isfinite(v):
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
  return v


ROW_FIELDS = ("act", "init", "depth", "width", "seed", "train_loss",
              "test_accuracy", "diverged_at", "converged")


def table_record(rows: list[dict], acts, inits, info: dict,
                 command: str | None = None) -> dict:
  """What ``table.json`` holds: the inputs of :func:`build_table` (the
  sweep rows of the table's cells, reduced to ``ROW_FIELDS``), so the
  table and its figure can be rebuilt from the file alone."""
  keep = [{k: _json_safe(r.get(k)) for k in ROW_FIELDS} for r in rows
          if r["act"] in acts and r["init"] in inits]
  return {"schema": SCHEMA, "command": command, "info": info,
          "acts": list(acts), "inits": list(inits), "rows": keep}


def table_from_record(record: dict) -> Table:
  """The :class:`Table` of a ``table.json`` record.

  Raises:
    ValueError: not a record of this schema, or malformed.
  """
  record = schemas.check_schema(record, SCHEMA, "not an activation table: "
                                "the record")
  try:
    return build_table(record["rows"], acts=tuple(record["acts"]),
                       inits=tuple(record["inits"]), info=record["info"])
  except (KeyError, TypeError) as e:
    raise ValueError(f"malformed activation table record: {e!r}") from e


