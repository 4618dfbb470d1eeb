"""Redraws a reproduction run's figure and report from its results.json.

    python -m experiments.replot --run_dir=runs/phase_diagram/RUN

Works for runs of ``experiments.phase_diagram``, ``dynamical_isometry`` and
``gradient_histograms``; rewrites ``report.md`` and the figure (PNG, PDF).
"""

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import reproduction

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory holding results.json.")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}")
  if FLAGS.run_dir is None:
    cli.fail("--run_dir is required: a reproduction run directory")
  print(f"wrote {', '.join(reproduction.redraw(FLAGS.run_dir))}")


if __name__ == "__main__":
  cli.run(main)
