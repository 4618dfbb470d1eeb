"""Paper-style figures drawn from saved results alone.

Every function here takes the dictionary stored in a run's ``results.json``
(schema ``vgrad.jacobian_spectrum/3``: read it with
:func:`vgrad.io.schemas.load_results` or ``check_schema``, which convert
version-1 files) and never touches models or JAX, so a figure can be
redrawn from a run directory at any time
(``python -m experiments.plot_jacobian_spectrum``).
Drawn in the shared style of :mod:`vgrad.plots.style` (page width, Okabe-Ito
palette); matplotlib's object API only (no pyplot state, no display).
"""

from matplotlib import ticker
from matplotlib.figure import Figure
import numpy as np

from vgrad.plots import style
from vgrad.plots.style import PALETTE

# Re-exported for callers of the old name (tests/spectrum_study_test.py);
# the definition lives in vgrad.plots.style.
from vgrad.plots.style import save_figure  # noqa: F401


def _positive_values(record: dict) -> np.ndarray:
  """Pooled resolved nonzero singular values of one spectrum record."""
  return np.array([v for row in record["singular_values"] for v in row
                   if v], np.float64)


def _layer_quantiles(records, qs) -> np.ndarray:
  """``(layers, len(qs))`` quantiles of the pooled nonzero singular values.

  Exact zeros (inactive units) are left out, so for ReLU these describe the
  spectrum on the active subspace. NaN where a quantile falls on an
  unresolved value (those are the smallest, so upper quantiles survive).
  """
  out = []
  for record in records:
    pooled = np.array([-np.inf if v is None else v
                       for row in record["singular_values"] for v in row
                       if v != 0.0])
    q = (np.quantile(pooled, qs, method="nearest") if pooled.size
         else np.full(len(qs), np.nan))
    out.append(np.where(np.isfinite(q), q, np.nan))
  return np.array(out)


def _title(results: dict) -> str:
  return network_description(results["config"])


def network_description(c: dict, tex: bool = True) -> str:
  """The network of a run's config in one line (the figure's title; with
  ``tex=False`` plain text, the command's first line)."""
  params = "".join(f", {k}={v}" for k, v in sorted(c.get("act_params",
                                                          {}).items()))
  symbol = (lambda k: f"$\\sigma_{k[-2]}^2$") if tex else (
      lambda k: f"sigma_{k[-2]}^2")
  scale = "".join(f", {symbol(k)}={c[k]:g}"
                  for k in ("sigma_w2", "sigma_b2") if c.get(k) is not None)
  model = c.get("model", "mlp")
  if model == "mlp":
    return (f"{c['act']}{params} net, {c['init']} init{scale}: depth "
            f"{c['depth']}, width {c['width']}, {c['num_inputs']} inputs, "
            f"{c['dtype']}")
  skip = {True: ", with skips", False: ", no skips"}.get(c.get("skip"), "")
  blocks = "time steps" if model == "rnn" else "blocks"
  return (f"{MODEL_NAMES.get(model, model)}{skip}, {c['act']}, {c['init']} "
          f"init{scale}: {c['depth']} {blocks}, width {c['width']}, "
          f"{c['num_inputs']} inputs, {c['dtype']}")


# Names of experiments.jacobian_spectrum --model in titles.
MODEL_NAMES = {"cnn": "circular conv net", "resnet": "pre-LN residual MLP",
               "rnn": "vanilla RNN", "transformer": "pre-LN transformer"}


def _layer_label(results: dict) -> str:
  model = results["config"].get("model", "mlp")
  if model == "mlp":
    return "layer $l$ (hidden layers from the input)"
  if model == "rnn":
    return "time step $l$ (blocks from the input)"
  return "block $l$ (from the input)"


def plot_jacobian_spectrum(results: dict) -> Figure:
  """Two panels: the spread of J_{<=l}'s singular values against l, and the
  density of the input-output singular values (both on log axes).

  Results of the ``qr`` method (``results['method'] == 'qr'``) get
  :func:`plot_log_spectrum` instead.
  """
  if results.get("method") == "qr":
    return plot_log_spectrum(results)
  if results.get("method") == "lanczos":
    return plot_lanczos_spectrum(results)
  with style.style_context():
    fig = style.new_figure("page", 3.6)
    left, right = fig.subplots(1, 2)
    _draw_spread(left, results)
    _draw_density(right, results)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center",
               ncol=3, frameon=False)
    fig.suptitle(style.wrap(_title(results), "page"))
  return fig


# Layers drawn with a marker each up to this many; beyond, lines alone.
MARKED_LAYERS = 40


def _marks(layers, marker: str) -> str | None:
  return marker if len(layers) <= MARKED_LAYERS else None


def _integer_ticks(ax) -> None:
  """Whole layer numbers on a linear layer axis (a log axis keeps its
  decades)."""
  if ax.get_xscale() == "linear":
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def _draw_spread(ax, results):
  records = results["layers"]
  layers = np.array([r["layer"] for r in records])
  q = _layer_quantiles(records, [0.0, 0.1, 0.5, 0.9, 1.0])
  has_zeros = any(max(r.get("num_exact_zeros", [0])) for r in records)
  ax.fill_between(layers, q[:, 1], q[:, 3], color=PALETTE[0], alpha=0.3,
                  lw=0, label="10th to 90th percentile" + (
                      " (nonzero values)" if has_zeros else ""))
  ax.plot(layers, q[:, 4], color=PALETTE[0], lw=0.8, label="max")
  ax.plot(layers, q[:, 2], color=PALETTE[0], marker=_marks(layers, "o"),
          ms=2.5, label="median")
  ax.plot(layers, q[:, 0], color=PALETTE[0], lw=0.8, ls="-.",
          label="min (where resolved)")
  # From the log: the linear mean square is null where it leaves the
  # working dtype's range (its square root may not).
  rms = [np.exp(r["log_rms_gain"]) if r["log_rms_gain"] is not None
         else np.nan for r in records]
  ax.plot(layers, rms, color=PALETTE[1], ls="--",
          label=r"rms gain $\sqrt{\mathrm{tr}\,JJ^\top/N}$")
  floor = [np.median([f for f in r["resolution_floor"] or [] if f is not None]
                     or [np.nan]) for r in records]
  ax.plot(layers, floor, color="0.45", ls=":",
          label=f"{results['config']['dtype']} resolution floor")
  ax.axhline(1.0, color="0.7", lw=0.6, zorder=0)
  # Always log: gains compound multiplicatively with depth, and the
  # resolution floor sits decades below the values.
  ax.set_yscale("log")
  ax.set_xlabel(_layer_label(results))
  _integer_ticks(ax)
  ax.set_ylabel(r"singular values of $J_{\leq l} = \partial x_l/\partial x_0$")
  ax.set_title(r"Input-to-layer-$l$ Jacobian spectrum")


def _draw_density(ax, results):
  record = results["input_output"]
  values = _positive_values(record)
  total = sum(map(len, record["singular_values"]))
  zeros = sum(record.get("num_exact_zeros", [0]))
  if values.size:
    lo, hi = np.log10(values.min()), np.log10(values.max())
    pad = max(0.05 * (hi - lo), 0.02)
    bins = np.logspace(lo - pad, hi + pad, 31)
    # Density per decade, normalised over all values, shown or not.
    weights = np.full(values.size, 1.0 / total / np.log10(bins[1] / bins[0]))
    ax.hist(values, bins=bins, weights=weights, color=PALETTE[2], alpha=0.8,
            label="measured")
  ax.axvline(1.0, color="0.5", lw=0.8, ls="--", label=r"$\sigma = 1$")
  ax.set_xscale("log")
  ax.set_xlabel(r"singular value $\sigma$ of $\partial x_L/\partial x_0$")
  ax.set_ylabel(r"density per decade, $p(\log_{10}\sigma)$")
  ax.set_title(f"Input-output Jacobian, depth {results['config']['depth']}")
  missing = total - values.size - zeros
  notes = []
  if missing:
    notes.append(f"{missing}/{total} unresolved")
  if zeros:
    notes.append(f"{zeros}/{total} exact zeros")
  if notes:
    ax.set_title(f"{ax.get_title()}\n(not shown: {', '.join(notes)})",
                 fontsize=style.SMALL_SIZE)
  ax.legend(loc="upper left", frameon=False)


LN10 = np.log(10.0)


def plot_log_spectrum(results: dict) -> Figure:
  """The ``qr`` method's figure, on log10 axes that never overflow.

  Left: log10 of the singular values of J_{<=l} against l: exact at the
  target layers (median, min/max, 10th-90th percentile), and the
  finite-time Lyapunov sums S_l / ln 10 at every layer as a lighter band
  (estimates, O(log N) off at the ends). Right: the Lyapunov spectrum
  S_{L,i} / (L ln 10) per input against i / N, with log10 sigma_i(J_{<=L})
  / L: both panels in decades (powers of ten).
  """
  with style.style_context():
    fig = style.new_figure("page", 3.6)
    left, right = fig.subplots(1, 2)
    _draw_log_spread(left, results)
    _draw_lyapunov(right, results)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center",
               ncol=3, frameon=False)
    fig.suptitle(style.wrap(_title(results) + ", QR", "page"))
  return fig


def _log10_quantiles(record: dict, qs) -> np.ndarray:
  """Quantiles of the pooled nonzero log10 singular values of a record."""
  pooled = np.array([v for row in record["log_singular_values"] for v in row
                     if v is not None], np.float64) / LN10
  return (np.quantile(pooled, qs, method="nearest") if pooled.size
          else np.full(len(qs), np.nan))


def _none_to_nan(values) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], np.float64)


def _draw_log_spread(ax, results):
  sums = results["lyapunov"]["partial_sums"]
  every = np.arange(1, len(sums["max"]) + 1)
  ax.fill_between(every, _none_to_nan(sums["min"]) / LN10,
                  _none_to_nan(sums["max"]) / LN10, color=PALETTE[5],
                  alpha=0.25, lw=0,
                  label=r"Lyapunov sums $S_l/\ln 10$ (min to max, estimate)")
  ax.plot(every, _none_to_nan(sums["median"]) / LN10, color=PALETTE[5],
          lw=0.8, label="Lyapunov sums, median")
  records = results["layers"]
  layers = np.array([r["layer"] for r in records])
  q = np.array([_log10_quantiles(r, [0.0, 0.1, 0.5, 0.9, 1.0])
                for r in records])
  has_zeros = any(max(r["num_exact_zeros"]) for r in records)
  ax.fill_between(layers, q[:, 1], q[:, 3], color=PALETTE[0], alpha=0.35,
                  lw=0, label="exact, 10th to 90th percentile" + (
                      " (nonzero values)" if has_zeros else ""))
  bounds = [b for r in records for b in (r["error_bound"] or [])
            if b is not None]
  within = f" (error < {max(bounds):.1g} nats)" if bounds else ""
  ax.plot(layers, q[:, 2], color=PALETTE[0], marker=_marks(layers, "o"),
          ms=3, label="exact, median" + within)
  ax.plot(layers, q[:, 4], color=PALETTE[0], lw=0.8,
          marker=_marks(layers, "^"), ms=2.5, label="exact, max")
  ax.plot(layers, q[:, 0], color=PALETTE[0], lw=0.8, ls="-.",
          marker=_marks(layers, "v"), ms=2.5, label="exact, min")
  ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
  # A linear layer axis at every depth: log sigma falls linearly with l at
  # a constant per-layer rate, which a log l axis would bend into a cliff.
  ax.set_xlim(0, every[-1] * 1.02)
  ax.set_xlabel(_layer_label(results))
  _integer_ticks(ax)
  ax.set_ylabel(r"$\log_{10}\sigma$ of $J_{\leq l}$ (decades)")
  ax.set_title(r"Input-to-layer-$l$ Jacobian spectrum")


def _draw_lyapunov(ax, results):
  lyap, depth = results["lyapunov"], results["config"]["depth"]
  io = results["input_output"]
  for b, row in enumerate(lyap["exponents"]):
    values = _none_to_nan(row)
    rank = np.arange(1, len(values) + 1) / len(values)
    ax.plot(rank, values / LN10, color=PALETTE[1], lw=0.8, alpha=0.7,
            label=r"Lyapunov $S_{L,i}/(L \ln 10)$" if b == 0 else None)
    exact = _none_to_nan(io["log_singular_values"][b]) / (depth * LN10)
    ax.plot(rank, exact, color=PALETTE[0], lw=0.8, ls="--", alpha=0.7,
            label=r"exact $\log_{10}\sigma_i(J_{\leq L})/L$" if b == 0
            else None)
  ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
  ax.set_xlabel(r"rank $i/N$ (largest first)")
  ax.set_ylabel("exponent (decades per layer)")
  zeros = max(lyap["num_exact_zeros"][-1:] or [0])
  title = f"Lyapunov spectrum, depth {depth}"
  if zeros:
    title += f"\n(not shown: up to {zeros} exact zeros per input)"
  ax.set_title(title, fontsize=style.SMALL_SIZE if zeros else None)
  ax.legend(loc="lower left", frameon=False)


# --------------------------------------------------------------------------
# The lanczos method: extremes with residual bounds, and the SLQ density.

def plot_lanczos_spectrum(results: dict) -> Figure:
  """The ``lanczos`` method's figure.

  Left: against the layer, the largest and smallest singular values of
  ``J_{<=l}`` where Lanczos resolved them (each within its residual bound,
  pooled over inputs: the extremes of all inputs) and the SLQ estimate of
  the rms gain with its standard error. Right: the SLQ density of
  ``log10 sigma`` of the input-output Jacobian (each input's Gauss rule,
  pooled, every node a Gaussian of :data:`SLQ_KERNEL` decades) with the
  resolved extremes as ticks.
  """
  with style.style_context():
    fig = style.new_figure("page", 3.6)
    left, right = fig.subplots(1, 2)
    _draw_extremes(left, results)
    _draw_slq_cdf(right, results)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center",
               ncol=3, frameon=False)
    steps = results["input_output"]["slq"]["steps"]
    fig.suptitle(style.wrap(f"{_title(results)}, Lanczos ({steps} steps)",
                            "page"))
  return fig


def _log10_row(record: dict, b: int) -> np.ndarray:
  return _none_to_nan(record["log_singular_values"][b]) / LN10


def _draw_extremes(ax, results):
  records = results["layers"]
  layers = np.array([r["layer"] for r in records])
  top = np.array([np.nanmax(_none_to_nan(
      [row[0] for row in r["log_singular_values"]])) / LN10
      if any(row[0] is not None for row in r["log_singular_values"])
      else np.nan for r in records])
  low = np.array([r["min_log_singular_value"] / LN10
                  if r["min_log_singular_value"] is not None else np.nan
                  for r in records])
  gain = np.array([r["slq"]["log_rms_gain"] / LN10
                   if r["slq"]["log_rms_gain"] is not None else np.nan
                   for r in records])
  error = np.array([r["slq"]["log_rms_gain_error"] / LN10
                    if r["slq"]["log_rms_gain_error"] is not None else 0.0
                    for r in records])
  ax.fill_between(layers, gain - 2 * error, gain + 2 * error,
                  color=PALETTE[1], alpha=0.25, lw=0)
  ax.plot(layers, gain, color=PALETTE[1], ls="--",
          marker=_marks(layers, "s"), ms=2.5,
          label=r"rms gain, SLQ estimate ($\pm 2$ s.e.)")
  ax.plot(layers, top, color=PALETTE[0], marker=_marks(layers, "^"), ms=3,
          label="largest singular value")
  ax.plot(layers, low, color=PALETTE[0], ls="-.",
          marker=_marks(layers, "v"), ms=3,
          label="smallest (where converged)")
  ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
  # At least 0.2 decades shown and no offset: an isometry's float32
  # rounding (1e-7 decades) must not look like structure.
  shown = np.concatenate([top, low, gain])
  shown = shown[np.isfinite(shown)]
  if shown.size and np.ptp(shown) < 0.2:
    middle = 0.5 * (shown.min() + shown.max())
    ax.set_ylim(middle - 0.1, middle + 0.1)
  ax.ticklabel_format(axis="y", useOffset=False)
  ax.set_xlabel(_layer_label(results))
  _integer_ticks(ax)
  ax.set_ylabel(r"$\log_{10}\sigma$ of $J_{\leq l}$ (decades)")
  ax.set_title(r"Input-to-layer-$l$ Jacobian: extremes")


def slq_distribution(nodes, weights, grid):
  """``(G, lower, upper)`` on ``grid`` (each ``(len(grid),)``): the mean
  over rows of each Gauss rule's distribution function ``G(t) = sum_{nodes
  <= t} weights`` and of its bracket ``G - w_j`` to ``G + w_{j+1}``
  (:func:`_draw_slq_cdf`), for ``(B, k)`` nodes (any monotone variable,
  ``-inf`` allowed) and weights."""
  nodes = np.asarray(nodes, np.float64)
  weights = np.asarray(weights, np.float64)
  order = np.argsort(nodes, axis=1)
  sorted_nodes = np.take_along_axis(nodes, order, axis=1)
  sorted_weights = np.take_along_axis(weights, order, axis=1)
  zero = np.zeros((nodes.shape[0], 1))
  cumulative = np.concatenate([zero, np.cumsum(sorted_weights, axis=1)],
                              axis=1)
  # j: how many nodes of each row lie at or below each grid point.
  j = np.stack([np.searchsorted(row, grid, side="right")
                for row in sorted_nodes])
  rows = np.arange(nodes.shape[0])[:, None]
  gauss = cumulative[rows, j]
  last = np.concatenate([zero, sorted_weights], axis=1)[rows, j]
  following = np.concatenate([sorted_weights, zero], axis=1)[rows, j]
  return (gauss.mean(axis=0), np.clip(gauss - last, 0, 1).mean(axis=0),
          np.clip(gauss + following, 0, 1).mean(axis=0))


def _draw_slq_cdf(ax, results):
  """The pooled SLQ distribution of log10 sigma with its Chebyshev-Markov-
  Stieltjes bracket: per input, the Gauss rule's distribution function
  ``G(t) = sum_{theta_i <= t} tau_i^2`` and the true spectral measure's
  ``F(t)`` satisfy ``G(t) - tau_j^2 <= F(t) <= G(t) + tau_{j+1}^2``
  (``theta_j <= t < theta_{j+1}``: the Chebyshev-Markov-Stieltjes
  inequalities of Gauss quadrature, Golub & Meurant 2010); the
  curves are the means over inputs (each input's spectral measure of its
  probe, whose mean is the spectrum's distribution)."""
  io = results["input_output"]
  nodes = np.array([[np.nan if v is None else v for v in row]
                    for row in io["slq"]["log_nodes"]], np.float64) / LN10
  weights = np.array([[0.0 if v is None else v for v in row]
                      for row in io["slq"]["weights"]], np.float64)
  nodes = np.where(np.isfinite(nodes), nodes, -np.inf)   # a zero node
  finite = nodes[np.isfinite(nodes)]
  if finite.size:
    lo, hi = finite.min(), finite.max()
    pad = max(0.05 * (hi - lo), 0.05)
    grid = np.linspace(lo - pad, hi + pad, 600)
    gauss, lower, upper = slq_distribution(nodes, weights, grid)
    ax.fill_between(grid, lower, upper, color=PALETTE[2], alpha=0.3, lw=0,
                    step="post", label="bracket (Chebyshev-Markov-Stieltjes)")
    ax.step(grid, gauss, where="post", color=PALETTE[2],
            lw=1.0, label="SLQ (Gauss rule, pooled over inputs)")
  resolved = np.concatenate([_log10_row(io, b)
                             for b in range(len(io["log_singular_values"]))])
  resolved = resolved[np.isfinite(resolved)]
  if resolved.size:
    ax.plot(resolved, np.zeros_like(resolved), "|", color=PALETTE[0], ms=10,
            mew=1.0, label="resolved extremes")
  ax.axvline(0.0, color="0.5", lw=0.8, ls="--", label=r"$\sigma = 1$")
  ax.set_ylim(-0.03, 1.03)
  ax.set_xlabel(r"$\log_{10}\sigma$ of $\partial x_L/\partial x_0$ "
                r"(decades)")
  ax.set_ylabel(r"fraction of singular values $\leq \sigma$")
  ax.set_title(f"Input-output Jacobian, depth {results['config']['depth']}")
  ax.legend(loc="upper left", frameon=False, fontsize=style.SMALL_SIZE)
