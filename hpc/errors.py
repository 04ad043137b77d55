"""Errors that carry a message meant for the user rather than a traceback, and every exit
code the suite uses (defined here once; every command and launcher returns these names)."""

import signal

OK = 0
FAILED = 1          # a rank, job or point failed (its message or log says why)
BAD_INPUT = 2       # UserError: nothing was run or written
NOT_VERIFIED = 3    # the run finished but its result did not verify (it is recorded)
BUSY = 4            # StudyBusy: another hpc study run holds the study file
NO_SPACE = 5        # NoSpace: the disk or quota is full; nothing half-written
LAUNCHER_LOST = 6   # LauncherLost: the hpc process that started the ranks died
CHECKPOINTED = 75   # stopped on SIGUSR1 with its state saved (EX_TEMPFAIL: requeue me)
TIMED_OUT = 124     # a --timeout, --wait-timeout or Slurm time limit was reached
INTERRUPTED = 130   # Ctrl-C
TERMINATED = 128 + signal.SIGTERM  # SIGTERM (timeout, kill, a batch system) stopped it


class HpcError(Exception):
    """An error with a message for the user; ``hpc`` prints it and exits ``exit_code``."""

    exit_code = FAILED


class UserError(HpcError):
    """Bad input: the message says what was wrong and how to fix it. Exit code 2."""

    exit_code = BAD_INPUT


class VerificationError(HpcError):
    """A run finished but its result did not verify. Exit code 3."""

    exit_code = NOT_VERIFIED


class StudyBusy(HpcError):
    """Another ``hpc study run`` holds this study file's lock. Exit code 4."""

    exit_code = BUSY


class NoSpace(HpcError):
    """A record could not be written for want of disk space (or quota); the message says
    where the result was saved instead. Exit code 5."""

    exit_code = NO_SPACE


class LauncherLost(HpcError):
    """A rank's launching ``hpc`` process died, so the rank ends without recording
    (hpc.lifeline). Exit code 6."""

    exit_code = LAUNCHER_LOST
