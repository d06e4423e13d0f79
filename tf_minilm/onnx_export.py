"""ONNX copies of exported models, float32 and int8, for ONNX Runtime.

Written into a HF directory (an export's `hf/`, a fine-tuned classifier's
`best_model/hf/`), in the layout sentence-transformers' ONNX backend reads:

  hf/onnx/model.onnx                      float32
  hf/onnx/model_qint8_avx512_vnni.onnx    int8 (dynamic quantization)

Inputs: what the directory's transformers tokenizer returns with
`return_tensors="np"`, so `session.run(None, dict(tokenizer(texts, ...)))`
feeds them: input_ids, attention_mask and (where the tokenizer returns them:
BERT, not RoBERTa/XLM-R) token_type_ids, int64 [B, L].
Outputs, all float32:
  encoder     last_hidden_state [B, L, D]; with a sentence-transformers head
              also sentence_embedding [B, E], pooled, projected and
              normalised as `SentenceTransformer(hf/).encode` computes it
  classifier  logits [B, C], probabilities [B, C]; the label names in the
              file's metadata (`id2label`, JSON) as in config.json

The graph is traced with torch from transformers' own model of the
directory, so the files compute what transformers computes. The additive
attention mask is built here: transformers 5 builds its mask with the
trace's sequence length baked into a constant shape, which gives wrong
states for every other length.

Int8 is ONNX Runtime's dynamic quantization with the settings of
sentence-transformers' "avx512_vnni" preset (hence the name; the file runs
on any CPU ONNX Runtime supports): weights int8, symmetric, one scale per
output channel; activations uint8, scaled per call from their range. Unlike
that preset the embedding tables (Gather) are int8 as well: they hold most
of a small student's weights. Kept in float: LayerNorm, softmax, the
activation functions, the attention mask, pooling and normalisation, and
the layers on one vector per text (the pooler, a sentence-transformers
Dense, a classifier: Gemm nodes), whose few weights decide the output
directly.
"""

import contextlib
import json
import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

ONNX_DIR = "onnx"
FLOAT32_FILE = "model.onnx"
INT8_FILE = "model_qint8_avx512_vnni.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
# The encoder's layers (MatMul on [B, L, D]) and embedding tables (Gather).
# The layers on one vector per text (pooler, sentence Dense, classifier)
# export as Gemm and stay float.
QUANTIZED_OPS = ("MatMul", "Gather")


class OnnxExportError(ValueError):
  """A model that cannot be written as ONNX, or packages that are missing."""


def require_toolchain() -> None:
  """Raises OnnxExportError naming the extra when a package is missing:
  called before a run whose end writes ONNX files."""
  _import_toolchain()


def _import_toolchain():
  try:
    import onnx  # pylint: disable=g-import-not-at-top
    import onnxruntime  # pylint: disable=g-import-not-at-top,unused-import
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise OnnxExportError(
        f"ONNX exports need the onnx extra ({e.name} is missing): pip install "
        "'tf_minilm[onnx]'") from None
  return onnx, torch, transformers


@contextlib.contextmanager
def _quiet(transformers):
  """No load report or progress bar from transformers, and no advice from
  the quantizer (its pre-processing suggestion is logged as a warning)."""
  verbosity = transformers.logging.get_verbosity()
  transformers.logging.set_verbosity_error()
  transformers.logging.disable_progress_bar()
  logging.disable(logging.WARNING)
  try:
    yield
  finally:
    logging.disable(logging.NOTSET)
    transformers.logging.enable_progress_bar()
    transformers.logging.set_verbosity(verbosity)


def _graph_module(torch, encoder, head=None, classifier=None):
  """A torch module over transformers' `encoder` with the outputs above."""

  class Graph(torch.nn.Module):
    """input_ids, attention_mask, token_type_ids -> the file's outputs."""

    def __init__(self):
      super().__init__()
      self.encoder = encoder
      if head is not None and head.dense is not None:
        self.sentence_dense = torch.nn.Linear(*head.dense.weight.shape[::-1])
        self.sentence_dense.weight.data = torch.from_numpy(
            np.asarray(head.dense.weight, np.float32))
        self.sentence_dense.bias.data = torch.from_numpy(
            np.asarray(head.dense.bias, np.float32))
      if classifier is not None:
        kernel, bias, self.use_pooler = classifier
        self.classifier = torch.nn.Linear(*kernel.shape)
        self.classifier.weight.data = torch.from_numpy(
            np.ascontiguousarray(kernel.T, np.float32))
        self.classifier.bias.data = torch.from_numpy(bias.astype(np.float32))

    def forward(self, input_ids, attention_mask, token_type_ids=None):
      states = self.encoder.embeddings(input_ids=input_ids,
                                       token_type_ids=token_type_ids)
      real = attention_mask.to(states.dtype)
      key_bias = (1.0 - real[:, None, None, :]) * torch.finfo(
          states.dtype).min
      for layer in self.encoder.encoder.layer:
        states = layer(states, attention_mask=key_bias)
        if isinstance(states, tuple):
          states = states[0]
      if classifier is not None:
        features = (self.encoder.pooler(states) if self.use_pooler else
                    states[:, 0])
        logits = self.classifier(features)
        return logits, torch.softmax(logits, dim=-1)
      if head is None:
        return (states,)
      return states, self._sentence_embedding(states, real)

    def _sentence_embedding(self, states, real):
      # The arithmetic of sentence_embedding.embed, term for term.
      if head.pooling == "cls":
        x = states[:, 0]
      elif head.pooling == "max":
        x = torch.where(real[:, :, None] > 0, states,
                        torch.full_like(states, -1e9)).amax(dim=1)
      else:
        total = (states * real[:, :, None]).sum(dim=1)
        count = real.sum(dim=1, keepdim=True).clamp(min=1e-9)
        x = total / (count if head.pooling == "mean" else count.sqrt())
      if head.dense is not None:
        x = self.sentence_dense(x)
        if head.dense.activation == "tanh":
          x = torch.tanh(x)
      if head.normalize:
        x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
      return x

  return Graph().eval()


def _input_names(hf_dir: str, transformers) -> List[str]:
  accepted = transformers.AutoTokenizer.from_pretrained(
      hf_dir).model_input_names
  return [name for name in INPUT_NAMES if name in accepted]


def _example_inputs(torch, vocab_size: int, input_names: Sequence[str]):
  # Two rows of different lengths: the trace sees padding.
  ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]).clamp(max=vocab_size - 1)
  mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
  return (ids, mask, torch.zeros_like(ids))[:len(input_names)]


def _write(hf_dir: str, graph, output_names: Sequence[str],
           metadata: Dict[str, str]) -> Dict[str, str]:
  onnx, torch, transformers = _import_toolchain()
  input_names = _input_names(hf_dir, transformers)
  from onnxruntime.quantization import QuantType  # pylint: disable=g-import-not-at-top
  from onnxruntime.quantization import quantize_dynamic  # pylint: disable=g-import-not-at-top
  out_dir = os.path.join(hf_dir, ONNX_DIR)
  os.makedirs(out_dir, exist_ok=True)
  paths = {"float32": os.path.join(out_dir, FLOAT32_FILE),
           "int8": os.path.join(out_dir, INT8_FILE)}
  dynamic = {name: {0: "batch", 1: "sequence"} for name in input_names}
  for name in output_names:
    dynamic[name] = ({0: "batch", 1: "sequence"}
                     if name == "last_hidden_state" else {0: "batch"})
  staging = {kind: path + ".partial" for kind, path in paths.items()}
  with torch.no_grad():
    torch.onnx.export(
        graph, _example_inputs(torch, graph.encoder.config.vocab_size,
                               input_names),
        staging["float32"], dynamo=False, opset_version=OPSET,
        input_names=input_names, output_names=list(output_names),
        dynamic_axes=dynamic)
  # By name: the quantizer rewrites a Gemm it is not told to leave alone
  # into a MatMul of another name, which an op-type list would then take.
  quantized = [node.name for node in onnx.load(staging["float32"]).graph.node
               if node.op_type in QUANTIZED_OPS]
  quantize_dynamic(staging["float32"], staging["int8"], per_channel=True,
                   weight_type=QuantType.QInt8,
                   op_types_to_quantize=list(QUANTIZED_OPS),
                   nodes_to_quantize=quantized)
  for kind, path in staging.items():
    model = onnx.load(path)
    for key, value in dict(metadata, precision=kind).items():
      model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    os.replace(path, paths[kind])
  return paths


def write_encoder(hf_dir: str, head=None) -> Dict[str, str]:
  """`hf_dir/onnx/` files of the encoder in `hf_dir`, with `head` (a
  `sentence_embedding.SentenceHead`) as the sentence_embedding output;
  returns {"float32": path, "int8": path}."""
  _, torch, transformers = _import_toolchain()
  outputs = ["last_hidden_state"] + (["sentence_embedding"] if head else [])
  metadata = {"producer": "tf_minilm"}
  if head is not None:
    metadata["sentence_embedding"] = json.dumps(
        {"pooling": head.pooling, "dense": head.dense is not None,
         "normalize": head.normalize})
  with _quiet(transformers):
    encoder = transformers.AutoModel.from_pretrained(
        hf_dir, attn_implementation="eager")
    return _write(hf_dir, _graph_module(torch, encoder, head), outputs,
                  metadata)


def write_classifier(hf_dir: str, kernel: np.ndarray, bias: np.ndarray,
                     use_pooler: bool, labels: List[str]) -> Dict[str, str]:
  """`hf_dir/onnx/` files of a classifier: the encoder in `hf_dir`, then
  dropout-free dense `[D, C]` on the pooled (or raw) [CLS] state."""
  _, torch, transformers = _import_toolchain()
  id2label = {str(i): label for i, label in enumerate(labels)}
  with _quiet(transformers):
    encoder = transformers.AutoModel.from_pretrained(
        hf_dir, attn_implementation="eager", add_pooling_layer=use_pooler)
    graph = _graph_module(torch, encoder,
                          classifier=(kernel, bias, use_pooler))
    return _write(hf_dir, graph, ("logits", "probabilities"),
                  {"producer": "tf_minilm",
                   "id2label": json.dumps(id2label)})


def describe(paths: Dict[str, str], relative_to: str) -> Dict[str, Dict]:
  """export_info.json's entry: each file's path and size."""
  return {kind: {"path": os.path.relpath(path, relative_to),
                 "bytes": os.path.getsize(path)}
          for kind, path in paths.items()}


def session(path: str, threads: Optional[int] = None):
  """An ONNX Runtime CPU session of `path` (`threads`: intra-op threads)."""
  import onnxruntime  # pylint: disable=g-import-not-at-top
  options = onnxruntime.SessionOptions()
  if threads:
    options.intra_op_num_threads = threads
  return onnxruntime.InferenceSession(path, options,
                                      providers=["CPUExecutionProvider"])
