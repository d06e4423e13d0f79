"""Atomic file and directory writes: readers never see a half-written output."""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_directory(path: str, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary sibling directory that replaces `path` on success.

  On an exception the temporary directory is removed and `path` is untouched.
  Raises FileExistsError if `path` exists and `overwrite` is False.
  """
  path = os.path.abspath(path)
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} already exists; refusing to overwrite it")
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
  os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
  try:
    yield staging
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  if os.path.exists(path):
    retired = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
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
  fd, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-",
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


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask
