r"""Benchmark: matrix-free (Golub-Kahan, SLQ) vs dense Jacobian spectra.

For a depth-16 tanh MLP at the critical point of Gaussian init
(``sigma_w2 = 1, sigma_b2 = 0``: ``chi_1 = sigma_w2 phi'(0)^2 = 1`` at the
fixed point ``q* = 0``; Poole et al. 2016), one float32 input, and each width
N, times in one process with identical weights:

  dense  ``jacobian.make_input_output_probe``: the N x N input-output
         Jacobian by a layer scan (L matrix products) and its full SVD;
  GK     ``matrix_free.extreme_singular_values``, top k = 5, with the fewest
         Golub-Kahan steps j whose residual bounds are all
         ``<= --rtol * sigma_i`` (chosen untimed from one ``--max_steps``
         run: the bidiagonal after j steps is the leading j x j block);
  SLQ    ``matrix_free.spectral_density`` of ``ln sigma`` with P probes x S
         Lanczos steps (``--slq``), Gaussian kernel width ``--kernel_width``.

Accuracy, where dense ran: GK's largest relative error over the top k
against the dense SVD (next to its largest relative bound); SLQ's relative
error in ``tr(J^T J)/N`` and the L1 distance between its density and the
dense spectrum's (same kernel, ``matrix_free.exact_density``). Singular
values below ~1e-6 sigma_max are float32 rounding noise for both methods,
so the density's L1 distance includes a noise floor.

Ratios are dense / matrix-free (> 1: matrix-free is faster). Each method
is timed after an untimed warm-up (compilation), as the median of at least
``--repeats`` runs, adding runs while under ``--max_seconds_per_method``.
Parameters are arguments of the jitted functions (never baked-in
constants).

Run from the repository root::

  python -m benchmarks.matrix_free_benchmark                 # 256..4096
  python -m benchmarks.matrix_free_benchmark --threads 1 \
      --out benchmarks/results_matrix_free_cpu.md
  python -m benchmarks.matrix_free_benchmark --widths 128,256 --repeats 1 \
      --max_steps 100                                         # quick run

``--max_dense_width`` skips the dense method above a width (its memory is
one N x N Jacobian plus the SVD's workspace; its time ~ L N^3 + N^3).
``--threads 1`` pins the process to one core with single-threaded XLA and
LAPACK, for time-shared machines (see benchmarks/jacobian_benchmark.py).
"""

import argparse
import os
import platform
import statistics
import sys
import time


def _limit_threads(argv) -> int:
  """Applies ``--threads N`` before jax (and its LAPACK) start."""
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument("--threads", type=int, default=0)
  threads = pre.parse_known_args(argv)[0].threads
  if threads > 0:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
      os.environ[var] = str(threads)
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
  return threads


if __name__ == "__main__":
  _limit_threads(sys.argv[1:])

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp
import numpy as np

from benchmarks import provenance
from vgrad.nn import models
from vgrad.probes import jacobian
from vgrad.probes import matrix_free

DEPTH = 16
DEFAULT_WIDTHS = "256,1024,2048,4096"


def time_median(fn, min_repeats: int, budget_s: float) -> tuple[float, int]:
  """Median seconds of ``fn()`` after one untimed warm-up call, and count."""
  fn()
  times = []
  while len(times) < min_repeats or sum(times) < budget_s:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), len(times)


def steps_for_tolerance(model, params, x, key, k: int, rtol: float,
                        max_steps: int) -> tuple[int, bool]:
  """Fewest Golub-Kahan steps giving ``bound_i <= rtol * sigma_i``, i < k.

  One ``max_steps`` run; the first j steps of it are a j-step run, so the
  Ritz values after j steps are those of the leading j x j bidiagonal.
  Bisection on j (the criterion is monotone in practice). Returns
  ``(steps, reached)``; ``reached`` is False if ``max_steps`` is not enough.
  """
  @jax.jit
  def run(params, x):
    fn = lambda z: model.apply(params, z)
    v0 = jax.random.normal(key, x.shape, x.dtype)
    return matrix_free.golub_kahan(*matrix_free.linear_operators(fn, x), v0,
                                   max_steps)
  gk = jax.device_get(run(params, x))

  def converged(j):
    ritz = matrix_free.ritz_decomposition(gk.alphas[:j], gk.betas[:j])
    sv, bounds = np.asarray(ritz.singular_values), np.asarray(
        ritz.error_bounds)
    return bool(np.all(bounds[:k] <= rtol * sv[:k]))

  if not converged(max_steps):
    return max_steps, False
  lo, hi = k, max_steps  # converged(hi) holds
  while lo < hi:
    mid = (lo + hi) // 2
    if converged(mid):
      hi = mid
    else:
      lo = mid + 1
  return hi, True


def run_width(n: int, args) -> dict:
  """Times and accuracies for one width; returns a table row."""
  model = models.make_mlp(depth=DEPTH, width=n, activation="tanh",
                          init="gaussian", sigma_w2=1.0, sigma_b2=None)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((n,)))
  x = jax.random.normal(jax.random.key(1), (n,))
  gk_key, slq_key = jax.random.split(jax.random.key(2))
  num_probes, slq_steps = args.slq
  grid = jnp.linspace(args.grid[0], args.grid[1], args.grid_points)
  budget, reps = args.max_seconds_per_method, args.repeats
  row = {"N": n, "L": DEPTH, "P": num_probes, "S": min(slq_steps, n)}
  print(f"\n[N={n} L={DEPTH}]", flush=True)

  max_steps = min(args.max_steps, n)
  steps, reached = steps_for_tolerance(model, params, x, gk_key, args.k,
                                       args.rtol, max_steps)
  row["steps"], row["reached"] = steps, reached
  print(f"  GK steps for bounds <= {args.rtol:g} sigma_i (top {args.k}): "
        f"{steps}{'' if reached else ' (NOT reached)'}", flush=True)

  @jax.jit
  def top_k(params, x):
    return matrix_free.extreme_singular_values(
        lambda z: model.apply(params, z), x, gk_key, steps, args.k)

  @jax.jit
  def slq(params, x):
    return matrix_free.spectral_density(
        lambda z: model.apply(params, z), x, slq_key, num_probes,
        min(slq_steps, n), grid, args.kernel_width)

  dense_probe = jacobian.make_input_output_probe(model)
  fns = {"gk": lambda: jax.block_until_ready(top_k(params, x)),
         "slq": lambda: jax.block_until_ready(slq(params, x))}
  if n <= args.max_dense_width:
    fns["dense"] = lambda: jax.block_until_ready(
        dense_probe(params, x[None]))
  for name, fn in fns.items():
    row[name], count = time_median(fn, reps, budget)
    print(f"  {name:6s} {row[name] * 1e3:10.1f} ms (median of {count})",
          flush=True)

  got, density = top_k(params, x), slq(params, x)
  top = np.asarray(got.largest, np.float64)
  row["bound"] = float(np.max(np.asarray(got.largest_bounds) / top))
  if "dense" in fns:
    sv = np.asarray(dense_probe(params, x[None])[0], np.float64)
    row["gk_err"] = float(np.max(np.abs(top - sv[:args.k]) / sv[:args.k]))
    m1 = np.mean(sv ** 2)
    row["m1_err"] = float(abs(density.moments[0] - m1) / m1)
    exact = np.asarray(matrix_free.exact_density(
        jnp.asarray(sv, jnp.float32), grid, args.kernel_width))
    row["l1"] = float(np.trapezoid(np.abs(np.asarray(density.density)
                                          - exact), np.asarray(grid)))
    print(f"  GK top-{args.k} max rel err {row['gk_err']:.1e} (max rel "
          f"bound {row['bound']:.1e}); SLQ tr(J^T J)/N rel err "
          f"{row['m1_err']:.1e}, density L1 {row['l1']:.2f}", flush=True)
  return row


HEADER = ["N", "L", "dense ms", "GK steps", "GK top-5 ms", "dense/GK",
          "GK max rel err", "GK max rel bound", "SLQ P x S", "SLQ ms",
          "dense/SLQ", "SLQ tr rel err", "SLQ density L1"]


def _fmt_ms(t):
  return "n/a" if t is None else (f"{t * 1e3:.3g}" if t < 0.1
                                  else f"{t * 1e3:.0f}")


def _fmt(v, spec):
  return "n/a" if v is None else format(v, spec)


def table_rows(rows):
  out = []
  for r in rows:
    dense = r.get("dense")
    out.append([
        str(r["N"]), str(r["L"]), _fmt_ms(dense),
        str(r["steps"]) + ("" if r["reached"] else "!"), _fmt_ms(r["gk"]),
        _fmt(dense and dense / r["gk"], ".1f"), _fmt(r.get("gk_err"), ".1e"),
        _fmt(r["bound"], ".1e"), f"{r['P']} x {r['S']}", _fmt_ms(r["slq"]),
        _fmt(dense and dense / r["slq"], ".1f"), _fmt(r.get("m1_err"), ".1e"),
        _fmt(r.get("l1"), ".2f")])
  return out


def markdown_table(rows) -> str:
  return provenance.markdown_table(HEADER, table_rows(rows), left_columns=0)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--widths", default=DEFAULT_WIDTHS,
                      help=f"comma-separated widths, default {DEFAULT_WIDTHS}")
  parser.add_argument("--k", type=int, default=5,
                      help="how many of the largest singular values")
  parser.add_argument("--rtol", type=float, default=1e-3,
                      help="residual bound / Ritz value to reach, top k")
  parser.add_argument("--max_steps", type=int, default=100,
                      help="largest Golub-Kahan step count searched")
  parser.add_argument("--slq", default="4x64",
                      help="SLQ probes x Lanczos steps, e.g. 4x64")
  parser.add_argument("--kernel_width", type=float, default=0.25,
                      help="SLQ Gaussian kernel width in ln(sigma)")
  parser.add_argument("--grid", default="-20,5",
                      help="ln(sigma) range of the density grid")
  parser.add_argument("--grid_points", type=int, default=501)
  parser.add_argument("--max_dense_width", type=int, default=4096,
                      help="skip the dense SVD above this width")
  parser.add_argument("--repeats", type=int, default=3,
                      help="minimum timed repeats per method")
  parser.add_argument("--max_seconds_per_method", type=float, default=5.0,
                      help="stop adding repeats past this much time")
  parser.add_argument("--threads", type=int, default=0,
                      help="0: library defaults; N: pin to N cores, N threads")
  parser.add_argument("--out", default=None,
                      help="write the results as Markdown to this file")
  args = parser.parse_args(argv)
  args.widths = [int(w) for w in args.widths.split(",") if w]
  args.slq = tuple(int(v) for v in args.slq.lower().split("x"))
  args.grid = tuple(float(v) for v in args.grid.split(","))
  if len(args.slq) != 2 or min(args.slq) < 1:
    parser.error(f"--slq must be PxS with P, S >= 1, got {args.slq}")
  if args.repeats < 1 or args.k < 1 or args.max_steps < args.k:
    parser.error("need --repeats >= 1, --k >= 1 and --max_steps >= --k")
  return args


def main(argv=None):
  args = parse_args(argv)
  start = time.perf_counter()
  env = [(f"python {platform.python_version()}, jax {jax.__version__}, "
          f"devices {jax.devices()}"),
         provenance.code_version(matrix_free),
         (f"cpu: {provenance.cpu_model()}; cores {os.cpu_count()}, usable "
          f"{len(os.sched_getaffinity(0))}; --threads {args.threads}"),
         (f"tanh, Gaussian init sigma_w2 = 1, sigma_b2 = 0, depth {DEPTH}, "
          "float32, one input")]
  for line in env:
    print(line)
  rows = [run_width(n, args) for n in args.widths]
  elapsed = time.perf_counter() - start
  notes = [
      ("Times are medians in ms after a warm-up (compilation) call; ratios "
       "are dense / matrix-free (> 1: matrix-free is faster)."),
      (f"GK steps: fewest with residual bound <= {args.rtol:g} sigma_i for "
       f"the top {args.k} ('!': not reached within --max_steps). GK max rel "
       "err: max_i |sigma_i(GK) - sigma_i(dense)| / sigma_i(dense)."),
      ("SLQ: P Rademacher probes x S Lanczos steps; tr rel err: relative "
       "error of tr(J^T J)/N (Hutchinson noise, ~ sqrt(2 m2 / (N P)) / m1, "
       "whatever S); density L1: integral of |SLQ - dense| over "
       f"ln(sigma) in [{args.grid[0]:g}, {args.grid[1]:g}], kernel width "
       f"{args.kernel_width:g}. With S << N the Gauss rule cannot resolve "
       "the decades of small singular values (they crowd near 0 in "
       "sigma^2) and lumps their mass near its smallest node: L1 stays "
       "large on spectra that span many decades."),
  ]
  table = markdown_table(rows)
  print("\n" + table)
  for line in notes:
    print(line)
  print(f"total time {elapsed:.0f} s")
  if args.out:
    with open(args.out, "w") as f:
      f.write("# Matrix-free Jacobian spectra benchmark (CPU)\n\n")
      f.write("Generated by `python -m benchmarks.matrix_free_benchmark"
              + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
              + "`.\n\n")
      for line in env:
        f.write(f"- {line}\n")
      f.write("\n" + table + "\n\n")
      for line in notes + [f"total benchmark time {elapsed:.0f} s"]:
        f.write(f"- {line}\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
