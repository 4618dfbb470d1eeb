"""LSUV: layer-sequential unit-variance initialisation (Mishkin & Matas 2015).

"All you need is a good init" (ICLR 2016), Algorithm 1:

1. pre-initialise every weight matrix orthonormal (Saxe et al. 2014): the
   registry's ``"lsuv"`` entry is the Haar-orthogonal init with gain 1;
2. for each layer ``L`` from the first to the last, with one mini-batch:
   while ``|Var(B_L) - 1| >= Tol_var`` and ``T_i < T_max``: forward the
   batch, compute ``Var(B_L)`` and set ``W_L <- W_L / sqrt(Var(B_L))``.

``B_L`` is the output blob of the convolution / inner-product layer ``L``.
In the paper's Caffe networks the nonlinearity is a separate layer, so that
blob is the affine output, i.e. the *pre-activation*
``h_l = W_l x_{l-1} + b_l`` of vgrad's notation (see :mod:`vgrad.nn.models`),
and that is what is normalised here. It is also the only choice that works
for every activation: a post-activation target of unit variance is out of
reach for bounded ones (``Var tanh(h) < 1`` for every scale) and would drive
their weights towards saturation, whereas unit pre-activation variance is
the mean-field length ``q = 1`` for which the activation's curvature is
felt but it does not saturate.

``Var(B_L)`` is the variance of all the blob's entries pooled (examples and
units alike, as ``numpy.var`` of the whole blob); for a maxout layer the
blob holds all ``k`` linear pieces ``(B, width, k)`` and the whole stacked
kernel is rescaled (max is positively homogeneous, so the maxout output
scales with it). The readout layer, when the model has one, is an
inner-product layer like the others and is normalised last, as in the
paper, which runs the loop up to the classifier: its logits (before any
head) get unit variance, so a softmax starts neither uniform (tiny logits,
no gradient signal from the classifier) nor saturated (huge logits).
Biases are not touched (the registry leaves them zero unless ``sigma_b2``
is given).

With zero biases ``h_l`` is linear in ``W_l``, so one rescaling lands on
variance 1 up to rounding and the loop stops by ``tol`` after one
iteration. With nonzero biases ``Var(c z + b)`` (``z = W_l x_{l-1}``) is
``c^2 Var(z) + 2 c Cov(z, b) + Var(b)``, not ``c^2`` times anything, and
the loop genuinely iterates; if its floor over ``c``,
``Var(b) - Cov(z, b)^2 / Var(z)``, exceeds ``1 + tol`` no kernel scale can
reach the target and the loop stops at the cap, reported as not converged.

A degenerate layer, whose kernel output ``W_l x_{l-1}`` has no spread on
the batch (pooled variance 0, or below the dtype's smallest normal number:
zero input, every unit of the layer below a dead ReLU with zero biases) or
is non-finite, cannot be normalised by any scale: it is left as it is and
flagged, so LSUV itself never creates a NaN or an Inf.

Everything is pure ``jax.numpy`` / ``lax.while_loop``: ``lsuv_init`` can be
jitted and vmapped over the parameters of several seeds.
"""

from collections.abc import Callable
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vgrad.nn import models

# Tol_var and T_max as used by Mishkin & Matas (2015) with Algorithm 1.
TOL = 0.1
MAX_ITERS = 10


class LSUVInfo(NamedTuple):
  """What LSUV did to each normalised layer.

  Every field has shape ``(L,)`` with ``L = depth`` (+1 for the readout,
  last), and a leading seed axis when vmapped.

  Attributes:
    variance: the final ``Var(B_l)`` on the batch (after the last rescale).
    iterations: int32, rescalings applied (0 if the layer was already
      within ``tol``, ``max_iters`` if the loop stopped at the cap).
    converged: bool, ``|variance - 1| < tol``.
    degenerate: bool, the kernel's output had no spread or was non-finite
      on the batch; the layer was left unchanged.
  """
  variance: jax.Array
  iterations: jax.Array
  converged: jax.Array
  degenerate: jax.Array


def _check_arguments(x, tol, max_iters) -> None:
  if jnp.ndim(x) != 2:
    raise ValueError(f"x must be a batch of inputs (batch, n_in), got shape "
                     f"{jnp.shape(x)}")
  if not tol > 0:
    raise ValueError(f"tol must be > 0, got {tol}")
  if int(max_iters) != max_iters or max_iters < 0:
    raise ValueError(f"max_iters must be an integer >= 0, got {max_iters}")


def _normalize_layer(forward: Callable, layer: dict, x: jax.Array, tol: float,
                     max_iters: int):
  """Algorithm 1's inner loop for one layer.

  Args:
    forward: ``forward({'kernel', 'bias'}, x) -> (x_next, blob)``.
    layer: the layer's parameters ``{'kernel', 'bias'}``.
    x: the layer's input batch ``(B, n_in)``.
    tol: ``Tol_var``.
    max_iters: ``T_max``, the most rescalings.

  Returns:
    ``(layer, x_next, variance, iterations, degenerate)`` with the rescaled
    parameters and the layer's output on the batch under them.
  """
  kernel, bias = layer["kernel"], layer["bias"]

  def run(k):
    return forward({"kernel": k, "bias": bias}, x)

  _, signal = forward({"kernel": kernel, "bias": jnp.zeros_like(bias)}, x)
  signal_var = jnp.var(signal)
  x_next, blob = run(kernel)
  var = jnp.var(blob)
  tiny = jnp.finfo(var.dtype).tiny

  def usable(v):
    return jnp.isfinite(v) & (v > tiny)

  degenerate = ~(usable(signal_var) & usable(var))

  def cond(state):
    _, _, v, it = state
    return (jnp.abs(v - 1) >= tol) & (it < max_iters) & ~degenerate

  def body(state):
    k, _, v, it = state
    k = k * jax.lax.rsqrt(v).astype(k.dtype)
    x_k, blob_k = run(k)
    return k, x_k, jnp.var(blob_k), it + 1

  kernel, x_next, var, iters = jax.lax.while_loop(
      cond, body, (kernel, x_next, var, jnp.zeros((), jnp.int32)))
  return {"kernel": kernel, "bias": bias}, x_next, var, iters, degenerate


def _readout(layer, x):
  z = jnp.dot(x, layer["kernel"], precision=models.PRECISION)
  z = z + layer["bias"][None, :]
  return z, z


def lsuv_init(model: models.MLP, params: Any, x: jax.Array, *,
              tol: float = TOL, max_iters: int = MAX_ITERS
              ) -> tuple[Any, LSUVInfo]:
  """Step 2 of LSUV: rescales each layer's kernel to unit output variance.

  Hidden layers ``1..depth`` in order, then the readout if the model has
  one; each layer sees the batch propagated through the layers already
  rescaled. Dropout is off (the deterministic forward pass). Compiled once
  per (model, tol, max_iters); vmap over ``params`` for several seeds.

  Args:
    model: the MLP (any activation, maxout included).
    params: its parameters ``{'params': ...}``, normally from
      ``model.init`` with the orthonormal pre-init of ``init='lsuv'``.
    x: the data batch ``(B, n_in)`` (the paper uses one mini-batch).
    tol: ``Tol_var`` (a Python number): stop once ``|Var(B_l) - 1| < tol``.
    max_iters: ``T_max`` (a Python int): the most rescalings per layer.

  Returns:
    ``(params, info)``: the rescaled parameters (same tree, biases
    unchanged) and an :class:`LSUVInfo` of per-layer arrays.

  Raises:
    ValueError: ``x`` not 2-D, ``tol <= 0`` or ``max_iters`` not an integer
      >= 0.
  """
  _check_arguments(x, tol, max_iters)
  return _lsuv_init(model, params, x, float(tol), int(max_iters))


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _lsuv_init(model, params, x, tol, max_iters):
  hidden = models.hidden_layer(model)

  def forward(layer, z):
    return hidden.apply({"params": layer}, z)

  new = dict(params["params"])
  stats = []   # per group of layers: [variance, iterations, degenerate]

  def one(fn, layer, z):
    """``(layer, z_next, [variance, iterations, degenerate])``."""
    layer, z, *layer_stats = _normalize_layer(fn, layer, z, tol, max_iters)
    return layer, z, layer_stats

  if model.depth >= 1:
    new["layers_0"], x, first = one(forward, new["layers_0"], x)
    stats.append([v[None] for v in first])
  if model.depth >= 2:
    # Layers 2..depth map width to width: one scanned loop (a program whose
    # size does not grow with depth) over their stacked parameters.
    names = [f"layers_{l}" for l in range(1, model.depth)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                     *[new[name] for name in names])

    def body(z, layer):
      layer, z, layer_stats = one(forward, layer, z)
      return z, (layer, layer_stats)

    x, (layers, scanned) = jax.lax.scan(body, x, stacked)
    for i, name in enumerate(names):
      new[name] = jax.tree_util.tree_map(lambda a, i=i: a[i], layers)
    stats.append(scanned)
  if model.num_outputs is not None:
    new["readout"], _, last = one(_readout, new["readout"], x)
    stats.append([v[None] for v in last])
  variance, iterations, degenerate = (jnp.concatenate(s)
                                      for s in zip(*stats))
  converged = (jnp.abs(variance - 1) < tol) & ~degenerate
  return ({**params, "params": new},
          LSUVInfo(variance, iterations, converged, degenerate))


def initialize(model: models.MLP, key: jax.Array, x: jax.Array, *,
               tol: float = TOL, max_iters: int = MAX_ITERS) -> Any:
  """``model.init``, then LSUV on ``x`` when the model asks for it.

  The one entry point for parameters of a model that may be data-dependent
  (``model.data_init == 'lsuv'``, set by ``make_mlp(init='lsuv')``); for
  every other model it is ``model.init(key, x[:1])``, so callers need not
  tell the two apart. Pure: jit it, and vmap it over ``key`` for seeds.

  Args:
    model: the MLP.
    key: the init key.
    x: the data batch ``(B, n_in)`` LSUV normalises on.
    tol, max_iters: passed to :func:`lsuv_init`.

  Returns:
    The parameters ``{'params': ...}``.

  Raises:
    ValueError: an unknown ``model.data_init``, or bad LSUV arguments.
  """
  if model.data_init not in (None, "lsuv"):
    raise ValueError(f"unknown data-dependent init {model.data_init!r}; "
                     "valid: lsuv or None")
  if jnp.ndim(x) != 2:
    raise ValueError(f"x must be a batch of inputs (batch, n_in), got shape "
                     f"{jnp.shape(x)}")
  params = model.init(key, x[:1])
  if model.data_init == "lsuv":
    params, _ = lsuv_init(model, params, x, tol=tol, max_iters=max_iters)
  return params
