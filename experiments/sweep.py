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

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import sweep as sweep_cli
from vgrad.cli import training_run
from vgrad.studies import sweep
from vgrad.training import data
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
cli.define_variance_flags(init_flag="inits")
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
cli.define_memory_flag()
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() "
                  "first (multi-host: run the same command on every host).")
flags.DEFINE_string("coordinator_address", None, "--distributed: host:port "
                    "of process 0 (default: detected from the cluster).")
flags.DEFINE_integer("num_processes", None, "--distributed: processes.")
flags.DEFINE_integer("process_id", None, "--distributed: this process.")


def main(argv):
  del argv
  if FLAGS.replot is not None:
    sweep_cli.replot(FLAGS.replot)
    return
  # Bad flags fail before any cluster start-up.
  config = sweep_cli.make_config()
  if FLAGS.distributed:
    sweep_cli.initialize_distributed()
  sweep_cli.check_memory(config)
  sweep_cli.run(config)


if __name__ == "__main__":
  cli.run(main)
