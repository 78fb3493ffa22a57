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
    backend: o.Backend = "auto",
    seed: o.Seed = 0,
    json_out: o.Json = False,
    debug: o.Debug = False,
):
    """Show the forward and backward passes step by step.

    Example: autograd explain "sum(w*x)" --w 1,2 --x 3,4
    """
    from ..boundary import run
    run(ctx, debug, lambda values: _explain(target, values, wrt, times, no_retain, zero_grad, no_grad, detach, func,
                                            seed, json_out, backend))


MATRIX_ROWS = 8          # a 2-D value up to this many rows and columns prints as a matrix
MATRIX_COLS = 8


def fmt(arr):
    """A value on one line: a number, [1, 2], a matrix [[1, 2], [3, 4]] where it fits, else the
    short flat form with its shape."""
    import numpy as np

    from engine.dotgraph import fmt_number, fmt_values
    if isinstance(arr, _Shown):
        return str(arr)
    a = np.asarray(arr)
    if a.ndim == 2 and a.shape[0] <= MATRIX_ROWS and a.shape[1] <= MATRIX_COLS and a.size:
        return "[" + ", ".join("[" + ", ".join(fmt_number(v) for v in row) + "]" for row in a.tolist()) + "]"
    return fmt_values(a)


def matrix_lines(arr):
    """A 2-D value that fits as aligned rows (for the forward listing), else None."""
    import numpy as np

    from engine.dotgraph import fmt_number
    a = np.asarray(arr) if not isinstance(arr, (tuple, _Shown)) else None
    if a is None or a.ndim != 2 or a.shape[0] < 2 or a.shape[0] > MATRIX_ROWS or a.shape[1] > MATRIX_COLS:
        return None
    cells = [[fmt_number(v) for v in row] for row in a.tolist()]
    width = [max(len(r[j]) for r in cells) for j in range(a.shape[1])]
    rows = ["[" + ", ".join(c.rjust(w) for c, w in zip(r, width)) + "]" for r in cells]
    return ["[" + rows[0]] + [" " + r for r in rows[1:-1]] + [" " + rows[-1] + "]"]


KEPT = 10 ** 5        # a forward value of more elements is kept as the text shown for it only


class _Shown(str):
    """A forward value too big to copy (a 10**9-element expand is a free view: copying it took
    8 GB before the size limit could refuse it), kept as fmt shows it: its first numbers."""


def _shown(head, shape):
    from engine.dotgraph import MAX_VALUES, fmt_number
    items = ", ".join(fmt_number(v) for v in list(head)[:MAX_VALUES])
    return _Shown(f"[{items}, ...]" + ("" if len(shape) == 1 else f" (flat of {tuple(shape)})"))


def _kept(a):
    """An engine value to show later: a copy (the user's code may change it in place), or for a
    big one its first numbers (flat[:k] reads k elements of a view, not all of them)."""
    import numpy as np
    from engine.dotgraph import MAX_VALUES
    a = np.asarray(getattr(a, "_data", a))
    if a.size <= KEPT:
        return np.array(a, copy=True)
    return _shown(np.asarray(a.flat[:MAX_VALUES]).tolist(), a.shape)


def _fmt_value(v):
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt(x) for x in v) + ")"
    return fmt(v)


def _short_name(node):
    from engine.graph import node_name
    name = node_name(node)
    return name.rsplit("::", 1)[-1]          # PyTorch's torch::autograd::AccumulateGrad


def _is_leaf_node(node):
    return _short_name(node) == "AccumulateGrad"


def _walk(roots):
    """Every node reachable from roots (next_functions, on either backend), each once."""
    seen, order, stack = set(), [], list(roots)
    while stack:
        n = stack.pop()
        if n is None or n in seen:
            continue
        seen.add(n)
        order.append(n)
        stack.extend(m for m, _ in n.next_functions)
    return order


def _post_order(root, known):
    """The nodes behind root not in `known`, inputs first (the order a forward pass made them)."""
    out, stack, seen = [], [(root, False)], set()
    while stack:
        n, done = stack.pop()
        if done:
            out.append(n)
            continue
        if n is None or n in known or n in seen or _is_leaf_node(n):
            continue
        seen.add(n)
        stack.append((n, True))
        stack.extend((m, False) for m, _ in reversed(n.next_functions))
    return out


class _Forward:
    """What the forward pass made, in order: each node, what computed it (the expression's text,
    or the user's source line), its value, its inputs' shapes."""

    def __init__(self, target, span_of):
        self.target, self.span_of = target, span_of
        self.nodes, self.made, self.value, self.in_shapes = [], {}, {}, {}
        self.ref = {}          # how the backward steps name a node: its text, or `Name #k` for a file
        self.busy = False
        self._user_files = target.user_files if target.kind != "expression" else None

    def source_line(self, up=2):
        """`line N: code` of the innermost frame in the user's file, or None."""
        import linecache
        import sys
        f = sys._getframe(up)
        while f is not None:
            fn = f.f_code.co_filename
            if fn in self._user_files or _resolved(fn) in self._user_files:
                return f"line {f.f_lineno}: {_without_comment(linecache.getline(fn, f.f_lineno))}"
            f = f.f_back
        return None

    def add(self, node, text, value=None, in_shapes=None):
        if node in self.made:
            return
        self.nodes.append(node)
        self.made[node] = text
        if value is not None:
            self.value[node] = value
        if in_shapes is not None:
            self.in_shapes[node] = in_shapes

    ops = False                                                  # an engine.observe observer

    def on_node(self, node, args, attrs, out=None):
        import numpy as np
        if self.span_of is not None:
            span = self.span_of()
            text = self.target.text[span[0]:span[1]] if span else _short_name(node)
        else:
            text = self.source_line() or _apply_text(node)
        value = None
        if out is not None:
            value = tuple(_kept(o) for o in out) if isinstance(out, (tuple, list)) else _kept(out)
            if isinstance(value, tuple) and len(value) == 1:
                value = value[0]
        shapes = tuple(np.shape(getattr(a, "_data", a)) for a in args)
        self.add(node, text, value, shapes)

    def torch_call(self, args, kwargs, result):
        """After a torch function returned `result` (TorchFunctionMode): the nodes it made. A
        custom Function's node is met as an argument of the next call (apply is not a torch
        function): recorded then, with its value."""
        if self.busy:                    # our own attribute reads below go through the mode too
            return
        self.busy = True
        try:
            self._torch_call(args, kwargs, result)
        finally:
            self.busy = False

    def _torch_call(self, args, kwargs, result):
        line = self.source_line(3)
        for a in _tensors((args, kwargs)):
            fn = getattr(a, "grad_fn", None)
            if fn is not None and fn not in self.made:
                self._made_by(a, None)
        outs = {}
        for r in _tensors(result):
            if getattr(r, "grad_fn", None) is not None and r.grad_fn not in self.made:
                outs.setdefault(r.grad_fn, []).append(r)
        for fn, rs in outs.items():      # a node of several outputs (a Function returning two): all shown
            self._made_by(rs[0], line, rs if len(rs) > 1 else None)

    def _made_by(self, r, line, several=None):
        fn = r.grad_fn
        for n in _post_order(fn, self.made):
            value = self._torch_kept(r) if n is fn else None
            if n is fn and several is not None:
                value = tuple(self._torch_kept(o) for o in sorted(several, key=lambda o: o.output_nr))
            if value is None:
                saved = getattr(n, "_saved_result", None)
                value = self.target.to_numpy(saved) if saved is not None and hasattr(saved, "detach") else None
            self.add(n, line or _apply_text(n), value)

    def _torch_kept(self, t):
        """_kept for a PyTorch tensor: a copy, or for a big one its first numbers, read element by
        element (to_numpy would copy an expanded view whole)."""
        import numpy as np
        from engine.dotgraph import MAX_VALUES
        if t.numel() <= KEPT:
            return self.target.to_numpy(t)
        d = t.detach()
        head = [float(d[tuple(int(i) for i in np.unravel_index(k, tuple(d.shape)))]) for k in range(MAX_VALUES)]
        return _shown(head, tuple(d.shape))

    def complete(self, outs):
        """Nodes the forward record did not see (PyTorch's custom Functions, made outside any mode)."""
        for o in outs:
            fn = getattr(o, "grad_fn", None)
            if fn is not None and fn not in self.made:
                self._made_by(o, None)

    def label_shared(self):
        """Several nodes made by one call (cross_entropy: log_softmax, then nll_loss) share its
        text: say which step of it each one is."""
        by_text = {}
        for n in self.nodes:
            by_text.setdefault(self.made[n], []).append(n)
        for text, nodes in by_text.items():
            if len(nodes) > 1 and len({_short_name(n) for n in nodes}) == len(nodes):
                for k, n in enumerate(nodes, 1):
                    self.made[n] = f"{text}, step {k} of {len(nodes)}: {_op_word(n)}"
        for k, n in enumerate(self.nodes, 1):
            self.ref[n] = self.made[n] if self.span_of is not None else f"{_short_name(n)} #{k}"


def _tensors(obj):
    """The torch tensors in a call's arguments or result (lists, tuples, dicts)."""
    if isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)
    elif hasattr(type(obj), "grad_fn") and hasattr(type(obj), "requires_grad"):
        yield obj


def _apply_text(node):
    cls = _forward_cls(node)
    return f"{cls.__name__}.apply" if cls is not None else _short_name(node)


def _without_comment(line):
    """A source line's code, its trailing `# comment` dropped (a `#` inside a string stays)."""
    import io
    import tokenize
    text = line.strip()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                return text[:tok.start[1]].rstrip()
    except (tokenize.TokenError, IndentationError, SyntaxError):   # a line of a longer statement
        cut = text.find("  #")
        return text[:cut].rstrip() if cut > 0 else text
    return text


def _resolved(fn):
    import os
    return os.path.realpath(fn)


def _forward_cls(node):
    from engine.graph import class_attr
    return class_attr(node, "_forward_cls")


def registry_op(node):
    """The registry entry of a node: its class's on the engine; on PyTorch, the entry whose node
    names include the node's name (MulBackward0 -> mul), or None."""
    from engine.graph import class_attr
    op = class_attr(node, "op")
    if op is not None or type(node).__module__.startswith("engine"):
        return op
    global _BY_NODE_NAME
    if _BY_NODE_NAME is None:
        import engine  # noqa: F401 - fills the registry
        from engine.ops._core import REGISTRY
        _BY_NODE_NAME = {}
        for entry in REGISTRY.values():
            for nm in entry.node_names:
                _BY_NODE_NAME.setdefault(nm, entry)
    return _BY_NODE_NAME.get(_short_name(node))


_BY_NODE_NAME = None
_IMPLIED = {"MmBackward0": {"xd": 2, "yd": 2}, "MvBackward0": {"xd": 2, "yd": 1}, "BmmBackward0": {"xd": 3, "yd": 3},
            "TBackward0": {"dim0": 0, "dim1": 1}}


def _op_word(node):
    if _forward_cls(node) is not None:
        return _apply_text(node)
    op = registry_op(node)
    if op is not None and getattr(op, "name", None):
        return op.name
    name = _short_name(node)
    return name[:-len("Backward0")] if name.endswith("Backward0") else name


class _torch_mode:
    """A TorchFunctionMode that hands each torch call's result to the forward record."""

    def __init__(self, forward):
        from torch.overrides import TorchFunctionMode

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                forward.torch_call(args, kwargs, result)
                return result
        self.mode = Mode()
        self.forward = forward

    def __enter__(self):
        # a custom Function's apply is no torch function: wrapped for the time of the forward,
        # so its node is recorded where the user's line made it
        import torch
        self.orig = torch.autograd.Function.__dict__["apply"]
        orig, forward = self.orig.__func__, self.forward

        def apply(cls, *args, **kwargs):
            result = orig(cls, *args, **kwargs)
            forward.torch_call(args, kwargs, result)
            return result
        torch.autograd.Function.apply = classmethod(apply)
        return self.mode.__enter__()

    def __exit__(self, *exc):
        import torch
        torch.autograd.Function.apply = self.orig
        return self.mode.__exit__(*exc)


def _explain(target_text, values, wrt, times, no_retain, zero_grad, no_grad, detach, func, seed, json_out,
             backend="auto"):
    import contextlib

    import numpy as np

    from engine.errors import SECOND_BACKWARD

    from .. import render
    from ..errors import CliError
    from ..targets import build_inputs, load_target
    target = load_target(target_text, func, given=values, backend=backend)
    on_torch = target.backend == "torch"
    lib = target.lib
    tensors, chosen = build_inputs(target, values, wrt=wrt, seed=seed)
    if detach is not None and detach not in tensors:
        raise CliError(f"--detach names '{detach}', which the target does not use (it uses {', '.join(tensors)})")
    span_of = target.program.running_span if target.kind == "expression" else None
    forward = _Forward(target, span_of)
    names = {id(t): n for n, t in tensors.items()}
    if target.module_roots:         # an nn.Module's parameters by their qualified names (net.fc1.weight)
        from engine.autograd.locate import parameter_names
        for k, n in parameter_names(target.module_roots, lib.nn.Module).items():
            names.setdefault(k, n)
    args = dict(tensors)
    if detach is not None:
        args[detach] = tensors[detach].detach()
        names[id(args[detach])] = f"{detach} (detached)"
    with contextlib.ExitStack() as stack:
        if on_torch:
            stack.enter_context(_torch_mode(forward))
        else:
            from engine.observe import observe
            stack.enter_context(observe(forward))
        if no_grad:
            stack.enter_context(target.no_grad())
        outs, single = target.call(args)
    forward.complete(outs)
    forward.label_shared()
    out = outs[0]
    doc = {**target.json_fields(), "expression": target.text, "forward": [], "calls": []}
    header = target.header()
    for node in forward.nodes:
        v = forward.value.get(node)
        entry = {"node": _short_name(node), "computes": forward.made[node], "value": None if v is None else _fmt_value(v)}
        saved = _saved(node, target)
        if saved:
            entry["saved"] = saved
        doc["forward"].append(entry)
    if not single:
        raise CliError("explain follows one output; this target returns several (use 'autograd jacobian')")
    if out.grad_fn is None and not out.requires_grad:
        why = ("the forward pass ran under no_grad, so no graph was recorded" if no_grad else
               "the output does not depend on a variable that requires grad (check --wrt / --detach)")
        msg = "element 0 of tensors does not require grad and does not have a grad_fn"
        doc["error"] = msg
        doc["why"] = why
        return _finish(doc, json_out, [f"backward() fails: RuntimeError: {msg}", f"why: {why}"], render, forward,
                       header)
    seed_grad = None if out.numel() == 1 else lib.ones_like(out)
    if out.grad_fn is not None:
        root = out.grad_fn
    elif on_torch:
        root = None
    else:
        import engine
        root = engine.graph.accumulator(out)
    to_np = target.to_numpy

    def arrays(gs):
        return [None if g is None else to_np(g) for g in gs]
    told = {}
    for call in range(1, times + 1):
        if zero_grad and call > 1:
            for n in chosen:
                if tensors[n].grad is not None:
                    tensors[n].grad.zero_()
        steps, handles, parts = [], [], {}
        before = {n: (None if tensors[n].grad is None else to_np(tensors[n].grad)) for n in chosen}
        nodes = _walk([root]) if root is not None else []
        for node in nodes:          # names and rules before backward frees what they read (x/2's 2)
            if node not in told and not _is_leaf_node(node):
                inputs = _inputs(node, names, forward)
                told[node] = (inputs, _node_rule(node, inputs, on_torch))
        for node in nodes:
            handles.append(node.register_prehook(lambda gs, node=node: steps.append(
                {"node": node, "received": arrays(gs)})))
            if not _is_leaf_node(node):
                handles.append(node.register_hook(lambda gi, go, node=node: _sent(steps, node, arrays(gi), parts,
                                                                                  forward)))
        try:
            with target.autograd_errors():
                try:
                    if root is None:          # a torch leaf that is its own output: x.backward()
                        out.backward(seed_grad, retain_graph=not no_retain)
                        steps.append({"node": None, "received": [to_np(seed_grad if seed_grad is not None
                                                                          else lib.ones_like(out))]})
                    else:
                        out.backward(seed_grad, retain_graph=not no_retain)
                except RuntimeError as e:
                    # the lesson's error (a second backward() without retain_graph) is part of the
                    # story; anything else -- the user's backward raising, returning a wrong shape --
                    # is an error of the input, said as `grad` says it (exit 2)
                    if not str(e).startswith(SECOND_BACKWARD[:50]):
                        raise
                    first = str(e).splitlines()[0]
                    why = ("backward() frees what the nodes saved unless retain_graph=True; the first call did "
                           "that, so this one has nothing to work with")
                    doc["calls"].append({"call": call, "error": first, "why": why})
                    break
        finally:
            for h in handles:
                h.remove()
        call_doc = {"call": call, "steps": []}
        for st in steps:
            node = st["node"]
            received, sum_of = _received(node, st["received"], parts)
            if node is None or _is_leaf_node(node):
                var = out if node is None else node.variable
                nm = names.get(id(var), "leaf")
                b = before.get(nm)
                after = None if var.grad is None else to_np(var.grad)
                step = {"node": "AccumulateGrad", "leaf": nm, "received": received,
                        "grad_before": None if b is None else fmt(b),
                        "grad_after": None if after is None else fmt(after)}
                if sum_of:
                    step["sum_of"] = sum_of
                call_doc["steps"].append(step)
                continue
            inputs, rule = told[node]
            sent = {}
            nexts = list(node.next_functions)
            for i, (k, v) in enumerate(zip(inputs, st.get("sent", [None] * len(inputs)))):
                # the same node twice: its outputs (a Function of two outputs, split's pieces)
                nr = nexts[i][1] if i < len(nexts) and nexts[i][0] is not None else i
                key = k if k not in sent else f"{k} (its output {nr})"
                if key in sent:
                    key = f"{k} (input {i})"
                sent[key] = fmt(v) if v is not None else "None"
            step = {"node": _short_name(node), "computes": forward.ref.get(node, ""), "received": received}
            if sum_of:
                step["sum_of"] = sum_of
            step["rule"] = rule
            step["sent"] = sent
            call_doc["steps"].append(step)
        doc["calls"].append(call_doc)
    doc["gradients"] = {n: None if tensors[n].grad is None else render.to_jsonable(to_np(tensors[n].grad))
                        for n in chosen}
    return _finish(doc, json_out, None, render, forward, header)


def _saved(node, target):
    """{name: value} of what the node saved for backward, by PyTorch's names (_saved_self,
    _saved_other, _saved_result ...): read after the forward, before a backward frees it."""
    if _forward_cls(node) is not None:
        return {}
    if target.backend == "torch":
        from ..torch_backend import saved_tensors
        try:
            return {k: fmt(target.to_numpy(v)) for k, v in saved_tensors(node)}
        except RuntimeError:
            return {}
    from engine.dotgraph import _saved_of
    return {k: fmt(v) for k, v in _saved_of(node)}


def _fit_to(g, shape):
    """What a rule returned, as the backward loop hands it on: reduced or expanded to the input's
    shape (a lazy uniform gradient of sum is every element's 1)."""
    import numpy as np

    from engine._xp import NUMPY
    from engine.graph import _fit
    if shape is None or np.shape(g) == tuple(shape):
        return g
    try:
        return np.asarray(_fit(NUMPY, g, tuple(shape), np.asarray(g).dtype, 0))
    except Exception:  # noqa: BLE001 - show what was sent as is
        return g


def _sent(steps, node, grad_inputs, parts, forward):
    """The node's hook: what it sent to each input, fitted to that input's shape; and each
    contribution noted at the node it goes to, so a sum of several is shown as a sum."""
    shapes = forward.in_shapes.get(node, ())
    edges = node.next_functions
    fitted = []
    for k, g in enumerate(grad_inputs):
        if g is not None and k < len(shapes):
            g = _fit_to(g, shapes[k])
        fitted.append(g)
        if g is not None and k < len(edges) and edges[k][0] is not None:
            parts.setdefault((edges[k][0], edges[k][1]), []).append(g)
    for st in reversed(steps):
        if st["node"] is node:
            st["sent"] = fitted
            return


def _received(node, received, parts):
    """(text of what a node received, [its parts] when several paths sent to it)."""
    import numpy as np
    texts = []
    many = len(received) > 1
    sum_of = []
    for nr, g in enumerate(received):
        got = parts.pop((node, nr), []) if node is not None else []
        if g is None:
            texts.append(f"output {nr}: nothing (not used; zeros)" if many else "None")
            continue
        t = fmt(g)
        if len(got) > 1 and all(np.shape(p) == np.shape(g) for p in got):
            sum_of.append([fmt(p) for p in got])
            t = " + ".join(fmt(p) for p in got) + " = " + t
        texts.append(f"output {nr}: {t}" if many else t)
    return "; ".join(texts), sum_of


def _inputs(node, names, forward):
    """What each input of node is called: a variable's name, or what computed it (None for an
    input no gradient goes to: a constant)."""
    res = []
    saved = getattr(node, "_saved", None)
    saved = saved if isinstance(saved, tuple) else ()
    for k, (nxt, _) in enumerate(node.next_functions):
        if nxt is None:
            t = saved[k] if k < len(saved) else None
            if id(t) in names:
                res.append(names[id(t)])
            elif isinstance(t, (int, float)) and not isinstance(t, bool):
                res.append(fmt(t))            # x/2: the constant 2
            else:
                res.append(f"input{k}")
        elif _is_leaf_node(nxt):
            res.append(names.get(id(nxt.variable), f"input{k}"))
        else:
            res.append(forward.ref.get(nxt, _short_name(nxt)))
    return res


def _node_rule(node, inputs, on_torch):
    if not on_torch:
        return _rule(node, inputs)
    return _torch_rule(node, inputs)


def _torch_rule(node, inputs):
    """The rule of a PyTorch node, from the registry entry of the same op (by PyTorch's node
    name: MulBackward0 -> mul), or the user's backward for a custom Function. The formula reads
    the node's attributes from PyTorch's _saved_<name> (pow's exponent, a sum's dim)."""
    cls = _forward_cls(node)
    if cls is not None:
        return f"your backward ({cls.__name__}.backward)"
    op = registry_op(node)
    if op is None:
        return ""
    attrs = {}
    for a in dir(node):
        if a.startswith("_saved_") and not a.endswith(("_sym_sizes", "_sym_strides")):
            try:
                v = getattr(node, a)
            except RuntimeError:                 # freed by a backward without retain_graph
                continue
            if isinstance(v, (bool, int, float, str, tuple)) or v is None:
                attrs[a[len("_saved_"):]] = v
    # what PyTorch's node implies and does not save: mm's operands are matrices, t() swaps 0 and 1
    attrs = {**_IMPLIED.get(_short_name(node), {}), **attrs}
    view = type("TorchNode", (), {"op": op})()
    view._next = tuple(n for n, _ in node.next_functions)
    view._attrs = attrs
    view._saved = ()
    try:
        return _rule(view, inputs)
    except Exception:  # noqa: BLE001 - a rule is a courtesy: PyTorch's node may differ from the entry
        return ""


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


def _finish(doc, json_out, extra, render, forward, header):
    if json_out:
        render.dump_json(doc)
        return
    con = render.console()
    if header:
        con.print(render.esc(header))
    con.print(f"[bold]forward pass[/bold] ({render.plural(len(doc['forward']), 'node')} recorded, in order)")
    for k, (f, node) in enumerate(zip(doc["forward"], forward.nodes), 1):
        rows = matrix_lines(forward.value[node]) if node in forward.value else None
        if rows is not None:
            con.print(f"  {k}. {render.esc(f['node'])}: {render.esc(f['computes'])} =")
            for r in rows:
                con.print(f"       {render.esc(r)}")
            continue
        val = f" = {f['value']}" if f["value"] is not None else ""
        con.print(f"  {k}. {render.esc(f['node'])}: {render.esc(f['computes'])}{render.esc(val)}")
        if f.get("saved"):
            con.print("       saved for backward: " + render.esc(", ".join(f"{n} = {v}" for n, v in f["saved"].items())))
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
            got = st["received"] + (" (the sum of what each path sent: gradients add up)" if st.get("sum_of") else "")
            if st["node"] == "AccumulateGrad":
                con.print(f"  {k}. AccumulateGrad for {render.esc(st['leaf'])}: received {render.esc(got)}; "
                          f"{render.esc(st['leaf'])}.grad {render.esc(str(st['grad_before']))} -> "
                          f"{render.esc(str(st['grad_after']))}")
                continue
            label = st["computes"] if st["computes"].startswith(st["node"] + " #") else \
                f"{st['node']} ({st['computes']})"
            sent = ", ".join(f"{v} to {k2}" if v != "None" else f"nothing to {k2} (it needs no gradient)"
                             for k2, v in st["sent"].items())
            con.print(f"  {k}. {render.esc(label)} received "
                      f"{render.esc(got)}, sent {render.esc(sent)}")
            if st["rule"]:
                con.print(f"     rule: {render.esc(st['rule'])}")
