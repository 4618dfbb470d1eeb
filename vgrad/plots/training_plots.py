"""Training figures drawn from a run's ``metrics.json`` alone.

``plot_training_curves``: loss and accuracy against step, the median over
seeds with the interquartile band. ``plot_gradient_flow``: the classic
vanishing-gradient figure, ``||dL/dW_l||`` against layer index ``l`` on a
log axis at several training steps, one line per arm (activation) when
several are compared. Both take the ``metrics.json`` dictionary and never
touch JAX.
"""

import os

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
import numpy as np

from vgrad.plots import style

MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
MAX_BANDS = 3   # more arms than this: medians only, bands would hide them


def _array(rows) -> np.ndarray:
  """Nested lists with None -> float array with NaN."""
  return np.array([[np.nan if v is None else v for v in np.atleast_1d(r)]
                   if r is not None else [np.nan] for r in rows], float)


def _quartiles(values: np.ndarray):
  """Median and quartiles over seeds (axis 1), ignoring NaN."""
  with np.errstate(all="ignore"):
    import warnings  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)
      return np.nanpercentile(values, [25, 50, 75], axis=1)


def _accuracy_key(arm: dict) -> str | None:
  key = arm["solved_by"].split()[0]
  if "accuracy" in key:
    return key
  return "test_accuracy" if "test_accuracy" in arm["history"] else None


def _title(metrics: dict) -> str:
  ds = metrics["dataset"]
  c = metrics["arms"][0]["config"]
  batch = "full batch" if not c["batch_size"] else f"batch {c['batch_size']}"
  name = metrics.get("name")
  return (f"{name + ': ' if name else ''}{ds['name']}, {c['optimizer']} "
          f"lr {c['lr']:g}, {batch}, {c['seeds']} seeds per arm")


def _healthy(arm: dict, key: str) -> np.ndarray:
  """``(steps, seeds)`` values of ``key`` with NaN once a seed diverged."""
  values = _array(arm["history"][key])
  diverged = np.array([[d is not None for d in row]
                       for row in arm["history"]["diverged_at"]])
  return np.where(diverged, np.nan, values)


# Arms differ in colour, line style and marker, the markers staggered along
# the line (every STAGGER-th logged point, from a different first point per
# arm), so that arms whose curves coincide (relu under leaky_relu) stay
# visible and readable in grey.
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "P")
STAGGER = 8


def arm_style(i: int, points: int) -> dict:
  """Matplotlib line keywords of arm ``i`` on a curve of ``points``."""
  every = max(1, points // STAGGER)
  return {"color": style.PALETTE[i % len(style.PALETTE)],
          "ls": LINE_STYLES[i % len(LINE_STYLES)],
          "marker": MARKERS[i % len(MARKERS)], "ms": 3.5,
          "markevery": ((i * max(1, every // 3)) % every, every)}


def plot_training_curves(metrics: dict) -> Figure:
  """Loss and accuracy against training step, one colour, line style and
  marker per arm (:func:`arm_style`).

  Lines are medians over seeds, bands the 25th-75th percentiles (for up to
  ``MAX_BANDS`` arms); seeds that diverged contribute until they diverge,
  and an x marks the first divergence of an arm. The loss axis is
  logarithmic when the drawn losses span more than two decades.
  """
  arms = metrics["arms"]
  acc_key = _accuracy_key(arms[0])
  with style.style_context():
    width = "page" if acc_key else "column"
    fig = style.new_figure(width, 3.0)
    axes = fig.subplots(1, 2 if acc_key else 1, squeeze=False)[0]
    losses = []
    for i, arm in enumerate(arms):
      color = style.PALETTE[i % len(style.PALETTE)]
      steps = np.array(arm["history"]["step"])
      first = arm["summary"].get("first_divergence")
      label = arm["label"] + (f" (diverged, step {first})" if first else "")
      for ax, key in zip(axes, ["train_loss", acc_key]):
        q = _quartiles(_healthy(arm, key))
        if key == "train_loss":   # what is drawn: median (and band)
          losses.append(q if len(arms) <= MAX_BANDS else q[1])
        ax.plot(steps, q[1], label=label, **arm_style(i, len(steps)))
        if len(arms) <= MAX_BANDS:
          ax.fill_between(steps, q[0], q[2], color=color, alpha=0.2, lw=0)
        if first and np.isfinite(q[1]).any():
          last = np.flatnonzero(np.isfinite(q[1]))[-1]
          ax.plot(steps[last], q[1][last], "x", color=color, ms=6, mew=1.5)
    chance = arms[0].get("chance_loss")
    if chance:
      axes[0].axhline(chance, color="0.5", ls=":", lw=0.8,
                      label=f"chance level {chance:.3f}")
    style.log_scale_if_wide(axes[0], np.concatenate(
        [q.ravel() for q in losses] + [[chance or np.nan]]))
    axes[0].set_ylabel(f"training loss ({arms[0]['loss'].replace('_', ' ')})")
    axes[0].set_title("Loss (median over seeds" + (
        ", IQR band)" if len(arms) <= MAX_BANDS else ")"))
    if acc_key:
      axes[1].set_ylabel(acc_key.replace("_", " "))
      axes[1].set_ylim(-0.02, 1.02)
      axes[1].set_title("Accuracy")
    for ax in axes:
      ax.set_xlabel("training step")
    fig.legend(*axes[0].get_legend_handles_labels(),
               loc="outside lower center", ncol=min(4, len(arms) + 1),
               frameon=False)
    fig.suptitle(style.wrap(_title(metrics), width))
  return fig


def _snapshot_steps(steps: list[int], count: int = 3) -> list[int]:
  """Init, a middle step and the last step (or fewer if logged fewer)."""
  picks = [steps[0], steps[max(1, len(steps) // 10)], steps[-1]][:count]
  return sorted(set(picks))


def _flow(arm: dict, step: int):
  """Median and quartiles over healthy seeds of ||dL/dW_l|| at ``step``
  (NaN where every seed has diverged)."""
  h = arm["history"]
  i = h["step"].index(step)
  g = _array(h["grad_norm_w"][i])          # (S, L+1)
  healthy = np.array([d is None for d in h["diverged_at"][i]])
  g = np.where(healthy[:, None], g, np.nan)
  q = _quartiles(g.T)                       # (3, L+1)
  return np.arange(1, g.shape[1] + 1), q


def plot_gradient_flow(metrics: dict) -> Figure:
  """``||dL/dW_l||`` against layer ``l`` (readout = L+1).

  One arm: one panel, a line per training step. Several arms: a panel per
  step (init, 10 % of training, end), a line per arm. Gradients are measured
  on the same fixed training batch at every step; seeds that diverged are
  left out. The gradient axis is logarithmic when the drawn medians span
  more than two decades (a vanishing or exploding gradient); exactly zero
  gradients (zero initialisation) then fall off it, and a note says so.
  """
  arms = metrics["arms"]
  steps = _snapshot_steps(arms[0]["history"]["step"])
  with style.style_context():
    width = "column" if len(arms) == 1 else "page"
    if len(arms) == 1:
      fig = style.new_figure(width, 3.0)
      ax = fig.subplots()
      shades = style.PALETTE[:len(steps)]
      for step, color in zip(steps, shades):
        layers, q = _flow(arms[0], step)
        ax.plot(layers, q[1], color=color, marker="o", ms=3,
                label=f"step {step}")
        ax.fill_between(layers, q[0], q[2], color=color, alpha=0.2, lw=0)
      axes = [ax]
      ax.set_title(f"{arms[0]['label']} (bands: 25th-75th percentile)")
    else:
      fig = style.new_figure(width, 3.0)
      axes = fig.subplots(1, len(steps), sharey=True, squeeze=False)[0]
      for ax, step in zip(axes, steps):
        for i, arm in enumerate(arms):
          color = style.PALETTE[i % len(style.PALETTE)]
          layers, q = _flow(arm, step)
          first = arm["summary"].get("first_divergence")
          ax.plot(layers, q[1], color=color, ms=3,
                  marker=MARKERS[i % len(MARKERS)],
                  label=arm["label"] + (f" (diverged, step {first})"
                                        if first else ""))
          if np.isfinite(q).any() and len(arms) <= MAX_BANDS:
            ax.fill_between(layers, q[0], q[2], color=color, alpha=0.15,
                            lw=0)
        ax.set_title("at initialisation" if step == 0 else f"step {step}")
    drawn = np.concatenate([np.asarray(line.get_ydata(), float)
                            for ax in axes for line in ax.get_lines()])
    drawn = drawn[np.isfinite(drawn) & (drawn > 0)]
    for ax in axes:
      log = style.log_scale_if_wide(ax, drawn)
      if log:   # zeros and NaN confuse the log autoscale
        ax.set_ylim(drawn.min() / 5, drawn.max() * 5)
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = "Per-layer gradient norm"
    if log and any(v == 0 for arm in arms
                   for row in arm["history"]["grad_norm_w"]
                   for seed in row for v in seed):
      title += " (exactly zero gradients fall off the log axis)"
    for ax in axes:
      ax.set_xlabel("layer $l$ (readout = $L+1$)")
    axes[0].set_ylabel(r"$\|\partial L/\partial W_l\|_F$, median over seeds")
    if len(arms) == 1:
      axes[0].legend(loc="best", frameon=False)
    else:
      fig.legend(*axes[0].get_legend_handles_labels(),
                 loc="outside lower center", ncol=min(4, len(arms)),
                 frameon=False)
    fig.suptitle(style.wrap(f"{title}\n{_title(metrics)}", width))
  return fig


def figures(metrics: dict) -> dict[str, Figure]:
  """The run's figures by file stem: ``curves`` and ``gradient_flow``."""
  return {"curves": plot_training_curves(metrics),
          "gradient_flow": plot_gradient_flow(metrics)}


def write_figures(metrics: dict, directory: str) -> list[str]:
  """``curves.{png,pdf}`` and ``gradient_flow.{png,pdf}``; returns paths."""
  return [path for stem, fig in figures(metrics).items()
          for path in style.save_figure(fig, os.path.join(directory, stem))]
