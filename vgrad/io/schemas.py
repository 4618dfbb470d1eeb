"""Every results file's schema, in one place.

Each JSON file an entry point writes carries ``"schema":
"vgrad.<kind>/<version>"``. The constants below are the versions this vgrad
writes and reads; writers put them in, readers check them with
:func:`check_schema` or :func:`load_results`, which also recognise files
written before the field existed (:data:`LEGACY`), read older versions
that :data:`UPGRADES` converts, and answer a file of any other version with
a one-line ``ValueError`` naming both versions.

==============================  =========================================
schema                          file, written by
==============================  =========================================
``vgrad.jacobian_spectrum/3``   results.json, ``experiments.jacobian_spectrum``
``vgrad.train/1``               metrics.json, ``experiments.train``/``lecture``
``vgrad.phase_diagram/1``       results.json, ``experiments.phase_diagram``
``vgrad.dynamical_isometry/1``  results.json, ``experiments.dynamical_isometry``
``vgrad.gradient_histograms/1`` results.json,
                                ``experiments.gradient_histograms``
``vgrad.sweep/1``               sweep.json and cells/<id>.json,
                                ``experiments.sweep``
``vgrad.activation_table/1``    table.json, ``experiments.activation_table``
``vgrad.signal_propagation/1``  results.json,
                                ``experiments.signal_propagation``
``vgrad.coord_check/1``         results.json, ``experiments.coord_check``
``vgrad.deep_trainability/1``   config.json, results.json and
                                cells/<arm>_d<depth>.json,
                                ``experiments.deep_trainability``
``vgrad.monitor/1``             every line of a monitor's JSON-lines file
                                (``vgrad.training.monitor_log``)
==============================  =========================================

Standard library only (layer rule: ``vgrad.io`` imports no other vgrad
package and no JAX).
"""

from collections.abc import Collection
import os
import re

from vgrad.io import records
from vgrad.io import spectrum_records

JACOBIAN_SPECTRUM = "vgrad.jacobian_spectrum/3"
TRAIN = "vgrad.train/1"
PHASE_DIAGRAM = "vgrad.phase_diagram/1"
DYNAMICAL_ISOMETRY = "vgrad.dynamical_isometry/1"
GRADIENT_HISTOGRAMS = "vgrad.gradient_histograms/1"
SWEEP = "vgrad.sweep/1"                  # sweep.json and every cell file
ACTIVATION_TABLE = "vgrad.activation_table/1"
SIGNAL_PROPAGATION = "vgrad.signal_propagation/1"
COORD_CHECK = "vgrad.coord_check/1"
DEEP_TRAINABILITY = "vgrad.deep_trainability/1"   # also config, cell files
MONITOR = "vgrad.monitor/1"              # every line of a monitor's .jsonl

# Every schema this vgrad writes and reads, with the file that carries it.
FILES = {
    JACOBIAN_SPECTRUM: "results.json",
    TRAIN: "metrics.json",
    PHASE_DIAGRAM: "results.json",
    DYNAMICAL_ISOMETRY: "results.json",
    GRADIENT_HISTOGRAMS: "results.json",
    SWEEP: "sweep.json",
    ACTIVATION_TABLE: "table.json",
    SIGNAL_PROPAGATION: "results.json",
    COORD_CHECK: "results.json",
    DEEP_TRAINABILITY: "results.json",
    MONITOR: "monitor.jsonl",
}
ALL = tuple(FILES)

# Older versions this vgrad still reads: schema -> (the version it becomes,
# the function that converts a record). check_schema applies them.
JACOBIAN_SPECTRUM_V1 = "vgrad.jacobian_spectrum/1"
JACOBIAN_SPECTRUM_V2 = "vgrad.jacobian_spectrum/2"
UPGRADES = {
    # Version 1 had two record formats (dense: linear values; qr: log
    # values) and no lyapunov key under dense.
    JACOBIAN_SPECTRUM_V1: (JACOBIAN_SPECTRUM, spectrum_records.upgrade),
    # Version 2 records had no "slq" key (the lanczos method's).
    JACOBIAN_SPECTRUM_V2: (JACOBIAN_SPECTRUM, spectrum_records.upgrade),
}

# Files written before they carried a "schema" field, recognised by the
# top-level keys they always had (checked in this order).
LEGACY = (
    (GRADIENT_HISTOGRAMS, frozenset({"runs", "convention", "dataset"})),
    (JACOBIAN_SPECTRUM_V1, frozenset({"config", "layers", "input_output"})),
    (TRAIN, frozenset({"arms"})),
)

# The top-level keys of a jacobian_spectrum results.json (README.md); it may
# also hold the "command" that made it.
SPECTRUM_KEYS = frozenset(spectrum_records.SCHEMA_KEYS
                          + spectrum_records.BODY_KEYS)

_FORMAT = re.compile(r"vgrad\.([a-z][a-z0-9_]*)/([1-9][0-9]*)")
# Names looked for in a run directory, in this order.
RUN_FILES = ("results.json", "metrics.json", "table.json", "sweep.json")


def parse(schema) -> tuple[str, int]:
  """``(kind, version)`` of ``"vgrad.<kind>/<version>"``.

  Raises:
    ValueError: not a schema string.
  """
  match = _FORMAT.fullmatch(schema) if isinstance(schema, str) else None
  if match is None:
    raise ValueError(f"schema {schema!r} is not of the form "
                     f"'vgrad.<kind>/<version>'")
  return match[1], int(match[2])


def kind_of(schema: str) -> str:
  return parse(schema)[0]


def identify(record) -> str | None:
  """The schema string of a results record, or None when it has none.

  A record without a ``"schema"`` field that was written before the field
  existed is recognised by its keys (:data:`LEGACY`). The string is
  returned as found, whatever its version; :func:`check_schema` compares.
  """
  if not isinstance(record, dict):
    return None
  schema = record.get("schema")
  if schema is not None:
    return schema
  for legacy, keys in LEGACY:
    if keys <= set(record):
      return legacy
  return None


def upgrade(record: dict) -> dict:
  """``record`` with its ``"schema"`` field first (a copy when added) and,
  when it is of an older version this vgrad reads (:data:`UPGRADES`),
  converted to the current one (a new dict); records of the current
  version carrying the field, or unrecognised, are returned as they are."""
  schema = identify(record)
  if schema is None or ("schema" in record and schema not in UPGRADES):
    return record
  body = {k: v for k, v in record.items() if k != "schema"}
  while schema in UPGRADES:
    schema, convert = UPGRADES[schema]
    body = convert(body)
  return {"schema": schema} | body


def _names(expected: Collection[str]) -> str:
  return ", ".join(expected)


def check_schema(record, expected: str | Collection[str],
                 where: str = "the record") -> dict:
  """``record`` upgraded (:func:`upgrade`) when its schema is one of
  ``expected``.

  Raises:
    ValueError: in one line, naming the schema and version ``where`` holds
      and the one(s) this vgrad reads.
  """
  expected = (expected,) if isinstance(expected, str) else tuple(expected)
  if not isinstance(record, dict):
    raise ValueError(f"{where} holds a JSON {type(record).__name__}, not a "
                     f"vgrad results object")
  schema = identify(record)
  if schema in expected or UPGRADES.get(schema, (None,))[0] in expected:
    return upgrade(record)
  reads = _names(expected)
  if schema is None:
    raise ValueError(f"{where} has no schema field and is not a results "
                     f"file vgrad recognises; expected {reads}")
  try:
    kind, version = parse(schema)
  except ValueError as e:
    raise ValueError(f"{where}: {e}; this vgrad reads {reads}") from None
  same_kind = [s for s in expected if kind_of(s) == kind]
  if same_kind:
    raise ValueError(
        f"{where} holds schema {schema} (vgrad.{kind} version {version}); "
        f"this vgrad reads {_names(same_kind)} (version "
        f"{', '.join(str(parse(s)[1]) for s in same_kind)}): "
        + ("written by a newer vgrad, upgrade vgrad"
           if version > max(parse(s)[1] for s in same_kind)
           else "written by an older vgrad, rerun the experiment"))
  raise ValueError(f"{where} holds schema {schema}, not {reads}")


def run_file(path_or_run_dir: str) -> str:
  """The results file of a run directory (the first of :data:`RUN_FILES`
  that exists), or the path itself when it is a file."""
  if not os.path.isdir(path_or_run_dir):
    return path_or_run_dir
  for name in RUN_FILES:
    path = os.path.join(path_or_run_dir, name)
    if os.path.isfile(path):
      return path
  raise ValueError(f"{path_or_run_dir} holds no results file (looked for "
                   f"{', '.join(RUN_FILES)})")


def load_results(path_or_run_dir: str,
                 expected: str | Collection[str] | None = None) -> dict:
  """A results file (or a run directory's), checked and upgraded.

  Args:
    path_or_run_dir: a JSON file, or a run directory (:func:`run_file`).
    expected: the schema(s) the caller reads; default every schema of
      this vgrad (:data:`ALL`).

  Raises:
    ValueError: unreadable, or of another schema or version (one line).
  """
  path = run_file(path_or_run_dir)
  record = records.read_json(os.path.dirname(path) or os.curdir,
                             os.path.basename(path))
  return check_schema(record, ALL if expected is None else expected, path)


def validate(record) -> None:
  """Checks a record as written: a ``"schema"`` field first, well formed
  and known to this vgrad, and for ``vgrad.jacobian_spectrum`` the
  documented top-level keys and every spectrum record
  (:func:`vgrad.io.spectrum_records.check_results`: keys and types,
  per-input lists of ``config.num_inputs``, every layer present unless
  ``qr_layers`` narrowed a ``qr`` run) (README.md, ``results.json``).

  Raises:
    ValueError: naming every problem found.
  """
  if not isinstance(record, dict) or "schema" not in record:
    raise ValueError("record has no 'schema' field")
  problems = []
  if next(iter(record)) != "schema":
    problems.append("'schema' is not the first key")
  schema = record["schema"]
  try:
    parse(schema)
  except ValueError as e:
    raise ValueError(str(e)) from None
  if schema not in FILES:
    problems.append(f"schema {schema} is not one of {_names(ALL)}")
  if schema == JACOBIAN_SPECTRUM:
    problems += _spectrum_problems(record)
  if problems:
    raise ValueError(f"{schema}: " + "; ".join(problems))


def _spectrum_problems(record: dict) -> list:
  """What :func:`validate` finds wrong in a jacobian_spectrum results.json."""
  keys = set(record)
  problems = []
  if SPECTRUM_KEYS - keys:
    problems.append(f"missing keys {sorted(SPECTRUM_KEYS - keys)}")
  extra = keys - SPECTRUM_KEYS - {"command"}
  if extra:
    problems.append(f"undocumented keys {sorted(extra)}")
  if problems:
    return problems
  config = record["config"] if isinstance(record["config"], dict) else {}
  layers, depth = None, config.get("depth")
  if record["method"] == "qr" and config.get("qr_layers") and depth:
    layers = set(config["qr_layers"]) | {depth}
  problems = spectrum_records.check_results(
      record, layers=layers, num_inputs=config.get("num_inputs"))
  if depth is not None and not problems and len(record["per_layer"]) != depth:
    problems.append(f"per_layer holds {len(record['per_layer'])} layers, "
                    f"config.depth is {depth}")
  return problems
