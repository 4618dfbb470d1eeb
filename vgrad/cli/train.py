"""The configs ``experiments.train`` builds from its flags."""

from absl import flags

from vgrad.cli import app as cli
from vgrad.nn import activations
from vgrad.studies import training_study

FLAGS = flags.FLAGS


def make_configs() -> list[training_study.TrainConfig]:
  if FLAGS.momentum != 0.9 and FLAGS.optimizer != "momentum":
    cli.fail(f"--momentum applies only to --optimizer=momentum, not "
             f"--optimizer={FLAGS.optimizer}")
  configs = []
  for act in FLAGS.act:
    network = cli.network_config(act)   # --init=critical: per activation
    configs.append(training_study.TrainConfig(
        label=activations.get_activation(
            act, **network.act_params).describe(),
        dataset=FLAGS.dataset, act=act, act_params=network.act_params,
        init=network.init, sigma_w2=network.sigma_w2,
        sigma_b2=network.sigma_b2, depth=FLAGS.depth, width=FLAGS.width,
        loss=FLAGS.loss, optimizer=FLAGS.optimizer, lr=FLAGS.lr,
        momentum=FLAGS.momentum, clip_norm=FLAGS.clip_norm,
        dropout=FLAGS.dropout, steps=FLAGS.steps,
        batch_size=FLAGS.batch_size, seeds=FLAGS.seeds, seed=FLAGS.seed,
        log_every=FLAGS.log_every))
  return configs
