"""Task-agnostic distillation: `run(config)` trains a student on a teacher's
self-attention relations (PP-MiniLM / MiniLMv2).

config -> resolve (files read once) -> DistillationTask (models, inputs, the
relation loss, export) -> trainer.Trainer (step, checkpoint, lifecycle,
loop) -> layout (run directory).

Per replica the teacher's Q/K/V at its tap (frozen, computed only up to the
tap) and the student's at its tap feed `losses.multi_relation_loss`; the
trainer all-reduces, unscales, checks, clips and applies the gradients.
With --embedding_weight both models also run to their last layer, and
`losses.embedding_loss` compares their sentence embeddings (the student's
through its trained projection where it has one).
"""

import dataclasses
import os
from typing import Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import convert
from tf_minilm import data
from tf_minilm import io_utils
from tf_minilm import layout as layout_lib
from tf_minilm import losses
from tf_minilm import modeling
from tf_minilm import resolve as resolve_lib
from tf_minilm import resume
from tf_minilm import selection
from tf_minilm import sentence_embedding
from tf_minilm import student_vocab
from tf_minilm import trainer


@dataclasses.dataclass
class Models:
  teacher: modeling.Encoder
  student: modeling.Encoder
  teacher_view: keras.Model
  student_view: keras.Model


def _load(flag: str, path: str, **kwargs) -> modeling.Encoder:
  """An encoder from the checkpoint a flag names; problems name that flag."""
  try:
    return convert.load_encoder(path, **kwargs)
  except convert.CheckpointError as e:
    raise config_lib.ConfigError(flag, path, str(e)) from None


def selected_student_tensors(config: config_lib.DistillConfig,
                             resolved: resolve_lib.Resolved,
                             random_weights: bool = False
                             ) -> Dict[str, np.ndarray]:
  """With --student_selection, the student's initial weights (HF names)
  selected from the whole teacher: every layer of its checkpoint (a random
  teacher of the resolved architecture with `random_weights`); its pooler if
  it has one. Call outside the strategy's scope: the whole teacher is read
  once here and dropped."""
  if random_weights:
    source = modeling.Encoder(resolved.teacher, name="selection_source")
  else:
    source = _load("teacher_model_name_or_path",
                   config.teacher_model_name_or_path, with_pooler=None,
                   name="selection_source")
  return selection.select_tensors(
      convert.encoder_tensors(source), source.config, resolved.student,
      config.student_selection, resolved.student_teacher_ids)


def build_models(config: config_lib.DistillConfig,
                 resolved: resolve_lib.Resolved,
                 random_weights: bool = False,
                 student_tensors: Optional[Dict[str, np.ndarray]] = None
                 ) -> Models:
  """Teacher (truncated at its tap, frozen) and student; call inside the scope.

  Weights come from the checkpoints the config names (broken or non-finite
  ones raise ConfigError naming the flag), or are random initialisations of
  the resolved architectures with `random_weights` (benchmarks). A student
  given `student_tensors` (HF names) starts from them; a weight they lack
  (the pooler of a teacher without one) keeps its initialisation.
  """
  half = config.amp_dtype if config.use_amp else "float32"
  teacher_dtype = half if config.teacher_half_precision else config.amp_policy
  embedding = config.distills_embedding
  # The embedding term needs the teacher's last layer; the relations only
  # its tap.
  tap_depth = dict(num_layers=(resolved.teacher.num_layers if embedding else
                               config.teacher_layer_index + 1),
                   with_pooler=False)
  if random_weights:
    teacher = modeling.Encoder(resolved.teacher.replace(**tap_depth),
                               dtype=teacher_dtype, name="teacher")
  else:
    teacher = _load("teacher_model_name_or_path",
                    config.teacher_model_name_or_path, dtype=teacher_dtype,
                    name="teacher", **tap_depth)
  teacher.model.trainable = False
  if config.student_init and not random_weights:
    student = _load("student_init", config.student_init,
                    dtype=config.amp_policy, name="student")
  else:
    student = modeling.Encoder(resolved.student, dtype=config.amp_policy,
                               name="student")
  if student_tensors is not None:
    convert.assign_hf_weights(
        student, {**convert.encoder_tensors(student), **student_tensors},
        source="the weights selected from the teacher")
  return Models(teacher, student,
                 teacher.distillation_model(config.teacher_layer_index,
                                            sequence_output=embedding),
                 student.distillation_model(config.student_layer_index,
                                            sequence_output=embedding))


def initial_projection(config: config_lib.DistillConfig,
                       resolved: resolve_lib.Resolved, width: int
                       ) -> Optional[sentence_embedding.Dense]:
  """The starting weights of the embedding term's projection to `width`:
  the --student_init export's own head, or selected from the teacher's head
  (--student_selection); None: random."""
  if config.student_init:
    try:
      head = sentence_embedding.read_head(config.student_init,
                                          resolved.student.hidden_size)
    except sentence_embedding.HeadError as e:
      raise config_lib.ConfigError("student_init", config.student_init,
                                   str(e)) from None
    dense = head and head.dense
    if dense is not None and dense.weight.shape == (
        width, resolved.student.hidden_size):
      return dense
    return None
  if config.selects_student:
    weight, bias = selection.select_projection(
        resolved.teacher_head, resolved.teacher, resolved.student)
    return sentence_embedding.Dense(weight, bias)
  return None


class DistillationTask(trainer.Task):
  """The teacher and student, the relation loss, the inputs and the export
  of a run (`random_weights`: random initialisations of the resolved
  architectures, for benchmarks)."""

  def __init__(self, config: config_lib.DistillConfig,
               resolved: resolve_lib.Resolved,
               strategy: tf.distribute.Strategy, random_weights: bool = False):
    self.config = config
    self.resolved = resolved
    self.strategy = strategy
    self.random_weights = random_weights
    self.schedule = trainer.Schedule(
        max_steps=config.max_steps, warmup_steps=config.warmup_steps,
        save_steps=config.save_steps, eval_every=config.eval_every,
        global_batch=config.batch_size * strategy.num_replicas_in_sync *
        config.grad_accum_steps)
    # The student's id of each teacher id (trimmed vocabulary), else None.
    self.student_id_map = None
    if resolved.student_teacher_ids is not None:
      self.student_id_map = student_vocab.id_map(
          resolved.student_teacher_ids, resolved.teacher.vocab_size,
          resolved.student_teacher_ids.index(
              resolved.tokenizer_settings.unk_id))
    self._student_tensors = None
    self.models: Optional[Models] = None
    self.projection = None
    self._eval_dataset = None

  def prepare(self) -> None:
    if self.config.selects_student:
      self._student_tensors = selected_student_tensors(
          self.config, self.resolved, self.random_weights)

  def build(self) -> None:
    config, resolved = self.config, self.resolved
    self.models = build_models(config, resolved, self.random_weights,
                               self._student_tensors)
    self._student_tensors = None
    projection_width = resolved.teacher_head and \
        sentence_embedding.projection_width(
            resolved.teacher_head, resolved.teacher.hidden_size,
            resolved.student.hidden_size)
    if projection_width:
      self.projection = sentence_embedding.build_projection(
          projection_width, resolved.student,
          initial_projection(config, resolved, projection_width))

  def trainable_weights(self):
    if self.config.distills_embedding:
      # The embedding term reaches every layer (the pooler excepted, which
      # the student view does not hold).
      trainable = list(self.models.student_view.trainable_weights)
      if self.projection is not None:
        trainable += self.projection.trainable_weights
      return trainable
    # Only the student's weights at or below its tap get gradients; the rest
    # (layers above, the tap's attention output and FFN, the pooler) are
    # exported untouched (MiniLMv2 intends this).
    tap_attention = self.models.student.layers[
        self.config.student_layer_index].attention
    unused = {id(w) for w in tap_attention.output_dense.weights +
              tap_attention.layer_norm.weights}
    return [w for w in self.models.student_view.trainable_weights
            if id(w) not in unused]

  def model_weights(self):
    return self.models.student.model.weights

  def checkpointed(self):
    extra = {} if self.projection is None else {"projection": self.projection}
    return dict(student=self.models.student.model, **extra)

  def dropout_models(self):
    return [self.models.student.model, self.models.teacher.model]

  def loss(self, batch, training: bool) -> trainer.StepLoss:
    c = self.config
    teacher_qkv = self.models.teacher_view(batch, training=c.teacher_dropout
                                           and training)
    student_batch = batch if self.student_id_map is None else dict(
        batch, token_ids=tf.gather(self.student_id_map, batch["token_ids"]))
    student_qkv = self.models.student_view(student_batch, training=training)
    mask = batch["padding_mask"]
    out = losses.multi_relation_loss(
        [student_qkv[n] for n in ("query", "key", "value")],
        [tf.stop_gradient(teacher_qkv[n]) for n in ("query", "key", "value")],
        mask, c.num_relation_heads, c.alpha, c.beta, c.relation_mask)
    total, terms = out.total, dict(out.terms)
    if c.distills_embedding:
      head = self.resolved.teacher_head
      teacher_embedding = sentence_embedding.embed_with_head(
          teacher_qkv["sequence_output"], mask, head, normalize=False)
      projection = self.projection
      student_embedding = sentence_embedding.embed(
          student_qkv["sequence_output"], mask, head.pooling,
          None if projection is None else projection.kernel,
          None if projection is None else projection.bias,
          sentence_embedding.projection_activation(head))
      term = losses.embedding_loss(student_embedding,
                                   tf.stop_gradient(teacher_embedding),
                                   c.embedding_loss)
      terms[f"embedding/{c.embedding_loss}"] = term
      total += c.embedding_weight * term
    return trainer.StepLoss(
        total=total, terms=terms,
        examples=tf.cast(tf.shape(mask)[0], tf.float32),
        tokens=tf.reduce_sum(tf.cast(mask, tf.float32)),
        computed_tokens=tf.cast(tf.size(mask), tf.float32))

  def pipeline(self) -> data.PipelineConfig:
    return self.pipeline_config(self.config)

  @staticmethod
  def pipeline_config(c: config_lib.DistillConfig) -> data.PipelineConfig:
    return data.PipelineConfig(
        max_seq_length=c.max_seq_length, char_cut=c.reference_char_cut,
        batch_size=c.batch_size, padding=c.padding, shuffle_buffer=c.shuffle_buffer,
        deterministic=c.deterministic_data, seed=c.seed,
        batching=c.batching, group_window=c.group_window)

  def train_dataset(self, start_step: int):
    """Batches from `start_step` on: each input pipeline skips the batches
    its replicas consumed before."""
    per_pipeline = self.strategy.num_replicas_in_sync // \
        trainer.input_pipelines(self.strategy)
    consumed = start_step * self.config.grad_accum_steps * per_pipeline
    tokenizer, pipeline = self.resolved.tokenizer(), self.pipeline()
    return self.strategy.distribute_datasets_from_function(
        lambda ctx: data.make_dataset(self.resolved.shards, tokenizer,
                                      pipeline, ctx, skip_batches=consumed))

  def eval_dataset(self):
    """The held-out batches every evaluation reads (None without
    --eval_input_dir)."""
    if not self.resolved.eval_shards:
      return None
    pipeline = dataclasses.replace(self.pipeline(), repeat=False,
                                   shuffle_buffer=0, deterministic=True)
    tokenizer = self.resolved.tokenizer()
    return self.strategy.distribute_datasets_from_function(
        lambda ctx: data.make_dataset(self.resolved.eval_shards, tokenizer,
                                      pipeline, ctx).take(
                                          self.config.eval_batches))

  def evaluate(self, step, train_step):
    del step
    if self._eval_dataset is None:
      self._eval_dataset = self.eval_dataset()
    if self._eval_dataset is None:
      return None
    return trainer.loss_means(train_step, self._eval_dataset)

  def export(self, model_dir: str) -> None:
    """`model_dir` with the student as Keras and HF files, written atomically."""
    tokenizer_dir = (self.config.teacher_model_name_or_path
                     if self.student_id_map is None else
                     resolve_lib.run_layout(self.config).student_vocab_dir)
    with io_utils.atomic_directory(model_dir, overwrite=True) as staging:
      self.models.student.model.save(
          os.path.join(staging, layout_lib.STUDENT_KERAS))
      hf_dir = os.path.join(staging, layout_lib.STUDENT_HF)
      convert.export_hf(self.models.student, hf_dir,
                        tokenizer_dir=tokenizer_dir)
      if self.config.distills_embedding:
        head = self.resolved.teacher_head
        sentence_embedding.write_head(
            sentence_embedding.student_head(head, self.projection),
            hf_dir, self.resolved.student.hidden_size,
            self.config.max_seq_length)
      convert.copy_tokenizer_files(tokenizer_dir, staging)


def trim_student_vocabulary(
    config: config_lib.DistillConfig, resolved: resolve_lib.Resolved,
    pipeline: data.PipelineConfig
) -> Tuple[resolve_lib.Resolved, Optional[Dict[str, str]]]:
  """With --student_vocab_size: `resolved` with the student's vocabulary,
  read from the run directory or chosen by counting the corpus (then also
  the files to write there); TensorFlow runs here."""
  directory = resolve_lib.run_layout(config).student_vocab_dir
  files = None
  if os.path.isdir(directory):
    try:
      _, teacher_ids = student_vocab.read(directory,
                                          resolved.tokenizer_settings)
    except ValueError as e:
      raise config_lib.ConfigError(
          "output_dir", config.output_dir, f"{e}; remove {directory} and "
          "the checkpoints to start afresh") from None
  else:
    settings = resolved.tokenizer_settings
    counts = student_vocab.count_tokens(resolved.shards, settings.tokenizer(),
                                        len(settings.vocab), pipeline)
    teacher_ids = student_vocab.choose(counts, config.student_vocab_size,
                                       settings.special_ids)
    files = student_vocab.trimmed_files(
        settings, teacher_ids, resolved.student.max_position_embeddings)
    print(f"student vocabulary: {len(teacher_ids)} of "
          f"{len(settings.vocab)} tokens "
          f"({int((counts > 0).sum())} used), covering "
          f"{counts[teacher_ids].sum() / max(1, counts.sum()):.4%} of the "
          f"corpus' {counts.sum()} tokens", flush=True)
  return dataclasses.replace(
      resolved, student=resolved.student.replace(vocab_size=len(teacher_ids)),
      student_teacher_ids=teacher_ids), files


def run(config: config_lib.DistillConfig) -> trainer.RunResult:
  """Trains to `config.max_steps`, resuming if checkpoints exist.

  Raises ConfigError (before anything is written), io_utils.LockedError,
  trainer.DivergedError or trainer.RunError (see `trainer`).
  """
  config_lib.validate(config)
  resolved = resolve_lib.resolve(config)
  strategy = trainer.make_strategy(config.device, config.strategy,
                                   config.cpu_replicas, config.tpu)
  with trainer.precision_policy(config.amp_policy):
    vocab_files = None
    if config.student_vocab_size:
      resolved, vocab_files = trim_student_vocabulary(
          config, resolved, DistillationTask.pipeline_config(config))
    # Loading checks every weight, so a broken checkpoint stops the run
    # before anything is written.
    run_trainer = trainer.Trainer(
        DistillationTask(config, resolved, strategy), strategy, config)
    layout = resolve_lib.run_layout(config)

    def write_vocabulary():
      if vocab_files is not None:
        student_vocab.write(layout.student_vocab_dir, vocab_files)
    return run_trainer.run(layout, "bin/distill", resume.stored_json(config),
                           on_start=write_vocabulary)
