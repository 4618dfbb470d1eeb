"""What ``experiments.gradient_histograms`` builds from its flags, and its
``--replot``."""

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import reproduction
from vgrad.studies import footprint
from vgrad.studies import gradient_histograms as gh

FLAGS = flags.FLAGS


# The flags --replot refuses (it redraws a finished run).
STUDY_FLAGS = ("acts", "inits", "depth", "width", "num_examples", "num_bins",
               "seed", "out_dir", "overwrite")


def replot(run_dir: str) -> None:
  """--replot: the figure and report of a run from its results.json."""
  reproduction.replot(run_dir, STUDY_FLAGS)


def make_config() -> gh.HistogramConfig:
  config = gh.HistogramConfig(
      acts=tuple(FLAGS.acts), inits=tuple(FLAGS.inits), depth=FLAGS.depth,
      width=FLAGS.width, num_examples=FLAGS.num_examples,
      num_bins=FLAGS.num_bins, seed=FLAGS.seed)
  cli.check_memory(footprint.training(config.depth, config.width,
                                      config.dataset, config.num_examples,
                                      seeds=1))
  return config
