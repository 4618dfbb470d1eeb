"""Reading a run directory's JSON files: one error type for every way a
file can be unreadable, so a caller (the gallery, --replot) can report it in
one line."""

from collections.abc import Callable
import json
import os

# Files that may hold the command that made a run, in the order looked at.
COMMAND_FILES = ("results.json", "metrics.json", "config.json", "table.json",
                 "sweep.json")
NOT_RECORDED = "not recorded"


def upgrade_keys(obj):
  """A results, config or metrics object written by an older vgrad, with
  the keys this vgrad reads (new objects come back unchanged).

  Weight and bias scales were standard deviations ``sigma_w``/``sigma_b``;
  they are the variances ``sigma_w2 = sigma_w ** 2``/``sigma_b2 = sigma_b **
  2`` now (None stays None). A dynamical-isometry arm's weight ensemble was
  ``weights``; it is ``ensemble`` now. Applied to every dict in ``obj``,
  recursively; returns a new object.
  """
  if isinstance(obj, list):
    return [upgrade_keys(v) for v in obj]
  if not isinstance(obj, dict):
    return obj
  out = {}
  for key, value in obj.items():
    if key in ("sigma_w", "sigma_b") and f"{key}2" not in obj:
      key = f"{key}2"
      value = value ** 2 if isinstance(value, (int, float)) else value
    elif (key == "weights" and isinstance(value, str) and "act" in obj
          and "ensemble" not in obj):
      key = "ensemble"
    out[key] = upgrade_keys(value)
  return out


def read_json(run_dir: str, name: str) -> dict:
  """``run_dir/name`` parsed as a JSON object, with :func:`upgrade_keys`.

  Raises:
    ValueError: the file cannot be read or parsed, or is not an object.
  """
  path = os.path.join(run_dir, name)
  try:
    with open(path) as f:
      obj = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"cannot read {path}: {e}") from e
  if not isinstance(obj, dict):   # a malformed file, like a truncated one
    raise ValueError(  # noqa: TRY004
        f"{path} holds a JSON {type(obj).__name__}, not an object")
  return upgrade_keys(obj)


def json_matches(run_dir: str, name: str,
                 predicate: Callable[[dict], bool]) -> bool:
  """False when ``run_dir/name`` does not exist, else ``predicate`` of its
  JSON object (a file that exists but cannot be read raises ValueError)."""
  if not os.path.isfile(os.path.join(run_dir, name)):
    return False
  return bool(predicate(read_json(run_dir, name)))


def recorded_command(run_dir: str) -> str | None:
  """The ``"command"`` field of the first of ``COMMAND_FILES`` that has
  one (runs made before commands were recorded have none)."""
  for name in COMMAND_FILES:
    if os.path.isfile(os.path.join(run_dir, name)):
      command = read_json(run_dir, name).get("command")
      if isinstance(command, str) and command:
        return command
  return None
