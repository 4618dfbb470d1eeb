"""Benchmark: sweep throughput (cells per minute) and device scaling.

Runs two grids in one process, each both ways, compile time included (a
sweep compiles once per group, a user loop once per run; both are what a
researcher waits for):

  spectrum  3 activations x 3 inits x depths (8, 32), width 32, 4 seeds,
            4 inputs: the exact input-output log spectrum (qr probe);
  train     2 activations x 3 inits, depth 10, width 64, digits, 300 SGD
            steps, batch 64, 4 seeds.

  sweep, D devices   ``vgrad.studies.sweep.run_sweep`` on a mesh of D devices:
                     the seeds vmapped, the cells of an (act, depth, width)
                     group batched, the batch sharded over the mesh;
  loop (peer)        what a user writes without it: one single-run study
                     per cell (``training_study.run_training`` with the
                     seeds vmapped, as ``experiments.train`` does) or per
                     cell and seed (``spectrum_study.run_study``,
                     ``method='qr'``, as ``experiments.jacobian_spectrum``
                     does), in a Python loop.

The CPU is split into ``--devices`` (default 4) XLA host devices with
``XLA_FLAGS=--xla_force_host_platform_device_count``, the simulated mesh
the tests use; scaling over it needs as many free cores as devices. The
sweep's rows are checked against the loop's (same keys, same numbers).

Run from the repository root::

  python -m benchmarks.sweep_benchmark                 # both grids
  python -m benchmarks.sweep_benchmark --grids spectrum --out FILE.md
"""

import argparse
import os
import sys


def _simulate_devices(argv) -> int:
  """Sets XLA's host device count before JAX is imported."""
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--devices", type=int, default=4)
  devices = parser.parse_known_args(argv)[0].devices
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " "
                             f"--xla_force_host_platform_device_count="
                             f"{devices}").strip()
  return devices


if __name__ == "__main__":
  _simulate_devices(sys.argv[1:])

# pylint: disable=g-import-not-at-top,wrong-import-position
import math
import platform
import tempfile
import time

import jax

from benchmarks import provenance
from vgrad.studies import spectrum_study
from vgrad.studies import sweep
from vgrad.studies import training_study
from vgrad.training import data

GRIDS = {
    "spectrum": sweep.SweepConfig(
        task="spectrum", acts=("tanh", "relu", "sigmoid"),
        inits=("orthogonal", "glorot_normal", "he_normal"), depths=(8, 32),
        widths=(32,), seeds=4, num_inputs=4),
    "train": sweep.SweepConfig(
        task="train", acts=("tanh", "relu"),
        inits=("glorot_uniform", "he_normal", "orthogonal"), depths=(10,),
        widths=(64,), seeds=4, steps=300, lr=0.01, batch_size=64),
}


def _sweep(config, devices, dataset):
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    result = sweep.run_sweep(config, os.path.join(tmp, "s"),
                             num_devices=devices, dataset=dataset)
    seconds = time.perf_counter() - start
  return seconds, result.rows


def _loop_spectrum(config):
  """One ``run_study`` per cell and seed; rows like the sweep's."""
  rows = []
  start = time.perf_counter()
  for cell in sweep.cells(config):
    name, params = sweep.parse_act(cell.act)
    for s in range(config.seeds):
      results = spectrum_study.run_study(spectrum_study.SpectrumConfig(
          act=name, act_params=params, init=cell.init, depth=cell.depth,
          width=cell.width, num_inputs=config.num_inputs,
          seed=config.seed + s, method="qr", qr_layers=(cell.depth,)))
      rows.append({"cell": cell.id, "seed": config.seed + s,
                   "log10_gain": spectrum_study.log_gain(results["layers"][-1])
                   / math.log(10)})
  return time.perf_counter() - start, rows


def _loop_train(config, dataset):
  """One ``run_training`` (seeds vmapped) per cell; rows like the sweep's."""
  rows = []
  start = time.perf_counter()
  for cell in sweep.cells(config):
    arm = training_study.run_training(training_study.TrainConfig(
        dataset=config.dataset, act=cell.act, init=cell.init,
        depth=cell.depth, width=cell.width, optimizer=config.optimizer,
        lr=config.lr, momentum=config.momentum, steps=config.steps,
        batch_size=config.batch_size, seeds=config.seeds, seed=config.seed,
        log_every=config.steps), dataset)
    for seed in arm["seeds"]:
      rows.append({"cell": cell.id, "seed": seed["seed"],
                   "test_accuracy": seed["final"]["test_accuracy"]})
  return time.perf_counter() - start, rows


def _max_difference(sweep_rows, loop_rows, key) -> tuple[float, str]:
  """The largest |sweep - loop| of ``key`` and the (cell, seed) it is at."""
  mine = {(r["cell"], r["seed"]): r[key] for r in sweep_rows}
  worst = max(loop_rows, key=lambda r: abs(mine[(r["cell"], r["seed"])]
                                           - r[key]))
  return (abs(mine[(worst["cell"], worst["seed"])] - worst[key]),
          f"{worst['cell']} seed {worst['seed']}")


def run(args):
  dataset = data.load_dataset("digits")
  out = []
  for name in args.grids:
    config = GRIDS[name]
    cells = len(sweep.cells(config))
    print(f"[{name}: {cells} cells x {config.seeds} seeds]", flush=True)
    timings = []
    for devices in sorted({1, 2, args.devices} & set(
        range(1, jax.device_count() + 1))):
      seconds, rows = _sweep(config, devices, dataset)
      timings.append((f"sweep, {devices} device(s)", seconds))
      print(f"  sweep on {devices} device(s): {seconds:.1f} s", flush=True)
    key = "log10_gain" if name == "spectrum" else "test_accuracy"
    if name == "spectrum":
      seconds, loop_rows = _loop_spectrum(config)
    else:
      seconds, loop_rows = _loop_train(config, dataset)
    print(f"  loop: {seconds:.1f} s", flush=True)
    timings.append(("loop (peer)", seconds))
    out.append({"grid": name, "cells": cells, "seeds": config.seeds,
                "timings": timings,
                "difference": _max_difference(rows, loop_rows, key),
                "key": key})
  return out


def markdown(results, args) -> str:
  lines = [
      "Generated by `python -m benchmarks.sweep_benchmark` (compile time "
      "included on both sides).", "",
      (f"{platform.machine()} {provenance.cpu_model()}, "
       f"{os.cpu_count()} logical CPUs, {args.devices} simulated XLA host "
       f"devices; jax {jax.__version__}; {provenance.code_version(sweep)}; "
       f"{provenance.load_line('at the end')}"), ""]
  for r in results:
    loop = dict(r["timings"])["loop (peer)"]
    one = dict(r["timings"])["sweep, 1 device(s)"]
    body = [[method, f"{seconds:.1f}",
             f"{60 * r['cells'] / seconds:.1f}", f"{loop / seconds:.2f}",
             f"{one / seconds:.2f}"]
            for method, seconds in r["timings"]]
    lines += [f"**{r['grid']}**: {r['cells']} cells x {r['seeds']} seeds "
              f"({GRIDS[r['grid']]}); largest |sweep - loop| of "
              f"{r['key']}: {r['difference'][0]:.1e} ({r['difference'][1]})",
              "",
              provenance.markdown_table(
                  ["method", "seconds", "cells/min", "loop / method",
                   "1 device / method"], body), ""]
  return "\n".join(lines)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n", maxsplit=1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--devices", type=int, default=4,
                      help="simulated XLA host devices (CPU)")
  parser.add_argument("--grids", nargs="+", default=list(GRIDS),
                      choices=list(GRIDS))
  parser.add_argument("--out", default=None,
                      help="also write the Markdown tables to this file")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  results = run(args)
  table = markdown(results, args)
  provenance.publish(table, args.out)


if __name__ == "__main__":
  main()
