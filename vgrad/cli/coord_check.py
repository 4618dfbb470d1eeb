"""What ``experiments.coord_check`` builds from its flags, writes, and its
``--replot``."""


from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import progress as progress_lib
from vgrad.cli import reproduction
from vgrad.io import schemas
from vgrad.studies import coord_check as cc
from vgrad.studies import footprint

FLAGS = flags.FLAGS

OUTPUTS = reproduction.output_names(schemas.COORD_CHECK)

# The flags --replot refuses (it redraws a finished run).
STUDY_FLAGS = ("widths", "depth", "act", "seeds", "steps", "lr", "optimizer",
               "batch_size", "base_width", "seed", "out_dir", "overwrite")


def parse_widths(values: list[str]) -> tuple[int, ...] | None:
  """The --widths list as ints, or None unless it holds >= 2 increasing
  distinct integers >= 1."""
  try:
    widths = tuple(int(v) for v in values)
  except (TypeError, ValueError):
    return None
  if len(widths) < 2 or list(widths) != sorted(set(widths)) or widths[0] < 1:
    return None
  return widths


def make_config() -> cc.CoordCheckConfig:
  """The study's config from the flags (validated by their validators),
  refused in one line when its memory estimate does not fit."""
  config = cc.CoordCheckConfig(
      widths=parse_widths(FLAGS.widths), depth=FLAGS.depth, act=FLAGS.act,
      seeds=FLAGS.seeds, steps=FLAGS.steps, lr=FLAGS.lr,
      optimizer=FLAGS.optimizer, batch_size=FLAGS.batch_size,
      base_width=FLAGS.base_width, seed=FLAGS.seed)
  cli.check_memory(
      footprint.training(config.depth, config.widths[-1], config.dataset,
                         config.batch_size, config.seeds, config.optimizer),
      names={"width": "widths"})
  return config


def progress_bar(config: cc.CoordCheckConfig):
  """``(name, width) -> None``: one bar over every (parameterisation,
  width) program, on stderr."""
  bar = progress_lib.Bar(len(config.parameterizations) * len(config.widths),
                         unit="widths", desc="coord check ")
  done = [0]

  def update(name: str, width: int) -> None:
    done[0] += 1
    bar.update(done[0], f"{name} n={width}")
  return update


def replot(run_dir: str) -> None:
  """--replot: the figure and report of a run from its results.json."""
  reproduction.replot(run_dir, STUDY_FLAGS, schemas.COORD_CHECK)
