r"""Signal-propagation plots at initialisation (Brock, De & Smith 2021).

    python -m experiments.signal_propagation --act=tanh --depth=20 --width=256

Builds vgrad's MLP (``--depth`` hidden layers of ``--width`` units, input
size ``--width``, no readout; default ReLU with He-normal weights) or, with
``--model=cnn|resnet|rnn|transformer``, one of the worked examples of
vgrad/nn/zoo.py cut into its blocks, feeds ``--num_inputs`` inputs with
N(0, 1) entries and records per block the average squared channel mean,
the average channel variance and, for residual blocks (resnet and
transformer with skips), the residual branch's variance, beside the
mean-field (NNGP) prediction for the MLP. About 10 s on a CPU, start-up
included.
Expected with ``--act=tanh`` (He-normal: sigma_w^2 = 2): the variance falls
from 1 to its fixed point ~0.29 within ~6 blocks and the squared mean to
~0.02, both on the dashed prediction within a few per cent.

Writes ``config.json``, ``results.json``, ``report.md`` and
``signal_propagation.png``/``.pdf`` into a fresh run directory
(``--out_dir``, default
``runs/signal_propagation/<time>_<model>_<act>_L<depth>_N<width>``).
``--replot=RUN_DIR`` rewrites a run's figure and report from its
results.json alone.
"""

import dataclasses
import time

from absl import flags
import jax

from vgrad.cli import app as cli
from vgrad.cli import reproduction
from vgrad.cli import signal_propagation as signal_cli
from vgrad.io import rundir
from vgrad.studies import signal_propagation as sp

FLAGS = flags.FLAGS

flags.DEFINE_enum("model", "mlp", list(sp.MODELS),
                  "mlp: vgrad's MLP (with the mean-field prediction); cnn, "
                  "resnet, rnn, transformer: the worked examples of "
                  "vgrad/nn/zoo.py, cut into their blocks. Network flags "
                  "not given take the model's defaults.")
flags.DEFINE_bool("skip", True, "Skip connections of --model=resnet or "
                  "transformer (--noskip: the same blocks without them).")
cli.define_network_flags(act=sp.MLP_DEFAULTS["act"],
                         init=sp.MLP_DEFAULTS["init"],
                         depth=sp.MLP_DEFAULTS["depth"],
                         width=sp.MLP_DEFAULTS["width"])
flags.DEFINE_integer("num_inputs", 16, "Inputs with N(0, 1) entries, >= 2 "
                     "(the batch the channel statistics average over).")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the inputs.")
flags.DEFINE_integer("image_size", None, "Image side of --model=cnn "
                     "(default 6).")
flags.DEFINE_string("replot", None, "Redraw signal_propagation.png/.pdf "
                    "and report.md of this run directory from its "
                    "results.json and exit; takes no other flag.")
cli.define_run_dir_flags()
flags.adopt_module_key_flags(cli)  # --helpshort lists the network flags too
flags.register_validator("num_inputs", lambda v: v >= 2,
                         message="--num_inputs must be an integer >= 2")
flags.register_validator("image_size", lambda v: v is None or v >= 1,
                         message="--image_size must be an integer >= 1")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--act=tanh")
  if FLAGS.replot is not None:
    return signal_cli.replot(FLAGS.replot)
  config = signal_cli.make_config()
  name = f"{config.model}_{config.act}_L{config.depth}_N{config.width}"
  out_dir = FLAGS.out_dir or rundir.default_run_dir(
      "runs/signal_propagation", name)
  cli.check_out_dir(out_dir, FLAGS.overwrite)
  cli.check_memory(signal_cli.memory_terms(config))
  start = time.perf_counter()
  blocks, xs, kwargs = signal_cli.build(config)
  results = sp.signal_propagation(blocks, xs, **kwargs)
  results["config"] = {**dataclasses.asdict(config), "out_dir": out_dir,
                       "overwrite": FLAGS.overwrite}
  results["seconds"] = time.perf_counter() - start
  results["platform"] = jax.devices()[0].platform
  results["command"] = cli.command_line()
  print(sp.format_report(results), end="")
  reproduction.write_run(out_dir, results, FLAGS.overwrite)
  print(f"took {results['seconds']:.1f} s on {results['platform']}; wrote "
        f"{out_dir}/{signal_cli.FILES}")


if __name__ == "__main__":
  cli.run(main)
