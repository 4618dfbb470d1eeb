r"""Jacobian spectra at criticality against free probability (Pennington et
al. 2017, "Resurrecting the sigmoid ... through dynamical isometry").

    python -m experiments.dynamical_isometry

For tanh (orthogonal and Gaussian weights on the critical line chi_1 = 1 at
several sigma_b^2, hence several q*) and ReLU (sigma_w^2 = 2), measures the
singular values of the input-output Jacobian of width-1000 networks at
depths 2, 8, 32 and 128 and overlays the free-probability density; the
report compares measured and predicted moments (m1 = chi^L, Var/m1^2 =
L (mu2/mu1^2 - 1 - s1)), the largest singular value against the predicted
edge, and the Kolmogorov-Smirnov distance. Expect orthogonal tanh with small
q* to stay isometric at every depth while Gaussian and ReLU nets spread.

Writes config.json, results.json, report.md and isometry.png/.pdf into a
fresh run directory (``--out_dir``); ``experiments.replot --run_dir=RUN``
redraws figure and report from results.json.
"""

import dataclasses
import sys
import time

from absl import flags
import jax

from vgrad.cli import app as cli
from vgrad.cli import reproduction
from vgrad.nn import activations
from vgrad.theory import free_probability
from vgrad.studies import isometry_study
from vgrad.io import rundir

FLAGS = flags.FLAGS
SCHEMA = "vgrad.dynamical_isometry/1"
_D = isometry_study.IsometryConfig()
ELEMENTWISE = sorted(set(activations.ACTIVATIONS) - {"maxout"})

flags.DEFINE_list("acts", ["tanh", "relu"], "Activations, comma-separated; "
                  f"from {', '.join(ELEMENTWISE)}.")
flags.DEFINE_list("weights", ["orthogonal", "gaussian"], "Weight ensembles: "
                  f"{', '.join(free_probability.WEIGHTS)}.")
flags.DEFINE_list("sigma_b2", ["0.001", "0.05", "0.5"], "Bias variances "
                  "(each gives a q* on the critical line). Activations "
                  "without a finite fixed point at sigma_b^2 > 0 on the "
                  "critical line (ReLU) use sigma_b^2 = 0.")
flags.DEFINE_list("depths", [str(d) for d in _D.depths], "Depths, >= 1.")
flags.DEFINE_integer("width", _D.width, "Units per layer, >= 2.")
flags.DEFINE_integer("seeds", _D.seeds, "Networks (one input each) per "
                     "cell, >= 1.")
flags.DEFINE_integer("seed", _D.seed, "First seed.")
flags.DEFINE_enum("dtype", _D.dtype, ["float32", "float64"],
                  "Precision of the networks and the probe.")
cli.define_run_dir_flags()


def _numbers(flag: str, kind=float) -> tuple:
  try:
    values = tuple(kind(v) for v in FLAGS[flag].value)
  except ValueError:
    cli.fail(f"--{flag} must be comma-separated numbers, got "
             f"{','.join(FLAGS[flag].value)}")
  if not values:
    cli.fail(f"--{flag} needs at least one value")
  return values


def _check_names(flag: str, valid) -> list[str]:
  bad = [v for v in FLAGS[flag].value if v not in valid]
  if bad or not FLAGS[flag].value:
    cli.fail(f"--{flag}: unknown {', '.join(bad) or '(empty)'}; valid: "
             f"{', '.join(valid)}")
  return FLAGS[flag].value


def _has_operating_point(act: str, sigma_b2: float) -> bool:
  try:
    isometry_study.operating_point(isometry_study.Arm(act, "gaussian",
                                                      sigma_b2))
    return True
  except ValueError:
    return False


def make_arms() -> tuple[tuple[isometry_study.Arm, ...], list[str]]:
  """Every (act, weights, sigma_b2) with a finite fixed point, and notes:
  acts with none at sigma_b2 > 0 on the critical line get sigma_b2 = 0."""
  acts = _check_names("acts", ELEMENTWISE)
  weights = _check_names("weights", free_probability.WEIGHTS)
  sigma_b2 = _numbers("sigma_b2")
  if min(sigma_b2) < 0:
    cli.fail("--sigma_b2 must be >= 0")
  arms, notes = [], []
  for act in acts:
    finite = [b2 for b2 in sigma_b2 if _has_operating_point(act, b2)]
    if not finite:
      if not _has_operating_point(act, 0.0):
        cli.fail(f"--acts: {act} has no critical point (chi_1 = 1 with a "
                 f"finite q*) at any of --sigma_b2 or at 0; use e.g. "
                 f"tanh, erf, relu")
      notes.append(f"note: {act} has no finite fixed point on the critical "
                   f"line at sigma_b^2 > 0; using sigma_b^2 = 0")
      finite = [0.0]
    arms += [isometry_study.Arm(act, w, b2) for w in weights for b2 in finite]
  return tuple(arms), notes


def make_config() -> isometry_study.IsometryConfig:
  """The validated config; sizes are checked before the arms' fixed points
  are solved for, and the arms' notes are printed only for a valid run."""
  depths = tuple(sorted(set(_numbers("depths", int))))
  sizes = dict(depths=depths, width=FLAGS.width, seeds=FLAGS.seeds,
               seed=FLAGS.seed, dtype=FLAGS.dtype)
  try:
    isometry_study.check_config(isometry_study.IsometryConfig(**sizes))
    arms, notes = make_arms()
    config = isometry_study.IsometryConfig(arms=arms, **sizes)
    isometry_study.check_config(config)
  except ValueError as e:
    cli.fail(f"--{e}")
  for note in notes:
    print(note, file=sys.stderr)
  return config


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}")
  config = make_config()
  out_dir = FLAGS.out_dir or rundir.default_run_dir(
      "runs/dynamical_isometry", f"N{config.width}")
  reproduction.check_out_dir(out_dir, FLAGS.overwrite)
  if config.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  start = time.perf_counter()

  def progress(label):
    print(f"done {label} ({time.perf_counter() - start:.0f} s)",
          file=sys.stderr, flush=True)

  arms = isometry_study.run_study(config, progress)
  results = {"schema": SCHEMA,
             "config": dataclasses.asdict(config) | {"out_dir": out_dir},
             "device": jax.devices()[0].platform,
             "seconds": time.perf_counter() - start, "arms": arms}
  print(isometry_study.format_report(results))
  reproduction.write_run(out_dir, results, FLAGS.overwrite)
  print(f"took {results['seconds']:.0f} s; wrote {out_dir}/"
        f"{reproduction.output_names(SCHEMA)}")


if __name__ == "__main__":
  cli.run(main)
