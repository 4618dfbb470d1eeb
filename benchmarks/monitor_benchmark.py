r"""Benchmark: the gradient monitor's cost per training step, side by side.

An ordinary Optax loop (a jitted step called once per step from Python,
seeds vmapped) trains the ``digits_deep`` network (vgrad's MLP: ReLU, 4
hidden layers of 128 units, He init, a 10-way readout; scikit-learn's 8x8
digits, minibatches of 64, SGD lr 0.05) with S seeds, and the same loop
with ``vgrad.track_gradients()`` first in the chain, in four settings:

  plain        ``optax.sgd(0.05)``
  full         ``chain(track_gradients(), sgd)``: every statistic, log10|g|
               histograms included, on every step
  no_hist      ``chain(track_gradients(histogram=False), sgd)``
  every_k      ``chain(track_gradients(every=K), sgd)``: all of ``full``
               on every K-th step, the NaN/Inf check on the others (a real
               branch under ``vmap`` too)
  every_k_no_hist  the same without the histograms

and, as vgrad's training studies use it, ``full`` with K steps scanned in
one call (``lax.scan``; the statistics leave only at the chunk's end).

Every arm starts from the same parameters and keys and is checked to train
identically (the monitor passes the updates through unchanged: the
parameters after the timed steps agree bit for bit). Runs alternate arms
(plain, full, no_hist, ..., plain, ...) ``--repeats`` times; medians of the
per-step time; ratios are arm / plain (1.00 = free). Target (issue 14):
<= 1.15x on digits_deep at 8 seeds.

  python -m benchmarks.monitor_benchmark
  python -m benchmarks.monitor_benchmark --seeds=8 --steps=200 --repeats=7 \
      --out=benchmarks/results_monitor_cpu.md
"""

import datetime
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import provenance
from vgrad.nn import models
from vgrad.training import data
from vgrad.training import monitor

_SEEDS = flags.DEFINE_list("seeds", ["1", "8"], "Seed counts S (vmapped).")
_STEPS = flags.DEFINE_integer("steps", 200, "Timed steps per run.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Alternating runs per arm.")
_EVERY = flags.DEFINE_integer("every", 10, "K of the every_k arm.")
_CHUNK = flags.DEFINE_integer("chunk", 50, "Steps per scanned chunk.")
_OUT = flags.DEFINE_string("out", None, "Append the table to this file.")

BATCH, LR = 64, 0.05


def _model():
  return models.make_mlp(depth=4, width=128, activation="relu",
                         init="he_normal", num_outputs=10)


def _arms(every: int) -> dict:
  sgd = optax.sgd(LR)
  return {
      "plain": sgd,
      "full": optax.chain(monitor.track_gradients(), sgd),
      "no_hist": optax.chain(monitor.track_gradients(histogram=False), sgd),
      "every_k": optax.chain(monitor.track_gradients(every=every), sgd),
      "every_k_no_hist": optax.chain(
          monitor.track_gradients(every=every, histogram=False), sgd),
  }


def _step_fn(model, optimizer, x, y):
  n = x.shape[0]

  def loss_fn(params, xb, yb):
    logits = model.apply(params, xb)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, yb))

  def step(params, opt_state, key, i):
    idx = jax.random.randint(jax.random.fold_in(key, i), (BATCH,), 0, n)
    grads = jax.grad(loss_fn)(params, x[idx], y[idx])
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  return step


def _programs(model, optimizer, x, y, seeds: int, chunk: int):
  step = _step_fn(model, optimizer, x, y)
  batched = (jax.vmap(step, in_axes=(0, 0, 0, None)) if seeds > 1 else
             lambda p, s, k, i: step(p, s, k[0], i))
  per_step = jax.jit(batched)

  @jax.jit
  def scanned(params, opt_state, keys, start):
    def body(carry, i):
      return batched(*carry, keys, start + i), None
    return jax.lax.scan(body, (params, opt_state), jnp.arange(chunk))[0]
  return per_step, scanned


def _init(model, optimizer, seeds, x):
  keys = jax.random.split(jax.random.key(0), seeds)
  params = jax.vmap(lambda k: model.init(k, x[:1]))(keys)
  opt_state = jax.vmap(optimizer.init)(params)
  if seeds == 1:
    params = jax.tree.map(lambda a: a[0], params)
    opt_state = jax.tree.map(lambda a: a[0], opt_state)
  return params, opt_state, jax.random.split(jax.random.key(1), seeds)


def _time_per_step(fn, state, keys, steps, chunk=None):
  params, opt_state = state
  jax.block_until_ready(params)
  start = time.perf_counter()
  if chunk is None:
    for i in range(steps):
      params, opt_state = fn(params, opt_state, keys, i)
  else:
    for i in range(0, steps, chunk):
      params, opt_state = fn(params, opt_state, keys, i)
  jax.block_until_ready(params)
  return (time.perf_counter() - start) / steps, params


def main(argv):
  del argv
  jax.config.update("jax_default_matmul_precision", "highest")
  dataset = data.load_dataset("digits")
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  model = _model()
  steps, chunk = _STEPS.value, _CHUNK.value
  steps = max(chunk, steps // chunk * chunk)
  rows = []
  for seeds in (int(s) for s in _SEEDS.value):
    arms = _arms(_EVERY.value)
    names = list(arms)
    programs, states, compile_s = {}, {}, {}
    for name in names:
      per_step, scanned = _programs(model, arms[name], x, y, seeds, chunk)
      params, opt_state, keys = _init(model, arms[name], seeds, x)
      start = time.perf_counter()
      jax.block_until_ready(per_step(params, opt_state, keys, 0))
      compile_s[name] = time.perf_counter() - start
      jax.block_until_ready(scanned(params, opt_state, keys, 0))
      programs[name] = (per_step, scanned)
      states[name] = (params, opt_state)
    times = {(n, m): [] for n in names for m in ("step", "chunk")}
    finals = {}
    for _ in range(_REPEATS.value):
      for name in names:
        for mode in ("step", "chunk"):
          fn = programs[name][0 if mode == "step" else 1]
          t, final = _time_per_step(fn, states[name], keys, steps,
                                    None if mode == "step" else chunk)
          times[(name, mode)].append(t)
          finals[(name, mode)] = final
    for (_, mode), final in finals.items():
      reference = finals[("plain", mode)]
      for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for mode in ("step", "chunk"):
      base = statistics.median(times[("plain", mode)])
      for name in names:
        t = statistics.median(times[(name, mode)])
        note = ""
        if name.startswith("every_k"):
          note = f"K = {_EVERY.value}"
        rows.append([str(seeds), "per step" if mode == "step" else
                     f"scan of {chunk}", name, f"{t * 1e6:,.0f}",
                     f"{t / base:.3f}", f"{compile_s[name]:.2f}", note])
  header = ["S", "calls", "arm", "us per step", "arm / plain",
            "first call s", "note"]
  table = "\n".join([
      f"## `python -m benchmarks.monitor_benchmark` "
      f"(--steps={steps} --repeats={_REPEATS.value} --chunk={chunk})", "",
      f"- date {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
      f"- machine: {provenance.cpu_model()}; {provenance.device_line()}",
      f"- {provenance.code_version(monitor)}",
      f"- {provenance.load_line('start')}",
      "- workload: digits_deep (relu, 4 x 128, He init, readout 10; "
      f"batch {BATCH}, sgd lr {LR}); every arm trains bit-identically "
      "(checked)", "",
      provenance.markdown_table(header, rows, left_columns=3), ""])
  provenance.publish(table, _OUT.value)


if __name__ == "__main__":
  app.run(main)
