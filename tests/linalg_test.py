"""vgrad.nn.linalg: the same values as jnp.linalg, and no batched LAPACK
call on CPU in any program vgrad compiles (a batched call can hang a 2-core
machine: vgrad/nn/linalg.py)."""

import re

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import linalg
from vgrad.nn import models
from vgrad.probes import blocks as blocks_lib
from vgrad.probes import jacobian
from vgrad.probes import log_spectrum

_LAPACK = re.compile(r"custom_call @lapack_\w+\(.*num_batch_dims = \"(\d+)\"")


def lapack_batch_dims(lowered_text: str) -> list[int]:
  """The ``num_batch_dims`` of every LAPACK custom call in a program."""
  return [int(m.group(1)) for m in _LAPACK.finditer(lowered_text)]


class ValuesTest(absltest.TestCase):

  def test_equal_to_jnp_linalg_under_vmap_stacks_and_chunked_maps(self):
    a = np.random.default_rng(0).normal(size=(3, 4, 6, 5)).astype(np.float32)
    want = np.linalg.svd(a, compute_uv=False)
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.vmap(linalg.svdvals)))(a),
                               want, rtol=1e-5)
    np.testing.assert_allclose(linalg.svdvals(a), want, rtol=1e-5)
    np.testing.assert_allclose(
        jax.lax.map(linalg.svdvals, a[0], batch_size=3), want[0], rtol=1e-5)
    q, r = jax.vmap(linalg.qr)(a[0])
    np.testing.assert_allclose(np.einsum("bij,bjk->bik", q, r), a[0],
                               atol=1e-5)
    np.testing.assert_allclose(np.einsum("bji,bjk->bik", q, q),
                               np.broadcast_to(np.eye(5), (4, 5, 5)),
                               atol=1e-5)
    u, s, vh = jax.vmap(lambda m: linalg.svd(m, full_matrices=False))(a[0])
    np.testing.assert_allclose(np.einsum("bij,bj,bjk->bik", u, s, vh), a[0],
                               atol=1e-5)


class NoBatchedCallTest(absltest.TestCase):
  """Lowered for CPU, every LAPACK call takes one matrix."""

  def assert_unbatched(self, lowered):
    dims = lapack_batch_dims(lowered.as_text())
    self.assertNotEmpty(dims)
    self.assertEqual(set(dims), {0})

  def test_the_check_sees_a_batched_call(self):
    dims = lapack_batch_dims(jax.jit(jax.vmap(
        lambda m: jnp.linalg.svd(m, compute_uv=False))).lower(
            jnp.ones((3, 6, 5))).as_text())
    self.assertEqual(dims, [1])

  def test_probes_of_a_batch_of_inputs(self):
    model = models.make_mlp(depth=3, width=8, activation="tanh",
                            init="orthogonal")
    xs = jnp.ones((4, 8))
    params = model.init(jax.random.key(0), xs)
    first, rest = log_spectrum.stack_layers(model, params)
    # The stable method's whole finish (both lax.cond branches of the
    # fallback run under vmap), the dense probe, the block path.
    probe = log_spectrum.make_log_spectrum_probe(model, (1, 3))
    self.assert_unbatched(jax.jit(probe).lower(params, xs))
    self.assert_unbatched(jax.jit(jacobian.make_spectrum_probe(model)).lower(
        params, xs))
    blocks = blocks_lib.mlp_as_blocks(model, params)
    self.assert_unbatched(jax.jit(
        lambda x: blocks_lib.dense_spectra(blocks, x)).lower(xs))
    del first, rest
    # The orthogonal initialiser under vmap (seeds vmapped in training).
    self.assert_unbatched(jax.jit(jax.vmap(model.init, in_axes=(0, None))).lower(
        jax.random.split(jax.random.key(0), 3), xs[0]))


if __name__ == "__main__":
  absltest.main()
