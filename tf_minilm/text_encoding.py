"""Texts -> model inputs: truncation, special tokens, segment ids and padding.

`TextEncoder` is the one place where text becomes token ids for a model: the
distillation pipeline, fine-tuning (training, evaluation, prediction) and the
string signatures of every exported SavedModel all call it, so serving sees
the ids training saw.

Truncation is by tokens, as `transformers` does it:
`tokenizer(text, truncation=True, max_length=L)` for single texts and
`truncation="longest_first"` for pairs, with identical ids. The reference's
per-line character cut (PaddleNLP cuts every Chinese pre-training line to L
characters before tokenizing) is available to distillation as `char_cut`,
and nowhere else.

Two tokenizers fill the `Tokenizer` interface: `tokenization.BertTokenizer`
(WordPiece) and `unigram_tokenization.UnigramTokenizer` (SentencePiece).
"""

from typing import Dict, Optional, Protocol, Tuple

import tensorflow as tf

from tf_minilm import tokenization

PADDING_MODES = ("longest", "bucket")


class Tokenizer(Protocol):
  """What TextEncoder needs of a tokenizer."""
  pad_id: int

  def tokenize(self, text: tf.Tensor, max_tokens: Optional[int] = None,
               max_chars: Optional[int] = None) -> tf.RaggedTensor:
    """`[B]` strings -> `[B, (pieces)]` int32 ids without special tokens;
    with `max_tokens`, the first `max_tokens` of the whole text's (it may
    avoid tokenizing all of a long text, but must prove the ids equal);
    with `max_chars`, those of each text cut first to `max_chars` characters
    by `text_cleaning.cut_characters` (the reference's pre-training cut)."""

  def num_special_tokens(self, pair: bool) -> int:
    """How many special tokens a single text or a pair adds."""

  def add_special_tokens(self, a: tf.RaggedTensor,
                         b: Optional[tf.RaggedTensor] = None
                         ) -> Tuple[tf.RaggedTensor, Optional[tf.RaggedTensor]]:
    """(ids, segment_ids), each `[B, (len)]` int32; segment_ids is None where
    they are all 0 (single texts, as a rule), so that the encoder fills them
    dense instead of building them ragged."""


class TextEncoder:
  """Strings -> `token_ids`/`segment_ids` int32 and `padding_mask` bool
  `[B, L]`, at most `max_seq_length` tokens per row, special tokens included.

  Args:
    tokenizer: a `Tokenizer`.
    max_seq_length: tokens per row, special tokens included.
    char_cut: cut each text to `max_seq_length` characters before tokenizing
      (the reference's pre-training reader; distillation only).
    padding: "longest" pads to the batch's longest row; "bucket" to a multiple
      of `bucket_multiple` (fewer shapes for XLA), at most `max_seq_length`.
  """

  def __init__(self, tokenizer: Tokenizer, max_seq_length: int,
               char_cut: bool = False,
               padding: str = "longest", bucket_multiple: int = 32):
    if max_seq_length < tokenizer.num_special_tokens(pair=True):
      raise tokenization.TokenizerError(
          f"max_seq_length must be >= {tokenizer.num_special_tokens(True)}, "
          f"got {max_seq_length}")
    if padding not in PADDING_MODES:
      raise ValueError(f"padding must be one of {PADDING_MODES}, got "
                       f"{padding!r}")
    self.tokenizer = tokenizer
    self.max_seq_length = max_seq_length
    self.char_cut = char_cut
    self.padding = padding
    self.bucket_multiple = bucket_multiple

  def token_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
    """`[B]` texts -> `[B, (len)]` ids with special tokens, truncated."""
    return self._with_special_tokens(text)[0]

  def encode(self, text: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`[B]` texts -> padded model inputs `[B, L]`."""
    ids, segment_ids = self._with_special_tokens(text)
    return self._pad(ids, segment_ids, pair=False)

  def _with_special_tokens(self, text: tf.Tensor):
    return self.tokenizer.add_special_tokens(self.tokenizer.tokenize(
        text,
        max_tokens=(self.max_seq_length -
                    self.tokenizer.num_special_tokens(False)),
        max_chars=self.max_seq_length if self.char_cut else None))

  def encode_pairs(self, text: tf.Tensor,
                   text_pair: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`[B]` text pairs -> padded model inputs `[B, L]`, truncated longest
    first. Both texts are tokenized whole: which side keeps the odd token
    depends on their full lengths."""
    a = self.tokenizer.tokenize(text)
    b = self.tokenizer.tokenize(text_pair)
    budget = self.max_seq_length - self.tokenizer.num_special_tokens(True)
    keep_a, keep_b = longest_first(a.row_lengths(), b.row_lengths(), budget)
    a = tf.ragged.boolean_mask(a, tf.ragged.range(a.row_lengths()) <
                               keep_a[:, None])
    b = tf.ragged.boolean_mask(b, tf.ragged.range(b.row_lengths()) <
                               keep_b[:, None])
    ids, segment_ids = self.tokenizer.add_special_tokens(a, b)
    return self._pad(ids, segment_ids, pair=True)

  def _pad(self, ids: tf.RaggedTensor,
           segment_ids: Optional[tf.RaggedTensor],
           pair: bool) -> Dict[str, tf.Tensor]:
    # The mask comes from the row lengths, not from a ragged mask made dense:
    # each ragged -> dense copy costs a few percent of encoding a batch.
    row_lengths = tf.cast(ids.row_lengths(), tf.int32)
    # Every row holds the special tokens; the minimum also gives an empty
    # batch a valid width.
    minimum = self.tokenizer.num_special_tokens(pair)
    length = tf.reduce_max(tf.concat([row_lengths, [minimum]], 0))
    if self.padding == "bucket":
      multiple = self.bucket_multiple
      length = tf.minimum((length + multiple - 1) // multiple * multiple,
                          self.max_seq_length)
    shape = tf.stack([tf.cast(ids.nrows(), tf.int32), length])
    token_ids = tf.cast(ids.to_tensor(self.tokenizer.pad_id, shape=shape),
                        tf.int32)
    if segment_ids is None:
      segment_ids = tf.zeros_like(token_ids)
    else:
      segment_ids = tf.cast(segment_ids.to_tensor(0, shape=shape), tf.int32)
    return {"token_ids": token_ids, "segment_ids": segment_ids,
            "padding_mask": tf.sequence_mask(row_lengths, length)}


def longest_first(len_a: tf.Tensor, len_b: tf.Tensor, budget: int):
  """Tokens kept of each side under `tokenizers`' LongestFirst rule, which
  transformers applies for `truncation="longest_first"`: the shorter side
  keeps up to half of `budget`, the longer side the rest (the odd token goes
  to the longer side, to b on a tie). `[B]` lengths -> two `[B]`."""
  a_short = len_a <= len_b
  short, long = tf.minimum(len_a, len_b), tf.maximum(len_a, len_b)
  keep_long = tf.minimum(long, tf.where(short > budget, short,
                                        tf.maximum(short, budget - short)))
  over = short + keep_long > budget
  keep_short = tf.where(over, tf.cast(budget // 2, short.dtype), short)
  keep_long = tf.where(over, tf.cast(budget // 2 + budget % 2, long.dtype),
                       keep_long)
  return (tf.where(a_short, keep_short, keep_long),
          tf.where(a_short, keep_long, keep_short))
