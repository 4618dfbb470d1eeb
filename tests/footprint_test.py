"""Memory estimates (vgrad.studies.footprint): the arithmetic counts what
vgrad's models and datasets really hold. That the sum stays below real
runs' peaks is measured by benchmarks/footprint_benchmark.py; that the
entry points refuse a run beyond it is tests/bad_input_test.py."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import models
from vgrad.studies import footprint
from vgrad.training import data


class CountTest(parameterized.TestCase):

  @parameterized.parameters((1, 3, 2, 1), (4, 16, 64, 10), (10, 5, 2, 2))
  def test_mlp_parameters_equal_the_models(self, depth, width, d_in, d_out):
    model = models.make_mlp(depth=depth, width=width, init="glorot_normal",
                            sigma_b2=None, num_outputs=d_out)
    shapes = jax.eval_shape(model.init, jax.random.key(0),
                            jnp.zeros((1, d_in)))   # no compilation
    count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    self.assertEqual(footprint.mlp_parameters(depth, width, d_in, d_out),
                     count)

  @parameterized.parameters("xor", "digits", "diabetes")
  def test_dataset_shapes_equal_the_data(self, name):
    ds = data.load_dataset(name)
    d_out = ds.num_classes or 1
    self.assertEqual(footprint.DATASET_SHAPES[name],
                     (ds.x_train.shape[1], d_out, ds.x_train.shape[0]))

  def test_spectrum_terms(self):
    dense = footprint.spectrum(10, 256, 16, "float32", "dense")
    qr = footprint.spectrum(10, 256, 16, "float32", "qr", targets=10)
    self.assertEqual(dense[0].nbytes, 10 * 256 * 256 * 4)
    self.assertEqual(qr[0].nbytes, 10 * 256 * 256 * (4 + 8))
    self.assertEqual(qr[-1].nbytes, 16 * 10 * 256 * 256 * 8)
    self.assertGreater(footprint.total(qr), footprint.total(dense))
    self.assertEqual(footprint.largest(qr).setting, "qr_layers")
    self.assertEqual(footprint.largest(
        footprint.spectrum(10**7, 256, 16)).setting, "depth")

  def test_training_grows_with_what_it_names(self):
    base = footprint.training(10, 64, "digits", 64, seeds=2)
    wide = footprint.training(10, 6400, "digits", 64, seeds=2)
    many = footprint.training(10, 64, "digits", 64, seeds=10**6)
    self.assertEqual(footprint.largest(wide).setting, "width")
    self.assertEqual(footprint.largest(many).setting, "seeds")
    def per_network(terms):   # everything but the training set
      return footprint.total(terms) - terms[2].nbytes
    self.assertAlmostEqual(per_network(many) / per_network(base), 10**6 / 2)
    adam = footprint.training(10, 64, "digits", 64, seeds=2,
                              optimizer="adam")
    self.assertEqual(adam[0].nbytes, 2 * base[0].nbytes)


  def test_work_and_the_time_note(self):
    params = footprint.mlp_parameters(10, 5, 2, 2)
    self.assertEqual(footprint.training_flops(10, 5, "xor", 0, 8, 20_000),
                     6 * 20_000 * 8 * 4 * params)
    self.assertEqual(footprint.spectrum_flops(10, 256, 16),
                     12 * 16 * 10 * 256 ** 3)
    # The README's runs take no note; a hundred million steps at width 512
    # do, in hours.
    self.assertIsNone(footprint.time_note(
        footprint.training_flops(10, 5, "xor", 0, 8, 20_000)))
    self.assertIsNone(footprint.time_note(
        footprint.spectrum_flops(10, 256, 16)))
    note = footprint.time_note(
        footprint.training_flops(10, 512, "xor", 0, 8, 10**8))
    self.assertIn("hours at 20 GFLOP/s", note)


if __name__ == "__main__":
  absltest.main()
