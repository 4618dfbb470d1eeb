"""Run directories that appear whole or not at all.

A run is written into a hidden staging directory beside its destination and
renamed into place only when every file is written and synced, so an error
or Ctrl-C never leaves a half-written run, and an existing run is replaced
only when the caller asks for it (``overwrite=True``), after the new one is
complete.
"""

import contextlib
import datetime
import json
import os
import shutil
import tempfile


class RunDirExistsError(FileExistsError):
  """The destination run directory exists and overwriting was not asked."""


def default_run_dir(root: str, name: str) -> str:
  """``root/YYYYmmdd-HHMMSS_name``, with ``-2``, ``-3`` ... if taken."""
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  path = os.path.join(root, f"{stamp}_{name}")
  candidate, n = path, 1
  while os.path.exists(candidate):
    n += 1
    candidate = f"{path}-{n}"
  return candidate


def check_writable(path: str, overwrite: bool = False) -> None:
  """Raises RunDirExistsError if ``path`` exists and may not be replaced."""
  if os.path.lexists(path) and not overwrite:
    raise RunDirExistsError(
        f"run directory {path} already exists; choose another --out_dir or "
        f"pass --overwrite to replace it")


def _fsync_tree(path: str) -> None:
  for root, _, files in os.walk(path):
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def staged_run_dir(path: str, overwrite: bool = False):
  """Yields a staging directory that becomes ``path`` on a clean exit.

  Raises:
    RunDirExistsError: ``path`` exists and ``overwrite`` is False.
  """
  check_writable(path, overwrite)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  stage = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-",
                           dir=parent)
  try:
    yield stage
    _fsync_tree(stage)
    if os.path.lexists(path):
      check_writable(path, overwrite)
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-",
                             dir=parent)
      os.rename(path, os.path.join(old, "run"))
      os.rename(stage, path)
      shutil.rmtree(old)
    else:
      os.rename(stage, path)
  except BaseException:
    shutil.rmtree(stage, ignore_errors=True)
    raise


def write_text(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` atomically (temp file + fsync + rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as JSON to ``path`` atomically; NaN/Inf are refused."""
  write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")
