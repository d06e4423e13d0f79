"""Distil a student from a teacher: `bin/distill --flagfile=configs/X.flags`.

Exit codes: 0 finished; 2 bad flags or inputs (nothing written) or the
output_dir is in use by another run; 3 training diverged (non-finite
gradients or weights; nothing non-finite saved); 75 stopped early by
SIGTERM/SIGINT or --exit_after_steps (rerun the same command to resume);
1 any other failure, e.g. the disk filled up (nothing half-written).
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
  from tf_minilm import distiller  # pylint: disable=g-import-not-at-top
  training.run_and_exit(distiller.run,
                        lambda: config_lib.from_flags(flags.FLAGS))


def run_main() -> None:
  """Console-script entry point."""
  cli.filter_startup_noise()
  config_lib.define_flags()
  app.run(main)


if __name__ == "__main__":
  run_main()
