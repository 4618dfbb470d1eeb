"""The lecture experiments as named presets of training arms.

Each preset is the set of arms (``TrainConfig``s) that one lecture compares,
run on the same data with the same seeds; ``experiments.lecture`` runs one
and writes its table, figures and TensorBoard logs. The measured outcomes
are in README.md.

* ``xor_deep`` (lecture 001, Sung Kim 10-1): XOR with 10 hidden layers of
  5 units, weights U(-1, 1), zero biases, a sigmoid output and plain gradient
  descent at learning rate 0.1 on the 4 points. Sigmoid stays at loss ln 2;
  the same net with 2 hidden layers learns; ReLU as in the lecture, and the
  candidate fixes: He init, wider layers, leaky ReLU, tanh. (He init alone
  cannot revive dead ReLUs: with zero biases a ReLU net's active units do not
  depend on the weights' scale.)
* ``digits_deep`` (lecture 000): 4 hidden layers, sigmoid against ReLU, tanh
  and leaky ReLU, on scikit-learn's 8x8 digits (and MNIST when its files are
  present: ``mnist_deep``).
* ``init_failures`` (lectures 002-004): zero, small, large, Glorot and He
  initialisation on a deeper digits net.
"""

import dataclasses

from vgrad.studies.training_study import TrainConfig


@dataclasses.dataclass(frozen=True)
class Preset:
  """A named comparison.

  Attributes:
    name: registry name.
    lecture: which lecture deck it reproduces.
    question: what the comparison shows, one line.
    arms: the configurations, each with a distinct label.
  """
  name: str
  lecture: str
  question: str
  arms: tuple[TrainConfig, ...]

  @property
  def dataset(self) -> str:
    return self.arms[0].dataset


def _arms(base: TrainConfig, *variants: dict) -> tuple[TrainConfig, ...]:
  return tuple(dataclasses.replace(base, **v) for v in variants)


_XOR = TrainConfig(dataset="xor", act="sigmoid", init="uniform", depth=10,
                   width=5, optimizer="sgd", lr=0.1, steps=20_000,
                   batch_size=0, seeds=32, log_every=1000)

_DIGITS = TrainConfig(dataset="digits", act="sigmoid", init="glorot_uniform",
                      depth=4, width=128, optimizer="sgd", lr=0.1,
                      steps=3000, batch_size=64, seeds=8, log_every=100)

# Lecture 000's comparison: sigmoid against the ReLU family and tanh.
_LECTURE_000 = (dict(label="sigmoid"),
                dict(label="relu", act="relu"),
                dict(label="tanh", act="tanh"),
                dict(label="leaky_relu(0.01)", act="leaky_relu"))

_INIT = TrainConfig(dataset="digits", act="tanh", init="glorot_uniform",
                    depth=8, width=64, optimizer="sgd", lr=0.05, steps=2000,
                    batch_size=64, seeds=8, log_every=100)

PRESETS = {
    "xor_deep": Preset(
        "xor_deep", "001 (Sung Kim, ReLU: better non-linearity)",
        "why a 10-layer sigmoid net cannot learn XOR, and what fixes it",
        _arms(_XOR,
              dict(label="sigmoid, U(-1,1)"),
              dict(label="sigmoid, 2 hidden layers", depth=2),
              dict(label="relu, U(-1,1)", act="relu"),
              dict(label="relu, He normal", act="relu", init="he_normal"),
              dict(label="relu, He normal, width 32", act="relu",
                   init="he_normal", width=32),
              dict(label="leaky_relu(0.01), U(-1,1)", act="leaky_relu"),
              dict(label="tanh, U(-1,1)", act="tanh"))),
    "digits_deep": Preset(
        "digits_deep", "000 (deep learning cont.: sigmoid vs ReLU)",
        "4 hidden layers on 8x8 digits: sigmoid against ReLU-family and tanh",
        _arms(_DIGITS, *_LECTURE_000)),
    "mnist_deep": Preset(
        "mnist_deep", "000 (deep learning cont.: sigmoid vs ReLU)",
        "4 hidden layers on MNIST: sigmoid against ReLU-family and tanh",
        _arms(dataclasses.replace(_DIGITS, dataset="mnist", batch_size=128,
                                  steps=3000, log_every=250),
              *_LECTURE_000)),
    "init_failures": Preset(
        "init_failures", "002-004 (weight initialisation)",
        "zero, small and large initialisation fail; Glorot and He work",
        _arms(_INIT,
              dict(label="zeros, sigmoid", init="zeros", act="sigmoid"),
              dict(label="small N(0,0.01), tanh", init="small_normal"),
              dict(label="large N(0,1), tanh", init="large_normal"),
              dict(label="large N(0,1), relu", init="large_normal",
                   act="relu"),
              dict(label="glorot, sigmoid", act="sigmoid"),
              dict(label="glorot, tanh"),
              dict(label="he, relu", init="he_normal", act="relu"))),
}


def get_preset(name: str) -> Preset:
  """The preset ``name``; ValueError listing the valid names otherwise."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; valid presets: "
                     f"{', '.join(sorted(PRESETS))}")
  return PRESETS[name]
