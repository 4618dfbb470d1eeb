"""Tests of vgrad.probes.host: a batched program, one element per call on
every core, gives every element the values it has alone."""

import threading

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import linalg
from vgrad.nn import lsuv
from vgrad.probes import host
from vgrad.probes import jacobian
from vgrad.probes import log_spectrum
from vgrad.studies import spectrum_study


def _program():
  """A vmapped program with products and a LAPACK SVD, two outputs: one
  row per element and ``T = 3`` rows per element (flattened)."""
  def one(w, x):
    y = jnp.tanh(w @ x)
    values = linalg.svd(jnp.outer(y, x) + w, compute_uv=False)
    return values, jnp.stack([y[:4], 2 * y[:4], y[:4] ** 2])
  batched = jax.jit(jax.vmap(one, in_axes=(None, 0)))

  def flat(w, xs):
    values, rows = batched(w, xs)
    return values, rows.reshape((-1,) + rows.shape[2:])
  return jax.jit(flat)


def _data(batch=5, n=24):
  rng = np.random.default_rng(0)
  return (rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n),
          rng.standard_normal((batch, n)).astype(np.float32))


class SplitBatchTest(absltest.TestCase):

  def test_every_element_as_alone_whatever_the_batch_and_cores(self):
    fn = _program()
    w, xs = _data()
    alone = [jax.device_get(fn(w, xs[i:i + 1])) for i in range(len(xs))]
    for workers in (1, 2, 3):
      values, rows = jax.device_get(host.split_batch(fn, (xs,), shared=(w,),
                                                     workers=workers))
      chex.assert_shape((values, rows), ((5, 24), (15, 4)))
      for i, (v, r) in enumerate(alone):
        np.testing.assert_array_equal(values[i], v[0])
        np.testing.assert_array_equal(rows[3 * i:3 * i + 3], r)
    # Another batch around element 2: its values do not change.
    other = jax.device_get(host.split_batch(fn, (xs[[4, 2, 0]],),
                                            shared=(w,)))
    np.testing.assert_array_equal(other[0][1], alone[2][0][0])

  def test_results_are_jax_arrays_like_one_call(self):
    fn = _program()
    w, xs = _data()
    one_call = fn(w, xs)
    split = host.split_batch(fn, (xs,), shared=(w,))
    for a, b in zip(one_call, split):
      self.assertIsInstance(b, jax.Array)
      self.assertEqual((a.shape, a.dtype), (b.shape, b.dtype))
      # A batched call may round in the last bits, no more.
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  def test_x64_and_matmul_precision_are_carried_into_the_threads(self):
    seen = []

    def fn(x):
      seen.append((threading.current_thread().name,
                   bool(jax.config.jax_enable_x64),
                   jax.config.jax_default_matmul_precision))
      return x * 1.0
    x = np.linspace(0, 1, 4)
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
      out = host.split_batch(fn, (x,), workers=2)
      self.assertEqual(out.dtype, jnp.float64)
    np.testing.assert_array_equal(np.asarray(out), x)
    self.assertLen(seen, 4)
    self.assertTrue(any(name.startswith("vgrad-probe") for name, _, _ in seen))
    self.assertTrue(all(x64 and precision == "highest"
                        for _, x64, precision in seen))

  def test_under_a_trace_one_call(self):
    fn = _program()
    w, xs = _data()
    traced = jax.jit(lambda w, xs: host.split_batch(fn, (xs,), shared=(w,)))
    for a, b in zip(traced(w, xs), fn(w, xs)):
      np.testing.assert_array_equal(a, b)

  def test_an_error_in_a_call_reaches_the_caller(self):
    def fn(x):
      if float(x[0]) == 2.0:
        raise ValueError("element 2 refused")
      return x
    with self.assertRaisesRegex(ValueError, "element 2 refused"):
      host.split_batch(fn, (np.arange(4.0),), workers=2)

  def test_blas_threads_restored(self):
    before = [lib["num_threads"] for lib in host._controller().info()]  # pylint: disable=protected-access
    fn = _program()
    host.split_batch(fn, (_data()[1],), shared=(_data()[0],))
    after = [lib["num_threads"] for lib in host._controller().info()]  # pylint: disable=protected-access
    self.assertEqual(before, after)


class ProbeTest(absltest.TestCase):
  """What a user sees: an input's spectra do not depend on the batch it
  was probed in (dense and exact probes)."""

  def setUp(self):
    super().setUp()
    self.model = spectrum_study.build_model(spectrum_study.SpectrumConfig(
        act="tanh", depth=4, width=16, num_inputs=3))
    key, data = jax.random.split(jax.random.key(0))
    self.xs = jax.random.normal(data, (3, 16))
    self.params = lsuv.initialize(self.model, key, self.xs)

  def test_dense_probe(self):
    probe = jacobian.make_spectrum_probe(self.model)
    batch = jax.device_get(probe(self.params, self.xs))
    alone = jax.device_get(probe(self.params, self.xs[1:2]))
    for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(alone)):
      np.testing.assert_array_equal(a[1:2], b)

  def test_exact_probe(self):
    probe = log_spectrum.make_log_spectrum_probe(self.model, (2, 4),
                                                 dtype=np.float64)
    with jax.enable_x64(True):
      batch = jax.device_get(probe(self.params, self.xs))
      alone = jax.device_get(probe(self.params, self.xs[2:]))
    np.testing.assert_array_equal(batch.log_singular_values[2:],
                                  alone.log_singular_values)
    np.testing.assert_array_equal(batch.error_bound[2:], alone.error_bound)


if __name__ == "__main__":
  absltest.main()
