"""The config ``experiments.phase_diagram`` builds from its flags."""

from absl import flags
import numpy as np

from vgrad.cli import app as cli
from vgrad.nn import activations
from vgrad.studies import footprint
from vgrad.studies import phase_diagram

FLAGS = flags.FLAGS


# The activations the study takes (maxout is not elementwise).
ELEMENTWISE = sorted(set(activations.ACTIVATIONS) - {"maxout"}
                     - set(activations.TRANSFORMED))


def _floats(flag: str, values: list[str]) -> tuple[float, ...]:
  try:
    if len(values) == 1 and values[0].count(":") == 2:
      lo, hi, n = values[0].split(":")
      return tuple(round(float(v), 6) for v in np.linspace(
          cli.finite_float(flag, lo), cli.finite_float(flag, hi), int(n)))
    return tuple(cli.finite_float(flag, v) for v in values)
  except ValueError:
    cli.fail(f"--{flag} must be numbers separated by commas or lo:hi:n, got "
             f"{','.join(values)}")


def make_config() -> phase_diagram.PhaseConfig:
  """The validated config; one-line error for a bad flag."""
  sigma_w2 = _floats("sigma_w2", FLAGS.sigma_w2)
  depths = _floats("depths", FLAGS.depths)
  if any(d != int(d) for d in depths):
    cli.fail("--depths must be integers >= 1")
  config = phase_diagram.PhaseConfig(
      act=FLAGS.act, sigma_b2=FLAGS.sigma_b2, sigma_w2=sigma_w2,
      depths=tuple(int(d) for d in depths), width=FLAGS.width,
      dataset=FLAGS.dataset, optimizer=FLAGS.optimizer, lr=FLAGS.lr,
      steps=FLAGS.steps, batch_size=FLAGS.batch_size, seeds=FLAGS.seeds,
      seed=FLAGS.seed, threshold=FLAGS.threshold,
      **phase_diagram.theory_resolution(FLAGS.theory_points))
  try:
    phase_diagram.check_config(config)
  except ValueError as e:
    cli.fail(f"--{e}")
  if FLAGS.lr <= 0:
    cli.fail("--lr must be > 0")
  cli.check_memory(footprint.training(
      max(config.depths), config.width, config.dataset, config.batch_size,
      config.seeds, config.optimizer, networks=len(config.sigma_w2)),
      flops=sum(footprint.training_flops(
          d, config.width, config.dataset, config.batch_size, config.seeds,
          config.steps, networks=len(config.sigma_w2))
                for d in config.depths))
  return config
