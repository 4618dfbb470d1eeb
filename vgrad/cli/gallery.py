"""The gallery: every kind of run ``experiments.gallery`` finds (``KINDS``),
and the redrawing of their figures into one folder with a README page.

To add a kind of run, add an entry to ``KINDS``: a ``vgrad.plots.gallery.Kind``
with a detector and a ``redraw(run_dir) -> {figure name: Figure}``.
"""

from collections.abc import Callable
import os
import shlex
import sys

from vgrad.cli import app as cli
from vgrad.cli import reproduction
from vgrad.io import records
from vgrad.io import rundir
from vgrad.io import schemas
from vgrad.plots import activation_table_plots
from vgrad.plots import gallery
from vgrad.plots import spectrum_plots as plotting
from vgrad.plots import sweep_plots
from vgrad.plots import training_plots
from vgrad.studies import sweep


def _has_kind(schema: str) -> Callable[[dict], bool]:
  """Whether a record is of ``schema``'s kind, in any version (or written
  before the schema field): a run of another version is found, and its
  redraw says which version it holds (:func:`schemas.check_schema`)."""
  kind = schemas.kind_of(schema)

  def matches(record: dict) -> bool:
    found = schemas.identify(record)
    try:
      return found is not None and schemas.kind_of(found) == kind
    except ValueError:   # a malformed schema string: not this kind
      return False

  return matches


def _read(run_dir: str, name: str, schema: str) -> dict:
  """``run_dir/name``, checked against ``schema`` (old files upgraded)."""
  return schemas.load_results(os.path.join(run_dir, name), schema)


def _is_spectrum_run(run_dir: str) -> bool:
  return records.json_matches(run_dir, "results.json",
                              _has_kind(schemas.JACOBIAN_SPECTRUM))


def _redraw_spectrum(run_dir: str) -> dict:
  results = _read(run_dir, "results.json", schemas.JACOBIAN_SPECTRUM)
  return {"spectrum": plotting.plot_jacobian_spectrum(results)}


def _is_training_run(run_dir: str) -> bool:
  return records.json_matches(run_dir, "metrics.json",
                              _has_kind(schemas.TRAIN))


def _redraw_training(run_dir: str) -> dict:
  return training_plots.figures(_read(run_dir, "metrics.json",
                                      schemas.TRAIN))


def _reproduction_kind(schema: str, title: str, module: str) -> gallery.Kind:
  """A kind for the reproduction runs whose results carry ``schema``."""
  spec = reproduction.REPORTS[schema]

  def detect(run_dir: str) -> bool:
    return records.json_matches(run_dir, "results.json", _has_kind(schema))

  def redraw(run_dir: str) -> dict:
    return {spec.stem: spec.plot(_read(run_dir, "results.json", schema))}

  return gallery.Kind(
      title=f"{title} (`experiments.{module}`)", detect=detect,
      redraw=redraw,
      redraw_command="python -m experiments.replot --run_dir={run_dir}",
      make_command=f"python -m experiments.{module}")


def _is_sweep(run_dir: str) -> bool:
  return records.json_matches(run_dir, "sweep.json", _has_kind(schemas.SWEEP))


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
        schemas.PHASE_DIAGRAM, "Trainability and the mean-field phase "
        "diagram", "phase_diagram"),
    "dynamical_isometry": _reproduction_kind(
        schemas.DYNAMICAL_ISOMETRY, "Dynamical isometry",
        "dynamical_isometry"),
    "gradient_histograms": _reproduction_kind(
        schemas.GRADIENT_HISTOGRAMS, "Activation and gradient histograms",
        "gradient_histograms"),
    # Before "sweep": each dataset directory of a table is a sweep too.
    "activation_table": gallery.Kind(
        title="Activation x initialisation tables "
              "(`experiments.activation_table`)",
        detect=activation_table_plots.is_run,
        redraw=activation_table_plots.redraw,
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
  # The output folder is checked before the runs are read and drawn.
  if os.path.isdir(out_dir):
    cli.check_output_folder("--out_dir", out_dir)
  else:
    with cli.out_dir_errors():
      rundir.check_writable(out_dir, overwrite=True)
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
