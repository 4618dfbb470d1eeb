"""Tests for vgrad.studies.isometry_study, vgrad.plots.isometry_plots and the entry points
``experiments.dynamical_isometry`` / ``experiments.replot``.
"""

import json
import math
import os

from absl.testing import absltest
import chex
import cli_testing  # tests/cli_testing.py
import jax
import numpy as np
import pytest

from vgrad.plots import isometry_plots
from vgrad.studies import isometry_study


class DistanceTest(absltest.TestCase):

  def test_cdf_counts_mass_below_the_grid(self):
    # Uniform density 1 on [0, 1] seen only on [0.5, 1]: F(0.5) = 0.5.
    grid = np.linspace(0.5, 1.0, 101)
    cdf = isometry_study.predicted_cdf(grid, np.ones_like(grid))
    np.testing.assert_allclose(cdf, grid, atol=1e-12)

  def test_ks_of_exact_quantiles_is_half_a_step(self):
    # n values at the midpoint quantiles of U(0, 1): the KS distance of
    # the empirical CDF to the true one is exactly 1 / (2 n).
    n = 200
    values = (np.arange(n) + 0.5) / n
    grid = np.linspace(0.0, 1.0, 1001)
    d = isometry_study.ks_distance(values, 0.0, grid, np.ones_like(grid))
    self.assertAlmostEqual(d, 1 / (2 * n), places=9)

  def test_values_below_the_floor_only_count_as_mass(self):
    # Half the values are unresolved "zeros" below the floor 0.5; the law
    # is U(0, 1), whose mass below 0.5 is also one half: distance ~ 0.
    n = 400
    resolved = 0.5 + (np.arange(n // 2) + 0.5) / n
    junk = np.full(n // 2, 1e-9)
    grid = np.linspace(0.5, 1.0, 501)
    d = isometry_study.ks_distance(np.concatenate([junk, resolved]), 0.5,
                                   grid, np.ones_like(grid))
    self.assertLess(d, 1.5 / n)


class OperatingPointTest(absltest.TestCase):
  """In float64, as the study runs by default (IsometryConfig.dtype): the
  mean-field programs compiled here are the ones MeasurementTest and the
  entry point's run need again (the persistent compilation cache serves
  them to the entry point's process)."""

  def test_tanh_is_put_on_the_critical_line(self):
    with jax.enable_x64(True):
      p = isometry_study.operating_point(isometry_study.Arm(
          "tanh", "orthogonal", 0.05))
    self.assertAlmostEqual(p["chi_1"], 1.0, places=4)
    self.assertAlmostEqual(p["sigma_w2"], 1.76, delta=0.01)

  def test_relu_with_bias_has_no_fixed_point(self):
    with jax.enable_x64(True), self.assertRaisesRegex(
        ValueError, "no finite fixed point"):
      isometry_study.operating_point(isometry_study.Arm("relu", "gaussian",
                                                        0.05))

  def test_check_config_names_the_bad_field(self):
    arm = isometry_study.Arm("tanh", "orthogonal", 0.05)
    self.assertEqual(arm.ensemble, "orthogonal")
    for change, message in (
        ({"arms": (isometry_study.Arm("tanh", "uniform", 0.05),)},
         "ensemble must be one of gaussian, orthogonal"),
        ({"arms": (isometry_study.Arm("tahn", "gaussian", 0.05),)},
         "act: unknown activation 'tahn'"),
        ({"arms": (isometry_study.Arm("tanh", "gaussian", -1.0),)},
         "sigma_b2: must be a finite number >= 0"),
        ({"arms": (isometry_study.Arm("maxout", "gaussian", 0.0),)},
         "act: maxout"),
        ({"depths": (4, 0)}, "depths: must be an integer >= 1, got 0"),
        ({"width": 1}, "width must be >= 2")):
      with self.assertRaisesRegex(ValueError, message):
        isometry_study.check_config(isometry_study.IsometryConfig(
            **{"arms": (arm,), "depths": (4,), "width": 8} | change))


class MeasurementTest(absltest.TestCase):

  def test_one_orthogonal_relu_layer_has_singular_values_sqrt2_and_0(self):
    # J = D W with W = sqrt(2) Q orthogonal and D = diag(1[h > 0]): J J^T =
    # 2 D Q Q^T D = 2 D, so every singular value is exactly sqrt(2) or 0,
    # in the proportions of active units (the predicted atom is 1/2).
    # Width 128 and two seeds as in test_small_run_matches_the_predicted_
    # moments: the weight and input draws compile at one shape for both.
    config = isometry_study.IsometryConfig(
        arms=(isometry_study.Arm("relu", "orthogonal", 0.0),), depths=(1,),
        width=128, seeds=2)
    with jax.enable_x64(True):
      sv = isometry_study.measure(config, config.arms[0], 2.0, 1.0)[1]
    chex.assert_shape(sv, (2, 128))
    nonzero = sv[sv > 1e-6]
    np.testing.assert_allclose(nonzero, math.sqrt(2), rtol=1e-12)
    # Active fraction: Binomial(256, 1/2), 4.5 sigma = 0.14 (< 0.2).
    self.assertLess(abs(nonzero.size / sv.size - 0.5), 0.2)

  @pytest.mark.slow
  def test_small_run_matches_the_predicted_moments(self):
    # Orthogonal tanh at small q* is nearly isometric: m1 = 1 and
    # var/m1^2 = L (mu2/mu1^2 - 1) ~ 0.04 L. At width 128 the measured
    # m1 of a network fluctuates by O(sqrt(var / N)) ~ 3 % and the
    # ratio by O(1/sqrt(N)) relative plus O(L/N) finite-width bias; 25 %
    # covers both at L = 4 for two networks.
    config = isometry_study.IsometryConfig(
        arms=(isometry_study.Arm("tanh", "orthogonal", 1e-3),), depths=(4,),
        width=128, seeds=2, density_points=100)
    with jax.enable_x64(True):
      arm = isometry_study.run_arm(config, config.arms[0])
    d = arm["depths"][0]
    self.assertAlmostEqual(d["predicted"]["m1"], 1.0, places=4)
    self.assertAlmostEqual(d["measured"]["m1"], 1.0, delta=0.1)
    self.assertAlmostEqual(d["measured"]["variance_ratio"] /
                           d["predicted"]["variance_ratio"], 1.0, delta=0.25)
    self.assertLess(d["measured"]["ks_distance"], 0.15)
    fig = isometry_plots.plot_isometry(
        {"config": {"depths": [4], "width": 128}, "arms": [arm]})
    self.assertLen(fig.axes, 1)


class CommandLineTest(absltest.TestCase):

  @pytest.mark.slow
  def test_run_and_replot(self):
    tmp = self.create_tempdir().full_path
    out = os.path.join(tmp, "run")
    # The float64 mean-field programs of the run (tanh's and ReLU's operating
    # points) are OperatingPointTest's (one compilation per test run, shared
    # through the persistent compilation cache, whichever runs first).
    r = cli_testing.run_module(
        "experiments.dynamical_isometry", "--width=16", "--depths=1,3",
        "--seeds=1", "--sigma_b2=0.05", "--ensembles=orthogonal",
        f"--out_dir={out}", cwd=tmp)
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertIn("relu has no finite fixed point", r.stderr)
    self.assertEqual(sorted(os.listdir(out)), [
        "config.json", "isometry.pdf", "isometry.png", "report.md",
        "results.json"])
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(next(iter(results.items())),
                     ("schema", "vgrad.dynamical_isometry/1"))
    self.assertEqual([a["label"] for a in results["arms"]], [
        "tanh, orthogonal, sigma_b^2=0.05", "relu, orthogonal, sigma_b^2=0"])
    self.assertEqual([a["arm"]["ensemble"] for a in results["arms"]],
                     ["orthogonal"] * 2)
    # Results written before Arm.weights was renamed still replot.
    for arm in results["arms"]:
      arm["arm"] = {("weights" if k == "ensemble" else k): v
                    for k, v in arm["arm"].items()}
    with open(os.path.join(out, "results.json"), "w") as f:
      json.dump(results, f)
    os.remove(os.path.join(out, "isometry.png"))
    r = cli_testing.run_module("experiments.replot", f"--run_dir={out}",
             cwd=tmp)
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertTrue(os.path.exists(os.path.join(out, "isometry.png")))

  @pytest.mark.slow
  def test_bad_input_is_one_line_and_writes_nothing(self):
    tmp = self.create_tempdir().full_path
    cases = {"--acts=maxout": "--acts", "--acts=sigmoid": "--acts",
             "--ensembles=uniform": "--ensembles",
             "--weights=orthogonal":
                 "--weights was renamed: pass --ensembles",
             "--depths=0": "depths", "--width=1": "width",
             "--sigma_b2=-1": "--sigma_b2", "--sigma_b2=x": "--sigma_b2",
             "--sigma_b2=nan": "--sigma_b2 must hold finite numbers, got nan",
             "--sigma_b2=0.1,inf": "--sigma_b2 must hold finite numbers"}
    procs = cli_testing.run_cases(
        "experiments.dynamical_isometry",
        [(tmp, [arg, f"--out_dir={tmp}/x"]) for arg in cases])
    for (arg, flag), r in zip(cases.items(), procs):
      self.assertEqual(r.returncode, 2, (arg, r.stderr))
      self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
      self.assertIn(flag, r.stderr)
    self.assertEqual(os.listdir(tmp), [])


if __name__ == "__main__":
  absltest.main()
