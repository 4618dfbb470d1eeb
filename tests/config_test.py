"""Tests for vgrad.nn.config: the one network configuration and its checks."""

import dataclasses
import math

from absl.testing import absltest
from absl.testing import parameterized

from vgrad.nn import config
from vgrad.nn import initializers
from vgrad.nn import models


class NetworkConfigTest(parameterized.TestCase):

  def test_a_valid_config_and_its_make_mlp_arguments(self):
    net = config.NetworkConfig(act="leaky_relu", init="gaussian", depth=3,
                               width=7, sigma_w2=2.0, sigma_b2=0.25,
                               act_params={"slope": 0.2})
    self.assertIs(net.validate(), net)
    self.assertEqual(net.mlp_kwargs(), {
        "depth": 3, "width": 7, "activation": "leaky_relu",
        "activation_params": {"slope": 0.2}, "init": "gaussian",
        "sigma_w2": 2.0, "sigma_b2": 0.25})
    model = models.make_mlp(**net.mlp_kwargs())
    self.assertEqual((model.depth, model.width), (3, 7))
    with self.assertRaises(dataclasses.FrozenInstanceError):
      net.depth = 4  # pytype: disable=not-writable
    # None: the initializer's own scale, zero biases.
    config.NetworkConfig(init="orthogonal", sigma_w2=None, sigma_b2=None)
    # Zero variances are allowed (zero weights, zero biases).
    config.NetworkConfig(init="gaussian", sigma_w2=0.0, sigma_b2=0.0)

  @parameterized.named_parameters(
      ("zero_depth", {"depth": 0}, "depth", "must be an integer >= 1, got 0"),
      ("fractional_depth", {"depth": 2.5}, "depth", ">= 1, got 2.5"),
      ("string_depth", {"depth": "ten"}, "depth", "got 'ten'"),
      ("bool_depth", {"depth": True}, "depth", "got True"),
      ("zero_width", {"width": 0}, "width", "must be an integer >= 1, got 0"),
      ("negative_width", {"width": -3}, "width", "got -3"),
      ("unknown_act", {"act": "sigmod"}, "act",
       "unknown activation 'sigmod'; valid names: .*relu.*tanh"),
      ("bad_act_param", {"act": "leaky_relu", "act_params": {"slope": 2.0}},
       "act_params", r"slope must be in \[0, 1\), got 2.0"),
      ("foreign_act_param", {"act": "tanh", "act_params": {"k": 3}},
       "act_params", "takes no parameter"),
      ("unknown_init", {"init": "xavier"}, "init",
       "unknown initializer 'xavier'; valid names: .*glorot_uniform"),
      ("negative_sigma_w2", {"init": "gaussian", "sigma_w2": -1.0},
       "sigma_w2", "must be a finite number >= 0, got -1.0"),
      ("infinite_sigma_w2", {"init": "gaussian", "sigma_w2": math.inf},
       "sigma_w2", "finite"),
      ("negative_sigma_b2", {"sigma_b2": -0.5}, "sigma_b2",
       "must be a finite number >= 0, got -0.5"),
      ("nan_sigma_b2", {"sigma_b2": math.nan}, "sigma_b2", "finite"),
      ("sigma_w2_with_fixed_init", {"init": "he_normal", "sigma_w2": 2.0},
       "sigma_w2", r"applies only to init delta_orthogonal\|gaussian\|orthogonal; "
       r"initializer "
       "'he_normal' fixes its own scale"),
      ("sigma_w2_with_lsuv", {"init": "lsuv", "sigma_w2": 1.0}, "sigma_w2",
       "sets its own scale from data"),
  )
  def test_rejects_a_bad_field_naming_it(self, change, field, reason):
    with self.assertRaisesRegex(config.ConfigError, reason) as raised:
      config.NetworkConfig(**change)
    self.assertEqual(raised.exception.field, field)
    self.assertTrue(str(raised.exception).startswith(f"{field}: "))
    self.assertIsInstance(raised.exception, ValueError)

  def test_field_checks_are_the_initializers_and_activations_rules(self):
    self.assertEqual(config.check_count("depth", 3.0, 1), 3)
    config.check_variance("sigma_b2", None)
    with self.assertRaisesRegex(config.ConfigError, "sigma_b2: must be"):
      config.check_variance("sigma_b2", "big")
    # The same rule as the initializer registry's own check.
    with self.assertRaisesRegex(ValueError, "sigma_b2 must be a finite"):
      initializers.get_bias_initializer(-1.0)
    for init in initializers.INITIALIZERS:
      takes = init in initializers.TAKES_SIGMA_W2
      try:
        config.check_init(init, 1.0)
        accepted = True
      except config.ConfigError:
        accepted = False
      self.assertEqual(accepted, takes, init)


if __name__ == "__main__":
  absltest.main()
