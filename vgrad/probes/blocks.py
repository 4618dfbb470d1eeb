r"""Jacobian spectra of any network cut into blocks.

A network is a sequence of blocks, block ``l`` mapping ``x_{l-1}`` to
``x_l`` (arrays or pytrees of any shape). With ``vec`` the flattening of a
pytree (:func:`jax.flatten_util.ravel_pytree`), the probes here use

    J_l      = d vec(x_l) / d vec(x_{l-1})        (n_l x n_{l-1})
    J_{<=l}  = J_l J_{l-1} ... J_1 = d vec(x_l) / d vec(x_0)

and return the singular values of every ``J_l`` (each block's own
spectrum) and of every ``J_{<=l}`` (input to block ``l``; ``l = L`` is the
input-output Jacobian), for a batch of inputs, each block seeing one input.

Two ways to give the blocks:

* a list of callables ``x -> x`` closing over their parameters (any shapes,
  a Python loop over the blocks inside one jitted program);
* :class:`Blocks` ``(block_fn, stacked_params)``: ``L`` blocks of one shape,
  ``block_fn(params_l, x)`` with the parameters stacked along a leading
  axis, scanned (one compiled block whatever ``L``).

:func:`flax_blocks` cuts a Flax linen model into such callables at the
outputs of the submodules it names.

Each block's Jacobian comes from ``jax.jacfwd`` (``n_{l-1} <= n_l``: one
JVP per input coordinate) or ``jax.jacrev`` (one VJP per output
coordinate), whichever needs fewer passes; the two agree to rounding
(tested). Products are taken at ``Precision.HIGHEST``.

Nothing here claims an exact zero: a general block has no structure that
would make a small singular value exactly zero (an MLP's inactive ReLU rows
do; :mod:`vgrad.probes.jacobian` uses that), so every value is a measurement
subject to the dense floor of :mod:`vgrad.probes.spectrum`.

:func:`qr_log_spectra` is :mod:`vgrad.probes.log_spectrum`'s stable method
for any blocks: the forward QR pass ``Q_l R_l = J_l Q_{l-1}`` (its
``qr_advance``, with ``J_l Q_{l-1}`` from the block's Jacobian) and graded
one-sided Jacobi at the target blocks, so the log singular values of
``J_{<=l}`` never under- or overflow at any depth.

``vgrad.jacobian_spectra`` (:mod:`vgrad.studies.block_spectra`) puts both
methods, ``auto`` and vgrad's own MLP behind one call returning results
records (:mod:`vgrad.io.spectrum_records`).
"""

from collections.abc import Callable, Sequence
import contextlib
import functools
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from vgrad.nn import linalg
from vgrad.nn import models
from vgrad.probes import host
from vgrad.probes import log_spectrum

PRECISION = models.PRECISION


class Blocks(NamedTuple):
  """``L`` blocks of one shape: block ``l`` is ``x -> block_fn(params_l,
  x)`` with ``params_l`` the ``l``-th slice of every leaf of
  ``stacked_params`` along its leading axis."""
  block_fn: Callable[[Any, Any], Any]
  stacked_params: Any

  @property
  def depth(self) -> int:
    leaves = jax.tree.leaves(self.stacked_params)
    if not leaves:
      raise ValueError("Blocks.stacked_params has no arrays: the number of "
                       "blocks is the leading axis of its leaves")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
      raise ValueError("every leaf of Blocks.stacked_params must have the "
                       "same leading (block) axis, got sizes "
                       f"{sorted(map(str, sizes))}")
    return sizes.pop()


class BlockSpectra(NamedTuple):
  """Singular values of ``B`` inputs' block Jacobians, descending.

  Attributes:
    own: per block ``l``, ``(B, min(n_l, n_{l-1}))`` singular values of J_l.
    cumulative: per block ``l``, ``(B, min(n_l, n_0))`` of J_{<=l}.
    shapes: per block ``l``, ``(n_l, n_{l-1})``.
  """
  own: list
  cumulative: list
  shapes: list


_PROGRAMS: dict = {}
_MAX_PROGRAMS = 32


def _kept(store: dict, key, build: Callable):
  """``build()``, kept in ``store`` per ``key``; the oldest of
  ``_MAX_PROGRAMS`` entries is dropped."""
  value = store.get(key)
  if value is None:
    if len(store) >= _MAX_PROGRAMS:
      store.pop(next(iter(store)))
    value = store[key] = build()
  return value


def cached_program(key, build: Callable) -> Callable:
  """``jax.jit(build())``, kept per ``key`` (the blocks' callables and every
  static setting), so probing the same blocks again compiles nothing."""
  return _kept(_PROGRAMS, key, lambda: jax.jit(build()))


_LIFTS: dict = {}


def _input_key(kind: str, blocks: tuple, one_x) -> tuple:
  """The key of what :func:`_lift` and :func:`_as_scanned` keep: the
  blocks, one input's structure and shapes, and ``jax_enable_x64`` (the
  traced jaxprs depend on all four)."""
  return (kind, blocks, jax.tree.structure(one_x),
          tuple((a.shape, a.dtype) for a in jax.tree.leaves(one_x)),
          jax.config.jax_enable_x64)


def _lift(blocks: tuple, one_x) -> tuple[tuple, list, list]:
  """The blocks with their captured arrays lifted out: ``(fns, consts,
  structs)`` where ``fns[l](consts[l], x)`` is ``blocks[l](x)`` evaluated
  from the block's jaxpr (traced once here on shapes like ``one_x``'s, the
  previous block's output shapes after it), so a program over ``fns`` takes the
  parameters a block closes over (a Flax block's variables) as arguments
  instead of embedding them as constants: XLA folds no constants, and
  blocks of equal structure lower to one program text, which a persistent
  compilation cache compiles once; ``structs[l]`` is the shapes of block
  ``l + 1``'s input (``structs[L]``: the output). Kept per blocks, input
  shapes and ``jax_enable_x64`` (a program closing over ``fns`` is keyed
  by them)."""
  def build():
    fns, consts, structs = [], [], [one_x]
    for fn in blocks:
      closed, out = jax.make_jaxpr(fn, return_shape=True)(structs[-1])
      fns.append(functools.partial(_eval_block, closed.jaxpr,
                                   jax.tree.structure(out)))
      consts.append(list(closed.consts))
      structs.append(out)
    return tuple(fns), consts, structs
  return _kept(_LIFTS, _input_key("lift", blocks, one_x), build)


def _as_scanned(blocks: tuple, xs) -> Blocks | None:
  """Two or more blocks that are one computation on different arrays (the
  same jaxpr, :func:`_lift`'s, each mapping the input's shapes to
  themselves, with captured arrays) as a :class:`Blocks` of those arrays
  stacked, else None: a program scanning it compiles one block, not one
  copy per block (vgrad's MLP's layers as callables are such blocks).
  The values are the same: each block evaluates its own jaxpr on its own
  arrays either way (traced as the list's program would trace them: call
  it under the program's ``jax.enable_x64`` setting). Kept per blocks,
  input shapes and that setting."""
  one_x = _one_input(xs)

  def build():
    if len(blocks) < 2:
      return None
    fns, consts, structs = _lift(blocks, one_x)
    same = lambda a, b: (jax.tree.structure(a) == jax.tree.structure(b)
                         and all((u.shape, u.dtype) == (v.shape, v.dtype)
                                 for u, v in zip(jax.tree.leaves(a),
                                                 jax.tree.leaves(b))))
    texts = {(str(fn.args[0]), fn.args[1]) for fn in fns}
    if (len(texts) != 1 or not consts[0]
        or not all(same(s, one_x) for s in structs)):
      return None
    stacked = [jnp.stack([c[i] for c in consts])
               for i in range(len(consts[0]))]
    return Blocks(fns[0], stacked)
  return _kept(_LIFTS, _input_key("scanned", blocks, one_x), build)


def _eval_block(jaxpr, out_tree, consts, x):
  return jax.tree.unflatten(out_tree, jax.core.eval_jaxpr(
      jaxpr, consts, *jax.tree.leaves(x)))


def _one_input(xs):
  """Shapes and dtypes of one input of the batch ``xs``."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:],
                                                     jnp.result_type(a)), xs)


def mlp_as_blocks(model: models.MLP, params):
  """vgrad's MLP's hidden layers as general blocks: a :class:`Blocks` of
  the stacked layer parameters when every layer has one shape (input size
  = width; scanned, compiled once whatever the depth), else a list of
  callables. The readout is not a block."""
  layers = [models.layer_params(params, i) for i in range(1, model.depth + 1)]
  layer = models.hidden_layer(model)
  first = jax.tree.map(np.shape, layers[0])
  if all(jax.tree.map(np.shape, p) == first for p in layers[1:]):
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *layers)
    return Blocks(_mlp_block(layer), stacked)
  return [lambda v, p=p: _mlp_block(layer)(p, v) for p in layers]


@functools.lru_cache(maxsize=32)
def _mlp_block(layer: nn.Module) -> Callable:
  """One function per layer module, so probes of one MLP share programs."""
  return lambda p, v: layer.apply({"params": p}, v)[0]


def block_jacobian(fn: Callable, x) -> tuple[Any, jax.Array]:
  """``(fn(x), J)`` with ``J = d vec(fn(x)) / d vec(x)`` of shape
  ``(n_out, n_in)``, by forward mode when ``n_in <= n_out``, else reverse."""
  flat_x, unravel_x = ravel_pytree(x)
  y = fn(x)
  flat_y, _ = ravel_pytree(y)

  def flat_fn(v):
    return ravel_pytree(fn(unravel_x(v)))[0]

  return y, _forward_else_reverse(
      flat_x.size <= flat_y.size, lambda: jax.jacfwd(flat_fn)(flat_x),
      lambda: jax.jacrev(flat_fn)(flat_x))


def _forward_else_reverse(forward_first: bool, forward, reverse):
  """``forward()`` where forward mode is preferred and possible, else
  ``reverse()``: a block holding a ``jax.custom_vjp`` has reverse mode only
  (forward mode raises TypeError while tracing)."""
  if forward_first:
    try:
      return forward()
    except TypeError:
      pass
  return reverse()


def _directional_derivatives(fn: Callable, x, w, u):
  """``(fn(x), J w)`` (forward mode) or ``(fn(x), J^T u)`` (reverse mode),
  in the mode :func:`block_jacobian` forms ``J`` in, so that the same
  arithmetic meets the same NaN; ``w`` and ``u`` are flat vectors of
  ``vec(x)``'s and ``vec(fn(x))``'s size and dtype (:func:`_probe_vector`)."""
  flat_x, unravel_x = ravel_pytree(x)
  n_out = sum(int(np.prod(s.shape))
              for s in jax.tree.leaves(jax.eval_shape(fn, x)))

  def forward():
    y, jw = jax.jvp(fn, (x,), (unravel_x(w),))
    return y, ravel_pytree(jw)[0]

  def reverse():
    y, pullback = jax.vjp(fn, x)
    return y, ravel_pytree(pullback(ravel_pytree(y)[1](u))[0])[0]

  return _forward_else_reverse(flat_x.size <= n_out, forward, reverse)


@functools.lru_cache(maxsize=64)
def _probe_vector(size: int, dtype: np.dtype) -> np.ndarray:
  """A standard Gaussian vector of ``size`` entries in ``dtype`` (complex:
  real and imaginary parts of variance 1/2), drawn by NumPy from a fixed
  seed per size: the same vector for every block of that size, in every
  program (read-only)."""
  rng = np.random.default_rng((0x5EED, size))
  if np.issubdtype(dtype, np.complexfloating):
    v = (rng.standard_normal(size)
         + 1j * rng.standard_normal(size)) / np.sqrt(2.0)
  else:
    v = rng.standard_normal(size)
  v = v.astype(dtype)
  v.flags.writeable = False
  return v


def _flat_struct(tree) -> jax.ShapeDtypeStruct:
  """The shape and dtype of ``ravel_pytree(tree)[0]``, from shapes alone."""
  return jax.eval_shape(lambda t: ravel_pytree(t)[0], tree)


def _probe_vectors(x, y) -> tuple[np.ndarray, np.ndarray]:
  """``(w, u)`` for :func:`_directional_derivatives` of a block mapping
  inputs shaped like ``x`` to outputs shaped like ``y`` (arrays or
  ``jax.ShapeDtypeStruct``)."""
  flat_x, flat_y = _flat_struct(x), _flat_struct(y)
  return (_probe_vector(flat_x.size, np.dtype(flat_x.dtype)),
          _probe_vector(flat_y.size, np.dtype(flat_y.dtype)))


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf))
                              for leaf in jax.tree.leaves(tree)]))


def check_differentiable(blocks, xs) -> None:
  """One line unless every block is differentiable at every input: a block
  whose input and output are finite but whose Jacobian holds NaN or Inf
  (``jnp.sqrt`` or ``jnp.log`` at 0, a norm of a zero vector) is named with
  the input. A block fed a non-finite input (an earlier overflow) is not
  checked: the probes report that as an overflow. NaN from ``inf * 0`` in
  JAX's derivative arithmetic counts (the probe would meet it too), however
  the function's value behaves.

  The check is one product per block and input
  (:func:`_directional_derivatives`): ``J_l w`` in forward mode, the mode
  :func:`block_jacobian` forms ``J_l`` in column by column as ``J_l e_j``
  (``J_l^T u`` and the rows ``J_l^T e_i`` in reverse mode), by the same
  derivative arithmetic. That arithmetic is linear in the tangent: the
  tangent is multiplied or divided by factors of the derivative, summed,
  and selected by conditions on the input alone, in a data flow that does
  not depend on the tangent's values. At every step the result is NaN or
  Inf iff an operand is (a factor Inf or NaN times any finite tangent entry,
  0 included, is Inf or NaN; a finite entry over a zero factor is Inf or
  NaN; NaN and Inf survive every sum and product), or a finite product
  overflows. So for any finite ``w`` of unit scale, ``J_l w`` is non-finite
  iff some column ``J_l e_j`` is, overflow aside (as with the random vector
  before): which finite vector is used does not matter. ``w`` and ``u`` are
  fixed standard Gaussian vectors drawn by NumPy from a fixed seed per size
  (:func:`_probe_vector`), as a fixed PRNG key drew them before, passed to
  the program as arguments: the program holds no random-number generator
  (an inlined one per block cost more compilation than the derivatives).

  The program is kept per blocks, as the probes' are: per ``block_fn`` for
  a :class:`Blocks` (its blocks share one ``w`` and one ``u``), per tuple
  of callables for a list.
  """
  one_x = _one_input(xs)

  def step(x, fn, w, u):
    y, g = _directional_derivatives(fn, x, w, u)
    bad = _all_finite(x) & _all_finite(y) & ~jnp.all(jnp.isfinite(g))
    return y, bad

  if isinstance(blocks, Blocks):
    fn = blocks.block_fn
    params0 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(
        np.shape(a)[1:], jnp.result_type(a)), blocks.stacked_params)
    w, u = _probe_vectors(one_x, jax.eval_shape(fn, params0, one_x))

    def one(x, stacked, w, u):
      def body(x, params):
        return step(x, lambda v: fn(params, v), w, u)
      return jax.lax.scan(body, x, stacked)[1]

    bad = cached_program(("differentiable-scan", fn), lambda: jax.vmap(
        one, in_axes=(0, None, None, None)))(xs, blocks.stacked_params, w, u)
  else:
    blocks = tuple(blocks)
    fns, consts, structs = _lift(blocks, one_x)
    vectors = [_probe_vectors(a, b) for a, b in zip(structs, structs[1:])]

    def one(x, consts, vectors):
      flags = []
      for fn, c, (w, u) in zip(fns, consts, vectors):
        x, flag = step(x, functools.partial(fn, c), w, u)
        flags.append(flag)
      return jnp.stack(flags)

    bad = cached_program(("differentiable", fns), lambda: jax.vmap(
        one, in_axes=(0, None, None)))(xs, consts, vectors)
  refuse_not_differentiable(bad)


def refuse_not_differentiable(bad) -> None:
  """One line naming the first block and input flagged in ``bad (B, L)``
  (:func:`check_differentiable`), if any."""
  bad = np.asarray(bad)
  if bad.any():
    b, l = (int(i[0]) for i in np.nonzero(bad))
    raise ValueError(
        f"block {l + 1} is not differentiable at input {b}: its Jacobian "
        "holds NaN or Inf where its input and output are finite (jnp.sqrt "
        "or jnp.log at 0, a norm of zero?); valid: blocks differentiable at "
        "every input")


def _not_differentiable(x, y, jac) -> jax.Array:
  """Whether a block's Jacobian ``jac`` holds NaN or Inf where its input
  ``x`` and output ``y`` are finite (:func:`check_differentiable`'s
  refusal, read off the Jacobian itself)."""
  return _all_finite(x) & _all_finite(y) & ~jnp.all(jnp.isfinite(jac))


def _chain(blocks: Sequence[Callable], x, products: bool):
  """One input through a list of blocks: own spectra, cumulative ones if
  ``products`` (else an empty list), and each block's
  :func:`_not_differentiable` flag ``(L,)``."""
  own, cumulative, flags, product = [], [], [], None
  for fn in blocks:
    y, jac = block_jacobian(fn, x)
    flags.append(_not_differentiable(x, y, jac))
    x = y
    own.append(linalg.svdvals(jac))
    if products:
      product = jac if product is None else jnp.dot(jac, product,
                                                    precision=PRECISION)
      cumulative.append(linalg.svdvals(product))
  return own, cumulative, jnp.stack(flags)


def _scanned_chain(block_fn: Callable, stacked_params, x, products: bool):
  """One input through scanned blocks of one shape (cumulative spectra
  only if ``products``, else None), and the blocks' flags as
  :func:`_chain`'s."""
  flat = ravel_pytree(x)[0]

  def body(carry, params):
    h, product = carry
    y, jac = block_jacobian(lambda v: block_fn(params, v), h)
    flag = _not_differentiable(h, y, jac)
    if not products:
      return (y, product), (linalg.svdvals(jac), None, flag)
    product = jnp.dot(jac, product, precision=PRECISION)
    return (y, product), (linalg.svdvals(jac), linalg.svdvals(product), flag)

  start = jnp.eye(flat.size, dtype=flat.dtype) if products else None
  _, (own, cumulative, flags) = jax.lax.scan(body, (x, start),
                                             stacked_params)
  return own, cumulative, flags


def _check_inexact(tree, what: str) -> None:
  """One line unless every leaf is floating point: a Jacobian needs real
  inputs and outputs (an integer or boolean output has no derivative)."""
  kinds = sorted({str(leaf.dtype) for leaf in jax.tree.leaves(tree)
                  if not jnp.issubdtype(leaf.dtype, jnp.inexact)})
  if kinds:
    raise ValueError(f"{what} holds {', '.join(kinds)} values: a Jacobian "
                     "needs floating-point arrays (float32 or float64), so "
                     "the block is not differentiable there")


def shapes(blocks, x) -> list[tuple[int, int]]:
  """``(n_l, n_{l-1})`` of every block, from shapes alone; every input and
  output must be floating point."""
  one = jax.tree.map(lambda a: a[0], x)
  _check_inexact(one, "the input x")
  if isinstance(blocks, Blocks):
    params0 = jax.tree.map(lambda a: a[0], blocks.stacked_params)
    out = jax.eval_shape(lambda v: blocks.block_fn(params0, v), one)
    _check_inexact(out, "the blocks' output")
    n_in = ravel_pytree(one)[0].size
    n_out = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(out))
    if n_out != n_in:
      raise ValueError(f"Blocks must map x to an x of the same size: block "
                       f"input has {n_in} values, output {n_out}")
    return [(n_out, n_in)] * blocks.depth
  shapes = []
  current = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                         one)
  for l, fn in enumerate(blocks):
    n_in = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(current))
    try:
      current = jax.eval_shape(fn, current)
    except Exception as e:  # a shape mismatch between blocks, named
      raise ValueError(f"block {l + 1} cannot take the output of block {l} "
                       f"({jax.tree.map(lambda s: s.shape, current)}): "
                       f"{type(e).__name__}: {str(e).splitlines()[0]}"
                       ) from None
    _check_inexact(current, f"block {l + 1}'s output")
    shapes.append((sum(int(np.prod(s.shape))
                       for s in jax.tree.leaves(current)), n_in))
  return shapes


def dense_spectra(blocks, xs, products: bool = True) -> BlockSpectra:
  """Own and cumulative singular values of every block, for ``B`` inputs.

  Args:
    blocks: a list of callables or a :class:`Blocks`.
    xs: the inputs, a pytree whose leaves share a leading batch axis ``B``.
    products: also the input-to-block products and their spectra (False:
      each block's own spectrum only; ``cumulative`` is then empty).

  Returns:
    :class:`BlockSpectra`.
  """
  return checked_dense_spectra(blocks, xs, products)[0]


def checked_dense_spectra(blocks, xs, products: bool = True
                          ) -> tuple[BlockSpectra, jax.Array]:
  """:func:`dense_spectra` and, from the same program, ``(B, L)`` flags:
  block ``l``'s Jacobian at input ``b`` holds NaN or Inf where the block's
  input and output are finite (:func:`refuse_not_differentiable` names
  the first). The dense method's check needs no program of its own."""
  block_shapes = shapes(blocks, xs)
  if isinstance(blocks, Blocks):
    fn = blocks.block_fn
    program = cached_program(
        ("dense-scan", fn, products), lambda: jax.vmap(
            lambda x, p: _scanned_chain(fn, p, x, products),
            in_axes=(0, None)))
    own, cumulative, bad = host.split_batch(
        lambda x: program(x, blocks.stacked_params), (xs,))
    depth = len(block_shapes)
    return BlockSpectra([own[:, l] for l in range(depth)],
                        [cumulative[:, l] for l in range(depth)]
                        if products else [], block_shapes), bad
  blocks = tuple(blocks)
  fns, consts, _ = _lift(blocks, _one_input(xs))
  program = cached_program(
      ("dense", fns, products), lambda: jax.vmap(
          lambda x, consts: _chain(
              [functools.partial(fn, c) for fn, c in zip(fns, consts)], x,
              products), in_axes=(0, None)))
  own, cumulative, bad = host.split_batch(lambda x: program(x, consts),
                                          (xs,))
  return BlockSpectra(list(own), list(cumulative), block_shapes), bad


class BlockLogSpectra(NamedTuple):
  """Exact ``log sigma_i(J_{<=l})`` (nats) at the target blocks.

  Attributes:
    layers: the target blocks (1-based), ascending.
    log_singular_values: per target, ``(B, k_l)`` descending.
    error_bound: per target, ``(B,)`` the final stage's certificate (nats),
      as :class:`vgrad.probes.log_spectrum.LogSpectra` states it.
    sweeps: per target, ``(B,)`` Jacobi sweeps.
    partial_sums: per block, ``(B, k_l)`` finite-time Lyapunov sums.
    log_error: per target, ``(B,)`` the log of the forward pass's
      normwise rounding bound on ``T_l`` (``LogSpectra.log_error``).
  """
  layers: tuple
  log_singular_values: list
  error_bound: list
  sweeps: list
  partial_sums: list
  log_error: list


def _qr_step(carry, fn, x):
  y, jac = block_jacobian(fn, x)
  flat_y = ravel_pytree(y)[0]
  a = jnp.dot(jac.astype(carry.q.dtype), carry.q, precision=PRECISION)
  finite = (carry.finite & jnp.all(jnp.isfinite(flat_y))
            & jnp.all(jnp.isfinite(jac)))
  carry, (sums, _, _) = log_spectrum.qr_advance(carry, flat_y, a,
                                                a.shape[0], finite)
  return carry, y, sums


class BlockQRPass(NamedTuple):
  """The forward QR pass of :func:`qr_forward`, for B inputs.

  Attributes:
    layers: the target blocks (1-based), ascending.
    snapshots: per target, the graded ``T_l`` and its state
      (:data:`vgrad.probes.log_spectrum.SNAPSHOT_FIELDS`), each leaf with
      a leading ``(B,)`` axis.
    partial_sums: per block, ``(B, k_l)`` finite-time Lyapunov sums.
    dtype: the pass's dtype.
  """
  layers: tuple
  snapshots: list
  partial_sums: list
  dtype: Any


def _scanned_qr_forward(blocks: Blocks, xs, layers: tuple, depth: int,
                        dtype) -> BlockQRPass:
  """:func:`qr_forward` of scanned blocks (one compiled block)."""
  def start(x):
    return log_spectrum.initial_carry(ravel_pytree(x)[0], dtype=dtype)

  slots = np.full(depth + 1, len(layers), np.int32)
  slots[list(layers)] = np.arange(len(layers))

  def one(x, stacked):
    carry = start(x)
    snap = jax.tree.map(
        lambda a: jnp.zeros((len(layers) + 1,) + a.shape, a.dtype),
        log_spectrum.snapshot_values(carry))

    def body(state, inputs):
      carry, h, snap = state
      params, slot = inputs
      carry, h, sums = _qr_step(
          carry, lambda v: blocks.block_fn(params, v), h)
      values = log_spectrum.snapshot_values(carry)
      snap = tuple(jax.lax.dynamic_update_index_in_dim(buf, v, slot, 0)
                   for buf, v in zip(snap, values))
      return (carry, h, snap), sums

    (carry, _, snap), sums = jax.lax.scan(
        body, (carry, x, snap), (stacked, jnp.asarray(slots[1:])))
    return tuple(buf[:-1] for buf in snap), sums

  key = ("qr-forward-scan", blocks.block_fn, layers, depth, dtype)
  with _pass_dtype(dtype):
    program = cached_program(key, lambda: jax.vmap(one, in_axes=(0, None)))
    snap, sums = host.split_batch(
        lambda x: program(x, blocks.stacked_params), (xs,))
  return BlockQRPass(
      layers, [tuple(buf[:, t] for buf in snap)
               for t in range(len(layers))],
      [sums[:, l] for l in range(depth)], dtype)


def qr_forward(blocks, xs, layers=None, *, dtype=None) -> BlockQRPass:
  """The forward QR pass of the stable method for any blocks: every
  block's Lyapunov sums and the graded ``T_l`` at ``layers`` (default:
  every block), for the inputs ``xs`` (leading batch axis).
  :func:`qr_finish` turns it into singular values; ``method='auto'``
  decides from its sums first, so one pass serves both.

  The pass runs in ``dtype`` (default the inputs'; float64 needs
  ``jax.enable_x64``): each block's Jacobian in the block's own dtype,
  cast, and the products and QR in ``dtype``. A list of blocks that are
  one computation on different arrays is scanned (:func:`_as_scanned`).
  """
  depth = len(shapes(blocks, xs))
  layers = log_spectrum.check_layers(
      range(1, depth + 1) if layers is None else layers, depth)
  dtype = jnp.dtype(dtype or jax.tree.leaves(xs)[0].dtype)

  def start(x):
    return log_spectrum.initial_carry(ravel_pytree(x)[0], dtype=dtype)

  if isinstance(blocks, Blocks):
    return _scanned_qr_forward(blocks, xs, layers, depth, dtype)
  blocks = tuple(blocks)
  with _pass_dtype(dtype):
    scanned = _as_scanned(blocks, xs)
  if scanned is not None:
    return _scanned_qr_forward(scanned, xs, layers, depth, dtype)

  def one(x):
    carry = start(x)
    snaps, sums = [], []
    for l, fn in enumerate(blocks, 1):
      carry, x, partial = _qr_step(carry, fn, x)
      sums.append(partial)
      if l in layers:
        snaps.append(log_spectrum.snapshot_values(carry))
    return snaps, sums

  key = ("qr-forward", blocks, layers, dtype)
  with _pass_dtype(dtype):
    snaps, sums = host.split_batch(
        cached_program(key, lambda: jax.vmap(one)), (xs,))
  return BlockQRPass(layers, list(snaps), list(sums), dtype)


def qr_finish(forward: BlockQRPass, *,
              max_sweeps: int = log_spectrum.DEFAULT_MAX_SWEEPS,
              tol: float | None = None) -> BlockLogSpectra:
  """:func:`qr_forward`'s pass to exact log singular values (graded
  Jacobi with its certificate), in the pass's dtype."""
  dtype = jnp.dtype(forward.dtype)
  with _pass_dtype(dtype):
    outs = [log_spectrum.finish(tuple(buf[:, None] for buf in snapshot),
                                int(max_sweeps), tol) + (snapshot[4],)
            for snapshot in forward.snapshots]
  return BlockLogSpectra(forward.layers,
                         *([o[i] for o in outs] for i in range(3)),
                         list(forward.partial_sums), [o[3] for o in outs])


def qr_log_spectra(blocks, xs, layers=None, *,
                   max_sweeps: int = log_spectrum.DEFAULT_MAX_SWEEPS,
                   tol: float | None = None, dtype=None) -> BlockLogSpectra:
  """Stable log spectra of ``J_{<=l}`` for any blocks, at ``layers``
  (default: every block), for the inputs ``xs`` (leading batch axis):
  :func:`qr_finish` of :func:`qr_forward`.

  The pass runs in ``dtype`` (default the inputs'; float64 needs
  ``jax.enable_x64``): each block's Jacobian in the block's own dtype,
  cast, and the products, QR and SVDs in ``dtype``. No block claims an
  exact zero (its rank bound is its width), so a value is ``-inf`` only
  where the product's triangular factor holds an exact floating-point
  zero (the studies report such a value as unresolved).
  """
  return qr_finish(qr_forward(blocks, xs, layers, dtype=dtype),
                   max_sweeps=max_sweeps, tol=tol)


def _pass_dtype(dtype):
  """``jax.enable_x64`` for a float64 pass (the blocks keep their dtypes)."""
  return jax.enable_x64(True) if dtype == jnp.float64 else (
      contextlib.nullcontext())


# --------------------------------------------------------------------------
# Cutting a Flax model into blocks.

def _matcher(boundaries) -> Callable[[str], bool]:
  if isinstance(boundaries, str):
    pattern = re.compile(boundaries)
    return lambda path: pattern.fullmatch(path) is not None
  names = set(boundaries)
  return lambda path: path in names


def _path(module: nn.Module) -> str:
  return "/".join(str(p) for p in module.path)


class _Reached(Exception):
  """Raised inside a block's model run once its output is captured."""


def _record_calls(module, variables, x, match) -> tuple[list, list]:
  """One run of the model on ``x``: the paths and outputs of the calls
  ``match`` names, in call order, and the outputs list ends with the
  model's own output."""
  paths, outputs = [], []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and match(_path(context.module)):
      paths.append(_path(context.module))
      outputs.append(out)
    return out

  with nn.intercept_methods(record):
    y = module.apply(variables, x)
  return paths, outputs + [y]


def boundary_calls(module: nn.Module, variables, x, boundaries) -> list[str]:
  """The paths of the submodule calls that ``boundaries`` names, in the
  order the model makes them on ``x`` (a submodule called twice, as a
  shared layer in an unrolled RNN, is two boundaries)."""
  return _record_calls(module, variables, x, _matcher(boundaries))[0]


def flax_blocks(module: nn.Module, variables, x, boundaries) -> list[Callable]:
  """A Flax linen model cut into blocks at the outputs of named submodules.

  Block 1 maps the model's input to the output of the first boundary call,
  block ``l`` the output of call ``l - 1`` to that of call ``l``, and the
  last block the last boundary's output to the model's output (omitted when
  the last boundary's output is the model's output). Block ``l`` runs the
  model with call ``l - 1``'s output replaced by the block's input; the
  cut is valid when nothing reaches block ``l`` around that boundary (a skip
  connection across it would).

  Args:
    module: the Flax linen module.
    variables: its variables (``module.init(...)``).
    x: one input (no batch axis), for the shapes and the boundary calls.
    boundaries: submodule paths (``"/".join(module.path)``, e.g.
      ``"Dense_0"`` or ``"block_2/attention"``), as a collection of names
      or one regular expression matched against the whole path.

  Returns:
    The list of block callables ``x_{l-1} -> x_l``.

  Raises:
    ValueError: ``boundaries`` match no submodule call (the message lists
      the submodule paths the model calls).
  """
  match = _matcher(boundaries)
  calls, outputs = _record_calls(module, variables, x, match)
  if not calls:
    every = boundary_calls(module, variables, x, ".*")
    raise ValueError(f"boundaries {boundaries!r} match no submodule call; "
                     f"the model calls {sorted(set(every))}")
  zero = jax.tree.map(jnp.zeros_like, x)
  shapes = [jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), o)
            for o in outputs[:-1]]

  def cut(index: int) -> Callable:
    """Replace boundary output ``index - 1``, return boundary output
    ``index`` (the model's output for ``index = len(calls)``).

    Only the part of the model from boundary ``index - 1`` to boundary
    ``index`` is computed: earlier boundary calls return zeros of their
    shape without running, and the model stops at boundary ``index``
    (code outside the boundaries before the cut, e.g. an embedding, still
    runs on a zero input). A block's cost is then its own, not the
    model's, and the L blocks trace in O(L) instead of O(L^2).
    """
    def block(h):
      seen, captured = [0], []

      def intercept(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or not match(
            _path(context.module)):
          return next_fun(*args, **kwargs)
        i = seen[0]
        seen[0] += 1
        if i < index - 1:
          return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                              shapes[i])
        if i == index - 1:
          return h
        captured.append(next_fun(*args, **kwargs))
        raise _Reached

      try:
        with nn.intercept_methods(intercept):
          y = module.apply(variables, zero if index > 0 else h)
      except _Reached:
        return captured[0]
      return y
    return block

  blocks = [cut(i) for i in range(len(calls) + 1)]
  if all(a is b for a, b in zip(jax.tree.leaves(outputs[-2]),
                                jax.tree.leaves(outputs[-1]))):
    blocks = blocks[:-1]   # the last block would be the identity
    outputs = outputs[:-1]
  # The cut is valid when each block, fed the previous boundary's output,
  # gives the next one: a skip connection across a boundary breaks this.
  inputs = [x] + outputs[:-1]
  for l, (fn, v, want) in enumerate(zip(blocks, inputs, outputs)):
    got = fn(v)
    scale = max(float(jnp.max(jnp.abs(ravel_pytree(want)[0]))), 1e-30)
    if float(jnp.max(jnp.abs(ravel_pytree(got)[0]
                             - ravel_pytree(want)[0]))) > 1e-4 * scale:
      where = "the model's output" if l == len(calls) else repr(calls[l])
      raise ValueError(
          f"block {l + 1} (up to {where}) does not depend on its input "
          f"alone: something reaches it around the boundary before it (a "
          f"skip connection across the cut?); cut at boundaries that every "
          f"path of the model passes through")
  return blocks
