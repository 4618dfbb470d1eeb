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
from vgrad.studies import sweep
from vgrad.training import data

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

  def test_sweep_groups_at_the_sizes_that_hung(self):
    """The sweep's per-group programs at the sizes that hung on 4 CPU
    devices before they stopped batching LAPACK calls (sweep._pair_map):
    the spectrum of width 32 under three inits, and LSUV beside He init
    at depth 5, width 64. Lowered for CPU (no compilation), on this
    process's mesh: each device runs the same per-shard program."""
    mesh = sweep.make_mesh(1)
    pairs = jnp.zeros(6, jnp.int32)
    spectrum = sweep.SweepConfig(
        task="spectrum", acts=("tanh",),
        inits=("orthogonal", "glorot_normal", "he_normal"), depths=(3,),
        widths=(32,), seeds=2, num_inputs=4)
    program = sweep._spectrum_program(  # pylint: disable=protected-access
        spectrum, "tanh", 3, 32, spectrum.inits, mesh)
    self.assert_unbatched(program.lower(pairs, pairs))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    labels = (np.arange(40) % 3).astype(np.int32)
    digits_like = data.Dataset("digits_like", "multiclass", x, labels, x,
                               labels, 3, "40 Gaussian points, 3 classes")
    trained = sweep.SweepConfig(
        task="train", acts=("tanh",), inits=("he_normal", "lsuv"),
        depths=(5,), widths=(64,), seeds=2, steps=10, batch_size=32)
    programs = sweep._train_programs(  # pylint: disable=protected-access
        trained, "tanh", 5, 64, trained.inits, digits_like, mesh)
    self.assert_unbatched(programs.init.lower(pairs[:4], pairs[:4], x))


if __name__ == "__main__":
  absltest.main()
