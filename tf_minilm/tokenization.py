"""In-graph BERT WordPiece tokenization with the ids of HuggingFace `BertTokenizer`.

tf-text's and keras-hub's BERT tokenizers normalise with `case_fold_utf8`, which
applies NFKC: full-width Chinese punctuation and digits (，１２) become ASCII and the
ids differ from HF's on most Chinese lines. This module reproduces HF's
`BasicTokenizer` normalisation with regex and NFD ops, then runs
`FastBertTokenizer` without its own normaliser.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from tf_minilm import text_cleaning
from tf_minilm import unigram_tokenization

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
VOCAB_FILE = "vocab.txt"
TOKENIZER_JSON = "tokenizer.json"
# HF's WordpieceTokenizer.max_input_chars_per_word (its default): a longer word
# is [UNK]. tf-text's limit is in bytes: a word of 34 to 100 multi-byte
# characters is [UNK] there but word pieces in HF.
MAX_CHARS_PER_WORD = 100
# What HF's BasicTokenizer reads as whitespace (and turns into a space).
_WHITESPACE_CHARS = r"\t\n\r\p{Zs}"
# AutoTokenizer's class for a model directory without tokenizer_config.json,
# where the class changes the ids (it rebuilds the pipeline).
_MODEL_TYPE_TOKENIZERS = {"bert": "BertTokenizer",
                          "xlm-roberta": "XLMRobertaTokenizer"}
BERT_TOKENIZER_CLASS = "BertTokenizer"
# Classes that take tokenizer.json as it is (transformers 5's
# TokenizersBackend); read as no class.
_FILE_AS_IS_CLASSES = ("PreTrainedTokenizer", "TokenizersBackend")
# `tokenize(text, max_tokens)` tokenizes at most this many characters per
# wanted token before falling back to the whole text: English runs at 4 to 6
# characters per token, Chinese at about 1.
PRECUT_CHARS_PER_TOKEN = 8


# [CLS] a [SEP] (2), or [CLS] a [SEP] b [SEP] (3).
_SPECIAL_TOKENS = {False: 2, True: 3}

TokenizerError = text_cleaning.TokenizerError


def load_vocab(path: str) -> List[str]:
  """Tokens of a BERT `vocab.txt`, one per line; checks the special tokens."""
  try:
    with open(path, encoding="utf-8") as f:
      tokens = [line.rstrip("\n").rstrip("\r") for line in f]
  except (OSError, UnicodeDecodeError) as e:
    raise TokenizerError(f"{path}: cannot read the vocabulary ({e})") from None
  while tokens and not tokens[-1]:
    tokens.pop()
  return _checked_vocab(tokens, path)


def _checked_vocab(tokens: List[str], path: str) -> List[str]:
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
  value = text_cleaning.read_json(path).get("do_lower_case", True)
  if not isinstance(value, bool):
    raise TokenizerError(f"{path}: do_lower_case must be true or false, got "
                         f"{value!r}")
  return value


def check_bert_options(model_dir: str, lower_case: bool) -> None:
  """Refuses the `tokenizer_config.json` options of a BertTokenizer that
  transformers 5 applies and this tokenizer does not: accents kept while
  lower-casing or stripped while keeping case (`strip_accents` other than
  null or `do_lower_case`), Chinese characters not split
  (`tokenize_chinese_chars: false`)."""
  path = os.path.join(model_dir, "tokenizer_config.json")
  if not os.path.isfile(path):
    return
  config = text_cleaning.read_json(path)
  strip_accents = config.get("strip_accents")
  if strip_accents not in (None, lower_case):
    raise TokenizerError(
        f"{path}: strip_accents={strip_accents} with do_lower_case="
        f"{lower_case} is not supported (accents are stripped exactly when "
        "lower-casing); remove it or set it to null")
  if config.get("tokenize_chinese_chars", True) is not True:
    raise TokenizerError(
        f"{path}: tokenize_chinese_chars={config['tokenize_chinese_chars']}"
        " is not supported (Chinese characters are split one by one); "
        "remove it or set it to true")


@dataclasses.dataclass(frozen=True)
class WordPieceSettings:
  """What a model directory says about its WordPiece tokenizer.

  Attributes:
    vocab: the tokens, index = id.
    lower_case: lower-case and strip accents (HF's `do_lower_case`, or the
      `BertNormalizer`'s `lowercase` of a tokenizer.json read as it is).
    max_chars_per_word: longer words are one [UNK].
    path: the file the vocabulary was read from (vocab.txt or
      tokenizer.json), the asset exports carry.
    tokenizer_class: "BertTokenizer", or None for a tokenizer.json that
      transformers reads as it is (no class names BERT's).
  """
  vocab: List[str]
  lower_case: bool
  max_chars_per_word: int
  path: str
  tokenizer_class: Optional[str] = BERT_TOKENIZER_CLASS

  @property
  def pad_id(self) -> int:
    return self.vocab.index("[PAD]")

  def num_special_tokens(self, pair: bool) -> int:
    return _SPECIAL_TOKENS[pair]

  @property
  def unk_id(self) -> int:
    return self.vocab.index("[UNK]")

  @property
  def special_ids(self) -> List[int]:
    return [self.vocab.index(token) for token in SPECIAL_TOKENS + ("[MASK]",)
            if token in self.vocab]

  def restricted(self, ids: Sequence[int]) -> "WordPieceSettings":
    """These settings with only the tokens `ids` (ascending, the special
    tokens among them), renumbered from 0."""
    return dataclasses.replace(self, vocab=[self.vocab[i] for i in ids])

  def tokenizer(self) -> "BertTokenizer":
    return BertTokenizer(self.vocab, self.lower_case, self.max_chars_per_word)

  def hf_files(self, model_max_length: int) -> Dict[str, str]:
    """Tokenizer files for a HF model directory (written where the source
    has none): vocab.txt for the slow BertTokenizer and every reader of it,
    and tokenizer_config.json."""
    return {VOCAB_FILE: "\n".join(self.vocab) + "\n",
            "tokenizer_config.json": json.dumps(
                {"tokenizer_class": (self.tokenizer_class or
                                     "PreTrainedTokenizerFast"),
                 "do_lower_case": self.lower_case,
                 "model_max_length": model_max_length}, indent=2)}


def has_tokenizer_files(model_dir: str) -> bool:
  return any(os.path.isfile(os.path.join(model_dir, name))
             for name in (VOCAB_FILE, TOKENIZER_JSON))


def read_tokenizer(model_dir: str):
  """The tokenizer of a HF model directory, as transformers' AutoTokenizer
  reads it: `tokenizer.json` where there is one (many current models ship
  it alone), else `vocab.txt` with `tokenizer_config.json`'s do_lower_case;
  a tokenizer class (`transformers_class`) rebuilds the pipeline from the
  file's vocabulary.

  Returns WordPieceSettings or unigram_tokenization.UnigramSettings; either
  has `vocab`, `pad_id`, `path`, `tokenizer()` (the in-graph tokenizer
  behind text_encoding.TextEncoder) and `hf_files(model_max_length)`.
  """
  json_path = os.path.join(model_dir, TOKENIZER_JSON)
  lower_case = read_do_lower_case(model_dir)
  if os.path.isfile(json_path):
    tokenizer_class = transformers_class(model_dir)
    if tokenizer_class == BERT_TOKENIZER_CLASS:
      check_bert_options(model_dir, lower_case)
    return read_tokenizer_json(json_path, tokenizer_class, lower_case)
  vocab_path = os.path.join(model_dir, VOCAB_FILE)
  if os.path.isfile(vocab_path):
    check_bert_options(model_dir, lower_case)
    return WordPieceSettings(load_vocab(vocab_path), lower_case,
                             MAX_CHARS_PER_WORD, vocab_path)
  raise TokenizerError(f"{model_dir}: no {VOCAB_FILE} or {TOKENIZER_JSON} "
                       "(the model's tokenizer)")


def transformers_class(model_dir: str) -> Optional[str]:
  """The tokenizer class transformers' AutoTokenizer builds for
  `model_dir` (without a "Fast" suffix), as it decides it:
  tokenizer_config.json's tokenizer_class, else config.json's
  tokenizer_class, else its model_type. None where none says, or where the
  class named reads tokenizer.json as it is (PreTrainedTokenizerFast)."""
  for name, key in (("tokenizer_config.json", "tokenizer_class"),
                    ("config.json", "tokenizer_class"),
                    ("config.json", "model_type")):
    path = os.path.join(model_dir, name)
    if not os.path.isfile(path):
      continue
    content = text_cleaning.read_json(path)
    if not isinstance(content, dict):
      raise TokenizerError(f"{path}: not a JSON object")
    value = content.get(key)
    if key == "model_type":
      value = _MODEL_TYPE_TOKENIZERS.get(value)
    if isinstance(value, str):
      value = value[:-len("Fast")] if value.endswith("Fast") else value
      return None if value in _FILE_AS_IS_CLASSES else value
  return None


def read_tokenizer_json(path: str, tokenizer_class: Optional[str] = None,
                        do_lower_case: bool = True):
  """A `tokenizers` tokenizer.json as transformers' `tokenizer_class` reads
  it: WordPiece or Unigram (SentencePiece); anything these tokenizers would
  not reproduce exactly is refused.

  WordPiece read as it is (no class): the file's vocabulary, BertNormalizer
  settings and max_input_chars_per_word. With BertTokenizer, transformers
  rebuilds the pipeline from the file's vocabulary with `do_lower_case`
  (tokenizer_config.json's) and its own word limit, whatever the file says.
  """
  spec = text_cleaning.read_json(path)

  def require(condition, message):
    if not condition:
      raise TokenizerError(f"{path}: {message}")
  require(isinstance(spec, dict) and isinstance(spec.get("model"), dict),
          "no \"model\" object")
  model = spec["model"]
  if model.get("type") == "Unigram":
    return unigram_tokenization.read_unigram_json(spec, path, tokenizer_class)
  require(model.get("type") == "WordPiece",
          f"the tokenizer's model is {model.get('type')!r}; only WordPiece "
          "(BERT) and Unigram (SentencePiece) vocabularies are supported, "
          "not BPE ones")
  require(tokenizer_class in (None, BERT_TOKENIZER_CLASS),
          f"tokenizer class {tokenizer_class!r} with a WordPiece vocabulary: "
          f"only {BERT_TOKENIZER_CLASS} and PreTrainedTokenizerFast (the "
          "file as it is) are reproduced")
  require(model.get("continuing_subword_prefix", "##") == "##",
          "continuing_subword_prefix must be '##'")
  vocab = model.get("vocab")
  require(isinstance(vocab, dict) and vocab, "model.vocab must map tokens "
          "to ids")
  tokens = [None] * len(vocab)
  for token, index in vocab.items():
    require(isinstance(index, int) and 0 <= index < len(vocab) and
            tokens[index] is None,
            f"model.vocab ids must be 0..{len(vocab) - 1}, each once; "
            f"{token!r} has {index!r}")
    tokens[index] = token
  require(model.get("unk_token", "[UNK]") == "[UNK]",
          "the unknown token must be [UNK]")
  # Added tokens are cut out of the text before WordPiece; the in-graph
  # tokenizer reads special tokens written in text as text, on purpose, and
  # has no such step for others.
  added = [token.get("content") for token in spec.get("added_tokens") or []
           if isinstance(token, dict) and not token.get("special")]
  require(not added, f"non-special added tokens {added[:5]} are not "
          "supported (transformers splits them out of the text first)")
  tokens = _checked_vocab(tokens, path)
  if tokenizer_class == BERT_TOKENIZER_CLASS:
    return WordPieceSettings(tokens, do_lower_case, MAX_CHARS_PER_WORD, path)
  max_chars = model.get("max_input_chars_per_word", MAX_CHARS_PER_WORD)
  require(isinstance(max_chars, int) and 1 <= max_chars <= 1000,
          "max_input_chars_per_word must be an integer in [1, 1000]")
  normalizer = spec.get("normalizer") or {}
  require(normalizer.get("type") == "BertNormalizer",
          f"normalizer {normalizer.get('type')!r}: only BertNormalizer is "
          "supported")
  lower_case = normalizer.get("lowercase", True)
  strip_accents = normalizer.get("strip_accents")
  require(isinstance(lower_case, bool), "normalizer.lowercase must be a bool")
  require(strip_accents in (None, lower_case),
          f"strip_accents={strip_accents} with lowercase={lower_case} is not "
          "supported (accents are stripped exactly when lower-casing)")
  require(normalizer.get("clean_text", True) is True and
          normalizer.get("handle_chinese_chars", True) is True,
          "clean_text and handle_chinese_chars must be true")
  pre_tokenizer = (spec.get("pre_tokenizer") or {}).get("type")
  require(pre_tokenizer == "BertPreTokenizer",
          f"pre_tokenizer {pre_tokenizer!r}: only BertPreTokenizer is "
          "supported")
  return WordPieceSettings(tokens, lower_case, max_chars, path,
                           tokenizer_class=None)


class BertTokenizer(tf.Module):
  """Strings -> WordPiece ids, in the graph, matching `transformers.BertTokenizer`.

  Args:
    vocab: the tokens, index = id ([PAD] must be 0).
    lower_case: lower-case and strip accents, as HF `do_lower_case`.
    max_chars_per_word: longer words are one [UNK].
  """

  def __init__(self, vocab: List[str], lower_case: bool = True,
               max_chars_per_word: int = MAX_CHARS_PER_WORD,
               name: Optional[str] = None):
    super().__init__(name=name)
    self.vocab_size = len(vocab)
    self.lower_case = lower_case
    self.max_chars_per_word = max_chars_per_word
    self.pad_id = vocab.index("[PAD]")
    self.cls_id = vocab.index("[CLS]")
    self.sep_id = vocab.index("[SEP]")
    self.unk_id = vocab.index("[UNK]")
    # Two WordPiece tokenizers: tf-text's byte limit (fast), and one that lets
    # every word of up to max_chars_per_word characters (4 bytes each)
    # through, for the rows where the two rules can differ.
    self._wordpiece = tf_text.FastBertTokenizer(
        vocab=vocab, token_out_type=tf.int32, unknown_token="[UNK]",
        lower_case_nfd_strip_accents=False,
        max_bytes_per_word=max_chars_per_word)
    self._wordpiece_long = tf_text.FastBertTokenizer(
        vocab=vocab, token_out_type=tf.int32, unknown_token="[UNK]",
        lower_case_nfd_strip_accents=False,
        max_bytes_per_word=4 * max_chars_per_word)
    self._is_suffix = tf.constant([t.startswith("##") for t in vocab])

  @classmethod
  def from_model_dir(cls, model_dir: str) -> "BertTokenizer":
    settings = read_tokenizer(model_dir)
    if not isinstance(settings, WordPieceSettings):
      raise TokenizerError(f"{settings.path}: not a WordPiece tokenizer")
    return settings.tokenizer()

  def normalize(self, text: tf.Tensor) -> tf.Tensor:
    """HF BasicTokenizer's cleaning, lower-casing and accent stripping.

    Whitespace controls and \\p{Zs} become spaces; other controls (\\p{C}),
    U+FFFD and, for lower-case models, combining marks after NFD are deleted.
    CJK characters need no spacing here: FastBertTokenizer splits them itself.
    """
    text = tf.strings.regex_replace(text, f"[{_WHITESPACE_CHARS}]", " ")
    # Controls go first, as in HF's clean_text: tf.strings.lower stops at a
    # NUL byte and would drop the rest of the text.
    text = tf.strings.regex_replace(text, "[\\p{C}\\x{FFFD}]", "")
    if not self.lower_case:
      return text
    # HF lower-cases character by character; ICU would write a capital
    # sigma at the end of a word as the final form.
    text = tf.strings.regex_replace(text, "\u03a3", "\u03c3")
    text = tf_text.normalize_utf8(tf.strings.lower(text, encoding="utf-8"),
                                  "NFD")
    return tf.strings.regex_replace(text, "\\p{Mn}", "")

  def tokenize(self, text: tf.Tensor, max_tokens: Optional[int] = None,
               max_chars: Optional[int] = None) -> tf.RaggedTensor:
    """`[N]` strings -> `[N, (tokens)]` int32 WordPiece ids, no special tokens.

    With `max_chars`, each text is first cut to its first `max_chars`
    characters (see `text_cleaning.cut_characters`).

    With `max_tokens`, each row holds its first `max_tokens` tokens (those of
    the whole text), but long texts are not tokenized whole: a row of more
    than PRECUT_CHARS_PER_TOKEN * max_tokens characters is cut there and then
    back to before its last whitespace character. That prefix ends where a
    word of the text ends, and everything up to WordPiece is decided per
    character or per word (whitespace is no case-ignorable character, so even
    the final-sigma rule of lower-casing looks no further; NFD reorders only
    combining marks, never across a space), so its tokens are the first tokens
    of the text. The prefix replaces the text only where it provably holds
    `max_tokens` tokens: at least that many words, after normalisation, with
    a letter, digit, punctuation or symbol (WordPiece makes each such word one
    token or more; words of only marks or separators are not counted). Other
    long rows (few words, or no whitespace) are tokenized whole.
    """
    text = (text_cleaning.clean_utf8(text) if max_chars is None else
            text_cleaning.cut_characters(text, max_chars))
    if max_tokens is None:
      return self._tokenize(text)
    limit = PRECUT_CHARS_PER_TOKEN * max(max_tokens, 1)
    if max_chars is not None and max_chars <= limit:
      return self._tokenize(text)[:, :max_tokens]  # nothing to pre-cut
    # One tokenization, no second pass and no tf.cond: inside tf.data, either
    # cost a fifth of the throughput even on batches without a long row.
    long_rows = tf.where(tf.strings.length(text, unit="UTF8_CHAR") > limit)
    head = tf.strings.substr(tf.gather_nd(text, long_rows), 0, limit,
                             unit="UTF8_CHAR")
    prefix = tf.strings.regex_replace(
        head, f"[{_WHITESPACE_CHARS}][^{_WHITESPACE_CHARS}]*$", "")
    # normalize() leaves spaces as the only whitespace.
    words = tf.strings.split(tf.strings.regex_replace(
        self.normalize(prefix), "[\\p{Zl}\\p{Zp}\\p{M}]", "")).row_lengths()
    cut = ((tf.strings.length(prefix) < tf.strings.length(head)) &
           (words >= max_tokens))
    text = tf.tensor_scatter_nd_update(text, tf.boolean_mask(long_rows, cut),
                                       tf.boolean_mask(prefix, cut))
    return self._tokenize(text)[:, :max_tokens]

  def _tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
    """Every token of each (cleaned) text.

    As HF, a word (after splitting on spaces, punctuation and CJK characters)
    of more than max_chars_per_word characters becomes one [UNK]. The two
    limits can only differ on a word over max_chars_per_word bytes, i.e. of
    at least a quarter as many characters without a space or punctuation:
    only rows holding such a run (rare) take the exact path, which needs
    offsets and costs about twice as much.
    """
    normalized = self.normalize(text)
    long_run = -(-(self.max_chars_per_word + 1) // 4)
    may_differ = tf.strings.regex_full_match(
        normalized, f"(?s).*[^\\s\\p{{P}}]{{{long_run},}}.*")
    return _replace_rows(
        self._wordpiece.tokenize(normalized), may_differ,
        lambda rows: self._tokenize_by_characters(tf.gather(normalized, rows)))

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
                         self.max_chars_per_word, word)
    ids = tf.where(too_long, tf.constant(self.unk_id, ids.dtype), ids)
    keep = tf.logical_or(tf.logical_not(too_long), word_start)
    return tf.ragged.boolean_mask(pieces.with_flat_values(ids),
                                  pieces.with_flat_values(keep))

  def _column(self, batch, token_id) -> tf.RaggedTensor:
    return tf.RaggedTensor.from_tensor(tf.fill([batch, 1], token_id))

  def num_special_tokens(self, pair: bool) -> int:
    return _SPECIAL_TOKENS[pair]

  def add_special_tokens(self, a: tf.RaggedTensor,
                         b: Optional[tf.RaggedTensor] = None):
    """`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` and the segment ids (0 up to
    the first [SEP], 1 after it): two `[N, (len)]` int32; the segment ids of
    a single text (all 0) are None."""
    batch = a.nrows()
    parts = [self._column(batch, self.cls_id), a,
             self._column(batch, self.sep_id)]
    if b is None:
      return tf.concat(parts, axis=1), None
    ids = tf.concat(parts + [b, self._column(batch, self.sep_id)], axis=1)
    first = tf.cast(a.row_lengths(), tf.int32) + 2
    segment_ids = tf.cast(
        tf.ragged.range(tf.cast(ids.row_lengths(), tf.int32)) >=
        first[:, None], tf.int32)
    return ids, segment_ids


def _replace_rows(values: tf.RaggedTensor, replace: tf.Tensor,
                  compute) -> tf.RaggedTensor:
  """`values` with the rows where `replace` is true taken from
  `compute(indices of those rows)` instead (no work when there are none)."""

  def merge():
    replaced_rows = tf.where(replace)[:, 0]
    kept_rows = tf.where(tf.logical_not(replace))[:, 0]
    merged = tf.concat([tf.gather(values, kept_rows),
                        compute(replaced_rows)], axis=0)
    return tf.gather(merged, tf.argsort(tf.concat([kept_rows, replaced_rows],
                                                  0)))
  return tf.cond(tf.reduce_any(replace), merge, lambda: values)

