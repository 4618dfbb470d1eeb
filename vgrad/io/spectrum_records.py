r"""One Jacobian spectrum as a results record, whatever measured it.

Every spectrum in a ``vgrad.jacobian_spectrum/3`` results.json (``layers``,
``per_layer``, ``input_output``) and in ``vgrad.jacobian_spectra``'s result
is built by :func:`make_record` and has the keys :data:`RECORD_KEYS` under
every method (README.md, "results.json"):

* the dense method gives singular values ``s`` (and which of them are
  measurements: the precision floor of :mod:`vgrad.probes.spectrum`), turned
  into logs here;
* the ``qr`` method gives ``ln s`` (nats), every value a measurement,
  turned into linear values here where the working dtype represents them.

A **linear** value or statistic is reported where it lies in the working
dtype's normal range ``[tiny, max]`` (0.0 for an exact zero), else ``null``;
a **log** value or statistic (nats) is reported wherever it was measured
(``null`` for ``ln 0`` and for what was not measured). Statistics are pooled
over the inputs' spectra; a value that was not measured (below the dense
floor) counts as 0 in ``mean_sq_singular_value`` (it changes it by less than
the floor squared) and makes min, condition number and mean log ``null``:

* ``mean_sq_singular_value = tr(J J^T) / R``, ``log_rms_gain = (1/2) ln`` of
  it (``null`` when it is 0);
* ``min``/``median``/``max``: of the pooled values, exact zeros included
  (the median of an even count is the geometric mean of the middle two, the
  median of the logs);
* ``condition_number``: geometric mean over inputs of ``s_max / s_min``;
  ``mean_log_singular_value``: mean of ``ln s``; both ``null`` with exact
  zeros;
* uncertainty, per input: ``resolution_floor`` (dense: the product's floor,
  values below it are not reported), ``error_bound`` and ``sweeps`` (qr:
  the bound in nats on the whole computation's error of every reported
  value, and the Jacobi sweeps it took); ``null`` under the method that
  does not compute them.

:func:`upgrade` reads a version-1 results file (two record formats: dense
linear records and qr log records) into these records, so old runs still
redraw; :func:`check_results` checks a results body against the schema.

Standard library and NumPy only (layer rule of ``vgrad.io``).
"""

import math

import numpy as np

# Every record has exactly these keys, in this order (per-input lists last).
RECORD_KEYS = (
    "layer", "num_singular_values", "num_resolved", "num_exact_zeros",
    "finite",
    "mean_sq_singular_value", "log_rms_gain",
    "min_singular_value", "min_log_singular_value",
    "median_singular_value", "median_log_singular_value",
    "max_singular_value", "max_log_singular_value",
    "condition_number", "log_condition_number",
    "mean_log_singular_value",
    "resolution_floor", "error_bound", "sweeps", "slq",
    "singular_values", "log_singular_values",
)
# Scalar statistics: a number or null.
STAT_KEYS = RECORD_KEYS[5:16]
# Per-input lists of numbers (or null where a method does not compute them).
UNCERTAINTY_KEYS = ("resolution_floor", "error_bound", "sweeps")

# The top-level keys of a results body (``vgrad.jacobian_spectra``); a
# results.json adds SCHEMA_KEYS (and may hold the "command" that made it).
BODY_KEYS = ("convention", "dtype_eps", "method", "method_reason", "layers",
             "per_layer", "input_output", "lyapunov")
SCHEMA_KEYS = ("schema", "config")
METHODS = ("dense", "qr", "lanczos")
# The "slq" object of a lanczos record (null under the other methods).
SLQ_KEYS = ("steps", "log_rms_gain", "log_rms_gain_error", "log_nodes",
            "weights")
LYAPUNOV_QUANTILES = ("min", "p10", "median", "p90", "max")

# A value whose estimated relative error exceeds this (1 %) is not reported
# as a measurement (null): the qr and lanczos methods' threshold, as the
# dense floor is the dense method's.
RESOLVED_ERROR = 0.01

# Below every measured log value: where a value was not measured.
_UNMEASURED = -np.finfo(np.float64).max


def round_for(value: float, dtype) -> float:
  """``value`` with the significant digits that round-trip ``dtype``."""
  digits = 9 if np.finfo(dtype).bits <= 32 else 17
  return float(f"{float(value):.{digits}g}")


def json_float(value, dtype) -> float | None:
  """``value`` rounded for ``dtype`` (:func:`round_for`); None when not
  finite (JSON has no inf or NaN)."""
  value = float(value)
  return round_for(value, dtype) if math.isfinite(value) else None


def _linear(log_value: float, dtype) -> float | None:
  """``exp(log_value)`` when it lies in ``dtype``'s normal range (0.0 for
  ``-inf``), else None."""
  if log_value == -math.inf:
    return 0.0
  info = np.finfo(dtype)
  if not math.log(float(info.tiny)) <= log_value <= math.log(float(info.max)):
    return None
  return round_for(math.exp(log_value), dtype)


def _log_mean_exp(values: np.ndarray) -> float:
  """``log mean exp(values)`` without overflow (``-inf`` entries are 0)."""
  top = np.max(values)
  if not np.isfinite(top):
    return float(top)
  return float(top + np.log(np.mean(np.exp(values - top))))


def _median(log_sv, measured) -> float | None:
  """The pooled median of the logs (``-inf``: it is an exact zero); None
  when it falls on a value that was not measured."""
  keys = np.sort(np.where(measured, log_sv, _UNMEASURED).ravel())
  low, high = keys[(keys.size - 1) // 2], keys[keys.size // 2]
  if low == -np.inf:
    return -math.inf    # the geometric mean with 0 is 0
  if low == _UNMEASURED or high == _UNMEASURED:
    return None
  return float((low + high) / 2)


# Statistic (as _log_stats computes it, in nats) -> its linear key, its log
# key and the factor from the computed log to the reported one.
_STATS = {
    "mean_sq": ("mean_sq_singular_value", "log_rms_gain", 0.5),
    "min": ("min_singular_value", "min_log_singular_value", 1.0),
    "median": ("median_singular_value", "median_log_singular_value", 1.0),
    "max": ("max_singular_value", "max_log_singular_value", 1.0),
    "condition": ("condition_number", "log_condition_number", 1.0),
    "mean_log": (None, "mean_log_singular_value", 1.0),
}


def _log_stats(log_sv, measured, zeros, positive, mean_sq: bool) -> dict:
  """The statistics in nats (``-inf``: 0; None: not measured). Each row is
  descending: max needs every input's first value measured, min its last,
  the condition number both, the mean log every value; the mean square
  counts unmeasured values as 0 unless ``mean_sq`` is False (the values are
  a sample of the spectrum: it is then not measured)."""
  all_measured, any_zero = bool(measured.all()), bool(zeros.any())
  first, last = bool(measured[:, 0].all()), bool(measured[:, -1].all())
  lrg = (0.5 * _log_mean_exp(np.where(positive, 2 * log_sv, -np.inf).ravel())
         if positive.any() else -math.inf)
  if not first:
    top = None
  elif positive[:, 0].any():
    top = float(log_sv[positive[:, 0], 0].max())
  else:
    top = -math.inf     # every value an exact zero
  ends = first and last and not any_zero
  return {
      "mean_sq": 2 * lrg if mean_sq else None,
      "min": float(log_sv[:, -1].min()) if last else None,
      "median": _median(log_sv, measured),
      "max": top,
      "condition": float(np.mean(log_sv[:, 0] - log_sv[:, -1]))
                   if ends else None,
      "mean_log": float(np.mean(log_sv)) if all_measured and not any_zero
                  else None,
  }


def make_record(layer: int, log_sv_BxR, dtype, *, measured=None,
                singular_values=None, finite: bool | None = None,
                resolution_floor=None, error_bound=None,
                sweeps=None, log_dtype=None, slq=None,
                mean_sq_measured: bool = True) -> dict:
  """The one record builder (module docstring).

  Args:
    layer: the layer (block) the spectrum belongs to, 1-based.
    log_sv_BxR: ``ln s`` of B descending spectra of R values (float64
      array): ``-inf`` an exact zero, NaN or ``+inf`` an overflow.
    dtype: the working dtype: the digits kept, the range of linear values.
    measured: ``(B, R)`` True where a value is a measurement (default:
      every value that is not NaN or ``+inf``); exact zeros must be.
    singular_values: ``(B, R)`` the linear values when the probe computed
      them (the dense method's), used instead of ``exp(log_sv)``.
    finite: whether no Inf/NaN appeared (default: from ``log_sv``).
    resolution_floor: ``(B,)`` the dense floors, or None.
    error_bound: ``(B,)`` the qr method's Jacobi bounds (nats), or None.
    sweeps: ``(B,)`` the qr method's Jacobi sweeps, or None.
    log_dtype: the dtype whose digits the log values, log statistics and
      bounds keep (default ``dtype``; the qr method's float64 pass keeps
      float64's, as its values are that accurate).
    slq: the lanczos method's ``slq`` object (:func:`slq_object`), or None.
    mean_sq_measured: False when the values are only a part of the
      spectrum (lanczos: its extremes), so ``tr(J J^T)`` is not measured.

  Returns:
    A dict with :data:`RECORD_KEYS`, JSON-ready.
  """
  log_sv = np.asarray(log_sv_BxR, np.float64)
  bad = np.isnan(log_sv) | np.isposinf(log_sv)
  finite = bool(not bad.any()) if finite is None else bool(finite)
  measured = ~bad if measured is None else np.asarray(measured, bool) & ~bad
  zeros = measured & np.isneginf(log_sv)
  positive = measured & np.isfinite(log_sv)
  if singular_values is None:
    linear = [[_linear(v, dtype) if ok else None for v, ok in zip(row, mask)]
              for row, mask in zip(log_sv, positive)]
  else:
    linear = [[round_for(v, dtype) if ok else None
               for v, ok in zip(row, mask)]
              for row, mask in zip(np.asarray(singular_values, np.float64),
                                   positive)]
  linear = [[0.0 if z else v for v, z in zip(row, mask)]
            for row, mask in zip(linear, zeros)]
  log_dtype = dtype if log_dtype is None else log_dtype
  logs = [[round_for(v, log_dtype) if ok else None
           for v, ok in zip(row, mask)]
          for row, mask in zip(log_sv, positive)]
  record = {
      "layer": int(layer),
      "num_singular_values": int(log_sv.shape[1]),
      "num_resolved": measured.sum(axis=1).tolist(),
      "num_exact_zeros": zeros.sum(axis=1).tolist(),
      "finite": finite,
  }
  stats = (_log_stats(log_sv, measured, zeros, positive, mean_sq_measured)
           if finite else dict.fromkeys(_STATS))
  for name, (linear_key, log_key, log_scale) in _STATS.items():
    value = stats[name]
    if linear_key is not None:
      record[linear_key] = None if value is None else _linear(value, dtype)
    record[log_key] = (None if value is None
                       else json_float(log_scale * value, log_dtype))
  record["resolution_floor"] = _per_input(resolution_floor, dtype)
  record["error_bound"] = _per_input(error_bound, log_dtype)
  record["sweeps"] = (None if sweeps is None
                      else [int(s) for s in np.asarray(sweeps)])
  record["slq"] = slq
  record["singular_values"] = linear
  record["log_singular_values"] = logs
  return {key: record[key] for key in RECORD_KEYS}


def slq_object(steps: int, log_nodes, weights, quadratic_forms,
               dtype) -> dict:
  """The ``slq`` object of a lanczos record.

  Args:
    steps: the Golub-Kahan steps ``k`` of every input's rule.
    log_nodes: ``(B, k)`` ``ln theta_i`` of each input's rule (nats;
      ``-inf`` a zero node).
    weights: ``(B, k)`` the Gauss weights ``tau_i^2`` (rows sum to 1).
    quadratic_forms: ``(B,)`` ``u^T J^T J u`` of each input's unit probe:
      Hutchinson's estimates of ``tr(J^T J) / R``.
    dtype: the working dtype (digits kept).

  Returns:
    ``{"steps", "log_rms_gain", "log_rms_gain_error", "log_nodes",
    "weights"}``: ``log_rms_gain = (1/2) ln mean(q)`` (nats; the estimate
    of the record's ``log_rms_gain``) and its standard error over the
    inputs by the delta method, ``(1/2) sd(q) / (sqrt(B) mean(q))`` (null
    for one input).
  """
  q = np.asarray(quadratic_forms, np.float64)
  mean = float(np.mean(q))
  error = None
  if q.size > 1 and mean > 0:
    error = json_float(0.5 * np.std(q, ddof=1) / math.sqrt(q.size) / mean,
                       dtype)
  with np.errstate(divide="ignore"):
    log_gain = 0.5 * math.log(mean) if mean > 0 else -math.inf
  return {
      "steps": int(steps),
      "log_rms_gain": json_float(log_gain, dtype),
      "log_rms_gain_error": error,
      "log_nodes": [[json_float(v, dtype) for v in row]
                    for row in np.asarray(log_nodes, np.float64)],
      "weights": [[json_float(v, dtype) for v in row]
                  for row in np.asarray(weights, np.float64)],
  }


def _check_slq(slq, num_inputs, problems, where):
  if slq is None:
    return
  if not isinstance(slq, dict) or set(slq) != set(SLQ_KEYS):
    problems.append(f"{where}.slq is not null or an object of "
                    f"{', '.join(SLQ_KEYS)}")
    return
  steps = slq["steps"]
  if not (_is_count(steps) and steps >= 1):
    problems.append(f"{where}.slq.steps is not an integer >= 1")
    return
  for key in ("log_rms_gain", "log_rms_gain_error"):
    if slq[key] is not None and not _is_number(slq[key]):
      problems.append(f"{where}.slq.{key} is not a number or null")
  for key in ("log_nodes", "weights"):
    rows = slq[key]
    if (not isinstance(rows, list) or len(rows) != num_inputs
        or not all(isinstance(row, list) and len(row) == steps
                   and all(v is None or _is_number(v) for v in row)
                   for row in rows)):
      problems.append(f"{where}.slq.{key} is not {num_inputs} lists of "
                      f"{steps} numbers")


def _per_input(values, dtype) -> list | None:
  if values is None:
    return None
  return [None if v is None else json_float(v, dtype) for v in values]


# --------------------------------------------------------------------------
# Version 1 (README.md before issue 12's item 4): dense records held linear
# values and statistics, qr records ("layers" and "input_output" under qr)
# log ones only.

def _dtype_of(results: dict):
  dtype = (results.get("config") or {}).get("dtype")
  if dtype in ("float32", "float64"):
    return np.dtype(dtype)
  eps = results.get("dtype_eps")
  return np.dtype(np.float64 if eps is not None and eps < 1e-10
                  else np.float32)


def upgrade_record(record: dict, dtype) -> dict:
  """A version-1 record rebuilt by :func:`make_record` from the values it
  holds (statistics recomputed from the rounded values); a version-2
  record (every key but ``slq``) gains ``"slq": null``; a record that
  already has every key comes back unchanged."""
  if set(RECORD_KEYS) <= set(record):
    return record
  if set(RECORD_KEYS) - {"slq"} <= set(record):
    return {key: record.get(key) for key in RECORD_KEYS}
  finite = record.get("finite", True)
  if "singular_values" in record:     # a dense record
    rows = record["singular_values"]
    measured = np.array([[v is not None for v in row] for row in rows], bool)
    sv = np.array([[np.nan if v is None else v for v in row]
                   for row in rows], np.float64).reshape(measured.shape)
    with np.errstate(divide="ignore"):
      log_sv = np.where(measured, np.log(np.where(measured, sv, 1.0)), np.nan)
    return make_record(record["layer"], log_sv, dtype, measured=measured,
                       singular_values=sv, finite=finite,
                       resolution_floor=record.get("resolution_floor"))
  # A qr record: null is an exact zero in a finite record, else an overflow.
  gone = -np.inf if finite else np.nan
  log_sv = np.array([[gone if v is None else v for v in row]
                     for row in record["log_singular_values"]], np.float64)
  return make_record(record["layer"], log_sv, dtype, finite=finite,
                     error_bound=record.get("error_bound"),
                     sweeps=record.get("sweeps"))


def upgrade(results: dict) -> dict:
  """A version-1 or -2 results.json (or one written before the schema
  field) as version 3: every record rebuilt (:func:`upgrade_record`),
  ``lyapunov`` null where it was absent (dense), ``per_layer`` empty where
  the file had none (qr files before per_layer joined them), ``method``
  read from the records where it was not recorded. Returns a new dict;
  ``schema`` is left to the caller."""
  dtype = _dtype_of(results)
  out = dict(results)
  for key in ("layers", "per_layer"):
    out[key] = [upgrade_record(r, dtype) for r in results.get(key) or []]
  if isinstance(results.get("input_output"), dict):
    out["input_output"] = upgrade_record(results["input_output"], dtype)
  out.setdefault("method", "qr" if "lyapunov" in results else "dense")
  out.setdefault("method_reason", "not recorded")
  out.setdefault("lyapunov", None)
  return out


# --------------------------------------------------------------------------
# Checking a results body against the schema.

def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_rows(record, key, num_inputs, width, allow_negative, problems,
                where):
  rows = record[key]
  if not isinstance(rows, list) or len(rows) != num_inputs:
    problems.append(f"{where}.{key} is not a list of {num_inputs} inputs")
    return
  for b, row in enumerate(rows):
    if not isinstance(row, list) or len(row) != width:
      problems.append(f"{where}.{key}[{b}] is not a list of {width} values")
      return
    if not all(v is None or (_is_number(v) and (allow_negative or v >= 0))
               for v in row):
      problems.append(f"{where}.{key}[{b}] holds a value that is not "
                      f"{'a number' if allow_negative else 'a number >= 0'}"
                      f" or null")
      return


def check_record(record, num_inputs: int, where: str = "record") -> list:
  """Problems of one record (empty when it follows the schema): its keys,
  their types, per-input lists of ``num_inputs`` entries, rows of
  ``num_singular_values`` values, and counts that agree with the rows."""
  if not isinstance(record, dict):
    return [f"{where} is not an object"]
  keys = set(record)
  problems = []
  if keys != set(RECORD_KEYS):
    missing, extra = set(RECORD_KEYS) - keys, keys - set(RECORD_KEYS)
    if missing:
      problems.append(f"{where} misses keys {sorted(missing)}")
    if extra:
      problems.append(f"{where} has undocumented keys {sorted(extra)}")
    return problems
  width = record["num_singular_values"]
  if not (_is_count(record["layer"]) and record["layer"] >= 1):
    problems.append(f"{where}.layer is not an integer >= 1")
  if not _is_count(width):
    return problems + [f"{where}.num_singular_values is not a count"]
  if not isinstance(record["finite"], bool):
    problems.append(f"{where}.finite is not true or false")
  for key in STAT_KEYS:
    if record[key] is not None and not _is_number(record[key]):
      problems.append(f"{where}.{key} is not a number or null")
  for key in ("num_resolved", "num_exact_zeros") + UNCERTAINTY_KEYS:
    value = record[key]
    if value is None and key in UNCERTAINTY_KEYS:
      continue
    check = _is_count if key in ("num_resolved", "num_exact_zeros",
                                 "sweeps") else (
        lambda v: v is None or _is_number(v))
    if (not isinstance(value, list) or len(value) != num_inputs
        or not all(check(v) for v in value)):
      problems.append(f"{where}.{key} is not a list of {num_inputs} "
                      f"{'counts' if check is _is_count else 'numbers'}")
  _check_slq(record["slq"], num_inputs, problems, where)
  _check_rows(record, "singular_values", num_inputs, width, False, problems,
              where)
  _check_rows(record, "log_singular_values", num_inputs, width, True,
              problems, where)
  if problems or not record["finite"]:
    return problems
  for b, (logs, linear) in enumerate(zip(record["log_singular_values"],
                                         record["singular_values"])):
    zeros = sum(v == 0.0 for v in linear if v is not None)
    measured = sum(v is not None for v in logs) + zeros
    present = [v for v in logs if v is not None]
    if zeros != record["num_exact_zeros"][b]:
      problems.append(f"{where}: input {b} has {zeros} zeros in "
                      f"singular_values, num_exact_zeros says "
                      f"{record['num_exact_zeros'][b]}")
    if measured != record["num_resolved"][b]:
      problems.append(f"{where}: input {b} has {measured} measured values, "
                      f"num_resolved says {record['num_resolved'][b]}")
    if any(a < c for a, c in zip(present, present[1:])):
      problems.append(f"{where}.log_singular_values[{b}] is not descending")
  return problems


def _check_lyapunov(lyapunov, depth, num_inputs, method, problems):
  if lyapunov is None:
    if method == "qr":
      problems.append("lyapunov is null under method qr")
    return
  if not isinstance(lyapunov, dict) or set(lyapunov) != {
      "partial_sums", "num_exact_zeros", "exponents", "top_exponent"}:
    problems.append("lyapunov is not an object of partial_sums, "
                    "num_exact_zeros, exponents, top_exponent")
    return
  sums = lyapunov["partial_sums"]
  if (not isinstance(sums, dict) or set(sums) != set(LYAPUNOV_QUANTILES)
      or any(not isinstance(sums[q], list) or len(sums[q]) != depth
             for q in LYAPUNOV_QUANTILES)):
    problems.append(f"lyapunov.partial_sums is not {{min, p10, median, "
                    f"p90, max}} of {depth} layers each")
  if (not isinstance(lyapunov["num_exact_zeros"], list)
      or len(lyapunov["num_exact_zeros"]) != depth):
    problems.append(f"lyapunov.num_exact_zeros is not a list of {depth} "
                    f"layers")
  if (not isinstance(lyapunov["exponents"], list)
      or len(lyapunov["exponents"]) != num_inputs):
    problems.append(f"lyapunov.exponents is not a list of {num_inputs} "
                    f"inputs")


def check_results(results, layers=None, num_inputs: int | None = None
                  ) -> list:
  """Problems of a results body (empty when it follows the schema).

  Checks :data:`BODY_KEYS`, every record (:func:`check_record`), that all
  records hold the same number of inputs (``num_inputs`` when given),
  ``per_layer`` = layers 1..L, ``layers`` = ``layers`` when given (else
  every layer 1..L) in ascending order, ``input_output`` the record of
  layer L (equal to ``layers``' last when that is L), and ``lyapunov``
  (null or per-layer quantiles of L layers; never null under ``qr``).
  """
  if not isinstance(results, dict):
    return ["results is not an object"]
  missing = [k for k in BODY_KEYS if k not in results]
  if missing:
    return [f"missing keys {missing}"]
  problems = []
  method = results["method"]
  if method not in METHODS:
    problems.append(f"method {method!r} is not one of {', '.join(METHODS)}")
  per_layer, cumulative = results["per_layer"], results["layers"]
  io = results["input_output"]
  if not (isinstance(per_layer, list) and isinstance(cumulative, list)
          and per_layer and cumulative):
    return problems + ["layers and per_layer must be non-empty lists"]
  if num_inputs is None:
    first = per_layer[0]
    rows = first.get("singular_values") if isinstance(first, dict) else None
    num_inputs = len(rows) if isinstance(rows, list) else 0
  for section, records in (("per_layer", per_layer), ("layers", cumulative)):
    for i, record in enumerate(records):
      problems += check_record(record, num_inputs, f"{section}[{i}]")
  problems += check_record(io, num_inputs, "input_output")
  if problems:
    return problems
  depth = len(per_layer)
  if [r["layer"] for r in per_layer] != list(range(1, depth + 1)):
    problems.append(f"per_layer does not hold layers 1..{depth} in order")
  wanted = (list(range(1, depth + 1)) if layers is None
            else sorted({int(l) for l in layers}))
  got = [r["layer"] for r in cumulative]
  if got != wanted:
    problems.append(f"layers holds layers {got}, expected {wanted}")
  if io["layer"] != depth:
    problems.append(f"input_output is layer {io['layer']}, not {depth}")
  elif got and got[-1] == depth and cumulative[-1] != io:
    problems.append(f"input_output differs from layers' layer {depth}")
  _check_lyapunov(results["lyapunov"], depth, num_inputs, method, problems)
  return problems
