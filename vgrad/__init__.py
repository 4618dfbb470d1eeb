"""vgrad: vanishing and exploding gradients, measured and predicted.

The names a researcher uses from a notebook or a script (README.md, "vgrad
as a library")::

    import vgrad
    model = vgrad.make_mlp(depth=10, width=64, activation="tanh")

Build a net (``make_mlp``, the activation and initializer registries),
probe its Jacobian spectrum (``make_spectrum_probe``,
``make_log_spectrum_probe``, the matrix-free ``extreme_singular_values``
and ``spectral_density``), predict it (mean field: ``fixed_point_q``,
``chi_1``, ``critical_sigma_w2``, ...; free probability:
``singular_value_density``, ``predicted_moments``, ...), train it
(``make_optimizer``, ``init_states``, ``make_step_fn``,
``make_train_step``; the datasets ``load_dataset``, ``xor``, ``digits``,
``mnist``), monitor any Flax/Optax training loop (``gradient_stats``,
``track_gradients``, ``tracked_stats``, ``MonitorWriter``) and run whole
studies (``run_spectrum_study``, ``run_training``,
``signal_propagation``, ``coord_check``). Results files are read with
``load_results``; a spectrum results body is checked with
``check_spectrum_results``.

``import vgrad`` is light: each name is imported from its layer package
(``vgrad.nn``, ``vgrad.probes``, ``vgrad.theory``, ``vgrad.training``,
``vgrad.studies``, ``vgrad.io``) on first use, so ``import vgrad`` loads
neither JAX nor matplotlib nor absl, and the JAX-free layers (``vgrad.io``,
``vgrad.plots``) stay JAX-free.
"""

import importlib
from typing import TYPE_CHECKING

# Public name -> (module, attribute). Grouped as the README presents them.
_EXPORTS = {
    # Building a net.
    "make_mlp": ("vgrad.nn.models", "make_mlp"),
    "MLP": ("vgrad.nn.models", "MLP"),
    "NetworkConfig": ("vgrad.nn.config", "NetworkConfig"),
    "Activation": ("vgrad.nn.activations", "Activation"),
    "ACTIVATIONS": ("vgrad.nn.activations", "ACTIVATIONS"),
    "get_activation": ("vgrad.nn.activations", "get_activation"),
    "INITIALIZERS": ("vgrad.nn.initializers", "INITIALIZERS"),
    "get_initializer": ("vgrad.nn.initializers", "get_initializer"),
    "get_bias_initializer": ("vgrad.nn.initializers", "get_bias_initializer"),
    "lsuv_initialize": ("vgrad.nn.lsuv", "initialize"),
    # Probing the Jacobian.
    "make_spectrum_probe": ("vgrad.probes.jacobian", "make_spectrum_probe"),
    "make_input_output_probe": ("vgrad.probes.jacobian",
                                "make_input_output_probe"),
    "input_output_jacobian": ("vgrad.probes.jacobian",
                              "input_output_jacobian"),
    "Spectra": ("vgrad.probes.jacobian", "Spectra"),
    "make_log_spectrum_probe": ("vgrad.probes.log_spectrum",
                                "make_log_spectrum_probe"),
    "jacobian_spectra": ("vgrad.studies.block_spectra", "jacobian_spectra"),
    "mlp_blocks": ("vgrad.studies.block_spectra", "mlp_blocks"),
    "Blocks": ("vgrad.probes.blocks", "Blocks"),
    "flax_blocks": ("vgrad.probes.blocks", "flax_blocks"),
    "make_lyapunov_probe": ("vgrad.probes.log_spectrum",
                            "make_lyapunov_probe"),
    "lyapunov_exponents": ("vgrad.probes.log_spectrum",
                           "lyapunov_exponents"),
    "extreme_singular_values": ("vgrad.probes.matrix_free",
                                "extreme_singular_values"),
    "spectral_density": ("vgrad.probes.matrix_free", "spectral_density"),
    "mlp_map": ("vgrad.probes.matrix_free", "mlp_map"),
    # Mean field.
    "fixed_point_q": ("vgrad.theory.meanfield", "fixed_point_q"),
    "fixed_point_c": ("vgrad.theory.meanfield", "fixed_point_c"),
    "chi_1": ("vgrad.theory.meanfield", "chi_1"),
    "chi_c": ("vgrad.theory.meanfield", "chi_c"),
    "length_map": ("vgrad.theory.meanfield", "length_map"),
    "correlation_map": ("vgrad.theory.meanfield", "correlation_map"),
    "critical_sigma_w2": ("vgrad.theory.meanfield", "critical_sigma_w2"),
    "critical_point": ("vgrad.theory.critical", "critical_point"),
    "CriticalPoint": ("vgrad.theory.critical", "CriticalPoint"),
    # Kernel shaping (DKS, TAT).
    "transform_activation": ("vgrad.theory.kernel_shaping",
                             "transform_activation"),
    "transformed_activation": ("vgrad.theory.kernel_shaping",
                               "transformed_activation"),
    "transform_many": ("vgrad.theory.kernel_shaping", "transform_many"),
    "local_maps": ("vgrad.theory.kernel_shaping", "local_maps"),
    "solve_meanfield": ("vgrad.theory.meanfield", "solve"),
    "solve_grid": ("vgrad.theory.meanfield", "solve_grid"),
    "MeanField": ("vgrad.theory.meanfield", "MeanField"),
    # Free probability.
    "singular_value_density": ("vgrad.theory.free_probability",
                               "singular_value_density"),
    "squared_singular_value_density": ("vgrad.theory.free_probability",
                                       "squared_singular_value_density"),
    "predicted_moments": ("vgrad.theory.free_probability",
                          "predicted_moments"),
    "predicted_variance_ratio": ("vgrad.theory.free_probability",
                                 "predicted_variance_ratio"),
    "measured_moments": ("vgrad.theory.free_probability", "measured_moments"),
    "support_upper_edge": ("vgrad.theory.free_probability",
                           "support_upper_edge"),
    # Training.
    "TrainState": ("vgrad.training.train", "TrainState"),
    "make_optimizer": ("vgrad.training.train", "make_optimizer"),
    "init_state": ("vgrad.training.train", "init_state"),
    "init_states": ("vgrad.training.train", "init_states"),
    "make_step_fn": ("vgrad.training.train", "make_step_fn"),
    "make_train_step": ("vgrad.training.train", "make_train_step"),
    "make_evaluate": ("vgrad.training.train", "make_evaluate"),
    # Monitoring any training loop.
    "gradient_stats": ("vgrad.training.monitor", "gradient_stats"),
    "track_gradients": ("vgrad.training.monitor", "track_gradients"),
    "tracked_stats": ("vgrad.training.monitor", "tracked_stats"),
    "first_nonfinite": ("vgrad.training.monitor", "first_nonfinite"),
    "global_norm": ("vgrad.training.monitor", "global_norm"),
    "gradient_noise_scale": ("vgrad.training.monitor",
                             "gradient_noise_scale"),
    "MonitorWriter": ("vgrad.training.monitor_log", "MonitorWriter"),
    "read_monitor_jsonl": ("vgrad.training.monitor_log", "read_jsonl"),
    # Data.
    "Dataset": ("vgrad.training.data", "Dataset"),
    "DATASETS": ("vgrad.training.data", "DATASETS"),
    "load_dataset": ("vgrad.training.data", "load_dataset"),
    "xor": ("vgrad.training.data", "xor"),
    "digits": ("vgrad.training.data", "digits"),
    "diabetes": ("vgrad.training.data", "diabetes"),
    "mnist": ("vgrad.training.data", "mnist"),
    # Whole studies.
    "SpectrumConfig": ("vgrad.studies.spectrum_study", "SpectrumConfig"),
    "run_spectrum_study": ("vgrad.studies.spectrum_study", "run_study"),
    "TrainConfig": ("vgrad.studies.training_study", "TrainConfig"),
    "run_training": ("vgrad.studies.training_study", "run_training"),
    "signal_propagation": ("vgrad.studies.signal_propagation",
                           "signal_propagation"),
    "coord_check": ("vgrad.studies.coord_check", "coord_check"),
    "CoordSetup": ("vgrad.studies.coord_check", "Setup"),
    "make_coord_check_factory": ("vgrad.studies.coord_check",
                                 "make_mlp_factory"),
    # Results files.
    "load_results": ("vgrad.io.schemas", "load_results"),
    "check_spectrum_results": ("vgrad.io.spectrum_records", "check_results"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  """Imports a public name's module on first use (PEP 562)."""
  try:
    module, attribute = _EXPORTS[name]
  except KeyError:
    raise AttributeError(f"module 'vgrad' has no attribute {name!r}") from None
  value = getattr(importlib.import_module(module), attribute)
  globals()[name] = value   # later look-ups skip __getattr__
  return value


def __dir__():
  return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:   # for type checkers and IDEs; never run
  from vgrad.io.schemas import load_results  # noqa: F401
  from vgrad.io.spectrum_records import check_results as check_spectrum_results  # noqa: F401
  from vgrad.nn.activations import ACTIVATIONS  # noqa: F401
  from vgrad.nn.activations import Activation  # noqa: F401
  from vgrad.nn.activations import get_activation  # noqa: F401
  from vgrad.nn.config import NetworkConfig  # noqa: F401
  from vgrad.nn.initializers import INITIALIZERS  # noqa: F401
  from vgrad.nn.initializers import get_bias_initializer  # noqa: F401
  from vgrad.nn.initializers import get_initializer  # noqa: F401
  from vgrad.nn.lsuv import initialize as lsuv_initialize  # noqa: F401
  from vgrad.nn.models import MLP  # noqa: F401
  from vgrad.nn.models import make_mlp  # noqa: F401
  from vgrad.probes.jacobian import Spectra  # noqa: F401
  from vgrad.probes.jacobian import input_output_jacobian  # noqa: F401
  from vgrad.probes.jacobian import make_input_output_probe  # noqa: F401
  from vgrad.probes.jacobian import make_spectrum_probe  # noqa: F401
  from vgrad.probes.log_spectrum import lyapunov_exponents  # noqa: F401
  from vgrad.probes.log_spectrum import make_log_spectrum_probe  # noqa: F401
  from vgrad.probes.log_spectrum import make_lyapunov_probe  # noqa: F401
  from vgrad.probes.matrix_free import extreme_singular_values  # noqa: F401
  from vgrad.probes.matrix_free import mlp_map  # noqa: F401
  from vgrad.probes.matrix_free import spectral_density  # noqa: F401
  from vgrad.studies.coord_check import Setup as CoordSetup  # noqa: F401
  from vgrad.studies.coord_check import coord_check  # noqa: F401
  from vgrad.studies.coord_check import (
    make_mlp_factory as make_coord_check_factory,  # noqa: F401
  )
  from vgrad.studies.signal_propagation import signal_propagation  # noqa: F401
  from vgrad.studies.spectrum_study import SpectrumConfig  # noqa: F401
  from vgrad.studies.spectrum_study import run_study as run_spectrum_study  # noqa: F401
  from vgrad.studies.training_study import TrainConfig  # noqa: F401
  from vgrad.studies.training_study import run_training  # noqa: F401
  from vgrad.theory.critical import CriticalPoint  # noqa: F401
  from vgrad.theory.critical import critical_point  # noqa: F401
  from vgrad.theory.free_probability import measured_moments  # noqa: F401
  from vgrad.theory.free_probability import predicted_moments  # noqa: F401
  from vgrad.theory.free_probability import predicted_variance_ratio  # noqa: F401
  from vgrad.theory.free_probability import singular_value_density  # noqa: F401
  from vgrad.theory.free_probability import squared_singular_value_density  # noqa: F401
  from vgrad.theory.free_probability import support_upper_edge  # noqa: F401
  from vgrad.theory.kernel_shaping import local_maps  # noqa: F401
  from vgrad.theory.kernel_shaping import transform_activation  # noqa: F401
  from vgrad.theory.kernel_shaping import transform_many  # noqa: F401
  from vgrad.theory.kernel_shaping import transformed_activation  # noqa: F401
  from vgrad.theory.meanfield import MeanField  # noqa: F401
  from vgrad.theory.meanfield import chi_1  # noqa: F401
  from vgrad.theory.meanfield import chi_c  # noqa: F401
  from vgrad.theory.meanfield import correlation_map  # noqa: F401
  from vgrad.theory.meanfield import critical_sigma_w2  # noqa: F401
  from vgrad.theory.meanfield import fixed_point_c  # noqa: F401
  from vgrad.theory.meanfield import fixed_point_q  # noqa: F401
  from vgrad.theory.meanfield import length_map  # noqa: F401
  from vgrad.theory.meanfield import solve as solve_meanfield  # noqa: F401
  from vgrad.theory.meanfield import solve_grid  # noqa: F401
  from vgrad.training.data import DATASETS  # noqa: F401
  from vgrad.training.data import Dataset  # noqa: F401
  from vgrad.training.data import diabetes  # noqa: F401
  from vgrad.training.data import digits  # noqa: F401
  from vgrad.training.data import load_dataset  # noqa: F401
  from vgrad.training.data import mnist  # noqa: F401
  from vgrad.training.data import xor  # noqa: F401
  from vgrad.training.monitor import first_nonfinite  # noqa: F401
  from vgrad.training.monitor import global_norm  # noqa: F401
  from vgrad.training.monitor import gradient_noise_scale  # noqa: F401
  from vgrad.training.monitor import gradient_stats  # noqa: F401
  from vgrad.training.monitor import track_gradients  # noqa: F401
  from vgrad.training.monitor import tracked_stats  # noqa: F401
  from vgrad.training.monitor_log import MonitorWriter  # noqa: F401
  from vgrad.training.monitor_log import read_jsonl as read_monitor_jsonl  # noqa: F401
  from vgrad.training.train import TrainState  # noqa: F401
  from vgrad.training.train import init_state  # noqa: F401
  from vgrad.training.train import init_states  # noqa: F401
  from vgrad.training.train import make_evaluate  # noqa: F401
  from vgrad.training.train import make_optimizer  # noqa: F401
  from vgrad.training.train import make_step_fn  # noqa: F401
  from vgrad.training.train import make_train_step  # noqa: F401
