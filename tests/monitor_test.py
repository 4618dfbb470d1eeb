"""Tests for vgrad.training.monitor and monitor_log: the gradient monitor of
any training loop, checked against statistics computed by hand from the
same gradients."""

import contextlib
import functools
import io
import json
import math
import os
import re
import tempfile
import warnings

from absl.testing import absltest
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

import vgrad
from vgrad.io import schemas
from vgrad.training import monitor
from vgrad.training import monitor_log
from vgrad.training import tensorboard_log

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "README.md")
SECTION = "## Monitoring any training loop"


class SmallCNN(nn.Module):
  """Two convolutions and a readout (a model vgrad knows nothing about)."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = nn.tanh(nn.Conv(4, (3, 3))(x))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


@functools.cache
def _cnn_grads(seed=0):
  model = SmallCNN()
  x = jax.random.normal(jax.random.key(seed), (6, 5, 5, 1))
  y = jnp.arange(6) % 3

  @jax.jit
  def init_and_grad(key):
    params = model.init(key, x[:1])
    return params, jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply(p, x), y).mean())(params)
  return init_and_grad(jax.random.key(seed + 1))


def _by_hand(g) -> dict:
  g = np.asarray(g, np.float64).ravel()
  finite = g[np.isfinite(g)]
  nonzero = np.abs(finite[finite != 0])
  logs = np.log10(nonzero)
  inside = logs[(logs >= monitor.LOG10_LOW) & (logs < monitor.LOG10_HIGH)]
  hist, _ = np.histogram(inside, bins=monitor.LOG10_EDGES)
  return {"norm": np.linalg.norm(g), "num_zero": int(np.sum(g == 0)),
          "num_nan": int(np.sum(np.isnan(g))),
          "num_inf": int(np.sum(np.isinf(g))),
          "hist_below": int(np.sum(logs < monitor.LOG10_LOW)),
          "hist_above": int(np.sum(logs >= monitor.LOG10_HIGH)),
          "log10_hist": hist}


class GradientStatsTest(chex.TestCase):

  @chex.variants(with_jit=True)
  def test_every_leaf_of_a_flax_cnn_matches_numpy(self):
    params, grads = _cnn_grads()
    stats = self.variant(lambda g, p: monitor.gradient_stats(g, p))(
        grads, params)
    flat = {monitor.path_name(k): v for k, v in
            jax.tree_util.tree_flatten_with_path(grads)[0]}
    self.assertEqual(set(stats), set(flat))
    self.assertIn("params/Conv_0/kernel", stats)
    for path, g in flat.items():
      expected = _by_hand(g)
      s = stats[path]
      np.testing.assert_allclose(s["norm"], expected["norm"], rtol=1e-6)
      for key in ("num_zero", "num_nan", "num_inf", "hist_below",
                  "hist_above"):
        self.assertEqual(int(s[key]), expected[key], (path, key))
      np.testing.assert_array_equal(s["log10_hist"], expected["log10_hist"])
      w = np.asarray(
          dict((monitor.path_name(k), v) for k, v in
               jax.tree_util.tree_flatten_with_path(params)[0])[path])
      np.testing.assert_allclose(s["param_norm"], np.linalg.norm(w),
                                 rtol=1e-6)
      if np.linalg.norm(w) > 0:
        np.testing.assert_allclose(s["grad_ratio"], expected["norm"]
                                   / np.linalg.norm(w), rtol=1e-5)
      else:     # zero-initialised biases: no ratio
        self.assertTrue(math.isnan(float(s["grad_ratio"])))
    # The global norm is optax's.
    np.testing.assert_allclose(monitor.global_norm(stats),
                               optax.tree.norm(grads), rtol=1e-6)

  def test_vmap_over_seeds_equals_each_seed_alone(self):
    seeds = [_cnn_grads(s) for s in (0, 5)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *seeds)
    batched = jax.jit(jax.vmap(lambda pg: monitor.gradient_stats(
        pg[1], pg[0])))(stacked)
    alone_fn = jax.jit(monitor.gradient_stats)
    for i, (p, g) in enumerate(seeds):
      alone = alone_fn(g, p)
      chex.assert_trees_all_close(
          jax.tree.map(lambda a, i=i: a[i], batched), alone, rtol=1e-6)

  def test_counts_partition_every_leaf_including_zeros_nan_inf(self):
    leaf = jnp.array([0.0, 0.0, jnp.nan, jnp.inf, -jnp.inf, 1e-30, 3e-5,
                      -2.0, 1e9, 5e7])
    s = monitor.leaf_stats(leaf)
    self.assertEqual(int(s["num_zero"]), 2)
    self.assertEqual(int(s["num_nan"]), 1)
    self.assertEqual(int(s["num_inf"]), 2)
    self.assertEqual(int(s["hist_below"]), 1)      # 1e-30
    self.assertEqual(int(s["hist_above"]), 1)      # 1e9
    self.assertEqual(int(np.sum(s["log10_hist"])), 3)
    total = sum(int(s[k]) for k in ("num_zero", "num_nan", "num_inf",
                                    "hist_below", "hist_above"))
    self.assertEqual(total + int(np.sum(s["log10_hist"])), leaf.size)
    self.assertTrue(math.isnan(float(s["norm"])))
    self.assertEqual(float(s["max_abs"]), 1e9)
    # Inf without NaN: the norm is Inf.
    self.assertEqual(float(monitor.leaf_norm(jnp.array([1.0, jnp.inf]))),
                     math.inf)

  def test_all_zero_and_all_nan_leaves_are_well_defined(self):
    leaf_stats = jax.jit(monitor.leaf_stats)
    zero = leaf_stats(jnp.zeros((4, 3)))
    self.assertEqual(float(zero["norm"]), 0.0)
    self.assertEqual(int(zero["num_zero"]), 12)
    self.assertEqual(int(np.sum(zero["log10_hist"])), 0)
    self.assertIsNone(monitor_log.grid_histogram(zero["log10_hist"]))
    nan = leaf_stats(jnp.full((5,), jnp.nan))
    self.assertEqual(int(nan["num_nan"]), 5)
    self.assertEqual(float(nan["max_abs"]), 0.0)
    self.assertEqual(int(np.sum(nan["log10_hist"])), 0)

  def test_finite_norm_does_not_overflow(self):
    big = jnp.full((1000,), 1e37, jnp.float32)   # sum of squares: 1e77
    np.testing.assert_allclose(monitor.leaf_norm(big), 1e37 * math.sqrt(
        1000), rtol=1e-5)

  def test_non_array_leaves_are_skipped_and_named_once(self):
    tree = {"w": jnp.ones(3), "step": jnp.array(3), "name": "conv",
            "x": np.float32(2.0) * np.ones(2, np.float32)}
    monitor._named_skips.clear()
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      first = monitor.gradient_stats(tree)
      monitor.gradient_stats(tree)
    self.assertEqual(set(first), {"w", "x"})
    messages = [str(w.message) for w in caught]
    self.assertLen(messages, 2, messages)           # once each, not twice
    self.assertTrue(any("'step'" in m for m in messages))
    self.assertTrue(any("'name'" in m for m in messages))

  def test_update_ratio(self):
    params = {"w": jnp.full((2, 2), 2.0), "z": jnp.zeros(3)}
    grads = {"w": jnp.ones((2, 2)), "z": jnp.ones(3)}
    updates = jax.tree.map(lambda g: -0.01 * g, grads)
    s = monitor.gradient_stats(grads, params, updates)
    np.testing.assert_allclose(s["w"]["update_ratio"], 0.005, rtol=1e-6)
    np.testing.assert_allclose(s["w"]["update_norm"], 0.02, rtol=1e-6)
    self.assertTrue(math.isnan(float(s["z"]["update_ratio"])))  # w = 0

  def test_intermediates_dead_and_saturated(self):
    # ReLU outputs: channel 1 zero on every example (dead), channel 0 not.
    relu_out = jnp.array([[[0.5, 0.0], [0.0, 0.0]],
                          [[0.0, 0.0], [1.0, 0.0]]])     # (B=2, S=2, C=2)
    tanh_out = jnp.tanh(jnp.array([[0.0, 3.0, -4.0, 0.5]]))
    stats = monitor.gradient_stats(
        {"w": jnp.ones(2)}, intermediates={"a": relu_out, "b": tanh_out},
        activation={"a": "relu", "b": "tanh"})
    a, b = stats["intermediates/a"], stats["intermediates/b"]
    self.assertEqual(float(a["dead"]), 0.5)
    np.testing.assert_allclose(a["rms"], np.sqrt(np.mean(
        np.asarray(relu_out) ** 2)), rtol=1e-6)
    # tanh'(h) = 1 - tanh(h)^2 < 0.05 at |h| = 3 and 4 only.
    self.assertEqual(float(b["saturated"]), 0.5)
    self.assertNotIn("dead", b)

  def test_flax_sow_intermediates_through_jit(self):
    class Net(nn.Module):
      @nn.compact
      def __call__(self, x):
        h = nn.Dense(8, bias_init=nn.initializers.constant(-50.0))(x)
        a = nn.relu(h)
        self.sow("intermediates", "act", a)
        return nn.Dense(1)(a)

    net = Net()
    x = jax.random.normal(jax.random.key(0), (16, 4))
    params = net.init(jax.random.key(1), x)
    _, state = net.apply(params, x, mutable=["intermediates"])
    stats = jax.jit(lambda i: monitor.gradient_stats(
        {}, intermediates=i, activation="relu"))(state["intermediates"])
    (path,) = list(stats)
    self.assertEqual(path, "intermediates/act/0")
    self.assertEqual(float(stats[path]["dead"]), 1.0)   # bias -50: all dead


class NoiseScaleTest(absltest.TestCase):

  def test_recovers_a_known_noise_scale(self):
    # Per-example gradients G + e_i, e_i ~ N(0, s^2 I_d): tr(Sigma) = d s^2,
    # |G|^2 known; B_simple = d s^2 / |G|^2 = 200 * 0.25 / 4 = 12.5.
    d, m, s = 200, 4000, 0.5
    g = jnp.full((d,), 2.0 / math.sqrt(d))
    noise = s * jax.random.normal(jax.random.key(0), (m, d))
    per_example = g[None, :] + noise
    out = monitor.gradient_noise_scale({"a": per_example[:, :50],
                                        "b": per_example[:, 50:]})
    # tr(Sigma) estimate: relative sd sqrt(2 / (d (m-1))) ~ 1.6e-3.
    np.testing.assert_allclose(out["trace_sigma"], d * s * s, rtol=1e-2)
    # |G|^2 = 4 estimated with sd ~ 2 s |G| / sqrt(m) ~ 0.016.
    np.testing.assert_allclose(out["grad_sq_norm"], 4.0, atol=0.08)
    np.testing.assert_allclose(out["b_simple"], 12.5, rtol=0.03)
    self.assertEqual(int(out["num_gradients"]), m)

  def test_microbatches_scale_the_covariance(self):
    grads = jax.random.normal(jax.random.key(1), (8, 5))
    one = monitor.gradient_noise_scale(grads)
    four = monitor.gradient_noise_scale(grads, batch_size=4)
    np.testing.assert_allclose(four["trace_sigma"], 4 * one["trace_sigma"],
                               rtol=1e-6)

  def test_too_few_gradients_is_refused(self):
    with self.assertRaisesRegex(ValueError, "at least 2 gradients, got 1"):
      monitor.gradient_noise_scale({"a": jnp.ones((1, 3))})
    with self.assertRaisesRegex(ValueError, "one common leading axis"):
      monitor.gradient_noise_scale({"a": jnp.ones((2, 3)),
                                    "b": jnp.ones((3, 3))})


def _loop(optimizer, steps, grads_at, params=None, vmapped=False):
  params = params or {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}

  def step(params, state, i):
    updates, state = optimizer.update(grads_at(params, i), state, params)
    return optax.apply_updates(params, updates), state

  if vmapped:
    params = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
    state = jax.vmap(optimizer.init)(params)
    fn = jax.jit(jax.vmap(step, in_axes=(0, 0, None)))
  else:
    state = optimizer.init(params)
    fn = jax.jit(step)
  for i in range(steps):
    params, state = fn(params, state, i)
  return params, state


def _grads(params, i):
  return jax.tree.map(lambda p: (i + 1.0) * jnp.ones_like(p) + p, params)


class TrackerTest(absltest.TestCase):

  def test_passes_updates_through_and_reads_the_norm_before_clipping(self):
    base = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1))
    tracked = optax.chain(monitor.track_gradients(),
                          optax.clip_by_global_norm(1.0), optax.sgd(0.1))
    p_base, _ = _loop(base, 3, _grads)
    p_tracked, state = _loop(tracked, 3, _grads)
    chex.assert_trees_all_equal(p_base, p_tracked)
    stats = monitor.tracked_stats(state)
    # The third call saw the gradients of the parameters after two steps.
    p_two, _ = _loop(base, 2, _grads)
    raw = _grads(p_two, 2)
    np.testing.assert_allclose(monitor.global_norm(stats),
                               optax.tree.norm(raw), rtol=1e-6)
    self.assertGreater(float(monitor.global_norm(stats)), 1.0)  # clipped
    self.assertEqual(int(stats["w"]["count"]), 3)

  def test_every_k_records_on_calls_1_k_plus_1(self):
    for vmapped in (False, True):
      for steps, recorded_at in ((3, 1), (4, 4), (6, 4)):
        _, state = _loop(optax.chain(monitor.track_gradients(every=3),
                                     optax.sgd(0.0)), steps,
                         lambda p, i: jax.tree.map(
                             lambda q: (i + 1.0) * jnp.ones_like(q), p),
                         vmapped=vmapped)
        norm = np.asarray(monitor.tracked_stats(state)["w"]["norm"])
        np.testing.assert_allclose(norm, 3.0 * recorded_at, rtol=1e-6,
                                   err_msg=f"{vmapped=} {steps=}")

  def test_before_the_first_call_statistics_are_nan(self):
    state = monitor.track_gradients().init({"w": jnp.ones(2)})
    stats = monitor.tracked_stats(state)
    self.assertTrue(math.isnan(float(stats["w"]["norm"])))
    self.assertEqual(int(stats["w"]["count"]), 0)

  def test_nan_in_one_layer_is_located_and_the_loop_goes_on(self):
    def grads_at(params, i):
      g = jax.tree.map(jnp.ones_like, params)
      g["b"] = jnp.where(i == 2, g["b"].at[1].set(jnp.nan), g["b"])
      return g
    for vmapped in (False, True):
      _, state = _loop(optax.chain(monitor.track_gradients(every=2),
                                   optax.sgd(0.1)), 5, grads_at,
                       vmapped=vmapped)
      stats = monitor.tracked_stats(state)
      first = np.asarray(stats["b"]["first_nonfinite"])
      np.testing.assert_array_equal(first, 3)       # the third call
      if not vmapped:
        # w became NaN one call later, through the NaN parameters.
        self.assertEqual(monitor.first_nonfinite(stats), ("b", 3))

  def test_two_trackers_by_name_and_the_update_ratio(self):
    opt = optax.chain(monitor.track_gradients(), optax.sgd(0.01),
                      monitor.track_gradients("updates"))
    params, state = _loop(opt, 1, lambda p, i: jax.tree.map(
        jnp.ones_like, p))
    with self.assertRaisesRegex(ValueError, "2 trackers .*pass name="):
      monitor.tracked_stats(state)
    with self.assertRaisesRegex(ValueError, "named 'nope'"):
      monitor.tracked_stats(state, "nope")
    updates = monitor.tracked_stats(state, "updates")["w"]
    np.testing.assert_allclose(updates["grad_ratio"], 0.01 * 3 / 3,
                               rtol=1e-5)   # ||u|| = 0.03, ||w|| = 3
    with self.assertRaisesRegex(ValueError, "add vgrad.track_gradients"):
      monitor.tracked_stats(optax.sgd(0.1).init(params))

  def test_bad_every_is_refused(self):
    for every in (0, 1.5, True):
      with self.assertRaisesRegex(ValueError, "every must be an integer"):
        monitor.track_gradients(every=every)


class WriterTest(absltest.TestCase):

  def test_tensorboard_and_json_lines_read_back(self):
    params, grads = _cnn_grads()
    grads = jax.tree.map(lambda a: a, grads)    # a copy: _cnn_grads is cached
    grads["params"]["Dense_0"]["bias"] = grads["params"]["Dense_0"][
        "bias"].at[0].set(jnp.inf)
    stats = jax.jit(monitor.gradient_stats)(grads, params)
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    tb, path = os.path.join(root, "tb"), os.path.join(root, "m.jsonl")
    with monitor_log.MonitorWriter(tb_dir=tb, jsonl_path=path) as log:
      log.write(7, stats, seed=0)
    run = tensorboard_log.read_run(tb)     # TensorBoard's own reader
    kernel = "params/Conv_0/kernel"
    (step, value), = run["scalars"][f"{kernel}/norm"]
    self.assertEqual(step, 7)
    np.testing.assert_allclose(value, stats[kernel]["norm"], rtol=1e-6)
    (_, histogram), = run["histograms"][f"{kernel}/log10_abs"]
    self.assertEqual(histogram["num"], int(np.sum(
        stats[kernel]["log10_hist"])))
    self.assertEqual(run["scalars"]["params/Dense_0/bias/num_inf"][0][1], 1)
    table = pd.read_json(path, lines=True)
    self.assertEqual(set(table["schema"]), {schemas.MONITOR})
    self.assertEqual(len(table), len(stats))
    row = table[table["path"] == "params/Dense_0/bias"].iloc[0]
    self.assertEqual(row["num_inf"], 1)
    self.assertTrue(pd.isna(row["norm"]) or math.isinf(row["norm"]))
    records = monitor_log.read_jsonl(path)
    self.assertEqual(records[0]["seed"], 0)
    with open(path) as f:
      for line in f:
        json.loads(line)     # strict JSON: no NaN or Infinity literals

  def test_a_batched_record_is_refused_in_one_line(self):
    stats = {"w": {"norm": np.ones(2)}}
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    with monitor_log.MonitorWriter(jsonl_path=os.path.join(root, "m")) as w:
      with self.assertRaisesRegex(ValueError, "slice the seed axis"):
        w.write(0, stats)

  def test_a_torn_line_is_reported_with_its_number(self):
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    path = os.path.join(root, "m.jsonl")
    with open(path, "w") as f:
      f.write(json.dumps({"schema": schemas.MONITOR, "step": 0}) + "\n")
      f.write('{"schema": "vgrad.monitor/1", "st')
    with self.assertRaisesRegex(ValueError, "line 2: not JSON"):
      monitor_log.read_jsonl(path)


@pytest.mark.slow   # two small trainings on digits
class ReadmeTest(absltest.TestCase):
  """README.md's monitoring snippets run as written (in a temporary
  folder: they write runs/monitor/)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    with open(README) as f:
      text = f.read()
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    cls.snippets = re.findall(r"^```python\n(.*?)^```$", text[start:end],
                              re.M | re.S)
    cls.root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.outputs = []
    home = os.getcwd()
    os.chdir(cls.root)
    try:
      for number, code in enumerate(cls.snippets, 1):
        out = io.StringIO()
        namespace = {"__name__": f"monitor_snippet_{number}"}
        with contextlib.redirect_stdout(out):
          exec(compile(code, f"README.md monitor snippet {number}", "exec"),  # noqa: S102
               namespace)
        cls.outputs.append((namespace, out.getvalue()))
    finally:
      os.chdir(home)

  def test_two_snippets(self):
    self.assertLen(self.snippets, 2)

  def test_cnn_norms_equal_norms_by_hand_and_files_read_back(self):
    namespace, out = self.outputs[0]
    self.assertIn("global norm before clipping", out)
    stats = namespace["stats"]
    self.assertEqual(int(stats["params/Conv_0/kernel"]["count"]), 40)
    run = tensorboard_log.read_run(os.path.join(self.root, "runs",
                                                "monitor", "cnn"))
    steps = [s for s, _ in run["scalars"]["params/Conv_0/kernel/norm"]]
    self.assertEqual(steps, [10, 20, 30, 40])
    table = pd.read_json(os.path.join(self.root, "runs", "monitor",
                                      "cnn.jsonl"), lines=True)
    self.assertEqual(sorted(set(table["step"])), [10, 20, 30, 40])
    last = table[(table["step"] == 40)
                 & (table["path"] == "params/Dense_0/kernel")].iloc[0]
    np.testing.assert_allclose(
        last["norm"], float(stats["params/Dense_0/kernel"]["norm"]),
        rtol=1e-6)

  def test_cnn_tracker_equals_a_recomputation(self):
    namespace, _ = self.outputs[0]
    # Replay the loop without the tracker, one step short, and compute the
    # 40th step's gradients by hand.
    model, loss_fn = namespace["model"], namespace["loss_fn"]
    x, y = namespace["x"], namespace["y"]
    params = model.init(jax.random.key(0), x[:1])
    plain = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    state = plain.init(params)

    @jax.jit
    def step(params, state, xb, yb):
      grads = jax.grad(loss_fn)(params, xb, yb)
      updates, state = plain.update(grads, state, params)
      return optax.apply_updates(params, updates), state, grads

    for i in range(40):
      b = slice(32 * i, 32 * i + 32)
      params, state, grads = step(params, state, x[b], y[b])
    stats = namespace["stats"]
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
      np.testing.assert_allclose(
          stats[monitor.path_name(path)]["norm"],
          np.linalg.norm(np.asarray(g, np.float64)), rtol=2e-4)

  def test_residual_mlp_dead_fraction_and_noise_scale(self):
    namespace, out = self.outputs[1]
    stats = namespace["stats"]
    acts = namespace["acts"]
    for path, leaf in jax.tree_util.tree_flatten_with_path(acts)[0]:
      a = np.asarray(leaf)
      dead = np.mean(np.all(a.reshape(-1, a.shape[-1]) <= 0, axis=0))
      self.assertEqual(
          float(stats["intermediates/" + monitor.path_name(path)]["dead"]),
          dead)
    b = float(namespace["noise"]["b_simple"])
    self.assertGreater(b, 0)
    self.assertIn("B_simple", out)
    self.assertIn("dead ReLU fraction per block", out)

  def test_public_names(self):
    self.assertIs(vgrad.track_gradients, monitor.track_gradients)
    self.assertIs(vgrad.MonitorWriter, monitor_log.MonitorWriter)


if __name__ == "__main__":
  absltest.main()
