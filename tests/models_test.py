"""Tests for vgrad.nn.models: shapes, heads, pre-activations, validation."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrad.nn import initializers
from vgrad.nn import models

# One architecture (5 inputs, width 7, 2 outputs) wherever a test does not
# need its own: Flax's eager init compiles a random draw per distinct
# parameter shape, once per process, so shared shapes are drawn for free.
N_IN, WIDTH, N_OUT = 5, 7, 2


def _init(model, n_in, seed=0):
  return model.init(jax.random.key(seed), jnp.zeros((n_in,)))


def _inputs(shape, seed=1):
  return np.random.default_rng(seed).standard_normal(shape).astype(
      np.float32)


class MLPTest(parameterized.TestCase):

  @parameterized.parameters(("tanh", 1), ("maxout", 3))
  @pytest.mark.slow  # under the parameters: absl copies it to each case
  def test_shapes_single_and_batched(self, act, k):
    params_kw = {"k": k} if act == "maxout" else {}
    model = models.make_mlp(depth=3, width=WIDTH, activation=act,
                            activation_params=params_kw, num_outputs=N_OUT)
    params = _init(model, N_IN)
    kernel = models.layer_params(params, 2)["kernel"]
    chex.assert_shape(kernel, (k, WIDTH, WIDTH) if k > 1 else (WIDTH, WIDTH))
    x = _inputs((4, N_IN))
    y, hs = model.apply(params, x, return_preactivations=True)
    chex.assert_shape(y, (4, N_OUT))
    self.assertLen(hs, 3)
    for h in hs:
      chex.assert_shape(h, (4, WIDTH, k) if k > 1 else (4, WIDTH))
    y1 = model.apply(params, x[0])
    chex.assert_shape(y1, (N_OUT,))
    # One input and a batch of four go through different float32 kernels
    # (matrix-vector against matrix-matrix products): they agree to a few
    # ulps of the O(1) terms summed, so an output near zero (here ~0.04)
    # needs an absolute tolerance too.
    chex.assert_trees_all_close(y1, y[0], rtol=1e-6, atol=1e-6)

  def test_no_readout_returns_last_hidden_layer(self):
    model = models.make_mlp(depth=2, width=WIDTH, activation="relu")
    params = _init(model, N_IN)
    x = _inputs((N_IN,))
    y, hs = model.apply(params, x, return_preactivations=True)
    chex.assert_trees_all_close(y, jax.nn.relu(hs[-1]))
    self.assertNotIn("readout", params["params"])

  def test_layers_compose_to_the_model(self):
    model = models.make_mlp(depth=3, width=WIDTH, activation="elu",
                            num_outputs=N_OUT, sigma_b2=None)
    params = _init(model, N_IN)
    x = _inputs((N_IN,), seed=2)
    z = x
    layer = models.hidden_layer(model)
    for l in range(1, 4):
      z_model, _ = model.apply(params, l, z, method=models.MLP.apply_layer)
      z, _ = layer.apply({"params": models.layer_params(params, l)}, z)
      chex.assert_trees_all_close(z, z_model)
    y = model.apply(params, z, method=models.MLP.apply_output)
    chex.assert_trees_all_close(y, model.apply(params, x), rtol=1e-6)

  def test_heads(self):
    x = _inputs((8, N_IN), seed=0)
    sig = models.make_mlp(depth=2, width=WIDTH, activation="tanh",
                          num_outputs=N_OUT, head="sigmoid")
    y = np.asarray(sig.apply(_init(sig, N_IN), x))
    self.assertTrue(np.all((y > 0) & (y < 1)))
    soft = models.make_mlp(depth=2, width=WIDTH, activation="tanh",
                           num_outputs=N_OUT, head="softmax")
    y = np.asarray(soft.apply(_init(soft, N_IN), x))
    chex.assert_trees_all_close(y.sum(-1), np.ones(8), rtol=1e-6)

  def test_depth_zero_is_a_linear_model(self):
    model = models.make_mlp(depth=0, width=4, num_outputs=N_OUT)
    params = _init(model, WIDTH)
    x = np.ones((WIDTH,), np.float32)
    w, b = (np.asarray(params["params"]["readout"][k])
            for k in ("kernel", "bias"))
    chex.assert_trees_all_close(model.apply(params, x), x @ w + b)

  def test_the_lecture_xor_net(self):
    # Lecture 10-1: 2 -> 10 sigmoid layers of 5 -> 1 sigmoid, U(-1, 1)
    # weights, zero biases.
    model = models.make_mlp(depth=10, width=5, activation="sigmoid",
                            init="uniform", num_outputs=1, head="sigmoid")
    params = _init(model, 2)
    leaves = jax.tree.leaves(params)
    self.assertEqual(sum(p.size for p in leaves),
                     2 * 5 + 5 + 9 * (25 + 5) + 5 + 1)
    for l in range(1, 11):
      p = models.layer_params(params, l)
      np.testing.assert_array_equal(p["bias"], 0.0)
      self.assertLessEqual(float(jnp.abs(p["kernel"]).max()), 1.0)

  def test_sigma_b2_draws_biases(self):
    # sigma_b2 is the bias VARIANCE: std sqrt(0.25) = 0.5.
    model = models.make_mlp(depth=1, width=5000, activation="tanh",
                            init="gaussian", sigma_b2=0.25)
    b = np.asarray(models.layer_params(_init(model, 2), 1)["bias"])
    self.assertAlmostEqual(b.std(), 0.5, delta=6 * 0.5 / np.sqrt(2 * 5000))

  def test_a_data_dependent_init_is_recorded_on_the_model(self):
    for init in initializers.INITIALIZERS:
      model = models.make_mlp(depth=2, width=3, init=init)
      expected = init if init in initializers.DATA_DEPENDENT else None
      self.assertEqual(model.data_init, expected)
    self.assertEqual(models.make_mlp(depth=2, width=3,
                                     init="lsuv").data_init, "lsuv")
    with self.assertRaisesRegex(ValueError, "sets its own scale from data"):
      models.make_mlp(depth=2, width=3, init="lsuv", sigma_w2=1.0)

  @parameterized.parameters(
      ({"depth": -1, "width": 3}, "depth"),
      ({"depth": 2, "width": 0}, "width"),
      ({"depth": 2, "width": 3, "activation": "nope"}, "valid names"),
      ({"depth": 2, "width": 3, "init": "nope"}, "valid names"),
      ({"depth": 2, "width": 3, "head": "sigmoid"}, "readout"),
      ({"depth": 0, "width": 3}, "readout"),
      ({"depth": 2, "width": 3, "num_outputs": 1, "head": "tanh"}, "head"),
  )
  def test_invalid_arguments(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      models.make_mlp(**kwargs)


if __name__ == "__main__":
  absltest.main()
