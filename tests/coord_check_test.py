"""Tests for vgrad.studies.coord_check, vgrad.plots.coord_plots and
``python -m experiments.coord_check`` (run as a user runs it).

The physics: an MLP of 3 hidden ReLU layers trained on digits by Adam (base
learning rate 0.01, base width 64) at widths 64..512, 3 seeds, 2 steps. The
log-log slope of a layer's coordinate size against the width is ~0 when the
layer is width-stable. Thresholds and their margins: over these widths the
per-seed slopes spread by at most ``MAX_SPREAD`` = 0.1 (standard deviation,
asserted below; measured <= 0.08), so the slope of the 3 seeds' mean has a
standard error <= 0.1 / sqrt(3) ~ 0.06. "Flat" is |slope| < 0.15 (measured
<= 0.04 for muP at every step and for every hidden layer at step 0: the
ReLU net's third layer has a ~0.04 finite-width bias). "Grows" is > 0.25
for SP's width x width layers after 2 steps (measured 0.43 and 0.68, >= 3
standard errors clear) and > 0.8 for SP's logits after 1 and 2 steps
(measured 1.32 and 1.25; Adam moves every readout weight by ~lr, so the
logits change by ~lr * n * E|x|: slope -> 1).

The file takes ~20 s on a 2-core CPU, ~15 of them the command's one run
(forking its warm interpreter, then compiling one program per
parameterisation and width); the physics tests read that run's
results.json, so nothing is compiled twice.
"""

import atexit
import functools
import json
import math
import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import chex
import cli_testing  # tests/cli_testing.py
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vgrad.io import schemas
from vgrad.plots import coord_plots
from vgrad.studies import coord_check as cc
from vgrad.training import data

WIDTHS = (64, 128, 256, 512)
STEPS = 2
SEEDS = 3
MAX_SPREAD = 0.1
FLAT = 0.15
SP_HIDDEN_GROWS = 0.25
SP_LOGITS_GROW = 0.8
# The command with the settings of _physics(): its programs are the same.
PHYSICS_ARGS = ["--widths=" + ",".join(map(str, WIDTHS)), f"--steps={STEPS}",
                f"--seeds={SEEDS}"]
RUN_FILES = ["config.json", "coord_check.pdf", "coord_check.png",
             "report.md", "results.json"]


@functools.cache
def _digits():
  return data.load_dataset("digits")


# One run of the command for the whole file: the physics tests read its
# results.json, the command tests its files. (Its programs are compiled once,
# in the command's warm interpreter.)
_TMP = tempfile.mkdtemp(prefix="coord-check-test-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


@functools.cache
def _command_run():
  """``(CompletedProcess, run_dir)`` of the command at PHYSICS_ARGS."""
  proc = _run(*PHYSICS_ARGS, "--out_dir=run", cwd=_TMP)
  return proc, os.path.join(_TMP, "run")


@functools.cache
def _physics() -> dict:
  proc, run_dir = _command_run()
  if proc.returncode:
    raise AssertionError(proc.stderr)
  with open(os.path.join(run_dir, "results.json")) as f:
    return schemas.check_schema(json.load(f), schemas.COORD_CHECK)


def _run(*args, cwd):
  return cli_testing.run_module("experiments.coord_check", *args, cwd=cwd)


def _slopes(name: str, layer: str) -> list:
  return _physics()["parameterizations"][name]["slope"][layer]


class FitTest(parameterized.TestCase):

  def test_fit_slope_recovers_a_power_law(self):
    widths = np.array([64.0, 128.0, 256.0, 512.0])
    self.assertAlmostEqual(cc.fit_slope(widths, 3.0 * widths ** 0.7), 0.7,
                           places=10)
    self.assertAlmostEqual(cc.fit_slope(widths, np.full(4, 2.5)), 0.0,
                           places=10)
    self.assertTrue(math.isnan(cc.fit_slope(widths, [1.0, 0.0, 1.0, 1.0])))

  @parameterized.parameters(("adam", 0.01, 0.01, 0.0025),
                            ("sgd", 0.01, 0.04, 0.01))
  def test_mup_learning_rates_follow_the_table(self, opt, fixed, vector,
                                               matrix):
    rates = cc.mup_learning_rates(opt, 0.01, width=256, base_width=64)
    self.assertEqual(set(rates), {"fixed", "vector", "matrix"})
    self.assertAlmostEqual(rates["fixed"], fixed)
    self.assertAlmostEqual(rates["vector"], vector)
    self.assertAlmostEqual(rates["matrix"], matrix)

  @parameterized.parameters("adam", "sgd")
  def test_first_step_moves_each_parameter_by_its_learning_rate(self, opt):
    # With every gradient 1, Adam's first step is -lr * g / (|g| + eps) and
    # SGD's -lr * g: every entry moves by its own learning rate. At width
    # 256 = 4 x base: muP's n x n kernels at lr / 4 (Adam) and its
    # vector-like parameters at 4 lr (SGD); the readout bias, no
    # width-sized dimension, at lr in both.
    x = jnp.zeros((1, 64))
    for name in cc.PARAMETERIZATIONS:
      module, optimizer = cc.make_mlp_factory(
          name, depth=3, num_outputs=10, optimizer=opt)(256)
      rates = (cc.mup_learning_rates(opt, 0.01, 256, 64) if name == "mup"
               else dict.fromkeys(("fixed", "vector", "matrix"), 0.01))
      shapes = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
      ones = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)
      updates, _ = jax.jit(optimizer.update)(ones, optimizer.init(ones),
                                             ones)
      labels = cc.mlp_param_labels(ones)
      self.assertEqual(labels["readout"]["bias"], "fixed")
      self.assertEqual(labels["layer_1"]["kernel"], "vector")
      self.assertEqual(labels["layer_3"]["kernel"], "matrix")
      for path, u in jax.tree_util.tree_leaves_with_path(updates):
        keys = [p.key for p in path]
        label = labels[keys[0]][keys[1]]
        np.testing.assert_allclose(np.asarray(u), -rates[label], rtol=1e-4,
                                   err_msg=f"{name} {keys}")

  def test_bad_factory_arguments_are_refused(self):
    with self.assertRaisesRegex(ValueError, "parameterization"):
      cc.make_mlp_factory("ntk", depth=2, num_outputs=3)
    with self.assertRaisesRegex(ValueError, "activation"):
      cc.make_mlp_factory("sp", depth=2, num_outputs=3, act="maxout")
    with self.assertRaisesRegex(ValueError, "widths"):
      cc.coord_check(None, np.zeros((4, 2)), np.zeros(4, int), widths=[64])


@pytest.mark.slow  # reads the command's run (CommandTest)
class PhysicsTest(absltest.TestCase):
  """SP against muP under Adam at widths 64..512 (module docstring)."""

  def test_results_have_the_schema_and_shapes(self):
    results = _physics()
    self.assertEqual(results["schema"], schemas.COORD_CHECK)
    self.assertEqual(results["steps"], list(range(STEPS + 1)))
    for arm in results["parameterizations"].values():
      self.assertEqual(arm["layers"],
                       ["layer_1", "layer_2", "layer_3", "readout"])
      values = np.array(arm["coord"]["layer_2"]["values"])
      chex.assert_shape(values, (STEPS + 1, len(WIDTHS), SEEDS))
      np.testing.assert_allclose(arm["coord"]["layer_2"]["mean"],
                                 values.mean(axis=2), rtol=1e-12)

  def test_seed_spread_is_small_enough_for_the_thresholds(self):
    # Every slope a threshold below reads: the hidden layers at every step,
    # the logits once trained (SP's random step-0 logits, 10 units, spread
    # more, ~0.14, and are not tested).
    for name, arm in _physics()["parameterizations"].items():
      for layer, slope in arm["slope"].items():
        first = 1 if layer == "readout" else 0
        self.assertLessEqual(max(slope["std"][first:]), MAX_SPREAD,
                             f"{name} {layer}")

  def test_hidden_layers_are_flat_in_width_at_step_zero(self):
    for name in cc.PARAMETERIZATIONS:
      for layer in ("layer_1", "layer_2", "layer_3"):
        self.assertLess(abs(_slopes(name, layer)["mean"][0]), FLAT,
                        f"{name} {layer}")

  def test_sp_hidden_layers_and_logits_grow_with_width_under_adam(self):
    for t in range(1, STEPS + 1):
      self.assertGreater(_slopes("sp", "readout")["mean"][t], SP_LOGITS_GROW)
    for layer in ("layer_2", "layer_3"):
      self.assertGreater(_slopes("sp", layer)["mean"][STEPS], SP_HIDDEN_GROWS,
                         layer)
    # The input layer's fan-in (64 pixels) does not grow: flat in SP too.
    self.assertLess(abs(_slopes("sp", "layer_1")["mean"][STEPS]), FLAT)

  def test_every_mup_layer_is_flat_at_every_step(self):
    arm = _physics()["parameterizations"]["mup"]
    for layer in arm["layers"]:
      for t, slope in enumerate(arm["slope"][layer]["mean"]):
        if layer == "readout" and t == 0:
          continue
        self.assertLess(abs(slope), FLAT, f"{layer} t={t}")
    # The zero-initialised readout: logits exactly 0 at step 0, no slope.
    self.assertEqual(np.max(arm["coord"]["readout"]["values"][0]), 0.0)
    self.assertIsNone(arm["slope"]["readout"]["mean"][0])

  def test_mup_trains_alike_at_every_width(self):
    # The point of muP: the loss after T steps does not depend on the width
    # (measured spread 0.007), while SP's does (measured 1.36..4.41).
    arms = _physics()["parameterizations"]
    loss = np.array(arms["mup"]["loss"]["mean"])
    sp_loss = np.array(arms["sp"]["loss"]["mean"])
    self.assertLess(np.ptp(loss[-1]), 0.05)
    self.assertLess(loss[-1].max(), loss[0].min())
    self.assertGreater(np.ptp(sp_loss[-1]), 10 * np.ptp(loss[-1]))


class LayerNormNet(nn.Module):
  """A model vgrad does not know: Dense, LayerNorm, tanh, Dense, head."""
  width: int

  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.LayerNorm()(nn.Dense(self.width)(x)))
    x = nn.relu(nn.Dense(self.width, name="mix")(x))
    return nn.Dense(10, name="head")(x)


class TwoCalls(nn.Module):
  """One submodule called twice, one returning a tuple."""

  @nn.compact
  def __call__(self, x):
    shared = nn.Dense(3, name="shared")
    return shared(shared(x)).sum() * jnp.ones((1, 2))


class CustomModelTest(absltest.TestCase):

  def test_any_flax_model_goes_through_the_factory(self):
    ds = _digits()
    arm = cc.coord_check(
        lambda w: cc.Setup(LayerNormNet(w), optax.sgd(0.1)), ds.x_train,
        ds.y_train, widths=(32, 64), seeds=2, steps=1, batch_size=32, seed=3)
    self.assertEqual(arm["layers"], ["Dense_0", "LayerNorm_0", "mix", "head"])
    # A layer-normalised row has unit variance: mean |z| -> sqrt(2/pi).
    ln = np.array(arm["coord"]["LayerNorm_0"]["values"][0])
    np.testing.assert_allclose(ln, math.sqrt(2 / math.pi), atol=0.05)
    # Dense_0 at step 0 is mean |x W + b| of the init the keys give.
    x_probe = cc.make_batches(ds.x_train, ds.y_train, 1, 32, 3)[0]
    key = jax.random.split(jax.random.key(3), 2)[1]
    model = LayerNormNet(64)
    params = jax.jit(model.init)(key, x_probe)["params"]["Dense_0"]
    expected = np.mean(np.abs(x_probe @ np.asarray(params["kernel"])
                              + np.asarray(params["bias"])))
    self.assertAlmostEqual(arm["coord"]["Dense_0"]["values"][0][1][1],
                           expected, places=5)

  def test_repeated_calls_are_numbered(self):
    model = TwoCalls()
    x = jnp.ones((1, 3))
    params = model.init(jax.random.key(0), x)["params"]
    _, sizes = jax.jit(functools.partial(cc.coordinate_sizes, model))(
        params, x)
    self.assertEqual(list(sizes), ["shared[0]", "shared[1]"])


@pytest.mark.slow  # the command's run: ~15 s, most of it compiling
class CommandTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.proc, self.run_dir = _command_run()
    self.tmp = self.create_tempdir().full_path

  def test_the_command_writes_the_run_and_reports_the_slopes(self):
    self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
    self.assertEqual(sorted(os.listdir(self.run_dir)), RUN_FILES)
    self.assertIn("--steps=2", _physics()["command"])
    self.assertIn("Slopes at step 2", self.proc.stdout)
    with open(os.path.join(self.run_dir, "report.md")) as f:
      self.assertIn("| `readout` |", f.read())

  def test_replot_redraws_the_figure_and_report_from_results(self):
    copy = os.path.join(self.tmp, "replot")
    shutil.copytree(self.run_dir, copy)
    for name in ("report.md", "coord_check.png", "coord_check.pdf"):
      os.remove(os.path.join(copy, name))
    proc = _run(f"--replot={copy}", cwd=self.tmp)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(sorted(os.listdir(copy)), RUN_FILES)
    with open(os.path.join(copy, "report.md")) as f, open(
        os.path.join(self.run_dir, "report.md")) as g:
      self.assertEqual(f.read(), g.read())

  def test_figure_has_one_panel_per_parameterisation_and_layer(self):
    with open(os.path.join(self.run_dir, "results.json")) as f:
      fig = coord_plots.plot_coord_check(json.load(f))
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    self.assertLen(panels, 2 * 4)
    self.assertEqual(panels[0].get_yscale(), "log")



class BadInputTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("one_width", ["--widths=64"], "--widths"),
      ("not_a_width", ["--widths=64,abc"], "--widths"),
      ("decreasing", ["--widths=128,64"], "--widths"),
      ("maxout", ["--act=maxout"], "--act"),
      ("optimizer", ["--optimizer=rmsprop"], "--optimizer"),
      ("seeds", ["--seeds=0"], "--seeds"),
      ("steps", ["--steps=0"], "--steps"),
      ("lr", ["--lr=0"], "--lr"),
      ("lr_nan", ["--lr=nan"], "--lr"),
      ("batch", ["--batch_size=5000"], "--batch_size must be <= "),
      ("replot_and_flag", ["--replot=run", "--seeds=2"], "--replot takes"),
      ("replot_missing", ["--replot=nowhere"], "--replot: cannot read"),
      ("positional", ["extra"], "unexpected arguments"))
  def test_bad_input_is_one_line_and_writes_nothing(self, args, expected):
    tmp = self.create_tempdir().full_path
    out = os.path.join(tmp, "bad")
    if not any(a.startswith("--replot") for a in args):
      args = [*args, "--out_dir=bad"]
    proc = _run(*args, cwd=tmp)
    self.assertEqual(proc.returncode, 2, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    self.assertIn(expected, lines[0])
    self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  absltest.main()
