"""Run directories that appear whole or not at all.

A run is written into a hidden staging directory beside its destination and
renamed into place only when every file is written and synced, so an error
or Ctrl-C never leaves a half-written run, and an existing run is replaced
only when the caller asks for it (``overwrite=True``), after the new one is
complete.

A writer that is killed (SIGKILL, a lost machine) cannot clean up: its
staging directory stays. Each stage has a lock file beside it
(``.NAME.tmp-XXXX.lock``) that its writer holds (``flock``) while it
lives; the kernel releases the lock when the process dies, however it
dies. The next run into the same folder removes every stage whose lock it
can take (:func:`remove_stale_stages`): never one a live process still
writes.
"""

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import tempfile


class RunDirError(OSError):
  """A run directory that cannot be written (the entry points end with its
  message as one line)."""


class RunDirExistsError(RunDirError, FileExistsError):
  """The destination run directory exists and overwriting was not asked."""


class RunDirNotWritableError(RunDirError, PermissionError):
  """The run directory's folder cannot be created or written."""


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
  """Raises RunDirExistsError if ``path`` exists and may not be replaced,
  RunDirNotWritableError if its nearest existing folder is not a folder or
  cannot be written (a read-only file system, no permission): before any
  work, not after it."""
  if os.path.lexists(path) and not overwrite:
    raise RunDirExistsError(
        f"run directory {path} already exists; choose another --out_dir or "
        f"pass --overwrite to replace it")
  ancestor = os.path.dirname(os.path.abspath(path))
  while not os.path.lexists(ancestor):
    ancestor = os.path.dirname(ancestor)
  if not os.path.isdir(ancestor):
    raise RunDirNotWritableError(
        f"cannot create run directory {path}: {ancestor} is not a folder")
  if not os.access(ancestor, os.W_OK | os.X_OK):
    raise RunDirNotWritableError(
        f"cannot create run directory {path}: {ancestor} is not writable")


def _fsync_tree(path: str) -> None:
  for root, _, files in os.walk(path):
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        os.fsync(f.fileno())


_STAGE = ".tmp-"
_LOCK = ".lock"


def _try_lock(path: str):
  """An open file holding an exclusive ``flock`` on ``path`` (created if
  missing), or None if another process holds it."""
  f = open(path, "a")  # closed by the caller, or here on failure
  try:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.close()
    return None
  return f


def remove_stale_stages(parent: str) -> list[str]:
  """Removes the staging directories in ``parent`` whose writer is gone
  (its lock file free) and lock files whose stage is gone; returns the
  stages removed. A stage whose writer lives (lock held) is left alone."""
  removed = []
  try:
    names = os.listdir(parent)
  except OSError:
    return removed
  for name in names:
    if not (name.startswith(".") and _STAGE in name and name.endswith(_LOCK)):
      continue
    lock_path = os.path.join(parent, name)
    stage = lock_path[:-len(_LOCK)]
    lock = _try_lock(lock_path)
    if lock is None:
      continue   # a live writer
    try:
      if os.path.isdir(stage):
        shutil.rmtree(stage, ignore_errors=True)
        removed.append(stage)
      os.remove(lock_path)
    except OSError:
      pass
    finally:
      lock.close()
  return removed


@contextlib.contextmanager
def staged_run_dir(path: str, overwrite: bool = False):
  """Yields a staging directory that becomes ``path`` on a clean exit.
  Stages that killed writers left in the same folder are removed first
  (:func:`remove_stale_stages`).

  Raises:
    RunDirExistsError: ``path`` exists and ``overwrite`` is False.
  """
  check_writable(path, overwrite)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  remove_stale_stages(parent)
  stage = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}{_STAGE}",
                           dir=parent)
  lock = _try_lock(stage + _LOCK)
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
  finally:
    with contextlib.suppress(OSError):
      os.remove(stage + _LOCK)
    if lock is not None:
      lock.close()


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
