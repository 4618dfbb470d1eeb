"""A figure gallery redrawn from saved run directories alone.

The gallery walks a directory of runs, asks a registry of run *kinds* which
directories are runs (``Kind.detect``), redraws each run's figures from its
saved files (``Kind.redraw``; no training, no JAX), writes every figure as
``OUT/<kind>-<run name>-<figure>.png`` and ``.pdf`` in the shared style
(:func:`vgrad.plots.style.save_figure`, each file replaced atomically) and a
Markdown page ``OUT/README.md`` listing each figure beside the command that
made its results and the command that redraws it.

The registry is a plain dict ``{kind name: Kind}`` (the experiments' own
lives in ``experiments/gallery.py``); a new kind needs only a detector and
a ``redraw(run_dir) -> {figure name: Figure}``. Figures of runs that no
longer exist are not deleted from OUT.
"""

from collections.abc import Callable, Sequence
import dataclasses
import os
import re
import shlex

from matplotlib.figure import Figure

from vgrad.io import records
from vgrad.io import rundir
from vgrad.plots import style


@dataclasses.dataclass(frozen=True)
class Kind:
  """One kind of run the gallery can redraw.

  Attributes:
    title: section heading on the gallery page.
    detect: ``run_dir -> bool``, whether the directory is a run of this
      kind; may raise (ValueError for an unreadable file), which skips the
      directory with a warning.
    redraw: ``run_dir -> {figure name: Figure}`` from the saved files
      alone, in a fixed order; figure names are file-name safe.
    redraw_command: shell command that redraws the figures inside the run
      directory, with ``{run_dir}`` where the (quoted) path goes.
    make_command: an example command that makes a run of this kind.
    made_by: ``run_dir -> command or None``, the command recorded in the
      run (default :func:`records.recorded_command`).
  """
  title: str
  detect: Callable[[str], bool]
  redraw: Callable[[str], dict[str, Figure]]
  redraw_command: str
  make_command: str
  made_by: Callable[[str], str | None] = records.recorded_command


@dataclasses.dataclass(frozen=True)
class Run:
  """A run directory found under the runs directory."""
  kind: str
  path: str   # the run directory, as the runs directory was given
  name: str   # unique among the runs of its kind; used in file names


@dataclasses.dataclass(frozen=True)
class Entry:
  """One figure written to the gallery."""
  run: Run
  figure: str
  stem: str          # file name in the gallery, without extension
  made_by: str       # the recorded command, or records.NOT_RECORDED
  redraw: str        # the command that redraws it in the run directory


def _one_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  if isinstance(error, ValueError) and text:
    return text
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "run"


def run_name(runs_dir: str, run_dir: str, kind: str) -> str:
  """The run's path below ``runs_dir`` as one file-name-safe word.

  Directories become ``.``-separated; a leading directory named after the
  kind (the entry points' default roots, ``runs/phase_diagram/...``) is
  dropped. The runs directory itself, when it is a run, is named by its
  base name.
  """
  rel = os.path.relpath(run_dir, runs_dir)
  if rel == os.curdir:
    return _slug(os.path.basename(os.path.abspath(run_dir)))
  parts = rel.split(os.sep)
  if len(parts) > 1 and parts[0] == kind:
    parts = parts[1:]
  return _slug(".".join(parts))


def _within(path: str, skip: list[str]) -> bool:
  real = os.path.realpath(path)
  return any(real == s or real.startswith(s + os.sep) for s in skip)


def find_runs(runs_dir: str, kinds: dict[str, Kind],
              skip: tuple[str, ...] = ()) -> tuple[list[Run], list[str]]:
  """Every run directory under ``runs_dir`` (itself included).

  Each directory is offered to the kinds in registry order and belongs to
  the first whose ``detect`` says yes; the walk continues inside runs (a
  lecture run holds an ``mnist/`` run). Hidden directories (staging
  directories of runs being written) and those under ``skip`` (the
  gallery's own output) are not visited.

  Args:
    runs_dir: the directory to walk.
    kinds: the registry, ``{kind name: Kind}``.
    skip: directories not to walk into.

  Returns:
    The runs, sorted by kind (registry order) and then path, each named
    uniquely within its kind, and one warning line per directory skipped
    because a detector failed on it (an unreadable or corrupt file).
  """
  skip_real = [os.path.realpath(s) for s in skip]
  found: dict[str, list[str]] = {name: [] for name in kinds}
  warnings = []
  for directory, subdirs, _ in os.walk(runs_dir):
    subdirs[:] = sorted(
        d for d in subdirs if not d.startswith(".")
        and not _within(os.path.join(directory, d), skip_real))
    for name, kind in kinds.items():
      try:
        if kind.detect(directory):
          found[name].append(os.path.normpath(directory))
          break
      except Exception as e:  # noqa: BLE001  pylint: disable=broad-except
        # A detector is a plug-in: whatever it fails on skips the run.
        warnings.append(f"skipped {directory}: {_one_line(e)}")
        break
  runs = []
  for name, paths in found.items():
    taken: set[str] = set()
    for path in sorted(paths):
      base = run_name(runs_dir, path, name)
      unique, n = base, 1
      while unique in taken:
        n += 1
        unique = f"{base}~{n}"
      taken.add(unique)
      runs.append(Run(name, path, unique))
  return runs, warnings


def draw(runs: list[Run], kinds: dict[str, Kind], out_dir: str,
         progress: Callable[[Entry], None] | None = None
         ) -> tuple[list[Entry], list[str]]:
  """Redraws every run's figures into ``out_dir`` (which must exist).

  A run whose files cannot be redrawn (missing or malformed fields) is
  skipped whole, with one warning line, before any of its figures is
  written.

  Returns:
    The figures written, in the order of ``runs``, and the warnings.
  """
  entries, warnings = [], []
  for run in runs:
    kind = kinds[run.kind]
    try:
      figures = kind.redraw(run.path)
      made_by = kind.made_by(run.path) or records.NOT_RECORDED
    except Exception as e:  # noqa: BLE001  pylint: disable=broad-except
      # One malformed run must not stop the gallery; the warning names it.
      warnings.append(f"skipped {run.path} ({run.kind}): {_one_line(e)}")
      continue
    redraw = kind.redraw_command.format(run_dir=shlex.quote(run.path))
    for figure, fig in figures.items():
      entry = Entry(run, figure, f"{run.kind}-{run.name}-{_slug(figure)}",
                    made_by, redraw)
      style.save_figure(fig, os.path.join(out_dir, entry.stem))
      entries.append(entry)
      if progress:
        progress(entry)
  return entries, warnings


def _code(text: str) -> str:
  """``text`` as a Markdown code span, whatever backticks it holds."""
  fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
  pad = " " if text.startswith("`") or text.endswith("`") else ""
  return f"{fence}{pad}{text}{pad}{fence}"


def format_page(entries: list[Entry], kinds: dict[str, Kind], command: str,
                runs_dir: str, skipped: Sequence[str] = ()) -> str:
  """The gallery's README.md: a section per kind, a heading per figure
  with the embedded PNG, a link to the PDF, the command that made the
  results and the commands that redraw it. Deterministic: the same entries
  give the same text."""
  runs = {e.run for e in entries}
  lines = [
      "# Figure gallery", "",
      (f"{len(entries)} figures of {len(runs)} runs under "
       f"{_code(runs_dir)}, redrawn from their saved results by"), "",
      f"    {command}", "",
      ("which rewrites every figure below (PNG and PDF, replaced "
       "atomically) and this page. Figures of runs that have since been "
       "deleted are not removed from this folder. Each figure lists the "
       "command that made its results (\"not recorded\" for runs older "
       "than command recording) and the command that redraws it inside "
       "its run directory."), ""]
  for name, kind in kinds.items():
    mine = [e for e in entries if e.run.kind == name]
    if not mine:
      continue
    lines += [f"## {kind.title}", ""]
    for e in mine:
      made = (records.NOT_RECORDED if e.made_by == records.NOT_RECORDED
              else _code(e.made_by))
      lines += [
          f"### {_code(e.stem)}", "",
          f"![{name} figure {e.figure} of {e.run.path}]({e.stem}.png)", "",
          f"[PDF]({e.stem}.pdf) · run directory {_code(e.run.path)}", "",
          f"- Results made by: {made}",
          f"- Redraw in the run directory: {_code(e.redraw)}", ""]
  if skipped:
    lines += ["## Skipped", ""] + [f"- {w}" for w in skipped] + [""]
  return "\n".join(lines)


def write_page(out_dir: str, text: str) -> str:
  """Writes ``out_dir/README.md`` atomically; returns its path."""
  path = os.path.join(out_dir, "README.md")
  rundir.write_text(path, text)
  return path
