"""Activation functions by name, each with its closed-form derivative.

Every entry of ``ACTIVATIONS`` is a constructor that takes the activation's
parameters (if any) and returns an :class:`Activation`. The derivative is
written out by hand rather than taken from autodiff so that the probe's
analytic Jacobian ``D_l W_l`` with ``D_l = diag(phi'(h_l))`` is an independent
computation that tests can compare against ``jax.jacfwd``/``jax.jacrev``.

Conventions at kinks (measure-zero points): ``phi'(0) = 0`` for ReLU,
``phi'(0) = slope`` for leaky ReLU, ``phi'(0) = alpha`` for ELU and
``phi'(+-1) = 0`` for hard tanh. Each ``fn`` is written with ``jnp.where`` on
the same predicate, so autodiff agrees with ``deriv`` everywhere.

Maxout (Goodfellow et al. 2013) is not elementwise: a maxout layer computes
``k`` linear pieces per unit and keeps the largest, ``x_i = max_j h_ij``. Its
Activation has ``pieces = k`` and ``fn`` reduces the last axis; the layer and
its Jacobian (a row selection of the stacked weights, not ``diag(phi') W``)
are handled in :mod:`vgrad.nn.models` and :mod:`vgrad.probes.jacobian`.
"""

from collections.abc import Callable
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Activation:
  """A named activation.

  Attributes:
    name: registry name.
    fn: ``phi``; elementwise, except for maxout where it maps ``(..., k)`` to
      ``(...)`` by a max over the last axis.
    deriv: ``phi'`` elementwise, or ``None`` for maxout.
    params: the constructor arguments, as sorted ``(name, value)`` pairs.
    pieces: number of linear pieces per unit; 1 for elementwise activations.
    exact_zero: ``h -> bool mask`` of where ``phi'(h)`` is exactly zero in
      exact arithmetic (ReLU's ``h <= 0``, hard tanh's ``|h| >= 1``), or
      None where it never is. A derivative that merely rounds to zero
      (``tanh'(20)`` in float32) is not an exact zero: the probes claim
      exact zero singular values only from this predicate.
    breakpoints: where phi or phi' is not smooth (ReLU family: 0; hard
      tanh: -1 and 1): a Gaussian expectation is integrated piecewise
      between them (:func:`vgrad.theory.quadrature.piecewise_rule`), since
      one Gauss-Hermite rule sums across a jump and converges slowly.
    transform: for a transformed activation (:func:`transformed`), the
      transform's parameters as sorted ``(name, value)`` pairs; else ().
  """
  name: str
  fn: Callable[[Array], Array]
  deriv: Callable[[Array], Array] | None
  params: tuple[tuple[str, float], ...] = ()
  pieces: int = 1
  exact_zero: Callable[[Array], Array] | None = None
  breakpoints: tuple[float, ...] = ()
  transform: tuple[tuple[str, float], ...] = ()

  @property
  def is_maxout(self) -> bool:
    return self.pieces > 1

  def describe(self) -> str:
    args = ", ".join(f"{k}={v:g}" for k, v in self.params)
    return f"{self.name}({args})" if args else self.name


def _elementwise(name, fn, deriv, exact_zero=None, breakpoints=(),
                 **params) -> Activation:
  return Activation(name, fn, deriv, tuple(sorted(params.items())),
                    exact_zero=exact_zero, breakpoints=tuple(breakpoints))


def linear() -> Activation:
  """phi(x) = x."""
  return _elementwise("linear", lambda x: x, jnp.ones_like)


def sigmoid() -> Activation:
  """phi(x) = 1 / (1 + exp(-x)); phi'(x) = phi(x)(1 - phi(x)) <= 1/4.

  The derivative is computed as ``t / (1 + t)^2`` with ``t = e^{-|x|}``:
  ``1 - phi(x)`` rounds to 0 for ``x > 17`` in float32, this form only
  where the true value leaves the float range (``|x| > 87``).
  """
  def deriv(x):
    t = jnp.exp(-jnp.abs(x))
    return t / (1 + t) ** 2
  return _elementwise("sigmoid", jax.nn.sigmoid, deriv)


def tanh() -> Activation:
  """phi(x) = tanh(x); phi'(x) = 1 - tanh(x)^2 = 4 t / (1 + t)^2 with
  ``t = e^{-2|x|}``: the second form, used here, does not round to 0 for
  ``|x| > 9`` in float32 (the first does); it underflows only where the
  true value leaves the float range (``|x| > 44`` in float32, ``354`` in
  float64)."""
  def deriv(x):
    t = jnp.exp(-2 * jnp.abs(x))
    return 4 * t / (1 + t) ** 2
  return _elementwise("tanh", jnp.tanh, deriv)


def relu() -> Activation:
  """phi(x) = max(0, x); phi'(x) = 1[x > 0]."""
  return _elementwise("relu", lambda x: jnp.where(x > 0, x, 0.0),
                      lambda x: jnp.where(x > 0, 1.0, 0.0).astype(x.dtype),
                      exact_zero=lambda x: ~(x > 0), breakpoints=(0.0,))


def leaky_relu(slope: float = 0.01) -> Activation:
  """phi(x) = x if x > 0 else slope * x. The lectures use slope 0.01 and 0.1."""
  if not 0 <= slope < 1:
    raise ValueError(f"leaky_relu slope must be in [0, 1), got {slope}")
  return _elementwise(
      "leaky_relu", lambda x: jnp.where(x > 0, x, slope * x),
      lambda x: jnp.where(x > 0, 1.0, slope).astype(x.dtype),
      exact_zero=(lambda x: ~(x > 0)) if slope == 0 else None,
      breakpoints=(0.0,), slope=slope)


def _elu(x, alpha):
  # expm1 of min(x, 0): the unselected branch must stay finite for autodiff.
  return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0.0)))


def _elu_deriv(x, alpha):
  return jnp.where(x > 0, 1.0, alpha * jnp.exp(jnp.minimum(x, 0.0))).astype(
      x.dtype)


def elu(alpha: float = 1.0) -> Activation:
  """phi(x) = x if x > 0 else alpha (exp(x) - 1) (Clevert et al. 2015)."""
  if alpha <= 0:
    raise ValueError(f"elu alpha must be > 0, got {alpha}")
  return _elementwise("elu", lambda x: _elu(x, alpha),
                      lambda x: _elu_deriv(x, alpha), breakpoints=(0.0,),
                      alpha=alpha)


# Klambauer et al. 2017, eq. 14 (the fixed point mean 0, variance 1).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu() -> Activation:
  """phi(x) = lambda * elu(x, alpha), lambda ~ 1.0507, alpha ~ 1.6733."""
  return _elementwise("selu", lambda x: SELU_SCALE * _elu(x, SELU_ALPHA),
                      lambda x: SELU_SCALE * _elu_deriv(x, SELU_ALPHA),
                      breakpoints=(0.0,))


def softplus() -> Activation:
  """phi(x) = log(1 + exp(x)); phi'(x) = sigmoid(x)."""
  return _elementwise("softplus", jax.nn.softplus, jax.nn.sigmoid)


def softsign() -> Activation:
  """phi(x) = x / (1 + |x|); phi'(x) = 1 / (1 + |x|)^2."""
  return _elementwise("softsign", lambda x: x / (1 + jnp.abs(x)),
                      lambda x: 1 / (1 + jnp.abs(x)) ** 2,
                      breakpoints=(0.0,))   # phi' has a kink at 0


def hard_tanh() -> Activation:
  """phi(x) = clip(x, -1, 1); phi'(x) = 1[|x| < 1]."""
  return _elementwise(
      "hard_tanh", lambda x: jnp.where(jnp.abs(x) < 1, x, jnp.sign(x)),
      lambda x: jnp.where(jnp.abs(x) < 1, 1.0, 0.0).astype(x.dtype),
      exact_zero=lambda x: ~(jnp.abs(x) < 1), breakpoints=(-1.0, 1.0))


_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def gelu() -> Activation:
  """Exact GELU: phi(x) = x Phi(x); phi'(x) = Phi(x) + x N(x; 0, 1)."""
  def cdf(x):
    return 0.5 * (1 + jax.scipy.special.erf(x * _INV_SQRT2))

  def deriv(x):
    return cdf(x) + x * _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)
  return _elementwise("gelu", lambda x: x * cdf(x), deriv)


def erf() -> Activation:
  """phi(x) = erf(x); phi'(x) = (2 / sqrt(pi)) exp(-x^2).

  A sigmoid-shaped odd activation like tanh whose Gaussian expectations have
  closed forms (Williams 1997), so mean-field theory is exact for it.
  """
  return _elementwise("erf", jax.scipy.special.erf,
                      lambda x: _TWO_OVER_SQRT_PI * jnp.exp(-x * x))


def swish(beta: float = 1.0) -> Activation:
  """phi(x) = x sigmoid(beta x) (SiLU when beta = 1).

  phi'(x) = s + beta x s (1 - s), s = sigmoid(beta x).
  """
  def deriv(x):
    s = jax.nn.sigmoid(beta * x)
    return s + beta * x * s * (1 - s)
  return _elementwise("swish", lambda x: x * jax.nn.sigmoid(beta * x), deriv,
                      beta=beta)


def maxout(k: int = 2) -> Activation:
  """phi(h_1, ..., h_k) = max_j h_j over k linear pieces (Goodfellow 2013)."""
  if int(k) != k or k < 2:
    raise ValueError(f"maxout needs k >= 2 linear pieces, got k={k}")
  return Activation("maxout", lambda h: jnp.max(h, axis=-1), None,
                    (("k", int(k)),), pieces=int(k))


def _leaky_fn(x, slope):
  return jnp.where(x > 0, x, slope * x)


def transformed(base: Activation, transform: dict, *, name: str | None = None,
                params: tuple = ()) -> Activation:
  """``phi_hat(x) = output_scale * (phi(input_scale * x + input_shift) +
  output_shift)`` of the elementwise ``base`` (the form of Deep Kernel
  Shaping and TAT, :mod:`vgrad.theory.kernel_shaping`); a missing key is
  the identity, and ``negative_slope`` replaces a leaky ReLU's slope.

  The closed-form derivative is ``output_scale * input_scale *
  phi'(input_scale * x + input_shift)``; breakpoints map to ``(b -
  input_shift) / input_scale`` and ``phi'``'s exact zeros carry over.
  ``name``/``params``: the registry name and constructor arguments
  (default: the base's); ``transform`` records the parameters.
  """
  if base.deriv is None:
    raise ValueError(f"{base.describe()} is not elementwise: only an "
                     "elementwise activation can be transformed")
  a = float(transform.get("input_scale", 1.0))
  b = float(transform.get("input_shift", 0.0))
  d = float(transform.get("output_shift", 0.0))
  g = float(transform.get("output_scale", 1.0))
  if not all(math.isfinite(v) for v in (a, b, d, g)) or a == 0:
    raise ValueError(f"transform of {base.describe()} needs finite "
                     f"parameters and input_scale != 0, got {transform}")
  fn0, deriv0, zero0 = base.fn, base.deriv, base.exact_zero
  if "negative_slope" in transform:
    if base.name != "leaky_relu":
      raise ValueError("negative_slope transforms only leaky_relu, not "
                       f"{base.describe()}")
    s = float(transform["negative_slope"])
    fn0 = lambda u: _leaky_fn(u, s)
    deriv0 = lambda u: jnp.where(u > 0, 1.0, s).astype(u.dtype)
    zero0 = (lambda u: ~(u > 0)) if s == 0 else None
  return Activation(
      name=name or base.name,
      fn=lambda x: g * (fn0(a * x + b) + d),
      deriv=lambda x: (g * a) * deriv0(a * x + b),
      params=tuple(params) if name else base.params,
      exact_zero=None if zero0 is None else (lambda x: zero0(a * x + b)),
      breakpoints=tuple(sorted((t - b) / a for t in base.breakpoints)),
      transform=tuple(sorted((k, float(v)) for k, v in transform.items())))


def _shaped(method: str, base: str, target: str):
  """The registry constructor of ``{method}_{base}``: the base transformed
  by DKS or TAT for a net of ``depth`` activation layers and the method's
  whole-net target (:func:`vgrad.theory.kernel_shaping.transform_activation`;
  the solver lives in the theory layer and is imported when one is built)."""
  def make(depth: int, **value) -> Activation:
    from vgrad.theory import kernel_shaping  # the one nn -> theory import
    if set(value) - {target}:
      raise ValueError(f"{method}_{base} takes depth and {target}, not "
                       f"{', '.join(sorted(set(value) - {target}))}")
    key = {target: value[target]} if target in value else {}
    shape = kernel_shaping.transform_activation(base, method, depth=depth,
                                                **key)
    params = {"depth": depth, **value}
    return transformed(ACTIVATIONS[base](), shape.params,
                       name=f"{method}_{base}",
                       params=tuple(sorted(params.items())))
  make.__doc__ = (f"{base} transformed by {method.upper()} for ``depth`` "
                  f"activation layers (optional ``{target}``).")
  return make


# The transformed entries: name -> (method, base, the whole-net target
# parameter). Each needs ``depth`` (make_mlp and NetworkConfig pass the
# net's). Any other base: vgrad.transform_activation.
TRANSFORMED = {
    "dks_tanh": ("dks", "tanh", "c_slope_1_target"),
    "dks_softplus": ("dks", "softplus", "c_slope_1_target"),
    "dks_leaky_relu": ("dks", "leaky_relu", "c_slope_1_target"),
    "tat_leaky_relu": ("tat", "leaky_relu", "c_val_0_target"),
    "tat_tanh": ("tat", "tanh", "c_curve_target"),
    "tat_softplus": ("tat", "softplus", "c_curve_target"),
}


ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    "linear": linear,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "selu": selu,
    "softplus": softplus,
    "softsign": softsign,
    "hard_tanh": hard_tanh,
    "gelu": gelu,
    "erf": erf,
    "swish": swish,
    "maxout": maxout,
    **{name: _shaped(*entry) for name, entry in TRANSFORMED.items()},
}


def with_depth(name: str, params: dict | None, depth: int) -> dict:
  """``params`` with the net's ``depth`` added for a transformed entry
  (:data:`TRANSFORMED`) that does not name its own."""
  params = dict(params or {})
  if name in TRANSFORMED and "depth" not in params:
    params["depth"] = int(depth)
  return params


def get_activation(name: str, **params) -> Activation:
  """Returns the activation ``name`` built with ``params``.

  Raises:
    ValueError: for an unknown name (the message lists the valid names), a
      parameter the activation does not take, or an invalid parameter value.
  """
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; valid names: "
                     f"{', '.join(sorted(ACTIVATIONS))}")
  if name in TRANSFORMED and "depth" not in params:
    raise ValueError(f"activation {name!r} is solved for a depth: give "
                     "depth= (make_mlp and the entry points pass the net's)")
  key = tuple(sorted(params.items()))
  try:
    hash(key)
  except TypeError:   # an unhashable value: built anew (and refused there)
    key = None
  try:
    return (ACTIVATIONS[name](**params) if key is None
            else _built(name, key))
  except TypeError:
    raise ValueError(f"activation {name!r} takes no parameter(s) "
                     f"{', '.join(sorted(params))}") from None


@functools.lru_cache(maxsize=256)
def _built(name: str, params: tuple) -> Activation:
  """One object per (name, parameters): models built from equal settings
  are then equal, so a ``jax.jit`` static on the model (LSUV's fit, the
  probes) reuses its compiled program instead of tracing and compiling it
  again for each new, equal model."""
  return ACTIVATIONS[name](**dict(params))
