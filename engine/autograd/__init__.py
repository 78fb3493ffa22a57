"""engine.autograd: backward, grad, Function, grad modes, anomaly detection, and (lazily)
functional and gradcheck.

`functional` and the checker (gradcheck) are imported on first use so `import engine` stays light.
"""
import numpy as np

from .. import errors
from ..grad_mode import (detect_anomaly, enable_grad, is_anomaly_enabled, is_grad_enabled,  # noqa: F401
                         no_grad, set_detect_anomaly, set_grad_enabled)
from ..graph import run_backward
from ..tensor import Tensor
from .function import Function, once_differentiable  # noqa: F401


def Variable(data, requires_grad=False, volatile=False):  # noqa: N802 - PyTorch's legacy name
    """The legacy `torch.autograd.Variable(t, requires_grad=...)`: since PyTorch 0.4 a Variable
    is a Tensor; this returns one sharing t's data."""
    if not isinstance(data, Tensor):
        raise TypeError(f"Variable data has to be a tensor, but got {type(data).__name__}")
    return data.detach().requires_grad_(requires_grad)


def _seq(x):
    if x is None:
        return None
    if isinstance(x, Tensor):
        return [x]
    return list(x)


def _make_grads(outputs, grads, create_graph):
    grads = _seq(grads) or [None] * len(outputs)
    if len(grads) != len(outputs):
        raise errors.EngineRuntimeError(
            f"got {len(grads)} tensors and {len(outputs)} gradients")
    out = []
    for i, (o, g) in enumerate(zip(outputs, grads)):
        if g is None:
            if o._data.size != 1:
                raise errors.EngineRuntimeError(errors.IMPLICIT_SCALAR)
            if o._data.dtype.kind != "f":
                raise errors.EngineRuntimeError("grad can be implicitly created only for real scalar outputs")
            g = np.ones(o._data.shape, o._data.dtype)
            out.append(Tensor._make(g) if create_graph else g)
            continue
        gt = g if isinstance(g, Tensor) else Tensor._make(np.asarray(g, dtype=o._data.dtype))
        if gt._data.shape != o._data.shape:
            raise errors.ShapeError(
                f"Mismatch in shape: grad_output[{i}] has a shape of torch.Size({list(gt._data.shape)}) and "
                f"output[{i}] has a shape of torch.Size({list(o._data.shape)}).")
        out.append(gt if create_graph else gt._data)
    return out


def _check_outputs(outputs):
    for i, o in enumerate(outputs):
        if o.grad_fn is None and not o._rg:
            raise errors.EngineRuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn")


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
             inputs=None):
    """Accumulate d(tensors)/d(leaves) into the leaves' .grad (PyTorch's torch.autograd.backward)."""
    outputs = _seq(tensors)
    if grad_tensors is None:
        grad_tensors = grad_variables
    if retain_graph is None:
        retain_graph = create_graph
    _check_outputs(outputs)
    grads = _make_grads(outputs, grad_tensors, create_graph)
    ins = _seq(inputs)
    if ins is not None and len(ins) == 0:
        raise errors.EngineRuntimeError("'inputs' argument to backward() cannot be empty.")
    run_backward(outputs, grads, retain_graph=retain_graph, create_graph=create_graph,
                 inputs=ins, accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """The gradients of `outputs` with respect to `inputs`, returned (no .grad is touched)."""
    outs = _seq(outputs)
    ins = _seq(inputs)
    if allow_unused is None:
        allow_unused = materialize_grads
    if retain_graph is None:
        retain_graph = create_graph
    _check_outputs(outs)
    for t in ins:
        if not t._rg:
            raise errors.EngineRuntimeError("One of the differentiated Tensors does not require grad")
    nb = 0
    if is_grads_batched:
        grads = []
        for o, g in zip(outs, _seq(grad_outputs)):
            gt = g._data if isinstance(g, Tensor) else np.asarray(g)
            grads.append(Tensor._make(gt) if create_graph else gt)
        nb = 1
    else:
        grads = _make_grads(outs, grad_outputs, create_graph)
    res = run_backward(outs, grads, retain_graph=retain_graph, create_graph=create_graph,
                       inputs=ins, accumulate=False, allow_unused=allow_unused, nb=nb)
    result = []
    for t, g in zip(ins, res):
        if g is None:
            if materialize_grads:
                g = Tensor._make(np.zeros(t._data.shape, t._data.dtype))
            result.append(g)
        else:
            result.append(g if isinstance(g, Tensor) else Tensor._make(np.asarray(g)))
    return tuple(result)


def __getattr__(name):
    """Loaded on first use, so `import engine` stays light: functional, the checker, and
    autograd.graph (saved-tensor and multi-grad hooks), forward_ad, locate and profiler."""
    import importlib
    if name in ("functional", "graph", "forward_ad", "locate", "profiler"):
        return importlib.import_module(f"{__name__}.{name}")
    if name in ("grad_mode", "anomaly_mode"):          # torch.autograd.grad_mode.no_grad, ...
        return importlib.import_module("engine.grad_mode")
    if name in ("gradcheck", "gradgradcheck", "GradcheckError", "GradcheckReport", "check_gradients"):
        return getattr(importlib.import_module(__name__ + ".checker"), name)
    raise AttributeError(f"module 'engine.autograd' has no attribute {name!r}")
