r"""The lecture experiments, one command each.

    python -m experiments.lecture --preset=xor_deep
    python -m experiments.lecture --preset=digits_deep
    python -m experiments.lecture --preset=init_failures

Runs every arm of the preset (see vgrad/presets.py) over ``--seeds`` seeds,
prints a table of the fraction of seeds that solve the task, the median
final loss, divergences and why the failed seeds failed (dead layers,
vanishing gradients, saturation, unbroken symmetry), and writes the table
(Markdown and CSV), the figures and TensorBoard runs into a fresh run
directory (``--out_dir``, default ``runs/lecture/<time>_<preset>``).

``digits_deep`` also runs the same arms on MNIST (``mnist/`` inside the run
directory) when the MNIST files are in ``--data_dir`` (or with
``--download``); otherwise it says how to get them and skips that part.
The outcomes measured for the README are listed there.
"""

import dataclasses
import os

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import training_run
from vgrad.training import data
from vgrad.studies import presets
from vgrad.io import rundir
from vgrad.studies import training_report

FLAGS = flags.FLAGS

flags.DEFINE_enum("preset", None, sorted(presets.PRESETS), "The lecture "
                  "experiment to run.")
flags.DEFINE_integer("seeds", None, "Seeds per arm (default: the preset's, "
                     "32 for xor_deep and 8 otherwise), >= 1.")
flags.DEFINE_integer("steps", None, "Training steps per arm (default: the "
                     "preset's), >= 1.")
flags.DEFINE_integer("seed", 0, "First seed; seed s uses key(seed + s).")
training_run.define_data_flags()
flags.adopt_module_key_flags(training_run)
flags.adopt_module_key_flags(cli)   # --out_dir, --overwrite
flags.register_validator("seeds", lambda v: v is None or v >= 1,
                         message="--seeds must be an integer >= 1")
flags.register_validator("steps", lambda v: v is None or v >= 1,
                         message="--steps must be an integer >= 1")


def arms(preset: presets.Preset):
  """The preset's arms with --seeds, --steps and --seed applied."""
  out = []
  for arm in preset.arms:
    changes = {"seed": FLAGS.seed}
    if FLAGS.seeds is not None:
      changes["seeds"] = FLAGS.seeds
    if FLAGS.steps is not None:
      changes["steps"] = FLAGS.steps
      changes["log_every"] = max(1, min(arm.log_every, FLAGS.steps // 10))
    out.append(dataclasses.replace(arm, **changes))
  return out


def _mnist_or_none():
  try:
    return data.load_dataset("mnist", data_dir=FLAGS.data_dir,
                             download=FLAGS.download)
  except data.DatasetUnavailableError as e:
    print(f"MNIST part skipped: {' '.join(str(e).split())}")
    return None


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--preset=xor_deep")
  if FLAGS.preset is None:
    cli.fail(f"--preset is required; valid presets: "
             f"{', '.join(sorted(presets.PRESETS))}")
  preset = presets.get_preset(FLAGS.preset)
  ds = training_run.load(preset.dataset)
  out_dir = training_run.out_dir_for("runs/lecture", preset.name)
  mnist = _mnist_or_none() if preset.name == "digits_deep" else None
  record = training_run.flag_record() | {
      "arms": [dataclasses.asdict(a) for a in arms(preset)]}
  title = f"{preset.name} (lecture {preset.lecture}): {preset.question}"
  try:
    with rundir.staged_run_dir(out_dir, overwrite=FLAGS.overwrite) as stage:
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
  except rundir.RunDirExistsError as e:
    cli.fail(e)
  training_run.report(metrics, out_dir)
  if mnist is not None:
    training_run.report(mnist_metrics, os.path.join(out_dir, "mnist"))


if __name__ == "__main__":
  cli.run(main)
