"""What ``experiments.activation_table`` does: its flags, the sweep of each
dataset's table, the table's files and ``--replot``."""

import os
import sys

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import progress as progress_lib
from vgrad.io import rundir
from vgrad.plots import activation_table_plots
from vgrad.plots import style
from vgrad.studies import activation_table
from vgrad.studies import footprint
from vgrad.studies import sweep
from vgrad.training import data
from vgrad.training import train

FLAGS = flags.FLAGS


DATASETS = ("digits", "mnist")
# Defaults: Mishkin & Matas' SGD with momentum 0.9 and lr 0.01, a depth-10
# MLP; chosen so that good combinations reach ~0.95+ test accuracy on
# digits within the step budget (measured; see the module docstring).
DEPTH = 10
WIDTH = 64
SEEDS = 3
STEPS = 2000
LR = 0.01
MOMENTUM = 0.9
BATCH_SIZE = 64
OPTIMIZER = "momentum"


def define_flags(fv: flags.FlagValues = FLAGS) -> None:
  """``experiments.activation_table``'s flags, on ``fv``. Defined only
  when run as a program (or by a test, on its own FlagValues), so importing
  this module defines nothing."""
  def integer(name, default, help_text, lower):
    flags.DEFINE_integer(name, default, help_text, lower_bound=lower,
                         flag_values=fv)

  integer("depth", DEPTH, "Hidden layers (affine + activation), >= 1 "
          "(the table is meant for 10 to 20).", 1)
  integer("width", WIDTH, "Units per hidden layer, >= 1.", 1)
  integer("seeds", SEEDS, "Seeds per cell (vmapped), >= 1.", 1)
  integer("steps", STEPS, "Training steps, >= 1.", 1)
  integer("batch_size", BATCH_SIZE, "Minibatch size; 0 = full batch.", 0)
  integer("devices", 0, "Devices to shard cells over; 0 = all.", 0)
  flags.DEFINE_float("lr", LR, "Learning rate, > 0.", flag_values=fv)
  flags.DEFINE_enum("optimizer", OPTIMIZER, sorted(train.OPTIMIZERS),
                    "Optax optimizer.", flag_values=fv)
  flags.DEFINE_float("momentum", MOMENTUM, "Momentum of --optimizer="
                     "momentum, in [0, 1).", flag_values=fv)
  flags.DEFINE_list("acts", list(activation_table.ACTS), "Rows to compute "
                    "(a subset of the table's): "
                    + ", ".join(activation_table.ACTS), flag_values=fv)
  flags.DEFINE_list("inits", list(activation_table.INITS), "Columns to "
                    "compute (a subset of the table's): "
                    + ", ".join(activation_table.INITS), flag_values=fv)
  flags.DEFINE_string("out_dir", None, "Output directory (default runs/"
                      "activation_table/<hash of the settings>); an existing "
                      "one with the same settings is resumed.",
                      flag_values=fv)
  flags.DEFINE_string("replot", None, "Redraw table.md, table.csv and "
                      "heatmap.png/pdf of this dataset directory (e.g. OUT/"
                      "digits) from its table.json; computes nothing.",
                      flag_values=fv)
  flags.DEFINE_float("memory_gb", None, "Memory in GB this run may use "
                     "(default: this machine's); a run whose estimate exceeds "
                     "it is refused before it starts.", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "Directory holding the MNIST IDX "
                      "files (default $VGRAD_DATA_DIR/mnist or "
                      "~/.cache/vgrad/mnist); never downloaded.",
                      flag_values=fv)


def _subset(fv: flags.FlagValues, name: str, valid: tuple[str, ...]):
  """``--acts``/``--inits`` in the table's order; one-line error for an
  unknown or repeated value."""
  values = fv[name].value
  bad = [v for v in values if v not in valid]
  if bad or not values or len(set(values)) != len(values):
    cli.fail(f"--{name} must be distinct comma-separated values from: "
             f"{', '.join(valid)}; got {','.join(values) or 'nothing'}")
  return tuple(v for v in valid if v in values)


def make_config(fv: flags.FlagValues = FLAGS,
                dataset: str = "digits") -> sweep.SweepConfig:
  """The sweep of one dataset's table; one-line error for bad flags."""
  non_finite = cli.non_finite_flag_error(fv)
  if non_finite:
    cli.fail(non_finite)
  if not fv.lr > 0:
    cli.fail(f"--lr must be > 0, got {fv.lr}")
  if "memory_gb" in fv and fv.memory_gb is not None and not fv.memory_gb > 0:
    cli.fail(f"--memory_gb must be > 0, got {fv.memory_gb:g}")
  if not 0 <= fv.momentum < 1:
    cli.fail(f"--momentum must be in [0, 1), got {fv.momentum}")
  if fv["momentum"].present and fv.optimizer != "momentum":
    cli.fail(f"--momentum applies only to --optimizer=momentum, not "
             f"--optimizer={fv.optimizer}")
  config = sweep.SweepConfig(
      task="train", acts=_subset(fv, "acts", activation_table.ACTS),
      inits=_subset(fv, "inits", activation_table.INITS),
      depths=(fv.depth,), widths=(fv.width,), seeds=fv.seeds,
      dataset=dataset, optimizer=fv.optimizer, lr=fv.lr,
      momentum=fv.momentum, steps=fv.steps, batch_size=fv.batch_size)
  try:
    sweep.check_config(config)
  except ValueError as e:
    cli.fail(e)
  return config


def default_out_dir(config: sweep.SweepConfig) -> str:
  """``runs/activation_table/<8 hex digits>`` of the settings every
  dataset shares (depth and width included, the dataset and the
  acts/inits subset not): rerunning a command finds its directory again."""
  settings = config.settings()
  del settings["dataset"]
  settings |= {"depth": config.depths[0], "width": config.widths[0]}
  return os.path.join("runs", "activation_table",
                      sweep.settings_digest(settings))


def load_mnist(data_dir: str | None) -> data.Dataset | None:
  """MNIST when its four files are in ``data_dir``, else None (with a
  notice on stdout)."""
  where = os.path.expanduser(data_dir or data.default_mnist_dir())
  try:
    return data.load_dataset("mnist", data_dir=data_dir)
  except data.DatasetUnavailableError:
    print(f"MNIST files not found in {where}: digits only")
    return None
  except ValueError as e:   # files present but malformed
    cli.fail(f"--data_dir: {e}")


def info_of(config: sweep.SweepConfig) -> dict:
  """The settings a table's caption, CSV and title show."""
  return {"dataset": config.dataset, "depth": config.depths[0],
          "width": config.widths[0], "steps": config.steps,
          "seeds": config.seeds, "optimizer": config.optimizer,
          "lr": config.lr, "momentum": config.momentum,
          "batch_size": config.batch_size}


def write_table(out_dir: str, config: sweep.SweepConfig, rows: list[dict],
                command: str) -> tuple[activation_table.Table, list[str]]:
  """table.json, table.md, table.csv and heatmap.png/pdf of one dataset's
  finished rows (only the rows of ``config``'s cells), each atomically."""
  wanted = {c.id for c in sweep.cells(config)}
  rows = [r for r in rows if r["cell"] in wanted]
  record = activation_table.table_record(rows, config.acts, config.inits,
                                         info_of(config), command)
  path = os.path.join(out_dir, activation_table.TABLE_JSON)
  rundir.write_json(path, record)
  table, paths = write_views(out_dir, record)
  return table, [path] + paths


def write_views(out_dir: str, record: dict
                ) -> tuple[activation_table.Table, list[str]]:
  """table.md, table.csv and heatmap.png/pdf from a table record."""
  table = activation_table.table_from_record(record)
  paths = [os.path.join(out_dir, n) for n in ("table.md", "table.csv")]
  rundir.write_text(paths[0], activation_table.format_markdown(table))
  rundir.write_text(paths[1], activation_table.csv_text(table))
  paths += style.save_figure(activation_table_plots.plot_heatmap(table),
                             os.path.join(out_dir, "heatmap"))
  return table, paths


def replot(run_dir: str) -> None:
  """--replot: the views of a finished table from its table.json alone."""
  given = [f"--{f.name}" for f in FLAGS.get_key_flags_for_module(
      sys.modules[__name__]) if f.present and f.name != "replot"]
  if given:
    cli.fail(f"--replot redraws a finished table; it takes no other flag "
             f"(got {', '.join(given)})")
  try:
    _, paths = write_views(run_dir, activation_table_plots.read_record(run_dir))
  except ValueError as e:
    cli.fail(f"--replot: {e}")
  print(f"wrote {', '.join(paths)}")


def run_dataset(config: sweep.SweepConfig, out_dir: str,
                dataset: data.Dataset, devices: int, command: str) -> None:
  """Runs (or resumes) one dataset's sweep, writes and prints its table."""
  total = len(sweep.cells(config))
  print(f"{config.dataset}: {total} cells x {config.seeds} seeds -> "
        f"{out_dir}", file=sys.stderr, flush=True)
  try:
    result = sweep.run_sweep(config, out_dir, num_devices=devices or None,
                             dataset=dataset,
                             progress=progress_lib.ProgressBar())
  except ValueError as e:
    cli.fail(f"--out_dir: {e}" if str(e).startswith("out_dir") else e)
  except OSError as e:
    cli.fail(f"--out_dir: cannot write {out_dir}: {e}")
  _, paths = write_table(out_dir, config, result.rows, command)
  with open(os.path.join(out_dir, "table.md")) as f:
    print("\n" + f.read())
  print(f"{config.dataset}: computed {result.computed} cells, reused "
        f"{result.reused}, in {result.seconds:.1f} s on {result.devices} "
        f"device(s); wrote {', '.join(paths)}")
  sys.stdout.flush()


def run() -> None:
  """The table of digits (and of MNIST when its files are found): each
  dataset's sweep run or resumed, its table written and printed."""
  import jax  # pylint: disable=import-outside-toplevel
  configs = {"digits": make_config(FLAGS, "digits")}
  cli.check_memory(footprint.sweep(configs["digits"]),
                   flops=footprint.sweep_flops(configs["digits"]))
  if FLAGS.devices > len(jax.devices()):
    cli.fail(f"--devices must be in [0, {len(jax.devices())}] (0 = all "
             f"devices JAX sees), got {FLAGS.devices}")
  out_dir = FLAGS.out_dir or default_out_dir(configs["digits"])
  datasets = {"digits": data.load_dataset("digits")}
  mnist = load_mnist(FLAGS.data_dir)
  if mnist is not None:
    configs["mnist"] = make_config(FLAGS, "mnist")
    cli.check_memory(footprint.sweep(configs["mnist"]),
                     flops=footprint.sweep_flops(configs["mnist"]))
    datasets["mnist"] = mnist
  command = cli.command_line()
  for name, config in configs.items():
    run_dataset(config, os.path.join(out_dir, name), datasets[name],
                FLAGS.devices, command)
