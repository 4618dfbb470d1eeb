"""Tests for vgrad.training.scanned_mlp: the scanned forward pass is the
MLP's own, and training freezes a seed at its first non-finite step."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import models
from vgrad.training import scanned_mlp


class ScannedMLPTest(absltest.TestCase):

  def test_scan_equals_the_mlp_and_round_trips(self):
    model = models.make_mlp(depth=4, width=8, activation="tanh",
                            init="orthogonal", sigma_b2=0.1, num_outputs=3)
    keys = jax.random.split(jax.random.key(0), 2)
    params = scanned_mlp.init_params(model, 5, keys)
    self.assertEqual(params["rest"]["kernel"].shape, (2, 3, 8, 8))
    x = jax.random.normal(jax.random.key(1), (6, 5))
    for s in range(2):
      one = jax.tree.map(lambda a, s=s: np.asarray(a[s]), params)
      tree = scanned_mlp.to_flax(one, model.depth)
      np.testing.assert_allclose(scanned_mlp.apply(model, one, x),
                                 model.apply(tree, x), rtol=1e-5,
                                 atol=1e-6)
      back = scanned_mlp.from_flax(tree, model.depth)
      jax.tree.map(np.testing.assert_array_equal, back, one)
    # Seeds differ; layer l of a seed is drawn from fold_in(key, l).
    self.assertFalse(np.allclose(params["first"]["kernel"][0],
                                 params["first"]["kernel"][1]))

  def test_a_diverging_seed_is_frozen_at_its_step(self):
    model = models.make_mlp(depth=2, width=4, activation="relu",
                            init="he_normal", num_outputs=2)
    keys = jax.random.split(jax.random.key(0), 2)
    params = scanned_mlp.init_params(model, 3, keys)
    # Seed 1 gets an infinite weight: its first step is non-finite.
    params["readout"]["kernel"] = params["readout"]["kernel"].at[1, 0, 0].set(
        jnp.inf)
    p = scanned_mlp.programs(model, "sgd", 0.1, 0.9, 4)
    x = jax.random.normal(jax.random.key(2), (8, 3))
    y = jnp.arange(8) % 2
    states = p.start(params)
    states, loss = p.chunk(3)(states, keys, jnp.int32(0), x, y)
    self.assertEqual(states.diverged_at.tolist(), [0, 1])
    self.assertTrue(np.isfinite(loss[0]) and np.isnan(loss[1]))
    np.testing.assert_array_equal(states.params["first"]["kernel"][1],
                                  params["first"]["kernel"][1])


if __name__ == "__main__":
  absltest.main()
