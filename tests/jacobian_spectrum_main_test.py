"""End-to-end tests of ``python -m experiments.jacobian_spectrum``, run as a
user runs it (a subprocess), including every bad-input path."""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import cli_testing
import numpy as np
import pytest

from vgrad.io import schemas
from vgrad.io import spectrum_records
from vgrad.plots import spectrum_plots
from vgrad.studies import model_spectra

TINY = ["--act=tanh", "--depth=3", "--width=8", "--num_inputs=2"]


def _run(module, *args, cwd):
  return cli_testing.run_module(module, *args, cwd=cwd)


def _spectrum(*args, cwd):
  return _run("experiments.jacobian_spectrum", *args, cwd=cwd)


@pytest.mark.slow  # end to end: full runs, each writing a figure
class MainTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    """One complete TINY run (``cls.proc`` in ``cls.cwd``/run), read by
    test_writes_a_complete_run and copied as the existing run that
    test_existing_run_is_never_overwritten_silently must keep."""
    super().setUpClass()
    cls.cwd = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.addClassCleanup(shutil.rmtree, cls.cwd, ignore_errors=True)
    cls.proc = _spectrum(*TINY, "--seed=3",
                         f"--out_dir={os.path.join(cls.cwd, 'run')}",
                         cwd=cls.cwd)

  def test_writes_a_complete_run(self):
    cwd, proc = self.cwd, self.proc
    out = os.path.join(cwd, "run")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("verdict:", proc.stdout)
    # A two-line header: the network in words (not a JSON dump) and where
    # the run goes.
    self.assertStartsWith(proc.stdout, (
        "network: tanh net, glorot_uniform init: depth 3, width 8, 2 inputs, "
        f"float32\nrun directory: {out} (config.json records every "
        "setting)\nmethod: "))
    # A 3-layer tanh net of width 8 fits float32: auto keeps dense.
    self.assertIn("\nmethod: auto chose dense: float32 resolves",
                  proc.stdout)
    self.assertEqual(sorted(os.listdir(out)), [
        "config.json", "results.json", "spectrum.pdf", "spectrum.png"])
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    with open(os.path.join(out, "config.json")) as f:
      self.assertEqual(json.load(f), results["config"])
    # The file names its schema, first, and has the documented keys.
    self.assertEqual(next(iter(results)), "schema")
    self.assertEqual(results["schema"], "vgrad.jacobian_spectrum/3")
    schemas.validate(results)
    # auto kept the Lyapunov sums it decided from.
    self.assertLen(results["lyapunov"]["partial_sums"]["median"], 3)
    self.assertEqual(results["config"], {
        "act": "tanh", "init": "glorot_uniform", "depth": 3, "width": 8,
        "sigma_w2": None, "sigma_b2": None, "num_inputs": 2, "seed": 3,
        "dtype": "float32", "act_params": {}, "method": "auto",
        "qr_layers": None, "qr_sweeps": 30, "lanczos_steps": 48,
        "out_dir": out,
        "overwrite": False, "leaky_slope": None, "elu_alpha": None,
        "swish_beta": None, "maxout_k": None, "model": "mlp"})
    for section in ("layers", "per_layer"):
      self.assertEqual([r["layer"] for r in results[section]], [1, 2, 3])
    for record in results["layers"] + [results["input_output"]]:
      self.assertLen(record["singular_values"], 2)
      self.assertTrue(all(len(row) == 8 for row in record["singular_values"]))
      values = [v for row in record["singular_values"] for v in row]
      self.assertEqual(record["max_singular_value"], max(values))
    # The redraw entry point rebuilds the figure from results.json alone,
    # from a version-1 file written before results carried a schema too
    # (dense records of linear values only, no lyapunov); a file of
    # another version gets a one-line error naming both versions.
    os.remove(os.path.join(out, "spectrum.png"))
    old, future = os.path.join(cwd, "old"), os.path.join(cwd, "future")
    version1 = set(spectrum_records.RECORD_KEYS) - {
        "log_singular_values", "log_rms_gain", "min_log_singular_value",
        "median_log_singular_value", "max_log_singular_value",
        "log_condition_number", "error_bound", "sweeps"}
    for run_dir, schema in ((old, None),
                            (future, "vgrad.jacobian_spectrum/99")):
      os.makedirs(run_dir)
      record = {k: v for k, v in results.items()
                if k not in ("schema", "lyapunov")}
      if schema:
        record = {"schema": schema} | record
      else:   # and with the standard deviations older files recorded
        record["config"] = {
            {"sigma_w2": "sigma_w", "sigma_b2": "sigma_b"}.get(k, k): v
            for k, v in record["config"].items()} | {"sigma_b": 0.5}
        for key in ("layers", "per_layer"):
          record[key] = [{k: v for k, v in r.items() if k in version1}
                         for r in record[key]]
        record["input_output"] = record["layers"][-1]
      with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(record, f)
    # A run whose figure cannot be written (spectrum.png is a folder) and
    # an --out_stem in a folder that does not exist: one line each.
    blocked = os.path.join(cwd, "blocked")
    shutil.copytree(out, blocked)   # out's spectrum.png is removed above
    os.makedirs(os.path.join(blocked, "spectrum.png"))
    missing = os.path.join(cwd, "missing", "fig")
    done, upgraded, newer, unwritable, nowhere = cli_testing.run_cases(
        "experiments.plot_jacobian_spectrum",
        [(cwd, [f"--run_dir={d}"]) for d in (out, old, future, blocked)]
        + [(cwd, [f"--run_dir={out}", f"--out_stem={missing}"])])
    for proc, needle in ((unwritable, "--run_dir: cannot write the figure"),
                         (nowhere, f"--out_stem: folder {cwd}/missing does "
                                   f"not exist")):
      self.assertEqual(proc.returncode, 2, proc.stderr)
      self.assertNotIn("Traceback", proc.stderr)
      self.assertLen(proc.stderr.strip().splitlines(), 1, proc.stderr)
      self.assertIn(needle, proc.stderr)
    self.assertFalse(os.path.exists(os.path.dirname(missing)))
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertTrue(os.path.exists(os.path.join(out, "spectrum.png")))
    self.assertEqual(upgraded.returncode, 0, upgraded.stderr)
    self.assertTrue(os.path.exists(os.path.join(old, "spectrum.png")))
    self.assertNotEqual(newer.returncode, 0)
    error = newer.stderr.strip().splitlines()
    self.assertLen(error, 1, newer.stderr)
    self.assertIn("vgrad.jacobian_spectrum/99", error[0])
    self.assertIn("reads vgrad.jacobian_spectrum/3", error[0])
    self.assertFalse(os.path.exists(os.path.join(future, "spectrum.png")))

  def test_default_run_dir_and_activation_parameters(self):
    cwd = self.create_tempdir().full_path
    # --method=dense: auto's extra (float64) Lyapunov probe has nothing to
    # do with what this test checks.
    proc = _spectrum("--act=leaky_relu", "--leaky_slope=0.1", "--depth=2",
                     "--width=4", "--num_inputs=1", "--init=gaussian",
                     "--sigma_w2=1.96", "--sigma_b2=0.04", "--dtype=float64",
                     "--method=dense", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    (run,) = os.listdir(os.path.join(cwd, "runs", "jacobian_spectrum"))
    self.assertEndsWith(run, "_leaky_relu_gaussian_L2_N4")
    with open(os.path.join(cwd, "runs", "jacobian_spectrum", run,
                           "results.json")) as f:
      config = json.load(f)["config"]
    self.assertEqual(config["act_params"], {"slope": 0.1})
    self.assertEqual(config["leaky_slope"], 0.1)
    self.assertEqual(config["dtype"], "float64")
    self.assertEqual((config["sigma_w2"], config["sigma_b2"]), (1.96, 0.04))

  def test_existing_run_is_never_overwritten_silently(self):
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    # The existing run: a copy of the class's complete one (seed 3).
    self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
    shutil.copytree(os.path.join(self.cwd, "run"), out)
    with open(os.path.join(out, "results.json")) as f:
      before = f.read()
    proc = _spectrum(*TINY, "--seed=1", f"--out_dir={out}", cwd=cwd)
    self.assertNotEqual(proc.returncode, 0)
    self.assertIn("--overwrite", proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    with open(os.path.join(out, "results.json")) as f:
      self.assertEqual(f.read(), before)
    proc = _spectrum(*TINY, "--seed=1", f"--out_dir={out}", "--overwrite",
                     cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    with open(os.path.join(out, "results.json")) as f:
      self.assertNotEqual(f.read(), before)
    self.assertEqual(sorted(os.listdir(cwd)), ["run"])


# The network of tests/spectrum_study_test.py's
# MethodTest.test_auto_picks_qr_and_agrees_with_dense_where_dense_resolves
# (the weights' distribution aside): the same compiled probes, which the
# suite's persistent compilation cache shares between the two.
SIGMOID = ["--act=sigmoid", "--depth=10", "--width=32", "--num_inputs=3"]


@pytest.mark.slow  # end to end: full runs, each writing a figure
class MethodTest(absltest.TestCase):

  def test_auto_chooses_qr_and_the_figure_redraws(self):
    """Sigmoid at depth 10: float32 loses the small singular values, so
    auto says it uses qr and why; results.json holds log spectra."""
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    proc = _spectrum(*SIGMOID, "--qr_layers=6,1", "--qr_sweeps=25",
                     f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    (line,) = [l for l in proc.stdout.splitlines()
               if l.startswith("method:")]
    self.assertStartsWith(line, "method: auto chose qr: float32 resolves "
                          "singular values within a factor")
    self.assertIn("verdict: vanishing", proc.stdout)
    self.assertNotIn("note:", proc.stdout)  # nothing unresolved
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(results["method"], "qr")
    self.assertEqual(results["config"]["qr_layers"], [6, 1])
    self.assertEqual(results["config"]["qr_sweeps"], 25)
    self.assertEqual([r["layer"] for r in results["layers"]], [1, 6, 10])
    for record in results["layers"]:
      self.assertLen(record["log_singular_values"], 3)
      for row in record["log_singular_values"]:
        self.assertNotIn(None, row)
      # The dense method's keys too: linear values within float32's range.
      self.assertEqual(tuple(record), spectrum_records.RECORD_KEYS)
      self.assertNotIn(None, record["singular_values"][0])
      self.assertIsNotNone(record["mean_sq_singular_value"])
    self.assertLen(results["lyapunov"]["partial_sums"]["median"], 10)
    # Each layer's own spectrum under qr too (the dense method's records).
    self.assertEqual([r["layer"] for r in results["per_layer"]],
                     list(range(1, 11)))
    schemas.validate(results)
    os.remove(os.path.join(out, "spectrum.png"))
    proc = _run("experiments.plot_jacobian_spectrum", f"--run_dir={out}",
                cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertTrue(os.path.exists(os.path.join(out, "spectrum.png")))

  def test_model_rnn_gains_rho_to_the_t_in_results_and_figure(self):
    """--model=rnn: a linear RNN with W = rho Q (Q orthogonal, rho^2 =
    --sigma_w2 = 1.21) has every singular value of dx_t/dx_0 exactly 1.1^t
    and of each step's Jacobian 1.1 (exploding through time, Pascanu et
    al. 2013); the same files and schema as the MLP's."""
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    proc = _spectrum("--model=rnn", "--act=linear", "--sigma_w2=1.21",
                     "--depth=5", "--width=4", "--num_inputs=2",
                     "--method=dense", f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(sorted(os.listdir(out)), ["config.json", "results.json",
                                               "spectrum.pdf", "spectrum.png"])
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    schemas.validate(results)
    config = results["config"]
    self.assertEqual((config["model"], config["init"], config["depth"],
                      config["width"]), ("rnn", "orthogonal", 5, 4))
    for l, record in enumerate(results["layers"], 1):
      np.testing.assert_allclose(record["singular_values"],
                                 np.full((2, 4), 1.1 ** l), rtol=1e-5)
    for record in results["per_layer"]:
      np.testing.assert_allclose(record["singular_values"],
                                 np.full((2, 4), 1.1), rtol=1e-5)
    self.assertIn("vanilla RNN, linear, orthogonal init",
                  spectrum_plots._title(results))  # pylint: disable=protected-access
    # The model's own defaults for the flags not given.
    config = model_spectra.make_config("cnn", num_inputs=1, depth=None)
    self.assertEqual((config.act, config.init, config.depth, config.width),
                     ("linear", "delta_orthogonal", 4, 4))

  def test_lanczos_on_a_wide_cnn_writes_the_same_files(self):
    """--method=lanczos on the delta-orthogonal linear CNN (an exact
    isometry) at 8 x 8 x 4 = 256 values: the extremes are 1, the values
    between null, the rms-gain estimate 1; the schema's files and figure."""
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    proc = _spectrum("--model=cnn", "--image_size=8", "--depth=2",
                     "--num_inputs=2", "--method=lanczos",
                     "--lanczos_steps=12", f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("method: lanczos (requested)", proc.stdout)
    self.assertIn("SLQ estimate", proc.stdout)
    self.assertEqual(sorted(os.listdir(out)), ["config.json", "results.json",
                                               "spectrum.pdf", "spectrum.png"])
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    schemas.validate(results)
    io = results["input_output"]
    self.assertEqual(io["num_singular_values"], 256)
    self.assertEqual(io["num_resolved"], [10, 10])
    self.assertAlmostEqual(io["max_singular_value"], 1.0, places=5)
    self.assertAlmostEqual(io["min_singular_value"], 1.0, places=5)
    self.assertIsNone(io["median_singular_value"])
    self.assertAlmostEqual(io["slq"]["log_rms_gain"], 0.0, places=5)
    self.assertEqual(results["config"]["image_size"], 8)

  def test_dense_still_works_where_float32_loses_values(self):
    cwd = self.create_tempdir().full_path
    proc = _spectrum(*SIGMOID, "--method=dense", f"--out_dir={cwd}/run",
                     cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("method: dense (requested)", proc.stdout)
    self.assertIn("note: float32 resolves only", proc.stdout)
    with open(os.path.join(cwd, "run", "results.json")) as f:
      self.assertEqual(json.load(f)["method"], "dense")


BAD_INPUTS = (
      (["--act=sigmod"], ["--act", "relu", "sigmoid"]),
      (["--init=xavier"], ["--init", "glorot_uniform", "orthogonal"]),
      (["--depth=0"], ["--depth", ">= 1"]),
      (["--width=-3"], ["--width", ">= 1"]),
      (["--act=maxout", "--maxout_k=1"], ["--maxout_k", ">= 2"]),
      (["--init=gaussian", "--sigma_w2=-1"], ["--sigma_w2", ">= 0"]),
      (["--sigma_b2=-0.5"], ["--sigma_b2", ">= 0"]),
      (["--dtype=float16"], ["--dtype", "float32", "float64"]),
      (["--act=tanh", "--maxout_k=3"], ["--maxout_k", "--act=maxout"]),
      (["--sigma_w2=2"], ["--sigma_w2", "gaussian", "orthogonal"]),
      (["--init=lsuv", "--sigma_w2=2"], ["--sigma_w2", "from data"]),
      # The old standard-deviation flags: one line naming the new flag.
      (["--init=gaussian", "--sigma_w=1.5"],
       ["--sigma_w was renamed: pass --sigma_w2 (the weight variance, "
        "sigma_w^2 = 1.5^2 = 2.25 for --sigma_w=1.5)"]),
      (["--sigma_b", "0.1"],
       ["--sigma_b was renamed: pass --sigma_b2 (the bias variance, "
        "sigma_b^2 = 0.1^2 = 0.01 for --sigma_b=0.1)"]),
      (["-sigma_w=x"], ["--sigma_w was renamed: pass --sigma_w2",
                        "the square of the old value"]),
      (["--num_inputs=0"], ["--num_inputs", ">= 1"]),
      (["--depth=ten"], ["--depth", "ten"]),
      (["--act=relu", "extra"], ["unexpected", "extra"]),
      (["--method=svd"], ["--method", "auto", "dense", "qr"]),
      (["--method=dense", "--qr_layers=2"],
       ["--qr_layers", "--method=qr", "not --method=dense"]),
      (["--method=dense", "--qr_sweeps=3"], ["--qr_sweeps", "--method=qr"]),
      (["--qr_layers=2,x"], ["--qr_layers", "integers", "[1, --depth=10]"]),
      (["--qr_layers=11", "--depth=10"], ["--qr_layers", "got 11"]),
      (["--qr_sweeps=0"], ["--qr_sweeps", ">= 1"]),
      # --model: flags a worked example cannot take.
      (["--model=cnn", "--act=leaky_relu", "--leaky_slope=0.1"],
       ["--leaky_slope", "--model=mlp"]),
      (["--noskip"], ["--skip", "resnet or transformer", "--model=mlp"]),
      (["--model=rnn", "--noskip"], ["--skip", "--model=rnn"]),
      (["--model=cnn", "--init=he_normal"],
       ["--init", "--model=cnn", "delta_orthogonal"]),
      (["--model=transformer", "--width=5"],
       ["--model=transformer", "heads", "must divide width 5", "--width"]),
      (["--model=rnn", "--act=maxout"], ["--act", "--model=rnn", "maxout"]),
      (["--model=cnn", "--qr_layers=7"], ["--qr_layers", "depth=4"]),
      (["--model=lstm"], ["--model", "lstm", "transformer"]),
      # --method=lanczos and its flags.
      (["--lanczos_steps=8"], ["--lanczos_steps", "--method=lanczos",
                               "not --method=auto"]),
      (["--method=lanczos", "--qr_sweeps=3"],
       ["--qr_sweeps", "not --method=lanczos", "--lanczos_steps"]),
      (["--method=lanczos", "--lanczos_steps=1"], ["--lanczos_steps", ">= 2"]),
      (["--image_size=8"], ["--image_size", "--model=cnn", "not --model=mlp"]),
      (["--model=cnn", "--image_size=0"], ["--image_size", ">= 1"]),
      # NaN and Inf: absl's float parser takes them; vgrad does not.
      (["--init=gaussian", "--sigma_w2=inf"],
       ["--sigma_w2 must be a finite number, got inf"]),
      (["--act=elu", "--elu_alpha=nan"], ["--elu_alpha", "finite", "nan"]),
      # An output folder that cannot be made: refused before any work.
      (["--out_dir=/dev/null/run"],
       ["--out_dir: cannot create run directory /dev/null/run: /dev/null is "
        "not a folder"]),
      (["--act=swish", "--swish_beta=-inf"], ["--swish_beta", "finite"]),
)


class BadInputTest(parameterized.TestCase):
  """Every case in one process (cli_testing.run_cases): flags reset to their
  defaults between cases, the same absl parsing and main as python -m."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = absltest.get_default_test_tmpdir()
    cls.cwds = {tuple(a): tempfile.mkdtemp(dir=root) for a, _ in BAD_INPUTS}
    cls.procs = dict(zip(cls.cwds, cli_testing.run_cases(
        "experiments.jacobian_spectrum",
        [(cwd, [*a] if any(x.startswith("--out_dir") for x in a)
          else [*a, f"--out_dir={cwd}/run"])
         for a, cwd in cls.cwds.items()])))

  @parameterized.parameters(*BAD_INPUTS)
  def test_one_line_error_and_nothing_written(self, args, needles):
    cwd, proc = self.cwds[tuple(args)], self.procs[tuple(args)]
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    lines = proc.stderr.strip().splitlines()
    self.assertLen(lines, 1, proc.stderr)
    for needle in needles:
      self.assertIn(needle, lines[0])
    self.assertEqual(os.listdir(cwd), [])
    self.assertEqual(proc.stdout, "")


if __name__ == "__main__":
  absltest.main()
