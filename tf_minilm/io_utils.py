"""Safe writes and reads: atomic outputs, stale staging, run locks, text sniffing.

Every output (shards, checkpoints' exports, configs) is written under a
temporary sibling name and renamed into place, so readers never see half of
it. Temporary names carry the writer's host and process id: a later run
removes the staging left by a process that no longer exists (kill -9), and
never touches one that is still writing.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from typing import Iterator, Optional, Type

from tf_minilm import errors

_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
LOCK_FILE = ".lock"
SNIFF_BYTES = 1 << 16


class LockedError(errors.CommandError, RuntimeError):
  """Another live process holds the lock of a directory."""
  exit_code = 2


class LockLostError(RuntimeError):
  """The directory of a held lock was moved or removed."""


def _staging_prefix(path: str, kind: str) -> str:
  return f".{os.path.basename(path)}.{kind}-{_HOST}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, owned by another user
    pass
  return True


def remove_stale_staging(directory: str, name: Optional[str] = None) -> list:
  """Removes temporaries in `directory` (of the output `name`, or of any
  output) left by dead processes of this host.

  Returns the removed paths. Staging of live processes, and of other hosts
  (whose processes cannot be checked from here), is kept.
  """
  prefix = re.escape(f".{name}.") if name else r"\..+\."
  pattern = re.compile(prefix +
                       r"(?:tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[^-]*$")
  removed = []
  try:
    entries = os.listdir(directory)
  except FileNotFoundError:
    return removed
  for entry in entries:
    match = pattern.match(entry)
    if not match or match.group("host") != _HOST or _process_alive(
        int(match.group("pid"))):
      continue
    stale = os.path.join(directory, entry)
    if os.path.isdir(stale) and not os.path.islink(stale):
      shutil.rmtree(stale, ignore_errors=True)
    else:
      with contextlib.suppress(FileNotFoundError):
        os.remove(stale)
    removed.append(stale)
  return removed


@contextlib.contextmanager
def atomic_directory(path: str, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary sibling directory that replaces `path` on success.

  On an exception the temporary directory is removed and `path` is untouched.
  Raises FileExistsError if `path` exists and `overwrite` is False, or if it
  is not a directory (a file is never replaced by a directory).
  """
  path = os.path.abspath(path)
  if os.path.lexists(path):
    if not overwrite:
      raise FileExistsError(f"{path} already exists; refusing to overwrite it")
    if not os.path.isdir(path) or os.path.islink(path):
      raise FileExistsError(f"{path} exists and is not a directory; refusing "
                            "to replace it")
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  remove_stale_staging(parent, os.path.basename(path))
  staging = tempfile.mkdtemp(prefix=_staging_prefix(path, "tmp"), dir=parent)
  os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
  try:
    yield staging
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  if os.path.exists(path):
    retired = tempfile.mkdtemp(prefix=_staging_prefix(path, "old"), dir=parent)
    os.rename(path, os.path.join(retired, "old"))
    os.rename(staging, path)
    shutil.rmtree(retired, ignore_errors=True)
  else:
    os.rename(staging, path)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w", **open_kwargs) -> Iterator:
  """Opens a temporary sibling of `path` that is renamed onto it on success."""
  path = os.path.abspath(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  remove_stale_staging(os.path.dirname(path), os.path.basename(path))
  fd, staging = tempfile.mkstemp(prefix=_staging_prefix(path, "tmp"),
                                 dir=os.path.dirname(path))
  os.close(fd)
  os.chmod(staging, 0o666 & ~_umask())
  try:
    with open(staging, mode, **open_kwargs) as handle:
      yield handle
    os.replace(staging, path)
  except BaseException:
    if os.path.exists(staging):
      os.remove(staging)
    raise


class DirectoryLock:
  """An exclusive `flock` on `directory/.lock`, naming its holder.

  The kernel drops the lock when its process dies, so a lock left by a killed
  run never blocks the next one.
  """

  def __init__(self, directory: str, what: str):
    self.path = os.path.join(directory, LOCK_FILE)
    self.what = what
    self._fd: Optional[int] = None

  def acquire(self) -> "DirectoryLock":
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
      os.close(fd)
      raise LockedError(
          f"{os.path.dirname(self.path)} is in use by another {self.what} "
          f"({holder}); wait for it to finish or stop it, or use another "
          "directory") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}".encode())
    self._fd = fd
    return self

  def check_in_place(self) -> None:
    """Raises LockLostError if the locked directory no longer is at its
    path (moved, renamed or removed while held): another run may own that
    path now, and this one must write nothing there or anywhere else."""
    if self._fd is None:
      return
    held = os.fstat(self._fd)
    try:
      here = os.stat(self.path)
      if (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino):
        return
    except OSError:
      pass
    try:
      now = os.path.dirname(os.readlink(f"/proc/self/fd/{self._fd}"))
    except OSError:
      now = "an unknown place"
    directory = os.path.dirname(self.path)
    where = ("it was removed" if now.endswith(" (deleted)") else
             f"it is now {now}")
    raise LockLostError(
        f"{directory} was moved or removed while this run used it ({where}); "
        "stopping without writing anything more. Run the same command with "
        "--output_dir naming the run's directory where it is now to resume")

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


def is_gzip(path: str) -> bool:
  with open(path, "rb") as f:
    return f.read(2) == b"\x1f\x8b"


def binary_reason(sample: bytes) -> Optional[str]:
  """Why `sample` (the start of a file) is not UTF-8 text, or None if it is.

  Text may hold a few bad bytes (they are replaced and counted); a sample in
  which more than 30% of the characters are invalid UTF-8, NUL or other
  non-whitespace control characters is a binary file.
  """
  if not sample:
    return None
  text = sample.decode("utf-8", errors="replace")
  bad = sum(1 for c in text if c == "\ufffd" or (ord(c) < 32 and c not in
                                                  "\t\n\r\f\v"))
  if bad > 0.3 * max(1, len(text)):
    return (f"{100 * bad / max(1, len(text)):.0f}% of its first "
            f"{len(sample)} bytes are invalid UTF-8 or control characters")
  return None


def check_regular_file(path: str) -> None:
  """Raises ValueError unless `path` is a regular file (not a device/FIFO)."""
  mode = os.stat(path).st_mode
  if not stat.S_ISREG(mode):
    raise ValueError(f"{path} is not a regular file")


def is_disk_full(error: OSError) -> bool:
  return error.errno in (errno.ENOSPC, errno.EDQUOT)


def describe_os_error(error: OSError, where: str) -> str:
  """A one-line message for a failed write, naming the directory."""
  if error.errno == errno.ENOSPC:
    return f"no space left on {where}"
  if error.errno == errno.EDQUOT:
    return f"disk quota exceeded on {where}"
  return f"cannot write to {where}: {error.strerror or error}"


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def read_json(path: str, error_type: Type[Exception] = ValueError):
  """The JSON value of `path`; a file that cannot be read or parsed raises
  `error_type` naming it."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise error_type(f"{path}: not readable JSON ({e})") from None
