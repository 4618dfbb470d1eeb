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

To add a kind of run, add an entry to ``KINDS``: a ``vgrad.plots.gallery.Kind``
with a detector and a ``redraw(run_dir) -> {figure name: Figure}``.
"""

import os
import shlex
import sys

from absl import flags

from vgrad.plots import training_plots
from vgrad.plots import activation_table_plots
from vgrad.io import records
from vgrad.cli import app as cli
from vgrad.cli import reproduction
from vgrad.cli import training_run
from vgrad.studies import activation_table
from vgrad.plots import gallery
from vgrad.plots import spectrum_plots as plotting
from vgrad.studies import sweep
from vgrad.plots import sweep_plots
from vgrad.studies import training_report

FLAGS = flags.FLAGS


def define_flags():
  """--runs_dir and --out_dir. Defined only when run as a program, so the
  registry can be imported beside entry points that define --out_dir."""
  flags.DEFINE_string("runs_dir", "runs", "Directory to search for run "
                      "directories (searched recursively).")
  flags.DEFINE_string("out_dir", "figures", "Gallery directory for the "
                      "figures and README.md (created if missing).")


def _is_spectrum_run(run_dir: str) -> bool:
  return records.json_matches(
      run_dir, "results.json",
      lambda r: "schema" not in r and {"config", "layers",
                                       "input_output"} <= set(r))


def _redraw_spectrum(run_dir: str) -> dict:
  results = records.read_json(run_dir, "results.json")
  return {"spectrum": plotting.plot_jacobian_spectrum(results)}


def _is_training_run(run_dir: str) -> bool:
  return records.json_matches(
      run_dir, "metrics.json",
      lambda m: m.get("schema", training_run.SCHEMA) == training_run.SCHEMA
      and "arms" in m)


def _redraw_training(run_dir: str) -> dict:
  return training_plots.figures(records.read_json(run_dir, "metrics.json"))


def _reproduction_kind(schema: str, title: str, module: str) -> gallery.Kind:
  """A kind for the reproduction runs whose results carry ``schema``."""
  spec = reproduction.REPORTS[schema]

  def detect(run_dir: str) -> bool:
    return records.json_matches(
        run_dir, "results.json",
        lambda r: reproduction.schema_of(r) == schema)

  def redraw(run_dir: str) -> dict:
    return {spec.stem: spec.plot(records.read_json(run_dir,
                                                   "results.json"))}

  return gallery.Kind(
      title=f"{title} (`experiments.{module}`)", detect=detect,
      redraw=redraw,
      redraw_command="python -m experiments.replot --run_dir={run_dir}",
      make_command=f"python -m experiments.{module}")


def _is_sweep(run_dir: str) -> bool:
  return records.json_matches(run_dir, "sweep.json",
                              lambda r: r.get("schema") == sweep.SCHEMA)


def _redraw_sweep(run_dir: str) -> dict:
  record, rows = sweep.read_sweep(run_dir)
  if not rows:
    raise ValueError("no finished cell yet")
  return {"sweep": sweep_plots.plot_sweep(rows, record["settings"]["task"])}


# Kind name -> Kind. The name prefixes the figure files; the order is the
# order of the gallery's sections.
KINDS = {
    "jacobian_spectrum": gallery.Kind(
        title="Jacobian spectra (`experiments.jacobian_spectrum`)",
        detect=_is_spectrum_run, redraw=_redraw_spectrum,
        redraw_command=("python -m experiments.plot_jacobian_spectrum "
                        "--run_dir={run_dir}"),
        make_command=("python -m experiments.jacobian_spectrum --act=sigmoid "
                      "--depth=10")),
    "training": gallery.Kind(
        title="Training runs (`experiments.train`, `experiments.lecture`)",
        detect=_is_training_run, redraw=_redraw_training,
        redraw_command="python -m experiments.plot_training --run_dir="
                       "{run_dir}",
        make_command="python -m experiments.lecture --preset=xor_deep"),
    "phase_diagram": _reproduction_kind(
        "vgrad.phase_diagram/1", "Trainability and the mean-field phase "
        "diagram", "phase_diagram"),
    "dynamical_isometry": _reproduction_kind(
        "vgrad.dynamical_isometry/1", "Dynamical isometry",
        "dynamical_isometry"),
    "gradient_histograms": _reproduction_kind(
        "vgrad.gradient_histograms/1", "Activation and gradient histograms",
        "gradient_histograms"),
    # Before "sweep": each dataset directory of a table is a sweep too.
    "activation_table": gallery.Kind(
        title="Activation x initialisation tables "
              "(`experiments.activation_table`)",
        detect=activation_table_plots.is_run, redraw=activation_table_plots.redraw,
        redraw_command="python -m experiments.activation_table "
                       "--replot={run_dir}",
        make_command="python -m experiments.activation_table"),
    "sweep": gallery.Kind(
        title="Sweeps (`experiments.sweep`)", detect=_is_sweep,
        redraw=_redraw_sweep,
        redraw_command="python -m experiments.sweep --replot={run_dir}",
        make_command=("python -m experiments.sweep --task=spectrum "
                      "--depths=5,10,20,40")),
}


def gallery_command(runs_dir: str, out_dir: str) -> str:
  """The command that regenerates the gallery, as the page shows it."""
  return shlex.join(["python", "-m", "experiments.gallery",
                     f"--runs_dir={runs_dir}", f"--out_dir={out_dir}"])


def _warn(line: str):
  print(f"warning: {line}", file=sys.stderr, flush=True)


def generate(runs_dir: str, out_dir: str,
             kinds: dict[str, gallery.Kind] | None = None
             ) -> list[gallery.Entry]:
  """Finds the runs, redraws their figures and writes the page.

  Prints a line per figure written and a warning per run skipped; ends
  with a one-line error (:func:`cli.fail`) when ``runs_dir`` is not a
  directory, ``out_dir`` cannot be made, or no figure could be drawn.

  Returns:
    The figures written, in page order.
  """
  kinds = KINDS if kinds is None else kinds
  if not os.path.isdir(runs_dir):
    cli.fail(f"--runs_dir: {runs_dir!r} is not a directory; pass the folder "
             f"that holds the run directories (default runs)")
  runs, skipped = gallery.find_runs(runs_dir, kinds, skip=(out_dir,))
  for line in skipped:
    _warn(line)
  if not runs:
    cli.fail(f"no runs found under {runs_dir}; make some with: "
             f"{'; '.join(k.make_command for k in kinds.values())}", 1)
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    cli.fail(f"--out_dir: cannot create {out_dir}: {e}")

  def progress(entry: gallery.Entry):
    print(f"{os.path.join(out_dir, entry.stem)}.{{png,pdf}}", flush=True)

  entries, failed = gallery.draw(runs, kinds, out_dir, progress)
  for line in failed:
    _warn(line)
  if not entries:
    cli.fail(f"no figure could be drawn from the {len(runs)} runs under "
             f"{runs_dir} (see the warnings above)", 1)
  text = gallery.format_page(entries, kinds,
                             gallery_command(runs_dir, out_dir), runs_dir,
                             skipped + failed)
  page = gallery.write_page(out_dir, text)
  print(f"wrote {len(entries)} figures of "
        f"{len({e.run for e in entries})} runs and {page}"
        + (f"; skipped {len(skipped + failed)} runs" if skipped + failed
           else ""))
  return entries


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--runs_dir=runs")
  generate(FLAGS.runs_dir, FLAGS.out_dir)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
