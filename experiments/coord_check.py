r"""Width coordinate check, SP against muP (Yang et al. 2021, Fig. 5).

    python -m experiments.coord_check

Trains an MLP of 3 hidden ReLU layers (``--depth``, ``--act``) on
scikit-learn's digits with Adam at base learning rate 0.01 (``--optimizer``,
``--lr``) for 5 steps (``--steps``) of batches of 128 (``--batch_size``) at
widths 64 .. 2048 (``--widths``), 3 seeds each (``--seeds``), in the
standard parameterisation and in muP with base width 64 (``--base_width``);
records each layer's coordinate size mean |x| on a fixed probe batch at steps
0..5 and fits its log-log slope against the width
(:mod:`vgrad.studies.coord_check`). Expected (measured): at step 0 every
hidden layer is flat in both (|slope| <= 0.02); after one Adam step SP's
width x width layers and logits grow with the width (slopes +0.53, +1.04
and +1.73 at step 1; SP's loss after 5 steps rises from 0.38 at n=128 to
10.4 at n=2048), while every muP layer stays flat (|slope| <= 0.02 at every
step; loss 1.39-1.50 at every width). About 75 s on a 2-core CPU, most of
it compiling one program per parameterisation and width.

Writes ``config.json``, ``results.json``, ``report.md`` and
``coord_check.png``/``.pdf`` into a fresh run directory (``--out_dir``,
default ``runs/coord_check/<time>_L<depth>_<optimizer>``).
``--replot=RUN_DIR`` rewrites a run's figure and report from its
results.json alone.
"""

import time

from absl import flags
import jax

from vgrad.cli import app as cli
from vgrad.cli import coord_check as coord_cli
from vgrad.cli import reproduction
from vgrad.io import rundir
from vgrad.studies import coord_check as cc
from vgrad.training import data

FLAGS = flags.FLAGS
_D = cc.CoordCheckConfig()

flags.DEFINE_list("widths", [str(w) for w in _D.widths], "Widths to "
                  "compare, comma-separated increasing integers >= 1 (at "
                  "least two).")
flags.DEFINE_integer("depth", _D.depth, "Hidden layers (affine + "
                     "activation), >= 1; layers 2.. are the width x width "
                     "ones.")
flags.DEFINE_enum("act", _D.act, cc.ACTIVATIONS, "Hidden-layer activation.")
flags.DEFINE_integer("seeds", _D.seeds, "Initialisations per width, >= 1.")
flags.DEFINE_integer("steps", _D.steps, "Optimizer steps, >= 1; "
                     "coordinates are recorded at steps 0..steps.")
flags.DEFINE_float("lr", _D.lr, "Base learning rate, > 0 (muP scales it "
                   "per layer by base_width / width).")
flags.DEFINE_enum("optimizer", _D.optimizer, cc.OPTIMIZERS, "Optimizer.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Examples per training "
                     "batch and in the probe batch, >= 1.")
flags.DEFINE_integer("base_width", _D.base_width, "muP's base width, >= 1 "
                     "(where muP and SP share learning rates).")
flags.DEFINE_integer("seed", _D.seed, "Seed of the initialisations and of "
                     "the choice of batches.")
flags.DEFINE_string("replot", None, "Redraw coord_check.png/.pdf and "
                    "report.md of this run directory from its results.json "
                    "and exit; takes no other flag.")
cli.define_run_dir_flags()

flags.register_validator(
    "widths", lambda v: coord_cli.parse_widths(v) is not None,
    message="--widths must be at least two comma-separated increasing "
    "integers >= 1, e.g. 64,128,256")
for _name in ("depth", "seeds", "steps", "batch_size", "base_width"):
  flags.register_validator(_name, lambda v: v >= 1,
                           message=f"--{_name} must be an integer >= 1")
flags.register_validator("lr", lambda v: v > 0, message="--lr must be > 0")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--widths=64,128,256")
  if FLAGS.replot is not None:
    return coord_cli.replot(FLAGS.replot)
  config = coord_cli.make_config()
  out_dir = FLAGS.out_dir or rundir.default_run_dir(
      "runs/coord_check", f"L{config.depth}_{config.optimizer}")
  cli.check_out_dir(out_dir, FLAGS.overwrite)
  try:
    dataset = data.load_dataset(config.dataset)
  except data.DatasetUnavailableError as e:
    cli.fail(e)
  if config.batch_size > dataset.x_train.shape[0]:
    cli.fail(f"--batch_size must be <= {dataset.x_train.shape[0]} (the "
             f"{dataset.name} training examples), got {config.batch_size}")

  start = time.perf_counter()
  results = cc.run_study(config, dataset, coord_cli.progress_bar(config))
  results["seconds"] = time.perf_counter() - start
  results["platform"] = jax.devices()[0].platform
  results["config"] |= {"out_dir": out_dir, "overwrite": FLAGS.overwrite}
  print(cc.format_report(results))
  reproduction.write_run(out_dir, results, FLAGS.overwrite)
  print(f"took {results['seconds']:.1f} s on {results['platform']}; wrote "
        f"{out_dir}/{coord_cli.OUTPUTS}")


if __name__ == "__main__":
  cli.run(main)
