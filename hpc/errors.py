"""Errors that carry a message meant for the user rather than a traceback, and the exit
codes of the suite (defined here once)."""


class HpcError(Exception):
    """An error with a message for the user; ``hpc`` prints it and exits ``exit_code``."""

    exit_code = 1


class UserError(HpcError):
    """Bad input: the message says what was wrong and how to fix it. Exit code 2."""

    exit_code = 2


class VerificationError(HpcError):
    """A run finished but its result did not verify. Exit code 3."""

    exit_code = 3


class StudyBusy(HpcError):
    """Another ``hpc study run`` holds this study file's lock. Exit code 4."""

    exit_code = 4


class NoSpace(HpcError):
    """A record could not be written for want of disk space (or quota); the message says
    where the result was saved instead. Exit code 5."""

    exit_code = 5


class LauncherLost(HpcError):
    """A rank's launching ``hpc`` process died, so the rank ends without recording
    (hpc.lifeline). Exit code 6."""

    exit_code = 6
