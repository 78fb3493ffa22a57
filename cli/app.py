"""The `autograd` command: registers the commands, nothing else (the error boundary is
cli/boundary.py, below the commands). No math here.

Start-up stays light: this module imports typer only; each command imports the engine, Rich
and the rest inside its body.
"""
import sys

import typer

from . import options
from .commands.check import check_command
from .commands.explain import explain_command
from .commands.functions import functions_command
from .commands.grad import grad_command
from .commands.graph import graph_command
from .commands.jacobian import jacobian_command

__version__ = "0.1.0"

app = typer.Typer(
    name="autograd",
    help="See and check derivatives: values, gradients, Jacobians, a finite-difference verdict, and "
         "the backward graph, from a formula on the command line or a .py file. " + options.VALUES_HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool):
    if value:
        sys.stdout.write(f"autograd-cli {__version__}\n")
        raise typer.Exit()


@app.callback()
def main_callback(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                               help="Show the version and exit")):
    """See and check derivatives from the command line."""


for _name, _fn in (("grad", grad_command), ("jacobian", jacobian_command), ("check", check_command),
                   ("graph", graph_command), ("explain", explain_command), ("functions", functions_command)):
    app.command(_name, context_settings=options.EXTRA, help=_fn.__doc__)(_fn)


def main():
    app()
