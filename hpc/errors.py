"""Errors that carry a message meant for the user, and every exit code the suite uses.

The codes are defined here once; every command and launcher returns these names.
"""

OK = 0
FAILED = 1          # a rank, job or point failed (its message or log says why)
BAD_INPUT = 2       # UserError: nothing was run or written
NOT_VERIFIED = 3    # the run finished but its result did not verify (it is recorded)
CHECKPOINTED = 75   # stopped on SIGUSR1 with its state saved (EX_TEMPFAIL: requeue me)
TIMED_OUT = 124     # a --timeout, --wait-timeout or Slurm time limit was reached
INTERRUPTED = 130   # Ctrl-C


class UserError(Exception):
    """Bad input: the message says what was wrong and how to fix it. Exit code 2."""

    exit_code = BAD_INPUT


class VerificationError(Exception):
    """A run finished but its result did not verify. Exit code 3."""

    exit_code = NOT_VERIFIED
