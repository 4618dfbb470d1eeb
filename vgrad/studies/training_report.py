"""Tables of a training study, from ``metrics.json`` alone.

``format_table`` is the per-arm Markdown summary printed by the experiments
and written to ``table.md``; ``csv_rows`` gives one row per (arm, seed) for
``table.csv`` (read it with ``pandas.read_csv``). The run's files are
written by :func:`vgrad.cli.training_run.write_run`.
"""

import csv
import io

import numpy as np

from vgrad.studies import training_study


def _fmt(v, spec=".3g") -> str:
  return "n/a" if v is None else format(v, spec)


def _init_ratio(arm: dict) -> float | None:
  """Median over seeds of ||dL/dW_1|| / ||dL/dW_out|| at initialisation."""
  g = arm["history"]["grad_norm_w"][0]
  r = [row[0] / row[-1] for row in g
       if row[0] is not None and row[-1]]
  return float(np.median(r)) if r else None


def _diverged(summary: dict) -> str:
  if not summary["diverged"]:
    return "0"
  return (f"{summary['diverged']} (first at step "
          f"{summary['first_divergence']})")


def _findings(summary: dict) -> str:
  items = sorted(summary["failed_findings"].items(), key=lambda kv: -kv[1])
  return "; ".join(f"{training_study.FINDINGS[k]} {n}"
                   for k, n in items) or "-"


def format_table(metrics: dict) -> str:
  """Markdown table, one row per arm.

  Columns: seeds solved (criterion in the caption), median final loss and
  accuracy, divergences, the median gradient ratio between the first and
  the output layer at initialisation, and how many failed seeds show each
  failure signature.
  """
  arms = metrics["arms"]
  acc_key = "train_accuracy" if arms[0]["solved_by"].startswith(
      "train") else "test_accuracy"
  has_acc = f"median_{acc_key}" in arms[0]["summary"] and any(
      a["summary"][f"median_{acc_key}"] is not None for a in arms)
  head = ["arm", "solved", "median final loss"]
  head += [f"median {acc_key.replace('_', ' ')}"] if has_acc else []
  head += ["diverged", "‖∇W₁‖/‖∇W_out‖ at init", "failed seeds: findings"]
  lines = ["| " + " | ".join(head) + " |",
           "|" + "---|" * len(head)]
  for arm in arms:
    s = arm["summary"]
    row = [arm["label"], f"{s['solved']}/{s['seeds']}",
           _fmt(s["median_train_loss"])]
    row += [_fmt(s[f"median_{acc_key}"])] if has_acc else []
    row += [_diverged(s), _fmt(_init_ratio(arm), ".1e"), _findings(s)]
    lines.append("| " + " | ".join(row) + " |")
  c = arms[0]
  caption = (f"Solved: {c['solved_by']} after {c['config']['steps']} steps. "
             f"Loss: {c['loss'].replace('_', ' ')} on the training set. "
             f"Medians over the seeds that did not diverge.")
  return "\n".join(lines) + "\n\n" + caption + "\n"


CSV_FIELDS = ("arm", "act", "init", "depth", "width", "optimizer", "lr",
              "steps", "seed", "solved", "diverged_at", "train_loss",
              "train_accuracy", "test_loss", "test_accuracy",
              "grad_ratio_at_init", "findings")


def csv_rows(metrics: dict) -> list[dict]:
  """One dict per (arm, seed) with ``CSV_FIELDS`` keys; missing -> ''."""
  rows = []
  for arm in metrics["arms"]:
    c = arm["config"]
    g0 = arm["history"]["grad_norm_w"][0]
    for i, seed in enumerate(arm["seeds"]):
      f = seed["final"]
      ratio = (g0[i][0] / g0[i][-1]
               if g0[i][0] is not None and g0[i][-1] else None)
      rows.append({
          "arm": arm["label"], "act": c["act"], "init": c["init"],
          "depth": c["depth"], "width": c["width"],
          "optimizer": c["optimizer"], "lr": c["lr"], "steps": c["steps"],
          "seed": seed["seed"], "solved": seed["solved"],
          "diverged_at": seed["diverged_at"] or "",
          "train_loss": f.get("train_loss"),
          "train_accuracy": f.get("train_accuracy"),
          "test_loss": f.get("test_loss"),
          "test_accuracy": f.get("test_accuracy"),
          "grad_ratio_at_init": ratio,
          "findings": "; ".join(d["detail"] for d in seed["diagnosis"])})
  return [{k: ("" if v is None else v) for k, v in r.items()} for r in rows]


def format_csv(metrics: dict) -> str:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
  writer.writeheader()
  writer.writerows(csv_rows(metrics))
  return buf.getvalue()


def explain_failures(metrics: dict, limit: int = 3) -> str:
  """For each arm, the findings of up to ``limit`` failed seeds."""
  lines = []
  for arm in metrics["arms"]:
    failed = [s for s in arm["seeds"] if not s["solved"]]
    if not failed:
      continue
    lines.append(f"{arm['label']}: {len(failed)} failed seed(s)")
    for s in failed[:limit]:
      why = "; ".join(d["detail"] for d in s["diagnosis"]) or (
          "no failure signature: still improving or a poor minimum")
      lines.append(f"  seed {s['seed']}: {why}")
    if len(failed) > limit:
      lines.append(f"  ... {len(failed) - limit} more in table.csv")
  return "\n".join(lines)
