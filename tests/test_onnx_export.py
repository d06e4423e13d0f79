"""ONNX exports: float32 = transformers / sentence-transformers, int8 close to
float32, both served by ONNX Runtime alone with transformers' token ids
(bin/export --int8 against the SavedModel: test_export)."""

import json
import os
import shutil
import subprocess
import sys
from unittest import mock

import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import export
from tf_minilm import onnx_export
from tf_minilm import sentence_embedding

# Lengths from 2 to past the trace's 4 tokens, padding in every batch, an
# empty text, unknown characters, and one text cut at max_seq_length.
TEXTS = ["hello world", "the student and the teacher distill", "",
         "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 3,
         "的 是 了 hello ü"]
MAX_SEQ_LENGTH = 24

# Runs in a fresh interpreter with ONNX Runtime, transformers' tokenizer and
# numpy only: what a user serving the files has.
SERVE = r"""
import json, sys
import numpy as np
import onnxruntime
import transformers
hf_dirs, names, texts, max_length, out = sys.argv[1:6]
results = {}
for i, hf_dir in enumerate(json.loads(hf_dirs)):
  tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
  for name in json.loads(names):
    session = onnxruntime.InferenceSession(
        f"{hf_dir}/onnx/{name}", providers=["CPUExecutionProvider"])
    for batch_name, batch in (("all", json.loads(texts)),
                              ("one", json.loads(texts)[:1])):
      feed = dict(tokenizer(batch, padding=True, truncation=True,
                            max_length=int(max_length), return_tensors="np"))
      for output, value in zip(session.get_outputs(),
                               session.run(None, feed)):
        results[f"{i}/{name}/{batch_name}/{output.name}"] = value
      results[f"{i}/{name}/{batch_name}/attention_mask"] = feed[
          "attention_mask"]
    results[f"{i}/{name}/metadata"] = np.array(json.dumps(
        session.get_modelmeta().custom_metadata_map))
np.savez(out, **results)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                        ("tf_minilm", "tensorflow", "keras"))))
"""

FILES = (onnx_export.FLOAT32_FILE, onnx_export.INT8_FILE)


def _cosine(a, b):
  return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) *
                            np.linalg.norm(b, axis=-1))


class OnnxExportTest(hf_fixtures.TinyModelTestCase):
  TINY_MODEL = dict(num_hidden_layers=2, vocab_size=120)

  def serve(self, hf_dirs):
    """Each directory's outputs, served in one fresh process:
    [{"<file>/<all|one>/<output>": array, "<file>/metadata": ...}]."""
    out = os.path.join(self.root, "served.npz")
    proc = subprocess.run(
        [sys.executable, "-c", SERVE, json.dumps(hf_dirs), json.dumps(FILES),
         json.dumps(TEXTS), str(MAX_SEQ_LENGTH), out],
        capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertEqual(json.loads(proc.stdout.strip().splitlines()[-1]), [])
    served = np.load(out)
    return [{key.split("/", 1)[1]: served[key] for key in served.files
             if key.startswith(f"{i}/")} for i in range(len(hf_dirs))]

  def _hf_states(self, hf_dir, texts):
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModel.from_pretrained(hf_dir).eval()
    feed = tokenizer(texts, padding=True, truncation=True,
                     max_length=MAX_SEQ_LENGTH, return_tensors="pt")
    with torch.no_grad():
      return model(**feed).last_hidden_state.numpy()

  def _source(self, name, head=None, model_type="bert"):
    source = os.path.join(self.root, name)
    if model_type == "bert":
      shutil.copytree(self.model_dir, source)
    else:
      hf_fixtures.make_hf_model(source, model_type=model_type,
                                **self.TINY_MODEL)
    if head is not None:
      sentence_embedding.write_head(head, source, 24, MAX_SEQ_LENGTH)
    return source

  def test_every_head_as_sentence_transformers_computes_it(self):
    from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(2)
    dense = sentence_embedding.Dense(
        rng.normal(size=(11, 24)).astype(np.float32),
        rng.normal(size=11).astype(np.float32), "tanh")
    heads = {
        "mean_normalize": sentence_embedding.SentenceHead("mean", None, True),
        "cls_tanh_dense_normalize": sentence_embedding.SentenceHead(
            "cls", dense, True),
        "max": sentence_embedding.SentenceHead("max"),
        "mean_sqrt_len_tokens_identity_dense": sentence_embedding.SentenceHead(
            "mean_sqrt_len_tokens", sentence_embedding.Dense(
                dense.weight, dense.bias, "identity")),
    }
    sources = {name: self._source(name, head) for name, head in heads.items()}
    paths = {name: onnx_export.write_encoder(sources[name], head)
             for name, head in heads.items()}
    all_served = dict(zip(heads, self.serve(list(sources.values()))))
    for name, head in heads.items():
      with self.subTest(head=name):
        source, served = sources[name], all_served[name]
        self.assertEqual(sorted(os.listdir(os.path.join(source, "onnx"))),
                         sorted(FILES))
        theirs = SentenceTransformer(source, device="cpu").encode(TEXTS)
        fp32 = served[f"{onnx_export.FLOAT32_FILE}/all/sentence_embedding"]
        int8 = served[f"{onnx_export.INT8_FILE}/all/sentence_embedding"]
        self.assertAllClose(fp32, theirs, atol=1e-5, rtol=0)
        self.assertAllClose(
            served[f"{onnx_export.FLOAT32_FILE}/one/sentence_embedding"],
            theirs[:1], atol=1e-5, rtol=0)
        cosine = _cosine(int8, fp32)
        print(f"\n{name}: int8 vs float32 cosine min {cosine.min():.4f} "
              f"mean {cosine.mean():.4f}")
        self.assertGreater(cosine.min(), 0.95)
        # The head after the encoder stays float in the int8 file; the
        # encoder's layers do not.
        import onnx  # pylint: disable=g-import-not-at-top
        int8_nodes = onnx.load(paths[name]["int8"]).graph.node
        head_nodes = [n.op_type for n in int8_nodes
                      if n.name.startswith("/sentence_dense")]
        self.assertEqual(bool(head_nodes), head.dense is not None)
        self.assertNotIn("MatMulInteger", head_nodes)
        self.assertIn("MatMulInteger", {n.op_type for n in int8_nodes})
        metadata = json.loads(
            served[f"{onnx_export.INT8_FILE}/metadata"].item())
        self.assertEqual(metadata["precision"], "int8")

  def test_states_equal_transformers_for_bert_and_roberta(self):
    types = ("bert", "roberta")
    sources = [self._source(f"plain_{t}", model_type=t) for t in types]
    for source in sources:
      onnx_export.write_encoder(source)
    for model_type, source, served in zip(types, sources,
                                          self.serve(sources)):
      with self.subTest(model_type=model_type):
        mask = served[f"{onnx_export.FLOAT32_FILE}/all/attention_mask"] > 0
        want = self._hf_states(source, TEXTS)
        got = served[f"{onnx_export.FLOAT32_FILE}/all/last_hidden_state"]
        self.assertEqual(got.shape, want.shape)
        self.assertAllClose(got[mask], want[mask], atol=1e-5, rtol=0)
        int8 = served[f"{onnx_export.INT8_FILE}/all/last_hidden_state"]
        self.assertGreater(_cosine(int8[mask], got[mask]).mean(), 0.95)

  def test_classifier_logits_with_and_without_the_pooler(self):
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(24, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    labels = ["neg", "neutral", "pos"]
    poolers = (True, False)
    sources = [self._source(f"classifier_{p}") for p in poolers]
    for use_pooler, source in zip(poolers, sources):
      onnx_export.write_classifier(source, kernel, bias, use_pooler, labels)
    for use_pooler, source, served in zip(poolers, sources,
                                          self.serve(sources)):
      with self.subTest(use_pooler=use_pooler):
        model = transformers.AutoModel.from_pretrained(source).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        with torch.no_grad():
          out = model(**tokenizer(TEXTS, padding=True, truncation=True,
                                  max_length=MAX_SEQ_LENGTH,
                                  return_tensors="pt"))
        features = (out.pooler_output if use_pooler else
                    out.last_hidden_state[:, 0]).numpy()
        want = features @ kernel + bias
        logits = served[f"{onnx_export.FLOAT32_FILE}/all/logits"]
        self.assertAllClose(logits, want, atol=1e-5, rtol=0)
        self.assertAllClose(
            served[f"{onnx_export.FLOAT32_FILE}/all/probabilities"],
            tf.nn.softmax(want).numpy(), atol=1e-6, rtol=0)
        int8 = served[f"{onnx_export.INT8_FILE}/all/probabilities"]
        self.assertLess(np.abs(int8 - tf.nn.softmax(want).numpy()).max(),
                        0.1)
        metadata = json.loads(
            served[f"{onnx_export.FLOAT32_FILE}/metadata"].item())
        self.assertEqual(json.loads(metadata["id2label"]),
                         {"0": "neg", "1": "neutral", "2": "pos"})

  def test_missing_packages_are_named_before_anything_is_written(self):
    out = os.path.join(self.root, "never_written")
    with mock.patch.dict(sys.modules, {"onnxruntime": None}):
      with self.assertRaisesRegex(export.ExportError,
                                  r"onnx extra \(onnxruntime is missing\): "
                                  r"pip install 'tf_minilm\[onnx\]'"):
        export.export(self.model_dir, out, int8=True)
    self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  tf.test.main()
