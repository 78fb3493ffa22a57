"""Ctrl-C, SIGTERM and SIGHUP for the `autograd` program, from its first import on (cli/entry.py
installs the handlers before the app and its dependencies are imported). Nothing here prints a
result or knows a command.

- Outside a command (start-up imports, parsing the command line, after the command) there is
  nothing to clean up: Ctrl-C ends the process at once with one line, "interrupted", and exit
  130; SIGTERM and SIGHUP end it as their default action does. No traceback of an import that
  happened to be running.
- While a command runs (cli/boundary.py's `run`), Ctrl-C raises KeyboardInterrupt and SIGTERM
  or SIGHUP raise `Terminated` (a KeyboardInterrupt), so that every `finally` runs -- a
  temporary output file is removed, Graphviz is stopped -- and the boundary reports one line
  and exits 130, or 128 + the signal's number (143, 129).
- The same signal again within REPEAT seconds is the same request, not a new one: `timeout -s
  INT` signals the process and then its process group, and an impatient Ctrl-C is often
  pressed twice. A second KeyboardInterrupt raised into the first one's clean-up would skip
  it, or turn the report into an internal error (exit 3).

In a test process (CliRunner) nothing is installed and the boundary sees Python's own
KeyboardInterrupt.
"""
import os
import signal
import sys
import time

REPEAT = 1.0               # seconds: a second signal this soon after the first is ignored
EXIT_INTERRUPTED = 130
OUTSIDE, RUNNING, REPORTING = "outside", "running", "reporting"
_ENDING = ("SIGTERM", "SIGHUP")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP while a command runs; `signum` is the signal's number."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


class _State:
    phase = OUTSIDE
    installed = False
    last = {}              # signum -> time.monotonic() of the last one acted on
    received = None        # the first signal received while a command ran (its number)


STATE = _State()


def install():
    """Handle SIGINT, SIGTERM and SIGHUP as this module says (the CLI's entry point calls this).
    A signal the parent set to be ignored stays ignored (`nohup`, `cmd &` in a script)."""
    for name in ("SIGINT",) + _ENDING:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    STATE.installed = True


def command_started():
    STATE.phase = RUNNING
    STATE.received = None


def reporting():
    STATE.phase = REPORTING


def command_ended():
    STATE.phase = OUTSIDE


def received():
    """The signal (its number) that ended the command, or None."""
    return STATE.received


def _on_signal(signum, frame):
    now = time.monotonic()
    last = STATE.last.get(signum)
    if last is not None and now - last < REPEAT:
        return                                  # the same request again: let the first one finish
    STATE.last[signum] = now
    if STATE.phase == RUNNING:
        if STATE.received is None:
            STATE.received = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)
    if signum == signal.SIGINT:
        if STATE.phase == REPORTING and STATE.received is not None:
            return                              # already on its way out with the right code
        _say("interrupted")
        os._exit(EXIT_INTERRUPTED)
    if STATE.phase == REPORTING:
        os._exit(128 + signum)
    signal.signal(signum, signal.SIG_DFL)       # nothing to clean up: end as the signal does
    os.kill(os.getpid(), signum)


def _say(text):
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed or broken stdout: nothing more to flush
        pass
    try:
        os.write(2, (text + "\n").encode())
    except OSError:
        pass


class blocked:
    """Hold SIGINT, SIGTERM and SIGHUP back for a few statements that must not be cut in two
    (a temporary file made and its name kept); they arrive when the block ends."""

    SIGNALS = {signal.SIGINT} | {getattr(signal, n) for n in _ENDING if hasattr(signal, n)}

    def __enter__(self):
        self.ok = hasattr(signal, "pthread_sigmask")
        if self.ok:
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
            except (OSError, ValueError):           # not the main thread, or no such call
                self.ok = False
        return self

    def __exit__(self, *exc):
        if self.ok:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS)
        return False


def exit_now(code):
    """Flush what was written and end the process with `code`, skipping Python's shutdown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream: nothing more to flush
            pass
    os._exit(code)
