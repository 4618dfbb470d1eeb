"""Redraws a phase-diagram run's figure and report from its results.json.

    python -m experiments.plot_phase_diagram --run_dir=runs/phase_diagram/RUN

Rewrites ``phase_diagram.png``/``.pdf`` and ``report.md`` in ``--run_dir``.
"""

import os

from absl import flags

from experiments import cli
from vgrad import phase_diagram
from vgrad import phase_plots
from vgrad import plotting
from vgrad import rundir

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory holding results.json.")


def main(argv):
  del argv
  if FLAGS.run_dir is None:
    cli.fail("--run_dir is required: a phase_diagram run directory")
  results = cli.read_run_file(FLAGS.run_dir, "results.json")
  if results.get("schema") != "vgrad.phase_diagram/1":
    cli.fail(f"--run_dir: {FLAGS.run_dir} is not a phase_diagram run "
             f"(schema {results.get('schema')!r})")
  paths = plotting.save_figure(phase_plots.plot_phase_diagram(results),
                               os.path.join(FLAGS.run_dir, "phase_diagram"))
  report = os.path.join(FLAGS.run_dir, "report.md")
  rundir.write_text(report, phase_diagram.format_report(results))
  print(f"wrote {', '.join(paths + [report])}")


if __name__ == "__main__":
  cli.run(main)
