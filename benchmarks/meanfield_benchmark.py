r"""Benchmark: the mean-field phase diagram, one JAX program vs a NumPy loop.

For each activation, in one process:

  vgrad  ``meanfield.solve_grid`` on the sigma_w2 x sigma_b2 grid
         (``--grid``, default 300 x 250 over [0.5, 4] x [0, 2]): q*, c*,
         chi_1, chi_c, xi_q, xi_c at every point, one jitted program
         vmapped over chunks of the flattened grid. Compilation (first call
         minus a compiled call) and run time (median of ``--repeats``
         compiled calls) are reported separately.
  numpy  the way the public notebooks compute phase diagrams: a Python
         loop over grid points, each iterating the length map to its fixed
         point (plain iteration from q = 1, at most 1000 steps, |dq| <=
         1e-10 q) and then the correlation map from c = 0 divided by q*
         (at most 1000 steps, |dc| <= 1e-10), with NumPy Gauss-Hermite
         quadrature (the same 300-node 1-D rule; a ``--numpy_points_2d``
         squared tensor rule in 2-D), then chi_1, chi_c and the depth
         scales. Timed on ``--numpy_samples`` random grid points and
         reported per point.

The speed-up is NumPy seconds per point / vgrad seconds per point. The
table also gives the largest difference between the two on the sampled
points (q* relative, chi_1 and c* absolute), excluding (and counting) the
points where the NumPy iteration did not converge in 1000 steps (q* = inf,
slow approach near the critical line) or |chi_1 - 1| < 1e-3.

Run from the repository root::

  python -m benchmarks.meanfield_benchmark                    # full run
  python -m benchmarks.meanfield_benchmark --grid=30x25 --repeats=2 \
      --numpy_samples=5                                       # quick run
  python -m benchmarks.meanfield_benchmark \
      --out=benchmarks/results_meanfield_cpu.md

Nothing is written unless ``--out`` is given.
"""

import datetime
import math
import os
import platform
import statistics
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import provenance
from vgrad.cli import app as cli
from vgrad.io import rundir
from vgrad.nn import activations
from vgrad.theory import meanfield


def _sigmoid(u):
  return 0.5 * (1 + np.tanh(0.5 * u))


# NumPy (phi, phi') for the peer, written out so that it calls no JAX.
NUMPY_ACTIVATIONS = {
    "tanh": (np.tanh, lambda u: 1 - np.tanh(u) ** 2),
    "relu": (lambda u: np.maximum(u, 0.0), lambda u: (u > 0).astype(float)),
    "linear": (lambda u: u, np.ones_like),
    "sigmoid": (_sigmoid, lambda u: _sigmoid(u) * (1 - _sigmoid(u))),
}
SIGMA_W2_RANGE = (0.5, 4.0)
SIGMA_B2_RANGE = (0.0, 2.0)

FLAGS = flags.FLAGS
flags.DEFINE_list("activations", ["tanh", "relu"],
                  f"Activations, from {', '.join(NUMPY_ACTIVATIONS)}.")
flags.DEFINE_string("grid", "300x250", "Grid size NxM: N sigma_w2 values in "
                    f"{SIGMA_W2_RANGE} times M sigma_b2 values in "
                    f"{SIGMA_B2_RANGE}.")
flags.DEFINE_integer("repeats", 3, "Timed calls of solve_grid (median), "
                     ">= 1.")
flags.DEFINE_integer("chunk_size", 1024, "solve_grid's grid points per "
                     "vmapped chunk, >= 1.")
flags.DEFINE_integer("numpy_samples", 20, "Random grid points timed with "
                     "the NumPy loop, >= 1.")
flags.DEFINE_integer("numpy_points_2d", 50, "Gauss-Hermite nodes per axis "
                     "of the NumPy peer's 2-D rule, >= 2.")
flags.DEFINE_integer("seed", 0, "Seed of the sampled grid points.")
flags.DEFINE_string("out", None, "Write the results as Markdown to this "
                    "file (atomically).")

flags.register_validator(
    "activations", lambda v: bool(v) and set(v) <= set(NUMPY_ACTIVATIONS),
    message=f"--activations must list names from "
    f"{', '.join(NUMPY_ACTIVATIONS)}")
flags.register_validator(
    "grid", lambda v: len(v.split("x")) == 2 and all(
        p.isdigit() and int(p) >= 1 for p in v.split("x")),
    message="--grid must look like 300x250 (two integers >= 1)")
for _name in ("repeats", "chunk_size", "numpy_samples"):
  flags.register_validator(_name, lambda v: v >= 1,
                           message=f"--{_name} must be an integer >= 1")
flags.register_validator("numpy_points_2d", lambda v: v >= 2,
                         message="--numpy_points_2d must be >= 2")


# --------------------------------------------------------------------------
# The NumPy peer.

class NumpyRules:
  """The 1-D rule of vgrad.theory.meanfield and an n x n tensor rule, in
  NumPy."""

  def __init__(self, points_1d: int, points_2d: int):
    z, w = np.polynomial.hermite_e.hermegauss(points_1d)
    self.z, self.w = z, w / math.sqrt(2 * math.pi)
    z2, w2 = np.polynomial.hermite_e.hermegauss(points_2d)
    w2 = w2 / math.sqrt(2 * math.pi)
    self.z1, self.z2 = np.meshgrid(z2, z2, indexing="ij")
    self.w2 = w2[:, None] * w2[None, :]


def numpy_point(name: str, sw2: float, sb2: float, rules: NumpyRules,
                max_steps: int = 1000, tol: float = 1e-10) -> dict:
  """q*, chi_1, c*, chi_c, xi_q, xi_c at one point, notebook style."""
  fn, dfn = NUMPY_ACTIVATIONS[name]
  q, converged = 1.0, False
  for _ in range(max_steps):
    q_new = sw2 * np.dot(rules.w, fn(math.sqrt(q) * rules.z) ** 2) + sb2
    if not math.isfinite(q_new) or q_new > 1e30:
      q_new = math.inf
      break
    converged = abs(q_new - q) <= tol * q_new
    q = q_new
    if converged:
      break
  out = {"q_star": q, "c_star": math.nan, "chi_c": math.nan,
         "xi_c": math.nan, "converged": converged}
  q_eval = 1e8 if math.isinf(q) else q
  out["chi_1"] = sw2 * np.dot(rules.w, dfn(math.sqrt(q_eval) * rules.z) ** 2)
  slope = sw2 * np.dot(rules.w, fn(math.sqrt(q_eval) * rules.z)
                       * dfn(math.sqrt(q_eval) * rules.z) * rules.z) / (
                           math.sqrt(q_eval))
  out["xi_q"] = -1 / math.log(slope) if 0 < slope < 1 else math.inf
  if math.isinf(q):
    return out
  root = math.sqrt(q)
  phi1 = fn(root * rules.z1)
  c, done = 0.0, False
  for _ in range(max_steps):
    u2 = root * (c * rules.z1 + math.sqrt(max(1 - c * c, 0.0)) * rules.z2)
    c_new = min((sw2 * np.sum(rules.w2 * phi1 * fn(u2)) + sb2) / q, 1.0)
    done = abs(c_new - c) <= tol
    c = c_new
    if done:
      break
  out["converged"] = converged and done
  u2 = root * (c * rules.z1 + math.sqrt(max(1 - c * c, 0.0)) * rules.z2)
  chi_c = sw2 * np.sum(rules.w2 * dfn(root * rules.z1) * dfn(u2))
  out.update(c_star=c, chi_c=chi_c,
             xi_c=-1 / math.log(chi_c) if 0 < chi_c < 1 else math.inf)
  return out


# --------------------------------------------------------------------------
# Timing.

def time_vgrad(act, sw2, sb2, repeats: int, chunk_size: int):
  """(compile s, median run s, MeanField as NumPy arrays)."""
  def call():
    start = time.perf_counter()
    result = jax.block_until_ready(
        meanfield.solve_grid(act, sw2, sb2, chunk_size=chunk_size))
    return time.perf_counter() - start, result
  first, result = call()
  runs = [call()[0] for _ in range(repeats)]
  run = statistics.median(runs)
  return max(0.0, first - run), run, jax.tree_util.tree_map(np.asarray,
                                                            result)


def compare(name, grid, sw2, sb2, picks, rules):
  """NumPy seconds per point and its largest differences from vgrad."""
  seconds, rows = [], []
  for i, j in picks:
    start = time.perf_counter()
    ref = numpy_point(name, float(sw2[i]), float(sb2[j]), rules)
    seconds.append(time.perf_counter() - start)
    rows.append((i, j, ref))
  diffs = {"q_star": 0.0, "chi_1": 0.0, "c_star": 0.0}
  skipped = 0
  for i, j, ref in rows:
    near_critical = abs(grid.chi_1[i, j] - 1) < 1e-3
    if not ref["converged"] or near_critical:
      skipped += 1
      continue
    diffs["q_star"] = max(diffs["q_star"], abs(
        ref["q_star"] - grid.q_star[i, j]) / max(ref["q_star"], 1e-12))
    diffs["chi_1"] = max(diffs["chi_1"], abs(ref["chi_1"] - grid.chi_1[i, j]))
    diffs["c_star"] = max(diffs["c_star"],
                          abs(ref["c_star"] - grid.c_star[i, j]))
  return sum(seconds) / len(seconds), diffs, skipped




HEADER = ["activation", "grid", "vgrad compile s", "vgrad run s",
          "vgrad us/point", "numpy points", "numpy ms/point", "speed-up",
          "max rel dq*", "max |dchi_1|", "max |dc*|", "excluded"]


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             "--grid=30x25")
  start = time.perf_counter()
  n, m = (int(p) for p in FLAGS.grid.split("x"))
  sw2 = jnp.linspace(*SIGMA_W2_RANGE, n)
  sb2 = jnp.linspace(*SIGMA_B2_RANGE, m)
  rng = np.random.default_rng(FLAGS.seed)
  flat = rng.choice(n * m, size=min(FLAGS.numpy_samples, n * m),
                    replace=False)
  picks = [divmod(int(k), m) for k in flat]
  rules = NumpyRules(meanfield.POINTS_1D, FLAGS.numpy_points_2d)
  command = "python -m benchmarks.meanfield_benchmark " + " ".join(
      sys.argv[1:])
  env = [
      f"date {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
      (f"machine: nproc {len(os.sched_getaffinity(0))} usable of "
       f"{os.cpu_count()}, CPU {provenance.cpu_model()}"),
      (f"python {platform.python_version()}, jax {jax.__version__}, numpy "
       f"{np.__version__}, devices {jax.devices()}, dtype "
       f"{jnp.result_type(float)}"),
      provenance.code_version(meanfield),
      provenance.load_line("at start"),
  ]
  print(command)
  for line in env:
    print(line, flush=True)

  body = []
  for name in FLAGS.activations:
    act = activations.get_activation(name)
    compile_s, run_s, grid = time_vgrad(act, sw2, sb2, FLAGS.repeats,
                                        FLAGS.chunk_size)
    per_point = run_s / (n * m)
    numpy_s, diffs, skipped = compare(name, grid, np.asarray(sw2),
                                      np.asarray(sb2), picks, rules)
    body.append([
        name, f"{n} x {m}", f"{compile_s:.2f}", f"{run_s:.3f}",
        f"{1e6 * per_point:.1f}", str(len(picks)), f"{1e3 * numpy_s:.1f}",
        f"{numpy_s / per_point:.0f}x", f"{diffs['q_star']:.1e}",
        f"{diffs['chi_1']:.1e}", f"{diffs['c_star']:.1e}", str(skipped)])
    print(f"  {name}: vgrad {1e6 * per_point:.1f} us/point, numpy "
          f"{1e3 * numpy_s:.1f} ms/point, speed-up "
          f"{numpy_s / per_point:.0f}x", flush=True)

  elapsed = time.perf_counter() - start
  notes = [
      (f"vgrad: solve_grid (1-D Gauss-Hermite {meanfield.POINTS_1D} nodes, "
       f"Mehler series {meanfield.HERMITE_TERMS} terms), run = median of "
       f"{FLAGS.repeats} compiled calls, compile = first call minus run; "
       f"chunk_size {FLAGS.chunk_size}."),
      (f"numpy: per-point loop on {len(picks)} random grid points (seed "
       f"{FLAGS.seed}), plain iteration (<= 1000 steps, tol 1e-10), "
       f"{meanfield.POINTS_1D}-node 1-D and {FLAGS.numpy_points_2d}^2-node "
       "2-D Gauss-Hermite rules; speed-up = numpy s/point / vgrad "
       "s/point."),
      ("Differences on the sampled points: q* relative, chi_1 and c* "
       "absolute; excluded: NumPy iteration unconverged after 1000 steps "
       "(q* = inf, slow approach near criticality) or |chi_1 - 1| < 1e-3."),
      provenance.load_line("at the end") + " (other processes slow both peers)",
      f"total time {elapsed:.0f} s",
  ]
  table = provenance.markdown_table(HEADER, body)
  print("\n" + table + "\n")
  for line in notes:
    print(line)

  if FLAGS.out:
    section = [f"## `{command.strip()}`", ""]
    section += [f"- {line}" for line in env]
    section += ["", table, ""]
    section += [f"- {line}" for line in notes]
    text = ("# Mean-field phase diagram: solve_grid vs a NumPy loop\n\n"
            "Generated by `benchmarks/meanfield_benchmark.py`.\n\n"
            + "\n".join(section) + "\n")
    rundir.write_text(FLAGS.out, text)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  cli.run(main)
