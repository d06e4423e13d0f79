"""What the training commands share: exceptions and results -> exit codes.

0 finished; 2 bad flags or inputs (nothing written) or the output_dir in use
by another run; 3 diverged; 75 stopped early with a checkpoint (rerun the
same command to resume); 1 any other failure (e.g. the disk filled up).
"""

import sys
from typing import Callable


def run_and_exit(run: Callable, make_config: Callable) -> None:
  """Calls `run(make_config())` and exits with the code of its outcome."""
  from tf_minilm import config as config_lib  # pylint: disable=g-import-not-at-top
  from tf_minilm import io_utils  # pylint: disable=g-import-not-at-top
  from tf_minilm import trainer  # pylint: disable=g-import-not-at-top
  try:
    result = run(make_config())
  except (config_lib.ConfigError, io_utils.LockedError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except trainer.RunError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
  if not result.finished:
    sys.exit(trainer.EXIT_STOPPED_EARLY)
