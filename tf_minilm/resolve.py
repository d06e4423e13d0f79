"""Config -> what a distillation run needs, read once from the files it names.

`config.validate` checks each flag on its own and their combinations;
`resolve` opens the teacher's config and vocabulary, derives the student's
architecture, lists the shards and compares with a run already in the output
directory. Every problem is a ConfigError naming the flag, raised before
anything is written. No TensorFlow op runs here: the runtime must not start
before the distribution strategy is created.
"""

import dataclasses
import os
from typing import List, Optional

from tf_minilm import config as config_lib
from tf_minilm import convert
from tf_minilm import data
from tf_minilm import layout as layout_lib
from tf_minilm import losses
from tf_minilm import modeling
from tf_minilm import resume
from tf_minilm import selection
from tf_minilm import sentence_embedding
from tf_minilm import tokenization

ConfigError = config_lib.ConfigError


@dataclasses.dataclass(frozen=True)
class Resolved:
  """teacher/student: architectures (the teacher's as in its checkpoint);
  tokenizer_settings: the teacher's tokenizer (tokenization.read_tokenizer);
  shards and eval_shards: input files; student_teacher_ids: with a trimmed
  student vocabulary, the teacher id of each student id (student_vocab.py;
  set by the distiller, which counts the corpus); teacher_head: with
  --embedding_weight, how the teacher turns its last hidden states into a
  sentence embedding."""
  teacher: modeling.EncoderConfig
  student: modeling.EncoderConfig
  tokenizer_settings: object
  shards: List[str]
  eval_shards: Optional[List[str]]
  student_teacher_ids: Optional[List[int]] = None
  teacher_head: Optional[sentence_embedding.SentenceHead] = None

  def tokenizer(self):
    return self.tokenizer_settings.tokenizer()


def run_layout(config: config_lib.DistillConfig) -> layout_lib.RunLayout:
  return layout_lib.RunLayout(config.output_dir, config_lib.CONFIG_FILENAME)


def student_encoder_config(config: config_lib.DistillConfig,
                           teacher: modeling.EncoderConfig,
                           vocab_size: Optional[int] = None
                           ) -> modeling.EncoderConfig:
  """The student's architecture: of `--student_init`, else the preset of
  `--model_type`/`--num_layers` with the `--student_*` overrides, the
  teacher's padding id and `vocab_size` (the tokens of the teacher's
  tokenizer or the trimmed vocabulary; default: the teacher's rows). A student
  selected from its teacher also takes the teacher's LayerNorm epsilon,
  token types and usable positions (at most 512)."""
  if config.student_init:
    return convert.read_hf_config(config.student_init)[0]
  overrides = {name: getattr(config, f"student_{name}")
               for name in ("hidden_size", "num_heads", "intermediate_size")
               if getattr(config, f"student_{name}")}
  if config.selects_student:
    overrides.update(
        layer_norm_eps=teacher.layer_norm_eps,
        type_vocab_size=teacher.type_vocab_size,
        max_position_embeddings=min(
            modeling.STUDENT_MAX_POSITIONS,
            teacher.usable_positions))
  return modeling.student_config(
      config.model_type, config.num_layers,
      teacher.vocab_size if vocab_size is None else vocab_size,
      hidden_dropout=config.dropout, attention_dropout=config.dropout,
      pad_token_id=teacher.pad_token_id, **overrides)


def teacher_sentence_head(config: config_lib.DistillConfig,
                          teacher: modeling.EncoderConfig
                          ) -> sentence_embedding.SentenceHead:
  """The teacher's sentence-embedding head for the embedding term: from its
  sentence-transformers files, else --embedding_pooling."""
  path = config.teacher_model_name_or_path
  converted = convert.converted_source(path)
  if converted and converted.get("sentence_head") == "dropped":
    raise ConfigError(
        "teacher_model_name_or_path", path,
        f"converted by bin/convert_teacher with "
        f"{converted['converted_layers']} of the {converted['num_layers']} "
        f"layers of {converted['hf_dir']}, whose sentence-transformers head "
        "pools the last layer's states; convert every layer for the "
        "embedding term")
  try:
    head = sentence_embedding.read_head(path, teacher.hidden_size)
  except sentence_embedding.HeadError as e:
    raise ConfigError("teacher_model_name_or_path", path, str(e)) from None
  pooling = config.embedding_pooling
  if head is None:
    _check(pooling != "auto", "embedding_pooling", pooling,
           f"the teacher {path} has no sentence-transformers files "
           f"({sentence_embedding.MODULES_FILE}, 1_Pooling/config.json) to "
           "say how it pools; give the pooling it was trained with, one of "
           f"{list(sentence_embedding.POOLING_MODES)}")
    return sentence_embedding.SentenceHead(pooling)
  _check(pooling in ("auto", head.pooling), "embedding_pooling", pooling,
         f"the teacher's sentence-transformers files ({path}) pool by "
         f"{head.pooling}; leave --embedding_pooling=auto")
  return head


def _shape_error(c: config_lib.DistillConfig, error: ValueError
                 ) -> ConfigError:
  """The flag behind a student shape that cannot be built: --student_init's
  file, the --student_* overrides with what they meet, or the preset."""
  if c.student_init:
    return ConfigError("student_init", c.student_init, str(error))
  if "num_heads" not in str(error) or not (c.student_hidden_size or
                                           c.student_num_heads):
    return ConfigError("num_layers", c.num_layers, str(error))
  try:
    preset = modeling.student_config(c.model_type, c.num_layers, 1)
  except ValueError:
    preset = None

  def given(name):
    value = getattr(c, f"student_{name}")
    return f"{value}" if value else f"{getattr(preset, name, '?')} (the " \
        "preset's)"

  if c.student_hidden_size:
    return ConfigError("student_hidden_size", c.student_hidden_size,
                       f"with --student_num_heads={given('num_heads')}: "
                       f"{error}")
  return ConfigError("student_num_heads", c.student_num_heads,
                     f"with --student_hidden_size={given('hidden_size')}: "
                     f"{error}")


def _check(condition: bool, flag: str, value, message: str) -> None:
  if not condition:
    raise ConfigError(flag, value, message)


def check_resume(config: config_lib.DistillConfig) -> None:
  """Refuses to continue a run in `config.output_dir` with flags (other than
  RESUMABLE_FIELDS) that differ from those it was started with."""
  layout = run_layout(config)
  text = layout.read_config()
  if text is not None:
    resume.check_resumable(config, text, layout.config_path,
                           config_lib.RESUMABLE_FIELDS)


def resolve(config: config_lib.DistillConfig) -> Resolved:
  """Reads what `config` names; raises ConfigError for what cannot run."""
  c = config
  try:
    losses.relation_weights(c.alpha, c.beta)
  except ValueError as e:
    raise ConfigError("alpha", c.alpha, f"with --beta={c.beta}: {e}") from None
  path = c.teacher_model_name_or_path
  _check(os.path.isdir(path), "teacher_model_name_or_path", path,
         "is not a directory (expected a local HF model directory or a "
         "converted teacher)")
  try:
    teacher = convert.read_encoder_config(path)
    settings = tokenization.read_tokenizer(path)
  except (ValueError, OSError) as e:
    raise ConfigError("teacher_model_name_or_path", path, str(e)) from None
  expected_style = "roberta" if c.teacher_model_type == "roberta" else "absolute"
  _check(teacher.position_style == expected_style, "teacher_model_type",
         c.teacher_model_type, f"does not match the teacher checkpoint at {path}")
  # Fewer tokens than embedding rows is common (multilingual-e5-small:
  # 250,002 tokens, 250,037 rows); more would index past the table.
  _check(len(settings.vocab) <= teacher.vocab_size,
         "teacher_model_name_or_path", path,
         f"{os.path.basename(settings.path)} has {len(settings.vocab)} tokens "
         f"but the teacher embeds only {teacher.vocab_size}")
  _check(settings.pad_id == teacher.pad_token_id,
         "teacher_model_name_or_path", path,
         f"{os.path.basename(settings.path)} pads with id {settings.pad_id} "
         f"but the teacher's pad_token_id is {teacher.pad_token_id}")
  _check(c.student_vocab_size < len(settings.vocab), "student_vocab_size",
         c.student_vocab_size, f"must be below the teacher's "
         f"{len(settings.vocab)} tokens (0 keeps the whole vocabulary)")
  _check(c.student_vocab_size == 0 or
         c.student_vocab_size > len(settings.special_ids),
         "student_vocab_size", c.student_vocab_size,
         f"leaves no room beside the {len(settings.special_ids)} special "
         "tokens")
  _check(0 <= c.teacher_layer_index < teacher.num_layers,
         "teacher_layer_index", c.teacher_layer_index,
         f"out of range for the {teacher.num_layers}-layer teacher "
         f"(0..{teacher.num_layers - 1})")
  try:
    student = student_encoder_config(c, teacher, len(settings.vocab))
  except ValueError as e:
    raise _shape_error(c, e) from None
  if c.selects_student:
    try:
      selection.check_fits(teacher, student)
    except ValueError as e:
      raise ConfigError("student_selection", c.student_selection,
                        f"{e}; teacher {path}") from None
  _check(student.vocab_size >= len(settings.vocab), "student_init",
         c.student_init, f"the student embeds {student.vocab_size} tokens, "
         f"fewer than the teacher's tokenizer's {len(settings.vocab)}")
  _check(student.pad_token_id == teacher.pad_token_id, "student_init",
         c.student_init, f"pad_token_id {student.pad_token_id} differs from "
         f"the teacher's {teacher.pad_token_id}")
  _check(0 <= c.student_layer_index < student.num_layers, "student_layer_index",
         c.student_layer_index, f"out of range for the {student.num_layers}-layer"
         f" student (0..{student.num_layers - 1})")
  specials = settings.num_special_tokens(pair=True)
  _check(c.max_seq_length >= specials, "max_seq_length", c.max_seq_length,
         f"must be >= {specials}, the special tokens the teacher's "
         "tokenizer puts around a pair of texts")
  for model, name in ((teacher, "teacher"), (student, "student")):
    _check(c.max_seq_length <= model.usable_positions, "max_seq_length",
           c.max_seq_length,
           f"exceeds the {model.positions_text()} the {name} embeds")
  try:
    losses.check_relation_heads(c.num_relation_heads, student.hidden_size,
                                teacher.hidden_size)
  except ValueError as e:
    raise ConfigError("num_relation_heads", c.num_relation_heads, str(e)) from None
  layout_lib.check_output_dir(
      c.output_dir, "bin/distill",
      {flag: getattr(c, flag) for flag in ("input_dir", "eval_input_dir")})
  shards = {}
  for flag in ("input_dir", "eval_input_dir"):
    if getattr(c, flag):
      try:
        shards[flag] = data.list_shards(getattr(c, flag))
      except data.DataError as e:
        raise ConfigError(flag, getattr(c, flag), str(e)) from None
  teacher_head = (teacher_sentence_head(c, teacher) if c.distills_embedding
                  else None)
  check_resume(c)
  return Resolved(teacher=teacher, student=student,
                  tokenizer_settings=settings, shards=shards["input_dir"],
                  eval_shards=shards.get("eval_input_dir"),
                  teacher_head=teacher_head)
