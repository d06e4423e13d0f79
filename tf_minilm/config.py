"""The training configs: absl flags -> one frozen, validated dataclass per task.

`TrainingConfig` holds what every training task shares (runtime,
optimizer, loop, output); `DistillConfig` and `FinetuneConfig` add their
task's fields. `define_flags()` / `define_finetune_flags()` declare one flag
per field (importing this module parses nothing); `from_flags()` /
`finetune_from_flags()` map them once into the dataclass; `validate()` /
`validate_finetune()` check each value and their combinations, naming flag
and value. What needs the files a config names (teacher, vocabulary, shards,
a previous run) is checked once by `resolve.resolve`. This module imports
nothing else of the package but its errors.
"""

import dataclasses
import json
import math
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from absl import flags

from tf_minilm import errors

CONFIG_FILENAME = "distill_config.json"
# Flags that may differ when a run resumes in an existing output_dir: they
# change how long it runs and what it reports, not what a step computes.
RESUMABLE_FIELDS = ("max_steps", "logging_steps", "save_steps",
                    "keep_checkpoints", "exit_after_steps", "eval_input_dir",
                    "eval_every", "eval_batches", "jit",
                    "max_consecutive_skipped_steps")
MAX_SEED = 2 ** 31 - 1
# Keys of a stored config that are not fields: the digests of its inputs
# (resume.py; the second name is that of runs started before 2026-12-05).
STORED_DIGEST_KEYS = ("input_digests", "input_identities")


class ConfigError(errors.InputError):
  """A flag value (or combination) that cannot run; names the flag (or, with
  `env=True`, the environment variable)."""

  def __init__(self, flag: str, value: Any, message: str, env: bool = False):
    super().__init__(f"{flag}={value}: {message}" if env else
                     f"--{flag}={value}: {message}")
    self.flag = flag


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingConfig:
  """What every training task shares: where it writes, the runtime
  (devices, precision), the optimizer and the loop's bookkeeping. A task's
  config redeclares a field only to give it the task's own default."""
  output_dir: str
  max_seq_length: int = 128
  batch_size: int = 32
  learning_rate: float = 2e-5
  weight_decay: float = 0.01
  adam_epsilon: float = 1e-8
  max_grad_norm: float = 1.0
  grad_accum_steps: int = 1
  dropout: float = 0.1
  seed: int = 42
  device: str = "gpu"
  strategy: str = "mirrored"
  cpu_replicas: int = 1
  tpu: str = ""
  use_amp: bool = False
  amp_dtype: str = "float16"
  jit: bool = False
  logging_steps: int = 50
  keep_checkpoints: int = 1
  exit_after_steps: int = 0
  max_consecutive_skipped_steps: int = 50

  @property
  def amp_policy(self) -> str:
    """The Keras mixed-precision policy of the run."""
    return f"mixed_{self.amp_dtype}" if self.use_amp else "float32"

  @property
  def dynamic_loss_scale(self) -> bool:
    """float16 overflows, so its gradients are scaled; bfloat16 does not."""
    return self.use_amp and self.amp_dtype == "float16"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillConfig(TrainingConfig):
  """Every setting of a distillation run (see `define_flags` for meanings)."""
  teacher_model_name_or_path: str
  input_dir: str
  model_type: str = "ppminilm"
  num_layers: int = 6
  teacher_model_type: str = "bert"
  teacher_layer_index: int = 19
  student_layer_index: int = 5
  num_relation_heads: int = 64
  alpha: float = 0.0
  beta: float = 1.0
  relation_mask: str = "reference"
  reference_char_cut: bool = False
  batch_size: int = 128
  learning_rate: float = 6e-4
  warmup_steps: int = 4000
  max_steps: int = 400_000
  logging_steps: int = 20
  save_steps: int = 20_000
  keep_checkpoints: int = 3
  use_amp: bool = True
  padding: str = "longest"
  batching: str = "random"
  group_window: int = 100
  deterministic_data: bool = False
  shuffle_buffer: int = 100_000
  teacher_dropout: bool = False
  teacher_half_precision: bool = False
  student_init: Optional[str] = None
  eval_input_dir: Optional[str] = None
  eval_every: int = 0
  eval_batches: int = 50
  student_hidden_size: int = 0
  student_num_heads: int = 0
  student_intermediate_size: int = 0
  student_vocab_size: int = 0
  student_selection: str = "none"
  embedding_weight: float = 0.0
  embedding_loss: str = "cosine"
  embedding_pooling: str = "auto"

  @property
  def distills_embedding(self) -> bool:
    """The embedding term is on: both models run to their last layer."""
    return self.embedding_weight > 0

  @property
  def selects_student(self) -> bool:
    """The student starts from weights selected from its teacher."""
    return self.student_selection != "none"

  @classmethod
  def from_json(cls, text: str, source: str) -> "DistillConfig":
    """A config stored in a run directory (resume.stored_json); fields added
    since then take defaults."""
    try:
      values = json.loads(text)
      if not isinstance(values, dict):
        raise ValueError("not a JSON object")
      for key in STORED_DIGEST_KEYS:
        values.pop(key, None)
      unknown = sorted(set(values) - set(cls.__dataclass_fields__))
      if unknown:
        raise ValueError(f"unknown fields {unknown}")
      return cls(**values)
    except (ValueError, TypeError) as e:
      raise ValueError(f"{source}: not a distillation config ({e})") from None


# The modes of padding, batching, relation_mask, embedding_loss and
# embedding_pooling are data.PADDING_MODES, data.BATCHING_MODES,
# losses.MASK_MODES, losses.EMBEDDING_LOSSES and "auto" +
# sentence_embedding.POOLING_MODES (a test keeps them equal).
_COMMON_CHOICES = {
    "device": ("gpu", "cpu", "tpu"),
    "strategy": ("mirrored", "multi_worker", "one_device", "tpu"),
    "amp_dtype": ("float16", "bfloat16"),
}
_CHOICES = {
    **_COMMON_CHOICES,
    "model_type": ("ppminilm", "roberta"),
    "teacher_model_type": ("bert", "roberta"),
    "padding": ("longest", "bucket"),
    "batching": ("random", "grouped"),
    "relation_mask": ("reference", "strict"),
    "student_selection": ("none", "first", "uniform"),
    "embedding_loss": ("cosine", "mse"),
    "embedding_pooling": ("auto", "mean", "cls", "max",
                          "mean_sqrt_len_tokens"),
}


_DEFAULTS = {field.name: field.default
             for field in dataclasses.fields(DistillConfig)}


_COMMON_HELP = {
    "learning_rate": "Peak learning rate.",
    "weight_decay": "AdamW decay (not on biases and LayerNorm).",
    "adam_epsilon": "Adam epsilon.",
    "max_grad_norm": "Global-norm gradient clipping (0 disables).",
    "grad_accum_steps": "Micro-batches per optimizer step.",
    "seed": "Seed of initialisation, dropout and data order.",
    "device": "Accelerator kind to run on.",
    "strategy": "tf.distribute strategy.",
    "cpu_replicas": "Split the CPU into this many logical devices (testing "
                    "multi-replica code without GPUs).",
    "tpu": "TPU name or grpc:// address for --strategy=tpu ('local' on a TPU "
           "VM).",
    "use_amp": "Mixed precision (dynamic loss scaling for float16).",
    "amp_dtype": "Half-precision type with --use_amp.",
    "jit": "XLA-compile the per-replica forward/backward.",
    "logging_steps": "Log every this many steps.",
    "keep_checkpoints": "Training checkpoints kept.",
    "exit_after_steps": "Checkpoint and exit after this many steps of this "
                        "process (time-sliced jobs; 0: run to the end). "
                        "Running the same command again resumes.",
    "max_consecutive_skipped_steps": "Stop with an error (exit 3) after this "
                                     "many steps in a row with non-finite "
                                     "gradients (float16 overflow skips a "
                                     "step; a run of them means divergence).",
}


_HELP = {
    **_COMMON_HELP,
    "teacher_model_name_or_path": "Local HF teacher directory or a converted "
                                  "teacher (bin/convert_teacher).",
    "input_dir": "Directory of text shards, one sentence per line.",
    "output_dir": "Checkpoints, exported students, TensorBoard logs and the "
                  "resolved config go here.",
    "model_type": "Student architecture family.",
    "teacher_model_type": "Teacher family (checked against its config.json).",
    "padding": "longest: pad each batch to its longest row (reference); "
               "bucket: to multiples of 32 (for --jit).",
    "relation_mask": "reference: PaddleNLP's masking; strict: padded "
                     "positions excluded from every relation.",
    "batching": "random: batches of random lines (reference); grouped: "
                "lines of similar token length batched together within "
                "windows of --group_window batches (far less padding; use "
                "with --relation_mask=strict).",
    "group_window": "Batches per length-sorted window with --batching=grouped.",
    "num_layers": "Student layers (6, 4 or 2).",
    "teacher_layer_index": "0-based teacher layer whose Q/K/V are distilled.",
    "student_layer_index": "0-based student layer whose Q/K/V are trained.",
    "num_relation_heads": "Relation heads R (64 for large, 48 for base "
                          "teachers).",
    "max_seq_length": "Tokens per sequence, [CLS] and [SEP] included (longer "
                      "lines are truncated by tokens, as transformers does).",
    "reference_char_cut": "Cut every line to --max_seq_length characters "
                          "before tokenizing, as PaddleNLP's pre-training "
                          "reader does (for Chinese corpora, where a "
                          "character is about a token; it cuts English "
                          "lines to a fifth of their tokens).",
    "batch_size": "Sequences per replica per micro-batch.",
    "warmup_steps": "Linear learning-rate warm-up steps.",
    "max_steps": "Training steps; the learning rate reaches 0 here.",
    "save_steps": "Checkpoint and export every this many steps.",
    "shuffle_buffer": "Lines in the shuffle buffer.",
    "eval_every": "Evaluate on --eval_input_dir every this many steps.",
    "eval_batches": "Held-out batches per evaluation.",
    "student_hidden_size": "Override the preset's hidden size (0: preset). "
                           "A --num_layers without a preset needs this, "
                           "--student_num_heads and "
                           "--student_intermediate_size.",
    "student_num_heads": "Override the preset's attention heads (0: preset).",
    "student_intermediate_size": "Override the preset's FFN size (0: preset).",
    "student_vocab_size": "Trim the student's vocabulary to this many "
                          "tokens: the teacher's special tokens and the most "
                          "frequent tokens of --input_dir (0: the teacher's "
                          "whole vocabulary). The teacher reads the full ids, "
                          "the student the same tokens renumbered; exports "
                          "carry the trimmed tokenizer.",
    "student_selection": "Initialise the student from its teacher's weights "
                         "before the first step (weight selection): first: "
                         "the teacher's first layers; uniform: evenly spaced "
                         "layers, the last included; within each layer "
                         "evenly spaced hidden elements, heads and FFN units "
                         "(none: random initialisation, as the recipe). The "
                         "student must be no larger than the teacher in any "
                         "dimension.",
    "embedding_weight": "Weight of the embedding term (0: off, the recipe): "
                        "the student's sentence embedding, pooled as the "
                        "teacher pools, pulled towards the teacher's. It "
                        "trains every student layer, and a projection to the "
                        "teacher's embedding width exported with the student "
                        "(sentence-transformers layout) where the widths "
                        "differ or the teacher has a Dense module.",
    "embedding_loss": "With --embedding_weight: cosine (1 - cos, blind to "
                      "lengths) or mse (sentence-transformers' MSELoss).",
    "embedding_pooling": "With --embedding_weight: how the teacher pools "
                         "(auto: from its sentence-transformers files, "
                         "modules.json and 1_Pooling/config.json; give it "
                         "for a teacher without them).",
    "alpha": "Head-head relation weight.",
    "beta": "Sample-sample relation weight.",
    "dropout": "Student hidden and attention dropout.",
    "deterministic_data": "Reproducible data order (exact resume).",
    "teacher_dropout": "Run the teacher with dropout, as the reference does.",
    "teacher_half_precision": "Hold the teacher's weights in --amp_dtype.",
    "student_init": "Continue from an exported student (HF directory) "
                    "instead of random initialisation (or selection).",
    "eval_input_dir": "Held-out shards for evaluation.",
}


def define_dataclass_flags(cls, helps: Dict[str, str],
                           choices: Dict[str, Tuple[str, ...]],
                           flag_values: flags.FlagValues) -> None:
  """Declares one flag per field of the dataclass `cls` (once)."""
  if all(field.name in flag_values for field in dataclasses.fields(cls)):
    return
  for field in dataclasses.fields(cls):
    name, default = field.name, field.default
    if default is dataclasses.MISSING:
      default = None
    kwargs = dict(name=name, default=default, help=helps[name],
                  flag_values=flag_values)
    if name in choices:
      flags.DEFINE_enum(enum_values=list(choices[name]), **kwargs)
    elif field.type in (bool, "bool"):
      flags.DEFINE_boolean(**kwargs)
    elif field.type in (int, "int"):
      flags.DEFINE_integer(**kwargs)
    elif field.type in (float, "float"):
      flags.DEFINE_float(**kwargs)
    else:
      flags.DEFINE_string(**kwargs)


def dataclass_from_flags(cls, flag_values: flags.FlagValues,
                         required: Sequence[str]):
  """An instance of the dataclass `cls` from the parsed flags."""
  values = {name: flag_values[name].value for name in cls.__dataclass_fields__}
  for name in required:
    if not values[name]:
      raise ConfigError(name, values[name], "is required")
  return cls(**values)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Declares one flag per `DistillConfig` field on `flag_values` (once)."""
  define_dataclass_flags(DistillConfig, _HELP, _CHOICES, flag_values)


def from_flags(flag_values=flags.FLAGS) -> DistillConfig:
  """The config of the parsed flags; `validate` (which `distiller.run` calls
  before anything else) checks the combinations."""
  return dataclass_from_flags(DistillConfig, flag_values, (
      "teacher_model_name_or_path", "input_dir", "output_dir"))


def _check(condition: bool, flag: str, value: Any, message: str) -> None:
  if not condition:
    raise ConfigError(flag, value, message)


def check_common(config, choices: Dict[str, Tuple[str, ...]],
                 positive: Sequence[str], non_negative: Sequence[str]) -> None:
  """Choices, finite floats, ranges, the seed, the distribution flags and
  the output directory: what every training config shares."""
  c = config
  for name, allowed in choices.items():
    _check(getattr(c, name) in allowed, name, getattr(c, name),
           f"must be one of {list(allowed)}")
  for field in dataclasses.fields(c):
    value = getattr(c, field.name)
    if isinstance(value, float):
      _check(math.isfinite(value), field.name, value, "must be a finite number")
  for name in positive:
    _check(getattr(c, name) >= 1, name, getattr(c, name), "must be >= 1")
  for name in non_negative:
    _check(getattr(c, name) >= 0, name, getattr(c, name), "must be >= 0")
  _check(0 <= c.seed <= MAX_SEED, "seed", c.seed, f"must be in [0, {MAX_SEED}]")
  _check(c.max_seq_length >= 3, "max_seq_length", c.max_seq_length,
         "must be >= 3 ([CLS], one token, [SEP])")
  _check(c.learning_rate > 0, "learning_rate", c.learning_rate, "must be > 0")
  _check(c.adam_epsilon > 0, "adam_epsilon", c.adam_epsilon, "must be > 0")
  _check(0 <= c.dropout < 1, "dropout", c.dropout, "must be in [0, 1)")
  _check((c.strategy == "tpu") == (c.device == "tpu"), "strategy", c.strategy,
         f"--strategy=tpu and --device=tpu go together, got --device={c.device}")
  _check(c.strategy != "tpu" or c.tpu, "strategy", c.strategy,
         "needs --tpu (a TPU name, a grpc:// address, or 'local' on a TPU VM)")
  if c.strategy == "multi_worker":
    validate_tf_config(os.environ.get("TF_CONFIG"))
  _check_output_dir(c.output_dir)


def validate(config: DistillConfig) -> None:
  """Raises ConfigError for anything wrong that is knowable before training."""
  c = config
  check_common(c, _CHOICES, positive=(
      "max_seq_length", "batch_size", "max_steps", "grad_accum_steps",
      "logging_steps", "save_steps", "keep_checkpoints", "cpu_replicas",
      "num_relation_heads", "eval_batches", "group_window",
      "max_consecutive_skipped_steps"), non_negative=(
          "warmup_steps", "weight_decay", "max_grad_norm", "eval_every",
          "shuffle_buffer", "exit_after_steps", "student_hidden_size",
          "student_num_heads", "student_intermediate_size",
          "student_vocab_size", "embedding_weight"))
  _check(not (c.student_vocab_size and c.student_init), "student_vocab_size",
         c.student_vocab_size, "trims a student initialised at random; "
         "--student_init brings its own vocabulary")
  _check(not (c.selects_student and c.student_init),
         "student_selection", c.student_selection,
         "selects a new student from the teacher; --student_init continues "
         "an exported one: give one of them")
  for flag in ("embedding_loss", "embedding_pooling"):
    _check(c.distills_embedding or getattr(c, flag) == _DEFAULTS[flag], flag,
           getattr(c, flag), "applies only with --embedding_weight > 0")
  _check(c.max_steps >= c.warmup_steps, "max_steps", c.max_steps,
         f"must be >= --warmup_steps={c.warmup_steps}")
  _check(c.use_amp or not c.teacher_half_precision, "teacher_half_precision",
         True, "holds the teacher in --amp_dtype and needs --use_amp")
  _check(not (c.eval_every and not c.eval_input_dir), "eval_every", c.eval_every,
         "needs --eval_input_dir")


def _check_output_dir(output_dir: str) -> None:
  """The directory exists or can be created: no ancestor is a file, and the
  nearest existing one is writable."""
  path = os.path.abspath(output_dir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    where = "is a file" if path == os.path.abspath(output_dir) else \
        f"lies below the file {path}"
    raise ConfigError("output_dir", output_dir, f"{where}, not a directory")
  _check(os.access(path, os.W_OK), "output_dir", output_dir,
         f"{path} is not writable")


def validate_tf_config(raw: Optional[str]) -> None:
  """TF_CONFIG names a cluster of workers and this process's place in it."""
  def fail(message):
    raise ConfigError("TF_CONFIG", raw, message + " (--strategy=multi_worker "
                      "expects e.g. {\"cluster\": {\"worker\": [\"host0:12345\", "
                      "\"host1:12345\"]}, \"task\": {\"type\": \"worker\", "
                      "\"index\": 0}})", env=True)
  if not raw:
    fail("is not set")
  try:
    tf_config = json.loads(raw)
  except ValueError as e:
    fail(f"is not JSON ({e})")
  if not isinstance(tf_config, dict):
    fail("is not a JSON object")
  cluster, task = tf_config.get("cluster"), tf_config.get("task")
  if not isinstance(cluster, dict) or not cluster:
    fail("has no \"cluster\" object")
  for job, addresses in cluster.items():
    if not (isinstance(addresses, list) and addresses and
            all(isinstance(a, str) and ":" in a for a in addresses)):
      fail(f"cluster job {job!r} must list \"host:port\" addresses")
  if not isinstance(task, dict):
    fail("has no \"task\" object")
  job, index = task.get("type"), task.get("index")
  if job not in cluster:
    fail(f"task type {job!r} is not a job of the cluster {sorted(cluster)}")
  if not isinstance(index, int) or isinstance(index, bool) or not (
      0 <= index < len(cluster[job])):
    fail(f"task index {index!r} is not in 0..{len(cluster[job]) - 1}")


# ---------------------------------------------------------------- fine-tuning

FINETUNE_CONFIG_FILENAME = "finetune_config.json"
FINETUNE_RESUMABLE_FIELDS = ("logging_steps", "keep_checkpoints",
                             "exit_after_steps", "jit", "test_file",
                             "max_consecutive_skipped_steps")
CLUE_TASKS = ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020",
              "csl")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneConfig(TrainingConfig):
  """Every setting of a fine-tuning run (see `define_finetune_flags`)."""
  model_name_or_path: str
  task: str = "custom"
  data_dir: str = ""
  train_file: str = ""
  dev_file: str = ""
  test_file: str = ""
  text_column: str = "text"
  text_pair_column: str = ""
  label_column: str = "label"
  id_column: str = ""
  init_random: bool = False
  use_pooler: bool = True
  int8: bool = False
  learning_rates: str = ""
  batch_sizes: str = ""
  epochs: int = 3
  warmup_proportion: float = 0.1

  def grid(self) -> Tuple[Tuple[float, int], ...]:
    """(learning rate, batch size) settings to train: the grid of
    --learning_rates x --batch_sizes, or the single setting."""
    rates = [float(v) for v in self.learning_rates.split(",") if v.strip()] \
        or [self.learning_rate]
    sizes = [int(v) for v in self.batch_sizes.split(",") if v.strip()] \
        or [self.batch_size]
    return tuple((r, b) for r in rates for b in sizes)


def setting_name(learning_rate: float, batch_size: int) -> str:
  """The directory of one setting of a search."""
  return f"lr{learning_rate:g}_bs{batch_size}"


_FINETUNE_CHOICES = {
    **_COMMON_CHOICES,
    "task": CLUE_TASKS + ("custom",),
}

_FINETUNE_HELP = {
    **_COMMON_HELP,
    "model_name_or_path": "A bin/distill model_<step>/ directory, a local HF "
                          "BERT/RoBERTa directory, or a bin/convert_teacher "
                          "directory.",
    "output_dir": "Checkpoints, per-epoch models, best_model/ (with its "
                  "SavedModel), results and predictions go here.",
    "task": "A CLUE classification task (reads --data_dir/{train,dev,test}"
            ".json) or custom (--train_file, --dev_file, --test_file).",
    "data_dir": "The CLUE task's directory.",
    "train_file": "Custom task: CSV, TSV (with a header) or JSON lines.",
    "dev_file": "Custom task: evaluated after every epoch.",
    "test_file": "Optional: unlabelled examples to predict with the best "
                 "model (CLUE: test.json when present).",
    "text_column": "Custom task: column of the text.",
    "text_pair_column": "Custom task: column of the second text of a pair.",
    "label_column": "Custom task: column of the label (any strings; the "
                    "sorted labels of the training file are the classes).",
    "id_column": "Custom task: column of the id in prediction files "
                 "(default: the line's index).",
    "init_random": "Random initialisation of the source's architecture (the "
                   "no-distillation baseline).",
    "use_pooler": "Classify BERT's pooled output (tanh dense on [CLS]), as "
                  "PaddleNLP's and transformers' classifiers do; "
                  "--nouse_pooler classifies the raw [CLS] state.",
    "int8": "Also write best_model/hf/onnx/model.onnx (float32) and "
            "model_qint8_avx512_vnni.onnx (int8): the classifier for ONNX "
            "Runtime, logits and probabilities, id2label in its metadata "
            "(needs the onnx extra).",
    "max_seq_length": "Tokens per example, special tokens included "
                      "(truncated as transformers does; pairs longest "
                      "first).",
    "batch_size": "Examples per replica per micro-batch.",
    "learning_rates": "Comma-separated: search these learning rates.",
    "batch_sizes": "Comma-separated: search these batch sizes.",
    "epochs": "Passes over the training examples.",
    "warmup_proportion": "Share of the steps of linear warm-up.",
    "dropout": "Dropout before the classifier.",
}


def define_finetune_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  define_dataclass_flags(FinetuneConfig, _FINETUNE_HELP, _FINETUNE_CHOICES,
                         flag_values)


def finetune_from_flags(flag_values=flags.FLAGS) -> FinetuneConfig:
  return dataclass_from_flags(FinetuneConfig, flag_values,
                              ("model_name_or_path", "output_dir"))


def validate_finetune(config: FinetuneConfig) -> None:
  """Raises ConfigError for anything wrong that is knowable before reading."""
  c = config
  check_common(c, _FINETUNE_CHOICES, positive=(
      "max_seq_length", "batch_size", "epochs", "grad_accum_steps",
      "logging_steps", "keep_checkpoints", "cpu_replicas",
      "max_consecutive_skipped_steps"), non_negative=(
          "weight_decay", "max_grad_norm", "exit_after_steps"))
  _check(0 <= c.warmup_proportion < 1, "warmup_proportion",
         c.warmup_proportion, "must be in [0, 1)")
  for flag, kind in (("learning_rates", float), ("batch_sizes", int)):
    try:
      values = [kind(v) for v in getattr(c, flag).split(",") if v.strip()]
    except ValueError:
      raise ConfigError(flag, getattr(c, flag), f"must be a comma-separated "
                        f"list of {kind.__name__}s") from None
    _check(all(v > 0 and math.isfinite(v) for v in values), flag,
           getattr(c, flag), "must hold positive numbers")
  sizes = [int(v) for v in c.batch_sizes.split(",") if v.strip()]
  flag = "batch_sizes" if len(set(sizes)) < len(sizes) else "learning_rates"
  settings = {}
  for rate, size in c.grid():
    name = setting_name(rate, size)
    _check(name not in settings, flag, getattr(c, flag),
           f"learning rate {settings.get(name, (rate,))[0]:g} / batch size "
           f"{size} is listed twice (as {name}, the setting's directory); "
           "list each setting once")
    settings[name] = (rate, size)
  if c.task == "custom":
    for flag in ("train_file", "dev_file"):
      _check(bool(getattr(c, flag)), flag, getattr(c, flag),
             "is required with --task=custom")
  else:
    _check(bool(c.data_dir), "data_dir", c.data_dir,
           f"is required with --task={c.task} (the directory of its "
           "train.json, dev.json and test.json)")
