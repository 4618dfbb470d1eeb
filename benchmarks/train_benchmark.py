r"""Benchmark: training steps per second, S seeds vmapped vs a loop over seeds.

For each workload (a ``TrainConfig`` preset) and each seed count S, times,
side by side in one process, from identical initial states and keys
(``training_study.seed_keys``):

  (a)  vmapped, one call per step: ``train.make_train_step(step_fn)`` on the
       S-seed state (``train.init_states``), one jitted program per step for
       all seeds;
  (a') vmapped, one call per chunk: ``train.make_train_chunk(step_fn, K)``,
       K steps of all seeds scanned in one call (what the experiments use);
  (b)  the loop: each seed has its own single-seed state
       (``train.init_state``) and one shared ``jax.jit(step_fn)`` is called
       once per seed per step, seed after seed, as one would train seeds one
       after another without vmap;
  (b') the loop with the single-seed chunk: ``jit`` of a ``lax.scan`` of
       ``step_fn`` over K steps, one call per seed per K steps.

Before timing, vmap and the loop train ``--check_steps`` steps (10; the
chunked pair in one chunk of that size) from the initial states and the
parameters of every seed are checked to agree (``np.testing.assert_allclose``
with rtol 1e-5, atol 1e-6): the speed comparison only means something if
both compute the same training. The check is short on purpose: a batched
and an unbatched GEMM sum in different orders, and ReLU training amplifies
such last-bit differences once a unit's pre-activation changes sign (one
digits_deep seed of 32 drifted from 1e-7 to 1.6e-3 between steps 30 and
100; the other 31 stayed within 1.2e-7).

Rates are *seed-steps per second* (S x steps / time); the ratio is
vmapped / loop, so > 1 means vmap is faster. GFLOP/s use the analytic GEMM
count of one seed-step (forward, weight gradients and input gradients of
every layer but the first: ``2 B (2 sum d_i d_{i+1} + sum_{i>0} d_i
d_{i+1})``). A second table times the hidden layer's GEMM alone, chained in
a ``lax.scan``, unbatched and batched over S seeds (as vmap lowers it), and a
large square matmul for the machine's peak.

Target (issue): on a 2-core CPU, 8 seeds vmapped >= 4x the loop's rate.

Run from the repository root::

  python -m benchmarks.train_benchmark                      # full run
  python -m benchmarks.train_benchmark --threads=1          # one pinned core
  python -m benchmarks.train_benchmark --out=benchmarks/results_train_cpu.md
  python -m benchmarks.train_benchmark --workloads=xor_deep --seeds=1,8 \
      --repeats=3 --steps=50 --chunk_steps=200              # quick run

Each pair of peers gets one untimed warm-up run each, then ``--repeats``
alternating runs (vmapped, loop, vmapped, ...) of ``--steps`` steps
(per-step calls) or ``--chunk_steps`` steps (chunks); medians are
reported. A pair whose ``--repeats`` runs would take over
``--max_seconds_per_method`` runs fewer steps (a multiple of K for chunks,
the same count for both peers; column "steps/run"). Compilation is
excluded from the rates and reported separately (first call minus the same
call once compiled). ``--threads=N`` pins the process to N cores and sets
the OpenMP/OpenBLAS/MKL thread counts (N = 1 also turns off XLA's
multi-threaded Eigen) before jax is imported; 0 (the default) leaves every
library's default.
"""

import datetime
import os
import platform
import statistics
import sys
import time


def _threads_from_argv(argv) -> int:
  """The value of ``--threads=N`` or ``--threads N`` in ``argv``, else 0."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith("--threads="):
      value = arg.split("=", 1)[1]
    elif arg == "--threads" and i + 1 < len(argv):
      value = argv[i + 1]
  try:
    return max(0, int(value)) if value is not None else 0
  except ValueError:
    return 0  # absl reports the bad value


def _limit_threads(argv) -> int:
  """Applies ``--threads N`` (N >= 1) before numpy and jax start.

  Pins the process to N cores and sets the OpenMP/OpenBLAS/MKL thread
  counts; with N = 1 XLA's Eigen thread pool is also turned off
  (``--xla_cpu_multi_thread_eigen=false``). 0 leaves the defaults.
  """
  threads = _threads_from_argv(argv)
  if threads > 0:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
      os.environ[var] = str(threads)
    if threads == 1:
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                 + " --xla_cpu_multi_thread_eigen=false")
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
  return threads


if __name__ == "__main__":
  _limit_threads(sys.argv[1:])

# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import provenance
from vgrad.cli import app as cli
from vgrad.io import rundir
from vgrad.nn import models
from vgrad.studies import training_study
from vgrad.training import data as data_lib
from vgrad.training import train

# pylint: enable=g-import-not-at-top,wrong-import-position

WORKLOADS = {
    "xor_deep": training_study.TrainConfig(
        dataset="xor", act="sigmoid", init="uniform", depth=10, width=5,
        optimizer="sgd", lr=0.1, batch_size=0),
    "digits_deep": training_study.TrainConfig(
        dataset="digits", act="relu", init="he_normal", depth=4, width=128,
        optimizer="sgd", lr=0.05, batch_size=64),
}
RTOL, ATOL = 1e-5, 1e-6
TARGET_SEEDS, TARGET_RATIO = 8, 4.0
WARMUP_STEPS = 20  # per-step warm-up run (a chunk warms up with one chunk)

FLAGS = flags.FLAGS
flags.DEFINE_list("workloads", list(WORKLOADS),
                  f"Comma-separated presets from {', '.join(WORKLOADS)}.")
flags.DEFINE_list("seeds", ["1", "8", "32"],
                  "Comma-separated seed counts S, each >= 1.")
flags.DEFINE_integer("repeats", 5, "Timed runs per method (median), >= 1.")
flags.DEFINE_integer("steps", 200, "Steps per timed run with one call per "
                     "step, >= 1 (fewer if --max_seconds_per_method says).")
flags.DEFINE_integer("chunk_steps", 1000, "Steps per timed run with chunks, "
                     "a multiple of --chunk_size (fewer if "
                     "--max_seconds_per_method says).")
flags.DEFINE_integer("chunk_size", 100, "Steps K per scanned chunk, >= 1.")
flags.DEFINE_integer("check_steps", 10, "Steps trained by vmap and by the "
                     "loop (one chunk of this size for the chunked pair) "
                     "before their parameters are compared, >= 1.")
flags.DEFINE_float("max_seconds_per_method", 5.0, "Shorten the runs of a "
                   "pair of peers whose --repeats runs would take longer.")
flags.DEFINE_integer("threads", 0, "0: library defaults (all cores); N: pin "
                     "the process to N cores and use N threads (read before "
                     "jax is imported).")
flags.DEFINE_bool("gemm_table", True, "Also time each workload's hidden-"
                  "layer GEMM alone and a 1024^2 matmul.")
flags.DEFINE_string("out", None, "Write the results as Markdown to this "
                    "file (atomically).")
flags.DEFINE_bool("append", False, "With --out: keep the file's content and "
                  "add this run as a new section.")

flags.register_validator(
    "workloads", lambda v: bool(v) and all(w in WORKLOADS for w in v),
    message=f"--workloads must list presets from {', '.join(WORKLOADS)}")
flags.register_validator(
    "seeds", lambda v: bool(v) and all(s.isdigit() and int(s) >= 1
                                       for s in v),
    message="--seeds must list integers >= 1")
for _name in ("repeats", "steps", "chunk_size", "chunk_steps",
              "check_steps"):
  flags.register_validator(_name, lambda v: v >= 1,
                           message=f"--{_name} must be an integer >= 1")
flags.register_validator("threads", lambda v: v >= 0,
                         message="--threads must be an integer >= 0")
flags.register_validator("max_seconds_per_method", lambda v: v > 0,
                         message="--max_seconds_per_method must be > 0")
flags.register_multi_flags_validator(
    ["chunk_steps", "chunk_size"],
    lambda d: d["chunk_steps"] % d["chunk_size"] == 0,
    message="--chunk_steps must be a multiple of --chunk_size")


# --------------------------------------------------------------------------
# The four ways to train S seeds. Each keeps its states and its global step
# (all start at step 0 from the same initial states, so they run the same
# minibatches) and ``advance(n)`` trains n more steps and blocks.

class Runner:
  """Trains states with ``fn(state, key, step, x, y) -> (state, ...)``.

  ``states``/``keys`` are one S-seed state and its (S,) keys when
  ``vmapped`` (peers (a), (a')), else S one-seed states and keys trained one
  after another (peers (b), (b')); each call of ``fn`` advances ``granule``
  steps. Records the global step and the first call's wall time
  (compilation included).
  """

  def __init__(self, fn, granule: int, states, keys, x, y, vmapped: bool):
    self.fn, self.granule, self.x, self.y = fn, granule, x, y
    self.vmapped = vmapped
    self.states = [states] if vmapped else list(states)
    self.keys = [keys] if vmapped else list(keys)
    self.step = 0
    self.first_call_s = None
    self.first_call_steps = 0

  def advance(self, n: int) -> None:
    if n % self.granule:
      raise ValueError(f"{n} steps is not a multiple of {self.granule}")
    start = time.perf_counter()
    for g, (state, key) in enumerate(zip(self.states, self.keys)):
      for i in range(self.step, self.step + n, self.granule):
        state = self.fn(state, key, i, self.x, self.y)[0]
      self.states[g] = state
    jax.block_until_ready(self.states)
    if self.first_call_s is None:
      self.first_call_s = time.perf_counter() - start
      self.first_call_steps = n
    self.step += n

  def params(self):
    """Parameters as host arrays with a leading seed axis."""
    host = jax.device_get([st.params for st in self.states])
    if self.vmapped:
      return host[0]
    return jax.tree_util.tree_map(lambda *v: np.stack(v), *host)


# --------------------------------------------------------------------------
# Agreement and timing.

def max_difference(p, q) -> float:
  """Largest absolute difference over all parameters of all seeds."""
  diffs = jax.tree_util.tree_map(
      lambda a, b: float(np.max(np.abs(a - b))) if a.size else 0.0, p, q)
  return max(jax.tree_util.tree_leaves(diffs))


def check_agreement(vmapped: Runner, loop: Runner, label: str) -> float:
  """Asserts equal parameters for every seed; returns the max difference."""
  p, q = vmapped.params(), loop.params()
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(p)[0],
                          jax.tree_util.tree_leaves(q)):
    np.testing.assert_allclose(
        a, b, rtol=RTOL, atol=ATOL,
        err_msg=f"{label}: vmapped and loop parameters differ at "
        f"{jax.tree_util.keystr(path)} after {vmapped.step} steps")
  return max_difference(p, q)


def time_pair(vmapped: Runner, loop: Runner, max_steps: int,
              repeats: int, budget_s: float) -> dict:
  """Median seconds per step of two peers, timed on the same step count.

  One untimed warm-up run each (also an estimate of the time per step);
  the step count is cut, in multiples of the call granularity, so that the
  slower peer's ``repeats`` runs take about ``budget_s``. The peers' runs
  alternate (v, l, v, l, ...): both are JAX on the same thread pool, and
  on a shared machine alternation exposes both to the same background
  load, which would otherwise skew their ratio.
  """
  granule = vmapped.granule
  warmup = granule if granule > 1 else min(max_steps, WARMUP_STEPS)
  per_step = 0.0
  for runner in (vmapped, loop):
    start = time.perf_counter()
    runner.advance(warmup)
    per_step = max(per_step, (time.perf_counter() - start) / warmup)
  fits = int(budget_s / (repeats * per_step) / granule) * granule
  steps = max(granule, min(max_steps, fits))
  times = {"vmapped": [], "loop": []}
  for _ in range(repeats):
    for name, runner in (("vmapped", vmapped), ("loop", loop)):
      start = time.perf_counter()
      runner.advance(steps)
      times[name].append(time.perf_counter() - start)
  result = {name: statistics.median(t) / steps for name, t in times.items()}
  result["steps"] = steps  # seconds per step of all S seeds above
  return result


def compile_seconds(runner: Runner, per_step_s: float) -> float:
  """First call minus the same steps once compiled (>= 0)."""
  return max(0.0, runner.first_call_s - runner.first_call_steps * per_step_s)


# --------------------------------------------------------------------------
# FLOPs and the layer GEMM alone.

def gemm_flops_per_step(params, batch: int) -> float:
  """FLOPs of the matrix products of one seed's training step.

  Forward ``2 B d_in d_out`` per layer, the same for the weight gradient,
  and the same again for the input gradient of every layer but the first.
  """
  p = params["params"]
  total = 0.0
  for name, layer in p.items():
    if "kernel" not in layer:
      continue
    d_in, d_out = layer["kernel"].shape[-2:]
    per = 2.0 * batch * d_in * d_out
    total += 2 * per + (0 if name == "layers_0" else per)
  return total


def xla_flops(fn, *args) -> float | None:
  """XLA's flop count of ``fn(*args)`` (unoptimized HLO), if available."""
  try:
    cost = fn.lower(*args).cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    return float(cost["flops"])
  except (AttributeError, KeyError, TypeError, ValueError,
          NotImplementedError):
    return None


def gemm_rate(m: int, n: int, seeds: int, repeats: int = 3,
              target_flops: float = 2e8) -> tuple[float, float]:
  """(microseconds per call, GFLOP/s) of ``(m, n) @ (n, n)`` in a scan.

  With ``seeds`` > 1 the product is vmapped over a leading seed axis of both
  operands (a batched ``dot_general``, as vmap lowers each layer); the
  product is chained through a ``lax.scan`` so dispatch is not timed, with
  orthogonal factors so the values neither vanish nor overflow.
  """
  flops = 2.0 * seeds * m * n * n
  unroll = 10
  length = int(min(100, max(1, target_flops / (flops * unroll))))
  keys = jax.random.split(jax.random.key(0), 2)
  q, _ = jnp.linalg.qr(jax.random.normal(keys[0], (seeds, n, n)))
  c = jax.random.normal(keys[1], (seeds, m, n))
  def dot(a, b):
    return jnp.dot(a, b, precision=models.PRECISION)
  if seeds > 1:
    dot = jax.vmap(dot)
  else:
    q, c = q[0], c[0]

  @jax.jit
  def chain(c, q):
    def body(c, _):
      for _ in range(unroll):
        c = dot(c, q)
      return c, None
    return jax.lax.scan(body, c, None, length=length)[0]

  jax.block_until_ready(chain(c, q))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(chain(c, q))
    times.append(time.perf_counter() - start)
  per_call = statistics.median(times) / (unroll * length)
  return per_call * 1e6, flops / per_call / 1e9


# --------------------------------------------------------------------------
# One workload.

def run_workload(name: str, seed_counts, args) -> tuple[list, str, list]:
  """Benchmarks one preset for every S; returns (rows, info, gemm rows)."""
  config = WORKLOADS[name]
  dataset = data_lib.load_dataset(config.dataset)
  model, optimizer, loss = training_study.build(config, dataset)
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  step_fn = train.make_step_fn(model, optimizer, loss, dataset.task,
                               config.batch_size)
  batch = (config.batch_size if 0 < config.batch_size < x.shape[0]
           else x.shape[0])
  k, c = args.chunk_size, args.check_steps
  # The agreement check's chunks: c steps (no extra program if c = K).
  check_chunk = train.make_single_seed_chunk(step_fn, c) if c != k else None

  # The single-seed programs (shared by every S): compile once, here.
  loop_step = jax.jit(step_fn)
  loop_chunk = train.make_single_seed_chunk(step_fn, k)
  init_keys, train_keys = training_study.seed_keys(
      dataclasses.replace(config, seeds=1))
  state = train.init_state(model, optimizer, init_keys[0], x)
  loop_compile = {}
  for label, fn in (("step", loop_step), ("chunk", loop_chunk)):
    calls = []
    for _ in range(2):
      start = time.perf_counter()
      jax.block_until_ready(fn(state, train_keys[0], 0, x, y))
      calls.append(time.perf_counter() - start)
    loop_compile[label] = max(0.0, calls[0] - calls[1])

  flops = gemm_flops_per_step(state.params, batch)
  xla = xla_flops(loop_step, state, train_keys[0], 0, x, y)
  info = (f"{name}: {config.dataset} (n_train {x.shape[0]}, batch {batch}),"
          f" {config.act}, depth {config.depth}, width {config.width}, "
          f"{config.optimizer} lr {config.lr}; GEMM FLOPs per seed-step "
          f"{flops / 1e6:.4g} M (XLA cost analysis of the whole step: "
          + (f"{xla / 1e6:.4g} M" if xla is not None else "n/a") + ")")
  print(f"\n== {info}", flush=True)

  rows = []
  for s_count in seed_counts:
    init_keys, train_keys = training_study.seed_keys(
        dataclasses.replace(config, seeds=s_count))
    states = train.init_states(model, optimizer, init_keys, x)
    singles = [train.init_state(model, optimizer, init_keys[s], x)
               for s in range(s_count)]
    seed_keys = [train_keys[s] for s in range(s_count)]
    runners = {
        "step": (Runner(train.make_train_step(step_fn), 1, states,
                        train_keys, x, y, True),
                 Runner(loop_step, 1, singles, seed_keys, x, y, False)),
        "chunk": (Runner(train.make_train_chunk(step_fn, k), k, states,
                         train_keys, x, y, True),
                  Runner(loop_chunk, k, singles, seed_keys, x, y, False)),
    }
    for granularity, (vmapped, loop) in runners.items():
      label = f"{name} S={s_count} {granularity}"
      checked = (vmapped, loop)
      if granularity == "chunk" and check_chunk is not None:
        checked = (Runner(train.make_train_chunk(step_fn, c), c, states,
                          train_keys, x, y, True),
                   Runner(check_chunk, c, singles, seed_keys, x, y, False))
      for runner in checked:
        runner.advance(runner.granule)  # the first call compiles
        if c > runner.granule:
          runner.advance(c - runner.granule)
      diff = check_agreement(*checked, label)
      if vmapped.first_call_s is None:
        vmapped.advance(vmapped.granule)  # compile the timed program
      timing = time_pair(vmapped, loop,
                         args.chunk_steps if granularity == "chunk"
                         else args.steps, args.repeats,
                         args.max_seconds_per_method)
      row = {
          "workload": name, "S": s_count, "granularity": granularity,
          "steps": timing["steps"], "diff": diff,
          "vmapped": s_count / timing["vmapped"],
          "loop": s_count / timing["loop"],
          "compile_vmapped": compile_seconds(vmapped, timing["vmapped"]),
          "compile_loop": loop_compile[granularity],
      }
      row["ratio"] = row["vmapped"] / row["loop"]
      row["gflops_vmapped"] = row["vmapped"] * flops / 1e9
      row["gflops_loop"] = row["loop"] * flops / 1e9
      print(f"  S={s_count:<3d} {granularity:<5s} {timing['steps']:5d} "
            f"steps/run: vmapped {row['vmapped']:10.1f}, loop "
            f"{row['loop']:10.1f} seed-steps/s, ratio {row['ratio']:5.2f}; "
            f"max abs dparam {diff:.1e}", flush=True)
      rows.append(row)

  gemm_rows = []
  if args.gemm_table:
    for s_count in seed_counts:
      us, gflops = gemm_rate(batch, config.width, s_count)
      gemm_rows.append({"workload": name, "S": s_count,
                        "shape": f"({batch}x{config.width}) @ "
                        f"({config.width}x{config.width})",
                        "us": us, "gflops": gflops})
  return rows, info, gemm_rows


# --------------------------------------------------------------------------
# Tables.

def fmt_rate(v: float) -> str:
  return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def fmt_gflops(v: float) -> str:
  return f"{v:.3g}" if v < 10 else f"{v:.0f}"


GRANULARITY = {"step": "per step", "chunk": "chunk of {k}"}
HEADER = ["workload", "S", "calls", "steps/run", "vmapped seed-steps/s",
          "loop seed-steps/s", "vmapped/loop", "vmapped GFLOP/s",
          "loop GFLOP/s", "compile s (vmapped, loop)", "max abs dparam"]
GEMM_HEADER = ["workload", "S", "GEMM (per seed)", "us per call",
               "GFLOP/s"]


def table_rows(rows, k: int):
  return [[r["workload"], str(r["S"]),
           GRANULARITY[r["granularity"]].format(k=k), str(r["steps"]),
           fmt_rate(r["vmapped"]), fmt_rate(r["loop"]), f"{r['ratio']:.2f}",
           fmt_gflops(r["gflops_vmapped"]), fmt_gflops(r["gflops_loop"]),
           f"{r['compile_vmapped']:.2f}, {r['compile_loop']:.2f}",
           f"{r['diff']:.1e}"] for r in rows]


def gemm_table_rows(rows):
  return [[r["workload"], str(r["S"]), r["shape"], f"{r['us']:.3g}",
           fmt_gflops(r["gflops"])] for r in rows]


def plain_table(header, body) -> str:
  widths = [max(len(h), *(len(r[i]) for r in body))
            for i, h in enumerate(header)]
  lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
  lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
  return "\n".join(lines)


def target_lines(rows, k: int) -> list[str]:
  """Whether S = 8 vmapped reaches 4x the loop, per workload and calls."""
  out = []
  for r in rows:
    if r["S"] != TARGET_SEEDS:
      continue
    met = r["ratio"] >= TARGET_RATIO
    out.append(f"{r['workload']}, {GRANULARITY[r['granularity']].format(k=k)}"
               f": {r['ratio']:.2f}x -> target {TARGET_RATIO:g}x "
               + ("MET" if met else "NOT met"))
  return out


# --------------------------------------------------------------------------
# Environment and output.

def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             "--seeds=1,8")
  start = time.perf_counter()
  args = FLAGS
  seed_counts = [int(s) for s in args.seeds]
  command = "python -m benchmarks.train_benchmark " + " ".join(sys.argv[1:])
  env = [
      f"date {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
      (f"machine: nproc {len(os.sched_getaffinity(0))} usable of "
       f"{os.cpu_count()}, CPU {provenance.cpu_model()}"),
      (f"python {platform.python_version()}, jax {jax.__version__}, "
       f"devices {jax.devices()}"),
      provenance.code_version(train),
      f"--threads={args.threads} ("
      + ("library defaults" if args.threads == 0 else
         "pinned; OMP/OPENBLAS/MKL_NUM_THREADS set"
         + (", XLA multi-threaded Eigen off" if args.threads == 1 else ""))
      + f"); XLA_FLAGS={os.environ.get('XLA_FLAGS', '').strip() or 'unset'}",
  ]
  env.append(provenance.load_line("at start"))
  print(command)
  for line in env:
    print(line)

  rows, infos, gemm_rows = [], [], []
  for name in args.workloads:
    r, info, g = run_workload(name, seed_counts, args)
    rows += r
    infos.append(info)
    gemm_rows += g
  peak = None
  if args.gemm_table:
    _, peak = gemm_rate(1024, 1024, 1)

  k = args.chunk_size
  body = table_rows(rows, k)
  gemm_body = gemm_table_rows(gemm_rows)
  elapsed = time.perf_counter() - start
  notes = [
      "Rates are seed-steps per second (S x steps / time), medians of "
      f"{args.repeats} runs after a warm-up run; vmapped/loop > 1 means vmap"
      " is faster.",
      "calls: one jitted call per step of all S seeds (vmapped: "
      "make_train_step; loop: jit(step_fn) per seed) or one call per chunk "
      f"of K = {k} scanned steps (vmapped: make_train_chunk; loop: jit of "
      "lax.scan of step_fn, per seed).",
      "GFLOP/s = seed-steps/s x the GEMM FLOPs of one seed-step (see the "
      "workload lines). compile s: first call minus the same call compiled; "
      "the loop's single-seed programs are shared by every S.",
      f"max abs dparam: largest parameter difference, vmapped vs loop, after "
      f"{args.check_steps} steps from the same initial states (asserted "
      f"within rtol {RTOL:g}, atol {ATOL:g}).",
  ]
  if peak is not None:
    notes.append("GEMM table: the hidden layer's product alone, chained in "
                 "a lax.scan (no dispatch), batched over S seeds as vmap "
                 f"lowers it; 1024x1024 @ 1024x1024 matmul: {peak:.0f} "
                 "GFLOP/s.")
  notes.append(provenance.load_line("at the end") + " (other processes on the "
               "machine slow both peers: their runs alternate)")
  targets = target_lines(rows, k)

  print("\n" + plain_table(HEADER, body))
  if gemm_body:
    print("\n" + plain_table(GEMM_HEADER, gemm_body))
  for line in infos + notes:
    print(line)
  for line in targets:
    print(line)
  print(f"total time {elapsed:.0f} s")

  if args.out:
    section = [f"## `{command.strip()}`", ""]
    section += [f"- {line}" for line in env + infos]
    section += ["", provenance.markdown_table(HEADER, body), ""]
    if gemm_body:
      section += [provenance.markdown_table(GEMM_HEADER, gemm_body), ""]
    section += [f"- {line}" for line in notes]
    section += [f"- Target ({TARGET_SEEDS} seeds vmapped >= "
                f"{TARGET_RATIO:g}x the loop): " + "; ".join(targets)
                if targets else f"- Target: no S = {TARGET_SEEDS} row."]
    section += [f"- total benchmark time {elapsed:.0f} s", ""]
    previous = ""
    if args.append and os.path.exists(args.out):
      with open(args.out) as f:
        previous = f.read().rstrip("\n") + "\n\n"
    if not previous:
      previous = ("# Training throughput: seeds vmapped vs a loop over seeds"
                  " (CPU)\n\nGenerated by `benchmarks/train_benchmark.py`."
                  "\n\n")
    rundir.write_text(args.out, previous + "\n".join(section))
    print(f"wrote {args.out}")


if __name__ == "__main__":
  cli.run(main)
