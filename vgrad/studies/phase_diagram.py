"""Trainability against the mean-field phase diagram (Schoenholz et al. 2017).

Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), "Deep information
propagation", Sec. 5 and Fig. 5: random tanh networks with weights
``W_ij ~ N(0, sigma_w2 / N)`` and biases ``b_i ~ N(0, sigma_b2)`` are
trainable only when their depth is below a few correlation depth scales,

    L <~ 6 xi_c(sigma_w2, sigma_b2),     xi_c^{-1} = -log chi_c,

and ``xi_c`` diverges on the order-to-chaos line ``chi_1 = 1``, so the
deepest trainable networks sit at the critical ``sigma_w2``.

``run_trainability(config, dataset)`` measures this directly: for every depth
in ``config.depths`` it trains ``len(sigma_w2) x seeds`` networks in ONE
vmapped program (``vgrad.training.train``; the grid's sigma_w2 axis is a batch
axis like the seeds, because a Gaussian init scales linearly with its gain
sqrt(sigma_w2): every kernel of seed s is ``sqrt(sigma_w2) * W_s`` with
``W_s`` the seed's unit-variance draw, so each column of the heat map sees
the same random directions). ``theory(config)`` evaluates
:mod:`vgrad.theory.meanfield` on the same axes and on the full
(sigma_w2, sigma_b2) plane. Nothing here reads flags or writes files.
"""

from collections.abc import Callable
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import activations as activations_lib
from vgrad.nn import config as nn_config
from vgrad.nn import models
from vgrad.theory import meanfield
from vgrad.training import data as data_lib
from vgrad.training import train

# Depth below which Schoenholz et al. find networks trainable: L < 6 xi_c.
XI_C_MULTIPLE = 6.0


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
  """The trainability grid: depths x sigma_w2 x seeds at one sigma_b2.

  Defaults reproduce the shape of Schoenholz et al.'s Fig. 5 on the 8x8
  digits: tanh, sigma_b2 = 0.05, sigma_w2 from 1 to 4, SGD for a fixed
  number of steps; "trainable" means a median training accuracy of at
  least ``threshold`` (chance is 0.1).
  """
  act: str = "tanh"
  sigma_b2: float = 0.05
  sigma_w2: tuple[float, ...] = tuple(
      round(float(v), 4) for v in np.linspace(1.0, 4.0, 13))
  depths: tuple[int, ...] = (4, 8, 16, 24, 32, 48, 64, 96, 128)
  width: int = 64
  dataset: str = "digits"
  optimizer: str = "sgd"
  lr: float = 0.01
  steps: int = 500
  batch_size: int = 64
  seeds: int = 2
  seed: int = 0
  threshold: float = 0.5
  # Resolution of the theory curves and of the chi_1 phase plane.
  theory_points: int = 300
  plane_sigma_w2: tuple[float, float, int] = (0.5, 4.0, 300)
  plane_sigma_b2: tuple[float, float, int] = (0.0, 2.0, 250)


def check_config(config: PhaseConfig) -> None:
  """Raises ValueError naming the field and its valid values; each grid
  point's network is checked by :class:`vgrad.nn.config.NetworkConfig`."""
  if not config.sigma_w2 or min(config.sigma_w2) <= 0:
    raise ValueError("sigma_w2 must be a non-empty list of values > 0")
  if not config.depths:
    raise ValueError("depths must be a non-empty list of integers >= 1")
  for depth in config.depths:
    for sigma_w2 in config.sigma_w2:
      try:
        nn_config.NetworkConfig(act=config.act, init="gaussian", depth=depth,
                                width=config.width, sigma_w2=sigma_w2,
                                sigma_b2=config.sigma_b2)
      except nn_config.ConfigError as e:
        raise ValueError(f"{'depths' if e.field == 'depth' else e.field}: "
                         f"{e.reason}") from None
  if activations_lib.get_activation(config.act).is_maxout:
    raise ValueError("act: mean-field theory here needs an elementwise "
                     "activation, not maxout")
  for field, lo in (("steps", 1), ("seeds", 1),
                    ("batch_size", 0), ("theory_points", 2)):
    if getattr(config, field) < lo:
      raise ValueError(f"{field} must be >= {lo}, got "
                       f"{getattr(config, field)}")
  if not 0 < config.threshold <= 1:
    raise ValueError(f"threshold must be in (0, 1], got {config.threshold}")


def theory_resolution(points: int) -> dict:
  """The PhaseConfig fields of one resolution: ``points`` along the theory
  curves and the plane's sigma_w2 axis, 5/6 of them (at least 2) along its
  sigma_b2 axis (300 -> the default 300 x 250 plane)."""
  default = PhaseConfig()
  return {"theory_points": points,
          "plane_sigma_w2": default.plane_sigma_w2[:2] + (points,),
          "plane_sigma_b2": default.plane_sigma_b2[:2]
                            + (max(2, round(points * 5 / 6)),)}


def _scaled_states(states: train.TrainState, optimizer, sigma_w2):
  """``(G * S)`` states: seed s's kernels times ``sqrt(sigma_w2[g])``.

  The optimizer state is rebuilt from the scaled parameters.
  """
  scales = jnp.sqrt(jnp.asarray(sigma_w2, jnp.float32))

  def scale(g_scale, params):
    return jax.tree_util.tree_map_with_path(
        lambda path, v: v * g_scale if path[-1].key == "kernel" else v,
        params)

  params = jax.vmap(lambda c: jax.vmap(lambda p: scale(c, p))(
      states.params))(scales)
  flat = jax.tree_util.tree_map(
      lambda v: v.reshape((-1,) + v.shape[2:]), params)
  groups = len(sigma_w2)
  tile = lambda v: jnp.tile(v, (groups,) + (1,) * (v.ndim - 1))  # noqa: E731
  return train.TrainState(flat, jax.vmap(optimizer.init)(flat),
                          tile(states.perm), tile(states.diverged_at))


def train_depth(config: PhaseConfig, dataset: data_lib.Dataset,
                depth: int) -> dict[str, np.ndarray]:
  """Trains every (sigma_w2, seed) network of one depth.

  Returns ``{'train_accuracy', 'test_accuracy', 'train_loss',
  'diverged_at'}``, each ``(len(sigma_w2), seeds)`` on the host.
  """
  model = models.make_mlp(
      depth=depth, width=config.width, activation=config.act, init="gaussian",
      sigma_w2=1.0, sigma_b2=config.sigma_b2,
      num_outputs=dataset.num_outputs)
  optimizer = train.make_optimizer(config.optimizer, config.lr)
  loss = train.DEFAULT_LOSS[dataset.task]
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  seeds = config.seed + jnp.arange(config.seeds)
  keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(seeds)
  states = train.init_states(model, optimizer, keys[:, 0], x)
  states = _scaled_states(states, optimizer, config.sigma_w2)
  train_keys = jnp.tile(keys[:, 1], len(config.sigma_w2))
  step_fn = train.make_step_fn(model, optimizer, loss, dataset.task,
                               config.batch_size)
  chunk = train.make_train_chunk(step_fn, config.steps)
  states, _, _ = chunk(states, train_keys, 0, x, y)
  evaluate = train.make_evaluate(model, loss, dataset.task)
  on_train = evaluate(states.params, x, y)
  on_test = evaluate(states.params, jnp.asarray(dataset.x_test),
                     jnp.asarray(dataset.y_test))
  shape = (len(config.sigma_w2), config.seeds)
  out = {"train_accuracy": on_train["accuracy"],
         "test_accuracy": on_test["accuracy"],
         "train_loss": on_train["loss"], "diverged_at": states.diverged_at}
  return {k: np.asarray(jax.device_get(v)).reshape(shape)
          for k, v in out.items()}


def run_trainability(config: PhaseConfig, dataset: data_lib.Dataset,
                     progress: Callable[[int, float], None] | None = None
                     ) -> dict:
  """The measured heat map: per depth, per sigma_w2, per seed.

  ``progress(depth, seconds)`` is called after each depth. Returns lists
  ``(depths, sigma_w2, seeds)`` under the keys of :func:`train_depth`.
  """
  check_config(config)
  cells = {}
  for depth in config.depths:
    start = time.perf_counter()
    for key, value in train_depth(config, dataset, depth).items():
      cells.setdefault(key, []).append(value)
    if progress:
      progress(depth, time.perf_counter() - start)
  return {k: np.stack(v).tolist() for k, v in cells.items()}


def _finite_or_none(a) -> list:
  a = np.asarray(a, np.float64)
  return [None if not np.isfinite(v) else float(f"{v:.6g}") for v in a.flat]


def theory(config: PhaseConfig) -> dict:
  """Mean-field curves on the heat map's axis and the chi_1 phase plane.

  Returns ``{'sigma_w2', 'xi_c', 'chi_1', 'q_star', 'critical_sigma_w2',
  'plane': {'sigma_w2', 'sigma_b2', 'log10_chi_1', 'critical_sigma_b2',
  'critical_sigma_w2'}}`` (the last two: the critical line at 51 points)
  with non-finite values (xi_c on the critical line) as None.
  """
  act = activations_lib.get_activation(config.act)
  lo, hi = min(config.sigma_w2), max(config.sigma_w2)
  sw2 = jnp.linspace(lo, hi, config.theory_points)
  line = meanfield.solve_grid(act, sw2, jnp.asarray([config.sigma_b2]))
  p_w2 = jnp.linspace(*config.plane_sigma_w2[:2], config.plane_sigma_w2[2])
  p_b2 = jnp.linspace(*config.plane_sigma_b2[:2], config.plane_sigma_b2[2])
  plane = meanfield.solve_grid(act, p_w2, p_b2)
  # The line is smooth: 51 bisections draw it (one per sigma_b2 of the
  # plane would cost 64 solves each for nothing visible). The heat map's
  # own critical point is a 52nd bisection of the same vmapped program
  # (one compilation, not two).
  line_b2 = jnp.linspace(*config.plane_sigma_b2[:2], 51)
  bisected = np.asarray(jax.vmap(
      lambda b2: meanfield.critical_sigma_w2(act, b2))(
          np.append(np.asarray(line_b2), np.float32(config.sigma_b2))))
  plane_critical = bisected[:-1]
  # None where chi_1 < 1 for every sigma_w2 searched (e.g. sigmoid).
  critical = _finite_or_none(bisected[-1:])[0]
  return {
      "sigma_w2": _finite_or_none(sw2),
      "xi_c": _finite_or_none(line.xi_c[:, 0]),
      "chi_1": _finite_or_none(line.chi_1[:, 0]),
      "q_star": _finite_or_none(line.q_star[:, 0]),
      "critical_sigma_w2": critical,
      "plane": {
          "sigma_w2": _finite_or_none(p_w2),
          "sigma_b2": _finite_or_none(p_b2),
          # (len(sigma_w2), len(sigma_b2)), row-major.
          "log10_chi_1": np.asarray(
              [_finite_or_none(row) for row in np.log10(
                  np.asarray(plane.chi_1))]).tolist(),
          "critical_sigma_b2": _finite_or_none(line_b2),
          "critical_sigma_w2": _finite_or_none(plane_critical),
      },
  }


def xi_c_at(config: PhaseConfig) -> np.ndarray:
  """``xi_c`` at each of the grid's sigma_w2 (inf on the critical line)."""
  act = activations_lib.get_activation(config.act)
  n = len(config.sigma_w2)
  # Padded (with copies of the last value) to the length of
  # :func:`theory`'s line: the same compiled program solves both.
  sw2 = np.pad(np.asarray(config.sigma_w2, np.float32),
               (0, max(config.theory_points - n, 0)), mode="edge")
  mf = meanfield.solve_grid(act, jnp.asarray(sw2),
                            jnp.asarray([config.sigma_b2], jnp.float32))
  return np.asarray(mf.xi_c, np.float64)[:n, 0]


def summarize(config: PhaseConfig, cells: dict, xi_c: np.ndarray) -> dict:
  """Measured against predicted trainability.

  A cell (depth L, sigma_w2) is *trainable* when the median training
  accuracy over seeds is at least ``config.threshold``; it is *predicted
  trainable* when ``L <= 6 xi_c(sigma_w2)``. Returns per sigma_w2 the
  deepest trainable depth and ``6 xi_c``, the agreement (fraction of cells
  where measurement and prediction agree), the sigma_w2 with the deepest
  trainable net and the number of diverged networks.
  """
  acc = np.median(np.asarray(cells["train_accuracy"], np.float64), axis=2)
  depths = np.asarray(config.depths)[:, None]
  trainable = acc >= config.threshold
  predicted = depths <= XI_C_MULTIPLE * xi_c[None, :]
  deepest = [int(depths[trainable[:, g], 0].max()) if trainable[:, g].any()
             else 0 for g in range(len(config.sigma_w2))]
  diverged = np.asarray(cells["diverged_at"]) > 0
  best = int(np.argmax(deepest))
  return {
      "median_train_accuracy": acc.tolist(),
      "trainable": trainable.tolist(),
      "predicted_trainable": predicted.tolist(),
      "agreement": float(np.mean(trainable == predicted)),
      "violations": int(np.sum(trainable & ~predicted)),
      "untrained_in_budget": int(np.sum(~trainable & predicted)),
      "deepest_trainable": deepest,
      "six_xi_c": [None if not np.isfinite(v) else float(v)
                   for v in XI_C_MULTIPLE * xi_c],
      "best_sigma_w2": float(config.sigma_w2[best]),
      "diverged_networks": int(diverged.sum()),
      "networks": int(diverged.size),
  }


def critical_text(theory_record: dict) -> str:
  """``sigma_w^2 = 1.7610``, or why there is none."""
  critical = theory_record["critical_sigma_w2"]
  if critical is None:
    return ("none, chi_1 < 1 for every sigma_w^2 <= "
            f"{meanfield.SIGMA_W2_MAX:g} (always ordered)")
  return f"sigma_w^2 = {critical:.4f}"


def format_report(results: dict) -> str:
  """Markdown: setup, measured against predicted per sigma_w2, verdict."""
  c, s, t = results["config"], results["summary"], results["theory"]
  lines = [
      "# Trainability against the mean-field depth scale "
      "(Schoenholz et al. 2017)", "",
      f"{c['act']} networks of width {c['width']}, sigma_b^2 = "
      f"{c['sigma_b2']:g}, Gaussian weights N(0, sigma_w^2/N); "
      f"{c['optimizer']} (lr {c['lr']:g}, batch {c['batch_size']}) for "
      f"{c['steps']} steps on {c['dataset']}, {c['seeds']} seeds per cell. "
      f"Trainable: median training accuracy >= {c['threshold']:g} "
      f"(chance 0.1). Predicted trainable: L <= 6 xi_c.", "",
      f"Mean-field critical point (chi_1 = 1): {critical_text(t)}. "
      f"Deepest trainable network measured at "
      f"sigma_w^2 = {s['best_sigma_w2']:g}.", "",
      "| sigma_w^2 | chi_1 | 6 xi_c | deepest trainable L (measured) |",
      "|---:|---:|---:|---:|"]
  sw2_fine = np.asarray(t["sigma_w2"], np.float64)
  chi = np.asarray([np.nan if v is None else v for v in t["chi_1"]])
  for g, sw2 in enumerate(c["sigma_w2"]):
    six = s["six_xi_c"][g]
    chi_g = np.interp(sw2, sw2_fine, chi)
    lines.append(f"| {sw2:g} | {chi_g:.3f} | "
                 f"{'inf' if six is None else f'{six:.1f}'} | "
                 f"{s['deepest_trainable'][g] or '-'} |")
  lines += [
      "",
      f"Agreement of measured and predicted trainability: "
      f"{100 * s['agreement']:.0f} % of {len(c['depths'])} x "
      f"{len(c['sigma_w2'])} cells: {s['violations']} cells trained "
      f"beyond L = 6 xi_c (violations of the bound), "
      f"{s['untrained_in_budget']} cells within it did not reach the "
      f"threshold in {c['steps']} steps (the bound is necessary, not "
      f"sufficient). Diverged networks: {s['diverged_networks']} of "
      f"{s['networks']}.", ""]
  return "\n".join(lines)
