"""Benchmark: the memory estimates of vgrad.studies.footprint against the
peak resident memory of real runs.

Each case runs an entry point as a fresh process and reads its peak RSS
(its own rusage, from ``os.wait4``); a
tiny run of the same entry point gives the interpreter's baseline (JAX,
XLA, Python). The estimate is a lower bound of what the run adds to it, so
``estimate <= peak - baseline`` must hold; the ratio says how much the
bound leaves out. Sizes are chosen so that the estimate is ~0.4-2 GB.

  python -m benchmarks.footprint_benchmark
"""

import os
import subprocess
import sys
import tempfile

from benchmarks import provenance
from vgrad.studies import footprint

# (label, entry point, flags, estimate terms); baselines: the same entry
# point at a tiny size.
CASES = [
    ("train: 8 seeds x depth 10 x width 2048, digits, batch 64",
     "experiments.train",
     ["--dataset=digits", "--depth=10", "--width=2048", "--seeds=8",
      "--steps=5", "--log_every=5", "--batch_size=64"],
     lambda: footprint.training(10, 2048, "digits", 64, 8, "sgd")),
    ("jacobian_spectrum qr: depth 200 x width 128, 16 inputs",
     "experiments.jacobian_spectrum",
     ["--depth=200", "--width=128", "--method=qr", "--act=tanh"],
     lambda: footprint.spectrum(200, 128, 16, "float32", "qr", 200)),
    ("jacobian_spectrum dense: depth 4 x width 4096, 1 input",
     "experiments.jacobian_spectrum",
     ["--depth=4", "--width=4096", "--num_inputs=1", "--method=dense",
      "--act=tanh"],
     lambda: footprint.spectrum(4, 4096, 1, "float32", "dense")),
]
BASELINES = {
    "experiments.train": ["--dataset=digits", "--depth=2", "--width=8",
                          "--seeds=1", "--steps=5", "--log_every=5"],
    "experiments.jacobian_spectrum": ["--depth=2", "--width=8",
                                      "--num_inputs=1", "--method=dense"],
}


def peak_rss(module: str, args: list[str]) -> float:
  """Peak resident bytes of ``python -m module args`` (a fresh process,
  its own rusage from ``os.wait4``)."""
  with tempfile.TemporaryDirectory() as out:
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args, f"--out_dir={out}/run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=os.environ | {"MPLBACKEND": "Agg"})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
      raise RuntimeError(f"{module} {' '.join(args)} failed: "
                         f"{proc.stderr.read().decode()[-2000:]}")
  return usage.ru_maxrss * 1024.0


def main():
  base = {m: peak_rss(m, a) for m, a in BASELINES.items()}
  rows = []
  for label, module, args, terms in CASES:
    peak = peak_rss(module, args)
    added = peak - base[module]
    estimate = footprint.total(terms())
    rows.append([label, f"{estimate / 1e9:.2f}", f"{peak / 1e9:.2f}",
                 f"{base[module] / 1e9:.2f}", f"{added / 1e9:.2f}",
                 f"{estimate / added:.2f}",
                 "yes" if estimate <= added else "NO"])
  print(f"{provenance.cpu_model()}, {os.cpu_count()} CPUs; "
        f"{provenance.code_version(footprint)}\n")
  print(provenance.markdown_table(
      ["run", "estimate GB", "peak GB", "baseline GB", "peak - baseline GB",
       "estimate / added", "lower bound"], rows))


if __name__ == "__main__":
  main()
