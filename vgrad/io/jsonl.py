"""JSON-lines files: one JSON object per line, each carrying its schema.

A training monitor appends a line per (step, parameter path) while a run
goes on; ``pandas.read_json(path, lines=True)`` reads the file as a table.
JSON has no NaN or Inf: non-finite floats are written as ``null`` (the
monitor's ``num_nan``/``num_inf`` columns say which). A line cut short by
a crash is reported by :func:`read_jsonl` with its line number.

Standard library and numpy only (layer rule of ``vgrad.io``).
"""

import json
import math
import os

import numpy as np

from vgrad.io import schemas


def _plain(value):
  """``value`` as JSON-ready Python: numpy scalars and arrays to numbers and
  lists, non-finite floats to None."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if hasattr(value, "tolist"):   # numpy (or JAX) scalars and arrays
    return _plain(np.asarray(value).tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


class JsonlWriter:
  """Appends schema-stamped JSON objects to ``path``, one per line.

  The file is opened for appending (a resumed run adds to it); each
  :meth:`write` is one ``write`` call of one complete line, flushed, so a
  reader never sees half a record unless the process dies mid-call.
  Use as a context manager, or call :meth:`close`.
  """

  def __init__(self, path: str, schema: str):
    schemas.parse(schema)
    directory = os.path.dirname(path)
    if directory:
      os.makedirs(directory, exist_ok=True)
    self.path, self.schema = path, schema
    self._file = open(path, "a", encoding="utf-8")

  def write(self, record: dict) -> None:
    line = json.dumps({"schema": self.schema} | _plain(record),
                      allow_nan=False)
    self._file.write(line + "\n")
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.flush()
      os.fsync(self._file.fileno())
      self._file.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def read_jsonl(path: str, schema: str) -> list[dict]:
  """Every record of a JSON-lines file, each checked to carry ``schema``.

  Raises:
    ValueError: in one line, naming the file and line that is not a JSON
      object of that schema.
  """
  out = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}, line {number}: not JSON ({e.msg}); "
                         "cut short by a crash?") from None
      schemas.check_schema(record, schema, f"{path}, line {number}")
      out.append(record)
  return out
