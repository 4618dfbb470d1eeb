r"""Trainability against the mean-field phase diagram (Schoenholz et al. 2017).

    python -m experiments.phase_diagram

Trains tanh networks with sigma_b^2 = 0.05 over a grid of weight variances
sigma_w^2 (1 to 4) and depths on the 8x8 digits for a fixed number of SGD
steps, and draws the training accuracy as a heat map with the mean-field
prediction L = 6 xi_c(sigma_w^2) and the critical sigma_w^2 overlaid (their
Fig. 5), beside the mean-field chi_1 phase diagram over (sigma_w^2,
sigma_b^2). Expect the deepest trainable nets near the critical point
sigma_w^2 ~ 1.76 and the trainable region to follow 6 xi_c.

Writes config.json, results.json, report.md and phase_diagram.png/.pdf into
a fresh run directory (``--out_dir``, default
``runs/phase_diagram/<time>_<act>``); ``experiments.replot --run_dir=RUN``
redraws the figure and the report from results.json.
"""

import dataclasses
import sys
import time

from absl import flags
import jax

from vgrad.cli import app as cli
from vgrad.cli import phase_diagram as phase_cli
from vgrad.cli import reproduction
from vgrad.cli import training_run
from vgrad.io import rundir
from vgrad.io import schemas
from vgrad.studies import phase_diagram

FLAGS = flags.FLAGS
SCHEMA = schemas.PHASE_DIAGRAM
_D = phase_diagram.PhaseConfig()

flags.DEFINE_enum("act", _D.act, phase_cli.ELEMENTWISE,
                  "Hidden-layer activation.")
flags.DEFINE_float("sigma_b2", _D.sigma_b2, "Bias variance sigma_b^2 >= 0.")
flags.DEFINE_list("sigma_w2", [f"{v:g}" for v in _D.sigma_w2],
                  "Weight variances sigma_w^2 > 0 (comma-separated), or "
                  "lo:hi:n for n evenly spaced values.")
flags.DEFINE_list("depths", [str(d) for d in _D.depths],
                  "Depths (hidden layers) to train, integers >= 1.")
flags.DEFINE_integer("width", _D.width, "Units per hidden layer, >= 1.")
flags.DEFINE_enum("dataset", _D.dataset, ["digits", "mnist"],
                  "Classification data set.")
flags.DEFINE_enum("optimizer", _D.optimizer, ["sgd", "momentum", "adam"],
                  "Optax optimizer.")
flags.DEFINE_float("lr", _D.lr, "Learning rate > 0.")
flags.DEFINE_integer("steps", _D.steps, "Training steps per network, >= 1.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Minibatch size (0: full "
                     "batch).")
flags.DEFINE_integer("seeds", _D.seeds, "Networks per grid cell, >= 1.")
flags.DEFINE_integer("seed", _D.seed, "First seed.")
flags.DEFINE_integer("theory_points", _D.theory_points,
                     "Resolution of the mean-field theory, >= 2: points of "
                     "its curves and sigma_w^2 points of the chi_1 phase "
                     "plane (by 5/6 as many sigma_b^2 points).")
flags.DEFINE_float("threshold", _D.threshold, "Median training accuracy "
                   "that counts as trainable, in (0, 1].")
training_run.define_dataset_source_flags()
cli.define_run_dir_flags()


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}")
  config = phase_cli.make_config()
  out_dir = FLAGS.out_dir or rundir.default_run_dir("runs/phase_diagram",
                                                    config.act)
  cli.check_out_dir(out_dir, FLAGS.overwrite)
  dataset = training_run.load(config.dataset, config.batch_size)

  start = time.perf_counter()
  theory = phase_diagram.theory(config)
  print(f"mean field: critical point {phase_diagram.critical_text(theory)} "
        f"at sigma_b^2 = {config.sigma_b2:g} "
        f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)

  def progress(depth, seconds):
    print(f"trained depth {depth}: {len(config.sigma_w2)} x {config.seeds} "
          f"networks in {seconds:.1f} s", file=sys.stderr, flush=True)

  cells = phase_diagram.run_trainability(config, dataset, progress)
  xi_c = phase_diagram.xi_c_at(config)
  results = {
      "schema": SCHEMA,
      "config": dataclasses.asdict(config) | {"out_dir": out_dir},
      "device": jax.devices()[0].platform,
      "seconds": time.perf_counter() - start,
      "theory": theory, "cells": cells,
      "summary": phase_diagram.summarize(config, cells, xi_c)}
  print(phase_diagram.format_report(results))
  reproduction.write_run(out_dir, results, FLAGS.overwrite)
  print(f"took {results['seconds']:.0f} s; wrote {out_dir}/"
        f"{reproduction.output_names(SCHEMA)}")


if __name__ == "__main__":
  cli.run(main)
