r"""Activation and gradient histograms at initialisation (Glorot & Bengio 2010).

    python -m experiments.gradient_histograms

For sigmoid, tanh and softsign (``--acts``), each with Glorot & Bengio's
"standard" init U(-1/sqrt(n), 1/sqrt(n)) and their "normalized" init
(``--inits``), builds 5 hidden layers of 1000 units with a softmax readout
(``--depth``, ``--width``), runs a forward and an exact backward pass of the
cross-entropy on 1000 digits training examples (``--num_examples``) and
records per layer the activations x_l, the back-propagated gradients
d loss/d h_l and the weight gradients: histograms on shared bin edges and
statistics, beside the linear-regime theory. About 20 s on one CPU core.
Expected: with the standard init the gradient variance falls about x0.3 per
layer towards the input for tanh (theory 1/3), with the normalized init it
stays within about x0.9 per layer.

Writes ``config.json``, ``results.json``, ``report.md`` and
``histograms.png``/``.pdf`` into a fresh run directory (``--out_dir``,
default ``runs/gradient_histograms/<time>_L<depth>_N<width>``).
``--replot=RUN_DIR`` rewrites a run's figure and report from its
results.json alone.
"""

import time

from absl import flags
import jax

from vgrad.cli import app as cli
from vgrad.cli import gradient_histograms as histograms_cli
from vgrad.cli import reproduction
from vgrad.io import rundir
from vgrad.studies import gradient_histograms as gh
from vgrad.training import data

FLAGS = flags.FLAGS
_DEFAULT = gh.HistogramConfig()

flags.DEFINE_list("acts", list(_DEFAULT.acts), "Activations to compare, "
                  f"comma-separated. One of: {', '.join(gh.ELEMENTWISE)}.")
flags.DEFINE_list("inits", list(_DEFAULT.inits), "Weight initializers to "
                  "compare, comma-separated. One of: "
                  f"{', '.join(gh.STATIC_INITS)}.")
flags.DEFINE_integer("depth", _DEFAULT.depth, "Hidden layers, >= 1.")
flags.DEFINE_integer("width", _DEFAULT.width, "Units per hidden layer, >= 1.")
flags.DEFINE_integer("num_examples", _DEFAULT.num_examples, "Training "
                     "examples in the batch, >= 1 (digits has 1437).")
flags.DEFINE_integer("num_bins", _DEFAULT.num_bins, "Histogram bins, >= 2.")
flags.DEFINE_integer("seed", _DEFAULT.seed, "Seed of the weights and of the "
                     "choice of examples.")
flags.DEFINE_string("replot", None, "Redraw histograms.png/.pdf and "
                    "report.md of this run directory from its results.json "
                    "and exit; takes no other flag.")
cli.define_run_dir_flags()

for _name, _valid in (("acts", gh.ELEMENTWISE), ("inits", gh.STATIC_INITS)):
  flags.register_validator(
      _name, lambda v, valid=_valid: bool(v) and set(v) <= set(valid) and
      len(set(v)) == len(v),
      message=f"--{_name} must be distinct comma-separated names from: "
      f"{', '.join(_valid)}")
for _name, _low in (("depth", 1), ("width", 1), ("num_examples", 1),
                    ("num_bins", 2)):
  flags.register_validator(_name, lambda v, low=_low: v >= low,
                           message=f"--{_name} must be an integer >= {_low}")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--acts=tanh")
  if FLAGS.replot is not None:
    return histograms_cli.replot(FLAGS.replot)
  config = histograms_cli.make_config()
  out_dir = FLAGS.out_dir or rundir.default_run_dir(
      "runs/gradient_histograms", f"L{config.depth}_N{config.width}")
  cli.check_out_dir(out_dir, FLAGS.overwrite)
  try:
    dataset = data.load_dataset(config.dataset)
  except data.DatasetUnavailableError as e:
    cli.fail(e)
  if config.num_examples > dataset.x_train.shape[0]:
    cli.fail(f"--num_examples must be <= {dataset.x_train.shape[0]} (the "
             f"{dataset.name} training examples), got {config.num_examples}")

  start = time.perf_counter()
  results = gh.run_study(config, dataset)
  results["seconds"] = time.perf_counter() - start
  results["platform"] = jax.devices()[0].platform
  results["config"] |= {"out_dir": out_dir, "overwrite": FLAGS.overwrite}
  print(gh.format_report(results))
  reproduction.write_run(out_dir, results, FLAGS.overwrite)
  print(f"took {results['seconds']:.1f} s on {results['platform']}; wrote "
        f"{out_dir}/{reproduction.output_names(gh.SCHEMA)}")


if __name__ == "__main__":
  cli.run(main)
