"""Tests for vgrad.probes.jacobian against autodiff and exact theory.

Monte-Carlo bounds are derived in the docstrings; each is a six-standard-
deviation bound, so a correct implementation fails with probability < 1e-8
per test while the bugs that matter (a wrong variance, a missing D_l, a
transposed W) move the statistic by tens of standard deviations.
"""

import functools
import math
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vgrad.nn import activations
from vgrad.nn import models
from vgrad.probes import jacobian
from vgrad.probes import spectrum

# Every base activation and two transformed entries (make_mlp passes them
# the net's depth; the others: tests/kernel_shaping_test.py).
ALL_ACTIVATIONS = sorted(
    (set(activations.ACTIVATIONS) - set(activations.TRANSFORMED))
    | {"dks_tanh", "tat_tanh"})


@functools.cache
def _net(act, depth, width, init="gaussian", sigma_w2=None, sigma_b2=0.01,
         n_in=None, num_outputs=None, head="none", dtype=jnp.float32, seed=0,
         numpy_gaussian=True, **act_params):
  """``(model, params)``, built once per configuration for the whole file
  (a float64 configuration must first be asked for under ``enable_x64``).

  ``model.init`` runs eagerly: each random draw compiles once per shape and
  dtype (~0.5 s for a normal draw), so the tests share a few shapes
  (``AGREE`` below). The ``gaussian`` init's parameters, kernels
  N(0, sigma_w2 / fan_in) and biases N(0, sigma_b2) (zero without
  ``sigma_b2``), are drawn by NumPy instead, in the shapes of ``model.init``
  (traced, not compiled): these tests check Jacobians, whatever the
  weights; tests/initializers_test.py checks the initializers.
  ``numpy_gaussian=False`` keeps ``model.init``'s draws."""
  model = models.make_mlp(depth=depth, width=width, activation=act,
                          activation_params=act_params, init=init,
                          sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                          num_outputs=num_outputs, head=head,
                          param_dtype=dtype)
  x = jax.ShapeDtypeStruct((n_in or width,), dtype)
  if init != "gaussian" or not numpy_gaussian:
    return model, model.init(jax.random.key(seed), jnp.zeros(x.shape, dtype))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if path[-1].key == "kernel":  # (..., fan_in, fan_out)
      std = math.sqrt((1.0 if sigma_w2 is None else sigma_w2)
                      / leaf.shape[-2])
    else:
      std = math.sqrt(sigma_b2 or 0.0)
    return jnp.asarray((std * rng.standard_normal(leaf.shape)).astype(
        leaf.dtype))
  shapes = jax.eval_shape(model.init, jax.random.key(seed), x)
  return model, jax.tree_util.tree_map_with_path(draw, shapes)


def _inputs(n, width, dtype=jnp.float32, seed=1):
  """``(n, width)`` standard normal inputs, a NumPy array drawn by NumPy:
  no compilation per shape, as an eager ``jax.random.normal`` (or an eager
  cast, slice or reshape of a jax array) would need."""
  return np.random.default_rng(seed).standard_normal((n, width)).astype(
      dtype)


@functools.cache
def _stacked_io_probe(act, init, depth, width):
  """The input-output Jacobian probe (``spectrum=False``: ``J`` itself) of
  a float32 ``make_mlp(act, init)`` net, vmapped over a leading network
  axis of the parameters and inputs and jitted as a whole (the in-graph
  stacking of the traced layers included): one compiled program per
  shape, shared by the cases that use it. The tests need the mean squared
  singular value, ``tr(J J^T) / N = ||J||_F^2 / N`` (:func:`_mean_sq`):
  no SVD (the 256-wide case's SVDs took most of its time; the spectra
  are checked against NumPy's SVD in AgreementTest)."""
  model = models.make_mlp(depth=depth, width=width, activation=act,
                          init=init)
  return jax.jit(jax.vmap(jacobian.make_input_output_probe(
      model, spectrum=False)))


def _mean_sq(jac) -> float:
  """The mean squared singular value of ``J (..., N, N)`` over every
  matrix: ``mean ||J||_F^2 / N``, in float64."""
  jac = np.asarray(jac, np.float64)
  return float(np.mean(np.sum(jac ** 2, axis=(-2, -1))) / jac.shape[-1])


def _stacked_gaussian_params(nets, depth, width, sigma_w2, seed):
  """``nets`` independent draws of a square net's parameters, stacked on a
  leading axis: kernels N(0, sigma_w2 / width) (the exact Gaussians of the
  ``gaussian`` and ``he_normal`` inits, whose variances
  tests/initializers_test.py checks), zero biases.

  Drawn by NumPy: a vmapped ``model.init`` compiles a random draw per shape
  and spends seconds generating the 2e7 values of the widest case."""
  rng = np.random.default_rng(seed)
  scale = math.sqrt(sigma_w2 / width)
  return {"params": {f"layers_{l}": {
      "kernel": jnp.asarray(
          scale * rng.standard_normal((nets, width, width)), jnp.float32),
      "bias": jnp.asarray(np.zeros((nets, width), np.float32))}
      for l in range(depth)}}


# The agreement tests' network (float64): a non-square first layer and a
# readout, shared by every activation and test so that its parameters are
# drawn, and each activation's eager layer ops compiled, once.
AGREE = dict(depth=4, width=6, n_in=3, num_outputs=3, sigma_w2=2.25,
             dtype=jnp.float64)


class AgreementTest(parameterized.TestCase):
  """jacfwd = jacrev = the analytic D_l W_l (S_l W_l for maxout), in float64."""

  @parameterized.parameters(*ALL_ACTIVATIONS)
  def test_layer_jacobians_agree(self, act):
    with jax.enable_x64(True):
      model, params = _net(act, **AGREE)
      x = _inputs(1, 3, jnp.float64)[0]
      rev = jacobian.autodiff_layer_jacobians(model, params, x, "rev")
      fwd = jacobian.autodiff_layer_jacobians(model, params, x, "fwd")
      analytic = jacobian.analytic_layer_jacobians(model, params, x)
      chex.assert_shape(rev[0], (6, 3))
      chex.assert_shape(rev[1:], [(6, 6)] * 3)
      chex.assert_trees_all_close(rev, fwd, rtol=1e-12, atol=1e-14)
      chex.assert_trees_all_close(analytic, rev, rtol=1e-12, atol=1e-14)

  @parameterized.parameters(*ALL_ACTIVATIONS)
  def test_chain_is_the_jacobian_of_the_truncated_net(self, act):
    with jax.enable_x64(True):
      model, params = _net(act, **AGREE)
      x = _inputs(1, 3, jnp.float64)[0]
      chain = jacobian.cumulative_jacobians(
          jacobian.analytic_layer_jacobians(model, params, x))
      for l in range(1, 5):
        def first_l(z, l=l):
          for m in range(1, l + 1):
            z = model.apply(params, m, z, method=models.MLP.apply_layer)[0]
          return z
        chex.assert_trees_all_close(chain[l - 1], jax.jacfwd(first_l)(x),
                                    rtol=1e-12, atol=1e-14)
      # With the readout: dy/dx = W_out J_{<=4}.
      io = jacobian.input_output_jacobian(model, params, x)
      w_out = params["params"]["readout"]["kernel"].T
      chex.assert_trees_all_close(io, w_out @ chain[-1], rtol=1e-12)

  @parameterized.parameters(("tanh", "none"), ("maxout", "sigmoid"),
                            ("relu", "softmax"))
  def test_probe_spectra_match_dense_svd(self, act, head):
    # AGREE: 3 inputs -> 4 layers of 6 -> 3 outputs, so J_{<=l} is 6 x 3
    # and dy/dx 3 x 3 (3 singular values each; one is 0 with softmax).
    with jax.enable_x64(True):
      model, params = _net(act, **AGREE, head=head)
      xs = _inputs(3, 3, jnp.float64)
      spectra = jacobian.make_spectrum_probe(model)(params, xs)
      chex.assert_shape(spectra.first_layer, (3, 3))
      chex.assert_shape(spectra.cumulative, (3, 4, 3))
      chex.assert_shape(spectra.per_layer, (3, 3, 6))
      chex.assert_shape(spectra.input_output, (3, 3))
      for b in range(3):
        layers = jacobian.autodiff_layer_jacobians(model, params, xs[b])
        chain = jacobian.cumulative_jacobians(layers)
        sv = lambda m: np.linalg.svd(np.asarray(m), compute_uv=False)
        chex.assert_trees_all_close(spectra.first_layer[b], sv(layers[0]),
                                    rtol=1e-10)
        for l in range(4):
          chex.assert_trees_all_close(spectra.cumulative[b, l], sv(chain[l]),
                                      rtol=1e-10, atol=1e-14)
        for l in range(1, 4):
          chex.assert_trees_all_close(spectra.per_layer[b, l - 1],
                                      sv(layers[l]), rtol=1e-10)
        io = jacobian.input_output_jacobian(model, params, xs[b])
        # atol: the softmax head's Jacobian is singular (rows sum to 0).
        chex.assert_trees_all_close(spectra.input_output[b], sv(io),
                                    rtol=1e-10, atol=1e-14)
      io_only = jacobian.make_input_output_probe(model)(params, xs)
      chex.assert_trees_all_close(io_only, spectra.input_output, rtol=1e-10,
                                  atol=1e-14)

  @parameterized.parameters(("relu", "he_normal"), ("hard_tanh",
                                                     "large_normal"))
  def test_rank_bound_from_inactive_units_is_exact(self, act, init):
    """Past min_m nonzero_rows(J_m) every singular value of J_{<=l} is 0."""
    with jax.enable_x64(True):
      # Width 32 as in test_resolved_float32_values_match_float64: the
      # float64 kernels of both are drawn at one shape.
      model, params = _net(act, depth=5, width=32, init=init, sigma_b2=None,
                           dtype=jnp.float64)
      spectra = jacobian.make_spectrum_probe(model)(
          params, _inputs(3, 32, jnp.float64))
    rows = np.asarray(spectra.nonzero_rows)
    self.assertTrue((rows < 32).any())
    bound = np.minimum.accumulate(rows, axis=1)
    cum = np.asarray(spectra.cumulative)
    for b, l in np.ndindex(*bound.shape):
      r = bound[b, l]
      self.assertTrue((cum[b, l, :r] > 1e-10 * cum[b, l, 0]).all())
      self.assertTrue((cum[b, l, r:] < 1e-13 * cum[b, l, 0]).all())

  def test_depth_one(self):
    model, params = _net("tanh", depth=1, width=4)
    spectra = jacobian.make_spectrum_probe(model)(params, _inputs(2, 4))
    chex.assert_shape(spectra.cumulative, (2, 1, 4))
    chex.assert_shape(spectra.per_layer, (2, 0, 4))
    chex.assert_trees_all_close(spectra.cumulative[:, 0], spectra.first_layer)

  def test_probe_compiles_once(self):
    model, params = _net("tanh", depth=3, width=4)
    probe = jacobian.make_input_output_probe(model)
    calls = []
    traced = jax.jit(lambda p, x: (calls.append(1), probe(p, x))[1])
    for seed in range(3):
      traced(params, _inputs(2, 4, seed=seed))
    self.assertLen(calls, 1)


class TheoryTest(parameterized.TestCase):

  def test_orthogonal_linear_net_is_an_isometry_at_depth_50(self):
    """J = W_50 ... W_1 with orthogonal W_l: every singular value is 1.

    Width 32, the float32 kernels' shape in the sigmoid test below. The
    kernels are the Q factors of NumPy QRs of Gaussians (any orthogonal
    W_l makes J an isometry; tests/initializers_test.py checks the
    ``orthogonal`` init itself): 50 eager initialiser calls and their
    compilations were most of this test's time.
    """
    model = models.make_mlp(depth=50, width=32, activation="linear",
                            init="orthogonal")
    kernels = np.linalg.qr(np.random.default_rng(0).standard_normal(
        (50, 32, 32)))[0].astype(np.float32)
    params = {"params": {f"layers_{l}": {"kernel": kernels[l],
                                         "bias": np.zeros(32, np.float32)}
                         for l in range(50)}}
    spectra = jacobian.make_spectrum_probe(model)(params, _inputs(2, 32))
    chex.assert_tree_all_finite(spectra)
    # Rounding error of 50 float32 products: ~ sqrt(50 * 32) eps ~ 5e-6.
    np.testing.assert_allclose(spectra.cumulative, 1.0, atol=1e-4)
    np.testing.assert_allclose(spectra.per_layer, 1.0, atol=1e-5)

  @parameterized.parameters(0.64, 1.0, 1.44)
  def test_gaussian_linear_net_mean_squared_singular_value(self, sigma_w2):
    """E[tr(J J^T)/N] = sigma_w2^L for J a product of L Gaussian matrices.

    Bound: given A = J_{l-1} J_{l-1}^T, tr(W A W^T) = sum_i w_i^T A w_i has
    mean sigma_w2 tr A and variance 2 sigma_w2^2 tr(A^2) / N, i.e. relative
    variance 2 tr(A^2) / (N (tr A)^2) = 2 m2/(N^2 m1^2), and for a product of
    l Gaussian matrices m2/m1^2 = l + 1 (Fuss-Catalan). Summed over layers
    the relative variance of tr(J J^T)/N is about L(L+1)/N^2 per network,
    divided by S for the mean over S independent networks.
    """
    depth, width, nets = 10, 128, 16
    probe = _stacked_io_probe("linear", "gaussian", depth, width)
    params = _stacked_gaussian_params(nets, depth, width, sigma_w2, seed=3)
    xs = _inputs(nets, width, seed=4)[:, None]
    mean_sq = _mean_sq(probe(params, xs))
    rel_std = math.sqrt(depth * (depth + 1) / width ** 2 / nets)
    self.assertAlmostEqual(mean_sq / sigma_w2 ** depth, 1.0,
                           delta=6 * rel_std)

  @parameterized.parameters((16, 3, 4096), (64, 5, 512), (256, 10, 32))
  @pytest.mark.slow  # three vmapped probes, ~2-5 s each
  def test_relu_he_preserves_squared_norm_in_expectation(self, width, depth,
                                                         nets):
    """E||J v||^2 = ||v||^2 for ReLU, He init, zero biases, at any width.

    Given x_{l-1} and u = J_{l-1} v, split u = a x^ + u_perp. Then
    (W u)_i = a h_i/||x|| + g_i with g_i independent of h_i, and
    E[1(h_i > 0) (W u)_i^2] = (2/N) ||u||^2 / 2, so E||D W u||^2 = ||u||^2.
    Per layer ||D W u||^2/||u||^2 = (2/N) sum_i B_i g_i^2 (B_i Bernoulli(1/2))
    has relative variance 5/N, hence (1 + 5/N)^L - 1 after L layers, an upper
    bound for tr(J J^T)/N (an average of N such directions) too.
    """
    # he_normal is the exact Gaussian N(0, 2/N) (sigma_w2 = 2).
    params = _stacked_gaussian_params(nets, depth, width, 2.0, seed=7)
    xs = _inputs(nets, width, seed=8)[:, None]
    probe = _stacked_io_probe("relu", "he_normal", depth, width)
    jac = probe(params, xs)
    chex.assert_shape(jac, (nets, 1, width, width))
    mean_sq = _mean_sq(jac)
    rel_std = math.sqrt(((1 + 5 / width) ** depth - 1) / nets)
    self.assertAlmostEqual(mean_sq, 1.0, delta=6 * rel_std)

  @parameterized.parameters("uniform", "large_normal", "glorot_normal")
  def test_sigmoid_layer_norm_is_at_most_a_quarter_of_w(self, init):
    """||D W||_2 <= max|phi'| ||W||_2 = ||W||_2 / 4 for sigmoid."""
    model, params = _net("sigmoid", depth=6, width=32, init=init,
                         sigma_b2=None)
    for x in _inputs(8, 32):
      for l, jac in enumerate(
          jacobian.analytic_layer_jacobians(model, params, x), start=1):
        w_norm = np.linalg.norm(
            np.asarray(models.layer_params(params, l)["kernel"]), 2)
        self.assertLessEqual(np.linalg.norm(np.asarray(jac), 2),
                             0.25 * w_norm * (1 + 1e-6))

  @parameterized.parameters(("tanh", "gaussian", 1.0), ("sigmoid", "uniform",
                                                         None),
                            ("relu", "he_normal", None))
  def test_resolved_float32_values_match_float64(self, act, init, sigma_w2):
    """Every float32 value the floor calls resolved is within 1% of float64.

    Width 32 (the SVDs' cost grows as N^3): the resolved values' worst error
    is 0.3-0.4% for these three nets, while a floor without its factor N
    would pass values off by 10-13% and one 8x too low values off by 2-3%.
    """
    width = 32
    with jax.enable_x64(True):
      # model.init's draws: the errors quoted above were measured on them.
      model64, params64 = _net(act, 30, width, init=init, sigma_w2=sigma_w2,
                               sigma_b2=None, dtype=jnp.float64,
                               numpy_gaussian=False)
      xs64 = _inputs(4, width, jnp.float64)
      ref = np.asarray(
          jacobian.make_spectrum_probe(model64)(params64, xs64).cumulative)
      model32 = models.make_mlp(depth=30, width=width, activation=act,
                                init=init, sigma_w2=sigma_w2)
      params32 = jax.tree.map(lambda a: a.astype(jnp.float32), params64)
      got = np.asarray(jacobian.make_spectrum_probe(model32)(
          params32, xs64.astype(jnp.float32)).cumulative, np.float64)
    for l in range(30):
      mask = spectrum.resolved_mask(got[:, l], (width, width), np.float32)
      self.assertTrue(mask[:, 0].all())
      rel = np.abs(got[:, l] - ref[:, l])[mask] / ref[:, l][mask]
      self.assertLess(rel.max(), 1e-2, msg=f"layer {l + 1}")
    # Deep in the chain float32 really does lose the bottom of the spectrum.
    self.assertLess(mask.sum(), mask.size)


def _orthogonal_tanh_net(depth, width, seed=0):
  """A tanh net with Haar-orthogonal kernels and zero biases, as NumPy
  float64 parameters built on the host (``model.init`` of thousands of
  layers is itself slow)."""
  model = models.make_mlp(depth=depth, width=width, activation="tanh",
                          init="orthogonal", sigma_w2=1.0,
                          param_dtype=jnp.float64)
  gaussian = np.random.default_rng(seed).standard_normal(
      (depth, width, width))
  kernels = np.linalg.qr(gaussian)[0]
  params = {"params": {f"layers_{l}": {"kernel": kernels[l],
                                       "bias": np.zeros(width)}
                       for l in range(depth)}}
  return model, params


def _numpy_chain(params, depth, x):
  """``J_{<=depth}`` in float64 NumPy, layer by layer (the reference)."""
  chain = np.eye(x.shape[0])
  for l in range(depth):
    layer = params["params"][f"layers_{l}"]
    h = x @ layer["kernel"] + layer["bias"]
    x = np.tanh(h)
    chain = (1 - x ** 2)[:, None] * (layer["kernel"].T @ chain)
  return chain


class DeepProbeTest(parameterized.TestCase):
  """The probes stack the layers outside ``jit``: same values, and a compile
  time that does not grow with depth."""

  @parameterized.parameters(("tanh", None), ("maxout", 3))
  def test_probe_equals_product_of_analytic_layer_jacobians(self, act,
                                                            num_outputs):
    depth = 30
    with jax.enable_x64(True):
      # AGREE's layer shapes, 30 deep.
      model, params = _net(act, depth=depth, width=6, n_in=3,
                           num_outputs=num_outputs, dtype=jnp.float64)
      xs = _inputs(2, 3, jnp.float64)
      got = jacobian.make_input_output_probe(model, spectrum=False)(
          params, xs)
      spectra = jacobian.make_spectrum_probe(model)(params, xs)
      for b in range(2):
        chain = jacobian.cumulative_jacobians(
            jacobian.analytic_layer_jacobians(model, params, xs[b]))
        want = chain[-1]
        if num_outputs is not None:  # head "none": dy/dx = W_out J_{<=L}.
          want = params["params"]["readout"]["kernel"].T @ want
        # Same products in a different order of evaluation: float64
        # rounding, ~ depth * width * eps ~ 3e-14 relative per entry.
        chex.assert_trees_all_close(got[b], want, rtol=1e-10, atol=1e-14)
        sv = np.linalg.svd(np.asarray(chain[-1]), compute_uv=False)
        chex.assert_trees_all_close(spectra.cumulative[b, -1], sv,
                                    rtol=1e-10, atol=1e-14)

  def test_device_and_host_stacks_are_the_same_probe(self):
    """Up to DEVICE_STACK_MAX_LAYERS layers the stack is made in the
    probe's program, beyond on the host: the same arrays (a stack is a
    copy), so the same singular values and Jacobians to the bit."""
    model, params = _net("tanh", depth=5, width=4)
    xs = _inputs(2, 4)
    probes = (jacobian.make_input_output_probe(model),
              jacobian.make_input_output_probe(model, spectrum=False))
    on_device = [p(params, xs) for p in probes]
    with mock.patch.object(jacobian, "DEVICE_STACK_MAX_LAYERS", 0):
      on_host = [p(params, xs) for p in probes]
    self.assertGreaterEqual(jacobian.DEVICE_STACK_MAX_LAYERS, 4)
    chex.assert_trees_all_equal(on_device, on_host)
    _, in_graph = jax.jit(jacobian.stack_hidden_layers, static_argnums=0)(
        model, params)
    chex.assert_trees_all_equal(in_graph,
                                jacobian.stack_hidden_layers(model, params)[1])
    chex.assert_shape(in_graph["kernel"], (4, 4, 4))

  def test_deep_probe_equals_a_numpy_product(self):
    """Depth 2000 (layers stacked on the host): the Jacobian equals a
    float64 NumPy layer-by-layer product. (The compile time that host
    stacking saves is measured in BUILD_NOTES.md, not asserted here.)

    Tolerance: ||J_l||_2 <= 1 (|tanh'| <= 1, W orthogonal), so later layers
    never amplify an error. Each product step adds at most ~N^2 u (normwise,
    |AB| <= |A||B| and || |A| ||_2 <= sqrt(N) ||A||_2), and forward-pass
    rounding (at most L N u ||x_0|| per activation, tanh being 1-Lipschitz)
    moves each D_l by at most |tanh''| <= 0.77 times that: in all
    L N^2 u + L^2 N u ||x_0|| per implementation, doubled for the two.
    A layer taken out of order moves the result by O(1).
    """
    depth, width = 2000, 4
    with jax.enable_x64(True):
      xs = np.asarray(_inputs(2, width, jnp.float64))
      model, params = _orthogonal_tanh_net(depth, width)
      probe = jacobian.make_input_output_probe(model, spectrum=False)
      got = np.asarray(probe(params, xs))
    eps = np.finfo(np.float64).eps
    for b in range(2):
      want = _numpy_chain(params, depth, xs[b])
      norm_x = np.linalg.norm(xs[b])
      tol = 2 * (depth * width ** 2 + depth ** 2 * width * norm_x) * eps
      # Not vacuous: J_{<=L} decays only polynomially (x_l -> 0, where
      # tanh' -> 1), and stays far above the tolerance.
      self.assertGreater(np.abs(want).max(), 1e4 * tol)
      np.testing.assert_allclose(got[b], want, rtol=0, atol=tol)


if __name__ == "__main__":
  absltest.main()
