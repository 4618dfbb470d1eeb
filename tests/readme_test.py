"""README.md's "vgrad as a library" snippets run as written.

Each ```python block of that section is executed in a fresh namespace (in
order, in this process); the snippets check their own physics with
``assert`` lines, and their printed output is checked here too.
"""

import contextlib
import io
import os
import re

from absl.testing import absltest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "README.md")
SECTION = "## vgrad as a library"


def library_snippets() -> list[str]:
  """The ```python blocks between SECTION and the next ``## `` heading."""
  with open(README) as f:
    text = f.read()
  start = text.index(SECTION + "\n")
  end = text.find("\n## ", start + len(SECTION))
  section = text[start:end if end >= 0 else len(text)]
  return re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S)


class ReadmeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.snippets = library_snippets()
    cls.outputs = []
    for number, code in enumerate(cls.snippets, 1):
      out = io.StringIO()
      namespace = {"__name__": f"readme_snippet_{number}"}
      with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md snippet {number}", "exec"),  # noqa: S102  pylint: disable=exec-used
             namespace)
      cls.outputs.append((namespace, out.getvalue()))

  def test_the_section_has_its_snippets(self):
    self.assertBetween(len(self.snippets), 3, 7)
    for code in self.snippets:
      self.assertIn("import vgrad", code)

  def test_build_a_net(self):
    namespace, out = self.outputs[0]
    self.assertEqual(namespace["model"].depth, 4)
    self.assertIn("'tanh'", out)

  def test_isometry_and_vanishing(self):
    _, out = self.outputs[1]
    lines = out.splitlines()
    self.assertLen(lines, 2)
    self.assertTrue(lines[0].startswith("linear orthogonal"), out)
    self.assertTrue(lines[1].startswith("sigmoid glorot_uniform"), out)

  def test_a_flax_model_cut_into_blocks(self):
    namespace, out = self.outputs[2]
    self.assertEqual(out.strip(), "dense 3 blocks")
    self.assertLen(namespace["record"]["layers"], 3)

  def test_mean_field_critical_point(self):
    namespace, out = self.outputs[3]
    self.assertIn("chi_1 = 1.000", out)
    # tanh's critical line passes sigma_w2 = 1 at sigma_b2 = 0 and rises.
    self.assertBetween(float(namespace["sigma_w2"]), 1.0, 3.0)

  def test_training_on_xor(self):
    namespace, out = self.outputs[4]
    self.assertIn("loss per seed:", out)
    self.assertEqual(namespace["metrics"]["loss"].shape, (3,))
    self.assertTrue((namespace["metrics"]["loss"] < 0.1).all(), out)


if __name__ == "__main__":
  absltest.main()
