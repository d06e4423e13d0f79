"""What every command-line tool does first: keep TensorFlow's start-up noise
out of the user's terminal, keep everything else.

TensorFlow 2.21's C++ libraries log through absl before absl's logging is
initialised, so `TF_CPP_MIN_LOG_LEVEL` does not silence lines such as
"I0000 ... cudart_stub.cc:31] Could not find cuda drivers" or
"E0000 ... cuda_platform.cc:52] failed call to cuInit" on a machine without a
GPU. `filter_startup_noise()` routes file descriptor 2 through a thread that
drops exactly those known informational lines and forwards every other byte
unchanged (real errors, warnings, tracebacks, our own messages).
"""

import atexit
import logging
import os
import re
import select
import sys
import threading
from typing import Optional

# Known harmless start-up lines of TensorFlow's C++ runtime, by source file.
_NOISE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called "
    rb"are written to STDERR"
    rb"|[IWE]\d{4} [\d:. ]+\s*\d+ (?:port\.cc|cudart_stub\.cc|cuda_platform\.cc|"
    rb"cpu_feature_guard\.cc|cuda_executor\.cc|util\.cc):\d+\] .*"
    rb"(?:oneDNN|cuda|CUDA|GPU|TensorFlow binary is optimized).*"
    rb"|To enable the following instructions: .* rebuild TensorFlow .*)$")
# A partial line (a progress bar without a newline) is forwarded after this.
_PARTIAL_LINE_S = 0.1

_real_stderr: Optional[int] = None


def is_noise(line: bytes) -> bool:
  return bool(_NOISE.match(line.rstrip(b"\r\n")))


def filter_startup_noise() -> None:
  """Installs the filter on file descriptor 2 (once per process)."""
  global _real_stderr
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # TensorFlow's Python INFO lines ("Using MirroredStrategy with devices").
  logging.getLogger("tensorflow").setLevel(logging.WARNING)
  if _real_stderr is not None:
    return
  sys.stderr.flush()
  _real_stderr = os.dup(2)
  read_fd, write_fd = os.pipe()
  os.dup2(write_fd, 2)
  os.close(write_fd)
  thread = threading.Thread(target=_forward, args=(read_fd, _real_stderr),
                            daemon=True, name="stderr-filter")
  thread.start()

  def restore():
    sys.stderr.flush()
    os.dup2(_real_stderr, 2)  # closes the pipe's last writer: EOF ends `_forward`
    thread.join(timeout=5)
  atexit.register(restore)


def warnings_unless_verbose() -> None:
  """absl (and TensorFlow's Python code, which logs through it) at WARNING
  unless the user passed --verbosity/-v. Call from `main`, after flag parsing:
  absl's flag default cannot be changed before `app.run`."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)


def real_stderr() -> int:
  """The terminal's stderr, for a message written just before `os._exit`
  (which the filter thread would not get to forward)."""
  return _real_stderr if _real_stderr is not None else 2


def _forward(read_fd: int, out_fd: int) -> None:
  pending = b""
  while True:
    ready, _, _ = select.select([read_fd], [], [],
                                _PARTIAL_LINE_S if pending else None)
    if not ready:  # a partial line has waited long enough
      os.write(out_fd, pending)
      pending = b""
      continue
    chunk = os.read(read_fd, 1 << 16)
    if not chunk:
      if pending and not is_noise(pending):
        os.write(out_fd, pending)
      os.close(read_fd)
      return
    *lines, pending = (pending + chunk).split(b"\n")
    kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
    if kept:
      os.write(out_fd, kept)
