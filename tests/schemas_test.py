"""Tests for vgrad.io.schemas: one place for every results schema."""

import json
import os
import re

from absl.testing import absltest

from vgrad.io import schemas

SPECTRUM = {"schema": schemas.JACOBIAN_SPECTRUM, "config": {},
            "convention": "", "dtype_eps": 1e-7, "layers": [],
            "per_layer": [], "input_output": {}, "method": "dense",
            "method_reason": "requested"}


class SchemasTest(absltest.TestCase):

  def test_every_schema_is_well_formed_and_distinct(self):
    self.assertLen(set(schemas.ALL), 7)
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
    old = {k: v for k, v in SPECTRUM.items() if k != "schema"}
    self.assertEqual(schemas.identify(old), schemas.JACOBIAN_SPECTRUM)
    upgraded = schemas.check_schema(old, schemas.JACOBIAN_SPECTRUM)
    self.assertEqual(upgraded, SPECTRUM)
    self.assertEqual(next(iter(upgraded)), "schema")
    self.assertNotIn("schema", old)   # the caller's record is not changed
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
    self.assertIn("reads vgrad.jacobian_spectrum/1", message)
    self.assertIn("newer vgrad", message)
    with self.assertRaisesRegex(ValueError, "holds schema vgrad.train/1, "
                                "not vgrad.jacobian_spectrum/1"):
      schemas.check_schema({"schema": schemas.TRAIN, "arms": []},
                           schemas.JACOBIAN_SPECTRUM)
    with self.assertRaisesRegex(ValueError, "no schema field"):
      schemas.check_schema({"config": {}}, schemas.JACOBIAN_SPECTRUM)

  def test_load_results_from_a_file_or_a_run_directory(self):
    run = self.create_tempdir().full_path
    old = {k: v for k, v in SPECTRUM.items() if k != "schema"}
    with open(os.path.join(run, "results.json"), "w") as f:
      json.dump(old, f)
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
    with self.assertRaisesRegex(ValueError, r"missing keys \['lyapunov'\]"):
      schemas.validate(SPECTRUM | {"method": "qr"})
    # Every method writes per_layer.
    no_per_layer = {k: v for k, v in SPECTRUM.items() if k != "per_layer"}
    for method, extra in (("dense", {}), ("qr", {"lyapunov": {}})):
      with self.assertRaisesRegex(ValueError,
                                  r"missing keys \['per_layer'\]"):
        schemas.validate(no_per_layer | extra | {"method": method})
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


if __name__ == "__main__":
  absltest.main()
