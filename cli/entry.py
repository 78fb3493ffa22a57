"""The `autograd` program (the console script's entry point): the signal handlers first, then
the app. Installing them before the app is imported means a Ctrl-C during start-up (typer, the
commands) is one line and exit 130, not a traceback of whatever import was running
(cli/interrupts.py). Importing cli.app itself, as the tests do, installs nothing."""


def main():
    import cli

    from . import interrupts
    interrupts.install()
    cli._entry = True                # cli.app registers only the command asked for
    from .app import main as app_main
    try:
        app_main()
    except SystemExit as e:
        if interrupts.received() is not None:
            # a command ended by a signal leaves now: Python's own shutdown puts the default
            # handlers back first, and a second Ctrl-C in that gap would kill the process by
            # SIGINT (no exit code of ours) after "interrupted" was already said
            interrupts.exit_now(e.code if isinstance(e.code, int) else 1)
        raise
