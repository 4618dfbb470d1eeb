r"""The Mishkin & Matas activation x initialisation table, on digits (and
MNIST when its files are present).

    python -m experiments.activation_table [--depth=10] [--width=64]

trains a deep MLP (``--depth`` hidden layers of ``--width`` units) for every
activation (rows: maxout, ReLU, leaky ReLU 0.01, very leaky ReLU 1/3, ELU,
tanh, sigmoid, softplus, SELU, GELU) and initialisation (columns: LSUV,
orthogonal, Glorot, He, U(-1, 1), N(0, 0.01^2)), ``--seeds`` seeds each, with
SGD + momentum as Mishkin & Matas (2016, Table 3), and writes the test
accuracy table: ``mean ± std`` over the seeds that converged, ``n/c`` where
none did (see ``vgrad/activation_table.py``).

Outputs, per dataset (``OUT/digits/``, and ``OUT/mnist/`` when the MNIST IDX
files are in ``--data_dir``; nothing is downloaded): ``table.md``,
``table.csv`` (one row per activation x init), ``table.json`` (the rows the
table is built from and the command line), ``heatmap.png``/``.pdf``. Each
dataset directory is also a sweep directory (``vgrad/sweep.py``): every
finished cell is saved atomically, so rerunning the same command (the
default ``--out_dir`` is derived from the settings) resumes where a killed
run stopped, and ``--acts``/``--inits`` subsets reuse the cells already
computed.

Expected with the defaults (digits, 60 cells x 3 seeds: 3 min 49 s wall,
225 s of training, measured on this project's shared 2-core CPU; MNIST adds
about 4.5 min, timed on stand-in files of MNIST's size): every activation
but sigmoid reaches 0.94-0.97 test accuracy under LSUV, orthogonal, Glorot
and He, except maxout under He (n/c†: He's variance 2/fan_in doubles the
second moment per maxout layer, whose max of two pieces keeps it); sigmoid
is n/c under all four (phi' <= 1/4: the gradient shrinks ~3x or more per
layer) and trains only under U(-1, 1) (0.92; fan_in Var W = 64/3 makes up
for the 1/4), where every other activation but tanh (0.76) diverges
(n/c†); N(0, 0.01^2) leaves every activation on the chance plateau (n/c).
"""

from absl import flags

from vgrad.cli import activation_table as table_cli
from vgrad.cli import app as cli

FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.replot is not None:
    table_cli.replot(FLAGS.replot)
    return
  table_cli.run()


if __name__ == "__main__":
  table_cli.define_flags()
  # --helpshort lists them as this program's flags.
  flags.adopt_module_key_flags(table_cli)
  cli.run(main)
