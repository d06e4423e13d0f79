"""tf.data input pipeline: text shards -> padded token-id batches per replica.

Each input pipeline (one per worker under `distribute_datasets_from_function`)
reads its own subset of the shard files, interleaves them, drops blank lines,
shuffles, batches raw lines, and only then tokenizes, so that resuming (skipping
already consumed batches) costs file reading, not tokenization.

Batching modes:
  "random"   batches of consecutive shuffled lines, padded to their longest
             row (the reference). On sentence corpora most computed tokens are
             padding: one long sentence widens its whole batch.
  "grouped"  windows of `group_window` batches of shuffled lines are sorted by
             token length and cut into batches, whose order inside the window
             is then shuffled (seeded per window). Every line still appears
             exactly once per epoch; batches hold sentences of similar length.
"""

import dataclasses
import os
import unicodedata
from typing import List, Optional

import tensorflow as tf

from tf_minilm import io_utils
from tf_minilm import text_encoding

PADDING_MODES = text_encoding.PADDING_MODES
BATCHING_MODES = ("random", "grouped")
READ_CHUNK_LINES = 256
# A line of only whitespace, separators, control and format characters
# (zero-width spaces and joiners, byte-order marks) and U+FFFD (what invalid
# bytes become) tokenizes to [CLS] [SEP] alone: it is blank.
_BLANK_LINE = r"[\s\p{Z}\p{C}\x{FFFD}]*"
_BLANK_CATEGORIES = ("Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn")


class DataError(ValueError):
  """Input shards or pipeline settings that cannot be used."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Settings of one input pipeline.

  Attributes:
    max_seq_length: tokens per sequence, [CLS] and [SEP] included.
    char_cut: cut each line to `max_seq_length` characters before tokenizing,
      as the reference's (Chinese) pre-training reader does.
    batch_size: sequences per replica batch.
    padding: "longest" pads each batch to its longest row (reference);
      "bucket" pads to a multiple of `bucket_multiple` (fewer XLA shapes).
    shuffle_buffer: lines in the shuffle buffer; 0 disables line shuffling.
    deterministic: reproducible order (needed for exact resume); otherwise
      interleaving takes whichever file is ready first.
    cycle_length: shard files read concurrently per pipeline.
    repeat: cycle over the files forever (training) or read them once (eval).
    batching: "random" (reference) or "grouped" by length (module docstring).
    group_window: batches per length-sorted window with "grouped".
  """
  max_seq_length: int = 128
  char_cut: bool = False
  batch_size: int = 128
  padding: str = "longest"
  bucket_multiple: int = 32
  shuffle_buffer: int = 100_000
  deterministic: bool = False
  cycle_length: int = 16
  repeat: bool = True
  seed: int = 0
  batching: str = "random"
  group_window: int = 100

  def __post_init__(self):
    if self.padding not in PADDING_MODES:
      raise DataError(f"padding must be one of {PADDING_MODES}, got "
                      f"{self.padding!r}")
    if self.batching not in BATCHING_MODES:
      raise DataError(f"batching must be one of {BATCHING_MODES}, got "
                      f"{self.batching!r}")
    for name in ("max_seq_length", "batch_size", "bucket_multiple",
                 "cycle_length", "group_window"):
      if getattr(self, name) < 1:
        raise DataError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.max_seq_length < 3:
      raise DataError(f"max_seq_length must be >= 3 ([CLS], a token, [SEP]), got "
                      f"{self.max_seq_length}")


def _shard_problem(path: str) -> Optional[str]:
  """Why `path` cannot be read as a shard of text lines, or None.

  The pipeline cycles over the shards forever, dropping blank lines: a shard
  set without one usable line would spin without producing a batch.
  """
  if os.path.getsize(path) == 0:
    return f"{path} is empty"
  if io_utils.is_gzip(path):
    return (f"{path} is gzip-compressed; shards are plain UTF-8 text, one "
            "sentence per line (bin/prepare_corpus reads gzip and writes them)")
  with open(path, "rb") as f:
    block = f.read(io_utils.SNIFF_BYTES)
    reason = io_utils.binary_reason(block)
    if reason:
      return f"{path} is not UTF-8 text: {reason}"
    while block:
      # A character cut at the block's end decodes to U+FFFD: blank, so a
      # split never makes a blank shard look usable.
      if any(not _is_blank(c) for c in block.decode("utf-8", "replace")):
        return None
      block = f.read(1 << 20)
  return (f"{path} holds only whitespace, control or zero-width characters: "
          "no line to train on")


def _is_blank(character: str) -> bool:
  return (character.isspace() or character == "\ufffd" or
          unicodedata.category(character) in _BLANK_CATEGORIES)


def list_shards(input_dir: str) -> List[str]:
  """Sorted shard files of `input_dir`; every one must be a readable UTF-8 text
  file with at least one non-blank line.

  Hidden files (manifests, temporaries) and `*.json` are not shards.
  """
  if not os.path.isdir(input_dir):
    raise DataError(f"input directory {input_dir!r} does not exist or is not a "
                    "directory")
  names = sorted(n for n in os.listdir(input_dir)
                 if not n.startswith(".") and not n.endswith(".json"))
  shards, problems = [], []
  for name in names:
    path = os.path.join(input_dir, name)
    if not os.path.isfile(path):
      continue
    if not os.access(path, os.R_OK):
      problems.append(f"{path} is not readable")
      continue
    problem = _shard_problem(path)
    if problem:
      problems.append(problem)
    else:
      shards.append(path)
  if problems:
    raise DataError("bad shard files: " + "; ".join(problems))
  if not shards:
    raise DataError(f"no shard files in {input_dir!r} (expected text files, one "
                    "sentence per line)")
  return shards


def text_encoder(tokenizer: text_encoding.Tokenizer,
                 config: PipelineConfig) -> text_encoding.TextEncoder:
  return text_encoding.TextEncoder(
      tokenizer, config.max_seq_length, char_cut=config.char_cut,
      padding=config.padding, bucket_multiple=config.bucket_multiple)


def _drop_blank(lines: tf.Tensor) -> tf.Tensor:
  """Blank lines (see _BLANK_LINE) would become [CLS] [SEP]: never train on
  them."""
  return tf.boolean_mask(lines, tf.logical_not(
      tf.strings.regex_full_match(lines, _BLANK_LINE)))


def line_dataset(shards: List[str], config: PipelineConfig,
                 input_context: Optional[tf.distribute.InputContext] = None
                 ) -> tf.data.Dataset:
  """Non-blank lines of this input pipeline's files, shuffled per `config`.

  With `input_context`, files are split between input pipelines, so each file
  is read by exactly one of them.
  """
  files = tf.data.Dataset.from_tensor_slices(shards)
  num_files = len(shards)
  if input_context is not None and input_context.num_input_pipelines > 1:
    pipelines = input_context.num_input_pipelines
    if len(shards) < pipelines:
      raise DataError(
          f"{len(shards)} shard files cannot feed {pipelines} input pipelines "
          "(one per worker): write at least as many shards as workers")
    files = files.shard(pipelines, input_context.input_pipeline_id)
    num_files = len(shards[input_context.input_pipeline_id::pipelines])
  if config.repeat:
    files = files.shuffle(num_files, seed=config.seed,
                          reshuffle_each_iteration=True).repeat()
  # Lines travel in chunks until after the blank-line filter: a per-line
  # filter function costs more than reading, tokenizing and batching together.
  chunks = files.interleave(
      lambda path: tf.data.TextLineDataset(path).batch(READ_CHUNK_LINES),
      cycle_length=min(config.cycle_length, num_files),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
  lines = chunks.map(_drop_blank, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=config.deterministic).unbatch()
  if config.shuffle_buffer:
    lines = lines.shuffle(config.shuffle_buffer, seed=config.seed + 1)
  return lines


def _grouped_batches(lines: tf.data.Dataset,
                     encoder: text_encoding.TextEncoder,
                     config: PipelineConfig, skip_batches: int
                     ) -> tf.data.Dataset:
  """Batches of raw lines grouped by token length (see the module docstring).

  Resuming skips whole windows before tokenization, then the batches already
  taken from the current window.
  """
  window_lines = config.batch_size * config.group_window
  windows = lines.batch(window_lines, drop_remainder=config.repeat).enumerate()
  if skip_batches:
    windows = windows.skip(skip_batches // config.group_window)

  def group(index, window):
    lengths = encoder.token_ids(window).row_lengths()
    window = tf.gather(window, tf.argsort(lengths, stable=True))
    size = tf.size(window, out_type=tf.int64)
    num_batches = (size // config.batch_size if config.repeat else
                   (size + config.batch_size - 1) // config.batch_size)
    row_lengths = tf.minimum(
        tf.constant(config.batch_size, tf.int64),
        size - tf.range(num_batches) * config.batch_size)
    batches = tf.RaggedTensor.from_row_lengths(
        window[:tf.reduce_sum(row_lengths)], row_lengths)
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num_batches), seed=tf.stack([tf.cast(config.seed, tf.int64),
                                              index]))
    return tf.gather(batches, order)

  batches = windows.map(group, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=config.deterministic).unbatch()
  if skip_batches % config.group_window:
    batches = batches.skip(skip_batches % config.group_window)
  return batches


def make_dataset(shards: List[str], tokenizer: text_encoding.Tokenizer,
                 config: PipelineConfig,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 skip_batches: int = 0) -> tf.data.Dataset:
  """Padded batches for one input pipeline (see `line_dataset`).

  Args:
    skip_batches: batches of this pipeline already consumed (resume); skipped
      before tokenization.
  """
  options = tf.data.Options()
  options.deterministic = config.deterministic
  encoder = text_encoder(tokenizer, config)
  lines = line_dataset(shards, config, input_context)
  if config.batching == "grouped":
    batches = _grouped_batches(lines, encoder, config, skip_batches)
  else:
    batches = lines.batch(config.batch_size, drop_remainder=config.repeat)
    if skip_batches:
      batches = batches.skip(skip_batches)

  def encode(lines):
    batch = encoder.encode(lines)
    if config.repeat:  # full batches only: a static batch size for XLA
      batch = {name: tf.ensure_shape(value, [config.batch_size, None])
               for name, value in batch.items()}
    return batch
  batches = batches.map(encode, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=config.deterministic)
  return batches.prefetch(tf.data.AUTOTUNE).with_options(options)
