"""Datasets for the training studies, as standardised numpy arrays.

==========  ==========  =====================================================
name        task        source and split
==========  ==========  =====================================================
xor         binary      the lecture's 4 points, raw 0/1 inputs; test = train
digits      multiclass  sklearn ``load_digits`` (1797 x 64, bundled, offline);
                        stratified split, ``test_fraction`` of each class
diabetes    regression  sklearn ``load_diabetes`` (442 x 10, bundled);
                        random split, targets standardised too
mnist       multiclass  the four official IDX files (60000 / 10000 split),
                        read from disk or downloaded from a mirror on request
==========  ==========  =====================================================

Splits are a fixed ``np.random.default_rng(split_seed)`` permutation, so the
same arguments always give identical arrays. Every set except ``xor`` is
standardised per feature with the mean and std of its *training* split
(features whose train std is below 1e-8 get std 1, so constant pixels become
0); MNIST pixels are first scaled to [0, 1]. ``x`` is float32 of shape
``(n, d)``; ``y`` is int32 class labels, or float32 targets for regression.
"""

from collections.abc import Callable
import contextlib
import dataclasses
import gzip
import hashlib
import importlib.util
import inspect
import math
import os
import tempfile
import urllib.request
import zlib

import numpy as np


class DatasetUnavailableError(RuntimeError):
  """The data are not on disk or could not be fetched; says how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)  # Arrays have no bool ==.
class Dataset:
  """A train/test split. ``x_*``: (n, d) float32; ``y_*``: (n,)."""
  name: str
  task: str  # "binary" | "multiclass" | "regression"
  x_train: np.ndarray  # (n_train, d) float32
  y_train: np.ndarray  # (n_train,) int32 labels, float32 for regression
  x_test: np.ndarray  # (n_test, d) float32
  y_test: np.ndarray  # (n_test,)
  num_classes: int | None  # None for regression
  description: str  # one line: source, sizes, preprocessing

  @property
  def num_outputs(self) -> int:
    """Width of the network's last layer: 1 unless multiclass."""
    return self.num_classes if self.task == "multiclass" else 1

  @property
  def input_dim(self) -> int:
    return self.x_train.shape[1]


def _check_test_fraction(test_fraction: float) -> None:
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")


def split_indices(n: int, test_fraction: float, split_seed: int,
                  labels: np.ndarray | None = None):
  """Deterministic train/test split of ``range(n)``.

  Args:
    n: number of examples.
    test_fraction: share of examples (of each class, when stratified) held
      out for testing, rounded to the nearest integer.
    split_seed: seed of the ``np.random.default_rng`` permutation.
    labels: (n,) class labels; when given, each class is split on its own.

  Returns:
    (train_idx, test_idx), sorted int arrays that partition ``range(n)``.
  """
  _check_test_fraction(test_fraction)
  rng = np.random.default_rng(split_seed)
  groups = ([np.arange(n)] if labels is None else
            [np.flatnonzero(labels == c) for c in np.unique(labels)])
  train, test = [], []
  for group in groups:
    perm = rng.permutation(group)
    n_test = round(test_fraction * len(group))
    test.append(perm[:n_test])
    train.append(perm[n_test:])
  train, test = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
  if not len(train) or not len(test):
    raise ValueError(f"test_fraction={test_fraction} leaves an empty split "
                     f"of {n} examples")
  return train, test


def standardize(x_train: np.ndarray, x_test: np.ndarray):
  """Per-feature (x - mean) / std with the train statistics; float32."""
  mean = x_train.mean(axis=0, dtype=np.float64)
  std = x_train.std(axis=0, dtype=np.float64)
  std = np.where(std < 1e-8, 1.0, std)
  mean, std = mean.astype(np.float32), std.astype(np.float32)
  return ((x_train.astype(np.float32) - mean) / std,
          (x_test.astype(np.float32) - mean) / std)


def xor() -> Dataset:
  """The 4 XOR points with raw 0/1 inputs; the test set is the train set."""
  x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
  y = np.array([0, 1, 1, 0], np.int32)
  return Dataset("xor", "binary", x, y, x.copy(), y.copy(), 2,
                 "XOR truth table, 4 points, raw 0/1 inputs; a memorisation "
                 "task, so the test set is the training set")


_NO_SKLEARN = ("this dataset ships with scikit-learn, which is not "
               "installed; run `pip install scikit-learn`")


def _sklearn_datasets():
  try:
    import sklearn.datasets  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DatasetUnavailableError(_NO_SKLEARN) from e
  return sklearn.datasets


# Where scikit-learn keeps the CSV files its ``load_digits`` and
# ``load_diabetes`` read, below the installed ``sklearn`` package.
SKLEARN_DATA_DIR = ("datasets", "data")


def _sklearn_csv(name: str, delimiter: str | None = None) -> np.ndarray | None:
  """One of scikit-learn's bundled data files as a float64 array, read with
  NumPy as sklearn's own loaders read it, without importing sklearn
  (``import sklearn.datasets`` takes ~1.7 s on a 2-core CPU, the file 10 ms).

  Returns None when the file is not where this version of vgrad expects it
  (the caller then asks sklearn's loader); raises
  :class:`DatasetUnavailableError` when scikit-learn is not installed.
  """
  spec = importlib.util.find_spec("sklearn")
  if spec is None or not spec.submodule_search_locations:
    raise DatasetUnavailableError(_NO_SKLEARN)
  path = os.path.join(list(spec.submodule_search_locations)[0],
                      *SKLEARN_DATA_DIR, name)
  if not os.path.isfile(path):
    return None
  with gzip.open(path, "rt", encoding="utf-8") as f:
    return np.loadtxt(f, delimiter=delimiter)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
  """sklearn's ``load_digits(return_X_y=True)``: float64 (1797, 64) pixels
  and int64 labels (the last column of ``digits.csv.gz``)."""
  table = _sklearn_csv("digits.csv.gz", delimiter=",")
  if table is None:
    return _sklearn_datasets().load_digits(return_X_y=True)
  return table[:, :-1], table[:, -1].astype(np.int64)


def _load_diabetes() -> tuple[np.ndarray, np.ndarray]:
  """sklearn's ``load_diabetes(return_X_y=True, scaled=False)``: float64
  (442, 10) raw features and (442,) targets."""
  x = _sklearn_csv("diabetes_data_raw.csv.gz")
  y = _sklearn_csv("diabetes_target.csv.gz")
  if x is None or y is None:
    return _sklearn_datasets().load_diabetes(return_X_y=True, scaled=False)
  return x, y


def digits(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
  """sklearn's 8x8 digits: (1797, 64) pixels 0..16, 10 classes, stratified."""
  x, y = _load_digits()
  train, test = split_indices(len(y), test_fraction, split_seed, labels=y)
  x_train, x_test = standardize(x[train], x[test])
  return Dataset(
      "digits", "multiclass", x_train, y[train].astype(np.int32), x_test,
      y[test].astype(np.int32), 10,
      f"sklearn load_digits (UCI 8x8), {len(train)} train / {len(test)} test "
      f"stratified (seed {split_seed}), pixels standardised on train")


def diabetes(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
  """sklearn's diabetes regression: (442, 10) features, scalar target."""
  x, y = _load_diabetes()
  train, test = split_indices(len(y), test_fraction, split_seed)
  x_train, x_test = standardize(x[train], x[test])
  y_train, y_test = standardize(y[train, None], y[test, None])
  return Dataset(
      "diabetes", "regression", x_train, y_train[:, 0], x_test, y_test[:, 0],
      None,
      f"sklearn load_diabetes (Efron et al. 2004), {len(train)} train / "
      f"{len(test)} test (seed {split_seed}), features and target "
      f"standardised on train")


# IDX type code -> big-endian dtype (LeCun et al., MNIST file format).
_IDX_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file, plain or gzip-compressed, into a native-order array.

  Raises:
    ValueError: naming the file, for a bad header or a data size that does
      not match the dimensions in the header.
  """
  with open(path, "rb") as f:
    raw = f.read()
  if path.endswith(".gz") or raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
      raise ValueError(f"{path}: corrupt gzip data ({e})") from e
  if len(raw) < 4 or raw[:2] != b"\0\0":
    raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4]!r})")
  code, ndim = raw[2], raw[3]
  if code not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}")
  if ndim == 0 or len(raw) < 4 + 4 * ndim:
    raise ValueError(f"{path}: truncated header for {ndim} dimensions")
  shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
  dtype = _IDX_DTYPES[code]
  expected = math.prod(shape) * dtype.itemsize
  got = len(raw) - 4 - 4 * ndim
  if got != expected:
    problem = "truncated" if got < expected else "oversized"
    raise ValueError(f"{path}: {problem} data, shape {shape} needs "
                     f"{expected} bytes, found {got}")
  data = np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)
  return data.astype(dtype.newbyteorder("="))


@contextlib.contextmanager
def _replacing(path: str):
  """Yields a temp file beside ``path`` that replaces it on a clean exit."""
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                             suffix=".tmp", dir=os.path.dirname(path) or ".")
  try:
    with os.fdopen(fd, "wb") as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def write_idx(path: str, array: np.ndarray) -> None:
  """Writes ``array`` (1 to 255 dims) as IDX, gzipped if ``path`` ends .gz."""
  array = np.asarray(array)
  codes = {dt.newbyteorder("="): c for c, dt in _IDX_DTYPES.items()}
  if array.dtype.newbyteorder("=") not in codes:
    raise ValueError(f"IDX cannot store dtype {array.dtype}; supported: "
                     f"{', '.join(sorted(str(d) for d in codes))}")
  if not 1 <= array.ndim <= 255 or max(array.shape) >= 2 ** 32:
    raise ValueError(f"IDX cannot store shape {array.shape}")
  code = codes[array.dtype.newbyteorder("=")]
  data = (bytes([0, 0, code, array.ndim])
          + np.array(array.shape, ">u4").tobytes()
          + array.astype(_IDX_DTYPES[code]).tobytes())
  with _replacing(path) as f:
    f.write(gzip.compress(data, mtime=0) if path.endswith(".gz") else data)


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# MD5 hex digests of the official .gz files, as in torchvision's MNIST.
MNIST_CHECKSUMS = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def default_mnist_dir() -> str:
  """``$VGRAD_DATA_DIR/mnist``, else ``~/.cache/vgrad/mnist``."""
  root = os.environ.get("VGRAD_DATA_DIR")
  if root:
    return os.path.join(root, "mnist")
  return os.path.join(os.path.expanduser("~"), ".cache", "vgrad", "mnist")


def _find(data_dir: str, name: str) -> str | None:
  for candidate in (name, name + ".gz"):
    path = os.path.join(data_dir, candidate)
    if os.path.isfile(path):
      return path
  return None


def _download(url: str, path: str, md5: str) -> None:
  """Fetches ``url`` to ``path`` if its MD5 is ``md5``; else leaves nothing."""
  remedy = f"download it by hand to {path}, or try another mirror"
  try:
    with _replacing(path) as f, urllib.request.urlopen(url, timeout=60) as r:
      digest = hashlib.md5()
      while chunk := r.read(1 << 20):
        digest.update(chunk)
        f.write(chunk)
      if digest.hexdigest() != md5.lower():
        raise DatasetUnavailableError(
            f"checksum mismatch for {os.path.basename(path)} from {url}: "
            f"expected MD5 {md5}, got {digest.hexdigest()}; {remedy}")
  except OSError as e:  # urllib.error.URLError included.
    raise DatasetUnavailableError(
        f"could not download {url} ({e}); {remedy}") from e


def _mnist_split(images: np.ndarray, labels: np.ndarray, what: str):
  if images.ndim != 3 or images.dtype != np.uint8:
    raise ValueError(f"MNIST {what} images must be uint8 (n, h, w), got "
                     f"{images.dtype} {images.shape}")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"MNIST {what} has {len(images)} images but labels of "
                     f"shape {labels.shape}")
  if not np.issubdtype(labels.dtype, np.integer) or (
      labels.size and not 0 <= labels.min() <= labels.max() <= 9):
    raise ValueError(f"MNIST {what} labels must be integers in 0..9")
  x = images.reshape(len(images), -1).astype(np.float32) / 255
  return x, labels.astype(np.int32)


def mnist(data_dir: str | None = None, download: bool = False,
          mirror: str = MNIST_MIRROR,
          checksums: dict[str, str] = MNIST_CHECKSUMS) -> Dataset:
  """MNIST from the four IDX files in ``data_dir``; official split.

  Args:
    data_dir: directory holding the files, each as ``name`` or ``name.gz``;
      default ``default_mnist_dir()``.
    download: fetch missing files as ``mirror + name + '.gz'`` (any URL
      urllib opens, ``file://`` included); files present are never fetched.
    mirror: base URL ending in ``/``.
    checksums: ``name + '.gz'`` -> MD5 hex digest; a download that does not
      match is discarded.

  Returns:
    x: (n, h*w) pixels / 255, standardised with the train mean and std.

  Raises:
    DatasetUnavailableError: files missing (and not downloaded) or a failed
      or corrupt download.
    ValueError: malformed files.
  """
  data_dir = os.path.expanduser(data_dir or default_mnist_dir())
  missing = [n for n in MNIST_FILES if _find(data_dir, n) is None]
  if missing and not download:
    raise DatasetUnavailableError(
        f"MNIST files missing from {data_dir}: {', '.join(missing)}; pass "
        f"--download to fetch them from {mirror}, or copy the four files "
        f"({', '.join(MNIST_FILES)}, plain or .gz) there")
  if missing:
    os.makedirs(data_dir, exist_ok=True)
    unknown = [n + ".gz" for n in missing if n + ".gz" not in checksums]
    if unknown:
      raise ValueError(f"no checksum given for {', '.join(unknown)}")
  for name in missing:
    _download(mirror + name + ".gz", os.path.join(data_dir, name + ".gz"),
              checksums[name + ".gz"])
  arrays = [read_idx(_find(data_dir, n)) for n in MNIST_FILES]
  x_train, y_train = _mnist_split(arrays[0], arrays[1],
                                  f"train ({data_dir})")
  x_test, y_test = _mnist_split(arrays[2], arrays[3], f"test ({data_dir})")
  x_train, x_test = standardize(x_train, x_test)
  return Dataset(
      "mnist", "multiclass", x_train, y_train, x_test, y_test, 10,
      f"MNIST IDX files (LeCun et al. 1998), official {len(y_train)} train "
      f"/ {len(y_test)} test split, pixels / 255 standardised on train")


DATASETS: dict[str, Callable[..., Dataset]] = {
    "xor": xor,
    "digits": digits,
    "diabetes": diabetes,
    "mnist": mnist,
}


def load_dataset(name: str, *, data_dir: str | None = None,
                 download: bool = False, test_fraction: float = 0.2,
                 split_seed: int = 0) -> Dataset:
  """Loads dataset ``name``, passing each loader the options it takes.

  ``xor`` ignores all options; ``mnist`` ignores ``test_fraction`` and
  ``split_seed`` (it keeps the official split); only ``mnist`` reads
  ``data_dir`` and ``download``.

  Raises:
    ValueError: an unknown name (listing the valid ones) or a
      ``test_fraction`` outside (0, 1).
    DatasetUnavailableError: the data are not available; says how to get
      them.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; valid names: "
                     f"{', '.join(sorted(DATASETS))}")
  _check_test_fraction(test_fraction)
  options = {"data_dir": data_dir, "download": download,
             "test_fraction": test_fraction, "split_seed": split_seed}
  loader = DATASETS[name]
  accepted = inspect.signature(loader).parameters
  return loader(**{k: v for k, v in options.items() if k in accepted})
