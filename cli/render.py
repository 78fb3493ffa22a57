"""Rendering: Rich tables on a terminal (plain text when piped, NO_COLOR honoured by Rich), and
the JSON documents. Rich is imported here only, when a command prints.
"""
import json
import math
import sys


def console(stderr=False, min_width=None):
    """Rich decides colour (none when piped or NO_COLOR is set); when piped, lines may be 120
    characters so tables of numbers are not folded to 80."""
    import os

    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    width = None if (hasattr(stream, "isatty") and stream.isatty()) or os.environ.get("COLUMNS") else 120
    if min_width and not (hasattr(stream, "isatty") and stream.isatty()):
        width = max(width or 120, min_width)
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def table(title, columns):
    from rich import box
    from rich.table import Table
    t = Table(box=box.SIMPLE_HEAD)
    t.heading = title          # printed on its own line by show(), never folded to the table's width
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


def show(con, t):
    if getattr(t, "heading", None):
        con.print(f"[bold]{esc(t.heading)}[/bold]")
    con.print(t)


def shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def esc(s):
    from rich.markup import escape
    return escape(str(s))


def to_jsonable(arr):
    """Nested lists of floats (0-d: a plain number), full float64 precision."""
    import numpy as np
    a = np.asarray(arr)
    if a.dtype.kind == "b":
        return a.tolist()
    v = a.astype(np.float64).tolist()
    return v


def dump_json(doc):
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None if math.isnan(o) else ("Infinity" if o > 0 else "-Infinity")
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o
    sys.stdout.write(json.dumps(clean(doc), indent=2) + "\n")


def note(text):
    """A line of explanation for the reader (stdout, dimmed on a terminal)."""
    console().print(f"[dim]{esc(text)}[/dim]")


def warn(text):
    console(stderr=True).print(f"[yellow]warning:[/yellow] {esc(text)}")


def inputs_table(tensors):
    t = table("inputs", ["name", "shape", "requires_grad", "value"])
    for name, x in tensors.items():
        t.add_row(esc(name), shape_text(x.shape), str(x.requires_grad), esc(repr(x.detach())))
    return t


def labels(name, shape):
    """Row/column labels for the flattened elements of a tensor: x[0], x[1, 2], ..."""
    import itertools
    if len(shape) == 0:
        return [name]
    return [f"{name}[{', '.join(map(str, idx))}]" for idx in itertools.product(*[range(s) for s in shape])]
