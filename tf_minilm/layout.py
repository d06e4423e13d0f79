"""The run directory: the one owner of every file name inside an output_dir.

  <output_dir>/
    <config file>        the resolved config of the run (JSON)
    .lock                held by the running process (io_utils.DirectoryLock)
    checkpoints/         tf.train.CheckpointManager files (ckpt-<step>.*)
    tensorboard/         event files
    model_<step>/        student.keras, hf/ (transformers), tokenizer files
    student_vocab/       with --student_vocab_size: the student's tokenizer
                         files and their teacher ids (student_vocab.py)
"""

import glob
import os
import shutil
from typing import Dict, List, Optional

from tf_minilm import config as config_lib
from tf_minilm import io_utils

CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
MODEL_DIR_PREFIX = "model_"
STUDENT_KERAS = "student.keras"
STUDENT_HF = "hf"
STUDENT_VOCAB = "student_vocab"
# The config file that marks a directory as a run of each tool.
RUN_CONFIGS = {config_lib.CONFIG_FILENAME: "bin/distill",
               config_lib.FINETUNE_CONFIG_FILENAME: "bin/finetune"}


def check_output_dir(output_dir: str, tool: str,
                     inputs: Dict[str, str]) -> None:
  """Refuses an output_dir that holds another tool's run, and inputs (flag ->
  path) that are or lie inside the output_dir, where `tool` (e.g.
  "bin/export") writes files of its own names and removes or replaces what
  it considers its own."""
  for name, owner in RUN_CONFIGS.items():
    if owner != tool and os.path.isfile(os.path.join(output_dir, name)):
      raise config_lib.ConfigError(
          "output_dir", output_dir, f"holds a {owner} run ({name}); give "
          f"{tool} a directory of its own")
  out = os.path.realpath(output_dir)
  for flag, path in inputs.items():
    real = os.path.realpath(path) if path else None
    if real and (real == out or real.startswith(out + os.sep)):
      raise config_lib.ConfigError(
          flag, path, f"lies inside --output_dir={output_dir}, where the run "
          "writes its own files: keep inputs outside it")


class RunLayout:
  """Paths of one run directory; `config_file` names its resolved config."""

  def __init__(self, output_dir: str, config_file: str):
    self.output_dir = output_dir
    self.config_path = os.path.join(output_dir, config_file)
    self.checkpoint_dir = os.path.join(output_dir, CHECKPOINT_DIR)
    self.tensorboard_dir = os.path.join(output_dir, TENSORBOARD_DIR)
    self.student_vocab_dir = os.path.join(output_dir, STUDENT_VOCAB)
    self._lock: Optional[io_utils.DirectoryLock] = None

  def model_dir(self, step: int) -> str:
    return os.path.join(self.output_dir, f"{MODEL_DIR_PREFIX}{step}")

  def model_steps(self) -> List[int]:
    """The steps of the model_<step>/ directories there, ascending."""
    if not os.path.isdir(self.output_dir):
      return []
    names = [name[len(MODEL_DIR_PREFIX):] for name in
             os.listdir(self.output_dir) if name.startswith(MODEL_DIR_PREFIX)]
    return sorted(int(name) for name in names if name.isdigit())

  def private(self, path: str, worker: Optional[str]) -> str:
    """`path`, or a worker's private copy inside it (non-chief workers write
    there; it is removed when they finish)."""
    return path if worker is None else os.path.join(path, f".worker_{worker}")

  def read_config(self) -> Optional[str]:
    """The stored config's text, or None for a new run."""
    if not os.path.isfile(self.config_path):
      return None
    with open(self.config_path, encoding="utf-8") as f:
      return f.read()

  def write_config(self, text: str) -> None:
    with io_utils.atomic_file(self.config_path) as f:
      f.write(text)

  def prepare(self, what: str) -> io_utils.DirectoryLock:
    """Creates and locks the directory, then removes what killed runs left:
    staging of exports and configs, and half-written checkpoints."""
    os.makedirs(self.output_dir, exist_ok=True)
    self._lock = io_utils.DirectoryLock(self.output_dir, what).acquire()
    io_utils.remove_stale_staging(self.output_dir)
    self.remove_partial_checkpoints()
    return self._lock

  def check_in_place(self) -> None:
    """Before each write: the directory this process locked is still at its
    path (io_utils.LockLostError otherwise). No-op where no lock is held
    (non-chief workers)."""
    if self._lock is not None:
      self._lock.check_in_place()

  def remove_partial_checkpoints(self) -> List[str]:
    """`ckpt-<step>_temp` directories of a checkpoint write that failed."""
    partial = glob.glob(os.path.join(self.checkpoint_dir, "*_temp*"))
    for path in partial:
      shutil.rmtree(path, ignore_errors=True)
    return partial
