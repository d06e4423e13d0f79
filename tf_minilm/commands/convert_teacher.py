"""Convert a HF teacher once; later runs load the Keras weights directly.

  bin/convert_teacher --hf_dir=teachers/chinese-roberta-wwm-ext-large \
      --output_dir=teachers/roberta-large-tf --num_layers=20

--num_layers keeps only the first N layers (a teacher distilled at layer index
19 needs 20). The output directory holds tf_minilm_encoder.json,
encoder.weights.h5, the tokenizer files and tf_minilm_source.json (the source
and its depth); a sentence-transformers head comes along when every layer
does (it pools the last layer: below it the embedding term is refused). Pass
it as --teacher_model_name_or_path.
"""

import json

from absl import flags

from tf_minilm import layout
from tf_minilm.commands import program


def define_flags():
  flags.DEFINE_string("hf_dir", None, "Local HF BERT/RoBERTa directory.")
  flags.DEFINE_string("output_dir", None, "Converted teacher directory.")
  flags.DEFINE_integer("num_layers", None, "Keep only the first N layers.")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing output_dir.")


def body(f) -> None:
  # Imported here, after the start-up noise filter: it starts TensorFlow.
  from tf_minilm import convert  # pylint: disable=g-import-not-at-top
  program.require(f, "hf_dir", "output_dir")
  layout.check_output_dir(f.output_dir, "bin/convert_teacher",
                          {"hf_dir": f.hf_dir})
  encoder = convert.convert_teacher(f.hf_dir, f.output_dir, f.num_layers,
                                    f.overwrite)
  print(json.dumps({"output_dir": f.output_dir,
                    "layers": encoder.config.num_layers,
                    "weight_bytes": encoder.weight_bytes()}))


def run_main() -> None:
  """Console-script entry point."""
  program.run(define_flags, body)


if __name__ == "__main__":
  run_main()
