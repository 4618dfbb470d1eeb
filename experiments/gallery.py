r"""Every figure of the project, redrawn from saved results, in one folder.

    python -m experiments.gallery [--runs_dir=runs] [--out_dir=figures]

Walks ``--runs_dir`` for run directories of every kind in ``KINDS``
(Jacobian spectra, training runs of ``experiments.train`` and
``experiments.lecture`` with their ``mnist/`` sub-runs, and the three
reproductions), redraws each figure from the run's saved JSON alone (no
training, no JAX computation) in the shared style of ``vgrad.plots.style``, and
writes ``<out_dir>/<kind>-<run name>-<figure>.png`` and ``.pdf`` and a
gallery page ``<out_dir>/README.md`` that shows each figure beside the
command that made its results and the command that redraws it. Runs that
cannot be read are skipped with one warning line each. Figures of runs that
no longer exist are left in ``--out_dir``; delete the folder for a clean
gallery.

To add a kind of run, add an entry to ``vgrad.cli.gallery.KINDS``: a
``vgrad.plots.gallery.Kind`` with a detector and a
``redraw(run_dir) -> {figure name: Figure}``.
"""

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import gallery as gallery_cli

FLAGS = flags.FLAGS


def define_flags():
  """--runs_dir and --out_dir. Defined only when run as a program, so the
  registry can be imported beside entry points that define --out_dir."""
  flags.DEFINE_string("runs_dir", "runs", "Directory to search for run "
                      "directories (searched recursively).")
  flags.DEFINE_string("out_dir", "figures", "Gallery directory for the "
                      "figures and README.md (created if missing).")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--runs_dir=runs")
  gallery_cli.generate(FLAGS.runs_dir, FLAGS.out_dir)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
