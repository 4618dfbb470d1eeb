"""What ``experiments.signal_propagation`` builds from its flags, the run
directory it writes, and its ``--replot``."""


from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import reproduction
from vgrad.io import schemas
from vgrad.nn import config as nn_config
from vgrad.studies import footprint
from vgrad.studies import model_spectra
from vgrad.studies import signal_propagation as sp
from vgrad.theory import nngp

FLAGS = flags.FLAGS

# The flags --replot refuses (it redraws a finished run).
STUDY_FLAGS = ("model", "skip", "act", "init", "depth", "width", "sigma_w2",
               "sigma_b2", "image_size", "num_inputs", "seed", "out_dir",
               "overwrite", "memory_gb", *cli.ACT_PARAM_FLAGS)
SETTINGS = ("act", "init", "depth", "width", "sigma_w2", "sigma_b2")
FILES = reproduction.output_names(schemas.SIGNAL_PROPAGATION)


def make_config() -> sp.SignalConfig:
  """The study the flags describe: network flags not given take the
  model's defaults; one-line error for a flag the model cannot take."""
  model = FLAGS.model
  if FLAGS.image_size is not None and model != "cnn":
    cli.fail(f"--image_size applies only to --model=cnn, not "
             f"--model={model}")
  if FLAGS["skip"].present and model not in model_spectra.SKIP_MODELS:
    cli.fail(f"--skip applies only to --model="
             f"{' or '.join(model_spectra.SKIP_MODELS)}, not --model={model}")
  given = {name: FLAGS[name].value for name in SETTINGS
           if FLAGS[name].present}
  act_params = {}
  if model == "mlp":
    network = cli.network_config(FLAGS.act)   # --init=critical resolved
    act_params = network.act_params
    given = {name: FLAGS[name].value for name in SETTINGS}
    given.update(init=network.init, sigma_w2=network.sigma_w2,
                 sigma_b2=network.sigma_b2)
  else:
    if FLAGS.init == cli.CRITICAL or FLAGS.q_star is not None:
      cli.fail(f"--init=critical and --q_star apply only to --model=mlp, "
               f"not --model={model}")
    for flag in cli.ACT_PARAM_FLAGS:
      if FLAGS[flag].value is not None:
        cli.fail(f"--{flag} applies only to --model=mlp, not --model="
                 f"{model} (the example models use each activation's "
                 "default)")
  skip = FLAGS.skip if model in model_spectra.SKIP_MODELS else None
  return sp.resolve(sp.SignalConfig(
      model=model, act_params=act_params, skip=skip,
      image_size=FLAGS.image_size, num_inputs=FLAGS.num_inputs,
      seed=FLAGS.seed, **given))


def memory_terms(config: sp.SignalConfig) -> list[footprint.Term]:
  """A lower bound on the run's memory: the parameters and every block's
  activations; for the MLP also the mean-field quadrature, B^2 pairs of
  3 arcs x angle x radial nodes in float64."""
  if config.model != "mlp":
    return footprint.zoo_model(config.model, config.depth, config.width,
                               config.num_inputs, config.image_size,
                               method="lanczos")
  width, depth, b = float(config.width), config.depth, config.num_inputs
  nodes = 3 * nngp.ANGLE_POINTS * nngp.RADIAL_POINTS
  return [
      footprint.Term(depth * width * width * 4, f"the weights: {depth} "
                     f"layers of {config.width} x {config.width}",
                     "width" if width * width > depth else "depth"),
      footprint.Term(2 * b * width * 4, f"{b} inputs' activations of "
                     f"{config.width} units", "num_inputs"),
      footprint.Term(float(b) * b * nodes * 8 * 3, f"the mean-field "
                     f"quadrature: {b} x {b} input pairs x {nodes} nodes",
                     "num_inputs"),
  ]


def build(config: sp.SignalConfig):
  """:func:`vgrad.studies.signal_propagation.build`, with a setting the
  model cannot take as a one-line error naming the flag."""
  try:
    return sp.build(config)
  except nn_config.ConfigError as e:
    field = {"size": "image_size", "act_params": "act"}.get(e.field, e.field)
    if field in FLAGS:
      cli.fail(f"--{field} for --model={config.model}: {e.reason}")
    cli.fail(f"--model={config.model} cannot take these settings: its "
             f"{e.field} {e.reason} (choose another --width)")


def replot(run_dir: str) -> None:
  """--replot: the figure and report of a run from its results.json."""
  reproduction.replot(run_dir, STUDY_FLAGS, schemas.SIGNAL_PROPAGATION)
