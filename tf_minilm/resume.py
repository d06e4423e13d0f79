"""Whether a run may resume in its output_dir: the stored config, and digests
of what its inputs held.

A run stores its config with a digest of each input it names (teacher,
corpus, model, data files). A later run in the same output_dir resumes only
with the same flags (but those that may change) and inputs that hold the
same files: compared by what they hold, not how their path is spelled, so a
run directory or a corpus that was moved or copied resumes, and one whose
files changed does not.

A digest covers each file's relative name, size and bytes: every byte of
files up to FULLY_HASHED_BYTES, and of larger files (checkpoints, big
shards) the first and last SAMPLE_BYTES and SAMPLED_BLOCKS evenly spaced
blocks of BLOCK_BYTES. A replaced checkpoint or a regenerated corpus differs
in those; an edit of a large file that keeps its size and falls between the
blocks is not seen. Cost: at most about 4 MiB read per large file (64
shards: 256 MiB).
"""

import dataclasses
import hashlib
import json
import os
from typing import Dict, Optional, Sequence

from tf_minilm import config as config_lib

ConfigError = config_lib.ConfigError

# Flags that name input files or directories: on resume they are compared by
# what they hold where the run recorded it, else by resolved path.
PATH_FIELDS = ("teacher_model_name_or_path", "input_dir", "eval_input_dir",
               "student_init", "model_name_or_path", "data_dir", "train_file",
               "dev_file", "test_file")
DIGESTS_KEY = config_lib.STORED_DIGEST_KEYS[0]
FULLY_HASHED_BYTES = 16 << 20
SAMPLE_BYTES = 1 << 20
BLOCK_BYTES = 64 << 10
SAMPLED_BLOCKS = 32
# Fields added since a config could be stored, whose behaviour before they
# existed was not today's default: a stored config without the field resumes
# only with this value.
EARLIER_BEHAVIOUR = {"reference_char_cut": True}


def _hash_content(digest, path: str, size: int) -> None:
  with open(path, "rb") as f:
    if size <= FULLY_HASHED_BYTES:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
      return
    stride = (size - 2 * SAMPLE_BYTES - BLOCK_BYTES) // (SAMPLED_BLOCKS - 1)
    spans = [(0, SAMPLE_BYTES), (size - SAMPLE_BYTES, SAMPLE_BYTES)] + [
        (SAMPLE_BYTES + i * stride, BLOCK_BYTES)
        for i in range(SAMPLED_BLOCKS)]
    for offset, length in spans:
      f.seek(offset)
      digest.update(f.read(length))


def path_digest(path: str, output_dir: str) -> Optional[str]:
  """A digest of what a file or directory holds (module docstring); hidden
  files and directories, and the run's own `output_dir` should it lie
  inside, excluded. None if it does not exist."""
  if not path or not os.path.exists(path):
    return None
  output = os.path.realpath(output_dir)
  digest = hashlib.sha256()
  if os.path.isfile(path):
    entries = [("", path)]
  else:
    entries = []
    for root, dirs, names in os.walk(path):
      dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                       os.path.realpath(os.path.join(root, d)) != output)
      entries += [(os.path.relpath(os.path.join(root, n), path),
                   os.path.join(root, n))
                  for n in sorted(names) if not n.startswith(".")]
  for name, full in entries:
    size = os.path.getsize(full)
    digest.update(f"{name}\0{size}\0".encode("utf-8", "surrogateescape"))
    _hash_content(digest, full, size)
  return digest.hexdigest()


def stored_json(config) -> str:
  """The config as stored in its output_dir: every field, and the digest of
  every input it names."""
  values = dataclasses.asdict(config)
  values[DIGESTS_KEY] = {
      name: path_digest(values[name], config.output_dir)
      for name in PATH_FIELDS if values.get(name)}
  return json.dumps(values, indent=2, sort_keys=True)


def _input_change(name: str, current: str, stored: str,
                  digests: Dict[str, str], output_dir: str) -> Optional[str]:
  """How the input flag `name` differs from the stored run's, or None: by
  what it holds where the run recorded that, else by resolved path."""
  if not current or not stored:
    return None if current == stored else f"(was {stored or 'unset'})"
  if digests.get(name) is not None:
    if path_digest(current, output_dir) == digests[name]:
      return None
    if os.path.realpath(current) == os.path.realpath(stored):
      return "(its contents changed since the run started)"
    return f"(was {stored}, which held other contents)"
  if os.path.realpath(current) == os.path.realpath(stored):
    return None
  return f"(was {stored})"


def check_resumable(config, stored_text: str, stored_path: str,
                    resumable: Sequence[str]) -> None:
  """Refuses to continue a run stored at `stored_path` (its config's JSON)
  with flags, other than `resumable`, that differ from its own."""
  try:
    stored = json.loads(stored_text)
    if not isinstance(stored, dict):
      raise ValueError("not a JSON object")
  except ValueError as e:
    raise ConfigError("output_dir", config.output_dir,
                      f"{stored_path}: not a readable config ({e})") from None
  current = dataclasses.asdict(config)
  # Runs stored before digests sampled large files recorded other values:
  # their inputs are compared by path.
  digests = stored.pop(DIGESTS_KEY, None) or {}
  for key in config_lib.STORED_DIGEST_KEYS[1:]:
    stored.pop(key, None)
  stored = {**{name: value for name, value in EARLIER_BEHAVIOUR.items()
               if name in current}, **stored}
  # The run is where it is now: a moved or copied run directory resumes.
  ignored = set(resumable) | {"output_dir"}

  def change(name):
    if name in PATH_FIELDS:
      return _input_change(name, current[name], stored[name], digests,
                           config.output_dir)
    return None if current[name] == stored[name] else \
        f"(was {stored[name]})"
  changes = {name: change(name) for name in current
             if name not in ignored and name in stored}
  changed = [f"--{name}={current[name]} {how}"
             for name, how in changes.items() if how]
  if changed:
    allowed = ", ".join("--" + n for n in resumable)
    raise ConfigError(
        "output_dir", config.output_dir,
        f"holds a run started with other flags: {', '.join(changed)}. Resume "
        f"with the flags of its {os.path.basename(stored_path)}, or use a new "
        f"--output_dir (only {allowed} may change on resume)")
