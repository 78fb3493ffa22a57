"""`autograd functions`: every function the expression language accepts, from the op registry."""
import typer

from .. import options as o


def functions_command(
    ctx: typer.Context,
    match: str = typer.Argument(None, help="Show only names containing this text", show_default=False),
    json_out: o.Json = False,
    debug: o.Debug = False,
):
    """List the functions (and methods) an expression may call, with how to call them.

    Example: autograd functions soft
    """
    from ..boundary import run
    run(ctx, debug, lambda values: _functions(match, json_out, values))


def describe():
    """[(name, call, also, what it does, PyTorch node names)] for every expression function,
    aliases folded into the first name."""
    import inspect

    from engine.ops import FUNCTIONS, METHODS
    from expressions.compiler import functions
    names = sorted(functions())
    by_fn = {}
    for name in names:
        by_fn.setdefault(id(FUNCTIONS[name].fn), []).append(name)
    rows = []
    for name in names:
        e = FUNCTIONS[name]
        group = by_fn[id(e.fn)]
        if group[0] != name:
            continue
        doc = (e.op.doc if e.op is not None and e.op.doc else (e.fn.__doc__ or "")).strip().split("\n")[0]
        if doc.startswith(name + "(") and ")" in doc:        # the doc line states the call itself
            call, doc = doc.split(":", 1) if ":" in doc else (doc, "")
            call, doc = call.strip(), doc.strip()
        else:
            params = inspect.signature(e.fn).parameters.values()
            pos = [p.name if p.kind != p.VAR_POSITIONAL else f"*{p.name}" for p in params
                   if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                   and p.default is p.empty]
            call = f"{name}({', '.join(pos + [f'{k}=' for k in e.keywords if k not in pos])})"
        also = [n for n in group[1:]] + ([f"x.{name}()"] if name in METHODS else [])
        nodes = list(e.op.node_names) if e.op is not None and e.op.differentiable else []
        rows.append((name, call, ", ".join(also), doc, nodes))
    return rows


def _functions(match, json_out, values):
    from .. import render
    from ..errors import CliError
    if values:
        raise CliError("autograd functions takes no --NAME VALUES; give a text to match, like: autograd functions soft")
    rows = [r for r in describe() if not match or match.lower() in (r[0] + " " + r[2]).lower()]
    if json_out:
        render.dump_json({"functions": [{"name": n, "call": c, "also": a, "doc": d, "nodes": nodes}
                                        for n, c, a, d, nodes in rows]})
        return
    con = render.console()
    if not rows:
        con.print(f"no function's name contains '{render.esc(match)}'")
        return
    t = render.table(None, ["call", "also", "what it does"])
    for _, call, also, doc, _ in rows:
        t.add_row(render.esc(call), render.esc(also), render.esc(doc))
    render.show(con, t)
    render.note(f"{render.plural(len(rows), 'function')}. Operators: + - * / ** @, comparisons (< <= > >= == !=), "
                "indexing x[i, 1:], x.T. Constants: pi, e, inf, nan.")
