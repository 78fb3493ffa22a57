"""Shell completion: `autograd --show-completion [SHELL]` and `--install-completion [SHELL]`.

Typer's own pair of options are flags (the shell is always detected, so `--show-completion zsh`
printed bash's script), a home folder that does not exist is created, and a read-only one is a
traceback with exit 1 (which means a failed check here). These take the shell as an optional
value, say in one line and exit 2 what cannot be done, and never create HOME. The scripts and
the completion itself (Tab calls `autograd` with _AUTOGRAD_COMPLETE set) are Typer's.
"""
import os
import pathlib
import sys

OPTIONS = ("--show-completion", "--install-completion")
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
BY_HAND = "print the script with 'autograd --show-completion SHELL' and install it by hand"


class CompletionError(Exception):
    """What cannot be done, in one line (exit 2)."""


def requested(args):
    """(option, shell or None) when args start with one of OPTIONS, else None."""
    if not args:
        return None
    first = args[0]
    for opt in OPTIONS:
        if first == opt:
            nxt = args[1] if len(args) > 1 else None
            return opt, (nxt if nxt is not None and not nxt.startswith("-") else None)
        if first.startswith(opt + "="):
            return opt, first[len(opt) + 1:]
    return None


def run(option, shell, prog_name="autograd"):
    """Do what `option` asks; the exit code (0, 2, or 3 for an internal error)."""
    try:
        shell = _shell(shell)
        if option == "--show-completion":
            sys.stdout.write(_script(shell, prog_name) + "\n")
        else:
            path = _install(shell, prog_name)
            sys.stdout.write(f"{shell} completion installed in {path}\n"
                             "Completion will take effect once you restart the terminal\n")
        sys.stdout.flush()
        return 0
    except CompletionError as e:
        _say(f"error: {e}")
        return 2
    except BrokenPipeError:
        return 141
    except Exception as e:  # noqa: BLE001 - one line, as everywhere else
        _say(f"error: internal error ({type(e).__name__}: {e})")
        return 3


def _say(text):
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr closed: nothing can be said
        pass


def _shell(shell):
    if shell is None:
        from typer._completion_shared import _get_shell_name
        shell = _get_shell_name()
        if shell is None:
            raise CompletionError(f"cannot tell which shell this is: name it, as in --show-completion bash "
                                  f"(one of {', '.join(SHELLS)})")
    if shell not in SHELLS:
        raise CompletionError(f"autograd has no completion for the shell '{shell}': name one of {', '.join(SHELLS)}")
    return shell


def _complete_var(prog_name):
    return "_{}_COMPLETE".format(prog_name.replace("-", "_").upper())


def _script(shell, prog_name):
    from typer._completion_shared import get_completion_script
    return get_completion_script(prog_name=prog_name, complete_var=_complete_var(prog_name), shell=shell)


def _home():
    """The home folder Typer will write in, checked: it exists, is a folder, and may be written."""
    if "HOME" in os.environ and not os.environ["HOME"]:
        raise CompletionError(f"cannot install completion: HOME is empty: set it to your home folder, or {BY_HAND}")
    home = pathlib.Path.home()
    if not home.exists():
        raise CompletionError(f"cannot install completion: the home folder '{home}' (HOME) does not exist: set HOME "
                              f"to your home folder, or {BY_HAND}")
    if not home.is_dir():
        raise CompletionError(f"cannot install completion: the home folder '{home}' (HOME) is not a folder: set "
                              f"HOME to your home folder, or {BY_HAND}")
    if not os.access(home, os.W_OK | os.X_OK):
        raise CompletionError(f"cannot install completion: no permission to write in the home folder '{home}' "
                              f"(HOME): {BY_HAND}")
    return home


def _install(shell, prog_name):
    import subprocess

    from typer._completion_shared import install
    from typer.exceptions import Exit
    _home()
    try:
        return install(shell=shell, prog_name=prog_name, complete_var=_complete_var(prog_name))[1]
    except FileNotFoundError as e:
        if e.filename == shell:
            raise CompletionError(f"cannot install completion for {shell}: '{shell}' is not on PATH") from None
        raise CompletionError(f"cannot install completion: could not write '{e.filename}': {e.strerror}") from None
    except OSError as e:
        raise CompletionError(f"cannot install completion: could not write '{e.filename}': {e.strerror}") from None
    except (subprocess.CalledProcessError, Exit):
        raise CompletionError(f"cannot install completion: {shell} did not say where its profile is; {BY_HAND}") \
            from None
