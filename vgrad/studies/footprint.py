"""How much memory a run must hold at once, from its settings alone.

Every function returns a list of :class:`Term`: the arrays a run cannot do
without, each with its size in bytes, what it is in words and the setting
it grows with. Their sum is a LOWER bound on the run's peak memory: it
counts the weights, the data, the per-input Jacobians and the results a
study must hold at the same time, and leaves out JAX's buffers, XLA's
temporaries and Python (``benchmarks/footprint_benchmark.py`` measures
each against the peak of real runs). A run whose bound exceeds the memory
of the machine cannot fit, so the entry points refuse it before any work
(:func:`vgrad.cli.app.check_memory`), naming the largest term's setting.

Nothing here allocates or imports JAX: the estimates are arithmetic on the
settings (the dataset shapes are those of :data:`DATASET_SHAPES`).
"""

import dataclasses

# (input features, outputs, training examples) of each registered dataset
# (vgrad.training.data: XOR's 4 points, scikit-learn's digits and diabetes
# at the default 20 % test split, MNIST's 60 000 training images).
DATASET_SHAPES = {
    "xor": (2, 2, 4),
    "digits": (64, 10, 1438),
    "diabetes": (10, 1, 354),
    "mnist": (784, 10, 60_000),
}

# Optimizer state per parameter, in copies of the parameters.
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}

GB = 1e9


@dataclasses.dataclass(frozen=True)
class Term:
  """``nbytes`` of ``what`` (words with the sizes); ``setting``: the
  setting (flag name) it grows with fastest."""
  nbytes: float
  what: str
  setting: str


def total(terms: list[Term]) -> float:
  """Bytes of all ``terms``."""
  return float(sum(t.nbytes for t in terms))


def largest(terms: list[Term]) -> Term:
  return max(terms, key=lambda t: t.nbytes)


def itemsize(dtype: str) -> int:
  return {"float32": 4, "float64": 8}[dtype]


def mlp_parameters(depth: int, width: int, d_in: int, d_out: int) -> float:
  """Weights and biases of ``depth`` hidden layers of ``width`` units
  between ``d_in`` inputs and ``d_out`` outputs."""
  return (d_in * width + (depth - 1) * width * width + width * d_out
          + depth * width + d_out)


def spectrum(depth: int, width: int, num_inputs: int, dtype: str = "float32",
             method: str = "auto", targets: int | None = None) -> list[Term]:
  """The Jacobian spectra of an MLP of ``depth`` layers of ``width`` units
  (:mod:`vgrad.studies.spectrum_study`) at ``num_inputs`` inputs.

  Held at once: the square weights (a float64 copy too under ``qr``, whose
  forward pass runs in float64), one input's ``width x width`` Jacobian
  product and its SVD's copy, and every input's singular values at every
  reported layer (``targets``, default every layer). Under ``qr`` the
  ``targets`` triangular factors of every input wait for the final stage
  together (float64).
  """
  size = itemsize(dtype)
  targets = depth if targets is None else targets
  square = float(width) * width
  weights = depth * square * (size + (8 if method == "qr" else 0))
  terms = [
      Term(weights, f"the weights: {depth} layers of {width} x {width}",
           "width" if width * width > depth else "depth"),
      Term(2 * square * size, f"a {width} x {width} Jacobian product and its "
           "SVD's copy", "width"),
      Term(float(num_inputs) * targets * width * 8,
           f"the singular values of {num_inputs} inputs at {targets} layers",
           "num_inputs"),
  ]
  if method == "qr":
    terms.append(Term(float(num_inputs) * targets * square * 8,
                      f"{num_inputs} inputs x {targets} layers of float64 "
                      f"triangular factors of {width} x {width}",
                      "qr_layers"))
  return terms


def dense_state(num_features: int, num_blocks: int, num_inputs: int,
                parameters: float, dtype: str = "float32",
                matrix_free: bool = False) -> list[Term]:
  """Any model cut into ``num_blocks`` blocks whose state has
  ``num_features`` entries (:func:`vgrad.probes.blocks.jacobian_spectra`):
  its ``parameters``, one input's dense ``num_features^2`` Jacobian product
  and its SVD's copy (none for the matrix-free ``lanczos``: a few vectors
  per block), and the values of every input at every block."""
  size = itemsize(dtype)
  n = float(num_features)
  terms = [Term(parameters * size, f"the {parameters:.3g} parameters",
                "width"),
           Term(float(num_inputs) * num_blocks * n * 8,
                f"the singular values of {num_inputs} inputs at "
                f"{num_blocks} blocks", "num_inputs")]
  if not matrix_free:
    terms.append(Term(2 * n * n * size, f"a {num_features} x "
                      f"{num_features} Jacobian product and its SVD's copy "
                      "(--method=lanczos forms none)", "width"))
  return terms


# Per example model of vgrad.nn.zoo: (features of its state at width w and
# image side s, parameters per block at width w), the parameters counting
# only the square weights (a lower bound): the cnn's 3 x 3 kernels, the
# residual MLP's hidden weight, the RNN's recurrent matrix (one, shared),
# the transformer's four attention projections; the transformer's 4 tokens.
_ZOO = {
    "cnn": (lambda w, s: s * s * w, lambda w: 9 * w * w),
    "resnet": (lambda w, s: w, lambda w: w * w),
    "rnn": (lambda w, s: w, lambda w: 0),
    "transformer": (lambda w, s: 4 * w, lambda w: 4 * w * w),
}
ZOO_DEFAULT_IMAGE_SIZE = 6


def zoo_model(model: str, depth: int, width: int, num_inputs: int,
              image_size: int | None = None, dtype: str = "float32",
              method: str = "auto") -> list[Term]:
  """:func:`dense_state` of the example model ``model`` (``--model``)."""
  features, per_block = _ZOO[model]
  n = features(width, image_size or ZOO_DEFAULT_IMAGE_SIZE)
  parameters = float(depth) * per_block(width) + (
      float(width) * width if model == "rnn" else 0)
  return dense_state(n, depth, num_inputs, parameters, dtype,
                     matrix_free=method == "lanczos")


def isometry(depths, width: int, seeds: int, dtype: str = "float64"
             ) -> list[Term]:
  """The dynamical-isometry study (:mod:`vgrad.studies.isometry_study`):
  one network at a time of the deepest depth, its square weights and its
  input-output Jacobian with the SVD's copy, and the singular values of
  every seed's network at every depth."""
  size = itemsize(dtype)
  deepest = max(depths)
  square = float(width) * width
  return [Term(deepest * square * size, f"the weights of a network of "
               f"{deepest} layers of {width} x {width}",
               "width" if width > deepest else "depths"),
          Term(2 * square * size, f"a {width} x {width} Jacobian and its "
               "SVD's copy", "width"),
          Term(float(seeds) * len(depths) * width * 8, f"the singular values "
               f"of {seeds} networks at {len(depths)} depths", "seeds")]


def training(depth: int, width: int, dataset: str, batch_size: int,
             seeds: int, optimizer: str = "sgd", networks: int = 1
             ) -> list[Term]:
  """Training ``seeds`` float32 MLPs at once (vmapped; ``networks`` such
  groups in one program, as a sweep batches its inits): per network the
  parameters, their gradients and the optimizer's state, the activations
  a step keeps for its backward pass (one minibatch; ``batch_size`` 0 is
  full batch), and the training set itself."""
  d_in, d_out, examples = DATASET_SHAPES[dataset]
  count = seeds * networks
  parameters = mlp_parameters(depth, width, d_in, d_out)
  slots = OPTIMIZER_SLOTS.get(optimizer, 0)
  copies = 2 + slots
  batch = min(batch_size or examples, examples)
  nets = (f"{count} network{'s' if count != 1 else ''}" if networks > 1
          else f"{count} seed{'s' if count != 1 else ''}")
  held = "weights, gradients" + (f", {slots} optimizer slot"
                                 f"{'s' if slots > 1 else ''}" if slots
                                 else "")
  many = "seeds" if count > width else "width"
  return [
      Term(count * parameters * copies * 4,
           f"{nets} x {parameters:.3g} parameters x {copies} ({held})",
           "seeds" if count > width * width else "width"),
      Term(count * float(batch) * width * depth * 4,
           f"{nets} x activations of {batch} examples at {depth} layers of "
           f"{width} units", many),
      Term(float(examples) * d_in * 4, f"the {dataset} training set",
           "dataset"),
  ]


def sweep_spectrum(depth: int, width: int, num_inputs: int, networks: int
                   ) -> list[Term]:
  """One batch of a spectrum sweep (:mod:`vgrad.studies.sweep`):
  ``networks`` float32 MLPs at once (its inits x seeds, vmapped), each
  with its square weights, one Jacobian product and its SVD's copy, and
  its singular values at every layer for ``num_inputs`` inputs."""
  square = float(width) * width
  return [
      Term(networks * depth * square * 4, f"{networks} networks' weights: "
           f"{depth} layers of {width} x {width}",
           "seeds" if networks > width else "width"),
      Term(networks * 2 * square * 4, f"{networks} {width} x {width} "
           "Jacobian products and their SVDs' copies", "width"),
      Term(float(networks) * num_inputs * depth * width * 8,
           f"the singular values of {networks} networks x {num_inputs} "
           f"inputs at {depth} layers", "num_inputs"),
  ]


# The sweep's flags for the settings of its terms.
SWEEP_FLAGS = {"width": "widths", "depth": "depths"}


def sweep(config) -> list[Term]:
  """A sweep's largest batch (``config``: a
  :class:`vgrad.studies.sweep.SweepConfig`): one (act, depth, width)
  group at a time, its inits x seeds networks at once."""
  networks = len(config.inits) * config.seeds
  if config.task == "spectrum":
    groups = [sweep_spectrum(d, w, config.num_inputs, networks)
              for d in config.depths for w in config.widths]
  else:
    groups = [training(d, w, config.dataset, config.batch_size, config.seeds,
                       config.optimizer, networks=len(config.inits))
              for d in config.depths for w in config.widths]
  return max(groups, key=total)


def describe(terms: list[Term]) -> str:
  """``"about 4.1e+02 GB, mostly the weights: ..."``"""
  top = largest(terms)
  return (f"at least {total(terms) / GB:.3g} GB, mostly {top.what} "
          f"({top.nbytes / GB:.3g} GB)")


# --------------------------------------------------------------------------
# Work: floating-point operations, for the time a large run takes.

# The rate a time note assumes: a few cores' sustained matmul throughput
# (this project's 2-vCPU VMs run float32 matmuls at 20-60 GFLOP/s); an
# accelerator is 10-1000x faster. A note, never a refusal: the count is
# exact arithmetic, the rate a rough guide.
NOMINAL_FLOPS = 2e10
# Runs estimated to take longer than this at NOMINAL_FLOPS get a note.
LONG_SECONDS = 600.0


def spectrum_flops(depth: int, width: int, num_inputs: int) -> float:
  """Jacobian spectra of an MLP: per input and layer a ``width^3``
  product (2 n^3) and a decomposition (~10 n^3 for an SVD or QR + SVD)."""
  return 12.0 * num_inputs * depth * float(width) ** 3


def training_flops(depth: int, width: int, dataset: str, batch_size: int,
                   seeds: int, steps: int, networks: int = 1) -> float:
  """``steps`` SGD steps of ``seeds x networks`` MLPs: 6 flops per
  parameter per example (forward 2, backward 4)."""
  d_in, d_out, examples = DATASET_SHAPES[dataset]
  batch = min(batch_size or examples, examples)
  return (6.0 * steps * seeds * networks * batch
          * mlp_parameters(depth, width, d_in, d_out))


def time_note(flops: float, rate: float = NOMINAL_FLOPS) -> str | None:
  """A note for a run of ``flops`` that takes longer than LONG_SECONDS at
  ``rate``, else None."""
  seconds = flops / rate
  if seconds <= LONG_SECONDS:
    return None
  hours = seconds / 3600
  span = f"{hours:.3g} hours" if hours >= 1 else f"{seconds / 60:.0f} min"
  return (f"this run does about {flops:.2g} floating-point operations: "
          f"about {span} at {rate / 1e9:.0f} GFLOP/s (a few CPU cores; an "
          f"accelerator is 10-1000x faster)")


def sweep_flops(config) -> float:
  """Every cell of a sweep (``config``: a SweepConfig), every seed."""
  cells = len(config.acts) * len(config.inits)
  total = 0.0
  for d in config.depths:
    for w in config.widths:
      if config.task == "spectrum":
        total += cells * config.seeds * spectrum_flops(d, w, config.num_inputs)
      else:
        total += cells * training_flops(d, w, config.dataset,
                                        config.batch_size, config.seeds,
                                        config.steps)
  return total

