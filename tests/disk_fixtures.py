"""A tiny tmpfs to test what happens when the disk fills up (needs root)."""

import contextlib
import os
import subprocess
import tempfile
import unittest


@contextlib.contextmanager
def tiny_filesystem(size: str = "1m"):
  """Yields a directory on a fresh tmpfs of `size`; skips the test if mounting
  is not permitted here."""
  mount_point = tempfile.mkdtemp(prefix="tiny_fs_")
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                         mount_point], capture_output=True, text=True,
                        check=False)
  if proc.returncode:
    os.rmdir(mount_point)
    raise unittest.SkipTest(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
  try:
    yield mount_point
  finally:
    subprocess.run(["umount", mount_point], check=False)
    os.rmdir(mount_point)
