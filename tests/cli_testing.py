"""Running an entry point as a user does, for the end-to-end tests."""

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
