"""Serving export: a SavedModel that takes raw strings, plus Keras and HF copies.

Signatures of the SavedModel (all outputs float32 except the mask):
  serving_default(text: string [B])
  serving_pair(text: string [B], text_pair: string [B])
  serving_ids(input_ids: int32 [B, L], segment_ids: int32 [B, L],
              input_mask: int32 [B, L])
  -> sequence_output [B, L, D]: last hidden states
     pooled_output   [B, D]: BERT pooler, tanh(W h_[CLS] + b). Distillation does
                     not train the pooler; fine-tuning does.
     cls_output      [B, D]: the raw [CLS] hidden state
     input_mask      [B, L] int32: 1 at real tokens
     sentence_embedding [B, E]: only for a model with a sentence-transformers
                     head (an embedding student, or a sentence-transformers
                     teacher): pooled, projected and normalised as
                     `SentenceTransformer(hf/).encode` computes it
Text is tokenized in the graph exactly as in training and as `transformers`
(invalid UTF-8 replaced, HF-exact WordPiece, [CLS]/[SEP], truncation to
`max_seq_length` tokens, longest first for pairs), so the ids match both.

Malformed requests (a scalar or a matrix of strings, inputs of different batch
sizes or widths, ids outside the vocabulary, segment ids outside the type
vocabulary, a mask other than 0/1, more positions than the model has) fail
with InvalidArgumentError naming the problem; the serving process carries on.
Shapes are checked with EnsureShape, which runs on every request (a signature
does not check the rank of what it is given).
"""

import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from tf_minilm import config as config_lib
from tf_minilm import convert
from tf_minilm import errors
from tf_minilm import io_utils
from tf_minilm import layout as layout_lib
from tf_minilm import modeling
from tf_minilm import onnx_export
from tf_minilm import sentence_embedding
from tf_minilm import text_encoding
from tf_minilm import tokenization

SAVED_MODEL = "saved_model"
EXPORT_INFO = "export_info.json"


class ExportError(errors.InputError):
  """A source that cannot be exported, or an output that would be clobbered."""


class _TextServing(tf.Module):
  """String signatures over a model: `serve_text(text)` and
  `serve_pair(text, text_pair)`, encoded exactly as in training, with the
  request's shapes checked in the graph; subclasses map the encoded batch to
  their outputs in `_outputs`."""

  def __init__(self, name: str, tokenizer: text_encoding.Tokenizer,
               vocab_path: str, max_seq_length: int):
    super().__init__(name=name)
    self.tokenizer = tokenizer
    self.vocab_file = tf.saved_model.Asset(vocab_path)
    self.max_seq_length = max_seq_length
    self.encoder = text_encoding.TextEncoder(tokenizer, max_seq_length)

  def _outputs(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    raise NotImplementedError

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def serve_text(self, text):
    text = tf.ensure_shape(text, [None], name="text_must_be_a_vector")
    return self._outputs(self.encoder.encode(text))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                tf.TensorSpec([None], tf.string,
                                              name="text_pair")])
  def serve_pair(self, text, text_pair):
    text = tf.ensure_shape(text, [None], name="text_must_be_a_vector")
    text_pair = tf.ensure_shape(text_pair, [None],
                                name="text_pair_must_be_a_vector")
    same = tf.debugging.assert_equal(
        tf.shape(text), tf.shape(text_pair),
        message="text and text_pair must hold the same number of texts")
    with tf.control_dependencies([same]):
      text = tf.identity(text)
    return self._outputs(self.encoder.encode_pairs(text, text_pair))


class ServingModule(_TextServing):
  """Tokenizer + encoder with string and id signatures."""

  def __init__(self, encoder: modeling.Encoder,
               tokenizer: text_encoding.Tokenizer, vocab_path: str,
               max_seq_length: int,
               head: Optional[sentence_embedding.SentenceHead] = None):
    super().__init__("tf_minilm_serving", tokenizer, vocab_path,
                     max_seq_length)
    self.model = encoder.model
    self.head = head
    self._vocab_size = encoder.config.vocab_size
    self._type_vocab_size = encoder.config.type_vocab_size
    self._max_positions = encoder.config.max_position_embeddings

  def _outputs(self, batch):
    mask = batch["padding_mask"]
    out = self.model(batch, training=False)
    sequence = tf.cast(out["sequence_output"], tf.float32)
    outputs = {"sequence_output": sequence,
               "pooled_output": tf.cast(out["pooled_output"], tf.float32),
               "cls_output": sequence[:, 0, :],
               "input_mask": tf.cast(mask, tf.int32)}
    if self.head is not None:
      outputs["sentence_embedding"] = sentence_embedding.embed_with_head(
          sequence, mask, self.head)
    return outputs

  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.int32, name="input_ids"),
      tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
      tf.TensorSpec([None, None], tf.int32, name="input_mask")])
  def serve_ids(self, input_ids, segment_ids, input_mask):
    input_ids, segment_ids, input_mask = (
        tf.ensure_shape(x, [None, None], name=f"{name}_must_be_a_matrix")
        for x, name in ((input_ids, "input_ids"), (segment_ids, "segment_ids"),
                        (input_mask, "input_mask")))
    checks = [
        tf.debugging.assert_equal(
            tf.shape(segment_ids), tf.shape(input_ids),
            message="segment_ids must have the shape of input_ids"),
        tf.debugging.assert_equal(
            tf.shape(input_mask), tf.shape(input_ids),
            message="input_mask must have the shape of input_ids"),
        tf.debugging.assert_less_equal(
            tf.shape(input_ids)[1], self._max_positions,
            message=f"at most {self._max_positions} positions per row"),
        _assert_in_range(input_ids, self._vocab_size, "input_ids"),
        _assert_in_range(segment_ids, self._type_vocab_size, "segment_ids"),
        _assert_in_range(input_mask, 2, "input_mask")]
    with tf.control_dependencies(checks):
      input_ids = tf.identity(input_ids)
    return self._outputs({"token_ids": input_ids, "segment_ids": segment_ids,
                          "padding_mask": tf.not_equal(input_mask, 0)})


def _assert_in_range(values: tf.Tensor, size: int, name: str) -> tf.Operation:
  return tf.debugging.assert_equal(
      tf.reduce_all((values >= 0) & (values < size)), True,
      message=f"{name} must lie in [0, {size})")


class ClassifierServingModule(_TextServing):
  """Tokenizer + fine-tuned classifier: texts (or pairs) -> `logits` and
  `probabilities` `[B, C]` float32 and `label` `[B]` string."""

  def __init__(self, model: keras.Model, tokenizer: text_encoding.Tokenizer,
               vocab_path: str, labels, max_seq_length: int):
    super().__init__("tf_minilm_classifier", tokenizer, vocab_path,
                     max_seq_length)
    self.model = model
    self.labels = tf.constant(list(labels))

  def _outputs(self, batch):
    logits = tf.cast(self.model(batch, training=False), tf.float32)
    return {"logits": logits, "probabilities": tf.nn.softmax(logits),
            "label": tf.gather(self.labels, tf.argmax(logits, -1))}


def export_classifier(model: keras.Model,
                      tokenizer: text_encoding.Tokenizer, vocab_path: str,
                      labels, max_seq_length: int,
                      saved_model_dir: str) -> None:
  """A SavedModel of a fine-tuned classifier's Keras model: serving_default
  (text) and serving_pair(text, text_pair) (use the one the task was trained
  on)."""
  module = ClassifierServingModule(model, tokenizer, vocab_path, labels,
                                   max_seq_length)
  tf.saved_model.save(module, saved_model_dir, signatures={
      "serving_default": module.serve_text, "serving_pair": module.serve_pair})


def _locate(source: str) -> Tuple[str, Optional[str]]:
  """The directory whose files describe the model of `source` (for a
  bin/distill output directory its newest model_<step>/: architecture,
  tokenizer and sentence-transformers head), and the checkpoint whose
  weights it takes (a run's latest; None for other sources)."""
  layout = layout_lib.RunLayout(source, config_lib.CONFIG_FILENAME)
  checkpoint = tf.train.latest_checkpoint(layout.checkpoint_dir)
  if layout.read_config() is not None and checkpoint:
    steps = layout.model_steps()
    if not steps:
      raise ExportError(
          f"{source}: the run has a checkpoint "
          f"({os.path.basename(checkpoint)}) but no model_<step>/ yet, which "
          "describes its student; rerun bin/distill until its first save "
          "(--save_steps), then export")
    return layout.model_dir(steps[-1]), checkpoint
  if os.path.isdir(os.path.join(source, layout_lib.STUDENT_HF)) or \
      os.path.isfile(os.path.join(source, "config.json")):
    return source, None
  raise ExportError(
      f"{source}: not a model_<step>/ directory, a HF model directory, nor a "
      f"training output directory with {config_lib.CONFIG_FILENAME} and "
      f"{layout_lib.CHECKPOINT_DIR}/")


def _hf_dir(model_dir: str) -> str:
  hf_dir = os.path.join(model_dir, layout_lib.STUDENT_HF)
  return hf_dir if os.path.isdir(hf_dir) else model_dir


def _restore(checkpoint: str, what: str, **objects) -> None:
  """Every weight of `objects` from `checkpoint` (the optimizer's slots and
  the step in it are not needed), else ExportError."""
  try:
    status = tf.train.Checkpoint(**objects).restore(checkpoint)
    status.assert_existing_objects_matched().expect_partial()
  except (AssertionError, ValueError) as e:
    raise ExportError(
        f"{checkpoint} does not hold every weight of {what}, in its shape; "
        "refusing to export partly random weights "
        f"({str(e).splitlines()[0][:300]})") from None


def load_student(source: str) -> modeling.Encoder:
  """The student of a `model_{step}/` directory, a HF directory, or a training
  output directory (the weights of its latest checkpoint in the architecture
  its newest model_<step>/ describes)."""
  model_dir, checkpoint = _locate(source)
  student = convert.load_encoder(_hf_dir(model_dir), dtype="float32",
                                 name="student")
  if checkpoint is not None:
    _restore(checkpoint, f"the student that {model_dir} describes",
             student=student.model)
  return student


def load_sentence_head(source: str, student: modeling.Encoder
                       ) -> Optional[sentence_embedding.SentenceHead]:
  """The sentence-transformers head of what `load_student` read (for a
  training output directory, its newest model_<step>/'s head with the
  projection of the latest checkpoint); None where there is none."""
  model_dir, checkpoint = _locate(source)
  try:
    head = sentence_embedding.read_head(_hf_dir(model_dir),
                                        student.config.hidden_size)
  except sentence_embedding.HeadError as e:
    raise ExportError(str(e)) from None
  if checkpoint is None or head is None or head.dense is None:
    return head
  projection = sentence_embedding.build_projection(
      head.dense.weight.shape[0], student.config, head.dense)
  _restore(checkpoint, f"an embedding projection of width "
           f"{head.dense.weight.shape[0]}", projection=projection)
  return sentence_embedding.student_head(head, projection)


def _tokenizer_dir(source: str) -> str:
  # hf/ first: a model_<step>/ directory's own tokenizer_config.json may be
  # the class-only file written beside a teacher that had none.
  model_dir, _ = _locate(source)
  for candidate in (os.path.join(model_dir, layout_lib.STUDENT_HF), model_dir):
    if tokenization.has_tokenizer_files(candidate):
      return candidate
  raise ExportError(f"{source}: no vocab.txt or tokenizer.json found for the "
                    "tokenizer")


def custom_ops(saved_model_dir: str) -> List[str]:
  """Ops the SavedModel uses that plain TensorFlow does not register (checked
  in a fresh interpreter without tensorflow_text)."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  names = set()
  for meta in proto.meta_graphs:
    names.update(node.op for node in meta.graph_def.node)
    for function in meta.graph_def.library.function:
      names.update(node.op for node in function.node_def)
  script = ("import sys, json; import tensorflow as tf; "
            "from tensorflow.python.framework import op_def_registry as r; "
            "names = json.load(sys.stdin); "
            "print(json.dumps(sorted(n for n in names if r.get(n) is None)))")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", script],
                          input=json.dumps(sorted(names)), capture_output=True,
                          text=True, check=True, env=env)
  return json.loads(result.stdout.strip().splitlines()[-1])


DEFAULT_MAX_SEQ_LENGTH = 128


def _check_inputs_outside(output_dir: str, source: str) -> None:
  """Refuses an output_dir that is, or holds, the source, or for a training
  run the teacher its config names."""
  inputs = [(source, "--source")]
  text = layout_lib.RunLayout(source, config_lib.CONFIG_FILENAME).read_config()
  if text is not None:
    try:
      teacher = config_lib.DistillConfig.from_json(
          text, source).teacher_model_name_or_path
      inputs.append((teacher, f"the teacher that {source} was distilled "
                     "from"))
    except ValueError:
      pass  # load_student names the broken config
  output = os.path.realpath(output_dir)
  for path, what in inputs:
    real = os.path.realpath(path)
    if real == output or real.startswith(output + os.sep):
      raise ExportError(f"--output_dir={output_dir} is or holds {path}, "
                        f"{what}: refusing to write over an input")


def run_max_seq_length(source: str) -> Optional[int]:
  """--max_seq_length of the bin/distill run that `source` is, or whose
  model_<step>/ it is; None for other sources."""
  for run_dir in (source, os.path.dirname(os.path.abspath(source))):
    text = layout_lib.RunLayout(run_dir, config_lib.CONFIG_FILENAME
                                ).read_config()
    if text is not None:
      try:
        return config_lib.DistillConfig.from_json(
            text, run_dir).max_seq_length
      except ValueError as e:
        raise ExportError(str(e)) from None
  return None


def _max_seq_length(source: str, given: Optional[int],
                    head: Optional[sentence_embedding.SentenceHead],
                    student: modeling.EncoderConfig) -> Tuple[int, str]:
  """The export's max_seq_length and where it comes from: the flag, the
  training run's, a sentence-transformers source's own (at most the
  positions the student embeds), else DEFAULT_MAX_SEQ_LENGTH."""
  if given is not None:
    return given, "--max_seq_length"
  run = run_max_seq_length(source)
  if run is not None:
    return run, "the training run's --max_seq_length"
  if head is not None and head.max_seq_length:
    length = min(head.max_seq_length, student.usable_positions)
    capped = ("" if length == head.max_seq_length else
              f" ({head.max_seq_length}), at most the "
              f"{student.positions_text()} the model embeds")
    return length, f"{sentence_embedding.SBERT_CONFIG} of {source}{capped}"
  return DEFAULT_MAX_SEQ_LENGTH, "the default"


def export(source: str, output_dir: str,
           max_seq_length: Optional[int] = None,
           overwrite: bool = False, int8: bool = False) -> Dict:
  """Writes `output_dir/{saved_model,student.keras,hf,export_info.json}`,
  with `int8` also `hf/onnx/` (onnx_export: float32 and int8 ONNX);
  `max_seq_length` defaults as `_max_seq_length` says. Refuses an
  output_dir that is or holds an input, and replaces only an earlier
  export (a directory with EXPORT_INFO)."""
  _check_inputs_outside(output_dir, source)
  if os.path.exists(output_dir):
    if not overwrite:
      raise ExportError(f"{output_dir} already exists; pass --overwrite to "
                        "replace it")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and \
        not os.path.isfile(os.path.join(output_dir, EXPORT_INFO)):
      raise ExportError(
          f"--output_dir={output_dir} is not empty and holds no "
          f"{EXPORT_INFO}, so it is not a bin/export output; --overwrite "
          "replaces only those")
  if int8:
    try:
      onnx_export.require_toolchain()
    except onnx_export.OnnxExportError as e:
      raise ExportError(str(e)) from None
  keras.mixed_precision.set_global_policy("float32")
  student = load_student(source)
  head = load_sentence_head(source, student)
  max_seq_length, length_from = _max_seq_length(source, max_seq_length,
                                                head, student.config)
  tokenizer_dir = _tokenizer_dir(source)
  settings = tokenization.read_tokenizer(tokenizer_dir)
  specials = settings.num_special_tokens(pair=True)
  if max_seq_length < specials:
    raise ExportError(f"max_seq_length must be >= {specials} (the special "
                      "tokens around a pair of texts), got "
                      f"{max_seq_length}")
  if max_seq_length > student.config.usable_positions:
    raise ExportError(f"max_seq_length {max_seq_length} exceeds the "
                      f"{student.config.positions_text()} the student "
                      "embeds")
  tokenizer = settings.tokenizer()
  with io_utils.atomic_directory(output_dir, overwrite) as staging:
    module = ServingModule(student, tokenizer, settings.path, max_seq_length,
                           head)
    saved_model_dir = os.path.join(staging, SAVED_MODEL)
    tf.saved_model.save(module, saved_model_dir, signatures={
        "serving_default": module.serve_text,
        "serving_pair": module.serve_pair,
        "serving_ids": module.serve_ids})
    student.model.save(os.path.join(staging, layout_lib.STUDENT_KERAS))
    hf_dir = os.path.join(staging, layout_lib.STUDENT_HF)
    convert.export_hf(student, hf_dir, tokenizer_dir=tokenizer_dir)
    outputs = ["sequence_output", "pooled_output", "cls_output", "input_mask"]
    if head is not None:
      sentence_embedding.write_head(head, hf_dir, student.config.hidden_size,
                                    max_seq_length)
      outputs.append("sentence_embedding")
    info = {
        "source": os.path.abspath(source),
        "max_seq_length": max_seq_length,
        "max_seq_length_from": length_from,
        "signatures": ["serving_default", "serving_pair", "serving_ids"],
        "outputs": outputs,
        "custom_ops": custom_ops(saved_model_dir),
        "tensorflow_version": tf.__version__,
        "tensorflow_text_version": tf_text.__version__,
        "load_note": "import tensorflow_text before tf.saved_model.load; TF "
                     "Serving must link tf-text ops of the same version",
    }
    if head is not None:
      info["sentence_embedding"] = sentence_embedding.describe(head)
    if int8:
      try:
        paths = onnx_export.write_encoder(hf_dir, head)
      except onnx_export.OnnxExportError as e:
        raise ExportError(str(e)) from None
      info["onnx"] = onnx_export.describe(paths, staging)
    with open(os.path.join(staging, EXPORT_INFO), "w", encoding="utf-8") as f:
      json.dump(info, f, indent=2)
  return info
