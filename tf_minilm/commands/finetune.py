"""Fine-tune a (distilled) encoder for classification and export it.

  bin/finetune --flagfile=configs/finetune_clue.flags --task=afqmc \
      --data_dir=clue/afqmc --model_name_or_path=runs/pp_minilm_6l768h/model_400000 \
      --output_dir=runs/afqmc

Exit codes as bin/distill: 0 finished; 2 bad flags or inputs (nothing
written) or the output_dir in use; 3 diverged; 75 stopped early (rerun to
resume); 1 any other failure.
"""

from tf_minilm import config as config_lib
from tf_minilm.commands import program


def body(flag_values) -> int:
  # Imported here, after the start-up noise filter: it starts TensorFlow.
  from tf_minilm import finetune  # pylint: disable=g-import-not-at-top
  return program.training_exit_code(
      finetune.run(config_lib.finetune_from_flags(flag_values)))


def run_main() -> None:
  """Console-script entry point."""
  program.run(config_lib.define_finetune_flags, body)


if __name__ == "__main__":
  run_main()
