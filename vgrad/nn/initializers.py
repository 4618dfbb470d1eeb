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
gaussian          N(0, sigma_w^2 / n_in)  (mean-field)        sigma_w^2 / n_in
orthogonal        sigma_w * Q, Q Haar-orthogonal              sigma_w^2 / n_out
lsuv              Q Haar-orthogonal, then rescaled on data    1 / max(n_in,
                  (Mishkin & Matas 2015; see vgrad.nn.lsuv)      n_out) before LSUV
================  ==========================================  ==================

The ``*_normal`` entries are exact Gaussians (not the truncated normals of
Keras/Flax) so that the mean-field theory of Poole et al. (2016) applies to
them exactly. ``gaussian`` and ``orthogonal`` are the parameterisation of the
theory papers (Poole et al. 2016; Pennington et al. 2017) and are the only
entries that take ``sigma_w`` (default 1). For a non-square kernel
``orthogonal`` has orthonormal rows or columns, whichever there are fewer of.

``lsuv`` is data-dependent (listed in ``DATA_DEPENDENT``): its kernel init
here is only LSUV's orthonormal pre-initialisation, with unit gain; the
scale of each layer is then set from a batch of data by
:func:`vgrad.nn.lsuv.lsuv_init`, which ``make_mlp(init='lsuv')`` flags on the
model (``MLP.data_init``) and :func:`vgrad.nn.lsuv.initialize` applies. It
takes no ``sigma_w``.

Biases are zero unless ``sigma_b`` is given, then N(0, sigma_b^2).
"""

import math
from typing import Callable

import jax
import jax.numpy as jnp

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


def gaussian(sigma_w: float = 1.0) -> Initializer:
  """W_ij ~ N(0, sigma_w^2 / fan_in) (Poole et al. 2016, Sec. 2)."""
  return _normal(lambda n_in, n_out: sigma_w / math.sqrt(n_in))


def orthogonal(sigma_w: float = 1.0) -> Initializer:
  """W = sigma_w * Q with Q Haar-distributed (Saxe et al. 2014).

  Q comes from the QR decomposition of a Gaussian matrix with the signs of
  R's diagonal absorbed into Q, which makes it exactly Haar (Mezzadri 2007).
  """
  def init(key, shape, dtype=jnp.float32):
    _check_kernel_shape(shape)
    n_in, n_out = shape
    tall = (max(n_in, n_out), min(n_in, n_out))
    a = jax.random.normal(key, tall, dtype)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diag(r))[None, :]
    q = q if n_in >= n_out else q.T
    return sigma_w * q
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
    "lsuv": lsuv,
}

# Entries whose scale is set by sigma_w; the others fix their own scale.
TAKES_SIGMA_W = frozenset({"gaussian", "orthogonal"})
# Entries whose scale is set from a batch of data after ``model.init``.
DATA_DEPENDENT = frozenset({"lsuv"})


def weight_variance(name: str, fan_in: int, fan_out: int,
                    sigma_w: float | None = None) -> float:
  """Var[W_ij] of ``get_initializer(name, sigma_w)`` for a (fan_in, fan_out).

  For a data-dependent entry (``lsuv``) this is the variance of the
  pre-initialisation that ``get_initializer`` draws, ``1 / max(fan_in,
  fan_out)``; the weights after LSUV depend on the data and are not
  described by it.
  """
  s2 = 1.0 if sigma_w is None else sigma_w ** 2
  return {
      "zeros": 0.0, "uniform": 1 / 3, "small_normal": 1e-4,
      "large_normal": 1.0, "standard_uniform": 1 / (3 * fan_in),
      "lecun_uniform": 1 / fan_in,
      "lecun_normal": 1 / fan_in, "glorot_uniform": 2 / (fan_in + fan_out),
      "glorot_normal": 2 / (fan_in + fan_out), "he_uniform": 2 / fan_in,
      "he_normal": 2 / fan_in, "gaussian": s2 / fan_in,
      "orthogonal": s2 / max(fan_in, fan_out),
      "lsuv": 1 / max(fan_in, fan_out),
  }[_check_name(name)]


def _check_name(name: str) -> str:
  if name not in INITIALIZERS:
    raise ValueError(f"unknown initializer {name!r}; valid names: "
                     f"{', '.join(sorted(INITIALIZERS))}")
  return name


def _check_sigma(label: str, value: float | None):
  if value is not None and not (value >= 0 and math.isfinite(value)):
    raise ValueError(f"{label} must be a finite number >= 0, got {value}")


def get_initializer(name: str, sigma_w: float | None = None) -> Initializer:
  """Returns the weight initializer ``name``.

  Raises:
    ValueError: for an unknown name (listing the valid ones), a negative
      ``sigma_w``, or ``sigma_w`` given to an entry that fixes its own scale.
  """
  _check_name(name)
  _check_sigma("sigma_w", sigma_w)
  if name in TAKES_SIGMA_W:
    return INITIALIZERS[name]() if sigma_w is None else INITIALIZERS[name](
        sigma_w)
  if sigma_w is not None and name in DATA_DEPENDENT:
    raise ValueError(f"initializer {name!r} sets its own scale from data "
                     f"(each layer rescaled to unit output variance); "
                     f"sigma_w applies only to "
                     f"{', '.join(sorted(TAKES_SIGMA_W))}")
  if sigma_w is not None:
    raise ValueError(f"initializer {name!r} fixes its own scale; sigma_w "
                     f"applies only to {', '.join(sorted(TAKES_SIGMA_W))}")
  return INITIALIZERS[name]()


def get_bias_initializer(sigma_b: float | None = None) -> Initializer:
  """Zeros when ``sigma_b`` is None or 0, else b_i ~ N(0, sigma_b^2)."""
  _check_sigma("sigma_b", sigma_b)
  if not sigma_b:
    return lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype)
  return lambda key, shape, dtype=jnp.float32: sigma_b * jax.random.normal(
      key, shape, dtype)
