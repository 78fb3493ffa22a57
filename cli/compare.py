"""`grad --compare torch`: the engine's answer checked against PyTorch's.

The same target runs on both backends with the same input values: an expression through the
same compiled language (PyTorch's functions at run time), a .py file that imports torch on the
engine's PyTorch API and on real PyTorch. Compared: the output value, each gradient after one
backward() with the same seed, and the names of the backward graph's nodes.
"""
from .errors import CliError

RTOL = {"float64": 1e-9, "float32": 1e-4}


def require_torch():
    """CliError unless PyTorch can be imported here (say so before any work)."""
    from . import backends
    if not backends.torch_installed():
        raise CliError("--compare torch needs PyTorch, which is not installed here: pip install torch")


def torch_counterpart(target, given, func):
    """The target as it runs on PyTorch, or CliError when it has no PyTorch form."""
    from .targets import Target, load_target
    require_torch()
    if target.kind == "expression":
        from expressions import compile_expression

        from . import torch_backend
        try:
            program = compile_expression(target.text, variables=given, lib=torch_backend.expression_library())
        except torch_backend.NoCounterpart as e:
            raise CliError(f"--compare torch: PyTorch has no {e.args[0]}, which this expression uses") from None
        return Target("expression", target.text, list(program.variables), program.run, program=program,
                      backend="torch")
    if not target.torch_api:
        raise CliError("--compare torch compares an expression or a .py file that imports torch (run on the "
                       "engine's PyTorch API and on PyTorch); this file is written for the engine only")
    return load_target(target.text, func, backend="torch")


def compare(target, given, func, tensors, chosen, out, seed_grad, dtype):
    """{"backend", "same", "rows": [...]} comparing the engine's run (already done: `out`,
    `tensors` with .grad after one backward) with PyTorch's."""
    import numpy as np

    from engine.dotgraph import EngineView

    from . import torch_backend
    other = torch_counterpart(target, given, func)       # first: CliError where PyTorch is missing
    other.constants = dict(target.constants)             # the same constants (numbers, or arrays)
    t = torch_backend.torch()
    tt = {}
    for n, x in tensors.items():
        v = t.from_numpy(np.array(x.detach().numpy(), copy=True))
        tt[n] = v.requires_grad_(True) if n in chosen else v
    try:
        outs, _ = other.call(tt)
    except RuntimeError as e:
        raise CliError(f"--compare torch: PyTorch could not run the target: {str(e).splitlines()[0]}") from None
    out_t = outs[0]
    if out_t.requires_grad:
        with other.autograd_errors():
            out_t.backward(None if seed_grad is None else t.from_numpy(np.array(seed_grad.numpy(), copy=True)))
    rtol = RTOL[dtype or next((str(t.dtype).replace('torch.', '') for t in tensors.values()
                               if str(t.dtype).endswith('float32')), 'float64')]
    rows = [_row("output", out.detach().numpy(), out_t.detach().numpy(), rtol)]
    for n in chosen:
        e, p = tensors[n].grad, tt[n].grad
        rows.append(_row(f"{n}.grad", None if e is None else e.numpy(), None if p is None else p.numpy(), rtol))
    ours = torch_backend.node_names([EngineView.root(out)], EngineView)
    theirs = torch_backend.node_names([out_t.grad_fn], torch_backend.view())
    same = sorted(ours) == sorted(theirs)
    if same:
        e_text, t_text = ", ".join(ours), f"the same {len(theirs)} nodes"
    else:                               # what one graph has that the other lacks
        e_text = ", ".join(_minus(ours, theirs)) or "-"
        t_text = ", ".join(_minus(theirs, ours)) or "-"
    rows.append({"what": "graph nodes", "engine": e_text, "torch": t_text, "max_abs_diff": None, "same": same,
                 "engine_nodes": ours, "torch_nodes": theirs})
    return {"backend": torch_backend.label(), "same": all(r["same"] for r in rows), "rows": rows}


def _minus(a, b):
    rest = list(b)
    out = []
    for n in a:
        if n in rest:
            rest.remove(n)
        else:
            out.append(n)
    return out


def _row(what, a, b, rtol):
    import numpy as np

    from engine.dotgraph import fmt_values
    row = {"what": what, "engine": "None" if a is None else fmt_values(a),
           "torch": "None" if b is None else fmt_values(b), "max_abs_diff": None}
    if a is None or b is None:
        row["same"] = a is None and b is None
    elif np.shape(a) != np.shape(b):
        row["same"] = False
        row["torch"] += f" (shape {tuple(np.shape(b))})"
    else:
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        diff = np.abs(a64 - b64)
        finite = np.isfinite(a64) & np.isfinite(b64)
        row["max_abs_diff"] = float(diff[finite].max()) if finite.any() else 0.0
        same_nonfinite = np.array_equal(np.isnan(a64), np.isnan(b64)) and \
            np.array_equal(np.where(finite | np.isnan(a64), 0, a64), np.where(finite | np.isnan(b64), 0, b64))
        row["same"] = bool(same_nonfinite and np.allclose(a64[finite], b64[finite], rtol=rtol, atol=rtol * 1e-3))
    return row


def show(con, result):
    from . import render
    t = render.table(f"compared with {result['backend']}", ["", "engine", "PyTorch", "max abs diff", "same"])
    for r in result["rows"]:
        d = "" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3g}"
        theirs = "(the same)" if r["torch"] == r["engine"] else r["torch"]
        t.add_row(render.esc(r["what"]), render.esc(r["engine"]), render.esc(theirs), d,
                  "[green]yes[/green]" if r["same"] else "[red]NO[/red]")
    render.show(con, t)
    con.print("[green]the engine agrees with PyTorch[/green]" if result["same"] else
              "[red]the engine and PyTorch DIFFER[/red]: " +
              ", ".join(r["what"] for r in result["rows"] if not r["same"]))
