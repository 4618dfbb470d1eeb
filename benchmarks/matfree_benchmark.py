r"""Benchmark: matfree against vgrad.probes.matrix_free on MLP Jacobians.

``matfree`` (https://github.com/pnkraemer/matfree; ``pip install
'matfree>=0.6'``, in the ``bench`` extra) implements Golub-Kahan
bidiagonalisation (``decomp.bidiag``, full reorthogonalisation), the partial
SVD built on it (``eig.svd_partial``) and stochastic Lanczos quadrature of
``tr f(J^T J)`` (``funm.monte_carlo_funm_product`` under
``stochtrace.estimator_monte_carlo``). vgrad.probes.matrix_free implements
the same algorithms itself. For the input-output Jacobian J of a depth-10
MLP (tanh at ``sigma_w2 = 1``, ReLU at ``sigma_w2 = 2``, no biases), one
input, each width and dtype, in one process with identical weights, start
vector and probes:

  GK   k Golub-Kahan steps from one Gaussian start vector, then the SVD of
       the k x k bidiagonal: vgrad ``extreme_singular_values`` (values and
       residual bounds) against matfree ``svd_partial(bidiag(k))`` (values
       and singular vectors; matfree returns no error bound).
  SLQ  P Rademacher probes x S Lanczos steps: vgrad ``lanczos_quadrature``
       + ``quadrature_moments`` (one run gives every f) against matfree's
       estimator of ``tr(J^T J)`` (one run per f).

Accuracy against a dense float64 SVD of the same Jacobian (formed by the
layer scan of ``jacobian.make_input_output_probe``):

  * top-5 / bottom-5: largest relative error of the 5 largest / 5 smallest
    Ritz singular values against the matching dense ones (interlacing
    pairs the i-th largest with the i-th largest). With k << N the smallest
    have not converged for either method.
  * bound: vgrad's residual bounds are claimed to hold up to the rounding
    floor ``L sqrt(N) eps sigma_max``; the column counts the 10 extreme Ritz
    values whose distance to the nearest dense singular value is within
    bound + floor, and gives the largest bound / actual error (> 1 means
    valid but loose; reported for the top 5 only where the error is above
    the floor).
  * SLQ: relative errors of the normalised traces ``tr(J^T J)/N`` (a
    polynomial, exact per probe: only Hutchinson noise; matfree's own
    estimator) and ``tr|J|/N`` (``f = sqrt``, the Gauss rule's quadrature
    error on top), and the L1 distance between the kernel density of
    ``ln sigma`` and the dense spectrum's (``matrix_free.exact_density``).
    matfree has no density (nor Gauss-rule) function: its ``tr|J|`` and
    density use the Gauss rules (nodes, weights) of matfree's bidiagonals,
    the quantities its ``monte_carlo_funm_product`` sums, with vgrad's
    kernel mixture (one run for both; its estimator would need a Lanczos
    run per function).

Breakdown row: a width-64 ReLU net with ``k = N`` steps (about half the
singular values exactly 0, so some ``alpha_j`` or ``beta_j`` falls to 0):
vgrad restarts on breakdown; matfree divides by the zero norm. (An
orthogonal linear net, ``beta_1 = 0`` in exact arithmetic, breaks neither:
the rounding noise it normalises is reorthogonalised into a valid basis.)

Times are medians in ms of jit-compiled calls after an untimed warm-up
(compilation), at least ``--repeats`` runs, adding runs while under
``--max_seconds_per_method``, the methods interleaved round by round (load
on a shared machine falls on all alike); parameters are arguments of the
jitted functions. Ratios are matfree / vgrad (> 1: vgrad is faster).

Run from the repository root::

  python -m benchmarks.matfree_benchmark --out \
      benchmarks/results_matfree_cpu.md   # N = 512, ~2 CPU-minutes
  python -m benchmarks.matfree_benchmark --widths 256,1024,2048 \
      --cases tanh:float32,relu:float32,tanh:float64,relu:float64

float32 cases run with ``jax_enable_x64`` off: matfree's bidiagonalisation
allocates its coefficients in the default float dtype, so under x64 a
float32 operator gets float64 cotangents and its VJP raises.
"""

import argparse
import math
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

DEPTH = 10
DEFAULT_WIDTHS = "512"
DEFAULT_CASES = "tanh:float32,relu:float32,tanh:float64"
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}
EXTREME = 5


def import_matfree():
  """The matfree modules used here, or SystemExit saying how to get them."""
  try:
    # pylint: disable=g-import-not-at-top
    from matfree import decomp
    from matfree import eig
    from matfree import funm
    from matfree import stochtrace
  except ImportError as e:
    raise SystemExit(
        "matfree_benchmark needs matfree (not a vgrad dependency): "
        "pip install 'matfree>=0.6'  (or pip install -e '.[bench]')") from e
  return decomp, eig, funm, stochtrace


def time_interleaved(fns: dict, min_repeats: int, budget_s: float
                     ) -> dict[str, tuple[float, int]]:
  """Median seconds of each ``fn()`` and the count, runs interleaved.

  One untimed warm-up call each (compilation), then rounds that run every
  function once, in rotating order, until each has ``min_repeats`` runs and
  the round total passes ``budget_s`` per function: on a shared machine a
  burst of load then falls on all methods alike, not on one.
  """
  for fn in fns.values():
    fn()
  names = list(fns)
  times = {name: [] for name in names}
  rounds = 0
  while (rounds < min_repeats
         or sum(map(sum, times.values())) < budget_s * len(names)):
    for name in names[rounds % len(names):] + names[:rounds % len(names)]:
      start = time.perf_counter()
      fns[name]()
      times[name].append(time.perf_counter() - start)
    rounds += 1
  return {name: (statistics.median(t), len(t)) for name, t in times.items()}


@jax.jit
def density_l1(sv, vgrad_rule, matfree_rule, grid, kernel_width):
  """L1 distances of the two SLQ densities of ln sigma to the dense one."""
  exact = matrix_free.exact_density(sv, grid, kernel_width)
  tiny = jnp.finfo(sv.dtype).tiny

  def l1(rule):
    sigma, weights = rule
    density = matrix_free.mixture_density(
        jnp.log(jnp.maximum(sigma, tiny)), weights, grid, kernel_width)
    return jnp.trapezoid(jnp.abs(density - exact), grid)
  return l1(vgrad_rule), l1(matfree_rule)


def make_net(activation: str, n: int, dtype):
  sigma_w2 = 1.0 if activation == "tanh" else 2.0
  model = models.make_mlp(depth=DEPTH, width=n, activation=activation,
                          init="gaussian", sigma_w2=sigma_w2, sigma_b2=None,
                          param_dtype=dtype)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((n,), dtype))
  x = jax.random.normal(jax.random.key(1), (n,), dtype)
  return model, params, x


def dense_spectrum(model, params, x) -> np.ndarray:
  """Singular values of J, descending: the layer-scan J, SVD in float64."""
  jac = jacobian.make_input_output_probe(model, spectrum=False)(
      params, x[None])[0]
  return np.linalg.svd(np.asarray(jac, np.float64), compute_uv=False)


def _rel(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want) / np.abs(want)))


def _gauss_rules(mf_decomp, num_steps):
  """Per-probe Gauss rules (sigma, weights) from matfree's bidiagonals."""
  bidiag = mf_decomp.bidiag(num_steps)

  def one(matvec, v0):
    _, b, *_ = bidiag(matvec, v0)
    _, sv, right_t = jnp.linalg.svd(b)
    return sv, right_t[:, 0] ** 2
  return one


def run_case(label, activation, n, dtype_name, k, args, slq=True) -> dict:
  """Times and accuracies of both libraries on one Jacobian; a table row."""
  mf_decomp, mf_eig, mf_funm, mf_stochtrace = import_matfree()
  dtype = DTYPES[dtype_name]
  model, params, x = make_net(activation, n, dtype)
  sv = dense_spectrum(model, params, x)
  gk_key, slq_key = jax.random.split(jax.random.key(2))
  num_probes, slq_steps = args.slq
  slq_steps = min(slq_steps, n)
  grid = jnp.linspace(args.grid[0], args.grid[1], args.grid_points,
                      dtype=dtype)
  budget, reps = args.max_seconds_per_method, args.repeats
  row = {"case": label, "N": n, "dtype": dtype_name, "k": k,
         "P x S": f"{num_probes} x {slq_steps}"}
  print(f"\n[{label} N={n} {dtype_name} k={k}]", flush=True)

  def fn_of(params):
    return lambda z: model.apply(params, z)

  @jax.jit
  def vgrad_gk(params, x):
    return matrix_free.extreme_singular_values(fn_of(params), x, gk_key, k,
                                               EXTREME)

  svd_partial = mf_eig.svd_partial(mf_decomp.bidiag(k))

  @jax.jit
  def matfree_gk(params, x):
    matvec, _ = matrix_free.linear_operators(fn_of(params), x)
    v0 = jax.random.normal(gk_key, x.shape, x.dtype)  # vgrad's start vector
    _, s, _ = svd_partial(matvec, v0)
    return s

  @jax.jit
  def vgrad_slq(params, x):
    matvec, rmatvec = matrix_free.linear_operators(fn_of(params), x)
    probes = matrix_free.sample_probes(slq_key, num_probes, n, x.dtype)
    quad = matrix_free.lanczos_quadrature(matvec, rmatvec, probes, slq_steps)
    return quad, matrix_free.quadrature_moments(quad)[0]

  def matfree_trace(power):
    integrand = mf_funm.monte_carlo_funm_product_schatten_norm(
        power, mf_decomp.bidiag(slq_steps))
    # sampler_signs draws jax.random.rademacher(key, (P, n)): vgrad's probes.
    sampler = mf_stochtrace.sampler_signs(x, num=num_probes)
    estimate = mf_stochtrace.estimator_monte_carlo(integrand, sampler)

    @jax.jit
    def run(params, x):
      matvec, _ = matrix_free.linear_operators(fn_of(params), x)
      return estimate(matvec, slq_key) / n
    return run
  matfree_m1 = matfree_trace(2)

  rules = _gauss_rules(mf_decomp, slq_steps)

  @jax.jit
  def matfree_rules(params, x):
    """Untimed: the Gauss rules of matfree's bidiagonals, one per probe."""
    matvec, _ = matrix_free.linear_operators(fn_of(params), x)
    probes = matrix_free.sample_probes(slq_key, num_probes, n, x.dtype)
    return jax.vmap(lambda v: rules(matvec, v))(probes)

  timed = {"vgrad_gk": vgrad_gk, "matfree_gk": matfree_gk}
  if slq:
    timed.update(vgrad_slq=vgrad_slq, matfree_slq=matfree_m1)
  times = time_interleaved(
      {name: (lambda fn=fn: jax.block_until_ready(fn(params, x)))
       for name, fn in timed.items()}, reps, budget)
  for name, (median, count) in times.items():
    row[name] = median
    print(f"  {name:12s} {median * 1e3:9.2f} ms (median of {count})",
          flush=True)

  # Extreme singular values, bounds.
  eps = float(jnp.finfo(dtype).eps)
  floor = DEPTH * math.sqrt(n) * eps * sv[0]
  got = vgrad_gk(params, x)
  mf_sv = np.asarray(matfree_gk(params, x), np.float64)
  row["matfree_nan"] = bool(np.any(~np.isfinite(mf_sv)))
  largest, smallest = (np.asarray(got.largest, np.float64),
                       np.asarray(got.smallest, np.float64))
  row["vgrad_top"] = _rel(largest, sv[:EXTREME])
  row["matfree_top"] = _rel(mf_sv[:EXTREME], sv[:EXTREME])
  bottom = sv[::-1][:EXTREME]
  row["vgrad_bottom"] = _rel(smallest, np.maximum(bottom, sv[0] * eps))
  row["matfree_bottom"] = _rel(mf_sv[::-1][:EXTREME],
                               np.maximum(bottom, sv[0] * eps))
  ritz = np.concatenate([largest, smallest])
  bounds = np.concatenate([np.asarray(got.largest_bounds, np.float64),
                           np.asarray(got.smallest_bounds, np.float64)])
  nearest = np.min(np.abs(ritz[:, None] - sv[None, :]), axis=1)
  row["bound_ok"] = int(np.sum(nearest <= bounds + floor))
  top_err = np.abs(largest - sv[:EXTREME])
  above = top_err > floor
  row["bound_over_err"] = (float(np.min(bounds[:EXTREME][above]
                                        / top_err[above]))
                           if np.any(above) else None)
  print(f"  top-{EXTREME} rel err vgrad {row['vgrad_top']:.1e} matfree "
        f"{row['matfree_top']:.1e}; bottom vgrad {row['vgrad_bottom']:.1e} "
        f"matfree {row['matfree_bottom']:.1e}; vgrad bounds hold "
        f"{row['bound_ok']}/{2 * EXTREME}", flush=True)

  if slq:
    quad, moments = vgrad_slq(params, x)
    m1, nuclear = np.mean(sv ** 2), np.mean(sv)
    mf_sigma, mf_weights = matfree_rules(params, x)

    def nuclear_of(sigma, weights):  # the Gauss rule of f = sqrt on J^T J
      return np.mean(np.sum(np.asarray(weights, np.float64)
                            * np.asarray(sigma, np.float64), axis=1))
    vgrad_nuclear = nuclear_of(quad.singular_values, quad.weights)
    mf_nuclear = nuclear_of(mf_sigma, mf_weights)
    row["vgrad_m1"] = _rel(moments[0], m1)
    row["matfree_m1"] = _rel(matfree_m1(params, x), m1)
    row["vgrad_nuc"] = _rel(vgrad_nuclear, nuclear)
    row["matfree_nuc"] = _rel(mf_nuclear, nuclear)
    row["vgrad_l1"], row["matfree_l1"] = (float(v) for v in density_l1(
        jnp.asarray(sv, dtype), (quad.singular_values, quad.weights),
        (mf_sigma, mf_weights), grid, args.kernel_width))
    print(f"  SLQ tr(J^T J)/N rel err vgrad {row['vgrad_m1']:.1e} matfree "
          f"{row['matfree_m1']:.1e}; tr|J|/N vgrad {row['vgrad_nuc']:.1e} "
          f"matfree {row['matfree_nuc']:.1e}; density L1 vgrad "
          f"{row['vgrad_l1']:.2f} matfree {row['matfree_l1']:.2f}",
          flush=True)
  return row


def _fmt(v, spec):
  if v is None:
    return "n/a"
  if isinstance(v, float) and not math.isfinite(v):
    return "NaN"
  return format(v, spec)


def _fmt_ms(t):
  return "n/a" if t is None else (f"{t * 1e3:.3g}" if t < 0.1
                                  else f"{t * 1e3:.0f}")


GK_HEADER = ["case", "N", "dtype", "k", "vgrad ms", "matfree ms",
             "matfree/vgrad", "top-5 err vgrad", "top-5 err matfree",
             "bottom-5 err vgrad", "bottom-5 err matfree",
             "vgrad bounds hold", "min bound/err", "matfree bound"]
SLQ_HEADER = ["case", "N", "dtype", "P x S", "vgrad ms", "matfree ms",
              "matfree/vgrad", "tr(JᵀJ) err vgrad", "tr(JᵀJ) err matfree",
              "tr|J| err vgrad", "tr|J| err matfree", "L1 vgrad",
              "L1 matfree"]


def gk_rows(rows):
  return [[r["case"], str(r["N"]), r["dtype"], str(r["k"]),
           _fmt_ms(r["vgrad_gk"]), _fmt_ms(r["matfree_gk"]),
           _fmt(r["matfree_gk"] / r["vgrad_gk"], ".2f"),
           _fmt(r["vgrad_top"], ".1e"), _fmt(r["matfree_top"], ".1e"),
           _fmt(r["vgrad_bottom"], ".1e"), _fmt(r["matfree_bottom"], ".1e"),
           f"{r['bound_ok']}/{2 * EXTREME}", _fmt(r["bound_over_err"], ".1f"),
           "none"] for r in rows]


def slq_rows(rows):
  return [[r["case"], str(r["N"]), r["dtype"], r["P x S"],
           _fmt_ms(r["vgrad_slq"]), _fmt_ms(r["matfree_slq"]),
           _fmt(r["matfree_slq"] / r["vgrad_slq"], ".2f"),
           _fmt(r["vgrad_m1"], ".1e"), _fmt(r["matfree_m1"], ".1e"),
           _fmt(r["vgrad_nuc"], ".1e"), _fmt(r["matfree_nuc"], ".1e"),
           _fmt(r["vgrad_l1"], ".2f"), _fmt(r["matfree_l1"], ".2f")]
          for r in rows if "vgrad_slq" in r]


def markdown_tables(rows) -> str:
  return ("Golub-Kahan, extreme singular values:\n\n"
          + provenance.markdown_table(GK_HEADER, gk_rows(rows),
                                      left_columns=1)
          + "\n\nStochastic Lanczos quadrature:\n\n"
          + provenance.markdown_table(SLQ_HEADER, slq_rows(rows),
                                      left_columns=1))


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--widths", default=DEFAULT_WIDTHS,
                      help=f"comma-separated widths, default {DEFAULT_WIDTHS}")
  parser.add_argument("--cases", default=DEFAULT_CASES,
                      help="comma-separated activation:dtype pairs, default "
                      f"{DEFAULT_CASES}")
  parser.add_argument("--steps", type=int, default=64,
                      help="Golub-Kahan steps k for the extreme values")
  parser.add_argument("--slq", default="4x32",
                      help="SLQ probes x Lanczos steps, e.g. 4x32")
  parser.add_argument("--kernel_width", type=float, default=0.25,
                      help="SLQ Gaussian kernel width in ln(sigma)")
  parser.add_argument("--grid", default="-20,5",
                      help="ln(sigma) range of the density grid")
  parser.add_argument("--grid_points", type=int, default=501)
  parser.add_argument("--no_breakdown", action="store_true",
                      help="skip the breakdown row")
  parser.add_argument("--repeats", type=int, default=3,
                      help="minimum timed repeats per method")
  parser.add_argument("--max_seconds_per_method", type=float, default=0.3,
                      help="stop adding repeats past this much time")
  parser.add_argument("--threads", type=int, default=0,
                      help="0: library defaults; N: pin to N cores, N threads")
  parser.add_argument("--out", default=None,
                      help="write the results as Markdown to this file")
  args = parser.parse_args(argv)
  args.widths = [int(w) for w in args.widths.split(",") if w]
  args.cases = [tuple(c.split(":")) for c in args.cases.split(",") if c]
  args.slq = tuple(int(v) for v in args.slq.lower().split("x"))
  args.grid = tuple(float(v) for v in args.grid.split(","))
  if len(args.slq) != 2 or min(args.slq) < 2:
    parser.error(f"--slq must be PxS with P, S >= 2, got {args.slq}")
  if any(len(c) != 2 or c[1] not in DTYPES for c in args.cases):
    parser.error(f"--cases must be activation:dtype pairs, dtype among "
                 f"{', '.join(DTYPES)}")
  if args.repeats < 1 or args.steps < EXTREME:
    parser.error(f"need --repeats >= 1 and --steps >= {EXTREME}")
  return args


def main(argv=None):
  args = parse_args(argv)
  import_matfree()  # fail before any work if it is missing
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  env = [(f"python {platform.python_version()}, jax {jax.__version__}, "
          f"matfree {metadata.version('matfree')}, devices {jax.devices()}"),
         provenance.code_version(matrix_free),
         (f"cpu: {provenance.cpu_model()}; cores {os.cpu_count()}, usable "
          f"{len(os.sched_getaffinity(0))}; --threads {args.threads}"),
         provenance.load_line("at start"),
         (f"depth {DEPTH}, no biases, tanh sigma_w2 = 1, relu sigma_w2 = "
          f"2, Gaussian init, one input; k = {args.steps} GK steps")]
  for line in env:
    print(line)
  rows = []
  for dtype_name in DTYPES:
    with jax.enable_x64(dtype_name == "float64"):
      for activation, dtype in args.cases:
        if dtype == dtype_name:
          rows += [run_case(activation, activation, n, dtype_name,
                            min(args.steps, n), args) for n in args.widths]
      if not args.no_breakdown:
        rows.append(run_case("relu, k = N", "relu", 64, dtype_name, 64,
                             args, slq=False))
  elapsed = time.perf_counter() - start
  env.append(provenance.load_line("at end"))
  notes = [
      ("Times: medians in ms after a warm-up (compilation) call; "
       "matfree/vgrad > 1: vgrad is faster. GK: vgrad "
       "extreme_singular_values vs matfree svd_partial(bidiag(k)), same "
       "start vector. SLQ: vgrad lanczos_quadrature + quadrature_moments vs "
       "matfree estimator_monte_carlo of tr(J^T J), same Rademacher probes."),
      ("Errors are relative, against a float64 SVD of the dense Jacobian. "
       "'vgrad bounds hold': extreme Ritz values (top and bottom 5) within "
       "their residual bound + the rounding floor L sqrt(N) eps sigma_max "
       "of a dense singular value; 'min bound/err': smallest bound / actual "
       "error among the top 5 whose error exceeds that floor (>= 1: valid). "
       "matfree returns no bound (its bidiag returns the residual vector, "
       "from which one could be derived). NaN: matfree's output is NaN."),
      ("SLQ: tr(J^T J)/N and tr|J|/N from P probes x S steps (matfree: "
       "tr(J^T J) by its estimator, tr|J| and the density from its "
       "bidiagonals' Gauss rules); L1: integral of |SLQ - dense| kernel "
       f"density of ln sigma over [{args.grid[0]:g}, {args.grid[1]:g}], "
       f"width {args.kernel_width:g}."),
  ]
  table = markdown_tables(rows)
  print("\n" + table + "\n")
  for line in notes:
    print(line)
  print(f"total time {elapsed:.0f} s")
  if args.out:
    with open(args.out, "w") as f:
      f.write("# matfree against vgrad.probes.matrix_free (CPU)\n\n")
      f.write("Generated by `python -m benchmarks.matfree_benchmark"
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
