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
directory only when complete. The output may not be, contain or lie inside an
input (a rerun would read its own shards, `--overwrite` would delete the input),
and `--overwrite` replaces only an earlier output of this tool.
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
import resource
import sys
import time
import unicodedata
import zlib
from typing import Dict, Iterator, List, Optional, Sequence, TextIO

from tf_minilm import errors
from tf_minilm import io_utils

MANIFEST = "manifest.json"
# Lines are read in pieces of this size and joined, up to MAX_LINE_CHARS.
READ_CHUNK_CHARS = 1 << 20
# Longer physical lines are skipped (counted and warned about): one line is
# held in memory whole, and no real corpus has 64 Mi characters between
# newlines.
MAX_LINE_CHARS = 1 << 26
# A "sentence" without any sentence end longer than this is cut into pieces
# (counted and warned about): training reads only the first max_seq_length
# characters of a line anyway.
MAX_SENTENCE_CHARS = 10_000
# Files kept open besides the buckets (inputs, Python, TensorFlow).
SPARE_FILE_DESCRIPTORS = 64
# Share of lines with invalid UTF-8 above which the manifest carries a warning.
INVALID_UTF8_WARNING_SHARE = 0.01


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


class CorpusError(errors.InputError):
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
  """Files named by paths, directories (recursively) and globs, whose matches
  count as if named one by one; all readable regular files, each once.
  Hidden files and directories (staging of this tool) are skipped inside
  directories."""
  files, seen = [], set()
  for pattern in patterns:
    if any(c in pattern for c in "*?[") and not os.path.exists(pattern):
      matches = sorted(glob.glob(pattern, recursive=True))
      if not matches:
        raise CorpusError(f"input {pattern!r} matches no files")
    else:
      matches = [pattern]
    found = []
    for match in matches:
      if os.path.isdir(match):
        for root, dirs, names in os.walk(match):
          dirs[:] = sorted(d for d in dirs if not d.startswith("."))
          found += sorted(os.path.join(root, name) for name in names
                          if not name.startswith("."))
      elif os.path.lexists(match):
        found.append(match)
      else:
        raise CorpusError(f"input {match!r} does not exist")
    if not found:
      raise CorpusError(f"input {pattern!r} matches no files")
    for path in found:
      try:
        io_utils.check_regular_file(path)
      except ValueError:
        raise CorpusError(f"input {path!r} is not a regular file (a device, "
                          "FIFO or socket cannot be prepared)") from None
      except OSError as e:
        raise CorpusError(f"input {path!r} cannot be read: {e.strerror}"
                          ) from None
      if not os.access(path, os.R_OK):
        raise CorpusError(f"input {path!r} is not readable")
      if os.path.realpath(path) not in seen:
        seen.add(os.path.realpath(path))
        files.append(path)
  return files


def printable_path(path: str) -> str:
  """`path` as valid UTF-8 text: bytes of a file name that are not UTF-8
  (Python keeps them as surrogates) are written as \\x escapes."""
  return path.encode("utf-8", "surrogateescape").decode("utf-8",
                                                          "backslashreplace")


def _inside(path: str, directory: str) -> bool:
  return os.path.commonpath([path, directory]) == directory


def check_output_dir(config: "CorpusConfig", files: Sequence[str]) -> None:
  """Refuses an output directory that is, contains or lies inside an input,
  and an `--overwrite` of anything that is not an earlier output of ours."""
  output = os.path.realpath(config.output_dir)
  for given in list(config.inputs) + list(files):
    if any(c in given for c in "*?[") and given not in files:
      continue  # a glob's matches are checked one by one
    source = os.path.realpath(given)
    if source == output:
      relation = "is"
    elif _inside(source, output):
      relation = "contains"
    elif os.path.isdir(source) and _inside(output, source):
      relation = "is inside"
    else:
      continue
    raise CorpusError(
        f"--output_dir={config.output_dir} {relation} the input {given!r}; "
        "choose an output directory outside every input (a rerun would read "
        "the shards back, and --overwrite would delete the input)")
  if os.path.lexists(config.output_dir):
    if not os.path.isdir(config.output_dir) or os.path.islink(
        config.output_dir):
      raise CorpusError(f"--output_dir={config.output_dir} exists and is not a "
                        "directory; refusing to replace it")
    if not config.overwrite:
      raise CorpusError(f"--output_dir={config.output_dir} already exists; "
                        "pass --overwrite to replace it")
    ours = os.path.isfile(os.path.join(config.output_dir, MANIFEST))
    if not ours and os.listdir(config.output_dir):
      raise CorpusError(
          f"--output_dir={config.output_dir} is not empty and holds no "
          f"{MANIFEST}, so it is not an output of prepare_corpus; --overwrite "
          "replaces only those")


def check_text_file(path: str) -> None:
  """Refuses a binary file (of which only a few lines would be text)."""
  try:
    with _open_binary(path) as f:
      sample = f.read(io_utils.SNIFF_BYTES)
  except (OSError, EOFError, zlib.error) as e:
    raise CorpusError(f"cannot read {path}: {e}") from None
  reason = io_utils.binary_reason(sample)
  if reason:
    raise CorpusError(f"input {path!r} is not UTF-8 text: {reason}. Pass text "
                      "or JSON-lines files (gzip-compressed ones are "
                      "recognised and read)")


def split_sentences(text: str) -> List[str]:
  """Sentences of a paragraph: Chinese (。！？；…) and Latin (. ! ? + space)."""
  sentences, start = [], 0
  for match in _SENTENCE_END.finditer(text):
    sentences.append(text[start:match.end()])
    start = match.end()
  sentences.append(text[start:])
  return [s.strip() for s in sentences if s.strip()]


def _open_binary(path: str):
  """`path`'s bytes, decompressed if it is gzip (recognised by its magic
  bytes, whatever its name)."""
  return gzip.open(path, "rb") if io_utils.is_gzip(path) else open(path, "rb")


def _open_text(path: str) -> TextIO:
  # Invalid UTF-8 becomes U+FFFD, counted and removed with control characters.
  return io.TextIOWrapper(_open_binary(path), encoding="utf-8",
                          errors="replace", newline="")


def _physical_lines(path: str, stats: collections.Counter) -> Iterator[str]:
  """Whole lines of `path`; lines over MAX_LINE_CHARS are skipped and counted."""
  with _open_text(path) as f:
    while True:
      piece = f.readline(READ_CHUNK_CHARS)
      if not piece:
        return
      pieces, size = [piece], len(piece)
      while not pieces[-1].endswith("\n"):
        piece = f.readline(READ_CHUNK_CHARS)
        if not piece:
          break
        size += len(piece)
        if size > MAX_LINE_CHARS:
          pieces = []  # drop what was read; keep reading to the line's end
        pieces.append(piece)
      stats["input_lines"] += 1
      if size > MAX_LINE_CHARS:
        stats["overlong_lines_skipped"] += 1
        continue
      yield "".join(pieces)


def _texts(path: str, config: CorpusConfig, stats: collections.Counter) -> Iterator[str]:
  """Text of each line (or of the JSON field), cleaned."""
  for line in _physical_lines(path, stats):
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
      if len(sentence) > MAX_SENTENCE_CHARS:
        stats["sentences_cut_into_pieces"] += 1
      for start in range(0, len(sentence), MAX_SENTENCE_CHARS):
        yield sentence[start:start + MAX_SENTENCE_CHARS]


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


def _check_open_file_limit(num_buckets: int) -> None:
  """Raises the soft limit of open files if the buckets need it, or refuses."""
  needed = num_buckets + SPARE_FILE_DESCRIPTORS
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  if soft != resource.RLIM_INFINITY and soft < needed:
    if hard == resource.RLIM_INFINITY or hard >= needed:
      resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    else:
      raise CorpusError(
          f"{num_buckets} bucket files must be open at once but `ulimit -n` "
          f"allows {soft} (hard limit {hard}); raise the limit to at least "
          f"{needed}, or pass fewer --num_shards")


def warnings_of(stats: Dict[str, int]) -> List[str]:
  """What a user must hear about the input beyond the counts."""
  warnings = []
  if stats.get("overlong_lines_skipped"):
    warnings.append(f"{stats['overlong_lines_skipped']} line(s) longer than "
                    f"{MAX_LINE_CHARS} characters were skipped")
  if stats.get("sentences_cut_into_pieces"):
    warnings.append(f"{stats['sentences_cut_into_pieces']} sentence(s) longer "
                    f"than {MAX_SENTENCE_CHARS} characters without a sentence "
                    "end were cut into pieces of that length")
  invalid = stats.get("lines_with_invalid_utf8", 0)
  if invalid > INVALID_UTF8_WARNING_SHARE * max(1, stats.get("input_lines", 0)):
    warnings.append(f"{invalid} of {stats.get('input_lines', 0)} lines hold "
                    "invalid UTF-8 (replaced and removed): is the input in "
                    "another encoding?")
  return warnings


def prepare(config: CorpusConfig) -> Dict:
  """Writes the shards and manifest; returns the manifest."""
  files = resolve_inputs(config.inputs)
  check_output_dir(config, files)
  for path in files:
    check_text_file(path)
  total_bytes = sum(os.path.getsize(p) for p in files)
  num_buckets = config.num_shards * max(
      1, -(-total_bytes // (config.bucket_bytes * config.num_shards)))
  _check_open_file_limit(num_buckets)
  target = os.path.dirname(os.path.abspath(config.output_dir))
  try:
    return _prepare(config, files, total_bytes, num_buckets)
  except OSError as e:
    raise CorpusError(io_utils.describe_os_error(e, target) +
                      f" while writing {config.output_dir}; nothing was "
                      "written") from None


def _prepare(config: CorpusConfig, files: List[str], total_bytes: int,
             num_buckets: int) -> Dict:
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
        except (EOFError, zlib.error) as e:
          raise CorpusError(f"cannot read {path}: {e}") from None
        except OSError as e:
          if io_utils.is_disk_full(e):
            raise  # a write failed, not the read
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
    counts = dict(sorted(stats.items()))
    manifest = {
        "sentences": written, "shards": shards,
        "sources": [printable_path(path) for path in files],
        "seed": config.seed, "counts": counts, "warnings": warnings_of(counts),
        "settings": {k: v for k, v in dataclasses.asdict(config).items()
                     if k not in ("inputs", "output_dir", "progress")},
    }
    if len(shards) < config.num_shards:
      manifest["warnings"].append(
          f"only {len(shards)} of --num_shards={config.num_shards} shards "
          f"received sentences ({written} sentences); they are numbered "
          f"-of-{len(shards):05d}")
    with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=2, ensure_ascii=False)
  return manifest


def _shard_name(index: int, total: int) -> str:
  return f"part-{index:05d}-of-{total:05d}.txt"


def _shuffle_into_shards(bucket_dir: str, staging: str, num_buckets: int,
                         config: CorpusConfig, rng: random.Random) -> List[Dict]:
  """Bucket k -> shard k mod num_shards; shards that received no sentence
  (fewer sentences than shards) are not written and the rest are numbered
  contiguously, so `-of-N` always names the real number of files."""
  drafts = [os.path.join(bucket_dir, f"shard-{i:05d}")
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
    with open(drafts[shard], "a", encoding="utf-8") as f:
      f.writelines(lines)
    counts[shard] += len(lines)
  filled = [i for i in range(config.num_shards) if counts[i]]
  shards = []
  for index, shard in enumerate(filled):
    name = _shard_name(index, len(filled))
    os.rename(drafts[shard], os.path.join(staging, name))
    shards.append({"file": name, "sentences": counts[shard],
                   "bytes": os.path.getsize(os.path.join(staging, name))})
  return shards
