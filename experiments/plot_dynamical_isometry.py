"""Redraws a dynamical-isometry run's figure and report from results.json.

    python -m experiments.plot_dynamical_isometry --run_dir=runs/dynamical_isometry/RUN

Rewrites ``isometry.png``/``.pdf`` and ``report.md`` in ``--run_dir``.
"""

import os

from absl import flags

from experiments import cli
from vgrad import isometry_plots
from vgrad import isometry_study
from vgrad import plotting
from vgrad import rundir

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory holding results.json.")


def main(argv):
  del argv
  if FLAGS.run_dir is None:
    cli.fail("--run_dir is required: a dynamical_isometry run directory")
  results = cli.read_run_file(FLAGS.run_dir, "results.json")
  if results.get("schema") != "vgrad.dynamical_isometry/1":
    cli.fail(f"--run_dir: {FLAGS.run_dir} is not a dynamical_isometry run "
             f"(schema {results.get('schema')!r})")
  paths = plotting.save_figure(isometry_plots.plot_isometry(results),
                               os.path.join(FLAGS.run_dir, "isometry"))
  report = os.path.join(FLAGS.run_dir, "report.md")
  rundir.write_text(report, isometry_study.format_report(results))
  print(f"wrote {', '.join(paths + [report])}")


if __name__ == "__main__":
  cli.run(main)
