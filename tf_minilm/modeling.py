"""BERT-style Transformer encoders whose attention Q/K/V are declared outputs.

Shapes (google-research/bert naming): B batch, L sequence, D hidden size,
H attention heads, d = D / H head size, F feed-forward size.

The layers are written here rather than taken from keras-hub because keras-hub's
`TransformerEncoder` fixes tanh-approximate GELU and hides Q/K/V inside
`CachedMultiHeadAttention`; an exact teacher needs erf-GELU and the distillation
loss needs the projections.

Three functional views share one set of weights:
  `Encoder.model`            inputs -> sequence_output, pooled_output
  `Encoder.inspection_model` inputs -> every layer's hidden states and Q/K/V
  `Encoder.distillation_model(i)`
                             inputs -> Q/K/V of layer i only; the layers above it and
                             layer i's attention product and feed-forward are not
                             in the graph, so they cost nothing (with
                             `sequence_output`, they are: the embedding term
                             needs the last layer).
"""

import dataclasses
import json
import math
from typing import Any, Dict, Optional

import keras
from keras import ops
import tensorflow as tf

ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh")
POSITION_STYLES = ("absolute", "roberta")
# Additive attention mask for padded keys, as in BERT and the PP-MiniLM reference.
ATTENTION_MASK_BIAS = -1e4


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Architecture of a BERT-family encoder (HF `BertConfig` field meanings)."""
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  hidden_act: str = "gelu"
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  initializer_range: float = 0.02
  pad_token_id: int = 0
  # "roberta": HF RoBERTa position ids (real tokens count from pad_token_id + 1).
  position_style: str = "absolute"
  with_pooler: bool = True

  def __post_init__(self):
    positive = ("vocab_size", "hidden_size", "num_layers", "num_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size")
    for name in positive:
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"EncoderConfig.{name} must be a positive integer, "
                         f"got {value!r}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"EncoderConfig.hidden_size={self.hidden_size} is not a "
                       f"multiple of num_heads={self.num_heads}")
    if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"EncoderConfig.hidden_act must be one of {ACTIVATIONS}, "
                       f"got {self.hidden_act!r}")
    if not isinstance(self.position_style, str) or \
        self.position_style not in POSITION_STYLES:
      raise ValueError(f"EncoderConfig.position_style must be one of "
                       f"{POSITION_STYLES}, got {self.position_style!r}")
    for name in ("layer_norm_eps", "hidden_dropout", "attention_dropout",
                 "initializer_range"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or \
          not math.isfinite(value):
        raise ValueError(f"EncoderConfig.{name} must be a finite number, got "
                         f"{value!r}")
    for name in ("hidden_dropout", "attention_dropout"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"EncoderConfig.{name} must be in [0, 1), got "
                         f"{getattr(self, name)!r}")
    if self.layer_norm_eps <= 0:
      raise ValueError(f"EncoderConfig.layer_norm_eps must be > 0, got "
                       f"{self.layer_norm_eps!r}")
    if isinstance(self.pad_token_id, bool) or not isinstance(
        self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
      raise ValueError(f"EncoderConfig.pad_token_id must be an id in [0, "
                       f"{self.vocab_size}), got {self.pad_token_id!r}")
    if not isinstance(self.with_pooler, bool):
      raise ValueError(f"EncoderConfig.with_pooler must be true or false, got "
                       f"{self.with_pooler!r}")

  @property
  def head_size(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def position_offset(self) -> int:
    """Position row of the first token: RoBERTa-style positions count from
    pad_token_id + 1."""
    return self.pad_token_id + 1 if self.position_style == "roberta" else 0

  @property
  def usable_positions(self) -> int:
    """How many token positions the encoder embeds."""
    return self.max_position_embeddings - self.position_offset

  def positions_text(self) -> str:
    """The usable positions and why, for messages."""
    text = f"max_position_embeddings {self.max_position_embeddings}"
    if self.position_offset:
      text += (f", of which RoBERTa-style positions use those after the "
               f"padding id {self.pad_token_id}")
    return f"{self.usable_positions} token positions ({text})"

  def replace(self, **changes) -> "EncoderConfig":
    return dataclasses.replace(self, **changes)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "EncoderConfig":
    return cls.from_dict(json.loads(text))

  @classmethod
  def from_dict(cls, values: Dict[str, Any]) -> "EncoderConfig":
    if not isinstance(values, dict):
      raise ValueError(f"an encoder config must be a JSON object, got "
                       f"{type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown EncoderConfig fields {unknown}; known: "
                       f"{sorted(known)}")
    return cls(**values)


# Student architectures of the PP-MiniLM recipe. The 2-layer, hidden-128 student uses 4 heads
# (head size 32): 12 heads do not divide 128, and 4 keeps the head size of the
# other presets within a factor of two.
STUDENT_PRESETS: Dict[str, Dict[str, Any]] = {
    "ppminilm-6l-768h": dict(num_layers=6, hidden_size=768, num_heads=12,
                             intermediate_size=3072, hidden_act="relu"),
    "ppminilm-4l-256h": dict(num_layers=4, hidden_size=256, num_heads=16,
                             intermediate_size=1024, hidden_act="relu"),
    "ppminilm-2l-128h": dict(num_layers=2, hidden_size=128, num_heads=4,
                             intermediate_size=512, hidden_act="relu"),
    "roberta-6l-768h": dict(num_layers=6, hidden_size=768, num_heads=12,
                            intermediate_size=3072, hidden_act="gelu"),
    "roberta-4l-256h": dict(num_layers=4, hidden_size=256, num_heads=16,
                            intermediate_size=1024, hidden_act="gelu"),
    "roberta-2l-128h": dict(num_layers=2, hidden_size=128, num_heads=4,
                            intermediate_size=512, hidden_act="gelu"),
}


# The activation of each student kind, for depths without a preset.
STUDENT_ACTIVATIONS = {"ppminilm": "relu", "roberta": "gelu"}
STUDENT_SHAPE = ("hidden_size", "num_heads", "intermediate_size")
STUDENT_MAX_POSITIONS = 512


def student_config(model_type: str, num_layers: int, vocab_size: int,
                   **overrides) -> EncoderConfig:
  """The recipe's student of `model_type` ("ppminilm"|"roberta") and depth:
  the preset of that depth, or any depth when `overrides` give the whole
  shape (hidden_size, num_heads, intermediate_size)."""
  candidates = [preset for name, preset in STUDENT_PRESETS.items()
                if name.startswith(f"{model_type}-{num_layers}l-")]
  if len(candidates) == 1:
    values = dict(candidates[0])
  elif (model_type in STUDENT_ACTIVATIONS
        and all(overrides.get(name) for name in STUDENT_SHAPE)):
    values = dict(num_layers=num_layers,
                  hidden_act=STUDENT_ACTIVATIONS[model_type])
  else:
    raise ValueError(
        f"no student preset for model_type={model_type!r} with "
        f"num_layers={num_layers}; presets: {sorted(STUDENT_PRESETS)}; "
        f"another depth needs all of {', '.join(STUDENT_SHAPE)} set")
  values.update(vocab_size=vocab_size,
                max_position_embeddings=STUDENT_MAX_POSITIONS,
                type_vocab_size=2, pad_token_id=0)
  values.update(overrides)
  return EncoderConfig(**values)


def _activation(name: str):
  if name == "relu":
    return keras.activations.relu
  approximate = name in ("gelu_new", "gelu_pytorch_tanh")
  return lambda x: keras.activations.gelu(x, approximate=approximate)


def _dense(units, initializer_range, name, dtype):
  return keras.layers.Dense(
      units, name=name, dtype=dtype,
      kernel_initializer=keras.initializers.RandomNormal(
          stddev=initializer_range))


def _replica_id() -> tf.Tensor:
  context = tf.distribute.get_replica_context()
  replica = 0 if context is None else context.replica_id_in_sync_group
  return tf.cast(replica, tf.int64)


@keras.saving.register_keras_serializable(package="tf_minilm")
class ReplicaDropout(keras.layers.Dropout):
  """`keras.layers.Dropout` whose masks differ between the replicas of a
  tf.distribute strategy.

  A seed generator's state is mirrored, so Keras' Dropout draws the same mask
  on every replica; the reference seeds each GPU with `seed + rank` instead.
  Replica `i` adds `i` to the first seed word, so replica 0 draws exactly what
  `keras.layers.Dropout` draws (and what a single-replica run draws).
  """

  def call(self, inputs, training=False):
    if not training or self.rate == 0:
      return inputs
    seed = self.seed_generator.next()
    seed = seed + tf.cast(tf.stack([_replica_id(), 0]), seed.dtype)
    # As Keras' TF backend: stateless ops take int32 seeds (for XLA).
    seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
    return tf.nn.experimental.stateless_dropout(
        inputs, rate=self.rate, noise_shape=self.noise_shape, seed=seed)


@keras.saving.register_keras_serializable(package="tf_minilm")
class Embeddings(keras.layers.Layer):
  """Word + position + token-type embeddings, LayerNorm, dropout: `[B, L, D]`.

  `position_style` "roberta": HF RoBERTa position ids (real tokens count from
  `pad_token_id + 1`); "absolute": 0..L-1.
  """

  def __init__(self, vocab_size: int, hidden_size: int,
               max_position_embeddings: int, type_vocab_size: int,
               layer_norm_eps: float, dropout: float, initializer_range: float,
               pad_token_id: int = 0, position_style: str = "absolute",
               **kwargs):
    super().__init__(**kwargs)
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size
    self.max_position_embeddings = max_position_embeddings
    self.type_vocab_size = type_vocab_size
    self.layer_norm_eps = layer_norm_eps
    self.dropout_rate = dropout
    self.initializer_range = initializer_range
    self.pad_token_id = pad_token_id
    self.position_style = position_style
    def embedding(rows, name):
      return keras.layers.Embedding(
          rows, hidden_size, name=name, dtype=self.dtype_policy,
          embeddings_initializer=keras.initializers.RandomNormal(
              stddev=initializer_range))
    self.word_embeddings = embedding(vocab_size, "word_embeddings")
    self.position_embeddings = embedding(max_position_embeddings,
                                         "position_embeddings")
    self.token_type_embeddings = embedding(type_vocab_size,
                                           "token_type_embeddings")
    self.layer_norm = keras.layers.LayerNormalization(
        epsilon=layer_norm_eps, name="layer_norm", dtype=self.dtype_policy)
    self.dropout = ReplicaDropout(dropout, dtype=self.dtype_policy)

  def get_config(self):
    return {**super().get_config(), "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "dropout": self.dropout_rate,
            "initializer_range": self.initializer_range,
            "pad_token_id": self.pad_token_id,
            "position_style": self.position_style}

  def build(self, input_shape=None):
    self.word_embeddings.build((None, None))
    self.position_embeddings.build((None, None))
    self.token_type_embeddings.build((None, None))
    self.layer_norm.build((None, None, self.hidden_size))
    self.built = True

  def call(self, token_ids, segment_ids, padding_mask, training=None):
    length = ops.shape(token_ids)[1]
    if self.position_style == "roberta":
      real = ops.cast(padding_mask, "int32")
      positions = ops.cumsum(real, axis=1) * real + self.pad_token_id
    else:
      positions = ops.expand_dims(ops.arange(length, dtype="int32"), 0)
    x = (self.word_embeddings(token_ids) + self.position_embeddings(positions) +
         self.token_type_embeddings(segment_ids))
    return self.dropout(self.layer_norm(x), training=training)


@keras.saving.register_keras_serializable(package="tf_minilm")
class SelfAttention(keras.layers.Layer):
  """Multi-head self-attention with Q/K/V exposed; post-LN residual block."""

  def __init__(self, hidden_size: int, num_heads: int,
               attention_dropout: float, hidden_dropout: float,
               layer_norm_eps: float, initializer_range: float, **kwargs):
    super().__init__(**kwargs)
    if hidden_size % num_heads:
      raise ValueError(f"hidden_size={hidden_size} is not a multiple of "
                       f"num_heads={num_heads}")
    self.hidden_size = hidden_size
    self.num_heads = num_heads
    self.head_size = hidden_size // num_heads
    self.attention_dropout = attention_dropout
    self.hidden_dropout = hidden_dropout
    self.layer_norm_eps = layer_norm_eps
    self.initializer_range = initializer_range
    dtype = self.dtype_policy
    self.query = _dense(hidden_size, initializer_range, "query", dtype)
    self.key = _dense(hidden_size, initializer_range, "key", dtype)
    self.value = _dense(hidden_size, initializer_range, "value", dtype)
    self.output_dense = _dense(hidden_size, initializer_range, "output", dtype)
    self.layer_norm = keras.layers.LayerNormalization(
        epsilon=layer_norm_eps, name="layer_norm", dtype=dtype)
    self.probs_dropout = ReplicaDropout(attention_dropout, dtype=dtype)
    self.output_dropout = ReplicaDropout(hidden_dropout, dtype=dtype)

  def get_config(self):
    return {**super().get_config(), "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "attention_dropout": self.attention_dropout,
            "hidden_dropout": self.hidden_dropout,
            "layer_norm_eps": self.layer_norm_eps,
            "initializer_range": self.initializer_range}

  def build(self, input_shape=None):
    shape = (None, None, self.hidden_size)
    for layer in (self.query, self.key, self.value, self.output_dense,
                  self.layer_norm):
      layer.build(shape)
    self.built = True

  def _split_heads(self, x):
    """`[B, L, D]` -> `[B, H, L, d]`."""
    batch, length = ops.shape(x)[0], ops.shape(x)[1]
    x = ops.reshape(x, (batch, length, self.num_heads, self.head_size))
    return ops.transpose(x, (0, 2, 1, 3))

  def project_qkv(self, hidden):
    """Q, K, V `[B, H, L, d]` each: bias included, no 1/sqrt(d) scaling."""
    return tuple(self._split_heads(dense(hidden))
                 for dense in (self.query, self.key, self.value))

  def call(self, hidden, padding_mask=None, training=None, qkv_only=False):
    """Returns (output `[B, L, D]`, (Q, K, V)), or only (Q, K, V) if `qkv_only`."""
    q, k, v = self.project_qkv(hidden)
    if qkv_only:
      return q, k, v
    # Scores, mask and softmax in float32: -1e4 and exp() are unsafe in float16.
    scores = ops.matmul(ops.cast(q, "float32"),
                        ops.transpose(ops.cast(k, "float32"), (0, 1, 3, 2)))
    scores = scores * (1.0 / float(self.head_size) ** 0.5)
    key_bias = (1.0 - ops.cast(padding_mask, "float32")) * ATTENTION_MASK_BIAS
    probs = ops.softmax(scores + key_bias[:, None, None, :], axis=-1)
    probs = self.probs_dropout(ops.cast(probs, self.compute_dtype),
                               training=training)
    context = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
    batch, length = ops.shape(context)[0], ops.shape(context)[1]
    context = ops.reshape(context, (batch, length, self.hidden_size))
    out = self.output_dropout(self.output_dense(context), training=training)
    return self.layer_norm(out + hidden), (q, k, v)


@keras.saving.register_keras_serializable(package="tf_minilm")
class TransformerLayer(keras.layers.Layer):
  """Post-LN Transformer layer: attention block, then feed-forward block."""

  def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int,
               hidden_act: str, attention_dropout: float,
               hidden_dropout: float, layer_norm_eps: float,
               initializer_range: float, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.num_heads = num_heads
    self.intermediate_size = intermediate_size
    self.hidden_act = hidden_act
    self.attention_dropout = attention_dropout
    self.hidden_dropout = hidden_dropout
    self.layer_norm_eps = layer_norm_eps
    self.initializer_range = initializer_range
    dtype = self.dtype_policy
    self.attention = SelfAttention(
        hidden_size, num_heads, attention_dropout, hidden_dropout,
        layer_norm_eps, initializer_range, name="attention", dtype=dtype)
    self.intermediate = _dense(intermediate_size, initializer_range,
                               "intermediate", dtype)
    self.output_dense = _dense(hidden_size, initializer_range, "output", dtype)
    self.layer_norm = keras.layers.LayerNormalization(
        epsilon=layer_norm_eps, name="layer_norm", dtype=dtype)
    self.dropout = ReplicaDropout(hidden_dropout, dtype=dtype)
    self._act = _activation(hidden_act)

  def get_config(self):
    return {**super().get_config(), "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act,
            "attention_dropout": self.attention_dropout,
            "hidden_dropout": self.hidden_dropout,
            "layer_norm_eps": self.layer_norm_eps,
            "initializer_range": self.initializer_range}

  def build(self, input_shape=None):
    self.attention.build()
    self.intermediate.build((None, None, self.hidden_size))
    self.output_dense.build((None, None, self.intermediate_size))
    self.layer_norm.build((None, None, self.hidden_size))
    self.built = True

  def call(self, hidden, padding_mask, training=None):
    """Returns (output `[B, L, D]`, (Q, K, V) each `[B, H, L, d]`)."""
    attended, qkv = self.attention(hidden, padding_mask, training=training)
    ffn = self.output_dense(self._act(self.intermediate(attended)))
    ffn = self.dropout(ffn, training=training)
    return self.layer_norm(ffn + attended), qkv


@keras.saving.register_keras_serializable(package="tf_minilm")
class Pooler(keras.layers.Layer):
  """BERT pooler: tanh(dense([CLS] hidden state)), `[B, D]`."""

  def __init__(self, hidden_size: int, initializer_range: float, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.initializer_range = initializer_range
    self.dense = _dense(hidden_size, initializer_range, "dense",
                        self.dtype_policy)

  def get_config(self):
    return {**super().get_config(), "hidden_size": self.hidden_size,
            "initializer_range": self.initializer_range}

  def build(self, input_shape=None):
    self.dense.build((None, self.hidden_size))
    self.built = True

  def call(self, sequence_output):
    return ops.tanh(self.dense(sequence_output[:, 0, :]))


def encoder_inputs() -> Dict[str, keras.KerasTensor]:
  """`token_ids`, `segment_ids` int32 and `padding_mask` bool, all `[B, L]`."""
  return {
      "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
      "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
      "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
  }


class Encoder:
  """Owns the layers of one encoder and builds functional views over them.

  Args:
    config: the architecture.
    dtype: a Keras dtype policy name for every layer, e.g. "float32",
      "mixed_float16", or "float16"/"bfloat16" to hold a frozen teacher's weights in
      half precision. None uses the global policy.
    name: prefix of the layer names.
  """

  def __init__(self, config: EncoderConfig, dtype: Optional[str] = None,
               name: str = "encoder"):
    self.config = config
    self.name = name
    c = config
    self.embeddings = Embeddings(
        c.vocab_size, c.hidden_size, c.max_position_embeddings,
        c.type_vocab_size, c.layer_norm_eps, c.hidden_dropout,
        c.initializer_range, c.pad_token_id, c.position_style,
        name=f"{name}_embeddings", dtype=dtype)
    self.layers = [TransformerLayer(
        c.hidden_size, c.num_heads, c.intermediate_size, c.hidden_act,
        c.attention_dropout, c.hidden_dropout, c.layer_norm_eps,
        c.initializer_range, name=f"{name}_layer_{i}", dtype=dtype)
                   for i in range(c.num_layers)]
    self.pooler = (Pooler(c.hidden_size, c.initializer_range,
                          name=f"{name}_pooler", dtype=dtype)
                   if c.with_pooler else None)
    self.embeddings.build()
    for layer in self.layers:
      layer.build()
    if self.pooler is not None:
      self.pooler.build()
    self.model = self._functional(self._full_outputs, name)

  def _functional(self, outputs_fn, name):
    inputs = encoder_inputs()
    return keras.Model(inputs, outputs_fn(inputs), name=name)

  def _embed(self, inputs):
    return self.embeddings(inputs["token_ids"], inputs["segment_ids"],
                           inputs["padding_mask"])

  def _full_outputs(self, inputs):
    hidden = self._embed(inputs)
    for layer in self.layers:
      hidden, _ = layer(hidden, inputs["padding_mask"])
    outputs = {"sequence_output": hidden}
    if self.pooler is not None:
      outputs["pooled_output"] = self.pooler(hidden)
    return outputs

  def inspection_model(self) -> keras.Model:
    """Outputs `hidden_states` (embeddings then each layer) and per-layer Q/K/V."""
    def outputs(inputs):
      hidden = self._embed(inputs)
      result = {"hidden_states_0": hidden}
      for i, layer in enumerate(self.layers):
        hidden, (q, k, v) = layer(hidden, inputs["padding_mask"])
        result.update({f"hidden_states_{i + 1}": hidden, f"query_{i}": q,
                       f"key_{i}": k, f"value_{i}": v})
      return result
    return self._functional(outputs, f"{self.name}_inspection")

  def distillation_model(self, layer_index: int,
                         sequence_output: bool = False) -> keras.Model:
    """Q/K/V `[B, H, L, d]` of layer `layer_index` (0-based) and nothing
    above it; with `sequence_output`, also the last layer's `[B, L, D]` (the
    whole encoder runs)."""
    if not 0 <= layer_index < self.config.num_layers:
      raise ValueError(f"layer index {layer_index} is out of range for a "
                       f"{self.config.num_layers}-layer encoder (0.."
                       f"{self.config.num_layers - 1})")

    def outputs(inputs):
      hidden = self._embed(inputs)
      mask = inputs["padding_mask"]
      for layer in self.layers[:layer_index]:
        hidden, _ = layer(hidden, mask)
      tap = self.layers[layer_index]
      if not sequence_output:
        q, k, v = tap.attention(hidden, qkv_only=True)
        return {"query": q, "key": k, "value": v}
      hidden, (q, k, v) = tap(hidden, mask)
      for layer in self.layers[layer_index + 1:]:
        hidden, _ = layer(hidden, mask)
      return {"query": q, "key": k, "value": v, "sequence_output": hidden}
    return self._functional(outputs, f"{self.name}_distill_{layer_index}")

  @property
  def weights(self):
    return self.model.weights

  def weight_bytes(self) -> int:
    return sum(int(w.numpy().nbytes) for w in self.model.weights)
