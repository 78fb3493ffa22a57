"""What the gradient checker needs from a target: the backend interface.

The checker (engine/autograd/checker.py) is written once against this interface; the engine
implements it here, and the CLI's PyTorch backend (cli/torch_backend.TorchBackend) implements it
on PyTorch's own autograd -- no engine graph, no engine Function wrapped around the target.

A backend is made for one target function `func` (engine tensors in, engine tensor(s) out, as
the checker's callers give it) and provides:

- `evaluate(inputs)`: func's outputs as fresh engine tensors, without a graph (`func` itself is
  the plain evaluation: calling it under no_grad is the same thing);
- `differences(inputs, idx, eps, cols, tick, overflow)`: central differences of func for the
  given flat elements of input idx (None: the checker's own loop over `evaluate`);
- `forward(inputs, diff)`: a `Run` -- func's outputs with a graph, from which the checker takes
  vector-Jacobian products (first order; the second order is a first-order check of
  `second_order`'s function, whose forward runs with create_graph on the backend's autograd);
- `backward_grads(inputs, diff, cotangents)`: the .grad an ordinary backward() leaves on fresh
  leaves, the path users run.

The record of every node application (for --locate) is the other half of a backend: the
engine's `Observer` hook (engine/observe.py, engine/autograd/locate.py) and, on PyTorch,
`Function.apply` recorded while the target runs (cli/torch_backend.locate).

A Run has `outputs` (engine tensors: values, shapes, dtypes), `live` (the positions of the
outputs with a graph to differentiate), `vjp(cotangents, batched=False)` -> per differentiated
input a float array or None, `jacobian()` -> [output][input] (out_n, in_n) arrays,
`custom_functions()` -> the user's Function nodes on the graph, and `not_batch_aware()` -> why a
batch of cotangents cannot run, or "".
"""
import numpy as np

from ..grad_mode import enable_grad
from ..graph import node_name, run_backward, walk
from ..tensor import Tensor


def backend_of(func):
    """The backend `func` runs on: its own (`func.backend`, the CLI's PyTorch one) or the engine."""
    own = getattr(func, "backend", None)
    return own if own is not None else EngineBackend(func)


class EngineBackend:
    """The engine's autograd as a checker backend."""

    name = "engine"

    def __init__(self, func):
        self.func = func

    def forward(self, inputs, diff):
        return EngineRun(self.func, inputs, diff)

    def backward_grads(self, inputs, diff, cotangents):
        from .. import autograd
        leaves = list(inputs)
        for i in diff:
            leaves[i] = inputs[i].detach().requires_grad_(True)
        with enable_grad():
            outs = self.func(*leaves)
        outs = outs if isinstance(outs, tuple) else (outs,)
        live = [(o, v) for o, v in zip(outs, cotangents) if o.grad_fn is not None or o._rg]
        if len(live) == 1 and live[0][0]._data.size == 1 and np.all(live[0][1] == 1):
            live[0][0].backward()                        # exactly y.backward()
        elif live:
            autograd.backward([o for o, _ in live], [Tensor._make(v.astype(o._data.dtype)) for o, v in live])
        return [np.zeros(inputs[i]._data.shape) if leaves[i]._grad is None
                else np.asarray(leaves[i]._grad._data, dtype=np.float64) for i in diff]


class EngineRun:
    """func run once with grad mode on: its engine graph."""

    def __init__(self, func, inputs, diff):
        with enable_grad():
            outs = func(*inputs)
        self.outputs = outs if isinstance(outs, tuple) else (outs,)
        self._ins = [inputs[i] for i in diff]
        self.live = [k for k, o in enumerate(self.outputs) if o.grad_fn is not None]

    def vjp(self, cotangents, batched=False):
        return run_backward([self.outputs[k] for k in self.live], cotangents, retain_graph=True, create_graph=False,
                            inputs=self._ins, accumulate=False, allow_unused=True, nb=1 if batched else 0)

    def jacobian(self):
        from . import functional
        table = []
        for o in self.outputs:
            if o.grad_fn is None and not o.requires_grad:
                table.append([np.zeros((o._data.size, x._data.size)) for x in self._ins])
                continue
            rows = functional.jacobian_rows(o, self._ins, False, True, warn=False)
            table.append([np.zeros((o._data.size, x._data.size)) if r is None
                          else np.asarray(r, dtype=np.float64).reshape(o._data.size, x._data.size)
                          for r, x in zip(rows, self._ins)])
        return table

    def custom_functions(self):
        """Names of the user-defined Function nodes on the graph, in traversal order. Built-in
        ops are checked against finite differences by the engine's own tests, so when a check
        fails these are the first suspects."""
        from .function import BackwardCFunction
        names = []
        for n in walk(o.grad_fn for o in self.outputs):
            if isinstance(n, BackwardCFunction) and node_name(n) not in names:
                names.append(node_name(n))
        return names

    def not_batch_aware(self):
        from .functional import first_not_batch_aware
        bad = first_not_batch_aware([self.outputs[k] for k in self.live])
        if bad is None:
            return ""
        return f"{node_name(bad)} is a custom Function whose backward is not marked batch_aware"
