"""Option declarations shared by the commands (one place for names, defaults and help)."""
import math
from typing import Annotated, Optional

import typer


def _finite(low, strict):
    """A callback refusing NaN, inf and values below `low` (or equal to it when strict): a bad
    tolerance is a usage error (exit 2), not a failed check."""
    def check(value):
        if value is not None and (not math.isfinite(value) or value < low or (strict and value == low)):
            raise typer.BadParameter(f"must be a finite number {'>' if strict else '>='} {low:g}, not {value:g}")
        return value
    return check


Target = Annotated[str, typer.Argument(help="An expression like \"sum(w*x)\", or a .py file defining f(...)",
                                       show_default=False)]
Wrt = Annotated[Optional[str], typer.Option("--wrt", help="Variables that require grad, comma-separated (default: all)")]
Func = Annotated[str, typer.Option("--func", help="Function to use in a .py target (a Function subclass means its .apply)")]
Seed = Annotated[int, typer.Option("--seed", min=0, max=2 ** 32 - 1, help="Seed for randn(...)/rand(...) values")]
DType = Annotated[str, typer.Option("--dtype", help="float64 or float32 (default: float64 for values typed on the "
                                                  "command line, a file's own dtype for its `inputs` and defaults)")]
Backend = Annotated[str, typer.Option("--backend", help="auto (default), engine, or torch: where a .py target "
                                                      "that imports torch runs (see the README)")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else")]
Debug = Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors")]
Eps = Annotated[float, typer.Option("--eps", callback=_finite(0.0, True), help="Finite-difference step (> 0)")]
Atol = Annotated[float, typer.Option("--atol", callback=_finite(0.0, False), help="Absolute tolerance (>= 0)")]
Rtol = Annotated[float, typer.Option("--rtol", callback=_finite(0.0, False), help="Relative tolerance (>= 0)")]

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
VALUES_HELP = ("Give each variable as --NAME VALUES: 3, 1,2, \"1,2;3,4\", \"[[1,2],[3,4]]\", "
               "\"randn(3,4)\", rand(2), zeros(3), ones(2,2), arange(5), linspace(0,1,5), @file.npy|csv|txt.")


def check_dtype(dtype):
    from .errors import CliError
    if dtype not in ("", "float64", "float32"):
        raise CliError(f"--dtype must be float64 or float32, not '{dtype}'")
