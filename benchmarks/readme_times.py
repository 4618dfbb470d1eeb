"""Reruns the README's timed commands and reports their CPU and wall time.

Every time the README states comes from this script: each command runs as
a fresh process (``python -m ...``, as a user types it, into a temporary
run directory), and its CPU time (user + system, all threads, from
``os.wait4``), wall time and peak memory are read when it ends. CPU time
is what the README quotes first: it moves far less than wall time with
the machine's other load (this project's VMs drift 1.2-1.8x in wall time
within an hour) and it adds up the cores a run uses.

  python -m benchmarks.readme_times                  # every command
  python -m benchmarks.readme_times --only main,deep # some of them

The table goes to stdout as Markdown (benchmarks/results_readme_times_cpu.md
holds a run).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import provenance

# name -> (the README's command, after ``python -m``).
COMMANDS = {
    "main": "experiments.jacobian_spectrum --act=sigmoid --depth=10",
    "deep": "experiments.jacobian_spectrum --act=sigmoid --depth=10000 "
            "--width=16",
    "xor_deep": "experiments.lecture --preset=xor_deep",
    "digits_deep": "experiments.lecture --preset=digits_deep",
    "init_failures": "experiments.lecture --preset=init_failures",
    "gradient_histograms": "experiments.gradient_histograms",
    "dynamical_isometry": "experiments.dynamical_isometry",
    "phase_diagram": "experiments.phase_diagram",
    "activation_table": "experiments.activation_table",
}


def run(command: str, keep: str | None = None) -> dict:
  """CPU seconds, wall seconds and peak GB of one fresh run of
  ``python -m command``, and its verdict line; ``keep``: the run
  directory to write (kept), else a temporary one."""
  with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", *command.split(),
         f"--out_dir={keep or os.path.join(out, 'run')}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=os.environ | {"MPLBACKEND": "Agg"})
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
  if os.waitstatus_to_exitcode(status):
    raise RuntimeError(f"{command} failed:\n{output[-3000:]}")
  lines = [l for l in output.splitlines() if l.startswith("verdict:")]
  return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall,
          "peak_gb": usage.ru_maxrss * 1024 / 1e9,
          "verdict": lines[-1] if lines else ""}


def _minutes(seconds: float) -> str:
  return (f"{seconds:.0f} s" if seconds < 90
          else f"{int(seconds // 60)} min {seconds % 60:.0f} s")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default=",".join(COMMANDS),
                      help="comma-separated names of: " + ", ".join(COMMANDS))
  parser.add_argument("--keep_dir", default=None,
                      help="keep each run's directory as KEEP_DIR/<name>")
  args = parser.parse_args(argv)
  names = args.only.split(",")
  unknown = [n for n in names if n not in COMMANDS]
  if unknown:
    parser.error(f"--only: unknown {', '.join(unknown)}; valid names: "
                 f"{', '.join(COMMANDS)}")
  rows = []
  for name in names:
    r = run(COMMANDS[name], args.keep_dir and os.path.join(args.keep_dir,
                                                           name))
    print(f"{name}: {r['cpu']:.0f} CPU-s, {r['wall']:.0f} s wall",
          file=sys.stderr, flush=True)
    rows.append([f"`python -m {COMMANDS[name]}`", _minutes(r["cpu"]),
                 _minutes(r["wall"]), f"{r['peak_gb']:.2f}",
                 r["verdict"].removeprefix("verdict: ")])
  print(f"{provenance.cpu_model()}, {os.cpu_count()} CPUs; "
        f"{provenance.code_version(provenance)}; "
        f"{provenance.load_line('at the end')}\n")
  print(provenance.markdown_table(
      ["command", "CPU time", "wall", "peak GB", "verdict (spectrum runs)"],
      rows))


if __name__ == "__main__":
  main()
