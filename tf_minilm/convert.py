"""HuggingFace BERT/RoBERTa checkpoints <-> `modeling.Encoder`.

Reads a local HF directory (`config.json` plus `model.safetensors`, sharded
`model-*.safetensors` with `model.safetensors.index.json`, `pytorch_model.bin` or
`tf_model.h5`), canonicalises every tensor name to the PyTorch `BertModel` name
and layout, and assigns it through one declarative name map (`weight_map`). The
same map, reversed, exports a student as a `transformers.BertModel` directory.
"""

import dataclasses
import json
import os
import re
import shutil
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import safetensors
import safetensors.numpy

from tf_minilm import errors
from tf_minilm import io_utils
from tf_minilm import modeling
from tf_minilm import tokenization

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
TF_H5 = "tf_model.h5"
CONVERTED_CONFIG = "tf_minilm_encoder.json"
CONVERTED_WEIGHTS = "encoder.weights.h5"
# What bin/convert_teacher converted: the source, its depth, and whether its
# sentence-transformers head came along.
CONVERTED_SOURCE = "tf_minilm_source.json"
# sentence-transformers files beside the encoder (modules.json also names
# the module directories).
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json",
                               "config_sentence_transformers.json")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")

# Heads and buffers a BERT-family checkpoint may carry that an encoder never uses.
IGNORED_NAMES = re.compile(
    r"^(cls|lm_head|qa_outputs|classifier|predictions|nsp|mlm)\b|"
    r"embeddings\.position_ids$")


class CheckpointError(errors.InputError):
  """A checkpoint directory or file that cannot be turned into an encoder."""


# (HF BertModel name, attribute path on `Encoder`, transposed?) with {i} = layer.
# Linear weights are [out, in] in PyTorch and [in, out] in Keras.
_LAYER_MAP = [
    ("attention.self.query.weight", "attention.query.kernel", True),
    ("attention.self.query.bias", "attention.query.bias", False),
    ("attention.self.key.weight", "attention.key.kernel", True),
    ("attention.self.key.bias", "attention.key.bias", False),
    ("attention.self.value.weight", "attention.value.kernel", True),
    ("attention.self.value.bias", "attention.value.bias", False),
    ("attention.output.dense.weight", "attention.output_dense.kernel", True),
    ("attention.output.dense.bias", "attention.output_dense.bias", False),
    ("attention.output.LayerNorm.weight", "attention.layer_norm.gamma", False),
    ("attention.output.LayerNorm.bias", "attention.layer_norm.beta", False),
    ("intermediate.dense.weight", "intermediate.kernel", True),
    ("intermediate.dense.bias", "intermediate.bias", False),
    ("output.dense.weight", "output_dense.kernel", True),
    ("output.dense.bias", "output_dense.bias", False),
    ("output.LayerNorm.weight", "layer_norm.gamma", False),
    ("output.LayerNorm.bias", "layer_norm.beta", False),
]
_EMBEDDING_MAP = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.embeddings",
     False),
    ("embeddings.position_embeddings.weight",
     "embeddings.position_embeddings.embeddings", False),
    ("embeddings.token_type_embeddings.weight",
     "embeddings.token_type_embeddings.embeddings", False),
    ("embeddings.LayerNorm.weight", "embeddings.layer_norm.gamma", False),
    ("embeddings.LayerNorm.bias", "embeddings.layer_norm.beta", False),
]
_POOLER_MAP = [
    ("pooler.dense.weight", "pooler.dense.kernel", True),
    ("pooler.dense.bias", "pooler.dense.bias", False),
]


@dataclasses.dataclass(frozen=True)
class MappedWeight:
  hf_name: str
  attribute_path: str
  transposed: bool


def weight_map(config: modeling.EncoderConfig) -> List[MappedWeight]:
  """Every weight of an encoder of `config`, by HF name."""
  entries = [MappedWeight(*e) for e in _EMBEDDING_MAP]
  for i in range(config.num_layers):
    entries += [MappedWeight(f"encoder.layer.{i}.{hf}", f"layers.{i}.{attr}", t)
                for hf, attr, t in _LAYER_MAP]
  if config.with_pooler:
    entries += [MappedWeight(*e) for e in _POOLER_MAP]
  return entries


def _resolve(encoder: modeling.Encoder, attribute_path: str):
  target = encoder
  for part in attribute_path.split("."):
    target = target[int(part)] if part.isdigit() else getattr(target, part)
  return target


# ---------------------------------------------------------------- configuration

_HF_FIELDS = {
    "vocab_size": "vocab_size", "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size", "hidden_act": "hidden_act",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size", "layer_norm_eps": "layer_norm_eps",
    "hidden_dropout_prob": "hidden_dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "initializer_range": "initializer_range", "pad_token_id": "pad_token_id",
}
_MODEL_TYPES = {"bert": "absolute", "roberta": "roberta",
                "xlm-roberta": "roberta"}


def config_from_hf(hf_config: Dict, source: str = "config.json"
                   ) -> modeling.EncoderConfig:
  """EncoderConfig of a HF `BertConfig`/`RobertaConfig` dict."""
  model_type = hf_config.get("model_type")
  if model_type not in _MODEL_TYPES:
    raise CheckpointError(
        f"{source}: model_type {model_type!r} is not supported; expected one of "
        f"{sorted(_MODEL_TYPES)} (BERT-architecture encoders)")
  position_type = hf_config.get("position_embedding_type", "absolute")
  if position_type != "absolute":
    raise CheckpointError(f"{source}: position_embedding_type {position_type!r} "
                          "is not supported; only 'absolute' is")
  missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                         "num_attention_heads", "intermediate_size")
             if k not in hf_config]
  if missing:
    raise CheckpointError(f"{source}: missing required fields {missing}")
  values = {ours: hf_config[theirs] for theirs, ours in _HF_FIELDS.items()
            if theirs in hf_config and hf_config[theirs] is not None}
  values["position_style"] = _MODEL_TYPES[model_type]
  try:
    return modeling.EncoderConfig(**values)
  except (ValueError, TypeError) as e:
    raise CheckpointError(f"{source}: {e}") from None


def config_to_hf(config: modeling.EncoderConfig) -> Dict:
  """`transformers.BertConfig` dict of an encoder (exported students are BERT)."""
  if config.position_style != "absolute":
    raise ValueError("only encoders with absolute positions export as BertModel")
  hf = {theirs: getattr(config, ours) for theirs, ours in _HF_FIELDS.items()}
  hf.update(architectures=["BertModel"], model_type="bert",
            position_embedding_type="absolute")
  return hf


def read_hf_config(model_dir: str) -> Tuple[modeling.EncoderConfig, Dict]:
  path = os.path.join(model_dir, "config.json")
  if not os.path.isdir(model_dir):
    raise CheckpointError(f"{model_dir}: not a directory")
  if not os.path.isfile(path):
    raise CheckpointError(f"{model_dir}: no config.json (expected a HuggingFace "
                          "model directory with config.json and weights)")
  try:
    with open(path, encoding="utf-8") as f:
      hf_config = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: not readable JSON ({e})") from None
  if not isinstance(hf_config, dict):
    raise CheckpointError(f"{path}: expected a JSON object of model settings, "
                          f"got a JSON {type(hf_config).__name__}")
  return config_from_hf(hf_config, path), hf_config


# ---------------------------------------------------------------- tensor files

def read_safetensors(path: str) -> Dict[str, np.ndarray]:
  """Tensors of a safetensors file (the `safetensors` library validates the
  header and every tensor's extent)."""
  try:
    with safetensors.safe_open(path, framework="numpy") as f:
      return {name: f.get_tensor(name) for name in f.keys()}
  except (safetensors.SafetensorError, OSError, ValueError, TypeError) as e:
    raise CheckpointError(f"{path}: not a readable safetensors file, corrupt "
                          f"or truncated ({e})") from None


def _read_pytorch_bin(path: str) -> Dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointError(
        f"{path}: reading pytorch_model.bin needs PyTorch; install it with "
        "`pip install 'tf_minilm[torch]'` or convert the checkpoint to "
        "safetensors") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                          f"({type(e).__name__}: {e})") from None
  if not isinstance(state, dict):
    raise CheckpointError(f"{path}: expected a state dict, got {type(state)}")
  return {name: (t.float() if t.dtype == torch.bfloat16 else t).numpy()
          for name, t in state.items() if hasattr(t, "numpy")}


def _h5_to_hf_name(name: str) -> Tuple[str, bool]:
  """HF TF name (`.../bert/encoder/layer_._0/.../kernel:0`) -> PyTorch name.

  Returns (name, transposed): TF Dense kernels are [in, out].
  """
  parts = name.split(":")[0].split("/")
  for start, part in enumerate(parts):
    if part in ("embeddings", "encoder", "pooler"):
      break
  else:
    return "/".join(parts), False
  parts = parts[start:]
  leaf = parts[-1]
  transposed = leaf == "kernel"
  parts[-1] = {"kernel": "weight", "gamma": "weight", "beta": "bias",
               "embeddings": "weight"}.get(leaf, leaf)
  hf = ".".join(parts)
  return re.sub(r"layer_\._(\d+)", r"layer.\1", hf), transposed


def _read_tf_h5(path: str) -> Dict[str, np.ndarray]:
  import h5py  # pylint: disable=g-import-not-at-top
  tensors = {}
  try:
    with h5py.File(path, "r") as f:
      def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
          hf_name, transposed = _h5_to_hf_name(name)
          value = obj[()]
          tensors[hf_name] = value.T if transposed else value
      f.visititems(visit)
  except OSError as e:
    raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from None
  return tensors


def _read_sharded_safetensors(model_dir: str) -> Dict[str, np.ndarray]:
  index_path = os.path.join(model_dir, SAFETENSORS_INDEX)
  try:
    with open(index_path, encoding="utf-8") as f:
      weight_files = sorted(set(json.load(f)["weight_map"].values()))
  except (OSError, ValueError, KeyError) as e:
    raise CheckpointError(f"{index_path}: not a valid shard index ({e})") from None
  tensors = {}
  for name in weight_files:
    shard = os.path.join(model_dir, name)
    if not os.path.isfile(shard):
      raise CheckpointError(f"{index_path}: lists shard {name}, which is missing")
    tensors.update(read_safetensors(shard))
  return tensors


# Checked in this order; the first present format is read.
_READERS: List[Tuple[str, Callable[[str], Dict[str, np.ndarray]]]] = [
    (SAFETENSORS, read_safetensors),
    (SAFETENSORS_INDEX, lambda p: _read_sharded_safetensors(os.path.dirname(p))),
    (PYTORCH_BIN, _read_pytorch_bin),
    (TF_H5, _read_tf_h5),
]


def read_hf_tensors(model_dir: str) -> Tuple[Dict[str, np.ndarray], str]:
  """Canonical-name tensors of the first weights file found, and its path."""
  for filename, reader in _READERS:
    path = os.path.join(model_dir, filename)
    if os.path.isfile(path):
      return canonicalise(reader(path)), path
  raise CheckpointError(
      f"{model_dir}: no weights file; expected one of "
      f"{[name for name, _ in _READERS]}")


def canonicalise(tensors: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Strips `bert.`/`roberta.` prefixes and maps LayerNorm gamma/beta names."""
  result = {}
  for name, value in tensors.items():
    name = re.sub(r"^(bert|roberta|model)\.", "", name)
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    result[name] = value
  return result


# ---------------------------------------------------------------- loading

def assign_hf_weights(encoder: modeling.Encoder, tensors: Dict[str, np.ndarray],
                      source: str, ignore_layers_from: Optional[int] = None
                      ) -> None:
  """Assigns every mapped weight, after checking all of them; else raises.

  `ignore_layers_from`: checkpoint layers with this index or higher are expected
  and skipped (a teacher truncated at its distillation layer).
  """
  entries = weight_map(encoder.config)
  needed = {e.hf_name for e in entries}
  missing = sorted(needed - set(tensors))
  problems = []
  if missing:
    problems.append(f"missing tensors: {missing}")
  mismatched = []
  for entry in entries:
    if entry.hf_name not in tensors:
      continue
    variable = _resolve(encoder, entry.attribute_path)
    shape = tuple(tensors[entry.hf_name].shape)
    if entry.transposed:
      shape = shape[::-1]
    if shape != tuple(variable.shape):
      layout = " in Keras layout" if entry.transposed else ""
      mismatched.append(f"{entry.hf_name} has shape {shape}{layout}, the model "
                        f"needs {tuple(variable.shape)}")
  if mismatched:
    problems.append("wrong shapes: " + "; ".join(mismatched))

  def skipped(name):
    if IGNORED_NAMES.search(name):
      return True
    if not encoder.config.with_pooler and name.startswith("pooler."):
      return True
    layer = re.match(r"encoder\.layer\.(\d+)\.", name)
    return bool(layer and ignore_layers_from is not None
                and int(layer.group(1)) >= ignore_layers_from)

  unexpected = sorted(n for n in set(tensors) - needed if not skipped(n))
  if unexpected:
    problems.append(f"unexpected tensors (not part of a BERT encoder): "
                    f"{unexpected}")
  if problems:
    raise CheckpointError(f"{source}: cannot load into a "
                          f"{encoder.config.num_layers}-layer encoder: " +
                          "; ".join(problems))
  for entry in entries:
    variable = _resolve(encoder, entry.attribute_path)
    value = np.asarray(tensors[entry.hf_name], dtype=np.float32)
    variable.assign((value.T if entry.transposed else value).astype(
        variable.dtype))


def load_hf_encoder(model_dir: str, num_layers: Optional[int] = None,
                    with_pooler: Optional[bool] = True,
                    dtype: Optional[str] = None,
                    name: str = "encoder") -> modeling.Encoder:
  """Builds an Encoder from a local HF directory.

  Args:
    model_dir: holds config.json and a weights file.
    num_layers: build only the first `num_layers` layers (a teacher needs only the
      layers up to its distillation layer); the rest of the checkpoint is skipped.
    with_pooler: build (and require) the pooler; None: if the checkpoint has one.
    dtype: Keras dtype policy of the layers, e.g. "bfloat16" for a frozen teacher
      held in half precision.
  """
  config, _ = read_hf_config(model_dir)
  if num_layers is not None:
    if not 1 <= num_layers <= config.num_layers:
      raise CheckpointError(f"{model_dir}: cannot build {num_layers} layers of a "
                            f"{config.num_layers}-layer checkpoint")
    config = config.replace(num_layers=num_layers)
  tensors, source = read_hf_tensors(model_dir)
  if with_pooler is None:
    with_pooler = all(entry[0] in tensors for entry in _POOLER_MAP)
  config = config.replace(with_pooler=with_pooler)
  encoder = modeling.Encoder(config, dtype=dtype, name=name)
  assign_hf_weights(encoder, tensors, source, ignore_layers_from=num_layers)
  return encoder


def load_encoder(path: str, **kwargs) -> modeling.Encoder:
  """An encoder from a HF directory or a directory written by `save_converted`;
  raises CheckpointError if a weight is not finite."""
  if os.path.isfile(os.path.join(path, CONVERTED_CONFIG)):
    encoder = load_converted(path, dtype=kwargs.get("dtype"),
                             name=kwargs.get("name", "encoder"))
  else:
    encoder = load_hf_encoder(path, **kwargs)
  check_finite(encoder, path)
  return encoder


def check_finite(encoder: modeling.Encoder, source: str) -> None:
  """Raises CheckpointError naming the weights that hold NaN or infinity."""
  bad = [w.path for w in encoder.model.weights
         if w.dtype != "bool" and not np.isfinite(
             np.asarray(w.numpy(), dtype=np.float32)).all()]
  if bad:
    raise CheckpointError(f"{source}: {len(bad)} weight(s) hold NaN or "
                          f"infinite values: {bad[:5]}")


# ---------------------------------------------------------------- writing

def copy_tokenizer_files(source_dir: str, target_dir: str) -> List[str]:
  """Copies the tokenizer files; returns the names of those copied. A
  source whose tokenizer class only its config.json tells (an XLM-R model,
  or a BERT one shipping tokenizer.json, without tokenizer_config.json) gets
  a tokenizer_config.json naming it, not counted as copied (a HF export
  writes a fuller one): the class decides the ids, and the copy's
  config.json is not the source's."""
  copied = []
  for name in TOKENIZER_FILES:
    path = os.path.join(source_dir, name)
    if os.path.isfile(path):
      shutil.copyfile(path, os.path.join(target_dir, name))
      copied.append(name)
  tokenizer_class = tokenization.transformers_class(source_dir)
  if "tokenizer_config.json" not in copied and tokenizer_class:
    with open(os.path.join(target_dir, "tokenizer_config.json"), "w",
              encoding="utf-8") as f:
      json.dump({"tokenizer_class": tokenizer_class}, f, indent=2)
  return copied


def save_converted(encoder: modeling.Encoder, output_dir: str,
                   tokenizer_dir: Optional[str] = None,
                   overwrite: bool = False) -> None:
  """Keras weights + config (+ tokenizer files): later runs skip conversion."""
  with io_utils.atomic_directory(output_dir, overwrite) as staging:
    _write_converted(encoder, staging, tokenizer_dir)


def _write_converted(encoder: modeling.Encoder, directory: str,
                     tokenizer_dir: Optional[str]) -> None:
  with open(os.path.join(directory, CONVERTED_CONFIG), "w",
            encoding="utf-8") as f:
    f.write(encoder.config.to_json())
  encoder.model.save_weights(os.path.join(directory, CONVERTED_WEIGHTS))
  if tokenizer_dir:
    copy_tokenizer_files(tokenizer_dir, directory)


def convert_teacher(hf_dir: str, output_dir: str,
                    num_layers: Optional[int] = None,
                    overwrite: bool = False) -> modeling.Encoder:
  """bin/convert_teacher: the first `num_layers` layers (all by default) of
  the HF teacher in `hf_dir`, its tokenizer files, and its
  sentence-transformers head where every layer is kept (the head pools the
  last layer's states: below it, the head is left out and
  CONVERTED_SOURCE says so)."""
  encoder = load_hf_encoder(hf_dir, num_layers=num_layers, with_pooler=False,
                            dtype="float32", name="teacher")
  source_layers = read_hf_config(hf_dir)[0].num_layers
  modules_path = os.path.join(hf_dir, SENTENCE_TRANSFORMERS_FILES[0])
  head = None
  if os.path.isfile(modules_path):
    head = ("kept" if encoder.config.num_layers == source_layers else
            "dropped")
  with io_utils.atomic_directory(output_dir, overwrite) as staging:
    _write_converted(encoder, staging, hf_dir)
    if head == "kept":
      _copy_sentence_transformers_files(hf_dir, staging, modules_path)
    with open(os.path.join(staging, CONVERTED_SOURCE), "w",
              encoding="utf-8") as f:
      json.dump({"hf_dir": os.path.abspath(hf_dir),
                 "num_layers": source_layers,
                 "converted_layers": encoder.config.num_layers,
                 "sentence_head": head}, f, indent=2)
  return encoder


def _copy_sentence_transformers_files(hf_dir: str, target_dir: str,
                                      modules_path: str) -> None:
  try:
    with open(modules_path, encoding="utf-8") as f:
      modules = json.load(f)
    paths = [entry.get("path") for entry in modules]
  except (OSError, ValueError, AttributeError, TypeError) as e:
    raise CheckpointError(f"{modules_path}: not a list of modules ({e})"
                          ) from None
  for name in SENTENCE_TRANSFORMERS_FILES:
    if os.path.isfile(os.path.join(hf_dir, name)):
      shutil.copyfile(os.path.join(hf_dir, name),
                      os.path.join(target_dir, name))
  for path in paths:
    if path and os.path.isdir(os.path.join(hf_dir, path)):
      shutil.copytree(os.path.join(hf_dir, path),
                      os.path.join(target_dir, path))


def converted_source(path: str) -> Optional[Dict]:
  """CONVERTED_SOURCE of a bin/convert_teacher directory; None elsewhere."""
  record = os.path.join(path, CONVERTED_SOURCE)
  if not os.path.isfile(record):
    return None
  with open(record, encoding="utf-8") as f:
    return json.load(f)


def read_encoder_config(path: str) -> modeling.EncoderConfig:
  """Architecture of a HF directory or of a directory from `save_converted`."""
  config_path = os.path.join(path, CONVERTED_CONFIG)
  if not os.path.isfile(config_path):
    return read_hf_config(path)[0]
  try:
    with open(config_path, encoding="utf-8") as f:
      return modeling.EncoderConfig.from_json(f.read())
  except (OSError, ValueError, TypeError) as e:
    raise CheckpointError(f"{config_path}: not a valid encoder config ({e})"
                          ) from None


def load_converted(path: str, dtype: Optional[str] = None,
                   name: str = "encoder") -> modeling.Encoder:
  encoder = modeling.Encoder(read_encoder_config(path), dtype=dtype, name=name)
  weights_path = os.path.join(path, CONVERTED_WEIGHTS)
  try:
    encoder.model.load_weights(weights_path)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"{weights_path}: cannot load converted weights "
                          f"({type(e).__name__}: {e})") from None
  return encoder


def encoder_tensors(encoder: modeling.Encoder) -> Dict[str, np.ndarray]:
  """Every weight of `encoder` as float32, by HF name and in HF layout."""
  tensors = {}
  for entry in weight_map(encoder.config):
    value = np.asarray(_resolve(encoder, entry.attribute_path).numpy(),
                       dtype=np.float32)
    tensors[entry.hf_name] = np.ascontiguousarray(
        value.T if entry.transposed else value)
  return tensors


def export_hf(encoder: modeling.Encoder, output_dir: str,
              tokenizer_dir: Optional[str] = None,
              overwrite: bool = False, prefix: str = "",
              head_tensors: Optional[Dict[str, np.ndarray]] = None,
              config_updates: Optional[Dict] = None) -> None:
  """Writes a `transformers.BertModel` directory, atomically.

  Files: config.json, model.safetensors (float32), and the tokenizer files of
  `tokenizer_dir`, completed by what its tokenizer needs that the source
  lacks (vocab.txt for a WordPiece tokenizer.json, tokenizer_config.json). A
  model with a head (e.g. BertForSequenceClassification) passes its tensors,
  `prefix="bert."` for the encoder's, and its config keys.
  """
  tensors = dict(head_tensors or {})
  tensors.update({prefix + name: value
                  for name, value in encoder_tensors(encoder).items()})
  with io_utils.atomic_directory(output_dir, overwrite) as staging:
    with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as f:
      json.dump(dict(config_to_hf(encoder.config), **(config_updates or {})),
                f, indent=2, sort_keys=True)
    safetensors.numpy.save_file(tensors, os.path.join(staging, SAFETENSORS),
              metadata={"format": "pt"})
    if tokenizer_dir:
      _write_hf_tokenizer(tokenizer_dir, staging,
                          encoder.config.max_position_embeddings)


def _write_hf_tokenizer(tokenizer_dir: str, target_dir: str,
                        model_max_length: int) -> None:
  copied = copy_tokenizer_files(tokenizer_dir, target_dir)
  try:
    settings = tokenization.read_tokenizer(tokenizer_dir)
  except tokenization.TokenizerError as e:
    raise CheckpointError(f"no tokenizer to export with the model: {e}"
                          ) from None
  for name, text in settings.hf_files(model_max_length).items():
    if name not in copied:
      with open(os.path.join(target_dir, name), "w", encoding="utf-8") as f:
        f.write(text)
