r"""Log singular values of deep Jacobian products, stable at any depth.

The dense probe (:mod:`vgrad.probes.jacobian`) multiplies
``J_{<=l} = J_l ... J_1`` out and takes an SVD: in float32 it resolves only
singular values within a factor ``1 / (N eps) ~ 3e4`` of the largest
(:mod:`vgrad.probes.spectrum`), and the product itself under- or overflows
once ``log sigma`` leaves
``[-87, 88]``. A sigmoid net loses its smallest singular values by layer ~3
and all of them by layer ~60. This module never forms the product.

**Forward QR pass (Benettin et al. 1980; "continuous QR").** With
``Q_0 = I`` (or a given orthonormal ``V``), for ``l = 1 .. L``::

    Q_l R_l = J_l Q_{l-1}          (Householder QR, R_l upper triangular)
    J_{<=l} V = Q_l T_l,           T_l = R_l R_{l-1} ... R_1.

Every ``Q_l`` is orthonormal and every ``R_l`` is of the size of one layer's
gain, so nothing under- or overflows. The partial sums

    S_{l,i} = sum_{m <= l} log |(R_m)_{ii}| = log |(T_l)_{ii}|

give the *finite-time Lyapunov estimates* at every layer for one QR per
layer, and ``S_{L,i} / L`` converges to the Lyapunov exponents (Oseledets).
They are summed with compensation (Kahan) in the scan carry: a plain float32
running sum of 10 000 terms is off by ~``sqrt(L) u |S|`` (0.1 nats for a
sigmoid net), a compensated one by ~``2 u |S|``. They are **not** the log
singular values of ``J_{<=l}`` at finite ``l``: ``log|diag T|`` is only
log-majorised by ``log sigma(T)`` (Weyl's inequality for the eigenvalues
``diag T`` of a triangular matrix: sorted partial sums of ``S`` are at most
those of ``log sigma``, with equality for the full sum
``log |det J_{<=l}|``), typically ``O(log N)`` off at each end.

**Exact log singular values at chosen layers.** ``sigma(J_{<=l}) =
sigma(T_l)`` exactly, since ``Q_l`` is orthonormal, so the forward pass also
carries ``T_l`` itself in a row-graded, overflow-free form

    T_l = diag(2^{e}) M,     e integer,  rows of M of norm in [1/2, 1),

updated by ``M <- D R_l D' M`` where the powers of two ``D, D'`` are applied
exactly (binary exponent arithmetic: no rounding, no overflow, no Kahan
needed) and chosen so that every factor is at most 1 in magnitude. At the
target layers the rows of the graded ``T_l`` are orthogonalised by exact
left rotations (:func:`_jacobi`): ``U^T`` from LAPACK's SVD of ``T_l``
scaled into range (which splits clustered values; kept only where no row
loses its relative accuracy to the rounding; on a CPU host, where ``T_l``
is graded past float64's resolution, ``U`` from LAPACK's Jacobi SVD
instead, :mod:`vgrad.probes.lapack_jacobi`, which keeps the grading), QR
steps (the preconditioner of Drmac & Veselic 2008: rows sorted by norm,
``T Q = diag(2^e) R^T`` from ``M^T = Q R``, which orthogonalises graded
rows at the rate of the gap) and,
only where those leave the rows unconverged, one-sided Jacobi sweeps
(Hestenes 1958) in the graded form: rows of log-norms ``a >= b`` and cosine
``g`` rotate by ``tan(theta) = t`` with ``t e^{a - b}`` computed directly,
so a row ``e^{10 000}`` times smaller than its partner is still
orthogonalised against it (a Gram-Schmidt step in the limit). The parallel
(circle-method) ordering rotates ``N/2`` disjoint row pairs at once.
Orthogonalising ``T = D M`` by rows is accurate relative to each singular
value, not to the largest, when the row-normalised ``M`` is well
conditioned (Demmel & Veselic 1992). Measured on the README's main job
(float64 pass, N = 256, 10 layers): the preconditioners leave no target
needing a sweep, where Jacobi alone took 6 to 9.

The final stage is certified: if ``H = M^ M^T`` is the Gram matrix of the
normalised rows when it ends, Ostrowski's theorem applied to
``T T^T = D H D`` and Gershgorin's radius ``r`` of ``H`` give, for the
sorted values,

    | log sigma_i(T) - log ||row_i|| | <= max(log(1 + r), -log(1 - r)) / 2,

returned as ``error_bound`` (nats) for every target layer and input. It
bounds the final stage (plus the LAPACK stage's rounding). The forward
pass's rounding is reported beside it: ``log_error``, a first-order
normwise bound on ``T_l``'s error, and :func:`forward_error_estimate`, the
relative one; the studies add them (``spectrum_study.qr_record``). The
studies run the pass in float64 (the network keeps its dtype), where both
are ~1e-10 nats at N = 256.

Why not the subspace iteration on ``J^T J`` (alternating forward and
backward QR sweeps through the product)? It needs ``2 l`` QRs per sweep and
per target layer, and converges at rate ``(sigma_{i+1}/sigma_i)^2`` per
sweep, which is slow exactly at small ``l`` and inside clusters (only the
sums over a cluster converge). Here each target costs one SVD and a few QRs
of one ``N x N`` matrix (Jacobi sweeps where needed), whatever ``l``.

**Rank deficiency.** ReLU and hard tanh give ``J_l`` exact zero rows; as in
:mod:`vgrad.probes.jacobian`, ``rank J_{<=l} <= r_l = min_{m <= l}
nonzero_rows(J_m)``. Householder QR (no pivoting) keeps the first ``r_l``
columns of ``J_l Q_{l-1}`` generically independent, so positions ``i >=
r_l`` of ``R`` are the zero ones; they are dropped (never fed back) and
reported as ``-inf``, exact zeros, not as the roundoff the QR leaves there.
Positions past the bound stay dead at every later layer.

**Overflowing forward passes.** If the activations themselves overflow
(``h = inf - inf`` is NaN, and ``relu'(NaN) = 0`` would fake a rank
collapse), every later value is NaN: reported as an overflow, not as exact
zeros. Linear nets are exempt (their ``J`` does not depend on ``h``).

**Maxout** is supported: ``J_l`` is the row selection of
:func:`vgrad.probes.jacobian.layer_jacobian`. A readout (``num_outputs``) is not
included: these are the hidden layers' input-to-layer Jacobians.

Cost per layer and input: one ``(N x k)`` QR and one product with the
kernel (``k = n_in``, or the columns of ``V``), plus one ``k x k`` by
``k x n_in`` product for the exact pass; per target layer one SVD and one
to ``MAX_QR_STEPS + 1`` QRs of ``O(k^2 n_in)``, and Jacobi sweeps (about a
QR's flops each, at a fraction of the speed) only where needed. Layer
parameters are stacked on the host (:func:`stack_layers`): one in-graph
concatenation of 10 000 layers takes XLA minutes to compile.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import linalg
from vgrad.nn import models
from vgrad.probes import host
from vgrad.probes import jacobian
from vgrad.probes import lapack_jacobi

PRECISION = models.PRECISION
LN2 = math.log(2.0)
DEFAULT_NUM_LAYERS = 12
DEFAULT_MAX_SWEEPS = 30   # LAPACK's xGESVJ stops at 30 sweeps too.
_NO_EXPONENT = -(2 ** 30)  # the binary exponent of an exact zero


class LyapunovSums(NamedTuple):
  """The forward QR pass of one input (batched: a leading ``B`` axis).

  Attributes:
    partial_sums: ``(L, k)`` finite-time Lyapunov sums ``S_{l,i} =
      sum_{m<=l} log|(R_m)_ii|`` in nats, in QR position order; ``-inf``
      past the rank bound (exact zeros), NaN from the layer where the
      forward pass overflowed.
    rank_bound: ``(L,)`` ``min_{m<=l} nonzero_rows(J_m)`` (capped at k).
    activations: ``(L, N)`` the input's forward activations ``x_1 .. x_L``,
      or None.
  """
  partial_sums: jax.Array
  rank_bound: jax.Array
  activations: jax.Array | None


class ForwardQR(NamedTuple):
  """A log-spectrum probe's forward QR pass for ``B`` inputs (see
  ``make_log_spectrum_probe``'s ``run.forward``).

  Attributes:
    partial_sums: ``(B, L, k)`` finite-time Lyapunov sums.
    rank_bound: ``(B, L)`` rank bounds of ``J_{<=l}``.
    snapshot: ``(m, e, rank, finite)`` of the graded ``T_l`` at the target
      layers, each with leading axes ``(B, T)``.
  """
  partial_sums: jax.Array
  rank_bound: jax.Array
  snapshot: tuple


class LogSpectra(NamedTuple):
  """Exact log singular values at target layers, for one input.

  Attributes:
    log_singular_values: ``(T, k)`` ``log sigma_i(J_{<=l})`` in nats,
      descending, for the target layers ``l`` in the probe's order; ``-inf``
      for the exact zeros past the rank bound.
    error_bound: ``(T,)`` the final stage's certificate (nats,
      :func:`_jacobi`): every value is within it of the exact log singular
      value of the computed ``T_l``; ``inf`` if the rows are still
      numerically dependent, NaN (as the values) after an overflow. The
      forward pass's rounding is not in it: see ``log_error`` and
      :func:`forward_error_estimate`.
    sweeps: ``(T,)`` Jacobi sweeps used (0 when the preconditioners
      sufficed).
    partial_sums: ``(L, k)`` finite-time Lyapunov sums, as in
      :class:`LyapunovSums`.
    rank_bound: ``(L,)`` rank bounds.
    log_error: ``(T,)`` log of the first-order normwise bound on the
      absolute rounding error of ``T_l`` (:func:`qr_advance`).
    log_dropped: ``(T,)`` log of a normwise bound on what the derivatives
      that left the pass's dtype (not exact zeros, but below its normal
      range) would have added to ``T_l``; ``-inf`` when none did.
  """
  log_singular_values: jax.Array
  error_bound: jax.Array
  sweeps: jax.Array
  partial_sums: jax.Array
  rank_bound: jax.Array
  log_error: jax.Array | None = None
  log_dropped: jax.Array | None = None


def default_layers(depth: int, num: int = DEFAULT_NUM_LAYERS
                   ) -> tuple[int, ...]:
  """Every layer up to depth ``num``; beyond, about ``num`` log-spaced
  layers in ``[1, depth]``, including both."""
  if depth < 1:
    raise ValueError(f"depth must be >= 1, got {depth}")
  if depth <= num:
    return tuple(range(1, depth + 1))
  grid = np.geomspace(1, depth, max(num, 2))
  return tuple(sorted({round(float(v)) for v in grid} | {1, depth}))


def check_layers(layers, depth: int) -> tuple[int, ...]:
  """``layers`` sorted and deduplicated, or ValueError naming the bad ones."""
  layers = tuple(sorted({int(l) for l in layers}))
  bad = [l for l in layers if not 1 <= l <= depth]
  if not layers or bad:
    raise ValueError(f"layers must be integers in [1, depth={depth}], got "
                     f"{list(layers) or 'none'}")
  return layers


# --------------------------------------------------------------------------
# Exact binary scaling.

def _pow2(k: jax.Array, dtype) -> jax.Array:
  """``2.0 ** k`` exactly, for integer ``k`` in the normal range of dtype."""
  info = jnp.finfo(dtype)
  int_type = jnp.int32 if info.bits == 32 else jnp.int64
  biased = (k.astype(int_type) + (info.maxexp - 1)) << info.nmant
  return jax.lax.bitcast_convert_type(biased, dtype)


def _scale2(x: jax.Array, k: jax.Array) -> jax.Array:
  """``x * 2**k`` without rounding (0 below the normal range).

  ``jnp.ldexp`` multiplies by a rounded ``2 ** k``; this splits off the
  exponent and rebuilds the power of two bit by bit.
  """
  info = jnp.finfo(x.dtype)
  mantissa, exponent = jnp.frexp(x)
  total = exponent + k
  scaled = mantissa * _pow2(jnp.clip(total, info.minexp, info.maxexp - 1),
                            x.dtype)
  return jnp.where(total < info.minexp, jnp.zeros_like(x), scaled)


def _exponent(x: jax.Array) -> jax.Array:
  """Binary exponent of ``x`` (``x = m 2^e``, ``1/2 <= |m| < 1``)."""
  return jnp.where(x != 0, jnp.frexp(x)[1], _NO_EXPONENT)


def _normalize_rows(m: jax.Array, e: jax.Array):
  """Rows rescaled to norms in ``[1/2, 1)`` by powers of two; ``e`` kept
  consistent (``diag(2^e) m`` unchanged, exactly).

  A row's power of two is applied as two factors of at most ``2^127``
  each, so any finite norm works; entries that become subnormal are below
  ``2^-126`` of the row's norm, beneath float32 resolution.
  """
  shift = _exponent(jnp.linalg.norm(m, axis=1))
  shift = jnp.where(shift == _NO_EXPONENT, 0, shift)
  half = shift // 2
  factor = (_pow2(-half, m.dtype) * _pow2(half - shift, m.dtype))[:, None]
  return m * factor, e + shift


# --------------------------------------------------------------------------
# The forward QR pass.

class _Carry(NamedTuple):
  x: jax.Array            # (n_prev,) activations entering the layer
  q: jax.Array            # (n_prev, k) orthonormal basis
  rank: jax.Array         # () rank bound so far
  finite: jax.Array       # () no Inf/NaN in the forward pass so far
  sums: jax.Array         # (k,) Kahan sums of log|R_ii|
  compensation: jax.Array  # (k,) Kahan compensation
  m: jax.Array | None     # (k, n_in) graded T = diag(2^e) m, exact pass only
  e: jax.Array | None     # (k,) int32
  # Exact pass only: log ||T||_F, the log of a first-order bound on the
  # absolute (normwise) rounding error of T, and whether a derivative that
  # is not an exact zero left the pass's dtype (log of a normwise bound on
  # the part of T so dropped: :func:`qr_advance`).
  log_norm: jax.Array | None = None
  log_error: jax.Array | None = None
  log_dropped: jax.Array | None = None


# What the exact pass keeps of T_l at a target layer (see _Carry).
SNAPSHOT_FIELDS = ("m", "e", "rank", "finite", "log_error", "log_dropped",
                   "sums")


def snapshot_values(carry: "_Carry") -> tuple:
  return tuple(getattr(carry, name) for name in SNAPSHOT_FIELDS)


def _log_frobenius(m, e, alive):
  """``log ||diag(2^e) m||_F`` over the live rows, without overflow."""
  row = e * LN2 + 0.5 * jnp.log(jnp.sum(m * m, axis=1))
  row = jnp.where(alive & (e != _NO_EXPONENT), row, -jnp.inf)
  top = jnp.max(row)
  safe = jnp.where(jnp.isfinite(top), top, 0)
  return safe + 0.5 * jnp.log(jnp.sum(jnp.exp(2 * (row - safe))))


def _kahan_add(total, compensation, term):
  """Compensated summation (Kahan 1965); error O(eps) of the sum."""
  y = term - compensation
  new = total + y
  return new, (new - total) - y


def _graded_product(r, e, alive_old, alive):
  """``R diag(2^e)`` as ``diag(2^f) F`` with ``|F_ik| < 1``.

  ``f_i = max_k (e_k + exponent(R_ik))`` over live entries, and
  ``F_ik = R_ik 2^{e_k - f_i}`` exactly; rows past ``alive`` and columns
  past ``alive_old`` are zero.
  """
  valid = (r != 0) & alive_old[None, :] & alive[:, None]
  candidate = jnp.where(valid, e[None, :] + _exponent(r), _NO_EXPONENT)
  f = jnp.max(candidate, axis=1)
  shift = jnp.clip(e[None, :] - f[:, None], -(2 ** 20), 2 ** 20)
  return _scale2(jnp.where(valid, r, 0), shift), jnp.where(alive, f, 0)


def _graded_update(m, e, r, alive_old, alive):
  """``T <- R T`` in the graded form ``T = diag(2^e) m``.

  ``T_new[i] = sum_k R_ik 2^{e_k} m_k = 2^{f_i} sum_k F_ik m_k``
  (:func:`_graded_product`), so nothing overflows; every power of two is
  applied exactly.
  """
  factor, f = _graded_product(r, e, alive_old, alive)
  m, e = _normalize_rows(jnp.dot(factor, m, precision=PRECISION), f)
  return jnp.where(alive[:, None], m, 0), e


def _qr_step(model: models.MLP, carry: _Carry, p):
  """One layer of the forward QR pass; returns the carry and the layer's
  outputs ``(partial sums (k,), rank bound, x_l)``."""
  act = model.activation
  x, h = models.hidden_layer(model).apply({"params": p}, carry.x)
  # Once the forward pass overflows, h = inf - inf is NaN and phi'(h)
  # meaningless (ReLU would give 0): report NaN, not exact zeros. An
  # infinite h is fine (phi' takes its limit), and a linear net's J does
  # not depend on h at all.
  finite = carry.finite & (act.name == "linear" or ~jnp.any(jnp.isnan(h)))
  # (J_l Q)^T by the dense probe's propagation (shared kernel under vmap),
  # in the pass's dtype: the network's own float32 W_l and h_l, with
  # phi'(h_l) and the products taken in float64 when the pass runs there.
  dtype = carry.q.dtype
  kernel, h_wide = p["kernel"].astype(dtype), h.astype(dtype)
  # pylint: disable=protected-access
  a = jacobian._propagate(act, kernel, h_wide, carry.q.T).T
  # pylint: enable=protected-access
  rows = jacobian.exact_nonzero_rows(act, p["kernel"], h)
  # Derivatives below the normal range: true rows of J_l of norm at most
  # tiny ||w_i|| that the pass drops (or holds inaccurately).
  lost = jacobian.rounding_zero_units(act, kernel, h_wide)
  weight_norms = jnp.sum(kernel * kernel, axis=0) if kernel.ndim == 2 else 0
  dropped = jnp.sqrt(jnp.sum(jnp.where(lost, weight_norms, 0)))
  log_dropped = jnp.log(dropped * jnp.finfo(dtype).tiny)
  return qr_advance(carry, x, a, rows, finite, log_dropped)


def qr_advance(carry: _Carry, x: jax.Array, a: jax.Array, rows,
               finite, log_dropped=-jnp.inf) -> tuple[_Carry, tuple]:
  """One step of the forward QR pass, for any layer or block.

  Args:
    carry: the pass so far (``q`` the ``(n_{l-1}, k_old)`` basis).
    x: what the carry keeps as the layer's output (the MLP's activations;
      a block's flattened output).
    a: ``J_l Q_{l-1}``, ``(n_l, k_old)``.
    rows: an upper bound on ``rank J_l`` (the MLP's nonzero rows; ``n_l``
      for a block with no such structure, which claims no exact zero).
    finite: whether the forward pass is still free of overflow.
    log_dropped: log of the norm of what the pass dropped from ``J_l``
      (derivatives below its normal range that are not exact zeros);
      ``-inf`` for none. Carried like the rounding:
      ``D_l = ||J_l Q|| D_{l-1} + ||dropped_l|| ||T_{l-1}||``.

  The QR factors the rows sorted by decreasing norm (Householder QR is then
  row-wise backward stable, Cox & Higham 1998: a row of ``J_l`` ``e^-100``
  times smaller than the others keeps its relative accuracy), and the
  exact pass tracks a first-order bound on the normwise rounding error of
  ``T_l``: ``E_l <= ||J_l Q|| E_{l-1} + 2 gamma ||J_l Q|| ||T_{l-1}||``,
  ``gamma = n u``, Frobenius norms (each at least the 2-norm).

  Returns:
    The new carry (``k = min(n_l, k_old)`` columns: the sums shrink with a
    narrower layer) and ``(partial sums (k,), rank bound, x)``.
  """
  order = jnp.argsort(-jnp.sum(a * a, axis=1))
  q_sorted, r = linalg.qr(a[order])
  q = jnp.zeros_like(q_sorted).at[order].set(q_sorted)
  k_old, k = r.shape[1], r.shape[0]
  rank = jnp.minimum(carry.rank, rows)
  alive_old = jnp.arange(k_old) < carry.rank
  alive = jnp.arange(k) < rank
  log_diag = jnp.log(jnp.abs(jnp.diagonal(r)))
  sums, compensation = _kahan_add(carry.sums[:k], carry.compensation[:k],
                                  jnp.where(alive, log_diag, 0))
  m, e = carry.m, carry.e
  exact = {}
  if m is not None:
    m, e = _graded_update(m, e, r, alive_old, alive)
    log_a = 0.5 * jnp.log(jnp.sum(a * a))
    gamma = max(a.shape) * _unit_roundoff(a.dtype)
    exact = dict(
        log_norm=_log_frobenius(m, e, alive),
        log_error=jnp.logaddexp(log_a + carry.log_error,
                                math.log(2 * gamma) + log_a + carry.log_norm),
        log_dropped=jnp.logaddexp(log_a + carry.log_dropped,
                                  log_dropped + carry.log_norm))
  out = (jnp.where(finite, jnp.where(alive, sums, -jnp.inf), jnp.nan),
         rank, x)
  return _Carry(x, q, rank, finite, sums, compensation, m, e,
                **exact), out


def initial_carry(x: jax.Array, exact: bool = True,
                  dtype=None) -> _Carry:
  """The forward QR pass's start for a flattened input ``x (n,)``:
  ``Q_0 = I``, ``T_0 = I`` (graded), ``k = n``; the pass runs in ``dtype``
  (default ``x``'s)."""
  n = x.shape[0]
  return _start(x, jnp.eye(n, dtype=dtype or x.dtype), n, exact)


def _start(x, q, k: int, exact: bool) -> _Carry:
  """The carry before layer 1: basis ``q (n_in, k0)``, sums of length
  ``k`` and, for the exact pass, ``T_0 = I`` in graded form."""
  dtype, n_in = q.dtype, q.shape[0]
  zeros = jnp.zeros((k,), dtype)
  if not exact:
    return _Carry(x, q, jnp.array(q.shape[1], jnp.int32), jnp.array(True),
                  zeros, zeros, None, None)
  m, e = _normalize_rows(jnp.eye(n_in, dtype=dtype),
                         jnp.zeros((n_in,), jnp.int32))
  return _Carry(x, q, jnp.array(q.shape[1], jnp.int32), jnp.array(True),
                zeros, zeros, m, e,
                log_norm=jnp.asarray(0.5 * math.log(n_in), dtype),
                log_error=jnp.asarray(-jnp.inf, dtype),
                log_dropped=jnp.asarray(-jnp.inf, dtype))


def graded_log_spectrum(snapshot: tuple, max_sweeps, tol):
  """``(log sigma (k,) descending, certificate, sweeps)`` of ``T_l`` from
  its :data:`SNAPSHOT_FIELDS` (:func:`_jacobi`); NaN after an overflow.

  The LAPACK stage is checked by the determinant before any sweep
  (:func:`precondition` with the layer's Lyapunov ``sums``): where ``T_l``
  is graded beyond the SVD's resolution, ``U^T`` mixes eps-size parts of
  large rows into the small ones, the grading that lets the later stages
  resolve the small values is lost (thousands of nats off at depth 1500),
  and the preconditioning starts again without it.
  """
  m, e, rank, finite = snapshot[:4]
  log_sv, bound, sweeps = _jacobi(jnp.where(finite, m, 0), e, rank,
                                  max_sweeps, tol, sums=snapshot[6])
  return (jnp.where(finite, log_sv, jnp.nan),
          jnp.where(finite, bound, jnp.nan), sweeps)


def determinant_agrees(log_sv, sums, rank):
  """Whether ``sum log sigma_i`` (or any ``(k,)`` terms of ``log |det T|``)
  equals the Lyapunov sums' total to ``1e-9`` of their size
  (rank-deficient ``T``: not checked, True)."""
  k = log_sv.shape[0]
  total = jnp.sum(jnp.where(jnp.isfinite(log_sv), log_sv, 0))
  scale = jnp.sum(jnp.abs(sums))
  return (rank < k) | (jnp.abs(total - jnp.sum(sums))
                       <= 1e-9 * scale + 1e-6)


def _initial_carry(model, x, basis, exact: bool, dtype) -> _Carry:
  n_in = x.shape[0]
  q = jnp.eye(n_in, dtype=dtype) if basis is None else basis.astype(dtype)
  return _start(x, q, min(model.width, q.shape[1]), exact)


def _forward(model: models.MLP, first, rest, x: jax.Array, basis, layers,
             exact: bool, dtype=None):
  """The forward QR pass of one input.

  ``first`` is layer 1's parameters, ``rest`` layers 2..L's stacked
  (:func:`stack_layers`); the pass runs in ``dtype`` (default ``x``'s).
  Returns ``(partial_sums (L, k), rank (L,), activations (L, N),
  snapshot)`` where ``snapshot`` holds the :data:`SNAPSHOT_FIELDS` of
  ``T_l`` at each target layer (``exact``) or is None.
  """
  carry = _initial_carry(model, x, basis, exact, dtype or x.dtype)
  layers = tuple(layers)
  slots = np.full(model.depth + 1, len(layers), np.int32)
  slots[list(layers)] = np.arange(len(layers))

  def body(state, inputs):
    carry, snap = state
    p, slot = inputs
    carry, out = _qr_step(model, carry, p)
    if snap is not None:
      snap = _store(snap, carry, slot)
    return (carry, snap), out

  def empty_snapshot(carry):
    if not exact:
      return None
    return tuple(jnp.zeros((len(layers) + 1,) + jnp.shape(v),
                           jnp.result_type(v))
                 for v in snapshot_values(carry))

  # A square net with Q_0 = I: the carry keeps its shapes through layer 1,
  # so one scan covers every layer (one compiled step, not two).
  if rest is not None and basis is None and x.shape[0] == model.width:
    every = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first,
                         rest)
    (carry, snapshot), (sums, rank, xs) = jax.lax.scan(
        body, (carry, empty_snapshot(carry)), (every, jnp.asarray(slots[1:])))
    return sums, rank, xs, snapshot
  carry, (s1, r1, x1) = _qr_step(model, carry, first)
  snapshot = empty_snapshot(carry)
  if exact:
    snapshot = _store(snapshot, carry, slots[1])
  outs = [(s1[None], r1[None], x1[None])]
  if model.depth > 1:
    (carry, snapshot), scanned = jax.lax.scan(
        body, (carry, snapshot), (rest, jnp.asarray(slots[2:])))
    outs.append(scanned)
  sums, rank, xs = (jnp.concatenate(parts) for parts in zip(*outs))
  return sums, rank, xs, snapshot


def _store(snapshot, carry: _Carry, slot):
  """Writes ``T_l``'s graded form into ``slot`` (the last slot: discard)."""
  values = snapshot_values(carry)
  return tuple(jax.lax.dynamic_update_index_in_dim(buf, value, slot, 0)
               for buf, value in zip(snapshot, values))


# --------------------------------------------------------------------------
# One-sided Jacobi on a row-graded matrix.

def _rotate(top, bottom):
  """Jacobi rotations of the row pairs ``(top[i], bottom[i])``.

  ``top`` and ``bottom`` are ``(m, e, alive)`` for ``h`` rows each, rows of
  ``diag(2^e) m``. For a pair with log-norms ``a >= b`` (rows ``A, B``),
  cosine ``g`` between them and ``d = b - a <= 0``, the rotation that makes
  them orthogonal has (Golub & Van Loan, Alg. 8.4.1, ``zeta = sinh(d)/g``)

      t e^{-d} = s |g| / ((1 - u)/2 + sqrt(u g^2 + (1 - u)^2 / 4)),

  ``u = e^{2d}``, ``s = sign(zeta)``, finite for any ``d``; then
  ``A' = c |A| (A^ - t e^{-d} u B^)`` and ``B' = c |B| (t e^{-d} A^ + B^)``
  with ``c = 1/sqrt(1 + t^2)`` (hats: unit rows). For ``d -> -inf`` this is
  the Gram-Schmidt step ``B' = |B| (B^ - g A^)``. Both new rows are
  ``c m_i + coefficient * m_j`` with per-pair scalars: one pass over the
  rows for the inner products, one for the update. Returns the rotated
  halves and the largest ``|g|`` among live pairs.
  """
  (m1, e1, alive1), (m2, e2, alive2) = top, bottom
  live = alive1 & alive2
  n1 = jnp.sqrt(jnp.sum(m1 * m1, axis=1))
  n2 = jnp.sqrt(jnp.sum(m2 * m2, axis=1))
  n1, n2 = jnp.where(n1 > 0, n1, 1), jnp.where(n2 > 0, n2, 1)
  g = jnp.sum(m1 * m2, axis=1) / (n1 * n2)
  # d12 = log|row 2| - log|row 1|, from the exact integer exponent difference.
  d12 = (e2 - e1) * LN2 + jnp.log(n2 / n1)
  d = -jnp.abs(d12)
  u, one_minus_u = jnp.exp(2 * d), -jnp.expm1(2 * d)
  sign = jnp.where(d < 0, -jnp.sign(g), 1.0)
  rotate = live & (g != 0)
  denominator = 0.5 * one_minus_u + jnp.sqrt(u * g * g
                                             + 0.25 * one_minus_u ** 2)
  te = jnp.where(rotate, sign * jnp.abs(g)
                 / jnp.where(rotate, denominator, 1), 0)
  c = jax.lax.rsqrt(1 + te * te * u)
  # Row 1 big: m1' = c (m1 - te u (n1/n2) m2), m2' = c (te (n2/n1) m1 + m2);
  # row 2 big: the same with 1 and 2 exchanged.
  swap = d12 > 0
  to1 = c * jnp.where(swap, te, -te * u) * (n1 / n2)
  to2 = c * jnp.where(swap, -te * u, te) * (n2 / n1)
  new1 = c[:, None] * m1 + to1[:, None] * m2
  new2 = to2[:, None] * m1 + c[:, None] * m2
  return ((new1, e1, alive1), (new2, e2, alive2),
          jnp.max(jnp.where(live, jnp.abs(g), 0)))


def _renormalize(m, e, alive):
  m, e = _normalize_rows(m, e)
  return m, e, alive


def _next_round(top, bottom):
  """The circle method's move: row 0 stays, the others shift one place
  around the ring ``top[1:] -> bottom[::-1]``, so that every pair of rows
  meets once in ``2h - 1`` rounds. Static slices, no gathers."""
  def move(a, b):
    new_top = jnp.concatenate([a[:1], b[:1], a[1:-1]])
    new_bottom = jnp.concatenate([b[1:], a[-1:]])
    return new_top, new_bottom
  moved = [move(a, b) for a, b in zip(top, bottom)]
  return tuple(t for t, _ in moved), tuple(b for _, b in moved)


# A target whose Lyapunov sums spread over more than this (nats) starts with
# LAPACK's Jacobi SVD (on CPU, float64): the divide-and-conquer SVD's
# rotation loses the grading there (float64 resolves e^36; the README's main
# job keeps it up to e^44, the sigmoid net at N = 512 loses it by e^60).
JACOBI_SVD_SPREAD = 50.0
# ... and is at least this wide: narrower, the QR steps converge in a few
# steps even there (the gaps between values are wide; sigmoid nets of
# width 16-32 at depth 40 need no sweep), cheaper than the Jacobi SVD.
JACOBI_SVD_MIN_WIDTH = 64

# QR preconditioning steps (each about a tenth of a Jacobi sweep) before
# Jacobi takes over; they stop early once the rows stop improving.
MAX_QR_STEPS = 10


def _jacobi(m, e, rank, max_sweeps, tol, use_svd=True, sums=None):
  """Log singular values of ``diag(2^e) m`` (rows past ``rank`` are exact
  zeros), certified.

  Three stages, each an orthogonal transformation of ``T`` from the left
  (rows rotated), so ``sigma(T)`` is unchanged:

  1. **LAPACK preconditioner** (:func:`_svd_precondition`). ``U`` from the
     SVD of ``T`` scaled into range (rows under ``2^minexp`` of the largest
     flushed) and ``T <- U^T T`` in graded arithmetic: the rows become
     orthogonal up to the SVD's normwise error, so clustered values are
     already split. It is kept only if every new row is accurate relative
     to its own norm (:func:`_graded_rotation_error`; that rounding is
     added to the certificate); where cancellation would cost a small row
     its accuracy, ``T`` is left as it was; so it is for a rank-deficient
     ``T`` (a dead row must not mix in). Given the layer's Lyapunov
     ``sums``, :func:`precondition` checks by the determinant that it kept
     the grading, and drops it where it did not.
  2. **QR preconditioning** (Drmac & Veselic 2008, :func:`_precondition`),
     repeated while the rows' Gershgorin radius ``r`` (below) is above the
     rounding level ``4 k n u`` and halves per step (at most
     ``MAX_QR_STEPS``): it orthogonalises graded rows against larger ones
     at the rate of the gap, for one QR each.
  3. **One-sided Jacobi** sweeps (:func:`_sweeps`) only if ``r`` is still
     above that level, until a sweep's largest cosine is below ``tol`` or
     ``max_sweeps`` ran.

  Certificate: with ``H`` the Gram matrix of the unit rows and Gershgorin's
  ``r = max_i (|H_ii - 1| + sum_{j != i} |H_ij|)``, plus ``k n u`` for the
  rounding of ``H`` itself, every eigenvalue of ``H`` lies in
  ``[1 - r, 1 + r]``, and Ostrowski's theorem on ``T T^T = D H D`` gives
  ``|log sigma_i - log ||row_i||| <= max(log(1 + r), -log(1 - r)) / 2``
  for the sorted values.

  Returns ``(log_sv (k,) descending, error_bound, sweeps)``: the bound in
  nats (``inf`` if ``r >= 1/2``) and the Jacobi sweeps used (0 when the
  preconditioners sufficed).
  """
  m, e, needs_sweeps, rotation_error = precondition(m, e, rank, use_svd,
                                                    sums)
  m, e, count = _sweeps(m, e, rank, max_sweeps, tol,
                        start=jnp.where(needs_sweeps, jnp.inf, 0.0))
  log_sv, bound = _certify(m, e, jnp.arange(m.shape[0]) < rank)
  return log_sv, bound - jnp.log1p(-rotation_error), count


def precondition(m, e, rank, use_svd=True, sums=None, basis=None):
  """Stages 1 (if ``use_svd``) and 2 of :func:`_jacobi`: ``(m, e)`` of a
  ``k x k`` matrix with the singular values of ``diag(2^e) m (k x n)``,
  whether Jacobi sweeps are still needed (the Gershgorin radius is above
  the rounding level), and the relative error the LAPACK stage added.

  With the layer's Lyapunov ``sums`` (full rank), the LAPACK stage is kept
  only if it kept the grading: the first QR step's triangular factor gives
  ``log |det T| = sum_i (e_i ln 2 + log |r_ii|)`` of the rotated ``T``,
  which must equal ``sum_i S_i`` (:func:`determinant_agrees`); otherwise
  stage 2 starts from ``T`` itself. Rotations do not change ``|det|``, so
  this is the check the final values would fail, made before any sweep.
  ``use_svd`` may be traced (the stage is then decided at run time);
  a Python ``False`` leaves the stage out of the program, a Python
  ``True`` runs it unconditionally (no ``lax.cond``: its trace, batching
  and compilation of both branches cost more than the stage). ``basis``:
  the stage's rotation computed elsewhere (``T``'s left singular vectors,
  :func:`vgrad.probes.lapack_jacobi.graded_bases`), in place of the SVD;
  checked the same way."""
  k, n = m.shape
  live = jnp.arange(k) < rank
  target = 4.0 * k * n * _unit_roundoff(m.dtype)
  rotation_error = jnp.zeros((), m.dtype)
  rotated, shifted = m, e
  if use_svd is True:
    rotated, shifted, rotation_error = _svd_precondition(m, e, rank, basis)
  elif use_svd is not False:
    rotated, shifted, rotation_error = jax.lax.cond(
        jnp.asarray(use_svd), lambda: _svd_precondition(m, e, rank),
        lambda: (m, e, rotation_error))
  # One QR step always: it also makes a wide T (k < n) square.
  if use_svd is False or sums is None:
    m, e = _precondition(rotated, shifted, rank)
  else:
    step, step_e, log_det = _precondition(rotated, shifted, rank,
                                          with_log_det=True)
    # A loop of at most one step rather than a lax.cond: under vmap a cond
    # runs both branches for every matrix (a QR each), the loop's body only
    # while some matrix needs it (rarely: graded beyond the SVD's range).
    def redo(state):
      return (*_precondition(m, e, rank), jnp.zeros_like(rotation_error),
              jnp.array(False))
    m, e, rotation_error, _ = jax.lax.while_loop(
        lambda state: state[3], redo,
        (step, step_e, rotation_error,
         ~determinant_agrees(log_det, sums, rank)))

  def qr_more(state):
    _, _, radius, previous, steps = state
    return ((radius > target) & (radius < 0.5 * previous)
            & (steps < MAX_QR_STEPS))

  def qr_step(state):
    m, e, radius, _, steps = state
    m, e = _precondition(m, e, rank)
    return m, e, _gershgorin_radius(m, live), radius, steps + 1

  m, e, radius, _, _ = jax.lax.while_loop(
      qr_more, qr_step, (m, e, _gershgorin_radius(m, live),
                         jnp.array(jnp.inf, m.dtype), 0))
  return m, e, radius > target, rotation_error


def _certify(m, e, live):
  """``(log row norms (k,) descending, certificate)`` of ``diag(2^e) m``:
  the row norms are the singular values to within the certificate (nats,
  Ostrowski with Gershgorin's ``r``, :func:`_jacobi`), whatever state the
  rows are in (``inf`` when ``r >= 1/2``)."""
  k, n = m.shape
  norm = jnp.linalg.norm(m, axis=1)
  log_sv = jnp.where(live, e * LN2 + jnp.log(jnp.where(live, norm, 1)),
                     -jnp.inf)
  radius = _gershgorin_radius(m, live) + k * n * _unit_roundoff(m.dtype)
  bound = 0.5 * jnp.maximum(jnp.log1p(radius),
                            -jnp.log1p(-jnp.minimum(radius, 0.5)))
  bound = jnp.where(radius < 0.5, bound, jnp.inf)
  return -jnp.sort(-log_sv), bound.astype(m.dtype)


def _unit_roundoff(dtype) -> float:
  return float(jnp.finfo(dtype).eps) / 2


def _gershgorin_radius(m, live):
  """``max_i (|H_ii - 1| + sum_{j != i} |H_ij|)`` over the live rows, for
  the Gram matrix ``H`` of the unit rows of ``m`` (one ``k x k x n``
  product)."""
  norm = jnp.linalg.norm(m, axis=1)
  # A live row that rounded to zero has no direction: it is left out here
  # (its value, ln 0, is reported as not measured).
  live = live & (norm > 0)
  unit = jnp.where(live[:, None], m / jnp.where(live, norm, 1)[:, None], 0)
  gram = jnp.dot(unit, unit.T, precision=PRECISION)
  off = jnp.abs(gram - jnp.eye(m.shape[0], dtype=m.dtype))
  off = jnp.where(live[:, None] & live[None, :], off, 0)
  return jnp.max(jnp.sum(off, axis=1))


def _graded_rotation_error(factor, rows):
  """The largest relative rounding error of a row of ``rows = factor @ m``
  (rows of ``m`` of norm below 1): ``n u sum_k |F_ik| / ||rows_i||``."""
  n = rows.shape[1]
  scale = jnp.sum(jnp.abs(factor), axis=1)
  norm = jnp.linalg.norm(rows, axis=1)
  ratio = jnp.where(scale > 0, n * _unit_roundoff(rows.dtype) * scale
                    / jnp.where(norm > 0, norm, 1), 0)
  return jnp.max(jnp.where((scale > 0) & (norm == 0), jnp.inf, ratio))


# The LAPACK preconditioner is kept when its rounding moves the singular
# values by at most this much relatively (sqrt(k) times the largest row
# error; by itemsize). Typical at N = 256 in float64: 1e-9; in float32
# it is rarely met, and Jacobi sweeps do the work.
_SVD_PRECONDITION_ERROR = {4: 2.0 ** -20, 8: 2.0 ** -26}


def _svd_precondition(m, e, rank, basis=None):
  """``(m, e)`` of ``U^T T`` for ``U`` from LAPACK's SVD of ``T`` in range
  (stage 1 of :func:`_jacobi`), or unchanged where a row of ``U^T T``
  would lose its relative accuracy, and the relative error this adds to
  the singular values: a row-wise relative perturbation ``delta`` of
  nearly orthogonal rows moves them by at most ``sqrt(k) delta`` (0 when
  ``T`` is left unchanged). ``basis``: ``U`` computed elsewhere (used as
  it is, with the same checks)."""
  k = m.shape[0]
  info = jnp.finfo(m.dtype)
  live = jnp.arange(k) < rank
  top = jnp.max(jnp.where(live, e, _NO_EXPONENT))
  shift = jnp.clip(e - top, info.minexp + 2, 0)
  scaled = jnp.where(live[:, None], _scale2(m, shift[:, None]), 0)
  u = (linalg.svd(scaled, full_matrices=False)[0] if basis is None
       else basis)
  factor, f = _graded_product(u.T, e, live, live)
  rows = jnp.dot(factor, m, precision=PRECISION)
  # U^T = (I + G) Q^T for an orthogonal Q, ||G|| <= ||U^T U - I||: a
  # multiplicative perturbation, which moves every singular value by at
  # most that much relatively (Eisenstat & Ipsen 1995).
  gram = jnp.dot(u.T, u, precision=PRECISION)
  drift = jnp.sqrt(jnp.sum((gram - jnp.eye(k, dtype=u.dtype)) ** 2))
  error = math.sqrt(k) * _graded_rotation_error(factor, rows) + drift
  new_m, new_e = _normalize_rows(rows, f)
  # Full rank only: a dead row must not mix in. (Whether U kept the rows'
  # grading is checked afterwards, by the determinant: graded_log_spectrum.)
  accurate = (error <= _SVD_PRECONDITION_ERROR[info.bits // 8]) & (rank == k)
  return (jnp.where(accurate, new_m, m), jnp.where(accurate, new_e, e),
          jnp.where(accurate, error, 0).astype(m.dtype))


def _sweeps(m, e, rank, max_sweeps, tol, start):
  """Cyclic one-sided Jacobi sweeps on the rows of ``diag(2^e) m`` (the
  circle ordering of :func:`_rotate` pairs) while the last sweep's largest
  cosine (``start`` before the first) is above ``tol`` and fewer than
  ``max_sweeps`` ran. Returns ``(m, e, sweeps)``; live rows first."""
  k = m.shape[0]
  pad = k % 2 + 2 * (k == 1)  # the ring needs an even number >= 2 of rows
  alive = jnp.arange(k + pad) < rank
  m = jnp.concatenate([m, jnp.zeros((pad, m.shape[1]), m.dtype)])
  e = jnp.concatenate([e, jnp.zeros((pad,), e.dtype)])
  h = (k + pad) // 2
  halves = ((m[:h], e[:h], alive[:h]), (m[h:], e[h:], alive[h:]))

  def sweep(state):
    top, bottom, _, count = state

    def one_round(carry, _):
      top, bottom, off = carry
      top, bottom, g = _rotate(top, bottom)
      top, bottom = _next_round(top, bottom)
      return (top, bottom, jnp.maximum(off, g)), None

    (top, bottom, off), _ = jax.lax.scan(
        one_round, (top, bottom, jnp.zeros((), m.dtype)), None,
        length=2 * h - 1)
    # Renormalised once a sweep: a rotation moves mass from the smaller row
    # of a pair to the larger, so a row's norm grows by at most sqrt(k)
    # within a sweep (no overflow), and shrinks only by cancellation.
    return (*(_renormalize(*half) for half in (top, bottom)), off,
            count + 1)

  def unconverged(state):
    return (state[2] > tol) & (state[3] < max_sweeps)

  top, bottom, _, count = jax.lax.while_loop(
      unconverged, sweep, (*halves, jnp.asarray(start, m.dtype), 0))
  m, e, alive = (jnp.concatenate(parts) for parts in zip(top, bottom))
  # The ring moves rows between slots: put the live ones first again.
  order = jnp.argsort(~alive, stable=True)
  return m[order][:k], e[order][:k], count


def _precondition(m, e, rank, with_log_det: bool = False):
  """Rows of a matrix with the singular values of ``T = diag(2^e) m`` whose
  rows are nearly orthogonal when ``T`` is graded (Drmac & Veselic 2008);
  ``with_log_det``: also ``(k,)`` terms ``e_i ln 2 + log |r_ii|`` whose sum
  is ``log prod sigma_i(T)`` (``T T^T = diag(2^e) R^T R diag(2^e)``).

  With the rows sorted by norm (a row permutation) and ``m^T = Q R``,
  ``T Q = diag(2^e) R^T``: the rows of ``R diag(2^e)`` (the columns of
  ``T Q``) have cosines of order ``2^{e_j - e_i}``, so Jacobi starts close
  to convergence instead of spending its first sweeps on a Gram-Schmidt
  ordering. ``m`` is well scaled (unit rows), so its QR loses nothing.
  """
  k = m.shape[0]
  live = jnp.arange(k) < rank
  norm = jnp.linalg.norm(m, axis=1)
  log_norm = jnp.where(live, e * LN2 + jnp.log(jnp.where(live, norm, 1)),
                       -jnp.inf)
  order = jnp.argsort(-log_norm)
  _, r = linalg.qr(m[order].T)
  factor, f = _graded_product(r[:k], e[order], live, live)
  rows, exponents = _normalize_rows(factor, f)
  if not with_log_det:
    return rows, exponents
  diag = jnp.abs(jnp.diagonal(r[:k]))
  alive = live[order]
  log_det = jnp.where(alive, e[order] * LN2
                      + jnp.log(jnp.where(alive, diag, 1)), 0)
  return rows, exponents, log_det


def default_tol(dtype) -> float:
  """Jacobi converges quadratically (Henrici 1958): after a sweep whose
  largest cosine was below sqrt(eps) the remaining ones are O(eps), so a
  further sweep changes nothing at working precision (the certified bound,
  computed afterwards, confirms it)."""
  return math.sqrt(float(jnp.finfo(dtype).eps))


# --------------------------------------------------------------------------
# Public probes.

def stack_layers(model: models.MLP, params):
  """``(layer 1's params, layers 2..L's params stacked on a leading axis)``,
  stacked on the host: :func:`vgrad.probes.jacobian.stack_hidden_layers`."""
  return jacobian.stack_hidden_layers(model, params)


def _check_model(model: models.MLP):
  if model.depth < 1:
    raise ValueError("the log-spectrum probe needs depth >= 1")


def make_lyapunov_probe(model: models.MLP, basis: jax.Array | None = None,
                        return_activations: bool = False):
  """A jitted ``probe(params, xs) -> LyapunovSums`` for ``xs (B, n_in)``.

  The forward QR pass alone (module docstring): per input and layer one QR
  of ``J_l Q_{l-1}``, in a ``lax.scan`` over the layers, vmapped over the
  inputs. ``basis`` ``(n_in, k)`` with orthonormal columns starts the pass
  at ``Q_0 = V`` (the top-k exponents for ``k < n_in``); default ``I``.
  """
  _check_model(model)

  def one(first, rest, x):
    sums, rank, xs, _ = _forward(model, first, rest, x, basis, (), False)
    return LyapunovSums(sums, rank, xs if return_activations else None)
  return _with_stacked_params(model, one)


def _with_stacked_params(model, one):
  """``probe(params, xs)``: stacks the layers outside, then a jitted vmap of
  ``one(first, rest, x)`` over the inputs."""
  core = jax.jit(jax.vmap(one, in_axes=(None, None, 0)))

  def probe(params, xs):
    return core(*stack_layers(model, params), xs)
  return probe


def _chunked(fn, flat):
  """``lax.map(fn, flat)`` over every (input, layer) matrix, in chunks of
  about 512 kB.

  Each Jacobi round streams its matrices, so a chunk that stays in cache
  runs ~1.8x faster per matrix than one wide vmap. A matrix of 512 kB or
  more (N >= 363 in float32) is one chunk on its own: unbatched, as a vmap
  of one runs 1.6-2x slower (BUILD_NOTES.md). lax.map compiles its body a
  second time for a last, shorter chunk, so the chunks are made equal and
  the matrices padded to whole chunks with copies of the last one (sliced
  off).
  """
  total = flat[0].shape[0]
  k, n = flat[0].shape[1:]
  chunk = 2 ** 19 // (k * n * flat[0].dtype.itemsize)
  if chunk <= 1 or total <= 1:
    return jax.lax.map(fn, flat)
  count = -(-total // chunk)
  chunk = -(-total // count)
  pad = count * chunk - total
  padded = tuple(jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
                 if pad else a for a in flat)
  out = jax.lax.map(fn, padded, batch_size=chunk)
  return jax.tree.map(lambda a: a[:total], out)


def _flatten(snapshot):
  """``(B, T, ...)`` snapshot buffers as ``(B * T, ...)``."""
  return tuple(buf.reshape((-1,) + buf.shape[2:]) for buf in snapshot)


def _bucket(count: int) -> int:
  """The smallest ``2^j`` or ``3 * 2^j`` at least ``count`` (>= 1)."""
  power = 1 << (count - 1).bit_length()   # the power of two at least count
  three_quarters = 3 * power // 4
  return three_quarters if power >= 4 and three_quarters >= count else power


# The probe's stages after the forward pass. They depend only on the
# snapshot's shapes (not on the model or the target layers), so they are
# jitted once here: probes of any model with the same width, inputs and
# number of targets share their traced and compiled programs.
def _finish_flat(flat, sweep_cap, threshold):
  """Every stage in one program (for a caller under ``jit``, and off CPU):
  the preconditioners of every target (:func:`_prepare`), then the Jacobi
  sweeps of those they leave unconverged (:func:`_sweeps_stage`; the
  others pass through it unchanged, with no sweep). ``flat``: the
  :data:`SNAPSHOT_FIELDS` of ``N`` targets; returns ``(log_sv (N, k),
  bound (N,), sweeps (N,))``."""
  log_sv, bound, needs, m, e, rotation = _prepare(flat)
  swept = _sweeps_stage((m, e, flat[2], rotation, needs), sweep_cap,
                        threshold)
  return (jnp.where(needs[:, None], swept[0], log_sv),
          jnp.where(needs, swept[1], bound), swept[2])


def _one_at_a_time(fn, flat):
  """``lax.map(fn, flat)`` on CPU (one matrix at a time: no ``vmap``),
  :func:`_chunked` elsewhere (an accelerator wants the batch).

  For the preconditioning stages on CPU: their QRs and SVD run one matrix
  at a time there anyway (:mod:`vgrad.nn.linalg`), and their loops stop at
  each matrix's own count, where a batched loop runs every matrix to the
  largest. The unbatched program also traces and compiles ~2x faster.
  """
  if jax.default_backend() == "cpu":
    return jax.lax.map(fn, flat)
  return _chunked(fn, flat)


def _prepare(flat, skip=None):
  """Stages 1-2 and the certificate of ``N`` targets (``flat``: their
  :data:`SNAPSHOT_FIELDS`, then optionally each one's LAPACK-stage basis,
  ``(N, k, k)``): ``(log_sv, bound, needs_sweeps, m, e, rotation_error)``;
  NaN after an overflow. ``(m, e)`` are the preconditioned rows (``k x
  k``) and ``rotation_error`` the LAPACK stage's error, what the Jacobi
  sweeps start from (:func:`_sweeps_stage`). ``skip (N,)``: targets left
  for a later stage (returned as needing it, rows zero); on CPU a real
  branch, one target at a time."""
  def one(args):
    m, e, r, finite = args[:4]
    basis = args[7] if len(args) > 7 else None
    # The determinant decides, target by target, whether the LAPACK stage
    # kept the grading (precondition): the README's main job keeps it at
    # all ten layers (spreads up to e^44, past float64's e^36), and no
    # sweep runs.
    m, e, needs, rotation = precondition(jnp.where(finite, m, 0), e, r,
                                         sums=args[6], basis=basis)
    log_sv, bound = _certify(m, e, jnp.arange(m.shape[0]) < r)
    bound = bound - jnp.log1p(-rotation)
    return (jnp.where(finite, log_sv, jnp.nan),
            jnp.where(finite, bound, jnp.nan), needs & finite, m, e,
            rotation)

  if skip is None:
    return _one_at_a_time(one, flat)

  def later(args):
    m, e = args[0], args[1]
    k = m.shape[0]
    return (jnp.full((k,), jnp.nan, m.dtype), jnp.full((), jnp.nan, m.dtype),
            jnp.array(True), jnp.zeros((k, k), m.dtype), e,
            jnp.zeros((), m.dtype))

  return _one_at_a_time(
      lambda args: jax.lax.cond(args[-1], later, one, args[:-1]),
      tuple(flat) + (skip,))


def _prepare_groups(groups, skip):
  """:func:`_prepare` of ``G x T`` targets (fields ``(G, T, ...)``),
  flattened: one program per ``T``, whatever ``G``."""
  return _prepare(_flatten(groups), skip.reshape(-1))


def _sweeps_stage(flat, sweep_cap, threshold):
  """The Jacobi sweeps (stage 3 of :func:`_jacobi`) and the certificate of
  every target: ``flat`` holds their ``(m, e, rank, rotation_error,
  needs_sweeps)`` from :func:`_prepare` (flattened); a target that needs
  none is only certified again (no sweep)."""
  def one(args):
    m, e, rank, rotation, needs = args
    m, e, count = _sweeps(m, e, rank, sweep_cap, threshold,
                          start=jnp.where(needs, jnp.inf, 0.0))
    log_sv, bound = _certify(m, e, jnp.arange(m.shape[0]) < rank)
    return log_sv, bound - jnp.log1p(-rotation), count
  return _chunked(one, flat)


_finish_core = jax.jit(_finish_flat)
_prepared_core = jax.jit(_prepare)
_prepared_groups_core = jax.jit(_prepare_groups)
_sweeps_core = jax.jit(_sweeps_stage)


def finish(groups, max_sweeps: int, tol):
  """The final stage of ``G x T`` targets: ``groups`` holds their
  :data:`SNAPSHOT_FIELDS` with leading axes ``(G, T)`` (the inputs and the
  target layers); returns ``(log_sv (G T, k) descending, error_bound
  (G T,), sweeps (G T,))``, flattened (:func:`_jacobi`).

  Under a trace, one program (:func:`_finish_flat`). Otherwise staged, on
  CPU one group (then one target) per call on every core
  (:func:`vgrad.probes.host.split_batch`): (1) the LAPACK SVD stage and QR
  steps with their certificate; (2) on CPU (float64 passes), LAPACK's
  Jacobi SVD as the rotation instead (:mod:`vgrad.probes.lapack_jacobi`)
  for the targets graded past float64's resolution: those whose Lyapunov
  sums spread over more than ``JACOBI_SVD_SPREAD`` at widths from
  ``JACOBI_SVD_MIN_WIDTH`` (they skip stage 1) and those stage 1 left
  unconverged; (3) Jacobi sweeps, compiled only
  when a target still needs them (rows beyond float64's range, as at depth
  10 000; off CPU the targets are padded to a size ``2^j`` or ``3 * 2^j``,
  so the program compiles for a few sizes). Every stage's result is
  checked and certified the same way.
  """
  work = groups[0].dtype
  threshold = np.asarray(default_tol(work) if tol is None else tol, work)
  cap = np.asarray(max_sweeps, np.int32)
  if host.is_traced(tuple(groups)):
    return _finish_core(_flatten(groups), cap, threshold)
  cpu = jax.default_backend() == "cpu"
  groups = tuple(np.asarray(buf) for buf in jax.device_get(tuple(groups)))
  flat = _flatten(groups)
  count = len(flat[2])
  jacobi_svd = cpu and work == np.float64 and lapack_jacobi.available()
  direct = np.zeros(count, bool)
  if jacobi_svd:
    sums = np.where(np.isfinite(flat[6]), flat[6], np.nan)
    with np.errstate(all="ignore"):
      spread = np.nanmax(sums, axis=1) - np.nanmin(sums, axis=1)
    eligible = lapack_jacobi.eligible(flat[0], flat[1], flat[2])
    direct = (eligible & (spread > JACOBI_SVD_SPREAD)
              & (flat[0].shape[1] >= JACOBI_SVD_MIN_WIDTH))
  staged = [np.array(o) for o in jax.device_get(host.split_batch(
      _prepared_groups_core, (groups, direct.reshape(groups[2].shape))))]
  needs = staged[2]

  def prepare(index, bases=None):
    """Stages 1-2 again for the targets ``index``, one per call."""
    args = tuple(buf[index] for buf in flat)
    out = jax.device_get(host.split_batch(
        _prepared_core, (args if bases is None else args + (bases,),)))
    for kept, part in zip(staged, out):
      kept[index] = part

  if jacobi_svd:
    (todo,) = np.nonzero(direct | (needs & eligible))
    if todo.size:
      bases, usable = lapack_jacobi.graded_bases(
          flat[0][todo], flat[1][todo], flat[2][todo])
      if usable.any():
        prepare(todo[usable], bases[usable])
      failed = todo[~usable & direct[todo]]
      if failed.size:   # LAPACK failed where it was expected to work
        prepare(failed)
  log_sv, bound = staged[0], staged[1]
  sweeps = np.zeros(count, np.int32)
  (todo,) = np.nonzero(needs)
  if todo.size:
    padded = todo if cpu else np.concatenate(
        [todo, np.repeat(todo[-1:], _bucket(todo.size) - todo.size)])
    rows, exponents, rotation = staged[3], staged[4], staged[5]
    subset = tuple(buf[padded] for buf in (rows, exponents, flat[2],
                                           rotation, needs))
    again = jax.device_get(host.split_batch(
        lambda part: _sweeps_core(part, cap, threshold), (subset,)))
    log_sv[todo], bound[todo], sweeps[todo] = (a[:todo.size] for a in again)
  return log_sv, bound, sweeps


def make_log_spectrum_probe(model: models.MLP, layers=None,
                            max_sweeps: int = DEFAULT_MAX_SWEEPS,
                            tol: float | None = None, dtype=None):
  """A jitted ``probe(params, xs) -> LogSpectra`` for ``xs (B, n_in)``.

  Exact ``log sigma_i(J_{<=l})`` at the target ``layers`` (default
  :func:`default_layers`; the result follows ``check_layers(layers)``'s
  sorted order) and the finite-time Lyapunov sums at every layer, from one
  forward QR pass per input plus at most ``max_sweeps`` Jacobi sweeps per
  target layer (stopping once every row pair's cosine is below ``tol``,
  default ``sqrt(eps)``).

  ``dtype``: the pass's dtype (default the inputs'). The studies pass
  float64 under ``jax.enable_x64``: the network's own float32 ``W_l`` and
  ``h_l``, and ``J_l``'s products, QR and SVD in float64.

  ``probe.forward(params, xs) -> ForwardQR`` runs the forward pass alone
  and ``probe.finish(forward_pass) -> LogSpectra`` the Jacobi stage on it
  (``probe(params, xs)`` is the two): a caller can decide from the pass's
  Lyapunov sums whether it needs the exact values, without a second pass.
  """
  _check_model(model)
  layers = check_layers(default_layers(model.depth) if layers is None
                        else layers, model.depth)
  if int(max_sweeps) != max_sweeps or max_sweeps < 1:
    raise ValueError(f"max_sweeps must be an integer >= 1, got {max_sweeps}")
  return _log_spectrum_probe(model, layers, int(max_sweeps), tol,
                             None if dtype is None else np.dtype(dtype))


# The last probes made (models built from equal settings are equal): asking
# again for a model's probe returns the same jitted functions, already
# compiled for the shapes they saw.
@functools.lru_cache(maxsize=32)
def _log_spectrum_probe(model: models.MLP, layers: tuple[int, ...],
                        max_sweeps: int, tol: float | None, dtype):
  """:func:`make_log_spectrum_probe` of checked arguments."""

  def forward(first, rest, x):
    sums, rank, _, snapshot = _forward(model, first, rest, x, None, layers,
                                       True, dtype)
    return sums, rank, tuple(buf[:-1] for buf in snapshot)

  # Two programs, the forward QR pass (this model's) and the Jacobi stage
  # (module-level, shared by every probe of the same shapes), so that a
  # caller can read the pass's Lyapunov sums (``run.forward``) before
  # deciding to finish (``run.finish``): ``method='auto'`` decides from them
  # without a pass of its own.
  forward_core = jax.jit(jax.vmap(forward, in_axes=(None, None, 0)))

  def run_forward(params, xs) -> ForwardQR:
    """The forward QR pass of every input (sums, rank bounds, the graded
    ``T_l`` at the target layers), on the device."""
    first, rest = stack_layers(model, params)
    return ForwardQR(*host.split_batch(forward_core, (xs,),
                                       shared=(first, rest)))

  def run_finish(forward_pass: ForwardQR) -> LogSpectra:
    """The final stage on ``run.forward``'s pass: the probe's result."""
    sums, rank, snapshot = forward_pass
    b, t = snapshot[0].shape[:2]
    log_sv, bound, sweeps = finish(snapshot, max_sweeps, tol)
    shape = lambda a: a.reshape((b, t) + a.shape[1:])
    return LogSpectra(shape(log_sv), shape(bound), shape(sweeps), sums, rank,
                      snapshot[4], snapshot[5])

  def run(params, xs):
    return run_finish(run_forward(params, xs))
  run.forward, run.finish = run_forward, run_finish
  return run


# Constant of the per-layer rounding term of forward_error_estimate: the
# product J_l Q, the row-sorted QR and the update T <- R T, with room.
FORWARD_ERROR_CONSTANT = 4.0


def forward_error_estimate(conditions, width: int, dtype) -> np.ndarray:
  """First-order relative error of every ``sigma_i(T_l)`` from the forward
  pass's rounding, ``(..., L)``: ``c n u sum_{m <= l} kappa_m``.

  Each step is exact for a ``J_m`` perturbed row by row by at most
  ``c n u`` of each row (row-sorted Householder QR is row-wise backward
  stable, Cox & Higham 1998), i.e. for ``(I + F_m) J_m`` with
  ``||F_m|| <= c n u kappa_m``, ``kappa_m`` the condition number of
  ``J_m`` with unit rows (:func:`vgrad.probes.jacobian
  .row_normalized_conditions`; any ``sqrt(n) kappa(J_m)`` bounds it, van
  der Sluis 1969). Multiplicative perturbations move every singular value
  of the product by at most the product of ``(1 + ||F_m||)`` relatively
  (Eisenstat & Ipsen 1995), to first order the sum. Not a bound where a
  derivative rounded to zero (the studies then use the normwise bound
  ``log_error``).

  Args:
    conditions: ``(..., L)`` the ``kappa_m`` (inf: unknown).
    width: ``n``, the widest layer.
    dtype: the pass's dtype (its unit roundoff ``u``).
  """
  u = float(np.finfo(dtype).eps) / 2
  kappa = np.asarray(conditions, np.float64)
  return FORWARD_ERROR_CONSTANT * width * u * np.cumsum(kappa, axis=-1)


def lyapunov_exponents(partial_sums) -> np.ndarray:
  """``S_{L,i} / L`` sorted descending, from ``(..., L, k)`` partial sums
  (nats per layer; ``-inf`` for exact zeros)."""
  sums = np.asarray(partial_sums, np.float64)
  final = sums[..., -1, :] / sums.shape[-2]
  return -np.sort(-final, axis=-1)


def ginibre_lyapunov_exponents(n: int, sigma_w2: float = 1.0) -> np.ndarray:
  """Lyapunov exponents of products of ``n x n`` Gaussian matrices.

  For ``W_ij ~ N(0, sigma_w2 / n)``, Newman (1986) and Forrester (2015,
  eq. 1.4): ``lambda_i = (1/2) [log(2 sigma_w2 / n) + psi((n - i + 1)/2)]``,
  ``i = 1 .. n``, ``psi`` the digamma function. (By the Bartlett
  decomposition ``(R_l)_ii^2 n / sigma_w2`` is chi^2 with ``n - i + 1``
  degrees of freedom, independently over ``i`` and ``l``, and
  ``E log chi^2_k = log 2 + psi(k / 2)``.)
  """
  dof = n - np.arange(n)
  return 0.5 * (np.log(2 * sigma_w2 / n) + _digamma_half_integer(dof))


def _digamma_half_integer(k: np.ndarray) -> np.ndarray:
  """``psi(k / 2)`` for integers ``k >= 1``, exactly in float64: from
  ``psi(1) = -gamma``, ``psi(1/2) = -gamma - 2 log 2`` and
  ``psi(x + 1) = psi(x) + 1 / x``."""
  k = np.asarray(k)
  out = np.empty(k.shape, np.float64)
  for index, dof in np.ndenumerate(k):
    x = 1.0 if dof % 2 == 0 else 0.5
    value = -np.euler_gamma - (0.0 if dof % 2 == 0 else 2 * math.log(2))
    while x < dof / 2:
      value += 1 / x
      x += 1
    out[index] = value
  return out
