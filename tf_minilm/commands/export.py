"""Export a distilled student for serving and fine-tuning.

  bin/export --source=OUTPUT_DIR/model_400000 --output_dir=exported

--source: a model_<step>/ directory, a HF model directory, or a training output
directory (its latest checkpoint). Writes saved_model/ (string-input
signatures), student.keras, hf/ and export_info.json, atomically; with
--int8 also hf/onnx/ (float32 and int8 ONNX files).
"""

import json

from absl import flags

from tf_minilm import layout
from tf_minilm.commands import program


def define_flags():
  flags.DEFINE_string("source", None, "model_<step>/, HF or training output "
                      "directory.")
  flags.DEFINE_string("output_dir", None, "Export directory.")
  flags.DEFINE_integer("max_seq_length", None, "Tokens per text, special "
                       "tokens included (longer texts are truncated as "
                       "transformers does; pairs longest first). Default: the "
                       "training run's --max_seq_length when --source is a "
                       "bin/distill run or one of its model_<step>/, else "
                       "128.")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing output_dir.")
  flags.DEFINE_boolean("int8", False, "Also write hf/onnx/model.onnx "
                       "(float32) and hf/onnx/model_qint8_avx512_vnni.onnx "
                       "(int8) for ONNX Runtime, in sentence-transformers' "
                       "ONNX layout (needs the onnx extra).")


def body(f) -> None:
  # Imported here, after the start-up noise filter: it starts TensorFlow.
  from tf_minilm import export  # pylint: disable=g-import-not-at-top
  program.require(f, "source", "output_dir")
  layout.check_output_dir(f.output_dir, "bin/export", {"source": f.source})
  info = export.export(f.source, f.output_dir, f.max_seq_length, f.overwrite,
                       f.int8)
  print(json.dumps(info, indent=2))


def run_main() -> None:
  """Console-script entry point."""
  program.run(define_flags, body)


if __name__ == "__main__":
  run_main()
