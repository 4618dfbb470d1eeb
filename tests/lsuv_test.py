"""Tests for vgrad.nn.lsuv: Mishkin & Matas's LSUV against exact facts.

Exact facts: with zero biases a layer's pre-activation is linear in its
kernel, so one rescaling by 1/sqrt(Var) lands on variance 1 up to rounding;
for a linear net LSUV from the orthogonal pre-init is that orthogonal
matrix times a positive scalar. Statistical facts use six-standard-
deviation bounds derived where they are used.
"""

import functools
import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vgrad.nn import lsuv
from vgrad.nn import models
from vgrad.training import data
from vgrad.training import train

# float32 rounding of one exact rescale: the kernel entries (2 eps), a dot
# product of n <= 64 terms (n eps at worst) and a pooled variance of <= 2^15
# entries (15 eps, pairwise sums), doubled because a variance is quadratic:
# 2 (2 + 64 + 15) eps32 ~ 2e-5. 1e-4 covers it and is 1000x below TOL, so it
# still tells one exact rescale from a loop that merely stopped within tol.
ONE_RESCALE_ATOL32 = 1e-4


# Most tests share one shape, (B, n_in) = (128, 32) into width-32 layers and
# 5 outputs, so the eager pre-initialisation (Gaussian draws and QR of a
# 32 x 32 and a 32 x 5 matrix) compiles once for the whole file.
BATCH, N_IN = 128, 32


def _mlp(act="relu", depth=4, width=32, num_outputs=5, dtype=jnp.float32,
         act_params=None, sigma_b2=None):
  return _cached_mlp(act, depth, width, num_outputs, jnp.dtype(dtype).name,
                     tuple(sorted((act_params or {}).items())), sigma_b2)


@functools.cache
def _cached_mlp(act, depth, width, num_outputs, dtype, act_params, sigma_b2):
  """One model object per configuration: ``lsuv_init`` is jitted with the
  model as a static argument, and two ``make_mlp`` calls give unequal
  modules, so sharing the object lets the tests share the compiled LSUV
  program."""
  return models.make_mlp(depth=depth, width=width, activation=act,
                         init="lsuv", num_outputs=num_outputs,
                         param_dtype=jnp.dtype(dtype),
                         activation_params=dict(act_params),
                         sigma_b2=sigma_b2)


def _layers(model, tree):
  """Each layer's ``{kernel, bias}`` in forward order."""
  return [functools.reduce(lambda t, k: t[k], path.split("/"), tree)
          for path in models.layer_paths(model)]


def _inputs(n, d, seed=1, dtype=np.float32, scale=1.0, shift=0.0):
  """``scale * N(0, 1) + shift`` inputs ``(n, d)``, drawn by NumPy: a
  ``jax.random.normal`` per shape would compile the threefry hash each
  time. Call with float64 only inside ``jax.enable_x64``."""
  z = np.random.default_rng(seed).standard_normal((n, d))
  return jnp.asarray((scale * z + shift).astype(dtype))


def _seed(tree, s):
  return jax.tree_util.tree_map(lambda a: a[s], tree)


def _blob_variances(model, params, x):
  """Var of every normalised blob: h_1 .. h_depth, then the logits."""
  y, hs = model.apply(params, x, return_preactivations=True)
  blobs = hs + ([y] if model.num_outputs is not None else [])
  return np.array([np.var(np.asarray(b, np.float64)) for b in blobs])


class UnitVarianceTest(parameterized.TestCase):

  @parameterized.parameters(
      ("relu", {}, None), ("tanh", {}, None), ("selu", {}, None),
      ("maxout", {"k": 3}, None), ("tanh", {}, 0.09))
  def test_every_layer_has_unit_variance_on_the_batch(self, act, act_params,
                                                      sigma_b2):
    model = _mlp(act, act_params=act_params, sigma_b2=sigma_b2)
    # Input variance 9: the orthogonal first layer keeps it (Var(h_1) ~ 9),
    # so at least layer 1 must be rescaled whatever the activation.
    x = _inputs(BATCH, N_IN, scale=3)
    before = model.init(jax.random.key(0), x[:1])
    params, info = lsuv.lsuv_init(model, before, x)
    for old, new in zip(_layers(model, before), _layers(model, params)):
      # Biases untouched; each kernel multiplied by one positive scalar.
      np.testing.assert_array_equal(new["bias"], old["bias"])
      ratio = np.asarray(new["kernel"]) / np.asarray(old["kernel"])
      self.assertGreater(ratio.min(), 0)
      np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-6)
    for field in info:
      chex.assert_shape(field, (5,))           # 4 hidden layers + readout
    measured = _blob_variances(model, params, x)
    # Recomputed through model.apply: the same float32 ops, another path.
    np.testing.assert_allclose(measured, info.variance, rtol=1e-5)
    self.assertTrue(np.all(np.abs(measured - 1) < lsuv.TOL), measured)
    self.assertTrue(np.all(info.converged))
    self.assertFalse(np.any(info.degenerate))
    self.assertTrue(np.all(info.iterations <= lsuv.MAX_ITERS))
    if sigma_b2 is None:
      # h_l = W_l x_{l-1} is linear in W_l: at most one rescale, exact.
      self.assertTrue(np.all(info.iterations <= 1), info.iterations)
      self.assertEqual(int(info.iterations[0]), 1)
      rescaled = np.asarray(info.iterations) == 1
      np.testing.assert_allclose(measured[rescaled], 1.0,
                                 atol=ONE_RESCALE_ATOL32)
    else:
      self.assertGreaterEqual(int(info.iterations[0]), 1)

  def test_loop_stops_at_the_cap_when_the_target_is_out_of_reach(self):
    # Var(c z + b) = c^2 Vz + 2 c C + Vb >= Vb - C^2 / Vz for every scale c
    # (z = W x, pooled over examples and units). With sigma_b2 = 1.5^2 that
    # floor exceeds 1 + tol, checked below, so the loop must hit the cap.
    max_iters = 7
    model = models.make_mlp(depth=1, width=32, activation="tanh",
                            init="lsuv", sigma_b2=2.25)
    x = _inputs(BATCH, N_IN)
    before = model.init(jax.random.key(0), x[:1])
    layer = models.layer_params(before, 1)
    z = np.asarray(x, np.float64) @ np.asarray(layer["kernel"], np.float64)
    b = np.broadcast_to(np.asarray(layer["bias"], np.float64), z.shape)
    cov = np.mean((z - z.mean()) * (b - b.mean()))
    floor = b.var() - cov ** 2 / z.var()
    self.assertGreater(floor, 1 + lsuv.TOL)
    after, info = lsuv.lsuv_init(model, before, x, max_iters=max_iters)
    np.testing.assert_array_equal(info.iterations, [max_iters])
    np.testing.assert_array_equal(info.converged, [False])
    np.testing.assert_array_equal(info.degenerate, [False])
    self.assertGreaterEqual(float(info.variance[0]), floor * (1 - 1e-5))
    np.testing.assert_allclose(_blob_variances(model, after, x),
                               info.variance, rtol=1e-5)

  def test_zero_iterations_change_nothing(self):
    model = _mlp("relu")
    x = _inputs(BATCH, N_IN)
    before = model.init(jax.random.key(0), x[:1])
    after, info = lsuv.lsuv_init(model, before, x, max_iters=0)
    chex.assert_trees_all_equal(after, before)
    np.testing.assert_array_equal(info.iterations, 0)


class ExactTest(absltest.TestCase):

  def test_linear_net_is_orthogonal_scaled_to_unit_variance(self):
    with jax.enable_x64(True):
      n, depth = 16, 4
      model = models.make_mlp(depth=depth, width=n, activation="linear",
                              init="lsuv", num_outputs=n,
                              param_dtype=jnp.float64)
      x = _inputs(64, n, dtype=np.float64, scale=2, shift=0.5)
      before = model.init(jax.random.key(3), x[:1])
      # A tolerance far below the pre-init's distance from 1 forces one
      # rescale per layer; in float64 it lands on 1 to ~1e-15.
      after, info = lsuv.lsuv_init(model, before, x, tol=1e-8)
      np.testing.assert_array_equal(info.iterations, 1)
      np.testing.assert_allclose(info.variance, 1.0, atol=1e-12)
      z = np.asarray(x)
      for old, new in zip(_layers(model, before),
                          _layers(model, after)):
        q, w = np.asarray(old["kernel"]), np.asarray(new["kernel"])
        np.testing.assert_allclose(q.T @ q, np.eye(n), atol=1e-12)
        scale = 1 / np.sqrt(np.var(z @ q))     # what Algorithm 1 divides by
        np.testing.assert_allclose(w, scale * q, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(w.T @ w, scale ** 2 * np.eye(n),
                                   atol=1e-12 * scale ** 2)
        z = z @ w
      self.assertAlmostEqual(np.var(z), 1.0, delta=1e-12)

  def test_deterministic_given_the_key(self):
    model = _mlp("tanh")
    x = _inputs(BATCH, N_IN)
    a = lsuv.initialize(model, jax.random.key(5), x)
    b = lsuv.initialize(model, jax.random.key(5), x)
    chex.assert_trees_all_equal(a, b)
    c = lsuv.initialize(model, jax.random.key(6), x)
    self.assertFalse(np.array_equal(models.layer_params(a, 1)["kernel"],
                                    models.layer_params(c, 1)["kernel"]))

  @pytest.mark.slow
  def test_vmapped_seeds_equal_one_seed_at_a_time(self):
    with jax.enable_x64(True):
      # Biases make the number of iterations differ between seeds, so the
      # batched while_loop must mask the seeds that already stopped.
      # 16 inputs, width 16 and 16 outputs: the float64 pre-initialisation
      # shapes of the linear test above, compiled once.
      model = _mlp("relu", depth=5, width=16, num_outputs=16,
                   dtype=jnp.float64, sigma_b2=0.09)
      x = _inputs(64, 16, dtype=np.float64)
      # The seeds' starting points, stacked on a leading axis (drawn one at
      # a time: only lsuv_init is under test here).
      before = jax.tree_util.tree_map(
          lambda *a: np.stack(a),
          *[model.init(jax.random.key(s), x[:1]) for s in range(3)])
      params, info = jax.vmap(lambda p: lsuv.lsuv_init(model, p, x))(before)
      iterations = np.asarray(info.iterations)
      self.assertGreater(len(np.unique(iterations)), 1, iterations)
      for s in range(3):
        p_s, info_s = lsuv.lsuv_init(model, _seed(before, s), x)
        # Same float64 ops, batched or not: rounding differences ~1e-15.
        chex.assert_trees_all_close(_seed(params, s), p_s, rtol=1e-10,
                                    atol=1e-14)
        np.testing.assert_array_equal(iterations[s], info_s.iterations)
        np.testing.assert_array_equal(info.converged[s], info_s.converged)

  def test_initialize_is_model_init_without_a_data_dependent_init(self):
    model = models.make_mlp(depth=3, width=32, init="he_normal",
                            num_outputs=5)
    self.assertIsNone(model.data_init)
    x = _inputs(BATCH, N_IN)
    chex.assert_trees_all_equal(
        lsuv.initialize(model, jax.random.key(0), x),
        model.init(jax.random.key(0), x[:1]))


class DegenerateTest(absltest.TestCase):

  def test_zero_input_leaves_every_layer_as_is(self):
    model = _mlp("relu")
    x = jnp.zeros((BATCH, N_IN))
    before = model.init(jax.random.key(0), x[:1])
    after, info = lsuv.lsuv_init(model, before, x)
    chex.assert_tree_all_finite(after)
    chex.assert_trees_all_equal(after, before)
    np.testing.assert_array_equal(info.degenerate, True)
    np.testing.assert_array_equal(info.converged, False)
    np.testing.assert_array_equal(info.iterations, 0)

  def test_a_dead_relu_layer_flags_the_layers_above(self):
    # Bias -100 with Var(W_1 x) = 1 after LSUV puts every h_1 below zero
    # (a 100-sigma event otherwise): x_1 = 0 and, with zero biases above,
    # layers 2.. and the readout see no signal.
    model = _mlp("relu")
    x = _inputs(BATCH, N_IN)
    before = model.init(jax.random.key(0), x[:1])
    before["params"]["layers_0"]["bias"] = jnp.asarray(
        np.full((32,), -100.0, np.float32))
    after, info = lsuv.lsuv_init(model, before, x)
    chex.assert_tree_all_finite(after)
    np.testing.assert_array_equal(info.degenerate, [False] + [True] * 4)
    self.assertTrue(bool(info.converged[0]))
    for old, new in list(zip(_layers(model, before),
                             _layers(model, after)))[1:]:
      chex.assert_trees_all_equal(new, old)


@pytest.mark.slow   # a 10-layer LSUV program per activation
class SignalPropagationTest(parameterized.TestCase):

  @parameterized.parameters("relu", "tanh")
  def test_deep_net_keeps_unit_variance_on_held_out_inputs(self, act):
    """Held-out variance of every layer matches the LSUV batch's.

    For a fixed net, the pooled variance over a batch is (to first order;
    the pooled mean's own fluctuation is O(1/B)) the mean over examples of
    s_b = mean_i (h_bi - m)^2, i.i.d. across examples. The LSUV batch and
    the held-out batch are independent samples of size B, so
    Var_test - Var_lsuv has standard deviation std(s) sqrt(2 / B); a
    six-sigma band fails with probability < 1e-8 per layer. ``uniform``
    misses it by orders of magnitude.

    Ten layers, as deep as the lectures' deep XOR net: the bands are per
    layer, so depth adds layers to check, not precision.
    """
    depth, width, batch = 10, 64, 512
    x = _inputs(batch, width, seed=1)
    x_test = _inputs(batch, width, seed=2)
    model = _mlp(act, depth=depth, width=width, num_outputs=10)
    params = lsuv.initialize(model, jax.random.key(0), x)
    _, info = lsuv.lsuv_init(model, params, x)   # re-measures: no rescale
    np.testing.assert_array_equal(info.iterations, 0)
    y, hs = model.apply(params, x_test, return_preactivations=True)
    blobs = [np.asarray(h, np.float64) for h in hs + [y]]
    var_test = np.array([h.var() for h in blobs])
    s = [np.mean((h - h.mean()) ** 2, axis=1) for h in blobs]
    sigma = np.array([v.std() for v in s]) * math.sqrt(2 / batch)
    np.testing.assert_array_less(np.abs(var_test - info.variance),
                                 6 * sigma)
    np.testing.assert_array_less(np.abs(var_test - 1),
                                 lsuv.TOL + 6 * sigma)

    plain = models.make_mlp(depth=depth, width=width, activation=act,
                            init="uniform", num_outputs=10)
    y, hs = plain.apply(plain.init(jax.random.key(0), x[:1]), x_test,
                        return_preactivations=True)
    var_plain = np.array([np.var(np.asarray(h, np.float64))
                          for h in hs + [y]])
    # U(-1, 1) weights: Var(h_l) ~ (width / 3) E[phi(h_{l-1})^2], ~17 for
    # tanh, growing ~10x per layer for ReLU (measured: 19 and 1e10).
    self.assertGreater(var_plain[-2], 10.0)


class ValidationTest(absltest.TestCase):

  def test_bad_arguments_are_rejected(self):
    model = _mlp()
    x = _inputs(8, 32)
    params = model.init(jax.random.key(0), x[:1])
    with self.assertRaisesRegex(ValueError, "tol must be > 0"):
      lsuv.lsuv_init(model, params, x, tol=0.0)
    with self.assertRaisesRegex(ValueError, "max_iters must be an integer"):
      lsuv.lsuv_init(model, params, x, max_iters=-1)
    with self.assertRaisesRegex(ValueError, "max_iters must be an integer"):
      lsuv.lsuv_init(model, params, x, max_iters=2.5)
    with self.assertRaisesRegex(ValueError, r"x must be a batch"):
      lsuv.lsuv_init(model, params, x[0])
    with self.assertRaisesRegex(ValueError, "unknown data-dependent init"):
      lsuv.initialize(model.clone(data_init="nope"), jax.random.key(0), x)


@pytest.mark.slow   # LSUV on two seeds at once, then 100 Adam steps
class TrainingTest(absltest.TestCase):

  def test_deep_relu_net_trains_on_digits(self):
    """A depth-20 ReLU net with LSUV learns digits in 100 Adam steps.

    Parameters come from ``train.init_states`` (the LSUV path of every
    training run); the loop is a bare full-batch Adam so that the test
    compiles in about a second. It trains on the first 256 training
    examples, the very batch LSUV normalises on (``init_states`` uses up
    to ``train.LSUV_EXAMPLES`` of them): the 100 steps run ~6x faster than
    on all 1438, with still 23-32 examples of every class (a net that
    cannot train stays near ln 10 on any batch). Chance is ln 10 = 2.30
    nats; every seed must end below a tenth of it on the training set.
    (Measured: 0.012 and 0.0001 on seeds 0-1, from 2.7 at init; the same
    net without LSUV, its orthogonal pre-init alone, ends at 0.41 and 0.49,
    so the bound still tells the two apart.)
    """
    ds = data.digits()
    n = 256
    self.assertLessEqual(n, train.LSUV_EXAMPLES)
    x, y = jnp.asarray(ds.x_train[:n]), jnp.asarray(ds.y_train[:n])
    model = models.make_mlp(depth=20, width=32, activation="relu",
                            init="lsuv", num_outputs=10)
    optimizer = optax.adam(1e-3)
    keys = jax.random.split(jax.random.key(0), 2)
    states = train.init_states(model, optimizer, keys, x)

    def loss_fn(params):
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          model.apply(params, x), y))

    def fit(params, opt_state):
      def step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss
      (params, _), losses = jax.lax.scan(step, (params, opt_state), None,
                                         length=100)
      return loss_fn(params), losses[0]

    final, first = jax.jit(jax.vmap(fit))(states.params, states.opt_state)
    self.assertTrue(np.all(np.asarray(first) > 1.0), first)
    np.testing.assert_array_less(np.asarray(final), math.log(10) / 10)


if __name__ == "__main__":
  absltest.main()
