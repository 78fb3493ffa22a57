"""The CLI's error types. cli/boundary.py turns them (and everything else) into one message and
an exit code."""


class CliError(Exception):
    """A usage or input problem: message, and optionally a span of `text` to point at."""

    exit_code = 2

    def __init__(self, message, span=None, text=None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.text = text


class UserCodeError(CliError):
    """The user's .py target raised; `message` is its trimmed traceback."""


class CheckFailed(Exception):
    """A gradient check failed (exit code 1); the report was already printed."""
