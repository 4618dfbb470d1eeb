"""What ``experiments.deep_trainability`` builds from its flags: the grid,
the run directory it fills (or resumes), its outputs and ``--replot``."""

import glob
import os
import sys
import time

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import progress as progress_lib
from vgrad.cli import reproduction
from vgrad.cli import training_run
from vgrad.io import rundir
from vgrad.io import schemas
from vgrad.studies import deep_trainability as dt
from vgrad.studies import footprint

FLAGS = flags.FLAGS

ROOT = os.path.join("runs", "deep_trainability")
# The config fields the flags set (flag name = field name).
CONFIG_FLAGS = ("arms", "depths", "width", "seeds", "seed", "dataset",
                "optimizer", "lr", "momentum", "batch_size", "steps",
                "eval_every", "threshold", "jacobian_inputs")
# What --quick sets (a grid for tests: seconds on a CPU). TAT's leaky ReLU
# is solved only from depth 16 on (its default target c(0) = 0.9 needs it).
QUICK = {"depths": (16, 24), "width": 16, "seeds": 2, "batch_size": 32,
         "steps": 40, "eval_every": 10, "jacobian_inputs": 2}
QUICK_SIZES = ("depths", "width", "seeds", "batch_size", "steps",
               "eval_every", "jacobian_inputs")
STUDY_FLAGS = CONFIG_FLAGS + ("quick", "data_dir", "download", "out_dir",
                              "memory_gb")
FILES = reproduction.output_names(schemas.DEEP_TRAINABILITY)


def _ints(name: str) -> tuple[int, ...]:
  raw = FLAGS[name].value
  try:
    values = tuple(int(v) for v in raw)
  except ValueError:
    values = ()
  if not raw or not values or any(v < 1 for v in values):
    cli.fail(f"--{name} must be comma-separated integers >= 1, got "
             f"{','.join(raw) if raw else 'an empty list'}")
  return values


def _check_conflicts() -> None:
  if FLAGS.quick:
    given = [f"--{n}" for n in QUICK_SIZES if FLAGS[n].present]
    if given:
      cli.fail(f"--quick sets the grid's sizes ({', '.join(QUICK_SIZES)}); "
               f"drop --quick or {' '.join(given)}")
  if FLAGS["momentum"].present and FLAGS.optimizer != "momentum":
    cli.fail(f"--momentum applies only to --optimizer=momentum, not "
             f"--optimizer={FLAGS.optimizer}")
  if FLAGS.dataset != "mnist":
    for name in ("data_dir", "download"):
      if FLAGS[name].present:
        cli.fail(f"--{name} applies only to --dataset=mnist, not "
                 f"--dataset={FLAGS.dataset}")


def make_config() -> dt.TrainabilityConfig:
  """The grid the flags describe (library defaults, or :data:`QUICK` with
  --quick, for the flags not given); one-line error for a bad one."""
  _check_conflicts()
  values = dict(QUICK) if FLAGS.quick else {}
  for name in CONFIG_FLAGS:
    if FLAGS[name].present:
      values[name] = FLAGS[name].value
  if FLAGS["depths"].present:
    values["depths"] = _ints("depths")
  if FLAGS["arms"].present:
    if not FLAGS.arms:
      cli.fail(f"--arms must name at least one arm of: {', '.join(dt.ARMS)}")
    values["arms"] = tuple(FLAGS.arms)
  config = dt.TrainabilityConfig(**values)
  try:
    dt.check_config(config)
  except ValueError as e:
    field = str(e).split(" ", 1)[0].removesuffix(":")
    shown = f"--{field}" if field in CONFIG_FLAGS else None
    if shown == "--depths":
      shown += "=" + ",".join(map(str, config.depths))
    message = str(e).removeprefix(f"{field}: ").removeprefix(f"{field} ")
    cli.fail(f"{shown}: {message}" if shown else e)
  return config


def memory_terms(config: dt.TrainabilityConfig) -> list[footprint.Term]:
  """The largest cell: its seeds' parameters, gradients and optimizer
  state, a step's activations and the training set."""
  return footprint.training(max(config.depths), config.width,
                            config.dataset, config.batch_size, config.seeds,
                            config.optimizer)


def flops(config: dt.TrainabilityConfig) -> float:
  return len(config.arms) * sum(footprint.training_flops(
      d, config.width, config.dataset, config.batch_size, config.seeds,
      config.steps) for d in config.depths)


def _finished(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "results.json"))


def resolve_out_dir(config: dt.TrainabilityConfig) -> tuple[str, str]:
  """``(out_dir, "new" | "resume")``: --out_dir, else the newest run under
  :data:`ROOT` of the same settings (so rerunning the same command
  resumes it, or redraws it when finished), else a fresh
  ``ROOT/<time>_<dataset>_<fingerprint>``. One-line error for a
  --out_dir of other settings or one that cannot be written."""
  fp = dt.fingerprint(config.settings())
  if FLAGS.out_dir:
    out_dir = FLAGS.out_dir
  else:
    runs = sorted(glob.glob(os.path.join(ROOT, f"*_{config.dataset}_{fp}*")))
    runs = [r for r in runs if os.path.isdir(r)]
    out_dir = (runs[-1] if runs else
               rundir.default_run_dir(ROOT, f"{config.dataset}_{fp}"))
  try:
    state = dt.check_run_dir(out_dir, config)
  except dt.SettingsMismatchError as e:
    cli.fail(f"--out_dir: {e}")
  if state == "new":
    with cli.out_dir_errors():
      if os.path.isdir(out_dir):   # an empty folder: it must be writable
        if not os.access(out_dir, os.W_OK | os.X_OK):
          raise rundir.RunDirNotWritableError(
              f"cannot write in run directory {out_dir}")
      else:
        rundir.check_writable(out_dir)
  elif not os.access(out_dir, os.W_OK | os.X_OK):
    cli.fail(f"--out_dir: cannot write in {out_dir} (read-only)")
  return out_dir, state


def _summary_lines(results: dict) -> str:
  """The report's speed-up and accuracy tables, for the terminal."""
  text = dt.report.format_report(results)
  start = text.index("## Speed-up")
  end = text.index("## Steps to test")
  return text[start:end].rstrip() + "\n"


def run(config: dt.TrainabilityConfig) -> None:
  """Runs or resumes the grid into its run directory and writes the
  results, report and figure."""
  import jax  # pylint: disable=import-outside-toplevel
  dataset = training_run.load(config.dataset, config.batch_size)
  out_dir, state = resolve_out_dir(config)
  cli.check_memory(memory_terms(config), flops=flops(config))
  total = len(config.arms) * len(config.depths)
  print(f"{'resuming' if state == 'resume' else 'run directory'}: "
        f"{out_dir} ({total} cells: {len(config.arms)} arms x depths "
        f"{','.join(map(str, config.depths))}; {config.seeds} seeds each)",
        flush=True)
  warnings = []
  start = time.perf_counter()
  with cli.out_dir_errors():
    study = dt.run_study(
        config, out_dir, dataset, progress=progress_lib.ProgressBar(),
        warn=lambda line: (warnings.append(line),
                           print(f"warning: {line}", file=sys.stderr)),
        extra={"command": cli.command_line()})
    results = study.results | {
        "seconds": time.perf_counter() - start,
        "computed": study.computed, "reused": study.reused,
        "platform": jax.devices()[0].platform,
        "command": cli.command_line()}
    rundir.write_json(os.path.join(out_dir, "results.json"), results)
    reproduction.write_outputs(out_dir, results)
  print(_summary_lines(results), end="")
  print(f"computed {study.computed} cells, reused {study.reused}, in "
        f"{results['seconds']:.1f} s on {results['platform']}; wrote "
        f"{out_dir}/{FILES} and cells/")


def replot(run_dir: str) -> None:
  """--replot: the figure and report of a run from its results.json."""
  reproduction.replot(run_dir, STUDY_FLAGS, schemas.DEEP_TRAINABILITY)
