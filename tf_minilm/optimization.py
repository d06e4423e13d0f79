"""AdamW and the learning-rate schedule of the recipe, applied in cross-replica
context on already all-reduced gradients.

Keras' optimizers all-reduce (and clip) inside `apply` per replica and need a
merge call that cannot sit in a `tf.cond`; the distiller reduces, clips and
checks gradients itself and must skip a whole step on overflow, so the update is
written here (PaddlePaddle's AdamW, which is what the reference trains with).

The learning rate follows iterations, as the reference's scheduler steps once
per iteration even when its loss scaler skips the update; Adam's bias
correction follows applied updates (`AdamW.iterations`), as Paddle's does.
"""

from typing import Sequence

import keras
import tensorflow as tf

NO_DECAY = ("bias", "gamma", "beta")


class WarmupLinearDecay:
  """Linear warm-up to `peak` over `warmup_steps`, then linear decay to 0 at
  `total_steps` (PaddleNLP's LinearDecayWithWarmup)."""

  def __init__(self, peak: float, warmup_steps: int, total_steps: int):
    self.peak = peak
    self.warmup_steps = warmup_steps
    self.total_steps = total_steps

  def __call__(self, step: tf.Tensor) -> tf.Tensor:
    step = tf.cast(step, tf.float32)
    warmup = step / max(1, self.warmup_steps)
    decay = (self.total_steps - step) / max(1, self.total_steps -
                                            self.warmup_steps)
    factor = tf.where(step < self.warmup_steps, warmup, tf.maximum(decay, 0.0))
    return self.peak * factor


def _underlying(variable):
  """The tf.Variable (or distributed variable) behind a Keras variable."""
  return variable.value if isinstance(variable, keras.Variable) else variable


class AdamW(tf.Module):
  """Decoupled weight decay Adam, as `paddle.optimizer.AdamW`:

    p <- p - lr * wd * p                  (only where decay applies)
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps sqrt(1 - b2^t))

  Create it inside the strategy scope so its slots are mirrored.
  """

  def __init__(self, variables: Sequence, weight_decay: float,
               beta_1: float = 0.9, beta_2: float = 0.999,
               epsilon: float = 1e-8):
    super().__init__(name="adamw")
    self._strategy = tf.distribute.get_strategy()
    self._variables = [_underlying(v) for v in variables]
    names = [getattr(v, "path", v.name) for v in variables]
    self._decays = [not any(n in name.split("/")[-1] for n in NO_DECAY)
                    for name in names]
    self.weight_decay = weight_decay
    self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
    self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name="iterations")
    self.m = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                          name=f"m_{i}") for i, v in enumerate(self._variables)]
    self.v = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                          name=f"v_{i}") for i, v in enumerate(self._variables)]

  def decayed_variable_names(self, variables: Sequence) -> list:
    return [getattr(v, "path", v.name) for v, d in zip(variables, self._decays)
            if d]

  def apply(self, grads: Sequence, learning_rate: tf.Tensor) -> None:
    """One update from gradients (per-replica values or tensors), called in
    cross-replica context."""
    strategy = self._strategy
    lr = tf.cast(learning_rate, tf.float32)
    t = tf.cast(self.iterations + 1, tf.float32)
    correction2 = tf.sqrt(1.0 - tf.pow(self.beta_2, t))
    step_size = lr * correction2 / (1.0 - tf.pow(self.beta_1, t))
    eps = self.epsilon * correction2
    b1, b2, wd = self.beta_1, self.beta_2, self.weight_decay

    def update(var, grad, m, v, decay):
      grad = tf.cast(grad, var.dtype)
      if decay and wd:
        var.assign_sub(var * (lr * wd))
      m.assign(b1 * m + (1.0 - b1) * grad)
      v.assign(b2 * v + (1.0 - b2) * tf.square(grad))
      var.assign_sub(step_size * m / (tf.sqrt(v) + eps))

    # Every device updates its own copy from its own (identical) gradient, so
    # nothing is broadcast after the all-reduce.
    for var, grad, m, v, decay in zip(self._variables, grads, self.m, self.v,
                                      self._decays):
      local_grads = strategy.experimental_local_results(grad)
      copies = zip(_copies(var), local_grads, _copies(m), _copies(v))
      for var_copy, grad_copy, m_copy, v_copy in copies:
        with tf.device(var_copy.device):
          update(var_copy, grad_copy, m_copy, v_copy, decay)
    self.iterations.assign_add(1)


def _copies(variable):
  """The per-device copies of a mirrored variable (itself if not distributed)."""
  if isinstance(variable, tf.distribute.DistributedValues):
    return variable.values
  return (variable,)
