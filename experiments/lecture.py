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

``--arms=1,3`` runs only those arms (their rows of the table), e.g. to
rerun one arm with more seeds. ``digits_deep`` also runs the same arms on
MNIST (``mnist/`` inside the run
directory) when the MNIST files are in ``--data_dir`` (or with
``--download``); otherwise it says how to get them and skips that part.
The outcomes measured for the README are listed there.
"""

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import lecture as lecture_cli
from vgrad.cli import training_run
from vgrad.studies import presets

FLAGS = flags.FLAGS

flags.DEFINE_enum("preset", None, sorted(presets.PRESETS), "The lecture "
                  "experiment to run.")
flags.DEFINE_integer("seeds", None, "Seeds per arm (default: the preset's, "
                     "32 for xor_deep and 8 otherwise), >= 1.")
flags.DEFINE_integer("steps", None, "Training steps per arm (default: the "
                     "preset's), >= 1.")
flags.DEFINE_integer("seed", 0, "First seed; seed s uses key(seed + s).")
flags.DEFINE_list("arms", None, "Arms to run, by their 1-based number in the "
                  "preset's table (comma-separated, e.g. 1,3; default: all). "
                  "digits_deep's MNIST part runs the same arms.")
training_run.define_data_flags()
flags.adopt_module_key_flags(training_run)
flags.adopt_module_key_flags(cli)   # --out_dir, --overwrite
flags.register_validator("seeds", lambda v: v is None or v >= 1,
                         message="--seeds must be an integer >= 1")
flags.register_validator("steps", lambda v: v is None or v >= 1,
                         message="--steps must be an integer >= 1")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--preset=xor_deep")
  if FLAGS.preset is None:
    cli.fail(f"--preset is required; valid presets: "
             f"{', '.join(sorted(presets.PRESETS))}")
  preset = presets.get_preset(FLAGS.preset)
  lecture_cli.check_arms(preset)
  ds = training_run.load(preset.dataset)
  out_dir = training_run.out_dir_for("runs/lecture", preset.name)
  training_run.check_memory(lecture_cli.arms(preset))
  mnist = (lecture_cli.mnist_or_none() if preset.name == "digits_deep"
           else None)
  lecture_cli.run_preset(preset, ds, mnist, out_dir)


if __name__ == "__main__":
  cli.run(main)
