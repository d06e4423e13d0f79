"""The shared trainer: a run's lifecycle in process (saves, exports,
evaluation, resume, divergence), evaluation weighting, signal handling."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import io_utils
from tf_minilm import layout as layout_lib
from tf_minilm import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RegressionTask(trainer.Task):
  """A tiny task for the trainer: dropout then a dense layer fitted to a
  fixed target on 7 examples of 5 features (batch 3, every epoch reshuffled
  with a seed, so a resumed run must skip to the same batch)."""

  def __init__(self, max_steps=6, save_steps=2, eval_every=0,
               infinite_bias=False):
    self.schedule = trainer.Schedule(max_steps=max_steps, warmup_steps=1,
                                     save_steps=save_steps,
                                     eval_every=eval_every, global_batch=3)
    rng = np.random.default_rng(0)
    self.features = rng.normal(size=(7, 5)).astype(np.float32)
    self.targets = (self.features @ rng.normal(size=(5, 1))).astype(
        np.float32)
    self.infinite_bias = infinite_bias
    self.exported = []
    self.evaluated = []

  def build(self):
    inputs = keras.Input((5,), name="x")
    outputs = keras.layers.Dense(1, name="dense")(
        keras.layers.Dropout(0.3, name="dropout")(inputs))
    self.model = keras.Model(inputs, outputs)
    if self.infinite_bias:
      self.model.get_layer("dense").bias.assign([np.inf])

  def trainable_weights(self):
    return self.model.trainable_weights

  def model_weights(self):
    return self.model.weights

  def checkpointed(self):
    return {"regressor": self.model}

  def dropout_models(self):
    return [self.model]

  def loss(self, batch, training):
    error = self.model(batch["x"], training=training) - batch["y"]
    examples = tf.cast(tf.shape(error)[0], tf.float32)
    return trainer.StepLoss(
        total=tf.reduce_mean(tf.square(error)),
        terms={"abs_error": tf.reduce_mean(tf.abs(error))},
        examples=examples, tokens=examples, computed_tokens=examples)

  def train_dataset(self, start_step):
    dataset = tf.data.Dataset.from_tensor_slices(
        {"x": self.features, "y": self.targets}).shuffle(
            7, seed=1, reshuffle_each_iteration=True).repeat().batch(
                3, drop_remainder=True).skip(start_step)
    return tf.distribute.get_strategy().experimental_distribute_dataset(
        dataset)

  def export(self, model_dir):
    with io_utils.atomic_directory(model_dir, overwrite=True) as staging:
      np.save(os.path.join(staging, "weights.npy"),
              self.model.get_layer("dense").kernel.numpy())
    self.exported.append(os.path.basename(model_dir))

  def evaluate(self, step, train_step):
    self.evaluated.append(step)
    return trainer.loss_means(train_step, tf.distribute.get_strategy(
        ).experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(
            {"x": self.features, "y": self.targets}).batch(3)))


class TrainerTest(tf.test.TestCase):
  """`Trainer.run` in this process: lifecycle, saves, resume, divergence."""

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp(prefix="trainer_test_")
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

  def config(self, **overrides):
    values = dict(output_dir=os.path.join(self.root, "run"),
                  learning_rate=0.05, device="cpu", logging_steps=1,
                  keep_checkpoints=2, seed=7)
    values.update(overrides)
    return config_lib.TrainingConfig(**values)

  def run_task(self, task, config, **kwargs):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    run_trainer = trainer.Trainer(task, strategy, config)
    layout = layout_lib.RunLayout(config.output_dir, "run_config.json")
    return run_trainer.run(layout, "test", '{"stored": true}', **kwargs)

  def test_a_finished_run_saves_exports_evaluates_and_unlocks(self):
    task, started = RegressionTask(eval_every=3), []
    config = self.config()
    result = self.run_task(task, config, on_start=lambda: started.append(1),
                           on_finish=lambda: {"best": 1.0})
    self.assertTrue(result.finished)
    self.assertEqual(result.step, 6)
    self.assertEqual(result.logs, {"best": 1.0})
    self.assertEqual(started, [1])
    self.assertEqual(task.exported, ["model_2", "model_4", "model_6"])
    self.assertEqual(task.evaluated, [3, 6])
    run_dir = config.output_dir
    with open(os.path.join(run_dir, "run_config.json")) as f:
      self.assertEqual(f.read(), '{"stored": true}')
    self.assertEqual(tf.train.latest_checkpoint(
        os.path.join(run_dir, "checkpoints")),
                     os.path.join(run_dir, "checkpoints", "ckpt-6"))
    # The lock was released: the same directory runs again (to nothing
    # more).
    again = self.run_task(RegressionTask(), config)
    self.assertTrue(again.finished)

  def test_a_stopped_run_resumes_to_the_uninterrupted_weights(self):
    whole = RegressionTask()
    self.run_task(whole, self.config(output_dir=os.path.join(self.root, "a")))
    keras.backend.clear_session()
    config = self.config(output_dir=os.path.join(self.root, "b"),
                         exit_after_steps=3)
    first = RegressionTask()
    stopped = self.run_task(first, config, on_finish=lambda: {"best": 1.0})
    self.assertFalse(stopped.finished)
    self.assertEqual(stopped.step, 3)
    self.assertNotEqual(stopped.logs, {"best": 1.0})
    self.assertEqual(first.exported, ["model_2"])
    keras.backend.clear_session()
    resumed = RegressionTask()
    self.assertTrue(self.run_task(resumed, config).finished)
    self.assertEqual(resumed.exported, ["model_4", "model_6"])
    # Dropout masks and data order continue where they stopped.
    self.assertAllEqual(resumed.model.get_layer("dense").kernel,
                        whole.model.get_layer("dense").kernel)

  def test_non_finite_weights_are_never_saved(self):
    # A model that starts broken: every step is skipped (its gradients are
    # not finite), and its first save refuses.
    task = RegressionTask(infinite_bias=True)
    config = self.config(max_consecutive_skipped_steps=100)
    with self.assertRaisesRegex(trainer.DivergedError,
                                "non-finite at step 2; not saving"):
      self.run_task(task, config)
    self.assertEqual(task.exported, [])
    self.assertIsNone(tf.train.latest_checkpoint(
        os.path.join(config.output_dir, "checkpoints")))

  def test_a_run_of_skipped_steps_is_divergence(self):
    task = RegressionTask()
    task.targets[:] = np.nan
    with self.assertRaisesRegex(trainer.DivergedError,
                                "2 steps in a row up to step 2 had non-finite"):
      self.run_task(task, self.config(max_consecutive_skipped_steps=2))

  def test_an_output_dir_that_cannot_be_created_is_a_run_error(self):
    blocker = os.path.join(self.root, "file")
    with open(blocker, "w") as f:
      f.write("x")
    with self.assertRaisesRegex(trainer.RunError, "file"):
      self.run_task(RegressionTask(), self.config(
          output_dir=os.path.join(blocker, "run")))


class EvaluateTest(tf.test.TestCase):

  def test_a_short_last_batch_counts_by_its_examples(self):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    values = np.arange(1, 6, dtype=np.float32)  # batches [1 2] [3 4] [5]
    with strategy.scope():
      weight = tf.Variable(1.0)

      def loss(batch, training):
        del training
        x = batch["x"] * weight
        return trainer.StepLoss(
            total=tf.reduce_mean(x), terms={"double": tf.reduce_mean(2 * x)},
            examples=tf.cast(tf.size(x), tf.float32),
            tokens=tf.cast(tf.size(x), tf.float32),
            computed_tokens=tf.cast(tf.size(x), tf.float32))
      step = trainer.TrainStep(strategy, loss, [weight],
                               trainer.OptimizationConfig(
                                   learning_rate=1e-3, warmup_steps=0,
                                   total_steps=10, weight_decay=0.0,
                                   adam_epsilon=1e-8, max_grad_norm=1.0))
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices({"x": values}).batch(2))
    means = trainer.loss_means(step, dataset)
    # The mean over the 5 examples, not over the 3 batch means (3.33).
    self.assertAllClose(means, {"loss": 3.0, "double": 6.0})


class WriteFailureTest(tf.test.TestCase):

  def test_a_full_disk_during_a_copy_is_one_line(self):
    import errno  # pylint: disable=g-import-not-at-top
    import shutil  # pylint: disable=g-import-not-at-top
    copy_error = shutil.Error([("model_3/hf/model.safetensors",
                                "best_model/hf/model.safetensors",
                                "[Errno 28] No space left on device")])
    for error in (copy_error, OSError(errno.ENOSPC, "No space left")):
      message = trainer.write_failure(error, "/runs/x", "best_model/")
      self.assertStartsWith(message, "no space left on /runs/x while writing "
                            "the best_model/; it was not written")
      self.assertNotIn("Errno", message)


class PreemptionTest(tf.test.TestCase):

  def test_a_signal_stops_a_step_that_waits_for_data_forever(self):
    # The main thread blocks in a TensorFlow op that never returns, as a step
    # whose input never comes; Python signal handlers cannot run there.
    script = (
        "import tensorflow as tf\n"
        "from tf_minilm import trainer\n"
        "preemption = trainer._Preemption(grace_s=2)\n"
        "queue = tf.queue.FIFOQueue(1, tf.int32)\n"
        "print('waiting', flush=True)\n"
        "with preemption.step():\n"
        "  queue.dequeue()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    self.assertEqual(proc.stdout.readline().strip(), "waiting")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    self.assertEqual(proc.returncode, 75)
    self.assertIn("SIGTERM: the training step did not finish within 2 s",
                  stderr)

  def test_a_signal_between_steps_only_sets_the_request(self):
    preemption = trainer._Preemption(grace_s=0.5)  # pylint: disable=protected-access
    try:
      with preemption.step():
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt
      time.sleep(1.0)  # past the grace period, outside a step: no exit
      self.assertTrue(preemption.requested)
      self.assertEqual(preemption.signal_name, "SIGINT")
    finally:
      preemption.restore()


if __name__ == "__main__":
  tf.test.main()
