"""Running an entry point as a user does, for the end-to-end tests.

``run_module("experiments.train", *args, cwd=...)`` answers what ``python -m
experiments.train args`` answers in ``cwd``: exit status, stdout, stderr.
It runs the case in a warm interpreter kept for that entry point (one per
entry point per test process) instead of a new ``python -m`` each time:
a new interpreter costs ~4 s of Python, JAX, Flax and matplotlib start-up
on a 2-core CPU, and the warm one also keeps the programs it compiled, so
the second run of an entry point compiles only what is new. The warm
interpreters are forked from a ``multiprocessing`` forkserver that paid
that start-up once. Each case still
goes through the entry point's real command line (absl parsing, flag
validators, ``main``, exit status) with every flag reset to its default,
from its own working directory, with JAX's configuration (``jax_enable_x64``)
and matplotlib's open figures restored in between. ``fresh=True`` runs a
new ``python -m`` instead: for the runs that must prove a cold start works.
Tests that need a process of their own (SIGKILL, several processes, another
device count) start it themselves.
"""

import atexit
import contextlib
import importlib.util
import multiprocessing
import os
import pkgutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict[str, str]:
  return dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
              PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _redirect(out_path: str, err_path: str):
  """File descriptors 1 and 2 (what libraries write, C++ logs included)
  appended to ``out_path`` and ``err_path``."""
  for fd, path in ((1, out_path), (2, err_path)):
    f = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.dup2(f, fd)
    os.close(f)


def _serve(module: str, conn, log_path: str):
  """The warm interpreter of one entry point: a child of the forkserver.

  It runs the module once as ``python -m`` does (runpy, as __main__: its
  flags are defined, its footer runs) with ``cli.run`` standing in to keep
  the ``main`` it is given, then takes one case ``[cwd, args]`` at a time
  from ``conn``, runs it through the real ``cli.run`` (the absl app.run the
  command line uses) and answers ``[code, stdout, stderr]``. Anything a
  library writes straight to file descriptors 1 and 2 (C++ logs) goes to
  ``log_path``. The tests name the entry point by its module name only:
  none imports ``experiments``.
  """
  import contextlib  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  import runpy  # pylint: disable=g-import-not-at-top
  import traceback  # pylint: disable=g-import-not-at-top

  from absl import flags  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  from vgrad.cli import app as cli  # pylint: disable=g-import-not-at-top

  _redirect(log_path, log_path)
  path = importlib.util.find_spec(module).origin
  mains, run = [], cli.run
  cli.run = mains.append
  try:
    runpy.run_module(module, run_name="__main__")
  finally:
    cli.run = run
  (main,) = mains
  home, x64 = os.getcwd(), jax.config.jax_enable_x64
  while True:
    try:
      cwd, args = conn.recv()
    except EOFError:
      return
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
      except BaseException:  # pylint: disable=broad-except
        traceback.print_exc()
        code = 1
    os.chdir(home)
    jax.config.update("jax_enable_x64", x64)
    plt.close("all")
    conn.send([code, out.getvalue(), err.getvalue()])


# The warm interpreters are forked from one forkserver per test process,
# which has imported JAX, Flax, Optax, matplotlib and vgrad's whole
# command-line layer once (~4.5 s of start-up on a 2-core CPU, 1.2 s of it
# ml_dtypes registering NumPy loops); each entry point's interpreter then
# starts in milliseconds. Also imported there: what a first PDF figure
# (matplotlib's PDF backend, fontTools) and a first LAPACK call (jaxlib asks
# SciPy for its kernels) would import in every interpreter, ~0.5 s each.
# The forkserver starts no JAX backend (nothing runs there), so no thread
# is forked mid-flight; JAX's backend starts in each child.
_PRELOAD = (["jax", "flax.linen", "optax", "matplotlib.pyplot",
             "matplotlib.backends.backend_pdf", "scipy.linalg", "absl.flags",
             "vgrad"]
            + [f"vgrad.cli.{m.name}" for m in pkgutil.iter_modules(
                importlib.util.find_spec("vgrad.cli").submodule_search_locations)]
            + [__name__])
_context = None


def _forkserver():
  global _context
  if _context is None:
    _context = multiprocessing.get_context("forkserver")
    _context.set_forkserver_preload(_PRELOAD)
  return _context


# Warm interpreters by entry point, least recently used first. At most
# MAX_SERVERS stay alive per test process (each holds its compiled programs,
# a few hundred MB), so many xdist workers cannot fill the memory. (With 3,
# a 2-worker run restarted four entry points once each, losing what they
# had compiled.)
MAX_SERVERS = 5
_servers: dict[str, tuple[multiprocessing.Process, object, str]] = {}


def _stop(module: str):
  proc, conn, log_path = _servers.pop(module)
  proc.kill()
  proc.join()
  conn.close()
  os.remove(log_path)


def _stop_servers():
  for module in list(_servers):
    _stop(module)


atexit.register(_stop_servers)


def _server(module: str):
  if module in _servers:
    if _servers[module][0].is_alive():
      _servers[module] = _servers.pop(module)   # most recently used
      return _servers[module]
    _stop(module)
  while len(_servers) >= MAX_SERVERS:
    _stop(next(iter(_servers)))
  context = _forkserver()
  ours, theirs = context.Pipe()
  fd, log_path = tempfile.mkstemp(prefix="vgrad-cli-", suffix=".log")
  os.close(fd)
  proc = context.Process(target=_serve, args=(module, theirs, log_path),
                         daemon=True)
  with _environment(_env()):
    proc.start()
  theirs.close()
  _servers[module] = (proc, ours, log_path)
  return _servers[module]


@contextlib.contextmanager
def _environment(env: dict[str, str]):
  """``os.environ`` set to ``env`` while the forkserver starts (it keeps
  the environment it started with)."""
  saved = dict(os.environ)
  os.environ.clear()
  os.environ.update(env)
  try:
    yield
  finally:
    os.environ.clear()
    os.environ.update(saved)


def _ask(module: str, cwd: str, args: list[str],
         timeout: float) -> subprocess.CompletedProcess:
  proc, conn, log_path = _server(module)
  conn.send([cwd, list(args)])
  if not conn.poll(timeout):
    _stop(module)
    raise subprocess.TimeoutExpired([module, *args], timeout)
  try:
    code, out, err = conn.recv()
  except EOFError:   # the interpreter died: report it as python -m would
    proc.join()
    with open(log_path) as f:
      stderr = f.read()
    code = proc.exitcode
    _stop(module)
    return subprocess.CompletedProcess([module, *args], code, "", stderr)
  return subprocess.CompletedProcess([module, *args], code, out, err)


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


def _run_once(module: str, cwd: str, args: list[str], out_path: str,
              err_path: str, num_cpu_devices: int | None):
  """A child of the forkserver that runs ``python -m module args`` once
  (file descriptors 1 and 2 to ``out_path`` and ``err_path``) on
  ``num_cpu_devices`` CPU devices (default one) and exits with the entry
  point's status."""
  import runpy  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top

  _redirect(out_path, err_path)
  if num_cpu_devices:
    jax.config.update("jax_num_cpu_devices", num_cpu_devices)
  os.chdir(cwd)
  sys.argv = [module] + args
  runpy.run_module(module, run_name="__main__", alter_sys=True)


def _temp_logs() -> tuple[str, str]:
  """Two new empty files for a child's stdout and stderr."""
  paths = []
  for name in ("out", "err"):
    fd, path = tempfile.mkstemp(prefix=f"vgrad-cli-{name}-", suffix=".log")
    os.close(fd)
    paths.append(path)
  return paths[0], paths[1]


class Started:
  """An entry point running in its own process (:func:`start_module`)."""

  def __init__(self, proc: multiprocessing.Process, out_path: str,
               err_path: str):
    self._proc, self._paths = proc, (out_path, err_path)
    self.pid = proc.pid

  def poll(self) -> int | None:
    """The exit status, or None while it runs (a signal: its negative)."""
    return self._proc.exitcode

  def wait(self, timeout: float | None = None) -> int | None:
    self._proc.join(timeout)
    return self._proc.exitcode

  def stdout(self) -> str:
    """What it wrote to stdout so far."""
    with open(self._paths[0]) as f:
      return f.read()

  def stderr(self) -> str:
    """What it wrote to stderr so far."""
    with open(self._paths[1]) as f:
      return f.read()

  def output(self) -> str:
    """Everything it wrote to stdout and stderr so far."""
    return self.stdout() + self.stderr()

  def close(self):
    if self._proc.exitcode is None:
      self._proc.kill()
      self._proc.join()
    for path in self._paths:
      os.remove(path)


def start_module(module: str, *args: str, cwd: str,
                 num_cpu_devices: int | None = None) -> Started:
  """``python -m module args`` started in ``cwd`` in a new process, without
  waiting: a child of the forkserver (the imports already paid), for tests
  that signal a run in flight or run several processes at once, on
  ``num_cpu_devices`` CPU devices (JAX's ``jax_num_cpu_devices``; default
  one). ``close()`` it when done."""
  out_path, err_path = _temp_logs()
  proc = _forkserver().Process(
      target=_run_once,
      args=(module, cwd, list(args), out_path, err_path, num_cpu_devices),
      daemon=True)
  with _environment(_env()):
    proc.start()
  return Started(proc, out_path, err_path)


def _run_code(code: str, argv: list[str], cwd: str, out_path: str,
              err_path: str, num_cpu_devices: int | None):
  """A child of the forkserver that runs ``python -c code argv`` (stdout
  and stderr to the two files) with JAX's CPU backend split into
  ``num_cpu_devices`` devices (it has not started yet in this process)."""
  import traceback  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top

  _redirect(out_path, err_path)
  if num_cpu_devices:
    jax.config.update("jax_num_cpu_devices", num_cpu_devices)
  os.chdir(cwd)
  sys.argv = ["-c"] + argv
  try:
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})  # pylint: disable=exec-used
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    sys.exit(1)


def run_python(code: str, *argv: str, cwd: str, timeout: float = 300,
               num_cpu_devices: int | None = None
               ) -> subprocess.CompletedProcess:
  """``python -c code argv`` in ``cwd``, as a child of the forkserver (the
  imports already paid), on ``num_cpu_devices`` CPU devices (JAX's
  ``jax_num_cpu_devices``; default one); output captured as text."""
  paths = _temp_logs()
  try:
    proc = _forkserver().Process(
        target=_run_code,
        args=(code, list(argv), cwd, *paths, num_cpu_devices), daemon=True)
    with _environment(_env()):
      proc.start()
    proc.join(timeout)
    if proc.exitcode is None:
      proc.kill()
      proc.join()
      raise subprocess.TimeoutExpired(["python", "-c", "..."], timeout)
    out, err = (open(path).read() for path in paths)  # pylint: disable=consider-using-with
    return subprocess.CompletedProcess(["python", "-c", "...", *argv],
                                       proc.exitcode, out, err)
  finally:
    for path in paths:
      os.remove(path)

