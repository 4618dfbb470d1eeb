"""Critical initialisation for any activation (issue 15, item 2)."""

import json
import os
import tempfile

from absl.testing import absltest
import cli_testing  # tests/cli_testing.py
import jax
import numpy as np
import pytest

import vgrad
from vgrad.nn import activations
from vgrad.theory import critical
from vgrad.theory import meanfield


def _check_on_the_line(test, act, point):
  """Independently of critical.py: mean field's own fixed point of the
  returned variances is the returned q*, and chi_1 there is 1."""
  activation = activations.get_activation(act)
  with jax.enable_x64(True):
    q = float(meanfield.fixed_point_q(activation, point.sigma_w2,
                                      point.sigma_b2))
    np.testing.assert_allclose(q, point.q_star, rtol=1e-6, err_msg=act)
    chi = float(meanfield.chi_1(activation, point.sigma_w2, point.sigma_b2,
                                q))
    np.testing.assert_allclose(chi, 1.0, rtol=1e-9, err_msg=act)


class CriticalPointTest(absltest.TestCase):

  def test_tanh_and_hard_tanh_agree_with_the_bisection_on_sigma_w2(self):
    for act, sb2, known in (("tanh", 0.05, 1.76095), ("hard_tanh", 0.05,
                                                       1.16554)):
      point = critical.critical_point(act, sigma_b2=sb2)
      with jax.enable_x64(True):
        bisected = float(meanfield.critical_sigma_w2(
            activations.get_activation(act), sb2))
      np.testing.assert_allclose(point.sigma_w2, bisected, rtol=1e-9)
      np.testing.assert_allclose(point.sigma_w2, known, atol=1e-5)
      self.assertEqual(point.sigma_b2, sb2)
      _check_on_the_line(self, act, point)

  def test_sigmoid_at_zero_bias_lies_beyond_the_old_search(self):
    # phi' <= 1/4: the critical sigma_w2 is ~103, where the bisection on
    # [0, 16] answers +inf.
    point = critical.critical_point("sigmoid", sigma_b2=0.0)
    self.assertBetween(point.sigma_w2, 100.0, 106.0)
    _check_on_the_line(self, "sigmoid", point)
    with jax.enable_x64(True):
      self.assertEqual(float(meanfield.critical_sigma_w2(
          activations.get_activation("sigmoid"), 0.0)), np.inf)

  def test_a_chosen_q_star(self):
    for act, q in (("tanh", 0.01), ("tanh", 2.0), ("hard_tanh", 0.3)):
      point = critical.critical_point(act, q_star=q)
      self.assertEqual(point.q_star, q)
      self.assertGreaterEqual(point.sigma_b2, 0.0)
      _check_on_the_line(self, act, point)
    # Small q* means small sigma_b2 (Pennington et al. 2017's regime).
    small = critical.critical_point("tanh", q_star=1e-3)
    self.assertLess(small.sigma_b2, 1e-5)

  def test_relu_line_every_q_at_zero_bias_and_nothing_beyond(self):
    point = critical.critical_point("relu", sigma_b2=0.0)
    self.assertEqual((point.sigma_w2, point.sigma_b2, point.q_star),
                     (2.0, 0.0, 1.0))
    with self.assertRaisesRegex(
        ValueError, r"^relu has no critical point .*sigma_b2=0.05: along "
        r"chi_1 = 1, sigma_b2 ranges over \[.*\]"):
      critical.critical_point("relu", sigma_b2=0.05)

  def test_where_none_exists_the_reason_is_one_line(self):
    with self.assertRaisesRegex(ValueError, r"q\*=0.01: .* sigma_b2 = "
                                r"-4\.\d+ < 0"):
      critical.critical_point("sigmoid", q_star=0.01)
    for kwargs, needle in (({}, "exactly one"),
                           ({"sigma_b2": 0.1, "q_star": 1.0}, "exactly one"),
                           ({"sigma_b2": -1.0}, "sigma_b2 must be"),
                           ({"q_star": 0.0}, "q_star must be")):
      with self.assertRaisesRegex(ValueError, needle):
        critical.critical_point("tanh", **kwargs)
    with self.assertRaisesRegex(ValueError, "maxout"):
      critical.critical_point("maxout", sigma_b2=0.0)
    with self.assertRaisesRegex(ValueError, "unknown activation"):
      critical.critical_point("tahn", sigma_b2=0.0)

  def test_public_name(self):
    self.assertIs(vgrad.critical_point, critical.critical_point)


@pytest.mark.slow   # two entry points' runs in warm interpreters
class InitFlagTest(absltest.TestCase):
  """--init=critical: Gaussian weights at each activation's own point."""

  def test_train_resolves_each_activation_and_spectrum_records_it(self):
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    proc = cli_testing.run_module(
        "experiments.train", "--dataset=xor", "--act=tanh,sigmoid",
        "--init=critical", "--sigma_b2=0.05", "--depth=2", "--width=4",
        "--steps=1", "--log_every=1", "--seeds=1", "--tensorboard=false",
        f"--out_dir={root}/train", cwd=root)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    with open(os.path.join(root, "train", "metrics.json")) as f:
      arms = {arm["config"]["act"]: arm["config"]
              for arm in json.load(f)["arms"]}
    for act in ("tanh", "sigmoid"):
      point = critical.critical_point(act, sigma_b2=0.05)
      self.assertEqual(arms[act]["init"], "gaussian")
      np.testing.assert_allclose(arms[act]["sigma_w2"], point.sigma_w2,
                                 rtol=1e-12)
      self.assertEqual(arms[act]["sigma_b2"], 0.05)
    self.assertGreater(arms["sigmoid"]["sigma_w2"], 16.0)
    proc = cli_testing.run_module(
        "experiments.jacobian_spectrum", "--act=tanh", "--init=critical",
        "--q_star=0.2", "--depth=2", "--width=4", "--num_inputs=1",
        f"--out_dir={root}/spectrum", cwd=root)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    with open(os.path.join(root, "spectrum", "config.json")) as f:
      config = json.load(f)
    point = critical.critical_point("tanh", q_star=0.2)
    np.testing.assert_allclose(
        (config["sigma_w2"], config["sigma_b2"]),
        (point.sigma_w2, point.sigma_b2), rtol=1e-12)


if __name__ == "__main__":
  absltest.main()
