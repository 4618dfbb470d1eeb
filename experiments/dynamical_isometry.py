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
from vgrad.cli import dynamical_isometry as isometry_cli
from vgrad.cli import reproduction
from vgrad.io import rundir
from vgrad.io import schemas
from vgrad.studies import isometry_study
from vgrad.theory import free_probability

FLAGS = flags.FLAGS
SCHEMA = schemas.DYNAMICAL_ISOMETRY
_D = isometry_study.IsometryConfig()

flags.DEFINE_list("acts", ["tanh", "relu"], "Activations, comma-separated; "
                  f"from {', '.join(isometry_cli.ELEMENTWISE)}.")
flags.DEFINE_list("ensembles", ["orthogonal", "gaussian"], "Weight "
                  f"ensembles: {', '.join(free_probability.WEIGHTS)}.")
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


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}")
  config, notes = isometry_cli.make_config()
  out_dir = FLAGS.out_dir or rundir.default_run_dir(
      "runs/dynamical_isometry", f"N{config.width}")
  cli.check_out_dir(out_dir, FLAGS.overwrite)
  for note in notes:
    print(note, file=sys.stderr)
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
