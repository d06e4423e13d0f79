"""Distil a student from a teacher: `bin/distill --flagfile=configs/X.flags`.

Exit codes: 0 finished; 2 bad flags or inputs (nothing written) or the
output_dir is in use by another run; 3 training diverged (non-finite
gradients or weights; nothing non-finite saved); 75 stopped early by
SIGTERM/SIGINT or --exit_after_steps (rerun the same command to resume);
1 any other failure, e.g. the disk filled up (nothing half-written).
"""

from tf_minilm import config as config_lib
from tf_minilm.commands import program


def body(flag_values) -> int:
  # Imported here, after the start-up noise filter: it starts TensorFlow.
  from tf_minilm import distiller  # pylint: disable=g-import-not-at-top
  return program.training_exit_code(
      distiller.run(config_lib.from_flags(flag_values)))


def run_main() -> None:
  """Console-script entry point."""
  program.run(config_lib.define_flags, body)


if __name__ == "__main__":
  run_main()
