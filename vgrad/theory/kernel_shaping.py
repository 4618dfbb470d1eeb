r"""Deep Kernel Shaping (DKS) and Tailored Activation Transformations (TAT).

A vanilla network (no skips, no normalisation) of depth D whose weights
are orthogonal (or Gaussian, ``Var W = 1 / fan_in``), biases zero and
inputs of squared length ``q = ||x||^2 / n = 1`` propagates two inputs'
kernel through the *local* maps of its activation phi (Martens et al.
2021, Sec. 3), with z, z' standard normal of correlation c:

    Q(q) = E[phi(sqrt(q) z)^2]                        (the Q-map)
    C(c) = E[phi(z) phi(z')] / Q(1)                   (the C-map, q = 1)
    Q'(1) = E[phi(z) phi'(z) z],   C'(1) = E[phi'(z)^2] / Q(1),
    C''(1) = E[phi''(z)^2] / Q(1), C(0) = E[phi(z)]^2 / Q(1).

The network's C-map is the D-fold composition C_f = C o ... o C. Both
methods replace phi by a transformed activation

    phi_hat(x) = output_scale * (phi(input_scale * x + input_shift)
                                 + output_shift)

(for leaky ReLU, the negative slope instead of the input scale) chosen so
that Q(1) = 1 (``output_scale``) and:

* **DKS** (Martens et al. 2021): C(0) = 0 (``output_shift = -E phi``),
  Q'(1) = 1 and C_f'(1) = zeta (default 1.5), i.e. the local
  C'(1) = zeta^(1/D); solved for (input_scale, input_shift), for leaky
  ReLU (negative_slope, input_shift), for ReLU input_scale alone with
  input_shift = +-1 (Q'(1) free).
* **TAT** (Zhang et al. 2022), leaky ReLU: phi_hat = sqrt(2 / (1 + a^2))
  LReLU_a, whose C-map is closed form,
  C(c) = c + (1 - a)^2 (sqrt(1 - c^2) - c arccos c) / (pi (1 + a^2)),
  with the slope a solved so that C_f(0) = eta (default 0.9).
* **TAT**, smooth activations: Q'(1) = 1, C'(1) = 1 and C_f''(1) = tau
  (default 0.3), i.e. the local C''(1) = tau / D; solved for
  (input_scale, input_shift, output_shift). Solutions with
  ``|input_scale| * output_scale >= 2`` are rejected (DeepMind's ``dks``
  package rejects ``input_scale * output_scale >= 2``, whose Q-maps are
  unstable, but lets a negative input scale through).

The targets and parameter names are those of DeepMind's ``dks`` package;
tests/kernel_shaping_test.py checks the parameters against it to 1e-4
(benchmarks/kernel_shaping_benchmark.py times both). Here every
expectation is :mod:`vgrad.theory.quadrature`'s piecewise rule, cut at the
activation's breakpoints and scale points mapped to z units, ``(b -
input_shift) / input_scale``, so kinks are integrated exactly; the
equations are solved by damped Newton with the Jacobian from
``jax.jacfwd``, from a fixed list of starting points vmapped in one
program (the first that converges wins, starting points in ``dks``'s
order), in float64. The solver of each method is one jitted program for
all activations of its family (``lax.switch`` over them), vmapped over
activations and targets (:func:`transform_many`).

"Depth" is the number of activation layers a signal passes (an MLP of D
hidden layers: D). For another architecture give the local targets
directly (``local_c_slope_1``, ``local_c_curve``, or the whole-net C(0)
with the depth of its longest path).
"""

from collections.abc import Callable, Sequence
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vgrad.nn import activations as activations_lib
from vgrad.theory import meanfield
from vgrad.theory import quadrature

Activation = activations_lib.Activation

METHODS = ("dks", "tat")
# The targets of each method and their defaults (dks's names and values).
DKS_DEFAULTS = {"c_slope_1_target": 1.5, "local_q_slope_target": 1.0}
TAT_DEFAULTS = {"c_val_0_target": 0.9, "c_curve_target": 0.3}

# Gauss-Legendre nodes per piece of the rule (quadrature.piecewise_rule).
PIECE_POINTS = 60
NEWTON_STEPS = 60
LINE_SEARCH = 10           # step sizes 1, 1/2, ..., 2^-(LINE_SEARCH - 1)
RESIDUAL_TOL = 1e-10       # max |residual| of a converged solve
LEAKY_BISECTION = 60
# Starting points, in dks's order: every combination of these values,
# then random points from the ranges below (a fixed seed).
ALWAYS_TRY = {"input_scale": (1.0, 0.1), "input_shift": (0.0, 1.0, -1.0),
              "output_shift": (0.0, 1.0, -1.0), "negative_slope": (0.0, 0.5)}
SAMPLE_RANGE = {"input_scale": (0.0, 2.0), "input_shift": (-3.0, 3.0),
                "output_shift": (-3.0, 3.0), "negative_slope": (0.0, 1.0)}
STARTS = 50
# ReLU under DKS: the largest local C'(1) reachable with input_shift > 0
# (above it the shift is negative; dks makes the same choice).
RELU_SHIFT_SWITCH = 1.466942206924260361

# The activations each solver family covers (registry names). TAT's smooth
# family needs phi' continuous (C''(1) = E[phi''^2] finite).
DKS_FAMILY = ("tanh", "sigmoid", "erf", "softplus", "softsign", "elu",
              "selu", "swish", "gelu")
TAT_SMOOTH_FAMILY = ("tanh", "sigmoid", "erf", "softplus", "softsign", "elu",
                     "swish", "gelu")


class Transformed(NamedTuple):
  """The transformed activation ``fn`` (a callable, x -> phi_hat(x),
  elementwise) and its ``params`` (``input_scale``, ``input_shift``,
  ``output_shift``, ``output_scale``, and for leaky ReLU
  ``negative_slope``; absent keys are the identity)."""
  fn: Callable[[jax.Array], jax.Array]
  params: dict


class LocalMaps(NamedTuple):
  """The local maps' values at q = 1 (module docstring)."""
  q_1: float          # Q(1)
  q_slope_1: float    # Q'(1)
  c_0: float          # C(0)
  c_slope_1: float    # C'(1)
  c_curve_1: float    # C''(1); +inf where phi' jumps


# --------------------------------------------------------------------------
# Gaussian moments of phi(alpha z + beta), one program for a family.

class _Family(NamedTuple):
  """Activations solved by one program: ``fn(i, u, slope)``, its
  derivatives, and the union of their feature points in u units (the
  breakpoints and +-SCALE_POINTS, where the rule is cut)."""
  fn: Callable
  deriv: Callable
  second: Callable
  features: tuple[float, ...]


def _switch(fs: Sequence[Callable]) -> Callable:
  if len(fs) == 1:
    return lambda i, u: fs[0](u)
  return lambda i, u: jax.lax.switch(i, fs, u)


def _second(deriv: Callable) -> Callable:
  """phi'' elementwise by autodiff of the closed-form phi' (0 on either
  side of a kink: a jump of phi' is a delta, reported by :func:`_jumps`)."""
  return jnp.vectorize(jax.grad(deriv))


@functools.cache
def _family(acts: tuple[Activation, ...], leaky: bool) -> _Family:
  features = {s * p for p in quadrature.SCALE_POINTS for s in (1.0, -1.0)}
  for a in acts:
    features.update(a.breakpoints)
  features = tuple(sorted(features))
  if leaky:   # the slope is an unknown: phi(u) = max(u, 0) + slope min(u, 0)
    return _Family(
        lambda i, u, s: jnp.where(u > 0, u, s * u),
        lambda i, u, s: jnp.where(u > 0, 1.0, s) * jnp.ones_like(u),
        lambda i, u, s: jnp.zeros_like(u), features)
  fn = _switch([a.fn for a in acts])
  deriv = _switch([a.deriv for a in acts])
  second = _switch([_second(a.deriv) for a in acts])
  return _Family(lambda i, u, s: fn(i, u), lambda i, u, s: deriv(i, u),
                 lambda i, u, s: second(i, u), features)


class _Moments(NamedTuple):
  """Gaussian moments of phi(u), u = alpha z + beta, z ~ N(0, 1)."""
  mean: jax.Array     # E phi
  second: jax.Array   # E phi^2
  phi_dz: jax.Array   # E[phi phi' z]
  dz: jax.Array       # E[phi' z]
  d2: jax.Array       # E phi'^2
  dd2: jax.Array      # E phi''^2


def _moments(family: _Family, i, alpha, beta, slope) -> _Moments:
  tiny = jnp.asarray(1e-12, alpha.dtype)
  safe = jnp.where(jnp.abs(alpha) > tiny, alpha, tiny)
  cuts = jnp.abs((jnp.asarray(family.features, alpha.dtype) - beta) / safe)
  z, w = quadrature.piecewise_rule(cuts, PIECE_POINTS, dtype=alpha.dtype)
  u = alpha * z + beta
  f, d = family.fn(i, u, slope), family.deriv(i, u, slope)
  dd = family.second(i, u, slope)
  return _Moments(w @ f, w @ (f * f), w @ (f * d * z), w @ (d * z),
                  w @ (d * d), w @ (dd * dd))


def _shaped_maps(m: _Moments, alpha, delta):
  """(output_scale^2, Q'(1), C'(1), C''(1), C(0)) of phi_hat = g (phi(alpha
  z + beta) + delta) with g^2 = 1 / E[(phi + delta)^2] (so Q(1) = 1)."""
  g2 = 1.0 / (m.second + 2 * delta * m.mean + delta * delta)
  q_slope = g2 * alpha * (m.phi_dz + delta * m.dz)
  c_slope = g2 * alpha ** 2 * m.d2
  c_curve = g2 * alpha ** 4 * m.dd2
  c_0 = g2 * (m.mean + delta) ** 2
  return g2, q_slope, c_slope, c_curve, c_0


# --------------------------------------------------------------------------
# The solvers. A kind maps the unknowns p to (alpha, beta, delta, slope)
# and residuals; ``fixed`` is a per-problem constant (ReLU's shift).

class _Kind(NamedTuple):
  names: tuple[str, ...]         # the unknowns, in dks's order
  leaky: bool


KINDS = {
    "dks": _Kind(("input_scale", "input_shift"), False),
    "dks_leaky": _Kind(("negative_slope", "input_shift"), True),
    "dks_relu": _Kind(("input_scale",), False),
    "tat": _Kind(("input_scale", "input_shift", "output_shift"), False),
}


def _unpack(kind: str, p, fixed):
  one, zero = jnp.ones_like(p[0]), jnp.zeros_like(p[0])
  if kind == "dks":
    return p[0], p[1], None, zero
  if kind == "dks_leaky":
    return one, p[1], None, p[0]
  if kind == "dks_relu":
    return p[0], fixed, None, zero
  return p[0], p[1], p[2], zero   # tat


def _evaluate(kind: str, family: _Family, i, p, targets, fixed):
  """(residuals, output_shift, output_scale) at unknowns ``p``."""
  alpha, beta, delta, slope = _unpack(kind, p, fixed)
  m = _moments(family, i, alpha, beta, slope)
  if delta is None:
    delta = -m.mean          # C(0) = 0
  g2, q_slope, c_slope, c_curve, _ = _shaped_maps(m, alpha, delta)
  if kind in ("dks", "dks_leaky"):
    r = jnp.stack([q_slope - targets[0], c_slope - targets[1]])
  elif kind == "dks_relu":
    r = jnp.stack([c_slope - targets[1]])
  else:
    r = jnp.stack([q_slope - 1.0, c_slope - 1.0, c_curve - targets[2]])
  return r, delta, jnp.sqrt(g2)


def _max_abs(r):
  return jnp.where(jnp.all(jnp.isfinite(r)), jnp.max(jnp.abs(r)), jnp.inf)


def _newton(residual: Callable, p0):
  """Damped Newton from ``p0`` until max|r| < RESIDUAL_TOL or NEWTON_STEPS
  steps: each step halves the Newton step (at most LINE_SEARCH times)
  until max|r| falls; it stops where none does."""
  def line_search(p, delta, norm):
    def cond(state):
      t, q, n = state
      return (n >= norm) & (t > 2.0 ** -LINE_SEARCH)
    def body(state):
      t, _, _ = state
      q = p - t * delta
      return 0.5 * t, q, _max_abs(residual(q))
    one = jnp.ones((), p.dtype)
    q = p - delta
    return jax.lax.while_loop(cond, body, (0.5 * one, q,
                                           _max_abs(residual(q))))

  def cond(state):
    k, _, norm, moving = state
    return (k < NEWTON_STEPS) & (norm >= RESIDUAL_TOL) & moving

  def body(state):
    k, p, norm, _ = state
    r = residual(p)
    delta = jnp.linalg.solve(jax.jacfwd(residual)(p), r)
    _, q, n = line_search(p, delta, norm)
    better = (n < norm) & jnp.all(jnp.isfinite(q))
    return (k + 1, jnp.where(better, q, p), jnp.where(better, n, norm),
            better)

  norm0 = _max_abs(residual(p0))
  _, p, norm, _ = jax.lax.while_loop(cond, body, (0, p0, norm0, True))
  return p, norm


def starting_points(kind: str) -> tuple[np.ndarray, np.ndarray]:
  """The kind's starting points as two arrays, tried in turn: every
  combination of ALWAYS_TRY's values of its unknowns (in dks's order),
  then STARTS in all with uniform random points of SAMPLE_RANGE (fixed
  seed)."""
  names = KINDS[kind].names
  grid = np.array(np.meshgrid(*[ALWAYS_TRY[n] for n in names],
                              indexing="ij")).reshape(len(names), -1).T
  rng = np.random.default_rng(123)
  low = np.array([SAMPLE_RANGE[n][0] for n in names])
  high = np.array([SAMPLE_RANGE[n][1] for n in names])
  return grid, rng.uniform(low, high, size=(STARTS - len(grid), len(names)))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _solve_program(kind: str, acts: tuple[Activation, ...], index, targets,
                   fixed, starts):
  """Activation ``acts[index]`` (one traced index: ``lax.switch`` runs its
  branch alone, and one compiled program serves the family), vmapped over
  problems (targets (P, 3), fixed (P,)) and starting points (S, k): per
  problem the unknowns of the first starting point that converged (and
  passed TAT's check), whether one did, its max |residual|, output_shift
  and output_scale."""
  family = _family(acts, KINDS[kind].leaky)

  def one(t, f):
    residual = lambda p: _evaluate(kind, family, index, p, t, f)[0]
    ps, errs = jax.vmap(lambda p0: _newton(residual, p0))(starts)
    _, deltas, scales = jax.vmap(
        lambda p: _evaluate(kind, family, index, p, t, f))(ps)
    ok = errs < RESIDUAL_TOL
    if kind == "tat":
      ok &= jnp.abs(ps[:, 0]) * scales < 2.0       # dks's rejection
    k = jnp.argmax(ok)
    return ps[k], jnp.any(ok), jnp.min(errs), deltas[k], scales[k]

  return jax.vmap(one)(targets, fixed)


def _leaky_c_map(c, slope):
  """The C-map of sqrt(2 / (1 + a^2)) LReLU_a (TAT paper, eq. 6)."""
  c = jnp.clip(c, -1.0, 1.0)
  k = (1 - slope) ** 2 / (jnp.pi * (1 + slope ** 2))
  return c + k * (jnp.sqrt(1 - c * c) - c * jnp.arccos(c))


@jax.jit
def leaky_c_0(slope, depth):
  """C_f(0) of ``depth`` TAT leaky-ReLU layers of negative slope
  ``slope``: the composed closed-form C-map at 0."""
  slope = jnp.asarray(slope, jnp.result_type(float))
  return jax.lax.fori_loop(0, depth, lambda _, c: _leaky_c_map(c, slope),
                           jnp.zeros_like(slope))


@jax.jit
def _leaky_slopes(targets, depths):
  """Bisection (C_f(0) falls as the slope rises) per (target, depth)."""
  def one(t, d):
    def step(_, lo_hi):
      lo, hi = lo_hi
      mid = 0.5 * (lo + hi)
      high = leaky_c_0(mid, d) > t
      return jnp.where(high, mid, lo), jnp.where(high, hi, mid)
    lo, hi = jax.lax.fori_loop(0, LEAKY_BISECTION, step,
                               (jnp.zeros_like(t), jnp.ones_like(t)))
    return 0.5 * (lo + hi)
  return jax.vmap(one)(targets, depths)


# --------------------------------------------------------------------------
# The public solvers.

def _activation(act) -> Activation:
  if isinstance(act, Activation):
    return act
  if not isinstance(act, str):
    raise ValueError(f"act must be a registry name or an Activation, got "
                     f"{type(act).__name__}")
  if act in activations_lib.TRANSFORMED:
    raise ValueError(f"{act} is already transformed; give its base "
                     f"{activations_lib.TRANSFORMED[act][1]!r}")
  return activations_lib.get_activation(act)


def _jumps(activation: Activation) -> list[float]:
  """The breakpoints where phi' jumps (C''(1) = E[phi''^2] is infinite)."""
  out = []
  for b in activation.breakpoints:
    with jax.enable_x64(True):
      x = jnp.asarray([b - 1e-9, b + 1e-9], jnp.float64)
      left, right = np.asarray(activation.deriv(x))
    if abs(right - left) > 1e-6 * max(1.0, abs(left), abs(right)):
      out.append(b)
  return out


def _positive(name: str, value, low: float = 0.0, high: float = math.inf,
              closed: bool = False) -> float:
  try:
    v = float(value)
  except (TypeError, ValueError):
    v = math.nan
  inside = (low <= v if closed else low < v) and v < high
  if not (math.isfinite(v) and inside):
    span = (f"in {'[' if closed else '('}{low:g}, {high:g})"
            if math.isfinite(high) else f"> {low:g}")
    raise ValueError(f"{name} must be a finite number {span}, got {value!r}")
  return v


def _depth(depth) -> int:
  if (isinstance(depth, bool) or not isinstance(depth, (int, np.integer))
      or depth < 1):
    raise ValueError(f"depth must be an integer >= 1 (the number of "
                     f"activation layers), got {depth!r}")
  return int(depth)


class _Problem(NamedTuple):
  kind: str          # a KINDS key, or "tat_leaky"
  activation: Activation
  targets: tuple[float, float, float]   # (Q'(1), C'(1), C''(1)) local
  fixed: float       # ReLU's input shift; TAT leaky: C_f(0)
  depth: int
  describe: str      # what was asked, for the error messages


LOCAL_TARGETS = {"dks": ("local_c_slope_1",), "tat": ("local_c_curve",)}


def _problem(act, method: str, depth, targets: dict) -> _Problem:
  """Checks one request (the one-line errors of the module) and turns it
  into local targets."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; valid methods: "
                     f"{', '.join(METHODS)}")
  activation = _activation(act)
  name = activation.describe()
  if activation.deriv is None:
    raise ValueError(f"{name} is not elementwise: DKS and TAT transform "
                     "elementwise activations")
  if activation.name == "linear":
    raise ValueError("linear cannot be transformed: its C-map is the "
                     "identity whatever the shifts and scales (C'(1) = 1, "
                     "C''(1) = 0)")
  valid = (*(DKS_DEFAULTS if method == "dks" else TAT_DEFAULTS),
           *LOCAL_TARGETS[method])
  unknown = sorted(set(targets) - set(valid))
  if unknown:
    raise ValueError(f"{method} takes targets {', '.join(valid)}; got "
                     f"{', '.join(unknown)}")
  local = next((k for k in LOCAL_TARGETS[method] if k in targets), None)
  leaky = activation.name == "leaky_relu"
  if method == "tat" and leaky:
    if local is not None:
      raise ValueError("TAT for leaky_relu takes c_val_0_target and depth "
                       "(the whole net's C_f(0)), not local_c_curve")
    depth = _depth(depth)
    eta = _positive("c_val_0_target", targets.get(
        "c_val_0_target", TAT_DEFAULTS["c_val_0_target"]), 0.0, 1.0)
    with jax.enable_x64(True):
      most = float(leaky_c_0(0.0, depth))
    if eta >= most:
      raise ValueError(
          f"TAT cannot reach c_val_0_target={eta:g} with {depth} leaky-ReLU "
          f"layers: the most any slope gives is C_f(0) = {most:.6g} (ReLU); "
          "give a smaller target (a more linear net) or a deeper net")
    return _Problem("tat_leaky", activation, (0.0, 0.0, 0.0), eta, depth,
                    f"tat {name} depth={depth} c_val_0_target={eta:g}")
  if local is None:
    depth = _depth(depth)
  elif depth is not None:
    raise ValueError(f"give depth or {local}, not both ({local} is the "
                     "per-layer target depth would set)")
  if method == "dks":
    q_slope = _positive("local_q_slope_target", targets.get(
        "local_q_slope_target", DKS_DEFAULTS["local_q_slope_target"]))
    if local:
      c_slope = _positive(local, targets[local], 1.0)
      what = f"{local}={c_slope:g}"
    else:
      zeta = _positive("c_slope_1_target", targets.get(
          "c_slope_1_target", DKS_DEFAULTS["c_slope_1_target"]), 1.0)
      c_slope = zeta ** (1.0 / depth)
      what = f"depth={depth} c_slope_1_target={zeta:g}"
    if activation.name == "relu":
      shift = 1.0 if c_slope < RELU_SHIFT_SWITCH else -1.0
      return _Problem("dks_relu", activation, (q_slope, c_slope, 0.0), shift,
                      depth or 0, f"dks {name} {what}")
    kind = "dks_leaky" if leaky else "dks"
    return _Problem(kind, activation, (q_slope, c_slope, 0.0), 0.0,
                    depth or 0, f"dks {name} {what} "
                    f"local_q_slope_target={q_slope:g}")
  # TAT, smooth activations.
  if activation.name == "relu":
    raise ValueError("TAT does not transform relu (C''(1) is infinite and "
                     "its C(0) cannot be tuned); use leaky_relu")
  jumps = _jumps(activation)
  if jumps:
    raise ValueError(
        f"TAT needs phi' continuous, but {name}'s jumps at "
        f"{', '.join(f'{b:g}' for b in jumps)} (C''(1) is infinite); use "
        "dks, or tat with leaky_relu or a smooth activation")
  if local:
    curve = _positive(local, targets[local])
    what = f"{local}={curve:g}"
  else:
    tau = _positive("c_curve_target", targets.get(
        "c_curve_target", TAT_DEFAULTS["c_curve_target"]))
    curve = tau / depth
    what = f"depth={depth} c_curve_target={tau:g}"
  return _Problem("tat", activation, (1.0, 1.0, curve), 0.0, depth or 0,
                  f"tat {name} {what}")


def _family_members(kind: str, problems: list[_Problem]
                    ) -> tuple[Activation, ...]:
  """The program's activations: the whole registered family when every
  problem's activation is a default member (one compiled program serves
  them all), else just the problems' own."""
  family = DKS_FAMILY if kind == "dks" else TAT_SMOOTH_FAMILY
  defaults = tuple(activations_lib.get_activation(n) for n in family)
  if kind in ("dks", "tat") and all(p.activation in defaults
                                    for p in problems):
    return defaults
  if kind in ("dks_leaky", "dks_relu"):
    return (problems[0].activation,)
  return tuple(dict.fromkeys(p.activation for p in problems))


def point_symmetry(activation: Activation) -> float | None:
  """phi(0) if phi is point-symmetric about (0, phi(0)), i.e. phi(-u) =
  2 phi(0) - phi(u) (tanh, erf, softsign: odd; sigmoid: about 1/2); else
  None."""
  x = jnp.linspace(0.05, 8.0, 160)
  with jax.enable_x64(True):
    x = jnp.asarray(x, jnp.float64)
    centre = float(activation.fn(jnp.zeros((), jnp.float64)))
    gap = np.asarray(activation.fn(-x) + activation.fn(x) - 2 * centre)
  return centre if np.max(np.abs(gap)) < 1e-9 else None


def canonical(params: dict, centre: float | None = None) -> dict:
  """One representative of transforms with equal local maps:
  ``input_scale > 0`` (``x -> -x`` changes no map, z and -z being equally
  likely) and, for phi point-symmetric about (0, ``centre``),
  ``input_shift >= 0`` (``shift -> -shift``, ``output_shift -> -output_shift
  - 2 centre`` gives ``-phi_hat(-x)``, whose maps are the same)."""
  out = dict(params)
  if out.get("input_scale", 1.0) < 0:
    out["input_scale"] = -out["input_scale"]
  if (centre is not None and out.get("input_shift", 0.0) < 0
      and "output_shift" in out):
    out["input_shift"] = -out["input_shift"]
    out["output_shift"] = -out["output_shift"] - 2 * centre
  return out


def _run(kind, acts, index, problems, starts):
  with jax.enable_x64(True):
    return [np.array(v) for v in _solve_program(
        kind, acts, np.int32(index),
        np.array([p.targets for p in problems], np.float64),
        np.array([p.fixed for p in problems], np.float64),
        np.asarray(starts, np.float64))]


def _solve_kind(kind: str, problems: list[_Problem]) -> list[dict]:
  if kind == "tat_leaky":
    with jax.enable_x64(True):
      slopes = np.asarray(_leaky_slopes(
          np.array([p.fixed for p in problems], np.float64),
          np.array([p.depth for p in problems], np.int32)))
    return [{"negative_slope": float(a),
             "output_scale": math.sqrt(2.0 / (1.0 + a * a))}
            for a in slopes]
  acts = _family_members(kind, problems)
  grid, more = starting_points(kind)
  out: list[dict | None] = [None] * len(problems)
  for index in sorted({acts.index(p.activation) for p in problems}):
    chosen = [j for j, p in enumerate(problems)
              if acts.index(p.activation) == index]
    group = [problems[j] for j in chosen]
    ps, ok, errs, deltas, scales = _run(kind, acts, index, group, grid)
    failed = np.flatnonzero(~ok)
    if failed.size:   # the random starting points, for those that failed
      again = _run(kind, acts, index, [group[j] for j in failed], more)
      for v, w in zip((ps, ok, errs, deltas, scales), again):
        v[failed] = w
    centre = point_symmetry(acts[index])
    for j, p, x, good, err, delta, scale in zip(chosen, group, ps, ok, errs,
                                                deltas, scales):
      if not good and err < RESIDUAL_TOL:
        raise ValueError(
            f"{p.describe}: every transform found has input_scale * "
            "output_scale >= 2, which TAT rejects (unstable Q-map, as in "
            "dks); try dks or another activation")
      if not good:
        raise ValueError(
            f"{p.describe}: no transform meets the targets from any of "
            f"{STARTS} starting points (best max |residual| {err:.2g}); "
            "the target is out of this activation's reach, try a smaller "
            "one")
      params = dict(zip(KINDS[kind].names, (float(v) for v in x)))
      if kind == "dks_relu":
        params["input_shift"] = p.fixed
      if kind != "tat":
        params["output_shift"] = float(delta)
      params["output_scale"] = float(scale)
      out[j] = canonical(params, centre)
  return out


def transform_many(requests: Sequence[tuple]) -> list[dict]:
  """The transform parameters of many requests at once.

  Args:
    requests: ``(act, method, depth, targets)`` tuples (``targets`` a dict
      as :func:`transform_activation`'s keywords, ``depth`` None with a
      local target).

  Returns:
    One parameter dict per request (see :class:`Transformed`). Requests
    of one kind are solved by one vmapped program call (all their
    activations, targets and starting points at once).

  Raises:
    ValueError: the first bad request, in one line (module docstring).
  """
  problems = [_problem(a, m, d, dict(t)) for a, m, d, t in requests]
  out: list[dict | None] = [None] * len(problems)
  for kind in dict.fromkeys(p.kind for p in problems):
    chosen = [i for i, p in enumerate(problems) if p.kind == kind]
    groups = ([chosen] if kind in ("dks", "tat", "tat_leaky") else
              [[i] for i in chosen])   # a leaky or ReLU program per slope
    for group in groups:
      for i, params in zip(group, _solve_kind(
          kind, [problems[i] for i in group])):
        out[i] = params
  return out


def transform_activation(act, method: str, *, depth: int | None = None,
                         **targets) -> Transformed:
  """The DKS or TAT transform of ``act`` for a net of ``depth``
  activation layers.

  Args:
    act: a registry name (``"tanh"``, ``"leaky_relu"``, ...) or an
      elementwise :class:`vgrad.nn.activations.Activation`.
    method: ``"dks"`` or ``"tat"``.
    depth: the number of activation layers a signal passes (an MLP's
      hidden layers), which spreads the whole-net target over the layers.
    **targets: DKS: ``c_slope_1_target`` (zeta, C_f'(1), default 1.5),
      ``local_q_slope_target`` (Q'(1), default 1); TAT:
      ``c_val_0_target`` (eta, C_f(0) of a leaky-ReLU net, default 0.9),
      ``c_curve_target`` (tau, C_f''(1) of a smooth one, default 0.3).
      Or the per-layer ``local_c_slope_1`` (DKS) / ``local_c_curve`` (TAT)
      instead of ``depth``.

  Returns:
    :class:`Transformed`: ``fn`` (jit-able, differentiable) and ``params``.

  Raises:
    ValueError: in one line: an unknown method or target, a target out of
      range or out of the activation's reach, an activation the method
      does not cover.
  """
  params = transform_many([(act, method, depth, targets)])[0]
  base = _activation(act)
  return Transformed(activations_lib.transformed(base, params).fn, params)


def transformed_activation(act, method: str, *, depth: int | None = None,
                           **targets) -> Activation:
  """:func:`transform_activation` as an Activation (closed-form
  derivative, breakpoints), for :func:`vgrad.make_mlp` and the probes."""
  params = transform_activation(act, method, depth=depth, **targets).params
  return activations_lib.transformed(_activation(act), params)


# --------------------------------------------------------------------------
# The local maps of any activation.

@functools.partial(jax.jit, static_argnums=0)
def _raw_moments(activation: Activation):
  family = _family((activation,), False)
  one = jnp.ones((), jnp.float64)
  return _moments(family, 0, one, 0.0 * one, 0.0 * one)


def local_maps(act, params: dict | None = None) -> LocalMaps:
  """Q(1), Q'(1), C(0), C'(1), C''(1) of ``act`` (a name or Activation),
  transformed by ``params`` if given (module docstring; float64). C''(1)
  is +inf where phi' jumps."""
  activation = _activation(act)
  if activation.deriv is None:
    raise ValueError(f"{activation.describe()} is not elementwise")
  if params:
    activation = activations_lib.transformed(activation, params)
  with jax.enable_x64(True):
    m = _raw_moments(activation)
  q_1 = float(m.second)
  curve = math.inf if _jumps(activation) else float(m.dd2) / q_1
  return LocalMaps(q_1, float(m.phi_dz), float(m.mean) ** 2 / q_1,
                   float(m.d2) / q_1, curve)


def q_map(act, q, params: dict | None = None) -> jax.Array:
  """Q(q) = E[phi_hat(sqrt(q) z)^2] (vgrad.theory.meanfield.length_map with
  unit weight variance and no bias)."""
  activation = _activation(act)
  if params:
    activation = activations_lib.transformed(activation, params)
  return meanfield.length_map(q, activation, 1.0, 0.0)


def c_map(act, c, params: dict | None = None) -> jax.Array:
  """C(c) = E[phi_hat(z) phi_hat(z')] / Q(1) at q = 1
  (vgrad.theory.meanfield.correlation_map: Mehler's series)."""
  activation = _activation(act)
  if params:
    activation = activations_lib.transformed(activation, params)
  return meanfield.correlation_map(c, 1.0, activation, 1.0, 0.0)
