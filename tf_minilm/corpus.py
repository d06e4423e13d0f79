"""Raw corpora -> N shuffled text shards, one sentence per line (`bin/prepare_corpus`).

Streaming in two passes so memory does not grow with the input:
  1. read every input (plain text or JSON lines, optionally gzip), clean each
     line, split it into sentences, and scatter each sentence to one of K
     temporary buckets chosen at random (seeded);
  2. shuffle each bucket in memory and append it to its final shard
     (bucket k -> shard k mod N).
K is chosen so that one bucket stays under `bucket_bytes`; peak memory is about
one bucket (plus the duplicate filter, ~60 bytes per unique sentence, if on).
Everything is written into a temporary directory that replaces the output
directory only when complete.
"""

import collections
import dataclasses
import functools
import glob
import gzip
import hashlib
import io
import json
import os
import random
import re
import sys
import time
import unicodedata
import zlib
from typing import Dict, Iterator, List, Optional, Sequence, TextIO

from tf_minilm import io_utils

MANIFEST = "manifest.json"
# Longest physical line read at once; longer lines are read in pieces.
READ_CHUNK_CHARS = 1 << 20
# A "sentence" without any sentence end longer than this is cut into pieces.
MAX_SENTENCE_CHARS = 10_000



@functools.lru_cache(maxsize=None)
def _control_characters() -> "re.Pattern":
  """Control, format, surrogate and private-use characters, and U+FFFD: what
  HF's BasicTokenizer deletes (tab, newline and CR become spaces first)."""
  ranges, start = [], None
  for code in range(0x110001):
    inside = code < 0x110000 and (
        unicodedata.category(chr(code)) in ("Cc", "Cf", "Cs", "Co") or
        code == 0xFFFD)
    if inside and start is None:
      start = code
    elif not inside and start is not None:
      ranges.append(f"\\U{start:08x}-\\U{code - 1:08x}")
      start = None
  return re.compile("[" + "".join(ranges) + "]")


# Chinese ends (。！？；…) split anywhere; Latin ends (. ! ?) only before space.
# Closing quotes and brackets stay with the sentence they close.
_SENTENCE_END = re.compile(
    r"(?:[。！？；…]+|[.!?]+(?=[\s\"'”’)\]]|$))[\"'”’」』）)\]]*")


class CorpusError(ValueError):
  """Input that cannot be prepared: names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  inputs: Sequence[str]
  output_dir: str
  num_shards: int = 64
  seed: int = 0
  json_field: Optional[str] = None
  split_sentences: bool = True
  deduplicate: bool = False
  min_length: int = 1
  max_length: int = 0
  overwrite: bool = False
  bucket_bytes: int = 256 << 20
  progress: bool = True

  def __post_init__(self):
    if self.num_shards < 1:
      raise CorpusError(f"num_shards must be >= 1, got {self.num_shards}")
    if self.min_length < 1:
      raise CorpusError(f"min_length must be >= 1, got {self.min_length}")
    if self.max_length and self.max_length < self.min_length:
      raise CorpusError(f"max_length {self.max_length} is below min_length "
                        f"{self.min_length}")


def resolve_inputs(patterns: Sequence[str]) -> List[str]:
  """Files named by paths, directories (recursively) and globs; all readable."""
  files = []
  for pattern in patterns:
    if os.path.isdir(pattern):
      found = sorted(os.path.join(root, name)
                     for root, _, names in os.walk(pattern) for name in names
                     if not name.startswith("."))
    elif any(c in pattern for c in "*?["):
      found = sorted(p for p in glob.glob(pattern, recursive=True)
                     if os.path.isfile(p))
    elif os.path.exists(pattern):
      found = [pattern]
    else:
      raise CorpusError(f"input {pattern!r} does not exist")
    if not found:
      raise CorpusError(f"input {pattern!r} matches no files")
    for path in found:
      if not os.access(path, os.R_OK):
        raise CorpusError(f"input {path!r} is not readable")
    files.extend(found)
  return files


def split_sentences(text: str) -> List[str]:
  """Sentences of a paragraph: Chinese (。！？；…) and Latin (. ! ? + space)."""
  sentences, start = [], 0
  for match in _SENTENCE_END.finditer(text):
    sentences.append(text[start:match.end()])
    start = match.end()
  sentences.append(text[start:])
  return [s.strip() for s in sentences if s.strip()]


def _open_text(path: str) -> TextIO:
  raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
  # Invalid UTF-8 becomes U+FFFD, counted and removed with control characters.
  return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def _physical_lines(path: str) -> Iterator[str]:
  """Lines of `path`, over-long ones in READ_CHUNK_CHARS pieces."""
  with _open_text(path) as f:
    while True:
      piece = f.readline(READ_CHUNK_CHARS)
      if not piece:
        return
      yield piece


def _texts(path: str, config: CorpusConfig, stats: collections.Counter) -> Iterator[str]:
  """Text of each line (or of the JSON field), cleaned."""
  for line in _physical_lines(path):
    stats["input_lines"] += 1
    if config.json_field:
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        line = record[config.json_field]
      except (ValueError, KeyError, TypeError):
        stats["bad_json_lines"] += 1
        continue
      if not isinstance(line, str):
        stats["bad_json_lines"] += 1
        continue
    if "\ufffd" in line:
      stats["lines_with_invalid_utf8"] += 1
    if "\x00" in line:
      stats["lines_with_nul"] += 1
    cleaned = _control_characters().sub("", line.replace("\t", " ").replace("\r", " ")
                           .replace("\n", " "))
    if cleaned.strip():
      yield cleaned


def _sentences(path: str, config: CorpusConfig, stats: collections.Counter) -> Iterator[str]:
  for text in _texts(path, config, stats):
    pieces = split_sentences(text) if config.split_sentences else [text.strip()]
    for sentence in pieces:
      while len(sentence) > MAX_SENTENCE_CHARS:
        stats["overlong_pieces"] += 1
        yield sentence[:MAX_SENTENCE_CHARS]
        sentence = sentence[MAX_SENTENCE_CHARS:]
      if sentence:
        yield sentence


class _Progress:
  def __init__(self, total_bytes: int, enabled: bool):
    self.total = max(1, total_bytes)
    self.enabled = enabled
    self.last = 0.0
    self.start = time.time()

  def update(self, done_bytes: int, sentences: int, force=False) -> None:
    now = time.time()
    if not self.enabled or (now - self.last < 2 and not force):
      return
    self.last = now
    rate = done_bytes / max(1e-9, now - self.start) / 1e6
    print(f"\rprepare_corpus: {100 * done_bytes / self.total:5.1f}% of "
          f"{self.total / 1e6:.0f} MB, {sentences} sentences, {rate:.1f} MB/s",
          end="\n" if force else "", file=sys.stderr, flush=True)


def prepare(config: CorpusConfig) -> Dict:
  """Writes the shards and manifest; returns the manifest."""
  files = resolve_inputs(config.inputs)
  total_bytes = sum(os.path.getsize(p) for p in files)
  num_buckets = config.num_shards * max(
      1, -(-total_bytes // (config.bucket_bytes * config.num_shards)))
  rng = random.Random(config.seed)
  stats = collections.Counter()
  seen = set() if config.deduplicate else None
  progress = _Progress(total_bytes, config.progress)
  with io_utils.atomic_directory(config.output_dir, config.overwrite) as staging:
    bucket_dir = os.path.join(staging, ".buckets")
    os.makedirs(bucket_dir)
    buckets = [open(os.path.join(bucket_dir, f"{k:06d}"), "w", encoding="utf-8")
               for k in range(num_buckets)]
    written, done_bytes = 0, 0
    try:
      for path in files:
        try:
          for sentence in _sentences(path, config, stats):
            if len(sentence) < config.min_length or (
                config.max_length and len(sentence) > config.max_length):
              stats["dropped_by_length"] += 1
              continue
            if seen is not None:
              digest = hashlib.blake2b(sentence.encode("utf-8"),
                                       digest_size=8).digest()
              if digest in seen:
                stats["duplicates"] += 1
                continue
              seen.add(digest)
            buckets[rng.randrange(num_buckets)].write(sentence + "\n")
            written += 1
            if written % 65536 == 0:
              progress.update(done_bytes, written)
        except (OSError, EOFError, zlib.error) as e:
          raise CorpusError(f"cannot read {path}: {e}") from None
        done_bytes += os.path.getsize(path)
        progress.update(done_bytes, written)
    finally:
      for bucket in buckets:
        bucket.close()
    progress.update(done_bytes, written, force=True)
    if not written:
      raise CorpusError(f"no sentences found in {len(files)} input file(s) "
                        f"({dict(stats)})")
    shards = _shuffle_into_shards(bucket_dir, staging, num_buckets, config, rng)
    os.rmdir(bucket_dir)
    manifest = {
        "sentences": written, "shards": shards, "sources": files,
        "seed": config.seed, "counts": dict(sorted(stats.items())),
        "settings": {k: v for k, v in dataclasses.asdict(config).items()
                     if k not in ("inputs", "output_dir", "progress")},
    }
    with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=2, ensure_ascii=False)
  return manifest


def _shuffle_into_shards(bucket_dir: str, staging: str, num_buckets: int,
                         config: CorpusConfig, rng: random.Random) -> List[Dict]:
  names = [f"part-{i:05d}-of-{config.num_shards:05d}.txt"
           for i in range(config.num_shards)]
  counts = [0] * config.num_shards
  for k in range(num_buckets):
    path = os.path.join(bucket_dir, f"{k:06d}")
    with open(path, encoding="utf-8") as f:
      lines = f.readlines()
    os.remove(path)
    if not lines:
      continue
    rng.shuffle(lines)
    shard = k % config.num_shards
    with open(os.path.join(staging, names[shard]), "a", encoding="utf-8") as f:
      f.writelines(lines)
    counts[shard] += len(lines)
  # With fewer sentences than shards some shards stay empty: not written.
  return [{"file": name, "sentences": count,
           "bytes": os.path.getsize(os.path.join(staging, name))}
          for name, count in zip(names, counts) if count]
