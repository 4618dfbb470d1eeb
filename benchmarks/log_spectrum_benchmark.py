"""Benchmark: stable log spectra of a deep Jacobian vs the dense float64 SVD.

Times, in one process, on one input of a square tanh MLP (critical
Gaussian init, ``sigma_w2 = 1``) of depth 1000 and width 256 (the issue's
performance target):

  qr (all)    ``log_spectrum.make_log_spectrum_probe`` in float32: exact
              log singular values at the ~12 default target layers, and
              the finite-time Lyapunov sums at every layer;
  qr (last)   the same with only the last layer as target;
  Lyapunov    ``log_spectrum.make_lyapunov_probe``: the forward QR pass
              alone (the ``auto`` method's first step);
  dense f64   ``jacobian.make_input_output_probe`` on the same weights in
              float64: the chain ``J = D_L W_L ... D_1 W_1`` and one SVD at
              the last layer only.

It checks that qr agrees with dense float64 where float64 resolves the
values (``s >= s_max N eps``; below that the dense values are rounding
error), and reports how many of the N values each resolves. Times are
medians of ``--repeats`` calls after a compiling warm-up call; the table's
ratio is dense / qr (> 1: qr faster).

Run from the repository root::

  python -m benchmarks.log_spectrum_benchmark              # the target
  python -m benchmarks.log_spectrum_benchmark --threads 1  # one pinned core
  python -m benchmarks.log_spectrum_benchmark --depth 200 --width 64 \
      --repeats 2                                          # a quick check

On machines whose cores are time-shared (a VM with 2 vCPUs and about one
core of quota), multi-threaded LAPACK QRs and SVDs are up to ~30x slower
than single-threaded ones: use ``--threads 1`` there.
"""

import argparse
import os
import sys


def _pin_threads(argv) -> int:
  """Honours ``--threads N`` before NumPy and JAX load their thread pools."""
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("--threads", type=int, default=0)
  threads = parser.parse_known_args(argv)[0].threads
  if threads > 0:
    os.environ.update({name: str(threads) for name in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
  return threads


if __name__ == "__main__":
  _pin_threads(sys.argv[1:])

# pylint: disable=g-import-not-at-top,wrong-import-position
import math
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import provenance
from vgrad.nn import models
from vgrad.probes import jacobian
from vgrad.probes import log_spectrum


def median_time(fn, repeats: int) -> float:
  """Median wall time of ``fn()`` over ``repeats`` calls after a warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def build(depth: int, width: int, act: str, seed: int):
  """float32 and float64 copies of one net, and one float32 input."""
  model32 = models.make_mlp(depth=depth, width=width, activation=act,
                            init="gaussian", sigma_w2=1.0)
  params32 = model32.init(jax.random.key(seed),
                          jnp.zeros((width,), jnp.float32))
  model64 = models.make_mlp(depth=depth, width=width, activation=act,
                            init="gaussian", sigma_w2=1.0,
                            param_dtype=jnp.float64)
  params64 = jax.tree.map(lambda a: a.astype(jnp.float64), params32)
  x = jax.random.normal(jax.random.key(seed + 1), (1, width), jnp.float32)
  return model32, params32, model64, params64, x


def run(args) -> list[dict]:
  jax.config.update("jax_enable_x64", True)  # for the float64 reference
  model32, params32, model64, params64, x = build(args.depth, args.width,
                                                  args.act, args.seed)
  x64 = x.astype(jnp.float64)
  layers = log_spectrum.default_layers(args.depth)
  probes = {
      "qr (all)": (log_spectrum.make_log_spectrum_probe(model32, layers),
                   params32, x),
      "qr (last)": (log_spectrum.make_log_spectrum_probe(
          model32, (args.depth,)), params32, x),
      "Lyapunov": (log_spectrum.make_lyapunov_probe(model32), params32, x),
      "dense f64": (jacobian.make_input_output_probe(model64), params64,
                    x64),
  }
  outputs, rows = {}, []
  for name, (probe, params, inputs) in probes.items():
    outputs[name] = jax.device_get(probe(params, inputs))
    seconds = median_time(lambda p=probe, q=params, i=inputs: p(q, i),
                          args.repeats)
    rows.append({"method": name, "seconds": seconds})
    print(f"  {name:<10} {seconds:8.3f} s", flush=True)

  qr = np.asarray(outputs["qr (last)"].log_singular_values[0, -1],
                  np.float64)
  qr_all = np.asarray(outputs["qr (all)"].log_singular_values[0, -1],
                      np.float64)
  dense = np.asarray(outputs["dense f64"][0], np.float64)
  floor = dense[0] * args.width * np.finfo(np.float64).eps
  resolved = dense >= floor
  # Well above the floor, float64's own error (~floor / s) is < 1e-6.
  clear = dense >= 1e6 * floor
  with np.errstate(divide="ignore"):
    error = np.abs(qr - np.log(dense))
  summary = {
      "qr_resolved": int(np.isfinite(qr).sum()),
      "dense_resolved": int(resolved.sum()),
      "max_log_error": float(error[resolved].max()),
      "clear_log_error": float(error[clear].max()),
      "qr_runs_agree": float(np.abs(qr - qr_all).max()),
      "spread": float(qr[0] - qr[-1]),
      "bound": float(np.max(outputs["qr (all)"].error_bound)),
      "sweeps": int(np.max(outputs["qr (all)"].sweeps)),
  }
  dense_time = rows[-1]["seconds"]
  for row in rows:
    row["ratio"] = dense_time / row["seconds"]
  return rows, summary, len(layers)


def markdown(rows, summary, num_layers: int, args) -> str:
  lines = [
      (f"{args.act}, Gaussian sigma_w2 = 1, depth {args.depth}, width "
       f"{args.width}, one input; {platform.machine()} "
       f"{provenance.cpu_model()}, threads {args.threads or 'default'}; "
       f"{provenance.code_version(log_spectrum)}"),
      "",
      "| method | what it computes | seconds | dense f64 / method |",
      "|---|---|---:|---:|",
  ]
  what = {
      "qr (all)": f"exact log sigma at {num_layers} layers + Lyapunov sums "
                  f"at all {args.depth} (float32)",
      "qr (last)": "exact log sigma at the last layer + Lyapunov sums "
                   "(float32)",
      "Lyapunov": "forward QR pass: Lyapunov sums only (float32)",
      "dense f64": "float64 chain + SVD, last layer only",
  }
  for row in rows:
    lines.append(f"| {row['method']} | {what[row['method']]} | "
                 f"{row['seconds']:.3g} | {row['ratio']:.2f} |")
  lines += [
      "",
      (f"Values measured at the last layer: qr {summary['qr_resolved']}/"
      f"{args.width}, dense float64 {summary['dense_resolved']}/"
      f"{args.width} (spread of log sigma: {summary['spread']:.0f} nats = "
      f"10^{summary['spread'] / math.log(10):.0f}). Where float64 resolves "
      f"them the two agree to {summary['max_log_error']:.1e} nats "
      f"({summary['clear_log_error']:.1e} a factor 1e6 above float64's "
      f"floor; the rest is float64's own rounding and the float32 forward "
      f"pass); the two qr runs to {summary['qr_runs_agree']:.1e}. Jacobi: "
      f"at most "
      f"{summary['sweeps']} sweeps, error bound {summary['bound']:.1e} "
      f"nats."),
  ]
  return "\n".join(lines)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n", maxsplit=1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--depth", type=int, default=1000)
  parser.add_argument("--width", type=int, default=256)
  parser.add_argument("--act", default="tanh")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--threads", type=int, default=0,
                      help="pin to this many cores (0: library defaults)")
  parser.add_argument("--out", default=None,
                      help="also write the Markdown table to this file")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  print(f"[{args.act} depth {args.depth} width {args.width}, one input]",
        flush=True)
  rows, summary, num_layers = run(args)
  table = markdown(rows, summary, num_layers, args)
  provenance.publish(table, args.out)


if __name__ == "__main__":
  main()
