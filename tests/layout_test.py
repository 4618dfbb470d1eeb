"""The package layering of vgrad (README.md, "Layout"), checked statically.

Every module under ``vgrad/`` is parsed (``ast``, nothing imported) and each
of its imports, at any depth (function-local ones too), is checked against
``ALLOWED``. Third-party rules: only ``vgrad.cli`` imports absl, the compute
layers never import matplotlib, ``vgrad.io`` uses the standard library and
NumPy only, and ``vgrad.plots`` never loads JAX (checked by importing every
plots module in one fresh interpreter). Tests and benchmarks test the
library, not the entry points: they never import ``experiments``.
"""

import ast
import functools
import json
import os
import subprocess
import sys
import textwrap

from absl.testing import absltest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("nn", "probes", "theory", "training", "studies", "io", "plots",
            "cli")
EVERY = frozenset(f"vgrad.{p}" for p in PACKAGES)
COMPUTE = frozenset({"vgrad.nn", "vgrad.probes", "vgrad.theory",
                     "vgrad.training", "vgrad.studies"})

# Package -> the vgrad packages (or single modules) its modules may import;
# an entry allows itself and everything below it. "vgrad" is
# vgrad/__init__.py, the public API.
ALLOWED = {
    "vgrad": COMPUTE | {"vgrad.io"},
    "vgrad.nn": {"vgrad.nn"},
    "vgrad.probes": {"vgrad.probes", "vgrad.nn"},
    "vgrad.theory": {"vgrad.theory", "vgrad.nn.activations"},
    "vgrad.training": {"vgrad.training", "vgrad.nn", "vgrad.io"},
    "vgrad.studies": COMPUTE | {"vgrad.io"},
    "vgrad.io": {"vgrad.io"},
    # Only the JAX-free studies modules: enforced by test_plots_never_load_jax.
    "vgrad.plots": {"vgrad.plots", "vgrad.io", "vgrad.studies"},
    "vgrad.cli": EVERY,
}
# Module-level exceptions: module -> the one extra module it may import.
# The registry's transformed activations (dks_tanh, tat_leaky_relu, ...)
# are solved by the theory when one is built (a function-local import in
# vgrad.nn.activations._shaped), so the registry stays one plain dict.
EXCEPTIONS = {"vgrad.nn.activations": {"vgrad.theory.kernel_shaping"}}
# Third-party top-level modules, and who may import them.
ABSL_ONLY = {"vgrad.cli"}
NO_MATPLOTLIB = {"vgrad", "vgrad.nn", "vgrad.probes", "vgrad.theory",
                 "vgrad.training", "vgrad.studies", "vgrad.io"}
NO_JAX = {"vgrad.io", "vgrad.plots"}
JAX = {"jax", "jaxlib", "flax", "optax", "chex"}
IO_THIRD_PARTY = {"numpy"}


def _python_files(top: str):
  for directory, subdirs, files in os.walk(os.path.join(REPO, top)):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith((".", "_")))
    for name in sorted(files):
      if name.endswith(".py"):
        yield os.path.join(directory, name)


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, REPO)[:-len(".py")].split(os.sep)
  if rel[-1] == "__init__":
    rel = rel[:-1]
  return ".".join(rel)


def _is_module(dotted: str) -> bool:
  """Whether ``dotted`` names a module or package of this repository."""
  base = os.path.join(REPO, *dotted.split("."))
  return os.path.isfile(base + ".py") or os.path.isdir(base)


def _segment(lines: list[bytes], node: ast.stmt) -> str:
  """The source text of ``node`` (``ast.get_source_segment``, which splits
  the whole file again on every call) from the file's lines, UTF-8
  encoded: the node's column offsets count bytes."""
  part = lines[node.lineno - 1:node.end_lineno]
  if len(part) == 1:
    return part[0][node.col_offset:node.end_col_offset].decode()
  part = [part[0][node.col_offset:], *part[1:-1],
          part[-1][:node.end_col_offset]]
  return b"".join(part).decode()


@functools.cache
def imports(path: str) -> tuple[tuple[int, str, str], ...]:
  """``(line, source text, imported module)`` of every import in ``path``
  (parsed once per test process).

  ``from a.b import c`` imports ``a.b.c`` when that is a module of the
  repository, else ``a.b``; relative imports are resolved.
  """
  with open(path) as f:
    source = f.read()
  tree = ast.parse(source, filename=path)
  lines = [line.encode() for line in source.splitlines(keepends=True)]
  package = _module_name(path)
  if not path.endswith("__init__.py"):
    package = package.rpartition(".")[0]
  found = []
  for node in ast.walk(tree):
    if not isinstance(node, (ast.Import, ast.ImportFrom)):
      continue
    text = " ".join(_segment(lines, node).split())
    if isinstance(node, ast.Import):
      found.extend((node.lineno, text, alias.name) for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      for alias in node.names:
        full = f"{base}.{alias.name}"
        found.append((node.lineno, text, full if _is_module(full) else base))
  return tuple(found)


def _layer(module: str) -> str:
  """The package whose rule applies to ``module`` (vgrad.nn.models ->
  vgrad.nn; vgrad itself -> vgrad)."""
  return ".".join(module.split(".")[:2])


def _allowed(target: str, entries) -> bool:
  return any(target == e or target.startswith(e + ".") for e in entries)


def _where(path: str, line: int, text: str) -> str:
  return f"{os.path.relpath(path, REPO)}:{line}: {text}"


class LayoutTest(absltest.TestCase):

  def test_every_module_belongs_to_a_layer(self):
    stray = [os.path.relpath(p, REPO) for p in _python_files("vgrad")
             if _layer(_module_name(p)) not in ALLOWED]
    self.assertEmpty(stray, "modules outside the layer packages (add the "
                     "package to ALLOWED in tests/layout_test.py, or move "
                     f"them): {stray}")

  def test_packages_import_only_lower_layers(self):
    bad = []
    for path in _python_files("vgrad"):
      layer = _layer(_module_name(path))
      for line, text, target in imports(path):
        if target.split(".")[0] != "vgrad":
          continue
        if not (_allowed(target, ALLOWED.get(layer, ()))
                or target in EXCEPTIONS.get(_module_name(path), ())):
          bad.append(f"{_where(path, line, text)}  ({layer} may import "
                     f"{', '.join(sorted(ALLOWED.get(layer, ())))}; not "
                     f"{target})")
    self.assertEmpty(bad, "layer violations:\n" + "\n".join(bad))

  def test_third_party_imports(self):
    bad = []
    for path in _python_files("vgrad"):
      layer = _layer(_module_name(path))
      for line, text, target in imports(path):
        top = target.split(".")[0]
        where = _where(path, line, text)
        if top == "absl" and layer not in ABSL_ONLY:
          bad.append(f"{where}  (only vgrad.cli imports absl)")
        if top == "matplotlib" and layer in NO_MATPLOTLIB:
          bad.append(f"{where}  ({layer} computes; figures belong in "
                     f"vgrad.plots)")
        if top in JAX and layer in NO_JAX:
          bad.append(f"{where}  ({layer} must not import JAX)")
        if (layer == "vgrad.io" and top not in sys.stdlib_module_names
            and top not in IO_THIRD_PARTY | {"vgrad"}):
          bad.append(f"{where}  (vgrad.io uses the standard library and "
                     f"NumPy only)")
    self.assertEmpty(bad, "forbidden imports:\n" + "\n".join(bad))

  def test_tests_and_benchmarks_do_not_import_experiments(self):
    bad = []
    for top in ("tests", "benchmarks"):
      for path in _python_files(top):
        for line, text, target in imports(path):
          if target.split(".")[0] == "experiments":
            bad.append(_where(path, line, text))
    self.assertEmpty(bad, "tests and benchmarks import entry points (move "
                     "what they need into vgrad/, or run the entry point "
                     "as a subprocess):\n" + "\n".join(bad))

  def test_plots_io_and_vgrad_never_load_jax(self):
    """One fresh interpreter imports ``vgrad``, every ``vgrad.io`` and
    ``vgrad.plots`` module; a spy on the import system records which vgrad
    file first asked for JAX (or absl, or, for ``vgrad`` and ``vgrad.io``,
    matplotlib)."""
    modules = ["vgrad"] + sorted(
        _module_name(p) for top in ("vgrad/io", "vgrad/plots")
        for p in _python_files(top))
    script = textwrap.dedent("""
        import importlib, json, os, sys, traceback
        repo, modules = sys.argv[1], json.loads(sys.argv[2])
        watch = {"jax", "absl", "matplotlib"}
        first = {}
        class Spy:
          def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in watch and top not in first:
              first[top] = [f"{os.path.relpath(f.filename, repo)}:{f.lineno}:"
                            f" {f.line}" for f in traceback.extract_stack()
                            if f.filename.startswith(repo + os.sep)]
            return None
        sys.meta_path.insert(0, Spy())
        report = []
        for module in modules:
          before = set(first)
          importlib.import_module(module)
          report.append([module, {t: first[t] for t in set(first) - before}])
        print(json.dumps(report))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=REPO, MPLBACKEND="Agg", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", script, REPO, json.dumps(modules)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    forbidden = {"vgrad": {"jax", "absl", "matplotlib"},
                 "vgrad.io": {"jax", "absl", "matplotlib"},
                 "vgrad.plots": {"jax", "absl"}}
    bad = []
    for module, loaded in json.loads(proc.stdout):
      for top in sorted(set(loaded) & forbidden[_layer(module)]):
        chain = " <- ".join(reversed(loaded[top])) or "(outside vgrad)"
        bad.append(f"import {module} loads {top}: {chain}")
    self.assertEmpty(bad, "\n".join(bad))


if __name__ == "__main__":
  absltest.main()
