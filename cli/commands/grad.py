"""`autograd grad`: the value, the gradients, accumulation over repeated backward calls."""
import typer

from .. import options as o
from ..errors import CheckFailed, CliError


def grad_command(
    ctx: typer.Context,
    target: o.Target,
    wrt: o.Wrt = None,
    times: int = typer.Option(1, "--times", min=1, max=100, help="Run backward N times (graph retained) and show .grad after each (at most 100)"),
    zero_grad: bool = typer.Option(False, "--zero-grad", help="Zero the gradients between the --times calls"),
    grad_output: str = typer.Option(None, "--grad-output", help="Gradient to seed a non-scalar output with (VALUES)"),
    check: bool = typer.Option(False, "--check", help="Also run the gradient checker"),
    dot: str = typer.Option(None, "--dot", help="Also write the graph as DOT to FILE"),
    compare: str = typer.Option(None, "--compare", help="torch: run on the engine and on PyTorch and show any "
                                "difference in the value, the gradients and the graph's node names"),
    func: o.Func = "f",
    backend: o.Backend = "auto",
    seed: o.Seed = 0,
    dtype: o.DType = "",
    json_out: o.Json = False,
    debug: o.Debug = False,
):
    """Compute an expression (or a .py function) and its gradients.

    Example: autograd grad "sum(w*x)" --w 1,2 --x 3,4   (w.grad is x = [3, 4])

    --times 2 shows gradients accumulating ([3, 4] then [6, 8]); add --zero-grad to reset them.
    """
    from ..boundary import run
    run(ctx, debug, lambda values: _grad(target, values, wrt, times, zero_grad, grad_output, check, dot,
                                         func, seed, dtype, json_out, backend=backend, compare=compare))


def _grad(target_text, values, wrt, times, zero_grad, grad_output, check, dot, func, seed, dtype, json_out,
          backend="auto", compare=None):
    from expressions import parse_value

    from .. import render
    from ..options import check_dtype
    from ..outputs import prepare, write_graph
    from ..targets import build_inputs, check_precision, check_real_outputs, check_step, load_target
    check_dtype(dtype)
    dot = prepare(dot)                        # before any work
    if compare is not None:
        if compare != "torch":
            raise CliError(f"--compare takes torch (the only other backend), not '{compare}'")
        if times > 1:
            raise CliError("--compare torch compares one backward() call: drop --times")
        if backend == "torch":
            raise CliError("--compare torch runs the target on the engine and on PyTorch: drop --backend torch")
        from ..compare import require_torch
        require_torch()                       # before any work: the target may take long
        backend = "engine"
    target = load_target(target_text, func, given=values, backend=backend)
    tensors, chosen = build_inputs(target, values, wrt=wrt, dtype=dtype, seed=seed)
    if check:
        check_step(target, tensors, chosen, 1e-6, own_option=False)
    outs, single = target.call(tensors)
    if not single:
        raise CliError(f"the target returns {len(outs)} outputs; grad needs one (use 'autograd jacobian' for several)")
    out = outs[0]
    check_real_outputs(target, outs, ["output"], "grad")
    if check:
        check_precision(target, outs, "grad --check")
    if not out.requires_grad:
        raise CliError("the output does not depend on any variable that requires grad (check --wrt)")
    seed_grad = None
    if grad_output is not None:
        seed_grad = parse_value(grad_output, name="grad-output")
        if tuple(seed_grad.shape) != tuple(out.shape):
            raise CliError(f"--grad-output has shape {render.shape_text(seed_grad.shape)} but the output has shape "
                           f"{render.shape_text(out.shape)}")
        seed_grad = target.lib.tensor(seed_grad).to(out.dtype)
    elif out.numel() != 1:
        reduce = (f"reduce it, e.g. \"sum({target_text})\"" if target.kind == "expression" else
                  "return a scalar from it (its .sum(), a loss)")
        raise CliError(f"the output has shape {render.shape_text(out.shape)}, not a scalar: pass --grad-output VALUES "
                       f"(the vector for the vector-Jacobian product) or {reduce}")
    history = []
    for call in range(1, times + 1):
        if zero_grad and call > 1:
            for name in chosen:
                if tensors[name].grad is not None:
                    tensors[name].grad.zero_()
        with target.autograd_errors():
            out.backward(seed_grad, retain_graph=call < times)
        # an input the output does not reach through a differentiable op keeps .grad None (PyTorch)
        history.append({name: None if tensors[name].grad is None else target.to_numpy(tensors[name].grad)
                        for name in chosen})
    unreached = [n for n in chosen if history[-1][n] is None]
    report = None
    if check:
        report = _check(target, tensors, chosen)
    compared = None
    if compare is not None:
        from ..compare import compare as run_compare
        compared = run_compare(target, values, func, tensors, chosen, out, seed_grad, dtype)
    if dot is not None:
        write_graph(outs, tensors, dot, show_values=True, show_grad=True, view=target.graph_view())
    if json_out:
        from engine.graph import node_name
        doc = {**target.json_fields(), "expression": target.text,
               "output": {"value": render.to_jsonable(target.to_numpy(out)), "shape": list(out.shape),
                          "grad_fn": node_name(out.grad_fn) if out.grad_fn is not None else None},
               "inputs": {n: {"value": render.to_jsonable(target.to_numpy(t)), "shape": list(t.shape),
                              "requires_grad": t.requires_grad} for n, t in tensors.items()},
               "gradients": {n: render.to_jsonable(history[-1][n]) for n in chosen}}
        if unreached:
            doc["no_gradient"] = unreached
        if times > 1:
            doc["accumulation"] = [{"call": i + 1, "gradients": {n: render.to_jsonable(g[n]) for n in chosen}}
                                   for i, g in enumerate(history)]
            doc["zero_grad"] = zero_grad
        if report is not None:
            doc["check"] = render.check_json(report)
        if compared is not None:
            doc["compare"] = compared
        render.dump_json(doc)
    else:
        con = render.console()
        render.backend_line(con, target)
        render.show(con, render.inputs_table(tensors))
        con.print(f"[bold]output[/bold] {render.esc(repr(out))}")
        if times == 1:
            t = render.table("gradients", ["name", "shape", ".grad"])
            for n in chosen:
                t.add_row(n, render.shape_text(tensors[n].shape), render.esc(repr(tensors[n].grad)))
            render.show(con, t)
            _say_unreached(unreached)
        else:
            t = render.table("gradients after each backward() call", ["call"] + [f"{n}.grad" for n in chosen])
            for i, g in enumerate(history):
                t.add_row(str(i + 1), *[render.esc("None" if g[n] is None else repr(target.lib.tensor(g[n])))
                                        for n in chosen])
            render.show(con, t)
            _say_unreached(unreached)
            if zero_grad:
                zeroed = ", ".join(f"{n}.grad" for n in chosen)
                render.note(f"--zero-grad: {zeroed} {'was' if len(chosen) == 1 else 'were'} zeroed before each call "
                            f"({chosen[0]}.grad.zero_()), so every call shows the same gradient instead of a running "
                            "sum.")
            else:
                if target.frees_saved_values(out):
                    kept = ("The graph was kept with retain_graph=True; without it the second backward() would "
                            "fail, as in PyTorch (\"Trying to backward through the graph a second time\"): "
                            "a node of this graph saved values for backward, and backward() frees them.")
                else:
                    kept = ("No node of this graph saved a value for backward (only sums and additions), so "
                            "in PyTorch the second backward() would run even without retain_graph=True.")
                render.note("Gradients accumulate: each backward() adds into .grad, so call 2 shows twice call 1. "
                            + kept)
        if report is not None:
            render.check_line(con, report)
        if compared is not None:
            from ..compare import show
            show(con, compared)
    if (report is not None and not report.passed) or (compared is not None and not compared["same"]):
        raise CheckFailed()


def _say_unreached(names):
    from .. import render
    for n in names:
        render.note(f"{n}.grad is None: {n} does not reach the output through an operation with a derivative "
                    f"(a comparison, a detach, integer values, or a backward that returned None for it), so "
                    f"backward() leaves its .grad None, as PyTorch does.")


def _check(target, tensors, chosen):
    import warnings

    from engine.autograd.checker import check_gradients

    from ..targets import check_jacobian_size
    check_jacobian_size(target, tensors, chosen, "drop --check, or run 'autograd check --fast'")
    fn = target.engine_function(list(tensors))     # on PyTorch: its backward is PyTorch's autograd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs = tuple(target.to_engine(t.detach().requires_grad_(n in chosen) if t.is_floating_point() else t)
                       for n, t in tensors.items())
        return check_gradients(fn, inputs, input_names=list(tensors), verdicts=True)
