"""Matrix-free Jacobian spectra: Golub-Kahan bidiagonalisation on JVP/VJP.

For a map ``fn: R^n -> R^m`` (e.g. an MLP's input-output map) the Jacobian
``J = d fn / dx`` at ``x`` is never formed: it is touched only through
``v -> J v`` (``jax.linearize``) and ``u -> J^T u`` (``jax.vjp``), each about
the cost of one forward pass. Forming J costs ``n`` such passes (or, by the
layer scan of :mod:`vgrad.probes.jacobian`, ``L`` dense ``N x N`` products)
and its SVD ``O(n^3)``; ``k`` Golub-Kahan steps cost ``2k`` passes plus
``O(k^2 (m + n))``.

Golub-Kahan (upper) bidiagonalisation (Golub & Kahan 1965; Golub & Van Loan,
Matrix Computations, 4th ed., Sec. 10.4) from a unit vector ``v_1``::

    u_j = (J v_j - beta_{j-1} u_{j-1}) / alpha_j,
    v_{j+1} = (J^T u_j - alpha_j v_j) / beta_j,    j = 1 .. k,

with ``alpha_j, beta_j`` the norms, gives orthonormal ``U_k (m, k)``,
``V_{k+1} (n, k+1)`` and the ``k x k`` upper bidiagonal ``B_k``
(diagonal ``alpha``, superdiagonal ``beta_1 .. beta_{k-1}``) with

    J V_k = U_k B_k,    J^T U_k = V_k B_k^T + beta_k v_{k+1} e_k^T.

Hence ``B_k^T B_k = V_k^T J^T J V_k`` is exactly the Lanczos tridiagonal of
``J^T J`` started from ``v_1``, computed without squaring the condition
number; the singular values of ``B_k`` are the Ritz singular values of J.
Extreme ones converge first: the largest within a few tens of steps, the
smallest slowly, since they sit near 0 where the eigenvalues of ``J^T J``
crowd together (unless the small end is graded, well separated relative to
the spectrum's width); at ``k = min(m, n)`` the whole spectrum is exact up
to rounding.

Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017, SIAM J. Matrix Anal.
Appl. 38(4), Sec. 3; Ghorbani, Krishnan & Xiao 2019 used it for Hessian
spectra) turns the same ``B_k`` into the spectral density of ``J^T J``: for a
unit probe ``u`` the spectral measure ``sum_j (q_j^T u)^2 delta(lambda_j)``
of ``J^T J`` is approximated by the k-node Gauss quadrature rule whose nodes
are the Ritz values ``theta_i = sigma_i(B_k)^2`` and whose weights are the
squared first components ``tau_i^2`` of ``B_k``'s right singular vectors
(Golub & Welsch 1969; Golub & Meurant 2010, Ch. 6); averaged over random
probes this is the spectral density (``E[u u^T] = I / n``). The rule matches
the first ``2k - 1`` moments, so it resolves the bulk and the top of the
spectrum but lumps the small end: singular values spread over decades below
``sigma_max`` all sit near 0 in ``sigma^2`` and share a few nodes, so a
density of ``ln sigma`` is only trustworthy down to the smallest Ritz values
(``k`` close to ``n`` resolves it all).

Conventions: vectors are 1-D, ``x`` of shape ``(n,)`` and ``fn(x)`` of shape
``(m,)``; every function is jit-able (step and probe counts are static) and
vmappable over inputs or probes; float32 and float64 follow ``x.dtype``.
"""

from collections.abc import Callable
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vgrad.nn import linalg
from vgrad.nn import models

PRECISION = models.PRECISION

PROBES = ("gaussian", "rademacher")
VARIABLES = ("log", "squared")

Operator = Callable[[jax.Array], jax.Array]


def _check_choice(argument: str, value: str, valid: tuple[str, ...]):
  if value not in valid:
    raise ValueError(f"unknown {argument} {value!r}; valid {argument}s: "
                     f"{', '.join(valid)}")


# --------------------------------------------------------------------------
# Linear operators.

def linear_operators(fn: Callable[[jax.Array], jax.Array],
                     x: jax.Array) -> tuple[Operator, Operator]:
  """``(matvec, rmatvec)`` of the Jacobian of ``fn`` at ``x``.

  Args:
    fn: a map ``R^n -> R^m`` on 1-D arrays, e.g.
      ``lambda z: model.apply(params, z)``.
    x: the point, ``(n,)``.

  Returns:
    ``matvec: (n,) -> (m,)``, ``v -> J v`` by ``jax.linearize`` (forward
    mode, the forward pass is linearised once and reused), and
    ``rmatvec: (m,) -> (n,)``, ``u -> J^T u`` by ``jax.vjp`` (reverse mode).
    Both are linear, jit-able and vmappable over their argument.

  Raises:
    ValueError: ``x`` or ``fn(x)`` is not 1-D.
  """
  if jnp.ndim(x) != 1:
    raise ValueError(f"x must be 1-D (n,), got shape {jnp.shape(x)}")
  y, jvp = jax.linearize(fn, x)
  if y.ndim != 1:
    raise ValueError(f"fn(x) must be 1-D (m,), got shape {y.shape}")
  _, vjp = jax.vjp(fn, x)
  return jvp, lambda u: vjp(u)[0]


def mlp_map(model: models.MLP, params, layer: int | None = None
            ) -> Callable[[jax.Array], jax.Array]:
  """The map ``x_0 -> x_layer`` of an MLP, or ``x_0 -> y`` if layer is None.

  Its Jacobian is ``J_{<=layer} = D_layer W_layer ... D_1 W_1`` (see
  :mod:`vgrad.probes.jacobian`), or the input-output Jacobian ``dy/dx_0``.

  Raises:
    ValueError: ``layer`` not in ``1 .. model.depth``.
  """
  if layer is None:
    return lambda z: model.apply(params, z)
  if not 1 <= layer <= model.depth:
    raise ValueError(f"layer must be in 1 .. {model.depth} (the model's "
                     f"depth), got {layer}")

  def fn(z):
    for l in range(1, layer + 1):
      z = model.apply(params, l, z, method=models.MLP.apply_layer)[0]
    return z
  return fn


# --------------------------------------------------------------------------
# Golub-Kahan bidiagonalisation.

class Bidiagonalization(NamedTuple):
  """The output of :func:`golub_kahan` after k steps.

  Attributes:
    alphas: ``(k,)`` diagonal of the upper bidiagonal ``B_k``.
    betas: ``(k,)``; ``betas[:-1]`` is the superdiagonal of ``B_k`` and
      ``betas[-1] = beta_k`` couples ``B_k`` to the next step (it sets the
      residuals of the Ritz vectors). A zero marks a breakdown (below).
    left: ``(k, m)`` rows ``u_1 .. u_k``, orthonormal.
    right: ``(k + 1, n)`` rows ``v_1 .. v_{k+1}``, orthonormal; ``v_{k+1}``
      is zero when ``k = n`` (there is no room for it).
  """
  alphas: jax.Array
  betas: jax.Array
  left: jax.Array
  right: jax.Array


def bidiagonal_matrix(alphas: jax.Array, betas: jax.Array) -> jax.Array:
  """The ``(k, k)`` upper bidiagonal ``B_k`` from ``alphas, betas (k,)``."""
  return jnp.diag(alphas) + jnp.diag(betas[:-1], 1)


def _orthogonalize(w: jax.Array, basis: jax.Array) -> jax.Array:
  """``w`` minus its projection on the rows of ``basis`` ``(r, d)``.

  Classical Gram-Schmidt applied twice: one pass leaves a component along
  the basis of relative size ``eps * ||w_in|| / ||w_out||``, which is large
  after heavy cancellation; a second pass makes the result orthogonal to
  working precision (Kahan's "twice is enough", Parlett 1998, Ch. 6). Rows of
  ``basis`` that are still zero (not yet filled) do nothing.
  """
  for _ in range(2):
    coefficients = jnp.dot(basis, w, precision=PRECISION)
    w = w - jnp.dot(coefficients, basis, precision=PRECISION)
  return w


def _normalize_or_restart(w: jax.Array, norm: jax.Array, basis: jax.Array,
                          tol: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(w / norm, norm)``, or on breakdown (``norm <= tol``) a fresh vector.

  At a breakdown the Krylov space is (numerically) invariant: ``w`` is
  rounding noise and dividing by its norm could give 0/0. The recurrence
  stays valid with the coupling set to 0 and any unit vector orthogonal to
  ``basis`` in place of ``w`` (``B_k`` becomes block diagonal, each block
  one invariant subspace). The fresh vector is the coordinate vector ``e_i``
  least represented in the basis, orthogonalised: with ``r`` orthonormal
  rows in ``R^d`` the smallest column norm^2 of ``basis`` is at most ``r/d``,
  so the projection keeps norm >= ``sqrt(1 - r/d) >= 1/sqrt(d)`` whenever
  ``r < d``. When the basis already spans ``R^d`` the vector is 0.
  """
  d = w.shape[0]
  i = jnp.argmin(jnp.sum(basis * basis, axis=0))
  # e_i minus its projection (coefficients basis[:, i]), then one more pass.
  fresh = ((jnp.arange(d) == i).astype(w.dtype)
           - jnp.dot(basis[:, i], basis, precision=PRECISION))
  fresh = fresh - jnp.dot(jnp.dot(basis, fresh, precision=PRECISION), basis,
                          precision=PRECISION)
  fresh_norm = jnp.linalg.norm(fresh)
  room = fresh_norm > 0.5 / math.sqrt(d)  # exact value >= 1/sqrt(d) if any
  fresh = jnp.where(room, fresh / jnp.where(room, fresh_norm, 1), 0)
  broke = norm <= tol
  w = jnp.where(broke, fresh, w / jnp.where(broke, 1, norm))
  return w, jnp.where(broke, 0, norm)


def golub_kahan(matvec: Operator, rmatvec: Operator, v0: jax.Array,
                num_steps: int, breakdown_rtol: float | None = None
                ) -> Bidiagonalization:
  """``num_steps`` steps of Golub-Kahan bidiagonalisation of J from ``v0``.

  Full reorthogonalisation: every new ``u_j`` (``v_{j+1}``) is
  orthogonalised against all previous ones. In floating point the
  three-term recurrence alone loses orthogonality as soon as a Ritz value
  converges (Paige 1976): the lost vectors re-enter the Krylov space and
  each converged singular value reappears as spurious copies ("ghosts"),
  while the unconverged ones are found late or never, so ``k = n`` steps
  would not give the spectrum. Storing ``U``, ``V`` and reorthogonalising
  costs ``O(k (m + n))`` memory and ``O(k^2 (m + n))`` flops, far below the
  ``2k`` JVP/VJP passes (``O(k L N^2)`` for an L-layer width-N MLP) as
  long as ``k << L N``.

  Breakdown: when ``alpha_j`` or ``beta_j`` falls to rounding level
  (``<= breakdown_rtol * max(alphas, betas)``), the Krylov space is an
  invariant subspace of ``J^T J`` (an orthogonal linear net has one distinct
  singular value: ``beta_1 = 0``; a zero singular value gives
  ``alpha_j = 0``). The coefficient is set to 0 and the recurrence restarts
  from a fresh vector orthogonal to all previous ones, so ``B_k`` is block
  diagonal, nothing is NaN, and ``k = min(m, n)`` steps still give the
  whole spectrum. Setting a coefficient below ``tol`` to 0 moves the
  singular values of ``B_k`` by at most ``tol`` (Weyl).

  Args:
    matvec: ``v (n,) -> J v (m,)``, linear (see :func:`linear_operators`).
    rmatvec: ``u (m,) -> J^T u (n,)``.
    v0: ``(n,)`` starting vector (any nonzero norm).
    num_steps: k, with ``1 <= k <= min(m, n)``.
    breakdown_rtol: breakdown threshold relative to the largest coefficient
      seen; default ``max(m, n) * eps`` of the dtype (rounding level).

  Returns:
    A :class:`Bidiagonalization` with ``alphas, betas (k,)``,
    ``left (k, m)``, ``right (k + 1, n)``.

  Raises:
    ValueError: ``v0`` not 1-D, or ``num_steps`` outside ``1 .. min(m, n)``.
  """
  if v0.ndim != 1:
    raise ValueError(f"v0 must be 1-D (n,), got shape {v0.shape}")
  n, dtype = v0.shape[0], v0.dtype
  m = jax.eval_shape(matvec, v0).shape[0]
  if not 1 <= num_steps <= min(m, n):
    raise ValueError(f"num_steps must be in 1 .. min(m, n) = {min(m, n)}, "
                     f"got {num_steps}")
  if breakdown_rtol is None:
    breakdown_rtol = max(m, n) * float(jnp.finfo(dtype).eps)
  k = num_steps

  def body(j, carry):
    left, right, alphas, betas, scale = carry
    v = right[j]
    # At j = 0 both betas[0] and left[0] are still zero: no previous term.
    prev = jnp.maximum(j - 1, 0)
    u = matvec(v) - betas[prev] * left[prev]
    u = _orthogonalize(u, left)
    alpha = jnp.linalg.norm(u)
    scale = jnp.maximum(scale, alpha)
    u, alpha = _normalize_or_restart(u, alpha, left,
                                     breakdown_rtol * scale)
    left = left.at[j].set(u)
    w = rmatvec(u) - alpha * v
    w = _orthogonalize(w, right)
    beta = jnp.linalg.norm(w)
    scale = jnp.maximum(scale, beta)
    w, beta = _normalize_or_restart(w, beta, right, breakdown_rtol * scale)
    right = right.at[j + 1].set(w)
    return (left, right, alphas.at[j].set(alpha), betas.at[j].set(beta),
            scale)

  v0_norm = jnp.linalg.norm(v0)
  v1 = v0 / jnp.where(v0_norm > 0, v0_norm, 1)
  init = (jnp.zeros((k, m), dtype),
          jnp.zeros((k + 1, n), dtype).at[0].set(v1),
          jnp.zeros((k,), dtype), jnp.zeros((k,), dtype),
          jnp.zeros((), dtype))
  left, right, alphas, betas, _ = jax.lax.fori_loop(0, k, body, init)
  return Bidiagonalization(alphas, betas, left, right)


class Ritz(NamedTuple):
  """Ritz singular values of J from ``B_k``, in descending order.

  Attributes:
    singular_values: ``(k,)`` the singular values of ``B_k``.
    error_bounds: ``(k,)`` residual bounds ``r_i / sqrt(2)``: each interval
      ``[sigma_i - bound_i, sigma_i + bound_i]`` holds a singular value of J
      (or 0 when ``m != n``); see :func:`ritz_decomposition`.
    weights: ``(k,)`` Gauss quadrature weights ``tau_i^2`` (sum to 1), the
      squared first components of ``B_k``'s right singular vectors.
  """
  singular_values: jax.Array
  error_bounds: jax.Array
  weights: jax.Array


def ritz_decomposition(alphas: jax.Array, betas: jax.Array) -> Ritz:
  """Ritz values, residual error bounds and quadrature weights of ``B_k``.

  With ``B_k = P diag(sigma) Q^T``, the Ritz vectors ``y_i = V_k q_i``,
  ``z_i = U_k p_i`` satisfy (from the relations in the module docstring)

      J y_i = sigma_i z_i,    J^T z_i = sigma_i y_i + beta_k P[k, i] v_{k+1},

  so the unit vector ``w = (z_i, y_i) / sqrt(2)`` has residual
  ``||H w - sigma_i w|| = r_i / sqrt(2)``, ``r_i = |beta_k P[k, i]|``, for the
  symmetric ``H = [[0, J], [J^T, 0]]`` whose eigenvalues are ``+-sigma_j(J)``
  (and ``|m - n|`` zeros). For a symmetric matrix some eigenvalue lies within
  the residual norm ``||H w - mu w||`` of any unit w and scalar mu (Parlett
  1998, Sec. 4.5), and
  ``-sigma_j`` is at distance >= sigma_i, so a singular value of J lies in
  ``sigma_i +- r_i / sqrt(2)``. The bound needs no gap; which singular value
  it is follows from interlacing: ``sigma_i(B_k) <= sigma_i(J)`` for the
  i-th largest and ``sigma_{k+1-i}(B_k) >= sigma_{n+1-i}(J)`` for the i-th
  smallest when ``m >= n`` (Cauchy, as ``B_k^T B_k`` is a compression of
  ``J^T J``). It assumes exact arithmetic with orthonormal ``U, V`` (full
  reorthogonalisation keeps them so to working precision): the bounds do
  not include the rounding floor of the JVP/VJP, about ``eps ||J||`` times
  a modest factor (``L sqrt(N)`` for an L-layer width-N chain), and a
  converged bound is often exactly 0.

  Args:
    alphas, betas: ``(k,)`` from :func:`golub_kahan` (or their first j
      entries, the bidiagonal after j steps).

  Returns:
    :class:`Ritz`, each field ``(k,)``, singular values descending.
  """
  left_vectors, sv, right_t = linalg.svd(bidiagonal_matrix(alphas, betas))
  bounds = jnp.abs(betas[-1] * left_vectors[-1, :]) / math.sqrt(2)
  return Ritz(sv, bounds, right_t[:, 0] ** 2)


class ExtremeSingularValues(NamedTuple):
  """The k largest and k smallest Ritz singular values with error bounds.

  Attributes:
    largest: ``(k,)`` descending; ``largest[i] <= sigma_{i+1}(J)``.
    largest_bounds: ``(k,)`` residual bound of each (:class:`Ritz`).
    smallest: ``(k,)`` ascending; ``smallest[i] >= sigma_{n-i}(J)`` if m >= n.
    smallest_bounds: ``(k,)``.
  """
  largest: jax.Array
  largest_bounds: jax.Array
  smallest: jax.Array
  smallest_bounds: jax.Array


def extreme_singular_values(fn: Callable[[jax.Array], jax.Array],
                            x: jax.Array, key: jax.Array, num_steps: int,
                            k: int) -> ExtremeSingularValues:
  """Extreme singular values of ``J = d fn / dx`` at ``x``, matrix-free.

  ``num_steps`` Golub-Kahan steps from a Gaussian start vector, then the SVD
  of the small bidiagonal. The largest Ritz values converge fast (their
  bounds fall geometrically with the step count at a rate set by the gap to
  the rest of the spectrum relative to its width); the smallest converge
  slowly unless the spectrum is graded. ``num_steps = min(m, n)`` gives the
  exact spectrum (bounds at rounding level). The bounds are residual
  bounds in exact arithmetic; see :func:`ritz_decomposition` for the
  rounding floor.

  Args:
    fn: ``R^n -> R^m`` on 1-D arrays.
    x: ``(n,)``.
    key: PRNG key for the start vector.
    num_steps: Golub-Kahan steps, ``1 .. min(m, n)``.
    k: how many of each end, ``1 .. num_steps``.

  Returns:
    :class:`ExtremeSingularValues`, each field ``(k,)`` in ``x.dtype``.

  Raises:
    ValueError: ``k`` outside ``1 .. num_steps`` (or as :func:`golub_kahan`).
  """
  if not 1 <= k <= num_steps:
    raise ValueError(f"k must be in 1 .. num_steps = {num_steps}, got {k}")
  matvec, rmatvec = linear_operators(fn, x)
  v0 = jax.random.normal(key, x.shape, x.dtype)
  gk = golub_kahan(matvec, rmatvec, v0, num_steps)
  ritz = ritz_decomposition(gk.alphas, gk.betas)
  sv, bounds = ritz.singular_values, ritz.error_bounds
  return ExtremeSingularValues(sv[:k], bounds[:k], sv[::-1][:k],
                               bounds[::-1][:k])


# --------------------------------------------------------------------------
# Stochastic Lanczos quadrature.

def sample_probes(key: jax.Array, num_probes: int, n: int, dtype,
                  probe: str = "rademacher") -> jax.Array:
  """``(num_probes, n)`` random probe vectors, ``E[v v^T] = I``.

  ``'rademacher'``: entries +-1; ``'gaussian'``: entries N(0, 1).

  Raises:
    ValueError: unknown ``probe``.
  """
  _check_choice("probe", probe, PROBES)
  if probe == "gaussian":
    return jax.random.normal(key, (num_probes, n), dtype)
  return jax.random.rademacher(key, (num_probes, n), dtype)


class Quadrature(NamedTuple):
  """Gauss quadrature rules of the spectral measure of ``J^T J``, per probe.

  Attributes:
    singular_values: ``(P, k)`` Ritz singular values; the nodes are their
      squares ``theta = sigma^2``.
    weights: ``(P, k)`` nonnegative, each row sums to 1.
  """
  singular_values: jax.Array
  weights: jax.Array


def lanczos_quadrature(matvec: Operator, rmatvec: Operator,
                       probes: jax.Array, num_steps: int) -> Quadrature:
  """The k-node Gauss rule for ``u_p^T f(J^T J) u_p``, ``u_p = v_p/||v_p||``.

  ``sum_i weights[p, i] f(singular_values[p, i]^2)`` equals
  ``u_p^T f(J^T J) u_p`` exactly for every polynomial f of degree
  ``<= 2k - 1`` (Golub & Meurant 2010, Ch. 6; after a breakdown the
  first block of ``B_k`` spans an invariant subspace containing u_p and the
  rule is exact for every f). Golub-Kahan runs vmapped over the probes, so
  the JVP/VJP are batched matrix products.

  Args:
    matvec, rmatvec: as for :func:`golub_kahan`.
    probes: ``(P, n)``.
    num_steps: k.

  Returns:
    :class:`Quadrature` with fields ``(P, k)``.
  """
  def one(v0):
    gk = golub_kahan(matvec, rmatvec, v0, num_steps)
    ritz = ritz_decomposition(gk.alphas, gk.betas)
    return ritz.singular_values, ritz.weights
  return Quadrature(*jax.vmap(one)(probes))


def quadrature_moments(quadrature: Quadrature) -> tuple[jax.Array, jax.Array]:
  """SLQ estimates of ``tr(J^T J)/n`` and ``tr((J^T J)^2)/n``, and errors.

  Per probe the rule gives ``u^T (J^T J)^p u`` for p = 1, 2 exactly when
  ``k >= 1`` resp. ``k >= 2`` (degree ``p <= 2k - 1``): with ``k >= 2`` steps
  both moments are the Hutchinson estimates, exact up to probe noise. Unit
  probes are unbiased, ``E[u^T A u] = tr(A) / n``, for Rademacher (``||v||^2
  = n``) and Gaussian probes (``u`` uniform on the sphere).

  Returns:
    ``(moments (2,), standard_errors (2,))``: the means over probes and the
    sample standard deviation over probes divided by ``sqrt(P)`` (0 for
    P = 1).
  """
  theta = quadrature.singular_values ** 2
  per_probe = jnp.stack([jnp.sum(quadrature.weights * theta, axis=-1),
                         jnp.sum(quadrature.weights * theta ** 2, axis=-1)])
  num_probes = per_probe.shape[1]
  spread = (jnp.std(per_probe, axis=1, ddof=1) if num_probes > 1
            else jnp.zeros((2,), per_probe.dtype))
  return jnp.mean(per_probe, axis=1), spread / math.sqrt(num_probes)


def mixture_density(nodes: jax.Array, weights: jax.Array, grid: jax.Array,
                    kernel_width) -> jax.Array:
  """``(1/P) sum_{p,i} weights[p,i] N(grid; nodes[p,i], kernel_width^2)``.

  Args:
    nodes, weights: ``(P, k)``.
    grid: ``(G,)`` evaluation points.
    kernel_width: the Gaussian kernel's standard deviation (> 0).

  Returns:
    ``(G,)``; integrates to ``mean_p sum_i weights[p, i]`` over the line.
  """
  z = (grid[None, None, :] - nodes[:, :, None]) / kernel_width
  kernels = jnp.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * kernel_width)
  return jnp.sum(weights[:, :, None] * kernels, axis=(0, 1)) / nodes.shape[0]


def _spectral_variable(singular_values: jax.Array, variable: str):
  if variable == "squared":
    return singular_values ** 2
  tiny = jnp.finfo(singular_values.dtype).tiny
  return jnp.log(jnp.maximum(singular_values, tiny))


class SpectralDensity(NamedTuple):
  """The output of :func:`spectral_density`.

  Attributes:
    density: ``(G,)`` on the grid.
    moments: ``(2,)`` SLQ estimates of ``tr(J^T J)/n``, ``tr((J^T J)^2)/n``.
    moment_errors: ``(2,)`` their standard errors over the probes.
    quadrature: the per-probe :class:`Quadrature`, ``(P, k)``.
  """
  density: jax.Array
  moments: jax.Array
  moment_errors: jax.Array
  quadrature: Quadrature


def spectral_density(fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                     key: jax.Array, num_probes: int, num_steps: int,
                     grid: jax.Array, kernel_width, variable: str = "log",
                     probe: str = "rademacher") -> SpectralDensity:
  """Stochastic Lanczos quadrature density of the spectrum of ``J^T J``.

  Ubaru, Chen & Saad (2017), Sec. 3, with a Gaussian kernel in place of
  each delta: the density of the eigenvalues ``lambda_j = sigma_j^2`` of
  ``J^T J`` (``n`` of them, ``n - m`` zeros when ``m < n``) is estimated as

      rho(t) = (1/P) sum_p sum_i tau_{p,i}^2 N(t; g(sigma_{p,i}), width^2),

  a mixture over each probe's Ritz values weighted by the Gauss weights
  (squared first eigenvector components of the Lanczos tridiagonal
  ``B_k^T B_k``). ``variable='log'`` puts the kernels on ``g = ln sigma``
  (the scale on which deep-net spectra spread, over decades; exact zeros go
  to ``ln(tiny)``, off any sensible grid), ``'squared'`` on ``g = sigma^2``.
  Each probe's weights sum to 1, so the density integrates to 1.

  Args:
    fn: ``R^n -> R^m`` on 1-D arrays.
    x: ``(n,)``.
    key: PRNG key for the probes.
    num_probes: P.
    num_steps: Lanczos steps per probe, ``1 .. min(m, n)`` (>= 2 for the
      second moment to be exact per probe).
    grid: ``(G,)`` points at which to evaluate the density.
    kernel_width: the kernel's standard deviation, in units of ``g``.
    variable: one of ``VARIABLES``.
    probe: one of ``PROBES``.

  Returns:
    :class:`SpectralDensity`.

  Raises:
    ValueError: unknown ``variable`` or ``probe``, ``num_probes < 1``.
  """
  _check_choice("variable", variable, VARIABLES)
  _check_choice("probe", probe, PROBES)
  if num_probes < 1:
    raise ValueError(f"num_probes must be >= 1, got {num_probes}")
  matvec, rmatvec = linear_operators(fn, x)
  probes = sample_probes(key, num_probes, x.shape[0], x.dtype, probe)
  quadrature = lanczos_quadrature(matvec, rmatvec, probes, num_steps)
  moments, errors = quadrature_moments(quadrature)
  nodes = _spectral_variable(quadrature.singular_values, variable)
  density = mixture_density(nodes, quadrature.weights,
                            jnp.asarray(grid, x.dtype), kernel_width)
  return SpectralDensity(density, moments, errors, quadrature)


def exact_density(singular_values: jax.Array, grid: jax.Array, kernel_width,
                  variable: str = "log") -> jax.Array:
  """The same kernel density for a known spectrum ``(n,)``, weights 1/n.

  What :func:`spectral_density` estimates, for comparison with a dense SVD.
  """
  _check_choice("variable", variable, VARIABLES)
  nodes = _spectral_variable(singular_values, variable)[None, :]
  weights = jnp.full(nodes.shape, 1 / nodes.shape[1], nodes.dtype)
  return mixture_density(nodes, weights, jnp.asarray(grid, nodes.dtype),
                         kernel_width)
