"""Redraws a training run's figures and tables from its metrics.json alone.

    python -m experiments.plot_training --run_dir=runs/lecture/RUN

Rewrites ``curves``, ``gradient_flow`` (PNG and PDF), ``table.md`` and
``table.csv`` in ``--run_dir``; works for runs of ``experiments.train`` and
``experiments.lecture``.
"""

import os

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import training_run
from vgrad.io import schemas
from vgrad.plots import training_plots

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory holding metrics.json.")


def main(argv):
  del argv
  if FLAGS.run_dir is None:
    cli.fail("--run_dir is required: a run directory holding metrics.json")
  path = os.path.join(FLAGS.run_dir, "metrics.json")
  metrics = cli.read_run_file(FLAGS.run_dir, "metrics.json")
  try:   # metrics.json written before the schema field are read too
    metrics = schemas.check_schema(metrics, schemas.TRAIN, path)
  except ValueError as e:
    cli.fail(f"--run_dir: {e}")
  cli.check_output_folder("--run_dir", FLAGS.run_dir)
  try:
    paths = training_plots.write_figures(metrics, FLAGS.run_dir)
    paths += training_run.write_tables(metrics, FLAGS.run_dir)
  except OSError as e:
    cli.fail(f"--run_dir: cannot write the figures and tables: {e}")
  except (KeyError, TypeError, IndexError, ValueError) as e:
    cli.fail(f"--run_dir: {path} is not a training metrics file (missing or "
             f"malformed field {e})")
  print(f"wrote {', '.join(paths)}")


if __name__ == "__main__":
  cli.run(main)
