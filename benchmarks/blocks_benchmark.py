"""Benchmark: the general block path against the MLP's analytic fast path.

Times, side by side in one process on the same float32 MLP, weights and
inputs, ``vgrad.jacobian_spectra`` with

  fast     ``vgrad.mlp_blocks(model, params)``: the analytic ``D_l W_l``
           probes (:mod:`vgrad.probes.jacobian`, ``log_spectrum``);
  general  the same hidden layers as block callables
           (``MLPBlocks.as_callables()``): each block's Jacobian by
           ``jax.jacfwd``/``jax.jacrev``, :mod:`vgrad.probes.blocks`;

under ``method="dense"`` and ``method="qr"`` (every layer), checks that the
two agree, and reports medians of interleaved repeats after one warm-up
call each (compilation excluded) and the ratio general / fast.

Target (issue 12, item 3): general <= 1.5x fast.

Run from the repository root::

  python -m benchmarks.blocks_benchmark                      # full run
  python -m benchmarks.blocks_benchmark --out benchmarks/results_blocks_cpu.md
  python -m benchmarks.blocks_benchmark --sizes 32x4 --repeats 2   # quick
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import provenance
import vgrad
from vgrad.probes import blocks as blocks_lib


def _time(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _values(record, method):
  """The input-output values of a record, as log values."""
  io = record["input_output"]
  if method == "dense":
    return np.log(np.asarray(io["singular_values"], float))
  return np.asarray(io["log_singular_values"], float)


def run_case(width: int, depth: int, method: str, args) -> dict:
  model = vgrad.make_mlp(depth=depth, width=width, activation=args.act,
                         init="glorot_normal")
  xs = jax.random.normal(jax.random.key(args.seed), (args.inputs, width),
                         jnp.float32)
  params = model.init(jax.random.key(args.seed + 1), xs)
  fast = vgrad.mlp_blocks(model, params)
  general = fast.as_callables()
  calls = {
      "fast": lambda: vgrad.jacobian_spectra(fast, xs, method=method),
      "general": lambda: vgrad.jacobian_spectra(general, xs, method=method),
  }
  records = {name: call() for name, call in calls.items()}   # compile
  times = {name: [] for name in calls}
  for _ in range(args.repeats):   # interleaved: drift hits both alike
    for name, call in calls.items():
      times[name].append(_time(call))
  fast_v, general_v = (_values(records[n], method) for n in calls)
  both = np.isfinite(fast_v) & np.isfinite(general_v)
  seconds = {name: statistics.median(t) for name, t in times.items()}
  return {"width": width, "depth": depth, "method": method,
          "fast": seconds["fast"], "general": seconds["general"],
          "ratio": seconds["general"] / seconds["fast"],
          "agree": float(np.max(np.abs(fast_v - general_v)[both]))
                   if both.any() else float("nan")}


def markdown(rows, args) -> str:
  head = (f"{args.act}, Glorot normal, {args.inputs} inputs, float32; "
          f"{platform.machine()} {provenance.cpu_model()}; "
          f"{provenance.device_line()}; "
          f"{provenance.code_version(blocks_lib)}; "
          f"medians of {args.repeats} interleaved repeats after a warm-up")
  body = [[f"{r['width']} x {r['depth']}", r["method"], f"{r['fast']:.3g}",
           f"{r['general']:.3g}", f"{r['ratio']:.2f}", f"{r['agree']:.1e}"]
          for r in rows]
  return head + "\n\n" + provenance.markdown_table(
      ["N x L", "method", "fast s", "general s", "general / fast",
       "max |log difference|"], body, left_columns=2)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n", maxsplit=1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default="64x10,128x10,256x10",
                      help="comma-separated WIDTHxDEPTH")
  parser.add_argument("--methods", default="dense,qr")
  parser.add_argument("--act", default="tanh")
  parser.add_argument("--inputs", type=int, default=4)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=None,
                      help="also write the Markdown table to this file")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  jax.config.update("jax_default_matmul_precision", "highest")
  print(provenance.load_line("before"), flush=True)
  rows = []
  for size in args.sizes.split(","):
    width, depth = (int(v) for v in size.split("x"))
    for method in args.methods.split(","):
      row = run_case(width, depth, method, args)
      print(f"[{size} {method}] fast {row['fast']:.3g} s, general "
            f"{row['general']:.3g} s, ratio {row['ratio']:.2f}", flush=True)
      rows.append(row)
  table = markdown(rows, args) + "\n\n" + provenance.load_line("after")
  provenance.publish(table, args.out)


if __name__ == "__main__":
  main()
