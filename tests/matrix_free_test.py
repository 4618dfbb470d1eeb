"""Tests for vgrad.probes.matrix_free against dense Jacobians and exact facts.

Tolerances:
  * float64 exact identities (Golub-Kahan relations, k = n spectra, Gauss
    quadrature moments): the computed bidiagonalisation is exact for a
    perturbed operator ``J + E`` with ``||E|| ~ k eps ||J||`` (full
    reorthogonalisation; Barlow 2013), so by Weyl every singular value is
    within ``k eps ||J|| ~ 128 * 2.2e-16 ~ 3e-14`` of the dense one; the
    tests allow ``1e-10 ||J||`` (the rounding of the dense reference and of
    the chain's ``L`` width-N products adds ``L sqrt(N) eps`` per factor,
    still far below). A real bug moves values by the spectral gaps, 1e-3 and
    more.
  * residual bounds: rigorous up to the same rounding floor, which is added.
  * Monte-Carlo moments: six standard deviations of the Hutchinson estimator
    (derived in the test), so a correct implementation fails with
    probability < 1e-8.
"""

import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrad.nn import models
from vgrad.probes import matrix_free

# NumPy activations and derivatives for the float64 reference Jacobians.
_NP_ACTIVATIONS = {
    "tanh": (np.tanh, lambda h: 1 - np.tanh(h) ** 2),
    "relu": (lambda h: np.maximum(h, 0.0), lambda h: (h > 0).astype(h.dtype)),
    "linear": (lambda h: h, np.ones_like),
}


def _net(act, depth, width, init="gaussian", sigma_w2=1.0, sigma_b2=0.01,
         num_outputs=None, dtype=np.float32, seed=0):
  """The model and NumPy parameters from the distribution ``model.init``
  draws from: gaussian ``W ~ N(0, sigma_w2 / fan_in)``, orthogonal
  ``sqrt(sigma_w2) Q`` (Q Haar: QR with the signs of diag R), biases
  ``N(0, sigma_b2)`` (zero if None). Drawn by NumPy: a jitted Flax init
  compiles for seconds per net and the tests need only the distribution.
  The tree is checked against ``model.init``'s (traced, not compiled)."""
  model = models.make_mlp(depth=depth, width=width, activation=act,
                          init=init, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                          num_outputs=num_outputs, param_dtype=dtype)
  rng = np.random.default_rng(seed)

  def kernel(n_in, n_out):
    if init == "orthogonal":
      q, r = np.linalg.qr(rng.standard_normal((n_in, n_out)))
      return math.sqrt(sigma_w2) * q * np.sign(np.diag(r))[None, :]
    return rng.standard_normal((n_in, n_out)) * math.sqrt(sigma_w2 / n_in)

  def bias(n):
    if sigma_b2 is None:
      return np.zeros((n,))
    return math.sqrt(sigma_b2) * rng.standard_normal((n,))

  shapes = [(f"layers_{l}", width) for l in range(depth)]
  if num_outputs is not None:
    shapes.append(("readout", num_outputs))
  params = {"params": {name: {"kernel": kernel(width, n).astype(dtype),
                              "bias": bias(n).astype(dtype)}
                       for name, n in shapes}}
  chex.assert_trees_all_equal_shapes_and_dtypes(params, jax.eval_shape(
      model.init, jax.random.key(0), jax.ShapeDtypeStruct((width,), dtype)))
  return model, params


def _input(width, dtype=np.float32, seed=1):
  return np.random.default_rng(seed).standard_normal((width,)).astype(dtype)


def _dense_jacobian(act, params, x, layer=None):
  """``d x_layer / d x_0`` (``dy / d x_0`` if layer is None) in float64
  NumPy: the product of ``J_l = diag(phi'(h_l)) W_l`` (and the readout)."""
  fn, deriv = _NP_ACTIVATIONS[act]
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  depth = sum(name.startswith("layers_") for name in p)
  x = np.asarray(x, np.float64)
  jac = np.eye(x.shape[0])
  for l in range(depth if layer is None else layer):
    h = x @ p[f"layers_{l}"]["kernel"] + p[f"layers_{l}"]["bias"]
    jac = deriv(h)[:, None] * p[f"layers_{l}"]["kernel"].T @ jac
    x = fn(h)
  if layer is None and "readout" in p:
    jac = p["readout"]["kernel"].T @ jac
  return jac


def _dense_sv(act, params, x):
  return np.linalg.svd(_dense_jacobian(act, params, x), compute_uv=False)


def _matrix_operators(a):
  return (lambda v: jnp.dot(a, v, precision=matrix_free.PRECISION),
          lambda u: jnp.dot(a.T, u, precision=matrix_free.PRECISION))


def _graded_matrix(m, n, decades, seed):
  """``U diag(s) V^T`` with s log-spaced over ``decades``, random
  orthogonal U, V (NumPy, float64)."""
  rng = np.random.default_rng(seed)
  u = np.linalg.qr(rng.standard_normal((m, m)))[0]
  v = np.linalg.qr(rng.standard_normal((n, n)))[0]
  s = np.logspace(0, -decades, min(m, n))
  return (u[:, :min(m, n)] * s[None, :]) @ v[:, :min(m, n)].T, s


# The library's Ritz decomposition, one compiled program per k (eagerly it
# is a handful of op-by-op compilations per k).
_ritz = jax.jit(matrix_free.ritz_decomposition)


class OperatorsTest(parameterized.TestCase):

  def test_matvec_and_rmatvec_are_the_dense_jacobian(self):
    with jax.enable_x64(True):
      model, params = _net("tanh", 3, 16, num_outputs=5, dtype=np.float64)
      x = _input(16, np.float64)
      fn = matrix_free.mlp_map(model, params)

      @jax.jit
      def products(x, v, u):
        matvec, rmatvec = matrix_free.linear_operators(fn, x)
        return matvec(v), rmatvec(u)
      v, u = _input(16, np.float64, 2), _input(5, np.float64, 3)
      jv, jtu = products(x, v, u)
      jac = _dense_jacobian("tanh", params, x)
      chex.assert_shape((jv, jtu), [(5,), (16,)])
      chex.assert_trees_all_close(jv, jac @ v, rtol=1e-12)
      chex.assert_trees_all_close(jtu, jac.T @ u, rtol=1e-12)

  def test_mlp_map_to_layer_has_the_cumulative_jacobian(self):
    with jax.enable_x64(True):
      model, params = _net("relu", 4, 12, dtype=np.float64)
      x = _input(12, np.float64)
      fn = matrix_free.mlp_map(model, params, layer=2)
      chex.assert_trees_all_close(jax.jit(jax.jacfwd(fn))(x),
                                  _dense_jacobian("relu", params, x, layer=2),
                                  rtol=1e-12)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "x must be 1-D"):
      matrix_free.linear_operators(jnp.tanh, jnp.zeros((2, 4)))
    with self.assertRaisesRegex(ValueError, r"fn\(x\) must be 1-D"):
      matrix_free.linear_operators(lambda z: jnp.outer(z, z),
                                   jnp.zeros((4,)))
    model = models.make_mlp(depth=2, width=4, activation="tanh")
    with self.assertRaisesRegex(ValueError, "layer must be in 1 .. 2"):
      matrix_free.mlp_map(model, None, layer=3)


class GolubKahanTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_bidiagonal_relations_m_greater_than_n(self):
    self._check_relations(30, 20, 12, self.variant)

  def test_bidiagonal_relations_m_less_than_n_all_steps(self):
    self._check_relations(20, 30, 20, jax.jit)

  def _check_relations(self, m, n, k, transform):
    """U, V orthonormal; J V_k = U_k B_k; J^T U_k = V_k B_k^T + b_k v e_k^T."""
    with jax.enable_x64(True):
      a, _ = _graded_matrix(m, n, 2, seed=m + n)
      matvec, rmatvec = _matrix_operators(a)
      gk = transform(lambda v0: matrix_free.golub_kahan(
          matvec, rmatvec, v0, k))(_input(n, np.float64))
      chex.assert_shape((gk.alphas, gk.betas, gk.left, gk.right),
                        [(k,), (k,), (k, m), (k + 1, n)])
      b = np.asarray(matrix_free.bidiagonal_matrix(gk.alphas, gk.betas))
      gk = jax.device_get(gk)
      v_k, u_k = gk.right[:k].T, gk.left.T
      atol = 1e-12  # ||J|| = 1; rounding ~ k eps (module docstring)
      np.testing.assert_allclose(gk.left @ gk.left.T, np.eye(k), atol=atol)
      np.testing.assert_allclose(v_k.T @ v_k, np.eye(k), atol=atol)
      np.testing.assert_allclose(a @ v_k, u_k @ b, atol=atol)
      e_k = np.eye(k)[-1]
      np.testing.assert_allclose(
          a.T @ u_k,
          v_k @ b.T + gk.betas[-1] * np.outer(gk.right[k], e_k), atol=atol)
      self.assertTrue(np.all(gk.alphas > 0))
      # The Ritz residuals are what the error bounds say: with
      # B = P S Q^T, y = V_k Q, z = U_k P: J y = S z and
      # ||J^T z_i - s_i y_i|| = |beta_k P[k, i]| = sqrt(2) bound_i.
      ritz = jax.device_get(_ritz(gk.alphas, gk.betas))
      p, s, qt = np.linalg.svd(b)
      y, z = v_k @ qt.T, u_k @ p
      np.testing.assert_allclose(ritz.singular_values, s, atol=atol)
      np.testing.assert_allclose(a @ y, z * s[None, :], atol=atol)
      np.testing.assert_allclose(
          np.linalg.norm(a.T @ z - y * s[None, :], axis=0) / math.sqrt(2),
          ritz.error_bounds, atol=atol)
      self.assertGreater(np.max(ritz.error_bounds), 1e-6)

  def test_full_reorthogonalisation_keeps_a_graded_spectrum_exact(self):
    """k = n on singular values over 12 decades: V orthonormal, all exact.

    Without reorthogonalisation V loses orthogonality once the top values
    converge (Paige 1976) and ghosts replace the small singular values.
    """
    with jax.enable_x64(True):
      a, s = _graded_matrix(48, 48, 12, seed=3)
      # One jitted program (op by op, every eager op compiles its own).
      gk = jax.device_get(jax.jit(lambda v0: matrix_free.golub_kahan(
          *_matrix_operators(a), v0, 48))(_input(48, np.float64)))
      np.testing.assert_allclose(gk.right[:48] @ gk.right[:48].T, np.eye(48),
                                 atol=1e-12)
      ritz = _ritz(gk.alphas, gk.betas)
      np.testing.assert_allclose(ritz.singular_values, s, rtol=0,
                                 atol=1e-12)

  def test_breakdown_recovers_multiplicities_and_zeros(self):
    """J = Q diag(3 x5, 1 x5, 0 x6) Q^T: a Krylov space of dimension 3.

    The recurrence breaks down after three steps (and an exact zero singular
    value gives alpha = 0); restarts must keep everything finite and k = n
    must still give every singular value with its multiplicity.
    """
    with jax.enable_x64(True):
      s = np.array([3.0] * 5 + [1.0] * 5 + [0.0] * 6)
      q = np.linalg.qr(np.random.default_rng(5).standard_normal((16, 16)))[0]
      a = (q * s[None, :]) @ q.T
      gk = jax.device_get(jax.jit(lambda v0: matrix_free.golub_kahan(
          *_matrix_operators(a), v0, 16))(_input(16, np.float64)))
      chex.assert_tree_all_finite(gk)
      self.assertGreaterEqual(int(np.sum(gk.betas == 0)), 2)
      ritz = _ritz(gk.alphas, gk.betas)
      chex.assert_tree_all_finite(ritz)
      np.testing.assert_allclose(ritz.singular_values, s, atol=1e-12)
      np.testing.assert_allclose(gk.left @ gk.left.T, np.eye(16), atol=1e-12)

  def test_exact_zero_coefficients_give_no_nan(self):
    """J = diag(2, 2, 0, 0), v_1 = (e_1 + e_3)/sqrt(2): J v_2 = beta_1 u_1.

    Here alpha_2 is exactly 0 after reorthogonalisation (0/0 without the
    restart), and the remaining coefficients are exact zeros too.
    """
    with jax.enable_x64(True):
      a = np.diag([2.0, 2.0, 0.0, 0.0])
      gk = jax.device_get(jax.jit(lambda v0: matrix_free.golub_kahan(
          *_matrix_operators(a), v0, 4))(np.array([1.0, 0.0, 1.0, 0.0])))
      chex.assert_tree_all_finite(gk)
      self.assertEqual(float(gk.alphas[1]), 0.0)
      ritz = _ritz(gk.alphas, gk.betas)
      np.testing.assert_allclose(ritz.singular_values, [2, 2, 0, 0],
                                 atol=1e-15)
      np.testing.assert_allclose(gk.right[:4] @ gk.right[:4].T, np.eye(4),
                                 atol=1e-15)

  def test_bad_step_counts(self):
    matvec, rmatvec = _matrix_operators(np.ones((3, 5), np.float32))
    for k in (0, 4):
      with self.assertRaisesRegex(ValueError, r"num_steps must be in 1 \.\. "
                                  r"min\(m, n\) = 3"):
        matrix_free.golub_kahan(matvec, rmatvec, np.ones((5,), np.float32), k)


class ExtremeSingularValuesTest(parameterized.TestCase):

  @pytest.mark.slow
  def test_largest_match_dense_float32_and_vmap(self):
    """Top 5 of a width-128 ReLU net after 40 steps, three inputs vmapped.

    Each Ritz value is within its residual bound of a singular value of J,
    and interlacing puts it below the i-th one; once the bounds are below
    the gaps it is the i-th. Float32 rounding floor: each JVP/VJP rounds a
    depth-4 chain of width-128 products, relative error ~ L sqrt(N) eps32 =
    4 * 11 * 1.2e-7 ~ 5e-6 of ||J|| (the dense reference, float64 NumPy,
    adds nothing at this level); allow 1e-4 ||J||. The gap sigma_5 - sigma_6 is asserted > 1e-3 ||J||,
    far above both. Agreement with the dense probe per input is also what
    shows that vmap over inputs is right.
    """
    model, params = _net("relu", 4, 128, sigma_w2=1.96)
    xs = np.random.default_rng(1).standard_normal((3, 128)).astype(
        np.float32)
    fn = matrix_free.mlp_map(model, params)

    @jax.jit
    def run(xs):
      keys = jax.random.split(jax.random.key(2), 3)
      return jax.vmap(lambda x, key: matrix_free.extreme_singular_values(
          fn, x, key, 40, 5))(xs, keys)
    got = jax.device_get(run(xs))
    chex.assert_shape(got, matrix_free.ExtremeSingularValues(
        *[(3, 5)] * 4))
    chex.assert_tree_all_finite(got)
    dense = np.stack([_dense_sv("relu", params, x) for x in xs])
    top = dense[:, :1]
    floor = 1e-4 * top
    bounds = got.largest_bounds
    self.assertTrue(np.all(bounds < 1e-3 * top))  # converged at 40 steps
    np.testing.assert_array_less(np.abs(got.largest - dense[:, :5]),
                                 bounds + floor)
    np.testing.assert_array_less(got.largest, dense[:, :5] + floor)
    self.assertGreater(np.min(dense[:, 4] - dense[:, 5]), 1e-3 * top.max())

  def test_num_steps_n_gives_the_whole_dense_spectrum(self):
    """k = n = 128 steps: all 128 singular values = dense SVD (float64)."""
    with jax.enable_x64(True):
      model, params = _net("tanh", 4, 128, sigma_w2=2.25, dtype=np.float64)
      x = _input(128, np.float64)
      got = jax.device_get(jax.jit(
          lambda x: matrix_free.extreme_singular_values(
              matrix_free.mlp_map(model, params), x, jax.random.key(3), 128,
              64))(x))
      dense = _dense_sv("tanh", params, x)
    spectrum = np.concatenate([got.largest, got.smallest[::-1]])
    np.testing.assert_allclose(spectrum, dense, rtol=0, atol=1e-10 * dense[0])
    np.testing.assert_array_less(got.largest_bounds, 1e-10 * dense[0])

  @pytest.mark.slow
  def test_smallest_of_a_graded_spectrum_within_their_bounds(self):
    """Deep tanh, Gaussian sigma_w2 = 4: singular values over ~19 decades.

    After j < n steps each of the 3 smallest Ritz values has a singular
    value of J within its bound, and (interlacing, m = n) the i-th smallest
    Ritz value is >= the i-th smallest singular value. The bounds must also
    say something: at j = 96 = 3n/4 they are below 1e-7 ||J|| (the graded
    spectrum deflates from the top), though the smallest Ritz value is still
    far above sigma_min ~ 3e-20 ||J||: the smallest converge slowly.
    """
    with jax.enable_x64(True):
      model, params = _net("tanh", 8, 128, sigma_w2=4.0, dtype=np.float64)
      x = _input(128, np.float64)
      fn = matrix_free.mlp_map(model, params)
      gk = jax.device_get(jax.jit(lambda x: matrix_free.golub_kahan(
          *matrix_free.linear_operators(fn, x),
          jax.random.normal(jax.random.key(4), (128,), jnp.float64), 96))(x))
      dense = _dense_sv("tanh", params, x)
      floor = 1e-10 * dense[0]
      for j in (64, 80, 96):
        # The first j steps of a run are a j-step run.
        ritz = jax.device_get(_ritz(gk.alphas[:j], gk.betas[:j]))
        smallest = ritz.singular_values[::-1][:3]
        bounds = ritz.error_bounds[::-1][:3]
        nearest = np.min(np.abs(smallest[:, None] - dense[None, :]), axis=1)
        np.testing.assert_array_less(nearest, bounds + floor)
        np.testing.assert_array_less(dense[::-1][:3], smallest + floor)
      self.assertLess(bounds.max(), 1e-7 * dense[0])
      self.assertGreater(smallest[0], 1e3 * dense[-1])

  def test_bad_k(self):
    with self.assertRaisesRegex(ValueError, r"k must be in 1 \.\. num_steps"):
      matrix_free.extreme_singular_values(jnp.tanh, _input(8),
                                          jax.random.key(0), 4, 5)


class OrthogonalLinearNetTest(absltest.TestCase):
  """J = sigma_w^L Q (Q orthogonal): one distinct singular value.

  Every step breaks down (beta_j = 0) and restarts. Float32 rounding of
  L = 10 products of width 64: relative ~ sqrt(L N) eps32 ~ 3e-6; allow 1e-5.
  """
  DEPTH, WIDTH, SIGMA_W = 10, 64, 1.1

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    model, params = _net("linear", cls.DEPTH, cls.WIDTH, init="orthogonal",
                         sigma_w2=cls.SIGMA_W ** 2, sigma_b2=None)
    cls.fn = staticmethod(matrix_free.mlp_map(model, params))
    cls.x = _input(cls.WIDTH)
    cls.sigma = cls.SIGMA_W ** cls.DEPTH

  def test_all_singular_values_with_k_equals_n(self):
    got = jax.jit(lambda x: matrix_free.extreme_singular_values(
        self.fn, x, jax.random.key(0), self.WIDTH, self.WIDTH // 2))(self.x)
    chex.assert_tree_all_finite(got)
    np.testing.assert_allclose(got.largest, self.sigma, rtol=1e-5)
    np.testing.assert_allclose(got.smallest, self.sigma, rtol=1e-5)
    np.testing.assert_array_less(got.largest_bounds, 1e-5 * self.sigma)

  def test_density_is_one_kernel_with_k_less_than_n(self):
    """Every Ritz value is sigma_w^L; the log density is N(L ln sigma_w)."""
    grid, width = np.linspace(0.0, 2.0, 41, dtype=np.float32), 0.1
    got = jax.device_get(jax.jit(lambda x: matrix_free.spectral_density(
        self.fn, x, jax.random.key(10), 3, 12, grid, width))(self.x))
    chex.assert_tree_all_finite(got)
    np.testing.assert_allclose(got.quadrature.singular_values, self.sigma,
                               rtol=1e-5)
    center = math.log(self.sigma)
    expected = np.exp(-0.5 * ((grid - center) / width) ** 2) / (
        math.sqrt(2 * math.pi) * width)
    # |d N(g; c, w) / dc| <= e^{-1/2} peak / w: a centre off by the 1e-5
    # float32 rounding moves the density by < 1e-4 peak; allow 1e-3.
    np.testing.assert_allclose(got.density, expected, rtol=0,
                               atol=1e-3 * expected.max())
    np.testing.assert_allclose(
        matrix_free.exact_density(np.full((self.WIDTH,), self.sigma,
                                          np.float32), grid, width),
        expected, rtol=0, atol=1e-5 * expected.max())
    np.testing.assert_allclose(got.moments, [self.sigma ** 2,
                                             self.sigma ** 4], rtol=1e-4)


class SpectralDensityTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    with jax.enable_x64(True):
      model, params = _net("tanh", 4, 64, sigma_w2=2.25, dtype=np.float64)
    cls.x = _input(64, np.float64)
    cls.fn = staticmethod(matrix_free.mlp_map(model, params))
    cls.jac = _dense_jacobian("tanh", params, cls.x)
    cls.sv = np.linalg.svd(cls.jac, compute_uv=False)

  def setUp(self):
    super().setUp()
    self.enter_context(jax.enable_x64(True))

  def _density(self, key, num_probes, *args, probe="rademacher", **kwargs):
    """spectral_density at self.x, and its probes: drawn in the same
    program (one compilation, not a second one for the random bits)."""
    def run(x):
      return (matrix_free.spectral_density(self.fn, x, key, num_probes,
                                           *args, probe=probe, **kwargs),
              matrix_free.sample_probes(key, num_probes, x.shape[0], x.dtype,
                                        probe))
    return jax.device_get(jax.jit(run)(self.x))

  @parameterized.parameters(("gaussian", "squared"), ("rademacher", "log"))
  def test_moments_match_exact_traces_and_density_integrates_to_one(
      self, probe, variable):
    """SLQ moments with k = 2 steps: exact per probe, unbiased over probes.

    Per probe the 2-node Gauss rule integrates degree <= 3 exactly, so its
    moments are u^T A u and u^T A^2 u (A = J^T J) to rounding (float64,
    rtol 1e-12). Over probes they estimate tr(A)/n and tr(A^2)/n, compared
    with the dense SVD. Hutchinson: for v ~ N(0, I_n), v^T A v =
    sum_i lambda_i g_i^2 (rotate to A's eigenbasis) has variance
    sum_i lambda_i^2 Var(g^2) = 2 ||A||_F^2.
    Rademacher: Var = 2 sum_{i != j} A_ij^2 <= 2 ||A||_F^2. The unit probe
    u = v / ||v|| divides by n exactly (Rademacher) or is uniform on the
    sphere (Gaussian), where Var(u^T A u) = 2 (tr A^2 / n - (tr A / n)^2)
    / (n + 2) <= 2 ||A||_F^2 / n^2. So the mean over P probes estimates
    tr(A)/n with standard deviation <= sqrt(2 ||A||_F^2 / P) / n, with
    ||A||_F^2 = sum sigma^4 for A = J^T J and sum sigma^8 for A = (J^T J)^2.
    Six standard deviations.

    Density: each probe's weights sum to 1, and the Ritz values lie in
    [sigma_min, sigma_max] (interlacing), so on a grid reaching 10 kernel
    widths past both ends the trapezoid rule of the Gaussian mixture is 1 to
    within exp(-50) plus its (spectrally small) discretisation error.
    """
    num_probes, n = 32, 64
    if variable == "log":
      width = 0.2
      lo, hi = math.log(self.sv[-1]), math.log(self.sv[0])
    else:
      width = 0.05 * self.sv[0] ** 2
      lo, hi = 0.0, self.sv[0] ** 2
    grid = np.arange(lo - 10 * width, hi + 10 * width, width / 8)
    key = jax.random.key(7)
    got, probes = self._density(key, num_probes, 2, grid, width,
                                variable=variable, probe=probe)
    theta = got.quadrature.singular_values ** 2
    w = got.quadrature.weights
    per_probe = np.stack([np.sum(w * theta, 1), np.sum(w * theta ** 2, 1)])
    ju = probes @ self.jac.T / np.linalg.norm(probes, axis=1)[:, None]
    np.testing.assert_allclose(per_probe[0], np.sum(ju ** 2, 1), rtol=1e-12)
    np.testing.assert_allclose(per_probe[1], np.sum((ju @ self.jac) ** 2, 1),
                               rtol=1e-12)
    s2 = self.sv ** 2
    exact = np.array([np.sum(s2), np.sum(s2 ** 2)]) / n
    std = np.sqrt(2 * np.array([np.sum(s2 ** 2), np.sum(s2 ** 4)])
                  / num_probes) / n
    np.testing.assert_array_less(np.abs(got.moments - exact), 6 * std)
    # The reported standard errors: sample spread over probes / sqrt(P).
    np.testing.assert_allclose(
        got.moment_errors,
        np.std(per_probe, axis=1, ddof=1) / math.sqrt(num_probes), rtol=1e-10)
    np.testing.assert_allclose(np.sum(got.quadrature.weights, 1), 1.0,
                               rtol=1e-12)
    self.assertTrue(np.all(got.density >= 0))
    self.assertAlmostEqual(float(np.trapezoid(got.density, grid)), 1.0,
                           delta=1e-9)

  def test_k_equals_n_gives_the_probe_spectral_measure(self):
    """k = n: nodes = sigma_j^2, weights = (q_j^T u)^2 (dense right SVD)."""
    key, grid, width = jax.random.key(9), np.linspace(-6.0, 2.0, 81), 0.2
    got, probes = self._density(key, 1, 64, grid, width)
    v = probes[0]
    _, s, qt = np.linalg.svd(self.jac)
    weights = (qt @ v) ** 2 / (v @ v)
    # The Gaussian mixture sum_j weights_j N(grid; log s_j, width^2).
    z = (grid[None, :] - np.log(s)[:, None]) / width
    expected = weights @ (np.exp(-0.5 * z * z)
                          / (math.sqrt(2 * math.pi) * width))
    chex.assert_shape(got.density, (81,))
    np.testing.assert_allclose(got.density, expected, rtol=1e-8,
                               atol=1e-10)

  def test_vmap_over_inputs_float32(self):
    """jit(vmap) over two inputs: shapes, dtype, per-input moments."""
    model, params = _net("tanh", 3, 32, sigma_w2=2.25)
    fn = matrix_free.mlp_map(model, params)
    grid = np.linspace(-3.0, 2.0, 11, dtype=np.float32)

    def run(x):
      return matrix_free.spectral_density(fn, x, jax.random.key(11), 4, 8,
                                          grid, 0.3)
    xs = np.random.default_rng(12).standard_normal((2, 32)).astype(
        np.float32)
    # The probes (the same for both inputs) from the same program.
    got, probes = jax.device_get(jax.jit(lambda xs: (
        jax.vmap(run)(xs), matrix_free.sample_probes(
            jax.random.key(11), 4, 32, jnp.float32)))(xs))
    chex.assert_shape(got.density, (2, 11))
    chex.assert_shape(got.quadrature,
                      matrix_free.Quadrature((2, 4, 8), (2, 4, 8)))
    self.assertEqual(got.density.dtype, jnp.float32)
    chex.assert_tree_all_finite(got)
    # Float32 Gauss weights still sum to 1 (orthogonal Q to ~ k eps32).
    np.testing.assert_allclose(np.sum(got.quadrature.weights, -1), 1.0,
                               rtol=1e-5)
    # Per input, the first moment is the mean of 4 quadratic forms
    # u^T J^T J u: check it against the dense Jacobian of that input
    # (float64; the float32 moments are within ~1e-6 of it).
    probes = np.asarray(probes, np.float64)
    u = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    for b in range(2):
      ju = u @ _dense_jacobian("tanh", params, xs[b]).T
      np.testing.assert_allclose(got.moments[b, 0],
                                 np.mean(np.sum(ju ** 2, 1)), rtol=1e-4)

  def test_bad_names(self):
    with self.assertRaisesRegex(ValueError, "unknown variable 'ln'"):
      matrix_free.spectral_density(self.fn, self.x, jax.random.key(0), 2, 4,
                                   np.zeros((1,)), 0.1, variable="ln")
    with self.assertRaisesRegex(ValueError, "unknown probe 'normal'"):
      matrix_free.spectral_density(self.fn, self.x, jax.random.key(0), 2, 4,
                                   np.zeros((1,)), 0.1, probe="normal")


if __name__ == "__main__":
  absltest.main()
