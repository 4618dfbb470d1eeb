"""What ``experiments.jacobian_spectrum`` builds from its flags, and the
run directory it writes."""

import os

from absl import flags

from vgrad.cli import app as cli
from vgrad.io import rundir
from vgrad.plots import spectrum_plots as plotting
from vgrad.plots import style
from vgrad.probes import log_spectrum
from vgrad.studies import spectrum_study

FLAGS = flags.FLAGS


def qr_flags() -> dict:
  """``qr_layers``/``qr_sweeps`` for the config, or a one-line error when
  they are given with --method=dense or out of range."""
  given = [f"--{name}" for name in ("qr_layers", "qr_sweeps")
           if FLAGS[name].value is not None]
  if given and FLAGS.method == "dense":
    cli.fail(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'}"
             f" only to --method=qr or auto, not --method=dense")
  layers = None
  if FLAGS.qr_layers is not None:
    try:
      layers = tuple(int(v) for v in FLAGS.qr_layers)
    except ValueError:
      layers = ()
    if not layers or not all(1 <= l <= FLAGS.depth for l in layers):
      cli.fail(f"--qr_layers must be comma-separated integers in [1, "
               f"--depth={FLAGS.depth}], got {','.join(FLAGS.qr_layers)}")
  return {"qr_layers": layers,
          "qr_sweeps": FLAGS.qr_sweeps or log_spectrum.DEFAULT_MAX_SWEEPS}


def make_config() -> spectrum_study.SpectrumConfig:
  """The study the flags describe; one-line error for a bad flag."""
  return spectrum_study.SpectrumConfig(
      act=FLAGS.act, init=FLAGS.init, depth=FLAGS.depth, width=FLAGS.width,
      sigma_w2=FLAGS.sigma_w2, sigma_b2=FLAGS.sigma_b2,
      num_inputs=FLAGS.num_inputs, seed=FLAGS.seed, dtype=FLAGS.dtype,
      act_params=cli.activation_params(), method=FLAGS.method, **qr_flags())


def write_run(out_dir: str, results: dict, overwrite: bool) -> str:
  """config.json, results.json and spectrum.png/pdf into ``out_dir``,
  atomically (``rundir.staged_run_dir``); returns ``out_dir``."""
  with rundir.staged_run_dir(out_dir, overwrite=overwrite) as stage:
    rundir.write_json(os.path.join(stage, "config.json"), results["config"])
    rundir.write_json(os.path.join(stage, "results.json"), results)
    fig = plotting.plot_jacobian_spectrum(results)
    style.save_figure(fig, os.path.join(stage, "spectrum"))
  return out_dir
