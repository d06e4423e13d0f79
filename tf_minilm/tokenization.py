"""In-graph BERT WordPiece tokenization with the ids of HuggingFace `BertTokenizer`.

tf-text's and keras-hub's BERT tokenizers normalise with `case_fold_utf8`, which
applies NFKC: full-width Chinese punctuation and digits (，１２) become ASCII and the
ids differ from HF's on most Chinese lines. This module reproduces HF's
`BasicTokenizer` normalisation with regex and NFD ops, then runs
`FastBertTokenizer` without its own normaliser.
"""

import json
import os
from typing import List, Optional

import tensorflow as tf
import tensorflow_text as tf_text

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
# HF's WordpieceTokenizer.max_input_chars_per_word: a longer word is [UNK].
# tf-text's limit is in bytes (100 by default): a word of 34 to 100 multi-byte
# characters is [UNK] there but word pieces in HF.
MAX_CHARS_PER_WORD = 100


class TokenizerError(ValueError):
  """A vocabulary or tokenizer configuration that cannot be used."""


def load_vocab(path: str) -> List[str]:
  """Tokens of a BERT `vocab.txt`, one per line; checks the special tokens."""
  try:
    with open(path, encoding="utf-8") as f:
      tokens = [line.rstrip("\n").rstrip("\r") for line in f]
  except (OSError, UnicodeDecodeError) as e:
    raise TokenizerError(f"{path}: cannot read the vocabulary ({e})") from None
  while tokens and not tokens[-1]:
    tokens.pop()
  missing = [t for t in SPECIAL_TOKENS if t not in tokens]
  if missing:
    raise TokenizerError(f"{path}: vocabulary lacks the special tokens {missing}")
  if tokens.index("[PAD]") != 0:
    raise TokenizerError(f"{path}: [PAD] must have id 0 (padding uses id 0), it "
                         f"has id {tokens.index('[PAD]')}")
  return tokens


def read_do_lower_case(model_dir: str) -> bool:
  """`do_lower_case` of a HF `tokenizer_config.json` (True when absent, as HF)."""
  path = os.path.join(model_dir, "tokenizer_config.json")
  if not os.path.isfile(path):
    return True
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f).get("do_lower_case", True)
  except (OSError, ValueError) as e:
    raise TokenizerError(f"{path}: not readable JSON ({e})") from None
  if not isinstance(value, bool):
    raise TokenizerError(f"{path}: do_lower_case must be true or false, got "
                         f"{value!r}")
  return value


class BertTokenizer(tf.Module):
  """Strings -> WordPiece ids, in the graph, matching `transformers.BertTokenizer`.

  Args:
    vocab: the tokens, index = id ([PAD] must be 0).
    lower_case: lower-case and strip accents, as HF `do_lower_case`.
  """

  def __init__(self, vocab: List[str], lower_case: bool = True,
               name: Optional[str] = None):
    super().__init__(name=name)
    self.vocab_size = len(vocab)
    self.lower_case = lower_case
    self.pad_id = vocab.index("[PAD]")
    self.cls_id = vocab.index("[CLS]")
    self.sep_id = vocab.index("[SEP]")
    self.unk_id = vocab.index("[UNK]")
    # Two WordPiece tokenizers: tf-text's byte limit (fast), and one that lets
    # every word of up to MAX_CHARS_PER_WORD characters (4 bytes each)
    # through, for the rows where the two rules can differ.
    self._wordpiece = tf_text.FastBertTokenizer(
        vocab=vocab, token_out_type=tf.int32, unknown_token="[UNK]",
        lower_case_nfd_strip_accents=False,
        max_bytes_per_word=MAX_CHARS_PER_WORD)
    self._wordpiece_long = tf_text.FastBertTokenizer(
        vocab=vocab, token_out_type=tf.int32, unknown_token="[UNK]",
        lower_case_nfd_strip_accents=False,
        max_bytes_per_word=4 * MAX_CHARS_PER_WORD)
    self._is_suffix = tf.constant([t.startswith("##") for t in vocab])

  @classmethod
  def from_model_dir(cls, model_dir: str) -> "BertTokenizer":
    return cls(load_vocab(os.path.join(model_dir, "vocab.txt")),
               read_do_lower_case(model_dir))

  def normalize(self, text: tf.Tensor) -> tf.Tensor:
    """HF BasicTokenizer's cleaning, lower-casing and accent stripping.

    Whitespace controls and \\p{Zs} become spaces; other controls (\\p{C}),
    U+FFFD and, for lower-case models, combining marks after NFD are deleted.
    CJK characters need no spacing here: FastBertTokenizer splits them itself.
    """
    text = tf.strings.regex_replace(text, r"[\t\n\r\p{Zs}]", " ")
    if not self.lower_case:
      return tf.strings.regex_replace(text, "[\\p{C}\\x{FFFD}]", "")
    text = tf_text.normalize_utf8(tf.strings.lower(text, encoding="utf-8"),
                                  "NFD")
    return tf.strings.regex_replace(text, "[\\p{C}\\p{Mn}\\x{FFFD}]", "")

  def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
    """`[N]` strings -> `[N, (tokens)]` int32 WordPiece ids, no special tokens.

    As HF, a word (after splitting on spaces, punctuation and CJK characters)
    of more than MAX_CHARS_PER_WORD characters becomes one [UNK]. The two
    limits can only differ on a word over MAX_CHARS_PER_WORD bytes, i.e. of
    at least a quarter as many characters without a space or punctuation:
    only rows holding such a run (rare) take the exact path, which needs
    offsets and costs about twice as much.
    """
    normalized = self.normalize(text)
    fast = self._wordpiece.tokenize(normalized)
    long_run = -(-(MAX_CHARS_PER_WORD + 1) // 4)
    may_differ = tf.strings.regex_full_match(
        normalized, f"(?s).*[^\\s\\p{{P}}]{{{long_run},}}.*")
    exact_rows = tf.where(may_differ)[:, 0]
    fast_rows = tf.where(tf.logical_not(may_differ))[:, 0]
    exact = self._tokenize_by_characters(tf.gather(normalized, exact_rows))
    merged = tf.concat([tf.gather(fast, fast_rows), exact], axis=0)
    return tf.gather(merged, tf.argsort(tf.concat([fast_rows, exact_rows], 0)))

  def _tokenize_by_characters(self, normalized: tf.Tensor) -> tf.RaggedTensor:
    """WordPiece with HF's character limit per word (needs offsets)."""
    pieces, starts, ends = self._wordpiece_long.tokenize_with_offsets(
        normalized)
    ids = pieces.flat_values
    # Words start at every piece that is not a "##" continuation; numbered
    # across the batch, since every row starts with a word.
    word_start = tf.logical_not(tf.gather(self._is_suffix, ids))
    word = tf.cumsum(tf.cast(word_start, tf.int32)) - 1
    num_words = tf.reduce_sum(tf.cast(word_start, tf.int32))
    first = tf.math.unsorted_segment_min(starts.flat_values, word, num_words)
    last = tf.math.unsorted_segment_max(ends.flat_values, word, num_words)
    row = tf.math.unsorted_segment_min(pieces.value_rowids(), word, num_words)
    words = tf.strings.substr(tf.gather(normalized, row), first, last - first,
                              unit="BYTE")
    too_long = tf.gather(tf.strings.length(words, unit="UTF8_CHAR") >
                         MAX_CHARS_PER_WORD, word)
    ids = tf.where(too_long, tf.constant(self.unk_id, ids.dtype), ids)
    keep = tf.logical_or(tf.logical_not(too_long), word_start)
    return tf.ragged.boolean_mask(pieces.with_flat_values(ids),
                                  pieces.with_flat_values(keep))

  def _column(self, batch, token_id) -> tf.RaggedTensor:
    return tf.RaggedTensor.from_tensor(tf.fill([batch, 1], token_id))

  def encode(self, text: tf.Tensor, max_seq_length: int) -> tf.RaggedTensor:
    """`[CLS] pieces [SEP]`, truncated to `max_seq_length` ids: `[N, (len)]`."""
    if max_seq_length < 2:
      raise TokenizerError(f"max_seq_length must be >= 2, got {max_seq_length}")
    pieces = self.tokenize(text)[:, :max_seq_length - 2]
    batch = pieces.nrows()
    return tf.concat([self._column(batch, self.cls_id), pieces,
                      self._column(batch, self.sep_id)], axis=1)

  def encode_pair(self, text_a: tf.Tensor, text_b: tf.Tensor,
                  max_seq_length: int):
    """`[CLS] a [SEP] b [SEP]` and segment ids (0 for a, 1 for b), truncated
    "longest first" exactly as transformers does. Returns two `[N, (len)]`."""
    if max_seq_length < 3:
      raise TokenizerError(f"max_seq_length must be >= 3, got {max_seq_length}")
    a, b = self.tokenize(text_a), self.tokenize(text_b)
    budget = max_seq_length - 3
    len_a, len_b = a.row_lengths(), b.row_lengths()
    # The `tokenizers` (Rust) LongestFirst rule that transformers' BertTokenizer
    # applies: the shorter side keeps up to half, the longer side the rest
    # (the odd token goes to the longer side, to b on a tie).
    a_short = len_a <= len_b
    short, long = tf.minimum(len_a, len_b), tf.maximum(len_a, len_b)
    keep_long = tf.minimum(long, tf.where(short > budget, short,
                                          tf.maximum(short, budget - short)))
    over = short + keep_long > budget
    keep_short = tf.where(over, tf.cast(budget // 2, short.dtype), short)
    keep_long = tf.where(over, tf.cast(budget // 2 + budget % 2, long.dtype),
                         keep_long)
    keep_a = tf.where(a_short, keep_short, keep_long)
    keep_b = tf.where(a_short, keep_long, keep_short)
    a = tf.ragged.boolean_mask(a, tf.ragged.range(len_a) < keep_a[:, None])
    b = tf.ragged.boolean_mask(b, tf.ragged.range(len_b) < keep_b[:, None])
    batch = a.nrows()
    ids = tf.concat([self._column(batch, self.cls_id), a,
                     self._column(batch, self.sep_id), b,
                     self._column(batch, self.sep_id)], axis=1)
    first = tf.cast(keep_a + 2, tf.int32)
    segment_ids = tf.cast(
        tf.ragged.range(tf.cast(ids.row_lengths(), tf.int32)) >=
        first[:, None], tf.int32)
    return ids, segment_ids


def clean_and_cut(text: tf.Tensor, max_chars: int) -> tf.Tensor:
  """Invalid UTF-8 -> U+FFFD (deleted by normalisation), then the first
  `max_chars` characters, as the reference cuts every line before tokenizing."""
  text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                      replacement_char=0xFFFD)
  return tf.strings.substr(text, 0, max_chars, unit="UTF8_CHAR")
