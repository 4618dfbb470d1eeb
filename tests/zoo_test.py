"""The worked examples of vgrad.nn.zoo, each against its known answer.

Every spectrum here is measured through the block interface: the model is
cut by ``vgrad.flax_blocks`` at ``zoo.BOUNDARIES`` and probed by
``vgrad.jacobian_spectra`` (``dense``: products and SVDs in float32), whose
``per_layer[l]`` is block ``l``'s own Jacobian J_l and ``layers[l]`` the
input-to-block product J_{<=l} = J_l ... J_1. A value the dense path cannot
resolve (below s_max n eps) is reported as None and read here as NaN.
"""

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import vgrad
from vgrad.nn import config
from vgrad.nn import zoo

F32_EPS = float(np.finfo(np.float32).eps)


def _probe(test: absltest.TestCase, example: zoo.Example, depth: int) -> dict:
  """The dense record of the example's ``depth`` blocks (flax_blocks itself
  checks that each block, fed the previous boundary's output, gives the
  next, so they compose to the model)."""
  blocks = vgrad.flax_blocks(*example)
  test.assertLen(blocks, depth)
  record = vgrad.jacobian_spectra(blocks, example.x[None], method="dense")
  test.assertLen(record["layers"], depth)
  return record


def _values(record: dict) -> np.ndarray:
  """The one input's singular values, descending, NaN where unresolved."""
  return np.array([np.nan if v is None else v
                   for v in record["singular_values"][0]], np.float64)


def _median(record: dict) -> tuple[float, float]:
  """The median singular value, bracketed: unresolved values (below the
  dense floor s_max n eps) taken as 0, then as that floor."""
  s = _values(record)
  floor = np.nanmax(s) * s.size * F32_EPS
  return (float(np.median(np.where(np.isnan(s), 0.0, s))),
          float(np.median(np.where(np.isnan(s), floor, s))))


def _numerical_rank(record: dict, rel: float = 1e-3) -> int:
  """How many singular values exceed ``rel`` s_max (``rel`` far above the
  float32 floor n eps, so every counted value is resolved)."""
  s = _values(record)
  return int(np.sum(s >= rel * s[0]))


class RegistryTest(absltest.TestCase):

  def test_every_model_has_its_boundaries(self):
    self.assertEqual(sorted(zoo.BOUNDARIES), sorted(zoo.MODELS))

  def test_unknown_model_lists_the_valid_names(self):
    with self.assertRaisesRegex(ValueError, "unknown model 'mlp'; valid "
                                "names: cnn, resnet, rnn, transformer"):
      zoo.build("mlp", jax.random.key(0))

  def test_bad_hyperparameters_are_named(self):
    key = jax.random.key(0)
    for name, kwargs, field in (
        ("rnn", {"depth": 0}, "depth"),
        ("transformer", {"width": 6, "heads": 4}, "heads"),
        ("cnn", {"init": "orthogonal"}, "init"),
        ("resnet", {"init": "he_normal", "sigma_w2": 2.0}, "sigma_w2"),
        ("resnet", {"act": "tanhh"}, "act"),
        ("cnn", {"kernel_size": 2}, "kernel_size"),
        ("rnn", {"act": "maxout"}, "act")):
      with self.assertRaises(config.ConfigError) as cm:
        zoo.build(name, key, **kwargs)
      self.assertEqual(cm.exception.field, field)
    with self.assertRaisesRegex(ValueError, "odd kernel sizes"):
      zoo.delta_orthogonal()(key, (2, 2, 1, 1))


class ConvNetTest(absltest.TestCase):

  def test_circular_conv_is_flax_circular_conv(self):
    """The zoo's convolution is Flax's ``nn.Conv(padding="CIRCULAR")``
    (odd and even kernel sizes: the wrap-around offsets agree)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((5, 4, 2)), jnp.float32)
    for shape in ((3, 3), (3, 2)):
      kernel = jnp.asarray(rng.standard_normal(shape + (2, 3)), jnp.float32)
      conv = nn.Conv(3, shape, padding="CIRCULAR", use_bias=False,
                     precision=zoo.PRECISION)
      np.testing.assert_allclose(
          jax.jit(zoo.circular_conv)(x, kernel),
          jax.jit(conv.apply)({"params": {"kernel": kernel}}, x),
          rtol=1e-6, atol=1e-6)

  def test_linear_circular_conv_net_spectrum_is_the_kernels_dft(self):
    """One channel: a circular convolution of an H x W image is a doubly
    circulant matrix, diagonalised by the 2-D DFT, so its singular values
    are the moduli |K(omega)| of the DFT of its kernel zero-padded to H x
    W (Sedghi et al. 2019; the sign and offset conventions of Flax's
    cross-correlation change only phases), and the product of layers 1..l
    has the moduli of the product |K_1(omega) ... K_l(omega)|."""
    size, depth = 6, 3
    example = zoo.build("cnn", jax.random.key(1), depth=depth, width=1,
                        act="linear", init="gaussian", size=size)
    record = _probe(self, example, depth)
    product = np.ones((size, size))
    for l in range(depth):
      kernel = np.asarray(
          example.variables["params"][f"block_{l}"]["kernel"], np.float64)
      dft = np.fft.fft2(kernel[:, :, 0, 0], s=(size, size))
      product = product * dft
      own = np.sort(np.abs(dft).ravel())[::-1]
      cumulative = np.sort(np.abs(product).ravel())[::-1]
      for measured, exact in ((record["per_layer"][l], own),
                              (record["layers"][l], cumulative)):
        values = _values(measured)
        self.assertEqual(values.shape, (size * size,))
        resolved = ~np.isnan(values)
        self.assertGreaterEqual(resolved.sum(), values.size - 2)
        np.testing.assert_allclose(values[resolved], exact[resolved],
                                   rtol=1e-4, atol=1e-5 * exact[0])

  def test_delta_orthogonal_linear_net_is_an_isometry(self):
    """Xiao et al. (2018): the delta-orthogonal kernel maps each pixel's
    channels by one orthogonal matrix, so every block, and every product
    of blocks, has all its singular values 1 (float32: to ~ l eps)."""
    depth = 3
    example = zoo.build("cnn", jax.random.key(0), depth=depth, width=4,
                        act="linear", init="delta_orthogonal", size=4)
    record = _probe(self, example, depth)
    for r in record["per_layer"] + record["layers"]:
      self.assertLen(r["singular_values"][0], 4 * 4 * 4)
      np.testing.assert_allclose(_values(r), 1.0, atol=16 * F32_EPS)

  def test_delta_orthogonal_tanh_at_criticality_is_near_isometric(self):
    """tanh at Xiao et al.'s critical point (sigma_w2 = 1, sigma_b2 = 0).

    With delta-orthogonal kernels pixel p's pre-activation is h_l[p] =
    x_{l-1}[p] H_l with H_l orthogonal, and tanh shrinks every coordinate,
    so |h_l[p, c]| <= ||x_0[p]|| <= r (r: the largest pixel norm of the
    input) and tanh'(h) = 1 - tanh(h)^2 >= 1 - r^2. Each block is then
    block-diagonal with blocks diag(tanh') H_l^T, singular values in
    [1 - r^2, 1], and J_{<=l}'s lie in [(1 - r^2)^l, 1]: with r^2 < 1e-2
    within 4 % of 1 at depth 4. Gaussian kernels at the same sigma_w2 and
    the same input (critical too in mean field) are no isometry: the
    median singular value falls below 1/2 and the largest exceeds it
    fivefold (ten seeds: median 0.16-0.31, largest 2.0-3.5), the point of
    the delta-orthogonal init."""
    depth, key = 4, jax.random.key(1)
    delta = zoo.build("cnn", key, depth=depth, act="tanh", size=4,
                      init="delta_orthogonal", input_scale=0.02)
    r2 = float(np.max(np.sum(np.square(np.asarray(delta.x)), axis=-1)))
    self.assertLess(r2, 1e-2)
    record = _probe(self, delta, depth)
    slack = 16 * F32_EPS
    for l, r in enumerate(record["layers"], 1):
      s = _values(r)
      self.assertTrue(np.all(s <= 1 + slack), (l, s.max()))
      self.assertTrue(np.all(s >= (1 - r2) ** l - slack), (l, s.min()))
    self.assertGreater((1 - r2) ** depth, 0.96)
    gaussian = zoo.build("cnn", key, depth=depth, act="tanh", size=4,
                         init="gaussian", input_scale=0.02)
    spread = _probe(self, gaussian, depth)["input_output"]
    median = _median(spread)[1]
    self.assertLess(median, 0.5)
    self.assertGreater(_values(spread)[0], 5 * median)


class ResidualMLPTest(absltest.TestCase):

  def test_skips_keep_the_spectrum_order_one_without_them_it_collapses(self):
    """Pre-LN blocks x + W2 tanh(W1 LN(x)) (sigma_w2 = 1), width 16: J_l =
    I + B_l, and at every depth the median singular value of J_{<=l}
    stays within [1/2, 2] and the numerical rank (values >= 1e-3 s_max)
    above 3/4 of the width. The same blocks without the ``x +``: J_l =
    B_l, whose LayerNorm removes two directions (the mean and x itself:
    rank <= width - 2 from block 1 on); the rank falls further and the
    median falls geometrically, from > 0.1 at depth 1 to < 0.1 at depth 4
    (ten seeds: 0.16-0.52 at depth 1, 0.005-0.04 at depth 4, rank 8-10;
    with skips median 0.95-1.3, rank >= 15)."""
    width, depth = 16, 4
    key = jax.random.key(2)
    hparams = dict(depth=depth, width=width, act="tanh", sigma_w2=1.0)
    skip = _probe(self, zoo.build("resnet", key, skip=True, **hparams),
                  depth)
    plain = _probe(self, zoo.build("resnet", key, skip=False, **hparams),
                   depth)
    for r in skip["layers"]:
      self.assertBetween(_median(r)[0], 0.5, 2.0)
      self.assertGreaterEqual(_numerical_rank(r), 3 * width // 4)
    ranks = [_numerical_rank(r) for r in plain["layers"]]
    self.assertLessEqual(ranks[0], width - 2)
    self.assertEqual(ranks, sorted(ranks, reverse=True))
    self.assertGreater(_median(plain["layers"][0])[0], 0.1)
    self.assertLess(_median(plain["input_output"])[1], 0.1)


class RNNTest(parameterized.TestCase):
  """dx_T/dx_0 of x_t = phi(W x_{t-1}) is D_T W ... D_1 W, D_t =
  diag(phi'(h_t)): through time it vanishes or explodes as rho(W)^T
  (Bengio et al. 1994; Pascanu et al. 2013)."""

  steps = 6

  @parameterized.named_parameters(("isometry", 1.0), ("exploding", 1.1))
  def test_linear_orthogonal_recurrence_gains_exactly_rho_to_the_t(self, rho):
    """W = rho Q, Q orthogonal: dx_t/dx_0 = W^t = rho^t Q^t, so EVERY
    singular value is rho^t at every t (rho = 1: an exact isometry; rho <
    1 is the same law, checked through tanh below)."""
    example = zoo.build("rnn", jax.random.key(3), depth=self.steps,
                        act="linear", init="orthogonal", sigma_w2=rho**2)
    record = _probe(self, example, self.steps)
    for t, r in enumerate(record["layers"], 1):
      np.testing.assert_allclose(_values(r), rho**t, rtol=4 * t * F32_EPS)

  @parameterized.named_parameters(("below", 0.9), ("at", 1.0),
                                  ("above", 1.1))
  def test_tanh_recurrence_gain_is_rho_to_the_t_for_small_states(self, rho):
    """W = rho Q and tanh: ||h_t|| <= rho^t r (r = ||x_0||; tanh shrinks
    every coordinate), so tanh'(h_t) >= 1 - rho^(2t) r^2 and every
    singular value of dx_t/dx_0 lies in [rho^t prod_{s<=t} (1 - rho^(2s)
    r^2), rho^t]: the linear law, to 1 % here, on both sides of 1."""
    example = zoo.build("rnn", jax.random.key(4), depth=self.steps,
                        act="tanh", init="orthogonal", sigma_w2=rho**2,
                        input_scale=0.01)
    r2 = float(np.sum(np.square(np.asarray(example.x))))
    record = _probe(self, example, self.steps)
    slack = 8 * self.steps * F32_EPS
    lower = 1.0
    for t, r in enumerate(record["layers"], 1):
      lower *= 1 - rho ** (2 * t) * r2
      s = _values(r) / rho**t
      self.assertTrue(np.all(s <= 1 + slack), (t, s.max()))
      self.assertTrue(np.all(s >= lower - slack), (t, s.min(), lower))
    self.assertGreater(lower, 0.99)

  def test_non_normal_gaussian_recurrence_gain_is_bounded_by_rho_to_the_t(
      self):
    """W_ij ~ N(0, 1 / n) is not normal: with W = V Lambda V^-1, ||W^t||
    lies in [rho(W)^t, cond(V) rho(W)^t] (the lower bound: ||A|| >= its
    spectral radius), so the gain's t-th root tends to rho(W) (Gelfand)
    while ||W|| itself exceeds rho(W) (ten seeds: by 9 % to 2x)."""
    example = zoo.build("rnn", jax.random.key(5), depth=self.steps,
                        act="linear", init="gaussian", sigma_w2=1.0)
    w = np.asarray(example.variables["params"]["cell"]["kernel"],
                   np.float64).T
    eigenvalues, vectors = np.linalg.eig(w)
    rho, cond = np.abs(eigenvalues).max(), np.linalg.cond(vectors)
    record = _probe(self, example, self.steps)
    slack = 1 + 8 * self.steps * F32_EPS
    gains = [_values(r)[0] for r in record["layers"]]
    for t, gain in enumerate(gains, 1):
      self.assertBetween(gain, rho**t / slack, cond * rho**t * slack)
    self.assertGreater(gains[0], 1.05 * rho)


class TransformerTest(absltest.TestCase):

  def test_without_skips_the_jacobian_rank_collapses_with_depth(self):
    """Pre-LN attention + MLP blocks, 4 tokens of width 8 (n = 32), weight
    variance sigma_w2 = 1/2 (small attention logits: near-uniform
    attention). With skips J_l = I + B_l: at every depth the median
    singular value of J_{<=l} stays within [1/2, 2] and the numerical rank
    (values >= 1e-3 s_max) at least 3n/4. Without them the per-token
    LayerNorm leaves rank <= tokens (width - 2) = 24 after block 1, and
    attention, mixing the tokens with near-uniform weights, collapses it
    (Dong et al. 2021): by depth 2 the rank is below n/2 and the median
    below 1e-2 (ten seeds: rank 21-24 then 6-14, median 0.01-0.07 then
    < 2e-3; with skips rank >= 31, median 0.9-1.1)."""
    tokens, width, depth = 4, 8, 2
    n = tokens * width
    key = jax.random.key(6)
    hparams = dict(depth=depth, width=width, tokens=tokens, heads=2,
                   sigma_w2=0.5)
    skip = _probe(
        self, zoo.build("transformer", key, skip=True, **hparams), depth)
    plain = _probe(
        self, zoo.build("transformer", key, skip=False, **hparams), depth)
    for r in skip["layers"]:
      self.assertBetween(_median(r)[0], 0.5, 2.0)
      self.assertGreaterEqual(_numerical_rank(r), 3 * n // 4)
    ranks = [_numerical_rank(r) for r in plain["layers"]]
    self.assertLessEqual(ranks[0], tokens * (width - 2))
    self.assertLess(ranks[-1], n // 2)
    self.assertLess(ranks[-1], ranks[0])
    self.assertLess(_median(plain["input_output"])[1], 1e-2)


if __name__ == "__main__":
  absltest.main()
