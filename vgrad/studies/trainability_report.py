"""The deep-trainability study's numbers and report, from saved records
alone (no JAX: the plots and ``--replot`` read them).

Per seed (:func:`seed_record`): steps to the test-accuracy threshold, the
final and best test accuracy, divergence, the Jacobian summary. Per cell
(:func:`cell_medians`): medians over seeds. Per depth (:func:`speedups`):
each arm's speed-up over the baseline, the ratio of the median steps to
the threshold. :func:`format_report` writes ``report.md``.
"""

import math

import numpy as np

from vgrad.io import schemas

BASELINE = "he_relu"
# The arms of vgrad.studies.deep_trainability.ARMS in their order (the
# figure's colours follow it, whichever arms a run has).
ARM_ORDER = ("he_relu", "critical_tanh", "critical_orthogonal_tanh",
             "lsuv_relu", "tat_leaky_relu", "dks_tanh")
PREPROCESSING = ("features standardised with the training split's mean and "
                 "std, then each example scaled to ||x||^2 = d, the input "
                 "dimension (q = ||x||^2 / d = 1 per example)")
JACOBIAN_KEYS = ("log10_sv_std", "log10_gain", "mean_log10_sv",
                 "log10_sv_max", "log10_sv_min", "log10_condition",
                 "zero_fraction", "error_bound")
JACOBIAN_CONVENTION = {
    "J": "d x_L / d x_0 = D_L W_L ... D_1 W_1 of the hidden stack (no "
         "readout) at initialisation, at the first jacobian_inputs "
         "training inputs, singular values s pooled over the inputs",
    "log10_sv_std": "the spread: std of log10 s over the nonzero s",
    "log10_gain": "log10 sqrt(mean s^2) (exact zeros included)",
    "mean_log10_sv": "mean of log10 s over the nonzero s",
    "log10_sv_max": "log10 of the largest s",
    "log10_sv_min": "log10 of the smallest nonzero s",
    "log10_condition": "median over inputs of log10(s_max / s_min), "
                       "nonzero s",
    "zero_fraction": "fraction of s that are exact zeros (ReLU units off)",
    "error_bound": "largest certified error of any log s (nats)",
}


def eval_steps(steps: int, every: int) -> list[int]:
  """0, every, 2 every, ..., steps (the last also when not a multiple)."""
  return sorted(set(range(0, steps, every)) | {steps})


def _log10(x: float) -> float:
  return x / math.log(10.0)


def jacobian_summary(log_sv: np.ndarray, bound: np.ndarray) -> dict:
  """Statistics (:data:`JACOBIAN_CONVENTION`) of the log singular values
  ``log_sv (B, k)`` (nats; ``-inf`` exact zeros, NaN after an overflow)
  and their error bounds ``bound (B,)``; every statistic None when any
  value is NaN (``finite`` False)."""
  log_sv = np.asarray(log_sv, np.float64)
  if np.isnan(log_sv).any() or not log_sv.size:
    return {k: None for k in JACOBIAN_KEYS} | {"finite": False}
  values = log_sv / math.log(10.0)
  nonzero = values[np.isfinite(values)]
  out = {"zero_fraction": float(np.mean(np.isneginf(values))),
         "error_bound": float(np.max(bound)), "finite": True}
  with np.errstate(divide="ignore"):
    top = np.max(log_sv)
    mean_sq = np.mean(np.exp(2.0 * (log_sv - top)))   # zeros add 0
  out["log10_gain"] = _log10(top + 0.5 * math.log(mean_sq)) if (
      np.isfinite(top)) else None
  if nonzero.size:
    per_input = [row[np.isfinite(row)] for row in values]
    out |= {"log10_sv_std": float(np.std(nonzero)),
            "mean_log10_sv": float(np.mean(nonzero)),
            "log10_sv_max": float(np.max(nonzero)),
            "log10_sv_min": float(np.min(nonzero)),
            "log10_condition": float(np.median(
                [r.max() - r.min() for r in per_input if r.size]))}
  else:
    out |= {k: None for k in ("log10_sv_std", "mean_log10_sv",
                              "log10_sv_max", "log10_sv_min",
                              "log10_condition")}
  return {k: _number(out[k]) for k in JACOBIAN_KEYS} | {"finite": True}


def _number(v) -> float | None:
  """A finite float, or None (JSON has no NaN or Inf)."""
  return float(v) if v is not None and math.isfinite(v) else None


def seed_record(seed: int, steps: list[int], curves: dict, threshold: float,
                diverged_at: int | None, jacobian: dict) -> dict:
  """One seed of a cell: its curves (``test_accuracy``, ``test_loss``,
  ``train_loss`` at ``steps``; None where not finite), the first evaluated
  step with test accuracy >= ``threshold`` (None: never), the final and
  best test accuracy, divergence and the Jacobian summary."""
  accuracy = curves["test_accuracy"]
  reached = next((s for s, a in zip(steps, accuracy)
                  if a is not None and a >= threshold), None)
  finite = [a for a in accuracy if a is not None]
  return {"seed": seed, "steps_to_threshold": reached,
          "final_test_accuracy": finite[-1] if finite else None,
          "best_test_accuracy": max(finite) if finite else None,
          "diverged": diverged_at is not None, "diverged_at": diverged_at,
          "jacobian": jacobian, "curves": curves}


def median_steps(values: list) -> float | None:
  """The median of steps to the threshold over seeds, a seed that never
  reached it counting as infinitely slow; None when that median is
  infinite (half of the seeds or more never reached it)."""
  if not values:
    return None
  steps = np.array([math.inf if v is None else v for v in values], float)
  median = float(np.median(steps))
  return median if math.isfinite(median) else None


def _median(values) -> float | None:
  finite = [v for v in values if v is not None and math.isfinite(v)]
  return float(np.median(finite)) if finite else None


def cell_medians(seeds: list[dict]) -> dict:
  """Medians over a cell's seeds (final accuracy also its min and max)."""
  final = [s["final_test_accuracy"] for s in seeds]
  finite = [v for v in final if v is not None]
  steps = [s["steps_to_threshold"] for s in seeds]
  return {
      "steps_to_threshold": median_steps(steps),
      "reached": sum(v is not None for v in steps),
      "final_test_accuracy": _median(final),
      "final_test_accuracy_min": min(finite) if finite else None,
      "final_test_accuracy_max": max(finite) if finite else None,
      "diverged": sum(bool(s["diverged"]) for s in seeds),
      "jacobian": {k: _median([s["jacobian"].get(k) for s in seeds])
                   for k in JACOBIAN_KEYS},
  }


def speedup_entry(depth: int, arm: str, baseline: float | None,
                  steps_arm: float | None, steps: int,
                  first: int = 0) -> dict:
  """Arm over baseline at one depth: ``speedup`` = baseline median steps /
  arm median steps, ``bound`` None (a measured ratio), ``">="`` (the arm
  got there by the first evaluation, step ``first``: it may have been
  faster), ``">"`` (only the arm got there: ``speedup`` is
  ``steps / arm``) or ``"<"`` (only the baseline did), and the sentence
  the report prints."""
  entry = {"depth": depth, "arm": arm, "baseline_steps": baseline,
           "arm_steps": steps_arm, "speedup": None, "bound": None}
  early = steps_arm is not None and steps_arm <= first
  arm_text = ""
  if steps_arm is not None:
    arm_text = (f"<= {steps_arm:g} steps, reached by the first evaluation"
                if early else f"{steps_arm:g} steps")
  if baseline is not None and steps_arm is not None:
    entry |= {"speedup": baseline / steps_arm,
              "bound": ">=" if early else None}
    entry["text"] = (f"{'>= ' if early else ''}{baseline / steps_arm:.3g}x "
                     f"({baseline:g} vs {arm_text})")
  elif steps_arm is not None:
    entry |= {"speedup": steps / steps_arm, "bound": ">"}
    entry["text"] = (f"> {steps / steps_arm:.3g}x: baseline never reached "
                     f"the threshold in {steps} steps (arm: {arm_text})")
  elif baseline is not None:
    entry |= {"speedup": baseline / steps, "bound": "<"}
    entry["text"] = (f"< {baseline / steps:.2g}x: arm never reached the "
                     f"threshold in {steps} steps (baseline: {baseline:g})")
  else:
    entry["text"] = f"neither reached the threshold in {steps} steps"
  return entry


def speedups(cells: list[dict], steps: int, first: int = 0,
             baseline: str = BASELINE) -> list[dict]:
  """Every arm's :func:`speedup_entry` over ``baseline`` at each depth
  where both were run (empty when the baseline is not in the grid);
  ``first``: the first evaluated step after 0."""
  by_key = {(c["arm"], c["depth"]): c for c in cells}
  out = []
  for depth in sorted({c["depth"] for c in cells}):
    base = by_key.get((baseline, depth))
    if base is None:
      continue
    for c in cells:
      if c["depth"] == depth and c["arm"] != baseline:
        out.append(speedup_entry(
            depth, c["arm"], base["median"]["steps_to_threshold"],
            c["median"]["steps_to_threshold"], steps, first))
  return out


def make_results(config: dict, fingerprint: str, arms: dict, dataset: dict,
                 cells: list[dict]) -> dict:
  """results.json's body (the caller adds the command, time, platform)."""
  body = [{k: v for k, v in c.items() if k not in ("schema", "fingerprint")}
          for c in cells]
  evals = eval_steps(config["steps"], config["eval_every"])
  return {"schema": schemas.DEEP_TRAINABILITY, "config": config,
          "cell_seconds": float(sum(c.get("seconds", 0.0) for c in cells)),
          "fingerprint": fingerprint, "preprocessing": PREPROCESSING,
          "dataset": dataset, "arms": arms, "baseline": BASELINE,
          "eval_steps": evals,
          "jacobian_convention": dict(JACOBIAN_CONVENTION),
          "cells": body,
          "speedups": speedups(body, config["steps"], evals[1])}


# --------------------------------------------------------------------------
# report.md

def _fmt(v, spec: str = ".3g", none: str = "-") -> str:
  return none if v is None else format(v, spec)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
  return (["| " + " | ".join(head) + " |",
           "|" + "---|" * len(head)]
          + ["| " + " | ".join(r) + " |" for r in rows])


def _grid(results: dict):
  arms = results["config"]["arms"]
  depths = results["config"]["depths"]
  cells = {(c["arm"], c["depth"]): c for c in results["cells"]}
  return arms, depths, cells


def _network_line(arm: str, cell: dict) -> str:
  net = cell["network"]
  parts = [cell.get("activation") or net["act"]]
  if cell.get("transform"):
    parts[0] += " [" + ", ".join(f"{k} {v:.4g}" for k, v in
                                 sorted(cell["transform"].items())) + "]"
  parts.append(net["init"])
  if net.get("sigma_w2") is not None:
    parts.append(f"sigma_w^2 = {net['sigma_w2']:.6g}")
  parts.append("zero biases" if not net.get("sigma_b2")
               else f"sigma_b^2 = {net['sigma_b2']:.4g}")
  return f"`{arm}` (depth {net['depth']}): " + ", ".join(parts)


def format_report(results: dict) -> str:
  """report.md: the setup, the speed-ups over the baseline per depth, the
  final accuracies, the steps to the threshold and the Jacobian spectrum
  at initialisation, all from ``results`` (results.json) alone."""
  c = results["config"]
  arms, depths, cells = _grid(results)
  ds = results["dataset"]
  steps = c["steps"]
  lines = [
      f"# Deep trainability: vanilla MLPs on {ds['name']}", "",
      f"- data: {ds['name']} ({ds['train_examples']} training, "
      f"{ds['test_examples']} test examples, {ds['input_dim']} inputs, "
      f"{ds['classes']} classes); {results['preprocessing']}",
      f"- network: `depth` hidden layers of width {c['width']} (affine + "
      "activation), no skip connections, no normalisation, linear readout "
      "to the classes' logits, softmax cross-entropy",
      f"- the same budget for every arm: optimizer `{c['optimizer']}`"
      + (f" (momentum {c['momentum']:g})" if c["optimizer"] == "momentum"
         else "") + f", learning rate {c['lr']:g}, batch {c['batch_size']}, "
      f"{steps} steps; {c['seeds']} seeds per cell (seeds {c['seed']}.."
      f"{c['seed'] + c['seeds'] - 1}, the same minibatches in every arm)",
      f"- trains = test accuracy >= {c['threshold']:g} (chance "
      f"{1 / ds['classes']:.2g}), checked every {c['eval_every']} steps; "
      "steps to threshold: the median over seeds, a seed that never got "
      "there counting as infinitely slow",
      f"- fingerprint {results['fingerprint']}", "", "## Arms", ""]
  for arm in arms:
    lines.append(f"- `{arm}`: {results['arms'][arm]['description']}")
    for d in depths:
      if (arm, d) in cells and (d == max(depths) or
                                cells[(arm, d)].get("transform")):
        lines.append(f"  - {_network_line(arm, cells[(arm, d)])}")
  lines += ["", f"## Speed-up over `{results['baseline']}`", "",
            "Ratio of the median steps to reach the threshold (baseline / "
            "arm; > 1: the arm trains faster). The steps are known to the "
            f"evaluation interval ({c['eval_every']} steps): an arm there "
            "by the first evaluation may have been faster (>=).", ""]
  # Recomputed from the cells (results["speedups"] holds the same numbers).
  entries = speedups(results["cells"], steps, results["eval_steps"][1],
                     results["baseline"])
  if entries:
    by = {(e["arm"], e["depth"]): e["text"] for e in entries}
    others = [a for a in arms if a != results["baseline"]]
    lines += _table(["depth"] + [f"`{a}`" for a in others],
                    [[str(d)] + [by.get((a, d), "-") for a in others]
                     for d in depths])
  else:
    lines.append(f"(the baseline `{results['baseline']}` is not in the "
                 "grid)")
  lines += ["", "## Final test accuracy", "",
            "Median over seeds [min, max]; `dN`: N seeds diverged "
            "(accuracy of their last finite parameters).", ""]
  rows = []
  for arm in arms:
    row = [f"`{arm}`"]
    for d in depths:
      m = cells[(arm, d)]["median"] if (arm, d) in cells else None
      if m is None:
        row.append("-")
        continue
      text = (f"{_fmt(m['final_test_accuracy'], '.3f')} "
              f"[{_fmt(m['final_test_accuracy_min'], '.2f')}, "
              f"{_fmt(m['final_test_accuracy_max'], '.2f')}]")
      row.append(text + (f" d{m['diverged']}" if m["diverged"] else ""))
    rows.append(row)
  lines += _table(["arm"] + [f"depth {d}" for d in depths], rows)
  lines += ["", f"## Steps to test accuracy {c['threshold']:g}", "",
            f"Median over seeds (seeds that got there / seeds); `never`: "
            f"not within {steps} steps.", ""]
  first = results["eval_steps"][1]

  def steps_text(m) -> str:
    value = m["steps_to_threshold"]
    text = _fmt(value, "g", "never")
    if value is not None and value <= first:
      text = f"<= {text}"
    return f"{text} ({m['reached']}/{c['seeds']})"

  rows = [[f"`{arm}`"] + ["-" if (arm, d) not in cells else
                          steps_text(cells[(arm, d)]["median"])
                          for d in depths] for arm in arms]
  lines += _table(["arm"] + [f"depth {d}" for d in depths], rows)
  lines += ["", "## Input-output Jacobian at initialisation", "",
            "Spread = std of log10 s over the nonzero singular values s of "
            "d x_L / d x_0 (0: an isometry up to scale); gain = log10 "
            "sqrt(mean s^2); zeros = fraction of exact zeros; medians over "
            "seeds. " + results["jacobian_convention"]["J"] + ".", ""]
  rows = []
  for arm in arms:
    row = [f"`{arm}`"]
    for d in depths:
      if (arm, d) not in cells:
        row.append("-")
        continue
      j = cells[(arm, d)]["median"]["jacobian"]
      row.append(f"{_fmt(j['log10_sv_std'], '.2f')} / "
                 f"{_fmt(j['log10_gain'], '.2f')} / "
                 f"{_fmt(j['zero_fraction'], '.2f')}")
    rows.append(row)
  lines += _table(["arm (spread / gain / zeros)"]
                  + [f"depth {d}" for d in depths], rows)
  diverged = [f"`{a}` depth {d}: {cells[(a, d)]['median']['diverged']}"
              for a in arms for d in depths
              if (a, d) in cells and cells[(a, d)]["median"]["diverged"]]
  lines += ["", "- diverged seeds (non-finite loss, gradient or update; "
            "frozen there): " + ("; ".join(diverged) or "none")]
  if results.get("cell_seconds") is not None:
    lines.append(f"- compute time of the cells: {results['cell_seconds']:.0f}"
                 " s in all (each measured when it was computed)")
  if results.get("seconds") is not None:
    lines.append(f"- this invocation: {results['seconds']:.0f} s on "
                 f"{results.get('platform', '?')}, "
                 f"{results.get('computed', '?')} cells computed, "
                 f"{results.get('reused', 0)} reused from an earlier run")
  if results.get("command"):
    lines.append(f"- command: `{results['command']}`")
  return "\n".join(lines) + "\n"
