"""Flag helpers shared by the experiments: network flags and one-line errors.

Every bad command line ends the same way: one line on stderr naming the flag
and the valid values, exit status 2, no traceback, nothing written.
"""

import json
import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from vgrad.nn import activations
from vgrad.nn import initializers

FLAGS = flags.FLAGS

# Flags that set an activation's parameter: flag -> (activation, parameter).
ACT_PARAM_FLAGS = {
    "leaky_slope": ("leaky_relu", "slope"),
    "elu_alpha": ("elu", "alpha"),
    "swish_beta": ("swish", "beta"),
    "maxout_k": ("maxout", "k"),
}


def fail(message: str, status: int = 2):
  """Prints ``error: message`` as one line on stderr and exits."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
  sys.exit(status)


def _module_name(argv0: str) -> str:
  """The dotted module of the running program.

  ``python -m pkg.mod`` sets ``__main__.__spec__.name``; a script run by
  path (``python experiments/train.py``) has none, so the name is built
  from the path, walking up the directories that hold ``__init__.py``.
  """
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name and spec.name != "__main__":
    return spec.name.removesuffix(".__main__")
  path = os.path.abspath(argv0)
  parts = [os.path.splitext(os.path.basename(path))[0]]
  directory = os.path.dirname(path)
  while os.path.isfile(os.path.join(directory, "__init__.py")):
    parts.insert(0, os.path.basename(directory))
    directory = os.path.dirname(directory)
  return ".".join(parts)


def command_line(argv: list[str] | None = None) -> str:
  """The command that is running, as one shell line to paste.

  ``python -m experiments.train --act=relu ...``: the module of the running
  program and its arguments (default ``sys.argv``), each quoted for a POSIX
  shell with ``shlex``, so ``shlex.split`` gives the arguments back.
  Entry points store it as the ``"command"`` field of the JSON they write.
  """
  argv = sys.argv if argv is None else argv
  return shlex.join(["python", "-m", _module_name(argv[0]), *argv[1:]])


def define_run_dir_flags():
  """--out_dir and --overwrite: where a run goes, and whether it may replace
  an existing one."""
  flags.DEFINE_string("out_dir", None, "Run directory to create (must not "
                      "exist unless --overwrite).")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --out_dir once "
                    "the new run is complete.")


def read_run_file(run_dir: str, name: str) -> dict:
  """``run_dir/name`` parsed as JSON, or a one-line error naming --run_dir."""
  path = os.path.join(run_dir, name)
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    fail(f"--run_dir: cannot read {path}: {e}")


def _parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(e)


def run(main):
  """``absl.app.run(main)`` with one-line flag errors.

  Logging defaults to warnings (JAX logs its backend probing at INFO);
  ``--verbosity=0`` brings INFO back.
  """
  logging.set_verbosity(logging.WARNING)
  app.run(main, flags_parser=_parse_flags)


def _at_least(name: str, bound: float, what: str, why: str = ""):
  flags.register_validator(
      name, lambda v: v is None or v >= bound,
      message=f"--{name} must be {what} >= {bound:g}{why}")


def define_network_flags(*, act: str, init: str, depth: int, width: int,
                         multi_act: bool = False):
  """Defines --act, --init, --depth, --width, --sigma_w, --sigma_b and the
  activation-parameter flags, with validators.

  With ``multi_act`` --act is a comma-separated list of activations to
  compare (``FLAGS.act`` is then a list).
  """
  names = sorted(activations.ACTIVATIONS)
  if multi_act:
    flags.DEFINE_list("act", act, "Hidden-layer activation(s); a comma-"
                      f"separated list compares several. One of: "
                      f"{', '.join(names)}.")
    flags.register_validator(
        "act", lambda v: bool(v) and set(v) <= set(names) and
        len(set(v)) == len(v),
        message=f"--act must be distinct comma-separated names from: "
        f"{', '.join(names)}")
  else:
    flags.DEFINE_enum("act", act, names, "Hidden-layer activation.")
  flags.DEFINE_enum("init", init, sorted(initializers.INITIALIZERS),
                    "Weight initializer (see vgrad/initializers.py).")
  flags.DEFINE_integer("depth", depth, "Number of hidden layers (affine + "
                       "activation), >= 1.")
  flags.DEFINE_integer("width", width, "Units per hidden layer, >= 1.")
  flags.DEFINE_float("sigma_w", None, "Weight scale for --init=gaussian "
                     "(Var W = sigma_w^2/fan_in) or orthogonal (gain); "
                     "default 1.")
  flags.DEFINE_float("sigma_b", None, "Bias std: b ~ N(0, sigma_b^2). "
                     "Default: zero biases.")
  flags.DEFINE_float("leaky_slope", None, "Negative slope of --act=leaky_relu "
                     "(default 0.01; the lectures also use 0.1).")
  flags.DEFINE_float("elu_alpha", None, "alpha of --act=elu (default 1).")
  flags.DEFINE_float("swish_beta", None, "beta of --act=swish (default 1).")
  flags.DEFINE_integer("maxout_k", None, "Linear pieces per unit of "
                       "--act=maxout (default 2).")
  _at_least("depth", 1, "an integer")
  _at_least("width", 1, "an integer")
  _at_least("sigma_w", 0, "a number")
  _at_least("sigma_b", 0, "a number")
  _at_least("maxout_k", 2, "an integer",
            " (maxout takes the max of k >= 2 linear pieces)")
  flags.register_validator(
      "leaky_slope", lambda v: v is None or 0 <= v < 1,
      message="--leaky_slope must be in [0, 1)")
  flags.register_validator("elu_alpha", lambda v: v is None or v > 0,
                           message="--elu_alpha must be > 0")


def activation_params(name: str | None = None) -> dict:
  """The activation parameters set on the command line for activation
  ``name`` (default: the single ``--act``).

  Exits with a one-line error when a parameter flag belongs to none of the
  chosen activations, and when --sigma_w is given with an initializer that
  fixes its own scale.
  """
  chosen = FLAGS.act if isinstance(FLAGS.act, list) else [FLAGS.act]
  name = name or chosen[0]
  params = {}
  for flag, (act, param) in ACT_PARAM_FLAGS.items():
    value = FLAGS[flag].value
    if value is None:
      continue
    if act not in chosen:
      fail(f"--{flag} applies only to --act={act}, not --act="
           f"{','.join(chosen)}")
    if act == name:
      params[param] = value
  if FLAGS.sigma_w is not None and FLAGS.init not in initializers.TAKES_SIGMA_W:
    fail(f"--sigma_w applies only to --init="
         f"{'|'.join(sorted(initializers.TAKES_SIGMA_W))}; --init="
         f"{FLAGS.init} fixes its own scale")
  return params
