"""A trimmed student vocabulary: the teacher's tokens a corpus uses.

A 250,002-piece SentencePiece vocabulary at hidden 384 is 96 M embedding
parameters against about 11 M in a 6-layer encoder. `--student_vocab_size=N`
keeps the teacher's special tokens and the most frequent of the tokens the
distillation corpus yields (as the pipeline truncates it), N in all, in the
teacher's id order (so [PAD] 0 or XLM-R's <s> 0, <pad> 1 keep their ids).

During distillation the teacher reads the pipeline's ids and the student the
same positions remapped (`id_map`): a token outside the kept set becomes the
student's unknown token. The student's own tokenizer is the teacher's with
the other tokens removed, written as ordinary HF tokenizer files: on a word
whose teacher pieces are all kept it yields exactly the remapped ids (greedy
longest match and Viterbi both pick from a subset that still holds the
teacher's choice); elsewhere it segments with what is left.

  <output_dir>/student_vocab/   tokenizer files (vocab.txt and/or
                                tokenizer.json, tokenizer_config.json) and
                                teacher_ids.json
"""

import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_minilm import data
from tf_minilm import io_utils
from tf_minilm import text_cleaning
from tf_minilm import tokenization

TEACHER_IDS_FILE = "teacher_ids.json"
# Lines per tokenization batch while counting.
COUNT_BATCH_LINES = 1024


class StudentVocabError(ValueError):
  pass


def count_tokens(shards: List[str], tokenizer, vocab_size: int,
                 pipeline: data.PipelineConfig) -> np.ndarray:
  """`[vocab_size]` int64: how often each id occurs in the pipeline's
  sequences of `shards` (special tokens included), one pass over every
  line."""
  pipeline = data.PipelineConfig(
      max_seq_length=pipeline.max_seq_length, char_cut=pipeline.char_cut,
      repeat=False, shuffle_buffer=0, deterministic=True)
  encoder = data.text_encoder(tokenizer, pipeline)
  lines = data.line_dataset(shards, pipeline).batch(COUNT_BATCH_LINES)
  counts = lines.map(
      lambda batch: tf.math.bincount(
          tf.cast(encoder.token_ids(batch).flat_values, tf.int32),
          minlength=vocab_size, maxlength=vocab_size, dtype=tf.int64),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return counts.reduce(tf.zeros([vocab_size], tf.int64),
                       lambda total, batch: total + batch).numpy()


def choose(counts: np.ndarray, size: int, special_ids: Sequence[int]
           ) -> List[int]:
  """The teacher ids to keep, ascending: `special_ids` and then the most
  frequent used ids (ties: the lower id) up to `size`; fewer when the corpus
  uses fewer."""
  specials = sorted(set(special_ids))
  if size <= len(specials):
    raise StudentVocabError(
        f"a student vocabulary of {size} tokens leaves no room beside the "
        f"{len(specials)} special tokens")
  order = np.lexsort((np.arange(len(counts)), -counts))
  chosen = set(specials)
  for index in order:
    if len(chosen) >= size or counts[index] == 0:
      break
    chosen.add(int(index))
  return sorted(chosen)


def id_map(teacher_ids: Sequence[int], teacher_vocab_size: int,
           unk_id: int) -> np.ndarray:
  """`[teacher_vocab_size]` int32: the student id of each teacher id, the
  student's `unk_id` for a token it does not keep."""
  mapping = np.full([teacher_vocab_size], unk_id, np.int32)
  mapping[np.asarray(teacher_ids, np.int64)] = np.arange(len(teacher_ids))
  return mapping


def _remap_json_ids(spec: dict, new_id: Dict[int, int], path: str) -> dict:
  """`spec`, a parsed tokenizer.json, changed in place: the vocabulary
  restricted to `new_id`'s keys and every id it holds renumbered."""
  model = spec["model"]
  if isinstance(model["vocab"], list):  # Unigram: [piece, score] by id
    model["vocab"] = [entry for index, entry in enumerate(model["vocab"])
                      if index in new_id]
    model["unk_id"] = new_id[model["unk_id"]]
  else:  # WordPiece: token -> id
    model["vocab"] = {token: new_id[index] for token, index in
                      sorted(model["vocab"].items(), key=lambda kv: kv[1])
                      if index in new_id}
  spec["added_tokens"] = [dict(token, id=new_id[token["id"]])
                          for token in spec.get("added_tokens") or []
                          if token["id"] in new_id]
  if isinstance(spec.get("padding"), dict) and "pad_id" in spec["padding"]:
    spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_id"]]

  def processor(post):
    kind = post.get("type")
    if kind == "Sequence":
      for inner in post.get("processors") or []:
        processor(inner)
    elif kind in ("RobertaProcessing", "BertProcessing"):
      for name in ("cls", "sep"):
        post[name] = [post[name][0], new_id[post[name][1]]]
    elif kind == "TemplateProcessing":
      for token in (post.get("special_tokens") or {}).values():
        token["ids"] = [new_id[i] for i in token["ids"]]
    elif kind is not None:
      raise StudentVocabError(f"{path}: post_processor {kind!r}: cannot "
                              "renumber its ids for a trimmed vocabulary")
  processor(spec.get("post_processor") or {})
  return spec


def trimmed_files(settings, teacher_ids: Sequence[int],
                  model_max_length: int) -> Dict[str, str]:
  """The student's tokenizer files (name -> text) for `settings` (the
  teacher's tokenizer) restricted to `teacher_ids`, plus TEACHER_IDS_FILE."""
  files = settings.restricted(teacher_ids).hf_files(model_max_length)
  if os.path.basename(settings.path) == tokenization.TOKENIZER_JSON:
    new_id = {old: new for new, old in enumerate(teacher_ids)}
    files[tokenization.TOKENIZER_JSON] = json.dumps(
        _remap_json_ids(text_cleaning.read_json(settings.path), new_id,
                        settings.path), ensure_ascii=False, indent=2)
  files[TEACHER_IDS_FILE] = json.dumps(list(map(int, teacher_ids)))
  return files


def write(directory: str, files: Dict[str, str]) -> None:
  with io_utils.atomic_directory(directory) as staging:
    for name, text in files.items():
      with open(os.path.join(staging, name), "w", encoding="utf-8") as f:
        f.write(text)


def read(directory: str, teacher) -> Tuple[object, List[int]]:
  """(the student's tokenizer settings, its teacher ids) of a directory
  `write` wrote for the teacher whose tokenizer settings are `teacher`: one
  ascending id per student token, each a teacher token's, the teacher's
  special tokens among them."""
  path = os.path.join(directory, TEACHER_IDS_FILE)
  teacher_ids = text_cleaning.read_json(path)
  settings = tokenization.read_tokenizer(directory)
  if (not isinstance(teacher_ids, list) or
      len(teacher_ids) != len(settings.vocab) or
      any(isinstance(i, bool) or not isinstance(i, int)
          for i in teacher_ids) or
      teacher_ids != sorted(set(teacher_ids))):
    raise StudentVocabError(
        f"{path}: expected {len(settings.vocab)} ascending teacher ids, one "
        f"per token of {settings.path}")
  outside = [i for i in teacher_ids if not 0 <= i < len(teacher.vocab)]
  if outside:
    raise StudentVocabError(
        f"{path}: ids {outside[:5]} are not ids of the teacher's "
        f"{len(teacher.vocab)} tokens")
  missing = sorted(set(teacher.special_ids) - set(teacher_ids))
  if missing:
    raise StudentVocabError(
        f"{path}: lacks the teacher's special tokens "
        f"{[teacher.vocab[i] for i in missing]} (ids {missing})")
  return settings, teacher_ids


def map_back_rate(student_ids: tf.RaggedTensor, teacher_ids: tf.RaggedTensor,
                  mapping: np.ndarray) -> float:
  """The share of texts whose student tokenization equals their teacher
  tokenization remapped (`id_map`): `[N, (len)]` ids each."""
  remapped = tf.ragged.map_flat_values(tf.gather, tf.constant(mapping),
                                       teacher_ids)
  same_length = tf.equal(student_ids.row_lengths(), remapped.row_lengths())
  student = student_ids.to_tensor(-1)
  width = tf.shape(student)[1]
  other = remapped.to_tensor(-1, shape=tf.stack(
      [remapped.nrows(), tf.cast(width, tf.int64)]))
  equal = tf.logical_and(same_length,
                         tf.reduce_all(tf.equal(student, other), axis=1))
  return float(tf.reduce_mean(tf.cast(equal, tf.float64)).numpy())
