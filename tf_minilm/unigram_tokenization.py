"""In-graph SentencePiece (Unigram) tokenization with the ids of transformers'
fast tokenizer, for the XLM-R family of vocabularies.

A `tokenizer.json` with a Unigram model describes three steps, reproduced here:
1. Normalizer `Precompiled`: SentencePiece's character map (NFKC-like rules in
   a double-array trie). The `tokenizers` library applies it per grapheme
   cluster, not as SentencePiece does (longest match anywhere): a cluster of
   fewer than 6 bytes is replaced whole by the value of the *shortest* rule
   that is a prefix of it (so "A" + U+0302 + U+0300 becomes "Â", and a
   full-width letter with an accent loses the accent); any other cluster is
   mapped character by character (so decomposed Tamil or Bengali vowel signs
   stay decomposed, where SentencePiece composes them). `_HfCharsMap` does
   exactly this, in graph, from rules read out of the trie. Then
   `Replace(" {2,}", " ")` when the file has it.
2. Pre-tokenizer `Metaspace`: spaces become U+2581, one is prepended unless
   the text starts with one, and words split before each.
3. Unigram segmentation of each word: tf-text's SentencePiece op, on a model
   proto built from the same pieces and scores with an identity normalizer
   (the text is already normalized, so it must not be normalized twice).
Special tokens and the pair layout come from the post-processor
(`<s> A </s></s> B </s>` for XLM-R). Like the WordPiece tokenizer, special
tokens written inside a text are read as text (transformers would map
"<mask>" in a text to its id).
"""

import base64
import dataclasses
import functools
import json
import struct
import unicodedata
from typing import Dict, List, Optional, Sequence, Set, Tuple

import tensorflow as tf
import tensorflow_text as tf_text

from tf_minilm import text_cleaning

METASPACE = "\u2581"
XLMR_TOKENIZER_CLASS = "XLMRobertaTokenizer"
# Unicode's White_Space: what the tokenizers library's WhitespaceSplit splits
# on (Rust's char::is_whitespace).
_WHITE_SPACE = ("\\t\\n\\x0b\\x0c\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}"
                "\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}")
# The tokenizers library maps a grapheme cluster whole only below this many
# UTF-8 bytes.
WHOLE_CLUSTER_BYTES = 6


@dataclasses.dataclass(frozen=True)
class UnigramSettings:
  """What a Unigram tokenizer.json says.

  Attributes:
    pieces: (piece, score) pairs, index = id.
    unk_id, pad_id: ids of the unknown and padding pieces.
    charsmap: the `Precompiled` normalizer's rules (SentencePiece's
      precompiled_charsmap), b"" for none.
    whitespace: "keep" (every space is a U+2581), "collapse" (the
      normalizer's Replace(" {2,}", " ") first) or "split" (a WhitespaceSplit
      pre-tokenizer: runs of whitespace are one word boundary and none is
      kept at either end).
    single, pair: the post-processor's templates: tuples of
      ("special", ids) / ("text", "A" or "B"), each with its segment id.
    tokenizer_class: the transformers class these ids are those of (None:
      PreTrainedTokenizerFast, the file as it is).
    path: the tokenizer.json, the asset exports carry.
  """
  pieces: Tuple[Tuple[str, float], ...]
  unk_id: int
  pad_id: int
  charsmap: bytes
  whitespace: str
  single: Tuple
  pair: Tuple
  tokenizer_class: Optional[str]
  path: str

  @property
  def vocab(self) -> List[str]:
    return [piece for piece, _ in self.pieces]

  @property
  def control_ids(self) -> Set[int]:
    """Padding and the templates' tokens: never segmented out of text."""
    return {i for item in self.single + self.pair if item[0] == "special"
            for i in item[1]} | {self.pad_id}

  def num_special_tokens(self, pair: bool) -> int:
    return sum(len(item[1]) for item in (self.pair if pair else self.single)
               if item[0] == "special")

  @property
  def special_ids(self) -> List[int]:
    """The control ids, unknown and <mask>."""
    return sorted(self.control_ids | {self.unk_id} | {
        i for i, (piece, _) in enumerate(self.pieces) if piece == "<mask>"})

  def restricted(self, ids: Sequence[int]) -> "UnigramSettings":
    """These settings with only the pieces `ids` (ascending, the special
    tokens among them), renumbered from 0; scores unchanged."""
    new_id = {old: new for new, old in enumerate(ids)}

    def template(items):
      return tuple((kind, tuple(new_id[i] for i in content), segment)
                   if kind == "special" else (kind, content, segment)
                   for kind, content, segment in items)
    return dataclasses.replace(
        self, pieces=tuple(self.pieces[i] for i in ids),
        unk_id=new_id[self.unk_id], pad_id=new_id[self.pad_id],
        single=template(self.single), pair=template(self.pair))

  def tokenizer(self) -> "UnigramTokenizer":
    return UnigramTokenizer(self)

  def hf_files(self, model_max_length: int) -> Dict[str, str]:
    """tokenizer_config.json for a HF model directory whose tokenizer.json
    is this: the fast tokenizer reads everything else from tokenizer.json."""
    named = {"pad_token": self.pad_id, "unk_token": self.unk_id}
    mask = [i for i, (piece, _) in enumerate(self.pieces) if piece == "<mask>"]
    if mask:
      named["mask_token"] = mask[0]
    return {"tokenizer_config.json": json.dumps(
        {"tokenizer_class": self.tokenizer_class or "PreTrainedTokenizerFast",
         "model_max_length": model_max_length,
         **{name: self.pieces[i][0] for name, i in named.items()}}, indent=2)}


def read_unigram_json(spec: dict, path: str,
                      tokenizer_class: Optional[str] = None
                      ) -> UnigramSettings:
  """The settings of a parsed Unigram tokenizer.json, as transformers'
  `tokenizer_class` (None: PreTrainedTokenizerFast) reads it; whatever this
  tokenizer would not reproduce exactly is refused, naming `path`."""

  def require(condition, message):
    if not condition:
      raise text_cleaning.TokenizerError(f"{path}: {message}")
  model = spec["model"]
  vocab = model.get("vocab")
  require(isinstance(vocab, list) and vocab and all(
      isinstance(entry, list) and len(entry) == 2 and
      isinstance(entry[0], str) and isinstance(entry[1], (int, float))
      for entry in vocab), "model.vocab must be a list of [piece, score]")
  pieces = tuple((piece, float(score)) for piece, score in vocab)
  require(len({piece for piece, _ in pieces}) == len(pieces),
          "model.vocab has a piece twice")
  unk_id = model.get("unk_id")
  require(isinstance(unk_id, int) and 0 <= unk_id < len(pieces),
          f"model.unk_id must be an id, got {unk_id!r}")
  require(not model.get("byte_fallback", False),
          "byte_fallback Unigram models are not supported")
  ids = {piece: index for index, (piece, _) in enumerate(pieces)}
  require("<pad>" in ids, "the vocabulary has no <pad> piece")

  normalizer = spec.get("normalizer") or {}
  steps = (normalizer.get("normalizers", []) if normalizer.get("type") ==
           "Sequence" else [normalizer])
  collapse = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
  require(steps and steps[0].get("type") == "Precompiled" and
          all(step == collapse for step in steps[1:2]) and len(steps) <= 2,
          "the normalizer must be Precompiled, optionally followed by "
          "Replace(' {2,}', ' ') (as XLM-R's)")
  try:
    charsmap = base64.b64decode(steps[0].get("precompiled_charsmap") or "",
                                validate=True)
  except ValueError as e:
    raise text_cleaning.TokenizerError(
        f"{path}: precompiled_charsmap is not base64 ({e})") from None

  pre = spec.get("pre_tokenizer") or {}
  split = (pre.get("type") == "Sequence" and [
      p.get("type") for p in pre.get("pretokenizers", [])] == [
          "WhitespaceSplit", "Metaspace"])
  metaspace = pre["pretokenizers"][1] if split else pre
  require(metaspace.get("type") == "Metaspace" and
          metaspace.get("replacement", METASPACE) == METASPACE and
          metaspace.get("split", True) is True and
          (metaspace.get("prepend_scheme") == "always" or
           (metaspace.get("prepend_scheme") is None and
            metaspace.get("add_prefix_space", True) is True)),
          "the pre-tokenizer must be Metaspace('\u2581') prepending to "
          "every text, optionally after WhitespaceSplit (XLM-R's)")
  require(tokenizer_class in (None, "PreTrainedTokenizerFast",
                              XLMR_TOKENIZER_CLASS),
          f"tokenizer_class {tokenizer_class!r}: transformers builds that "
          "class's pipeline itself; only PreTrainedTokenizerFast (the file "
          f"as it is) and {XLMR_TOKENIZER_CLASS} are reproduced")
  # transformers' XLMRobertaTokenizer keeps the file's vocabulary and
  # charsmap but splits on whitespace whatever the file says.
  whitespace = ("split" if split or tokenizer_class == XLMR_TOKENIZER_CLASS
                else "collapse" if len(steps) == 2 else "keep")

  single, pair = _templates(spec.get("post_processor") or {}, ids, require)
  return UnigramSettings(pieces, unk_id, ids["<pad>"], charsmap,
                         whitespace, single, pair, tokenizer_class, path)


def _templates(post: dict, ids: Dict[str, int], require):
  """(single, pair) templates of a TemplateProcessing or RobertaProcessing
  post-processor."""
  if post.get("type") == "RobertaProcessing":
    cls, sep = post.get("cls"), post.get("sep")
    require(all(isinstance(t, list) and len(t) == 2 and ids.get(t[0]) == t[1]
                for t in (cls, sep)), "post_processor cls/sep must be "
            "[piece, id] of the vocabulary")
    cls, sep = ("special", (cls[1],), 0), ("special", (sep[1],), 0)
    return ((cls, ("text", "A", 0), sep),
            (cls, ("text", "A", 0), sep, sep, ("text", "B", 0), sep))
  require(post.get("type") == "TemplateProcessing",
          f"post_processor {post.get('type')!r}: TemplateProcessing or "
          "RobertaProcessing expected")
  specials = post.get("special_tokens") or {}

  def template(name, sequences):
    items = []
    for item in post.get(name) or []:
      (kind, body), = item.items()
      segment = body.get("type_id", 0)
      require(segment in (0, 1), f"post_processor {name}: type_id {segment}")
      if kind == "Sequence":
        require(body.get("id") in sequences,
                f"post_processor {name}: sequence {body.get('id')!r}")
        items.append(("text", body["id"], segment))
      else:
        token = specials.get(body.get("id")) or {}
        token_ids = token.get("ids") or []
        require(token_ids and all(isinstance(i, int) and 0 <= i < len(ids)
                                  for i in token_ids),
                f"post_processor special token {body.get('id')!r} has no ids")
        items.append(("special", tuple(token_ids), segment))
    require([i[1] for i in items if i[0] == "text"] == list(sequences),
            f"post_processor {name} must hold {' and '.join(sequences)} once, "
            "in order")
    return tuple(items)
  return template("single", ("A",)), template("pair", ("A", "B"))


@functools.lru_cache(maxsize=4)
def read_charsmap(charsmap: bytes) -> Dict[str, str]:
  """The rules of a SentencePiece precompiled_charsmap that the tokenizers
  library can apply: key -> value, for keys of fewer than
  WHOLE_CLUSTER_BYTES bytes (a longer key is never a prefix of a cluster
  it maps whole). The blob is a uint32 trie size, a darts-clone double array
  of uint32 units, then the NUL-terminated values."""
  if not charsmap:
    return {}
  (trie_bytes,) = struct.unpack_from("<I", charsmap)
  units = struct.unpack_from(f"<{trie_bytes // 4}I", charsmap, 4)
  values = charsmap[4 + trie_bytes:]

  def offset(unit):
    return (unit >> 10) << ((unit & (1 << 9)) >> 6)

  rules = {}
  stack = [(0, b"")]
  while stack:
    position, key = stack.pop()
    unit = units[position]
    child_base = position ^ offset(unit)
    if (unit >> 8) & 1:  # has a leaf: the value's offset
      start = units[child_base] & 0x7FFFFFFF
      rules[key] = values[start:values.index(b"\0", start)]
    if len(key) + 1 >= WHOLE_CLUSTER_BYTES:
      continue
    for byte in range(1, 256):
      child = child_base ^ byte
      if child < len(units) and units[child] & 0x800000FF == byte:
        stack.append((child, key + bytes([byte])))
  return {key.decode("utf-8"): value.decode("utf-8")
          for key, value in rules.items() if key}


def _char_class(code_points) -> str:
  """An RE2 character class of `code_points`, as ranges."""
  ranges, points = [], sorted(code_points)
  for point in points:
    if ranges and point == ranges[-1][1] + 1:
      ranges[-1][1] = point
    else:
      ranges.append([point, point])
  return "[" + "".join(f"\\x{{{a:x}}}" if a == b else
                       f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges) + "]"


@functools.lru_cache(maxsize=1)
def _cluster_extenders() -> Tuple[int, ...]:
  """Code points that continue a grapheme cluster (marks, joiners, emoji
  modifiers and tags, half-width sound marks): Python's unicodedata has no
  Grapheme_Extend property, so the categories that make it up."""
  points = [cp for cp in range(0x110000)
            if unicodedata.category(chr(cp)) in ("Mn", "Me", "Mc")]
  return tuple(points + [0x200C, 0x200D, 0xFF9E, 0xFF9F,
                         *range(0x1F3FB, 0x1F400), *range(0xE0020, 0xE0080)])


@functools.lru_cache(maxsize=1)
def _cluster_breakers() -> Tuple[int, ...]:
  """Code points that are a grapheme cluster of their own (Control, CR, LF:
  nothing extends them)."""
  return tuple(cp for cp in range(0x110000)
               if unicodedata.category(chr(cp)) in ("Cc", "Zl", "Zp") or
               (unicodedata.category(chr(cp)) == "Cf" and
                cp not in (0x200C, 0x200D) and not 0xE0020 <= cp < 0xE0080))


class _HfCharsMap(tf.Module):
  """The `Precompiled` normalizer as the tokenizers library applies it (see
  the module docstring), on `[N]` strings."""

  def __init__(self, rules: Dict[str, str]):
    super().__init__()
    single = {ord(k): v for k, v in rules.items() if len(k) == 1}
    multi = {k: v for k, v in rules.items() if len(k) > 1}
    self.max_cluster_chars = max([len(k) for k in multi] + [1])
    outputs = sorted(set(single.values()) | set(multi.values()))
    self._outputs = tf.constant(outputs or [""], tf.string)
    index = {value: i for i, value in enumerate(outputs)}
    self._single = _table(list(single), [index[v] for v in single.values()],
                          tf.int32)
    self._multi = _table(list(multi), [index[v] for v in multi.values()],
                         tf.string)
    extenders, breakers = _cluster_extenders(), _cluster_breakers()
    kind = {**{cp: 1 for cp in extenders}, **{cp: 2 for cp in breakers}}
    self._kind = _table(list(kind), list(kind.values()), tf.int32)
    self._needs_work = (
        "(?s).*" + _char_class(set(single) | set(extenders)) + ".*")

  def __call__(self, text: tf.Tensor) -> tf.Tensor:
    return _replace_if(text, tf.strings.regex_full_match(
        text, self._needs_work), self._normalize)

  def _normalize(self, text: tf.Tensor) -> tf.Tensor:
    chars = tf.strings.unicode_decode(text, "UTF-8")
    points = chars.flat_values
    kind = self._kind.lookup(points)
    first_in_row = tf.concat(
        [[True], chars.value_rowids()[1:] != chars.value_rowids()[:-1]], 0)
    after_breaker = tf.concat([[False], kind[:-1] == 2], 0)
    starts = first_in_row | (kind != 1) | after_breaker
    cluster = tf.cumsum(tf.cast(starts, tf.int32)) - 1
    num_clusters = tf.reduce_sum(tf.cast(starts, tf.int32))
    utf8_bytes = 1 + tf.cast(points >= 0x80, tf.int32) + tf.cast(
        points >= 0x800, tf.int32) + tf.cast(points >= 0x10000, tf.int32)
    cluster_bytes = tf.math.unsorted_segment_sum(utf8_bytes, cluster,
                                                 num_clusters)
    cluster_chars = tf.math.unsorted_segment_sum(tf.ones_like(cluster),
                                                 cluster, num_clusters)
    cluster_start = tf.cast(tf.where(starts)[:, 0], tf.int32)
    as_text = tf.strings.unicode_encode(points[:, None], "UTF-8")
    single = self._single.lookup(points)

    # A short cluster of several characters: the shortest rule that is a
    # prefix of it maps it whole (its first character's own rule included).
    whole = -tf.ones_like(cluster_bytes)
    whole = tf.where(cluster_chars > 1, tf.gather(single, cluster_start),
                     whole)
    prefix = tf.gather(as_text, cluster_start)
    for length in range(2, self.max_cluster_chars + 1):
      within = cluster_chars >= length
      prefix = tf.strings.join([prefix, tf.gather(
          as_text, tf.where(within, cluster_start + length - 1, 0))])
      found = self._multi.lookup(tf.where(within, prefix, ""))
      whole = tf.where((whole < 0) & within, found, whole)
    whole = tf.where(cluster_bytes < WHOLE_CLUSTER_BYTES, whole, -1)

    # Every character's output; a cluster mapped whole puts its value on its
    # first character and nothing on the others.
    whole_here = tf.gather(whole, cluster)
    own = tf.where(single >= 0, tf.gather(self._outputs,
                                          tf.maximum(single, 0)), as_text)
    out = tf.where(whole_here >= 0,
                   tf.where(starts, tf.gather(self._outputs,
                                              tf.maximum(whole_here, 0)), ""),
                   own)
    return tf.strings.reduce_join(chars.with_flat_values(out), axis=1)


def _table(keys, values, key_dtype):
  """A static lookup table with default -1 (keys may be empty)."""
  keys = tf.constant(keys or ([0] if key_dtype == tf.int32 else [""]),
                     key_dtype)
  values = tf.constant(values or [-1], tf.int32)
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


def _replace_if(text: tf.Tensor, condition: tf.Tensor, compute) -> tf.Tensor:
  """`text` with the rows where `condition` holds replaced by `compute`."""
  rows = tf.where(condition)
  return tf.cond(
      tf.reduce_any(condition),
      lambda: tf.tensor_scatter_nd_update(
          text, rows, compute(tf.gather_nd(text, rows))),
      lambda: text)


def _model_proto(settings: UnigramSettings) -> bytes:
  """A SentencePiece Unigram ModelProto of the settings' pieces, scores and
  ids, with an identity normalizer (the text arrives normalized)."""
  from sentencepiece import sentencepiece_model_pb2 as spm  # pylint: disable=g-import-not-at-top
  proto = spm.ModelProto()
  kinds = spm.ModelProto.SentencePiece
  control = settings.control_ids
  for index, (piece, score) in enumerate(settings.pieces):
    entry = proto.pieces.add()
    entry.piece, entry.score = piece, score
    entry.type = (kinds.UNKNOWN if index == settings.unk_id else
                  kinds.CONTROL if index in control else kinds.NORMAL)
  proto.trainer_spec.model_type = spm.TrainerSpec.UNIGRAM
  proto.trainer_spec.vocab_size = len(settings.pieces)
  proto.trainer_spec.unk_id = settings.unk_id
  proto.trainer_spec.unk_piece = settings.pieces[settings.unk_id][0]
  # Unused ids: no BOS/EOS/PAD added by SentencePiece itself.
  proto.trainer_spec.bos_id = proto.trainer_spec.eos_id = -1
  proto.trainer_spec.pad_id = -1
  proto.normalizer_spec.name = "inert"
  proto.normalizer_spec.precompiled_charsmap = _inert_charsmap()
  proto.normalizer_spec.add_dummy_prefix = False
  proto.normalizer_spec.remove_extra_whitespaces = False
  proto.normalizer_spec.escape_whitespaces = True
  return proto.SerializeToString()


def _inert_charsmap() -> bytes:
  """A charsmap of one rule, U+0001 -> U+0001: the identity. (An empty one
  means the same, but makes SentencePiece log a line at every load.) A
  darts-clone trie: the root's children at 2 ^ byte; the child for 0x01 has
  a leaf at 3 ^ 4 whose value is offset 0 of the values."""
  units = [0] * 256
  units[0] = 2 << 10
  units[3] = (4 << 10) | (1 << 8) | 0x01
  units[7] = 1 << 31
  return (struct.pack("<I", 4 * len(units)) +
          struct.pack(f"<{len(units)}I", *units) + b"\x01\x00")


class UnigramTokenizer(tf.Module):
  """Strings -> Unigram ids, in the graph, matching transformers' fast
  tokenizer of the same tokenizer.json (the TextEncoder interface)."""

  def __init__(self, settings: UnigramSettings, name: Optional[str] = None):
    super().__init__(name=name)
    self.vocab_size = len(settings.pieces)
    self.pad_id = settings.pad_id
    self.unk_id = settings.unk_id
    self._single, self._pair = settings.single, settings.pair
    self._special_tokens = {pair: settings.num_special_tokens(pair)
                            for pair in (False, True)}
    self._whitespace = settings.whitespace
    self._charsmap = _HfCharsMap(read_charsmap(settings.charsmap))
    self._sentencepiece = tf_text.SentencepieceTokenizer(
        model=_model_proto(settings), out_type=tf.int32)

  def normalize(self, text: tf.Tensor) -> tf.Tensor:
    """Normalizer, whitespace handling and Metaspace's prefix: spaces stay
    spaces (SentencePiece escapes them)."""
    text = self._charsmap(text_cleaning.clean_utf8(text))
    if self._whitespace == "split":
      text = tf.strings.regex_replace(
          tf.strings.regex_replace(text, f"[{_WHITE_SPACE}]+", " "),
          "^ | $", "")
    elif self._whitespace == "collapse":
      text = tf.strings.regex_replace(text, " {2,}", " ")
    return tf.strings.regex_replace(text, "^([^ ])", " \\1")

  def tokenize(self, text: tf.Tensor, max_tokens: Optional[int] = None,
               max_chars: Optional[int] = None) -> tf.RaggedTensor:
    """`[N]` strings -> `[N, (pieces)]` int32 ids, no special tokens; the
    first `max_tokens` of them when given (whole texts are tokenized:
    normalization can turn other characters into spaces, so no cut before
    it is provably safe). With `max_chars`, each text is first cut to its
    first `max_chars` characters (`text_cleaning.cut_characters`)."""
    if max_chars is not None:
      text = text_cleaning.cut_characters(text, max_chars)
    pieces = self._sentencepiece.tokenize(self.normalize(text))
    return pieces if max_tokens is None else pieces[:, :max_tokens]

  def num_special_tokens(self, pair: bool) -> int:
    return self._special_tokens[pair]

  def add_special_tokens(self, a: tf.RaggedTensor,
                         b: Optional[tf.RaggedTensor] = None):
    """The post-processor's template around `a` (and `b`): ids and segment
    ids, two `[N, (len)]` int32; the segment ids are None where the template
    makes them all 0."""
    batch = a.nrows()
    texts = {"A": a, "B": b}
    template = self._single if b is None else self._pair
    parts = [tf.cast(texts[content] if kind == "text" else
                     tf.RaggedTensor.from_tensor(tf.tile(
                         tf.constant([content], tf.int32), [batch, 1])),
                     tf.int32)
             for kind, content, _ in template]
    if not any(segment for _, _, segment in template):
      return tf.concat(parts, axis=1), None
    segments = [tf.ragged.map_flat_values(
        lambda v, s=segment: tf.fill(tf.shape(v), s), part)
                for part, (_, _, segment) in zip(parts, template)]
    return tf.concat(parts, axis=1), tf.concat(segments, axis=1)
