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
import sys

from absl import app
from absl import flags

from tf_minilm import cli
from tf_minilm import config as config_lib
from tf_minilm import layout


def define_flags():
  flags.DEFINE_string("hf_dir", None, "Local HF BERT/RoBERTa directory.")
  flags.DEFINE_string("output_dir", None, "Converted teacher directory.")
  flags.DEFINE_integer("num_layers", None, "Keep only the first N layers.")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing output_dir.")


def main(argv):
  cli.warnings_unless_verbose()
  # Imported here, after `cli.filter_startup_noise`: they start TensorFlow.
  from tf_minilm import convert  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    if len(argv) > 1:
      raise convert.CheckpointError(f"unexpected arguments {argv[1:]}")
    if not f.hf_dir or not f.output_dir:
      raise convert.CheckpointError("--hf_dir and --output_dir are required")
    layout.check_output_dir(f.output_dir, "bin/convert_teacher",
                            {"hf_dir": f.hf_dir})
    encoder = convert.convert_teacher(f.hf_dir, f.output_dir, f.num_layers,
                                      f.overwrite)
  except (convert.CheckpointError, FileExistsError,
          config_lib.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps({"output_dir": f.output_dir,
                    "layers": encoder.config.num_layers,
                    "weight_bytes": encoder.weight_bytes()}))


def run_main() -> None:
  """Console-script entry point."""
  cli.filter_startup_noise()
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run_main()
