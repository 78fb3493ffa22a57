"""Rendering: Rich tables on a terminal (plain text when piped, NO_COLOR honoured by Rich), and
the JSON documents. Rich is imported here only, when a command prints.
"""
import math
import re
import sys

_STDOUT = None     # the real stdout while a command runs (the boundary points sys.stdout at stderr)


def set_stdout(stream):
    global _STDOUT
    _STDOUT = stream


def out():
    """Where the command's data goes: the real stdout (a .py target's prints go to stderr)."""
    return _STDOUT if _STDOUT is not None else sys.stdout


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text, limit=2000):
    """`text` safe to echo on a terminal: control characters (escape sequences typed or pasted into
    an argument) shown as \\xNN, and a line longer than `limit` shortened in its middle."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    lines = []
    for line in text.split("\n"):
        if len(line) > limit:
            line = line[:limit // 2] + f" ... ({len(line) - limit} characters) ... " + line[-limit // 2:]
        lines.append(line)
    return "\n".join(lines)


def rich_wanted(stream=None):
    """Rich on a terminal (or when AUTOGRAD_RICH=1); plain text when piped, without importing Rich
    at all (it is a quarter of a piped run's start-up)."""
    import os
    stream = stream or out()
    if os.environ.get("AUTOGRAD_RICH") == "1":
        return True
    return hasattr(stream, "isatty") and stream.isatty()


_TAG = re.compile(r"(?<!\\)\[/?[a-z][a-z ]*\]")


class _Plain:
    """The slice of rich.console.Console we use, printing plain text (markup tags dropped)."""

    def __init__(self, stderr=False):
        self.stream = sys.stderr if stderr else out()

    def print(self, obj=""):
        if isinstance(obj, _PlainTable):
            self.stream.write(obj.render())
            return
        text = _TAG.sub("", str(obj)).replace("\\[", "[")
        self.stream.write(text + "\n")


class _PlainTable:
    def __init__(self, columns):
        self.columns = list(columns)
        self.rows = []

    def add_row(self, *cells):
        self.rows.append([_TAG.sub("", c).replace("\\[", "[") for c in cells])

    def render(self):
        widths = [len(c) for c in self.columns]
        split = [[cell.split("\n") for cell in row] for row in self.rows]
        for row in split:
            for i, lines in enumerate(row):
                widths[i] = max(widths[i], max(len(x) for x in lines))
        out = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip(),
               "  ".join("-" * w for w in widths)]
        for row in split:
            height = max(len(lines) for lines in row)
            for k in range(height):
                out.append("  ".join((lines[k] if k < len(lines) else "").ljust(w)
                                     for lines, w in zip(row, widths)).rstrip())
        return "\n".join(out) + "\n\n"


def console(stderr=False, min_width=None):
    """A Rich console on a terminal (colour unless NO_COLOR), else a plain-text stand-in."""
    stream = sys.stderr if stderr else out()
    if not rich_wanted(stream):
        return _Plain(stderr)
    import os

    from rich.console import Console
    tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if tty or os.environ.get("COLUMNS") else 120
    if min_width and not tty:
        width = max(width or 120, min_width)
    return Console(file=stream, highlight=False, soft_wrap=False, width=width)


def table(title, columns):
    if not rich_wanted():
        t = _PlainTable(columns)
    else:
        from rich import box
        from rich.table import Table
        t = Table(box=box.SIMPLE_HEAD)
        for c in columns:
            # never wrapped: a number split over two lines reads as two numbers, a tensor's repr
            # re-wrapped mid-row as nonsense; what does not fit is cut with an ellipsis
            t.add_column(c, no_wrap=True, overflow="ellipsis")
    t.heading = title          # printed on its own line by show(), never folded to the table's width
    return t


def columns_that_fit(label_width, cell_width, width):
    """How many value columns of cell_width fit beside a label column in `width` characters
    (a Rich table pads each column by one on each side and draws an edge; one more per column
    keeps it clear of cropping); unlimited (plain output) is 10**6."""
    if not width:
        return 10 ** 6
    return max(1, (width - (label_width + 6)) // (cell_width + 3))


def show(con, t):
    if getattr(t, "heading", None):
        con.print(f"[bold]{esc(t.heading)}[/bold]")
    if not isinstance(t, _PlainTable):
        _keep_narrow_columns(t)
    con.print(t)


def _keep_narrow_columns(t):
    """When a Rich table is too wide, only its widest column (a tensor's repr, a long label) is
    cut; the others keep their full width, so names, shapes and numbers are never cropped."""
    widths = []
    for col in t.columns:
        cells = [str(c) for c in getattr(col, "_cells", [])] + [str(col.header)]
        widths.append(max(len(_TAG.sub("", line)) for cell in cells for line in (cell.split("\n") or [""])))
    if len(widths) < 2:
        return
    widest = widths.index(max(widths))
    for k, (col, w) in enumerate(zip(t.columns, widths)):
        if k != widest:
            col.min_width = w


def shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


_MARKUP_LIKE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def esc(s):
    """Escape text so Rich (or the plain printer) shows it literally (Rich's own rule)."""
    return _MARKUP_LIKE.sub(lambda m: m.group(1) + m.group(1) + "\\" + m.group(2), str(s))


def to_jsonable(arr):
    """Nested lists of floats (0-d: a plain number), full float64 precision; None stays null."""
    import numpy as np
    if arr is None:
        return None
    a = np.asarray(arr)
    if a.dtype.kind == "b":
        return a.tolist()
    v = a.astype(np.float64).tolist()
    return v


def dump_json(doc):
    """One JSON document on stdout. JSON has no NaN or infinity: they are written as the strings
    "NaN", "Infinity" and "-Infinity" (what float() and JavaScript's Number() read back), never
    as null, which stays free to mean "no value" (a gradient that does not exist)."""
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return "NaN" if math.isnan(o) else ("Infinity" if o > 0 else "-Infinity")
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o
    import json                       # only with --json: not on every start
    out().write(json.dumps(clean(doc), indent=2) + "\n")


def compact(t, n=4):
    """A tensor's values in a few characters: [0.12, -1.3, 2, ...] (the first n)."""
    import numpy as np
    a = np.asarray(t.detach().numpy() if hasattr(t, "detach") else t, dtype=np.float64).reshape(-1)
    items = [f"{v:.3g}" for v in a[:n]]
    return ("[" + ", ".join(items) + (", ..." if a.size > n else "") + "]") if a.ndim and t.shape != () else items[0]


def backend_line(con, target):
    """Which backend ran, for a file that imports torch (cli.targets.Target.header)."""
    line = target.header()
    if line:
        con.print(f"[dim]{esc(line)}[/dim]")


def note(text):
    """A line of explanation for the reader (stdout, dimmed on a terminal)."""
    console().print(f"[dim]{esc(text)}[/dim]")


def warn_line(text):
    """A plain line on stderr (where a file went), never on stdout."""
    console(stderr=True).print(esc(text))


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def remark(text):
    """A plain remark on stderr (how the check ran), not a warning about the result."""
    console(stderr=True).print(f"note: {esc(text)}")


def warn(text):
    console(stderr=True).print(f"[yellow]warning:[/yellow] {esc(text)}")


_WARNED = set()         # the warnings said while this command runs (the boundary clears it)


def warn_once(text):
    """warn(text), unless this command already said it (a target run twice warns twice)."""
    if text not in _WARNED:
        _WARNED.add(text)
        warn(text)


def forget_warnings():
    _WARNED.clear()


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


def check_line(con, report):
    """The one-line verdict of a gradient check (grad --check, jacobian --check), then its warnings."""
    worst = max(report.pairs, key=lambda p: p.max_abs_error, default=None)
    err = f" (max abs error {worst.max_abs_error:.3g})" if worst else ""
    if report.verdict == "suspicious":
        con.print(f"[yellow]gradient check SUSPICIOUS[/yellow]: {esc(report.suspicion)}")
    elif report.verdict == "inconclusive":
        con.print(f"[yellow]gradient check INCONCLUSIVE[/yellow]: {esc(report.inconclusive)}")
    elif report.passed:
        con.print(f"[green]gradient check passed[/green]{err}")
    else:
        con.print(f"[red]gradient check FAILED[/red]: {esc(report.summary())}")
    for w in report.warnings:
        warn(w)


def check_json(report):
    """A gradient check report as JSON (check --json, and the "check" entry of grad/jacobian --json)."""
    inputs = {}
    grads = {}
    reference = {}
    for p in report.pairs:
        if p.kind == "float64":       # a float32 gradient against the float64 one of the same computation
            key = f"{p.input_name}.grad" if p.output_name == "backward()" else f"d{p.output_name}/d{p.input_name}"
            reference[key] = {"max_abs_error": p.max_abs_error, "worst_index": [list(p.worst_index[0]),
                              list(p.worst_index[1])], "float32": p.worst_analytical, "float64": p.worst_numerical,
                              "passed": p.passed}
            continue
        if p.kind == "grad":          # the .grad an ordinary backward() left, vs v^T J numerical
            grads[p.input_name] = {"max_abs_error": p.max_abs_error, "max_rel_error": p.max_rel_error,
                                   "worst_index": list(p.worst_index[1]), "grad": p.worst_analytical,
                                   "numerical": p.worst_numerical, "passed": p.passed}
            continue
        cur = inputs.get(p.input_name)
        if cur is None or p.max_abs_error > cur["max_abs_error"]:
            inputs[p.input_name] = {"max_abs_error": p.max_abs_error, "max_rel_error": p.max_rel_error,
                                    "worst_index": [list(p.worst_index[0]), list(p.worst_index[1])],
                                    "analytical": p.worst_analytical, "numerical": p.worst_numerical,
                                    "passed": p.passed and (cur is None or cur["passed"])}
        elif not p.passed:
            cur["passed"] = False
    return {"passed": report.passed, "verdict": report.verdict or ("pass" if report.passed else "fail"),
            "suspicion": report.suspicion or None, "inconclusive": report.inconclusive or None, "eps": report.eps, "atol": report.atol, "rtol": report.rtol,
            "fast_mode": report.fast_mode, "inputs": inputs, "backward_grad": grads, "checks": report.checks,
            "failures": report.failures, "warnings": report.warnings, "custom_functions": report.suspects,
            **({"float64_reference": reference} if reference else {})}
