#!/usr/bin/env python3
"""The input pipeline of this tree against another git revision's, in one run.

  .venv/bin/python bench/pipeline_ab.py --against=REV [--lines=100000]
      [--rounds=5] [--english]

On this kind of machine the same pipeline's figure moves by up to 30% from
one run to the next, more than most changes worth measuring. So both
pipelines are built in one process, over the same shards (bench/pipeline.py's
lines), and their passes alternate in a shuffled order each round. The other
revision's package is extracted with `git archive` and imported under another
name. Every truncation mode a revision has is run (a revision from before
truncation by tokens has only the character cut).

Printed per pipeline: lines/s of each pass (wall), lines per CPU-second
(process time, which tf.data's autotuning and thread scheduling disturb
less), and the median over rounds of its ratio to REV's first pipeline in
the same round.
"""

import argparse
import dataclasses
import importlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position

from tf_minilm import data  # pylint: disable=g-import-not-at-top,wrong-import-order
from tf_minilm import tokenization  # pylint: disable=g-import-not-at-top,wrong-import-order

OTHER_PACKAGE = "tf_minilm_against"


def import_revision(revision: str):
  """(data, tokenization) modules of `revision`'s tf_minilm package."""
  root = tempfile.mkdtemp(prefix="pipeline_ab_")
  archive = subprocess.run(
      ["git", "-C", os.path.dirname(BENCH_DIR), "archive", revision,
       "tf_minilm"], check=True, capture_output=True).stdout
  subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
  package = os.path.join(root, OTHER_PACKAGE)
  os.rename(os.path.join(root, "tf_minilm"), package)
  imports = re.compile(r"\b(from|import) tf_minilm\b")
  for directory, _, names in os.walk(package):
    for path in (os.path.join(directory, n) for n in names if n.endswith(".py")):
      with open(path, encoding="utf-8") as f:
        source = f.read()
      with open(path, "w", encoding="utf-8") as f:
        f.write(imports.sub(rf"\1 {OTHER_PACKAGE}", source))
  sys.path.insert(0, root)
  return (importlib.import_module(f"{OTHER_PACKAGE}.data"),
          importlib.import_module(f"{OTHER_PACKAGE}.tokenization"))


def datasets_of(label, data_module, tokenization_module, shards, vocab, args):
  """{label and mode: dataset} for each truncation mode the code has."""
  has_char_cut = "char_cut" in {
      f.name for f in dataclasses.fields(data_module.PipelineConfig)}
  modes = ({"token truncation": {"char_cut": False},
            "character cut": {"char_cut": True}} if has_char_cut else
           {"character cut": {}})
  return {f"{label}, {mode}": data_module.make_dataset(
      shards, tokenization_module.BertTokenizer(vocab, True),
      data_module.PipelineConfig(
          max_seq_length=args.max_seq_length, batch_size=args.batch_size,
          repeat=False, shuffle_buffer=10_000, **settings))
          for mode, settings in modes.items()}


def main():
  parser = argparse.ArgumentParser()
  pipeline.add_corpus_flags(parser)
  parser.add_argument("--against", required=True,
                      help="git revision to compare this tree with")
  parser.add_argument("--rounds", type=int, default=5)
  parser.set_defaults(lines=100_000)
  args = parser.parse_args()
  other_data, other_tokenization = import_revision(args.against)
  lines, root, vocab = pipeline.write_corpus(args)
  shards = data.list_shards(root)
  datasets = datasets_of(args.against, other_data, other_tokenization,
                         shards, vocab, args)
  baseline = next(iter(datasets))
  datasets.update(datasets_of("this tree", data, tokenization, shards, vocab,
                              args))
  print(f"{len(lines)} lines of {sum(map(len, lines)) / len(lines):.0f} "
        f"characters on average, max_seq_length {args.max_seq_length}, "
        f"{args.rounds} rounds, {os.cpu_count()} CPUs")
  for dataset in datasets.values():
    for _ in dataset.take(2):  # warm-up: tracing
      pass
  wall = {label: [] for label in datasets}
  cpu = {label: [] for label in datasets}
  for _ in range(args.rounds):
    order = list(datasets)
    random.shuffle(order)
    for label in order:
      start, start_cpu = time.perf_counter(), time.process_time()
      count = sum(int(b["token_ids"].shape[0]) for b in datasets[label])
      wall[label].append(count / (time.perf_counter() - start))
      cpu[label].append(count / (time.process_time() - start_cpu))
  for label in datasets:
    ratio = lambda rates, label=label: statistics.median(
        a / b for a, b in zip(rates[label], rates[baseline]))
    print(f"{label}: " + ", ".join(f"{r:,.0f}" for r in wall[label])
          + f" lines/s (mean {statistics.mean(wall[label]):,.0f}); "
          f"{statistics.mean(cpu[label]):,.0f} lines per CPU-second; "
          f"vs {baseline} (median of rounds): wall {ratio(wall):.0%}, "
          f"CPU {ratio(cpu):.0%}")


if __name__ == "__main__":
  main()
