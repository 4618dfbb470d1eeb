"""Test configuration: CPU only, strict rank promotion, quiet logs."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402  pylint: disable=g-import-not-at-top

# Catch silent broadcasting between arrays of different rank (equinox does
# the same in its tests).
jax.config.update("jax_numpy_rank_promotion", "raise")

from absl import flags  # noqa: E402  pylint: disable=g-import-not-at-top

# absltest helpers (create_tempdir) read flags; under pytest nobody parses
# them, so take the defaults.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()
