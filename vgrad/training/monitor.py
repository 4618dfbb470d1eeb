r"""Gradient-flow statistics of any training loop, keyed by parameter path.

Three public names (re-exported from ``vgrad``):

* :func:`gradient_stats` ``(grads, params=None, updates=None,
  intermediates=None)``: a dict from each leaf's path (``"Conv_0/kernel"``)
  to its statistics. Pure, jit- and vmap-compatible: any parameter,
  gradient and update pytree (Flax, Haiku, plain dicts, lists).
* :func:`track_gradients` ``()``: an ``optax.GradientTransformation`` that
  passes its updates through unchanged and records their statistics in its
  state. Placed first in a chain it sees the raw gradients (the norm before
  ``clip_by_global_norm``, which a chain otherwise never exposes); placed
  last it sees the final updates.
* :func:`tracked_stats` ``(opt_state)``: the statistics the tracker last
  recorded, read out of any optimizer state that contains it.

Per leaf ``g`` (a gradient, or whatever tree is given; ``n`` entries)::

    norm        ||g||_2 over every entry: NaN if an entry is NaN, else Inf
                if one is Inf (computed with a scale, so finite entries
                never overflow float32 in the sum of squares)
    max_abs     max |g_i| over the finite entries (0 if none)
    num_zero    #{g_i == 0};  num_nan  #{g_i NaN};  num_inf  #{|g_i| = Inf}
    log10_hist  counts of log10|g_i| over the finite non-zero entries, on the
                fixed grid LOG10_EDGES (HIST_BINS bins, 4 per decade, 1e-16 to
                1e8), with two more counts: ``hist_below`` (0 < |g_i| < 1e-16)
                and ``hist_above`` (|g_i| >= 1e8, finite). Zeros, NaN and Inf
                are counted by the three counts above, never dropped and never
                put in a bucket: num_zero + num_nan + num_inf + hist_below +
                sum(log10_hist) + hist_above = n, always.

With ``params``: ``param_norm`` = ||w||_2 and ``grad_ratio`` = ||g|| / ||w||
(NaN where w = 0). With ``updates``: ``update_norm`` = ||u||_2 and
``update_ratio`` = ||u|| / ||w|| (needs ``params``; NaN where w = 0): the
update-to-weight ratio, ~1e-3 per step in healthy training (Karpathy's rule
of thumb).

With ``intermediates`` (Flax ``capture_intermediates=True`` or ``sow``
collections, or any pytree of activations ``(B, ..., C)``: a batch, then any
spatial axes, channels last), per intermediate leaf under the key
``"intermediates/<path>"``: ``rms`` = sqrt(mean x^2), ``mean``, and, when the
leaf's activation is known (the ``activation`` argument: a registry name for
every leaf, or a dict from path substring to name), ``dead`` (ReLU family:
the fraction of channels whose output is <= 0 on every example and position,
which for ReLU pass no gradient at all) or ``saturated`` (sigmoid, tanh,
hard tanh, softsign: the fraction of entries with phi'(h) < SATURATION
phi'(0), phi' written in terms of the output). Both are measured on the
activation's output, so they need no pre-activation.

:func:`gradient_noise_scale` estimates McCandlish et al. (2018)'s simple
noise scale ``B_simple = tr(Sigma) / |G|^2`` from per-example or
per-microbatch gradients.

Statistics are float32 (counts int32) whatever the leaves' dtype. Leaves
that are not floating arrays (integers, float0 gradients of integer inputs,
strings, Python objects) are skipped and named once in a ``UserWarning``.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

# log10|g| histogram grid: 4 bins per decade from 1e-16 to 1e8.
LOG10_LOW, LOG10_HIGH, BINS_PER_DECADE = -16, 8, 4
HIST_BINS = (LOG10_HIGH - LOG10_LOW) * BINS_PER_DECADE
LOG10_EDGES = np.linspace(LOG10_LOW, LOG10_HIGH, HIST_BINS + 1)

# A unit is saturated where phi'(h) < SATURATION * phi'(0) (as in
# vgrad.training.train).
SATURATION = 0.05
# phi'(h) / phi'(0) in terms of the output y = phi(h).
_RELATIVE_SLOPE_FROM_OUTPUT = {
    "sigmoid": lambda y: 4.0 * y * (1.0 - y),
    "tanh": lambda y: 1.0 - jnp.square(y),
    "hard_tanh": lambda y: (jnp.abs(y) < 1).astype(y.dtype),
    "softsign": lambda y: jnp.square(1.0 - jnp.abs(y)),
}
SATURATING = tuple(_RELATIVE_SLOPE_FROM_OUTPUT)
RECTIFIERS = ("relu", "leaky_relu", "elu", "selu")

GRADIENT_KEYS = ("norm", "max_abs", "num_zero", "num_nan", "num_inf",
                 "hist_below", "log10_hist", "hist_above")
INTERMEDIATES = "intermediates/"

_named_skips: set[str] = set()


def path_name(path) -> str:
  """``"Conv_0/kernel"`` from a ``jax.tree_util`` key path (dict keys,
  attributes, sequence indices and flattened indices joined by ``/``)."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _is_float_array(leaf) -> bool:
  dtype = getattr(leaf, "dtype", None)
  return (hasattr(leaf, "shape") and dtype is not None
          and jnp.issubdtype(dtype, jnp.inexact))


def _skip(path: str, leaf, what: str) -> None:
  """Names a skipped leaf in a warning, once per (what, path)."""
  key = f"{what}:{path}"
  if key not in _named_skips:
    _named_skips.add(key)
    kind = getattr(leaf, "dtype", type(leaf).__name__)
    warnings.warn(f"vgrad.gradient_stats: {what} leaf {path!r} ({kind}) is "
                  "not a floating array; skipped", stacklevel=3)


def float_leaves(tree, what: str = "gradient") -> dict[str, jax.Array]:
  """``{path: leaf}`` of the floating-array leaves of ``tree``, in tree
  order; every other leaf is skipped and named once in a warning."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = path_name(path)
    if _is_float_array(leaf):
      out[name] = leaf
    else:
      _skip(name, leaf, what)
  return out


def leaf_norm(x) -> jax.Array:
  """||x||_2 in float32: NaN if an entry is NaN, else Inf if one is Inf;
  the finite entries are scaled by their largest modulus first, so their
  sum of squares never overflows."""
  x = jnp.asarray(x, jnp.float32)
  a = jnp.where(jnp.isfinite(x), jnp.abs(x), 0.0)
  top = jnp.max(a, initial=0.0)
  scale = jnp.where(top > 0, top, 1.0)
  finite = top * jnp.sqrt(jnp.sum(jnp.square(a / scale)))
  return jnp.where(jnp.any(jnp.isnan(x)), jnp.nan,
                   jnp.where(jnp.any(jnp.isinf(x)), jnp.inf, finite))


def log10_histogram(x) -> dict[str, jax.Array]:
  """Counts of ``log10|x_i|`` on :data:`LOG10_EDGES` over the finite
  non-zero entries, with the entries below and above the grid and the
  zeros, NaN and Inf counted apart (int32; they sum to ``x.size``)."""
  x = jnp.asarray(x, jnp.float32).ravel()
  a = jnp.abs(x)
  finite = jnp.isfinite(x)
  counted = finite & (a > 0)
  position = (jnp.log10(jnp.where(counted, a, 1.0)) - LOG10_LOW) * (
      BINS_PER_DECADE)
  # Bucket 0: below the grid; 1..HIST_BINS: the grid; HIST_BINS + 1: above;
  # HIST_BINS + 2: not counted (zero, NaN, Inf).
  index = jnp.clip(jnp.floor(position).astype(jnp.int32) + 1, 0,
                   HIST_BINS + 1)
  index = jnp.where(counted, index, HIST_BINS + 2)
  counts = jnp.zeros(HIST_BINS + 3, jnp.int32).at[index].add(1)
  return {"hist_below": counts[0], "log10_hist": counts[1:HIST_BINS + 1],
          "hist_above": counts[HIST_BINS + 1]}


def leaf_stats(x, histogram: bool = True) -> dict[str, jax.Array]:
  """The statistics of one leaf (module docstring), ``histogram=False``
  leaves out the four histogram keys. Five passes over the leaf (max,
  scaled sum of squares, three counts), more with the histogram."""
  x = jnp.asarray(x, jnp.float32)
  finite = jnp.isfinite(x)
  a = jnp.where(finite, jnp.abs(x), 0.0)
  top = jnp.max(a, initial=0.0)
  scale = jnp.where(top > 0, top, 1.0)
  num_nan = jnp.sum(jnp.isnan(x), dtype=jnp.int32)
  num_nonfinite = jnp.sum(~finite, dtype=jnp.int32)
  finite_norm = top * jnp.sqrt(jnp.sum(jnp.square(a / scale)))
  out = {
      "norm": jnp.where(num_nan > 0, jnp.nan,
                        jnp.where(num_nonfinite > 0, jnp.inf, finite_norm)),
      "max_abs": top,
      "num_zero": jnp.sum(x == 0, dtype=jnp.int32),
      "num_nan": num_nan,
      "num_inf": num_nonfinite - num_nan,
  }
  if histogram:
    out.update(log10_histogram(x))
  return out


def _ratio(num, den):
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)


def _activation_of(path: str, activation) -> str | None:
  if activation is None or isinstance(activation, str):
    return activation
  for pattern, name in activation.items():
    if pattern in path:
      return name
  return None


def activation_stats(x, activation: str | None = None
                     ) -> dict[str, jax.Array]:
  """``rms``, ``mean`` and (by ``activation``'s family) ``dead`` or
  ``saturated`` of one activation ``x (B, ..., C)`` (module docstring)."""
  x = jnp.asarray(x, jnp.float32)
  out = {"rms": jnp.sqrt(jnp.mean(jnp.square(x))), "mean": jnp.mean(x)}
  if activation in RECTIFIERS:
    channels = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
    out["dead"] = jnp.mean(jnp.all(channels <= 0, axis=0).astype(
        jnp.float32))
  elif activation in SATURATING:
    slope = _RELATIVE_SLOPE_FROM_OUTPUT[activation](x)
    out["saturated"] = jnp.mean((slope < SATURATION).astype(jnp.float32))
  return out


def gradient_stats(grads, params=None, updates=None, intermediates=None, *,
                   activation: str | Mapping[str, str] | None = None,
                   histogram: bool = True) -> dict[str, dict[str, jax.Array]]:
  """Statistics of every leaf, keyed by its parameter path.

  Args:
    grads: any pytree of gradients.
    params: the parameters, the same structure (optional): adds
      ``param_norm`` and ``grad_ratio``.
    updates: the optimizer's updates, the same structure (optional): adds
      ``update_norm`` and, with ``params``, ``update_ratio``.
    intermediates: activations (optional), e.g. Flax's ``intermediates``
      collection; their statistics go under ``"intermediates/<path>"``.
    activation: the activation of the intermediates (a registry name), or
      ``{path substring: name}``; decides ``dead`` / ``saturated``.
    histogram: include the log10|g| histogram (the most expensive part).

  Returns:
    ``{path: {statistic: array}}`` (module docstring); under ``vmap`` every
    array gains the mapped axis.
  """
  g = float_leaves(grads)
  p = float_leaves(params, "parameter") if params is not None else {}
  u = float_leaves(updates, "update") if updates is not None else {}
  out = {}
  for name, leaf in g.items():
    stats = leaf_stats(leaf, histogram)
    if name in p:
      stats["param_norm"] = leaf_norm(p[name])
      stats["grad_ratio"] = _ratio(stats["norm"], stats["param_norm"])
    if name in u:
      stats["update_norm"] = leaf_norm(u[name])
      if name in p:
        stats["update_ratio"] = _ratio(stats["update_norm"],
                                       stats["param_norm"])
    out[name] = stats
  if intermediates is not None:
    for name, leaf in float_leaves(intermediates, "intermediate").items():
      out[INTERMEDIATES + name] = activation_stats(
          leaf, _activation_of(name, activation))
  return out


def global_norm(stats: Mapping[str, Mapping[str, Any]],
                key: str = "norm") -> jax.Array:
  """sqrt(sum of squares) of ``key`` over the parameter paths: the global
  norm that ``optax.clip_by_global_norm`` compares with its threshold."""
  norms = [s[key] for path, s in stats.items()
           if not path.startswith(INTERMEDIATES) and key in s]
  if not norms:
    return jnp.zeros((), jnp.float32)
  # The norm of the per-leaf norms (leading batch axes kept).
  stacked = jnp.stack([jnp.asarray(n, jnp.float32) for n in norms], axis=-1)
  return jnp.vectorize(leaf_norm, signature="(n)->()")(stacked)


# The tracker's state packs every path's statistics into three arrays
# (few arrays: a jitted step returns each one separately).
FLOAT_STATS = ("norm", "max_abs", "param_norm", "grad_ratio")
COUNT_STATS = ("num_zero", "num_nan", "num_inf", "hist_below", "hist_above")


class TrackState(NamedTuple):
  """What :func:`track_gradients` keeps, for ``P`` parameter paths (in
  tree order, the state type's ``paths``; its ``tracker_name`` names the
  tracker):

  * ``count ()``: ``update`` calls so far;
  * ``floats (P, 4)``: :data:`FLOAT_STATS` of the last recording (NaN
    before the first);
  * ``counts (P, 5)``: :data:`COUNT_STATS`, int32;
  * ``hist (P, HIST_BINS)`` (``(P, 0)`` without histograms): int32;
  * ``first_nonfinite (P,)``: the first 1-based call at which each leaf
    held a NaN or Inf (0: never), checked on every call.

  :func:`tracked_stats` unpacks it into ``{path: {statistic: array}}``.
  Checkpoint it by its leaves (orbax, ``flax.serialization``); the
  per-tracker class is made at run time, so ``pickle`` cannot restore it.
  """
  count: jax.Array
  floats: jax.Array
  counts: jax.Array
  hist: jax.Array
  first_nonfinite: jax.Array


_STATE_TYPES: dict[tuple, type] = {}


def _state_type(name: str, paths: tuple[str, ...]) -> type:
  """The state type of tracker ``name`` over ``paths`` (static: they live
  in the type, not in the traced arrays)."""
  key = (name, paths)
  if key not in _STATE_TYPES:
    _STATE_TYPES[key] = type(
        f"TrackState_{name}", (TrackState,),
        {"tracker_name": name, "paths": paths, "__slots__": ()})
  return _STATE_TYPES[key]


def _pack(stats: dict, paths: tuple[str, ...], histogram: bool):
  """``(floats, counts, hist)`` of :func:`gradient_stats` output."""
  floats = jnp.stack([jnp.stack([jnp.asarray(stats[p][k], jnp.float32)
                                 for k in FLOAT_STATS]) for p in paths])
  counts = jnp.stack([jnp.stack([jnp.asarray(stats[p].get(k, 0), jnp.int32)
                                 for k in COUNT_STATS]) for p in paths])
  hist = (jnp.stack([stats[p]["log10_hist"] for p in paths]) if histogram
          else jnp.zeros((len(paths), 0), jnp.int32))
  return floats, counts, hist


def _when(pred, record, old, args):
  """``record(*args)`` if ``pred`` else ``old``, as a real branch even
  under ``vmap``.

  ``lax.cond`` with a batched predicate becomes a select that computes
  both branches; here the batched rule branches on ``any(pred)`` (a
  tracker's calls are counted alike in every seed, so the seeds agree) and
  selects per seed inside the taken branch, so a non-recording call costs
  nothing whatever the batch.
  """
  @jax.custom_batching.custom_vmap
  def when(pred, old, args):
    return jax.lax.cond(pred, lambda: record(*args), lambda: old)

  @when.def_vmap
  def _rule(axis_size, in_batched, pred, old, args):
    def batched(tree, flags):
      return jax.tree.map(
          lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,)
                                                    + jnp.shape(x)),
          tree, flags)
    pred_b, old_b, args_b = in_batched
    pred = batched(pred, pred_b)
    old = batched(old, old_b)
    args = batched(args, args_b)

    def take():
      new = jax.vmap(lambda a: record(*a))(args)
      return jax.tree.map(
          lambda n, o: jnp.where(
              pred.reshape((axis_size,) + (1,) * (n.ndim - 1)), n, o),
          new, old)
    out = jax.lax.cond(jnp.any(pred), take, lambda: old)
    return out, jax.tree.map(lambda _: True, out)

  return when(pred, old, args)


def _nonfinite(leaf) -> jax.Array:
  """Whether ``leaf`` holds a NaN or Inf, in one reduction: ``x * 0`` is 0
  for every finite ``x`` and NaN otherwise."""
  return jnp.isnan(jnp.sum(jnp.asarray(leaf) * 0))


def track_gradients(name: str = "gradients", *, every: int = 1,
                    histogram: bool = True) -> optax.GradientTransformation:
  """An Optax transformation that records :func:`gradient_stats` of the
  updates it receives and passes them on unchanged.

  ``optax.chain(vgrad.track_gradients(), optax.clip_by_global_norm(1.0),
  optax.adam(1e-3))`` records the raw gradients (their norm before the
  clipping, ``grad_ratio`` = ||g|| / ||w||); a second tracker at the end
  (``track_gradients("updates")``) records the final updates, whose
  ``grad_ratio`` is then the update-to-weight ratio. Read with
  :func:`tracked_stats`.

  Cost: recording is a few passes over every leaf (the histogram's
  scatter the largest part); ``every=k`` records on calls 1, 1 + k, 1 + 2k,
  ... and costs one reduction per leaf on the other calls (the NaN/Inf
  check that keeps ``first_nonfinite`` exact to the call), under ``vmap``
  too (benchmarks/monitor_benchmark.py).

  Args:
    name: the tracker's name (two trackers in one chain need two names).
    every: record every ``every``-th call (1: every call).
    histogram: record the log10|g| histograms.
  """
  if not isinstance(every, int) or isinstance(every, bool) or every < 1:
    raise ValueError(f"every must be an integer >= 1, got {every!r}")

  def record(paths, updates, params):
    stats = gradient_stats(updates, params, histogram=histogram)
    if params is None:   # the same state structure with or without
      for s in stats.values():
        s["param_norm"] = s["grad_ratio"] = jnp.full((), jnp.nan)
    return _pack(stats, paths, histogram)

  def init(params):
    paths = tuple(float_leaves(params, "parameter"))
    p = len(paths)
    return _state_type(name, paths)(
        jnp.zeros((), jnp.int32),
        jnp.full((p, len(FLOAT_STATS)), jnp.nan, jnp.float32),
        jnp.zeros((p, len(COUNT_STATS)), jnp.int32),
        jnp.zeros((p, HIST_BINS if histogram else 0), jnp.int32),
        jnp.zeros((p,), jnp.int32))

  def update(updates, state, params=None):
    paths = type(state).paths
    count = state.count + 1
    leaves = float_leaves(updates)
    missing = [path for path in paths if path not in leaves]
    if missing:
      raise ValueError(f"vgrad.track_gradients({name!r}): the updates lack "
                       f"the parameter path(s) {', '.join(missing)} its "
                       "state was initialised with")
    bad = jnp.stack([_nonfinite(leaves[path]) for path in paths])
    first = jnp.where((state.first_nonfinite == 0) & bad, count,
                      state.first_nonfinite)
    old = (state.floats, state.counts, state.hist)
    if every == 1:
      packed = record(paths, updates, params)
    else:
      packed = _when((count - 1) % every == 0,
                     lambda u, p: record(paths, u, p), old,
                     (updates, params))
    return updates, type(state)(count, *packed, first)

  return optax.GradientTransformation(init, update)


def _trackers(opt_state) -> list:
  return [s for s in jax.tree_util.tree_leaves(
      opt_state, is_leaf=lambda x: isinstance(x, TrackState))
          if isinstance(s, TrackState)]


def tracked_stats(opt_state, name: str | None = None
                  ) -> dict[str, dict[str, jax.Array]]:
  """The statistics a :func:`track_gradients` in ``opt_state`` last
  recorded: ``{path: {statistic: array}}`` as :func:`gradient_stats`
  returns them (``log10_hist`` only if it records histograms), each path's
  dict also holding ``first_nonfinite`` (the first 1-based update at which
  that leaf held a NaN or Inf; 0: never) and ``count`` (updates seen).
  A vmapped state gives arrays with the mapped axes first.

  Args:
    opt_state: any optimizer state (chains, ``inject_hyperparams``,
      ``multi_transform`` and vmapped states included).
    name: which tracker, when the state holds several.

  Raises:
    ValueError: no tracker (of that name) in the state, or several and no
      ``name``.
  """
  found = _trackers(opt_state)
  names = [type(s).tracker_name for s in found]
  if name is not None:
    found = [s for s in found if type(s).tracker_name == name]
  if not found:
    raise ValueError(
        "no vgrad.track_gradients state in this optimizer state"
        + (f" named {name!r} (found: {', '.join(names) or 'none'})"
           if name is not None else
           "; add vgrad.track_gradients() to the optax chain"))
  if len(found) > 1:
    raise ValueError(f"the optimizer state holds {len(found)} trackers "
                     f"({', '.join(names)}); pass name=")
  state = found[0]
  out = {}
  for i, path in enumerate(type(state).paths):
    stats = {k: state.floats[..., i, j] for j, k in enumerate(FLOAT_STATS)}
    stats.update({k: state.counts[..., i, j]
                  for j, k in enumerate(COUNT_STATS)})
    if state.hist.shape[-1]:
      stats["log10_hist"] = state.hist[..., i, :]
    else:
      del stats["hist_below"], stats["hist_above"]
    stats["first_nonfinite"] = state.first_nonfinite[..., i]
    stats["count"] = state.count
    out[path] = stats
  return out


def first_nonfinite(stats: Mapping[str, Mapping[str, Any]]
                    ) -> tuple[str, int] | None:
  """Where a NaN or Inf first appeared: ``(path, update)`` of the earliest
  ``first_nonfinite`` among :func:`tracked_stats`' paths (ties: the first
  path in tree order), or, for :func:`gradient_stats` output, the first
  path with a NaN or Inf (update 0); None if none. Host-side, unbatched."""
  best = None
  for path, s in stats.items():
    if path.startswith(INTERMEDIATES):
      continue
    if "first_nonfinite" in s:
      step = int(np.asarray(s["first_nonfinite"]))
    else:
      step = 0 if (int(np.asarray(s["num_nan"])) +
                   int(np.asarray(s["num_inf"]))) else -1
      if step == 0:
        return path, 0
    if step > 0 and (best is None or step < best[1]):
      best = (path, step)
  return best


def gradient_noise_scale(grads, batch_size: int = 1) -> dict[str, jax.Array]:
  """McCandlish et al. (2018)'s simple noise scale from ``M`` gradients.

  ``grads``: a pytree whose leaves have a leading axis ``M``: per-example
  gradients (``batch_size=1``, e.g. ``jax.vmap(jax.grad(loss),
  in_axes=(None, 0))``) or the mean gradients of ``M`` microbatches of
  ``batch_size`` examples each. With ``G_i`` the ``M`` gradients flattened,
  ``Gbar`` their mean and ``S = sum_i |G_i - Gbar|^2 / (M - 1)`` (unbiased):

      tr(Sigma) = batch_size * S              (per-example covariance)
      |G|^2     = |Gbar|^2 - S / M            (unbiased for the true |G|^2)
      B_simple  = tr(Sigma) / |G|^2

  Returns ``{"b_simple", "trace_sigma", "grad_sq_norm", "num_gradients"}``
  (float32 scalars; ``grad_sq_norm`` can come out <= 0 when the noise
  dominates the mean, and ``b_simple`` is then negative or Inf: take more
  gradients).

  Raises:
    ValueError: fewer than 2 gradients, or leaves disagreeing on ``M``.
  """
  leaves = list(float_leaves(grads).values())
  sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
  if not leaves or len(sizes) != 1 or None in sizes:
    raise ValueError("gradient_noise_scale needs leaves with one common "
                     "leading axis of gradients, got "
                     f"{sorted(map(str, sizes))}")
  m = sizes.pop()
  if m < 2:
    raise ValueError(f"gradient_noise_scale needs at least 2 gradients, "
                     f"got {m}")
  spread, mean_sq = 0.0, 0.0
  for leaf in leaves:
    x = jnp.asarray(leaf, jnp.float32).reshape(m, -1)
    mean = jnp.mean(x, axis=0, keepdims=True)
    spread = spread + jnp.sum(jnp.square(x - mean))
    mean_sq = mean_sq + jnp.sum(jnp.square(mean))
  s = spread / (m - 1)
  grad_sq = mean_sq - s / m
  trace = batch_size * s
  return {"b_simple": trace / grad_sq, "trace_sigma": trace,
          "grad_sq_norm": grad_sq,
          "num_gradients": jnp.asarray(m, jnp.int32)}
