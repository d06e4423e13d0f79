"""What both in-graph tokenizers (WordPiece, Unigram) and the readers of
their files share: the error type, JSON reading, the UTF-8 clean and the
reference's character cut."""

import tensorflow as tf

from tf_minilm import errors
from tf_minilm import io_utils


class TokenizerError(errors.InputError):
  """A vocabulary or tokenizer configuration that cannot be used."""


def read_json(path: str):
  return io_utils.read_json(path, TokenizerError)


def clean_utf8(text: tf.Tensor) -> tf.Tensor:
  """Invalid UTF-8 -> U+FFFD, which normalisation then deletes (HF reads such
  bytes as U+FFFD too)."""
  return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                      replacement_char=0xFFFD)


def cut_characters(text: tf.Tensor, max_chars: int) -> tf.Tensor:
  """The first `max_chars` characters of each text, cleaned (`clean_utf8`:
  an invalid byte counts as one U+FFFD): the reference's cut of every
  pre-training line, before tokenizing."""
  return tf.strings.substr(clean_utf8(text), 0, max_chars, unit="UTF8_CHAR")
