"""The `autograd` command: registers the commands and holds the one error boundary. No math here.

Start-up stays light: this module imports typer only; each command imports the engine, Rich
and the rest inside its body.
"""
import sys

import typer

from . import options
from .commands.check import check_command
from .commands.grad import grad_command
from .commands.graph import graph_command
from .commands.jacobian import jacobian_command

__version__ = "0.1.0"

app = typer.Typer(
    name="autograd",
    help="See and check derivatives: values, gradients, Jacobians, a finite-difference verdict, and "
         "the backward graph, from a formula on the command line or a .py file. " + options.VALUES_HELP,
    no_args_is_help=True,
    add_completion=False,
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
                   ("graph", graph_command)):
    app.command(_name, context_settings=options.EXTRA, help=_fn.__doc__)(_fn)


def run(ctx, debug, body):
    """The error boundary every command runs through: parse --NAME VALUES, call `body`, map errors
    to exit codes (2 usage/input, 1 failed check), print no traceback unless --debug."""
    import numpy as np

    from .errors import report
    from .targets import parse_variable_args
    known = {p.name for p in ctx.command.params} | {o.lstrip("-") for p in ctx.command.params
                                                     for o in getattr(p, "opts", []) if o.startswith("--")}
    old = np.seterr(all="ignore")     # inf/nan are results to show, not warnings to print
    try:
        values = parse_variable_args(list(ctx.args), known)
        values.known_options = known
        body(values)
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - the boundary
        code = report(e, debug)
        raise typer.Exit(code) from None
    finally:
        np.seterr(**old)


def main():
    app()
