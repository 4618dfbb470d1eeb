r"""Train S seeds of an MLP at once and watch the gradient flow layer by layer.

    python -m experiments.train --dataset=xor --act=sigmoid,relu --depth=10

trains ``--seeds`` seeds of each activation in ``--act`` (comma-separated to
compare several) with Optax (``--optimizer``, ``--lr``), logging every
``--log_every`` steps: loss and accuracy on the training and test sets,
per-layer gradient norms on a fixed training batch, saturated and dead
units, update-to-weight ratios. Expected with the defaults (the lecture's
10 x 5 sigmoid net on XOR, U(-1, 1) weights, plain gradient descent at
lr 0.1): every seed stuck at loss ln 2 = 0.693 and accuracy 0.5.

Writes into a fresh run directory (``--out_dir``, default
``runs/train/<time>_<dataset>_<acts>_L<depth>_N<width>``): config.json,
metrics.json (schema in README.md), table.md, table.csv, curves.png/pdf,
gradient_flow.png/pdf and TensorBoard runs under ``tb/<act>/seed_<s>``.
"""

from absl import flags

from vgrad.cli import app as cli
from vgrad.cli import train as train_cli
from vgrad.cli import training_run
from vgrad.training import data
from vgrad.training import train

FLAGS = flags.FLAGS

cli.define_network_flags(act="sigmoid", init="uniform", depth=10, width=5,
                         multi_act=True)
training_run.define_data_flags()
flags.adopt_module_key_flags(cli)
flags.adopt_module_key_flags(training_run)
flags.DEFINE_enum("dataset", "xor", sorted(data.DATASETS), "Training data.")
flags.DEFINE_enum("loss", None, sorted(train.LOSSES), "Loss; default: "
                  "cross-entropy for classification, MSE for regression.")
flags.DEFINE_enum("optimizer", "sgd", sorted(train.OPTIMIZERS), "Optax "
                  "optimizer.")
flags.DEFINE_float("lr", 0.1, "Learning rate, > 0.")
flags.DEFINE_float("momentum", 0.9, "Momentum of --optimizer=momentum.")
flags.DEFINE_float("clip_norm", None, "Clip gradients to this global norm.")
flags.DEFINE_float("dropout", 0.0, "Dropout rate after each hidden layer.")
flags.DEFINE_integer("steps", 20_000, "Training steps, >= 1.")
flags.DEFINE_integer("batch_size", 0, "Minibatch size; 0 = full batch.")
flags.DEFINE_integer("seeds", 8, "Seeds trained at once (vmapped), >= 1.")
flags.DEFINE_integer("seed", 0, "First seed; seed s uses key(seed + s).")
flags.DEFINE_integer("log_every", 1000, "Steps between logged points, >= 1.")
for _name, _lo in (("steps", 1), ("seeds", 1), ("log_every", 1),
                   ("batch_size", 0)):
  flags.register_validator(
      _name, lambda v, lo=_lo: v >= lo,
      message=f"--{_name} must be an integer >= {_lo}")
flags.register_validator("lr", lambda v: v > 0, message="--lr must be > 0")
flags.register_validator("clip_norm", lambda v: v is None or v > 0,
                         message="--clip_norm must be > 0")
flags.register_validator("dropout", lambda v: 0 <= v < 1,
                         message="--dropout must be in [0, 1)")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--act=sigmoid")
  configs = train_cli.make_configs()
  ds = training_run.load(FLAGS.dataset, FLAGS.batch_size)
  if FLAGS.loss is not None:
    try:
      train.check_loss(FLAGS.loss, ds.task)
    except ValueError as e:
      cli.fail(f"--loss: {e}")
  name = (f"{FLAGS.dataset}_{'-'.join(FLAGS.act)}_{FLAGS.init}_"
          f"L{FLAGS.depth}_N{FLAGS.width}")
  out_dir = training_run.out_dir_for("runs/train", name)
  training_run.check_memory(configs)
  record = training_run.flag_record()
  title = f"{FLAGS.dataset}, depth {FLAGS.depth}, width {FLAGS.width}"
  training_run.run_arms("train", title, configs, ds, out_dir, record)


if __name__ == "__main__":
  cli.run(main)
