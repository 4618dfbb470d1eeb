"""Tests for vgrad.io.rundir: whole runs or nothing, no silent overwrite."""

import os
import signal
import time

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
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:   # the writer: stages a run, then is SIGKILLed mid-run
      try:
        os.close(read_end)
        with rundir.staged_run_dir(os.path.join(root, "killed")) as stage:
          with open(os.path.join(stage, "half.json"), "w") as f:
            f.write("{")
          os.write(write_end, b"x")
          time.sleep(600)
      finally:
        os._exit(1)
    os.close(write_end)
    self.assertEqual(os.read(read_end, 1), b"x")
    os.close(read_end)
    stages = lambda: sorted(n for n in os.listdir(root) if ".tmp-" in n)
    try:
      live = stages()
      self.assertLen(live, 2)   # the stage and its lock file
      with rundir.staged_run_dir(os.path.join(root, "a")) as stage:
        rundir.write_json(os.path.join(stage, "a.json"), {"v": 1})
      self.assertEqual(stages(), live)   # its writer still lives
    finally:
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
    self.assertEqual(stages(), live)   # nothing runs after a SIGKILL
    with rundir.staged_run_dir(os.path.join(root, "b")) as stage:
      rundir.write_json(os.path.join(stage, "b.json"), {"v": 2})
    self.assertEqual(sorted(os.listdir(root)), ["a", "b"])
    self.assertEqual(os.listdir(os.path.join(root, "a")), ["a.json"])

  def test_default_run_dirs_are_fresh(self):
    root = self.create_tempdir().full_path
    first = rundir.default_run_dir(root, "x")
    os.makedirs(first)
    self.assertNotEqual(rundir.default_run_dir(root, "x"), first)


if __name__ == "__main__":
  absltest.main()
