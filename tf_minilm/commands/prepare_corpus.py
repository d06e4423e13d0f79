"""Raw text / JSON lines (optionally gzip) -> shuffled shards, one sentence a line.

  bin/prepare_corpus --input=raw/ --input='more/*.jsonl.gz' --json_field=text \
      --output_dir=shards --num_shards=64
"""

import json
import sys

from absl import flags

from tf_minilm import corpus
from tf_minilm.commands import program


def define_flags():
  flags.DEFINE_multi_string("input", None, "File, directory or glob; repeatable.")
  flags.DEFINE_string("output_dir", None, "Directory for the shards and "
                      "manifest.json (written atomically).")
  flags.DEFINE_integer("num_shards", 64, "Shard files to write.")
  flags.DEFINE_integer("seed", 0, "Shuffling seed.")
  flags.DEFINE_string("json_field", None, "Read JSON lines and take this field.")
  flags.DEFINE_boolean("split_sentences", True, "Split paragraphs into "
                       "sentences (Chinese and Latin punctuation).")
  flags.DEFINE_boolean("deduplicate", False, "Drop exact duplicate sentences "
                       "(about 60 bytes of memory per unique sentence).")
  flags.DEFINE_integer("min_length", 1, "Drop sentences shorter than this "
                       "(characters).")
  flags.DEFINE_integer("max_length", 0, "Drop sentences longer than this "
                       "(characters; 0 keeps all).")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing output_dir.")


def body(f) -> None:
  program.require(f, "input", "output_dir")
  manifest = corpus.prepare(corpus.CorpusConfig(
      inputs=f.input, output_dir=f.output_dir, num_shards=f.num_shards,
      seed=f.seed, json_field=f.json_field, split_sentences=f.split_sentences,
      deduplicate=f.deduplicate, min_length=f.min_length,
      max_length=f.max_length, overwrite=f.overwrite,
      progress=sys.stderr.isatty()))
  for warning in manifest["warnings"]:
    print(f"warning: {warning}", file=sys.stderr)
  print(json.dumps({"output_dir": f.output_dir,
                    "sentences": manifest["sentences"],
                    "shards": len(manifest["shards"]),
                    "counts": manifest["counts"]}, ensure_ascii=False))


def run_main() -> None:
  """Console-script entry point."""
  program.run(define_flags, body, starts_tensorflow=False)


if __name__ == "__main__":
  run_main()
