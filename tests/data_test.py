"""Tests for vgrad.training.data: splits, standardisation, IDX files, the MNIST cache."""

import functools
import gzip
import hashlib
import os
import re
import shutil
import struct
import sys
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from vgrad.training import data

IDX_DTYPES = (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64)


@functools.cache
def _sklearn_datasets():
  """scikit-learn's loaders, the reference for vgrad's readers (imported
  here, not at collection: the import takes ~1.5 s in every test process)."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  return datasets


def _reference_standardize(x_train, x_test):
  """Independent float64 version of the module's per-feature scaling."""
  mean, std = x_train.mean(axis=0), x_train.std(axis=0)
  std[std < 1e-8] = 1.0
  return (x_train - mean) / std, (x_test - mean) / std


def _assert_standardized(x):
  """Each column has mean 0 and std 1, or is constant 0."""
  np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
  std = x.std(axis=0)
  constant = std < 1e-6
  np.testing.assert_allclose(std[~constant], 1, rtol=1e-4)
  np.testing.assert_array_equal(x[:, constant], 0)
  return constant


class StandardizeTest(absltest.TestCase):

  def test_uses_train_stats_and_leaves_constant_features_unscaled(self):
    x_train = np.array([[0.0, 3.0], [2.0, 3.0]])
    x_test = np.array([[4.0, 5.0]])
    got_train, got_test = data.standardize(x_train, x_test)
    self.assertEqual((got_train.dtype, got_test.dtype),
                     (np.float32, np.float32))
    np.testing.assert_array_equal(got_train, [[-1, 0], [1, 0]])
    np.testing.assert_array_equal(got_test, [[3, 2]])


class XorTest(absltest.TestCase):

  def test_lecture_points_raw_and_memorised(self):
    ds = data.load_dataset("xor", test_fraction=0.5, split_seed=3)
    self.assertEqual(ds.x_train.tolist(), [[0, 0], [0, 1], [1, 0], [1, 1]])
    self.assertEqual(ds.y_train.tolist(), [0, 1, 1, 0])
    np.testing.assert_array_equal(ds.x_test, ds.x_train)
    np.testing.assert_array_equal(ds.y_test, ds.y_train)
    self.assertEqual((ds.x_train.dtype, ds.y_train.dtype),
                     (np.float32, np.int32))
    self.assertEqual((ds.task, ds.num_classes), ("binary", 2))
    self.assertEqual((ds.num_outputs, ds.input_dim), (1, 2))
    self.assertIn("memoris", ds.description)


class DigitsTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.x_raw, cls.y_raw = _sklearn_datasets().load_digits(return_X_y=True)

  @parameterized.parameters(0.2, 0.25, 0.5)
  def test_stratified_sizes(self, fraction):
    ds = data.load_dataset("digits", test_fraction=fraction)
    self.assertEqual(len(ds.y_train) + len(ds.y_test), 1797)
    self.assertEqual(ds.x_train.shape, (len(ds.y_train), 64))
    self.assertEqual(ds.x_test.shape, (len(ds.y_test), 64))
    self.assertEqual((ds.x_test.dtype, ds.y_test.dtype),
                     (np.float32, np.int32))
    for c in range(10):
      count = np.sum(self.y_raw == c)
      self.assertLessEqual(abs(np.sum(ds.y_test == c) - fraction * count), 1)
    self.assertEqual(set(ds.y_train.tolist()), set(range(10)))
    self.assertEqual(set(ds.y_test.tolist()), set(range(10)))
    self.assertEqual((ds.task, ds.num_classes, ds.num_outputs),
                     ("multiclass", 10, 10))

  def test_train_features_standardized(self):
    ds = data.load_dataset("digits")
    constant = _assert_standardized(ds.x_train)
    self.assertTrue(constant[0])  # The top-left pixel is always blank.

  @parameterized.parameters(0, 1, 7)
  def test_split_partitions_raw_rows_and_uses_train_stats(self, seed):
    ds = data.load_dataset("digits", split_seed=seed)
    train, test = data.split_indices(1797, 0.2, seed, labels=self.y_raw)
    self.assertEmpty(np.intersect1d(train, test))
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(1797))
    want_train, want_test = _reference_standardize(self.x_raw[train],
                                                   self.x_raw[test])
    np.testing.assert_allclose(ds.x_train, want_train, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, want_test, atol=1e-5)
    np.testing.assert_array_equal(ds.y_test, self.y_raw[test])

  def test_deterministic_and_seed_dependent(self):
    a, b = data.load_dataset("digits"), data.load_dataset("digits")
    for field in ("x_train", "y_train", "x_test", "y_test"):
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = data.load_dataset("digits", split_seed=1)
    self.assertFalse(np.array_equal(a.y_test, c.y_test))
    _, test_a = data.split_indices(1797, 0.2, 0, labels=self.y_raw)
    _, test_c = data.split_indices(1797, 0.2, 1, labels=self.y_raw)
    self.assertFalse(np.array_equal(test_a, test_c))

  def test_missing_sklearn_says_how_to_install(self):
    for name in ("digits", "diabetes"):
      with (mock.patch.dict(sys.modules, {"sklearn": None,
                                          "sklearn.datasets": None}),
            self.assertRaisesRegex(data.DatasetUnavailableError,
                                   "pip install scikit-learn")):
        data.load_dataset(name)

  def test_bundled_files_read_as_sklearn_reads_them(self):
    # vgrad reads sklearn's bundled CSVs with NumPy (no sklearn import);
    # where the files are not found it asks sklearn's loaders. Both give
    # sklearn's arrays, dtypes included.
    direct = (data._load_digits(), data._load_diabetes())
    with mock.patch.object(data, "SKLEARN_DATA_DIR", ("no", "such", "dir")):
      self.assertIsNone(data._sklearn_csv("digits.csv.gz", delimiter=","))
      fallback = (data._load_digits(), data._load_diabetes())
    want = (_sklearn_datasets().load_digits(return_X_y=True),
            _sklearn_datasets().load_diabetes(return_X_y=True, scaled=False))
    for got in (direct, fallback):
      for (x, y), (want_x, want_y) in zip(got, want):
        self.assertEqual((x.dtype, y.dtype), (want_x.dtype, want_y.dtype))
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)

  def test_plain_split_partitions(self):
    train, test = data.split_indices(10, 0.3, 0)
    self.assertLen(test, 3)
    self.assertEqual(sorted(np.concatenate([train, test])), list(range(10)))


class DiabetesTest(absltest.TestCase):

  def test_regression_targets_standardized_on_train(self):
    ds = data.load_dataset("diabetes", test_fraction=0.2, split_seed=0)
    self.assertEqual((ds.task, ds.num_classes, ds.num_outputs),
                     ("regression", None, 1))
    self.assertEqual(ds.x_train.shape, (442 - 88, 10))
    self.assertEqual((ds.x_test.shape, ds.y_test.shape), ((88, 10), (88,)))
    self.assertEqual((ds.y_train.dtype, ds.y_test.dtype),
                     (np.float32, np.float32))
    _assert_standardized(ds.x_train)
    _assert_standardized(ds.y_train[:, None])
    x, y = _sklearn_datasets().load_diabetes(return_X_y=True, scaled=False)
    train, test = data.split_indices(442, 0.2, 0)
    _, want = _reference_standardize(y[train, None], y[test, None])
    np.testing.assert_allclose(ds.y_test, want[:, 0], atol=1e-5)
    _, want = _reference_standardize(x[train], x[test])
    np.testing.assert_allclose(ds.x_test, want, atol=1e-5)


def _idx_bytes(code, shape, payload):
  return bytes([0, 0, code, len(shape)]) + struct.pack(
      f">{len(shape)}I", *shape) + payload


class IdxTest(parameterized.TestCase):

  def _path(self, name):
    return os.path.join(self.create_tempdir().full_path, name)

  @parameterized.product(dtype=IDX_DTYPES, suffix=("", ".gz"),
                         shape=((7,), (3, 4, 5), (0, 2)))
  def test_round_trip(self, dtype, suffix, shape):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
      info = np.iinfo(dtype)
      array = rng.integers(info.min, info.max, shape, dtype, endpoint=True)
    else:
      array = rng.standard_normal(shape).astype(dtype)
    path = self._path("a" + suffix)
    data.write_idx(path, array)
    back = data.read_idx(path)
    self.assertEqual((back.dtype, back.shape), (np.dtype(dtype), shape))
    np.testing.assert_array_equal(back, array)
    self.assertEqual(os.listdir(os.path.dirname(path)), ["a" + suffix])

  def test_reads_hand_built_big_endian_file(self):
    path = self._path("x")
    with open(path, "wb") as f:
      f.write(_idx_bytes(0x0B, (2, 3), struct.pack(">6h", 1, -2, 3, -4, 5,
                                                   -300)))
    back = data.read_idx(path)
    self.assertEqual(back.dtype, np.int16)
    self.assertEqual(back.tolist(), [[1, -2, 3], [-4, 5, -300]])

  def test_writes_standard_header(self):
    path = self._path("x")
    data.write_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
    with open(path, "rb") as f:
      self.assertEqual(f.read(), _idx_bytes(8, (2, 3), bytes(range(6))))

  def test_detects_gzip_without_suffix(self):
    path = self._path("x")
    with open(path, "wb") as f:
      f.write(gzip.compress(_idx_bytes(8, (3,), b"abc")))
    self.assertEqual(data.read_idx(path).tolist(), [97, 98, 99])

  @parameterized.named_parameters(
      ("bad_magic", "x", b"\x01\x00\x08\x01\x00\x00\x00\x01a", "magic"),
      ("type_code", "x", _idx_bytes(0x0A, (1,), b"a"), "type code 0x0A"),
      ("truncated", "x", _idx_bytes(8, (2, 3), b"abcde"), "truncated"),
      ("oversized", "x", _idx_bytes(8, (2,), b"abc"), "oversized"),
      ("short_header", "x", b"\x00\x00\x08\x02\x00\x00\x00\x01", "header"),
      ("empty", "x", b"", "magic"),
      ("bad_gzip", "x.gz", b"\x1f\x8b not really gzip", "gzip"),
      ("truncated_gzip", "x.gz",
       gzip.compress(_idx_bytes(8, (4,), b"abcd"))[:-6], "gzip"),
  )
  def test_malformed_files(self, name, content, problem):
    path = self._path(name)
    with open(path, "wb") as f:
      f.write(content)
    with self.assertRaisesRegex(ValueError, re.escape(path)) as cm:
      data.read_idx(path)
    # The temp dir's name holds the test's name, so look after the path.
    self.assertIn(problem, str(cm.exception).split(path, 1)[1])

  @parameterized.named_parameters(("int64", (2,), np.int64),
                                  ("bool", (2,), bool),
                                  ("scalar", (), np.uint8))
  def test_write_rejects_what_idx_cannot_hold(self, shape, dtype):
    path = self._path("x")
    with self.assertRaises(ValueError):
      data.write_idx(path, np.ones(shape, dtype))
    self.assertEqual(os.listdir(os.path.dirname(path)), [])


def _write_mnist(directory, gz=(), n_train=12, n_test=5, seed=0):
  """Writes small random MNIST files; returns the four arrays."""
  rng = np.random.default_rng(seed)
  arrays = [rng.integers(0, 256, (n_train, 28, 28), np.uint8),
            rng.integers(0, 10, n_train, np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), np.uint8),
            rng.integers(0, 10, n_test, np.uint8)]
  for name, array in zip(data.MNIST_FILES, arrays):
    suffix = ".gz" if name in gz else ""
    data.write_idx(os.path.join(directory, name + suffix), array)
  return arrays


def _md5(path):
  with open(path, "rb") as f:
    return hashlib.md5(f.read()).hexdigest()


class MnistTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    root = self.create_tempdir().full_path
    self.mirror = os.path.join(root, "mirror")
    self.cache = os.path.join(root, "cache")
    os.makedirs(self.mirror)
    self.arrays = _write_mnist(self.mirror, gz=data.MNIST_FILES)
    self.url = "file://" + self.mirror + "/"
    self.sums = {name: _md5(os.path.join(self.mirror, name))
                 for name in os.listdir(self.mirror)}

  def _check(self, ds):
    images, labels, test_images, test_labels = self.arrays
    self.assertEqual((ds.x_train.shape, ds.x_test.shape),
                     ((12, 784), (5, 784)))
    np.testing.assert_array_equal(ds.y_train, labels)
    np.testing.assert_array_equal(ds.y_test, test_labels)
    self.assertEqual((ds.y_train.dtype, ds.x_train.dtype),
                     (np.int32, np.float32))
    want_train, want_test = _reference_standardize(
        images.reshape(12, 784) / 255, test_images.reshape(5, 784) / 255)
    np.testing.assert_allclose(ds.x_train, want_train, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, want_test, atol=1e-5)
    _assert_standardized(ds.x_train)
    self.assertEqual((ds.task, ds.num_outputs), ("multiclass", 10))

  def test_loads_plain_and_gz_files_with_official_split(self):
    d = self.create_tempdir().full_path
    self.arrays = _write_mnist(d, gz=data.MNIST_FILES[1::2], seed=1)
    ds = data.load_dataset("mnist", data_dir=d)
    self._check(ds)
    self.assertIn("12 train / 5 test", ds.description)
    other = data.load_dataset("mnist", data_dir=d, test_fraction=0.5,
                              split_seed=9)
    np.testing.assert_array_equal(other.x_test, ds.x_test)

  def test_missing_files_say_how_to_get_them(self):
    d = self.create_tempdir().full_path
    for name in data.MNIST_FILES[:2]:
      shutil.copy(os.path.join(self.mirror, name + ".gz"), d)
    with self.assertRaisesRegex(data.DatasetUnavailableError,
                                "--download") as cm:
      data.load_dataset("mnist", data_dir=d)
    message = str(cm.exception)
    for part in (d, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                 "copy"):
      self.assertIn(part, message)
    self.assertEqual(len(os.listdir(d)), 2)

  def test_default_dir(self):
    with mock.patch.dict(os.environ, {"VGRAD_DATA_DIR": self.cache}):
      self.assertEqual(data.default_mnist_dir(),
                       os.path.join(self.cache, "mnist"))
      with self.assertRaisesRegex(data.DatasetUnavailableError,
                                  re.escape(self.cache)):
        data.load_dataset("mnist")
    with mock.patch.dict(os.environ):
      os.environ.pop("VGRAD_DATA_DIR", None)
      self.assertEqual(data.default_mnist_dir(), os.path.expanduser(
          os.path.join("~", ".cache", "vgrad", "mnist")))

  def test_download_verifies_and_caches(self):
    ds = data.mnist(self.cache, download=True, mirror=self.url,
                    checksums=self.sums)
    self._check(ds)
    self.assertEqual(sorted(os.listdir(self.cache)), sorted(self.sums))
    for name, md5 in self.sums.items():
      self.assertEqual(_md5(os.path.join(self.cache, name)), md5)
    shutil.rmtree(self.mirror)  # A second call must not fetch anything.
    self._check(data.load_dataset("mnist", data_dir=self.cache,
                                  download=True))

  def test_download_fetches_only_missing_files(self):
    os.makedirs(self.cache)
    data.write_idx(os.path.join(self.cache, data.MNIST_FILES[0]),
                   self.arrays[0])
    data.mnist(self.cache, download=True, mirror=self.url,
               checksums=self.sums)
    self.assertEqual(sorted(os.listdir(self.cache)),
                     sorted([data.MNIST_FILES[0]]
                            + [n + ".gz" for n in data.MNIST_FILES[1:]]))

  @parameterized.parameters(0, 2)
  def test_checksum_mismatch_leaves_nothing(self, bad):
    name = data.MNIST_FILES[bad] + ".gz"
    sums = dict(self.sums, **{name: "0" * 32})
    with self.assertRaisesRegex(data.DatasetUnavailableError,
                                "checksum mismatch") as cm:
      data.mnist(self.cache, download=True, mirror=self.url, checksums=sums)
    for part in (name, "0" * 32, self.sums[name]):
      self.assertIn(part, str(cm.exception))
    # Files fetched before the bad one were verified and stay.
    self.assertEqual(sorted(os.listdir(self.cache)),
                     sorted(n + ".gz" for n in data.MNIST_FILES[:bad]))

  def test_network_error_names_url_and_remedy(self):
    url = "file://" + os.path.join(self.mirror, "gone") + "/"
    with self.assertRaisesRegex(data.DatasetUnavailableError,
                                re.escape(url) + ".*by hand"):
      data.mnist(self.cache, download=True, mirror=url, checksums=self.sums)
    self.assertEqual(os.listdir(self.cache), [])

  @parameterized.named_parameters(
      ("count", 1, np.zeros(11, np.uint8), "labels of shape"),
      ("range", 1, np.full(12, 10, np.uint8), "0..9"),
      ("rank", 0, np.zeros((12, 784), np.uint8), "uint8 \\(n, h, w\\)"),
  )
  def test_inconsistent_files(self, index, array, problem):
    d = self.create_tempdir().full_path
    _write_mnist(d)
    data.write_idx(os.path.join(d, data.MNIST_FILES[index]), array)
    with self.assertRaisesRegex(ValueError, problem):
      data.load_dataset("mnist", data_dir=d)


class LoadDatasetTest(parameterized.TestCase):

  def test_registry(self):
    self.assertEqual(sorted(data.DATASETS),
                     ["diabetes", "digits", "mnist", "xor"])

  def test_unknown_name_lists_valid_ones(self):
    with self.assertRaisesRegex(
        ValueError, "'cifar'.*diabetes, digits, mnist, xor"):
      data.load_dataset("cifar")

  @parameterized.product(name=("xor", "digits", "mnist"),
                         fraction=(0.0, 1.0, -0.1, 1.5, float("nan")))
  def test_bad_test_fraction(self, name, fraction):
    with self.assertRaisesRegex(ValueError, "test_fraction"):
      data.load_dataset(name, test_fraction=fraction)

  def test_checksums_are_md5_of_the_official_gz_files(self):
    self.assertEqual(sorted(data.MNIST_CHECKSUMS),
                     sorted(n + ".gz" for n in data.MNIST_FILES))
    for md5 in data.MNIST_CHECKSUMS.values():
      self.assertRegex(md5, "^[0-9a-f]{32}$")


if __name__ == "__main__":
  absltest.main()
