"""Free-probability spectrum of the input-output Jacobian at the fixed point.

Pennington, Schoenholz & Ganguli (2017), "Resurrecting the sigmoid in deep
learning through dynamical isometry" (NeurIPS; arXiv:1711.04735, Sec. 2-3)
and (2018), "The emergence of spectral universality in deep networks"
(AISTATS; arXiv:1802.09979, Sec. 2-3). Everything below is re-derived here.

Setting. ``depth = L`` hidden layers of width N (:mod:`vgrad.nn.models`),

    J = D_L W_L ... D_1 W_1,   D_l = diag(phi'(h_l)),

with every pre-activation h_l ~ N(0, q) entrywise, q = q* the mean-field
fixed point (the caller supplies it), and W_l either Gaussian,
W_ij ~ N(0, sigma_w2 / N), or sqrt(sigma_w2) * Haar-orthogonal (the
weight variance sigma_w2 = sigma_w^2 throughout). The object is the law rho
of lambda = sigma^2, the eigenvalues of J J^T (squared singular values of
J), as N -> infinity at fixed L.

Transforms (of a law rho on [0, inf) with moments m_k):

    G(zeta) = int rho(l) / (zeta - l) dl                 (Stieltjes)
    psi(z)  = int z l / (1 - z l) drho(l) = sum_k m_k z^k (moment gen. fn.)
    G(zeta) = (1 + psi(1 / zeta)) / zeta                 (l/(zeta-l) = ...)
    chi     = psi^{-1},   S(z) = chi(z) (1 + z) / z      (S-transform)

and rho(x) = -Im G(x + i0) / pi. For free A, B: S_AB = S_A S_B. Assuming
(as the papers do, and as holds for N -> infinity) that the D_l^2 and the
W_l^T W_l are asymptotically free, cyclicity of the trace gives

    S_{JJ^T}(z) = prod_l S_{W^T W}(z) S_{D^2}(z) = [S_{W^T W}(z) S_{D^2}(z)]^L.

Factors. Gaussian: W^T W is Marchenko-Pastur with ratio 1 scaled by
sigma_w2, whose psi solves psi = sigma_w2 z (1 + psi)^2, i.e. chi(psi) =
psi / (sigma_w2 (1 + psi)^2) and S = 1 / (sigma_w2 (1 + z)). Orthogonal:
W^T W = sigma_w2 I, psi = sigma_w2 z / (1 - sigma_w2 z), S = 1 / sigma_w2.
D^2: the law of v = phi'(sqrt(q) z)^2, z ~ N(0, 1), discretised by the
n-point Gauss-Hermite rule of :mod:`vgrad.theory.quadrature` into atoms v_i with
probabilities p_i (:func:`squared_derivative_distribution`), so that
psi_D(w) = sum_i p_i w v_i / (1 - w v_i).

Moments (the papers' m1, m2 and s1). If psi = m1 z + m2 z^2 + O(z^3), its
inverse is chi(w) = w / m1 - m2 w^2 / m1^3 + O(w^3), hence

    S(w) = (1 / m1) [1 + (1 - m2 / m1^2) w + O(w^2)].

Write S_{W^T W} = sigma_w2^{-1} (1 + s1 z + ...): s1 = 1 - 2 = -1 for
Gaussian (MP moments 1, 2), 0 for orthogonal; and S_{D^2} = mu1^{-1}
(1 + (1 - mu2 / mu1^2) z + ...) with mu_k = E[phi'(sqrt(q) z)^{2k}]. The L-th
power of the product is (sigma_w2 mu1)^{-L} [1 + L (1 + s1 - mu2 / mu1^2) z
+ O(z^2)], and matching with the general expansion gives

    m1 = chi^L,  chi = sigma_w2 mu1,
    m2 / m1^2 - 1 = L (mu2 / mu1^2 - 1 - s1),

the variance of lambda over m1^2 (Pennington et al. 2017, Sec. 3: m1 and
m2 of J J^T). Linear Gaussian nets give the Fuss-Catalan moments m2 = L + 1.

Density. Call r = S_{W^T W}(psi) S_{D^2}(psi) the per-layer factor and
w = chi_D(psi) (so S_{D^2}(psi) = w (1 + psi) / psi). Then chi_J(psi) = z
reads r^L = z (1 + psi) / psi, while

    Gaussian: r = w / (sigma_w2 psi),  orthogonal: r = w (1 + psi) /
    (sigma_w2 psi),

so w is explicit in psi once the L-th root is fixed:

    w(psi) = sigma_w2 psi r  [/ (1 + psi) for orthogonal],
    r = exp{[log(1 + 1/psi) - log zeta] / L},    z = 1 / zeta.

What is left is one complex equation psi_D(w(psi)) = psi, no inner solve
(w is the subordination function: psi_J(z) = psi_D(w(z))). With
1 + psi_D(w) = p0 + B(w), B(w) = sum_{v_i > 0} p_i / (1 - w v_i), and
p0 = P(v = 0), the unknown is omega = 1 + psi - p0 = zeta G_c(zeta), G_c
the Stieltjes transform of the continuous part; it goes to 0 with lambda
without cancellation (psi -> p0 - 1 does not). Newton's method solves

    g(omega) = (B(w) - omega) / psi = 0.

Dividing by psi removes the spurious root psi = 0 of B - omega and keeps
g -> -1 (not 0) as omega -> infinity; convergence is judged by
|B - omega| / |omega| < 1e-8.

Branch. Im zeta > 0 gives Im psi < 0 (each term l / (zeta - l) of psi has
negative imaginary part), so 1 + 1/psi lies in the upper half-plane. Its
log is taken continuous there (cut on the negative imaginary axis, since in
spectral gaps 1 + 1/psi reaches the negative real axis); for zeta -> inf
this is the root r -> 1 / chi of the series and, by continuity, the
physical one everywhere. The solve is continued in Im zeta, vectorised
over x (instead of stepping inward in x): start at zeta = x + i E0, E0 ten
times the upper edge, where psi ~ m1 z + m2 z^2, shrink Im zeta by 4 per
stage down to eta x, with backtracking Newton steps (halved until |g|
decreases and 1 + 1/psi stays in the upper half-plane).

Broadening. At zeta = x (1 + i eta) the result is exactly rho convolved
with a Cauchy kernel of half-width eta x: by |G(x + i eps) - G(x + i0)| <=
eps sup|G'|, O(eta) relative in the bulk (for Marchenko-Pastur exactly
2 eta / (4 - x) to first order) and O(sqrt(eta x)) at a square-root edge.
Default eta = 1e-7.

Atoms. An atom of a free product of L factors sits at the product of
atoms a_l with mass sum_l mu_l({a_l}) - (L - 1) when that is positive, and
at 0 with the largest of the factors' masses at 0 (rank J = min_l rank D_l
for generic W_l). W^T W has no atom if Gaussian, so then the only atom is
p0 at 0 (1/2 for ReLU, none for tanh). If orthogonal, W^T W = sigma_w2 I and
each atom v of the D^2 law with P(v) > 1 - 1/L gives an atom at
(sigma_w2 v)^L of mass 1 - L (1 - P(v)): all of them at L = 1, sigma_w2^L
with mass 1 for a linear net, the top of hard tanh for small L. Each atom
(a, m) contributes m / (zeta - a) to G; the density returned is -Im of G
minus these, over pi, and integrates to 1 - sum m (:func:`spectral_atoms`).
A smooth activation's D^2 law is a sum of n atoms here, so an orthogonal
net at small L is close to atomic; raise ``num_points`` to smooth it.

Upper edge. For x above the spectrum psi is real positive and chi_J(psi)
is real; the edge is 1 / max_{psi > 0} chi_J(psi), searched over w in
(0, 1 / max v), where psi = psi_D(w) is explicit.

Measurement. :func:`measured_moments` and :func:`variance_ratio` compute
the same quantities from probed singular values
(:func:`vgrad.probes.jacobian.make_input_output_probe`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import activations as activations_lib
from vgrad.theory import meanfield
from vgrad.theory import quadrature

Array = jax.Array
ActivationLike = str | activations_lib.Activation

WEIGHTS = ("gaussian", "orthogonal")
DEFAULT_POINTS = quadrature.DEFAULT_POINTS
# Relative broadening: Im zeta = eta x (module docstring, "Broadening").
DEFAULT_ETA = 1e-7
SPACINGS = ("linear", "log")

_S1 = {"gaussian": -1.0, "orthogonal": 0.0}
_RATIO = 0.25       # Im zeta shrinks by this factor per continuation stage.
_STAGE_STEPS = 3    # Newton steps per stage.
_FINAL_STEPS = 60   # At most this many more at the target Im zeta.
_NEGLIGIBLE = 1e-16  # Host D^2 atoms below this probability are dropped.
_TOL = 1e-8         # Relative error of omega accepted as converged.


def _as_activation(activation: ActivationLike) -> activations_lib.Activation:
  if isinstance(activation, str):
    activation = activations_lib.get_activation(activation)
  if activation.is_maxout:
    raise ValueError("activation must be elementwise: maxout's Jacobian is "
                     "a row selection, not diag(phi') W")
  return activation


def _check_weights(weights: str) -> str:
  if weights not in WEIGHTS:
    raise ValueError(f"unknown weights {weights!r}; valid values: "
                     f"{', '.join(WEIGHTS)}")
  return weights


def _check_depth(depth) -> int:
  if int(depth) != depth or depth < 1:
    raise ValueError(f"depth must be an integer >= 1, got {depth}")
  return int(depth)


def _check_positive(name: str, value):
  # Traced values (under jit) cannot be checked; concrete ones are.
  if isinstance(value, (int, float)) and not (value >= 0
                                              and math.isfinite(value)):
    raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def squared_derivative_distribution(
    activation: ActivationLike, q, num_points: int = DEFAULT_POINTS,
    dtype=None) -> tuple[Array, Array]:
  """The law of ``v = phi'(sqrt(q) z)^2``, z ~ N(0, 1), as a discrete measure.

  The atoms are the nodes of :func:`vgrad.theory.quadrature.activation_rule`
  (cut at 0, at the activation's kinks and at its scale points, none on a
  kink) mapped through ``phi'^2``; ReLU gets ``P(v = 0) = P(v = 1) = 1/2``
  (to rounding: the rule is symmetric).

  Args:
    activation: an elementwise activation or its registry name.
    q: pre-activation variance (the fixed point q*), >= 0.
    num_points: sets the rule's size (about ``num_points / 2`` nodes per
      piece, at least 40).
    dtype: float dtype (JAX's default float if None).

  Returns:
    ``(values (n,), weights (n,))`` with ``sum(weights) = 1``.
  """
  activation = _as_activation(activation)
  _check_positive("q", q)
  # Split at the activation's breakpoints: one Gauss-Hermite rule would sum
  # across hard tanh's jumps of phi' (m1 came out 0.73-2.67 for a true 1).
  z, w = quadrature.activation_rule(activation.breakpoints, q, num_points,
                                    dtype)
  return jnp.square(activation.deriv(jnp.sqrt(q) * z)), w


def _derivative_moment(activation: ActivationLike, q, k,
                       num_points: int = DEFAULT_POINTS, dtype=None) -> Array:
  """``mu_k = E[phi'(sqrt(q) z)^(2k)]``: the one
  :func:`vgrad.theory.meanfield.derivative_moment`, on this module's
  ``num_points``-node rule (not mean field's finer default), so the
  predicted moments are those of the discrete law behind the predicted
  density. ``chi = sigma_w2 mu_1`` is the gradient gain per layer."""
  activation = _as_activation(activation)
  _check_positive("q", q)
  return meanfield.derivative_moment(activation, q, k,
                                     num_points=num_points, dtype=dtype)


def atom_at_zero(activation: ActivationLike, q,
                 num_points: int = DEFAULT_POINTS, dtype=None) -> Array:
  """Mass at lambda = 0 of the J J^T spectrum: ``P(phi'(sqrt(q) z) = 0)``.

  The same at every depth and for both weight laws: the atom at 0 of a free
  product is the largest of its factors', and W^T W has none (module
  docstring, "Atoms"). 1/2 for ReLU, 0 for smooth activations (a mass
  below 1e-16, from tail nodes where phi'^2 underflows, is reported as 0).
  Orthogonal nets can have atoms elsewhere too: :func:`spectral_atoms`.
  """
  values, weights = squared_derivative_distribution(activation, q,
                                                    num_points, dtype)
  mass = jnp.sum(jnp.where(values == 0, weights, 0.0))
  # phi'^2 can underflow to 0 at far tail nodes (tanh in float32).
  return jnp.where(mass > _NEGLIGIBLE, mass, 0.0)


def s1(weights: str) -> float:
  """First S-transform coefficient of ``W^T W`` normalised to unit mean.

  ``S(z) = 1 + s1 z + ...``: -1 for Gaussian (Marchenko-Pastur, ratio 1),
  0 for orthogonal (Pennington et al. 2017, Sec. 3).
  """
  return _S1[_check_weights(weights)]


def predicted_moments(activation: ActivationLike, q, sigma_w2, depth,
                      weights: str, num_points: int = DEFAULT_POINTS,
                      dtype=None) -> tuple[Array, Array]:
  """``(m1, m2)``: the first two moments of the squared singular values.

  ``m1 = chi^L`` with ``chi = sigma_w2 mu_1`` and ``m2 = m1^2 [1 + L (mu_2 /
  mu_1^2 - 1 - s1)]`` (Pennington et al. 2017, Sec. 3; derived in the
  module docstring from the S-transform series).
  """
  _check_positive("sigma_w2", sigma_w2)
  m1 = (sigma_w2 * _derivative_moment(activation, q, 1, num_points,
                                      dtype)) ** depth
  ratio = predicted_variance_ratio(activation, q, sigma_w2, depth, weights,
                                   num_points, dtype)
  return m1, m1 ** 2 * (1 + ratio)


def predicted_variance_ratio(activation: ActivationLike, q, sigma_w2, depth,
                             weights: str, num_points: int = DEFAULT_POINTS,
                             dtype=None) -> Array:
  """``Var[lambda] / m1^2 = m2 / m1^2 - 1 = L (mu_2 / mu_1^2 - 1 - s1)``.

  At a given q it does not depend on ``sigma_w2``; 0 means every squared
  singular value equals m1 (dynamical isometry as N -> infinity). Computed
  directly, not from m2 / m1^2, so it is exact for linear nets.
  """
  del sigma_w2  # Cancels between m2 and m1^2.
  if isinstance(depth, int):
    _check_depth(depth)
  s = s1(weights)
  mu1 = _derivative_moment(activation, q, 1, num_points, dtype)
  mu2 = _derivative_moment(activation, q, 2, num_points, dtype)
  return depth * (mu2 / mu1 ** 2 - 1 - s)


def measured_moments(singular_values) -> tuple[Array, Array]:
  """``(mean(s^2), mean(s^4))`` pooled over all of ``singular_values``."""
  squared = jnp.square(jnp.asarray(singular_values))
  return jnp.mean(squared), jnp.mean(jnp.square(squared))


def variance_ratio(singular_values) -> Array:
  """``mean(s^4) / mean(s^2)^2 - 1`` over the last axis.

  Args:
    singular_values: ``(..., n)``, e.g. ``(B, n)`` from one probe call (one
      ratio per Jacobian); flatten a network's inputs into the last axis to
      pool them.

  Returns:
    ``(...)``: the empirical Var[lambda] / mean(lambda)^2 of each spectrum.
  """
  squared = jnp.square(jnp.asarray(singular_values))
  m1 = jnp.mean(squared, axis=-1)
  return jnp.mean(jnp.square(squared), axis=-1) / jnp.square(m1) - 1


# Host-side (NumPy, complex128) spectral density.


def _log_upper(a):
  """``log a``, continuous on the closed upper half-plane.

  The cut is on the negative imaginary axis instead of the negative real
  axis: ``1 + 1/psi`` sits in the upper half-plane and reaches the negative
  real axis in spectral gaps.
  """
  return np.log(-1j * a) + 0.5j * np.pi


class _Law:
  """The D^2 law on the host: atoms at v > 0 (merged) and the mass at 0."""

  def __init__(self, activation: ActivationLike, q, num_points: int):
    with jax.enable_x64(True):
      values, probs = squared_derivative_distribution(
          activation, float(q), num_points, jnp.float64)
    values, probs = np.asarray(values), np.asarray(probs)
    self.p0 = float(np.sum(probs[values == 0]))
    self.p0 = self.p0 if self.p0 > _NEGLIGIBLE else 0.0  # As atom_at_zero.
    # Equal values (phi'^2 is even for odd phi) are merged, and atoms with
    # probability < 1e-16 (far Gauss-Hermite tails) dropped: they move no
    # moment by more than that, and halve the cost of every evaluation.
    keep = (values > 0) & (probs > _NEGLIGIBLE)
    unique, index = np.unique(values[keep], return_inverse=True)
    self.values = unique
    self.probs = np.bincount(index, probs[keep], len(unique))
    self.mu1 = float(self.probs @ self.values)
    self.mu2 = float(self.probs @ self.values ** 2)
    if not self.mu1 > 0:
      raise ValueError(f"phi'(sqrt(q) z) is 0 almost surely at q={q}: the "
                       "Jacobian vanishes")

  def mgf(self, w):
    """``psi_D(w) = sum_i p_i w v_i / (1 - w v_i)`` for ``w (m,)``."""
    return w * ((1 / (1 - w[:, None] * self.values[None, :]))
                @ (self.probs * self.values))

  def resolvent(self, w):
    """``B(w) = sum_{v_i > 0} p_i / (1 - w v_i)`` and ``B'(w)``, ``w (m,)``.

    ``1 + psi_D(w) = p0 + B(w)``: written this way it keeps its relative
    accuracy when it is small (lambda -> 0).
    """
    inverse = 1 / (1 - w[:, None] * self.values[None, :])
    return (inverse @ self.probs,
            np.square(inverse) @ (self.probs * self.values))


class _Problem:
  """chi_J as a function of psi through the explicit subordination w(psi).

  The unknown is ``omega = 1 + psi - p0 = zeta G_continuous(zeta)``, which
  stays relatively accurate as lambda -> 0 where psi -> p0 - 1.
  """

  def __init__(self, activation, q, sigma_w2, depth, weights, num_points):
    q, sigma_w2 = float(q), float(sigma_w2)
    _check_positive("q", q)
    if not (sigma_w2 > 0 and math.isfinite(sigma_w2)):
      raise ValueError(f"sigma_w2 must be a finite number > 0, got "
                       f"{sigma_w2}")
    self.law = _Law(activation, q, num_points)
    self.sigma_w2 = sigma_w2
    self.depth = _check_depth(depth)
    self.orthogonal = _check_weights(weights) == "orthogonal"
    chi = self.sigma_w2 * self.law.mu1
    self.m1 = chi ** self.depth
    self.m2 = self.m1 ** 2 * (1 + self.depth * (
        self.law.mu2 / self.law.mu1 ** 2 - 1 - s1(weights)))

  def atoms(self) -> tuple[np.ndarray, np.ndarray]:
    """Locations and masses of the atoms of J J^T (module docstring)."""
    locations, masses = [], []
    if self.law.p0 > 0:
      locations.append(0.0)
      masses.append(self.law.p0)
    if self.orthogonal:
      # 1e-12: P(v) = 1/2 (ReLU-like) at L = 2 is 0 up to rounding.
      excess = 1 - self.depth * (1 - self.law.probs)
      keep = excess > 1e-12
      for v, mass in zip(self.law.values[keep], excess[keep]):
        locations.append((self.sigma_w2 * v) ** self.depth)
        masses.append(mass)
    return np.array(locations), np.array(masses)

  def residual(self, omega, log_zeta):
    """``g = (B(w) - omega) / psi``, ``g'`` and ``|B - omega| / |omega|``.

    ``B(w) = omega`` is ``psi_D(w(psi)) = psi``. Dividing by psi removes the
    spurious root psi = 0 and keeps g -> -1 as omega -> infinity; the last
    output is the relative error of omega that convergence is judged by.
    """
    depth, phi = self.depth, omega + self.law.p0
    psi = phi - 1
    w = self.sigma_w2 * psi * np.exp((_log_upper(phi / psi) - log_zeta)
                                     / depth)
    dlog_w = 1 / psi + (1 / phi - 1 / psi) / depth
    if self.orthogonal:
      w = w / phi
      dlog_w = dlog_w - 1 / phi
    b, db = self.law.resolvent(w)
    num = b - omega
    dnum = db * w * dlog_w - 1
    return (num / psi, (dnum * psi - num) / psi ** 2,
            np.abs(num) / np.abs(omega))

  def admissible(self, omega):
    """Finite, and ``1 + 1/psi`` in the upper half-plane (to rounding)."""
    phi = omega + self.law.p0
    a = phi / (phi - 1)
    return np.isfinite(a) & (a.imag >= -1e-8 * np.abs(a))

  def newton(self, omega, log_zeta, steps):
    """Newton steps with backtracking; returns omega and the last relative step.

    A step is halved until the point is admissible and ``|g|`` decreases
    (or omega is already exact to 1e-13): Newton's basin can be small near
    spectral atoms, and the line search keeps the iterate on its branch.
    """
    g, dg, _ = self.residual(omega, log_zeta)
    for _ in range(steps):
      step = g / dg
      trial = omega - step
      g_t, dg_t, err_t = self.residual(trial, log_zeta)
      ok = self.admissible(trial) & (
          (np.abs(g_t) < np.abs(g)) | (err_t < 1e-13))
      for _ in range(30):
        bad = np.flatnonzero(~ok)
        if not bad.size:
          break
        step[bad] /= 2
        trial[bad] = omega[bad] - step[bad]
        g_t[bad], dg_t[bad], err_t[bad] = self.residual(trial[bad],
                                                        log_zeta[bad])
        ok[bad] = self.admissible(trial[bad]) & (
            (np.abs(g_t[bad]) < np.abs(g[bad])) | (err_t[bad] < 1e-13))
      step = np.where(ok, step, 0)
      omega = np.where(ok, trial, omega)
      g, dg = np.where(ok, g_t, g), np.where(ok, dg_t, dg)
    return omega, np.abs(step) / np.abs(omega)

  def solve(self, x, eta):
    """``omega`` at ``zeta = x (1 + i eta)`` for ``x (m,) > 0``.

    Continuation in Im zeta from ``top`` (far above the spectrum) down to
    ``eta x``; a point leaves the active set once it is at its target and
    Newton's step is below 1e-13 relative.
    """
    top = 10 * max(x.max(), self.upper_edge())
    target = eta * x
    z = 1 / (x + 1j * top)
    omega = 1 - self.law.p0 + self.m1 * z + self.m2 * z ** 2
    stages = max(0, math.ceil(math.log(target.min() / top)
                              / math.log(_RATIO)))
    active = np.ones(x.shape, bool)
    for stage in range(1, stages + _FINAL_STEPS + 1):
      idx = np.flatnonzero(active)
      eps = np.maximum(top * _RATIO ** stage, target[idx])
      steps = _STAGE_STEPS if stage <= stages else 1
      omega[idx], change = self.newton(omega[idx], np.log(x[idx] + 1j * eps),
                                       steps)
      active[idx] = ~((eps == target[idx]) & (change < 1e-13))
      if not active.any():
        break
    _, _, error = self.residual(omega, np.log(x + 1j * target))
    failed = ~(error < _TOL)
    if failed.any():
      raise RuntimeError(
          f"free-probability solve did not converge at x = {x[failed][:5]} "
          f"(relative residual up to {np.nanmax(error):.2e})")
    return omega

  def log_chi_real(self, w):
    """``log chi_J(psi_D(w))`` for real ``w`` in (0, 1 / max v)."""
    psi = self.law.mgf(w)
    per_layer = np.log(w) - math.log(self.sigma_w2) - np.log(psi)
    if self.orthogonal:
      per_layer = per_layer + np.log1p(psi)
    return np.log(psi) - np.log1p(psi) + self.depth * per_layer

  def upper_edge(self) -> float:
    """``1 / max chi_J`` over real psi > 0 (module docstring)."""
    # w = w_max sigmoid(t) covers (0, w_max), densely near the pole.
    w_max = 1 / self.law.values.max()
    log_chi = lambda t: self.log_chi_real(w_max / (1 + np.exp(-t)))
    t = np.linspace(-40.0, 30.0, 3501)
    values = log_chi(t)
    best = int(np.argmax(values))
    lo, hi = t[max(best - 1, 0)], t[min(best + 1, len(t) - 1)]
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(60):  # Golden-section search on [lo, hi].
      a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
      f_a, f_b = log_chi(np.array([a, b]))
      lo, hi = (lo, b) if f_a > f_b else (a, hi)
    peak = max(log_chi(np.array([(lo + hi) / 2]))[0], values[best])
    return math.exp(-peak)


def _solve(activation, q, sigma_w2, depth, weights, x, eta, num_points):
  """``(problem, omega)`` at ``zeta = x (1 + i eta)`` for flat ``x > 0``."""
  if not eta > 0:
    raise ValueError(f"eta must be > 0, got {eta}")
  if not (np.all(np.isfinite(x)) and np.all(x > 0)):
    raise ValueError("x must be finite and > 0")
  problem = _Problem(activation, q, sigma_w2, depth, weights, num_points)
  return problem, problem.solve(x, eta)


def spectral_atoms(activation: ActivationLike, q, sigma_w2, depth,
                   weights: str, num_points: int = DEFAULT_POINTS
                   ) -> tuple[np.ndarray, np.ndarray]:
  """The atoms of the J J^T spectrum: ``(locations (k,), masses (k,))``.

  0 with mass ``atom_at_zero`` (if > 0); for orthogonal weights also
  ``(sigma_w2 v)^L`` with mass ``1 - L (1 - P(v))`` for each atom v > 0 of
  the phi'^2 law where that is > 0 (module docstring, "Atoms"): every atom
  at L = 1, the whole mass at sigma_w2^L for linear nets, the top of hard
  tanh while ``L P(|h| > 1) < 1``. Gaussian weights have no atom but 0.
  """
  return _Problem(activation, q, sigma_w2, depth, weights,
                  num_points).atoms()


def stieltjes_transform(activation: ActivationLike, q, sigma_w2, depth,
                        weights: str, x, *, eta: float = DEFAULT_ETA,
                        num_points: int = DEFAULT_POINTS) -> np.ndarray:
  """``G(zeta) = E[1 / (zeta - lambda)]`` of J J^T at ``zeta = x (1 + i eta)``.

  Includes the atoms. Host NumPy (complex128); the solve is described in
  the module docstring.

  Args:
    activation: elementwise activation or name.
    q: pre-activation variance q* of the fixed point.
    sigma_w2: weight variance (sigma_w^2), > 0.
    depth: number of layers L >= 1.
    weights: one of ``WEIGHTS``.
    x: real points ``> 0``, any shape.
    eta: relative imaginary part of zeta, > 0.
    num_points: atoms of the D^2 law (Gauss-Hermite nodes).

  Returns:
    complex ``G``, the shape of ``x``.
  """
  x = np.asarray(x, np.float64)
  flat = x.reshape(-1)
  problem, omega = _solve(activation, q, sigma_w2, depth, weights, flat,
                          eta, num_points)
  g = (omega + problem.law.p0) / (flat * (1 + 1j * eta))
  return g.reshape(x.shape)


def squared_singular_value_density(
    activation: ActivationLike, q, sigma_w2, depth, weights: str, x, *,
    eta: float = DEFAULT_ETA,
    num_points: int = DEFAULT_POINTS) -> np.ndarray:
  """Density ``rho(x)`` of lambda = sigma^2, the eigenvalues of J J^T.

  The continuous part only: it integrates to ``1 - sum(masses)`` of
  :func:`spectral_atoms` (``1 - atom_at_zero`` for Gaussian weights).
  Computed from the S-transform at ``zeta = x (1 + i eta)`` (module
  docstring): ``rho = -Im[G(zeta) - sum_a m_a / (zeta - a)] / pi``, the
  exact density smoothed by a Cauchy kernel of half-width ``eta x``. Within
  a few ``eta x`` of an atom the continuous part is lost in the subtracted
  Cauchy term (absolute error ~1e-8 m / (pi eta x)). Host NumPy; a
  400-point grid at L = 128 takes 0.01 to 0.2 s on one CPU core.

  Args:
    activation, q, sigma_w2, depth, weights, eta, num_points: as for
      :func:`stieltjes_transform`.
    x: points, any shape; ``x <= 0`` gives 0.

  Returns:
    ``rho(x)``, float64, the shape of ``x``.
  """
  x = np.asarray(x, np.float64)
  rho = np.zeros(x.shape)
  positive = x > 0
  if positive.any():
    zeta = x[positive] * (1 + 1j * eta)
    problem, omega = _solve(activation, q, sigma_w2, depth, weights,
                            x[positive], eta, num_points)
    g = omega / zeta  # G minus the atom at 0, without cancellation.
    for location, mass in zip(*problem.atoms()):
      if location > 0:
        g = g - mass / (zeta - location)
    rho[positive] = -np.imag(g) / np.pi
  return rho


def singular_value_density(activation: ActivationLike, q, sigma_w2, depth,
                           weights: str, s, **kwargs) -> np.ndarray:
  """Density of sigma = sqrt(lambda): ``rho_sigma(s) = 2 s rho_lambda(s^2)``.

  Continuous part, mass ``1 - atom_at_zero``; ``kwargs`` as for
  :func:`squared_singular_value_density`.
  """
  s = np.asarray(s, np.float64)
  return 2 * s * squared_singular_value_density(
      activation, q, sigma_w2, depth, weights, s ** 2, **kwargs)


def support_upper_edge(activation: ActivationLike, q, sigma_w2, depth,
                       weights: str,
                       num_points: int = DEFAULT_POINTS) -> float:
  """The largest lambda in the support: ``1 / max_{psi > 0} chi_J(psi)``.

  For linear Gaussian nets this is (L + 1)^(L + 1) / L^L sigma_w2^L (4 for
  Marchenko-Pastur); orthogonal linear nets give sigma_w2^L.
  """
  return _Problem(activation, q, sigma_w2, depth, weights,
                  num_points).upper_edge()


def density_grid(activation: ActivationLike, q, sigma_w2, depth,
                 weights: str, num: int = 400, spacing: str = "linear",
                 decades: float = 8.0, eta: float = DEFAULT_ETA,
                 num_points: int = DEFAULT_POINTS) -> np.ndarray:
  """``num`` points spanning the continuous spectrum, for plots.

  The top is 1.02 x :func:`support_upper_edge`. The bottom is where
  ``x rho(x)`` (the density per unit log x) first exceeds 1e-4 of its
  maximum on a 200-point log probe over ``decades`` decades below the edge;
  if it already does at the bottom of the probe the spectrum reaches 0 and
  a linear grid starts at 0 (a log grid at the probe's bottom).

  Args:
    activation, q, sigma_w2, depth, weights, eta, num_points: as for
      :func:`squared_singular_value_density`.
    num: number of points.
    spacing: ``"linear"`` (cell midpoints, so never exactly 0) or
      ``"log"``.
    decades: how far below the edge a log grid may reach.

  Returns:
    ``(num,)`` increasing points ``> 0``.
  """
  if spacing not in SPACINGS:
    raise ValueError(f"unknown spacing {spacing!r}; valid values: "
                     f"{', '.join(SPACINGS)}")
  if int(num) != num or num < 2:
    raise ValueError(f"num must be an integer >= 2, got {num}")
  upper = support_upper_edge(activation, q, sigma_w2, depth, weights,
                             num_points)
  probe = np.geomspace(upper * 10.0 ** -decades, upper, 200)
  mass = probe * squared_singular_value_density(
      activation, q, sigma_w2, depth, weights, probe, eta=eta,
      num_points=num_points)
  first = int(np.argmax(mass > 1e-4 * mass.max()))
  top = 1.02 * upper
  if spacing == "log":
    return np.geomspace(probe[max(first - 1, 0)], top, int(num))
  lower = 0.0 if first == 0 else probe[first - 1]
  return lower + (top - lower) * (np.arange(num) + 0.5) / num


def law_s_transform(values, probs, z) -> np.ndarray:
  """S-transform of the discrete law ``sum_i probs_i delta(values_i)``.

  Inverts ``psi(w) = sum_i p_i w v_i / (1 - w v_i) = z`` by Newton's method
  continued along ``t z``, t from 1e-8 to 1 (the branch through
  ``w ~ z / mu_1`` at 0), and returns ``S(z) = w (1 + z) / z``
  (``1 / mu_1`` at z = 0). Host NumPy, complex128.

  Args:
    values: ``(n,)`` atoms ``>= 0``, not all 0.
    probs: ``(n,)`` probabilities summing to 1.
    z: complex or real points, any shape, in the range of psi (for real z:
      ``z > P(v = 0) - 1``).

  Returns:
    complex ``S(z)``, the shape of ``z``.
  """
  values = np.asarray(values, np.float64)
  probs = np.asarray(probs, np.float64)
  keep = values > 0
  values, probs = values[keep], probs[keep]
  mu1 = float(probs @ values)
  if not mu1 > 0:
    raise ValueError("values must not all be 0")
  z = np.asarray(z, np.complex128)
  flat = z.reshape(-1)
  target = np.where(flat == 0, 1.0, flat)
  pv = (probs * values)[None, :]

  def residual(w, t):
    den = 1 - w[:, None] * values[None, :]
    value = w * np.sum(pv / den, axis=1)
    return value / (t * target) - 1, np.sum(pv / den ** 2, axis=1) / (
        t * target)

  ts = np.geomspace(1e-8, 1.0, 41)
  w = ts[0] * target / mu1
  for t in ts:
    for _ in range(6 if t < 1 else 60):
      g, dg = residual(w, t)
      w = w - g / dg
  g, _ = residual(w, 1.0)
  if not np.all(np.abs(g) < _TOL):
    raise RuntimeError("inverting the moment generating function failed "
                       f"(|residual| up to {np.nanmax(np.abs(g)):.2e}); "
                       "z may be outside the range of psi")
  s = np.where(flat == 0, 1 / mu1, w * (1 + target) / target)
  return s.reshape(z.shape)


def s_transform(activation: ActivationLike, q, sigma_w2, depth, weights: str,
                z, num_points: int = DEFAULT_POINTS) -> np.ndarray:
  """``S_{JJ^T}(z) = [S_{W^T W}(z) S_{D^2}(z)]^L`` (Pennington et al. 2017).

  ``S_{W^T W} = 1 / (sigma_w2 (1 + z))`` (Gaussian) or ``1 / sigma_w2``
  (orthogonal); ``S_{D^2}`` from the discrete law of phi'^2
  (:func:`law_s_transform`). Host NumPy, complex128.

  Args:
    activation, q, sigma_w2, depth, weights, num_points: as for
      :func:`stieltjes_transform`.
    z: points, any shape, near 0 or real ``z > atom_at_zero - 1``.

  Returns:
    complex ``S(z)``, the shape of ``z``.
  """
  problem = _Problem(activation, q, sigma_w2, depth, weights, num_points)
  z = np.asarray(z, np.complex128)
  s_w = (1 / problem.sigma_w2 if problem.orthogonal
         else 1 / (problem.sigma_w2 * (1 + z)))
  s_d = law_s_transform(problem.law.values, problem.law.probs, z)
  return (s_w * s_d) ** problem.depth
