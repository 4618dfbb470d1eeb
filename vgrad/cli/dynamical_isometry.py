"""The config ``experiments.dynamical_isometry`` builds from its flags."""

from absl import flags

from vgrad.cli import app as cli
from vgrad.nn import activations
from vgrad.studies import footprint
from vgrad.studies import isometry_study
from vgrad.theory import free_probability

FLAGS = flags.FLAGS


# The activations the study takes (maxout is not elementwise).
ELEMENTWISE = sorted(set(activations.ACTIVATIONS) - {"maxout"}
                     - set(activations.TRANSFORMED))


def _numbers(flag: str, kind=float) -> tuple:
  parse = (lambda v: cli.finite_float(flag, v)) if kind is float else kind
  try:
    values = tuple(parse(v) for v in FLAGS[flag].value)
  except ValueError:
    cli.fail(f"--{flag} must be comma-separated numbers, got "
             f"{','.join(FLAGS[flag].value)}")
  if not values:
    cli.fail(f"--{flag} needs at least one value")
  return values


def _check_names(flag: str, valid) -> list[str]:
  bad = [v for v in FLAGS[flag].value if v not in valid]
  if bad or not FLAGS[flag].value:
    cli.fail(f"--{flag}: unknown {', '.join(bad) or '(empty)'}; valid: "
             f"{', '.join(valid)}")
  return FLAGS[flag].value


def _has_operating_point(act: str, sigma_b2: float) -> bool:
  try:
    isometry_study.operating_point(isometry_study.Arm(act, "gaussian",
                                                      sigma_b2))
    return True
  except ValueError:
    return False


def make_arms() -> tuple[tuple[isometry_study.Arm, ...], list[str]]:
  """Every (act, ensemble, sigma_b2) with a finite fixed point, and notes:
  acts with none at sigma_b2 > 0 on the critical line get sigma_b2 = 0."""
  acts = _check_names("acts", ELEMENTWISE)
  ensembles = _check_names("ensembles", free_probability.WEIGHTS)
  sigma_b2 = _numbers("sigma_b2")
  if min(sigma_b2) < 0:
    cli.fail("--sigma_b2 must be >= 0")
  arms, notes = [], []
  for act in acts:
    finite = [b2 for b2 in sigma_b2 if _has_operating_point(act, b2)]
    if not finite:
      if not _has_operating_point(act, 0.0):
        cli.fail(f"--acts: {act} has no critical point (chi_1 = 1 with a "
                 f"finite q*) at any of --sigma_b2 or at 0; use e.g. "
                 f"tanh, erf, relu")
      notes.append(f"note: {act} has no finite fixed point on the critical "
                   f"line at sigma_b^2 > 0; using sigma_b^2 = 0")
      finite = [0.0]
    arms += [isometry_study.Arm(act, e, b2) for e in ensembles
             for b2 in finite]
  return tuple(arms), notes


def make_config() -> tuple[isometry_study.IsometryConfig, list[str]]:
  """The validated config and the arms' notes (for the caller to print once
  the whole command line is valid); sizes are checked before the arms'
  fixed points are solved for."""
  depths = tuple(sorted(set(_numbers("depths", int))))
  sizes = dict(depths=depths, width=FLAGS.width, seeds=FLAGS.seeds,
               seed=FLAGS.seed, dtype=FLAGS.dtype)
  try:
    isometry_study.check_config(isometry_study.IsometryConfig(**sizes))
    cli.check_memory(footprint.isometry(depths, FLAGS.width, FLAGS.seeds,
                                        FLAGS.dtype),
                     flops=footprint.spectrum_flops(sum(depths), FLAGS.width,
                                                    FLAGS.seeds))
    arms, notes = make_arms()
    config = isometry_study.IsometryConfig(arms=arms, **sizes)
    isometry_study.check_config(config)
  except ValueError as e:
    cli.fail(f"--{e}")
  return config, notes
