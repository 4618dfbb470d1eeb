"""The network settings every study and entry point shares, checked once.

:class:`NetworkConfig` holds what defines an MLP's architecture and
initialisation: ``depth`` hidden layers of ``width`` units, the activation
``act`` (a registry name) with its ``act_params``, the weight initializer
``init``, and the weight and bias VARIANCES ``sigma_w2`` and ``sigma_b2``,
the papers' sigma_w^2 and sigma_b^2 (Poole et al. 2016; Schoenholz et al.
2017): ``Var W = sigma_w2 / fan_in`` for ``init='gaussian'``, the gain
``sqrt(sigma_w2)`` for ``'orthogonal'`` (None: 1; no other initializer takes
it), biases ``N(0, sigma_b2)`` (None: zero biases).

Making one validates it: a bad field raises :class:`ConfigError`, a
ValueError whose ``field`` names the field and whose ``reason`` says the
valid values or range (``str(e)`` is ``"depth: must be an integer >= 1, got
0"``). Study configs build one per network they describe instead of
repeating the checks, and the command line maps ``field`` to its flag
(``--depth: must be an integer >= 1, got 0``). Layer rule: imports only
:mod:`vgrad.nn.activations` and :mod:`vgrad.nn.initializers`.
"""

import dataclasses

from vgrad.nn import activations
from vgrad.nn import initializers

FIELDS = ("act", "act_params", "init", "depth", "width", "sigma_w2",
          "sigma_b2")


class ConfigError(ValueError):
  """A bad network setting: ``field`` and ``reason`` (``"must be ..."``)."""

  def __init__(self, field: str, reason: str):
    super().__init__(f"{field}: {reason}")
    self.field = field
    self.reason = reason


def check_count(field: str, value, low: int) -> int:
  """``value`` as an int, or ConfigError unless it is an integer >= low."""
  try:
    ok = not isinstance(value, bool) and int(value) == value and value >= low
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ConfigError(field, f"must be an integer >= {low}, got {value!r}")
  return int(value)


def check_variance(field: str, value) -> None:
  """ConfigError unless ``value`` is None or a finite number >= 0."""
  try:
    initializers.check_variance(field, value)
  except ValueError as e:
    raise ConfigError(field, str(e).removeprefix(f"{field} ")) from None


def check_act(act: str, act_params: dict | None = None) -> None:
  """ConfigError (field ``act`` or ``act_params``) unless the activation
  registry builds ``act`` with ``act_params``."""
  if act not in activations.ACTIVATIONS:
    raise ConfigError("act", f"unknown activation {act!r}; valid names: "
                      f"{', '.join(sorted(activations.ACTIVATIONS))}")
  try:
    activations.get_activation(act, **(act_params or {}))
  except ValueError as e:
    raise ConfigError("act_params", str(e)) from None


def check_init(init: str, sigma_w2=None) -> None:
  """ConfigError (field ``init`` or ``sigma_w2``) for an unknown
  initializer, a bad variance, or ``sigma_w2`` given to an initializer
  that fixes its own scale."""
  if init not in initializers.INITIALIZERS:
    raise ConfigError("init", f"unknown initializer {init!r}; valid names: "
                      f"{', '.join(sorted(initializers.INITIALIZERS))}")
  check_variance("sigma_w2", sigma_w2)
  try:
    initializers.check_scale(init, sigma_w2)
  except ValueError as e:
    raise ConfigError("sigma_w2", str(e).removeprefix("sigma_w2 ")) from None


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
  """An MLP of ``depth`` hidden layers of ``width`` units (module docstring);
  validated when made."""
  act: str = "relu"
  init: str = "he_normal"
  depth: int = 1
  width: int = 1
  sigma_w2: float | None = None
  sigma_b2: float | None = None
  act_params: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if isinstance(self.depth, int) and self.depth >= 1:
      # A transformed activation (dks_*, tat_*) is solved for this depth.
      object.__setattr__(self, "act_params", activations.with_depth(
          self.act, self.act_params, self.depth))
    self.validate()

  def validate(self) -> "NetworkConfig":
    """Raises ConfigError naming the first bad field; returns ``self``."""
    check_count("depth", self.depth, 1)
    check_count("width", self.width, 1)
    check_act(self.act, self.act_params)
    check_init(self.init, self.sigma_w2)
    check_variance("sigma_b2", self.sigma_b2)
    return self

  def mlp_kwargs(self) -> dict:
    """The keyword arguments of :func:`vgrad.nn.models.make_mlp`."""
    return {"depth": self.depth, "width": self.width,
            "activation": self.act,
            "activation_params": dict(self.act_params), "init": self.init,
            "sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2}
