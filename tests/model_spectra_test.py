"""experiments.jacobian_spectrum --model=...: the worked examples of
vgrad.nn.zoo through the command line, as a user runs them."""

import json
import os

from absl.testing import absltest
import cli_testing
import numpy as np

from vgrad.io import spectrum_records
from vgrad.studies import model_spectra

MODULE = "experiments.jacobian_spectrum"


class ModelRunTest(absltest.TestCase):

  def test_linear_rnn_gains_rho_to_the_t_in_results_and_figure(self):
    """A linear RNN with W = rho Q (Q orthogonal, rho^2 = --sigma_w2 =
    1.21): every singular value of dx_t/dx_0 is exactly 1.1^t and of each
    step's Jacobian 1.1 (exploding through time, Pascanu et al. 2013)."""
    cwd = self.create_tempdir().full_path
    out = os.path.join(cwd, "run")
    proc = cli_testing.run_module(
        MODULE, "--model=rnn", "--act=linear", "--sigma_w2=1.21",
        "--depth=5", "--width=4", "--num_inputs=2", "--method=dense",
        f"--out_dir={out}", cwd=cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(sorted(os.listdir(out)), ["config.json", "results.json",
                                               "spectrum.pdf", "spectrum.png"])
    with open(os.path.join(out, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(spectrum_records.check_results(results, num_inputs=2),
                     [])
    config = results["config"]
    self.assertEqual((config["model"], config["init"], config["depth"],
                      config["width"]), ("rnn", "orthogonal", 5, 4))
    for l, record in enumerate(results["layers"], 1):
      np.testing.assert_allclose(record["singular_values"],
                                 np.full((2, 4), 1.1 ** l), rtol=1e-5)
    for record in results["per_layer"]:
      np.testing.assert_allclose(record["singular_values"],
                                 np.full((2, 4), 1.1), rtol=1e-5)
    self.assertIn("rnn", proc.stdout)

  def test_defaults_are_the_models_own(self):
    config = model_spectra.make_config("cnn", num_inputs=1, depth=None)
    self.assertEqual((config.act, config.init, config.depth, config.width),
                     ("linear", "delta_orthogonal", 4, 4))
    with self.assertRaisesRegex(ValueError, "unknown model 'mlpp'.*cnn"):
      model_spectra.model_defaults("mlpp")


BAD_INPUTS = (
    (["--model=cnn", "--act=leaky_relu", "--leaky_slope=0.1"],
     ["--leaky_slope", "--model=mlp"]),
    (["--noskip"], ["--skip", "resnet or transformer", "--model=mlp"]),
    (["--model=rnn", "--noskip"], ["--skip", "--model=rnn"]),
    (["--model=cnn", "--init=he_normal"],
     ["--init", "--model=cnn", "delta_orthogonal"]),
    (["--model=transformer", "--width=5"],
     ["--model=transformer", "heads", "must divide width 5"]),
    (["--model=rnn", "--act=maxout"], ["--act", "--model=rnn", "maxout"]),
    (["--model=cnn", "--qr_layers=7"], ["--qr_layers", "depth=4"]),
    (["--model=lstm"], ["--model", "lstm", "transformer"]),
)


class BadInputTest(absltest.TestCase):

  def test_one_line_error_and_nothing_written(self):
    root = self.create_tempdir().full_path
    cases = [(root, args + [f"--out_dir={root}/run{i}"])
             for i, (args, _) in enumerate(BAD_INPUTS)]
    procs = cli_testing.run_cases(MODULE, cases)
    for (args, needles), proc in zip(BAD_INPUTS, procs):
      with self.subTest(args=args):
        self.assertNotEqual(proc.returncode, 0, args)
        self.assertNotIn("Traceback", proc.stderr)
        line = proc.stderr.strip()
        self.assertLen(line.splitlines(), 1, line)
        for needle in needles:
          self.assertIn(needle, line)
    self.assertEqual(os.listdir(root), [])


if __name__ == "__main__":
  absltest.main()
