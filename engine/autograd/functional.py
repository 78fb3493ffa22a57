"""engine.autograd.functional: jacobian, hessian, vjp, jvp, hvp with PyTorch's conventions.

`jacobian(..., vectorize=True)` pushes every row of the Jacobian through ONE backward pass: the
cotangent is the identity with a leading batch dimension, and every built-in rule passes that
dimension through (rules count dims from the end). Graphs holding a user Function that is not
marked `batch_aware` fall back to one backward per row, with a warning, never a wrong answer.
"""
from .. import errors as _errors
import warnings

import numpy as np

from .._lazy import Diagonal
from .. import ops
from ..grad_mode import enable_grad
from ..graph import run_backward, walk
from ..graph import node_name
from ..tensor import Tensor
from . import grad as _grad


def as_tuple(x):
    if isinstance(x, tuple):
        return True, x
    if isinstance(x, list):
        return True, tuple(x)
    return False, (x,)


def _prepare(inputs, create_graph):
    out = []
    for t in inputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"The inputs given to jacobian must be either a Tensor or a tuple of Tensors but "
                            f"the value at index {len(out)} has type {type(t).__name__}.")
        if create_graph and t.requires_grad:
            out.append(t.view_as(t))
        else:
            out.append(t.detach().requires_grad_(True))
    return tuple(out)


def first_not_batch_aware(outputs):
    """The first node on the graphs of `outputs` whose backward cannot take batched cotangents."""
    return next((n for n in walk(o.grad_fn for o in outputs) if not n.batch_aware), None)


def jacobian_rows(out, inputs, create_graph, vectorize, warn=True):
    """d out / d inputs as arrays (or Tensors under create_graph) of shape out.shape + in.shape."""
    n = out._data.size
    if out.grad_fn is None and not out.requires_grad:
        return [None] * len(inputs)
    if vectorize:
        bad = first_not_batch_aware([out])
        if bad is not None:
            if warn:
                warnings.warn(f"jacobian(vectorize=True): {node_name(bad)} is a custom Function whose backward is "
                              "not marked batch_aware; computing the Jacobian one row at a time instead.",
                              UserWarning, stacklevel=4)
            vectorize = False
    if vectorize:
        if create_graph:
            seed = Tensor._make(np.eye(n, dtype=out._data.dtype).reshape((n,) + out._data.shape))
        else:       # the identity, kept diagonal through elementwise rules (engine/_lazy.py)
            seed = Diagonal(np.ones(out._data.shape, out._data.dtype))
        grads = run_backward([out], [seed], retain_graph=True, create_graph=create_graph,
                             inputs=list(inputs), accumulate=False, allow_unused=True, nb=1)
        res = []
        for g, t in zip(grads, inputs):
            if g is None:
                res.append(None)
                continue
            shape = out._data.shape + t._data.shape
            res.append(g.reshape(shape) if create_graph else np.reshape(g, shape))
        return res
    per_input = [[] for _ in inputs]
    flat_eye = np.eye(n, dtype=out._data.dtype)
    for i in range(n):
        seed = flat_eye[i].reshape(out._data.shape)
        seed = Tensor._make(seed) if create_graph else seed
        grads = run_backward([out], [seed], retain_graph=True, create_graph=create_graph,
                             inputs=list(inputs), accumulate=False, allow_unused=True)
        for k, g in enumerate(grads):
            per_input[k].append(g)
    res = []
    for k, t in enumerate(inputs):
        rows = per_input[k]
        if all(r is None for r in rows):
            res.append(None)
            continue
        shape = out._data.shape + t._data.shape
        if create_graph:
            rows = [r if r is not None else Tensor._make(np.zeros(t._data.shape)) for r in rows]
            res.append(ops.stack(rows).reshape(shape) if rows else Tensor._make(np.zeros(shape)))
        else:
            rows = [np.zeros(t._data.shape) if r is None else np.asarray(r) for r in rows]
            res.append(np.stack(rows).reshape(shape) if rows else np.zeros(shape))
    return res


def _strategy(name, value):
    if value not in ("forward-mode", "reverse-mode"):
        raise ValueError(f'Expected {name} to be either "forward-mode" or "reverse-mode".')
    if value == "forward-mode":
        raise NotImplementedError(f'{name}="forward-mode": the engine has no forward-mode AD; use '
                                  '"reverse-mode" (the default), which gives the same Jacobian')


def _fill_in_zeros(grads, refs, strict, create_graph, stage):
    """None gradients as zeros, or PyTorch's strict-mode error for the stage that found them."""
    res = []
    for i, (g, ref) in enumerate(zip(grads, refs)):
        if g is None:
            if strict:
                raise _errors.EngineRuntimeError({
                    "back": f"The output of the user-provided function is independent of input {i}. This is "
                            "not allowed in strict mode.",
                    "back_trick": f"The gradient with respect to the input is independent of entry {i} in the "
                                  "grad_outputs when using the double backward trick to compute forward mode "
                                  "gradients. This is not allowed in strict mode.",
                    "double_back": f"The jacobian of the user-provided function is independent of input {i}. "
                                   "This is not allowed in strict mode.",
                }[stage])
            g = Tensor._make(np.zeros_like(ref._data))
        elif strict and create_graph and not g.requires_grad:
            what = "hessian" if "double" in stage else "jacobian"
            raise _errors.EngineRuntimeError(f"The {what} of the user-provided function is independent of input {i}. This "
                               "is not allowed in strict mode when create_graph=True.")
        res.append(g)
    return tuple(res)


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=None, strategy="reverse-mode", *,
             _warn_rows=True):
    """The Jacobian of `func` at `inputs`: for each output and input, shape output.shape + input.shape.

    vectorize: None (the default) pushes all rows through one backward pass, except with
    strict=True, which PyTorch computes row by row (its default); True with strict=True is
    refused, as in PyTorch. _warn_rows=False: fall back to rows silently (torch.func's jacrev,
    where PyTorch would batch the Function through its vmap rule)."""
    _strategy("strategy", strategy)
    if vectorize is None:
        vectorize = not strict
    if strict and vectorize:
        raise _errors.EngineRuntimeError("torch.autograd.functional.jacobian: `strict=True` and `vectorized=True` are not "
                           "supported together. Please either set `strict=False` or `vectorize=False`.")
    in_tuple, inputs = as_tuple(inputs)
    with enable_grad():
        inputs = _prepare(inputs, create_graph)
        outputs = func(*inputs)
    out_tuple, outputs = as_tuple(outputs)
    table = []
    for k, o in enumerate(outputs):
        rows = jacobian_rows(o, inputs, create_graph, vectorize, warn=(k == 0 and _warn_rows))
        entry = []
        for j, (r, t) in enumerate(zip(rows, inputs)):
            if r is None:
                if strict:
                    raise _errors.EngineRuntimeError(f"Output {k} of the user-provided function is independent of input {j}. "
                                       "This is not allowed in strict mode.")
                entry.append(Tensor._make(np.zeros(o._data.shape + t._data.shape, t._data.dtype)))
            else:
                entry.append(r if isinstance(r, Tensor) else Tensor._make(np.asarray(r)))
        table.append(tuple(entry) if in_tuple else entry[0])
    return tuple(table) if out_tuple else table[0]


def hessian(func, inputs, create_graph=False, strict=False, vectorize=True, outer_jacobian_strategy="reverse-mode"):
    """The Hessian of scalar-valued `func` at `inputs` (tuples of tuples for several inputs)."""
    _strategy("outer_jacobian_strategy", outer_jacobian_strategy)
    in_tuple, ins = as_tuple(inputs)

    def jac_func(*xs):
        out = func(*xs)
        if not isinstance(out, Tensor) or out._data.size != 1:
            raise _errors.EngineRuntimeError("The function given to hessian should return a single Tensor with a single element")
        gs = _grad(out, xs, create_graph=True, allow_unused=True)
        return tuple(g if g is not None else x * 0.0 for g, x in zip(gs, xs))

    res = jacobian(jac_func, ins, create_graph=create_graph, strict=strict, vectorize=vectorize)
    if not in_tuple:
        return res[0][0] if isinstance(res, tuple) and isinstance(res[0], tuple) else res[0]
    return res


def _finish(t, create_graph):
    if t is None:
        return None
    return t if create_graph else t.detach()


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J)."""
    in_tuple, ins = as_tuple(inputs)
    with enable_grad():
        ins = _prepare(ins, create_graph)
        outs = func(*ins)
        out_tuple, outs_t = as_tuple(outs)
        if v is None:
            vs = None
        else:
            _, vs = as_tuple(v)
        grads = _grad(list(outs_t), list(ins), grad_outputs=None if vs is None else list(vs),
                      create_graph=create_graph, allow_unused=True)
    grads = tuple(_finish(g, create_graph)
                  for g in _fill_in_zeros(grads, ins, strict, create_graph, "back"))
    outs_r = tuple(_finish(o, create_graph) for o in outs_t)
    return (outs_r if out_tuple else outs_r[0]), (grads if in_tuple else grads[0])


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v), by the double-vjp trick (PyTorch's reverse-mode jvp)."""
    in_tuple, ins = as_tuple(inputs)
    with enable_grad():
        ins = _prepare(ins, True)
        outs = func(*ins)
        out_tuple, outs_t = as_tuple(outs)
        if v is None:
            if len(ins) != 1 or ins[0]._data.size != 1:
                raise _errors.EngineRuntimeError("The vector v can only be None if the input to the user-provided function "
                                   "is a single Tensor with a single element.")
            v = (Tensor._make(np.ones_like(ins[0]._data)),)
        _, vs = as_tuple(v)
        us = [Tensor._make(np.zeros_like(o._data)).requires_grad_(True) for o in outs_t]
        gs = _grad(list(outs_t), list(ins), grad_outputs=us, create_graph=True, allow_unused=True)
        if strict:
            _fill_in_zeros(gs, ins, strict, create_graph, "back_trick")
        pairs = [(g, vv) for g, vv in zip(gs, vs) if g is not None]
        if pairs:
            res = _grad([g for g, _ in pairs], us, grad_outputs=[vv for _, vv in pairs],
                        create_graph=create_graph, allow_unused=True)
        else:
            res = [None] * len(us)
    res = tuple(_finish(r, create_graph) for r in _fill_in_zeros(res, outs_t, strict, create_graph, "back"))
    outs_r = tuple(_finish(o, create_graph) for o in outs_t)
    return (outs_r if out_tuple else outs_r[0]), (res if out_tuple else res[0])


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    return hvp(func, inputs, v, create_graph, strict)


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v) for scalar-valued func."""
    in_tuple, ins = as_tuple(inputs)
    _, vs = as_tuple(v)
    with enable_grad():
        ins = _prepare(ins, True)
        out = func(*ins)
        if not isinstance(out, Tensor) or out._data.size != 1:
            raise _errors.EngineRuntimeError("The function given to hvp should return a single Tensor with a single element")
        gs = _grad(out, list(ins), create_graph=True, allow_unused=True)
        if strict:
            _fill_in_zeros(gs, ins, strict, create_graph, "back")
        dot = None
        for g, vv in zip(gs, vs):
            if g is None:
                continue
            term = (g * vv).sum()
            dot = term if dot is None else dot + term
        if dot is None or dot.grad_fn is None:
            res = [None] * len(ins)
        else:
            res = _grad(dot, list(ins), create_graph=create_graph, allow_unused=True)
    res = tuple(_finish(r, create_graph) for r in _fill_in_zeros(res, ins, strict, create_graph, "double_back"))
    return _finish(out, create_graph), (res if in_tuple else res[0])
