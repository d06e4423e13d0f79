#!/usr/bin/env python3
"""A student selected from its teacher, exported before any distillation.

  .venv/bin/python bench/select_student.py <bin/distill's flags> \\
      --student_selection=uniform --model_dir=DIR

Takes bin/distill's flags (teacher, student shape, --student_selection; the
corpus and output_dir flags are required but nothing is read from the corpus
beyond listing it, and output_dir is not written) and writes DIR as
bin/distill writes model_<step>/ (student.keras, hf/, tokenizer files): the
student as its first step would find it. bench/quality.py fine-tunes it as
the "selected only" rows.
"""

import sys

from absl import app
from absl import flags

from tf_minilm import cli
from tf_minilm import config as config_lib


def main(argv):
  del argv
  from tf_minilm import distiller  # pylint: disable=g-import-not-at-top
  from tf_minilm import resolve  # pylint: disable=g-import-not-at-top
  from tf_minilm import trainer  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = config_lib.from_flags(flags.FLAGS)
  try:
    config_lib.validate(config)
    if not config.selects_student:
      raise config_lib.ConfigError("student_selection", "none",
                                   "name a selection (first or uniform)")
    if config.student_vocab_size:
      raise config_lib.ConfigError("student_vocab_size",
                                   config.student_vocab_size,
                                   "is not supported here")
    resolved = resolve.resolve(config)
  except config_lib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  strategy = tf.distribute.get_strategy()
  task = distiller.DistillationTask(config, resolved, strategy)
  trainer.Trainer(task, strategy, config)  # seeds, selects and builds
  task.export(flags.FLAGS.model_dir)
  print(f"selected student written to {flags.FLAGS.model_dir}")


if __name__ == "__main__":
  cli.filter_startup_noise()
  config_lib.define_flags()
  flags.DEFINE_string("model_dir", None, "Where the student is written.",
                      required=True)
  app.run(main)
