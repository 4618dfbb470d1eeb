"""One bad-input suite over every entry point (issue 13, item 8).

Each class of bad input (a NaN or Inf in a float flag, a size beyond the
memory the run may use, an output folder that cannot be written, a missing
input folder, a corrupt data file, a torn results file, an existing run
without --overwrite) must end in one line on stderr naming the flag, exit
status 2, no traceback, nothing written and earlier files untouched. Every
case is refused before any work (sizes before any allocation), so the whole
file runs in seconds: each entry point's cases share one warm interpreter
(``cli_testing.run_cases``).
"""

import gzip
import hashlib
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import cli_testing  # tests/cli_testing.py
import numpy as np

from vgrad.training import data

TORN_JSON = '{"schema": "vgrad.jacobian_spectrum/2", "layers": [1, 2'
# A size no machine holds (tens of TB), and one refused by --memory_gb=1.
HUGE = "--width=1000000"
LARGE = ["--width=20000", "--memory_gb=1"]

# (entry point, case name, args, words the one line must hold). In args,
# {tmp} is the case's own folder (a fresh one, compared before and after),
# {mnist} a folder of MNIST files with a truncated training-image file,
# {torn} a run folder whose results file is torn.
CASES = {
    "experiments.jacobian_spectrum": [
        ("nan", ["--sigma_w2=nan"], ["--sigma_w2", "nan"]),
        ("inf", ["--sigma_b2=inf"], ["--sigma_b2", "inf"]),
        ("huge", [HUGE], ["--width=1000000", "GB"]),
        ("memory_gb", LARGE, ["--width=20000", "--memory_gb=1"]),
        ("inputs", ["--num_inputs=10000000", "--memory_gb=1"],
         ["--num_inputs=10000000"]),
        ("qr_layers", ["--depth=400", "--method=qr", "--memory_gb=1"],
         ["--qr_layers", "triangular factors"]),
        ("cnn", ["--model=cnn", "--width=64", "--image_size=64",
                 "--memory_gb=1"], ["--width=64", "--method=lanczos"]),
        ("bad_memory_gb", ["--memory_gb=0"], ["--memory_gb", "> 0"]),
        ("out_dir", ["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
        ("existing", ["--out_dir={tmp}/old"], ["--out_dir", "--overwrite"]),
        ("critical_none", ["--act=relu", "--init=critical", "--sigma_b2=0.05"],
         ["--init=critical", "relu has no critical point", "sigma_b2=0.05"]),
        ("critical_sigma_w2", ["--init=critical", "--sigma_w2=2"],
         ["--sigma_w2", "--init=critical chooses it"]),
        ("q_star_alone", ["--q_star=0.5"], ["--q_star", "--init=critical"]),
        ("q_star_and_sigma_b2", ["--init=critical", "--q_star=0.5",
                                 "--sigma_b2=0.1"], ["--q_star", "--sigma_b2"]),
        ("critical_model", ["--model=cnn", "--init=critical"],
         ["--init=critical", "--model=mlp"]),
        ("tat_unreachable", ["--act=tat_leaky_relu", "--depth=3"],
         ["--act=tat_leaky_relu", "--depth=3", "TAT cannot reach",
          "c_val_0_target=0.9"]),
        ("shaping_target_range", ["--act=dks_tanh", "--depth=8",
                                  "--shaping_target=0.5"],
         ["--shaping_target=0.5", "c_slope_1_target", "> 1"]),
        ("shaping_target_base", ["--act=tanh", "--shaping_target=1.2"],
         ["--shaping_target", "transformed --act", "dks_tanh"]),
    ],
    "experiments.dynamical_isometry": [
        ("nan", ["--sigma_b2=nan"], ["--sigma_b2", "nan"]),
        ("huge", [HUGE], ["--width=1000000", "GB"]),
        ("memory_gb", ["--width=20000", "--depths=2", "--memory_gb=1"],
         ["--width=20000", "--memory_gb=1"]),
        ("out_dir", ["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
    ],
    "experiments.deep_trainability": [
        ("arm", ["--arms=foo"], ["--arms", "unknown arm", "he_relu"]),
        ("tat_depth", ["--depths=4"], ["--depths=4", "tat_leaky_relu",
                                       "TAT cannot reach"]),
        ("quick_depths", ["--quick", "--depths=20"], ["--quick", "--depths"]),
    ],
    "experiments.train": [
        ("inf", ["--lr=inf"], ["--lr", "inf"]),
        ("critical_none", ["--act=tanh,relu", "--init=critical",
                           "--sigma_b2=0.05"],
         ["--init=critical", "relu has no critical point"]),
        ("tat_unreachable", ["--act=tat_tanh,tat_softplus", "--depth=4",
                         "--shaping_target=1e9"],
         ["--act=tat_tanh", "--shaping_target=1e+09", "no transform"]),
        ("huge", [HUGE], ["--width=1000000", "GB"]),
        ("seeds", ["--seeds=100000000", "--memory_gb=1"],
         ["--seeds=100000000"]),
        ("mnist", ["--dataset=mnist", "--data_dir={mnist}"], ["--data_dir"]),
        ("out_dir", ["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
        ("existing", ["--out_dir={tmp}/old"], ["--out_dir", "--overwrite"]),
    ],
    "experiments.lecture": [
        ("seeds", ["--preset=xor_deep", "--seeds=100000000",
                   "--memory_gb=1"], ["--seeds=100000000"]),
        ("mnist", ["--preset=digits_deep", "--arms=4", "--data_dir={mnist}"],
         ["--data_dir"]),
        ("out_dir", ["--preset=xor_deep", "--out_dir=/dev/null/run"],
         ["--out_dir", "/dev/null"]),
    ],
    "experiments.gradient_histograms": [
        ("nan", ["--memory_gb=nan"], ["--memory_gb", "nan"]),
        ("huge", [HUGE], ["--width=1000000", "GB"]),
        ("out_dir", ["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
        ("torn", ["--replot={torn}"], ["--replot"]),
    ],
    "experiments.phase_diagram": [
        ("nan", ["--lr=nan"], ["--lr", "nan"]),
        ("huge", [HUGE], ["--width=1000000", "GB"]),
        ("seeds", ["--seeds=10000000", "--memory_gb=1"],
         ["--seeds=10000000"]),
        ("mnist", ["--dataset=mnist", "--data_dir={mnist}"], ["--data_dir"]),
        ("out_dir", ["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
    ],
    "experiments.activation_table": [
        ("inf", ["--lr=inf"], ["--lr", "inf"]),
        ("huge", [HUGE], ["--width=1000000", "GB"]),
        ("memory_gb", ["--width=20000", "--memory_gb=1"],
         ["--width=20000", "--memory_gb=1"]),
        ("bad_memory_gb", ["--memory_gb=-1"], ["--memory_gb", "> 0"]),
        ("mnist", ["--data_dir={mnist}"], ["--data_dir"]),
    ],
    "experiments.sweep": [
        ("nan", ["--lr=nan"], ["--lr", "nan"]),
        ("huge", ["--widths=1000000"], ["--widths=1000000", "GB"]),
        ("seeds", ["--seeds=100000000", "--memory_gb=1"],
         ["--seeds=100000000"]),
        ("train_widths", ["--task=train", "--widths=64,20000",
                          "--memory_gb=1"], ["--widths=64,20000"]),
        ("mnist", ["--task=train", "--dataset=mnist", "--data_dir={mnist}"],
         ["--data_dir"]),
        ("out_dir", ["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
    ],
    "experiments.plot_jacobian_spectrum": [
        ("missing", ["--run_dir={tmp}/nothing"], ["--run_dir", "nothing"]),
        ("torn", ["--run_dir={torn}"], ["--run_dir"]),
        ("out_stem", ["--run_dir={torn}", "--out_stem={tmp}/no/fig"],
         ["--run_dir"]),
    ],
    "experiments.plot_training": [
        ("missing", ["--run_dir={tmp}/nothing"], ["--run_dir", "nothing"]),
        ("torn", ["--run_dir={torn}"], ["--run_dir"]),
    ],
    "experiments.replot": [
        ("missing", ["--run_dir={tmp}/nothing"], ["--run_dir", "nothing"]),
        ("torn", ["--run_dir={torn}"], ["--run_dir"]),
    ],
    "experiments.signal_propagation": [
        ("inf", ["--sigma_b2=inf"], ["--sigma_b2", "inf"]),
        ("huge", [HUGE], ["--width=1000000", "GB"]),
        ("inputs", ["--num_inputs=100000", "--memory_gb=1"],
         ["--num_inputs=100000", "mean-field"]),
        ("out_dir", ["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
        ("existing", ["--out_dir={tmp}/old"], ["--out_dir", "--overwrite"]),
        ("torn", ["--replot={torn}"], ["--replot"]),
    ],
    "experiments.coord_check": [
        ("nan", ["--lr=nan"], ["--lr", "nan"]),
        ("huge", ["--widths=64,1000000", "--memory_gb=1"],
         ["--widths=64,1000000", "--memory_gb=1"]),
        ("out_dir", ["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
        ("existing", ["--out_dir={tmp}/old"], ["--out_dir", "--overwrite"]),
        ("widths", ["--widths=64"], ["--widths", "at least two"]),
        ("torn", ["--replot={torn}"], ["--replot"]),
    ],
    "experiments.gallery": [
        ("out_dir", ["--runs_dir={tmp}/old", "--out_dir=/dev/null/figures"],
         ["--out_dir", "/dev/null"]),
    ],
}

PARAMS = [(f"{module.split('.')[1]}_{name}", module, name)
          for module, cases in CASES.items() for name, _, _ in cases]


def _write_mnist(directory: str) -> None:
  """Small MNIST files with the training images cut in half."""
  rng = np.random.default_rng(0)
  for name, array in {
      "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
      "train-labels-idx1-ubyte": np.arange(12) % 10,
      "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
      "t10k-labels-idx1-ubyte": np.arange(5) % 10}.items():
    data.write_idx(os.path.join(directory, name), array.astype(np.uint8))
  path = os.path.join(directory, "train-images-idx3-ubyte")
  with open(path, "rb") as f:
    raw = f.read()
  os.remove(path)
  with open(path + ".gz", "wb") as f:
    f.write(gzip.compress(raw)[:200])


def _write_torn(directory: str) -> None:
  """A run folder whose every results file is torn mid-write."""
  for name in ("results.json", "metrics.json", "config.json"):
    with open(os.path.join(directory, name), "w") as f:
      f.write(TORN_JSON)


def _snapshot(root: str) -> dict:
  """Every file under ``root`` and its bytes' digest."""
  out = {}
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).digest()
  return out


class BadInputTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.mnist = os.path.join(root, "mnist")
    os.makedirs(cls.mnist)
    _write_mnist(cls.mnist)
    cls.mnist_files = _snapshot(cls.mnist)
    cls.before, cls.after, cls.procs = {}, {}, {}
    for module, cases in CASES.items():
      runs = []
      for name, args, _ in cases:
        tmp = os.path.join(root, module, name)
        torn = os.path.join(tmp, "torn")
        os.makedirs(torn)
        _write_torn(torn)
        os.makedirs(os.path.join(tmp, "old"))
        with open(os.path.join(tmp, "old", "results.json"), "w") as f:
          f.write('{"earlier": "results"}')
        key = (module, name)
        cls.before[key] = _snapshot(tmp)
        runs.append((tmp, [a.format(tmp=tmp, torn=torn, mnist=cls.mnist)
                           for a in args]))
      for (name, _, _), (tmp, _), proc in zip(
          cases, runs, cli_testing.run_cases(module, runs)):
        cls.procs[(module, name)] = proc
        cls.after[(module, name)] = _snapshot(tmp)

  @parameterized.named_parameters(*PARAMS)
  def test_one_line_exit_2_nothing_written(self, module, name):
    proc = self.procs[(module, name)]
    needles = next(n for c, _, n in CASES[module] if c == name)
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertTrue(lines[0].startswith("error: "), lines[0])
    for needle in needles:
      self.assertIn(needle, lines[0])
    # Nothing written, earlier files untouched (the torn run, the old run).
    self.assertEqual(self.after[(module, name)], self.before[(module, name)])
    self.assertEqual(_snapshot(self.mnist), self.mnist_files)


if __name__ == "__main__":
  absltest.main()
