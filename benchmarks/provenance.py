"""What a benchmark records about where and on which code it ran."""

import hashlib
import os
import platform
import subprocess

import jax


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (or platform's guess)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def device_line() -> str:
  """JAX's backend and its first device (``gpu: NVIDIA H200``, ``cpu: cpu``)
  with the JAX version: where the timed programs ran."""
  device = jax.devices()[0]
  return (f"JAX {jax.__version__} on {jax.default_backend()}: "
          f"{device.device_kind} x {jax.device_count()}")


def code_version(module) -> str:
  """The git commit, whether vgrad/ differs from it, and a digest of the
  timed module's source (``module``: e.g. ``vgrad.training.train``)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  name = os.path.relpath(module.__file__, root)
  with open(module.__file__, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:12]
  try:
    def git(*cmd):
      return subprocess.run(["git", *cmd], cwd=root, capture_output=True,
                            text=True, check=True, timeout=10).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "vgrad")
    return (f"vgrad at git {commit}"
            + (" with uncommitted changes in vgrad/" if dirty else "")
            + f"; {name} sha256 {digest}")
  except (OSError, subprocess.SubprocessError):
    return f"{name} sha256 {digest} (git unavailable)"


def load_line(when: str) -> str:
  """The 1, 5 and 15 minute load averages (other work on the machine)."""
  try:
    loads = ", ".join(f"{v:.2f}" for v in os.getloadavg())
  except OSError:
    loads = "n/a"
  return f"load average {when}: {loads}"


def markdown_table(header, body, left_columns: int = 1) -> str:
  """A Markdown table; the first ``left_columns`` columns are left-aligned,
  the rest (numbers) right-aligned. ``body`` holds rows of strings."""
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i < left_columns else "---:"
                          for i in range(len(header))) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in body]
  return "\n".join(lines)


def publish(table: str, out: str | None) -> None:
  """Prints the Markdown ``table``, and writes it to ``out`` when given."""
  print("\n" + table)
  if out:
    with open(out, "w") as f:
      f.write(table + "\n")
