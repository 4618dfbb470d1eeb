"""Running an entry point as a user does, for the end-to-end tests."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args: str, cwd: str,
               timeout: float = 300) -> subprocess.CompletedProcess:
  """``python -m module args`` in ``cwd`` on CPU, output captured as text.

  The repository is put on PYTHONPATH so the tests need no install.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd,
                        env=env, capture_output=True, text=True,
                        timeout=timeout, check=False)


# The driver of run_cases: runs the entry point once as ``python -m`` does
# (runpy, as __main__: its flags are defined, its footer runs) with
# ``cli.run`` standing in to keep the ``main`` it is given, then runs every
# case through the real ``cli.run`` (the absl app.run the command line
# uses), with the flags reset to their defaults in between. The tests name
# the entry point by its module name only: none imports ``experiments``.
# Prints one JSON list.
_DRIVER = r"""
import contextlib, importlib.util, io, json, os, runpy, sys, traceback
from absl import flags
from vgrad.cli import app as cli
module = sys.argv[1]
cases = json.loads(sys.argv[2])
path = importlib.util.find_spec(module).origin
mains, run = [], cli.run
cli.run = mains.append
try:
  runpy.run_module(module, run_name="__main__")
finally:
  cli.run = run
(main,) = mains
results = []
for cwd, args in cases:
  flags.FLAGS.unparse_flags()
  out, err = io.StringIO(), io.StringIO()
  sys.argv = [path] + args
  os.chdir(cwd)
  code = 0
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      cli.run(main)
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None
                                                     else 1)
      if isinstance(e.code, str):
        print(e.code, file=sys.stderr)
    except BaseException:
      traceback.print_exc()
      code = 1
  results.append([code, out.getvalue(), err.getvalue()])
sys.stdout.write(json.dumps(results))
"""


def run_cases(module: str, cases: list[tuple[str, list[str]]],
              timeout: float = 300) -> list[subprocess.CompletedProcess]:
  """Runs ``python -m module args`` for every ``(cwd, args)`` in ONE process.

  Each case goes through the entry point's own ``cli.run`` (absl parsing,
  validators, ``main``) with every flag reset to its default first, so it
  sees exactly what a fresh ``python -m`` would, minus the ~4 s interpreter
  and JAX start-up per case. Meant for cases that end early (bad input).
  Returns one CompletedProcess-like result per case.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(
      [sys.executable, "-c", _DRIVER, module,
       json.dumps([[cwd, list(args)] for cwd, args in cases])],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
      check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"run_cases driver failed:\n{proc.stderr}")
  return [subprocess.CompletedProcess([module, *args], code, out, err)
          for (_, args), (code, out, err) in zip(cases,
                                                 json.loads(proc.stdout))]
