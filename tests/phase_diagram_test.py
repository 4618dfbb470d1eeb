"""Tests for vgrad.studies.phase_diagram, vgrad.plots.phase_plots and the two entry points
``experiments.phase_diagram`` / ``experiments.replot``."""

import dataclasses
import io
import json
import os

from absl.testing import absltest
import chex
import cli_testing  # tests/cli_testing.py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrad.nn import activations
from vgrad.nn import models
from vgrad.plots import phase_plots
from vgrad.studies import phase_diagram
from vgrad.theory import meanfield
from vgrad.training import data
from vgrad.training import train

# Width 10: the hidden and readout kernels are one shape (10, 10) and every
# bias is (10,), so the eager initialisers compile for 3 shapes, not 5. The
# theory's line (theory_points x 1) and plane (5 x 4) have the same number of
# points: phase_diagram.theory solves both with ONE compiled program.
TINY = phase_diagram.PhaseConfig(
    sigma_w2=(0.5, 1.5, 3.0), depths=(2,), width=10, steps=15, batch_size=32,
    seeds=2, theory_points=20, plane_sigma_w2=(0.5, 4.0, 5),
    plane_sigma_b2=(0.0, 2.0, 4))


class TrainabilityTest(absltest.TestCase):

  @pytest.mark.slow
  def test_grid_cell_equals_the_network_trained_alone(self):
    # Column g of the vmapped grid must be exactly the networks one would
    # build with init='gaussian', sigma_w2 = sigma_w2[g]: same draws (the
    # Gaussian init is linear in its gain sqrt(sigma_w2)), same minibatches.
    # Both seeds of the column are trained alone (initialised vmapped over
    # the seeds only, so the eager initialisers run on the grid's own
    # shapes), each network in as many independent copies as the grid has
    # columns: the batch of len(sigma_w2) x seeds networks the grid trains,
    # so training and evaluation are the grid's own compiled programs
    # (served by the persistent compilation cache); copies never interact.
    config = TINY
    digits = data.load_dataset("digits")
    cells = phase_diagram.train_depth(config, digits, 2)
    for key in cells:
      chex.assert_shape(cells[key], (3, 2))
    g = 2
    model = models.make_mlp(
        depth=2, width=config.width, activation="tanh", init="gaussian",
        sigma_w2=config.sigma_w2[g], sigma_b2=config.sigma_b2,
        num_outputs=10)
    opt = train.make_optimizer("sgd", config.lr)
    init_keys, train_keys = zip(*(
        jax.random.split(jax.random.key(config.seed + s))
        for s in range(config.seeds)))
    x, y = jnp.asarray(digits.x_train), jnp.asarray(digits.y_train)
    state = train.init_states(model, opt, jnp.stack(init_keys), x)
    copies = len(config.sigma_w2)
    state = jax.tree.map(   # NumPy: no eager program per leaf shape
        lambda v: jnp.asarray(np.tile(v, (copies,) + (1,) * (v.ndim - 1))),
        state)
    loss = "categorical_cross_entropy"
    step = train.make_step_fn(model, opt, loss, "multiclass", 32)
    state, _, _ = train.make_train_chunk(step, config.steps)(
        state, jnp.tile(jnp.stack(train_keys), copies), 0, x, y)
    acc = train.make_evaluate(model, loss, "multiclass")(state.params, x, y)
    for s in range(config.seeds):
      self.assertAlmostEqual(float(acc["accuracy"][s]),
                             float(cells["train_accuracy"][g, s]), places=6)

  def test_summary_counts_cells_against_six_xi_c(self):
    config = phase_diagram.PhaseConfig(sigma_w2=(1.0, 2.0), depths=(4, 16),
                                       seeds=3, threshold=0.5)
    # depth x sigma_w2 x seeds; medians: [[0.9, 0.2], [0.1, 0.8]].
    acc = [[[0.9, 0.9, 0.1], [0.2, 0.1, 0.6]],
           [[0.1, 0.1, 0.9], [0.8, 0.9, 0.5]]]
    cells = {"train_accuracy": acc,
             "diverged_at": np.zeros((2, 2, 3), int).tolist()}
    # 6 xi_c = 6 and inf: predicted trainable (L <= 6 xi_c) only at
    # (4, 1.0), (4, 2.0), (16, 2.0).
    s = phase_diagram.summarize(config, cells, np.array([1.0, np.inf]))
    self.assertEqual(s["trainable"], [[True, False], [False, True]])
    self.assertEqual(s["predicted_trainable"], [[True, True], [False, True]])
    self.assertAlmostEqual(s["agreement"], 0.75)
    self.assertEqual((s["violations"], s["untrained_in_budget"]), (0, 1))
    self.assertEqual(s["deepest_trainable"], [4, 16])
    self.assertEqual(s["six_xi_c"], [6.0, None])
    self.assertEqual(s["best_sigma_w2"], 2.0)


@pytest.mark.slow
class TheoryTest(absltest.TestCase):

  def test_theory_matches_meanfield_and_marks_the_critical_point(self):
    t = phase_diagram.theory(TINY)
    tanh = activations.get_activation("tanh")
    critical = t["critical_sigma_w2"]
    # chi_1 = 1 at the critical point (to the bisection's precision).
    q = meanfield.fixed_point_q(tanh, critical, TINY.sigma_b2)
    self.assertAlmostEqual(
        float(meanfield.chi_1(tanh, critical, TINY.sigma_b2, q)), 1.0,
        places=4)
    # Schoenholz et al. (2017), Fig. 5: about 1.76 at sigma_b^2 = 0.05.
    self.assertAlmostEqual(critical, 1.76, delta=0.02)
    plane = np.array(t["plane"]["log10_chi_1"], dtype=float)
    chex.assert_shape(plane, (5, 4))
    # chi_1 grows with sigma_w^2 at fixed sigma_b^2 for tanh.
    self.assertTrue(np.all(np.diff(plane, axis=0) > 0))
    # The ordered side is below the line, the chaotic side above.
    sw2 = np.array(t["plane"]["sigma_w2"])
    b0 = t["plane"]["critical_sigma_w2"][0]
    self.assertTrue(np.all(plane[sw2 < b0 - 0.05, 0] < 0))
    self.assertTrue(np.all(plane[sw2 > b0 + 0.05, 0] > 0))
    xi = np.array([np.inf if v is None else v for v in t["xi_c"]])
    fine = np.array(t["sigma_w2"])
    self.assertLess(abs(fine[np.argmax(xi)] - critical), 0.2)


  def test_an_activation_without_a_critical_point_is_reported(self):
    # sigmoid' <= 1/4 keeps chi_1 < 1 for every sigma_w^2 searched: the
    # theory says so instead of writing an infinite (non-JSON) number.
    t = phase_diagram.theory(dataclasses.replace(TINY, act="sigmoid"))
    self.assertIsNone(t["critical_sigma_w2"])
    json.dumps(t, allow_nan=False)
    self.assertIn("none, chi_1 < 1", phase_diagram.critical_text(t))


class CommandLineTest(absltest.TestCase):

  @pytest.mark.slow
  def test_run_report_figure_and_replot(self):
    tmp = self.create_tempdir().full_path
    out = os.path.join(tmp, "run")
    # TINY's grid and training at depths 1 and 2: depth 2 trains with the
    # very programs TrainabilityTest compiles (the persistent compilation
    # cache serves them to the entry point's process), and TINY's theory
    # resolution (20 points): its line, the grid's xi_c and the critical
    # points are solved by TheoryTest's programs.
    r = cli_testing.run_module(
        "experiments.phase_diagram",
        f"--sigma_w2={','.join(f'{v:g}' for v in TINY.sigma_w2)}",
        "--depths=1,2", f"--width={TINY.width}", f"--steps={TINY.steps}",
        f"--batch_size={TINY.batch_size}", f"--seeds={TINY.seeds}",
        f"--theory_points={TINY.theory_points}", f"--out_dir={out}",
        cwd=tmp)
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertEqual(sorted(os.listdir(out)), [
        "config.json", "phase_diagram.pdf", "phase_diagram.png",
        "report.md", "results.json"])
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(next(iter(results.items())),
                     ("schema", "vgrad.phase_diagram/1"))
    self.assertEqual(np.shape(results["cells"]["train_accuracy"]),
                     (2, len(TINY.sigma_w2), TINY.seeds))
    self.assertIn("critical point (chi_1 = 1): sigma_w^2 = 1.7", r.stdout)
    plane = results["theory"]["plane"]
    self.assertEqual(np.shape(plane["log10_chi_1"]), (20, 17))
    # The phase plane is an image inside the vector PDF (one path per cell
    # made the default 300 x 250 plane 2 MB and ~18 s to write), the rest
    # stays vector.
    with open(os.path.join(out, "phase_diagram.pdf"), "rb") as f:
      pdf = f.read()
    self.assertIn(b"/Subtype /Image", pdf)
    self.assertLess(len(pdf), 200_000)
    # The figure as drawn: with uneven depths the depth axis still starts
    # above 0 (at 2 and 8 the cell edges extrapolate to -1), and the one
    # legend sits under both panels, off the heat maps.
    results["config"]["depths"] = [2, 8]
    fig = phase_plots.plot_phase_diagram(results)
    left, right = fig.axes[0], fig.axes[2]
    self.assertEqual(left.get_ylim(), (0.5, 11.0))
    self.assertIsNone(left.get_legend())
    self.assertIsNone(right.get_legend())
    (legend,) = fig.legends
    fig.savefig(io.BytesIO(), format="png")   # lays the figure out as saved
    top = legend.get_window_extent().y1
    for ax in (left, right):   # below the axes, their tick labels included
      self.assertLessEqual(top, ax.get_tightbbox().y0)
    os.remove(os.path.join(out, "phase_diagram.png"))
    r = cli_testing.run_module("experiments.replot", f"--run_dir={out}", cwd=tmp)
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertTrue(os.path.exists(os.path.join(out, "phase_diagram.png")))
    # A figure that cannot be written (its name taken by a folder): one
    # line naming --run_dir.
    os.remove(os.path.join(out, "phase_diagram.png"))
    os.makedirs(os.path.join(out, "phase_diagram.png"))
    r = cli_testing.run_module("experiments.replot", f"--run_dir={out}",
                               cwd=tmp)
    self.assertEqual(r.returncode, 2, r.stderr)
    self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
    self.assertIn("--run_dir: cannot write the figure and report", r.stderr)
    os.rmdir(os.path.join(out, "phase_diagram.png"))
    # An existing run directory is never replaced silently.
    r = cli_testing.run_module("experiments.phase_diagram", "--sigma_w2=1", "--depths=2",
             "--width=4", "--steps=2", "--seeds=1", f"--out_dir={out}",
             cwd=tmp)
    self.assertEqual(r.returncode, 2)
    self.assertIn("--overwrite", r.stderr)

  @pytest.mark.slow
  def test_bad_input_is_one_line_and_writes_nothing(self):
    tmp = self.create_tempdir().full_path
    cases = {
        "--sigma_w2=abc": "--sigma_w2",
        "--sigma_w2=0,1": "sigma_w2",
        "--depths=0": "depths",
        "--depths=2.5": "--depths",
        "--width=0": "width",
        "--act=maxout": "--act",
        "--act=sigmod": "--act",
        "--threshold=2": "threshold",
        "--lr=0": "--lr",
        "--lr=inf": "--lr must be a finite number, got inf",
        "--lr=nan": "--lr must be a finite number, got nan",
        "--sigma_w2=1,inf": "--sigma_w2 must hold finite numbers, got inf",
        "--sigma_w2=nan:2:3": "--sigma_w2 must hold finite numbers, got nan",
        "--threshold=nan": "--threshold must be a finite number",
        "--theory_points=1": "--theory_points must be >= 2",
        "--sigma_b2=-0.5": "--sigma_b2: must be a finite number >= 0",
        "--sigma_b=0.2": "--sigma_b was renamed: pass --sigma_b2 (the bias "
                         "variance, sigma_b^2 = 0.2^2 = 0.04 for "
                         "--sigma_b=0.2)",
    }
    procs = cli_testing.run_cases(
        "experiments.phase_diagram",
        [(tmp, [arg, "--steps=1", f"--out_dir={tmp}/x"]) for arg in cases])
    for (arg, flag), r in zip(cases.items(), procs):
      self.assertEqual(r.returncode, 2, (arg, r.stderr))
      self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
      self.assertIn(flag, r.stderr)
      self.assertNotIn("Traceback", r.stderr)
    self.assertEqual(os.listdir(tmp), [])


if __name__ == "__main__":
  absltest.main()
