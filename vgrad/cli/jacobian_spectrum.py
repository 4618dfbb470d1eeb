"""What ``experiments.jacobian_spectrum`` builds from its flags, and the
run directory it writes."""

import os

from absl import flags

from vgrad.cli import app as cli
from vgrad.io import rundir
from vgrad.nn import config as nn_config
from vgrad.plots import spectrum_plots as plotting
from vgrad.plots import style
from vgrad.probes import block_lanczos
from vgrad.probes import log_spectrum
from vgrad.studies import footprint
from vgrad.studies import model_spectra
from vgrad.studies import spectrum_study

FLAGS = flags.FLAGS


def qr_flags() -> dict:
  """``qr_layers``/``qr_sweeps``/``lanczos_steps`` for the config, or a
  one-line error when one is given with a method it does not apply to or
  out of range."""
  given = [f"--{name}" for name in ("qr_layers", "qr_sweeps")
           if FLAGS[name].value is not None]
  if given and FLAGS.method == "dense":
    cli.fail(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'}"
             f" only to --method=qr or auto, not --method=dense")
  if FLAGS.qr_sweeps is not None and FLAGS.method == "lanczos":
    cli.fail("--qr_sweeps applies only to --method=qr or auto, not "
             "--method=lanczos (its steps: --lanczos_steps)")
  if FLAGS.lanczos_steps is not None and FLAGS.method != "lanczos":
    cli.fail(f"--lanczos_steps applies only to --method=lanczos, not "
             f"--method={FLAGS.method}")
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
          "qr_sweeps": FLAGS.qr_sweeps or log_spectrum.DEFAULT_MAX_SWEEPS,
          "lanczos_steps": (FLAGS.lanczos_steps
                            or block_lanczos.DEFAULT_STEPS)}


def make_config() -> spectrum_study.SpectrumConfig:
  """The study the flags describe; one-line error for a bad flag."""
  network = cli.network_config()     # --init=critical resolved here
  return spectrum_study.SpectrumConfig(
      act=FLAGS.act, init=network.init, depth=FLAGS.depth,
      width=FLAGS.width, sigma_w2=network.sigma_w2,
      sigma_b2=network.sigma_b2, num_inputs=FLAGS.num_inputs,
      seed=FLAGS.seed, dtype=FLAGS.dtype, act_params=network.act_params,
      method=FLAGS.method, **qr_flags())


def memory_terms(config) -> list[footprint.Term]:
  """The run's memory (a lower bound, :mod:`vgrad.studies.footprint`):
  under ``auto`` that of ``dense``, which ``auto`` may choose."""
  if getattr(config, "model", "mlp") != "mlp":
    return footprint.zoo_model(config.model, config.depth, config.width,
                               config.num_inputs, config.image_size,
                               config.dtype, config.method)
  targets = (len(spectrum_study.qr_layers(config)) if config.method == "qr"
             else config.depth)
  return footprint.spectrum(config.depth, config.width, config.num_inputs,
                            config.dtype, config.method, targets)


def write_run(out_dir: str, results: dict, overwrite: bool) -> str:
  """config.json, results.json and spectrum.png/pdf into ``out_dir``,
  atomically (``rundir.staged_run_dir``); returns ``out_dir``."""
  with rundir.staged_run_dir(out_dir, overwrite=overwrite) as stage:
    rundir.write_json(os.path.join(stage, "config.json"), results["config"])
    rundir.write_json(os.path.join(stage, "results.json"), results)
    fig = plotting.plot_jacobian_spectrum(results)
    style.save_figure(fig, os.path.join(stage, "spectrum"))
  return out_dir


def make_model_config():
  """The --model study the flags describe (``None`` for --model=mlp);
  one-line error for a flag the model cannot take.

  Network flags not given on the command line take the model's defaults
  (:func:`vgrad.studies.model_spectra.model_defaults`).
  """
  model = FLAGS.model
  if FLAGS.image_size is not None and model != "cnn":
    cli.fail(f"--image_size applies only to --model=cnn, not "
             f"--model={model}")
  if model == "mlp":
    if FLAGS["skip"].present:
      cli.fail(f"--skip applies only to --model="
               f"{' or '.join(model_spectra.SKIP_MODELS)}, not --model=mlp")
    return None
  if FLAGS.init == cli.CRITICAL or FLAGS.q_star is not None:
    cli.fail(f"--init=critical and --q_star apply only to --model=mlp, not "
             f"--model={model}")
  for flag in cli.ACT_PARAM_FLAGS:
    if FLAGS[flag].value is not None:
      cli.fail(f"--{flag} applies only to --model=mlp, not --model={model} "
               f"(the example models use each activation's default)")
  if FLAGS["skip"].present and model not in model_spectra.SKIP_MODELS:
    cli.fail(f"--skip applies only to --model="
             f"{' or '.join(model_spectra.SKIP_MODELS)}, not --model={model}")
  given = {name: FLAGS[name].value for name in model_spectra.SETTINGS
           if FLAGS[name].present}
  if model in model_spectra.SKIP_MODELS:
    given["skip"] = FLAGS.skip
  qr = qr_flags()
  return model_spectra.make_config(
      model, num_inputs=FLAGS.num_inputs, seed=FLAGS.seed, dtype=FLAGS.dtype,
      method=FLAGS.method, qr_layers=qr["qr_layers"],
      qr_sweeps=FLAGS.qr_sweeps, lanczos_steps=qr["lanczos_steps"],
      image_size=FLAGS.image_size, **given)


def run_model_study(config) -> dict:
  """``model_spectra.run_study(config)``, with a setting the model cannot
  take (or --qr_layers past its depth) as a one-line error naming the
  flag, before the probe runs."""
  try:
    example = model_spectra.build(config)
  except nn_config.ConfigError as e:
    field = {"size": "image_size"}.get(e.field, e.field)
    if field in FLAGS:
      cli.fail(f"--{field} for --model={config.model}: {e.reason}")
    cli.fail(f"--model={config.model} cannot take these settings: its "
             f"{e.field} {e.reason} (choose another --width)")
  layers = config.qr_layers or ()
  if any(l > config.depth for l in layers):
    cli.fail(f"--qr_layers must be in [1, depth={config.depth}] for "
             f"--model={config.model}, got {','.join(map(str, layers))}")
  return model_spectra.run_study(config, example)
