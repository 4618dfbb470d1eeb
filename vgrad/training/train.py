"""Optax training with per-layer gradient-flow metrics computed inside jit.

One training step for one seed is a pure function
``step_fn(state, key, step, x, y) -> (state, metrics)``; seeds are a vmapped
leading axis of ``state`` and ``key`` (one compiled program trains S seeds at
once), and ``make_train_chunk`` scans ``n`` steps inside one ``jit`` so the
host is visited only to log.

Losses are computed from the readout's logits ``z`` for numerical stability;
the head named by the task is implicit in the loss:

* ``binary_cross_entropy``: ``-[y log s(z) + (1-y) log(1-s(z))]``, s = sigmoid;
* ``categorical_cross_entropy``: ``-log softmax(z)_y``;
* ``mean_squared_error``: ``mean((head(z) - t)^2)`` over examples and outputs,
  with ``head`` sigmoid (binary, t = y), softmax (multiclass, t = one-hot y)
  or the identity (regression), as in the lectures' task summary.

Metrics of a step, all computed inside ``jit`` on that step's batch
(layers are indexed 0..L-1 for the hidden layers and L for the readout;
the norms are the monitor's, :func:`vgrad.training.monitor.leaf_norm`, read
by the layers' parameter paths, :func:`vgrad.nn.models.layer_paths`):

* ``loss``, ``accuracy`` (classification only);
* ``grad_norm_w[l] = ||dL/dW_l||_F`` and ``grad_norm_b[l] = ||dL/db_l||_2``;
* ``update_ratio[l] = ||Delta W_l||_F / ||W_l||_F`` (NaN where ``W_l = 0``);
* ``activation_rms[l] = sqrt(mean x_l^2)`` over the batch and units (hidden
  layers only): the forward signal;
* ``saturated[l]`` (sigmoid, tanh, hard tanh, softsign): the fraction of
  (example, unit) pairs with ``phi'(h) < SATURATION * phi'(0)``;
* ``dead[l]`` (ReLU, leaky ReLU, ELU, SELU): the fraction of units with
  ``h <= 0`` on every example of the batch. For ReLU such a unit is dead: it
  passes no gradient at all; for the others it only passes the negative-side
  slope.

Numerical blow-ups: a step whose loss, gradients or update is non-finite is
not applied; the seed is frozen from then on and ``diverged_at`` holds the
1-based index of that step (0 while the seed is healthy).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from vgrad.nn import lsuv
from vgrad.nn import models
from vgrad.training import monitor

# LSUV's batch: the first LSUV_EXAMPLES training inputs in the dataset's
# order (all of them if fewer), the one mini-batch of Mishkin & Matas (2015);
# the same examples as training_study's fixed probe batch.
LSUV_EXAMPLES = 512

SATURATION = 0.05
SATURATING = ("sigmoid", "tanh", "hard_tanh", "softsign")
RECTIFIERS = ("relu", "leaky_relu", "elu", "selu")

HEAD_FOR_TASK = {"binary": "sigmoid", "multiclass": "softmax",
                 "regression": "none"}


def _sgd(learning_rate, momentum):
  del momentum
  return optax.sgd(learning_rate)


def _momentum(learning_rate, momentum):
  return optax.sgd(learning_rate, momentum=momentum)


def _adam(learning_rate, momentum):
  del momentum
  return optax.adam(learning_rate)


OPTIMIZERS = {"sgd": _sgd, "momentum": _momentum, "adam": _adam}


def make_optimizer(name: str, learning_rate: float, *, momentum: float = 0.9,
                   clip_norm: float | None = None
                   ) -> optax.GradientTransformation:
  """An Optax optimizer by name, optionally after global-norm clipping.

  Raises:
    ValueError: unknown name, or a non-positive learning rate or clip norm.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; valid optimizers: "
                     f"{', '.join(sorted(OPTIMIZERS))}")
  if not learning_rate > 0:
    raise ValueError(f"learning rate must be > 0, got {learning_rate}")
  optimizer = OPTIMIZERS[name](learning_rate, momentum)
  if clip_norm is None:
    return optimizer
  if not clip_norm > 0:
    raise ValueError(f"clip norm must be > 0, got {clip_norm}")
  return optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)


def _binary_cross_entropy(logits, y, task):
  del task
  return jnp.mean(optax.sigmoid_binary_cross_entropy(
      logits[..., 0], y.astype(logits.dtype)))


def _categorical_cross_entropy(logits, y, task):
  del task
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _mean_squared_error(logits, y, task):
  out = models.HEADS[HEAD_FOR_TASK[task]](logits)
  if task == "multiclass":
    target = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
  else:
    target = y.astype(logits.dtype).reshape(out.shape)
  return jnp.mean(jnp.square(out - target))


LOSSES = {
    "binary_cross_entropy": _binary_cross_entropy,
    "categorical_cross_entropy": _categorical_cross_entropy,
    "mean_squared_error": _mean_squared_error,
}
LOSS_TASKS = {
    "binary_cross_entropy": ("binary",),
    "categorical_cross_entropy": ("multiclass",),
    "mean_squared_error": ("binary", "multiclass", "regression"),
}
DEFAULT_LOSS = {"binary": "binary_cross_entropy",
                "multiclass": "categorical_cross_entropy",
                "regression": "mean_squared_error"}


def check_loss(loss: str, task: str) -> None:
  """Raises ValueError unless ``loss`` is registered and fits ``task``."""
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; valid losses: "
                     f"{', '.join(sorted(LOSSES))}")
  if task not in LOSS_TASKS[loss]:
    valid = sorted(k for k, v in LOSS_TASKS.items() if task in v)
    raise ValueError(f"loss {loss!r} does not fit a {task} task; valid "
                     f"losses: {', '.join(valid)}")


def compute_accuracy(logits, y, task: str):
  """Fraction of correct predictions; logits ``(B, C)``, labels ``(B,)``."""
  if task == "binary":
    predicted = (logits[..., 0] > 0).astype(y.dtype)
  else:
    predicted = jnp.argmax(logits, axis=-1).astype(y.dtype)
  return jnp.mean((predicted == y).astype(jnp.float32))


class TrainState(NamedTuple):
  """One seed's training state (a leading seed axis when vmapped).

  ``perm`` is the current epoch's shuffle of the training set (unused with
  full-batch training); ``diverged_at`` is 0 or the 1-based step at which the
  seed's loss or gradient first became non-finite.
  """
  params: Any
  opt_state: Any
  perm: jax.Array
  diverged_at: jax.Array


def layer_norms(model: models.MLP, tree, leaf: str) -> jax.Array:
  """``(L+1,)``: the monitor's norm (:func:`vgrad.training.monitor.
  leaf_norm`, the ``norm`` of :func:`vgrad.gradient_stats`) of parameter
  ``leaf`` (``'kernel'`` or ``'bias'``) of every layer of a
  parameter-shaped ``tree``, hidden layers then readout, found by the
  layers' paths (:func:`vgrad.nn.models.layer_paths`). Only the norms: the
  step needs no other statistic."""
  leaves = monitor.float_leaves(tree)
  return jnp.stack([monitor.leaf_norm(leaves[f"{path}/{leaf}"])
                    for path in models.layer_paths(model)])


def unit_metrics(activation, preactivations) -> dict[str, jax.Array]:
  """Per-layer saturated / dead fractions from ``[h_1, ..., h_L]``, ``(B, N)``.

  Returns ``{'saturated': (L,)}`` for saturating activations,
  ``{'dead': (L,)}`` for rectifiers and ``{}`` otherwise.
  """
  if activation.name in SATURATING:
    limit = SATURATION * activation.deriv(jnp.zeros(()))
    return {"saturated": jnp.stack([
        jnp.mean((activation.deriv(h) < limit).astype(jnp.float32))
        for h in preactivations])}
  if activation.name in RECTIFIERS:
    return {"dead": jnp.stack([
        jnp.mean(jnp.all(h <= 0, axis=0).astype(jnp.float32))
        for h in preactivations])}
  return {}


def make_loss_and_metrics(model: models.MLP, loss: str, task: str):
  """``f(params, x, y, dropout_key=None) -> (grads, metrics, activations)``.

  ``activations`` is ``[x_1, ..., x_L]``, each ``(B, N)``; ``metrics`` holds
  the loss, accuracy, gradient norms and unit metrics (not update ratios).
  """
  check_loss(loss, task)
  loss_fn = LOSSES[loss]

  def f(params, x, y, dropout_key=None):
    train = dropout_key is not None

    def objective(p):
      rngs = {"dropout": dropout_key} if train else {}
      logits, hs = model.apply(p, x, return_preactivations=True, train=train,
                               rngs=rngs)
      return loss_fn(logits, y, task), (logits, hs)

    (value, (logits, hs)), grads = jax.value_and_grad(
        objective, has_aux=True)(params)
    metrics = {"loss": value,
               "grad_norm_w": layer_norms(model, grads, "kernel"),
               "grad_norm_b": layer_norms(model, grads, "bias")}
    if task != "regression":
      metrics["accuracy"] = compute_accuracy(logits, y, task)
    metrics.update(unit_metrics(model.activation, hs))
    activations = [model.activation.fn(h) for h in hs]
    metrics["activation_rms"] = jnp.stack(
        [jnp.sqrt(jnp.mean(jnp.square(a))) for a in activations])
    return grads, metrics, activations

  return f


def init_state(model: models.MLP, optimizer: optax.GradientTransformation,
               key: jax.Array, x: jax.Array) -> TrainState:
  """Initial state of one seed; ``x`` is the training inputs ``(n, d)``.

  A data-dependent model (``init='lsuv'``) is normalised on the first
  ``LSUV_EXAMPLES`` training inputs (all of them if fewer).
  """
  params = lsuv.initialize(model, key, x[:LSUV_EXAMPLES])
  return TrainState(params, optimizer.init(params),
                    jnp.arange(x.shape[0], dtype=jnp.int32),
                    jnp.zeros((), jnp.int32))


def init_states(model, optimizer, keys: jax.Array, x: jax.Array) -> TrainState:
  """Initial states of S seeds from keys ``(S,)``; leading axis S."""
  return jax.vmap(lambda k: init_state(model, optimizer, k, x))(keys)


def _all_finite(tree) -> jax.Array:
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in leaves]))


def _batch(state, key, step, x, y, batch_size):
  """The minibatch of 0-based ``step``: epoch-wise shuffling without repeats.

  ``step`` is shared by all seeds (unbatched), so under vmap the reshuffle at
  each epoch start stays a real branch, not a select.
  """
  n = x.shape[0]
  if not batch_size or batch_size >= n:
    return state.perm, x, y
  per_epoch = n // batch_size
  position = step % per_epoch
  perm = jax.lax.cond(
      position == 0,
      lambda: jax.random.permutation(
          jax.random.fold_in(key, step // per_epoch), n).astype(jnp.int32),
      lambda: state.perm)
  idx = jax.lax.dynamic_slice(perm, (position * batch_size,), (batch_size,))
  return perm, x[idx], y[idx]


def make_step_fn(model: models.MLP, optimizer: optax.GradientTransformation,
                 loss: str, task: str, batch_size: int = 0) -> Callable:
  """One seed's pure step ``(state, key, step, x, y) -> (state, metrics)``.

  Args:
    model: the network (with a readout producing logits, head ``'none'``).
    optimizer: an Optax transformation.
    loss: a ``LOSSES`` name fitting ``task``.
    task: 'binary', 'multiclass' or 'regression'.
    batch_size: minibatch size; 0 (or >= n) for full-batch gradient descent.

  The step's randomness (shuffle, dropout) comes from ``key`` (the seed's
  training key) folded with the 0-based global ``step``.
  """
  loss_and_metrics = make_loss_and_metrics(model, loss, task)

  def step_fn(state: TrainState, key, step, x, y):
    data_key, dropout_key = jax.random.split(key)
    perm, xb, yb = _batch(state, data_key, step, x, y, batch_size)
    dropout_key = (jax.random.fold_in(dropout_key, step)
                   if model.dropout_rate > 0 else None)
    grads, metrics, _ = loss_and_metrics(state.params, xb, yb, dropout_key)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params)
    params = optax.apply_updates(state.params, updates)
    healthy = state.diverged_at == 0
    finite = _all_finite((metrics["loss"], grads, updates))
    apply = healthy & finite
    keep = lambda new, old: jnp.where(apply, new, old)  # noqa: E731
    # ||Delta W|| / ||W|| per layer, NaN where W = 0 (the monitor's
    # update_ratio).
    w_norm = layer_norms(model, state.params, "kernel")
    u_norm = layer_norms(model, updates, "kernel")
    metrics["update_ratio"] = jnp.where(
        w_norm > 0, u_norm / jnp.where(w_norm > 0, w_norm, 1.0), jnp.nan)
    diverged_at = jnp.where(healthy & ~finite, step + 1, state.diverged_at)
    metrics["diverged_at"] = diverged_at
    new_state = TrainState(
        jax.tree_util.tree_map(keep, params, state.params),
        jax.tree_util.tree_map(keep, opt_state, state.opt_state),
        perm, diverged_at)
    return new_state, metrics

  return step_fn


def make_train_step(step_fn: Callable) -> Callable:
  """Jitted S-seed step ``(states, keys, step, x, y) -> (states, metrics)``."""
  return jax.jit(jax.vmap(step_fn, in_axes=(0, 0, None, None, None)))


def _scan_chunk(step: Callable, num_steps: int) -> Callable:
  """Jitted ``num_steps`` calls of ``step``: a ``lax.scan``, then a last step.

  Inside the scan only the loss leaves each step, so XLA drops the other
  metrics' computation there; the last step, outside the scan, computes
  them all. (``step`` is therefore traced twice, once per call site, for
  the chunk's one compilation.)
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")

  @jax.jit
  def chunk(states, keys, start_step, x, y):
    def body(states, i):
      states, metrics = step(states, keys, start_step + i, x, y)
      return states, metrics["loss"]

    losses = []
    if num_steps > 1:   # (a scan of length 0 would still be traced)
      states, scanned = jax.lax.scan(body, states, jnp.arange(num_steps - 1))
      losses.append(scanned)
    states, metrics = step(states, keys, start_step + num_steps - 1, x, y)
    return states, metrics, jnp.concatenate(losses + [metrics["loss"][None]])

  return chunk


def make_train_chunk(step_fn: Callable, num_steps: int) -> Callable:
  """Jitted ``num_steps`` S-seed steps in one program.

  Returns ``chunk(states, keys, start_step, x, y) -> (states, metrics,
  losses)`` where ``metrics`` are the last step's (leading axis S) and
  ``losses`` is ``(num_steps, S)``, every step's training loss.
  """
  return _scan_chunk(jax.vmap(step_fn, in_axes=(0, 0, None, None, None)),
                     num_steps)


def make_single_seed_chunk(step_fn: Callable, num_steps: int) -> Callable:
  """``make_train_chunk`` for one seed without a seed axis (the peer of
  the vmapped chunk in ``benchmarks/train_benchmark.py``)."""
  return _scan_chunk(step_fn, num_steps)


def make_probe(model: models.MLP, loss: str, task: str) -> Callable:
  """Jitted S-seed diagnostics on a fixed batch, no update.

  ``probe(params, x, y) -> (grads, metrics, activations)`` with a leading
  seed axis on every output; used for the logged gradient-flow curves and
  the TensorBoard histograms.
  """
  f = make_loss_and_metrics(model, loss, task)
  return jax.jit(jax.vmap(lambda p, x, y: f(p, x, y),
                          in_axes=(0, None, None)))


def make_evaluate(model: models.MLP, loss: str, task: str) -> Callable:
  """Jitted S-seed ``evaluate(params, x, y) -> {'loss', 'accuracy'}``."""
  check_loss(loss, task)
  loss_fn = LOSSES[loss]

  def evaluate(params, x, y):
    logits = model.apply(params, x)
    out = {"loss": loss_fn(logits, y, task)}
    if task != "regression":
      out["accuracy"] = compute_accuracy(logits, y, task)
    return out

  return jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)))


def layer_labels(depth: int) -> list[str]:
  """Names of the metric rows: ``layer_01`` ... ``layer_L``, ``readout``."""
  width = max(2, len(str(depth)))
  return [f"layer_{l:0{width}d}" for l in range(1, depth + 1)] + ["readout"]

