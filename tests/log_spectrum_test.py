"""Tests for vgrad.probes.log_spectrum against dense float64 SVDs and exact theory.

Tolerances. A float32 Householder QR of ``J_m Q`` is backward stable with a
normwise error of at most about ``N u ||J_m||`` (Higham 2002, Thm 19.4;
``u = eps / 2``), a relative perturbation ``N u kappa(J_m)`` of the layer
(``kappa``: its condition number on the live rows). To first order these
add over layers, so a float32 log singular value of ``J_{<=l}`` is within

    tol32 = N u32 sum_{m<=l} kappa(J_m)

of the exact one. The dense float64 reference has the same kind of error
with u64, plus its SVD's absolute error ``N u64 sigma_1``, i.e. ``N u64
sigma_1 / sigma_i`` relative to ``sigma_i``. Every comparison below uses
these bounds with the condition numbers measured on the net in float64;
the bugs they guard against (a power of two lost in the graded scaling, a
layer skipped or counted twice, a missing D_l) move log values by 0.69 nats
or more.
"""

import functools
import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrad.nn import initializers
from vgrad.nn import models
from vgrad.probes import log_spectrum

# The graded Jacobi, the exact binary scaling and the Kahan sum are tested
# on their own too.
# pylint: disable=protected-access

U32 = float(np.finfo(np.float32).eps) / 2
U64 = float(np.finfo(np.float64).eps) / 2


def _net(act, depth, width, init="gaussian", sigma_w2=None, dtype=np.float32,
         seed=0, **act_params):
  """The model and NumPy parameters from its initializer's distribution
  (``initializers.weight_variance``; zero biases, as make_mlp's default).

  NumPy draws: Flax's eager per-layer init compiles several random
  programs per net, and these tests need only the distribution (a normal
  or, for ``*_uniform``, a uniform law of that variance). The tree is
  checked against ``model.init``'s (traced, not compiled)."""
  model = models.make_mlp(depth=depth, width=width, activation=act,
                          activation_params=act_params, init=init,
                          sigma_w2=sigma_w2, param_dtype=dtype)
  rng = np.random.default_rng(seed)
  pieces = model.activation.pieces
  shape = (pieces, width, width) if pieces > 1 else (width, width)
  std = math.sqrt(initializers.weight_variance(init, width, width, sigma_w2))

  def kernel():
    if init.endswith("uniform"):
      limit = math.sqrt(3) * std
      return rng.uniform(-limit, limit, shape)
    return std * rng.standard_normal(shape)

  bias = np.zeros((pieces, width) if pieces > 1 else (width,), dtype)
  params = {"params": {f"layers_{l}": {"kernel": kernel().astype(dtype),
                                       "bias": bias}
                       for l in range(depth)}}
  chex.assert_trees_all_equal_shapes_and_dtypes(params, jax.eval_shape(
      model.init, jax.random.key(0), jax.ShapeDtypeStruct((width,), dtype)))
  return model, params


@functools.cache
def _net_probe(act, depth, width, init, sigma_w2, layers, act_params):
  """``(model, params, make_log_spectrum_probe(model, layers))`` of a float32
  :func:`_net` (``act_params``: a tuple of its keyword items; every argument
  positional, so that equal nets are one cache key), built once per process:
  tests on the same net share one probe, hence its traced and compiled
  programs (a new probe traces, lowers and compiles them anew)."""
  model, params = _net(act, depth, width, init, sigma_w2, **dict(act_params))
  return model, params, log_spectrum.make_log_spectrum_probe(model, layers)


def _inputs(n, width, dtype=np.float32, seed=1):
  return np.random.default_rng(seed).standard_normal((n, width)).astype(dtype)


def _manual_net(act, kernels_LxNxN, **kw):
  """A model and NumPy parameters (zero biases) without Flax's per-layer
  init, which takes seconds at depth 10 000."""
  depth, width = kernels_LxNxN.shape[:2]
  model = models.make_mlp(depth=depth, width=width, activation=act,
                          init="gaussian", param_dtype=kernels_LxNxN.dtype,
                          **kw)
  zeros = np.zeros((width,), kernels_LxNxN.dtype)
  params = {"params": {f"layers_{l}": {"kernel": kernels_LxNxN[l],
                                       "bias": zeros}
                       for l in range(depth)}}
  return model, params


def _layer_jacobians(model, params, xs):
  """The model's own layer Jacobians ``J_l = D_l W_l`` for inputs ``xs (B,
  n)``, as :func:`vgrad.probes.jacobian.layer_jacobian` forms them: ``(B,
  L, N, n)`` in the parameters' dtype, from one eager forward pass of the
  batch (its pre-activations) and the activation's own ``deriv``; the
  products ``phi'(h) W`` are single roundings, so NumPy forms them bit for
  bit as JAX does."""
  _, hs = model.apply(params, xs, return_preactivations=True)
  hs = np.stack(jax.device_get(hs), axis=1)  # (B, L, N) or (B, L, N, k)
  kernels = np.stack([params["params"][f"layers_{l}"]["kernel"]
                      for l in range(model.depth)])
  if model.activation.is_maxout:  # rows of the winning pieces
    winner = np.argmax(hs, axis=-1)  # (B, L, N)
    layer = np.arange(model.depth)[None, :, None]
    unit = np.arange(hs.shape[2])[None, None, :]
    # Advanced indices around a slice: (B, L, N) first, then n_in.
    return kernels[layer, winner, :, unit]
  deriv = np.asarray(model.activation.deriv(hs))
  return deriv[..., None] * np.swapaxes(kernels, 1, 2)[None]


def _reference(jacs):
  """Float64 SVDs of the chain of one input's layer Jacobians ``(L, N, n)``.

  Returns ``(sv per layer (L, N), cumulative sum of live condition numbers
  (L,), chain rank bound (L,))``.
  """
  jacs = np.asarray(jacs, np.float64)
  chain, svs, kappas, ranks = np.eye(jacs.shape[2]), [], [], []
  for jac in jacs:
    chain = jac @ chain
    svs.append(np.linalg.svd(chain, compute_uv=False))
    rows = int(np.sum(np.any(jac != 0, axis=1)))
    own = np.linalg.svd(jac, compute_uv=False)
    kappas.append(own[0] / own[rows - 1])
    ranks.append(min(ranks[-1] if ranks else rows, rows))
  return np.array(svs), np.cumsum(kappas), np.array(ranks)


@pytest.mark.slow
class AgreementTest(parameterized.TestCase):
  """QR log spectra = log of dense float64 singular values, where both fit."""

  def _check(self, got_TxK, layers, ref, u, min_ratio=1e-9):
    svs, kappa_sum, ranks = ref
    n, compared = svs.shape[1], 0
    for t, l in enumerate(layers):
      sv, rank = svs[l - 1], ranks[l - 1]
      got = np.asarray(got_TxK[t], np.float64)
      # Past the rank bound: exact zeros, whatever roundoff the SVD shows.
      self.assertTrue(np.all(np.isneginf(got[rank:])), msg=f"layer {l}")
      self.assertTrue(np.all(sv[rank:] < 1e-12 * sv[0]), msg=f"layer {l}")
      self.assertTrue(np.all(np.isfinite(got[:rank])), msg=f"layer {l}")
      live = np.arange(n) < rank
      use = live & (sv >= min_ratio * sv[0])
      tol = (n * u * kappa_sum[l - 1]
             + n * U64 * (kappa_sum[l - 1] + sv[0] / sv[use]))
      err = np.abs(got[use] - np.log(sv[use]))
      self.assertTrue(np.all(err <= tol),
                      msg=f"layer {l}: error {err.max():.2e} > tolerance "
                          f"{tol[np.argmax(err - tol)]:.2e}")
      compared += use.sum() / max(rank, 1)
    return compared / len(layers)

  @parameterized.named_parameters(
      ("tanh", "tanh", "gaussian", 1.0, 40, 32, {}),
      ("relu", "relu", "he_normal", None, 20, 32, {}),
      ("sigmoid", "sigmoid", "glorot_normal", None, 10, 40, {}),
      ("maxout", "maxout", "glorot_uniform", None, 8, 32, {"k": 3}),
  )
  def test_float32_qr_matches_float64_svd(self, act, init, sigma_w2, depth,
                                          width, act_params):
    layers = log_spectrum.default_layers(depth)
    # The tanh net's probe serves test_error_bound_is_a_certificate too.
    model, params, probe = _net_probe(act, depth, width, init, sigma_w2,
                                      layers, tuple(act_params.items()))
    xs = _inputs(2, width)
    out = jax.device_get(probe(params, xs))
    chex.assert_shape(out.log_singular_values, (2, len(layers), width))
    chex.assert_shape(out.partial_sums, (2, depth, width))
    compared = 0
    # The model's own float32 layer Jacobians, multiplied in float64.
    jacs = _layer_jacobians(model, params, xs)
    for b in range(2):
      ref = _reference(jacs[b])
      compared += self._check(out.log_singular_values[b], layers, ref, U32)
      np.testing.assert_array_equal(out.rank_bound[b], ref[2])
      # Lyapunov sums: -inf exactly at the same dead positions.
      sums = out.partial_sums[b]
      np.testing.assert_array_equal(np.isneginf(sums).sum(axis=1),
                                    width - ref[2])
    # Most live values are compared (the rest sit below float64's floor).
    self.assertGreater(compared / 2, 0.5)
    # Converged: the certificate is at float32 rounding level (it counts
    # n^2 u / 2 for the rounding of its own Gram matrix).
    self.assertLess(float(np.max(out.error_bound)), width * width * U32)

  def test_float64_qr_matches_float64_svd_to_float64_precision(self):
    with jax.enable_x64(True):
      model, params = _net("tanh", 30, 32, sigma_w2=1.0, dtype=np.float64)
      xs = _inputs(2, 32, np.float64)
      layers = (1, 5, 30)
      out = log_spectrum.make_log_spectrum_probe(model, layers)(params, xs)
      jacs = _layer_jacobians(model, params, xs)
      for b in range(2):
        ref = _reference(jacs[b])
        self.assertGreater(self._check(out.log_singular_values[b], layers,
                                       ref, U64), 0.5)

  def test_error_bound_is_a_certificate(self):
    """Rows one plain Jacobi sweep from the forward pass (no
    preconditioner) give values that are off, and within the certificate
    of ``_certify``, which certifies whatever state the rows are in."""
    # The net, inputs and target layers of the tanh agreement test: the
    # same probe (_net_probe), so the same traced and compiled forward pass.
    width = 32
    targets = log_spectrum.default_layers(40)
    model, params, probe = _net_probe("tanh", 40, width, "gaussian", 1.0,
                                      targets, ())
    xs = _inputs(2, width)
    layers = (1, 10, 40)
    rows = [targets.index(l) for l in layers]
    snapshot = jax.device_get(probe.forward(params, xs).snapshot)

    @jax.jit
    def one_sweep(m, e):
      live = jnp.ones(m.shape[0], bool)
      m, e, count = log_spectrum._sweeps(m, e, m.shape[0], 1, 0.0, jnp.inf)
      return (*log_spectrum._certify(m, e, live), count)

    jacs = _layer_jacobians(model, params, xs)
    for b in range(2):
      svs, kappa_sum, _ = _reference(jacs[b])
      for t, l in zip(rows, layers):
        log_sv, bound, count = one_sweep(snapshot[0][b, t], snapshot[1][b, t])
        self.assertEqual(int(count), 1)
        self.assertGreater(float(bound), 1e-3)
        sv = svs[l - 1]
        use = sv >= 1e-9 * sv[0]
        err = np.abs(np.asarray(log_sv, np.float64) - np.log(sv))[use]
        slack = (width * U32 * kappa_sum[l - 1]
                 + width * U64 * sv[0] / sv[use])
        self.assertTrue(np.all(err <= float(bound) + slack))
        self.assertGreater(err.max(), 1e-4)  # one sweep really is not enough


@pytest.mark.slow
class DeepTest(absltest.TestCase):
  """Depth 10 000 in float32, far outside float32's range."""

  def test_sigmoid_at_depth_10000(self):
    depth, width = 10_000, 16
    rng = np.random.default_rng(0)
    kernels = (rng.standard_normal((depth, width, width))
               / np.sqrt(width)).astype(np.float32)  # Glorot: Var W = 1/N
    model, params = _manual_net("sigmoid", kernels)
    x = rng.standard_normal((1, width)).astype(np.float32)
    # Four targets, as TheoryTest's orthogonal net (width 16, one input):
    # the Jacobi stage's program is the same, compiled once (the persistent
    # compilation cache); the checks below are on the last.
    out = jax.device_get(log_spectrum.make_log_spectrum_probe(
        model, (1, 10, 100, depth))(params, x))
    lyap = jax.device_get(log_spectrum.make_lyapunov_probe(
        model, return_activations=True)(params, x))
    log_sv = np.asarray(out.log_singular_values[0, -1], np.float64)
    self.assertTrue(np.all(np.isfinite(log_sv)))
    self.assertTrue(np.all(np.diff(log_sv) <= 0))
    np.testing.assert_array_equal(out.partial_sums, lyap.partial_sums)

    # Float64 layer Jacobians J_m = D_m W_m at the float32 activations.
    inputs = np.concatenate([x, lyap.activations[0, :-1]]).astype(np.float64)
    h = np.einsum("li,lij->lj", inputs, kernels.astype(np.float64))
    dphi = np.exp(-h) / (1 + np.exp(-h)) ** 2
    weights = np.transpose(kernels, (0, 2, 1)).astype(np.float64)
    own = np.linalg.svd(dphi[:, :, None] * weights, compute_uv=False)
    kappa_sum = np.sum(own[:, 0] / own[:, -1])
    tol = width * U32 * kappa_sum  # per value, as in AgreementTest

    # ||D W||_2 <= ||W||_2 / 4 (sigmoid' <= 1/4) bounds the top value
    # rigorously; here that is about -0.69 nats per layer, ~-7000 in all:
    # 80 times below float32's smallest normal number (e^-87.3).
    bound = np.sum(np.log(np.linalg.norm(weights, 2, axis=(1, 2)) / 4))
    self.assertLess(bound, 80 * math.log(np.finfo(np.float32).tiny))
    self.assertLessEqual(log_sv[0], bound + tol)

    # sum_i log sigma_i = log |det J| = sum_m log |det J_m| exactly, and the
    # Lyapunov sums add up to the same; each value is within tol.
    log_det = np.sum(np.log(dphi)) + np.sum(np.linalg.slogdet(weights)[1])
    storage = np.finfo(np.float32).eps * np.sum(np.abs(log_sv))
    self.assertAlmostEqual(log_sv.sum(), log_det, delta=width * tol + storage)
    sums = np.asarray(out.partial_sums[0, -1], np.float64)
    self.assertAlmostEqual(sums.sum(), log_det, delta=width * tol + storage)
    # Weyl: the sorted Lyapunov sums are majorised by the log spectrum.
    excess = np.cumsum(-np.sort(-sums)) - np.cumsum(log_sv)
    self.assertLessEqual(excess.max(), width * tol + storage)

    # The same pass in float64 (Kahan summation keeps float32's sums).
    with jax.enable_x64(True):
      model64, params64 = _manual_net("sigmoid", kernels.astype(np.float64))
      lyap64 = jax.device_get(log_spectrum.make_lyapunov_probe(model64)(
          params64, x.astype(np.float64)))
    np.testing.assert_allclose(lyap.partial_sums[0, -1],
                               lyap64.partial_sums[0, -1], rtol=0,
                               atol=tol + width * U64 * kappa_sum)


def _trigamma_half_integer(k: np.ndarray) -> np.ndarray:
  """psi'(k / 2) from psi'(1) = pi^2/6, psi'(1/2) = pi^2/2 and
  psi'(x + 1) = psi'(x) - 1/x^2."""
  out = []
  for dof in k:
    x = 1.0 if dof % 2 == 0 else 0.5
    value = math.pi ** 2 / 6 if dof % 2 == 0 else math.pi ** 2 / 2
    while x < dof / 2:
      value -= 1 / x ** 2
      x += 1
    out.append(value)
  return np.array(out)


class TheoryTest(parameterized.TestCase):

  @pytest.mark.slow
  def test_orthogonal_linear_net_is_exactly_scaled(self):
    """W_l = sigma_w Q_l: every log sigma_i(J_{<=l}) = l log sigma_w, here
    -105 nats at depth 1000 (beyond float32). A float32 orthogonal matrix
    is orthogonal to ~N u, so after l layers: within l N u (+ rounding of
    the stored value)."""
    depth, width, sigma_w = 1000, 16, 0.9
    rng = np.random.default_rng(3)
    q, r = np.linalg.qr(rng.standard_normal((depth, width, width)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    model, params = _manual_net("linear", (sigma_w * q).astype(np.float32))
    layers = (1, 10, 100, depth)
    out = log_spectrum.make_log_spectrum_probe(model, layers)(
        params, _inputs(1, width))
    for t, l in enumerate(layers):
      expected = l * math.log(sigma_w)
      tol = l * width * U32 + 2 * U32 * abs(expected)
      np.testing.assert_allclose(out.log_singular_values[0, t], expected,
                                 rtol=0, atol=tol)
    every = np.arange(1, depth + 1)[:, None] * math.log(sigma_w)
    np.testing.assert_allclose(out.partial_sums[0], np.broadcast_to(
        every, (depth, width)), rtol=0,
                               atol=depth * width * U32 + 1e-4)

  def test_gaussian_linear_net_lyapunov_exponents(self):
    """Products of Ginibre matrices: S_{L,i} / L -> lambda_i in closed form.

    By the Bartlett decomposition, (R_l)_ii^2 n / sigma_w^2 ~ chi^2 with
    n - i + 1 degrees of freedom independently for every i and l (W_l Q is
    again Gaussian), so S_{L,i} / L is a mean of L iid terms
    (1/2) log(sigma_w^2 chi^2 / n) with mean lambda_i and variance
    psi'((n - i + 1)/2) / 4. Six standard deviations per i: a correct
    implementation fails with probability < 16 * 2e-9.
    """
    depth, width, sigma_w = 4000, 16, 1.3  # activations overflow: fine
    rng = np.random.default_rng(5)
    kernels = (sigma_w * rng.standard_normal((depth, width, width))
               / np.sqrt(width)).astype(np.float32)
    model, params = _manual_net("linear", kernels)
    sums = log_spectrum.make_lyapunov_probe(model)(params, _inputs(1, width))
    chex.assert_shape(sums.partial_sums, (1, depth, width))
    self.assertIsNone(sums.activations)
    measured = np.asarray(sums.partial_sums[0, -1], np.float64) / depth
    theory = log_spectrum.ginibre_lyapunov_exponents(width, sigma_w ** 2)
    std = np.sqrt(_trigamma_half_integer(width - np.arange(width))
                  / (4 * depth))
    np.testing.assert_array_less(np.abs(measured - theory), 6 * std)
    # Sorted exponents, as lyapunov_exponents reports them.
    np.testing.assert_allclose(
        log_spectrum.lyapunov_exponents(sums.partial_sums)[0], theory,
        atol=6 * std.max())

  def test_ginibre_closed_form(self):
    # n = 1: lambda = (1/2)(log(2 sigma_w2) + psi(1/2)) = (1/2) E
    # log(sigma_w2 z^2) for z ~ N(0, 1); psi(1/2) = -gamma - 2 log 2.
    self.assertAlmostEqual(
        log_spectrum.ginibre_lyapunov_exponents(1, 4.0)[0],
        0.5 * (math.log(8) - np.euler_gamma - 2 * math.log(2)), places=14)
    # Sum = (1/2) E log det(W^T W) (Goodman): exponents decrease in i.
    lam = log_spectrum.ginibre_lyapunov_exponents(64)
    self.assertTrue(np.all(np.diff(lam) < 0))
    # Top exponent -> (1/2) log sigma_w2 - 1/(2n) + O(n^-2) (psi(x) =
    # log x - 1/(2x) + O(x^-2)): below the mean-field (1/2) log chi.
    self.assertAlmostEqual(lam[0], -1 / 128, delta=1 / 64 ** 2)


class GradedJacobiTest(chex.TestCase):
  """The graded one-sided Jacobi alone, on matrices far beyond any float
  range whose singular values are known exactly."""

  @chex.variants(with_jit=True)  # eager: 4 s of op-by-op dispatch
  def test_graded_triangle(self):
    # Rows 2^600 (0.75, 0.5, 0.25), 2^-100 (0, 0.625, -0.5), 2^-700 (0, 0,
    # 0.875): gaps of 2^700 make sigma_1 = |r_1|, sigma_1 sigma_2 =
    # |r_1 ^ r_2| and sigma_1 sigma_2 sigma_3 = |det| exact to far below
    # float64 rounding (the corrections are relative 2^-1400).
    m = np.array([[0.75, 0.5, 0.25], [0.0, 0.625, -0.5], [0.0, 0.0, 0.875]])
    e = np.array([600, -100, -700])
    r1, r2 = m[0], m[1]
    area = math.sqrt(np.dot(r1, r1) * np.dot(r2, r2) - np.dot(r1, r2) ** 2)
    log_top = math.log(np.linalg.norm(r1)) + 600 * math.log(2)
    log_two = math.log(area) - 100 * math.log(2) + 600 * math.log(2)
    log_det = math.log(0.75 * 0.625 * 0.875) - 200 * math.log(2)
    expected = [log_top, log_two - log_top, log_det - log_two]

    @self.variant
    def jacobi(m, e):
      return log_spectrum._jacobi(m, e, 3, 30, 1e-7, use_svd=False)

    # NumPy casts (exact here: dyadic values; the sums round to nearest as
    # XLA's would): an eager jnp cast compiles a program per shape.
    log_sv, bound, sweeps = jacobi(m.astype(np.float32), e.astype(np.int32))
    # float32: each value to a few u relative to |log sigma| ~ 485 nats.
    np.testing.assert_allclose(log_sv, expected, rtol=4 * U32, atol=1e-5)
    self.assertLess(float(bound), 2e-6)  # Gershgorin: about 16 k^2 u
    # The QR preconditioner orthogonalises graded rows: no sweep needed.
    self.assertBetween(int(sweeps), 0, 30)

    # With the LAPACK stage (graded_log_spectrum): rows 2^700 apart leave
    # the SVD's range, U^T loses the grading, the determinant check (the
    # triangle's log |diag| are its Lyapunov sums) sees it and the stages
    # run again without it: the same values.
    sums = np.log(np.abs(np.diag(m))) + e * math.log(2)
    snapshot = (m.astype(np.float32), e.astype(np.int32), np.int32(3),
                np.bool_(True), None, None, sums.astype(np.float32))
    log_sv, bound, _ = self.variant(log_spectrum.graded_log_spectrum)(
        snapshot, 30, 1e-7)
    np.testing.assert_allclose(log_sv, expected, rtol=4 * U32, atol=1e-5)
    self.assertLess(float(bound), 2e-6)  # Gershgorin: about 16 k^2 u

  @chex.variants(with_jit=True, without_jit=True)
  def test_exact_binary_scaling(self):
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    x = x * np.exp2(np.random.default_rng(1).integers(-60, 60, 1000)).astype(
        np.float32)
    shift = np.random.default_rng(2).integers(-60, 60, 1000).astype(np.int32)
    scaled = self.variant(log_spectrum._scale2)(x, shift)
    np.testing.assert_array_equal(scaled, np.ldexp(x, shift))


class LapackStageTest(absltest.TestCase):

  @pytest.mark.slow
  def test_lapack_stage_kept_past_float64s_resolution_without_sweeps(self):
    """Sigmoid, Glorot, width 32, depth 16, float64: the last layer's
    Lyapunov sums spread 31 nats, past 0.8 ln(1/eps) = 28.8, where an
    earlier gate skipped the LAPACK stage and swept (the README's main job
    is such a net at layers 8-10). The stage keeps the grading there (the
    determinant agrees): no sweep on the host path or under jit, and the
    two finish the same forward pass to within both certificates. (The
    host path runs each input as a batch of one, vgrad.probes.host; a
    batched pass under jit may round the float32 network differently.)"""
    depth = 16
    model, params = _net("sigmoid", depth, 32, init="glorot_uniform")
    xs = _inputs(2, 32)
    probe = log_spectrum.make_log_spectrum_probe(model, (depth,),
                                                 dtype=np.float64)
    with jax.enable_x64(True):
      forward_pass = probe.forward(params, xs)
      host = jax.device_get(probe.finish(forward_pass))
      traced = jax.device_get(jax.jit(probe.finish)(forward_pass))
    sums = np.asarray(host.partial_sums[:, -1], np.float64)
    self.assertTrue(np.all(sums.max(1) - sums.min(1)
                           > 0.8 * -math.log(np.finfo(np.float64).eps)))
    np.testing.assert_array_equal(host.sweeps, 0)
    np.testing.assert_array_equal(traced.sweeps, 0)
    err = np.abs(np.asarray(host.log_singular_values, np.float64)
                 - np.asarray(traced.log_singular_values, np.float64))
    allowed = (np.asarray(host.error_bound) + np.asarray(traced.error_bound))
    self.assertTrue(np.all(err <= allowed[..., None]), (err.max(), allowed))
    self.assertLess(float(np.max(host.error_bound)), 1e-9)


class KahanTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_compensated_sum_of_100000_layers(self):
    """Kahan's bound |error| <= (2u + O(n u^2)) sum |x_i| (Higham 2002,
    eq. 4.8); a plain float32 running sum of 1e5 terms near -1.5 is off by
    ~sqrt(n) u |S| ~ 3 nats, 150 times that bound."""
    x = np.random.default_rng(0).normal(-1.5, 0.5, 100_000).astype(
        np.float32)

    @self.variant
    def total(x):
      def add(carry, term):
        return log_spectrum._kahan_add(*carry, term), None
      zero = jnp.zeros((), jnp.float32)
      return jax.lax.scan(add, (zero, zero), x)[0][0]

    exact = np.sum(x.astype(np.float64))
    bound = 2.01 * U32 * np.sum(np.abs(x.astype(np.float64)))
    self.assertLess(abs(float(total(x)) - exact), bound)
    naive = np.cumsum(x, dtype=np.float32)[-1]
    self.assertGreater(abs(float(naive) - exact), 10 * bound)


class InterfaceTest(parameterized.TestCase):

  def test_default_layers(self):
    layers = log_spectrum.default_layers(10_000)
    self.assertEqual(layers[0], 1)
    self.assertEqual(layers[-1], 10_000)
    self.assertBetween(len(layers), 10, 13)
    # Log-spaced: rounding x >= 10000^(1/11) = 2.31 to an integer moves
    # log x by at most log(1 + 0.5 / 2.31) = 0.196.
    grid = np.linspace(0, math.log(10_000), len(layers))
    self.assertLess(np.abs(np.log(layers) - grid).max(), 0.196)
    self.assertEqual(log_spectrum.default_layers(3), (1, 2, 3))
    # Up to DEFAULT_NUM_LAYERS every layer (log spacing would skip 6 and 9
    # at depth 10); one deeper, log-spaced again.
    num = log_spectrum.DEFAULT_NUM_LAYERS
    self.assertEqual(log_spectrum.default_layers(10), tuple(range(1, 11)))
    self.assertEqual(log_spectrum.default_layers(num),
                     tuple(range(1, num + 1)))
    self.assertLess(len(log_spectrum.default_layers(2 * num)), 2 * num)

  @parameterized.parameters(((0, 3),), ((4,),), ((),))
  def test_bad_layers(self, layers):
    model = models.make_mlp(depth=3, width=4, activation="tanh")
    with self.assertRaisesRegex(ValueError, r"layers must be .*\[1, depth=3\]"):
      log_spectrum.make_log_spectrum_probe(model, layers)

  def test_bad_sweeps(self):
    model = models.make_mlp(depth=3, width=4, activation="tanh")
    with self.assertRaisesRegex(ValueError, "max_sweeps"):
      log_spectrum.make_log_spectrum_probe(model, max_sweeps=0)

  def test_basis_gives_the_top_exponents(self):
    """Q_0 = V with k columns: the same top-k Lyapunov sums as Q_0 = I when
    V spans the first k coordinates."""
    model, params = _net("tanh", 6, 8, sigma_w2=1.0)
    xs = _inputs(1, 8)
    full = log_spectrum.make_lyapunov_probe(model)(params, xs)
    top = log_spectrum.make_lyapunov_probe(model, np.eye(8)[:, :3])(
        params, xs)
    chex.assert_shape(top.partial_sums, (1, 6, 3))
    np.testing.assert_allclose(top.partial_sums, full.partial_sums[..., :3],
                               rtol=1e-6, atol=1e-6)


if __name__ == "__main__":
  absltest.main()
