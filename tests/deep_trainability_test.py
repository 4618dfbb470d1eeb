"""Tests for vgrad.studies.deep_trainability, its report and figure, and
``python -m experiments.deep_trainability``.

Science: the input-output Jacobian at initialisation of a ReLU net with
He-normal weights spreads its singular values further with every layer
(products of independent random matrices: the spread of log s grows with
depth), while a tanh net with orthogonal weights at the critical point of
small q* = 1/64, fed inputs of length q*, stays near an isometry (tanh is
nearly linear there and every W_l is orthogonal). End to end: the quick
grid's files, schema, resuming, refusal of other settings, --replot and
bad inputs (one line, exit 2, nothing written).
"""

import json
import os
import tempfile

from absl.testing import absltest
import cli_testing  # tests/cli_testing.py
import jax
import numpy as np
import pytest

from vgrad.io import schemas
from vgrad.nn import models
from vgrad.plots import trainability_plots
from vgrad.studies import deep_trainability as dt
from vgrad.studies import trainability_report as report
from vgrad.training import scanned_mlp

MODULE = "experiments.deep_trainability"
RUN_FILES = ["cells", "config.json", "deep_trainability.pdf",
             "deep_trainability.png", "report.md", "results.json"]


def _spread(arm: str, depth: int, xs: np.ndarray, width: int = 64) -> float:
  """Median over 2 seeds of the std of log10 s of d x_L / d x_0."""
  net = dt.network(arm, depth, width)
  model = models.make_mlp(**net.mlp_kwargs(), num_outputs=3)
  keys = jax.random.split(jax.random.key(0), 2)
  params = scanned_mlp.init_params(model, xs.shape[1], keys)
  return float(np.median([j["log10_sv_std"] for j in
                          dt.jacobian_spectra(net, params, xs)]))


class ReportTest(absltest.TestCase):

  def test_examples_are_scaled_to_length_d(self):
    x = np.random.default_rng(0).normal(size=(5, 7)) * [[1], [2], [3], [4],
                                                         [0]]
    scaled = dt.scale_examples(x)
    np.testing.assert_allclose(np.sum(scaled[:4] ** 2, axis=1), 7.0,
                               rtol=1e-5)
    np.testing.assert_array_equal(scaled[4], 0.0)
    # The direction is kept.
    np.testing.assert_allclose(scaled[0] / np.linalg.norm(scaled[0]),
                               x[0] / np.linalg.norm(x[0]), rtol=1e-5)

  def test_jacobian_summary_counts_exact_zeros_apart(self):
    log10 = np.array([[1.0, 0.0, -1.0, -np.inf], [0.5, -0.5, -np.inf,
                                                  -np.inf]])
    got = report.jacobian_summary(log10 * np.log(10.0), np.array([1e-9,
                                                                  2e-9]))
    nonzero = np.array([1.0, 0.0, -1.0, 0.5, -0.5])
    self.assertAlmostEqual(got["log10_sv_std"], np.std(nonzero))
    self.assertAlmostEqual(got["mean_log10_sv"], 0.0)
    self.assertAlmostEqual(got["zero_fraction"], 3 / 8)
    self.assertAlmostEqual(got["log10_condition"], 1.5)   # median(2, 1)
    s2 = np.array([100.0, 1.0, 0.01, 0, 10.0, 0.1, 0, 0])
    self.assertAlmostEqual(got["log10_gain"], np.log10(np.sqrt(s2.mean())))
    self.assertEqual(got["error_bound"], 2e-9)
    broken = report.jacobian_summary(np.array([[np.nan, 0.0]]),
                                     np.array([0.0]))
    self.assertFalse(broken["finite"])
    self.assertIsNone(broken["log10_sv_std"])

  def test_steps_to_threshold_medians_and_speedups(self):
    steps = [0, 10, 20, 30]
    curves = {"test_accuracy": [0.1, 0.4, 0.6, 0.7], "test_loss": [1] * 4,
              "train_loss": [None, 1, 1, 1]}
    seed = report.seed_record(0, steps, curves, 0.5, None, {})
    self.assertEqual(seed["steps_to_threshold"], 20)
    self.assertEqual(seed["final_test_accuracy"], 0.7)
    # A seed that never got there is infinitely slow: with 2 of 4 seeds
    # there the median is infinite, with 3 of 4 it is the mean of the two
    # middle ones.
    self.assertIsNone(report.median_steps([10, 20, None, None]))
    self.assertEqual(report.median_steps([10, 20, 40, None]), 30)
    both = report.speedup_entry(50, "dks_tanh", 400.0, 100.0, 1000)
    self.assertAlmostEqual(both["speedup"], 4.0)
    never = report.speedup_entry(50, "dks_tanh", None, 100.0, 1000)
    self.assertEqual((never["bound"], never["speedup"]), (">", 10.0))
    self.assertIn("baseline never reached the threshold in 1000 steps",
                  never["text"])
    self.assertIn("neither", report.speedup_entry(50, "a", None, None,
                                                  1000)["text"])
    # Reached by the first evaluation (step 10): it may have been faster.
    early = report.speedup_entry(50, "dks_tanh", 400.0, 10.0, 1000, 10)
    self.assertEqual((early["bound"], early["speedup"]), (">=", 40.0))

  def test_arms_are_what_their_names_say(self):
    self.assertEqual(tuple(dt.ARMS), report.ARM_ORDER)   # figure colours
    crit = dt.network("critical_tanh", 20, 8)
    self.assertEqual((crit.act, crit.init, crit.sigma_b2),
                     ("tanh", "gaussian", 0.05))
    small = dt.network("critical_orthogonal_tanh", 20, 8)
    self.assertEqual((small.act, small.init), ("tanh", "orthogonal"))
    self.assertGreater(small.sigma_w2, 1.0)      # chi_1 = 1 at q* = 1/64
    self.assertLess(small.sigma_b2, 1e-3)
    he = dt.network("he_relu", 20, 8)
    self.assertEqual((he.act, he.init, he.sigma_b2), ("relu", "he_normal",
                                                      None))
    self.assertEqual(dt.network("lsuv_relu", 20, 8).init, "lsuv")
    # TAT and DKS (their transforms solved for the depth, seconds to
    # compile): checked on the quick run's records, EndToEndTest.

  def test_bad_configs_name_the_field(self):
    for kwargs, words in (
        ({"arms": ("he_relu", "resnet")}, "arms: unknown arm(s) resnet"),
        ({"depths": ()}, "depths must name at least one"),
        ({"depths": (0,)}, "depths must be integers >= 1"),
        ({"depths": (20, 20)}, "depths lists a value twice"),
        ({"depths": (4,)}, "depths: arm tat_leaky_relu has no network"),
        ({"steps": 0}, "steps must be integers >= 1"),
        ({"threshold": 1.5}, "threshold must be in (0, 1]"),
        ({"dataset": "xor"}, "dataset must be digits or mnist")):
      with self.assertRaises(ValueError) as ctx:
        dt.check_config(dt.TrainabilityConfig(**kwargs))
      self.assertIn(words, str(ctx.exception))


@pytest.mark.slow
class JacobianScienceTest(absltest.TestCase):
  """Can fail on the science: He-ReLU's Jacobian spread at initialisation
  grows with depth; critical orthogonal tanh at small q* stays near an
  isometry at the same depths."""

  def test_he_relu_spreads_with_depth_critical_orthogonal_tanh_does_not(
      self):
    rng = np.random.default_rng(0)
    # Width 64 (the study's): at width 16 a ReLU net's Jacobian loses
    # almost all its rank by depth 24 (exact zeros, counted apart), and the
    # spread of the few nonzero values left says little.
    xs = rng.normal(size=(2, 64)).astype(np.float32)
    q_star = 1 / 64     # the critical point's own input length
    he = [_spread("he_relu", d, xs) for d in (4, 24)]
    tanh = _spread("critical_orthogonal_tanh", 24,
                   xs * np.float32(np.sqrt(q_star)))
    self.assertGreater(he[1], 2 * he[0])      # measured 0.70 -> 2.55
    self.assertGreater(he[1], 1.0)
    self.assertLess(tanh, 0.1)                # measured 0.058
    self.assertLess(tanh, he[0] / 5)


@pytest.mark.slow
class EndToEndTest(absltest.TestCase):
  """The quick grid once, then resume, refusal, --replot and bad inputs
  on its directory (one warm interpreter)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.run_dir = os.path.join(cls.tmp, "run")
    cls.first = cli_testing.run_module(MODULE, "--quick",
                                       f"--out_dir={cls.run_dir}",
                                       cwd=cls.tmp)

  def _cells(self) -> dict:
    folder = os.path.join(self.run_dir, "cells")
    out = {}
    for name in sorted(os.listdir(folder)):
      with open(os.path.join(folder, name), "rb") as f:
        out[name] = f.read()
    return out

  def test_quick_grid_writes_the_run_and_resumes(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr)
    self.assertEqual(sorted(os.listdir(self.run_dir)), RUN_FILES)
    results = schemas.load_results(self.run_dir, schemas.DEEP_TRAINABILITY)
    self.assertEqual(results["schema"], schemas.DEEP_TRAINABILITY)
    self.assertLen(results["cells"], 12)                  # 6 arms x 2
    with open(os.path.join(self.run_dir, "config.json")) as f:
      config = json.load(f)
    self.assertEqual(config["fingerprint"], results["fingerprint"])
    cell = results["cells"][0]
    self.assertLen(cell["seeds"], 2)
    seed = cell["seeds"][0]
    self.assertLen(seed["curves"]["test_accuracy"],
                   len(results["eval_steps"]))
    for key in ("steps_to_threshold", "final_test_accuracy", "diverged",
                "jacobian"):
      self.assertIn(key, seed)
    self.assertIn("log10_sv_std", cell["median"]["jacobian"])
    self.assertLen(results["speedups"], 2 * 5)
    nets = {(c["arm"], c["depth"]): c["network"] for c in results["cells"]}
    for arm in ("tat_leaky_relu", "dks_tanh"):
      self.assertEqual(nets[(arm, 24)]["act"], arm)
      self.assertEqual(nets[(arm, 24)]["act_params"]["depth"], 24)
      self.assertEqual((nets[(arm, 24)]["init"],
                        nets[(arm, 24)]["sigma_w2"]), ("orthogonal", 1.0))
    with open(os.path.join(self.run_dir, "report.md")) as f:
      self.assertIn("Speed-up over `he_relu`", f.read())
    # The same command again: every cell reused, none rewritten.
    before = self._cells()
    again = cli_testing.run_module(MODULE, "--quick",
                                   f"--out_dir={self.run_dir}", cwd=self.tmp)
    self.assertEqual(again.returncode, 0, again.stderr)
    self.assertIn("computed 0 cells, reused 12", again.stdout)
    self.assertEqual(self._cells(), before)
    # Other settings into the same directory: refused, nothing touched.
    other = cli_testing.run_module(MODULE, "--quick", "--lr=0.2",
                                   f"--out_dir={self.run_dir}", cwd=self.tmp)
    self.assertEqual(other.returncode, 2)
    self.assertIn("--out_dir", other.stderr)
    self.assertIn(f"lr {dt.TrainabilityConfig().lr!r} there, 0.2 here",
                  other.stderr)
    self.assertEqual(self._cells(), before)

  def test_replot_redraws_from_results_alone(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr)
    for name in ("report.md", "deep_trainability.png"):
      os.remove(os.path.join(self.run_dir, name))
    proc = cli_testing.run_module(MODULE, f"--replot={self.run_dir}",
                                  cwd=self.tmp)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertTrue(os.path.isfile(os.path.join(self.run_dir, "report.md")))
    results = schemas.load_results(self.run_dir, schemas.DEEP_TRAINABILITY)
    fig = trainability_plots.plot_trainability(results)
    self.assertLen(fig.axes, 3)
    self.assertEqual(fig.axes[0].get_xscale(), "log")

  def test_bad_inputs_one_line_nothing_written(self):
    cases = [
        (["--arms=he_relu,resnet"], ["--arms", "resnet", "dks_tanh"]),
        (["--arms="], ["--arms", "at least one"]),
        (["--depths=20,0"], ["--depths", "integers >= 1"]),
        (["--depths="], ["--depths", "empty"]),
        (["--depths=4"], ["--depths=4", "tat_leaky_relu"]),
        (["--steps=0"], ["--steps", ">= 1"]),
        (["--lr=-1"], ["--lr", "> 0"]),
        (["--lr=nan"], ["--lr", "nan"]),
        (["--quick", "--depths=16"], ["--quick", "--depths"]),
        (["--optimizer=adam", "--momentum=0.5"], ["--momentum", "adam"]),
        (["--data_dir=/tmp"], ["--data_dir", "--dataset=mnist"]),
        (["--replot=x", "--quick"], ["--replot", "--quick"]),
        (["--replot={tmp}/nothing"], ["--replot", "nothing"]),
        (["--out_dir=/dev/null/run"], ["--out_dir", "/dev/null"]),
    ]
    for args, needles in cases:
      folder = os.path.join(self.tmp, "bad")
      os.makedirs(folder, exist_ok=True)
      args = [a.format(tmp=folder) for a in args]
      proc = cli_testing.run_module(MODULE, *args, cwd=folder)
      lines = proc.stderr.strip().splitlines()
      self.assertEqual(proc.returncode, 2, (args, proc.stderr))
      self.assertLen(lines, 1, (args, proc.stderr))
      self.assertTrue(lines[0].startswith("error: "), lines[0])
      for needle in needles:
        self.assertIn(needle, lines[0], args)
      self.assertEqual(os.listdir(folder), [], args)


if __name__ == "__main__":
  absltest.main()
