"""What the paper-reproduction entry points share.

Each reproduction (``experiments.phase_diagram``, ``dynamical_isometry``,
``gradient_histograms``) writes a run directory holding ``config.json``,
``results.json`` (with a ``schema`` field and the ``command`` that made
it), ``report.md`` and one figure as PNG and PDF. ``REPORTS`` maps each
schema to the functions that draw the figure and the report from
results.json alone, so ``experiments.replot`` can redraw any of them.
"""

from collections.abc import Callable
import dataclasses
import os

from matplotlib.figure import Figure

from vgrad.cli import app as cli
from vgrad.io import rundir
from vgrad.io import schemas
from vgrad.plots import coord_plots
from vgrad.plots import histogram_plots
from vgrad.plots import isometry_plots
from vgrad.plots import phase_plots
from vgrad.plots import signal_plots
from vgrad.plots import style
from vgrad.plots import trainability_plots
from vgrad.studies import coord_check
from vgrad.studies import gradient_histograms
from vgrad.studies import isometry_study
from vgrad.studies import phase_diagram
from vgrad.studies import signal_propagation
from vgrad.studies import trainability_report


@dataclasses.dataclass(frozen=True)
class Report:
  """How a reproduction's figure (``stem``.png/.pdf) and report.md are drawn
  from its results dictionary."""
  stem: str
  plot: Callable[[dict], Figure]
  report: Callable[[dict], str]


REPORTS = {
    schemas.PHASE_DIAGRAM: Report(
        "phase_diagram", phase_plots.plot_phase_diagram,
        phase_diagram.format_report),
    schemas.DYNAMICAL_ISOMETRY: Report(
        "isometry", isometry_plots.plot_isometry,
        isometry_study.format_report),
    schemas.GRADIENT_HISTOGRAMS: Report(
        "histograms", histogram_plots.plot_histograms,
        gradient_histograms.format_report),
    schemas.COORD_CHECK: Report(
        "coord_check", coord_plots.plot_coord_check,
        coord_check.format_report),
    schemas.SIGNAL_PROPAGATION: Report(
        "signal_propagation", signal_plots.plot_signal_propagation,
        signal_propagation.format_report),
    schemas.DEEP_TRAINABILITY: Report(
        "deep_trainability", trainability_plots.plot_trainability,
        trainability_report.format_report),
}


def schema_of(results: dict) -> str | None:
  """The reproduction schema of a results dictionary, or None.

  Gradient-histogram runs made before results carried a ``schema`` field
  are recognised by their ``runs`` and ``convention`` sections
  (:func:`vgrad.io.schemas.identify`).
  """
  return schemas.identify(results)


def output_names(schema: str) -> str:
  """The files of a run, for the closing message."""
  stem = REPORTS[schema].stem
  return f"{{config.json,results.json,report.md,{stem}.png,{stem}.pdf}}"


def write_outputs(directory: str, results: dict) -> list[str]:
  """report.md and the figure from ``results``; returns the paths.

  Both are built before either is written, so a malformed results file
  leaves the directory as it was.
  """
  spec = REPORTS[schema_of(results)]
  text, fig = spec.report(results), spec.plot(results)
  report = os.path.join(directory, "report.md")
  rundir.write_text(report, text)
  return [report] + style.save_figure(fig, os.path.join(directory, spec.stem))


def write_run(out_dir: str, results: dict, overwrite: bool) -> None:
  """The whole run directory, staged and renamed into place.

  results.json gets the ``command`` that made it (:func:`cli.command_line`)
  unless ``results`` already records one.
  """
  if "command" not in results:
    results = results | {"command": cli.command_line()}
  with cli.out_dir_errors(), rundir.staged_run_dir(
      out_dir, overwrite=overwrite) as stage:
    rundir.write_json(os.path.join(stage, "config.json"), results["config"])
    rundir.write_json(os.path.join(stage, "results.json"), results)
    write_outputs(stage, results)


def replot(run_dir: str, study_flags, schema: str | None = None) -> None:
  """``--replot=RUN_DIR`` of an entry point: refuses any of its
  ``study_flags`` given beside it (one line), then rewrites the run's
  figure and report from its results.json (:func:`redraw`)."""
  given = [f"--{f}" for f in study_flags if cli.FLAGS[f].present]
  if given:
    cli.fail(f"--replot takes no other flag; got {' '.join(given)}")
  print(f"wrote {', '.join(redraw(run_dir, '--replot', schema))}")


def redraw(run_dir: str, flag: str = "--run_dir",
           schema: str | None = None) -> list[str]:
  """Rewrites a run's figure and report from its results.json (of
  ``schema`` when given, else of any reproduction)."""
  results = cli.read_run_file(run_dir, "results.json", flag)
  try:
    results = schemas.check_schema(
        results, REPORTS if schema is None else schema,
        f"{os.path.join(run_dir, 'results.json')}")
  except ValueError as e:
    cli.fail(f"{flag}: {e}")
  cli.check_output_folder(flag, run_dir)
  try:
    return write_outputs(run_dir, results)
  except OSError as e:
    cli.fail(f"{flag}: cannot write the figure and report: {e}")
  except (KeyError, TypeError, IndexError, ValueError) as e:
    cli.fail(f"{flag}: {run_dir}/results.json is malformed (field {e})")
