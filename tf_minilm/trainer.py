"""The run every training task shares: distribution, the optimizer step, the
checkpoint, the run directory's lifecycle and the loop.

A task (distillation, fine-tuning) supplies what differs (`Task`): its
models, their loss, inputs, evaluation and export. The `Trainer` owns the
rest: the `TrainStep` (optimizer, loss scaling) built from the shared part of
the config, the dropout RNG states and the checkpoint, the lock and the
stored config of the run directory, and the loop that checkpoints, logs,
evaluates, saves and stops.

  per replica (optionally XLA):  loss -> scaled gradients, summed over
                                 `grad_accum_steps` micro-batches
  per replica:                   all-reduce (sum) of gradients and logged values
  cross-replica:                 unscale, finite check, global-norm clip, AdamW
                                 update, or a skipped step on overflow

Gradients are clipped and checked after the all-reduce, so N replicas train as
one replica on the same global batch (Keras' LossScaleOptimizer checks one
replica's gradients and clips each replica's before the sum; `model.fit` also
fails under MultiWorkerMirroredStrategy in Keras 3.15).

Outcomes of `Trainer.run`: finished; stopped early by SIGTERM/SIGINT or
`exit_after_steps` after writing a checkpoint, to be resumed by rerunning
(`RunResult.finished` False, EXIT_STOPPED_EARLY = 75 for CLIs); diverged
(DivergedError, exit code 3); the disk filled up or another write failed
(RunError, exit code 1). Nothing half-written is left in any case.
"""

import abc
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from absl import logging
import keras
import tensorflow as tf

from tf_minilm import cli
from tf_minilm import config as config_lib
from tf_minilm import errors
from tf_minilm import io_utils
from tf_minilm import layout as layout_lib
from tf_minilm import optimization

INITIAL_LOSS_SCALE = 2.0 ** 15
LOSS_SCALE_GROWTH_STEPS = 2000
EXIT_STOPPED_EARLY = errors.EXIT_STOPPED_EARLY
# After SIGTERM/SIGINT, how long a training step may still run before the
# process exits without a new checkpoint (it may wait for input that never
# comes).
PREEMPTION_GRACE_S = 30.0


class RunError(errors.CommandError, RuntimeError):
  """Training stopped for a reason other than its flags; nothing half-written."""
  exit_code = 1


class DivergedError(RunError):
  """Non-finite gradients or weights: nothing non-finite is saved."""
  exit_code = 3


# ---------------------------------------------------------------- distribution

def make_strategy(device: str, strategy: str, cpu_replicas: int = 1,
                  tpu: str = "") -> tf.distribute.Strategy:
  """The strategy, after making the right devices visible.

  Only physical devices are queried before the strategy exists: listing
  logical devices starts the TF runtime, after which collective ops
  (MultiWorkerMirroredStrategy) can no longer be configured.
  """
  if device == "cpu":
    tf.config.set_visible_devices([], "GPU")
  elif device == "gpu" and not tf.config.list_physical_devices("GPU"):
    raise config_lib.ConfigError("device", "gpu", "no GPU is visible to "
                                 "TensorFlow; use --device=cpu to run on the CPU")
  if cpu_replicas > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
  if strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if strategy == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
      d.name for d in tf.config.list_logical_devices("CPU")]
  if strategy == "one_device":
    return tf.distribute.OneDeviceStrategy(devices[0])
  return tf.distribute.MirroredStrategy(devices)


def worker_name(strategy) -> Optional[str]:
  """None for the chief (worker 0 without a chief job), else "<type>_<id>"."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return None
  jobs = resolver.cluster_spec().as_dict()
  chief = resolver.task_type in ("chief", None) or (
      resolver.task_type == "worker" and resolver.task_id == 0 and
      "chief" not in jobs)
  return None if chief else f"{resolver.task_type}_{resolver.task_id}"


def input_pipelines(strategy) -> int:
  return getattr(strategy.extended, "_num_workers", 1) or 1


# ---------------------------------------------------------------- the step

@dataclasses.dataclass(frozen=True)
class StepLoss:
  """What a task's loss function returns for one replica's batch.

  total: the scalar to minimise (a mean over the batch); terms: scalars to
  log; examples and tokens: real sequences and tokens in the batch;
  computed_tokens: positions the model computes, padding included (float32).
  """
  total: tf.Tensor
  terms: Dict[str, tf.Tensor]
  examples: tf.Tensor
  tokens: tf.Tensor
  computed_tokens: tf.Tensor


LossFn = Callable[[Dict[str, tf.Tensor], bool], StepLoss]


@dataclasses.dataclass(frozen=True)
class OptimizationConfig:
  learning_rate: float
  warmup_steps: int
  total_steps: int
  weight_decay: float
  adam_epsilon: float
  max_grad_norm: float
  grad_accum_steps: int = 1
  dynamic_loss_scale: bool = False
  jit: bool = False

  @classmethod
  def from_config(cls, config: config_lib.TrainingConfig, warmup_steps: int,
                  total_steps: int) -> "OptimizationConfig":
    return cls(learning_rate=config.learning_rate, warmup_steps=warmup_steps,
               total_steps=total_steps, weight_decay=config.weight_decay,
               adam_epsilon=config.adam_epsilon,
               max_grad_norm=config.max_grad_norm,
               grad_accum_steps=config.grad_accum_steps,
               dynamic_loss_scale=config.dynamic_loss_scale, jit=config.jit)


class TrainStep(tf.Module):
  """One optimizer step of `loss_fn` over `grad_accum_steps` micro-batches on
  every replica, and the state to checkpoint with it. Create it in the
  strategy's scope."""

  def __init__(self, strategy: tf.distribute.Strategy, loss_fn: LossFn,
               trainable: Sequence, config: OptimizationConfig):
    super().__init__(name="train_step")
    self.strategy = strategy
    self.loss_fn = loss_fn
    self.trainable = list(trainable)
    self.config = config
    self.schedule = optimization.WarmupLinearDecay(
        config.learning_rate, config.warmup_steps, config.total_steps)
    self.optimizer = optimization.AdamW(self.trainable, config.weight_decay,
                                        epsilon=config.adam_epsilon)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.loss_scale = tf.Variable(
        INITIAL_LOSS_SCALE if config.dynamic_loss_scale else 1.0,
        trainable=False, name="loss_scale")
    self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name="good_steps")
    self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                     name="skipped_steps")
    self.replica_gradients = (
        tf.function(self._replica_gradients, jit_compile=True) if config.jit
        else self._replica_gradients)
    self._train = tf.function(self._train_step)
    self._evaluate = tf.function(self._eval_step)

  def checkpoint_items(self) -> Dict[str, tf.Module]:
    return dict(optimizer=self.optimizer, step=self.step,
                loss_scale=self.loss_scale, good_steps=self.good_steps,
                skipped_steps=self.skipped_steps)

  def __call__(self, iterator) -> Dict[str, tf.Tensor]:
    """One step from `iterator` (a distributed iterator); returns the logged
    values (loss and terms averaged over the global batch)."""
    return self._train(iterator)

  def evaluate(self, batch) -> Dict[str, tf.Tensor]:
    """Sums over the global batch of each logged value times the batch's
    examples, and `examples`: divide totals by examples for a mean in which a
    short last batch counts by its size."""
    return self._evaluate(batch)

  # ------------------------------------------------------------ replica side

  def _replica_gradients(self, batches: List[Dict[str, tf.Tensor]]):
    """Summed scaled gradients and mean logged values over this replica's
    micro-batches; the loss is divided by replicas x micro-batches so that the
    cross-replica sum of gradients is the gradient of the global mean."""
    denominator = float(self.strategy.num_replicas_in_sync * len(batches))
    grads = [tf.zeros_like(v) for v in self.trainable]
    logs = None
    for batch in batches:
      with tf.GradientTape() as tape:
        out = self.loss_fn(batch, True)
        scaled = out.total * (self.loss_scale / denominator)
      step_grads = tape.gradient(scaled, self.trainable)
      grads = [g + tf.cast(s, g.dtype) for g, s in zip(grads, step_grads)]
      values = {k: v / denominator for k, v in dict(out.terms,
                                                    loss=out.total).items()}
      values.update(tokens=out.tokens, examples=out.examples,
                    computed_tokens=out.computed_tokens)
      logs = values if logs is None else {k: logs[k] + values[k] for k in logs}
    return grads, logs

  def _replica_step(self, batches):
    """All-reduced, unscaled, clipped gradients (identical on every replica)."""
    grads, logs = self.replica_gradients(batches)
    context = tf.distribute.get_replica_context()
    grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
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
    # The schedule follows iterations, skipped ones included (as the
    # reference's scheduler does).
    learning_rate = self.schedule(self.step)
    logs["learning_rate"] = learning_rate

    def apply():
      self.optimizer.apply(grads, learning_rate)
      if self.config.dynamic_loss_scale:
        grow = tf.equal(self.good_steps, LOSS_SCALE_GROWTH_STEPS - 1)
        self.loss_scale.assign(tf.where(grow, self.loss_scale * 2.0,
                                        self.loss_scale))
        self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64),
                                        self.good_steps + 1))
      return tf.constant(True)

    def skip():
      self.skipped_steps.assign_add(1)
      self.good_steps.assign(0)
      if self.config.dynamic_loss_scale:
        self.loss_scale.assign(tf.maximum(self.loss_scale * 0.5, 1.0))
      return tf.constant(False)

    logs["applied"] = tf.cond(logs.pop("finite"), apply, skip)
    logs["loss_scale"] = self.loss_scale.read_value()
    self.step.assign_add(1)
    return logs

  def _eval_step(self, batch):
    def replica(batch):
      out = self.loss_fn(batch, False)
      sums = {k: v * out.examples for k, v in dict(out.terms,
                                                   loss=out.total).items()}
      sums.update(examples=out.examples, tokens=out.tokens,
                  computed_tokens=out.computed_tokens)
      return tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, sums)
    result = self.strategy.run(replica, args=(batch,))
    return {k: self.strategy.experimental_local_results(v)[0]
            for k, v in result.items()}


def weights_are_finite(weights: Sequence) -> bool:
  return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(w))
                             for w in weights
                             if keras.backend.is_float_dtype(w.dtype)]))


# ---------------------------------------------------------------- the loop

@dataclasses.dataclass(frozen=True)
class Schedule:
  """How long a task trains and when: optimizer steps, warm-up steps, steps
  between checkpoints (each also exported) and between evaluations (0:
  none), and the examples of one step (what throughput counts)."""
  max_steps: int
  warmup_steps: int
  save_steps: int
  eval_every: int
  global_batch: int


class Task(abc.ABC):
  """What a training task supplies; the `Trainer` owns the rest.

  `prepare()` runs outside the strategy's scope (reading whole checkpoints
  once), then `build()` creates the models inside it; the other members are
  used after both.
  """

  schedule: Schedule

  def prepare(self) -> None:
    """Work before the models exist, after the run's seed is set (which
    clears TensorFlow's kernel caches: make tokenizers here or later)."""

  @abc.abstractmethod
  def build(self) -> None:
    """Creates the models (in the strategy's scope)."""

  @abc.abstractmethod
  def trainable_weights(self) -> Sequence:
    """The weights the optimizer updates."""

  @abc.abstractmethod
  def model_weights(self) -> Sequence:
    """The weights that must be finite to be saved."""

  @abc.abstractmethod
  def checkpointed(self) -> Dict[str, tf.Module]:
    """The models to checkpoint, by their names in the checkpoint."""

  @abc.abstractmethod
  def dropout_models(self) -> Sequence[keras.Model]:
    """Models whose dropout seed states are checkpointed: restoring them makes
    a resumed run draw the masks of an uninterrupted one."""

  @abc.abstractmethod
  def loss(self, batch: Dict[str, tf.Tensor], training: bool) -> StepLoss:
    """One replica's loss (a `LossFn`)."""

  @abc.abstractmethod
  def train_dataset(self, start_step: int
                    ) -> tf.distribute.DistributedDataset:
    """The distributed training data from `start_step` on (resume)."""

  @abc.abstractmethod
  def export(self, model_dir: str) -> None:
    """Writes the model into `model_dir`, atomically."""

  def evaluate(self, step: int, train_step: "TrainStep"
               ) -> Optional[Dict[str, float]]:
    """Named metrics of the model at `step` (every `schedule.eval_every`
    steps), or None where the task has nothing to evaluate."""
    del step, train_step
    return None


@dataclasses.dataclass(frozen=True)
class RunResult:
  """`finished`: reached max_steps; otherwise stopped early with a checkpoint
  at `step` (rerun the same command to resume)."""
  finished: bool
  step: int
  logs: Dict[str, float]


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
    os.write(cli.real_stderr(), (
        f"{self.signal_name}: {reason}; exiting without a new checkpoint. The "
        "same command resumes from the last one.\n").encode())
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


def format_logs(step: int, logs: Dict[str, float]) -> str:
  keys = ["loss"] + sorted(k for k in logs if "/" in k) + [
      "learning_rate", "loss_scale", "grad_norm", "seq_per_s", "tokens_per_s",
      "padding_share", "step_time_s", "skipped_steps"]
  parts = [f"step {step}"]
  for key in keys:
    if key in logs:
      value = logs[key]
      parts.append(f"{key} {value:.6g}" if isinstance(value, float) else
                   f"{key} {value}")
  return " | ".join(parts)


def write_failure(error: Exception, where: str, what: str) -> str:
  """One line for a failed write of `what` under `where` (shutil.Error
  carries the errors of a copy as text, without an errno)."""
  text = str(error)
  if isinstance(error, OSError) and error.errno is not None:
    reason = io_utils.describe_os_error(error, where)
  elif "No space left" in text or "Disk quota" in text:
    reason = f"no space left on {where}"
  else:
    reason = f"cannot write to {where}: {text.splitlines()[0] if text else error}"
  return (f"{reason} while writing the {what}; it was not written (the "
          "previous checkpoints and exports are intact). Free space and run "
          "the same command to resume.")


class _Saver:
  """Checkpoints and exports of one run; never of non-finite weights."""

  def __init__(self, task: Task, checkpoint: tf.train.Checkpoint,
               step: tf.Variable, layout: layout_lib.RunLayout,
               worker: Optional[str], keep: int):
    self.task = task
    self.checkpoint = checkpoint
    self.step = step
    self.layout = layout
    self.chief = worker is None
    self.manager = tf.train.CheckpointManager(
        checkpoint, layout.private(layout.checkpoint_dir, worker),
        max_to_keep=keep)

  def _check_in_place(self) -> None:
    try:
      self.layout.check_in_place()
    except io_utils.LockLostError as e:
      raise RunError(str(e)) from None

  def restore(self) -> int:
    if self.manager.latest_checkpoint:
      self.checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()
      logging.info("resumed from %s", self.manager.latest_checkpoint)
    return int(self.step.numpy())

  def save(self, step: int, export: bool = True) -> None:
    self._check_in_place()
    if not weights_are_finite(self.task.model_weights()):
      raise DivergedError(
          f"the model's weights are non-finite at step {step}; not saving "
          f"them. The last checkpoint is {self.manager.latest_checkpoint}; "
          "check --learning_rate and --max_grad_norm")
    try:
      self.manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as e:
      self.layout.remove_partial_checkpoints()
      raise RunError(write_failure(e, self.manager.directory,
                                    f"checkpoint of step {step}")) from None
    if export:
      self.export(step)

  def export(self, step: int, only_if_missing: bool = False) -> None:
    model_dir = self.layout.model_dir(step)
    if not self.chief or (only_if_missing and os.path.isdir(model_dir)):
      return
    self._check_in_place()
    try:
      self.task.export(model_dir)
    except (OSError, tf.errors.OpError) as e:
      raise RunError(write_failure(e, self.layout.output_dir,
                                    f"export {model_dir}")) from None


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
  """Keras' global mixed-precision policy `policy` while the block runs
  (models are built under it), float32 again after."""
  keras.mixed_precision.set_global_policy(policy)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


class Trainer:
  """Owns one run of a `Task`: seeds, builds the task's models and the
  `TrainStep` from the shared part of `config`, checkpoints them with the
  dropout RNG states, and runs the run directory's lifecycle (`run`).
  Create it under the run's `precision_policy`."""

  def __init__(self, task: Task, strategy: tf.distribute.Strategy,
               config: config_lib.TrainingConfig):
    self.task = task
    self.strategy = strategy
    self.config = config
    # First: seeding clears TensorFlow's kernel caches, and with them the
    # resources kernels own (tf-text's SentencePiece model), so tokenizers
    # are made after it (in `prepare` or later).
    keras.utils.set_random_seed(config.seed)
    task.prepare()
    schedule = task.schedule
    with strategy.scope():
      task.build()
      self.train_step = TrainStep(
          strategy, task.loss, task.trainable_weights(),
          OptimizationConfig.from_config(config, schedule.warmup_steps,
                                         schedule.max_steps))
    rng_states = [v.value for model in task.dropout_models()
                  for v in model.variables if v.name == "seed_generator_state"]
    self.checkpoint = tf.train.Checkpoint(
        **task.checkpointed(), rng_states=rng_states,
        **self.train_step.checkpoint_items())

  def run(self, layout: layout_lib.RunLayout, program: str,
          stored_config: str, on_start: Optional[Callable[[], None]] = None,
          on_finish: Optional[Callable[[], Dict]] = None) -> RunResult:
    """Locks `layout` for `program` and stores `stored_config` there (chief),
    calls `on_start` (chief), trains to the end or an early stop, and on a
    finished run calls `on_finish` (chief; its result becomes the logs)
    before the lock is released."""
    chief = worker_name(self.strategy) is None
    try:
      lock = layout.prepare(program) if chief else None
    except OSError as e:
      raise RunError(io_utils.describe_os_error(e, layout.output_dir)
                     ) from None
    try:
      if chief:
        layout.write_config(stored_config)
        if on_start is not None:
          on_start()
      result = self.fit(layout)
      if chief and result.finished and on_finish is not None:
        result = dataclasses.replace(result, logs=on_finish())
      return result
    finally:
      if lock is not None:
        lock.release()

  def fit(self, layout: layout_lib.RunLayout) -> RunResult:
    """Trains to the schedule's `max_steps`, resuming from the newest
    checkpoint.

    The chief has prepared (locked) `layout`; non-chief workers write
    checkpoints and events into private copies that are removed here.
    """
    task, config, schedule = self.task, self.config, self.task.schedule
    worker = worker_name(self.strategy)
    saver = _Saver(task, self.checkpoint, self.train_step.step, layout, worker,
                   config.keep_checkpoints)
    start = saver.restore()
    if start and (start % schedule.save_steps == 0 or
                  start >= schedule.max_steps):
      # A kill between the checkpoint and its export: export what is owed.
      saver.export(start, only_if_missing=True)
    iterator = iter(task.train_dataset(start))
    tensorboard_dir = layout.private(layout.tensorboard_dir, worker)
    writer = tf.summary.create_file_writer(tensorboard_dir)
    progress = (keras.utils.Progbar(schedule.max_steps, stateful_metrics=None)
                if worker is None and sys.stdout.isatty() else None)
    preemption = _Preemption()
    last: Dict[str, float] = {}
    step, skipped_in_a_row = start, 0
    window_start, window_steps = time.perf_counter(), 0
    window_tokens = window_computed = 0.0
    try:
      for step in range(start + 1, schedule.max_steps + 1):
        with preemption.step():
          logs = self.train_step(iterator)
          applied = bool(logs["applied"])
        skipped_in_a_row = 0 if applied else skipped_in_a_row + 1
        if skipped_in_a_row >= config.max_consecutive_skipped_steps:
          raise DivergedError(
              f"{skipped_in_a_row} steps in a row up to step {step} had "
              f"non-finite gradients (loss {float(logs['loss']):.6g}, loss "
              f"scale {float(logs['loss_scale']):g}); stopping without saving "
              "them. Check --learning_rate, the input model's weights and "
              "--amp_dtype (bfloat16 does not overflow); the last checkpoint "
              f"is {saver.manager.latest_checkpoint}")
        window_steps += 1
        window_tokens += float(logs["tokens"])
        window_computed += float(logs["computed_tokens"])
        if step % config.logging_steps == 0 or step == schedule.max_steps:
          elapsed = time.perf_counter() - window_start
          last = {k: float(v) for k, v in logs.items()
                  if k not in ("tokens", "examples", "computed_tokens")}
          last.update(
              step=step, step_time_s=elapsed / window_steps,
              seq_per_s=schedule.global_batch * window_steps / elapsed,
              tokens_per_s=window_tokens / elapsed,
              padding_share=1.0 - window_tokens / max(1.0, window_computed),
              skipped_steps=int(self.train_step.skipped_steps.numpy()))
          with writer.as_default(step=step):
            for key, value in last.items():
              if key != "step":
                tf.summary.scalar(key, value)
          if progress is not None:
            progress.update(step, [(k, last[k])
                                   for k in ("loss", "learning_rate")])
          else:
            print(format_logs(step, last), flush=True)
          window_start, window_steps = time.perf_counter(), 0
          window_tokens = window_computed = 0.0
        means = (task.evaluate(step, self.train_step)
                 if schedule.eval_every and step % schedule.eval_every == 0
                 else None)
        if means is not None:
          with writer.as_default(step=step):
            for key, value in means.items():
              tf.summary.scalar(f"eval/{key}", value)
          last.update({f"eval_{k}": v for k, v in means.items()})
          print(f"eval step {step} | " + " | ".join(
              f"{k} {v:.6g}" for k, v in sorted(means.items())), flush=True)
        if step % schedule.save_steps == 0 or step == schedule.max_steps:
          saver.save(step)
        stop = preemption.requested or (
            config.exit_after_steps and
            step - start >= config.exit_after_steps)
        if stop and step < schedule.max_steps:
          logging.warning("%s: checkpoint at step %d, exiting; the same "
                          "command resumes", preemption.signal_name or
                          "--exit_after_steps", step)
          if step % schedule.save_steps:
            saver.save(step, export=False)
          return RunResult(finished=False, step=step, logs=last)
    finally:
      preemption.restore()
      writer.close()
      if worker is not None:
        for private_dir in (saver.manager.directory, tensorboard_dir):
          shutil.rmtree(private_dir, ignore_errors=True)
    return RunResult(finished=True, step=step, logs=last)


def loss_means(train_step: TrainStep,
               dataset: tf.distribute.DistributedDataset) -> Dict[str, float]:
  """The means over every example of `dataset` of the loss and its terms
  (batches weighted by their real examples)."""
  totals: Dict[str, float] = {}
  for batch in dataset:
    for key, value in train_step.evaluate(batch).items():
      totals[key] = totals.get(key, 0.0) + float(value)
  examples = totals.pop("examples", 0.0)
  totals.pop("tokens", None)
  totals.pop("computed_tokens", None)
  return {key: value / max(1.0, examples) for key, value in totals.items()}
