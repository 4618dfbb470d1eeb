"""Flag helpers shared by the experiments: network flags and one-line errors.

Every bad command line ends the same way: one line on stderr naming the flag
and the valid values, exit status 2, no traceback, nothing written. A flag
that was renamed (``RENAMED_FLAGS``: ``--sigma_w`` is now ``--sigma_w2``, a
variance) ends the same way, with a line naming the new flag and how to
convert the old value.
"""

import contextlib
import json
import math
import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from vgrad.io import records
from vgrad.io import rundir
from vgrad.nn import activations
from vgrad.nn import config as nn_config
from vgrad.nn import initializers
from vgrad.studies import footprint
from vgrad.theory import critical

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
  define_memory_flag()


def define_memory_flag():
  """--memory_gb: the memory a run may use. Runs whose lower-bound
  estimate (:mod:`vgrad.studies.footprint`) exceeds it are refused before
  any work."""
  flags.DEFINE_float("memory_gb", None, "Memory in GB this run may use "
                     "(default: this machine's, or the accelerator's). A run "
                     "whose estimate exceeds it is refused before it starts; "
                     "give a larger value to run it anyway.")
  flags.register_validator("memory_gb", lambda v: v is None or v > 0,
                           message="--memory_gb must be > 0")


def machine_memory() -> tuple[float, str]:
  """``(bytes, where)``: the memory a run may use here. On an accelerator
  its memory (JAX's ``bytes_limit``); on CPU the physical memory or the
  cgroup's limit where one is set (containers, CI), whichever is smaller;
  ``math.inf`` where none can be read."""
  import jax  # pylint: disable=g-import-not-at-top  (the backend, once)
  if jax.default_backend() != "cpu":
    stats = jax.devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
      return float(stats["bytes_limit"]), f"the {jax.devices()[0].device_kind}"
  limits = []
  try:
    limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
  except (ValueError, OSError, AttributeError):
    pass
  for path in ("/sys/fs/cgroup/memory.max",
               "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    try:
      with open(path) as f:
        text = f.read().strip()
      if text.isdigit() and int(text) < 2 ** 60:
        limits.append(int(text))
    except OSError:
      pass
  return (float(min(limits)) if limits else math.inf), "this machine"


def check_memory(terms: list[footprint.Term], names=None,
                 fv: flags.FlagValues = FLAGS,
                 flops: float | None = None) -> None:
  """One line naming the flag of the largest term when the run's memory
  (a lower bound, :mod:`vgrad.studies.footprint`) exceeds --memory_gb or,
  without it, the machine's memory; before any work. ``names``: the flag
  of a term's setting where it differs (``{"width": "widths"}``). A run
  that fits but whose ``flops`` take long prints a note on stderr
  (:func:`vgrad.studies.footprint.time_note`)."""
  need = footprint.total(terms)
  given = fv["memory_gb"].value if "memory_gb" in fv else None
  if given is not None:
    have = given * footprint.GB
    limit, advice = f"--memory_gb={given:g}", "raise --memory_gb"
  else:
    have, where = machine_memory()
    limit = f"the {have / footprint.GB:.3g} GB of memory {where} has"
    advice = f"pass --memory_gb={math.ceil(need / footprint.GB)}"
  if need <= have:
    note = None if flops is None else footprint.time_note(flops)
    if note:
      print(f"note: {note}", file=sys.stderr)
    return
  flag = footprint.largest(terms).setting
  flag = (names or {}).get(flag, flag)
  value = fv[flag].value if flag in fv else None
  if isinstance(value, list):
    value = ",".join(map(str, value))
  shown = f"--{flag}" + ("" if value is None else f"={value}")
  fail(f"{shown}: this run needs {footprint.describe(terms)}, more than "
       f"{limit}; lower it, or {advice} to try anyway")


@contextlib.contextmanager
def out_dir_errors():
  """A run directory that cannot be created or written (a
  :class:`vgrad.io.rundir.RunDirError` before the work, any ``OSError``
  while the run is written) ends in one line naming --out_dir."""
  try:
    yield
  except OSError as e:
    fail(f"--out_dir: {e}")


def check_out_dir(out_dir: str, overwrite: bool) -> None:
  """:func:`vgrad.io.rundir.check_writable` before any work, its refusal
  as one line naming --out_dir."""
  with out_dir_errors():
    rundir.check_writable(out_dir, overwrite)


def check_output_folder(flag: str, folder: str) -> None:
  """One line naming ``flag`` unless ``folder`` (``""``: the working
  folder) exists, is a folder and can be written: before any drawing."""
  folder = folder or "."
  if not os.path.exists(folder):
    fail(f"{flag}: folder {folder} does not exist")
  if not os.path.isdir(folder):
    fail(f"{flag}: {folder} is not a folder")
  if not os.access(folder, os.W_OK | os.X_OK):
    fail(f"{flag}: cannot write in {folder} (read-only)")


def read_run_file(run_dir: str, name: str, flag: str = "--run_dir") -> dict:
  """``run_dir/name`` parsed as JSON, or a one-line error naming ``flag``."""
  path = os.path.join(run_dir, name)
  try:
    with open(path) as f:
      # Files written before the variance convention read as now.
      return records.upgrade_keys(json.load(f))
  except (OSError, json.JSONDecodeError) as e:
    fail(f"{flag}: cannot read {path}: {e}")


def _squared(what: str, symbol: str):
  """How an old standard-deviation flag's value converts to the variance."""
  def hint(old: str, value: str | None) -> str:
    try:
      square = f"{float(value) ** 2:g}"
    except (TypeError, ValueError):
      return f"the {what}, {symbol}: the square of the old value"
    return f"the {what}, {symbol} = {value}^2 = {square} for --{old}={value}"
  return hint


# Old flag -> (new flag, hint(old, value) on converting the old value). An
# entry point that defines the new flag answers the old one with one line
# (before any flag is parsed, so nothing runs and nothing is written).
RENAMED_FLAGS = {
    "sigma_w": ("sigma_w2", _squared("weight variance", "sigma_w^2")),
    "sigma_b": ("sigma_b2", _squared("bias variance", "sigma_b^2")),
    "weights": ("ensembles", lambda old, value: (
        "the weight ensembles, the same names"
        + (f": --ensembles={value}" if value else ""))),
}


def renamed_flag_error(argv: list[str]) -> str | None:
  """The one-line error for the first renamed flag in ``argv``, or None.

  ``--sigma_w=1.5``, ``--sigma_w 1.5`` and ``-sigma_w=1.5`` all count; only
  flags this program defines under their new name (and not the old).
  """
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == "--":
      break
    if not arg.startswith("-"):
      continue
    name, eq, value = arg.lstrip("-").partition("=")
    if name not in RENAMED_FLAGS or name in FLAGS:
      continue
    new, hint = RENAMED_FLAGS[name]
    if new not in FLAGS:
      continue
    if not eq:
      value = args[i + 1] if i + 1 < len(args) else None
    return f"--{name} was renamed: pass --{new} ({hint(name, value)})"
  return None


def non_finite_flag_error(flag_values=FLAGS) -> str | None:
  """The one-line error for the first float flag set to NaN or +-Inf, or
  None. absl's float parser accepts ``nan`` and ``inf``; no vgrad flag
  means either (a learning rate of inf trains to NaN, a variance of nan
  would silently become 0 in a comparison)."""
  for name in sorted(flag_values):
    value = flag_values[name].value
    for item in value if isinstance(value, (list, tuple)) else [value]:
      if isinstance(item, float) and not math.isfinite(item):
        return f"--{name} must be a finite number, got {item}"
  return None


def finite_float(flag: str, text: str) -> float:
  """``float(text)`` for an item of a list flag (ValueError when it is not
  a number: the caller says what the flag takes), or a one-line error
  naming ``flag`` when it is NaN or Inf."""
  value = float(text)
  if not math.isfinite(value):
    fail(f"--{flag} must hold finite numbers, got {text}")
  return value


def _non_finite_argument(argv: list[str]) -> str | None:
  """:func:`non_finite_flag_error` for a float flag given on the command
  line, before absl parses it (its range validators would otherwise
  answer ``--lr=nan`` with ``--lr must be > 0``)."""
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == "--":
      break
    name, eq, value = arg.lstrip("-").partition("=")
    if not arg.startswith("-") or name not in FLAGS:
      continue
    if not isinstance(FLAGS[name].parser, flags.FloatParser):
      continue
    if not eq:
      value = args[i + 1] if i + 1 < len(args) else ""
    try:
      number = float(value)
    except ValueError:
      continue
    if not math.isfinite(number):
      return f"--{name} must be a finite number, got {value}"
  return None


def _parse_flags(argv):
  renamed = renamed_flag_error(argv) or _non_finite_argument(argv)
  if renamed:
    fail(renamed)
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    fail(e)
  non_finite = non_finite_flag_error()
  if non_finite:
    fail(non_finite)
  return rest


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


def _checked_by(name: str, check) -> None:
  """A validator of flag ``name`` that runs ``check(value)`` (one of
  :mod:`vgrad.nn.config`'s field checks): its ConfigError's reason becomes
  the flag error, ``flag --depth=0: must be an integer >= 1, got 0``."""
  def validator(value):
    if value is not None:
      try:
        check(value)
      except nn_config.ConfigError as e:
        raise flags.ValidationError(e.reason) from None
    return True
  flags.register_validator(name, validator)


def define_variance_flags(init_flag: str = "init"):
  """--sigma_w2 and --sigma_b2: the weight and bias VARIANCES, the papers'
  sigma_w^2 and sigma_b^2 (:mod:`vgrad.nn.config`)."""
  flags.DEFINE_float("sigma_w2", None, "Weight variance sigma_w^2 >= 0 of "
                     f"--{init_flag}=gaussian (Var W = sigma_w2/fan_in) or "
                     "orthogonal (gain sqrt(sigma_w2)); default 1.")
  flags.DEFINE_float("sigma_b2", None, "Bias variance sigma_b^2 >= 0: b ~ "
                     "N(0, sigma_b2). Default: zero biases.")
  for name in ("sigma_w2", "sigma_b2"):
    _checked_by(name, lambda v, name=name: nn_config.check_variance(name, v))


def define_network_flags(*, act: str, init: str, depth: int, width: int,
                         multi_act: bool = False):
  """Defines --act, --init, --depth, --width, --sigma_w2, --sigma_b2 and the
  activation-parameter flags, with validators (:mod:`vgrad.nn.config`'s
  checks; :func:`network_config` checks them together).

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
  flags.DEFINE_enum("init", init,
                    sorted(initializers.INITIALIZERS) + [CRITICAL],
                    "Weight initializer (see vgrad/nn/initializers.py); "
                    "critical: Gaussian weights and biases at the point of "
                    "the critical line chi_1 = 1 with --sigma_b2 (default "
                    "0) or --q_star (vgrad.critical_point).")
  flags.DEFINE_float("q_star", None, "Pre-activation length q* of "
                     "--init=critical (instead of --sigma_b2), > 0.")
  flags.DEFINE_integer("depth", depth, "Number of hidden layers (affine + "
                       "activation), >= 1.")
  flags.DEFINE_integer("width", width, "Units per hidden layer, >= 1.")
  define_variance_flags()
  flags.DEFINE_float("leaky_slope", None, "Negative slope of --act=leaky_relu "
                     "(default 0.01; the lectures also use 0.1).")
  flags.DEFINE_float("elu_alpha", None, "alpha of --act=elu (default 1).")
  flags.DEFINE_float("swish_beta", None, "beta of --act=swish (default 1).")
  flags.DEFINE_integer("maxout_k", None, "Linear pieces per unit of "
                       "--act=maxout (default 2).")
  flags.DEFINE_float("shaping_target", None, "The whole-net target of a "
                     "transformed --act (solved for --depth): dks_*: "
                     "C_f'(1) = zeta > 1 (default 1.5); tat_leaky_relu: "
                     "C_f(0) = eta in (0, 1) (default 0.9); tat_tanh, "
                     "tat_softplus: C_f''(1) = tau > 0 (default 0.3).")
  for name in ("depth", "width"):
    _checked_by(name, lambda v, name=name: nn_config.check_count(name, v, 1))
  _at_least("maxout_k", 2, "an integer",
            " (maxout takes the max of k >= 2 linear pieces)")
  flags.register_validator(
      "leaky_slope", lambda v: v is None or 0 <= v < 1,
      message="--leaky_slope must be in [0, 1)")
  flags.register_validator("elu_alpha", lambda v: v is None or v > 0,
                           message="--elu_alpha must be > 0")


CRITICAL = "critical"


def init_settings(act: activations.Activation) -> tuple[str, float | None,
                                                        float | None]:
  """``(init, sigma_w2, sigma_b2)`` of the flags for activation ``act``:
  as given, or for ``--init=critical`` Gaussian weights and biases at the
  point of chi_1 = 1 with ``--sigma_b2`` (default 0) or ``--q_star``
  (:func:`vgrad.critical_point`). One-line error for a conflicting flag
  or where the activation has no such point."""
  if FLAGS.init != CRITICAL:
    if FLAGS.q_star is not None:
      fail(f"--q_star applies only to --init=critical, not "
           f"--init={FLAGS.init}")
    return FLAGS.init, FLAGS.sigma_w2, FLAGS.sigma_b2
  if FLAGS.sigma_w2 is not None:
    fail("--sigma_w2: --init=critical chooses it (chi_1 = 1); give "
         "--sigma_b2 or --q_star instead")
  if FLAGS.q_star is not None and FLAGS.sigma_b2 is not None:
    fail("--q_star and --sigma_b2 both fix --init=critical's point; give "
         "one")
  if FLAGS.q_star is not None and not (math.isfinite(FLAGS.q_star)
                                       and FLAGS.q_star > 0):
    fail(f"--q_star must be a finite number > 0, got {FLAGS.q_star}")
  try:
    point = (critical.critical_point(act, q_star=FLAGS.q_star)
             if FLAGS.q_star is not None else
             critical.critical_point(act, sigma_b2=FLAGS.sigma_b2 or 0.0))
  except ValueError as e:
    fail(f"--init=critical: {e}")
  return "gaussian", point.sigma_w2, point.sigma_b2


def activation_params(name: str | None = None) -> dict:
  """The activation parameters set on the command line for activation
  ``name`` (default: the single ``--act``), once :func:`network_config`
  has checked the network they belong to."""
  return network_config(name).act_params


def network_config(name: str | None = None) -> nn_config.NetworkConfig:
  """The network the flags of :func:`define_network_flags` describe, with
  activation ``name`` (default: the single ``--act``), validated by
  :class:`vgrad.nn.config.NetworkConfig`.

  Exits with a one-line error naming the flag for a bad setting (say,
  --sigma_w2 with an initializer that fixes its own scale), and when a
  parameter flag belongs to none of the chosen activations.
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
  if FLAGS.shaping_target is not None:
    shaped = [a for a in chosen if a in activations.TRANSFORMED]
    if not shaped:
      fail(f"--shaping_target applies only to a transformed --act ("
           f"{', '.join(sorted(activations.TRANSFORMED))}), not --act="
           f"{','.join(chosen)}")
    if name in activations.TRANSFORMED:
      params[activations.TRANSFORMED[name][2]] = FLAGS.shaping_target
  try:
    activation = activations.get_activation(
        name, **activations.with_depth(name, params, FLAGS.depth))
  except ValueError as e:
    given = (f" --shaping_target={FLAGS.shaping_target:g}"
             if name in activations.TRANSFORMED
             and FLAGS.shaping_target is not None else "")
    fail(f"--act={name}{given} --depth={FLAGS.depth}: {e}"
         if name in activations.TRANSFORMED else f"--act={name}: {e}")
  init, sigma_w2, sigma_b2 = init_settings(activation)
  try:
    return nn_config.NetworkConfig(
        act=name, init=init, depth=FLAGS.depth, width=FLAGS.width,
        sigma_w2=sigma_w2, sigma_b2=sigma_b2, act_params=params)
  except nn_config.ConfigError as e:
    flag = e.field
    if flag == "act_params":   # the flag that set the parameter
      flag = next((f for f, (a, _) in ACT_PARAM_FLAGS.items() if a == name),
                  "act")
    fail(f"--{flag}: {e.reason}")
