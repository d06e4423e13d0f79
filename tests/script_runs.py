"""Running a command-line script in a fresh interpreter from a test."""

import os
import subprocess
import sys
import unittest
from typing import Dict, Optional, Sequence


def run_script(test: unittest.TestCase, script: str, args: Sequence[str],
               expect_rc: int = 0, timeout: float = 900,
               env: Optional[Dict[str, str]] = None
               ) -> subprocess.CompletedProcess:
  """Runs `script` with `args`; fails `test` with the ends of both outputs
  unless it exits with `expect_rc`."""
  proc = subprocess.run([sys.executable, script] + list(args),
                        capture_output=True, text=True, timeout=timeout,
                        env=env)
  if proc.returncode != expect_rc:
    test.fail(f"{os.path.basename(script)} exited {proc.returncode}, "
              f"expected {expect_rc}\nstdout:\n{proc.stdout[-3000:]}\n"
              f"stderr:\n{proc.stderr[-5000:]}")
  return proc
