r"""Jacobian spectra of the worked-example models, block by block.

``experiments.jacobian_spectrum --model=cnn|resnet|rnn|transformer`` runs
this study: it builds one of :mod:`vgrad.nn.zoo`'s models (a circular or
delta-orthogonal conv net, a pre-LayerNorm residual MLP, a vanilla RNN
unrolled over ``depth`` time steps, a pre-LN transformer stack), cuts it into
its blocks with :func:`vgrad.probes.blocks.flax_blocks` and measures the
spectra of every block's Jacobian ``J_l = d vec(x_l) / d vec(x_{l-1})``, of
every product ``J_{<=l}`` and of the input-output Jacobian with
:func:`vgrad.studies.block_spectra.jacobian_spectra`: the same records, the
same ``results.json`` and the same figure as vgrad's own MLP
(:mod:`vgrad.studies.spectrum_study`).

Settings not given take the model's own defaults (:func:`model_defaults`:
e.g. a linear delta-orthogonal CNN of 4 blocks of 4 channels on 6 x 6
images, which is an exact isometry).
"""

import dataclasses
import inspect

import jax
import numpy as np

from vgrad.io import schemas
from vgrad.nn import zoo
from vgrad.probes import block_lanczos
from vgrad.probes import blocks as blocks_lib
from vgrad.studies import block_spectra

# --model's values; "mlp" is vgrad's MLP (vgrad.studies.spectrum_study).
MODELS = ("mlp",) + tuple(sorted(zoo.MODELS))
# The settings every example model takes (plus ``skip`` for SKIP_MODELS).
SETTINGS = ("act", "init", "depth", "width", "sigma_w2", "sigma_b2")
SKIP_MODELS = ("resnet", "transformer")


def model_defaults(model: str) -> dict:
  """The example model's default settings (its maker's keyword defaults)."""
  if model not in zoo.MODELS:
    raise ValueError(f"unknown model {model!r}; valid names: "
                     f"{', '.join(sorted(zoo.MODELS))}")
  signature = inspect.signature(zoo.MODELS[model])
  wanted = SETTINGS + (("skip",) if model in SKIP_MODELS else ())
  return {name: signature.parameters[name].default for name in wanted}


@dataclasses.dataclass(frozen=True)
class ModelSpectrumConfig:
  """One probe of an example model.

  ``model`` is a name of :data:`vgrad.nn.zoo.MODELS`; ``act`` ...
  ``sigma_b2`` and ``skip`` are its settings (:func:`model_defaults` gives
  the defaults; ``depth`` counts blocks, the RNN's time steps); ``method``,
  ``qr_layers`` (the layers of ``layers`` under qr and lanczos),
  ``qr_sweeps`` and ``lanczos_steps`` are those of ``jacobian_spectra``;
  ``image_size`` the cnn's image side (None: its default).
  """
  model: str
  act: str
  init: str
  depth: int
  width: int
  sigma_w2: float | None
  sigma_b2: float | None
  skip: bool | None = None
  image_size: int | None = None
  num_inputs: int = 16
  seed: int = 0
  dtype: str = "float32"
  method: str = "auto"
  qr_layers: tuple[int, ...] | None = None
  qr_sweeps: int | None = None
  lanczos_steps: int = block_lanczos.DEFAULT_STEPS


def make_config(model: str, **given) -> ModelSpectrumConfig:
  """The config of ``model`` with the settings ``given`` (None or absent:
  the model's default)."""
  settings = model_defaults(model)
  for name in settings:
    if given.get(name) is not None:
      settings[name] = given.pop(name)
    given.pop(name, None)
  return ModelSpectrumConfig(model=model, **settings, **given)


def build(config: ModelSpectrumConfig) -> zoo.Example:
  """The model, its variables and one input, from ``key(seed)``.

  Raises:
    vgrad.nn.config.ConfigError: a setting the model cannot take.
  """
  hparams = {name: getattr(config, name) for name in SETTINGS}
  if config.model in SKIP_MODELS:
    hparams["skip"] = config.skip
  if config.image_size is not None:
    hparams["size"] = config.image_size
  return zoo.build(config.model, jax.random.key(config.seed), **hparams)


def run_study(config: ModelSpectrumConfig,
              example: zoo.Example | None = None) -> dict:
  """The results dictionary (``results.json`` without ``command``) of
  ``example`` (default: ``build(config)``; a caller that built it to check
  the settings passes it on).

  The ``num_inputs`` probe inputs are drawn from the model's input
  distribution (``N(0, 1)`` entries of the model's input shape) with
  ``key(seed + 1)``; the blocks are the model's cut at
  ``zoo.BOUNDARIES[model]``.
  """
  dtype = np.dtype(config.dtype)
  example = build(config) if example is None else example
  xs = jax.random.normal(jax.random.key(config.seed + 1),
                         (config.num_inputs,) + example.x.shape, dtype)
  blocks = blocks_lib.flax_blocks(*example)
  sweeps = {} if config.qr_sweeps is None else {
      "max_sweeps": config.qr_sweeps}
  record = block_spectra.jacobian_spectra(
      blocks, xs, method=config.method, dtype=dtype,
      layers=config.qr_layers, lanczos_steps=config.lanczos_steps,
      key=jax.random.key(config.seed + 2), **sweeps)
  config_record = dataclasses.asdict(config)
  config_record["block_shape"] = list(example.x.shape)
  return {"schema": schemas.JACOBIAN_SPECTRUM, "config": config_record,
          **record}
