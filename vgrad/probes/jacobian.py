"""Exact per-layer, input-to-layer and input-output Jacobians of an MLP.

Convention (see :mod:`vgrad.nn.models` for the notation): the Jacobian of hidden
layer l is the derivative of its output with respect to its input,

    J_l = d x_l / d x_{l-1} = D_l W_l,    D_l = diag(phi'(h_l)),

an ``(width, n_{l-1})`` matrix, and the input-to-layer-l Jacobian is the chain

    J_{<=l} = d x_l / d x_0 = D_l W_l ... D_1 W_1.

For maxout, J_l is the row selection ``S_l W_l`` of the stacked piece weights
(row i is the winning piece's row ``W_l^{(j*)}[i]``). The input-output
Jacobian is ``dy / dx_0``: ``J_{<=depth}`` when the model has no readout,
else the readout's (and head's) Jacobian times ``J_{<=depth}``.

Two routes compute the same matrices and are tested against each other
(``jax.jacfwd`` = ``jax.jacrev`` = analytic, every activation):
``autodiff_layer_jacobians`` applies ``jax.jacrev``/``jax.jacfwd`` to each of
the model's own layers; ``layer_jacobian`` writes ``D_l W_l`` out
(``analytic_layer_jacobians`` for a whole net). The batched probes
(:func:`make_spectrum_probe`, :func:`make_input_output_probe`) scan over the
layers, so their memory is one Jacobian per input at any depth: each layer's
own Jacobian (its spectrum) is ``jax.jacobian`` of the model's layer, and the
chain ``J_{<=l}`` is propagated with the analytic factor. The probes stack
the layers' parameters (:func:`stack_hidden_layers`) for the jitted scan:
inside the probe's own program up to ``DEVICE_STACK_MAX_LAYERS`` layers (one
dispatch per call), on the host beyond (an in-graph stack of L layers is L
slices and an L-operand concatenation, and XLA takes minutes to compile it
at L = 10 000).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import activations as activations_lib
from vgrad.nn import linalg
from vgrad.nn import models
from vgrad.probes import host

PRECISION = models.PRECISION


def layer_jacobian(activation: activations_lib.Activation, kernel: jax.Array,
                   h: jax.Array) -> jax.Array:
  """The analytic Jacobian of one hidden layer.

  Args:
    activation: the layer's activation.
    kernel: ``(n_in, N)``, or ``(k, n_in, N)`` for maxout with k pieces.
    h: pre-activations ``(N,)``, or ``(N, k)`` for maxout.

  Returns:
    ``J_l = diag(phi'(h)) W`` of shape ``(N, n_in)`` with ``W = kernel.T``;
    for maxout the rows of the winning pieces, ``J_l[i] = kernel[j*_i, :, i]``.
  """
  if activation.is_maxout:
    winner = jnp.argmax(h, axis=-1)
    return kernel[winner, :, jnp.arange(h.shape[0])]
  return activation.deriv(h)[:, None] * kernel.T


def analytic_layer_jacobians(model: models.MLP, params, x: jax.Array):
  """``[J_1, ..., J_depth]`` for one input ``x`` of shape ``(n_in,)``."""
  _, hs = model.apply(params, x, return_preactivations=True)
  return [layer_jacobian(model.activation,
                         models.layer_params(params, l)["kernel"], h)
          for l, h in enumerate(hs, start=1)]


def autodiff_layer_jacobians(model: models.MLP, params, x: jax.Array,
                             mode: str = "rev"):
  """``[J_1, ..., J_depth]`` by ``jax.jacrev`` (or ``jacfwd``) of each layer."""
  jac = {"rev": jax.jacrev, "fwd": jax.jacfwd}[mode]
  jacobians = []
  for l in range(1, model.depth + 1):
    def layer_out(z, l=l):
      return model.apply(params, l, z, method=models.MLP.apply_layer)[0]
    jacobians.append(jac(layer_out)(x))
    x = layer_out(x)
  return jacobians


def cumulative_jacobians(layer_jacobians):
  """``[J_{<=1}, ..., J_{<=depth}]`` from ``[J_1, ..., J_depth]``."""
  cumulative = [layer_jacobians[0]]
  for jac in layer_jacobians[1:]:
    cumulative.append(jnp.dot(jac, cumulative[-1], precision=PRECISION))
  return cumulative


def input_output_jacobian(model: models.MLP, params, x: jax.Array,
                          mode: str = "rev") -> jax.Array:
  """``dy/dx_0`` of the whole network by autodiff, ``(n_out, n_in)``."""
  jac = {"rev": jax.jacrev, "fwd": jax.jacfwd}[mode]
  return jac(lambda z: model.apply(params, z))(x)


def singular_values(matrix: jax.Array) -> jax.Array:
  """Singular values in descending order, ``(..., min(M, N))``."""
  return linalg.svdvals(matrix)


class Spectra(NamedTuple):
  """Singular values from :func:`make_spectrum_probe`, for B inputs.

  Attributes:
    first_layer: ``(B, min(N, n_in))`` singular values of J_1.
    per_layer: ``(B, depth - 1, N)`` singular values of J_2 ... J_depth.
    cumulative: ``(B, depth, min(N, n_in))`` singular values of J_{<=l}.
    input_output: ``(B, min(n_out, n_in))`` singular values of dy/dx_0.
    nonzero_rows: ``(B, depth)`` number of nonzero rows of each J_l (units
      with phi'(h) != 0). ``rank J_l <= nonzero_rows[l]`` and
      ``rank J_{<=l} <= min_{m<=l} nonzero_rows[m]``: singular values past
      that rank are exactly zero (inactive ReLU units, saturated hard tanh,
      zero weights), whatever the floating-point SVD returns for them.
  """
  first_layer: jax.Array
  per_layer: jax.Array
  cumulative: jax.Array
  input_output: jax.Array
  nonzero_rows: jax.Array


def _stack_layer_params(params, first: int, last: int):
  """Layers ``first .. last``'s parameters stacked in the graph (traceable).

  Compile time grows with the number of layers: outside ``jit`` prefer
  :func:`_split_params`, which stacks on the host.
  """
  layers = [models.layer_params(params, l) for l in range(first, last + 1)]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *layers)


def stack_hidden_layers(model: models.MLP, params):
  """``(first, rest)``: layer 1's ``{'kernel', 'bias'}`` and layers
  2 .. depth's stacked on a leading axis of length ``depth - 1`` (None for
  depth 1).

  Concrete parameters are stacked on the host with NumPy: milliseconds at
  any depth, where one in-graph concatenation of 10 000 layers takes XLA
  minutes to compile (106 s measured), and the jitted scan then compiles in
  a time independent of depth. Traced ones (under an outer ``jit`` or
  ``vmap``, as in the MLP probes' own program up to
  ``DEVICE_STACK_MAX_LAYERS`` layers) are stacked in the graph by
  :func:`_stack_layer_params`.
  """
  first = models.layer_params(params, 1)
  if model.depth == 1:
    return first, None
  if host.is_traced(params):
    return first, _stack_layer_params(params, 2, model.depth)
  fetched = jax.device_get([models.layer_params(params, l)
                            for l in range(2, model.depth + 1)])
  return first, jax.tree.map(lambda *leaves: jnp.asarray(np.stack(leaves)),
                             *fetched)


# Up to this many stacked layers, the MLP probes (:func:`_with_split_params`)
# stack the layers inside their own program: one dispatch per call, where
# fetching each layer to the host and sending the stack back took ~1 ms, a
# third of the input-output probe's call at depth 10, N = 128. The
# concatenation compiles in milliseconds at this size (at 10 000 layers it
# takes XLA minutes).
DEVICE_STACK_MAX_LAYERS = 64


def _split_params(model: models.MLP, params):
  """``(first, rest, readout)``: :func:`stack_hidden_layers` and the
  remaining (readout) parameters as a ``{'params': ...}`` tree."""
  readout = {"params": {name: value
                        for name, value in params["params"].items()
                        if not name.startswith("layers_")}}
  return (*stack_hidden_layers(model, params), readout)


def exact_zero_units(activation: activations_lib.Activation,
                     kernel: jax.Array, h: jax.Array) -> jax.Array:
  """``(N,)`` True for the units whose row of ``J_l = D_l W_l`` is exactly
  zero in exact arithmetic: ``phi'(h_i)`` an exact zero of the activation
  (:attr:`vgrad.nn.activations.Activation.exact_zero`) or a zero weight
  row. A derivative that only rounds to zero is not one (its row holds a
  tiny nonzero value the working dtype cannot represent)."""
  if activation.is_maxout:  # a row selection: zero only if the weights are
    return ~jnp.any(layer_jacobian(activation, kernel, h) != 0, axis=1)
  dead = jnp.all(kernel == 0, axis=0)
  if activation.exact_zero is not None:
    dead = dead | activation.exact_zero(h)
  return dead


def exact_nonzero_rows(activation: activations_lib.Activation,
                       kernel: jax.Array, h: jax.Array) -> jax.Array:
  """``rank J_l`` is at most this: the units that are not exact zeros."""
  return jnp.sum(~exact_zero_units(activation, kernel, h)).astype(jnp.int32)


def row_normalized_conditions(model: models.MLP, params) -> np.ndarray:
  """``(depth,)`` condition numbers of the hidden layers' weights with unit
  rows, ``kappa(diag(1/||w_i||) W_l)`` (rows: units; zero rows left out).

  For an elementwise activation ``J_l = D_l W_l`` has these rows up to the
  scale ``phi'(h_i)``, so this is the condition number that the row-wise
  backward error of a row-sorted QR of ``J_l Q`` meets, whatever ``D_l``
  (:func:`vgrad.probes.log_spectrum.forward_error_estimate`). Inf for
  maxout (use the layer spectra).
  """
  if model.activation.is_maxout:
    return np.full(model.depth, np.inf)
  out = []
  for l in range(1, model.depth + 1):
    w = np.asarray(models.layer_params(params, l)["kernel"], np.float64).T
    norm = np.linalg.norm(w, axis=1)
    w = w[norm > 0] / norm[norm > 0, None]
    if not w.size:
      out.append(1.0)
      continue
    sv = np.linalg.svd(w, compute_uv=False)
    out.append(float(sv[0] / sv[-1]) if sv[-1] > 0 else np.inf)
  return np.asarray(out)


def rounding_zero_units(activation: activations_lib.Activation,
                        kernel: jax.Array, h: jax.Array) -> jax.Array:
  """``(N,)`` True where ``phi'(h_i)`` is not an exact zero but lies below
  the normal range of ``h``'s dtype (rounded to 0 or subnormal): its row of
  ``J_l`` has lost its relative accuracy."""
  if activation.is_maxout:
    return jnp.zeros(h.shape[:1], bool)
  tiny = jnp.finfo(h.dtype).tiny
  small = jnp.abs(activation.deriv(h)) < tiny
  return small & ~exact_zero_units(activation, kernel, h)


def _propagate(activation: activations_lib.Activation, kernel: jax.Array,
               h: jax.Array, transposed: jax.Array) -> jax.Array:
  """``J_{<=l}^T = J_{<=l-1}^T J_l^T`` for one input.

  The chain is carried transposed, ``K = J^T`` of shape ``(n_in, N)``, so
  that for elementwise activations a step is ``(K @ kernel) * phi'(h)``:
  under ``vmap`` the kernel is shared by every input and the product is one
  large GEMM over the batch instead of B small ones (this is what makes
  reverse mode fast, too). Maxout selects a per-input weight matrix.
  """
  if activation.is_maxout:
    return jnp.dot(transposed, layer_jacobian(activation, kernel, h).T,
                   precision=PRECISION)
  return (jnp.dot(transposed, kernel, precision=PRECISION)
          * activation.deriv(h)[None, :])


def _own_jacobian(layer, p, x_prev: jax.Array) -> jax.Array:
  """A hidden layer's own Jacobian ``J_l`` by autodiff of the model's layer
  module; the chain uses the analytic ``D_l W_l`` (equal:
  tests/jacobian_test.py)."""
  return jax.jacobian(lambda z: layer.apply({"params": p}, z)[0])(x_prev)


def _chain(model: models.MLP, first_params, rest_params, readout_params,
           x: jax.Array, spectra: bool):
  """Scans J_{<=l} = J_l J_{<=l-1} over the layers for one input.

  The parameters come split by :func:`_split_params`: layer 1's, layers
  2 .. depth's stacked (scanned over), and the readout's.

  Returns ``(J_io^T, first, rest)``: the transposed input-output Jacobian
  and, only when ``spectra`` is True (else None), ``(sv(J_l), sv(J_{<=l}),
  nonzero_rows(J_l))`` for layer 1 (``first``) and stacked for layers
  2 .. depth (``rest``; None when depth is 1).
  """
  layer, act = models.hidden_layer(model), model.activation

  def own_jacobian(p, x_prev):
    return _own_jacobian(layer, p, x_prev)

  def measure(p, x_prev, h, transposed):
    if not spectra:
      return None
    jac = own_jacobian(p, x_prev)
    return (singular_values(jac), singular_values(transposed),
            exact_nonzero_rows(act, p["kernel"], h))

  def body(carry, p):
    x_prev, transposed = carry
    x, h = layer.apply({"params": p}, x_prev)
    transposed = _propagate(act, p["kernel"], h, transposed)
    return (x, transposed), measure(p, x_prev, h, transposed)

  p1, first, rest = first_params, None, None
  x_in = x
  x, h = layer.apply({"params": p1}, x)
  if spectra:  # J_{<=1} = J_1: one SVD serves both spectra.
    jac = own_jacobian(p1, x_in)
    sv = singular_values(jac)
    first = (sv, sv, exact_nonzero_rows(act, p1["kernel"], h))
  transposed = layer_jacobian(act, p1["kernel"], h).T
  if model.depth > 1:
    (x, transposed), rest = jax.lax.scan(body, (x, transposed), rest_params)
  if model.num_outputs is not None:
    readout = jax.jacrev(lambda z: model.apply(
        readout_params, z, method=models.MLP.apply_output))(x)
    transposed = jnp.dot(transposed, readout.T, precision=PRECISION)
  return transposed, first, rest


def _spectra_one_input(model: models.MLP, first_params, rest_params,
                       readout_params, x: jax.Array) -> Spectra:
  io_transposed, (first_sv, first_cum, first_rows), rest = _chain(
      model, first_params, rest_params, readout_params, x, True)
  if rest is None:
    rest = (jnp.zeros((0, model.width), first_sv.dtype),
            jnp.zeros((0,) + first_cum.shape, first_cum.dtype),
            jnp.zeros((0,), jnp.int32))
  layer_sv, cum_sv, rows = rest
  cum = jnp.concatenate([first_cum[None], cum_sv])
  rows = jnp.concatenate([first_rows[None], rows])
  io_sv = (cum[-1] if model.num_outputs is None
           else singular_values(io_transposed))
  return Spectra(first_sv, layer_sv, cum, io_sv, rows)


def _layer_spectra_one_input(model: models.MLP, first_params, rest_params,
                             x: jax.Array):
  """``(sv(J_1), sv(J_2 .. J_depth), nonzero_rows (depth,))`` for one input:
  each layer's own spectrum as :func:`make_spectrum_probe` computes it,
  without the chain."""
  layer, act = models.hidden_layer(model), model.activation

  def one(x_prev, p):
    jac = _own_jacobian(layer, p, x_prev)
    x, h = layer.apply({"params": p}, x_prev)
    return x, (singular_values(jac),
               exact_nonzero_rows(act, p["kernel"], h))

  x, (first_sv, first_rows) = one(x, first_params)
  if rest_params is None:
    return (first_sv, jnp.zeros((0, model.width), first_sv.dtype),
            first_rows[None])
  _, (sv, rows) = jax.lax.scan(one, x, rest_params)
  return first_sv, sv, jnp.concatenate([first_rows[None], rows])


@functools.lru_cache(maxsize=32)
def make_layer_spectrum_probe(model: models.MLP):
  """A jitted ``probe(params, xs)`` for inputs ``xs (B, n_in)``: each hidden
  layer's own Jacobian spectrum, ``(first (B, min(N, n_in)), rest (B,
  depth - 1, N), nonzero_rows (B, depth))``, exactly the ``first_layer``,
  ``per_layer`` and ``nonzero_rows`` of :func:`make_spectrum_probe` but
  without the input-to-layer products (``depth`` SVDs, not ``2 depth``).
  The ``qr`` method's cumulative spectra come from
  :mod:`vgrad.probes.log_spectrum`; a single layer's Jacobian is well
  conditioned and stays in range, so its dense spectrum is reported beside
  them.
  """
  if model.depth < 1:
    raise ValueError("the layer spectrum probe needs depth >= 1")
  return _with_split_params(
      model, lambda first, rest, readout, x: _layer_spectra_one_input(
          model, first, rest, x))


@functools.lru_cache(maxsize=32)
def make_input_output_probe(model: models.MLP, spectrum: bool = True):
  """A jitted ``probe(params, xs)`` for inputs ``xs (B, n_in)``.

  Returns the singular values ``(B, min(n_out, n_in))`` of the input-output
  Jacobian (or, with ``spectrum=False``, the Jacobians ``(B, n_out, n_in)``
  themselves), by the same layer scan as :func:`make_spectrum_probe` but
  without the per-layer SVDs: ``depth`` matrix products and one SVD.
  """
  if model.depth < 1:
    raise ValueError("the input-output probe needs depth >= 1")

  def one(first, rest, readout, x):
    transposed, _, _ = _chain(model, first, rest, readout, x, False)
    return singular_values(transposed) if spectrum else transposed.T
  return _with_split_params(model, one)


@functools.lru_cache(maxsize=32)
def make_spectrum_probe(model: models.MLP):
  """A jitted ``probe(params, xs) -> Spectra`` for inputs ``xs (B, n_in)``.

  Per input: one forward pass, and for each layer ``J_l`` by ``jax.jacobian``
  of the layer, the chain ``J_{<=l} = J_l J_{<=l-1}`` (analytic factor,
  carried transposed) and both singular-value spectra, in a
  ``lax.scan`` over layers 2..depth (compiled once, in a time independent
  of depth: the layers are stacked on the host). Inputs are vmapped.
  Cost: ``depth`` (N x N)(N x n_in) products and ``2 depth`` SVDs.
  """
  if model.depth < 1:
    raise ValueError("the spectrum probe needs depth >= 1")
  return _with_split_params(
      model, functools.partial(_spectra_one_input, model))


def _with_split_params(model: models.MLP, one):
  """``probe(params, xs)``: the jitted vmap of ``one(first, rest, readout,
  x)`` over the inputs ``xs (B, n_in)``, on ``params`` split and stacked by
  :func:`_split_params` (in the same program up to
  ``DEVICE_STACK_MAX_LAYERS`` stacked layers; deeper, on the host first, so
  the scan compiles in a time independent of depth).

  The ``make_*_probe`` factories keep their last probes (models built from
  equal settings are equal): asking again for a model's probe returns the
  same jitted function, which has already compiled for the shapes it saw.
  """
  core = jax.jit(jax.vmap(one, in_axes=(None, None, None, 0)))
  # Up to DEVICE_STACK_MAX_LAYERS layers, the split and stack run inside
  # the probe's own program: one dispatch per call.
  fused = jax.jit(lambda params, xs: core(*_split_params(model, params), xs))

  # On a CPU host the inputs are split across the cores (host.split_batch:
  # the same values, each input computed on its own).
  def probe(params, xs):
    if model.depth - 1 <= DEVICE_STACK_MAX_LAYERS:
      return host.split_batch(fused, (xs,), shared=(params,))
    return host.split_batch(core, (xs,),
                            shared=_split_params(model, params))
  return probe
