"""Sentence embeddings as sentence-transformers computes them.

A sentence-transformers model directory is a HF encoder plus a head described
by `modules.json`: the encoder (path ""), a Pooling module, optionally a Dense
module and a Normalize module. This module reads such a head, writes one
(so that `SentenceTransformer(directory)` loads an exported student), and
computes it in TensorFlow:

  sequence_output [B, L, D] -> pool over real tokens [B, D]
    -> dense: activation(x W^T + b) [B, E]   (optional)
    -> L2 normalisation [B, E]                (optional)

Pooling modes are sentence-transformers': mean (over real tokens, the
special ones included), cls (the first token), max (over real tokens),
mean_sqrt_len_tokens (the sum over real tokens / sqrt(their number)).
Dense activations: identity and tanh. Other modules and pooling modes are
refused by name.
"""

import dataclasses
import json
import os
from typing import Dict, Optional

import keras
import numpy as np
import safetensors.numpy
import tensorflow as tf

from tf_minilm import convert
from tf_minilm import io_utils
from tf_minilm import modeling

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens")
# The legacy sentence-transformers pooling config: one boolean per mode.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
DENSE_ACTIVATIONS = {"identity": "torch.nn.modules.linear.Identity",
                     "tanh": "torch.nn.modules.activation.Tanh"}
MODULES_FILE = "modules.json"
SBERT_CONFIG = "sentence_bert_config.json"
ST_CONFIG = "config_sentence_transformers.json"
SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan")
# Module types as sentence-transformers 2.x named them, which every later
# version still loads.
_MODULE_TYPES = {kind: f"sentence_transformers.models.{kind}"
                 for kind in ("Transformer", "Pooling", "Dense", "Normalize")}
# sentence-transformers divides by max(count, 1e-9) and max(norm, 1e-12).
_MIN_COUNT = 1e-9
_MIN_NORM = 1e-12


class HeadError(ValueError):
  """Sentence-transformers files that cannot be read as a supported head."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dense:
  """A Dense module: `activation(x @ weight.T + bias)`.

  weight: `[E, D_in]` (PyTorch Linear layout); bias: `[E]`.
  """
  weight: np.ndarray
  bias: np.ndarray
  activation: str = "identity"


@dataclasses.dataclass(frozen=True, eq=False)
class SentenceHead:
  """What turns an encoder's last hidden states into a sentence embedding,
  with the settings sentence-transformers keeps beside it: the similarity
  function, named prompts (never a default one: every text would change)
  and, as read, the source's max_seq_length."""
  pooling: str
  dense: Optional[Dense] = None
  normalize: bool = False
  similarity: str = "cosine"
  prompts: Optional[Dict[str, str]] = None
  max_seq_length: Optional[int] = None

  def width(self, hidden_size: int) -> int:
    """The embedding's size over an encoder of `hidden_size`."""
    return hidden_size if self.dense is None else int(
        self.dense.weight.shape[0])


def _read_json(path: str):
  return io_utils.read_json(path, HeadError)


def _module_kind(entry, path: str) -> str:
  module_type = entry.get("type") if isinstance(entry, dict) else None
  if not isinstance(module_type, str):
    raise HeadError(f"{path}: every module needs a \"type\", got {entry!r}")
  kind = module_type.rsplit(".", 1)[-1]
  if not module_type.startswith("sentence_transformers.") or \
      kind not in _MODULE_TYPES:
    raise HeadError(f"{path}: module {module_type!r} is not supported; "
                    f"supported: {sorted(_MODULE_TYPES)}")
  return kind


def _read_pooling(directory: str, hidden_size: int) -> str:
  path = os.path.join(directory, "config.json")
  config = _read_json(path)
  if not isinstance(config, dict):
    raise HeadError(f"{path}: expected a JSON object")
  dimension = config.get("word_embedding_dimension",
                         config.get("embedding_dimension"))
  if dimension is not None and dimension != hidden_size:
    raise HeadError(f"{path}: pools vectors of {dimension} but the encoder's "
                    f"hidden size is {hidden_size}")
  modes = config.get("pooling_mode")
  if modes is None:
    modes = [mode for key, mode in _LEGACY_POOLING_KEYS.items()
             if config.get(key)]
  modes = [modes] if isinstance(modes, str) else list(modes)
  if len(modes) != 1 or modes[0] not in POOLING_MODES:
    raise HeadError(f"{path}: pooling {modes} is not supported; one of "
                    f"{list(POOLING_MODES)} is")
  return modes[0]


def _read_dense(directory: str, in_features: int) -> Dense:
  path = os.path.join(directory, "config.json")
  config = _read_json(path)
  if not isinstance(config, dict):
    raise HeadError(f"{path}: expected a JSON object")
  # sentence-transformers' Dense defaults to tanh when the config names none.
  name = config.get("activation_function", DENSE_ACTIVATIONS["tanh"])
  activations = {v: k for k, v in DENSE_ACTIVATIONS.items()}
  if name not in activations:
    raise HeadError(f"{path}: activation {name!r} is not supported; "
                    f"supported: {sorted(activations)}")
  try:
    tensors, source = convert.read_hf_tensors(directory)
  except convert.CheckpointError as e:
    raise HeadError(str(e)) from None
  weight = tensors.get("linear.weight")
  if weight is None or weight.ndim != 2 or weight.shape[1] != in_features:
    raise HeadError(f"{source}: expected linear.weight of shape [out, "
                    f"{in_features}], got "
                    f"{None if weight is None else list(weight.shape)}")
  bias = tensors.get("linear.bias", np.zeros(weight.shape[0], np.float32))
  if bias.shape != (weight.shape[0],):
    raise HeadError(f"{source}: linear.bias has shape {list(bias.shape)}, "
                    f"expected [{weight.shape[0]}]")
  if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
    raise HeadError(f"{source}: non-finite weights")
  return Dense(weight.astype(np.float32), bias.astype(np.float32),
               activations[name])


def read_head(model_dir: str, hidden_size: int) -> Optional[SentenceHead]:
  """The head `model_dir`'s sentence-transformers files describe, or None
  where it has no modules.json; raises HeadError for files it cannot use."""
  path = os.path.join(model_dir, MODULES_FILE)
  if not os.path.isfile(path):
    return None
  modules = _read_json(path)
  if not isinstance(modules, list) or not modules:
    raise HeadError(f"{path}: expected a list of modules")
  kinds = [_module_kind(entry, path) for entry in modules]
  order = ["Transformer", "Pooling", "Dense", "Normalize"]
  if kinds[:2] != order[:2] or modules[0].get("path") or \
      sorted(kinds[2:], key=order.index) != kinds[2:] or \
      len(set(kinds)) != len(kinds):
    raise HeadError(f"{path}: modules {kinds} (the encoder at path "
                    f"{modules[0].get('path')!r}) are not supported; "
                    "supported: the encoder in this directory (path \"\"), "
                    "Pooling, then optionally one Dense and a Normalize")
  directories = [os.path.join(model_dir, entry.get("path") or "")
                 for entry in modules]
  pooling = _read_pooling(directories[1], hidden_size)
  dense = (_read_dense(directories[kinds.index("Dense")], hidden_size)
           if "Dense" in kinds else None)
  return SentenceHead(pooling, dense, "Normalize" in kinds,
                      **_read_settings(model_dir))


def _read_settings(model_dir: str) -> Dict:
  """sentence_bert_config.json and config_sentence_transformers.json: what
  is carried over, and what changes every embedding (refused by name)."""
  settings = {}
  path = os.path.join(model_dir, SBERT_CONFIG)
  config = _read_json(path) if os.path.isfile(path) else {}
  if not isinstance(config, dict):
    raise HeadError(f"{path}: expected a JSON object")
  lower_case = config.get("do_lower_case", False)
  if lower_case is not False:
    raise HeadError(f"{path}: do_lower_case={json.dumps(lower_case)} is not "
                    "supported (sentence-transformers "
                    "lower-cases every text before its tokenizer); set it to "
                    "false if the tokenizer lower-cases already")
  length = config.get("max_seq_length")
  if length is not None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
      raise HeadError(f"{path}: max_seq_length must be a positive integer, "
                      f"got {length!r}")
    settings["max_seq_length"] = length
  path = os.path.join(model_dir, ST_CONFIG)
  config = _read_json(path) if os.path.isfile(path) else {}
  if not isinstance(config, dict):
    raise HeadError(f"{path}: expected a JSON object")
  default_prompt = config.get("default_prompt_name")
  if default_prompt is not None:
    raise HeadError(f"{path}: the default prompt {default_prompt!r} is not "
                    "supported (sentence-transformers puts it before every "
                    "text); remove default_prompt_name")
  prompts = config.get("prompts") or {}
  if not isinstance(prompts, dict) or not all(
      isinstance(v, str) for v in prompts.values()):
    raise HeadError(f"{path}: prompts must map names to strings")
  similarity = config.get("similarity_fn_name") or "cosine"
  if similarity not in SIMILARITIES:
    raise HeadError(f"{path}: similarity_fn_name {similarity!r} is not "
                    f"supported; one of {list(SIMILARITIES)} is")
  settings.update(similarity=similarity, prompts=prompts or None)
  return settings


def _write_json(path: str, value) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2)


def write_head(head: SentenceHead, model_dir: str, hidden_size: int,
               max_seq_length: int) -> None:
  """Writes `head` as sentence-transformers files into the HF directory
  `model_dir` (call inside an atomic directory): modules.json,
  config_sentence_transformers.json, sentence_bert_config.json
  (`max_seq_length` tokens), 1_Pooling/, 2_Dense/ and a Normalize module as
  the head has them."""
  modules = [("Transformer", "")]
  pooling_dir = os.path.join(model_dir, "1_Pooling")
  os.makedirs(pooling_dir)
  pooling = {"word_embedding_dimension": hidden_size}
  pooling.update({key: mode == head.pooling
                  for key, mode in _LEGACY_POOLING_KEYS.items()})
  pooling["include_prompt"] = True
  _write_json(os.path.join(pooling_dir, "config.json"), pooling)
  modules.append(("Pooling", "1_Pooling"))
  if head.dense is not None:
    name = f"{len(modules)}_Dense"
    os.makedirs(os.path.join(model_dir, name))
    out_features, in_features = head.dense.weight.shape
    _write_json(os.path.join(model_dir, name, "config.json"), {
        "in_features": int(in_features), "out_features": int(out_features),
        "bias": True,
        "activation_function": DENSE_ACTIVATIONS[head.dense.activation]})
    safetensors.numpy.save_file(
        {"linear.weight": np.ascontiguousarray(head.dense.weight, np.float32),
         "linear.bias": np.ascontiguousarray(head.dense.bias, np.float32)},
        os.path.join(model_dir, name, convert.SAFETENSORS),
        metadata={"format": "pt"})
    modules.append(("Dense", name))
  if head.normalize:
    name = f"{len(modules)}_Normalize"
    os.makedirs(os.path.join(model_dir, name))
    modules.append(("Normalize", name))
  _write_json(os.path.join(model_dir, MODULES_FILE), [
      {"idx": i, "name": str(i), "path": path, "type": _MODULE_TYPES[kind]}
      for i, (kind, path) in enumerate(modules)])
  _write_json(os.path.join(model_dir, SBERT_CONFIG),
              {"max_seq_length": max_seq_length, "do_lower_case": False})
  _write_json(os.path.join(model_dir, ST_CONFIG),
              {"prompts": head.prompts or {}, "default_prompt_name": None,
               "similarity_fn_name": head.similarity})


def pool(sequence_output: tf.Tensor, padding_mask: tf.Tensor,
         mode: str) -> tf.Tensor:
  """`[B, L, D]` hidden states and `[B, L]` bool mask -> `[B, D]` float32."""
  x = tf.cast(sequence_output, tf.float32)
  if mode == "cls":
    return x[:, 0]
  real = tf.cast(padding_mask, tf.float32)[:, :, None]  # [B, L, 1]
  if mode == "max":
    return tf.reduce_max(tf.where(real > 0, x, -1e9), axis=1)
  total = tf.reduce_sum(x * real, axis=1)
  count = tf.maximum(tf.reduce_sum(real, axis=1), _MIN_COUNT)  # [B, 1]
  if mode == "mean":
    return total / count
  if mode == "mean_sqrt_len_tokens":
    return total / tf.sqrt(count)
  raise ValueError(f"unknown pooling {mode!r}; expected one of "
                   f"{list(POOLING_MODES)}")


def embed(sequence_output: tf.Tensor, padding_mask: tf.Tensor, pooling: str,
          kernel: Optional[tf.Tensor] = None, bias: Optional[tf.Tensor] = None,
          activation: str = "identity", normalize: bool = False
          ) -> tf.Tensor:
  """The sentence embedding `[B, E]` float32: pooled, then
  `activation(pooled @ kernel + bias)` with a `[D, E]` kernel, then
  L2-normalised if `normalize`."""
  x = pool(sequence_output, padding_mask, pooling)
  if kernel is not None:
    x = tf.matmul(x, tf.cast(kernel, tf.float32)) + tf.cast(bias, tf.float32)
    if activation == "tanh":
      x = tf.tanh(x)
  if normalize:
    x = x / tf.maximum(tf.norm(x, axis=-1, keepdims=True), _MIN_NORM)
  return x


def embed_with_head(sequence_output: tf.Tensor, padding_mask: tf.Tensor,
                    head: SentenceHead, normalize: Optional[bool] = None
                    ) -> tf.Tensor:
  """`embed` with a head's (constant) weights; `normalize` overrides the
  head's."""
  dense = head.dense
  return embed(sequence_output, padding_mask, head.pooling,
               None if dense is None else dense.weight.T,
               None if dense is None else dense.bias,
               "identity" if dense is None else dense.activation,
               head.normalize if normalize is None else normalize)


def projection_width(teacher_head: SentenceHead, teacher_hidden: int,
                     student_hidden: int) -> Optional[int]:
  """The output width E of a student's embedding projection, or None where
  the student's pooled vector is compared as it is (equal widths and no
  Dense module in the teacher's head)."""
  if teacher_head.dense is None and teacher_hidden == student_hidden:
    return None
  return teacher_head.width(teacher_hidden)


def projection_activation(teacher_head: SentenceHead) -> str:
  """The student's projection applies the activation of the teacher's Dense
  module (identity where it has none)."""
  return "identity" if teacher_head.dense is None else \
      teacher_head.dense.activation


def build_projection(width: int, student: modeling.EncoderConfig,
                     initial: Optional[Dense] = None) -> keras.layers.Dense:
  """A student's trainable embedding projection `[B, D_s] -> [B, E]`
  (float32, no activation: `embed` applies it), from `initial` or random."""
  projection = keras.layers.Dense(
      width, dtype="float32", name="student_projection",
      kernel_initializer=keras.initializers.RandomNormal(
          stddev=student.initializer_range))
  projection.build((None, student.hidden_size))
  if initial is not None:
    projection.set_weights([initial.weight.T, initial.bias])
  return projection


def student_head(teacher_head: SentenceHead,
                 projection: Optional[keras.layers.Dense]) -> SentenceHead:
  """A student's head: the pooling and normalisation of `teacher_head` (a
  teacher's, or a student's own as saved) around the student's projection's
  current weights (None: no projection)."""
  dense = None
  if projection is not None:
    dense = Dense(projection.kernel.numpy().T, projection.bias.numpy(),
                  projection_activation(teacher_head))
  return dataclasses.replace(teacher_head, dense=dense)


def describe(head: SentenceHead) -> Dict[str, str]:
  """A short description for logs and export_info.json."""
  return {"pooling": head.pooling,
          "dense": "none" if head.dense is None else
          f"{head.dense.weight.shape[1]}->{head.dense.weight.shape[0]} "
          f"{head.dense.activation}",
          "normalize": str(head.normalize).lower()}
