r"""Worked examples with known answers: small Flax models made of named blocks.

Each model is a Flax linen module whose repeated submodules are named
``block_0 .. block_{L-1}`` (the RNN: one shared ``cell`` called ``T``
times), so :func:`vgrad.probes.blocks.flax_blocks` cuts it at
``BOUNDARIES[name]`` into blocks ``x_{l-1} -> x_l`` whose Jacobians
``J_l = d vec(x_l) / d vec(x_{l-1})`` multiply to the input-output one.
Every model maps ONE input, without a batch axis, to an output of the same
shape (every block is square; ``jax.vmap`` the apply for a batch);
``depth`` counts the blocks (for the RNN, the time steps ``T``).

========  =====================================  ==========================
name      model (input shape)                    what is known
========  =====================================  ==========================
cnn       :class:`ConvNet`, circular             linear: the singular values
          convolutions ``(size, size, width)``   are those of the kernels'
                                                 DFTs (Sedghi et al. 2019);
                                                 delta-orthogonal: isometry
                                                 (Xiao et al. 2018)
resnet    :class:`ResidualMLP`, pre-LN blocks    with skips the spectrum
          ``x + W2 phi(W1 LN(x))`` ``(width,)``  stays O(1), without them
                                                 it collapses with depth
rnn       :class:`RNN`, ``x_t = phi(W x_{t-1}    linear, normal W:
          + b)`` for ``t = 1..T`` ``(width,)``   ``s(dx_T/dx_0) = |lambda(W)|
                                                 ^T``: vanishing or
                                                 exploding through time
                                                 (Bengio et al. 1994;
                                                 Pascanu et al. 2013)
trans-    :class:`Transformer`, pre-LN           without skips the token
former    attention + MLP ``(tokens, width)``    mixing collapses the rank
                                                 (Dong et al. 2021)
========  =====================================  ==========================

tests/zoo_test.py checks each of these through ``flax_blocks`` and
``vgrad.jacobian_spectra``.

``MODELS[name](key, **hparams)`` (or :func:`build`) draws the parameters and
one input and returns an :class:`Example` ``(module, variables, x,
boundaries)``; ``vgrad.flax_blocks(*example)`` gives the blocks. Weights use
the papers' variance notation: ``sigma_w2`` is the weight variance
(``Var W = sigma_w2 / fan_in`` for ``gaussian``, the gain ``sqrt(sigma_w2)``
for ``orthogonal`` and ``delta_orthogonal``), ``sigma_b2`` the bias variance
(None: zero biases).

The blocks' layers are written out as jitted maps (:func:`mlp_map`,
:func:`attention_map`, ...) of parameters the block declares, not as nested
Flax modules: ``flax_blocks`` runs the whole model once per block (and once
more per block to check the cut), so Flax's per-module and per-parameter
overhead, and eager execution operation by operation, would dominate a
probe's time.
"""

from collections.abc import Callable
import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgrad.nn import activations as activations_lib
from vgrad.nn import config
from vgrad.nn import initializers as initializers_lib
from vgrad.nn import models

PRECISION = models.PRECISION
Initializer = initializers_lib.Initializer

# Where flax_blocks cuts each model (regular expressions on submodule paths).
BOUNDARIES = {
    "cnn": r"block_\d+",
    "resnet": r"block_\d+",
    "rnn": "cell",
    "transformer": r"block_\d+",
}


# --------------------------------------------------------------------------
# Convolution kernels: shape (*spatial, c_in, c_out).

# delta_orthogonal: vgrad.nn.initializers' (dense and convolution kernels).
delta_orthogonal = initializers_lib.delta_orthogonal


def conv_gaussian(sigma_w2: float = 1.0) -> Initializer:
  """Every tap ``N(0, sigma_w2 / fan_in)``, ``fan_in = prod(spatial) c_in``
  (an exact Gaussian, as ``gaussian`` of :mod:`vgrad.nn.initializers`)."""
  def init(key, shape, dtype=jnp.float32):
    fan_in = math.prod(shape[:-1])
    return math.sqrt(sigma_w2 / fan_in) * jax.random.normal(key, shape, dtype)
  return init


CONV_INITIALIZERS: dict[str, Callable[..., Initializer]] = {
    "delta_orthogonal": delta_orthogonal,
    "gaussian": conv_gaussian,
}


# --------------------------------------------------------------------------
# The models.

def _dot(x, w):
  return jnp.dot(x, w, precision=PRECISION)


def _add_bias(h, b):
  """``h + b`` over the last axis (broadcast explicitly: the tests raise on
  implicit rank promotion)."""
  return h + b.reshape((1,) * (h.ndim - 1) + b.shape)


def _affine(x, w, b):
  return _add_bias(_dot(x, w), b)


def _param(module: nn.Module, name: str, init: Initializer, shape):
  """``module.param(name, init, shape)`` without Flax's check that the
  stored value has the initializer's shape, which traces ``init`` at every
  access (a QR for ``orthogonal``): ``flax_blocks`` applies the model once
  per block, so that check took most of a probe's time."""
  return module.variable("params", name,
                         lambda: init(module.make_rng("params"), shape)).value


def circular_conv(x, kernel):
  """What ``nn.Conv(padding="CIRCULAR", use_bias=False)`` computes for one
  image: ``y[p] = sum_t x[p + t - c] kernel[t]``, pixel indices modulo
  ``(H, W)``, ``c`` the kernel's centre; ``x`` ``(H, W, C_in)``,
  ``kernel`` ``(kh, kw, C_in, C_out)``, ``y`` ``(H, W, C_out)`` (tested
  equal to ``nn.Conv``)."""
  pads = [((k - 1) // 2, k // 2) for k in kernel.shape[:2]] + [(0, 0)]
  y = jax.lax.conv_general_dilated(
      jnp.pad(x, pads, mode="wrap")[None], kernel, (1, 1), "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=PRECISION)
  return y[0]


@functools.partial(jax.jit, static_argnames="phi")
def _conv_step(kernel, bias, x, phi):
  return phi(_add_bias(circular_conv(x, kernel), bias))


class ConvBlock(nn.Module):
  """``x -> phi(conv(x) + b)``: a :func:`circular_conv` with a
  ``kernel_size^2`` kernel to ``features`` channels, ``(H, W, C) -> (H, W,
  features)``; parameters ``kernel`` ``(k, k, C, features)`` and ``bias``.
  """
  features: int
  kernel_size: int
  activation: activations_lib.Activation
  kernel_init: Initializer
  bias_init: Initializer

  @nn.compact
  def __call__(self, x):
    shape = (self.kernel_size,) * 2 + (x.shape[-1], self.features)
    kernel = _param(self, "kernel", self.kernel_init, shape)
    bias = _param(self, "bias", self.bias_init, (self.features,))
    return _conv_step(kernel, bias, x, self.activation.fn)


class ConvNet(nn.Module):
  """``depth`` :class:`ConvBlock` s ``block_0 .. block_{depth-1}`` of
  ``channels`` channels, no readout: ``(H, W, C) -> (H, W, channels)``.

  One image, no batch axis (``jax.vmap`` it for a batch). Circular
  padding makes a linear block's Jacobian block-circulant: its
  singular values are those of the ``C x channels`` matrices
  ``K(omega) = sum_t k[t] exp(-2 pi i <omega, t> / (H, W))`` over the
  ``H W`` frequencies (the moduli of the kernel's 2-D DFT for one channel;
  Sedghi, Gupta & Long 2019), and a product of such blocks multiplies them
  frequency by frequency.
  """
  depth: int
  channels: int
  kernel_size: int
  activation: activations_lib.Activation
  kernel_init: Initializer
  bias_init: Initializer

  @nn.compact
  def __call__(self, x):
    for l in range(self.depth):
      x = ConvBlock(self.channels, self.kernel_size, self.activation,
                    self.kernel_init, self.bias_init, name=f"block_{l}")(x)
    return x


def layer_norm(x, eps: float = 1e-6):
  """``(x - mean(x)) / sqrt(var(x) + eps)`` over the last axis: Flax's
  ``nn.LayerNorm`` at initialisation (unit scale, zero offset), without
  parameters."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


@functools.partial(jax.jit, static_argnames=("phi", "skip"))
def mlp_map(params, x, phi, skip: bool = True):
  """The pre-LayerNorm MLP block, ``(..., width) -> (..., width)``::

      x + phi(LN(x) W1 + b1) W2 + b2     (without the "x +" if not skip)

  ``params``: ``w1`` ``(width, hidden)``, ``b1``, ``w2`` ``(hidden,
  width)``, ``b2``; ``LN`` = :func:`layer_norm`. Jitted: eagerly (as
  ``flax_blocks`` runs a model) one compiled call instead of one per
  operation."""
  h = phi(_affine(layer_norm(x), params["w1"], params["b1"]))
  h = _affine(h, params["w2"], params["b2"])
  return x + h if skip else h


def _mlp_params(module: nn.Module, width: int, hidden: int, kernel_init,
                bias_init) -> dict:
  return {"w1": _param(module, "w1", kernel_init, (width, hidden)),
          "b1": _param(module, "b1", bias_init, (hidden,)),
          "w2": _param(module, "w2", kernel_init, (hidden, width)),
          "b2": _param(module, "b2", bias_init, (width,))}


class MLPBlock(nn.Module):
  """:func:`mlp_map` with ``hidden`` units, its parameters declared here
  (no nested modules: :func:`vgrad.probes.blocks.flax_blocks` runs the
  whole model once per block, and Flax's overhead per module call would
  dominate a probe's time)."""
  width: int
  hidden: int
  activation: activations_lib.Activation
  kernel_init: Initializer
  bias_init: Initializer
  skip: bool = True

  @nn.compact
  def __call__(self, x):
    params = _mlp_params(self, x.shape[-1], self.hidden, self.kernel_init,
                         self.bias_init)
    return mlp_map(params, x, self.activation.fn, self.skip)


class ResidualMLP(nn.Module):
  """``depth`` :class:`MLPBlock` s ``block_0 ..`` of ``width`` units (hidden
  ``width`` too), no readout: ``(width,) -> (width,)``."""
  depth: int
  width: int
  activation: activations_lib.Activation
  kernel_init: Initializer
  bias_init: Initializer
  skip: bool = True

  @nn.compact
  def __call__(self, x):
    for l in range(self.depth):
      x = MLPBlock(self.width, self.width, self.activation, self.kernel_init,
                   self.bias_init, self.skip, name=f"block_{l}")(x)
    return x


@functools.partial(jax.jit, static_argnames="phi")
def _rnn_step(kernel, bias, x, phi):
  return phi(_affine(x, kernel, bias))


class RNNCell(nn.Module):
  """One step ``x_{t-1} -> x_t = phi(W x_{t-1} + b)`` (``W = kernel.T``);
  its Jacobian is ``diag(phi'(h_t)) W``."""
  activation: activations_lib.Activation
  kernel_init: Initializer
  bias_init: Initializer

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    kernel = _param(self, "kernel", self.kernel_init, (width, width))
    bias = _param(self, "bias", self.bias_init, (width,))
    return _rnn_step(kernel, bias, x, self.activation.fn)


class RNN(nn.Module):
  """A vanilla RNN without inputs, unrolled: ONE :class:`RNNCell` ``cell``
  called ``steps`` times from the initial state ``x_0``, ``(width,) ->
  (width,)``. Cut at ``"cell"``, it is ``steps`` blocks, and
  ``dx_T/dx_0 = D_T W ... D_1 W`` with ``D_t = diag(phi'(h_t))``: for a
  linear cell ``W^T``, whose singular values are ``|lambda_i(W)|^T`` when
  ``W`` is normal (orthogonal: ``sqrt(sigma_w2)^T``, every one)."""
  steps: int
  activation: activations_lib.Activation
  kernel_init: Initializer
  bias_init: Initializer

  @nn.compact
  def __call__(self, x):
    cell = RNNCell(self.activation, self.kernel_init, self.bias_init,
                   name="cell")
    for _ in range(self.steps):
      x = cell(x)
    return x


@functools.partial(jax.jit, static_argnames=("heads", "skip"))
def attention_map(params, x, heads: int, skip: bool = True):
  """Pre-LayerNorm multi-head self-attention (no mask, no biases),
  ``(tokens, width) -> (tokens, width)``::

      x + concat_heads(softmax(q k^T / sqrt(d)) v) Wo    (no "x +" if not skip)

  with ``q, k, v = LN(x) Wq, LN(x) Wk, LN(x) Wv`` split into ``heads``
  heads of ``d = width / heads``; ``params``: ``wq, wk, wv, wo``, each
  ``(width, width)``."""
  tokens, width = x.shape
  d = width // heads
  h = layer_norm(x)
  q, k, v = (_dot(h, params[n]).reshape(tokens, heads, d).transpose(1, 0, 2)
             for n in ("wq", "wk", "wv"))
  logits = jnp.matmul(q, k.transpose(0, 2, 1), precision=PRECISION)
  weights = jax.nn.softmax(logits / math.sqrt(d), axis=-1)
  mixed = jnp.matmul(weights, v, precision=PRECISION)   # (heads, tokens, d)
  h = _dot(mixed.transpose(1, 0, 2).reshape(tokens, width), params["wo"])
  return x + h if skip else h


class TransformerBlock(nn.Module):
  """One pre-LN transformer block, ``(tokens, width) -> (tokens, width)``::

      y   = x + concat_heads(softmax(q k^T / sqrt(d)) v) Wo
      out = y + phi(LN(y) W1 + b1) W2 + b2          (4 width hidden units)

  (:func:`attention_map` then :func:`mlp_map`), without ``skip`` neither
  ``x +`` nor ``y +``. Parameters ``wq, wk, wv, wo, w1, b1, w2, b2``.
  """
  heads: int
  activation: activations_lib.Activation
  kernel_init: Initializer
  bias_init: Initializer
  skip: bool = True

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    attention = {n: _param(self, n, self.kernel_init, (width, width))
                 for n in ("wq", "wk", "wv", "wo")}
    mlp = _mlp_params(self, width, 4 * width, self.kernel_init,
                      self.bias_init)
    x = attention_map(attention, x, self.heads, self.skip)
    return mlp_map(mlp, x, self.activation.fn, self.skip)


class Transformer(nn.Module):
  """``depth`` :class:`TransformerBlock` s ``block_0 ..``, no embedding, no
  final LayerNorm, no readout: ``(tokens, width) -> (tokens, width)``."""
  depth: int
  heads: int
  activation: activations_lib.Activation
  kernel_init: Initializer
  bias_init: Initializer
  skip: bool = True

  @nn.compact
  def __call__(self, x):
    for l in range(self.depth):
      x = TransformerBlock(self.heads, self.activation, self.kernel_init,
                           self.bias_init, self.skip, name=f"block_{l}")(x)
    return x


# --------------------------------------------------------------------------
# Building an example: parameters and one input.

class Example(NamedTuple):
  """A model ready to cut: ``vgrad.flax_blocks(*example)`` gives its blocks.

  Attributes:
    module: the Flax module.
    variables: its variables.
    x: one input, no batch axis (``x[None]`` for ``jacobian_spectra``).
    boundaries: the regular expression naming its blocks.
  """
  module: nn.Module
  variables: Any
  x: jax.Array
  boundaries: str


def _example(name, key, module, shape, input_scale) -> Example:
  init_key, data_key = jax.random.split(key)
  config.check_variance("input_scale", input_scale)
  x = input_scale * jax.random.normal(data_key, shape)
  return Example(module, module.init(init_key, x), x, BOUNDARIES[name])


def _activation(act: str) -> activations_lib.Activation:
  """The registry's ``act``, elementwise (maxout is not: it needs a layer
  of k pieces, :mod:`vgrad.nn.models`)."""
  config.check_act(act)
  activation = activations_lib.get_activation(act)
  if activation.is_maxout:
    raise config.ConfigError("act", "must be elementwise, got maxout")
  return activation


def _dense_inits(init, sigma_w2, sigma_b2) -> tuple[Initializer, Initializer]:
  config.check_init(init, sigma_w2)
  config.check_variance("sigma_b2", sigma_b2)
  return (initializers_lib.get_initializer(init, sigma_w2),
          initializers_lib.get_bias_initializer(sigma_b2))


def make_cnn(key: jax.Array, *, depth: int = 4, width: int = 4,
             act: str = "linear", init: str = "delta_orthogonal",
             sigma_w2: float | None = 1.0, sigma_b2: float | None = None,
             kernel_size: int = 3, size: int = 6,
             input_scale: float = 1.0) -> Example:
  """A :class:`ConvNet` of ``depth`` blocks of ``width`` channels on one
  ``(size, size, width)`` image of ``N(0, input_scale^2)`` pixels.

  ``init`` is a name of ``CONV_INITIALIZERS`` (``sigma_w2`` None: 1);
  Xiao et al.'s critical point for tanh is ``init='delta_orthogonal',
  sigma_w2=1, sigma_b2=None``.
  """
  if init not in CONV_INITIALIZERS:
    raise config.ConfigError("init", f"must be one of "
                             f"{', '.join(sorted(CONV_INITIALIZERS))}, got "
                             f"{init!r}")
  for field, value in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
    config.check_variance(field, value)
  kernel_size = config.check_count("kernel_size", kernel_size, 1)
  if init == "delta_orthogonal" and kernel_size % 2 == 0:
    raise config.ConfigError("kernel_size", f"must be odd for "
                             f"delta_orthogonal (a centre tap), got "
                             f"{kernel_size}")
  module = ConvNet(config.check_count("depth", depth, 1),
                   config.check_count("width", width, 1), kernel_size,
                   _activation(act),
                   CONV_INITIALIZERS[init](1.0 if sigma_w2 is None
                                           else sigma_w2),
                   initializers_lib.get_bias_initializer(sigma_b2))
  size = config.check_count("size", size, 1)
  return _example("cnn", key, module, (size, size, width), input_scale)


def make_residual_mlp(key: jax.Array, *, depth: int = 8, width: int = 16,
                      act: str = "relu", skip: bool = True,
                      init: str = "gaussian", sigma_w2: float | None = 2.0,
                      sigma_b2: float | None = None,
                      input_scale: float = 1.0) -> Example:
  """A :class:`ResidualMLP` (``skip=False``: the same blocks without their
  skip connections) on one ``(width,)`` input of ``N(0, input_scale^2)``
  entries; ``init`` a name of ``vgrad.nn.initializers.INITIALIZERS``
  (default: He's critical ReLU net, ``gaussian`` with ``sigma_w2 = 2``)."""
  module = ResidualMLP(config.check_count("depth", depth, 1),
                       config.check_count("width", width, 1),
                       _activation(act),
                       *_dense_inits(init, sigma_w2, sigma_b2), bool(skip))
  return _example("resnet", key, module, (width,), input_scale)


def make_rnn(key: jax.Array, *, depth: int = 16, width: int = 8,
             act: str = "tanh", init: str = "orthogonal",
             sigma_w2: float | None = 1.0, sigma_b2: float | None = None,
             input_scale: float = 1.0) -> Example:
  """An :class:`RNN` unrolled over ``depth = T`` steps from one initial
  state ``x_0`` of ``N(0, input_scale^2)`` entries.

  ``init='orthogonal'``: ``W = sqrt(sigma_w2) Q``, spectral radius exactly
  ``sqrt(sigma_w2)``; ``'gaussian'``: ``W_ij ~ N(0, sigma_w2 / width)``,
  spectral radius ``-> sqrt(sigma_w2)`` as ``width -> inf`` (circular law)
  and W not normal.
  """
  width = config.check_count("width", width, 1)
  module = RNN(config.check_count("depth", depth, 1), _activation(act),
               *_dense_inits(init, sigma_w2, sigma_b2))
  return _example("rnn", key, module, (width,), input_scale)


def make_transformer(key: jax.Array, *, depth: int = 4, width: int = 8,
                     heads: int = 2, tokens: int = 4, act: str = "gelu",
                     skip: bool = True, init: str = "gaussian",
                     sigma_w2: float | None = 1.0,
                     sigma_b2: float | None = None,
                     input_scale: float = 1.0) -> Example:
  """A :class:`Transformer` (``skip=False``: without its skip connections)
  on one ``(tokens, width)`` sequence of ``N(0, input_scale^2)`` entries.
  ``heads`` must divide ``width``."""
  width = config.check_count("width", width, 1)
  heads = config.check_count("heads", heads, 1)
  if width % heads:
    raise config.ConfigError("heads", f"must divide width {width}, got "
                             f"{heads}")
  module = Transformer(config.check_count("depth", depth, 1), heads,
                       _activation(act),
                       *_dense_inits(init, sigma_w2, sigma_b2), bool(skip))
  tokens = config.check_count("tokens", tokens, 1)
  return _example("transformer", key, module, (tokens, width), input_scale)


MODELS: dict[str, Callable[..., Example]] = {
    "cnn": make_cnn,
    "resnet": make_residual_mlp,
    "rnn": make_rnn,
    "transformer": make_transformer,
}


def build(name: str, key: jax.Array, **hparams) -> Example:
  """``MODELS[name](key, **hparams)``.

  Raises:
    ValueError: an unknown name (the message lists the valid ones), or a
      bad hyperparameter (a :class:`vgrad.nn.config.ConfigError` naming it).
  """
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; valid names: "
                     f"{', '.join(sorted(MODELS))}")
  return MODELS[name](key, **hparams)
