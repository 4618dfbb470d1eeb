"""The public API of ``import vgrad`` (README.md, "vgrad as a library")."""

import importlib
import subprocess
import sys

from absl.testing import absltest

import vgrad


class ApiTest(absltest.TestCase):

  def test_every_public_name_resolves(self):
    for name in vgrad.__all__:
      self.assertIsNotNone(getattr(vgrad, name), name)
    self.assertContainsSubset(vgrad.__all__, dir(vgrad))
    self.assertEqual(len(set(vgrad.__all__)), len(vgrad.__all__))

  def test_names_are_the_layer_objects(self):
    models = importlib.import_module("vgrad.nn.models")
    spectrum_study = importlib.import_module("vgrad.studies.spectrum_study")
    meanfield = importlib.import_module("vgrad.theory.meanfield")
    self.assertIs(vgrad.make_mlp, models.make_mlp)
    self.assertIs(vgrad.run_spectrum_study, spectrum_study.run_study)
    self.assertIs(vgrad.solve_meanfield, meanfield.solve)

  def test_the_issue_names_are_exported(self):
    self.assertContainsSubset(
        {"make_mlp", "MLP", "ACTIVATIONS", "INITIALIZERS", "get_activation",
         "get_initializer", "get_bias_initializer", "make_spectrum_probe",
         "make_log_spectrum_probe", "extreme_singular_values",
         "spectral_density", "fixed_point_q", "chi_1", "correlation_map",
         "critical_sigma_w2", "solve_grid", "singular_value_density",
         "predicted_moments", "init_states", "make_step_fn",
         "make_train_step", "load_dataset", "xor", "digits", "mnist",
         "run_spectrum_study", "run_training", "load_results",
         "transform_activation", "critical_point"},
        vgrad.__all__)

  def test_unknown_name_is_an_attribute_error(self):
    with self.assertRaisesRegex(AttributeError, "no attribute 'nope'"):
      vgrad.nope  # noqa: B018  pylint: disable=pointless-statement

  def test_import_vgrad_is_light(self):
    """``import vgrad`` and ``from vgrad import *``'s names are imported
    lazily: importing the package loads no JAX, matplotlib or absl."""
    code = ("import sys, vgrad; print(sorted(m for m in ('jax', "
            "'matplotlib', 'absl', 'flax', 'optax') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120, check=True)
    self.assertEqual(proc.stdout.strip(), "[]", proc.stderr)


if __name__ == "__main__":
  absltest.main()
