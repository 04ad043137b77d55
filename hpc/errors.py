"""Errors that carry a message meant for the user rather than a traceback."""


class UserError(Exception):
    """Bad input: the message says what was wrong and how to fix it. Exit code 2."""

    exit_code = 2


class VerificationError(Exception):
    """A run finished but its result did not verify. Exit code 3."""

    exit_code = 3
