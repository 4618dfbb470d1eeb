"""What ``experiments.sweep`` does with its flags: the sweep they describe,
its run on every device, its outputs and ``--replot``."""

import os
import sys

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import progress as progress_lib
from vgrad.cli import training_run
from vgrad.io import rundir
from vgrad.plots import style
from vgrad.plots import sweep_plots
from vgrad.studies import footprint
from vgrad.studies import sweep

FLAGS = flags.FLAGS


# The flags of experiments.sweep (absl's own, like --verbosity, are not).
_OWN_FLAGS = ("task", "acts", "inits", "depths", "widths", "seeds", "seed",
              "sigma_w2", "sigma_b2", "num_inputs", "dataset", "data_dir",
              "download", "optimizer", "lr", "momentum", "steps",
              "batch_size", "devices", "out_dir", "replot", "distributed",
              "coordinator_address", "num_processes", "process_id")
SPECTRUM_ONLY = ("num_inputs",)
TRAIN_ONLY = ("dataset", "data_dir", "download", "optimizer", "lr",
              "momentum", "steps", "batch_size")
DISTRIBUTED_ONLY = ("coordinator_address", "num_processes", "process_id")


def _ints(name: str) -> tuple[int, ...]:
  try:
    values = tuple(int(v) for v in FLAGS[name].value)
  except ValueError:
    cli.fail(f"--{name} must be comma-separated integers, got "
             f"{','.join(FLAGS[name].value)}")
  if any(v < 1 for v in values):
    cli.fail(f"--{name} must be integers >= 1, got "
             f"{','.join(FLAGS[name].value)}")
  return values


def _check_flag_conflicts() -> None:
  other = {"spectrum": TRAIN_ONLY, "train": SPECTRUM_ONLY}[FLAGS.task]
  for name in other:
    if FLAGS[name].present:
      cli.fail(f"--{name} does not apply to --task={FLAGS.task}")
  if not FLAGS.distributed:
    for name in DISTRIBUTED_ONLY:
      if FLAGS[name].present:
        cli.fail(f"--{name} applies only with --distributed")


def make_config() -> sweep.SweepConfig:
  """The sweep the flags describe; one-line error for a bad one."""
  _check_flag_conflicts()
  config = sweep.SweepConfig(
      task=FLAGS.task, acts=tuple(FLAGS.acts), inits=tuple(FLAGS.inits),
      depths=_ints("depths"), widths=_ints("widths"), seeds=FLAGS.seeds,
      seed=FLAGS.seed, sigma_w2=FLAGS.sigma_w2, sigma_b2=FLAGS.sigma_b2,
      num_inputs=FLAGS.num_inputs, dataset=FLAGS.dataset,
      optimizer=FLAGS.optimizer, lr=FLAGS.lr, momentum=FLAGS.momentum,
      steps=FLAGS.steps, batch_size=FLAGS.batch_size)
  try:
    sweep.check_config(config)
  except ValueError as e:
    flag = _flag_of(str(e))
    cli.fail(f"--{flag}: {str(e).removeprefix(f'{flag}: ')}" if flag else e)
  return config


def check_memory(config: sweep.SweepConfig) -> None:
  """The largest batch against the memory (:func:`cli.check_memory`); after
  ``jax.distributed.initialize``, which must come before JAX's backend
  starts (the check asks it for the device's memory)."""
  cli.check_memory(footprint.sweep(config), footprint.SWEEP_FLAGS,
                   flops=footprint.sweep_flops(config))



def _flag_of(message: str) -> str | None:
  """The flag a library error names (its first word), if it is one."""
  word = message.split(" ", 1)[0].removesuffix(":")
  if word in _OWN_FLAGS:   # SweepConfig fields are named as their flags
    return word
  if message.startswith(("unknown activation", "activation")):
    return "acts"
  if message.startswith(("unknown initializer", "unknown init")):
    return "inits"
  return None


def default_out_dir(config: sweep.SweepConfig) -> str:
  """``runs/sweep/<task>-<8 hex digits of the settings>``: the same command
  finds the same directory again, so rerunning it resumes."""
  return os.path.join("runs", "sweep", f"{config.task}-"
                      f"{sweep.settings_digest(config.settings())}")


def initialize_distributed() -> None:
  """``jax.distributed.initialize`` with the --distributed flags given."""
  import jax  # pylint: disable=import-outside-toplevel
  kwargs = {k: FLAGS[k].value for k in DISTRIBUTED_ONLY
            if FLAGS[k].value is not None}
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError) as e:
    cli.fail(f"--distributed: jax.distributed.initialize failed: {e}")


def write_outputs(out_dir: str, config: sweep.SweepConfig,
                  rows: list[dict]) -> list[str]:
  """summary.md and sweep.png/pdf from the consolidated rows."""
  summary = os.path.join(out_dir, "summary.md")
  rundir.write_text(summary, sweep.format_summary(rows, config.task))
  fig = sweep_plots.plot_sweep(rows, config.task)
  return [summary] + style.save_figure(fig, os.path.join(out_dir, "sweep"))


def blow_ups(rows: list[dict], task: str) -> str | None:
  """A note counting the rows whose numbers blew up, or None."""
  if task == "spectrum":
    bad = [r for r in rows if not r["finite"]]
    what = "overflowed in the forward pass (finite=false, metrics nan)"
  else:
    bad = [r for r in rows if r["diverged_at"]]
    what = "diverged (NaN/Inf loss or update; diverged_at = the step)"
  if not bad:
    return None
  cells = sorted({r["cell"] for r in bad})
  return (f"note: {len(bad)} of {len(rows)} rows {what}: "
          + ", ".join(cells[:5]) + (f" and {len(cells) - 5} more cells"
                                    if len(cells) > 5 else ""))


def replot(out_dir: str) -> None:
  """--replot: the summary and figure from the saved cells alone."""
  given = [f"--{name}" for name in _OWN_FLAGS
           if name != "replot" and FLAGS[name].present]
  if given:
    cli.fail(f"--replot redraws a finished sweep; it takes no other flag "
             f"(got {', '.join(given)})")
  ignored = []
  try:
    record, rows = sweep.read_sweep(out_dir, ignored.append)
  except ValueError as e:
    cli.fail(f"--replot: {e}")
  for line in ignored:
    print(f"warning: {line}", file=sys.stderr)
  if not rows:
    cli.fail(f"--replot: {out_dir} holds no finished cell yet")
  config = sweep.SweepConfig(task=record["settings"]["task"])
  print(f"wrote {', '.join(write_outputs(out_dir, config, rows))}")
  if ignored:
    print(f"warning: {len(ignored)} cell file(s) ignored: the summary and "
          f"the figure leave those cells out; rerun the sweep (without "
          f"--replot) to recompute them", file=sys.stderr)


def run(config: sweep.SweepConfig) -> None:
  """Runs (or resumes) the sweep on every device (--devices), writes its
  outputs and prints the summary (process 0 only)."""
  import jax  # pylint: disable=import-outside-toplevel
  out_dir = FLAGS.out_dir or default_out_dir(config)
  if FLAGS.devices < 0 or FLAGS.devices > len(jax.devices()):
    cli.fail(f"--devices must be in [0, {len(jax.devices())}] (0 = all "
             f"devices JAX sees), got {FLAGS.devices}")
  dataset = None
  if config.task == "train":
    dataset = training_run.load(config.dataset, config.batch_size)
  total = len(sweep.cells(config))
  try:
    result = sweep.run_sweep(config, out_dir,
                             num_devices=FLAGS.devices or None,
                             dataset=dataset,
                             progress=(progress_lib.ProgressBar()
                                       if jax.process_index() == 0 else None),
                             command=cli.command_line())
  except ValueError as e:
    cli.fail(f"--out_dir: {e}" if str(e).startswith("out_dir") else e)
  except OSError as e:
    cli.fail(f"--out_dir: cannot write {out_dir}: {e}")
  if jax.process_index() != 0:
    return
  paths = write_outputs(out_dir, config, result.rows)
  print(sweep.format_summary(result.rows, config.task))
  rate = (f", {60 * result.computed / result.seconds:.1f} cells/min"
          if result.computed and result.seconds > 0 else "")
  print(f"{total} cells x {config.seeds} seeds: computed {result.computed}, "
        f"reused {result.reused} from earlier runs, in {result.seconds:.1f} s "
        f"on {result.devices} {jax.devices()[0].platform} device(s){rate}")
  blown = blow_ups(result.rows, config.task)
  if blown:
    print(blown)
  print(f"wrote {os.path.join(out_dir, sweep.CSV_NAME)} "
        f"({len(result.rows)} rows), {', '.join(paths)}")
  sys.stdout.flush()
