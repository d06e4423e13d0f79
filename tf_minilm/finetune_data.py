"""Labelled examples for fine-tuning: the CLUE classification tasks in their
published JSON-lines layouts, and the user's own CSV/TSV/JSON-lines files.

CLUE task directories hold `train.json`, `dev.json` and `test.json` (OCNLI's
training file is `train.50k.json`), one JSON object per line. Label lists are
PaddleNLP's (whose CLUE table the PP-MiniLM recipe reports), except TNEWS,
whose 15 codes are CLUE's own `labels.json` (PaddleNLP adds the unused 105):

  afqmc        sentence1, sentence2                   "0" "1"
  tnews        sentence (label_desc, keywords unused)  15 codes 100-116
  iflytek      sentence (label_des unused)             "0" .. "118"
  cmnli        sentence1, sentence2                   contradiction entailment neutral
  ocnli        sentence1, sentence2                   entailment contradiction neutral
  cluewsc2020  text, target.{span1,span2}_{text,index} "true" "false"
  csl          keyword (list), abst                   "0" "1"

Rows whose NLI label is "-" (no annotator agreement) are skipped, as the
reference does. CLUEWSC2020 marks the noun span with `_..._` and the pronoun
with `[...]` inside the text (PaddleNLP's run_clue convention); CSL pairs the
keywords, joined by spaces, with the abstract.
"""

import codecs
import csv
import dataclasses
import io
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

CLUE_LABELS: Dict[str, Tuple[str, ...]] = {
    "afqmc": ("0", "1"),
    "tnews": ("100", "101", "102", "103", "104", "106", "107", "108", "109",
              "110", "112", "113", "114", "115", "116"),
    "iflytek": tuple(str(i) for i in range(119)),
    "cmnli": ("contradiction", "entailment", "neutral"),
    "ocnli": ("entailment", "contradiction", "neutral"),
    "cluewsc2020": ("true", "false"),
    "csl": ("0", "1"),
}
CLUE_PAIR_TASKS = ("afqmc", "cmnli", "ocnli", "csl")
SPLITS = ("train", "dev", "test")
TABLE_FORMATS = ("csv", "tsv", "jsonl")
# csv's default field limit is 131,072 characters; a JSON-lines file has none.
csv.field_size_limit(2 ** 31 - 1)


class DataFormatError(ValueError):
  """A file, line or field that cannot be read; the message names them."""


@dataclasses.dataclass(frozen=True)
class Example:
  """One input: `text`, an optional `text_pair`, the label's index (None for
  unlabelled test data) and the id a submission file reports."""
  text: str
  text_pair: Optional[str]
  label: Optional[int]
  id: object


@dataclasses.dataclass(frozen=True)
class Dataset:
  examples: List[Example]
  labels: Tuple[str, ...]
  pairs: bool


def clue_file(task_dir: str, task: str, split: str) -> str:
  name = "train.50k.json" if (task, split) == ("ocnli", "train") and \
      os.path.isfile(os.path.join(task_dir, "train.50k.json")) else \
      f"{split}.json"
  return os.path.join(task_dir, name)


def _field(record: dict, name: str, where: str):
  if name not in record:
    raise DataFormatError(f"{where}: missing field {name!r} (fields: "
                          f"{sorted(record)})")
  return record[name]


def _text(record: dict, name: str, where: str) -> str:
  value = _field(record, name, where)
  if not isinstance(value, str):
    raise DataFormatError(f"{where}: field {name!r} must be a string, got "
                          f"{type(value).__name__}")
  return value


def label_string(value, where: str, field: str) -> str:
  """A label as a class name: strings stripped, JSON integers (and floats
  with an integral value, so 1 and 1.0 are one class) as digits. Missing,
  empty, boolean and other values are refused."""
  if isinstance(value, bool) or value is None or not isinstance(
      value, (str, int, float)):
    raise DataFormatError(f"{where}: field {field!r} has no usable label "
                          f"({json.dumps(value)}); expected a string or a "
                          "number")
  if isinstance(value, float):
    if not value.is_integer():
      return repr(value)
    value = int(value)
  label = str(value).strip()
  if not label:
    raise DataFormatError(f"{where}: field {field!r} is empty; every "
                          "training and dev example needs a label")
  return label


def _label_index(value, labels: Sequence[str], where: str, field: str) -> int:
  label = label_string(value, where, field)
  if label not in labels:
    shown = list(labels) if len(labels) <= 20 else list(labels[:20]) + ["..."]
    raise DataFormatError(f"{where}: field {field!r} has the unknown label "
                          f"{label!r}; expected one of {shown}")
  return labels.index(label)


def _check_class_names(path: str, labels: Sequence[str]) -> None:
  """Labels that spell one number two ways ("1" and "1.0") would be two
  classes; at least two classes are needed to learn anything."""
  if len(labels) < 2:
    raise DataFormatError(f"{path}: every example has the label "
                          f"{labels[0]!r}; a classifier needs at least two "
                          "classes")
  numbers = {}
  for label in labels:
    try:
      number = float(label)
    except ValueError:
      continue
    if number in numbers:
      raise DataFormatError(f"{path}: the labels {numbers[number]!r} and "
                            f"{label!r} name the same number; write one of "
                            "them")
    numbers[number] = label


def _mark_wsc_spans(record: dict, where: str) -> str:
  text = _text(record, "text", where)
  target = _field(record, "target", where)
  if not isinstance(target, dict):
    raise DataFormatError(f"{where}: field 'target' must be an object")
  spans = []
  for which, (left, right) in (("span1", ("_", "_")), ("span2", ("[", "]"))):
    span = _text(target, f"{which}_text", f"{where}: target")
    start = _field(target, f"{which}_index", f"{where}: target")
    if not isinstance(start, int) or text[start:start + len(span)] != span:
      raise DataFormatError(f"{where}: target.{which}_index {start!r} does not "
                            f"point at {which}_text {span!r} in the text")
    spans.append((start, start + len(span), left, right))
  for start, end, left, right in sorted(spans, reverse=True):
    text = text[:start] + left + text[start:end] + right + text[end:]
  return text


def _clue_example(task: str, record: dict, where: str, line_number: int,
                  labels: Sequence[str], labelled: bool) -> Optional[Example]:
  if task == "cluewsc2020":
    text, pair = _mark_wsc_spans(record, where), None
  elif task == "csl":
    keywords = _field(record, "keyword", where)
    if not (isinstance(keywords, list) and
            all(isinstance(k, str) for k in keywords)):
      raise DataFormatError(f"{where}: field 'keyword' must be a list of "
                            "strings")
    text, pair = " ".join(keywords), _text(record, "abst", where)
  elif task in CLUE_PAIR_TASKS:
    text, pair = (_text(record, "sentence1", where),
                  _text(record, "sentence2", where))
  else:
    text, pair = _text(record, "sentence", where), None
  label = None
  if labelled:
    value = _field(record, "label", where)
    if task in ("cmnli", "ocnli") and value == "-":
      return None
    label = _label_index(value, labels, where, "label")
  return Example(text, pair, label, record.get("id", line_number))


def read_clue(task_dir: str, task: str, split: str) -> Dataset:
  """The examples of one split of a CLUE task directory (test: unlabelled)."""
  if task not in CLUE_LABELS:
    raise DataFormatError(f"unknown CLUE task {task!r}; expected one of "
                          f"{sorted(CLUE_LABELS)}")
  path = clue_file(task_dir, task, split)
  labels = CLUE_LABELS[task]
  examples = []
  for number, record in _json_lines(path):
    example = _clue_example(task, record, f"{path}:{number}", number - 1,
                            labels, labelled=split != "test")
    if example is not None:
      examples.append(example)
  if not examples:
    raise DataFormatError(f"{path}: no examples")
  return Dataset(examples, labels, task in CLUE_PAIR_TASKS)


def read_text(path: str) -> str:
  """A whole UTF-8 (or, by its byte-order mark, UTF-16) text file; what is
  neither is refused with the line of the first bad byte."""
  if not os.path.isfile(path):
    raise DataFormatError(f"{path}: no such file")
  with open(path, "rb") as f:
    raw = f.read()
  encoding = "utf-8-sig"
  if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
    encoding = "utf-16"
  try:
    return raw.decode(encoding)
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise DataFormatError(
        f"{path}:{line}: not {encoding.upper().replace('-SIG', '')} text "
        f"(byte {raw[e.start:e.start + 1]!r} at offset {e.start}); save the "
        "file as UTF-8") from None


def _json_lines(path: str):
  """(line number, object) of a JSON-lines file; blank lines skipped."""
  for number, line in enumerate(read_text(path).split("\n"), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError as e:
      raise DataFormatError(f"{path}:{number}: not a JSON object ({e})"
                            ) from None
    if not isinstance(record, dict):
      raise DataFormatError(f"{path}:{number}: not a JSON object")
    yield number, record


def table_format(path: str) -> str:
  name = path.lower().removesuffix(".gz")
  for extension, kind in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"),
                          (".json", "jsonl")):
    if name.endswith(extension):
      return kind
  raise DataFormatError(f"{path}: cannot tell the format from the name; "
                        f"expected one of {TABLE_FORMATS} (.csv, .tsv, "
                        ".jsonl or .json)")


def _table_rows(path: str):
  """(line number, {column: value}) of a CSV/TSV (with a header) or JSON
  lines file."""
  kind = table_format(path)
  if kind == "jsonl":
    yield from _json_lines(path)
    return
  reader = csv.DictReader(io.StringIO(read_text(path), newline=""),
                          delimiter="," if kind == "csv" else "\t")
  try:
    header = reader.fieldnames
    if not header:
      raise DataFormatError(f"{path}: empty file (expected a header row)")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
      raise DataFormatError(f"{path}:1: the header names the columns "
                            f"{repeated} more than once")
    for row in reader:
      if None in row:
        raise DataFormatError(f"{path}:{reader.line_num}: more fields than "
                              f"the header's {len(header)}")
      if None in row.values():
        raise DataFormatError(f"{path}:{reader.line_num}: fewer fields than "
                              f"the header's {len(header)}")
      yield reader.line_num, row
  except csv.Error as e:
    raise DataFormatError(f"{path}:{reader.line_num}: {e}") from None


def read_table(path: str, text_column: str, label_column: Optional[str],
               text_pair_column: Optional[str] = None,
               labels: Optional[Sequence[str]] = None,
               id_column: Optional[str] = None) -> Dataset:
  """Examples of a user's CSV/TSV/JSON-lines file.

  `labels`: the label list (index = class id); None takes the sorted distinct
  labels of this file (do so for the training file, and pass its list for
  dev and test files). Without `label_column` the examples are unlabelled.
  """
  rows = list(_table_rows(path))
  if not rows:
    raise DataFormatError(f"{path}: no examples")
  if label_column and labels is None:
    labels = tuple(sorted({label_string(_field(r, label_column, f"{path}:{n}"),
                                        f"{path}:{n}", label_column)
                           for n, r in rows}))
    _check_class_names(path, labels)
  examples = []
  for number, row in rows:
    where = f"{path}:{number}"
    text = _text(row, text_column, where)
    pair = _text(row, text_pair_column, where) if text_pair_column else None
    label = (_label_index(_field(row, label_column, where), labels, where,
                          label_column) if label_column else None)
    examples.append(Example(text, pair, label,
                            _field(row, id_column, where) if id_column else
                            len(examples)))
  return Dataset(examples, tuple(labels or ()), text_pair_column is not None)
