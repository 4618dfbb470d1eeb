"""Weight and bias initializers by name.

A weight initializer is ``init(key, shape, dtype) -> W`` for a kernel of shape
``(fan_in, fan_out)`` (Flax's ``x @ W`` convention, so the Jacobian of a layer
is ``W.T``). Variances, with ``n_in = fan_in`` and ``n_out = fan_out``:

================  ==========================================  ==================
name              distribution                                Var[W_ij]
================  ==========================================  ==================
zeros             0                                           0
uniform           U(-1, 1) (the lectures' tf.random_uniform)  1/3
small_normal      N(0, 0.01^2)                                1e-4
large_normal      N(0, 1)                                     1
standard_uniform  U(-a, a), a = 1 / sqrt(n_in) (Glorot &      1 / (3 n_in)
                  Bengio 2010's "standard" init, eq. 1)
lecun_uniform     U(-a, a), a = sqrt(3 / n_in)                1 / n_in
lecun_normal      N(0, 1 / n_in)                              1 / n_in
glorot_uniform    U(-a, a), a = sqrt(6 / (n_in + n_out))      2 / (n_in + n_out)
glorot_normal     N(0, 2 / (n_in + n_out))                    2 / (n_in + n_out)
he_uniform        U(-a, a), a = sqrt(6 / n_in)                2 / n_in
he_normal         N(0, 2 / n_in)                              2 / n_in
gaussian          N(0, sigma_w2 / n_in)  (mean-field)         sigma_w2 / n_in
orthogonal        sqrt(sigma_w2) * Q, Q Haar-orthogonal       sigma_w2 / n_out
lsuv              Q Haar-orthogonal, then rescaled on data    1 / max(n_in,
                  (Mishkin & Matas 2015; see vgrad.nn.lsuv)   n_out) before
                                                              LSUV
================  ==========================================  ==================

The ``*_normal`` entries are exact Gaussians (not the truncated normals of
Keras/Flax) so that the mean-field theory of Poole et al. (2016) applies to
them exactly. ``gaussian`` and ``orthogonal`` are the parameterisation of the
theory papers (Poole et al. 2016; Pennington et al. 2017) and are the only
entries that take the weight VARIANCE ``sigma_w2`` (the papers' sigma_w^2,
default 1): ``Var W = sigma_w2 / fan_in`` for ``gaussian``, the gain
``sqrt(sigma_w2)`` for ``orthogonal``. For a non-square kernel
``orthogonal`` has orthonormal rows or columns, whichever there are fewer of.

``lsuv`` is data-dependent (listed in ``DATA_DEPENDENT``): its kernel init
here is only LSUV's orthonormal pre-initialisation, with unit gain; the
scale of each layer is then set from a batch of data by
:func:`vgrad.nn.lsuv.lsuv_init`, which ``make_mlp(init='lsuv')`` flags on the
model (``MLP.data_init``) and :func:`vgrad.nn.lsuv.initialize` applies. It
takes no ``sigma_w2``.

Biases are zero unless the bias variance ``sigma_b2`` is given, then
N(0, sigma_b2).
"""

from collections.abc import Callable
import functools
import math

import jax
import jax.numpy as jnp

from vgrad.nn import linalg

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def _check_kernel_shape(shape):
  if len(shape) != 2 or min(shape) < 1:
    raise ValueError(f"kernel shape must be (fan_in, fan_out) >= 1, "
                     f"got {shape}")


def _uniform(limit_fn) -> Initializer:
  def init(key, shape, dtype=jnp.float32):
    _check_kernel_shape(shape)
    limit = limit_fn(*shape)
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


def _normal(std_fn) -> Initializer:
  def init(key, shape, dtype=jnp.float32):
    _check_kernel_shape(shape)
    return std_fn(*shape) * jax.random.normal(key, shape, dtype)
  return init


def zeros() -> Initializer:
  def init(key, shape, dtype=jnp.float32):
    del key
    _check_kernel_shape(shape)
    return jnp.zeros(shape, dtype)
  return init


def uniform() -> Initializer:
  return _uniform(lambda n_in, n_out: 1.0)


def small_normal() -> Initializer:
  return _normal(lambda n_in, n_out: 0.01)


def large_normal() -> Initializer:
  return _normal(lambda n_in, n_out: 1.0)


def standard_uniform() -> Initializer:
  """U(-1/sqrt(n_in), 1/sqrt(n_in)): the "standard" init of Glorot & Bengio.

  Var = 1 / (3 n_in), so n_in Var[W] = 1/3: in the linear regime each layer
  scales the back-propagated gradient variance by 1/3 (their eq. 1 and 16).
  """
  return _uniform(lambda n_in, n_out: 1 / math.sqrt(n_in))


def lecun_uniform() -> Initializer:
  return _uniform(lambda n_in, n_out: math.sqrt(3 / n_in))


def lecun_normal() -> Initializer:
  return _normal(lambda n_in, n_out: math.sqrt(1 / n_in))


def glorot_uniform() -> Initializer:
  return _uniform(lambda n_in, n_out: math.sqrt(6 / (n_in + n_out)))


def glorot_normal() -> Initializer:
  return _normal(lambda n_in, n_out: math.sqrt(2 / (n_in + n_out)))


def he_uniform() -> Initializer:
  return _uniform(lambda n_in, n_out: math.sqrt(6 / n_in))


def he_normal() -> Initializer:
  return _normal(lambda n_in, n_out: math.sqrt(2 / n_in))


def gaussian(sigma_w2: float = 1.0) -> Initializer:
  """W_ij ~ N(0, sigma_w2 / fan_in) (Poole et al. 2016, Sec. 2)."""
  gain = math.sqrt(sigma_w2)
  return _normal(lambda n_in, n_out: gain / math.sqrt(n_in))


def orthogonal(sigma_w2: float = 1.0) -> Initializer:
  """W = sqrt(sigma_w2) * Q with Q Haar-distributed (Saxe et al. 2014).

  Q comes from the QR decomposition of a Gaussian matrix with the signs of
  R's diagonal absorbed into Q, which makes it exactly Haar (Mezzadri 2007).
  """
  gain = math.sqrt(sigma_w2)

  def init(key, shape, dtype=jnp.float32):
    _check_kernel_shape(shape)
    n_in, n_out = shape
    tall = (max(n_in, n_out), min(n_in, n_out))
    a = jax.random.normal(key, tall, dtype)
    q, r = linalg.qr(a)
    q = q * jnp.sign(jnp.diag(r))[None, :]
    q = q if n_in >= n_out else q.T
    return gain * q
  return init


def delta_orthogonal(sigma_w2: float = 1.0) -> Initializer:
  """Xiao et al. (2018), Algorithm 2, for dense and convolutional kernels.

  A convolution kernel ``(*spatial, c_in, c_out)`` has every tap zero
  except the centre one, ``sqrt(sigma_w2) H`` with ``H`` a Haar ``c_in x
  c_out`` matrix with orthonormal rows (``c_in <= c_out``): a circular
  convolution then maps each pixel's channels by ``H``, and with
  ``sigma_w2 = 1`` and no activation it is an exact isometry. The spatial
  sizes must be odd (a centre). A dense kernel ``(fan_in, fan_out)`` has
  no spatial axes and gets :func:`orthogonal`: the same construction.
  """
  dense = orthogonal(sigma_w2)

  def init(key, shape, dtype=jnp.float32):
    if len(shape) == 2:
      return dense(key, shape, dtype)
    *spatial, c_in, c_out = shape
    if (len(shape) < 2 or min(shape) < 1 or any(k % 2 == 0 for k in spatial)
        or c_in > c_out):
      raise ValueError(f"delta_orthogonal needs odd kernel sizes and c_in <= "
                       f"c_out, got kernel shape {tuple(shape)}")
    centre = tuple(k // 2 for k in spatial)
    kernel = jnp.zeros(shape, dtype)
    return kernel.at[centre].set(dense(key, (c_in, c_out), dtype))
  return init


def lsuv() -> Initializer:
  """LSUV's pre-initialisation: Haar-orthogonal with unit gain.

  Only step 1 of Mishkin & Matas (2015), Algorithm 1; the data-dependent
  step 2 is :func:`vgrad.nn.lsuv.lsuv_init`.
  """
  return orthogonal(1.0)


INITIALIZERS: dict[str, Callable[..., Initializer]] = {
    "zeros": zeros,
    "uniform": uniform,
    "small_normal": small_normal,
    "large_normal": large_normal,
    "standard_uniform": standard_uniform,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "gaussian": gaussian,
    "orthogonal": orthogonal,
    "delta_orthogonal": delta_orthogonal,
    "lsuv": lsuv,
}

# Entries whose scale is set by sigma_w2; the others fix their own scale.
TAKES_SIGMA_W2 = frozenset({"gaussian", "orthogonal", "delta_orthogonal"})
# Entries whose scale is set from a batch of data after ``model.init``.
DATA_DEPENDENT = frozenset({"lsuv"})


def weight_variance(name: str, fan_in: int, fan_out: int,
                    sigma_w2: float | None = None) -> float:
  """Var[W_ij] of ``get_initializer(name, sigma_w2)`` for a (fan_in, fan_out).

  For a data-dependent entry (``lsuv``) this is the variance of the
  pre-initialisation that ``get_initializer`` draws, ``1 / max(fan_in,
  fan_out)``; the weights after LSUV depend on the data and are not
  described by it.
  """
  s2 = 1.0 if sigma_w2 is None else sigma_w2
  return {
      "zeros": 0.0, "uniform": 1 / 3, "small_normal": 1e-4,
      "large_normal": 1.0, "standard_uniform": 1 / (3 * fan_in),
      "lecun_uniform": 1 / fan_in,
      "lecun_normal": 1 / fan_in, "glorot_uniform": 2 / (fan_in + fan_out),
      "glorot_normal": 2 / (fan_in + fan_out), "he_uniform": 2 / fan_in,
      "he_normal": 2 / fan_in, "gaussian": s2 / fan_in,
      "orthogonal": s2 / max(fan_in, fan_out),
      "delta_orthogonal": s2 / max(fan_in, fan_out),   # dense: orthogonal
      "lsuv": 1 / max(fan_in, fan_out),
  }[_check_name(name)]


def _check_name(name: str) -> str:
  if name not in INITIALIZERS:
    raise ValueError(f"unknown initializer {name!r}; valid names: "
                     f"{', '.join(sorted(INITIALIZERS))}")
  return name


def check_variance(label: str, value: float | None):
  """ValueError unless ``value`` (a variance) is None or finite and >= 0."""
  try:
    ok = value is None or (value >= 0 and math.isfinite(value))
  except TypeError:
    ok = False
  if not ok:
    raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")


def check_scale(name: str, sigma_w2: float | None):
  """ValueError unless ``sigma_w2`` is None or a valid variance given to an
  entry of ``TAKES_SIGMA_W2`` (the message names those entries)."""
  _check_name(name)
  check_variance("sigma_w2", sigma_w2)
  if sigma_w2 is None or name in TAKES_SIGMA_W2:
    return
  why = ("sets its own scale from data (each layer rescaled to unit output "
         "variance)" if name in DATA_DEPENDENT else "fixes its own scale")
  raise ValueError(f"sigma_w2 applies only to init "
                   f"{'|'.join(sorted(TAKES_SIGMA_W2))}; initializer "
                   f"{name!r} {why}")


def get_initializer(name: str, sigma_w2: float | None = None) -> Initializer:
  """Returns the weight initializer ``name``; ``sigma_w2`` is the weight
  variance of ``gaussian``/``orthogonal`` (None: 1).

  Raises:
    ValueError: for an unknown name (listing the valid ones), a negative
      ``sigma_w2``, or ``sigma_w2`` given to an entry that fixes its own
      scale.
  """
  check_scale(name, sigma_w2)
  return _initializer(name, sigma_w2)


# One initializer object per setting (as vgrad.nn.activations does): models
# built from equal settings are then equal, and a jit static on the model
# reuses its compiled program.
@functools.lru_cache(maxsize=256)
def _initializer(name: str, sigma_w2: float | None) -> Initializer:
  if sigma_w2 is None:
    return INITIALIZERS[name]()
  return INITIALIZERS[name](sigma_w2)


def get_bias_initializer(sigma_b2: float | None = None) -> Initializer:
  """Zeros when ``sigma_b2`` is None or 0, else b_i ~ N(0, sigma_b2)."""
  check_variance("sigma_b2", sigma_b2)
  return _bias_initializer(sigma_b2 or 0.0)


@functools.lru_cache(maxsize=256)
def _bias_initializer(sigma_b2: float) -> Initializer:
  if not sigma_b2:
    return lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype)
  std = math.sqrt(sigma_b2)
  return lambda key, shape, dtype=jnp.float32: std * jax.random.normal(
      key, shape, dtype)
