"""Tests of tf_minilm.losses against an independent float64 NumPy implementation."""

import itertools
import re

import numpy as np
import tensorflow as tf

from tf_minilm import losses

# Tiny odd shapes: batch 3, seq 7; teacher 4 heads x 6 (hidden 24), student
# 2 heads x 6 (hidden 12). R=3 divides both; R=4 is the teacher's own head count.
B, L = 3, 7
T_HEADS, T_DIM, S_HEADS, S_DIM = 4, 6, 2, 6


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_kl_rows(t_scores, s_scores):
  log_p, log_q = _np_log_softmax(t_scores), _np_log_softmax(s_scores)
  return (np.exp(log_p) * (log_p - log_q)).sum(-1)


def numpy_loss(s_qkv, t_qkv, real, r, alpha, beta, mode):
  """docs/method.md's loss, written from the formula with einsum in float64."""
  real = real.astype(np.float64)                     # [B, L]
  strict = mode == "strict"
  key_bias = (1.0 - real) * -1e4                     # [B, L], on key positions
  total = 0.0
  for s, t in zip(s_qkv, t_qkv):
    per_model = []
    for x in (t, s):
      b, h, l, d = x.shape
      x = x.astype(np.float64).transpose(0, 2, 1, 3).reshape(b, l, r, h * d // r)
      per_model.append((x, 1.0 / np.sqrt(h * d // r)))
    (tx, tc), (sx, sc) = per_model
    # token-token [B, R, L(query), L(key)]
    tt_t = np.einsum("bqrd,bkrd->brqk", tx, tx) * tc + key_bias[:, None, None, :]
    tt_s = np.einsum("bqrd,bkrd->brqk", sx, sx) * sc + key_bias[:, None, None, :]
    tt_w = real[:, None, :] if strict else 1.0
    token = (_np_kl_rows(tt_t, tt_s) * tt_w).sum()
    # head-head [B, L, R, R]
    hh_w = real[:, :, None] if strict else 1.0
    head = (_np_kl_rows(np.einsum("blrd,blsd->blrs", tx, tx) * tc,
                        np.einsum("blrd,blsd->blrs", sx, sx) * sc) * hh_w).sum()
    # sample-sample [L, R, B(query), B(key)]
    ss_t = np.einsum("blrd,clrd->lrbc", tx, tx) * tc
    ss_s = np.einsum("blrd,clrd->lrbc", sx, sx) * sc
    ss_w = 1.0
    if strict:
      bias = key_bias.T[:, None, None, :]            # [L, 1, 1, B(key)]
      ss_t, ss_s = ss_t + bias, ss_s + bias
      ss_w = real.T[:, None, :]                       # [L, 1, B(query)]
    sample = (_np_kl_rows(ss_t, ss_s) * ss_w).sum()
    total += (1 - alpha - beta) * token + alpha * head + beta * sample
  rows = real.sum() if strict else real.size
  return total / (r * rows)


def _random_case(seed, scale=1.0):
  rng = np.random.default_rng(seed)
  s = [rng.normal(size=(B, S_HEADS, L, S_DIM)).astype(np.float32) * scale
       for _ in range(3)]
  t = [rng.normal(size=(B, T_HEADS, L, T_DIM)).astype(np.float32) * scale
       for _ in range(3)]
  lengths = np.array([7, 4, 2])
  real = np.arange(L)[None, :] < lengths[:, None]
  return s, t, real


class MultiRelationLossTest(tf.test.TestCase):

  def _loss(self, s, t, real, r, alpha, beta, mode, **kwargs):
    return losses.multi_relation_loss(
        [tf.constant(x) for x in s], [tf.constant(x) for x in t],
        tf.constant(real), r, alpha, beta, mode, **kwargs)

  def test_matches_numpy_for_each_term_mixture_mode_and_relation_heads(self):
    s, t, real = _random_case(0)
    worst = 0.0
    for (alpha, beta), mode, r in itertools.product(
        [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.3, 0.5)],
        losses.MASK_MODES, [3, 4, 12]):
      with self.subTest(alpha=alpha, beta=beta, mode=mode, r=r):
        got = self._loss(s, t, real, r, alpha, beta, mode).total.numpy()
        want = numpy_loss(s, t, real, r, alpha, beta, mode)
        worst = max(worst, abs(got - want) / abs(want))
        self.assertLess(abs(got - want) / abs(want), 1e-5)
    print(f"\nmax relative error vs float64 NumPy: {worst:.3g}")

  def test_chunked_evaluation_matches_single_chunk(self):
    s, t, real = _random_case(1)
    for mode in losses.MASK_MODES:
      whole = self._loss(s, t, real, 3, 0.2, 0.5, mode)
      # 50 elements: chunks of 1 along every leading axis, with N padding.
      tiny = self._loss(s, t, real, 3, 0.2, 0.5, mode, max_chunk_elements=50)
      self.assertAllClose(whole.total, tiny.total, rtol=1e-6)

  def test_terms_are_normalised_and_sum_to_total(self):
    s, t, real = _random_case(2)
    out = self._loss(s, t, real, 3, 0.25, 0.5, "reference")
    self.assertLen(out.terms, 9)
    weights = losses.relation_weights(0.25, 0.5)
    rebuilt = sum(weights[k.split("/")[1]] * v for k, v in out.terms.items())
    self.assertAllClose(rebuilt, out.total, rtol=1e-6)

  def test_zero_weight_terms_are_not_computed(self):
    s, t, real = _random_case(3)
    out = self._loss(s, t, real, 3, 0.0, 1.0, "reference")
    self.assertEqual(sorted(out.terms),
                     ["key/sample_sample", "query/sample_sample",
                      "value/sample_sample"])
    graph = tf.function(lambda *a: losses.multi_relation_loss(
        a[:3], a[3:6], a[6], 3, 0.0, 1.0).total).get_concrete_function(
            *[tf.constant(x) for x in s + t], tf.constant(real)).graph
    # One chunk loop per Q/K/V: nothing of the other two relations.
    loops = [op for op in graph.get_operations()
             if op.type in ("While", "StatelessWhile")]
    self.assertLen(loops, 3)

  def test_gradient_matches_finite_differences_of_numpy(self):
    rng = np.random.default_rng(4)
    s = [rng.normal(size=(2, 2, 3, 2)) for _ in range(3)]
    t = [rng.normal(size=(2, 2, 3, 4)) for _ in range(3)]
    real = np.array([[True, True, True], [True, True, False]])
    for mode, (alpha, beta) in itertools.product(
        losses.MASK_MODES, [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.2, 0.3)]):
      with self.subTest(mode=mode, alpha=alpha, beta=beta):
        s_vars = [tf.Variable(x, dtype=tf.float32) for x in s]
        with tf.GradientTape() as tape:
          loss = losses.multi_relation_loss(
              s_vars, [tf.constant(x, tf.float32) for x in t], real, 2, alpha,
              beta, mode, max_chunk_elements=8).total
        grads = tape.gradient(loss, s_vars)
        eps = 1e-6
        for which in range(3):
          numeric = np.zeros_like(s[which])
          for index in np.ndindex(*s[which].shape):
            plus = [x.copy() for x in s]
            minus = [x.copy() for x in s]
            plus[which][index] += eps
            minus[which][index] -= eps
            numeric[index] = (numpy_loss(plus, t, real, 2, alpha, beta, mode) -
                              numpy_loss(minus, t, real, 2, alpha, beta, mode)
                              ) / (2 * eps)
          self.assertAllClose(grads[which], numeric, atol=2e-5, rtol=1e-3)

  def test_teacher_gets_no_gradient(self):
    s, t, real = _random_case(5)
    t_vars = [tf.Variable(x) for x in t]
    with tf.GradientTape() as tape:
      loss = losses.multi_relation_loss(s, t_vars, real, 3, 0.3, 0.3).total
    for g in tape.gradient(loss, t_vars):
      self.assertTrue(g is None or not np.any(g.numpy()))

  def test_strict_mode_ignores_padded_values_reference_mode_does_not(self):
    s, t, real = _random_case(6)
    noise = np.random.default_rng(7)
    s2 = [np.where(real[:, None, :, None], x,
                   noise.normal(size=x.shape).astype(np.float32) * 5) for x in s]
    t2 = [np.where(real[:, None, :, None], x,
                   noise.normal(size=x.shape).astype(np.float32) * 5) for x in t]
    for relation, (alpha, beta) in (("token_token", (0.0, 0.0)),
                                    ("head_head", (1.0, 0.0)),
                                    ("sample_sample", (0.0, 1.0))):
      with self.subTest(relation=relation):
        strict = self._loss(s, t, real, 3, alpha, beta, "strict").total
        strict2 = self._loss(s2, t2, real, 3, alpha, beta, "strict").total
        self.assertAllClose(strict, strict2, rtol=1e-6)
        # The reference keeps padded query rows (token-token) and does not mask
        # head-head or sample-sample at all, so padded values leak into the loss.
        ref = self._loss(s, t, real, 3, alpha, beta, "reference").total
        ref2 = self._loss(s2, t2, real, 3, alpha, beta, "reference").total
        self.assertGreater(abs(float(ref - ref2)), 1e-4)

  def test_strict_mode_does_not_depend_on_extra_padding(self):
    s, t, real = _random_case(8)
    pad = lambda x: np.pad(x, [(0, 0), (0, 0), (0, 5), (0, 0)])
    longer = np.pad(real, [(0, 0), (0, 5)])
    short = self._loss(s, t, real, 3, 0.2, 0.3, "strict").total
    long = self._loss([pad(x) for x in s], [pad(x) for x in t], longer, 3, 0.2,
                      0.3, "strict").total
    self.assertAllClose(short, long, rtol=1e-6)

  def test_token_token_is_invariant_to_sample_permutation(self):
    s, t, real = _random_case(9)
    order = [2, 0, 1]
    base = self._loss(s, t, real, 3, 0.0, 0.0, "reference").total
    shuffled = self._loss([x[order] for x in s], [x[order] for x in t],
                          real[order], 3, 0.0, 0.0, "reference").total
    self.assertAllClose(base, shuffled, rtol=1e-6)

  def test_token_ids_work_as_the_mask(self):
    s, t, real = _random_case(10)
    ids = np.where(real, 17, 0).astype(np.int32)
    self.assertAllClose(self._loss(s, t, real, 3, 0.1, 0.6, "strict").total,
                        self._loss(s, t, ids, 3, 0.1, 0.6, "strict").total)

  def test_half_precision_inputs_give_finite_values_and_gradients(self):
    s, t, real = _random_case(11, scale=8.0)
    real[2] = False  # a fully padded sample
    for dtype, mode in itertools.product((tf.float16, tf.bfloat16),
                                         losses.MASK_MODES):
      with self.subTest(dtype=dtype.name, mode=mode):
        s_vars = [tf.Variable(tf.cast(x, dtype)) for x in s]
        with tf.GradientTape() as tape:
          out = losses.multi_relation_loss(
              s_vars, [tf.cast(x, dtype) for x in t], real, 3, 0.3, 0.3, mode)
        self.assertEqual(out.total.dtype, tf.float32)
        self.assertTrue(np.isfinite(out.total.numpy()))
        for g in tape.gradient(out.total, s_vars):
          self.assertEqual(g.dtype, dtype)
          self.assertTrue(np.all(np.isfinite(g.numpy())))

  def test_inside_xla_and_with_unknown_shapes(self):
    s, t, real = _random_case(12)
    want = numpy_loss(s, t, real, 3, 0.2, 0.5, "reference")

    def loss_and_grad(*args):
      with tf.GradientTape() as tape:
        tape.watch(args[:3])
        loss = losses.multi_relation_loss(args[:3], args[3:6], args[6], 3, 0.2,
                                          0.5, max_chunk_elements=100).total
      return loss, tape.gradient(loss, args[:3])

    eager_loss, eager_grads = loss_and_grad(
        *[tf.constant(x) for x in s + t], tf.constant(real))
    specs = ([tf.TensorSpec([None, S_HEADS, None, S_DIM])] * 3 +
             [tf.TensorSpec([None, T_HEADS, None, T_DIM])] * 3 +
             [tf.TensorSpec([None, None], tf.bool)])
    for fn in (tf.function(loss_and_grad, input_signature=specs),
               tf.function(loss_and_grad, jit_compile=True)):
      loss, grads = fn(*[tf.constant(x) for x in s + t], tf.constant(real))
      self.assertLess(abs(loss.numpy() - want) / want, 1e-5)
      for g, eg in zip(grads, eager_grads):
        self.assertAllClose(g, eg, atol=1e-6, rtol=1e-5)

  def test_invalid_arguments_raise_clear_errors(self):
    s, t, real = _random_case(13)
    cases = [
        (dict(r=5), "num_relation_heads=5 must divide the hidden size of both "
                    "models (student 12, teacher 24)"),
        (dict(r=8), "does not divide the student hidden size 12"),
        (dict(alpha=-0.1), "alpha must be a finite number >= 0"),
        (dict(beta=float("nan")), "beta must be a finite number >= 0"),
        (dict(alpha=0.6, beta=0.5), "alpha + beta must be <= 1"),
        (dict(mode="loose"), "mask_mode must be one of"),
    ]
    for kwargs, message in cases:
      args = dict(r=3, alpha=0.0, beta=0.0, mode="reference") | kwargs
      with self.subTest(**kwargs):
        with self.assertRaisesRegex(ValueError, re.escape(message)):
          self._loss(s, t, real, args["r"], args["alpha"], args["beta"],
                     args["mode"])



class EmbeddingLossTest(tf.test.TestCase):

  def test_cosine_and_mse_match_numpy(self):
    rng = np.random.default_rng(5)
    student = rng.normal(size=(3, 11)).astype(np.float32)
    teacher = rng.normal(size=(3, 11)).astype(np.float32) * 4.0
    cosine = (student * teacher).sum(1) / (
        np.linalg.norm(student, axis=1) * np.linalg.norm(teacher, axis=1))
    self.assertAllClose(losses.embedding_loss(student, teacher, "cosine"),
                        np.mean(1.0 - cosine), rtol=1e-6)
    self.assertAllClose(losses.embedding_loss(student, teacher, "mse"),
                        np.mean((student - teacher) ** 2), rtol=1e-6)
    # Cosine ignores lengths, MSE does not.
    self.assertAllClose(
        losses.embedding_loss(student * 3.0, teacher, "cosine"),
        losses.embedding_loss(student, teacher, "cosine"), rtol=1e-6)
    self.assertAllClose(losses.embedding_loss(teacher, teacher, "cosine"), 0.0,
                        atol=1e-6)
    with self.assertRaisesRegex(ValueError, "one of .'cosine', 'mse'.*'l1'"):
      losses.embedding_loss(student, teacher, "l1")


if __name__ == "__main__":
  tf.test.main()
