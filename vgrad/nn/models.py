"""A pure Flax (linen) multilayer perceptron.

Notation (used throughout vgrad)::

    x_0 = input                                    shape (n_in,)
    h_l = W_l x_{l-1} + b_l,   x_l = phi(h_l)      l = 1..depth, shape (width,)
    y   = head(W_out x_depth + b_out)              only if num_outputs is set

``depth`` counts hidden layers, each an affine map followed by the activation;
``depth=0`` with ``num_outputs`` set is a linear (or logistic / softmax)
model. The readout, when present, is affine with no activation before the
head. Kernels are stored as ``(fan_in, fan_out)`` so ``W_l = kernel.T``.

A maxout layer with ``k`` pieces stores a kernel of shape ``(k, n_in, width)``
and a bias of shape ``(k, width)``; its pre-activations have shape
``(width, k)`` and ``x_l[i] = max_j h_l[i, j]``.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgrad.nn import activations as activations_lib
from vgrad.nn import config
from vgrad.nn import initializers as initializers_lib

# Full float32 products even where XLA would use TF32 (NVIDIA Ampere and
# later): a Jacobian probe must not silently lose 13 bits of mantissa.
PRECISION = jax.lax.Precision.HIGHEST

HEADS = {
    "none": lambda z: z,
    "sigmoid": jax.nn.sigmoid,
    "softmax": jax.nn.softmax,
}


def _stacked(init, pieces: int):
  """An initializer for ``(pieces, *shape)``: ``pieces`` independent draws."""
  def stacked_init(key, shape, dtype=jnp.float32):
    keys = jax.random.split(key, pieces)
    return jax.vmap(lambda k: init(k, shape[1:], dtype))(keys)
  return stacked_init


class HiddenLayer(nn.Module):
  """One hidden layer: ``x -> (phi(W x + b), h = W x + b)``.

  Input ``(..., n_in)``; returns the post-activations ``(..., features)`` and
  the pre-activations ``(..., features)``, or ``(..., features, k)`` for
  maxout with k pieces.
  """
  features: int
  activation: activations_lib.Activation
  kernel_init: initializers_lib.Initializer
  bias_init: initializers_lib.Initializer
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n_in, k = x.shape[-1], self.activation.pieces
    if k == 1:
      kernel = self.param("kernel", self.kernel_init, (n_in, self.features),
                          self.param_dtype)
      bias = self.param("bias", self.bias_init, (self.features,),
                        self.param_dtype)
      h = jnp.dot(x, kernel, precision=PRECISION)
      h = h + bias.reshape((1,) * (h.ndim - 1) + bias.shape)
    else:
      kernel = self.param("kernel", _stacked(self.kernel_init, k),
                          (k, n_in, self.features), self.param_dtype)
      bias = self.param("bias", _stacked(self.bias_init, k),
                        (k, self.features), self.param_dtype)
      h = jnp.einsum("...i,kif->...fk", x, kernel, precision=PRECISION)
      h = h + bias.T.reshape((1,) * (h.ndim - 2) + bias.T.shape)
    return self.activation.fn(h), h


class MLP(nn.Module):
  """``depth`` hidden layers of ``width`` units, optional readout and head.

  Attributes:
    depth: number of hidden layers (affine + activation), >= 0.
    width: units per hidden layer.
    activation: the hidden layers' activation.
    kernel_init: weight initializer, ``(key, (fan_in, fan_out), dtype)``.
    bias_init: bias initializer.
    num_outputs: readout size, or None for no readout (the output is x_depth).
    head: one of ``HEADS`` applied after the readout.
    param_dtype: dtype of the parameters.
    dropout_rate: inverted dropout on every hidden layer's output, active
      only when called with ``train=True`` (then an rng named ``'dropout'``
      must be passed to ``apply``).
    data_init: None, or the data-dependent init (``'lsuv'``) that must run
      after ``init``: ``model.init`` alone then gives only the
      pre-initialisation, so build parameters with
      :func:`vgrad.nn.lsuv.initialize` (which handles both cases).
  """
  depth: int
  width: int
  activation: activations_lib.Activation
  kernel_init: initializers_lib.Initializer
  bias_init: initializers_lib.Initializer
  num_outputs: int | None = None
  head: str = "none"
  param_dtype: Any = jnp.float32
  dropout_rate: float = 0.0
  data_init: str | None = None

  def setup(self):
    self.layers = [
        HiddenLayer(self.width, self.activation, self.kernel_init,
                    self.bias_init, self.param_dtype)
        for _ in range(self.depth)
    ]
    if self.num_outputs is not None:
      self.readout = nn.Dense(
          self.num_outputs, kernel_init=self.kernel_init,
          bias_init=self.bias_init, precision=PRECISION,
          param_dtype=self.param_dtype)
    self.dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, x, return_preactivations: bool = False,
               train: bool = False):
    """Maps ``x`` of shape ``(..., n_in)`` to the output.

    ``train=True`` turns dropout on (if ``dropout_rate > 0``).

    Returns:
      The output ``(..., num_outputs)`` (or ``(..., width)`` without readout);
      with ``return_preactivations`` also the list ``[h_1, ..., h_depth]``.
    """
    preactivations = []
    for layer in self.layers:
      x, h = layer(x)
      if self.dropout_rate > 0:
        x = self.dropout(x, deterministic=not train)
      preactivations.append(h)
    x = self.apply_output(x)
    return (x, preactivations) if return_preactivations else x

  def apply_layer(self, index: int, x):
    """Hidden layer ``index`` (1-based) alone: ``x_{l-1} -> (x_l, h_l)``."""
    return self.layers[index - 1](x)

  def apply_output(self, x):
    """The readout and head alone: ``x_depth -> y`` (identity without one)."""
    if self.num_outputs is None:
      return x
    return HEADS[self.head](self.readout(x))


def layer_paths(model: MLP) -> list[str]:
  """The parameter paths of the model's layers in forward order, as
  :func:`vgrad.gradient_stats` names them: ``params/layers_0``, ...,
  ``params/layers_{L-1}`` and ``params/readout`` (if it has one); each
  holds a ``kernel`` and a ``bias``."""
  paths = [f"params/layers_{i}" for i in range(model.depth)]
  return paths + (["params/readout"] if model.num_outputs is not None
                  else [])


def hidden_layer(model: MLP) -> HiddenLayer:
  """The model's hidden-layer module, unbound, for one layer's parameters.

  ``hidden_layer(model).apply({'params': params['params']['layers_0']}, x)``
  equals ``model.apply(params, 1, x, method=MLP.apply_layer)``.
  """
  return HiddenLayer(model.width, model.activation, model.kernel_init,
                     model.bias_init, model.param_dtype, parent=None)


def layer_params(params, index: int):
  """Hidden layer ``index``'s (1-based) parameters ``{'kernel', 'bias'}``."""
  return params["params"][f"layers_{index - 1}"]


def make_mlp(*, depth: int, width: int, activation: str = "relu",
             activation_params: dict | None = None, init: str = "he_normal",
             sigma_w2: float | None = None, sigma_b2: float | None = None,
             num_outputs: int | None = None, head: str = "none",
             param_dtype: Any = jnp.float32, dropout_rate: float = 0.0) -> MLP:
  """Builds an :class:`MLP` from registry names, validating every argument.

  ``sigma_w2`` is the weight variance of ``init='gaussian'`` (``Var W =
  sigma_w2 / fan_in``) or ``'orthogonal'`` (gain ``sqrt(sigma_w2)``),
  ``sigma_b2`` the bias variance (None: zero biases); see
  :mod:`vgrad.nn.config`. A data-dependent ``init`` (``'lsuv'``) sets
  ``MLP.data_init``; initialise such a model with
  :func:`vgrad.nn.lsuv.initialize` and a batch of data.

  Raises:
    ValueError: unknown names, depth < 0, width < 1, num_outputs < 1, a head
      without a readout, or an invalid activation/initializer parameter.
  """
  # depth 0 (a linear model) is allowed here when there is a readout.
  depth = config.check_count("depth", depth, 0)
  width = config.check_count("width", width, 1)
  if num_outputs is not None and num_outputs < 1:
    raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
  if head not in HEADS:
    raise ValueError(f"unknown head {head!r}; valid heads: "
                     f"{', '.join(sorted(HEADS))}")
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"dropout rate must be in [0, 1), got {dropout_rate}")
  if num_outputs is None and (head != "none" or depth == 0):
    raise ValueError("a head or depth=0 needs a readout (num_outputs)")
  return MLP(
      depth=int(depth), width=int(width),
      activation=activations_lib.get_activation(
          activation, **activations_lib.with_depth(
              activation, activation_params, max(int(depth), 1))),
      kernel_init=initializers_lib.get_initializer(init, sigma_w2),
      bias_init=initializers_lib.get_bias_initializer(sigma_b2),
      num_outputs=num_outputs, head=head, param_dtype=param_dtype,
      dropout_rate=float(dropout_rate),
      data_init=init if init in initializers_lib.DATA_DEPENDENT else None)
