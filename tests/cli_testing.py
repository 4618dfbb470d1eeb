"""Running an entry point as a user does, for the end-to-end tests.

``run_module("experiments.train", *args, cwd=...)`` answers what ``python -m
experiments.train args`` answers in ``cwd``: exit status, stdout, stderr.
It runs the case in a warm interpreter kept for that entry point (one per
entry point per test process) instead of a new ``python -m`` each time:
a new interpreter costs ~4 s of Python, JAX, Flax and matplotlib start-up
on a 2-core CPU, and the warm one also keeps the programs it compiled, so
the second run of an entry point compiles only what is new. Each case still
goes through the entry point's real command line (absl parsing, flag
validators, ``main``, exit status) with every flag reset to its default,
from its own working directory, with JAX's configuration (``jax_enable_x64``)
and matplotlib's open figures restored in between. ``fresh=True`` runs a
new ``python -m`` instead: for the runs that must prove a cold start works.
Tests that need a process of their own (SIGKILL, several processes, another
device count) start it themselves.
"""

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict[str, str]:
  return dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
              PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


# The warm interpreter of one entry point. It runs the module once as
# ``python -m`` does (runpy, as __main__: its flags are defined, its footer
# runs) with ``cli.run`` standing in to keep the ``main`` it is given, then
# reads one JSON case ``[cwd, args]`` per line of stdin, runs it through the
# real ``cli.run`` (the absl app.run the command line uses) and answers one
# line, MARK + JSON ``[code, stdout, stderr]``, on its own stdout (anything
# else a library prints straight to the file descriptor is skipped by the
# reader). The tests name the entry point by its module name only: none
# imports ``experiments``.
_MARK = "\x1evgrad-case-result "
_SERVER = r"""
import contextlib, importlib.util, io, json, os, runpy, sys, traceback
from absl import flags
from vgrad.cli import app as cli
module, mark = sys.argv[1], sys.argv[2]
reply = os.fdopen(os.dup(1), "w")
path = importlib.util.find_spec(module).origin
mains, run = [], cli.run
cli.run = mains.append
try:
  runpy.run_module(module, run_name="__main__")
finally:
  cli.run = run
(main,) = mains
import jax
import matplotlib.pyplot as plt
home, x64 = os.getcwd(), jax.config.jax_enable_x64
for line in sys.stdin:
  cwd, args = json.loads(line)
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
  os.chdir(home)
  jax.config.update("jax_enable_x64", x64)
  plt.close("all")
  reply.write(mark + json.dumps([code, out.getvalue(), err.getvalue()]) + "\n")
  reply.flush()
"""

# Warm interpreters by entry point, least recently used first. At most
# MAX_SERVERS stay alive per test process (each holds its compiled programs,
# a few hundred MB), so many xdist workers cannot fill the memory.
MAX_SERVERS = 3
_servers: dict[str, tuple[subprocess.Popen, object]] = {}


def _stop(module: str):
  proc, log = _servers.pop(module)
  proc.kill()
  proc.wait()
  log.close()


def _stop_servers():
  for module in list(_servers):
    _stop(module)


atexit.register(_stop_servers)


def _server(module: str) -> tuple[subprocess.Popen, object]:
  if module in _servers:
    if _servers[module][0].poll() is None:
      _servers[module] = _servers.pop(module)   # most recently used
      return _servers[module]
    _stop(module)
  while len(_servers) >= MAX_SERVERS:
    _stop(next(iter(_servers)))
  log = tempfile.TemporaryFile(mode="w+")   # its own stderr (C++ logs)
  proc = subprocess.Popen([sys.executable, "-c", _SERVER, module, _MARK],
                          cwd=REPO, env=_env(), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=log, text=True)
  _servers[module] = (proc, log)
  return proc, log


def _ask(module: str, cwd: str, args: list[str],
         timeout: float) -> subprocess.CompletedProcess:
  proc, log = _server(module)
  proc.stdin.write(json.dumps([cwd, list(args)]) + "\n")
  proc.stdin.flush()
  # Read the raw pipe (not a buffered file: select would not see lines
  # already in its buffer) until the marked reply line.
  fd, buffer = proc.stdout.fileno(), b""
  deadline = time.monotonic() + timeout
  while True:
    while b"\n" in buffer:
      line, buffer = buffer.split(b"\n", 1)
      text = line.decode()
      if text.startswith(_MARK):
        code, out, err = json.loads(text[len(_MARK):])
        return subprocess.CompletedProcess([module, *args], code, out, err)
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([fd], [], [], left)[0]:
      _stop(module)
      raise subprocess.TimeoutExpired([module, *args], timeout)
    chunk = os.read(fd, 1 << 16)
    if not chunk:   # the interpreter died: report it as python -m would
      proc.wait()
      log.seek(0)
      stderr = log.read()
      _stop(module)
      return subprocess.CompletedProcess([module, *args], proc.returncode,
                                         "", stderr)
    buffer += chunk


def run_module(module: str, *args: str, cwd: str, timeout: float = 300,
               fresh: bool = False) -> subprocess.CompletedProcess:
  """``python -m module args`` in ``cwd`` on CPU, output captured as text.

  Runs in the entry point's warm interpreter (see the module docstring);
  ``fresh=True`` starts a new ``python -m`` instead. The repository is put
  on PYTHONPATH so the tests need no install.
  """
  if fresh:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
  return _ask(module, cwd, list(args), timeout)


def run_cases(module: str, cases: list[tuple[str, list[str]]],
              timeout: float = 300) -> list[subprocess.CompletedProcess]:
  """``run_module(module, *args, cwd=cwd)`` for every ``(cwd, args)``."""
  return [run_module(module, *args, cwd=cwd, timeout=timeout)
          for cwd, args in cases]
