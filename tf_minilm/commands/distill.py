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


def main(argv):
  # Imported here, after `cli.filter_startup_noise`: they start TensorFlow.
  from tf_minilm import distiller  # pylint: disable=g-import-not-at-top
  from tf_minilm import io_utils  # pylint: disable=g-import-not-at-top
  from tf_minilm import trainer  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    sys.exit(2)
  try:
    result = distiller.run(config_lib.from_flags(flags.FLAGS))
  except (config_lib.ConfigError, io_utils.LockedError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except trainer.RunError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
  if not result.finished:
    sys.exit(trainer.EXIT_STOPPED_EARLY)


def run_main() -> None:
  """Console-script entry point."""
  cli.filter_startup_noise()
  flags.FLAGS.set_default("verbosity", -1)  # absl WARNING; -v 0 for INFO
  config_lib.define_flags()
  app.run(main)


if __name__ == "__main__":
  run_main()
