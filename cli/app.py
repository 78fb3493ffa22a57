"""The `autograd` command: registers the commands, nothing else (the error boundary is
cli/boundary.py, below the commands). No math here.

Start-up stays light: this module imports typer only; each command imports the engine, Rich
and the rest inside its body.
"""
import sys

import typer
from typer.completion import completion_init
from typer.core import TyperCommand, TyperGroup

from . import completion, options
from .boundary import AFTER_DASHDASH
import importlib
import os

__version__ = "0.1.0"

class _Group(TyperGroup):
    """The root command: --show-completion / --install-completion [SHELL] are ours (cli/completion.py),
    read before Click parses anything, since Click has no option with an optional value."""

    def parse_args(self, ctx, args):
        asked = completion.requested(args)
        if asked is not None:
            raise typer.Exit(completion.run(*asked, prog_name=ctx.info_name or "autograd"))
        return super().parse_args(ctx, args)


class _Command(TyperCommand):
    """A command that remembers how many of its arguments came after `--` (Click drops the `--`):
    there every --NAME is a variable, `-- --max-nodes 3` too (cli/targets.py)."""

    def parse_args(self, ctx, args):
        if "--" in args:
            ctx.meta[AFTER_DASHDASH] = len(args) - args.index("--") - 1
        return super().parse_args(ctx, args)


completion_init()          # Typer's completion classes answer Tab (_AUTOGRAD_COMPLETE=complete_bash ...)

app = typer.Typer(
    name="autograd",
    cls=_Group,
    help="See and check derivatives: values, gradients, Jacobians, a finite-difference verdict, and "
         "the backward graph, from a formula on the command line or a .py file. " + options.VALUES_HELP,
    no_args_is_help=True,
    add_completion=False,      # its --show/--install-completion are flags: ours take the shell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool):
    if value:
        sys.stdout.write(f"autograd-cli {__version__}\n")
        raise typer.Exit()


def _completion(ctx, param, value):
    """Reached only when the option is not first (`--version --show-completion zsh`)."""
    if value is not None and not ctx.resilient_parsing:
        raise typer.Exit(completion.run(param.opts[0], value, prog_name=ctx.find_root().info_name or "autograd"))


@app.callback()
def main_callback(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                               help="Show the version and exit"),
                  install_completion: str = typer.Option(
                      None, "--install-completion", metavar="[SHELL]", callback=_completion, is_eager=True,
                      expose_value=False, help="Install completion for SHELL (bash, zsh, fish, powershell, pwsh; "
                      "default: this shell)"),
                  show_completion: str = typer.Option(
                      None, "--show-completion", metavar="[SHELL]", callback=_completion, is_eager=True,
                      expose_value=False, help="Print the completion script for SHELL (default: this shell)")):
    """See and check derivatives from the command line."""


COMMANDS = ("grad", "jacobian", "check", "graph", "explain", "functions")


def _only():
    """The one command this process runs, when the program was started as `autograd COMMAND ...`
    (cli/entry.py): only its module is imported, which keeps start-up near the cost of numpy and
    typer. Anything else (--help, a misspelt command, completion, `import cli.app` in tests and
    the Python API) registers them all."""
    argv = sys.argv[1:] if getattr(sys.modules.get(__package__), "_entry", False) else []
    if argv and argv[0] in COMMANDS and not any(k.startswith("_AUTOGRAD_COMPLETE") for k in os.environ):
        return (argv[0],)
    return COMMANDS


for _name in _only():
    _fn = getattr(importlib.import_module(f".commands.{_name}", __package__), f"{_name}_command")
    app.command(_name, cls=_Command, context_settings=options.EXTRA, help=_fn.__doc__)(_fn)


def main():
    app()
