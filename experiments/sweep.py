r"""Sweep a grid of activation x init x depth x width x seed, on every device.

    python -m experiments.sweep --task=spectrum --acts=tanh,relu,sigmoid \
        --inits=glorot_normal,he_normal,orthogonal --depths=5,10,20,40

computes each cell's exact input-output Jacobian spectrum for ``--seeds``
seeds (``--task=spectrum``), or trains it on a dataset (``--task=train``,
Optax, ``--steps`` steps), vmapping seeds and sharding the cells over every
device JAX sees (``--devices`` to use fewer). See ``vgrad/sweep.py``.

Resumable: every finished cell is written atomically to
``OUT/cells/<cell>.json``; rerunning the same command (same ``--out_dir``,
by default derived from the settings) computes only the missing cells, so a
killed sweep loses at most the cells in flight. A larger grid with the same
settings reuses the finished cells. At the end ``OUT/results.csv`` holds
one row per (cell, seed) (``pandas.read_csv`` reads it as is),
``OUT/summary.md`` the per-cell mean and std, and ``OUT/sweep.png/pdf``
the figure.

On a cluster, start the same command on every host with
``--distributed``; see README.md ("Sweeps on a cluster").
"""

import os
import sys

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import training_run
from vgrad.cli import progress as progress_lib
from vgrad.training import data
from vgrad.io import rundir
from vgrad.plots import style
from vgrad.studies import sweep
from vgrad.plots import sweep_plots
from vgrad.training import train

FLAGS = flags.FLAGS

_DEFAULT = sweep.SweepConfig()
flags.DEFINE_enum("task", "spectrum", list(sweep.TASKS), "What each cell "
                  "computes: the input-output Jacobian spectrum, or training.")
flags.DEFINE_list("acts", list(_DEFAULT.acts), "Activations; name:value sets "
                  "a parameter, e.g. leaky_relu:0.3, maxout:3.")
flags.DEFINE_list("inits", list(_DEFAULT.inits), "Initialisers.")
flags.DEFINE_list("depths", [str(d) for d in _DEFAULT.depths],
                  "Hidden-layer counts.")
flags.DEFINE_list("widths", [str(w) for w in _DEFAULT.widths],
                  "Hidden-layer widths.")
flags.DEFINE_integer("seeds", _DEFAULT.seeds, "Seeds per cell (vmapped).")
flags.DEFINE_integer("seed", 0, "First seed; seed s uses key(seed + s).")
flags.DEFINE_float("sigma_w", None, "Weight scale for --inits=gaussian or "
                   "orthogonal.")
flags.DEFINE_float("sigma_b", None, "Bias standard deviation (default: zero "
                   "biases).")
flags.DEFINE_integer("num_inputs", _DEFAULT.num_inputs, "--task=spectrum: "
                     "inputs x ~ N(0, I) probed per seed.")
flags.DEFINE_enum("dataset", _DEFAULT.dataset, sorted(data.DATASETS),
                  "--task=train: training data.")
training_run.define_dataset_source_flags()
flags.DEFINE_enum("optimizer", _DEFAULT.optimizer, sorted(train.OPTIMIZERS),
                  "--task=train: Optax optimizer.")
flags.DEFINE_float("lr", _DEFAULT.lr, "--task=train: learning rate.")
flags.DEFINE_float("momentum", _DEFAULT.momentum, "--task=train: momentum "
                   "of --optimizer=momentum.")
flags.DEFINE_integer("steps", _DEFAULT.steps, "--task=train: steps.")
flags.DEFINE_integer("batch_size", _DEFAULT.batch_size, "--task=train: "
                     "minibatch size; 0 = full batch.")
flags.DEFINE_integer("devices", 0, "Devices to shard cells over; 0 = all.")
flags.DEFINE_string("out_dir", None, "Sweep directory (default runs/sweep/"
                    "<task>-<hash of the settings>); an existing one with the "
                    "same settings is resumed.")
flags.DEFINE_string("replot", None, "Redraw summary.md and sweep.png/pdf of "
                    "this sweep directory from its saved cells; computes "
                    "nothing.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() "
                  "first (multi-host: run the same command on every host).")
flags.DEFINE_string("coordinator_address", None, "--distributed: host:port "
                    "of process 0 (default: detected from the cluster).")
flags.DEFINE_integer("num_processes", None, "--distributed: processes.")
flags.DEFINE_integer("process_id", None, "--distributed: this process.")

# The flags of this entry point (absl's own, like --verbosity, are not).
_OWN_FLAGS = ("task", "acts", "inits", "depths", "widths", "seeds", "seed",
              "sigma_w", "sigma_b", "num_inputs", "dataset", "data_dir",
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
      seed=FLAGS.seed, sigma_w=FLAGS.sigma_w, sigma_b=FLAGS.sigma_b,
      num_inputs=FLAGS.num_inputs, dataset=FLAGS.dataset,
      optimizer=FLAGS.optimizer, lr=FLAGS.lr, momentum=FLAGS.momentum,
      steps=FLAGS.steps, batch_size=FLAGS.batch_size)
  try:
    sweep.check_config(config)
  except ValueError as e:
    cli.fail(f"--{_flag_of(str(e))}: {e}" if _flag_of(str(e)) else e)
  return config


def _flag_of(message: str) -> str | None:
  """The flag a library error names (its first word), if it is one."""
  word = message.split(" ", 1)[0]
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


def _initialize_distributed() -> None:
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
  try:
    record, rows = sweep.read_sweep(out_dir)
  except ValueError as e:
    cli.fail(f"--replot: {e}")
  if not rows:
    cli.fail(f"--replot: {out_dir} holds no finished cell yet")
  config = sweep.SweepConfig(task=record["settings"]["task"])
  print(f"wrote {', '.join(write_outputs(out_dir, config, rows))}")


def main(argv):
  del argv
  if FLAGS.replot is not None:
    replot(FLAGS.replot)
    return
  config = make_config()   # bad flags fail before any cluster start-up
  if FLAGS.distributed:
    _initialize_distributed()
  import jax  # pylint: disable=import-outside-toplevel
  out_dir = FLAGS.out_dir or default_out_dir(config)
  if FLAGS.devices < 0 or FLAGS.devices > len(jax.devices()):
    cli.fail(f"--devices must be in [0, {len(jax.devices())}] (0 = all "
             f"devices JAX sees), got {FLAGS.devices}")
  dataset = None
  if config.task == "train":
    dataset = training_run.load(config.dataset)
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


if __name__ == "__main__":
  cli.run(main)
