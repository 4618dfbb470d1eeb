"""Tests for vgrad.training.train: the step, its metrics, losses and blow-ups."""

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
from vgrad.training import train

XOR_X = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
XOR_Y = jnp.array([0, 1, 1, 0], jnp.int32)


def _xor_setup(act="sigmoid", init="uniform", depth=3, width=4, lr=0.1,
               seeds=3):
  return _cached_xor_setup(act, init, depth, width, lr, seeds)


@functools.cache
def _cached_xor_setup(act, init, depth, width, lr, seeds):
  """One setup per configuration, shared by the tests (states are immutable
  arrays), so its initialisation compiles once."""
  model = models.make_mlp(depth=depth, width=width, activation=act,
                          init=init, num_outputs=1)
  optimizer = train.make_optimizer("sgd", lr)
  keys = jax.random.split(jax.random.key(0), seeds)
  states = train.init_states(model, optimizer, keys, XOR_X)
  step_fn = train.make_step_fn(model, optimizer, "binary_cross_entropy",
                               "binary")
  return model, optimizer, keys, states, step_fn


@functools.cache
def _xor_step():
  """The default setup's jitted S-seed step, one object for every test that
  steps it, all with the same shapes: so it is traced (and compiled) once
  in the whole file, and chex fails any test that makes it retrace."""
  step_fn = _xor_setup()[-1]
  return train.make_train_step(chex.assert_max_traces(step_fn, n=1))


@functools.cache
def _xor_chunk():
  """The default setup's 4-step chunk, shared like ``_xor_step``. Two call
  sites in the chunk (the scan body and the last step), each traced once
  for the one compilation; later calls trace nothing."""
  step_fn = _xor_setup()[-1]
  return train.make_train_chunk(chex.assert_max_traces(step_fn, n=2), 4)


def _normal(shape, seed, scale=1.0):
  """``scale * N(0, 1)`` float32 inputs drawn by NumPy: test data need no
  threefry compilation per shape."""
  z = np.random.default_rng(seed).standard_normal(shape)
  return (scale * z).astype(np.float32)


class StepTest(parameterized.TestCase):

  @pytest.mark.slow   # alone: the shared xor setup and step compile
  def test_train_step_compiles_once(self):
    _, _, keys, states, _ = _xor_setup()
    step = _xor_step()
    for i in range(5):
      states, metrics = step(states, keys, i, XOR_X, XOR_Y)
    chex.assert_shape(metrics["loss"], (3,))
    chex.assert_shape(metrics["grad_norm_w"], (3, 4))
    chex.assert_tree_all_finite(states.params)

  @pytest.mark.slow
  def test_chunk_compiles_once_and_equals_single_steps(self):
    _, _, keys, states, _ = _xor_setup()
    chunk = _xor_chunk()    # traces at most twice (see _xor_chunk)
    a, _, losses = chunk(states, keys, 0, XOR_X, XOR_Y)
    a, _, _ = chunk(a, keys, 4, XOR_X, XOR_Y)
    chex.assert_shape(losses, (4, 3))
    step = _xor_step()
    b = states
    for i in range(8):
      b, _ = step(b, keys, i, XOR_X, XOR_Y)
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-6, atol=1e-7)

  @pytest.mark.slow
  def test_vmapped_seeds_equal_one_seed_at_a_time(self):
    model, optimizer, keys, states, step_fn = _xor_setup()
    together, _, _ = _xor_chunk()(states, keys, 0, XOR_X, XOR_Y)
    together, _, _ = _xor_chunk()(together, keys, 4, XOR_X, XOR_Y)
    chunk = train.make_train_chunk(step_fn, 4)   # one seed: its own program
    for s in range(3):
      alone = train.init_state(model, optimizer, keys[s], XOR_X)
      alone = jax.tree_util.tree_map(lambda v: v[None], alone)
      alone, _, _ = chunk(alone, keys[s:s + 1], 0, XOR_X, XOR_Y)
      alone, _, _ = chunk(alone, keys[s:s + 1], 4, XOR_X, XOR_Y)
      chex.assert_trees_all_close(
          jax.tree_util.tree_map(lambda v, s=s: v[s], together.params),
          jax.tree_util.tree_map(lambda v: v[0], alone.params),
          rtol=1e-6, atol=1e-7)

  @pytest.mark.slow
  def test_lsuv_models_are_normalised_on_the_first_training_inputs(self):
    # The rows after LSUV_EXAMPLES have 25x the variance: normalising on
    # them too would shrink every kernel by a large factor.
    # 16 inputs, width 16, one output and three seeds: the Gaussian draws
    # of the dropout and divergence tests' initialisations, compiled once.
    n = train.LSUV_EXAMPLES
    x = np.concatenate([_normal((n, 16), 1), _normal((88, 16), 2, scale=5)])
    model = models.make_mlp(depth=3, width=16, activation="tanh",
                            init="lsuv", num_outputs=1)
    keys = jax.random.split(jax.random.key(0), 3)
    states = train.init_states(model, train.make_optimizer("sgd", 0.1), keys,
                               x)
    # Each seed's LSUV on the first n inputs, and on all of them, as
    # vmapped calls: the first is init_states' own batched program (cached,
    # not compiled again), the second one more program for the three seeds.
    first = jax.vmap(lambda k: lsuv.initialize(model, k, x[:n]))(keys)
    every = jax.vmap(lambda k: lsuv.initialize(model, k, x))(keys)
    for s in range(3):
      params = jax.tree_util.tree_map(lambda v, s=s: v[s], states.params)
      chex.assert_trees_all_close(
          params, jax.tree_util.tree_map(lambda v, s=s: v[s], first),
          rtol=1e-5)
      y, hs = model.apply(params, x[:n], return_preactivations=True)
      for blob in hs + [y]:
        self.assertLess(abs(float(np.var(np.asarray(blob))) - 1), lsuv.TOL)
      w_all = models.layer_params(
          jax.tree_util.tree_map(lambda v, s=s: v[s], every), 1)
      w_first = models.layer_params(params, 1)
      self.assertLess(float(np.linalg.norm(np.asarray(w_all["kernel"]))),
                      0.5 * float(np.linalg.norm(
                          np.asarray(w_first["kernel"]))))

  def test_gradients_match_finite_differences(self):
    with jax.enable_x64(True):
      model = models.make_mlp(depth=2, width=3, activation="tanh",
                              init="glorot_normal", num_outputs=3,
                              param_dtype=jnp.float64, sigma_b2=0.09)
      x = jnp.asarray(np.random.default_rng(1).standard_normal((5, 4)))
      y = jnp.array([0, 2, 1, 1, 0])
      params = model.init(jax.random.key(2), x)
      f = train.make_loss_and_metrics(model, "categorical_cross_entropy",
                                      "multiclass")
      # Jitted, as every caller runs it: one compilation instead of one per
      # eager operation.
      grads, metrics, _ = jax.jit(f)(params, x, y)
      flat, unravel = jax.flatten_util.ravel_pytree(params)
      flat = np.asarray(flat)
      flat_grads = np.asarray(jax.flatten_util.ravel_pytree(grads)[0])

      @jax.jit
      def loss(v):
        return f(unravel(v), x, y)[1]["loss"]

      eps = 1e-6
      for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = eps
        fd = (float(loss(flat + e)) - float(loss(flat - e))) / (2 * eps)
        np.testing.assert_allclose(flat_grads[i], fd, rtol=1e-6, atol=1e-9)
      kernel = np.asarray(grads["params"]["layers_1"]["kernel"])
      # float32 norms summed in another order (scaled by the largest entry,
      # so that they never overflow): equal to float32 rounding.
      np.testing.assert_allclose(metrics["grad_norm_w"][1],
                                 np.linalg.norm(kernel), rtol=1e-6)
      np.testing.assert_allclose(
          metrics["grad_norm_b"][2],
          np.linalg.norm(np.asarray(grads["params"]["readout"]["bias"])),
          rtol=1e-6)

  @pytest.mark.slow   # three training steps to compile
  def test_zero_init_units_stay_identical(self):
    # Two hidden layers: one fed by the data, one by hidden units.
    for act in ("sigmoid", "tanh", "relu"):
      model = models.make_mlp(depth=2, width=6, activation=act, init="zeros",
                              num_outputs=10)
      optimizer = train.make_optimizer("sgd", 0.5)
      x = _normal((32, 5), 0)
      y = jnp.asarray(np.arange(32) % 10)
      keys = jax.random.split(jax.random.key(0), 2)
      states = train.init_states(model, optimizer, keys, x)
      step_fn = train.make_step_fn(model, optimizer,
                                   "categorical_cross_entropy", "multiclass")
      # 50 calls of the jitted step: compiles one step, where a 50-step
      # chunk compiles it twice (scan body and last step).
      step = train.make_train_step(step_fn)
      for i in range(50):
        states, _ = step(states, keys, i, x, y)
      params = jax.tree_util.tree_map(np.asarray, states.params["params"])
      moved = False
      for l in range(2):
        w = params[f"layers_{l}"]["kernel"]                   # (S, in, 6)
        np.testing.assert_array_equal(w, np.broadcast_to(w[..., :1],
                                                         w.shape))
        moved |= bool(np.any(w != 0))
      readout = params["readout"]["kernel"]                    # (S, 6, 10)
      np.testing.assert_array_equal(
          readout, np.broadcast_to(readout[:, :1], readout.shape))
      # sigmoid(0) = 1/2 feeds the next layer, so sigmoid weights do move;
      # tanh(0) = relu(0) = 0 leaves every hidden gradient exactly zero.
      self.assertEqual(moved, act == "sigmoid", act)

  @pytest.mark.slow
  def test_divergence_is_recorded_and_the_seed_frozen(self):
    # N(0, 1) weights into 16 ReLU units grow the logits ~sqrt(8) per layer;
    # with lr 1e4 four layers suffice (checked by hand: all three seeds
    # reach NaN at step 3).
    _, _, keys, states, step_fn = _xor_setup(
        act="relu", init="large_normal", depth=4, width=16, lr=1e4)
    chunk = train.make_train_chunk(step_fn, 30)
    out, metrics, losses = chunk(states, keys, 0, XOR_X, XOR_Y)
    diverged = np.asarray(out.diverged_at)
    self.assertTrue(np.all(diverged > 0), diverged)
    np.testing.assert_array_equal(metrics["diverged_at"], diverged)
    chex.assert_tree_all_finite(out.params)
    # The losses logged after divergence are the frozen (finite) ones or the
    # non-finite value that stopped the seed; nothing raised.
    self.assertEqual(losses.shape, (30, 3))
    first = int(diverged.min())
    self.assertFalse(np.isfinite(losses[first - 1]).all())

  def test_minibatches_cover_each_epoch_once(self):
    n, b = 10, 3
    x = jnp.arange(n, dtype=jnp.float32)[:, None]
    y = jnp.arange(n)
    state = train.TrainState(None, None, jnp.arange(n, dtype=jnp.int32),
                             jnp.zeros((), jnp.int32))
    key = jax.random.key(0)
    # Jitted as inside the training step (step traced, so the reshuffle is
    # a real branch): one compilation, not one per eager cond.
    batch = jax.jit(train._batch, static_argnums=5)  # pylint: disable=protected-access
    seen = []
    for step in range(6):     # 3 batches per epoch, 2 epochs
      perm, xb, yb = batch(state, key, step, x, y, b)
      state = state._replace(perm=perm)
      np.testing.assert_array_equal(xb[:, 0], yb)
      seen.append(np.asarray(yb))
    for epoch in (seen[:3], seen[3:]):
      values = np.concatenate(epoch)
      self.assertLen(set(values.tolist()), 9)
    self.assertFalse(np.array_equal(np.concatenate(seen[:3]),
                                    np.concatenate(seen[3:])))

  def test_full_batch_uses_every_example(self):
    state = train.TrainState(None, None, jnp.arange(4), jnp.zeros((),
                                                                  jnp.int32))
    _, xb, yb = train._batch(state, jax.random.key(0), 3, XOR_X, XOR_Y, 0)  # pylint: disable=protected-access
    np.testing.assert_array_equal(xb, XOR_X)
    np.testing.assert_array_equal(yb, XOR_Y)

  def test_dropout_only_in_training(self):
    # Width 16 at rate 0.5: the two keys' outputs agree only if their
    # masks agree on every active unit of 8 examples x 16 units x 2 layers.
    model = models.make_mlp(depth=2, width=16, activation="relu",
                            init="he_normal", num_outputs=1,
                            dropout_rate=0.5)
    x = _normal((8, 16), 0)
    params = model.init(jax.random.key(1), x)
    plain = models.make_mlp(depth=2, width=16, activation="relu",
                            init="he_normal", num_outputs=1)
    np.testing.assert_array_equal(model.apply(params, x),
                                  plain.apply(params, x))
    a = model.apply(params, x, train=True,
                    rngs={"dropout": jax.random.key(2)})
    b = model.apply(params, x, train=True,
                    rngs={"dropout": jax.random.key(3)})
    self.assertFalse(np.allclose(a, b))


class MetricTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_losses_match_their_formulas(self):
    logits = jnp.array([[2.0], [-1.0], [0.5]])
    y = jnp.array([1, 0, 0])
    bce = self.variant(lambda z, t: train.LOSSES["binary_cross_entropy"](
        z, t, "binary"))(logits, y)
    # The formulas in float64 NumPy (no compilation of reference code).
    yn = np.asarray(y)
    p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)[:, 0]))
    expected = -np.mean(np.where(yn == 1, np.log(p), np.log1p(-p)))
    np.testing.assert_allclose(bce, expected, rtol=1e-6)
    mse = self.variant(lambda z, t: train.LOSSES["mean_squared_error"](
        z, t, "binary"))(logits, y)
    np.testing.assert_allclose(mse, np.mean((p - yn) ** 2), rtol=1e-6)
    z = jnp.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    t = jnp.array([1, 0])
    cce = train.LOSSES["categorical_cross_entropy"](z, t, "multiclass")
    zn = np.asarray(z, np.float64)
    log_softmax = zn - np.log(np.sum(np.exp(zn), axis=1, keepdims=True))
    expected = -np.mean(log_softmax[np.arange(2), np.asarray(t)])
    np.testing.assert_allclose(cce, expected, rtol=1e-6)
    mse = train.LOSSES["mean_squared_error"](z, t, "multiclass")
    expected = np.mean((np.exp(log_softmax) - np.eye(3)[np.asarray(t)]) ** 2)
    np.testing.assert_allclose(mse, expected, rtol=1e-6)

  def test_chance_level_bce_is_ln2(self):
    value = train.LOSSES["binary_cross_entropy"](jnp.zeros((4, 1)), XOR_Y,
                                                 "binary")
    np.testing.assert_allclose(value, math.log(2), rtol=1e-7)

  def test_accuracy(self):
    self.assertEqual(float(train.compute_accuracy(
        jnp.array([[1.0], [-1.0], [2.0], [-3.0]]), XOR_Y, "binary")), 0.5)
    self.assertEqual(float(train.compute_accuracy(
        jnp.array([[0.0, 1.0], [3.0, 1.0]]), jnp.array([1, 1]),
        "multiclass")), 0.5)

  def test_saturated_and_dead_fractions(self):
    from vgrad.nn import activations  # pylint: disable=g-import-not-at-top
    h = jnp.array([[10.0, 0.0, -1.0], [-10.0, 0.5, -2.0]])
    sat = train.unit_metrics(activations.get_activation("sigmoid"), [h])
    # sigmoid'(+-10) = 4.5e-5 < 0.05/4; sigmoid'(0), sigmoid'(0.5),
    # sigmoid'(-1), sigmoid'(-2) = 0.105 are not.
    np.testing.assert_allclose(sat["saturated"], [2 / 6])
    dead = train.unit_metrics(activations.get_activation("relu"), [h])
    np.testing.assert_allclose(dead["dead"], [1 / 3])   # only column 3
    self.assertEqual(train.unit_metrics(activations.get_activation("gelu"),
                                        [h]), {})

  @pytest.mark.slow   # alone: the shared xor setup and step compile
  def test_update_ratio_is_lr_times_gradient_over_weights(self):
    _, _, keys, states, _ = _xor_setup(lr=0.1)
    _, metrics = _xor_step()(states, keys, 0, XOR_X, XOR_Y)
    kernel = np.asarray(states.params["params"]["layers_0"]["kernel"])
    w = np.stack([np.linalg.norm(kernel[s]) for s in range(3)])
    np.testing.assert_allclose(metrics["update_ratio"][:, 0],
                               0.1 * metrics["grad_norm_w"][:, 0] / w,
                               rtol=1e-5)

  def test_clipping_bounds_the_update(self):
    opt = train.make_optimizer("sgd", 1.0, clip_norm=0.5)
    grads = {"w": jnp.full((10,), 3.0)}
    updates, _ = opt.update(grads, opt.init(grads))
    np.testing.assert_allclose(optax.tree.norm(updates), 0.5, rtol=1e-6)

  def test_registry_errors(self):
    with self.assertRaisesRegex(ValueError, "adam, momentum, sgd"):
      train.make_optimizer("rmsprop", 0.1)
    with self.assertRaisesRegex(ValueError, "learning rate"):
      train.make_optimizer("sgd", 0.0)
    with self.assertRaisesRegex(ValueError, "binary_cross_entropy"):
      train.check_loss("hinge", "binary")
    with self.assertRaisesRegex(ValueError, "categorical_cross_entropy, "
                                "mean_squared_error"):
      train.check_loss("binary_cross_entropy", "multiclass")

  def test_layer_labels(self):
    self.assertEqual(train.layer_labels(2),
                     ["layer_01", "layer_02", "readout"])
    self.assertEqual(train.layer_labels(100)[0], "layer_001")


if __name__ == "__main__":
  absltest.main()
