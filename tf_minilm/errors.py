"""The errors a command reports in one line, and the exit code of each.

Every command maps outcomes to exit codes in one place
(`commands.program`): 0 finished; 2 bad flags or inputs (nothing written) or
an output_dir in use by another run; 3 training diverged (nothing non-finite
saved); 75 stopped early with a checkpoint (rerun the same command to
resume); 1 any other failure, e.g. the disk filled up (nothing
half-written). This module imports nothing of the package, so every module
can raise these.
"""

# EX_TEMPFAIL: not finished, a checkpoint was written, rerun to resume.
EXIT_STOPPED_EARLY = 75


class CommandError(Exception):
  """An error a command prints as `error: <message>` and exits with
  `exit_code`."""
  exit_code = 1


class InputError(CommandError, ValueError):
  """A flag, file or value that cannot be used; nothing was written."""
  exit_code = 2
