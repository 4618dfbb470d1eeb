r"""The width coordinate check: does each layer's scale stay put as width grows?

A parameterisation is *width-stable* when, after any fixed number of
training steps, every layer's activations have entries of size Theta(1) as
the width n -> infinity (Yang & Hu 2021, "Feature learning in infinite-width
neural networks"; Yang et al. 2021, "Tensor Programs V: tuning large neural
networks via zero-shot hyperparameter transfer", Sec. 3 and Fig. 5). The
"coord check" measures it: train a few steps at widths n_1 < ... < n_K over
seeds and record, for every layer l and step t, the coordinate size

    c_l(t, n) = mean_{b, i} |x_l[b, i]|        (mean over batch and units)

of its output x_l on a fixed probe batch (microsoft/mup's ``get_coord_data``
records ``x.abs().mean()`` of every module's output; this module writes the
same idea for any Flax linen model). The log-log slope

    s_l(t) = d log c_l(t, n) / d log n          (least squares over widths)

is ~0 for a width-stable layer and ~1 for one that blows up like n.

Two parameterisations of the MLP ``x_0 -> layer_1 .. layer_L -> readout``
(``depth = L`` hidden layers, each an affine map followed by phi; kernels
(fan_in, fan_out); the coordinates recorded are each Dense layer's output
h_l = x_{l-1} W_l + b_l, and the logits z)::

    h_1 = x_0 W_1 + b_1      (d -> n)   "input layer": fan_in d is fixed
    h_l = x_{l-1} W_l + b_l  (n -> n)   hidden, l = 2..L
    z   = alpha x_L W_out + b_out (n -> C)

* ``sp``, the standard parameterisation: every W ~ N(0, 1/fan_in), biases
  0, alpha = 1, one learning rate eta for every parameter.
* ``mup``, the maximal-update parameterisation in microsoft/mup's form
  (``MuReadout`` + ``MuAdam``/``MuSGD``; equivalent to Table 3 of Tensor
  Programs V up to the readout's initial value), with width multiplier
  m = n / base_width: W_1 and W_l ~ N(0, 1/fan_in), biases 0, the readout
  initialised at ZERO with alpha = 1/m. Parameters with one width-sized
  dimension ("vector-like": W_1, W_out, the hidden biases), with two
  ("matrix-like": the hidden W_l, l >= 2) and with none ("fixed": the
  readout bias b_out, shape (C,)) get the learning rates

      =============  =======  ===============  ================
      optimizer      fixed    vector-like      matrix-like
      =============  =======  ===============  ================
      adam           eta      eta              eta / m
      sgd            eta      eta * m          eta
      =============  =======  ===============  ================

  At m = 1 (n = base_width) both parameterisations give the same updates.

Why SP blows up under Adam: Adam's first update moves every entry of W_l by
about +-eta, aligned with the incoming activations, so
x (Delta W_l) ~ eta * n * E|x|: the hidden pre-activations and the logits
grow like n after one step (slope -> 1), while under muP eta / m cancels the
n. The input layer's fan_in d is fixed, so its output is width-independent
in both. At step 0 every hidden layer is width-independent in both (init
variance 1/fan_in); muP's logits start at 0 (zero readout) and so have no
step-0 slope (reported as None).

Seeds are a batch dimension: one jitted program per (parameterisation,
width) initialises and trains every seed at once (``jax.vmap`` over keys,
``jax.lax.scan`` over steps). Every seed sees the same batches; the seeds
differ only in their initial weights.
"""

from collections.abc import Callable, Sequence
import dataclasses
import math
from typing import Any, NamedTuple

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vgrad.io import schemas
from vgrad.nn import activations as activations_lib
from vgrad.nn import initializers as initializers_lib
from vgrad.training import data as data_lib

SCHEMA = schemas.COORD_CHECK
PARAMETERIZATIONS = ("sp", "mup")
OPTIMIZERS = ("adam", "sgd")
# Dense layers need elementwise activations (maxout's layer has k pieces).
ACTIVATIONS = tuple(sorted(name for name in activations_lib.ACTIVATIONS
                           if name != "maxout"
                           and name not in activations_lib.TRANSFORMED))
DEFAULT_WIDTHS = (64, 128, 256, 512, 1024, 2048)

PRECISION = jax.lax.Precision.HIGHEST

COORDINATE_NOTE = (
    "Coordinate size c = mean |x| over the probe batch and the units of a "
    "layer's output (the Dense pre-activations h_l and the logits z), per "
    "seed; slope = least-squares d log c / d log width of the seeds' mean "
    "(its +- is the standard deviation of the per-seed slopes). Slope ~0: "
    "width-stable; ~1: grows like the width.")


class Setup(NamedTuple):
  """What a factory returns for one width: a Flax linen module mapping
  ``(B, d)`` inputs to ``(B, C)`` logits (parameters in ``'params'`` only)
  and the optax transformation that trains them."""
  module: nn.Module
  optimizer: optax.GradientTransformation


Factory = Callable[[int], Setup]


@dataclasses.dataclass(frozen=True)
class CoordCheckConfig:
  """One coord check of vgrad's MLP under SP and muP on a data set."""
  widths: tuple[int, ...] = DEFAULT_WIDTHS
  depth: int = 3
  act: str = "relu"
  seeds: int = 3
  steps: int = 5
  lr: float = 0.01
  optimizer: str = "adam"
  batch_size: int = 128
  base_width: int = 64
  seed: int = 0
  dataset: str = "digits"
  parameterizations: tuple[str, ...] = PARAMETERIZATIONS


# ----------------------------------------------------------------- models


class Readout(nn.Module):
  """``z = multiplier * (x @ kernel) + bias``: (..., n) -> (..., C).

  ``zero_init``: the kernel starts at 0 (muP's recommended readout);
  otherwise N(0, 1/fan_in). The bias starts at 0 and is not multiplied.
  """
  num_outputs: int
  multiplier: float = 1.0
  zero_init: bool = False

  @nn.compact
  def __call__(self, x):
    init = (nn.initializers.zeros if self.zero_init
            else initializers_lib.get_initializer("lecun_normal"))
    kernel = self.param("kernel", init, (x.shape[-1], self.num_outputs))
    bias = self.param("bias", nn.initializers.zeros, (self.num_outputs,))
    z = self.multiplier * jnp.dot(x, kernel, precision=PRECISION)
    return z + bias.reshape((1,) * (z.ndim - 1) + bias.shape)


class WidthMLP(nn.Module):
  """``depth`` hidden layers ``layer_1 .. layer_depth`` of ``width`` units
  (Dense with N(0, 1/fan_in) kernels, zero biases, then ``activation``) and a
  :class:`Readout` named ``readout``: (..., d) -> (..., num_outputs)."""
  depth: int
  width: int
  num_outputs: int
  activation: Callable[[jax.Array], jax.Array]
  readout_multiplier: float = 1.0
  readout_zero_init: bool = False

  @nn.compact
  def __call__(self, x):
    kernel_init = initializers_lib.get_initializer("lecun_normal")
    for l in range(1, self.depth + 1):
      x = self.activation(nn.Dense(self.width, kernel_init=kernel_init,
                                   precision=PRECISION, name=f"layer_{l}")(x))
    return Readout(self.num_outputs, self.readout_multiplier,
                   self.readout_zero_init, name="readout")(x)


def mup_learning_rates(optimizer: str, learning_rate: float, width: int,
                       base_width: int) -> dict[str, float]:
  """``{'fixed': ..., 'vector': ..., 'matrix': ...}``: muP's learning
  rates (module docstring's table) at width multiplier
  ``m = width / base_width``."""
  m = width / base_width
  if optimizer == "adam":
    return {"fixed": learning_rate, "vector": learning_rate,
            "matrix": learning_rate / m}
  if optimizer == "sgd":
    return {"fixed": learning_rate, "vector": learning_rate * m,
            "matrix": learning_rate}
  raise ValueError(f"unknown optimizer {optimizer!r}; valid: "
                   f"{', '.join(OPTIMIZERS)}")


def mlp_param_labels(params) -> Any:
  """The tree of ``params`` (of a :class:`WidthMLP`) with each leaf replaced
  by ``'matrix'`` (the n x n kernels of ``layer_2`` and above), ``'fixed'``
  (the readout's bias: no width-sized dimension) or ``'vector'``
  (everything else)."""
  def label(path, _):
    names = [getattr(k, "key", str(k)) for k in path]
    if names[-2:] == ["readout", "bias"]:
      return "fixed"
    hidden = any(n.startswith("layer_") and n != "layer_1" for n in names)
    return "matrix" if hidden and names[-1] == "kernel" else "vector"
  return jax.tree_util.tree_map_with_path(label, params)


def _base_optimizer(
    name: str) -> Callable[[float], optax.GradientTransformation]:
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; valid: "
                     f"{', '.join(OPTIMIZERS)}")
  return optax.adam if name == "adam" else optax.sgd


def make_mlp_factory(parameterization: str, *, depth: int, num_outputs: int,
                     act: str = "relu", learning_rate: float = 0.01,
                     optimizer: str = "adam", base_width: int = 64) -> Factory:
  """``width -> Setup``: vgrad's coord-check MLP in SP or muP (module
  docstring), trained by ``optimizer`` at base learning rate
  ``learning_rate``.

  Raises:
    ValueError: an unknown parameterisation, activation or optimizer, or
      depth, num_outputs, base_width < 1.
  """
  if parameterization not in PARAMETERIZATIONS:
    raise ValueError(f"unknown parameterization {parameterization!r}; valid: "
                     f"{', '.join(PARAMETERIZATIONS)}")
  if act not in ACTIVATIONS:
    raise ValueError(f"unknown activation {act!r}; valid: "
                     f"{', '.join(ACTIVATIONS)}")
  for name, value in (("depth", depth), ("num_outputs", num_outputs),
                      ("base_width", base_width)):
    if value < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  make_opt = _base_optimizer(optimizer)
  phi = activations_lib.get_activation(act).fn

  def factory(width: int) -> Setup:
    if parameterization == "sp":
      module = WidthMLP(depth, width, num_outputs, phi)
      return Setup(module, make_opt(learning_rate))
    rates = mup_learning_rates(optimizer, learning_rate, width, base_width)
    module = WidthMLP(depth, width, num_outputs, phi,
                      readout_multiplier=base_width / width,
                      readout_zero_init=True)
    transforms = {label: make_opt(lr) for label, lr in rates.items()}
    return Setup(module, optax.multi_transform(transforms, mlp_param_labels))
  return factory


# --------------------------------------------------------- measurement


def submodule_calls(module: nn.Module, method_name: str) -> bool:
  """The default capture filter: every submodule's ``__call__`` (the root
  module's output, the model's output, is left out)."""
  return method_name == "__call__" and module.scope.path != ()


def coordinate_sizes(module: nn.Module, params, x: jax.Array,
                     capture=submodule_calls
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The model's output on ``x`` and each captured output's coordinate size.

  Args:
    module: a Flax linen module, ``(B, d) -> (B, C)``.
    params: its ``'params'`` collection.
    x: ``(B, d)`` inputs.
    capture: Flax's ``capture_intermediates`` filter,
      ``(module, method_name) -> bool``.

  Returns:
    ``(logits (B, C), {name: scalar mean |x|})``. ``name`` is the module's
    path joined by ``/``; a module called more than once, or returning a
    tuple, gets ``[k]`` suffixes in call/leaf order. Non-float outputs are
    skipped.
  """
  out, state = module.apply({"params": params}, x,
                            capture_intermediates=capture,
                            mutable=["intermediates"])
  sizes = {}
  for path, calls in traverse_util.flatten_dict(
      state.get("intermediates", {})).items():
    name = "/".join(path[:-1]) if path[-1] == "__call__" else "/".join(path)
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(calls)
              if jnp.issubdtype(leaf.dtype, jnp.floating)]
    for k, leaf in enumerate(leaves):
      key = name if len(leaves) == 1 else f"{name}[{k}]"
      sizes[key] = jnp.mean(jnp.abs(leaf.astype(jnp.float32)))
  return out, sizes


def layer_names(module: nn.Module, x: jax.Array,
                capture=submodule_calls) -> list[str]:
  """The names :func:`coordinate_sizes` gives, in call order, from an
  abstract trace (nothing is compiled or computed). A jitted program's
  dict outputs come back sorted by key (``layer_10`` before ``layer_2``),
  so the order is read here."""
  names = []

  def trace(key):
    params = module.init(key, x)["params"]
    names.extend(coordinate_sizes(module, params, x, capture)[1])
    return jnp.zeros(())

  jax.eval_shape(trace, jax.random.key(0))
  return names


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of ``(B, C)`` logits and ``(B,)`` labels."""
  return jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(logits, y))


def make_width_program(setup: Setup, capture=submodule_calls) -> Callable:
  """The jitted coord check of one width, vmapped over seeds.

  Returns ``run(keys, x_probe, y_probe, x_batches, y_batches) -> (sizes,
  loss)`` with ``keys`` (S,) PRNG keys (one initialisation each),
  ``x_probe`` (B, d) / ``y_probe`` (B,) the probe batch the coordinates and
  the loss are measured on, ``x_batches`` (T, B, d) / ``y_batches`` (T, B)
  the training batch of each step. ``sizes``: ``{name: (S, T + 1)}``
  coordinate sizes at steps 0..T (step t: after t updates); ``loss``
  (S, T + 1) the probe batch's cross-entropy.
  """
  module, optimizer = setup

  def measure(params, x, y):
    logits, sizes = coordinate_sizes(module, params, x, capture)
    return sizes, cross_entropy(logits, y)

  def loss_fn(params, x, y):
    return cross_entropy(module.apply({"params": params}, x), y)

  def one_seed(key, x_probe, y_probe, x_batches, y_batches):
    params = module.init(key, x_probe)["params"]

    def step(carry, batch):
      params, opt_state = carry
      record = measure(params, x_probe, y_probe)
      grads = jax.grad(loss_fn)(params, *batch)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), record

    (params, _), history = jax.lax.scan(
        step, (params, optimizer.init(params)), (x_batches, y_batches))
    last = measure(params, x_probe, y_probe)
    return jax.tree.map(lambda h, v: jnp.concatenate([h, v[None]]),
                        history, last)

  return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None, None, None)))


def make_batches(x: np.ndarray, y: np.ndarray, steps: int, batch_size: int,
                 seed: int):
  """``(x_probe, y_probe, x_batches, y_batches)`` from one permutation of
  the examples (``np.random.default_rng(seed)``): the probe batch is its
  first ``batch_size`` examples, training batch t the next ones, wrapping
  around. Shapes (B, d), (B,), (T, B, d), (T, B)."""
  n = x.shape[0]
  if not 1 <= batch_size <= n:
    raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
  order = np.random.default_rng(seed).permutation(n)
  idx = order[np.arange((steps + 1) * batch_size) % n].reshape(
      steps + 1, batch_size)
  return x[idx[0]], y[idx[0]], x[idx[1:]], y[idx[1:]]


def fit_slope(widths: Sequence[float], values: Sequence[float]) -> float:
  """Least-squares slope of log(values) against log(widths); NaN when a
  value is not finite and positive (a log cannot show it)."""
  v = np.asarray(values, np.float64)
  if v.size < 2 or not np.all(np.isfinite(v) & (v > 0)):
    return math.nan
  return float(np.polyfit(np.log(np.asarray(widths, np.float64)),
                          np.log(v), 1)[0])


def _json(value):
  """Floats and nested lists with NaN as None (JSON has no NaN)."""
  if isinstance(value, (list, tuple, np.ndarray)):
    return [_json(v) for v in value]
  value = float(value)
  return value if math.isfinite(value) else None


def summarise(widths: Sequence[int], sizes: dict[str, np.ndarray],
              loss: np.ndarray) -> dict:
  """One parameterisation's record from the measured arrays.

  Args:
    widths: the K widths.
    sizes: ``{layer: (K, S, T + 1)}`` coordinate sizes.
    loss: ``(K, S, T + 1)`` probe losses.

  Returns:
    ``{'layers', 'coord', 'slope', 'loss'}``: ``coord[layer]`` holds
    ``values`` [step][width][seed], ``mean`` and ``std`` (over seeds)
    [step][width]; ``slope[layer]`` holds ``mean`` [step] (the slope of the
    seeds' mean) and ``std`` [step] (of the per-seed slopes); ``loss``
    holds ``mean`` [step][width].
  """
  coord, slope = {}, {}
  for layer, v in sizes.items():
    v = np.transpose(np.asarray(v, np.float64), (2, 0, 1))   # (T+1, K, S)
    mean = v.mean(axis=2)
    per_seed = np.array([[fit_slope(widths, v[t, :, s])
                          for s in range(v.shape[2])]
                         for t in range(v.shape[0])])
    coord[layer] = {"values": _json(v), "mean": _json(mean),
                    "std": _json(v.std(axis=2))}
    slope[layer] = {
        "mean": _json([fit_slope(widths, m) for m in mean]),
        "std": _json(per_seed.std(axis=1) if per_seed.shape[1] > 1
                     else np.zeros(per_seed.shape[0]))}
  loss = np.transpose(np.asarray(loss, np.float64), (2, 0, 1))
  return {"layers": list(sizes), "coord": coord, "slope": slope,
          "loss": {"mean": _json(loss.mean(axis=2))}}


def coord_check(factory: Factory, x, y, *, widths: Sequence[int],
                seeds: int = 3, steps: int = 5, batch_size: int = 128,
                seed: int = 0, capture=submodule_calls,
                progress: Callable[[int], None] | None = None) -> dict:
  """The coord check of any Flax model over widths and seeds.

  Args:
    factory: ``width -> Setup(module, optimizer)``; the module maps
      ``(B, d)`` inputs to ``(B, C)`` logits.
    x: ``(n, d)`` float inputs; y: ``(n,)`` integer labels.
    widths: the widths to build, >= 2 of them, increasing.
    seeds: initialisations per width (one ``jax.random.split`` of
      ``jax.random.key(seed)``, the same at every width).
    steps: optimizer steps T; coordinates are recorded at steps 0..T.
    batch_size: examples per training batch and in the probe batch.
    seed: the seed of the keys and of the batches (:func:`make_batches`).
    capture: the ``capture_intermediates`` filter of the recorded layers.
    progress: called with each width once it is measured.

  Returns:
    :func:`summarise`'s record plus ``widths`` and ``steps`` ([0..T]).
  """
  widths = [int(w) for w in widths]
  if len(widths) < 2 or sorted(set(widths)) != widths:
    raise ValueError(f"widths must be >= 2 increasing distinct integers, "
                     f"got {widths}")
  batches = make_batches(np.asarray(x), np.asarray(y), steps, batch_size, seed)
  keys = jax.random.split(jax.random.key(seed), seeds)
  sizes, losses, layers = [], [], None
  for width in widths:
    setup = factory(width)
    layers = layers or layer_names(setup.module, batches[0], capture)
    program = make_width_program(setup, capture)
    s, loss = jax.device_get(program(keys, *batches))
    sizes.append(s)
    losses.append(loss)
    if progress is not None:
      progress(width)
  stacked = {layer: np.stack([s[layer] for s in sizes]) for layer in layers}
  return {"widths": widths, "steps": list(range(steps + 1))} | summarise(
      widths, stacked, np.stack(losses))


# --------------------------------------------------------------- study


def validate(config: CoordCheckConfig) -> None:
  """Raises ValueError naming the field of the first bad setting."""
  if config.act not in ACTIVATIONS:
    raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}")
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
  bad = set(config.parameterizations) - set(PARAMETERIZATIONS)
  if bad or not config.parameterizations:
    raise ValueError(f"parameterizations must be from "
                     f"{', '.join(PARAMETERIZATIONS)}")
  widths = list(config.widths)
  if len(widths) < 2 or sorted(set(widths)) != widths or widths[0] < 1:
    raise ValueError("widths must be >= 2 increasing distinct integers >= 1")
  for name in ("depth", "seeds", "steps", "batch_size", "base_width"):
    if getattr(config, name) < 1:
      raise ValueError(f"{name} must be an integer >= 1")
  if not (math.isfinite(config.lr) and config.lr > 0):
    raise ValueError("lr must be a finite number > 0")


def run_study(config: CoordCheckConfig, dataset: data_lib.Dataset,
              progress: Callable[[str, int], None] | None = None) -> dict:
  """Every parameterisation's :func:`coord_check` of vgrad's MLP on
  ``dataset``'s training split: the results.json dictionary (without the
  run's seconds, platform and command)."""
  validate(config)
  arms = {}
  for name in config.parameterizations:
    factory = make_mlp_factory(
        name, depth=config.depth, num_outputs=dataset.num_outputs,
        act=config.act, learning_rate=config.lr, optimizer=config.optimizer,
        base_width=config.base_width)
    arms[name] = coord_check(
        factory, dataset.x_train, dataset.y_train, widths=config.widths,
        seeds=config.seeds, steps=config.steps, batch_size=config.batch_size,
        seed=config.seed,
        progress=None if progress is None else (
            lambda w, name=name: progress(name, w)))
  return {"schema": SCHEMA, "config": dataclasses.asdict(config),
          "dataset": {"name": dataset.name,
                      "description": dataset.description},
          "convention": COORDINATE_NOTE,
          "widths": list(config.widths),
          "steps": list(range(config.steps + 1)),
          "parameterizations": arms}


# --------------------------------------------------------------- report


def _fmt_slope(mean, std) -> str:
  return "n/a" if mean is None else f"{mean:+.2f} ± {std or 0:.2f}"


def slope_table(results: dict, name: str) -> str:
  """Markdown table: one row per layer, one column per step, the fitted
  slope ± its spread over seeds."""
  arm = results["parameterizations"][name]
  steps = results["steps"]
  lines = ["| layer | " + " | ".join(f"t={t}" for t in steps) + " |",
           "|---|" + "---:|" * len(steps)]
  for layer in arm["layers"]:
    s = arm["slope"][layer]
    lines.append(f"| `{layer}` | " + " | ".join(
        _fmt_slope(m, d) for m, d in zip(s["mean"], s["std"])) + " |")
  return "\n".join(lines)


def final_slopes(results: dict, name: str) -> dict[str, float | None]:
  """``{layer: slope at the last step}`` of one parameterisation."""
  arm = results["parameterizations"][name]
  return {layer: arm["slope"][layer]["mean"][-1] for layer in arm["layers"]}


def loss_table(results: dict) -> str:
  """Markdown table: the probe batch's loss (mean over seeds) at steps 0
  and T, one row per parameterisation and step, one column per width."""
  widths, t_last = results["widths"], results["steps"][-1]
  lines = ["| parameterisation | step | " + " | ".join(
      f"n={w}" for w in widths) + " |", "|---|---:|" + "---:|" * len(widths)]
  for name, arm in results["parameterizations"].items():
    for t in (0, t_last):
      lines.append(f"| {name} | {t} | " + " | ".join(
          "n/a" if v is None else f"{v:.3f}" for v in arm["loss"]["mean"][t])
                   + " |")
  return "\n".join(lines)


def format_report(results: dict) -> str:
  """The run's report.md: setup, the slope tables and what they show."""
  c, widths = results["config"], results["widths"]
  t_last = results["steps"][-1]
  lines = [
      "# Width coordinate check: SP against muP", "",
      f"MLP of {c['depth']} hidden layers ({c['act']}), {c['optimizer']} at "
      f"base learning rate {c['lr']:g}, base width {c['base_width']}, "
      f"batch {c['batch_size']} of {results['dataset']['name']}, widths "
      f"{', '.join(map(str, widths))}, {c['seeds']} seeds, steps "
      f"0..{t_last}.", "", results["convention"], ""]
  for name in results["parameterizations"]:
    slopes = final_slopes(results, name)
    shown = ", ".join(f"{k} {v:+.2f}" for k, v in slopes.items()
                      if v is not None)
    trained = {k: [v for v in s["mean"][1:] if v is not None]
               for k, s in results["parameterizations"][name]["slope"].items()}
    largest = ", ".join(f"{k} {max(v):+.2f}" for k, v in trained.items() if v)
    lines += [f"## {name.upper()}", "",
              f"Slopes at step {t_last}: {shown}. Largest slope over steps "
              f"1..{t_last}: {largest}.", "",
              slope_table(results, name), ""]
  lines += ["## Probe loss by width", "",
            "Cross-entropy of the probe batch, mean over seeds.", "",
            loss_table(results), ""]
  if results.get("seconds") is not None:
    lines += [f"Measured in {results['seconds']:.1f} s on "
              f"{results.get('platform', 'an unknown device')}."]
  return "\n".join(lines).rstrip() + "\n"
