"""Per-cell summaries of a sweep's rows: mean and spread over seeds of the
task's primary metric. Pure Python and NumPy (no JAX), so the figures and
the gallery can summarise a saved sweep without starting JAX."""

import math

import numpy as np

from vgrad.io.cell_store import from_json

PRIMARY = {"spectrum": "log10_gain", "train": "test_accuracy"}


def summarize(rows: list[dict], task: str) -> list[dict]:
  """Per cell (in row order): the grid fields, the number of seeds, and
  the mean and sample std over seeds of the task's primary metric
  (``log10_gain`` or ``test_accuracy``) over the seeds where it is finite
  and, for training, that did not diverge (a diverged net's accuracy says
  nothing about the cell's trainability: it is counted in ``diverged``);
  ``ok`` counts finite (spectrum) or converged (train) seeds."""
  metric = PRIMARY[task]
  flag = "finite" if task == "spectrum" else "converged"
  cells_seen: dict[str, list[dict]] = {}
  for row in rows:
    cells_seen.setdefault(row["cell"], []).append(row)
  out = []
  for cell_id, cell_rows in cells_seen.items():
    diverged = sum(bool(r.get("diverged_at")) for r in cell_rows)
    values = np.array([from_json(r.get(metric)) for r in cell_rows
                       if r.get(metric) is not None
                       and not r.get("diverged_at")], np.float64)
    values = values[np.isfinite(values)]
    first = cell_rows[0]
    out.append({
        "cell": cell_id,
        **{k: first[k] for k in ("act", "init", "depth", "width")},
        "seeds": len(cell_rows), "metric": metric,
        "mean": float(values.mean()) if values.size else math.nan,
        "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
        "ok": sum(bool(r.get(flag)) for r in cell_rows),
        "diverged": diverged})
  return out


def format_summary(rows: list[dict], task: str) -> str:
  """A Markdown table of :func:`summarize`, one line per cell."""
  flag = "finite" if task == "spectrum" else "converged"
  head = ("| act | init | depth | width | " + PRIMARY[task]
          + " (mean ± std) | " + flag + " |")
  lines = [head, "|" + "---|" * 6]
  for s in summarize(rows, task):
    value = ("—" if math.isnan(s["mean"]) else
             f"{s['mean']:.3f} ± {s['std']:.3f}" if not math.isnan(s["std"])
             else f"{s['mean']:.3f}")
    if s["diverged"]:
      value += f" ({s['diverged']} diverged, left out)"
    lines.append(f"| {s['act']} | {s['init']} | {s['depth']} | {s['width']} "
                 f"| {value} | {s['ok']}/{s['seeds']} |")
  return "\n".join(lines) + "\n"
