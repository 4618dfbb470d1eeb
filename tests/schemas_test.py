"""Tests for vgrad.io.schemas: one place for every results schema."""

import json
import math
import os
import re

from absl.testing import absltest
import numpy as np

from vgrad.io import schemas
from vgrad.io import spectrum_records
from vgrad.plots import spectrum_plots

_RECORD = spectrum_records.make_record(1, np.log([[2.0, 1.0]]), np.float32)
SPECTRUM = {"schema": schemas.JACOBIAN_SPECTRUM,
            "config": {"depth": 1, "num_inputs": 1, "dtype": "float32"},
            "convention": "", "dtype_eps": 1e-7, "layers": [_RECORD],
            "per_layer": [_RECORD], "input_output": _RECORD,
            "lyapunov": None, "method": "dense",
            "method_reason": "requested"}

# Version-1 results.json files as README.md documented them before the one
# record (depth 2, 2 inputs of 3 singular values, float32). Dense records
# held linear values (null: below the floor; 0.0: exact zero) ...
V1_CONFIG = {"act": "relu", "init": "he_normal", "depth": 2, "width": 3,
             "sigma_w2": None, "sigma_b2": None, "num_inputs": 2, "seed": 0,
             "dtype": "float32", "act_params": {}, "method": "auto",
             "qr_layers": None, "qr_sweeps": 30}


def _v1_dense_record(layer, rows, mean_sq, floor, resolved, zeros):
  values = sorted(v for row in rows for v in row if v is not None)
  return {"layer": layer, "singular_values": rows,
          "mean_sq_singular_value": mean_sq,
          "min_singular_value": values[0] if min(resolved) == 3 else None,
          "median_singular_value": None, "max_singular_value": values[-1],
          "condition_number": None, "mean_log_singular_value": None,
          "num_singular_values": 3, "num_resolved": resolved,
          "num_exact_zeros": zeros, "resolution_floor": floor,
          "finite": True}


V1_PER_LAYER = [
    _v1_dense_record(1, [[2.0, 1.0, 0.0], [1.5, 0.5, 0.0]], 1.25,
                     [7.2e-7, 5.4e-7], [3, 3], [1, 1]),
    _v1_dense_record(2, [[1.0, 0.5, 0.0], [1.0, 0.25, 0.0]], 0.46,
                     [3.6e-7, 3.6e-7], [3, 3], [1, 1])]
V1_DENSE = {
    "config": V1_CONFIG | {"method": "dense"},
    "convention": "J_l = D_l W_l, ...", "dtype_eps": 1.1920929e-07,
    "layers": [V1_PER_LAYER[0] | {},
               _v1_dense_record(2, [[2.0, 1e-3, None], [1.0, 0.5, 0.0]],
                                0.875, [7.2e-7, 3.6e-7], [2, 3], [0, 1])],
    "per_layer": V1_PER_LAYER,
    "method": "dense", "method_reason": "requested"}
V1_DENSE["input_output"] = V1_DENSE["layers"][-1]


def _v1_qr_record(layer, rows, zeros):
  """A version-1 qr record: log values only (null: exact zero), min and max
  over the nonzero values, the Jacobi bound and sweeps."""
  values = sorted(v for row in rows for v in row if v is not None)
  return {"layer": layer, "log_singular_values": rows,
          "log_rms_gain": 0.1, "min_log_singular_value": values[0],
          "median_log_singular_value": None,
          "max_log_singular_value": values[-1],
          "log_condition_number": None, "mean_log_singular_value": None,
          "num_singular_values": 3, "num_exact_zeros": zeros,
          "error_bound": [1e-7, 2e-7], "sweeps": [3, 4], "finite": True}


# ... and qr records log values (two layers out of float32's range).
V1_QR = {
    "schema": schemas.JACOBIAN_SPECTRUM_V1,
    "config": V1_CONFIG | {"method": "qr", "depth": 2},
    "convention": "J_l = D_l W_l, ...", "dtype_eps": 1.1920929e-07,
    "layers": [_v1_qr_record(1, [[0.7, -0.7, None], [0.4, -0.7, None]],
                             [1, 1]),
               _v1_qr_record(2, [[120.0, -150.0, None], [80.0, -2.0, None]],
                             [1, 1])],
    "per_layer": V1_PER_LAYER,
    "lyapunov": {"partial_sums": {q: [0.0, 1.0] for q in
                                  ("min", "p10", "median", "p90", "max")},
                 "num_exact_zeros": [1, 1], "exponents": [[60.0, -75.0, None],
                                                          [40.0, -1.0, None]],
                 "top_exponent": 52.5},
    "method": "qr", "method_reason": "requested"}
V1_QR["input_output"] = V1_QR["layers"][-1]


class SchemasTest(absltest.TestCase):

  def test_every_schema_is_well_formed_and_distinct(self):
    self.assertLen(set(schemas.ALL), 11)
    for schema in schemas.ALL:
      kind, version = schemas.parse(schema)
      self.assertEqual(schema, f"vgrad.{kind}/{version}")
    for bad in ("vgrad.x", "vgrad.x/0", "other.x/1", None, 3):
      with self.assertRaisesRegex(ValueError, "not of the form"):
        schemas.parse(bad)

  def test_no_other_module_spells_a_schema(self):
    """Writers and readers use the constants, never the literals."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    literal = re.compile(r"[\"']vgrad\.[a-z_]+/[0-9]+[\"']")
    found = []
    for top in ("vgrad", "experiments", "benchmarks"):
      for directory, _, files in os.walk(os.path.join(root, top)):
        for name in files:
          path = os.path.join(directory, name)
          if not name.endswith(".py") or path.endswith(
              os.path.join("io", "schemas.py")):
            continue
          with open(path) as f:
            found += [f"{os.path.relpath(path, root)}: {m}"
                      for m in literal.findall(f.read())]
    self.assertEmpty(found)

  def test_records_older_than_the_field_are_recognised_and_upgraded(self):
    old = V1_DENSE
    self.assertNotIn("schema", old)
    self.assertEqual(schemas.identify(old), schemas.JACOBIAN_SPECTRUM_V1)
    upgraded = schemas.check_schema(old, schemas.JACOBIAN_SPECTRUM)
    self.assertEqual(next(iter(upgraded)), "schema")
    self.assertEqual(upgraded["schema"], schemas.JACOBIAN_SPECTRUM)
    self.assertNotIn("schema", old)   # the caller's record is not changed
    self.assertNotIn("log_singular_values", old["layers"][0])
    self.assertEqual(schemas.identify({"runs": [], "convention": "",
                                       "dataset": {}, "config": {}}),
                     schemas.GRADIENT_HISTOGRAMS)
    self.assertEqual(schemas.identify({"arms": []}), schemas.TRAIN)
    self.assertIsNone(schemas.identify({"config": {}}))

  def test_other_versions_are_one_line_naming_both(self):
    future = SPECTRUM | {"schema": "vgrad.jacobian_spectrum/99"}
    with self.assertRaises(ValueError) as e:
      schemas.check_schema(future, schemas.JACOBIAN_SPECTRUM, "run/x.json")
    message = str(e.exception)
    self.assertNotIn("\n", message)
    self.assertIn("run/x.json holds schema vgrad.jacobian_spectrum/99",
                  message)
    self.assertIn("reads vgrad.jacobian_spectrum/3", message)
    self.assertIn("newer vgrad", message)
    with self.assertRaisesRegex(ValueError, "holds schema vgrad.train/1, "
                                "not vgrad.jacobian_spectrum/3"):
      schemas.check_schema({"schema": schemas.TRAIN, "arms": []},
                           schemas.JACOBIAN_SPECTRUM)
    with self.assertRaisesRegex(ValueError, "no schema field"):
      schemas.check_schema({"config": {}}, schemas.JACOBIAN_SPECTRUM)

  def test_load_results_from_a_file_or_a_run_directory(self):
    run = self.create_tempdir().full_path
    with open(os.path.join(run, "results.json"), "w") as f:
      json.dump(SPECTRUM, f)
    self.assertEqual(schemas.load_results(run), SPECTRUM)
    self.assertEqual(schemas.load_results(os.path.join(run, "results.json"),
                                          schemas.JACOBIAN_SPECTRUM),
                     SPECTRUM)
    with self.assertRaisesRegex(ValueError, "not vgrad.sweep/1"):
      schemas.load_results(run, schemas.SWEEP)
    with self.assertRaisesRegex(ValueError, "holds no results file"):
      schemas.load_results(self.create_tempdir().full_path)

  def test_validate(self):
    schemas.validate(SPECTRUM)
    schemas.validate({"schema": schemas.SWEEP, "settings": {}})
    with self.assertRaisesRegex(ValueError, "lyapunov is null under "
                                "method qr"):
      schemas.validate(SPECTRUM | {"method": "qr"})
    # Every method writes per_layer and lyapunov (null when not computed).
    for key in ("per_layer", "lyapunov"):
      for method in ("dense", "qr"):
        with self.assertRaisesRegex(ValueError,
                                    rf"missing keys \['{key}'\]"):
          schemas.validate({k: v for k, v in SPECTRUM.items() if k != key}
                           | {"method": method})
    # Every record is checked, against the config too.
    with self.assertRaisesRegex(ValueError, "per_layer holds 1 layers, "
                                "config.depth is 2"):
      schemas.validate(SPECTRUM | {"config": {"depth": 2}})
    with self.assertRaisesRegex(ValueError, "not a list of 2 inputs"):
      schemas.validate(SPECTRUM | {"config": {"num_inputs": 2}})
    with self.assertRaisesRegex(ValueError, "undocumented keys"):
      schemas.validate(SPECTRUM | {"extra": 1})
    with self.assertRaisesRegex(ValueError, "not the first key"):
      schemas.validate({"config": {}} | SPECTRUM)
    with self.assertRaisesRegex(ValueError, "no 'schema' field"):
      schemas.validate({"config": {}})
    with self.assertRaisesRegex(ValueError, "is not one of"):
      schemas.validate({"schema": "vgrad.nothing/1"})
    with self.assertRaisesRegex(ValueError, "not of the form"):
      schemas.validate({"schema": "vgrad spectrum"})


class SpectrumVersion1Test(absltest.TestCase):
  """Version-1 results.json files (README.md's old two record formats)
  load as version 2 and redraw."""

  def test_dense_file_loads_with_every_key_and_redraws(self):
    run = self.create_tempdir().full_path
    with open(os.path.join(run, "results.json"), "w") as f:
      json.dump(V1_DENSE, f)
    results = schemas.load_results(run, schemas.JACOBIAN_SPECTRUM)
    schemas.validate(results)
    self.assertEqual(results["schema"], schemas.JACOBIAN_SPECTRUM)
    self.assertIsNone(results["lyapunov"])
    layer2 = results["layers"][1]
    self.assertEqual(tuple(layer2), spectrum_records.RECORD_KEYS)
    self.assertEqual(layer2["singular_values"], [[2.0, 0.001, None],
                                                 [1.0, 0.5, 0.0]])
    self.assertEqual(layer2["num_resolved"], [2, 3])
    self.assertEqual(layer2["num_exact_zeros"], [0, 1])
    self.assertEqual(layer2["resolution_floor"], [7.2e-7, 3.6e-7])
    self.assertIsNone(layer2["error_bound"])
    np.testing.assert_allclose(
        np.array(layer2["log_singular_values"], float),
        [[math.log(2.0), math.log(1e-3), np.nan],
         [0.0, math.log(0.5), np.nan]], rtol=1e-7)
    self.assertAlmostEqual(layer2["log_rms_gain"],
                           0.5 * math.log((4 + 1e-6 + 1 + 0.25) / 6),
                           places=6)
    fig = spectrum_plots.plot_jacobian_spectrum(results)
    self.assertIn("singular values", fig.axes[0].get_ylabel())

  def test_qr_file_loads_with_linear_values_where_representable(self):
    results = schemas.check_schema(json.loads(json.dumps(V1_QR)),
                                   schemas.JACOBIAN_SPECTRUM)
    schemas.validate(results)
    io = results["input_output"]
    self.assertEqual(tuple(io), spectrum_records.RECORD_KEYS)
    # e^120 and e^-150 leave float32's range: null; e^80 and e^-2 do not.
    self.assertEqual(io["singular_values"][0], [None, None, 0.0])
    self.assertAlmostEqual(io["singular_values"][1][0], math.exp(80),
                           delta=1e-7 * math.exp(80))
    self.assertEqual(io["log_singular_values"][0], [120.0, -150.0, None])
    self.assertEqual(io["num_resolved"], [3, 3])
    self.assertEqual(io["error_bound"], [1e-7, 2e-7])
    self.assertEqual(io["sweeps"], [3, 4])
    self.assertIsNone(io["resolution_floor"])
    # Version 2's min counts the exact zeros (version 1's left them out).
    self.assertEqual(io["min_singular_value"], 0.0)
    self.assertIsNone(io["min_log_singular_value"])
    self.assertEqual(io["max_log_singular_value"], 120.0)
    self.assertIsNone(io["max_singular_value"])
    self.assertEqual(results["per_layer"][0]["singular_values"],
                     V1_PER_LAYER[0]["singular_values"])
    self.assertEqual(results["lyapunov"], V1_QR["lyapunov"])
    fig = spectrum_plots.plot_jacobian_spectrum(results)
    self.assertIn("log_{10}", fig.axes[0].get_ylabel())
    # A qr file from before per_layer joined them redraws too.
    older = {k: v for k, v in V1_QR.items() if k != "per_layer"}
    results = schemas.check_schema(older, schemas.JACOBIAN_SPECTRUM)
    self.assertEqual(results["per_layer"], [])
    spectrum_plots.plot_jacobian_spectrum(results)


if __name__ == "__main__":
  absltest.main()
