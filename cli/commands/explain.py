"""`autograd explain`: the forward pass, then the backward pass step by step, as the lesson
tells it: each node, the gradient it receives (the v of v^T J), its local rule from the op
registry, what it sends to each input, and each leaf's .grad before and after accumulating."""
import typer

from .. import options as o


def explain_command(
    ctx: typer.Context,
    target: o.Target,
    wrt: o.Wrt = None,
    times: int = typer.Option(1, "--times", min=1, max=10, help="Call backward() N times (the graph is retained "
                              "unless --no-retain)"),
    no_retain: bool = typer.Option(False, "--no-retain", help="Do not retain the graph: a second backward() fails, "
                                   "as in PyTorch, when a node saved values"),
    zero_grad: bool = typer.Option(False, "--zero-grad", help="Zero .grad before each backward() after the first"),
    no_grad: bool = typer.Option(False, "--no-grad", help="Run the forward pass under torch.no_grad()"),
    detach: str = typer.Option(None, "--detach", help="Detach this variable before the forward pass (NAME)"),
    func: o.Func = "f",
    seed: o.Seed = 0,
    json_out: o.Json = False,
    debug: o.Debug = False,
):
    """Show the forward and backward passes step by step.

    Example: autograd explain "sum(w*x)" --w 1,2 --x 3,4
    """
    from ..boundary import run
    run(ctx, debug, lambda values: _explain(target, values, wrt, times, no_retain, zero_grad, no_grad, detach, func,
                                            seed, json_out))


def _explain(target_text, values, wrt, times, no_retain, zero_grad, no_grad, detach, func, seed, json_out):
    from engine.graph import node_name
    import numpy as np

    import engine
    from engine.dotgraph import fmt_values
    from engine.errors import SECOND_BACKWARD

    from .. import render
    from ..errors import CliError
    from ..targets import build_inputs, load_target
    target = load_target(target_text, func, given=values, backend="engine")
    tensors, chosen = build_inputs(target, values, wrt=wrt, seed=seed)
    if detach is not None and detach not in tensors:
        raise CliError(f"--detach names '{detach}', which the target does not use (it uses {', '.join(tensors)})")
    span_of = None
    if target.kind == "expression":
        from expressions.compiler import CURRENT_SPAN
        span_of = lambda: CURRENT_SPAN[0]  # noqa: E731
    forward, made = [], {}

    def record(node, args, attrs):
        span = span_of() if span_of else None
        made[node] = target.text[span[0]:span[1]] if span else node_name(node)
        forward.append(node)
    names = {id(t): n for n, t in tensors.items()}
    args = dict(tensors)
    if detach is not None:
        args[detach] = tensors[detach].detach()
        names[id(args[detach])] = f"{detach} (detached)"
    prev = engine.grad_mode.STATE.recorder
    engine.grad_mode.STATE.recorder = record
    try:
        with engine.no_grad() if no_grad else _nothing():
            outs, single = target.call(args)
    finally:
        engine.grad_mode.STATE.recorder = prev
    out = outs[0]
    doc = {"expression": target.text, "forward": [], "calls": []}
    lines = []
    for node in forward:
        o_val = _output_value(node)
        doc["forward"].append({"node": node_name(node), "computes": made[node], "value": o_val})
    if not single:
        raise CliError("explain follows one output; this target returns several (use 'autograd jacobian')")
    if out.grad_fn is None and not out.requires_grad:
        why = ("the forward pass ran under no_grad, so no graph was recorded" if no_grad else
               "the output does not depend on a variable that requires grad (check --wrt / --detach)")
        msg = "element 0 of tensors does not require grad and does not have a grad_fn"
        doc["error"] = msg
        doc["why"] = why
        return _finish(doc, json_out, [f"backward() fails: RuntimeError: {msg}", f"why: {why}"], render)
    seed_grad = None if out.numel() == 1 else engine.ones_like(out)
    # an output that is a leaf itself (`explain x`): its backward is its AccumulateGrad alone, and
    # PyTorch's x.backward() leaves x.grad = 1
    root = out.grad_fn if out.grad_fn is not None else engine.graph.accumulator(out)
    for call in range(1, times + 1):
        if zero_grad and call > 1:
            for n in chosen:
                if tensors[n].grad is not None:
                    tensors[n].grad.zero_()
        steps, handles = [], []
        before = {n: (None if tensors[n].grad is None else tensors[n].grad.numpy().copy()) for n in chosen}
        for node in engine.graph.walk([root]):
            handles.append(node.register_prehook(lambda gs, node=node: steps.append(
                {"node": node, "received": [None if g is None else g.numpy(force=True).copy() for g in gs]})))
            if not isinstance(node, engine.graph.AccumulateGrad):
                handles.append(node.register_hook(lambda gi, go, node=node: _sent(steps, node, gi)))
        try:
            out.backward(seed_grad, retain_graph=not no_retain)
        except RuntimeError as e:
            # the lesson's error (a second backward() without retain_graph) is part of the story;
            # anything else -- the user's backward raising, returning a wrong shape -- is an error
            # of the input, said as `grad` says it (exit 2)
            if not str(e).startswith(SECOND_BACKWARD[:50]):
                raise
            first = str(e).splitlines()[0]
            why = ("backward() frees what the nodes saved unless retain_graph=True; the first call did that, "
                   "so this one has nothing to work with")
            doc["calls"].append({"call": call, "error": first, "why": why})
            break
        finally:
            for h in handles:
                h.remove()
        call_doc = {"call": call, "steps": []}
        for st in steps:
            node = st["node"]
            received = fmt_values(st["received"][0]) if st["received"] and st["received"][0] is not None else "None"
            if isinstance(node, engine.graph.AccumulateGrad):
                var = node.variable
                nm = names.get(id(var), "leaf")
                b = before.get(nm)
                after = None if var.grad is None else var.grad.numpy().copy()
                call_doc["steps"].append({"node": "AccumulateGrad", "leaf": nm, "received": received,
                                          "grad_before": None if b is None else fmt_values(b),
                                          "grad_after": None if after is None else fmt_values(after)})
                continue
            inputs = _input_names(node, names, made)
            sent = {k: (fmt_values(v) if v is not None else "None")
                    for k, v in zip(inputs, st.get("sent", [None] * len(inputs)))}
            call_doc["steps"].append({"node": node_name(node), "computes": made.get(node, ""), "received": received,
                                      "rule": _rule(node, inputs), "sent": sent})
        doc["calls"].append(call_doc)
    doc["gradients"] = {n: None if tensors[n].grad is None else render.to_jsonable(tensors[n].grad.numpy())
                        for n in chosen}
    return _finish(doc, json_out, None, render)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _output_value(node):
    from engine.dotgraph import fmt_values
    out = getattr(node, "_out", None)
    return fmt_values(out) if out is not None else None


def _sent(steps, node, grad_inputs):
    for st in reversed(steps):
        if st["node"] is node:
            st["sent"] = [None if g is None else g.numpy(force=True).copy() for g in grad_inputs]
            return


def _input_names(node, names, made):
    """What each input of node is called: a variable's name, or what computed it."""
    from engine.graph import AccumulateGrad, node_name
    res = []
    saved = getattr(node, "_saved", None)
    saved = saved if isinstance(saved, tuple) else ()
    for k, nxt in enumerate(node._next):
        if nxt is None:
            t = saved[k] if k < len(saved) else None
            res.append(names.get(id(t), f"input{k}") if t is not None else f"input{k}")
        elif isinstance(nxt, AccumulateGrad):
            res.append(names.get(id(nxt.variable), f"input{k}"))
        else:
            res.append(made.get(nxt, node_name(nxt)))
    return res


def _rule(node, inputs):
    """The node's local rule in the lesson's notation, from its registry entry's formula
    ("grad_w = grad * x"; cli/formulas.py renders it for this node and its inputs' names)."""
    from engine.graph import class_attr

    from ..formulas import node_rule
    if class_attr(node, "_forward_cls") is not None:
        return f"your backward ({class_attr(node, '_forward_cls').__name__}.backward)"
    op = class_attr(node, "op")
    if op is None or op.vjps is None or op.formula is None:
        return ""
    return node_rule(node, op, inputs)


def _finish(doc, json_out, extra, render):
    if json_out:
        render.dump_json(doc)
        return
    con = render.console()
    con.print(f"[bold]forward pass[/bold] ({render.plural(len(doc['forward']), 'node')} recorded, in order)")
    for f in doc["forward"]:
        val = f" = {f['value']}" if f["value"] is not None else ""
        con.print(f"  {render.esc(f['node'])}: {render.esc(f['computes'])}{render.esc(val)}")
    if extra:
        for line in extra:
            con.print(render.esc(line))
        return
    for c in doc["calls"]:
        con.print(f"[bold]backward() call {c['call']}[/bold]" + (" (in execution order)" if "steps" in c else ""))
        if "error" in c:
            con.print(f"  [red]RuntimeError[/red]: {render.esc(c['error'])}")
            if c.get("why"):
                con.print(f"  why: {render.esc(c['why'])}")
            continue
        for k, st in enumerate(c["steps"], 1):
            if st["node"] == "AccumulateGrad":
                con.print(f"  {k}. AccumulateGrad for {render.esc(st['leaf'])}: received {render.esc(st['received'])}; "
                          f"{render.esc(st['leaf'])}.grad {render.esc(str(st['grad_before']))} -> "
                          f"{render.esc(str(st['grad_after']))}")
                continue
            sent = ", ".join(f"{v} to {k2}" for k2, v in st["sent"].items())
            con.print(f"  {k}. {render.esc(st['node'])} ({render.esc(st['computes'])}) received "
                      f"{render.esc(st['received'])}, sent {render.esc(sent)}")
            if st["rule"]:
                con.print(f"     rule: {render.esc(st['rule'])}")
