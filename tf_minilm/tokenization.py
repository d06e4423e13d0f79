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
# HF BasicTokenizer._is_chinese_char ranges; each such character is its own word.
_CJK_RANGES = ("\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{20000}-\\x{2A6DF}"
               "\\x{2A700}-\\x{2B73F}\\x{2B740}-\\x{2B81F}\\x{2B820}-\\x{2CEAF}"
               "\\x{F900}-\\x{FAFF}\\x{2F800}-\\x{2FA1F}")


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
    self._wordpiece = tf_text.FastBertTokenizer(
        vocab=vocab, token_out_type=tf.int32, unknown_token="[UNK]",
        lower_case_nfd_strip_accents=False)

  @classmethod
  def from_model_dir(cls, model_dir: str) -> "BertTokenizer":
    return cls(load_vocab(os.path.join(model_dir, "vocab.txt")),
               read_do_lower_case(model_dir))

  def normalize(self, text: tf.Tensor) -> tf.Tensor:
    """HF BasicTokenizer's cleaning, lower-casing and accent stripping."""
    text = tf.strings.regex_replace(text, r"[\t\n\r]", " ")
    text = tf.strings.regex_replace(text, "[\\p{C}\\x{FFFD}]", "")
    text = tf.strings.regex_replace(text, r"\p{Zs}", " ")
    if self.lower_case:
      text = tf.strings.lower(text, encoding="utf-8")
      text = tf_text.normalize_utf8(text, "NFD")
      text = tf.strings.regex_replace(text, r"\p{Mn}", "")
    return tf.strings.regex_replace(text, f"([{_CJK_RANGES}])", " \\1 ")

  def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
    """`[N]` strings -> `[N, (tokens)]` int32 WordPiece ids, no special tokens."""
    pieces = self._wordpiece.tokenize(self.normalize(text))
    return pieces.merge_dims(-2, -1) if pieces.shape.rank > 2 else pieces

  def encode(self, text: tf.Tensor, max_seq_length: int) -> tf.RaggedTensor:
    """`[CLS] pieces [SEP]`, truncated to `max_seq_length` ids: `[N, (len)]`."""
    if max_seq_length < 2:
      raise TokenizerError(f"max_seq_length must be >= 2, got {max_seq_length}")
    pieces = self.tokenize(text)[:, :max_seq_length - 2]
    batch = tf.shape(pieces.row_lengths(), out_type=tf.int64)[0]
    cls = tf.fill([batch, 1], self.cls_id)
    sep = tf.fill([batch, 1], self.sep_id)
    return tf.concat([tf.RaggedTensor.from_tensor(cls), pieces,
                      tf.RaggedTensor.from_tensor(sep)], axis=1)
