"""The torch backend: a .py target that imports torch runs on real PyTorch.

Inputs are torch tensors (float64 unless --dtype says float32); the target's own code, its
custom Functions and PyTorch's autograd run untouched. What the commands share with the engine
backend is not the tensors but the report:

- grad and graph use the torch tensors directly: the value, `.grad` after PyTorch's own
  `backward()`, its reprs, and PyTorch's `grad_fn` graph (names from PyTorch, saved tensors from
  its `_saved_*` attributes), drawn by engine.dotgraph through `TorchView`.
- check and jacobian use the engine's checker on `engine_function`: an engine function whose
  forward runs the target in PyTorch and whose backward is PyTorch's autograd
  (`torch.autograd.grad` with the engine's cotangent). So the analytical side is PyTorch's
  backward -- the user's custom backward included -- and the numerical side is central
  differences of the PyTorch forward; the checker, tables, JSON and exit codes are the same.

PyTorch is imported here only, and only when a target runs on it.
"""
import contextlib

import numpy as np


def torch():
    import torch as _torch
    return _torch


def label():
    return f"PyTorch {torch().__version__}"


@contextlib.contextmanager
def autograd_errors():
    """Around PyTorch's autograd running a target's graph (backward(), autograd.grad): what it
    raises is about the user's code -- their backward's result (a wrong shape, a list, too few
    gradients), a graph their f already freed with its own y.backward() -- so it is a usage error
    (exit 2) with PyTorch's own first line, as the engine's errors for the same things are. An
    error raised inside the user's backward itself keeps their traceback."""
    try:
        yield
    except (RuntimeError, TypeError) as e:
        from .errors import CliError
        from .targets import user_traceback
        if user_traceback(e) is not None or isinstance(e, CliError):
            raise
        raise CliError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None


def to_numpy(t):
    """A torch tensor's values as a numpy array (a copy). bfloat16, which numpy lacks, comes as
    float32, which holds every bfloat16 value exactly."""
    t = t.detach().cpu()
    if t.dtype == torch().bfloat16:
        t = t.to(torch().float32)
    return t.numpy().copy()


def dtype_names(outs):
    """The dtypes (names: "float64", "bfloat16", ...) of `outs` and of every tensor their graph's
    nodes produced (PyTorch records each node's output metadata)."""
    names = {str(o.dtype).replace("torch.", "") for o in outs}
    for n in TorchView.walk([o.grad_fn for o in outs]):
        for m in getattr(n, "_input_metadata", ()) or ():
            names.add(str(m.dtype).replace("torch.", ""))
    return names


def to_engine(t):
    """A torch tensor as an engine leaf with the same values, dtype and requires_grad."""
    import engine
    e = engine.tensor(to_numpy(t))
    return e.requires_grad_(True) if t.requires_grad and e.is_floating_point() else e


def _to_torch(x):
    return torch().from_numpy(np.array(x.numpy(force=True), copy=True))


class _Bridge:
    """engine_function's engine side, made once per process (engine.autograd.Function subclass)."""
    cls = None

    @classmethod
    def get(cls):
        if cls.cls is None:
            import engine
            from engine.autograd.function import once_differentiable

            class PyTorch(engine.autograd.Function):
                """Forward: the target in PyTorch. Backward: PyTorch's autograd."""

                @staticmethod
                def forward(ctx, fn, *xs):
                    t = torch()
                    ins = [_to_torch(x).requires_grad_(need) if x.is_floating_point() else _to_torch(x)
                           for x, need in zip(xs, ctx.needs_input_grad[1:])]
                    with t.enable_grad():
                        outs = fn(*ins)
                    single = not isinstance(outs, (tuple, list))
                    outs = (outs,) if single else tuple(outs)
                    ctx.torch_graph = (ins, outs)
                    ctx.inner_functions = custom_functions(outs)   # named by the checker's report
                    res = tuple(engine.tensor(to_numpy(o)) for o in outs)
                    return res[0] if single else res

                @staticmethod
                @once_differentiable
                def backward(ctx, *gs):
                    t = torch()
                    ins, outs = ctx.torch_graph
                    pairs = [(o, _to_torch(g).to(o.dtype)) for o, g in zip(outs, gs) if o.requires_grad and g is not None]
                    need = [i for i in ins if i.requires_grad]
                    grads = iter(())
                    if pairs and need:
                        with autograd_errors():
                            grads = iter(t.autograd.grad([o for o, _ in pairs], need, [g for _, g in pairs],
                                                         retain_graph=True, allow_unused=True))
                    res = [None]
                    for i in ins:
                        g = next(grads) if i.requires_grad else None
                        res.append(None if g is None else engine.tensor(to_numpy(g)))
                    return tuple(res)

            cls.cls = PyTorch
        return cls.cls


def engine_function(fn):
    """`fn` (torch tensors -> torch tensor(s)) as a function of engine tensors that the engine's
    checker and Jacobian can use: see the module docstring. Without grad (the checker's finite
    differences) it runs PyTorch under no_grad and records nothing."""
    import engine

    def f(*xs):
        if engine.is_grad_enabled() and any(isinstance(x, engine.Tensor) and x.requires_grad for x in xs):
            return _Bridge.get().apply(fn, *xs)
        t = torch()
        with t.no_grad():
            outs = fn(*[_to_torch(x) for x in xs])
        if isinstance(outs, (tuple, list)):
            return tuple(engine.tensor(to_numpy(o)) for o in outs)
        return engine.tensor(to_numpy(outs))
    return f


def custom_functions(outs):
    """Names of the user's torch.autograd.Function nodes on the PyTorch graph of `outs`."""
    from torch.autograd.function import BackwardCFunction
    names = []
    for n in TorchView.walk([o.grad_fn for o in outs if hasattr(o, "grad_fn")]):
        if isinstance(n, BackwardCFunction) and n.name() not in names:
            names.append(n.name())
    return names


def saved_tensors(node):
    """[(name, tensor)] of a PyTorch node's saved tensors (`_saved_self` -> "self")."""
    from torch.autograd.function import BackwardCFunction
    if isinstance(node, BackwardCFunction):       # a custom Function: ctx.save_for_backward(...)
        return [(f"saved{k}", v) for k, v in enumerate(node.saved_tensors) if v is not None]
    out = []
    for attr in dir(node):
        if attr.startswith("_saved_"):
            v = getattr(node, attr)     # RuntimeError once freed by a backward without retain_graph
            if isinstance(v, torch().Tensor):
                out.append((attr[len("_saved_"):], v))
    return out


def frees_saved_values(out):
    """Whether PyTorch's backward() on `out` frees saved tensors (so a second call would fail)."""
    for n in TorchView.walk([out.grad_fn]):
        try:
            if saved_tensors(n):
                return True
        except RuntimeError:            # already freed: it had saved something
            return True
    return False


class TorchView:
    """engine.dotgraph's view of a PyTorch graph (see engine.dotgraph.EngineView)."""

    tensor_type = None      # set on first use (PyTorch imported only then)

    @staticmethod
    def root(o):
        return o.grad_fn

    @staticmethod
    def walk(roots):
        """Every node reachable from roots, each once, in a fixed iterative order."""
        seen = set()
        stack = [r for r in reversed(list(roots)) if r is not None]
        order = []
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            order.append(n)
            for nxt, _ in reversed(n.next_functions):
                if nxt is not None and nxt not in seen:
                    stack.append(nxt)
        return order

    @staticmethod
    def data(t):
        return to_numpy(t)

    @staticmethod
    def grad(t):
        if not (t.is_leaf or t.retains_grad) or t.grad is None:
            return None
        return to_numpy(t.grad)

    @staticmethod
    def variable(node):
        return getattr(node, "variable", None) if node.name().endswith("AccumulateGrad") else None

    @staticmethod
    def forward_name(node):
        name = node.name()
        return name[:-len("Backward0")].lower() if name.endswith("Backward0") else ""

    @staticmethod
    def saved(node):
        return [(name, TorchView.data(v)) for name, v in saved_tensors(node)]

    @staticmethod
    def children(node):
        return [n for n, _ in node.next_functions]


def view():
    TorchView.tensor_type = torch().Tensor
    return TorchView


def expression_library():
    """What an expression calls when it runs on PyTorch (--compare torch): the same language
    (names are checked against the engine's registry first), PyTorch's functions at run time."""
    from expressions.compiler import EngineLibrary

    class TorchLibrary(EngineLibrary):
        def __init__(self):
            t = torch()
            self.Tensor, self.tensor, self._torch = t.Tensor, t.tensor, t

        def function(self, name, method):
            t = self._torch
            found = getattr(t.Tensor, name, None) if method else (
                getattr(t, name, None) or getattr(t.nn.functional, name, None))
            if found is None:
                raise NoCounterpart(f"{'.' if method else ''}{name}")
            return found

        def compare(self, op):
            return getattr(self._torch, op)
    return TorchLibrary()


class NoCounterpart(LookupError):
    """An expression function the engine has and PyTorch does not."""


def node_names(roots, view):
    """The names of the nodes on a graph, in walk order (AccumulateGrad without namespace)."""
    return [n.name().replace("torch::autograd::", "") for n in view.walk(roots)]
