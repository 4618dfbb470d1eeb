"""Benchmark: ``--method=lanczos`` against the dense probe (issue 12 item 6).

Two measurements, side by side in one process:

  accuracy  the relative error of the 5 largest Ritz values of the
            input-output Jacobian (float32, as the CLI runs) against a
            float64 SVD of the float64 product, and how many of them the
            record reports (residual bound within 1 %), for 16-64
            Golub-Kahan steps: the default's evidence;
  speed     the lanczos method's whole work for every layer (each block's
            own Jacobian and every input-to-layer Jacobian,
            ``lanczos_spectra.lanczos_body``: Ritz values and records)
            against the dense probe (``jacobian.make_spectrum_probe``: the
            products and their SVDs at every layer), both warm (compiled),
            repeats interleaved, medians; tanh Glorot MLPs of depth 4 with 2
            inputs at N = 512, 1024, 2048.

Run from the repository root::

  python -m benchmarks.lanczos_benchmark
  python -m benchmarks.lanczos_benchmark --widths 512 --repeats 2

The tables go to stdout as Markdown (``benchmarks/results_lanczos_cpu.md``
holds a run). Ratios are lanczos / dense: below 1 lanczos is faster.
"""

import argparse
import os

import jax
import numpy as np

from benchmarks import provenance
from benchmarks.main_job_benchmark import interleaved
from vgrad.nn import models
from vgrad.probes import block_lanczos
from vgrad.probes import blocks as blocks_lib
from vgrad.probes import jacobian
from vgrad.studies import lanczos_spectra


def _net(width: int, depth: int, num_inputs: int):
  model = models.make_mlp(depth=depth, width=width, activation="tanh",
                          init="glorot_uniform")
  init_key, data_key = jax.random.split(jax.random.key(0))
  xs = jax.random.normal(data_key, (num_inputs, width))
  return model, model.init(init_key, xs[0]), xs


def _reference_top(model, params, x) -> np.ndarray:
  """Float64 singular values of the input-output Jacobian at ``x``."""
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    jac = jax.jacfwd(lambda z: model.apply(params64, z))(
        np.asarray(x, np.float64))
  return np.linalg.svd(np.asarray(jac), compute_uv=False)


def accuracy(width: int, depth: int, steps_list) -> list[str]:
  model, params, xs = _net(width, depth, 2)
  blocks = blocks_lib.mlp_as_blocks(model, params)
  want = [_reference_top(model, params, x)[:5] for x in xs]
  rows = []
  for steps in steps_list:
    body = lanczos_spectra.lanczos_body(blocks, xs, (depth,), np.float32,
                                        steps)
    io = body["input_output"]
    errors = [np.max(np.abs(np.exp(np.array(io["log_singular_values"][b][:5],
                                            np.float64)) - w) / w)
              if None not in io["log_singular_values"][b][:5] else np.nan
              for b, w in enumerate(want)]
    rows.append(f"| {width} | {steps} | {np.nanmax(errors):.1e} | "
                f"{min(r for r in io['num_resolved'])} of 10 | "
                f"{max(io['error_bound']):.1e} |")
  return rows


def speed_pair(width: int, depth: int, steps: int):
  model, params, xs = _net(width, depth, 2)
  blocks = blocks_lib.mlp_as_blocks(model, params)
  layers = tuple(range(1, depth + 1))
  dense = jacobian.make_spectrum_probe(model)

  def run_lanczos():
    return lanczos_spectra.lanczos_body(blocks, xs, layers, np.float32, steps)

  def run_dense():
    return jax.device_get(dense(params, xs))
  run_lanczos(), run_dense()   # compile
  return run_lanczos, run_dense


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--widths", default="512,1024,2048")
  parser.add_argument("--depth", type=int, default=4)
  parser.add_argument("--steps", default="16,24,32,48,64")
  args = parser.parse_args(argv)
  jax.config.update("jax_default_matmul_precision", "highest")
  widths = [int(w) for w in args.widths.split(",")]
  lines = ["# --method=lanczos against the dense probe", "",
           f"{provenance.cpu_model()}, {os.cpu_count()} CPUs; "
           f"{provenance.code_version(block_lanczos)}; "
           f"{provenance.load_line('at start')}", "",
           f"Accuracy: top 5 of the input-output Jacobian, tanh Glorot MLP, "
           f"depth {args.depth}, 2 inputs, float32 against float64", "",
           "| N | steps | max rel. error, top 5 | reported | largest "
           "error_bound (nats) |", "|---:|---:|---:|---:|---:|"]
  for width in widths[:2]:
    lines += accuracy(width, args.depth,
                      [int(s) for s in args.steps.split(",")])
  lines += ["", f"Speed: every layer (own and input-to-layer), depth "
            f"{args.depth}, 2 inputs, {block_lanczos.DEFAULT_STEPS} steps, "
            f"warm", "",
            "| N | lanczos s | dense s | lanczos / dense |",
            "|---:|---:|---:|---:|"]
  for width in widths:
    run_lanczos, run_dense = speed_pair(width, args.depth,
                                        block_lanczos.DEFAULT_STEPS)
    times = interleaved({"lanczos": run_lanczos, "dense": run_dense},
                        args.repeats)
    lines.append(f"| {width} | {times['lanczos']:.2f} | "
                 f"{times['dense']:.2f} | "
                 f"{times['lanczos'] / times['dense']:.2f} |")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
