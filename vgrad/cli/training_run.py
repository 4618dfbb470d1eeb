"""What the training entry points share: data flags, progress, run files.

``run_arms`` trains each arm in turn (all seeds of an arm at once), shows
progress on stderr, writes the run directory atomically (config.json,
metrics.json, table.md, table.csv, curves and gradient-flow figures,
TensorBoard runs under ``tb/<arm>/seed_<s>``) and prints the table. Both
JSON files record the ``command`` line that made the run.
"""

import os
import re
import time

from absl import flags
import jax

from vgrad.cli import app as cli
from vgrad.cli import progress as progress_lib
from vgrad.io import rundir
from vgrad.io import schemas
from vgrad.plots import training_plots
from vgrad.studies import footprint
from vgrad.studies import training_report
from vgrad.studies import training_study
from vgrad.training import data

FLAGS = flags.FLAGS

SCHEMA = schemas.TRAIN


def define_dataset_source_flags():
  """--data_dir and --download: where MNIST's files are (read by load)."""
  flags.DEFINE_string("data_dir", None, "Directory holding the MNIST IDX "
                      "files (default $VGRAD_DATA_DIR/mnist or "
                      "~/.cache/vgrad/mnist).")
  flags.DEFINE_bool("download", False, "Download missing MNIST files into "
                    "--data_dir (checksum-verified).")


def define_data_flags():
  define_dataset_source_flags()
  cli.define_run_dir_flags()
  flags.DEFINE_bool("tensorboard", True, "Write TensorBoard event files "
                    "under <out_dir>/tb.")


def flag_record() -> dict:
  """Every flag defined by the experiments (not absl's own), by name, and
  the ``command`` line that ran (:func:`cli.command_line`)."""
  return {f.name: f.value
          for module, fs in FLAGS.flags_by_module_dict().items()
          if not module.startswith("absl")
          for f in fs} | {"command": cli.command_line()}


def load(name: str, batch_size: int | None = None) -> data.Dataset:
  """The dataset, or a one-line error saying how to get it; with the
  run's ``batch_size``, a one-line error when a given ``--batch_size``
  exceeds the training set (the step would silently train full-batch),
  a note when the default does."""
  try:
    ds = data.load_dataset(name, data_dir=FLAGS.data_dir,
                           download=FLAGS.download)
  except data.DatasetUnavailableError as e:
    cli.fail(f"--dataset={name}: {e}")
  except ValueError as e:   # files present but corrupt (MNIST's IDX files)
    cli.fail(f"--data_dir: {e}")
  n = ds.x_train.shape[0]
  if batch_size is not None and batch_size > n:
    if "batch_size" in FLAGS and FLAGS["batch_size"].present:
      cli.fail(f"--batch_size={batch_size} exceeds the {n} training "
               f"examples of --dataset={name}; use 0 for full-batch "
               f"gradient descent, or at most {n}")
    print(f"note: the default --batch_size={batch_size} exceeds the {n} "
          f"training examples of --dataset={name}: every step is "
          f"full-batch")
  return ds


def check_memory(configs, dataset: str | None = None) -> None:
  """:func:`vgrad.cli.app.check_memory` of the largest of the arms
  ``configs`` (:class:`vgrad.studies.training_study.TrainConfig`, trained
  one after another, each arm's seeds at once) on ``dataset`` (default
  each arm's own), and the time note of all of them; after the data are
  read (a bad --data_dir is the first error), before any training."""
  terms = [footprint.training(c.depth, c.width, dataset or c.dataset,
                              c.batch_size, c.seeds, c.optimizer)
           for c in configs]
  flops = sum(footprint.training_flops(c.depth, c.width, dataset or c.dataset,
                                       c.batch_size, c.seeds, c.steps)
              for c in configs)
  cli.check_memory(max(terms, key=footprint.total), flops=flops)


def out_dir_for(root: str, name: str) -> str:
  out_dir = FLAGS.out_dir or rundir.default_run_dir(root, name)
  cli.check_out_dir(out_dir, FLAGS.overwrite)
  return out_dir


def slug(label: str) -> str:
  return re.sub(r"[^A-Za-z0-9.]+", "_", label).strip("_")


class Progress:
  """A tqdm bar of steps per arm (``[arm/arms] label: ...``, with the median
  loss): redrawn in place on a terminal, one line per logged step
  otherwise."""

  def __init__(self, arms: int):
    self.arms, self.arm = arms, 0
    self.label, self.bar = None, None

  def next_arm(self, label: str):
    if self.bar is not None:
      self.bar.close()
    self.arm += 1
    self.label, self.bar = label, None
    self.arm_start = time.perf_counter()

  def __call__(self, step: int, steps: int, loss: float):
    if self.bar is None:
      self.bar = progress_lib.Bar(steps, unit="steps",
                                  desc=f"[{self.arm}/{self.arms}] "
                                       f"{self.label}: ",
                                  start=self.arm_start)
    self.bar.update(step, f"median loss {loss:.4g}")


def _dataset_record(ds: data.Dataset) -> dict:
  return {"name": ds.name, "task": ds.task, "description": ds.description,
          "n_train": int(ds.x_train.shape[0]),
          "n_test": int(ds.x_test.shape[0]), "input_dim": ds.input_dim,
          "num_outputs": ds.num_outputs}


def train_arms(name: str, title: str, configs, ds: data.Dataset,
               stage: str | None) -> dict:
  """Trains every arm; TensorBoard runs go under ``stage/tb`` if given.

  ``name`` is the short run name shown in figures, ``title`` the line above
  the printed table.
  """
  progress = Progress(len(configs))
  arms = []
  for config in configs:
    progress.next_arm(config.name())
    tb = (os.path.join(stage, "tb", slug(config.name()))
          if stage and FLAGS.tensorboard else None)
    try:
      arms.append(training_study.run_training(config, ds, tb_dir=tb,
                                              progress=progress))
    except ValueError as e:   # invalid combination found while building
      cli.fail(e)
  return {"schema": SCHEMA, "name": name, "title": title,
          "command": cli.command_line(), "dataset": _dataset_record(ds),
          "device": jax.devices()[0].platform, "jax": jax.__version__,
          "arms": arms}


def write_tables(metrics: dict, directory: str) -> list[str]:
  """``table.md`` and ``table.csv``; returns the paths."""
  paths = [os.path.join(directory, "table.md"),
           os.path.join(directory, "table.csv")]
  rundir.write_text(paths[0], training_report.format_table(metrics))
  rundir.write_text(paths[1], training_report.format_csv(metrics))
  return paths


def write_run(directory: str, config: dict, metrics: dict) -> None:
  """config.json, metrics.json, table.md, table.csv and the figures."""
  rundir.write_json(os.path.join(directory, "config.json"), config)
  rundir.write_json(os.path.join(directory, "metrics.json"), metrics)
  write_tables(metrics, directory)
  training_plots.write_figures(metrics, directory)


def report(metrics: dict, out_dir: str) -> None:
  print(f"\n{metrics['title']} ({metrics['dataset']['description']})\n")
  print(training_report.format_table(metrics))
  why = training_report.explain_failures(metrics)
  if why:
    print("Why seeds failed:\n" + why + "\n")
  seconds = sum(a["seconds"] for a in metrics["arms"])
  print(f"trained in {seconds:.1f} s on {metrics['device']}; wrote "
        f"{out_dir}/{{config.json,metrics.json,table.md,table.csv,"
        f"curves.png,gradient_flow.png}}"
        + (" and tb/ (tensorboard --logdir " + os.path.join(out_dir, "tb")
           + ")" if FLAGS.tensorboard else ""))


def run_arms(name: str, title: str, configs, ds: data.Dataset, out_dir: str,
             record: dict) -> dict:
  """Trains, writes the run directory atomically and prints the report."""
  with cli.out_dir_errors(), rundir.staged_run_dir(
      out_dir, overwrite=FLAGS.overwrite) as stage:
    metrics = train_arms(name, title, configs, ds, stage)
    write_run(stage, record, metrics)
  report(metrics, out_dir)
  return metrics
