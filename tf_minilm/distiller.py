"""The distillation loop: `run(config)`.

Structure (after TF Model Garden's distillation trainer, with a custom loop
because `model.fit` fails under MultiWorkerMirroredStrategy in Keras 3.15):

  per replica  (optionally XLA):  teacher tap Q/K/V (frozen) -> student tap Q/K/V
                                  -> relation loss -> scaled gradients, summed
                                  over `grad_accum_steps` micro-batches
  per replica:                    all-reduce (sum) of gradients and loss terms
  cross-replica:                  unscale, finite check, global-norm clip, and
                                  AdamW update, or a skipped step on overflow

Gradients are clipped and checked after the all-reduce, so N replicas train as
one replica on the same global batch (Keras' LossScaleOptimizer checks one
replica's gradients and clips each replica's before the sum).
"""

import dataclasses
import os
import shutil
import signal
import sys
import time
from typing import Callable, Dict, List

from absl import logging
import keras
import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import convert
from tf_minilm import data
from tf_minilm import io_utils
from tf_minilm import losses
from tf_minilm import modeling
from tf_minilm import optimization
from tf_minilm import tokenization

CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
STUDENT_KERAS = "student.keras"
STUDENT_HF = "hf"
INITIAL_LOSS_SCALE = 2.0 ** 15
LOSS_SCALE_GROWTH_STEPS = 2000


def make_strategy(config: config_lib.DistillConfig) -> tf.distribute.Strategy:
  """The strategy of `config`, after making the right devices visible.

  Only physical devices are queried before the strategy exists: listing
  logical devices starts the TF runtime, after which collective ops
  (MultiWorkerMirroredStrategy) can no longer be configured.
  """
  if config.device == "cpu":
    tf.config.set_visible_devices([], "GPU")
  elif config.device == "gpu" and not tf.config.list_physical_devices("GPU"):
    raise config_lib.ConfigError("device", "gpu", "no GPU is visible to "
                                 "TensorFlow; use --device=cpu to run on the CPU")
  if config.cpu_replicas > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas)
  if config.strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if config.strategy == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
      d.name for d in tf.config.list_logical_devices("CPU")]
  if config.strategy == "one_device":
    return tf.distribute.OneDeviceStrategy(devices[0])
  return tf.distribute.MirroredStrategy(devices)


@dataclasses.dataclass
class _Models:
  teacher: modeling.Encoder
  student: modeling.Encoder
  teacher_view: keras.Model
  student_view: keras.Model


def build_models(config: config_lib.DistillConfig) -> _Models:
  """Teacher (truncated at its tap, frozen) and student; call inside the scope."""
  half = config.amp_dtype if config.use_amp else "float32"
  teacher_dtype = half if config.teacher_half_precision else config.amp_policy
  teacher = convert.load_encoder(
      config.teacher_model_name_or_path,
      num_layers=config.teacher_layer_index + 1, with_pooler=False,
      dtype=teacher_dtype, name="teacher")
  teacher.model.trainable = False
  if config.student_init:
    student = convert.load_encoder(config.student_init, dtype=config.amp_policy,
                                   name="student")
  else:
    student_config = config_lib.student_encoder_config(
        config, teacher.config.vocab_size)
    student = modeling.Encoder(student_config, dtype=config.amp_policy,
                               name="student")
  return _Models(teacher, student,
                 teacher.distillation_model(config.teacher_layer_index),
                 student.distillation_model(config.student_layer_index))


class Distiller(tf.Module):
  """Models, optimizer, step functions and the training state to checkpoint."""

  def __init__(self, config: config_lib.DistillConfig,
               strategy: tf.distribute.Strategy,
               build: Callable[[config_lib.DistillConfig], _Models] = None):
    """`build` makes the models inside the scope (default: `build_models`,
    from the checkpoints the config names; benchmarks pass random ones)."""
    super().__init__(name="distiller")
    self.config = config
    self.strategy = strategy
    with strategy.scope():
      self.models = (build or build_models)(config)
      # Only the student's weights at or below its tap get gradients; the rest
      # (layers above, the tap's attention output and FFN, the pooler) are
      # exported untouched (SPEC: MiniLMv2 intends this).
      tap_attention = self.models.student.layers[
          config.student_layer_index].attention
      unused = {id(w) for w in tap_attention.output_dense.weights +
                tap_attention.layer_norm.weights}
      self.trainable = [w for w in self.models.student_view.trainable_weights
                        if id(w) not in unused]
      self.optimizer = optimization.AdamW(
          self.trainable,
          optimization.WarmupLinearDecay(config.learning_rate,
                                         config.warmup_steps, config.max_steps),
          config.weight_decay, epsilon=config.adam_epsilon)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      dynamic = config.use_amp and config.amp_dtype == "float16"
      self.loss_scale = tf.Variable(INITIAL_LOSS_SCALE if dynamic else 1.0,
                                    trainable=False, name="loss_scale")
      self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                    name="good_steps")
      self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                       name="skipped_steps")
    self.dynamic_loss_scale = dynamic
    # Dropout seed states: restoring them makes a resumed run draw the same
    # masks as an uninterrupted one.
    rng_states = [v.value for encoder in (self.models.student,
                                          self.models.teacher)
                  for v in encoder.model.variables
                  if v.name == "seed_generator_state"]
    self.checkpoint = tf.train.Checkpoint(
        student=self.models.student.model, optimizer=self.optimizer,
        rng_states=rng_states,
        step=self.step, loss_scale=self.loss_scale, good_steps=self.good_steps,
        skipped_steps=self.skipped_steps)
    compute = self._replica_loss_and_grads
    self._compute = (tf.function(compute, jit_compile=True) if config.jit
                     else compute)
    self.train_step = tf.function(self._train_step)
    self.eval_step = tf.function(self._eval_step)

  # ------------------------------------------------------------ replica side

  def _loss(self, batch, training: bool) -> losses.RelationLossOutput:
    c = self.config
    teacher_qkv = self.models.teacher_view(batch, training=c.teacher_dropout
                                           and training)
    student_qkv = self.models.student_view(batch, training=training)
    return losses.multi_relation_loss(
        [student_qkv[n] for n in ("query", "key", "value")],
        [tf.stop_gradient(teacher_qkv[n]) for n in ("query", "key", "value")],
        batch["padding_mask"], c.num_relation_heads, c.alpha, c.beta,
        c.relation_mask)

  def _replica_loss_and_grads(self, batches: List[Dict[str, tf.Tensor]]):
    """Summed scaled gradients and mean loss terms over this replica's
    micro-batches; the loss is divided by replicas x micro-batches so that the
    cross-replica sum of gradients is the gradient of the global mean."""
    denominator = float(self.strategy.num_replicas_in_sync * len(batches))
    grads = [tf.zeros_like(v) for v in self.trainable]
    logs = None
    for batch in batches:
      with tf.GradientTape() as tape:
        out = self._loss(batch, training=True)
        scaled = out.total * (self.loss_scale / denominator)
      step_grads = tape.gradient(scaled, self.trainable)
      grads = [g + tf.cast(s, g.dtype) for g, s in zip(grads, step_grads)]
      terms = dict(out.terms, loss=out.total)
      terms = {k: v / denominator for k, v in terms.items()}
      logs = terms if logs is None else {k: logs[k] + terms[k] for k in logs}
    return grads, logs

  def _replica_step(self, batches):
    """All-reduced, unscaled, clipped gradients (identical on every replica)."""
    grads, logs = self._compute(batches)
    context = tf.distribute.get_replica_context()
    grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    logs["tokens"] = tf.add_n([tf.reduce_sum(tf.cast(b["padding_mask"],
                                                     tf.float32))
                               for b in batches])
    logs = context.all_reduce(tf.distribute.ReduceOp.SUM, logs)
    grads = [g / self.loss_scale for g in grads]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    grad_norm = tf.linalg.global_norm(grads)
    if self.config.max_grad_norm > 0:
      grads, _ = tf.clip_by_global_norm(grads, self.config.max_grad_norm,
                                        use_norm=grad_norm)
    logs.update(grad_norm=grad_norm, finite=finite)
    return grads, logs

  # ------------------------------------------------------------ cross-replica

  def _train_step(self, iterator):
    batches = [next(iterator) for _ in range(self.config.grad_accum_steps)]
    grads, logs = self.strategy.run(self._replica_step, args=(batches,))
    logs = {k: self.strategy.experimental_local_results(v)[0]
            for k, v in logs.items()}
    logs["learning_rate"] = self.optimizer.learning_rate

    def apply():
      self.optimizer.apply(grads)
      if self.dynamic_loss_scale:
        grow = tf.equal(self.good_steps, LOSS_SCALE_GROWTH_STEPS - 1)
        self.loss_scale.assign(tf.where(grow, self.loss_scale * 2.0,
                                        self.loss_scale))
        self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64),
                                        self.good_steps + 1))
      return tf.constant(True)

    def skip():
      self.skipped_steps.assign_add(1)
      self.good_steps.assign(0)
      if self.dynamic_loss_scale:
        self.loss_scale.assign(tf.maximum(self.loss_scale * 0.5, 1.0))
      return tf.constant(False)

    logs["applied"] = tf.cond(logs.pop("finite"), apply, skip)
    logs["loss_scale"] = self.loss_scale.read_value()
    self.step.assign_add(1)
    return logs

  def _eval_step(self, batch):
    def replica(batch):
      out = self._loss(batch, training=False)
      terms = dict(out.terms, loss=out.total)
      return tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.MEAN, terms)
    result = self.strategy.run(replica, args=(batch,))
    return {k: self.strategy.experimental_local_results(v)[0]
            for k, v in result.items()}
  # ------------------------------------------------------------ export

  def export_student(self, model_dir: str, tokenizer_dir: str) -> None:
    """`model_dir` with the student as Keras and HF files, written atomically."""
    with io_utils.atomic_directory(model_dir, overwrite=True) as staging:
      self.models.student.model.save(os.path.join(staging, STUDENT_KERAS))
      convert.export_hf(self.models.student, os.path.join(staging, STUDENT_HF),
                        tokenizer_dir=tokenizer_dir)
      convert.copy_tokenizer_files(tokenizer_dir, staging)


class _Preemption:
  """Turns SIGTERM into a flag checked between steps (checkpoint, then exit)."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def _is_chief(strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  return resolver.task_type in ("chief", None) or (
      resolver.task_type == "worker" and resolver.task_id == 0 and
      "chief" not in resolver.cluster_spec().as_dict())


def _write_dir(path: str, strategy) -> str:
  """Non-chief workers write to a private temporary copy (removed later)."""
  if _is_chief(strategy):
    return path
  resolver = strategy.cluster_resolver
  return os.path.join(path, f".worker_{resolver.task_type}_{resolver.task_id}")


def _format_logs(step: int, logs: Dict[str, float]) -> str:
  keys = ["loss"] + sorted(k for k in logs if "/" in k) + [
      "learning_rate", "loss_scale", "grad_norm", "seq_per_s", "tokens_per_s",
      "step_time_s", "skipped_steps"]
  parts = [f"step {step}"]
  for key in keys:
    if key in logs:
      value = logs[key]
      parts.append(f"{key} {value:.6g}" if isinstance(value, float) else
                   f"{key} {value}")
  return " | ".join(parts)


def run(config: config_lib.DistillConfig) -> Dict[str, float]:
  """Trains to `config.max_steps` (resuming if checkpoints exist); returns the
  last logged values."""
  config_lib.validate(config)
  strategy = make_strategy(config)
  keras.utils.set_random_seed(config.seed)
  keras.mixed_precision.set_global_policy(config.amp_policy)
  try:
    return _run(config, strategy)
  finally:
    keras.mixed_precision.set_global_policy("float32")


def _run(config: config_lib.DistillConfig, strategy) -> Dict[str, float]:
  chief = _is_chief(strategy)
  output_dir = config.output_dir
  os.makedirs(output_dir, exist_ok=True)
  if chief:
    config_lib.save(config, output_dir)
  tokenizer = tokenization.BertTokenizer.from_model_dir(
      config.teacher_model_name_or_path)
  distiller = Distiller(config, strategy)
  checkpoint_dir = _write_dir(os.path.join(output_dir, CHECKPOINT_DIR), strategy)
  manager = tf.train.CheckpointManager(distiller.checkpoint, checkpoint_dir,
                                       max_to_keep=config.keep_checkpoints)
  if manager.latest_checkpoint:
    distiller.checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    logging.info("resumed from %s at step %d", manager.latest_checkpoint,
                 int(distiller.step.numpy()))
  start = int(distiller.step.numpy())

  pipeline = data.PipelineConfig(
      max_seq_length=config.max_seq_length, batch_size=config.batch_size,
      padding=config.padding, shuffle_buffer=config.shuffle_buffer,
      deterministic=config.deterministic_data, seed=config.seed)
  shards = data.list_shards(config.input_dir)
  pipelines = strategy.extended._num_workers if hasattr(  # pylint: disable=protected-access
      strategy.extended, "_num_workers") else 1
  per_pipeline = strategy.num_replicas_in_sync // max(1, pipelines)
  consumed = start * config.grad_accum_steps * per_pipeline
  dataset = strategy.distribute_datasets_from_function(
      lambda ctx: data.make_dataset(shards, tokenizer, pipeline, ctx,
                                    skip_batches=consumed))
  iterator = iter(dataset)

  eval_dataset = None
  if config.eval_input_dir:
    eval_pipeline = dataclasses.replace(pipeline, repeat=False, shuffle_buffer=0,
                                        deterministic=True)
    eval_shards = data.list_shards(config.eval_input_dir)
    eval_dataset = strategy.distribute_datasets_from_function(
        lambda ctx: data.make_dataset(eval_shards, tokenizer, eval_pipeline,
                                      ctx).take(config.eval_batches))

  tensorboard_dir = _write_dir(os.path.join(output_dir, TENSORBOARD_DIR),
                               strategy)
  writer = tf.summary.create_file_writer(tensorboard_dir)
  progress = (keras.utils.Progbar(config.max_steps, stateful_metrics=None)
              if chief and sys.stdout.isatty() else None)
  global_batch = config.batch_size * strategy.num_replicas_in_sync * \
      config.grad_accum_steps
  preemption = _Preemption()
  last: Dict[str, float] = {}
  window_start, window_steps, window_tokens = time.perf_counter(), 0, 0.0
  try:
    for step in range(start + 1, config.max_steps + 1):
      logs = distiller.train_step(iterator)
      window_steps += 1
      window_tokens += float(logs["tokens"])
      if step % config.logging_steps == 0 or step == config.max_steps:
        elapsed = time.perf_counter() - window_start
        last = {k: float(v) for k, v in logs.items() if k != "tokens"}
        last.update(step=step, step_time_s=elapsed / window_steps,
                    seq_per_s=global_batch * window_steps / elapsed,
                    tokens_per_s=window_tokens / elapsed,
                    skipped_steps=int(distiller.skipped_steps.numpy()))
        with writer.as_default(step=step):
          for key, value in last.items():
            if key != "step":
              tf.summary.scalar(key, value)
        if progress is not None:
          progress.update(step, [(k, last[k]) for k in ("loss", "learning_rate")])
        else:
          print(_format_logs(step, last), flush=True)
        window_start, window_steps, window_tokens = time.perf_counter(), 0, 0.0
      if eval_dataset is not None and config.eval_every and \
          step % config.eval_every == 0:
        totals, count = {}, 0
        for batch in eval_dataset:
          for key, value in distiller.eval_step(batch).items():
            totals[key] = totals.get(key, 0.0) + float(value)
          count += 1
        means = {key: value / max(1, count) for key, value in totals.items()}
        with writer.as_default(step=step):
          for key, value in means.items():
            tf.summary.scalar(f"eval/{key}", value)
        last["eval_loss"] = means.get("loss", 0.0)
        print(f"eval step {step} | loss {last['eval_loss']:.6g}", flush=True)
      if step % config.save_steps == 0 or step == config.max_steps:
        _save(distiller, manager, step, config, strategy)
      stop = preemption.requested or (
          config.exit_after_steps and step - start >= config.exit_after_steps)
      if stop and step < config.max_steps:
        logging.warning("%s: checkpoint at step %d, exiting; the same command "
                        "resumes", "SIGTERM" if preemption.requested else
                        "--exit_after_steps", step)
        if step % config.save_steps:
          manager.save(checkpoint_number=step)
        break
  finally:
    preemption.restore()
    writer.close()
    if not chief:
      for private_dir in (checkpoint_dir, tensorboard_dir):
        shutil.rmtree(private_dir, ignore_errors=True)
  return last


def _save(distiller: Distiller, manager, step: int,
          config: config_lib.DistillConfig, strategy) -> None:
  manager.save(checkpoint_number=step)
  if _is_chief(strategy):
    distiller.export_student(os.path.join(config.output_dir, f"model_{step}"),
                             config.teacher_model_name_or_path)
