r"""Does a vanilla deep MLP train, and which initialisation or activation
cure makes it train? (issue 15, item 5)

    python -m experiments.deep_trainability            # the default grid
    python -m experiments.deep_trainability --quick    # seconds, for tests

Trains plain fully connected nets (``--depths`` hidden layers of
``--width`` units, no skip connections, no normalisation, a linear readout)
on scikit-learn's digits (``--dataset``; features standardised, then each
example scaled to ``||x||^2 = d``), ``--seeds`` seeds per cell vmapped in
one program, with the same optimizer, learning rate, batch size and steps
for every arm (``--arms``: he_relu, critical_tanh,
critical_orthogonal_tanh, lsuv_relu, tat_leaky_relu, dks_tanh; see
vgrad/studies/deep_trainability.py). Per cell it records each seed's
test-accuracy curve, steps to ``--threshold``, final accuracy, divergence
and the input-output Jacobian spectrum at initialisation.

Resumable: one JSON file per finished cell in ``<run dir>/cells``; the
same command (or the same ``--out_dir``) finds the run again and computes
only the missing cells; a run directory of other settings is refused.
Writes ``config.json``, ``results.json``, ``report.md`` (speed-ups of each
arm over he_relu per depth) and ``deep_trainability.png``/``.pdf`` into
``runs/deep_trainability/<time>_<dataset>_<fingerprint>`` (or
``--out_dir``). ``--replot=RUN_DIR`` redraws the figure and the report
from results.json alone.
"""

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import deep_trainability as dt_cli
from vgrad.cli import training_run
from vgrad.studies import deep_trainability as dt
from vgrad.training import train

FLAGS = flags.FLAGS
DEFAULTS = dt.TrainabilityConfig()

flags.DEFINE_list("arms", list(DEFAULTS.arms), "Arms to train, comma-"
                  f"separated, from: {', '.join(dt.ARMS)}.")
flags.DEFINE_list("depths", [str(d) for d in DEFAULTS.depths],
                  "Depths (hidden layers), comma-separated integers >= 1.")
flags.DEFINE_integer("width", DEFAULTS.width, "Units per hidden layer.")
flags.DEFINE_integer("seeds", DEFAULTS.seeds, "Seeds per cell (vmapped).")
flags.DEFINE_integer("seed", DEFAULTS.seed, "First seed.")
flags.DEFINE_enum("dataset", DEFAULTS.dataset, ["digits", "mnist"],
                  "Classification data set.")
flags.DEFINE_enum("optimizer", DEFAULTS.optimizer, sorted(train.OPTIMIZERS),
                  "The optimizer of every arm (momentum: SGD + momentum).")
flags.DEFINE_float("lr", DEFAULTS.lr, "Learning rate of every arm.")
flags.DEFINE_float("momentum", DEFAULTS.momentum, "Momentum of "
                   "--optimizer=momentum.")
flags.DEFINE_integer("batch_size", DEFAULTS.batch_size, "Examples per step.")
flags.DEFINE_integer("steps", DEFAULTS.steps, "Training steps of every arm.")
flags.DEFINE_integer("eval_every", DEFAULTS.eval_every, "Steps between "
                     "test-set evaluations (the resolution of steps to "
                     "threshold).")
flags.DEFINE_float("threshold", DEFAULTS.threshold, "Test accuracy that "
                   "counts as trained (chance is 1 / classes).")
flags.DEFINE_integer("jacobian_inputs", DEFAULTS.jacobian_inputs,
                     "Training inputs at which the Jacobian spectrum at "
                     "initialisation is measured.")
flags.DEFINE_bool("quick", False, "A tiny grid (depths 16,24, width 16, 2 "
                  "seeds, 40 steps; ~30 s, mostly compilation), for tests.")
flags.DEFINE_string("replot", None, "Redraw the figure and report.md of "
                    "this run directory from its results.json and exit; "
                    "takes no other flag.")
flags.DEFINE_string("out_dir", None, "Run directory: created, or resumed "
                    "when it holds a run of the same settings (default: "
                    "the newest such run under runs/deep_trainability, "
                    "else a new one).")
cli.define_memory_flag()
training_run.define_dataset_source_flags()


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--depths=20,50")
  if FLAGS.replot is not None:
    return dt_cli.replot(FLAGS.replot)
  dt_cli.run(dt_cli.make_config())


if __name__ == "__main__":
  cli.run(main)
