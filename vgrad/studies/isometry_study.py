"""Dynamical isometry: measured Jacobian spectra beside free probability.

Pennington, Schoenholz & Ganguli (2017), "Resurrecting the sigmoid in deep
learning through dynamical isometry", Figs. 2-3: at the order-to-chaos
transition (chi = sigma_w2 E[phi'(h)^2] = 1, so the mean squared singular
value of the input-output Jacobian J stays 1 at any depth) the *spread* of
J's singular values still depends on the weights and the activation,

    m2 / m1^2 - 1 = L (mu2 / mu1^2 - 1 - s1),   mu_k = E[phi'(h)^(2k)],

with s1 = -1 for Gaussian and 0 for orthogonal weights: orthogonal tanh
networks with small q* (mu2 ~ mu1^2) are nearly isometric at any depth,
Gaussian or ReLU networks are not (ReLU: mu2 / mu1^2 = 2).

``run_arm(config, arm)`` builds nested networks (the depth-d net is the first
d layers of the deepest one), feeds each a fixed-point input
``x_0 = phi(sqrt(q*) z)`` (so the first pre-activations have variance q*:
q^1 = sigma_w2 E[phi^2] + sigma_b2 = q*), and records the exact
singular values of dy/dx_0 by the dense probe beside the free-probability
density and moments (:mod:`vgrad.theory.free_probability`). Nothing here reads
flags or writes files.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import activations as activations_lib
from vgrad.nn import config as nn_config
from vgrad.nn import models
from vgrad.probes import jacobian
from vgrad.probes import spectrum
from vgrad.theory import free_probability
from vgrad.theory import meanfield


@dataclasses.dataclass(frozen=True)
class Arm:
  """One curve: an activation, a weight ensemble (``gaussian`` or
  ``orthogonal``, :data:`vgrad.theory.free_probability.WEIGHTS`) and a bias
  variance.

  ``sigma_w2=None`` puts the network on the critical line (chi_1 = 1).
  """
  act: str
  ensemble: str
  sigma_b2: float
  sigma_w2: float | None = None

  def label(self) -> str:
    return f"{self.act}, {self.ensemble}, sigma_b^2={self.sigma_b2:g}"


DEFAULT_ARMS = tuple(
    [Arm("tanh", w, b2) for w in ("orthogonal", "gaussian")
     for b2 in (1e-3, 0.05, 0.5)]
    + [Arm("relu", w, 0.0) for w in ("orthogonal", "gaussian")])


@dataclasses.dataclass(frozen=True)
class IsometryConfig:
  arms: tuple[Arm, ...] = DEFAULT_ARMS
  depths: tuple[int, ...] = (2, 8, 32, 128)
  width: int = 1000
  seeds: int = 1
  seed: int = 0
  dtype: str = "float64"
  density_points: int = 400


def check_config(config: IsometryConfig) -> None:
  """Raises ValueError naming the field and its valid values."""
  if not config.arms:
    raise ValueError("arms: need at least one (activation, ensemble) arm")
  if not config.depths:
    raise ValueError("depths must be integers >= 1")
  for arm in config.arms:
    if arm.ensemble not in free_probability.WEIGHTS:
      raise ValueError(f"ensemble must be one of "
                       f"{', '.join(free_probability.WEIGHTS)}, got "
                       f"{arm.ensemble!r}")
    for depth in config.depths:   # the network checks: NetworkConfig's
      try:
        nn_config.NetworkConfig(act=arm.act, init=arm.ensemble, depth=depth,
                                width=config.width, sigma_w2=arm.sigma_w2,
                                sigma_b2=arm.sigma_b2)
      except nn_config.ConfigError as e:
        raise ValueError(f"{'depths' if e.field == 'depth' else e.field}: "
                         f"{e.reason}") from None
    if activations_lib.get_activation(arm.act).is_maxout:
      raise ValueError("act: maxout has no diagonal D_l; the theory needs an "
                       "elementwise activation")
  for field, lo in (("width", 2), ("seeds", 1), ("density_points", 10)):
    if getattr(config, field) < lo:
      raise ValueError(f"{field} must be >= {lo}, got "
                       f"{getattr(config, field)}")


def operating_point(arm: Arm) -> dict:
  """sigma_w2 (critical unless given), q* and chi_1 of an arm.

  The same for both weight ensembles, and cached: the entry point checks
  every arm before the study runs it, and a bisection for the critical line
  takes a second or two. Callers must not mutate the returned dictionary.
  """
  return _operating_point(arm.act, arm.sigma_b2, arm.sigma_w2)


@functools.cache
def _operating_point(act_name: str, sigma_b2: float,
                     sigma_w2: float | None) -> dict:
  label = f"{act_name}, sigma_b^2={sigma_b2:g}"
  act = activations_lib.get_activation(act_name)
  sw2 = (float(meanfield.critical_sigma_w2(act, sigma_b2))
         if sigma_w2 is None else float(sigma_w2))
  if not math.isfinite(sw2):
    raise ValueError(f"{label}: no critical point (chi_1 < 1 for every "
                     f"sigma_w^2 searched)")
  q = float(meanfield.fixed_point_q(act, sw2, sigma_b2))
  if not math.isfinite(q) or q <= 0:
    raise ValueError(f"{label}: no finite fixed point q* at sigma_w^2 = "
                     f"{sw2:g} (the signal grows without bound)")
  return {"sigma_w2": sw2, "q_star": q,
          "chi_1": float(meanfield.chi_1(act, sw2, sigma_b2, q))}


def measure(config: IsometryConfig, arm: Arm, sigma_w2: float,
            q_star: float) -> dict[int, np.ndarray]:
  """Singular values of J for each depth: ``{depth: (seeds, width)}``."""
  dtype = jnp.dtype(config.dtype)
  act = activations_lib.get_activation(arm.act)

  def build(depth):
    return models.make_mlp(
        depth=depth, width=config.width, activation=arm.act,
        init=arm.ensemble, sigma_w2=sigma_w2,
        sigma_b2=arm.sigma_b2 if arm.sigma_b2 else None,
        param_dtype=dtype)

  deepest = build(max(config.depths))
  out = {d: [] for d in config.depths}
  # One compiled probe per depth, shared by the seeds.
  probes = {d: jacobian.make_input_output_probe(build(d))
            for d in config.depths}
  for s in range(config.seeds):
    init_key, input_key = jax.random.split(
        jax.random.key(config.seed + s))
    params = deepest.init(init_key, jnp.zeros((config.width,), dtype))
    z = jax.random.normal(input_key, (1, config.width), dtype)
    x0 = act.fn(math.sqrt(q_star) * z)
    for depth in config.depths:
      sub = {"params": {f"layers_{l}": params["params"][f"layers_{l}"]
                        for l in range(depth)}}
      sv = probes[depth](sub, x0)
      out[depth].append(np.asarray(jax.device_get(sv))[0])
  return {d: np.stack(v) for d, v in out.items()}


def _moments_record(sv: np.ndarray, dtype) -> dict:
  """Measured moments of the squared singular values, per network."""
  lam = np.asarray(sv, np.float64) ** 2
  m1 = lam.mean(axis=1)
  m2 = (lam ** 2).mean(axis=1)
  ratio = m2 / m1 ** 2 - 1
  resolved = spectrum.resolved_mask(sv, (sv.shape[1], sv.shape[1]), dtype)
  return {"m1": float(m1.mean()), "variance_ratio": float(ratio.mean()),
          "variance_ratio_per_network": ratio.tolist(),
          "max_singular_value": float(sv.max()),
          "num_unresolved": int((~resolved).sum())}


def predicted_cdf(grid: np.ndarray, density: np.ndarray) -> np.ndarray:
  """``P(sigma <= grid)`` from the continuous density on an increasing grid.

  Integrated down from the top, ``F(s) = 1 - int_s^top rho``, so mass
  below the grid (the predicted law's tail towards 0, and its atom at 0)
  is accounted for without being resolved.
  """
  upper = np.concatenate([np.cumsum((0.5 * (density[1:] + density[:-1])
                                     * np.diff(grid))[::-1])[::-1], [0.0]])
  return 1.0 - upper


def ks_distance(sv: np.ndarray, floor: float, grid: np.ndarray,
                density: np.ndarray) -> float:
  """Kolmogorov-Smirnov distance between the pooled singular values and the
  predicted law, over ``sigma >= floor``.

  Values below ``floor`` (the precision floor s_max N eps of the probe) are
  not resolved, but they are known to lie below it, so the empirical CDF is
  exact at every point at or above the floor.
  """
  values = np.sort(np.asarray(sv, np.float64).ravel())
  cdf = predicted_cdf(grid, density)
  n = values.size
  at = np.concatenate([[floor], values[values >= floor]])
  hi = np.searchsorted(values, at, side="right") / n
  lo = np.searchsorted(values, at, side="left") / n
  predicted = np.interp(at, grid, cdf, left=cdf[0], right=1.0)
  return float(max(np.max(np.abs(hi - predicted)),
                   np.max(np.abs(lo - predicted))))


def predict(arm: Arm, point: dict, depth: int, num: int,
            decades: float) -> dict:
  """Free-probability prediction for one arm at one depth.

  Returns the moments ``m1 = chi^L`` and ``m2 / m1^2 - 1``, the upper edge
  of the singular values, the atom at 0, and the density of log10 sigma
  (``log10_sigma`` grid, ``density`` per unit log10 sigma: rho_sigma(s) s
  ln 10) over the continuous spectrum.
  """
  act = activations_lib.get_activation(arm.act)
  args = (act, point["q_star"], point["sigma_w2"], depth, arm.ensemble)
  m1, m2 = (float(v) for v in free_probability.predicted_moments(*args))
  lam = free_probability.density_grid(*args, num=num, spacing="log",
                                      decades=decades)
  s = np.sqrt(lam)
  rho_s = free_probability.singular_value_density(*args, s)
  return {
      "m1": m1, "variance_ratio": m2 / m1 ** 2 - 1,
      "max_singular_value": math.sqrt(
          free_probability.support_upper_edge(*args)),
      "atom_at_zero": float(free_probability.atom_at_zero(
          act, point["q_star"])),
      "sigma": s.tolist(),
      "log10_sigma": np.log10(s).tolist(),
      "density": (rho_s * s * math.log(10)).tolist(),
      "sigma_density": rho_s.tolist(),
  }


def run_arm(config: IsometryConfig, arm: Arm) -> dict:
  """Measured beside predicted, for every depth of one arm."""
  point = operating_point(arm)
  measured = measure(config, arm, point["sigma_w2"], point["q_star"])
  dtype = np.dtype(config.dtype)
  # The grid reaches the probe's precision floor (in lambda = sigma^2).
  decades = 2 * math.log10(1 / (config.width * np.finfo(dtype).eps)) + 1
  depths = []
  for depth in config.depths:
    sv = measured[depth]
    predicted = predict(arm, point, depth, config.density_points, decades)
    record = _moments_record(sv, dtype)
    record["floor"] = float(np.max(spectrum.resolution_floor(
        sv, (config.width, config.width), dtype)))
    record["ks_distance"] = ks_distance(
        sv, record["floor"], np.asarray(predicted["sigma"]),
        np.asarray(predicted["sigma_density"]))
    depths.append({"depth": depth, "measured": record,
                   "predicted": predicted,
                   "singular_values": sv.tolist()})
  return {"arm": dataclasses.asdict(arm), "label": arm.label(), **point,
          "depths": depths}


def run_study(config: IsometryConfig, progress=None) -> list[dict]:
  """Every arm in turn; ``progress(arm_label)`` after each."""
  check_config(config)
  arms = []
  for arm in config.arms:
    arms.append(run_arm(config, arm))
    if progress:
      progress(arm.label())
  return arms


def format_report(results: dict) -> str:
  """Markdown table: measured against predicted, per arm and depth."""
  c = results["config"]
  lines = [
      "# Dynamical isometry: Jacobian spectra against free probability "
      "(Pennington et al. 2017)", "",
      f"Input-output Jacobian J = D_L W_L ... D_1 W_1 of networks of width "
      f"{c['width']} at the mean-field fixed point (x_0 = phi(sqrt(q*) z)), "
      f"{c['seeds']} networks per cell, one input each, {c['dtype']}. "
      f"m1 = mean sigma^2 (predicted chi^L); var/m1^2 = Var[sigma^2] / "
      f"m1^2 per network, averaged (predicted L (mu2/mu1^2 - 1 - s1)); KS: "
      f"Kolmogorov-Smirnov distance between the measured singular values "
      f"and the predicted law.", "",
      "| arm | sigma_w^2 | q* | L | m1 measured | m1 predicted | var/m1^2 "
      "measured | var/m1^2 predicted | max sigma measured | edge predicted "
      "| KS |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for arm in results["arms"]:
    for d in arm["depths"]:
      m, p = d["measured"], d["predicted"]
      lines.append(
          f"| {arm['label']} | {arm['sigma_w2']:.4f} | {arm['q_star']:.4g} | "
          f"{d['depth']} | {m['m1']:.4g} | {p['m1']:.4g} | "
          f"{m['variance_ratio']:.4g} | {p['variance_ratio']:.4g} | "
          f"{m['max_singular_value']:.4g} | {p['max_singular_value']:.4g} | "
          f"{d['measured']['ks_distance']:.3f} |")
  lines += ["", conclusion(results), ""]
  return "\n".join(lines)


def conclusion(results: dict) -> str:
  """One line from the numbers: which arm is most isometric at the deepest
  depth, and how well theory tracks measurement."""
  deepest = [(arm["label"], arm["depths"][-1]) for arm in results["arms"]]
  label, best = min(deepest,
                    key=lambda t: t[1]["measured"]["variance_ratio"])
  worst_ks = max(d["measured"]["ks_distance"] for arm in results["arms"]
                 for d in arm["depths"])
  rel = [abs(d["measured"]["variance_ratio"] - d["predicted"][
      "variance_ratio"]) / max(d["predicted"]["variance_ratio"], 1e-12)
         for arm in results["arms"] for d in arm["depths"]
         if d["predicted"]["variance_ratio"] > 0.05]
  return (f"At depth {best['depth']} the most isometric arm is {label} "
          f"(var/m1^2 = {best['measured']['variance_ratio']:.3g}, predicted "
          f"{best['predicted']['variance_ratio']:.3g}). Measured var/m1^2 is "
          f"within {100 * max(rel, default=0):.0f} % of the prediction "
          f"wherever the prediction exceeds 0.05; the largest KS distance is "
          f"{worst_ks:.3f}.")
