"""Redraws a run's spectrum figure from its results.json alone.

    python -m experiments.plot_jacobian_spectrum \\
        --run_dir=runs/jacobian_spectrum/RUN

Writes ``spectrum.png`` and ``spectrum.pdf`` into ``--run_dir`` (or
``--out_stem``.png/.pdf). Both kinds of run: ``--method=dense`` results get
the singular-value spread and the input-output density, ``--method=qr``
ones the log10 spread (exact at the target layers, Lyapunov sums at every
layer) and the Lyapunov spectrum.
"""

import os

from absl import flags

from vgrad.cli import app as cli
from vgrad.io import schemas
from vgrad.plots import spectrum_plots as plotting
from vgrad.plots import style

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory holding results.json.")
flags.DEFINE_string("out_stem", None, "Path without extension for the "
                    "figure; default RUN_DIR/spectrum.")
flags.mark_flag_as_required("run_dir")


def main(argv):
  del argv
  path = os.path.join(FLAGS.run_dir, "results.json")
  results = cli.read_run_file(FLAGS.run_dir, "results.json")
  try:   # results.json written before the schema field are read too
    results = schemas.check_schema(results, schemas.JACOBIAN_SPECTRUM, path)
  except ValueError as e:
    cli.fail(f"--run_dir: {e}")
  stem = FLAGS.out_stem or os.path.join(FLAGS.run_dir, "spectrum")
  flag = "--out_stem" if FLAGS.out_stem else "--run_dir"
  cli.check_output_folder(flag, os.path.dirname(stem))
  try:
    fig = plotting.plot_jacobian_spectrum(results)
  except (KeyError, TypeError, IndexError) as e:
    cli.fail(f"--run_dir: {path} is not a jacobian_spectrum results file "
             f"(missing or malformed field {e})")
  try:
    paths = style.save_figure(fig, stem)
  except OSError as e:
    cli.fail(f"{flag}: cannot write the figure: {e}")
  print(f"wrote {', '.join(paths)}")


if __name__ == "__main__":
  cli.run(main)
