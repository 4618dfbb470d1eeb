"""DKS and TAT (vgrad.theory.kernel_shaping): closed forms, the targets met,
a wide net that behaves as the maps say, and DeepMind's dks package.

The dks package (a test extra) integrates with a 100 000-node Gauss-Legendre
rule on [-10, 10] whose nodes take minutes to compute, and whose error at a
kink (ReLU's indicator) is ~3e-5; here its solver runs on scipy's adaptive
quadrature for kinked activations (its own rule at 4 000 nodes for smooth
ones), and benchmarks/kernel_shaping_benchmark.py compares the
package as shipped.
"""

import functools
import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from vgrad.nn import activations
from vgrad.nn import models
from vgrad.theory import kernel_shaping as ks

DEPTH = 50


def _relative_gap(a: dict, b: dict) -> float:
  assert set(a) == set(b), (a, b)
  return max(abs(float(a[k]) - float(b[k])) / max(1.0, abs(float(b[k])))
             for k in a)


class LocalMapsTest(parameterized.TestCase):

  def test_relu_closed_forms(self):
    m = ks.local_maps("relu")
    np.testing.assert_allclose(
        [m.q_1, m.q_slope_1, m.c_0, m.c_slope_1],
        [0.5, 0.5, 1 / math.pi, 1.0], rtol=1e-12)
    self.assertEqual(m.c_curve_1, math.inf)   # phi' jumps at 0

  def test_erf_closed_forms(self):
    # Williams 1997: Q(q) = (2/pi) arcsin(2q / (1 + 2q)), so Q'(1) =
    # 4 / (3 pi sqrt 5); E[erf'(z)^2] = (4/pi) / sqrt(5).
    m = ks.local_maps("erf")
    q1 = 2 / math.pi * math.asin(2 / 3)
    d2 = 4 / math.pi / math.sqrt(5)
    np.testing.assert_allclose(
        [m.q_1, m.q_slope_1, m.c_0, m.c_slope_1],
        [q1, 4 / (3 * math.pi * math.sqrt(5)), 0.0, d2 / q1], rtol=1e-10,
        atol=1e-14)

  def test_leaky_c_map_matches_quadrature(self):
    # The closed-form C-map TAT composes, against Mehler's series of the
    # normalised leaky ReLU itself.
    a = 0.3
    params = {"negative_slope": a, "output_scale": math.sqrt(2 / (1 + a * a))}
    for c in (-0.5, 0.0, 0.6):
      with jax.enable_x64(True):
        closed = float(ks._leaky_c_map(jnp.float64(c), jnp.float64(a)))
        series = float(ks.c_map("leaky_relu", jnp.float64(c), params))
      self.assertAlmostEqual(series, closed, delta=1e-6)

  def test_transform_is_an_activation_with_exact_derivative(self):
    shaped = ks.transformed_activation("softplus", "dks", depth=DEPTH)
    x = jnp.linspace(-4.0, 4.0, 41)
    np.testing.assert_allclose(shaped.deriv(x),
                               jax.vmap(jax.grad(shaped.fn))(x), rtol=1e-5)


class TargetsTest(parameterized.TestCase):

  @parameterized.parameters("tanh", "softplus", "sigmoid", "erf", "elu",
                            "selu", "swish", "gelu", "softsign",
                            "leaky_relu")
  def test_dks_meets_its_conditions(self, act):
    params = ks.transform_activation(act, "dks", depth=DEPTH).params
    m = ks.local_maps(act, params)
    np.testing.assert_allclose(
        [m.q_1, m.q_slope_1, m.c_0, m.c_slope_1],
        [1.0, 1.0, 0.0, 1.5 ** (1 / DEPTH)], atol=1e-9)

  def test_dks_relu_meets_its_slope(self):
    for depth in (3, 50):   # input shift +1 below the switch, -1 above
      params = ks.transform_activation("relu", "dks", depth=depth).params
      m = ks.local_maps("relu", params)
      np.testing.assert_allclose([m.q_1, m.c_0, m.c_slope_1],
                                 [1.0, 0.0, 1.5 ** (1 / depth)], atol=1e-9)

  @parameterized.parameters("tanh", "softplus", "erf", "swish", "gelu")
  def test_tat_smooth_meets_its_conditions(self, act):
    params = ks.transform_activation(act, "tat", depth=DEPTH,
                                     c_curve_target=0.3).params
    m = ks.local_maps(act, params)
    np.testing.assert_allclose(
        [m.q_1, m.q_slope_1, m.c_slope_1, m.c_curve_1],
        [1.0, 1.0, 1.0, 0.3 / DEPTH], atol=1e-9)
    self.assertLess(params["input_scale"] * params["output_scale"], 2.0)

  def test_tat_leaky_meets_c0(self):
    for depth, eta in ((10, 0.5), (100, 0.9)):
      params = ks.transform_activation("leaky_relu", "tat", depth=depth,
                                       c_val_0_target=eta).params
      with jax.enable_x64(True):
        c0 = float(ks.leaky_c_0(params["negative_slope"], depth))
      self.assertAlmostEqual(c0, eta, delta=1e-12)
      self.assertAlmostEqual(params["output_scale"] ** 2
                             * (1 + params["negative_slope"] ** 2), 2.0,
                             delta=1e-12)

  def test_batch_equals_one_by_one(self):
    requests = [("tanh", "dks", 10, {}), ("softplus", "dks", 100, {}),
                ("leaky_relu", "tat", 20, {}), ("gelu", "tat", 30, {})]
    batch = ks.transform_many(requests)
    for (act, method, depth, t), got in zip(requests, batch):
      one = ks.transform_activation(act, method, depth=depth, **t).params
      self.assertLess(_relative_gap(got, one), 1e-12)

  def test_canonical_representative(self):
    # x -> -x and, for a point-symmetric phi, -phi_hat(-x): the same maps.
    p = {"input_scale": -0.3, "input_shift": -0.7, "output_shift": 0.2,
         "output_scale": 4.0}
    centre = ks.point_symmetry(activations.get_activation("sigmoid"))
    self.assertEqual(centre, 0.5)
    q = ks.canonical(p, centre)
    self.assertEqual((q["input_scale"], q["input_shift"]), (0.3, 0.7))
    a, b = ks.local_maps("sigmoid", p), ks.local_maps("sigmoid", q)
    np.testing.assert_allclose(a, b, rtol=1e-10)
    self.assertIsNone(ks.point_symmetry(activations.get_activation("elu")))


class BadRequestTest(parameterized.TestCase):

  @parameterized.parameters(
      (("tanh", "fancy"), {"depth": 5}, "unknown method 'fancy'"),
      (("tanh", "dks"), {"depth": 0}, "depth must be an integer >= 1"),
      (("tanh", "dks"), {}, "depth must be an integer >= 1"),
      (("tanh", "dks"), {"depth": 5, "c_val_0_target": 0.9},
       "dks takes targets c_slope_1_target, local_q_slope_target"),
      (("tanh", "dks"), {"depth": 5, "c_slope_1_target": 0.9},
       "c_slope_1_target must be a finite number > 1"),
      (("leaky_relu", "tat"), {"depth": 5, "c_val_0_target": 0.9},
       "TAT cannot reach c_val_0_target=0.9 with 5 leaky-ReLU layers"),
      (("relu", "tat"), {"depth": 5}, "TAT does not transform relu"),
      (("selu", "tat"), {"depth": 5}, "TAT needs phi' continuous"),
      (("sigmoid", "tat"), {"depth": 50}, "input_scale * output_scale >= 2"),
      (("linear", "dks"), {"depth": 5}, "linear cannot be transformed"),
      (("maxout", "dks"), {"depth": 5}, "is not elementwise"),
      (("dks_tanh", "dks"), {"depth": 5}, "already transformed"),
  )
  def test_one_line_error(self, args, kwargs, message):
    with self.assertRaises(ValueError) as e:
      ks.transform_activation(*args, **kwargs)
    self.assertIn(message, str(e.exception))
    self.assertNotIn("\n", str(e.exception))

  def test_every_transformed_entry_builds(self):
    x = jnp.linspace(-3.0, 3.0, 25)
    for name, (method, base, target) in activations.TRANSFORMED.items():
      act = activations.get_activation(name, depth=20)
      self.assertEqual(act.describe(), f"{name}(depth=20)")
      want = ks.transform_activation(base, method, depth=20).params
      self.assertEqual(dict(act.transform), want)
      np.testing.assert_allclose(act.deriv(x), jax.vmap(jax.grad(act.fn))(x),
                                 rtol=1e-5, atol=1e-6)
      self.assertIn(target, (*ks.DKS_DEFAULTS, *ks.TAT_DEFAULTS))

  def test_registry_entry_needs_depth(self):
    with self.assertRaisesRegex(ValueError, "give depth="):
      activations.get_activation("tat_leaky_relu")


class WideNetTest(absltest.TestCase):
  """A wide orthogonal net with the registry's transformed activation
  propagates two orthogonal inputs' correlation as C_f(0) says."""

  def test_tat_leaky_relu_net_reaches_eta(self):
    # Per seed the cosine scatters by ~0.04 at this width; 8 seeds.
    depth, width = 10, 256
    model = models.make_mlp(depth=depth, width=width,
                            activation="tat_leaky_relu",
                            activation_params={"c_val_0_target": 0.6},
                            init="orthogonal", sigma_w2=1.0)
    self.assertEqual(model.activation.describe(),
                     "tat_leaky_relu(c_val_0_target=0.6, depth=10)")
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0),
                                           (width, 2)))
    x = q.T * math.sqrt(width)           # orthogonal, ||x||^2 = width
    cosines, lengths = [], []
    for key in jax.random.split(jax.random.PRNGKey(1), 8):
      y = model.apply(model.init(key, x), x)
      cosines.append(float(jnp.sum(y[0] * y[1]) / jnp.sqrt(
          jnp.sum(y[0] ** 2) * jnp.sum(y[1] ** 2))))
      lengths.append(float(jnp.mean(y * y)))
    self.assertAlmostEqual(float(np.mean(cosines)), 0.6, delta=0.05)
    self.assertAlmostEqual(float(np.mean(lengths)), 1.0, delta=0.05)

  def test_dks_net_follows_composed_c_map(self):
    # Two inputs at correlation 0.8 leave 6 DKS tanh layers at C_f(0.8),
    # the local C-map composed 6 times (Mehler's series, float64).
    depth, width, c_in = 6, 512, 0.8
    model = models.make_mlp(depth=depth, width=width, activation="dks_tanh",
                            init="orthogonal", sigma_w2=1.0)
    params = dict(model.activation.transform)
    with jax.enable_x64(True):
      c = jnp.float64(c_in)
      for _ in range(depth):
        c = ks.c_map("tanh", c, params)
      predicted = float(c)
    self.assertLess(predicted, 0.79)   # DKS's nonlinearity is visible
    key_a, key_b, key_p = jax.random.split(jax.random.PRNGKey(2), 3)
    a = jax.random.normal(key_a, (width,))
    b = jax.random.normal(key_b, (width,))
    b = b - a * jnp.dot(a, b) / jnp.dot(a, a)
    a = a / jnp.linalg.norm(a) * math.sqrt(width)
    b = b / jnp.linalg.norm(b) * math.sqrt(width)
    x = jnp.stack([a, c_in * a + math.sqrt(1 - c_in ** 2) * b])
    cosines = []
    for key in jax.random.split(key_p, 4):
      y = model.apply(model.init(key, x), x)
      cosines.append(float(jnp.sum(y[0] * y[1]) / jnp.sqrt(
          jnp.sum(y[0] ** 2) * jnp.sum(y[1] ** 2))))
    self.assertAlmostEqual(float(np.mean(cosines)), predicted, delta=0.02)


@functools.cache
def _dks():
  from dks.base import activation_transform as at  # the test extra
  return at, at._estimate_gaussian_mean


def _adaptive_mean(fn, order=None):
  del order
  value, _ = integrate.quad(
      lambda x: math.exp(-0.5 * x * x) * float(fn(x)), -12.0, 12.0,
      epsabs=1e-13, epsrel=1e-12, limit=400)
  return value / math.sqrt(2 * math.pi)


def _dks_params(act, method, depth, **targets):
  at, rule = _dks()
  # A kinked activation: scipy's adaptive quadrature; a smooth one: dks's
  # own Gauss-Legendre rule at 4 000 nodes (exact to ~1e-12 for it).
  kinked = bool(activations.get_activation(act).breakpoints)
  at._estimate_gaussian_mean = (_adaptive_mean if kinked else
                                (lambda fn, order=None: rule(fn, 4000)))
  name = {"gelu": "gelu_exact"}.get(act, act)

  def subnet(x, r):
    for _ in range(depth):
      x = r(x)
    return x
  kwargs = ({"dks_params": targets} if method == "dks" else
            {"tat_params": targets})
  got = at._get_activations_params([name], method=method.upper(),
                                   subnet_max_func=subnet, **kwargs)[name]
  return {k: float(v) for k, v in got.items()}


@pytest.mark.slow
class AgainstDeepMindDksTest(parameterized.TestCase):
  """vgrad's parameters against dks's, to 1e-4 relative (module doc).
  ELU, SELU and softsign (dks's adaptive-quadrature runs take 15-70 s
  each) are compared in benchmarks/kernel_shaping_benchmark.py."""

  @parameterized.parameters(
      ("tanh", "dks"), ("softplus", "dks"), ("sigmoid", "dks"),
      ("erf", "dks"), ("swish", "dks"), ("gelu", "dks"),
      ("leaky_relu", "dks"), ("relu", "dks"), ("leaky_relu", "tat"),
      ("tanh", "tat"), ("softplus", "tat"), ("erf", "tat"), ("swish", "tat"),
      ("gelu", "tat"))
  def test_same_parameters(self, act, method):
    mine = ks.transform_activation(act, method, depth=DEPTH).params
    theirs = ks.canonical(_dks_params(act, method, DEPTH), ks.point_symmetry(
        activations.get_activation(act)))
    self.assertLess(_relative_gap(mine, theirs), 1e-4)

  def test_tat_sigmoid_is_refused_where_dks_keeps_a_negative_scale(self):
    # dks's rejection input_scale * output_scale >= 2 passes a negative
    # input scale; its sigmoid transform has |scale| * output_scale ~ 5.2.
    theirs = _dks_params("sigmoid", "tat", DEPTH)
    self.assertGreater(abs(theirs["input_scale"]) * theirs["output_scale"],
                       2.0)
    with self.assertRaisesRegex(ValueError, "output_scale >= 2"):
      ks.transform_activation("sigmoid", "tat", depth=DEPTH)


if __name__ == "__main__":
  absltest.main()
