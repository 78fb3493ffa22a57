"""The one error boundary every command runs through, below the commands (they import it; it
imports no command).

Exit codes: 0 success, 1 a gradient check failed, 2 a usage or input error (the user's own
code raising included), 3 an internal error (one line; the traceback with --debug), 130 Ctrl-C,
141 a closed stdout (the usual code of a process ended by SIGPIPE), 143 SIGTERM and 129 SIGHUP
(128 + the signal, once every temporary file is removed: cli/interrupts.py). Nothing else
escapes.

While a command runs, `sys.stdout` is the user's stderr: whatever a .py target prints goes there,
and the command's own data (tables, JSON, DOT) goes to the real stdout through `render.out()`.
"""
import errno
import os
import pathlib
import signal
import sys
import warnings

import typer

from . import interrupts
from .errors import CheckFailed, CliError, UserCodeError

EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_PIPE = 1, 2, 3, 130, 141
AFTER_DASHDASH = "autograd.after_dashdash"    # ctx.meta: how many leftover tokens came after `--`


def run(ctx, debug, body):
    """Parse --NAME VALUES, call `body(values)`, and map every outcome to an exit code."""
    import numpy as np

    from . import render
    from .targets import forget_paths, parse_variable_args
    # the command's option spellings (max-nodes, eps): a variable named like one comes after --
    known = {o[2:] for p in ctx.command.params for o in getattr(p, "opts", []) if o.startswith("--")}
    if sys.stdout is None:            # started with stdout closed (>&-): nowhere to put results
        _say("error: cannot write the output: standard output is closed")
        raise typer.Exit(EXIT_USAGE)
    old = np.seterr(all="ignore")     # inf/nan are results to show, not warnings to print
    given_stdout = sys.stdout
    real_stdout = _whole_writes(given_stdout)
    render.set_stdout(real_stdout)
    code = 0
    render.forget_warnings()
    try:
        interrupts.command_started()       # from here a signal is an exception the code below sees
        with warnings.catch_warnings():
            # numpy's own warnings (with its install paths) are not the user's business
            warnings.filterwarnings("ignore", module=r"numpy(\.|$)")
            warnings.showwarning = _show_warning
            sys.stdout = sys.stderr if sys.stderr is not None else real_stdout
            values = parse_variable_args(list(ctx.args), known, ctx.meta.get(AFTER_DASHDASH, 0))
            values.known_options = known
            body(values)
            sys.stdout = real_stdout
            _flush(real_stdout)
    except typer.Exit:
        raise
    except BaseException as e:  # noqa: BLE001 - the boundary: nothing escapes it
        interrupts.reporting()
        sys.stdout = real_stdout
        code = report(e, debug)
    finally:
        forget_paths()
        interrupts.command_ended()
        sys.stdout = given_stdout
        if real_stdout is not given_stdout:
            _flush(real_stdout, quiet=True)
        render.set_stdout(None)
        np.seterr(**old)
    if code:
        raise typer.Exit(code)


_TOOL = tuple(str(pathlib.Path(__file__).resolve().parent.parent / d) + os.sep for d in ("cli", "engine", "expressions"))


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """warnings.showwarning while a command runs. A warning raised in the tool's own code (an op
    warning as PyTorch does, reached through an expression) is one clean line, `warning: ...`,
    once per text -- Python printed `expressions/compiler.py:414: UserWarning` and the source
    line under it. Any other (the user's own code: their file and line help them) is printed as
    Python prints it."""
    try:
        path = os.path.realpath(filename) if filename else ""
        if path.startswith(_TOOL) or not filename:
            text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
            if category is not UserWarning:
                text = f"{category.__name__}: {text}"
            from . import render
            render.warn_once(text)
            return
        stream = file if file is not None else sys.stderr
        if stream is not None:
            stream.write(warnings.formatwarning(message, category, filename, lineno, line))
    except Exception:  # noqa: BLE001 - a warning that cannot be shown is not worth an error
        pass


def _whole_writes(stream):
    """`stream`, or one that writes whole: PYTHONUNBUFFERED=1 (python -u) makes stdout's binary
    layer the raw file, whose write returns short when a pipe's reader goes away mid-write (or
    a disk fills), and TextIOWrapper drops the rest without an error -- `| head -c1` exited 0 and
    output was lost. A BufferedWriter on the same descriptor retries short writes and raises
    the error (BrokenPipeError: 141); line buffering keeps the output as prompt as unbuffered."""
    import io
    if not isinstance(getattr(stream, "buffer", None), io.RawIOBase):
        return stream
    try:
        stream.flush()
        return open(stream.fileno(), "w", encoding=stream.encoding, errors=stream.errors, buffering=1,
                    closefd=False)
    except (OSError, ValueError, AttributeError):
        return stream


def _flush(stream, quiet=False):
    try:
        stream.flush()
    except BrokenPipeError:
        if not quiet:
            raise
    except (OSError, ValueError):
        pass


def report(exc, debug=False):
    """Print `exc` to stderr as the user should see it and return the exit code. Never raises."""
    try:
        return _report(exc, debug)
    except KeyboardInterrupt:           # Ctrl-C while reporting (no handlers installed: a test)
        _say("interrupted")
        return EXIT_INTERRUPTED
    except BaseException:  # noqa: BLE001 - a failure to report is still one line and exit 3
        _say("error: internal error while reporting an error (run again with --debug)")
        return EXIT_INTERNAL


def _report(exc, debug):
    if isinstance(exc, CheckFailed):
        return EXIT_CHECK_FAILED
    signum = interrupts.received()
    if isinstance(exc, interrupts.Terminated) or (signum is not None and signum != signal.SIGINT):
        signum = getattr(exc, "signum", signum)
        _say(f"terminated by {signal.Signals(signum).name}")
        return 128 + signum
    if signum == signal.SIGINT and not isinstance(exc, KeyboardInterrupt):
        _say("interrupted")                  # the user's code wrapped the KeyboardInterrupt in its own error
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        _drop_stdout()                   # the reader went away (| head): stop quietly
        return EXIT_PIPE
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EBADF):
        _drop_stdout()
        _say(f"error: cannot write the output: {exc.strerror or exc}")
        return EXIT_USAGE
    if debug:
        import traceback
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, KeyboardInterrupt):      # before any import: Ctrl-C may have cut one short
        _say("interrupted")
        return EXIT_INTERRUPTED
    from engine.errors import EngineError
    from expressions import ExpressionError

    from .targets import user_traceback
    if isinstance(exc, UserCodeError):
        _say(exc.message)
        return EXIT_USAGE
    mine = user_traceback(exc)          # raised inside the user's .py file (forward, backward, ...)
    if mine is not None:
        _say(mine)
        return EXIT_USAGE
    if isinstance(exc, (CliError, ExpressionError)):
        _say(f"error: {exc.message}")
        text, span = exc.text, exc.span
        if text is not None and span is not None:
            from expressions.errors import ExpressionError as E
            _say("  " + E("", span, text).caret().replace("\n", "\n  "))
        return EXIT_USAGE
    if isinstance(exc, EngineError):
        _say(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return EXIT_USAGE
    if isinstance(exc, MemoryError):
        _say("error: out of memory: the computation needs more memory than this machine has "
             "(use smaller values, fewer inputs with --wrt, or check --fast)")
        return EXIT_USAGE
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    _say(f"error: internal error ({what.splitlines()[0]}); run again with --debug for the traceback")
    return EXIT_INTERNAL


def _drop_stdout():
    """stdout cannot take more: point it at devnull, so that Python's own flush at exit (of what
    is still buffered) succeeds instead of printing a traceback and exiting 120."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _say(text):
    from .render import printable
    if sys.stderr is None:               # started with stderr closed: nothing can be said
        return
    try:
        sys.stderr.write(printable(text) + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr closed or full: nothing more can be said
        pass
