"""Fine-tune a (distilled) encoder for classification and export it.

  bin/finetune --flagfile=configs/finetune_clue.flags --task=afqmc \
      --data_dir=clue/afqmc --model_name_or_path=runs/pp_minilm_6l768h/model_400000 \
      --output_dir=runs/afqmc

Exit codes as bin/distill: 0 finished; 2 bad flags or inputs (nothing
written) or the output_dir in use; 3 diverged; 75 stopped early (rerun to
resume); 1 any other failure.
"""

import sys

from absl import app
from absl import flags

from tf_minilm import cli
from tf_minilm import config as config_lib
from tf_minilm.commands import training


def main(argv):
  cli.warnings_unless_verbose()
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    sys.exit(2)
  # Imported here, after `cli.filter_startup_noise`: it starts TensorFlow.
  from tf_minilm import finetune  # pylint: disable=g-import-not-at-top
  training.run_and_exit(finetune.run,
                        lambda: config_lib.finetune_from_flags(flags.FLAGS))


def run_main() -> None:
  """Console-script entry point."""
  cli.filter_startup_noise()
  config_lib.define_finetune_flags()
  app.run(main)


if __name__ == "__main__":
  run_main()
