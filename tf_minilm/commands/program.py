"""The skeleton every command shares, and its one mapping of outcomes to
exit codes (see `errors`).

A command module defines its flags in `define_flags()` and a `body(flags)`
that does the work; `run(define_flags, body)` is its console-script entry
point: it filters TensorFlow's start-up noise (for commands that start it),
defines and parses the flags, refuses stray arguments, runs the body and
exits with the code of its outcome: a `errors.CommandError` (or an output
directory that exists, FileExistsError) prints one `error:` line; a body may
return an exit code of its own (`training_exit_code`).
"""

import sys
from typing import Callable, Optional

from absl import app
from absl import flags

from tf_minilm import cli
from tf_minilm import errors

Body = Callable[[flags.FlagValues], Optional[int]]


def run(define_flags: Callable[[], None], body: Body,
        starts_tensorflow: bool = True) -> None:
  """Defines the flags, parses them and exits with the outcome of `body`."""
  if starts_tensorflow:
    cli.filter_startup_noise()
  define_flags()
  app.run(lambda argv: sys.exit(exit_code(argv, body)))


def exit_code(argv, body: Body) -> int:
  """Runs `body` on the parsed flags; the exit code of its outcome."""
  cli.warnings_unless_verbose()
  try:
    if len(argv) > 1:
      raise errors.InputError(f"unexpected arguments {argv[1:]}")
    return body(flags.FLAGS) or 0
  except (errors.CommandError, FileExistsError) as e:
    print(f"error: {e}", file=sys.stderr)
    return getattr(e, "exit_code", errors.InputError.exit_code)


def require(flag_values: flags.FlagValues, *names: str) -> None:
  """Each named flag has a value (InputError naming the missing ones)."""
  missing = [f"--{name}" for name in names if not flag_values[name].value]
  if missing:
    raise errors.InputError(" and ".join(missing) +
                            (" is" if len(missing) == 1 else " are") +
                            " required")


def training_exit_code(result) -> int:
  """0 for a finished `trainer.RunResult`; EXIT_STOPPED_EARLY for a run that
  stopped early with a checkpoint."""
  return 0 if result.finished else errors.EXIT_STOPPED_EARLY
