"""Block-wise Jacobian spectra of any network (vgrad.probes.blocks)."""

from unittest import mock

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vgrad.io import spectrum_records
from vgrad.nn import models
from vgrad.probes import blocks as blocks_lib
from vgrad.probes import jacobian
from vgrad.studies import block_spectra


def _orthogonal(rng, n):
  q, r = np.linalg.qr(rng.standard_normal((n, n)))
  return (q * np.sign(np.diag(r))).astype(np.float32)


class LinearNetTest(absltest.TestCase):
  """Orthogonal linear blocks are isometries: every singular value is 1."""

  def test_scanned_and_listed_orthogonal_blocks_are_isometries(self):
    # Depth 4: every product of orthogonal blocks is an isometry already;
    # more blocks only add unrolled copies to the list's program.
    rng = np.random.default_rng(0)
    weights = np.stack([_orthogonal(rng, 6) for _ in range(4)])
    xs = jnp.asarray(rng.standard_normal((2, 6)), jnp.float32)
    scanned = blocks_lib.dense_spectra(
        blocks_lib.Blocks(lambda w, x: w @ x, jnp.asarray(weights)), xs)
    listed = blocks_lib.dense_spectra(
        [lambda x, w=w: jnp.asarray(w) @ x for w in weights], xs)
    for result in (scanned, listed):
      self.assertLen(result.own, 4)
      self.assertEqual(result.shapes, [(6, 6)] * 4)
      for sv in result.own + result.cumulative:
        np.testing.assert_allclose(sv, 1.0, atol=2e-6)
    for a, b in zip(scanned.cumulative, listed.cumulative):
      np.testing.assert_allclose(a, b, atol=2e-6)

  def test_probing_the_same_blocks_again_reuses_the_program(self):
    blocks = [lambda x: 2.0 * x, lambda x: x[::-1]]
    xs = jnp.ones((3, 4))
    blocks_lib.dense_spectra(blocks, xs)
    kept = dict(blocks_lib._PROGRAMS)  # pylint: disable=protected-access
    again = blocks_lib.dense_spectra(blocks, 2 * xs)
    self.assertEqual(blocks_lib._PROGRAMS, kept)  # pylint: disable=protected-access
    np.testing.assert_allclose(again.cumulative[1], 2.0, rtol=1e-6)


class CircularConvolution(nn.Module):
  """Three one-channel circular convolutions, no bias, no activation."""

  @nn.compact
  def __call__(self, x):
    for _ in range(3):
      x = nn.Conv(1, kernel_size=(3,), padding="CIRCULAR", use_bias=False)(x)
    return x


class FlaxConvTest(absltest.TestCase):

  def test_circular_conv_net_spectrum_is_the_kernels_dft_moduli(self):
    """A circular convolution's matrix is circulant: its singular values
    are the moduli of its kernel's DFT (kernel zero-padded to the signal's
    length); a product of circulants multiplies them frequency by
    frequency. flax_blocks cuts the net at its three convolutions."""
    n = 8
    x = jnp.asarray(np.random.default_rng(1).standard_normal((n, 1)),
                    jnp.float32)
    model = CircularConvolution()
    # Any kernels will do: NumPy's, not model.init's compiled draws.
    rng = np.random.default_rng(0)
    variables = {"params": {f"Conv_{i}": {"kernel": jnp.asarray(
        rng.standard_normal((3, 1, 1)) / np.sqrt(3), jnp.float32)}
                            for i in range(3)}}
    blocks = blocks_lib.flax_blocks(model, variables, x, r"Conv_\d")
    self.assertLen(blocks, 3)   # the last conv's output is the model's
    composed = x
    for fn in blocks:
      composed = fn(composed)
    np.testing.assert_allclose(composed, model.apply(variables, x),
                               atol=1e-6)
    result = blocks_lib.dense_spectra(blocks, x[None])
    moduli, product = [], np.ones(n)
    for i in range(3):
      kernel = np.asarray(variables["params"][f"Conv_{i}"]["kernel"])[:, 0, 0]
      m = np.abs(np.fft.fft(np.pad(kernel, (0, n - 3))))
      moduli.append(np.sort(m)[::-1])
      product = product * m
      np.testing.assert_allclose(result.own[i][0], moduli[i], rtol=1e-5,
                                 atol=1e-6)
      np.testing.assert_allclose(result.cumulative[i][0],
                                 np.sort(product)[::-1], rtol=1e-5,
                                 atol=1e-6)


class MLPAgreementTest(absltest.TestCase):

  def test_general_path_equals_the_mlp_probe(self):
    """vgrad's MLP as a list of blocks (its hidden layers) gives the
    analytic probe's spectra, per layer and input to layer."""
    model = models.make_mlp(depth=3, width=6, activation="tanh",
                            init="glorot_normal")
    rng = np.random.default_rng(2)
    xs = jnp.asarray(rng.standard_normal((2, 6)), jnp.float32)
    params = model.init(jax.random.key(3), xs)
    layer = lambda m, i, v: m.apply_layer(i, v)[0]
    blocks = [lambda v, i=i: model.apply(params, i, v, method=layer)
              for i in range(1, 4)]
    general = blocks_lib.dense_spectra(blocks, xs)
    analytic = jacobian.make_spectrum_probe(model)(params, xs)
    np.testing.assert_allclose(general.own[0], analytic.first_layer,
                               rtol=1e-5, atol=1e-6)
    for l in range(1, 3):
      np.testing.assert_allclose(general.own[l], analytic.per_layer[:, l - 1],
                                 rtol=1e-5, atol=1e-6)
    for l in range(3):
      np.testing.assert_allclose(general.cumulative[l],
                                 analytic.cumulative[:, l], rtol=1e-5,
                                 atol=1e-6)
    record = block_spectra.jacobian_spectra(blocks, xs, method="dense")
    self.assertEqual(spectrum_records.check_results(record), [])
    self.assertEqual([r["layer"] for r in record["per_layer"]], [1, 2, 3])
    self.assertEqual([r["layer"] for r in record["layers"]], [1, 2, 3])
    self.assertEqual(record["input_output"]["layer"], 3)
    self.assertIsNone(record["lyapunov"])   # dense, requested
    # No exact zeros are claimed for general blocks.
    for r in record["per_layer"] + record["layers"]:
      self.assertEqual(r["num_exact_zeros"], [0, 0])
    narrowed = block_spectra.jacobian_spectra(blocks, xs, method="dense",
                                              layers=[2])
    self.assertEqual([r["layer"] for r in narrowed["layers"]], [2])
    self.assertEqual(spectrum_records.check_results(narrowed, layers=[2]),
                     [])
    self.assertEqual(narrowed["input_output"], record["input_output"])


class QRTest(absltest.TestCase):
  """The stable method through the block interface."""

  def test_scaled_orthogonal_blocks_far_beyond_float32(self):
    """Blocks x -> W_l x / 2 with orthogonal W_l: J_{<=l} is 2^-l times an
    orthogonal matrix, so every log singular value is -l ln 2 exactly:
    -693 nats at l = 1000, where the dense product underflowed float32
    (e^-103) before layer 150. One scanned block compiles for any depth."""
    rng = np.random.default_rng(7)
    depth, n = 1000, 4
    weights = jnp.asarray(np.stack([_orthogonal(rng, n) / 2
                                    for _ in range(depth)]))
    xs = jnp.asarray(rng.standard_normal((2, n)), jnp.float32)
    result = blocks_lib.qr_log_spectra(
        blocks_lib.Blocks(lambda w, x: w @ x, weights), xs,
        layers=(1, 10, depth))
    self.assertEqual(result.layers, (1, 10, depth))
    for l, log_sv, bound in zip(result.layers, result.log_singular_values,
                                result.error_bound):
      self.assertEqual(np.shape(log_sv), (2, n))
      np.testing.assert_allclose(log_sv, -l * np.log(2.0), rtol=1e-5)
      self.assertTrue(np.all(np.asarray(bound) < 1e-5), bound)
    self.assertLen(result.partial_sums, depth)
    np.testing.assert_allclose(np.asarray(result.partial_sums[-1]),
                               -depth * np.log(2.0), rtol=1e-5)


  def test_blocks_of_changing_width(self):
    """Widths 4 -> 6 -> 3 -> 3: the QR pass keeps min(n_l, k) columns, and
    its values equal the dense SVD's where float32 resolves them all."""
    rng = np.random.default_rng(12)
    weights = [jnp.asarray(rng.standard_normal(shape), jnp.float32)
               for shape in ((6, 4), (3, 6), (3, 3))]
    fns = [lambda x, w=w: jnp.tanh(w @ x) for w in weights]
    xs = jnp.asarray(rng.standard_normal((2, 4)), jnp.float32)
    qr = blocks_lib.qr_log_spectra(fns, xs)
    dense = blocks_lib.dense_spectra(fns, xs)
    self.assertEqual(dense.shapes, [(6, 4), (3, 6), (3, 3)])
    eps = np.finfo(np.float32).eps
    for l, (log_sv, sv) in enumerate(zip(qr.log_singular_values,
                                         dense.cumulative), 1):
      self.assertEqual(np.shape(log_sv), np.shape(sv))
      sv = np.asarray(sv, np.float64)
      # The dense product of l layers carries ~ l N eps s_max of error: a
      # relative error l N eps s_max / s in each value s (the QR pass's is
      # eps-relative). Twice that, plus float32 rounding of the logs.
      allowed = 2 * l * 6 * eps * sv.max(axis=1, keepdims=True) / sv + 1e-6
      self.assertTrue(np.all(np.abs(log_sv - np.log(sv)) <= allowed),
                      (l, log_sv, np.log(sv), allowed))


class JacobianModesTest(absltest.TestCase):

  def test_forward_and_reverse_mode_agree(self):
    """block_jacobian (forward mode when n_in <= n_out, else reverse) equals
    jax.jacfwd, jax.jacrev and the analytic diag(1 - tanh^2) W, for tall,
    wide and square blocks. Each side runs as one jitted program per shape
    (op by op, every eager op would compile a program of its own)."""
    rng = np.random.default_rng(4)
    for n_in, n_out in ((3, 5), (5, 3), (4, 4)):
      w = rng.standard_normal((n_out, n_in)).astype(np.float32)
      fn = lambda x, w=w: jnp.tanh(jnp.asarray(w) @ x)
      x = rng.standard_normal(n_in).astype(np.float32)
      jac = jax.jit(lambda x, fn=fn: blocks_lib.block_jacobian(fn, x)[1])(x)
      self.assertEqual(jac.shape, (n_out, n_in))
      forward, reverse = jax.jit(
          lambda x, fn=fn: (jax.jacfwd(fn)(x), jax.jacrev(fn)(x)))(x)
      # 1 - tanh^2 near saturation keeps ~eps of absolute accuracy, and
      # the two modes' programs may round it differently: atol ~ 8 eps.
      np.testing.assert_allclose(jac, forward, rtol=1e-6, atol=1e-6)
      np.testing.assert_allclose(jac, reverse, rtol=1e-6, atol=1e-6)
      # The analytic Jacobian in float64 NumPy.
      w64, x64 = w.astype(np.float64), x.astype(np.float64)
      analytic = (1 - np.tanh(w64 @ x64) ** 2)[:, None] * w64
      np.testing.assert_allclose(jac, analytic, rtol=1e-5, atol=1e-6)

  def test_pytree_blocks_are_flattened(self):
    fn = lambda x: {"a": 2.0 * x["u"], "b": x["u"][:2] + x["v"]}
    x = {"u": np.ones(3, np.float32), "v": np.ones(2, np.float32)}
    jac = jax.jit(lambda x: blocks_lib.block_jacobian(fn, x)[1])(x)
    self.assertEqual(jac.shape, (5, 5))
    # Rows (a, b), columns (u, v), in ravel_pytree's (sorted key) order.
    want = np.zeros((5, 5))
    want[:3, :3] = 2 * np.eye(3)
    want[3:, :2] = np.eye(2)
    want[3:, 3:] = np.eye(2)
    np.testing.assert_array_equal(jac, want)


class DifferentiabilityTest(absltest.TestCase):
  """A block with NaN or Inf in its Jacobian where its input and output are
  finite is refused in one line; an overflow is a result, not an error; a
  block with only reverse mode (jax.custom_vjp) is probed."""

  xs = jnp.asarray([[0.5, -1.0, 2.0], [1.5, 0.3, -0.2]], jnp.float32)

  def test_a_kink_where_jax_gives_nan_is_named_with_its_input(self):
    # sqrt(|v - v_0|): the derivative at v_0 (the first entry) is inf * 0.
    kinked = lambda v: jnp.sqrt(jnp.abs(v - v[0]))
    for blocks in ([jnp.tanh, kinked, jnp.tanh],
                   blocks_lib.Blocks(lambda p, v: p * kinked(v),
                                     jnp.ones((2,), jnp.float32))):
      for method in ("dense", "qr", "lanczos"):
        with self.assertRaisesRegex(
            ValueError, r"^block \d is not differentiable at input 0: its "
            r"Jacobian holds NaN or Inf where its input and output are "
            r"finite .*; valid: blocks differentiable at every input$"):
          block_spectra.jacobian_spectra(blocks, self.xs, method=method)

  def test_an_overflow_is_reported_not_refused(self):
    blocks = [lambda v: v * 1e30, lambda v: v * 1e30, jnp.tanh]
    record = block_spectra.jacobian_spectra(blocks, self.xs, method="dense")
    self.assertEqual([r["finite"] for r in record["layers"]],
                     [True, False, False])

  def test_a_custom_vjp_block_is_probed_in_reverse_mode(self):
    @jax.custom_vjp
    def sine(v):
      return jnp.sin(v)
    sine.defvjp(lambda v: (jnp.sin(v), v), lambda v, g: (jnp.cos(v) * g,))
    # Two inputs of width 6, as JacobianSpectraTest's: the qr method's
    # Jacobi program (float64, 6 x 6, B = 2) is shared with its tests.
    xs = np.random.default_rng(13).standard_normal((2, 6)).astype(np.float32)
    want = np.sort(np.abs(np.cos(xs)), axis=1)[:, ::-1]
    for method in ("dense", "qr"):
      record = block_spectra.jacobian_spectra([sine], xs, method=method)
      np.testing.assert_allclose(
          np.asarray(record["per_layer"][0]["singular_values"]), want,
          rtol=1e-5)


class RecurrentCell(nn.Module):
  """A linear recurrent step h -> W h with one shared matrix."""

  @nn.compact
  def __call__(self, h):
    return nn.Dense(h.shape[-1], use_bias=False, name="cell")(h)


class UnrolledRNN(nn.Module):
  steps: int

  @nn.compact
  def __call__(self, h):
    cell = RecurrentCell(name="step")
    for _ in range(self.steps):
      h = cell(h)
    return jnp.tanh(h)


class FlaxCallsTest(absltest.TestCase):

  def test_a_shared_cell_called_t_times_is_t_blocks(self):
    """Weights shared over time: each call is its own block, and an
    orthogonal recurrent matrix keeps every singular value at 1 through
    time (the final tanh is the last block)."""
    n, steps = 5, 4
    model = UnrolledRNN(steps)
    h0 = jnp.zeros(n)
    w = _orthogonal(np.random.default_rng(5), n)
    variables = {"params": {"step": {"cell": {"kernel": jnp.asarray(w)}}}}
    self.assertEqual(blocks_lib.boundary_calls(model, variables, h0, ["step"]),
                     ["step"] * steps)
    blocks = blocks_lib.flax_blocks(model, variables, h0, ["step"])
    self.assertLen(blocks, steps + 1)
    x = jnp.asarray(np.random.default_rng(6).standard_normal(n) * 0.1,
                    jnp.float32)
    composed = x
    for fn in blocks:
      composed = fn(composed)
    np.testing.assert_allclose(composed, model.apply(variables, x), atol=1e-6)
    result = blocks_lib.dense_spectra(blocks, x[None])
    for l in range(steps):
      np.testing.assert_allclose(result.cumulative[l], 1.0, atol=2e-6)

  def test_boundaries_matching_nothing_name_the_submodules(self):
    model = UnrolledRNN(2)
    h0 = jnp.zeros(3)
    variables = {"params": {"step": {"cell": {"kernel": jnp.eye(3)}}}}
    with self.assertRaisesRegex(ValueError, r"match no submodule call.*"
                                r"'step', 'step/cell'"):
      blocks_lib.flax_blocks(model, variables, h0, ["Dense_0"])

  def test_a_cut_bypassed_by_a_skip_connection_is_refused(self):
    class Residual(nn.Module):
      @nn.compact
      def __call__(self, x):
        h = nn.Dense(4, name="inner")(x)
        return x + nn.Dense(4, name="outer")(jnp.tanh(h))

    model, x = Residual(), jnp.ones(4)
    # NumPy's weights, not model.init's compiled draws.
    rng = np.random.default_rng(0)
    variables = {"params": {name: {
        "kernel": jnp.asarray(rng.standard_normal((4, 4)) / 2, jnp.float32),
        "bias": jnp.zeros(4)} for name in ("inner", "outer")}}
    # x skips past "inner": the block after it cannot be cut there ...
    with self.assertRaisesRegex(ValueError, "block 2 .* does not depend on "
                                "its input alone.*skip connection"):
      blocks_lib.flax_blocks(model, variables, x, ["inner"])
    # ... while the whole residual block is one valid block.
    (block,) = blocks_lib.flax_blocks(model, variables, x, [""])
    np.testing.assert_allclose(block(x), model.apply(variables, x))

  def test_blocks_that_do_not_fit_are_named(self):
    blocks = [lambda x: jnp.ones((3, 3)) @ x, lambda x: jnp.ones((2, 4)) @ x]
    with self.assertRaisesRegex(ValueError, "block 2 cannot take the output "
                                "of block 1"):
      blocks_lib.dense_spectra(blocks, jnp.ones((1, 3)))

  def test_blocks_without_a_derivative_are_named(self):
    """An integer output has no Jacobian (jax would give zeros, silently)."""
    rounded = [lambda x: 2 * x, lambda x: jnp.round(x).astype(jnp.int32)]
    for method in ("dense", "qr"):
      with self.assertRaisesRegex(ValueError, "block 2's output holds int32 "
                                  "values.*not differentiable"):
        block_spectra.jacobian_spectra(rounded, jnp.ones((1, 3)),
                                       method=method)
    with self.assertRaisesRegex(ValueError, "the input x holds int32"):
      blocks_lib.dense_spectra([lambda x: 2.0 * x], jnp.ones((1, 3), int))


class JacobianSpectraTest(absltest.TestCase):
  """One record whatever the blocks: vgrad's MLP through its analytic fast
  path equals the same MLP as general blocks, under every method."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Sigmoid at depth 10: float32's dense path loses the small values, so
    # auto picks qr (as for the main job).
    cls.model = models.make_mlp(depth=10, width=6, activation="sigmoid",
                                init="glorot_normal")
    cls.xs = jnp.asarray(np.random.default_rng(10).standard_normal((2, 6)),
                         jnp.float32)
    cls.params = cls.model.init(jax.random.key(11), cls.xs)
    cls.fast = block_spectra.mlp_blocks(cls.model, cls.params)
    cls.general = cls.fast.as_callables()

  def test_auto_picks_the_same_method_on_both_paths(self):
    fast = block_spectra.jacobian_spectra(self.fast, self.xs)
    with mock.patch.object(blocks_lib, "qr_forward",
                           wraps=blocks_lib.qr_forward) as forward:
      general = block_spectra.jacobian_spectra(self.general, self.xs)
    # One forward pass decides and is finished (every block a target).
    self.assertEqual(forward.call_count, 1)
    self.assertEqual(forward.call_args.args[2], tuple(range(1, 11)))
    self.assertEqual(fast["method"], "qr")
    self.assertEqual(general["method"], "qr")
    self.assertEqual(set(fast), set(general))
    self.assertEqual(set(fast), set(spectrum_records.BODY_KEYS))
    # One schema: every record of both paths has every key, every layer.
    for record in (fast, general):
      self.assertEqual(spectrum_records.check_results(record), [])
    self.assertEqual([r["layer"] for r in general["layers"]],
                     list(range(1, 11)))
    for a, b in zip(fast["layers"] + [fast["input_output"]],
                    general["layers"] + [general["input_output"]]):
      np.testing.assert_allclose(np.asarray(a["log_singular_values"]),
                                 np.asarray(b["log_singular_values"]),
                                 atol=2e-4)
      # Linear values (float32 holds all of them here) from the logs.
      np.testing.assert_allclose(np.asarray(a["singular_values"]),
                                 np.exp(np.asarray(a["log_singular_values"])),
                                 rtol=1e-6)
      self.assertIsNone(a["resolution_floor"])
      self.assertLen(a["error_bound"], 2)
    for a, b in zip(fast["per_layer"], general["per_layer"]):
      np.testing.assert_allclose(np.asarray(a["singular_values"]),
                                 np.asarray(b["singular_values"]),
                                 rtol=1e-5, atol=1e-6)

  def test_auto_shares_one_forward_pass_with_qr(self):
    """Item 3: the general path's auto decides from the qr method's own
    forward pass and finishes it (one pass, not a pre-pass and a pass),
    whose targets are the wanted layers and the last. The same MLP as
    scanned Blocks (one compiled block, as the list's layers, one
    computation on different arrays, are scanned by qr_forward); the
    list's one pass is checked in
    test_auto_picks_the_same_method_on_both_paths."""
    scanned = blocks_lib.mlp_as_blocks(self.model, self.params)
    self.assertIsInstance(scanned, blocks_lib.Blocks)
    with mock.patch.object(blocks_lib, "qr_forward",
                           wraps=blocks_lib.qr_forward) as forward:
      record = block_spectra.jacobian_spectra(scanned, self.xs,
                                              layers=[3, 7])
    self.assertEqual(record["method"], "qr")
    self.assertEqual(forward.call_count, 1)
    self.assertEqual(forward.call_args.args[2], (3, 7, 10))
    self.assertEqual([r["layer"] for r in record["layers"]], [3, 7])

  def test_dense_records_agree_and_layers_narrow(self):
    fast = block_spectra.jacobian_spectra(self.fast, self.xs,
                                          method="dense", layers=[2, 5])
    general = block_spectra.jacobian_spectra(self.general, self.xs,
                                             method="dense", layers=[5, 2])
    for record in (fast, general):
      self.assertEqual(record["method_reason"], "requested")
      self.assertEqual([r["layer"] for r in record["layers"]], [2, 5])
      self.assertLen(record["per_layer"], 10)
      self.assertEqual(spectrum_records.check_results(record, layers=[2, 5]),
                       [])
      # The dense records carry the log values too, and their floor.
      self.assertIsNone(record["layers"][0]["error_bound"])
      self.assertLen(record["layers"][0]["resolution_floor"], 2)
      self.assertIsNotNone(record["layers"][0]["log_rms_gain"])
    eps = np.finfo(np.float32).eps
    for a, b in zip(fast["layers"], general["layers"]):
      for u, v in zip(a["singular_values"], b["singular_values"]):
        u, v = (np.asarray(w, float) for w in (u, v))
        # Two float32 products of l layers differ by about l N eps s_max
        # (the values near the dense floor s_max N eps by as much: issue
        # 12, item 5, makes that floor follow the product's error).
        np.testing.assert_allclose(
            np.nan_to_num(u), np.nan_to_num(v), rtol=1e-4,
            atol=a["layer"] * 6 * eps * np.nanmax(u))

  def test_bad_method_and_layers_are_refused_before_any_work(self):
    with self.assertRaisesRegex(ValueError, "method must be one of auto, "
                                "dense, qr, lanczos, got 'svd'"):
      block_spectra.jacobian_spectra(self.general, self.xs, method="svd")
    with self.assertRaisesRegex(ValueError, r"layers must be integers in "
                                r"\[1, depth=10\], got \[0, 11\]"):
      block_spectra.jacobian_spectra(self.general, self.xs, layers=[0, 11])


if __name__ == "__main__":
  absltest.main()
