"""Test configuration: CPU only, strict rank promotion, quiet logs, and one
persistent compilation cache for the whole run."""

import atexit
import gc
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

# One JAX persistent compilation cache for the whole test run, shared
# through the environment with the pytest-xdist workers (started after this
# file is imported in the controlling process) and with every entry point
# the tests run as a subprocess: those compile the same programs again and
# again (the same tiny networks, the same tables, plots of the same runs),
# and a cache hit skips XLA's compilation. Every program is cached, however
# fast it compiled (a subprocess's start-up is made of many small ones).
# The process that made the directory removes it at exit; a directory given
# in the environment is the caller's and is kept.
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
  _cache_dir = tempfile.mkdtemp(prefix="vgrad-test-jax-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# JAX's own switch for programs whose optimisation costs more than it saves
# (``jax_disable_most_optimizations``: XLA's LLVM back end at level 0, its
# expensive passes off), for the tests and, through the environment, every
# entry point they run. The suite is mostly the compilation of small
# programs that then run for milliseconds: it takes ~1.3x less time this way
# (BUILD_NOTES.md, "Test suite"). The programs compute the same operations;
# their float32 rounding can differ in the last bits (another GEMM kernel),
# which the suite's tolerances already allow for. JAX_DISABLE_MOST_OPTIMIZATIONS=0
# runs the suite with XLA's default optimisation, as users run.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# XLA:CPU's classic (LLVM IR) emitters compile the suite's small programs
# ~1.5x faster than jaxlib 0.10's default MLIR fusion emitters; the programs
# compute the same operations. (They once hung the qr method: jaxlib's
# batched LAPACK calls wait on the intra-op pool, and two in flight deadlock
# a 2-core machine whatever the emitters; vgrad.nn.linalg now makes every
# LAPACK call on CPU unbatched, and tests/linalg_test.py checks it.)
# A caller's own setting of the flag wins.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = ("--xla_cpu_use_fusion_emitters=false "
                             + os.environ.get("XLA_FLAGS", "")).strip()

import jax  # noqa: E402  pylint: disable=g-import-not-at-top

# Catch silent broadcasting between arrays of different rank (equinox does
# the same in its tests).
jax.config.update("jax_numpy_rank_promotion", "raise")

from absl import flags  # noqa: E402  pylint: disable=g-import-not-at-top

# absltest helpers (create_tempdir) read flags; under pytest nobody parses
# them, so take the defaults.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


# Python's cyclic garbage collector, tuned for a long test process: JAX's
# tracing allocates millions of short-lived containers, and with the
# default thresholds (700, 10, 10) a worker ran ~500 collections per 20 s
# of tests, 5-8 % of its time, the full ones walking every object the
# imports made. Collections run 70x less often here, and everything alive
# once the tests are collected (JAX, Flax, the test modules) is frozen out
# of them (measured on models_test + initializers_test: 0.9-1.5 s of GC
# -> 0.3 s). Memory held by cycles is released at the next collection.
gc.set_threshold(50_000, 20, 100)


def pytest_collection_finish(session):
  del session
  gc.collect()
  gc.freeze()


def pytest_sessionfinish(session, exitstatus):
  """Lets a test process exit without tidying what it is about to drop.

  The process exits next and the operating system takes its memory back.
  Two tidy-ups after the last test took ~5 s per pytest-xdist worker, at
  the very end of the run where nothing else runs beside them: JAX's exit
  handler (``clean_up``: destroying the CPU client with the ~1 000
  executables the worker compiled, then clearing every tracing cache), and
  pytest's last full garbage collection (which walks every object the
  tests left in JAX's caches; frozen here, it walks none: garbage cycles
  left at the end are not collected, and an exception raised in a
  ``__del__`` of one of them goes unreported).
  """
  del session, exitstatus
  gc.freeze()
  from jax._src import api  # pylint: disable=g-import-not-at-top
  clean_up = getattr(api, "clean_up", None)   # private: may move in a JAX
  if clean_up is not None:                    # release (then it just runs)
    atexit.unregister(clean_up)


# Test files whose classes share runs computed once per process
# (functools.cache at module level): pytest-xdist keeps each of them whole
# on one worker, so the shared runs are computed once per test run.
ONE_WORKER_FILES = ("tests/sweep_test.py",)


def _scope(nodeid: str) -> str:
  """The unit pytest-xdist hands to a worker: the test class (loadscope),
  or the whole file for ONE_WORKER_FILES."""
  path = nodeid.split("::", 1)[0]
  return path if path in ONE_WORKER_FILES else nodeid.rsplit("::", 1)[0]


def pytest_xdist_make_scheduler(config, log):
  """``--dist loadscope`` with :func:`_scope`'s units (None: xdist's own
  scheduler for any other mode)."""
  if config.getoption("dist") != "loadscope":
    return None
  from xdist.scheduler import LoadScopeScheduling  # pylint: disable=g-import-not-at-top

  class Scheduling(LoadScopeScheduling):

    def _split_scope(self, nodeid):
      return _scope(nodeid)

  return Scheduling(config, log)


def pytest_collection_modifyitems(config, items):
  """Units holding a slow test first; the rest keep their order.

  pytest-xdist hands out whole units (``--dist loadscope``: test classes,
  see :func:`_scope`) in the order they were collected; starting the long
  end-to-end ones first keeps one worker from finishing a long class alone
  at the end. Whole units move (a stable sort), so a class's tests stay
  together and its shared setUpClass runs once in a serial run too.
  """
  del config
  scope = lambda item: _scope(item.nodeid)
  slow = {scope(i) for i in items if i.get_closest_marker("slow")}
  items.sort(key=lambda item: scope(item) not in slow)
