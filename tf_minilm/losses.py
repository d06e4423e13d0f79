"""Multi-relation self-attention distillation losses (MiniLMv2 / PP-MiniLM).

Shapes follow google-research/bert's naming:
  B = batch size, L = (padded) sequence length, H = attention heads of one model,
  d = head size of one model, R = relation heads, d' = H * d / R.

For one of Q, K, V the teacher tensor `t` and the student tensor `s` are
`[B, H, L, d]` (projection output with bias, split into heads, unscaled). Each is
regrouped into R relation heads and compared through three relations:

  token-token  [B, R, L, L]  per sample and relation head  (MiniLMv2)
  head-head    [B, L, R, R]  per sample and position
  sample-sample[L, R, B, B]  per position and relation head (PP-MiniLM)

Each relation is `softmax(x x^T / sqrt(d'))` over its last axis and the loss is
`KL(teacher || student)` summed over every row. All of it runs in float32.

Masking modes:
  "reference"  what PaddleNLP's PP-MiniLM computes: padded *keys* are masked with
               -1e4 in the token-token term only; padded query rows take part in it,
               and the head-head and sample-sample terms are not masked at all (the
               reference adds a mask that is constant along the softmax axis, which
               is a no-op). The total is divided by R * L * B.
  "strict"     padded positions take no part anywhere: padded keys are masked in the
               token-token and sample-sample terms and padded rows are dropped from
               all three. The total is divided by R * (number of real tokens), which
               equals R * L * B when nothing is padded, so the value does not depend
               on how far a batch is padded (longest row or length buckets).

Memory: every relation is evaluated in chunks along its leading axis inside a
sequential loop, with an analytic gradient that recomputes each chunk, so no full
`[N, M, K, K]` score tensor is ever held (at the recipe's shapes one such tensor
is 512 MiB in float32, and autodiff would keep several per model).

The optional embedding term (`embedding_loss`) compares sentence embeddings
`[B, E]` of student and teacher instead: not a relation, no masking of its
own (the pooling already ignores padding).
"""

import dataclasses
import math
from typing import Dict, Optional, Sequence

import tensorflow as tf

MASK_MODES = ("reference", "strict")
EMBEDDING_LOSSES = ("cosine", "mse")
QKV_NAMES = ("query", "key", "value")

# The reference's additive mask value; finite so fully padded rows stay finite.
MASK_BIAS = -1e4
# Largest score chunk (elements) evaluated at once: 16 Mi float32 = 64 MiB.
DEFAULT_MAX_CHUNK_ELEMENTS = 1 << 24


@dataclasses.dataclass(frozen=True)
class RelationLossOutput:
  """Result of `multi_relation_loss`.

  Attributes:
    total: scalar float32, the loss to minimise.
    terms: scalar float32 per computed term, keyed "query/token_token" etc., each
      unweighted and divided by the same normaliser as `total`, so
      total = sum over q/k/v of the weighted terms.
  """
  total: tf.Tensor
  terms: Dict[str, tf.Tensor]


def relation_weights(alpha: float, beta: float) -> Dict[str, float]:
  """Weights of the three relations; raises ValueError on an invalid pair."""
  for name, value in (("alpha", alpha), ("beta", beta)):
    if not (isinstance(value, (int, float)) and math.isfinite(value)) or value < 0:
      raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
  if alpha + beta > 1.0 + 1e-12:
    raise ValueError(
        f"alpha + beta must be <= 1 (the token-token weight is 1 - alpha - beta), "
        f"got alpha={alpha} + beta={beta} = {alpha + beta}")
  return {"token_token": max(0.0, 1.0 - alpha - beta), "head_head": float(alpha),
          "sample_sample": float(beta)}


def check_relation_heads(num_relation_heads: int, student_hidden: int,
                         teacher_hidden: int) -> None:
  """Raises ValueError unless R divides both models' hidden sizes."""
  if not isinstance(num_relation_heads, int) or num_relation_heads <= 0:
    raise ValueError(
        f"num_relation_heads must be a positive integer, got {num_relation_heads!r}")
  bad = [f"{who} hidden size {size}" for who, size in
         (("student", student_hidden), ("teacher", teacher_hidden))
         if size % num_relation_heads]
  if bad:
    raise ValueError(
        f"num_relation_heads={num_relation_heads} must divide the hidden size of "
        f"both models (student {student_hidden}, teacher {teacher_hidden}); it does "
        f"not divide the {' and the '.join(bad)}")


def padding_mask_from(ids_or_mask: tf.Tensor, pad_id: int = 0) -> tf.Tensor:
  """Boolean `[B, L]` mask, True at real tokens, from token ids or a mask."""
  ids_or_mask = tf.convert_to_tensor(ids_or_mask)
  if ids_or_mask.dtype == tf.bool:
    return ids_or_mask
  return tf.not_equal(ids_or_mask, tf.cast(pad_id, ids_or_mask.dtype))


def split_relation_heads(x: tf.Tensor, num_relation_heads: int) -> tf.Tensor:
  """`[B, H, L, d]` -> `[B, L, R, H*d/R]` (float32)."""
  x = tf.cast(x, tf.float32)
  heads, head_size = x.shape[1], x.shape[3]
  if heads is None or head_size is None:
    raise ValueError(f"heads and head size must be static, got shape {x.shape}")
  hidden = heads * head_size
  batch, length = tf.shape(x)[0], tf.shape(x)[2]
  x = tf.transpose(x, [0, 2, 1, 3])
  return tf.reshape(x, [batch, length, num_relation_heads,
                        hidden // num_relation_heads])


def _dim(x: tf.Tensor, axis: int):
  """Static size of `axis` when known, else the dynamic one."""
  static = x.shape[axis]
  return static if static is not None else tf.shape(x)[axis]


def _chunk_kl(t_x, s_x, key_bias, row_weight):
  """KL rows of one chunk.

  Args:
    t_x: `[n, M, K, dt]` teacher; s_x: `[n, M, K, ds]` student.
    key_bias: `[n, 1|M, 1, K]` additive, or None. row_weight: `[n, 1|M, K]` or None.
  Returns:
    (weighted KL sum scalar, teacher probs `[n, M, K, K]`, student log-probs).
  """
  t_scores = tf.matmul(t_x, t_x, transpose_b=True) * (
      1.0 / math.sqrt(t_x.shape[-1]))
  s_scores = tf.matmul(s_x, s_x, transpose_b=True) * (
      1.0 / math.sqrt(s_x.shape[-1]))
  if key_bias is not None:
    t_scores += key_bias
    s_scores += key_bias
  t_logp = tf.nn.log_softmax(t_scores)
  s_logp = tf.nn.log_softmax(s_scores)
  t_p = tf.exp(t_logp)
  rows = tf.reduce_sum(t_p * (t_logp - s_logp), axis=-1)
  if row_weight is not None:
    rows *= row_weight
  return tf.reduce_sum(rows), t_p, s_logp


def relation_kl_sum(teacher_x: tf.Tensor, student_x: tf.Tensor,
                    key_bias: Optional[tf.Tensor] = None,
                    row_weight: Optional[tf.Tensor] = None,
                    max_chunk_elements: int = DEFAULT_MAX_CHUNK_ELEMENTS
                    ) -> tf.Tensor:
  """Sum over rows of KL(softmax(T) || softmax(S)), T = t t^T / sqrt(dt) + bias.

  The teacher is a constant (no gradient flows into it). Evaluated in chunks of
  the leading axis N so that at most `max_chunk_elements` scores exist per model.

  Args:
    teacher_x: `[N, M, K, dt]` float32.
    student_x: `[N, M, K, ds]` float32.
    key_bias: `[N, 1|M, 1, K]` float32 added to both models' scores, or None.
    row_weight: `[N, 1|M, K]` float32 weight of each row's KL, or None (all 1).
    max_chunk_elements: chunk budget for one `[n, M, K, K]` score tensor.
  Returns:
    Scalar float32.
  """
  n_total, m, k = (_dim(student_x, axis) for axis in range(3))
  if all(isinstance(size, int) for size in (n_total, m, k)):
    chunk = min(max(1, max_chunk_elements // max(1, m * k * k)), max(1, n_total))
  else:
    chunk = tf.minimum(tf.maximum(1, max_chunk_elements // tf.maximum(1, m * k * k)),
                       tf.maximum(1, n_total))
  num_chunks = (n_total + chunk - 1) // chunk
  padded = num_chunks * chunk

  def pad_and_split(x):
    if x is None:
      return None
    x = tf.pad(x, [[0, padded - n_total]] + [[0, 0]] * (x.shape.rank - 1))
    return tf.reshape(x, tf.concat([[num_chunks, chunk], tf.shape(x)[1:]], 0))

  def take(chunks, i):
    return None if chunks is None else chunks[i]

  @tf.custom_gradient
  def kl_sum(t_x, s_x):
    t_chunks, s_chunks = pad_and_split(t_x), pad_and_split(s_x)
    bias_chunks, weight_chunks = pad_and_split(key_bias), pad_and_split(row_weight)
    if weight_chunks is None:
      # Zero-padded rows give identical uniform softmaxes (KL 0), but a weight
      # keeps that exact whatever the bias does.
      weight_chunks = pad_and_split(tf.ones(
          tf.stack([n_total, 1, k]), tf.float32))

    def forward_body(i, acc):
      value, _, _ = _chunk_kl(t_chunks[i], s_chunks[i], take(bias_chunks, i),
                              weight_chunks[i])
      return i + 1, acc + value

    _, total = tf.while_loop(lambda i, _: i < num_chunks, forward_body,
                             (tf.constant(0), tf.constant(0.0)),
                             parallel_iterations=1)

    def grad(upstream):
      s_scale = 1.0 / math.sqrt(s_x.shape[-1])

      def backward_body(i, grads):
        s_chunk = s_chunks[i]
        _, t_p, s_logp = _chunk_kl(t_chunks[i], s_chunk, take(bias_chunks, i),
                                   weight_chunks[i])
        # d KL(p||q) / d student scores = q - p, per row.
        d_scores = (tf.exp(s_logp) - t_p) * weight_chunks[i][..., None] * upstream
        d_x = tf.matmul(d_scores + tf.linalg.matrix_transpose(d_scores),
                        s_chunk) * s_scale
        return i + 1, grads.write(i, d_x)

      grads = tf.TensorArray(tf.float32, size=num_chunks,
                             element_shape=s_chunks.shape[1:])
      _, grads = tf.while_loop(lambda i, _: i < num_chunks, backward_body,
                               (tf.constant(0), grads), parallel_iterations=1)
      d_student = tf.reshape(grads.stack(),
                             tf.concat([[padded], tf.shape(s_x)[1:]], 0))
      return tf.zeros_like(t_x), d_student[:n_total]

    return total, grad

  return kl_sum(tf.stop_gradient(teacher_x), student_x)


def qkv_relation_terms(teacher: tf.Tensor, student: tf.Tensor,
                       padding_mask: tf.Tensor, num_relation_heads: int,
                       weights: Dict[str, float], mask_mode: str = "reference",
                       max_chunk_elements: int = DEFAULT_MAX_CHUNK_ELEMENTS
                       ) -> Dict[str, tf.Tensor]:
  """Unnormalised KL sums of each relation with a non-zero weight, for one of Q/K/V.

  Args:
    teacher: `[B, Ht, L, dt]`. student: `[B, Hs, L, ds]`.
    padding_mask: `[B, L]` bool, True at real tokens.
    num_relation_heads: R.
    weights: output of `relation_weights`; zero-weight relations are skipped.
    mask_mode: "reference" or "strict" (see module docstring).
  Returns:
    {relation name: scalar float32 sum of KL over the relation's rows}.
  """
  t = split_relation_heads(teacher, num_relation_heads)  # [B, L, R, dt']
  s = split_relation_heads(student, num_relation_heads)  # [B, L, R, ds']
  real = tf.cast(padding_mask, tf.float32)  # [B, L]
  key_pad_bias = (1.0 - real) * MASK_BIAS   # [B, L]
  strict = mask_mode == "strict"
  kl = lambda tx, sx, bias, weight: relation_kl_sum(
      tx, sx, bias, weight, max_chunk_elements)
  terms = {}
  if weights["token_token"]:
    to_brl = lambda x: tf.transpose(x, [0, 2, 1, 3])  # [B, R, L, d']
    terms["token_token"] = kl(
        to_brl(t), to_brl(s), key_pad_bias[:, None, None, :],
        real[:, None, :] if strict else None)
  if weights["head_head"]:
    # [B, L, R, d'] already; the mask is constant along each R x R softmax.
    terms["head_head"] = kl(t, s, None, real[:, :, None] if strict else None)
  if weights["sample_sample"]:
    to_lrb = lambda x: tf.transpose(x, [1, 2, 0, 3])  # [L, R, B, d']
    real_lb = tf.transpose(real)  # [L, B]
    terms["sample_sample"] = kl(
        to_lrb(t), to_lrb(s),
        tf.transpose(key_pad_bias)[:, None, None, :] if strict else None,
        real_lb[:, None, :] if strict else None)
  return terms


def multi_relation_loss(student_qkv: Sequence[tf.Tensor],
                        teacher_qkv: Sequence[tf.Tensor],
                        padding_mask: tf.Tensor,
                        num_relation_heads: int,
                        alpha: float,
                        beta: float,
                        mask_mode: str = "reference",
                        max_chunk_elements: int = DEFAULT_MAX_CHUNK_ELEMENTS
                        ) -> RelationLossOutput:
  """PP-MiniLM multi-relation loss over Q, K and V (docs/method.md).

  Args:
    student_qkv: (Q, K, V) of the student's distillation layer, each
      `[B, Hs, L, ds]`, any float dtype.
    teacher_qkv: (Q, K, V) of the teacher's distillation layer, `[B, Ht, L, dt]`.
    padding_mask: `[B, L]` bool (True at real tokens) or int token ids (0 = pad).
    num_relation_heads: R; must divide Hs*ds and Ht*dt.
    alpha: head-head weight. beta: sample-sample weight. Token-token gets
      1 - alpha - beta; zero-weight relations are not computed.
    mask_mode: "reference" (default, PaddleNLP's behaviour) or "strict".
    max_chunk_elements: memory budget of one score chunk (see module docstring).
  Returns:
    RelationLossOutput with the float32 total and per-term values.
  """
  if mask_mode not in MASK_MODES:
    raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
  weights = relation_weights(alpha, beta)
  if len(student_qkv) != 3 or len(teacher_qkv) != 3:
    raise ValueError("student_qkv and teacher_qkv must each hold (Q, K, V), got "
                     f"{len(student_qkv)} and {len(teacher_qkv)} tensors")
  student_qkv = [tf.convert_to_tensor(x) for x in student_qkv]
  teacher_qkv = [tf.convert_to_tensor(x) for x in teacher_qkv]
  for who, tensors in (("student", student_qkv), ("teacher", teacher_qkv)):
    for name, x in zip(QKV_NAMES, tensors):
      if x.shape.rank != 4:
        raise ValueError(f"{who} {name} must be [batch, heads, seq, head_dim], "
                         f"got shape {x.shape}")
  s_shape, t_shape = student_qkv[0].shape, teacher_qkv[0].shape
  check_relation_heads(num_relation_heads, s_shape[1] * s_shape[3],
                       t_shape[1] * t_shape[3])
  for axis, what in ((0, "batch"), (2, "sequence length")):
    if (s_shape[axis] is not None and t_shape[axis] is not None
        and s_shape[axis] != t_shape[axis]):
      raise ValueError(f"student and teacher {what} differ: {s_shape} vs {t_shape}")
  mask = padding_mask_from(padding_mask)
  if mask_mode == "strict":
    rows = tf.reduce_sum(tf.cast(mask, tf.float32))
  else:
    rows = tf.cast(tf.reduce_prod(tf.shape(mask)), tf.float32)
  normaliser = float(num_relation_heads) * tf.maximum(rows, 1.0)

  total = tf.constant(0.0)
  terms = {}
  for name, s, t in zip(QKV_NAMES, student_qkv, teacher_qkv):
    sums = qkv_relation_terms(t, s, mask, num_relation_heads, weights, mask_mode,
                              max_chunk_elements)
    for relation, value in sums.items():
      value = value / normaliser
      terms[f"{name}/{relation}"] = value
      total += weights[relation] * value
  return RelationLossOutput(total=total, terms=terms)


def embedding_loss(student: tf.Tensor, teacher: tf.Tensor,
                   kind: str) -> tf.Tensor:
  """Distance of the student's sentence embeddings from the teacher's.

  Args:
    student, teacher: `[B, E]` (before any L2 normalisation of the head).
    kind: "cosine": the batch mean of 1 - cos(student, teacher), blind to
      lengths; "mse": the mean over batch and E of squared differences
      (sentence-transformers' MSELoss), lengths included.
  Returns:
    scalar float32.
  """
  student = tf.cast(student, tf.float32)
  teacher = tf.cast(teacher, tf.float32)
  if kind == "cosine":
    cosine = tf.reduce_sum(
        tf.math.l2_normalize(student, -1, epsilon=1e-24) *
        tf.math.l2_normalize(teacher, -1, epsilon=1e-24), -1)
    return tf.reduce_mean(1.0 - cosine)
  if kind == "mse":
    return tf.reduce_mean(tf.square(student - teacher))
  raise ValueError(f"embedding loss must be one of {EMBEDDING_LOSSES}, got "
                   f"{kind!r}")
