"""The shared training loop's pieces: evaluation weighting, signal handling."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from tf_minilm import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    task = trainer.Task(train_step=step, checkpoint=tf.train.Checkpoint(),
                        train_dataset=None, export=None, model_weights=[],
                        eval_dataset=dataset)
    means = trainer.evaluate(task)
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
