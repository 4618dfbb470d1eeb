"""What ``experiments.lecture`` does with its flags: a preset's arms, the
optional MNIST part, and the run of both."""

import dataclasses
import os

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import training_run
from vgrad.io import rundir
from vgrad.studies import presets
from vgrad.training import data

FLAGS = flags.FLAGS


def _selected() -> list[int] | None:
  """--arms as 0-based indices (None: every arm); see check_arms."""
  if FLAGS.arms is None:
    return None
  return [int(a) - 1 for a in FLAGS.arms]


def check_arms(preset: presets.Preset) -> None:
  """Ends with one line unless --arms names distinct arms of ``preset``."""
  if FLAGS.arms is None:
    return
  n = len(preset.arms)
  valid = "; ".join(f"{i} = {a.label}" for i, a in enumerate(preset.arms, 1))
  bad = [a for a in FLAGS.arms
         if not (a.strip().isdigit() and 1 <= int(a) <= n)]
  if bad or not FLAGS.arms:
    cli.fail(f"--arms={','.join(FLAGS.arms)}: arm numbers of "
             f"--preset={preset.name} are 1-{n} ({valid})")
  if len(set(map(int, FLAGS.arms))) != len(FLAGS.arms):
    cli.fail(f"--arms={','.join(FLAGS.arms)} repeats an arm; give each "
             f"number once")


def arms(preset: presets.Preset):
  """The preset's arms (those --arms selects) with --seeds, --steps and
  --seed applied."""
  out = []
  chosen = _selected()
  selected = (preset.arms if chosen is None
              else [preset.arms[i] for i in chosen])
  for arm in selected:
    changes = {"seed": FLAGS.seed}
    if FLAGS.seeds is not None:
      changes["seeds"] = FLAGS.seeds
    if FLAGS.steps is not None:
      changes["steps"] = FLAGS.steps
      changes["log_every"] = max(1, min(arm.log_every, FLAGS.steps // 10))
    out.append(dataclasses.replace(arm, **changes))
  return out


def mnist_or_none():
  """MNIST from --data_dir (or --download), or None with a line saying why."""
  try:
    return data.load_dataset("mnist", data_dir=FLAGS.data_dir,
                             download=FLAGS.download)
  except data.DatasetUnavailableError as e:
    print(f"MNIST part skipped: {' '.join(str(e).split())}")
    return None
  except ValueError as e:   # files present but corrupt
    cli.fail(f"--data_dir: {e}")


def run_preset(preset: presets.Preset, ds: data.Dataset,
               mnist: data.Dataset | None, out_dir: str) -> None:
  """Trains the preset's arms on ``ds`` (and ``mnist_deep``'s on ``mnist``
  into ``mnist/``), writes the run directory atomically, prints the
  tables."""
  record = training_run.flag_record() | {
      "arms": [dataclasses.asdict(a) for a in arms(preset)]}
  title = f"{preset.name} (lecture {preset.lecture}): {preset.question}"
  with cli.out_dir_errors(), rundir.staged_run_dir(
      out_dir, overwrite=FLAGS.overwrite) as stage:
    metrics = training_run.train_arms(preset.name, title, arms(preset), ds,
                                      stage)
    training_run.write_run(stage, record, metrics)
    if mnist is not None:
      extra = presets.get_preset("mnist_deep")
      sub = os.path.join(stage, "mnist")
      os.makedirs(sub)
      mnist_arms = [dataclasses.replace(a, dataset="mnist")
                    for a in arms(extra)]
      mnist_metrics = training_run.train_arms(
          "mnist_deep", f"mnist_deep: {extra.question}", mnist_arms, mnist,
          sub)
      training_run.write_run(sub, record, mnist_metrics)
  training_run.report(metrics, out_dir)
  if mnist is not None:
    training_run.report(mnist_metrics, os.path.join(out_dir, "mnist"))
