"""SavedModel export: string signatures in a fresh process, bad inputs, HF copy."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf

import hf_fixtures
from tf_minilm import convert
from tf_minilm import export
from tf_minilm import modeling
from tf_minilm import text_encoding
from tf_minilm import tokenization

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["你好，世界！今天天气很好。", "Hello world, the student and the teacher.",
         "distill 的 student", "ＡＢＣ１２３全角"]
BAD = ["", "     ", "的" * 100_000, b"bad \xff\xfe utf8".decode("latin-1")]

# Runs in a fresh interpreter: only tensorflow and tensorflow_text imported.
SERVE = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # registers the tf-text ops
path, out = sys.argv[1], sys.argv[2]
model = tf.saved_model.load(path)
texts = json.loads(sys.argv[3])
bad = [b"", b"     ", "的".encode() * 100000, b"bad \xff\xfe utf8"]
results = {}
default = model.signatures["serving_default"]
for name, batch in (("good", [t.encode() for t in texts]), ("bad", bad),
                    ("empty", [])):
  r = default(text=tf.constant(batch, tf.string, shape=[len(batch)]))
  for k, v in r.items():
    results[f"{name}/{k}"] = v.numpy()
pair = model.signatures["serving_pair"](
    text=tf.constant([t.encode() for t in texts]),
    text_pair=tf.constant([t.encode() for t in reversed(texts)]))
for k, v in pair.items():
  results[f"pair/{k}"] = v.numpy()
signatures = {}
for name, fn in model.signatures.items():
  inputs = {k: [v.dtype.name, v.shape.as_list()]
            for k, v in fn.structured_input_signature[1].items()}
  outputs = {k: [v.dtype.name, v.shape.as_list()]
             for k, v in fn.structured_outputs.items()}
  signatures[name] = {"inputs": inputs, "outputs": outputs}
np.savez(out, **results)
print(json.dumps({"modules": sorted(m for m in sys.modules
                                    if m.split(".")[0] in ("tf_minilm",
                                                           "transformers",
                                                           "torch")),
                  "signatures": signatures}))
"""


# Malformed requests, each in the same fresh serving process, which must
# answer each with an error and then still serve a good request.
SERVE_MALFORMED = r"""
import json, sys
import tensorflow as tf
import tensorflow_text  # registers the tf-text ops
model = tf.saved_model.load(sys.argv[1])
text, pair, ids = (model.signatures[n] for n in ("serving_default",
                                                   "serving_pair", "serving_ids"))
good_ids = tf.constant([[2, 7, 3], [2, 8, 3]], tf.int32)
zeros, ones = tf.zeros_like(good_ids), tf.ones_like(good_ids)
requests = {
    "scalar text": lambda: text(text=tf.constant("a")),
    "matrix text": lambda: text(text=tf.constant([["a", "b"]])),
    "scalar pair": lambda: pair(text=tf.constant("a"),
                                text_pair=tf.constant(["b"])),
    "pair batch sizes": lambda: pair(text=tf.constant(["a", "b"]),
                                     text_pair=tf.constant(["c"])),
    "negative id": lambda: ids(input_ids=good_ids - 3, segment_ids=zeros,
                               input_mask=ones),
    "id past vocab": lambda: ids(input_ids=good_ids + 99, segment_ids=zeros,
                                 input_mask=ones),
    "segment -1": lambda: ids(input_ids=good_ids, segment_ids=zeros - 1,
                              input_mask=ones),
    "mask 2": lambda: ids(input_ids=good_ids, segment_ids=zeros,
                          input_mask=ones * 2),
    "mask width": lambda: ids(input_ids=good_ids, segment_ids=zeros,
                              input_mask=ones[:, :2]),
    "batch sizes": lambda: ids(input_ids=good_ids, segment_ids=zeros[:1],
                               input_mask=ones),
    "rank 1 ids": lambda: ids(input_ids=good_ids[0], segment_ids=zeros[0],
                              input_mask=ones[0]),
    "too many positions": lambda: ids(
        input_ids=tf.fill([1, 513], 7), segment_ids=tf.zeros([1, 513], tf.int32),
        input_mask=tf.ones([1, 513], tf.int32)),
}
errors = {}
for name, request in requests.items():
  try:
    request()
    errors[name] = None
  except tf.errors.InvalidArgumentError as e:
    errors[name] = e.message
after = text(text=tf.constant(["still serving"]))["sequence_output"].shape
print(json.dumps({"errors": errors, "after": after.as_list()}))
"""


class ExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tf.test.TestCase().get_temp_dir()
    cls.teacher_dir = os.path.join(root, "export_teacher")
    hf_fixtures.make_hf_model(cls.teacher_dir)
    config = modeling.student_config("ppminilm", 2, vocab_size=99).replace(
        hidden_size=24, num_heads=3, intermediate_size=37)
    cls.student = modeling.Encoder(config, name="student")
    cls.model_dir = os.path.join(root, "model_7")
    convert.export_hf(cls.student, os.path.join(cls.model_dir, "hf"),
                      tokenizer_dir=cls.teacher_dir)
    cls.out = os.path.join(root, "exported")
    cls.info = export.export(cls.model_dir, cls.out, max_seq_length=16,
                             int8=True)
    cls.npz = os.path.join(root, "served.npz")
    proc = subprocess.run(
        [sys.executable, "-c", SERVE, os.path.join(cls.out, "saved_model"),
         cls.npz, json.dumps(TEXTS)], capture_output=True, text=True,
        timeout=300)
    if proc.returncode:
      raise AssertionError(proc.stderr[-5000:])
    cls.served_meta = json.loads(proc.stdout.strip().splitlines()[-1])
    cls.served = dict(np.load(cls.npz))

  def _keras_outputs(self, texts):
    tokenizer = tokenization.BertTokenizer.from_model_dir(self.teacher_dir)
    ids = text_encoding.TextEncoder(tokenizer, 16).encode(
        tf.constant(texts))["token_ids"].numpy()
    out = self.student.model(hf_fixtures.encoder_inputs(ids, ids != 0))
    return ids, out

  def test_fresh_process_matches_keras(self):
    self.assertEqual(self.served_meta["modules"], [])
    ids, out = self._keras_outputs(TEXTS)
    self.assertAllEqual(self.served["good/input_mask"], (ids != 0).astype(int))
    for name in ("sequence_output", "pooled_output"):
      self.assertAllClose(self.served[f"good/{name}"], out[name], atol=1e-5,
                          rtol=0)
    self.assertAllClose(self.served["good/cls_output"],
                        out["sequence_output"][:, 0], atol=1e-5, rtol=0)

  def test_bad_inputs_have_defined_outputs(self):
    mask = self.served["bad/input_mask"]
    self.assertEqual(mask.shape[0], 4)
    self.assertEqual(mask[0].sum(), 2)   # "" -> [CLS] [SEP]
    self.assertEqual(mask[1].sum(), 2)   # spaces -> [CLS] [SEP]
    self.assertEqual(mask[2].sum(), 16)  # truncated to 16 tokens
    self.assertTrue(np.all(np.isfinite(self.served["bad/sequence_output"])))
    self.assertEqual(self.served["empty/sequence_output"].shape, (0, 2, 24))

  def test_malformed_requests_fail_and_the_process_survives(self):
    proc = subprocess.run(
        [sys.executable, "-c", SERVE_MALFORMED,
         os.path.join(self.out, "saved_model")], capture_output=True,
        text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {
        "scalar text": "text_must_be_a_vector", "matrix text": "[1,2]",
        "scalar pair": "text_must_be_a_vector",
        "pair batch sizes": "text and text_pair must hold the same number",
        "negative id": "input_ids must lie in [0, 99)",
        "id past vocab": "input_ids must lie in [0, 99)",
        "segment -1": "segment_ids must lie in [0, 2)",
        "mask 2": "input_mask must lie in [0, 2)",
        "mask width": "input_mask must have the shape of input_ids",
        "batch sizes": "segment_ids must have the shape of input_ids",
        "rank 1 ids": "must_be_a_matrix",
        "too many positions": "at most 512 positions per row"}
    for name, message in expected.items():
      with self.subTest(request=name):
        self.assertIsNotNone(result["errors"][name])
        self.assertIn(message, result["errors"][name])
    after = result["after"]
    self.assertEqual((after[0], after[2]), (1, 24))

  def test_pairs_use_segment_ids(self):
    tokenizer = tokenization.BertTokenizer.from_model_dir(self.teacher_dir)
    batch = text_encoding.TextEncoder(tokenizer, 16).encode_pairs(
        tf.constant(TEXTS), tf.constant(TEXTS[::-1]))
    ids, segments = batch["token_ids"].numpy(), batch["segment_ids"].numpy()
    out = self.student.model({"token_ids": ids, "segment_ids": segments,
                              "padding_mask": ids != 0})
    self.assertAllClose(self.served["pair/sequence_output"],
                        out["sequence_output"], atol=1e-5, rtol=0)

  def test_signatures_are_documented(self):
    sigs = self.served_meta["signatures"]
    self.assertEqual(sorted(sigs), ["serving_default", "serving_ids",
                                    "serving_pair"])
    self.assertEqual(sigs["serving_default"]["inputs"],
                     {"text": ["string", [None]]})
    self.assertEqual(sigs["serving_pair"]["inputs"],
                     {"text": ["string", [None]], "text_pair": ["string", [None]]})
    self.assertEqual(sigs["serving_ids"]["inputs"], {
        name: ["int32", [None, None]]
        for name in ("input_ids", "segment_ids", "input_mask")})
    for sig in sigs.values():
      self.assertEqual(sig["outputs"], {
          "sequence_output": ["float32", [None, None, 24]],
          "pooled_output": ["float32", [None, 24]],
          "cls_output": ["float32", [None, 24]],
          "input_mask": ["int32", [None, None]]})
    self.assertIn("FastWordpieceTokenizeWithOffsets", self.info["custom_ops"])
    self.assertEqual(self.info["tensorflow_text_version"], "2.21.1")

  def test_a_sentence_transformers_model_serves_its_embedding(self):
    # A HF directory with a sentence-transformers head (cls pooling, a tanh
    # Dense 24 -> 11, Normalize): the export adds `sentence_embedding` to
    # every signature and keeps the head in hf/.
    from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
    from tf_minilm import sentence_embedding  # pylint: disable=g-import-not-at-top
    root = self.get_temp_dir()
    source = os.path.join(root, "st_model")
    shutil.copytree(self.teacher_dir, source)
    rng = np.random.default_rng(1)
    sentence_embedding.write_head(sentence_embedding.SentenceHead(
        "cls", sentence_embedding.Dense(
            rng.normal(size=(11, 24)).astype(np.float32),
            rng.normal(size=11).astype(np.float32), "tanh"), True),
                                  source, 24, 16)
    out = os.path.join(root, "st_exported")
    info = export.export(source, out, max_seq_length=16)
    self.assertEqual(info["outputs"][-1], "sentence_embedding")
    self.assertEqual(info["sentence_embedding"], {
        "pooling": "cls", "dense": "24->11 tanh", "normalize": "true"})
    served = tf.saved_model.load(os.path.join(out, "saved_model"))
    ours = served.signatures["serving_default"](
        text=tf.constant(TEXTS))["sentence_embedding"]
    theirs = SentenceTransformer(os.path.join(out, "hf"),
                                 device="cpu").encode(TEXTS)
    self.assertAllClose(ours, theirs, atol=1e-5, rtol=0)

  def test_a_sentence_transformers_source_keeps_its_max_seq_length(self):
    # Without --max_seq_length the export takes the source's own
    # sentence_bert_config.json value (at most the positions it embeds).
    from tf_minilm import sentence_embedding  # pylint: disable=g-import-not-at-top
    root = self.get_temp_dir()
    for given, expected in ((20, 20), (300, 40)):
      with self.subTest(given=given):
        source = os.path.join(root, f"st_length_{given}")
        shutil.copytree(self.teacher_dir, source)
        sentence_embedding.write_head(sentence_embedding.SentenceHead(
            "mean", None, True), source, 24, given)
        info = export.export(source, os.path.join(root, f"out_{given}"))
        self.assertEqual(info["max_seq_length"], expected)
        self.assertIn("sentence_bert_config.json", info["max_seq_length_from"])
        with open(os.path.join(root, f"out_{given}", "hf",
                               "sentence_bert_config.json")) as f:
          self.assertEqual(json.load(f)["max_seq_length"], expected)

  def test_int8_onnx_files_serve_what_the_saved_model_serves(self):
    # bin/export --int8 of a ReLU student: ONNX Runtime on transformers'
    # ids gives the SavedModel's states (float32) or close to them (int8).
    import transformers  # pylint: disable=g-import-not-at-top
    from tf_minilm import onnx_export  # pylint: disable=g-import-not-at-top
    self.assertEqual(
        {kind: entry["path"] for kind, entry in self.info["onnx"].items()},
        {"float32": "hf/onnx/model.onnx",
         "int8": "hf/onnx/model_qint8_avx512_vnni.onnx"})
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        os.path.join(self.out, "hf"))
    feed = dict(tokenizer(TEXTS, padding=True, truncation=True,
                          max_length=16, return_tensors="np"))
    mask = self.served["good/input_mask"]
    self.assertAllEqual(feed["attention_mask"], mask)
    want = self.served["good/sequence_output"][mask > 0]
    for kind, entry in self.info["onnx"].items():
      self.assertEqual(entry["bytes"],
                       os.path.getsize(os.path.join(self.out, entry["path"])))
      got = onnx_export.session(os.path.join(self.out, entry["path"])).run(
          ["last_hidden_state"], feed)[0][mask > 0]
      if kind == "float32":
        self.assertAllClose(got, want, atol=1e-5, rtol=0)
      else:
        cosine = (got * want).sum(-1) / (np.linalg.norm(got, axis=-1) *
                                         np.linalg.norm(want, axis=-1))
        self.assertGreater(cosine.mean(), 0.95)

  def test_hf_copy_loads_in_transformers(self):
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    ids, out = self._keras_outputs(TEXTS)
    model = transformers.BertModel.from_pretrained(
        os.path.join(self.out, "hf")).eval()
    with torch.no_grad():
      want = model(input_ids=torch.tensor(ids, dtype=torch.long),
                   attention_mask=torch.tensor((ids != 0).astype(np.int64)))
    self.assertAllClose(want.last_hidden_state.numpy(), out["sequence_output"],
                        atol=1e-5, rtol=0)
    self.assertTrue(os.path.isfile(os.path.join(self.out, "student.keras")))

  def test_refuses_to_overwrite_and_bad_sources(self):
    with self.assertRaisesRegex(export.ExportError, "already exists"):
      export.export(self.model_dir, self.out)
    cli = [sys.executable, os.path.join(REPO, "bin", "export")]
    proc = subprocess.run(cli + [f"--source={self.get_temp_dir()}",
                                 f"--output_dir={self.out}_x"],
                          capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 2)
    self.assertIn("not a model_<step>/ directory", proc.stderr)
    self.assertFalse(os.path.exists(self.out + "_x"))
    # --overwrite never replaces a training run nor the source itself.
    run_dir = os.path.join(self.get_temp_dir(), "a_distill_run")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "distill_config.json"), "w") as f:
      f.write("{}")
    parent = os.path.dirname(self.model_dir)
    for output_dir, message in (
        (run_dir, "holds a bin/distill run (distill_config.json); give "
                  "bin/export a directory of its own"),
        (parent, f"--source={self.model_dir}: lies inside --output_dir="
                 f"{parent}")):
      with self.subTest(output_dir=output_dir):
        before = sorted(os.listdir(output_dir))
        proc = subprocess.run(cli + [f"--source={self.model_dir}",
                                     f"--output_dir={output_dir}",
                                     "--overwrite"],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
        self.assertIn(message, proc.stderr)
        self.assertEqual(sorted(os.listdir(output_dir)), before)


if __name__ == "__main__":
  tf.test.main()
