"""A directory of finished work items, one JSON file each, that survives
being killed at any instant.

A *cell* is a finished unit of a longer computation (a sweep's grid cell).
Each is written by write-to-temporary, fsync, rename, fsync of the
directory (:func:`write_cell`), so a cell file is either absent or whole; a
rerun reads the whole, valid ones (:func:`read_cells`) and recomputes the
rest. :func:`write_csv` writes rows as a CSV that ``pandas.read_csv`` reads
back with the right types. Nothing here knows what a cell holds.
"""

from collections.abc import Callable, Sequence
import csv
import io
import json
import math
import os

from vgrad.io import records
from vgrad.io import rundir


def fsync_dir(path: str) -> None:
  """Makes a rename inside ``path`` durable."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def write_cell(directory: str, cell_id: str, record: dict) -> str:
  """``directory/<cell_id>.json``, atomically and durably; returns it."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f"{cell_id}.json")
  rundir.write_json(path, record)
  fsync_dir(directory)
  return path


def read_cells(directory: str, valid: Callable[[object], bool],
               warn: Callable[[str], None] | None = None) -> list[dict]:
  """Every whole cell record in ``directory`` that ``valid`` accepts, in
  file-name order.

  A file that does not parse, or that ``valid`` rejects, is left out (and
  reported through ``warn``): its cell counts as missing.
  """
  out = []
  if not os.path.isdir(directory):
    return out
  for name in sorted(os.listdir(directory)):
    if not name.endswith(".json") or name.startswith("."):
      continue
    path = os.path.join(directory, name)
    try:
      with open(path) as f:
        record = records.upgrade_keys(json.load(f))  # older cells too
    except (OSError, ValueError) as e:
      record, why = None, str(e)
    else:
      why = "settings or seeds differ from the run's"
    if valid(record):
      out.append(record)
    elif warn is not None:
      warn(f"ignoring {path} ({why})")
  return out


def remove_stale_temporaries(*directories: str) -> None:
  """Temporary files a killed writer left behind (never a finished cell)."""
  for directory in directories:
    for name in os.listdir(directory):
      if name.startswith(".tmp-"):
        os.remove(os.path.join(directory, name))


def from_json(v):
  """JSON stores non-finite floats as strings (``'nan'``, ``'-inf'``);
  rows hold them as floats again."""
  return float(v) if v in ("nan", "inf", "-inf") else v


def csv_value(v) -> str:
  """A cell's text: ``true``/``false``, ``nan``/``inf``/``-inf``, repr of
  finite floats (round-trips), ``''`` for None."""
  v = from_json(v)
  if v is None:
    return ""
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, float) and not math.isfinite(v):
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
  return repr(v) if isinstance(v, float) else str(v)


def write_csv(path: str, columns: Sequence[str], rows: list[dict]) -> None:
  """``rows`` as a CSV (header + one line per row), atomically.

  Non-finite floats are written as ``nan``/``inf``/``-inf`` and booleans as
  ``true``/``false``, which ``pandas.read_csv`` parses as float and bool.
  """
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
  writer.writerows([csv_value(row.get(c)) for c in columns] for row in rows)
  rundir.write_text(path, buf.getvalue())
