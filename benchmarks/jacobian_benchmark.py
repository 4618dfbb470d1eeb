"""Benchmark: singular values of the input-output Jacobian of a square MLP.

Times, side by side in one process and in float32 with identical weights,

  vgrad  ``jacobian.make_input_output_probe`` (jitted layer scan + one SVD),
  (a)    ``jax.jit(jax.vmap(svd(jax.jacrev(model.apply))))``,
  (b)    ``torch.autograd.functional.jacobian`` (default arguments: one
         backward pass per output) on each input in a loop, then
         ``torch.linalg.svdvals``,
  (c)    the analytic chain ``J = D_L W_L ... D_1 W_1`` hand-written in torch
         with batched matmuls under ``torch.no_grad()``, then
         ``torch.linalg.svdvals`` on the batch,

checks that all four agree, and reports medians and ratios. It also measures
the machine's float32 matmul peak (jitted ``jnp.dot`` of n x n, n = 1024,
2048, 4096), the efficiency of vgrad's chain product alone
(``make_input_output_probe(model, spectrum=False)``, 2 N^3 (L-1) B flops), and
the time of ``make_spectrum_probe`` (every layer's and every cumulative
Jacobian's spectrum) for information.

Targets:
  * vgrad >= 20x faster than (b) (torch autograd);
  * vgrad no slower than the faster of (a) and (c);
  * vgrad's chain product >= 50% of the measured matmul peak.

Ratios in the table are other / vgrad, so > 1 means vgrad is faster.

Run from the repository root::

  pip install torch --index-url https://download.pytorch.org/whl/cpu  # optional
  python -m benchmarks.jacobian_benchmark                      # full run
  python -m benchmarks.jacobian_benchmark --out benchmarks/results_cpu.md
  python -m benchmarks.jacobian_benchmark --threads 1   # one pinned core
  python -m benchmarks.jacobian_benchmark --sizes 128x10 --acts tanh \
      --batches 1 --repeats 3 --max_seconds_per_method 0.5   # quick run

torch is optional: without it only the JAX methods run. By default XLA, the
LAPACK behind the SVDs and torch each use all cores (their defaults); the
number of torch threads is printed. ``--threads 1`` pins the process to one
core and makes every library single-threaded: use it on machines whose cores
are time-shared or CPU-quota'd (e.g. a VM with 2 vCPUs but about one core of
sustained quota), where spinning thread pools make multi-threaded LAPACK
SVDs up to ~200x slower and the timings erratic. Each method is timed in
its own block of repeats after a warm-up call.
Slow methods ((b), and the full-spectrum probe) may be timed on the first k
inputs of a batch and scaled by B / k; such entries are marked ``*``.
"""

import argparse
import os
import platform
import statistics
import sys
import time


def _limit_threads(argv) -> int:
  """Applies ``--threads N`` (N >= 1) before numpy, jax and torch start.

  Pins the process to N cores and sets the OpenMP/OpenBLAS/MKL thread counts,
  so that XLA, the LAPACK behind the SVDs and torch all use N threads. 0 (the
  default) leaves every library's default (all cores).
  """
  pre = argparse.ArgumentParser(add_help=False)
  pre.add_argument("--threads", type=int, default=0)
  threads = pre.parse_known_args(argv)[0].threads
  if threads > 0:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
      os.environ[var] = str(threads)
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
  return threads


if __name__ == "__main__":
  _limit_threads(sys.argv[1:])

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp
import numpy as np

from benchmarks import provenance
from vgrad.nn import models
from vgrad.probes import jacobian

try:
  import torch
except ImportError:  # torch is optional
  torch = None

DEFAULT_SIZES = "128x10,256x50,512x10,1024x10"
INITS = {"tanh": "orthogonal", "relu": "he_normal"}
TOLERANCE = 1e-3
WARMUP_KEEP_S = 2.0


# --------------------------------------------------------------------------
# Timing helpers.

def time_repeats(fn, min_repeats: int, budget_s: float,
                 max_repeats: int = 100) -> tuple[float, int]:
  """Median wall time of ``fn()`` and the repeat count, after a warm-up.

  The warm-up call is untimed unless it takes over ``WARMUP_KEEP_S`` (then
  it counts as the first repeat: a transient of ~0.1 s is noise there).
  Then runs at least ``min_repeats`` times, and keeps adding repeats while
  the total stays under ``budget_s`` (up to ``max_repeats``).
  """
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  times = [first] if first > WARMUP_KEEP_S else []
  while (len(times) < min_repeats
         or (sum(times) < budget_s and len(times) < max_repeats)):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), len(times)


def time_methods(fns: dict, min_repeats: int, budget_s: float) -> dict:
  """``{name: (median seconds, repeats)}``, each method in its own block.

  Not round-robin: with multi-threaded libraries the first torch call after
  JAX work can be ~0.1 s slower (the other library's threads still hold the
  cores), so alternating calls would penalise whichever runs second.
  """
  return {name: time_repeats(fn, min_repeats, budget_s)
          for name, fn in fns.items()}


def subset_size(per_input_s: float, batch: int, min_repeats: int,
                budget_s: float) -> int:
  """How many of ``batch`` inputs fit ``min_repeats`` runs in ~``budget_s``."""
  if per_input_s <= 0:
    return batch
  fits = int(budget_s / (min_repeats * per_input_s))
  return max(1, min(batch, fits))


# --------------------------------------------------------------------------
# Matmul peak.

def matmul_peak(sizes=(1024, 2048, 4096), min_repeats: int = 5,
                budget_s: float = 3.0) -> dict[int, float]:
  """GFLOP/s of a jitted float32 ``jnp.dot`` of n x n matrices, per n."""
  dot = jax.jit(lambda a, b: jnp.dot(a, b, precision=models.PRECISION))
  result = {}
  for n in sizes:
    keys = jax.random.split(jax.random.key(1), 2)
    a = jax.random.normal(keys[0], (n, n), jnp.float32)
    b = jax.random.normal(keys[1], (n, n), jnp.float32)
    jax.block_until_ready(dot(a, b))  # compile
    t, _ = time_repeats(lambda: jax.block_until_ready(dot(a, b)),
                        min_repeats, budget_s)
    result[n] = 2 * n ** 3 / t / 1e9
  return result


def torch_matmul_rate(n: int, min_repeats: int = 5,
                      budget_s: float = 2.0) -> float:
  """GFLOP/s of a float32 torch n x n matmul (reference, not the peak)."""
  gen = torch.Generator().manual_seed(1)
  a = torch.randn(n, n, generator=gen)
  b = torch.randn(n, n, generator=gen)
  a @ b  # pylint: disable=pointless-statement
  t, _ = time_repeats(lambda: a @ b, min_repeats, budget_s)
  return 2 * n ** 3 / t / 1e9


# --------------------------------------------------------------------------
# The four methods.

def jax_jacrev_probe(model):
  """(a): jit(vmap(svd(jacrev(model.apply)))), params as an argument."""
  def one(params, x):
    jac = jax.jacrev(lambda z: model.apply(params, z))(x)
    return jnp.linalg.svd(jac, compute_uv=False)
  return jax.jit(jax.vmap(one, in_axes=(None, 0)))


class TorchNet:
  """The same MLP in torch (float32), from the Flax parameters."""

  def __init__(self, params, depth: int, activation: str):
    self.kernels = []  # (N_in, N), h = x @ kernel + bias
    self.biases = []
    for l in range(1, depth + 1):
      p = models.layer_params(params, l)
      self.kernels.append(torch.tensor(np.asarray(p["kernel"]),
                                       dtype=torch.float32))
      self.biases.append(torch.tensor(np.asarray(p["bias"]),
                                      dtype=torch.float32))
    self.activation = activation

  def phi(self, h):
    return torch.tanh(h) if self.activation == "tanh" else torch.relu(h)

  def phi_and_deriv(self, h):
    if self.activation == "tanh":
      y = torch.tanh(h)
      return y, 1 - y * y
    return torch.relu(h), (h > 0).to(h.dtype)

  def forward(self, x):
    for kernel, bias in zip(self.kernels, self.biases):
      x = self.phi(x @ kernel + bias)
    return x

  def autograd_svdvals(self, xs):
    """(b): per input, autograd.functional.jacobian (defaults) + svdvals."""
    out = []
    for x in xs:
      jac = torch.autograd.functional.jacobian(self.forward, x)
      out.append(torch.linalg.svdvals(jac))
    return torch.stack(out)

  def analytic_svdvals(self, xs):
    """(c): the analytic chain with batched matmuls, then svdvals.

    Builds the transpose J^T = W_1^T D_1 ... W_L^T D_L, whose update
    ``J^T <- (J^T @ kernel_l) * d_l[:, None, :]`` is one (B N, N) x (N, N)
    GEMM per layer with the stored kernel (no transposes, no copies of W).
    J^T has the same singular values as J.
    """
    with torch.no_grad():
      h = xs @ self.kernels[0] + self.biases[0]
      x, d = self.phi_and_deriv(h)
      jt = self.kernels[0][None] * d[:, None, :]          # (B, N_in, N)
      for kernel, bias in zip(self.kernels[1:], self.biases[1:]):
        h = x @ kernel + bias
        x, d = self.phi_and_deriv(h)
        jt = torch.matmul(jt, kernel)
        jt.mul_(d[:, None, :])
      return torch.linalg.svdvals(jt)


# --------------------------------------------------------------------------
# One configuration.

def agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
  """(max relative error of the top singular value, max |ds| / top)."""
  top = reference[:, 0]
  top_err = np.max(np.abs(other[:, 0] - top) / top)
  spec_err = np.max(np.abs(other - reference) / top[:, None])
  return float(top_err), float(spec_err)


def fmt_ms(t: float | None, extrapolated: bool = False) -> str:
  if t is None:
    return "n/a"
  s = f"{t * 1e3:.3g}" if t * 1e3 < 100 else f"{t * 1e3:.0f}"
  return s + ("*" if extrapolated else "")


def run_config(act: str, n: int, depth: int, batches, args, peak: float):
  """Benchmarks one (activation, N, L) for each batch size; yields rows."""
  model = models.make_mlp(depth=depth, width=n, activation=act,
                          init=INITS[act])
  params = model.init(jax.random.key(0), jnp.zeros((n,), jnp.float32))
  io_probe = jacobian.make_input_output_probe(model)
  full_probe = jacobian.make_spectrum_probe(model)
  jac_only = jacobian.make_input_output_probe(model, spectrum=False)
  jacrev_probe = jax_jacrev_probe(model)
  net = TorchNet(params, depth, act) if torch is not None else None

  xs_all = jax.random.normal(jax.random.key(2), (max(batches), n),
                             jnp.float32)
  budget, reps = args.max_seconds_per_method, args.repeats

  def run_jax(fn, xs):
    return lambda: jax.block_until_ready(fn(params, xs))

  def subset(per_input_s, b):
    """Inputs to time of a batch of b: all unless reps runs exceed budget."""
    if b * per_input_s * reps <= budget:
      return b
    return subset_size(per_input_s, b, reps, budget)

  # Per-input cost of the full-spectrum probe, for its batch subset.
  run_jax(full_probe, xs_all[:1])()
  start = time.perf_counter()
  run_jax(full_probe, xs_all[:1])()
  full_per_input = time.perf_counter() - start

  for b in batches:
    xs = xs_all[:b]
    print(f"\n[{act} N={n} L={depth} B={b}]", flush=True)
    row = {"act": act, "N": n, "L": depth, "B": b}
    fns, scale = {}, {}

    # Compile + warm up every method, and check that they agree.
    ref = np.asarray(run_jax(io_probe, xs)())
    fns["vgrad"] = run_jax(io_probe, xs)
    out_a = np.asarray(run_jax(jacrev_probe, xs)())
    fns["a"] = run_jax(jacrev_probe, xs)
    checks = {"(a)": agreement(ref, out_a)}
    k_b = b
    if net is not None:
      xs_t = torch.tensor(np.asarray(xs), dtype=torch.float32)
      checks["(c)"] = agreement(ref, net.analytic_svdvals(xs_t).numpy())
      fns["c"] = lambda: net.analytic_svdvals(xs_t)
      # (b): one input first, which also gives its per-input cost.
      start = time.perf_counter()
      out_b = net.autograd_svdvals(xs_t[:1]).numpy()
      k_b = subset(time.perf_counter() - start, b)
      if k_b > 1:
        out_b = np.concatenate(
            [out_b, net.autograd_svdvals(xs_t[1:min(k_b, 4)]).numpy()])
      checks["(b)"] = agreement(ref[:len(out_b)], out_b)
      xs_b = xs_t[:k_b]
      fns["b"] = lambda: net.autograd_svdvals(xs_b)
      scale["b"] = b / k_b
    ok = all(top <= TOLERANCE and spec <= TOLERANCE
             for top, spec in checks.values())
    details = ", ".join(f"{m} top {t:.1e} spectrum {s:.1e}"
                        for m, (t, s) in checks.items())
    print(f"  agreement with vgrad ({'OK' if ok else 'MISMATCH'}, "
          f"tol {TOLERANCE:g}): {details}", flush=True)
    row["agree"] = ok

    run_jax(jac_only, xs)()
    fns["chain"] = run_jax(jac_only, xs)
    k_f = subset(full_per_input, b)
    run_jax(full_probe, xs[:k_f])()
    fns["full"] = run_jax(full_probe, xs[:k_f])
    scale["full"] = b / k_f

    labels = {"vgrad": "vgrad io_probe", "a": "(a) jax jacrev",
              "b": f"(b) torch autograd [{k_b}/{b}]",
              "c": "(c) torch analytic", "chain": "vgrad chain (no SVD)",
              "full": f"vgrad full probe [{k_f}/{b}]"}
    timings = time_methods(fns, reps, budget)
    for name, (t, count) in timings.items():
      t_full = t * scale.get(name, 1.0)
      extra = (f" -> {t_full * 1e3:.1f} ms for B={b} (extrapolated)"
               if scale.get(name, 1.0) != 1.0 else "")
      print(f"  {labels[name]:<28s} {t * 1e3:10.3f} ms  "
            f"(median of {count}){extra}", flush=True)
      row[name] = t_full
      row[name + "_extrap"] = scale.get(name, 1.0) != 1.0
    row.setdefault("b", None)
    row.setdefault("c", None)
    row.setdefault("b_extrap", False)
    flops = 2 * n ** 3 * (depth - 1) * b
    row["chain_gflops"] = flops / row["chain"] / 1e9
    row["chain_pct"] = 100 * row["chain_gflops"] / peak
    yield row


# --------------------------------------------------------------------------
# Table.

HEADER = ["act", "N", "L", "B", "vgrad ms", "(a) jacrev ms",
          "(b) torch autograd ms", "(c) torch analytic ms", "(b)/vgrad",
          "min((a),(c))/vgrad", "chain GFLOP/s", "chain % peak",
          "full probe ms", "agree"]


def table_rows(rows):
  out = []
  for r in rows:
    fastest_other = min(t for t in (r["a"], r["c"]) if t is not None)
    out.append([
        r["act"], str(r["N"]), str(r["L"]), str(r["B"]),
        fmt_ms(r["vgrad"]), fmt_ms(r["a"]), fmt_ms(r["b"], r["b_extrap"]),
        fmt_ms(r["c"]),
        "n/a" if r["b"] is None else f"{r['b'] / r['vgrad']:.1f}",
        f"{fastest_other / r['vgrad']:.2f}",
        f"{r['chain_gflops']:.0f}", f"{r['chain_pct']:.0f}%",
        fmt_ms(r["full"], r["full_extrap"]),
        "yes" if r["agree"] else "NO",
    ])
  return out


def plain_table(rows) -> str:
  body = table_rows(rows)
  widths = [max(len(h), *(len(r[i]) for r in body))
            for i, h in enumerate(HEADER)]
  lines = ["  ".join(h.rjust(w) for h, w in zip(HEADER, widths))]
  lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
  return "\n".join(lines)


def markdown_table(rows) -> str:
  return provenance.markdown_table(HEADER, table_rows(rows))


# --------------------------------------------------------------------------

def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default=DEFAULT_SIZES,
                      help="comma-separated NxL (width x depth), default "
                      f"{DEFAULT_SIZES}")
  parser.add_argument("--acts", default="tanh,relu",
                      help="comma-separated activations from tanh, relu")
  parser.add_argument("--batches", default="1,32",
                      help="comma-separated batch sizes")
  parser.add_argument("--repeats", type=int, default=3,
                      help="minimum timed repeats per method")
  parser.add_argument("--max_seconds_per_method", type=float, default=3.0,
                      help="stop adding repeats once a method used this long;"
                      " (b) and the full probe use a subset of the batch when"
                      " --repeats runs of the whole batch would exceed it")
  parser.add_argument("--peak_sizes", default="1024,2048,4096",
                      help="matrix sizes for the matmul peak")
  parser.add_argument("--threads", type=int, default=0,
                      help="0: each library's default thread count (all "
                      "cores); N: pin the process to N cores and use N "
                      "threads in XLA, OpenBLAS/LAPACK and torch")
  parser.add_argument("--out", default=None,
                      help="write the results as Markdown to this file")
  args = parser.parse_args(argv)
  args.sizes = [tuple(int(v) for v in s.lower().split("x"))
                for s in args.sizes.split(",") if s]
  args.acts = [a for a in args.acts.split(",") if a]
  for a in args.acts:
    if a not in INITS:
      parser.error(f"unknown activation {a!r}; choose from {sorted(INITS)}")
  args.batches = [int(b) for b in args.batches.split(",") if b]
  args.peak_sizes = [int(n) for n in args.peak_sizes.split(",") if n]
  if args.repeats < 1:
    parser.error("--repeats must be >= 1")
  return args


def main(argv=None):
  args = parse_args(argv)
  start = time.perf_counter()
  if args.threads > 0 and torch is not None:
    torch.set_num_threads(args.threads)
  env = [f"python {platform.python_version()}, jax {jax.__version__}, "
         f"devices {jax.devices()}", provenance.code_version(jacobian)]
  if torch is None:
    env.append("torch: NOT INSTALLED - methods (b) and (c) are skipped "
               "(pip install torch --index-url "
               "https://download.pytorch.org/whl/cpu)")
  else:
    env.append(f"torch {torch.__version__}, torch.get_num_threads() = "
               f"{torch.get_num_threads()}")
  env.append(f"cpu cores: {os.cpu_count()}, usable by this process: "
             f"{len(os.sched_getaffinity(0))}; --threads {args.threads} ("
             + ("library defaults" if args.threads == 0 else
                "pinned, OMP/OPENBLAS/MKL_NUM_THREADS set") + ")")
  for line in env:
    print(line)

  peaks = matmul_peak(args.peak_sizes)
  peak = max(peaks.values())
  peak_line = ("matmul float32 GFLOP/s (jitted jnp.dot, n x n): "
               + ", ".join(f"n={n}: {g:.0f}" for n, g in peaks.items())
               + f"; peak = {peak:.0f}")
  if torch is not None:
    n_ref = max(args.peak_sizes)
    peak_line += (f" (for reference, torch matmul n={n_ref}: "
                  f"{torch_matmul_rate(n_ref):.0f} GFLOP/s)")
  print(peak_line, flush=True)

  rows = []
  for n, depth in args.sizes:
    for act in args.acts:
      rows.extend(run_config(act, n, depth, args.batches, args, peak))

  elapsed = time.perf_counter() - start
  notes = [
      "Times are medians in ms. Ratios are other / vgrad (> 1: vgrad is "
      "faster). * = timed on the first k inputs of the batch and scaled by "
      "B / k (extrapolated).",
      "chain = make_input_output_probe(spectrum=False), flops 2 N^3 (L-1) B;"
      f" % of the matmul peak {peak:.0f} GFLOP/s.",
      "Targets: (b)/vgrad >= 20; min((a),(c))/vgrad >= 1; chain >= 50% of "
      "peak.",
  ]
  print("\n" + plain_table(rows))
  for line in notes:
    print(line)
  print(f"total time {elapsed:.0f} s")
  if args.out:
    with open(args.out, "w") as f:
      f.write("# Jacobian spectrum benchmark (CPU)\n\n")
      f.write("Generated by `python -m benchmarks.jacobian_benchmark"
              + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
              + "`.\n\n")
      for line in env + [peak_line]:
        f.write(f"- {line}\n")
      f.write("\n" + markdown_table(rows) + "\n\n")
      for line in notes:
        f.write(f"- {line}\n")
      f.write(f"- total benchmark time {elapsed:.0f} s\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
