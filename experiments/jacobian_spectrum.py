r"""Exact Jacobian spectra of a deep MLP, layer by layer.

    python -m experiments.jacobian_spectrum --act=sigmoid --depth=10

``--model=cnn|resnet|rnn|transformer`` probes one of the worked examples
(vgrad/nn/zoo.py) instead, cut into its blocks, with the same output.

Builds a square MLP (``--depth`` hidden layers of ``--width`` units, input size
``--width``, no readout), computes for ``--num_inputs`` Gaussian inputs every
layer's Jacobian J_l = D_l W_l and every input-to-layer Jacobian
J_{<=l} = D_l W_l ... D_1 W_1 exactly, and prints their singular-value
statistics and a verdict. Expected with the defaults (sigmoid, Glorot uniform,
width 256): vanishing, input-output gain about 1e-6, each layer shrinking the
signal about 4x (sigmoid' <= 1/4).

``--method`` picks how: ``dense`` multiplies the Jacobians out (float32
resolves only singular values within ~3e4 of the largest), ``qr`` computes
exact log singular values at every layer (or the ``--qr_layers``) by QR
without forming the product (any depth: ``--depth=10000`` works in
float32), and ``auto`` (the default) runs the cheap QR pass first and uses
``qr`` exactly when ``dense`` would lose values, printing which it chose and
why.

Writes ``config.json``, ``results.json`` (schema in README.md, the same
records under every method; its ``command`` is the command line that made
it) and ``spectrum.png``/``.pdf`` into a fresh run directory
(``--out_dir``, default
``runs/jacobian_spectrum/<time>_<act>_<init>_L<depth>_N<width>``).
"""

import time

from absl import flags
import jax

from vgrad.cli import app as cli
from vgrad.cli import jacobian_spectrum as spectrum_cli
from vgrad.io import rundir
from vgrad.plots import spectrum_plots
from vgrad.probes import block_lanczos
from vgrad.probes import log_spectrum
from vgrad.studies import footprint
from vgrad.studies import model_spectra
from vgrad.studies import spectrum_study

FLAGS = flags.FLAGS

flags.DEFINE_enum("model", "mlp", list(model_spectra.MODELS),
                  "mlp: vgrad's MLP; cnn, resnet, rnn, transformer: the "
                  "worked examples of vgrad/nn/zoo.py (circular conv net, "
                  "pre-LN residual MLP, RNN through --depth time steps, "
                  "pre-LN transformer), cut into their blocks. Network flags "
                  "not given take the model's defaults.")
flags.DEFINE_bool("skip", True, "Skip connections of --model=resnet or "
                  "transformer (--noskip: the same blocks without them).")

cli.define_network_flags(act="sigmoid", init="glorot_uniform", depth=10,
                         width=256)
flags.DEFINE_integer("num_inputs", 16, "Inputs x_0 ~ N(0, I) to probe, >= 1.")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the inputs.")
flags.DEFINE_enum("dtype", "float32", ["float32", "float64"],
                  "Working precision of the network and the probe.")
flags.DEFINE_enum("method", "auto", list(spectrum_study.METHODS),
                  "dense: multiply the Jacobians out and take SVDs; qr: "
                  "exact log singular values by QR, at any depth; auto: qr "
                  "where dense would lose values, else dense; lanczos: "
                  "matrix-free (Golub-Kahan on JVP/VJP) for widths where "
                  "dense costs too much: the 5 largest and smallest "
                  "singular values with residual bounds and the SLQ "
                  "density.")
flags.DEFINE_list("qr_layers", None, "Layers whose input-to-layer spectra "
                  "--method=qr or lanczos computes (comma-separated; "
                  "--depth is always added). Default: every layer (one "
                  "Jacobi or Lanczos run per layer and input: name fewer "
                  "for very deep nets).")
flags.DEFINE_integer("lanczos_steps", None, "Golub-Kahan steps per matrix "
                     "for --method=lanczos (default "
                     f"{block_lanczos.DEFAULT_STEPS}; at most the matrix's "
                     "size, which gives its whole spectrum).")
flags.DEFINE_integer("image_size", None, "Image side of --model=cnn (its "
                     "activations are image_size^2 * width values; default "
                     "6).")
flags.DEFINE_integer("qr_sweeps", None, "Most Jacobi sweeps per layer for "
                     "--method=qr (default "
                     f"{log_spectrum.DEFAULT_MAX_SWEEPS}).")
cli.define_run_dir_flags()
flags.adopt_module_key_flags(cli)  # --helpshort lists the network flags too
flags.register_validator("num_inputs", lambda v: v >= 1,
                         message="--num_inputs must be an integer >= 1")
flags.register_validator("qr_sweeps", lambda v: v is None or v >= 1,
                         message="--qr_sweeps must be an integer >= 1")
flags.register_validator("lanczos_steps", lambda v: v is None or v >= 2,
                         message="--lanczos_steps must be an integer >= 2")
flags.register_validator("image_size", lambda v: v is None or v >= 1,
                         message="--image_size must be an integer >= 1")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {' '.join(argv[1:])}; flags look like "
             f"--act=sigmoid")
  model_config = spectrum_cli.make_model_config()
  config = model_config or spectrum_cli.make_config()
  name = f"{config.act}_{config.init}_L{config.depth}_N{config.width}"
  if model_config is not None:
    name = f"{config.model}_{name}"
  out_dir = FLAGS.out_dir or rundir.default_run_dir("runs/jacobian_spectrum",
                                                    name)
  cli.check_out_dir(out_dir, FLAGS.overwrite)
  cli.check_memory(spectrum_cli.memory_terms(config),
                   flops=footprint.spectrum_flops(config.depth, config.width,
                                                  config.num_inputs))
  if config.dtype == "float64":
    jax.config.update("jax_enable_x64", True)

  start = time.perf_counter()
  if model_config is None:
    results = spectrum_study.run_study(config)
    # Every flag of the run, as given (act_params: the parsed ones).
    results["config"] |= {flag: FLAGS[flag].value
                          for flag in cli.ACT_PARAM_FLAGS}
    results["config"]["model"] = "mlp"
  else:
    results = spectrum_cli.run_model_study(config)
  seconds = time.perf_counter() - start
  results["config"] |= {"out_dir": out_dir, "overwrite": FLAGS.overwrite}
  results["command"] = cli.command_line()
  network = spectrum_plots.network_description(results["config"], tex=False)
  print(f"network: {network}")
  print(f"run directory: {out_dir} (config.json records every setting)")
  print(f"method: {spectrum_study.method_line(results)}")
  print(spectrum_study.format_table(results))
  note = spectrum_study.precision_note(results)
  if note:
    print(f"note: {note}")
  print(f"verdict: {spectrum_study.verdict(results)}")
  with cli.out_dir_errors():
    spectrum_cli.write_run(out_dir, results, FLAGS.overwrite)
  print(f"probe took {seconds:.2f} s on {jax.devices()[0].platform}; wrote "
        f"{out_dir}/{{config.json,results.json,spectrum.png,spectrum.pdf}}")


if __name__ == "__main__":
  cli.run(main)
