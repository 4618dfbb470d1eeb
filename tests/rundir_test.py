"""Tests for vgrad.io.rundir: whole runs or nothing, no silent overwrite."""

import os
import subprocess
import sys
import textwrap
from unittest import mock

from absl.testing import absltest

from vgrad.io import rundir


class RunDirTest(absltest.TestCase):

  def test_run_appears_whole(self):
    path = os.path.join(self.create_tempdir().full_path, "run")
    with rundir.staged_run_dir(path) as stage:
      rundir.write_json(os.path.join(stage, "a.json"), {"x": 1})
      self.assertFalse(os.path.exists(path))
    self.assertEqual(os.listdir(path), ["a.json"])

  def test_failure_leaves_nothing(self):
    root = self.create_tempdir().full_path
    path = os.path.join(root, "run")
    with self.assertRaises(RuntimeError):
      with rundir.staged_run_dir(path) as stage:
        rundir.write_json(os.path.join(stage, "a.json"), {"x": 1})
        raise RuntimeError("boom")
    self.assertEqual(os.listdir(root), [])

  def test_existing_run_is_kept_unless_overwrite(self):
    root = self.create_tempdir().full_path
    path = os.path.join(root, "run")
    with rundir.staged_run_dir(path) as stage:
      rundir.write_json(os.path.join(stage, "a.json"), {"v": 1})
    with self.assertRaisesRegex(rundir.RunDirExistsError, "--overwrite"):
      with rundir.staged_run_dir(path):
        pass
    # A failing overwrite keeps the old run.
    with self.assertRaises(RuntimeError):
      with rundir.staged_run_dir(path, overwrite=True):
        raise RuntimeError("boom")
    self.assertEqual(os.listdir(path), ["a.json"])
    with rundir.staged_run_dir(path, overwrite=True) as stage:
      rundir.write_json(os.path.join(stage, "b.json"), {"v": 2})
    self.assertEqual(os.listdir(path), ["b.json"])
    self.assertEqual(os.listdir(root), ["run"])

  def test_write_json_rejects_nan_and_keeps_the_old_file(self):
    path = os.path.join(self.create_tempdir().full_path, "r.json")
    rundir.write_json(path, {"ok": 1.0})
    with self.assertRaises(ValueError):
      rundir.write_json(path, {"bad": float("nan")})
    with open(path) as f:
      self.assertIn('"ok"', f.read())
    self.assertEqual(sorted(os.listdir(os.path.dirname(path))), ["r.json"])

  def test_a_killed_writers_stage_goes_on_the_next_run_a_live_one_stays(self):
    root = self.create_tempdir().full_path
    # The writer: another process (rundir.py alone, no JAX) that stages a
    # run, says so, and waits to be SIGKILLed mid-run.
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import importlib.util, os, sys, time
            spec = importlib.util.spec_from_file_location("rundir", sys.argv[1])
            rundir = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(rundir)
            with rundir.staged_run_dir(os.path.join(sys.argv[2], "killed")) as stage:
              with open(os.path.join(stage, "half.json"), "w") as f:
                f.write("{")
              print("staged", flush=True)
              time.sleep(600)
            """), rundir.__file__, root],
        stdout=subprocess.PIPE, text=True)
    stages = lambda: sorted(n for n in os.listdir(root) if ".tmp-" in n)
    try:
      self.assertEqual(writer.stdout.readline().strip(), "staged")
      live = stages()
      self.assertLen(live, 2)   # the stage and its lock file
      with rundir.staged_run_dir(os.path.join(root, "a")) as stage:
        rundir.write_json(os.path.join(stage, "a.json"), {"v": 1})
      self.assertEqual(stages(), live)   # its writer still lives
    finally:
      writer.kill()   # SIGKILL: nothing runs after it
      writer.wait()
      writer.stdout.close()
    self.assertEqual(stages(), live)
    with rundir.staged_run_dir(os.path.join(root, "b")) as stage:
      rundir.write_json(os.path.join(stage, "b.json"), {"v": 2})
    self.assertEqual(sorted(os.listdir(root)), ["a", "b"])
    self.assertEqual(os.listdir(os.path.join(root, "a")), ["a.json"])

  def test_an_unwritable_folder_is_refused_before_any_work(self):
    root = self.create_tempdir().full_path
    a_file = os.path.join(root, "notes.txt")
    with open(a_file, "w") as f:
      f.write("x")
    for path in (os.path.join(a_file, "run"),
                 os.path.join(a_file, "deeper", "run")):
      with self.assertRaisesRegex(rundir.RunDirNotWritableError,
                                  f"{a_file} is not a folder"):
        rundir.check_writable(path)
    # A read-only folder (os.access says so: root passes permission bits,
    # a read-only mount does not).
    with mock.patch.object(os, "access", lambda path, mode: False):
      with self.assertRaisesRegex(rundir.RunDirNotWritableError,
                                  f"{root} is not writable"):
        rundir.check_writable(os.path.join(root, "new", "run"))
      with self.assertRaises(rundir.RunDirError):
        with rundir.staged_run_dir(os.path.join(root, "run")):
          self.fail("the body ran")
    rundir.check_writable(os.path.join(root, "new", "run"))  # fine
    self.assertEqual(os.listdir(root), ["notes.txt"])

  def test_default_run_dirs_are_fresh(self):
    root = self.create_tempdir().full_path
    first = rundir.default_run_dir(root, "x")
    os.makedirs(first)
    self.assertNotEqual(rundir.default_run_dir(root, "x"), first)


if __name__ == "__main__":
  absltest.main()
