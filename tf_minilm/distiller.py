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

Outcomes of `run` (and exit codes of bin/distill): finished (0); bad flags or
inputs, found before anything is written (ConfigError, 2); stopped early by
SIGTERM/SIGINT or --exit_after_steps after writing a checkpoint, to be resumed
by the same command (`RunResult.finished` False, EXIT_STOPPED_EARLY = 75);
training diverged (DivergedError, 3); the disk filled up or another failure
while writing (RunError, 1).
"""

import contextlib
import dataclasses
import glob
import os
import shutil
import signal
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

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
# EX_TEMPFAIL: not finished, a checkpoint was written, rerun to resume.
EXIT_STOPPED_EARLY = 75
# After SIGTERM/SIGINT, how long the step in flight may take before the process
# exits without a new checkpoint (it may be waiting for input that never comes).
PREEMPTION_GRACE_S = 30.0


class RunError(RuntimeError):
  """Training stopped for a reason other than its flags; nothing half-written."""
  exit_code = 1


class DivergedError(RunError):
  """Non-finite gradients or weights: nothing non-finite is saved."""
  exit_code = 3


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
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=config.tpu)
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


def _load(flag: str, path: str, **kwargs) -> modeling.Encoder:
  """An encoder from the checkpoint a flag names; problems name that flag."""
  try:
    return convert.load_encoder(path, **kwargs)
  except convert.CheckpointError as e:
    raise config_lib.ConfigError(flag, path, str(e)) from None


def build_models(config: config_lib.DistillConfig) -> _Models:
  """Teacher (truncated at its tap, frozen) and student; call inside the scope.

  Broken or non-finite weights raise ConfigError naming the flag."""
  half = config.amp_dtype if config.use_amp else "float32"
  teacher_dtype = half if config.teacher_half_precision else config.amp_policy
  teacher = _load("teacher_model_name_or_path",
                  config.teacher_model_name_or_path,
                  num_layers=config.teacher_layer_index + 1, with_pooler=False,
                  dtype=teacher_dtype, name="teacher")
  teacher.model.trainable = False
  if config.student_init:
    student = _load("student_init", config.student_init,
                    dtype=config.amp_policy, name="student")
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

  def student_is_finite(self) -> bool:
    return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(w))
                               for w in self.models.student.model.weights
                               if keras.backend.is_float_dtype(w.dtype)]))

  def export_student(self, model_dir: str, tokenizer_dir: str) -> None:
    """`model_dir` with the student as Keras and HF files, written atomically."""
    with io_utils.atomic_directory(model_dir, overwrite=True) as staging:
      self.models.student.model.save(os.path.join(staging, STUDENT_KERAS))
      convert.export_hf(self.models.student, os.path.join(staging, STUDENT_HF),
                        tokenizer_dir=tokenizer_dir)
      convert.copy_tokenizer_files(tokenizer_dir, staging)


class _Preemption:
  """SIGTERM/SIGINT -> `requested`, checked between steps (checkpoint, exit).

  A Python signal handler runs only when the main thread returns to Python,
  which never happens while it is blocked in a TensorFlow op (a step waiting
  for input data that does not come). A watcher thread, woken through the
  signal wakeup fd, exits the process with EXIT_STOPPED_EARLY when a training
  step is still running `grace_s` seconds after the signal, or on a second
  signal; the last checkpoint stays the resume point. Checkpointing and
  exporting are never interrupted by the first signal.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)
  POLL_S = 0.2

  def __init__(self, grace_s: float = PREEMPTION_GRACE_S):
    self.requested = False
    self.signal_name: Optional[str] = None
    self._grace_s = grace_s
    self._step_started: Optional[float] = None
    self._closed = threading.Event()
    self._read_fd, self._write_fd = os.pipe()
    os.set_blocking(self._write_fd, False)
    os.set_blocking(self._read_fd, False)
    self._previous_fd = signal.set_wakeup_fd(self._write_fd,
                                             warn_on_full_buffer=False)
    self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    self._watcher = threading.Thread(target=self._watch, daemon=True,
                                     name="preemption-watcher")
    self._watcher.start()

  def _handle(self, signum, frame):
    del frame
    if not self.requested:
      self.signal_name = signal.Signals(signum).name
      self.requested = True

  @contextlib.contextmanager
  def step(self):
    """Marks a training step in flight."""
    self._step_started = time.monotonic()
    try:
      yield
    finally:
      self._step_started = None

  def _exit(self, reason: str) -> None:
    print(f"{self.signal_name}: {reason}; exiting without a new checkpoint. "
          "The same command resumes from the last one.", file=sys.stderr,
          flush=True)
    os._exit(EXIT_STOPPED_EARLY)  # pylint: disable=protected-access

  def _watch(self):
    received, signalled_at = 0, None
    while not self._closed.wait(self.POLL_S):
      try:
        data = os.read(self._read_fd, 64)
      except BlockingIOError:
        data = b""
      for signum in data:
        if signum in self.SIGNALS:
          received += 1
          self._handle(signum, None)
          signalled_at = signalled_at or time.monotonic()
      if received > 1:
        self._exit("a second signal")
      started = self._step_started
      if signalled_at is not None and started is not None and (
          time.monotonic() - max(started, signalled_at) > self._grace_s):
        self._exit(f"the training step did not finish within "
                   f"{self._grace_s:g} s (waiting for input data?)")
    os.close(self._read_fd)

  def restore(self):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    signal.set_wakeup_fd(self._previous_fd)
    self._closed.set()
    self._watcher.join()
    os.close(self._write_fd)


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


@dataclasses.dataclass(frozen=True)
class RunResult:
  """`finished`: reached max_steps; otherwise stopped early with a checkpoint
  at `step` (rerun the same command to resume)."""
  finished: bool
  step: int
  logs: Dict[str, float]


def run(config: config_lib.DistillConfig) -> RunResult:
  """Trains to `config.max_steps`, resuming if checkpoints exist.

  Raises ConfigError (before anything is written), io_utils.LockedError,
  DivergedError or RunError; see the module docstring.
  """
  config_lib.validate(config)
  config_lib.check_resume(config)
  strategy = make_strategy(config)
  keras.utils.set_random_seed(config.seed)
  keras.mixed_precision.set_global_policy(config.amp_policy)
  try:
    return _run(config, strategy)
  finally:
    keras.mixed_precision.set_global_policy("float32")


def _prepare_output_dir(output_dir: str, chief: bool
                        ) -> Optional[io_utils.DirectoryLock]:
  """Creates and locks `output_dir` (chief only) and removes what killed runs
  left: staging of exports and configs, and half-written checkpoints."""
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise RunError(io_utils.describe_os_error(e, output_dir)) from None
  if not chief:
    return None
  lock = io_utils.DirectoryLock(output_dir, "bin/distill").acquire()
  io_utils.remove_stale_staging(output_dir)
  for temp in glob.glob(os.path.join(output_dir, CHECKPOINT_DIR, "*_temp*")):
    shutil.rmtree(temp, ignore_errors=True)
  return lock


def _run(config: config_lib.DistillConfig, strategy) -> RunResult:
  chief = _is_chief(strategy)
  output_dir = config.output_dir
  tokenizer = tokenization.BertTokenizer.from_model_dir(
      config.teacher_model_name_or_path)
  # Loading checks every weight, so a broken checkpoint stops the run before
  # anything is written.
  distiller = Distiller(config, strategy)
  lock = _prepare_output_dir(output_dir, chief)
  try:
    return _train(config, strategy, distiller, tokenizer)
  finally:
    if lock is not None:
      lock.release()


def _train(config: config_lib.DistillConfig, strategy, distiller: Distiller,
           tokenizer: tokenization.BertTokenizer) -> RunResult:
  chief = _is_chief(strategy)
  output_dir = config.output_dir
  if chief:
    config_lib.save(config, output_dir)
  checkpoint_dir = _write_dir(os.path.join(output_dir, CHECKPOINT_DIR), strategy)
  manager = tf.train.CheckpointManager(distiller.checkpoint, checkpoint_dir,
                                       max_to_keep=config.keep_checkpoints)
  if manager.latest_checkpoint:
    distiller.checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    logging.info("resumed from %s at step %d", manager.latest_checkpoint,
                 int(distiller.step.numpy()))
  start = int(distiller.step.numpy())
  if start and (start % config.save_steps == 0 or start >= config.max_steps):
    # A kill between the checkpoint and its export: export what is owed.
    _export(distiller, start, config, strategy, only_if_missing=True)

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
  step, skipped_in_a_row = start, 0
  window_start, window_steps, window_tokens = time.perf_counter(), 0, 0.0
  try:
    for step in range(start + 1, config.max_steps + 1):
      with preemption.step():
        logs = distiller.train_step(iterator)
        applied = bool(logs["applied"])
      skipped_in_a_row = 0 if applied else skipped_in_a_row + 1
      if skipped_in_a_row >= config.max_consecutive_skipped_steps:
        raise DivergedError(
            f"{skipped_in_a_row} steps in a row up to step {step} had "
            f"non-finite gradients (loss {float(logs['loss']):.6g}, loss scale "
            f"{float(logs['loss_scale']):g}); stopping without saving them. "
            "Check --learning_rate, the teacher's weights and --amp_dtype "
            "(bfloat16 does not overflow); the last checkpoint is "
            f"{manager.latest_checkpoint}")
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
                        "resumes", preemption.signal_name or
                        "--exit_after_steps", step)
        if step % config.save_steps:
          _save(distiller, manager, step, config, strategy, export=False)
        return RunResult(finished=False, step=step, logs=last)
  finally:
    preemption.restore()
    writer.close()
    if not _is_chief(strategy):
      for private_dir in (checkpoint_dir, tensorboard_dir):
        shutil.rmtree(private_dir, ignore_errors=True)
  return RunResult(finished=True, step=step, logs=last)


def _save(distiller: Distiller, manager, step: int,
          config: config_lib.DistillConfig, strategy, export: bool = True
          ) -> None:
  """Checkpoint (and export) of `step`; never of non-finite weights."""
  if not distiller.student_is_finite():
    raise DivergedError(
        f"the student's weights are non-finite at step {step}; not saving "
        f"them. The last checkpoint is {manager.latest_checkpoint}; check "
        "--learning_rate and --max_grad_norm")
  try:
    manager.save(checkpoint_number=step)
  except (OSError, tf.errors.OpError) as e:
    for temp in glob.glob(os.path.join(manager.directory, "*_temp*")):
      shutil.rmtree(temp, ignore_errors=True)
    raise RunError(_write_failure(e, manager.directory,
                                  f"checkpoint of step {step}")) from None
  if export:
    _export(distiller, step, config, strategy)


def _export(distiller: Distiller, step: int, config: config_lib.DistillConfig,
            strategy, only_if_missing: bool = False) -> None:
  model_dir = os.path.join(config.output_dir, f"model_{step}")
  if not _is_chief(strategy) or (only_if_missing and os.path.isdir(model_dir)):
    return
  try:
    distiller.export_student(model_dir, config.teacher_model_name_or_path)
  except (OSError, tf.errors.OpError) as e:
    raise RunError(_write_failure(e, config.output_dir,
                                  f"export {model_dir}")) from None


def _write_failure(error: Exception, where: str, what: str) -> str:
  text = str(error)
  if isinstance(error, OSError):
    reason = io_utils.describe_os_error(error, where)
  elif "No space left" in text or "Disk quota" in text:
    reason = f"no space left on {where}"
  else:
    reason = f"cannot write to {where}: {text.splitlines()[0] if text else error}"
  return (f"{reason} while writing the {what}; it was not written (the "
          "previous checkpoints and exports are intact). Free space and run "
          "the same command to resume.")
