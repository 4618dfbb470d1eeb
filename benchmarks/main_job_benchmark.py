"""Benchmark: issue 12 item 3's speed targets, as ratios measured side by side.

Three comparisons, each method against its peer in one process, repeats
interleaved, medians reported:

  main job     the README's command ``python -m experiments.jacobian_spectrum
               --act=sigmoid --depth=10`` (auto, which picks the exact qr
               method) against the same command with ``--method=dense``,
               each a whole process (import, compile, probe, figure);
  exact probe  the qr method's work in ``spectrum_study.run_study`` (the
               float64 forward QR pass, the final stage at every layer,
               each layer's own spectrum) against the dense float32 probe
               (``jacobian.make_spectrum_probe``), warm (compiled), on a
               sigmoid Glorot net with 16 inputs at (N, L) = (256, 10),
               (256, 50), (512, 50);
  io probe     ``jacobian.make_input_output_probe`` against
               ``jit(jacrev) + jnp.linalg.svd`` of the same net's input-output
               map, one input, warm.

Run from the repository root::

  python -m benchmarks.main_job_benchmark                 # everything
  python -m benchmarks.main_job_benchmark --skip_main     # in-process only
  python -m benchmarks.main_job_benchmark --sizes 256x10 --repeats 2

The table goes to stdout as Markdown (``benchmarks/results_main_job_cpu.md``
holds a run). Ratios are method / peer: below 1 the method is faster.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import provenance
from vgrad.nn import lsuv
from vgrad.probes import jacobian
from vgrad.probes import log_spectrum
from vgrad.studies import spectrum_study

MAIN = ["-m", "experiments.jacobian_spectrum", "--act=sigmoid", "--depth=10"]


def whole_process(extra: list[str]) -> float:
  """Seconds of one run of the main command (a fresh process)."""
  with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    subprocess.run([sys.executable, *MAIN, *extra, f"--out_dir={out}/run"],
                   check=True, capture_output=True,
                   env=os.environ | {"MPLBACKEND": "Agg"})
    return time.perf_counter() - start


def interleaved(fns: dict, repeats: int) -> dict:
  """Median seconds of each callable, the repeats interleaved."""
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def _net(width: int, depth: int, num_inputs: int = 16):
  config = spectrum_study.SpectrumConfig(act="sigmoid", depth=depth,
                                         width=width, num_inputs=num_inputs)
  model = spectrum_study.build_model(config)
  init_key, data_key = jax.random.split(jax.random.key(0))
  xs = jax.random.normal(data_key, (num_inputs, width))
  return model, lsuv.initialize(model, init_key, xs), xs


def probe_pair(width: int, depth: int):
  """``(qr, dense)`` callables doing what run_study does for each method."""
  model, params, xs = _net(width, depth)
  layers = tuple(range(1, depth + 1))
  qr = log_spectrum.make_log_spectrum_probe(
      model, layers, dtype=spectrum_study.PASS_DTYPE)
  own = jacobian.make_layer_spectrum_probe(model)
  dense = jacobian.make_spectrum_probe(model)

  def run_qr():
    with jax.enable_x64(True):
      out = jax.device_get(qr.finish(qr.forward(params, xs)))
    jax.device_get(own(params, xs))
    return out

  def run_dense():
    return jax.device_get(dense(params, xs))
  run_qr(), run_dense()   # compile
  return run_qr, run_dense, run_qr()


def io_pair(width: int, depth: int = 10):
  model, params, xs = _net(width, depth, num_inputs=1)
  probe = jacobian.make_input_output_probe(model)
  peer = jax.jit(lambda p, x: jnp.linalg.svd(
      jax.jacrev(lambda z: model.apply(p, z))(x[0]), compute_uv=False))
  fns = (lambda: jax.block_until_ready(probe(params, xs)),
         lambda: jax.block_until_ready(peer(params, xs)))
  np.testing.assert_allclose(np.asarray(fns[0]())[0], np.asarray(fns[1]()),
                             rtol=1e-4, atol=1e-6 * float(fns[1]()[0]))
  return fns


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--sizes", default="256x10,256x50,512x50",
                      help="N x L of the exact-probe comparison")
  parser.add_argument("--skip_main", action="store_true")
  args = parser.parse_args(argv)
  jax.config.update("jax_default_matmul_precision", "highest")
  lines = ["# Issue 12 item 3 targets", "",
           f"{provenance.cpu_model()}, {os.cpu_count()} CPUs; "
           f"{provenance.device_line()}; "
           f"{provenance.code_version(log_spectrum)}; "
           f"{provenance.load_line('at start')}", "",
           "| comparison | method s | peer s | method / peer | target |",
           "|---|---:|---:|---:|---|"]
  if not args.skip_main:
    times = interleaved({"auto": lambda: whole_process([]),
                         "dense": lambda: whole_process(["--method=dense"])},
                        args.repeats)
    lines.append(f"| main job (whole process): auto (picks qr) / dense | "
                 f"{times['auto']:.2f} | {times['dense']:.2f} | "
                 f"{times['auto'] / times['dense']:.2f} | <= 1.3 |")
  sweeps = []
  for size in args.sizes.split(","):
    width, depth = (int(v) for v in size.split("x"))
    run_qr, run_dense, out = probe_pair(width, depth)
    sweeps.append((size, int(np.max(out.sweeps)),
                   float(np.nanmax(out.error_bound))))
    times = interleaved({"qr": run_qr, "dense": run_dense}, args.repeats)
    lines.append(f"| exact probe, every layer, N = {width}, L = {depth}: "
                 f"qr (float64 pass) / dense float32 | {times['qr']:.2f} | "
                 f"{times['dense']:.2f} | {times['qr'] / times['dense']:.2f}"
                 f" | <= 3 |")
  probe, peer = io_pair(128)
  times = interleaved({"probe": probe, "peer": peer}, 5 * args.repeats)
  lines.append(f"| input-output probe, N = 128, L = 10, one input: "
               f"vgrad / jit(jacrev) + svd | {times['probe']:.4f} | "
               f"{times['peer']:.4f} | {times['probe'] / times['peer']:.2f}"
               f" | <= 1.11 |")
  lines += ["", "Final stage of the exact probe (largest Jacobi sweeps, "
            "largest certificate in nats): " + "; ".join(
                f"{s}: {n} sweeps, {b:.1e}" for s, n, b in sweeps)]
  print("\n".join(lines))


if __name__ == "__main__":
  main()
