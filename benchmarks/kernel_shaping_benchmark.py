r"""Benchmark: DKS/TAT transforms, vgrad against DeepMind's dks, one process.

For every activation both support and both methods, at ``--depth``:

  vgrad  ``vgrad.theory.kernel_shaping.transform_activation``: damped
         Newton (jacfwd) from dks's starting points, vmapped, piecewise
         quadrature exact at kinks, float64, one compiled program per
         family. "cold": the first call of a family (compilation
         included); "warm": the median of ``--repeats`` further calls.
  dks    ``dks.base.activation_transform`` as shipped: scipy's ``hybr``
         from the same starting points, a ``--order``-node Gauss-Legendre
         rule on [-10, 10] (dks's default 100 000), autograd derivatives.
         The rule's nodes are computed once (minutes; dks caches them in
         a file beside its code) and timed separately.

Reported: both times, the ratio dks / vgrad (warm), and the largest
relative difference of the parameters (each divided by max(1, |dks's|)),
dks's taken to vgrad's canonical representative (input_scale > 0; input
shift >= 0 for a point-symmetric phi), and the whole batches: every
(activation, depth) pair of ``--batch_depths`` for DKS and TAT in one
``transform_many`` call, and ``vgrad.critical_point`` for every base
activation at each of ``--sigma_b2s``.

Run from the repository root::

  python -m benchmarks.kernel_shaping_benchmark \
      --out=benchmarks/results_kernel_shaping_cpu.md

Nothing is written unless ``--out`` is given.
"""

import datetime
import math
import os
import statistics
import sys
import time

from absl import app as absl_app
from absl import flags

from benchmarks import provenance
from vgrad.io import rundir
from vgrad.nn import activations
from vgrad.theory import critical
from vgrad.theory import kernel_shaping as ks

FLAGS = flags.FLAGS
flags.DEFINE_integer("depth", 50, "Activation layers the transforms are "
                     "solved for.")
flags.DEFINE_integer("order", 100_000, "dks's Gauss-Legendre nodes.")
flags.DEFINE_integer("repeats", 3, "Warm calls timed per activation.")
flags.DEFINE_list("batch_depths", ["10", "20", "50", "100", "200", "500",
                                   "1000"], "Depths of the batch timing.")
flags.DEFINE_list("sigma_b2s", ["0", "0.01", "0.05", "0.1", "0.5"],
                  "Bias variances of the critical-point timing.")
flags.DEFINE_string("out", None, "Markdown file to write (none: print).")

CASES = ([("dks", a) for a in ("tanh", "softplus", "sigmoid", "erf", "elu",
                               "selu", "swish", "gelu", "softsign",
                               "leaky_relu", "relu")]
         + [("tat", a) for a in ("leaky_relu", "tanh", "softplus", "erf",
                                 "swish", "gelu", "softsign", "elu",
                                 "sigmoid")])
DKS_NAMES = {"gelu": "gelu_exact"}


def _dks_call(at, method, act, depth):
  name = DKS_NAMES.get(act, act)

  def subnet(x, r):
    for _ in range(depth):
      x = r(x)
    return x
  got = at._get_activations_params([name], method=method.upper(),
                                   subnet_max_func=subnet)[name]
  return {k: float(v) for k, v in got.items()}


def _timed(fn, repeats):
  times, out = [], None
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t)
  return out, statistics.median(times)


def main(argv):
  del argv
  from dks.base import activation_transform as at  # the bench/test extra
  order = FLAGS.order
  rule = at._estimate_gaussian_mean
  at._estimate_gaussian_mean = lambda fn, order_=None: rule(fn, order)
  t = time.perf_counter()
  at._precompute_or_load_roots(order)
  roots_s = time.perf_counter() - t
  lines = [
      "# DKS/TAT transforms: vgrad vs DeepMind's dks",
      "",
      f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
      f"{provenance.device_line()}; {os.cpu_count()} CPUs, "
      f"{provenance.cpu_model()}; depth {FLAGS.depth}; dks {order}-node "
      f"rule (nodes loaded or built in {roots_s:.1f} s); "
      + provenance.load_line("at start"),
      "",
      "| method | activation | vgrad cold s | vgrad warm s | dks s | "
      "dks / vgrad | max rel. diff |",
      "|---|---|---|---|---|---|---|"]
  seen_family = set()
  for method, act in CASES:
    base = activations.get_activation(act)
    try:
      t = time.perf_counter()
      mine = ks.transform_activation(act, method, depth=FLAGS.depth).params
      cold = time.perf_counter() - t
      _, warm = _timed(lambda: ks.transform_activation(
          act, method, depth=FLAGS.depth), FLAGS.repeats)
    except ValueError as e:
      mine, cold, warm = f"refused: {e}", math.nan, math.nan
    family = (method, "leaky" if act in ("leaky_relu", "relu") else act
              if act not in ks.DKS_FAMILY + ks.TAT_SMOOTH_FAMILY else "")
    cold_text = (f"{cold:.2f}" if family not in seen_family
                 else f"({cold:.2f})")
    seen_family.add(family)
    theirs, dks_s = _timed(lambda: _dks_call(at, method, act, FLAGS.depth),
                           1)
    if isinstance(mine, dict):
      theirs = ks.canonical(theirs, ks.point_symmetry(base))
      gap = max(abs(mine[k] - theirs[k]) / max(1.0, abs(theirs[k]))
                for k in theirs)
      gap_text = f"{gap:.1e}"
      if gap > 1e-4:
        gap_text += (f" (another root: dks {theirs}, vgrad {mine})")
    else:
      product = abs(theirs["input_scale"]) * theirs["output_scale"]
      gap_text = (f"vgrad {mine}; dks {theirs} (|input_scale| x "
                  f"output_scale = {product:.2f})")
    lines.append(f"| {method} | {act} | {cold_text} | {warm:.3f} | "
                 f"{dks_s:.2f} | {dks_s / warm:.0f} | {gap_text} |")
    print(lines[-1], flush=True)
  depths = [int(d) for d in FLAGS.batch_depths]
  for method, family in (("dks", ks.DKS_FAMILY),
                         ("tat", tuple(a for a in ks.TAT_SMOOTH_FAMILY
                                       if a != "sigmoid")   # refused
                          + ("leaky_relu",))):
    requests = [(a, method, d, {}) for a in family for d in depths
                if not (method == "tat" and a == "leaky_relu" and d < 20)]
    _, seconds = _timed(lambda: ks.transform_many(requests), 1)
    lines.append("")
    lines.append(f"Batch: {method.upper()} for {len(family)} activations x "
                 f"{len(depths)} depths ({len(requests)} transforms) in one "
                 f"transform_many call: {seconds:.2f} s.")
  names = sorted(set(activations.ACTIVATIONS) - set(activations.TRANSFORMED)
                 - {"maxout"})
  found = refused = 0
  t = time.perf_counter()
  for name in names:
    for sb2 in FLAGS.sigma_b2s:
      try:
        critical.critical_point(name, sigma_b2=float(sb2))
        found += 1
      except ValueError:
        refused += 1
  seconds = time.perf_counter() - t
  lines.append("")
  lines.append(f"Critical points: {len(names)} activations x "
               f"{len(FLAGS.sigma_b2s)} bias variances ({found} found, "
               f"{refused} refused with the reason) in {seconds:.2f} s, "
               "compilation included.")
  lines.append("")
  lines.append(provenance.load_line("at the end"))
  text = "\n".join(lines) + "\n"
  if FLAGS.out:
    rundir.write_text(FLAGS.out, text)
  print(text)


if __name__ == "__main__":
  sys.exit(absl_app.run(main))
