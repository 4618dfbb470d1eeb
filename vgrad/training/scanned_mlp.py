"""A plain MLP trained with its hidden layers 2..L stacked and scanned.

vgrad's :class:`vgrad.nn.models.MLP` applies its layers one by one, so a
program over a 200-layer net is 200 copies of a layer; here the parameters
of one or several seeds are held as ``{"first": layer 1, "rest": layers
2..L stacked on a leading axis (None at depth 1), "readout"}`` and the
forward pass is a ``lax.scan`` of the model's own hidden-layer module
(:func:`vgrad.nn.models.hidden_layer`): programs compile in a time that
does not grow with depth. :func:`to_flax` and :func:`from_flax` convert one
seed's parameters to and from the MLP's own tree (the probes and LSUV take
that).

The training programs (:func:`programs`): S seeds vmapped, ``n`` steps of
softmax cross-entropy per jitted chunk (``lax.scan``), minibatches
reshuffled every epoch from each seed's training key folded with the
epoch, and the divergence rule of :mod:`vgrad.training.train`: a step whose
loss, gradients or update is non-finite is not applied, the seed is frozen
and ``diverged_at`` holds that 1-based step.
"""

from collections.abc import Callable
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vgrad.nn import lsuv
from vgrad.nn import models
from vgrad.training import train

# --------------------------------------------------------------------------
# Parameters: first layer, layers 2..L stacked, readout.

@functools.lru_cache(maxsize=64)
def _layer_init(kernel_init, bias_init, dtype, n_in: int, width: int,
                n_out: int):
  """``init(keys (S,), layer) -> {"first", "hidden", "readout"}``, jitted:
  every seed's layer 1 (``n_in`` x ``width``), hidden layer ``layer``
  (``width`` x ``width``) and readout (``width`` x ``n_out``), each
  ``{"kernel", "bias"}``, drawn by the model's initializers from
  ``fold_in(key, 1)``, ``fold_in(key, layer)`` and ``fold_in(key, 0)``.
  One program per initializer and shapes, shared by every depth and
  called once per hidden layer (the first layer and readout are drawn
  again each time, microseconds): compiling the whole net's init as one
  program took 6-17 s per arm and depth on a 2-core CPU (XLA compiles
  each threefry call site for a second or so), one program per shape
  three compilations per arm.
  """
  def draw(key, layer, fan_in, fan_out):
    k_w, k_b = jax.random.split(jax.random.fold_in(key, layer))
    return {"kernel": kernel_init(k_w, (fan_in, fan_out), dtype),
            "bias": bias_init(k_b, (fan_out,), dtype)}

  def one(key, layer):
    return {"first": draw(key, 1, n_in, width),
            "hidden": draw(key, layer, width, width),
            "readout": draw(key, 0, width, n_out)}
  return jax.jit(jax.vmap(one, in_axes=(0, None)))


def init_params(model: models.MLP, n_in: int, keys: jax.Array) -> dict:
  """``S`` seeds' parameters from init keys ``(S,)``, drawn by the model's
  initializers (hidden layer ``l`` from ``fold_in(key, l)``, the readout
  from ``fold_in(key, 0)``), stacked on the host: ``{"first": {kernel (S,
  n_in, N), bias (S, N)}, "rest": {kernel (S, L-1, N, N), bias (S, L-1,
  N)} or None, "readout": {kernel (S, N, C), bias (S, C)}}``.

  LSUV's pre-initialisation only: :func:`lsuv_normalize` does step 2.
  """
  depth, width = model.depth, model.width
  draw = _layer_init(model.kernel_init, model.bias_init,
                     np.dtype(model.param_dtype), n_in, width,
                     model.num_outputs)
  layers = jax.device_get([draw(keys, l) for l in range(2, depth + 1)]
                          or [draw(keys, 2)])
  rest = None
  if depth > 1:
    rest = jax.tree.map(lambda *a: jnp.asarray(np.stack(a, axis=1)),
                        *[layer["hidden"] for layer in layers])
  return {"first": jax.tree.map(jnp.asarray, layers[0]["first"]),
          "rest": rest,
          "readout": jax.tree.map(jnp.asarray, layers[0]["readout"])}


def lsuv_normalize(model: models.MLP, params: dict, x: jax.Array
                   ) -> tuple[dict, np.ndarray]:
  """Step 2 of LSUV (:func:`vgrad.nn.lsuv.lsuv_init`) on every seed of
  ``params`` with the batch ``x``; returns the parameters and the final
  ``Var(B_l)`` per seed and layer ``(S, L + 1)``."""
  host = jax.device_get(params)
  out, variances = [], []
  for s in range(jax.tree.leaves(host)[0].shape[0]):
    one = to_flax(jax.tree.map(lambda a, s=s: a[s], host), model.depth)
    new, info = lsuv.lsuv_init(model, one, x)
    out.append(jax.device_get(from_flax(new, model.depth)))
    variances.append(np.asarray(info.variance))
  stacked = jax.tree.map(lambda *a: jnp.asarray(np.stack(a)), *out)
  return stacked, np.stack(variances)


def to_flax(params: dict, depth: int) -> dict:
  """One seed's stacked parameters as the MLP's ``{"params": {"layers_0",
  ..., "readout"}}`` tree (works on traced and host arrays)."""
  tree = {"layers_0": params["first"], "readout": params["readout"]}
  for l in range(1, depth):
    tree[f"layers_{l}"] = jax.tree.map(lambda a, l=l: a[l - 1],
                                       params["rest"])
  return {"params": tree}


def from_flax(params: dict, depth: int) -> dict:
  """The inverse of :func:`to_flax` (host arrays: stacked by NumPy)."""
  tree = params["params"]
  rest = None
  if depth > 1:
    rest = jax.tree.map(lambda *a: np.stack(a),
                        *[tree[f"layers_{l}"] for l in range(1, depth)])
  return {"first": tree["layers_0"], "rest": rest,
          "readout": tree["readout"]}


def apply(model: models.MLP, params: dict, x: jax.Array) -> jax.Array:
  """Logits ``(B, C)`` of one seed's stacked parameters on ``x (B, n_in)``:
  the model's own hidden layer, layers 2..L by ``lax.scan``."""
  hidden = models.hidden_layer(model)
  x, _ = hidden.apply({"params": params["first"]}, x)
  if params["rest"] is not None:
    def body(z, layer):
      return hidden.apply({"params": layer}, z)[0], None
    x, _ = jax.lax.scan(body, x, params["rest"])
  readout = params["readout"]
  z = jnp.dot(x, readout["kernel"], precision=models.PRECISION)
  return z + readout["bias"][None, :]


# --------------------------------------------------------------------------
# The programs (kept per model and optimizer).

class State(NamedTuple):
  """One seed's training state (a leading seed axis when vmapped);
  ``diverged_at`` 0 or the 1-based step whose loss, gradients or update
  were non-finite (the seed is frozen from then on)."""
  params: Any
  opt_state: Any
  diverged_at: jax.Array


class Programs(NamedTuple):
  """``chunk(n)(states, keys, start, x, y) -> (states, mean loss (S,))``;
  ``evaluate(params, x, y) -> (loss (S,), accuracy (S,))``;
  ``start(params) -> states``."""
  chunk: Callable
  evaluate: Callable
  start: Callable


def _minibatch(key, step, x, y, batch_size: int):
  """Step ``step``'s examples: epoch-wise reshuffled, without repeats
  within an epoch (the remainder of an epoch is skipped)."""
  n = x.shape[0]
  if batch_size >= n:
    return x, y
  per_epoch = n // batch_size
  perm = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), n)
  idx = jax.lax.dynamic_slice(perm, ((step % per_epoch) * batch_size,),
                              (batch_size,))
  return x[idx], y[idx]


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v))
                            for v in jax.tree.leaves(tree)]))


def _make_programs(model: models.MLP, optimizer,
                   batch_size: int) -> Programs:
  def loss_fn(params, x, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        apply(model, params, x), y))

  def step(state: State, key, step_index, x, y):
    xb, yb = _minibatch(key, step_index, x, y, batch_size)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, xb, yb)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params)
    params = optax.apply_updates(state.params, updates)
    healthy = state.diverged_at == 0
    ok = healthy & _all_finite((loss, grads, updates))
    keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
    diverged_at = jnp.where(healthy & ~ok, step_index + 1, state.diverged_at)
    return (State(jax.tree.map(keep, params, state.params),
                  jax.tree.map(keep, opt_state, state.opt_state),
                  diverged_at),
            jnp.where(ok, loss, jnp.nan))

  batched_step = jax.vmap(step, in_axes=(0, 0, None, None, None))
  chunks = {}

  def chunk(num_steps: int) -> Callable:
    if num_steps not in chunks:
      @jax.jit
      def run(states, keys, start, x, y):
        def body(states, i):
          return batched_step(states, keys, start + i, x, y)
        states, losses = jax.lax.scan(body, states, jnp.arange(num_steps))
        finite = jnp.isfinite(losses)
        count = jnp.sum(finite, axis=0)
        total = jnp.sum(jnp.where(finite, losses, 0.0), axis=0)
        return states, jnp.where(count > 0, total / jnp.maximum(count, 1),
                                 jnp.nan)
      chunks[num_steps] = run
    return chunks[num_steps]

  @jax.jit
  def evaluate(params, x, y):
    def one(p):
      logits = apply(model, p, x)
      loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          logits, y))
      return loss, train.compute_accuracy(logits, y, "multiclass")
    return jax.vmap(one)(params)

  @jax.jit
  def start(params):
    return State(params, jax.vmap(optimizer.init)(params),
                 jnp.zeros(jax.tree.leaves(params)[0].shape[:1], jnp.int32))

  return Programs(chunk, evaluate, start)


_PROGRAMS: dict = {}
_MAX_PROGRAMS = 8


def programs(model: models.MLP, optimizer: str, lr: float, momentum: float,
             batch_size: int) -> Programs:
  """The training, evaluation and start programs of ``model`` (its
  architecture: build it with a fixed initializer so that nets differing
  only by their initialisation share the programs) and the optimizer
  (:func:`vgrad.training.train.make_optimizer`), the last
  ``_MAX_PROGRAMS`` kept."""
  key = (model, optimizer, lr, momentum, batch_size)
  if key not in _PROGRAMS:
    if len(_PROGRAMS) >= _MAX_PROGRAMS:
      _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = _make_programs(
        model, train.make_optimizer(optimizer, lr, momentum=momentum),
        batch_size)
  return _PROGRAMS[key]
