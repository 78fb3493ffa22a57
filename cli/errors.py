"""The CLI's errors and the one boundary that turns every error into a message and an exit code.

Exit codes: 0 success, 1 a gradient check failed, 2 a usage or input error. Errors go to stderr
as one message (with a caret under the offending part of an expression); a traceback only with
--debug. A .py target that raises shows its own traceback, trimmed to the user's file.
"""
import sys


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


def report(exc, debug=False):
    """Print `exc` to stderr as the user should see it and return the exit code."""
    from engine.errors import EngineError
    from expressions import ExpressionError
    if isinstance(exc, CheckFailed):
        return 1
    if debug:
        import traceback
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, UserCodeError):
        sys.stderr.write(exc.message + "\n")
        return 2
    if isinstance(exc, (CliError, ExpressionError)):
        sys.stderr.write(f"error: {exc.message}\n")
        text, span = exc.text, exc.span
        if text is not None and span is not None:
            from expressions.errors import ExpressionError as E
            sys.stderr.write("  " + E("", span, text).caret().replace("\n", "\n  ") + "\n")
        return 2
    if isinstance(exc, EngineError):
        sys.stderr.write(f"error: {str(exc).splitlines()[0]}\n")
        return 2
    raise exc
