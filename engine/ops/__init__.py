"""The op registry (`REGISTRY`), the public surface (`FUNCTIONS`, `METHODS`), and `bind`, which
Tensor calls where it is defined to take its methods and operators from them.

Importing the op modules registers their entries and exports (engine/ops/_core.py); nothing
here lists an op by hand. This module also provides the `xp_*` functions through which rules
run on Tensors under create_graph=True (engine/_xp.py).
"""
import functools
import sys

import numpy as np

from .. import _xp
from ..tensor import Tensor
from ._core import (FUNCTIONS, METHODS, REGISTRY, apply, apply1, binary_operator, defop, export,  # noqa: F401
                    expression_keywords, public_functions)
from . import elementwise, linalg, loss, reduce, shape, structured  # noqa: F401  (registers every entry and export)

globals().update({name: e.fn for name, e in FUNCTIONS.items() if "." not in name})     # engine.ops.tanh, ...
# what Tensor uses that is not an exported function: properties, indexing, in-place plumbing
from .shape import T, copy_from, full_like_op, getitem, index_put, mT, to, unindex  # noqa: E402,F401


# -- the Tensor-namespace vocabulary for rules under create_graph (see engine/_xp.py) -----------
xp_mul_scalar = elementwise.mul_scalar


def xp_tanh_backward(g, out):
    return g * (1.0 - out * out)


def xp_sigmoid_backward(g, out):
    return g * out * (1.0 - out)


def xp_sum(a, axes, keepdim):
    return sum(a, axes, keepdim)


def xp_mean(a, axes, keepdim):
    return mean(a, axes, keepdim)


def xp_where(cond, a, b):
    return where(np.asarray(cond), a, b)


def xp_expand_dims(a, dims):
    dims = (dims,) if isinstance(dims, int) else dims
    nd = a.ndim + len(dims)
    for d in sorted(d % nd for d in dims):
        a = unsqueeze(a, d)
    return a


def xp_broadcast_to(a, shape):
    return expand(a, tuple(shape))


def xp_swapaxes(a, d0, d1):
    return transpose(a, d0, d1)


def xp_transpose(a, axes):
    return permute(a, tuple(axes))


def xp_reshape(a, shape):
    return reshape(a, tuple(shape))


def xp_astype(a, dtype):
    return to(a, dtype)


def xp_copy(a):
    return clone(a)


def xp_index(a, key):
    return getitem(a, key)


def xp_zeros_like(a):
    return a * 0.0


def xp_concatenate(seq, axis=0):
    return cat(seq, axis)


def xp_solve(a, b):
    return linalg.linalg_solve(a, b)


def xp_inv(a):
    return linalg.linalg_inv(a)


# -- Tensor methods and operators, from the exports and the registry -----------------------------
def _swap(fn):
    def r(self, other):
        return fn(other, self)
    return r


def _not_impl_guard(fn):
    def op(self, other):
        if not isinstance(other, (type(self), int, float, bool, np.ndarray, np.generic)):
            return NotImplemented
        return fn(self, other)
    op.__name__ = fn.__name__
    return op


def _unary_method(op):
    """x.tanh() straight to the unary fast path (no argument checks: self is a Tensor)."""
    def method(self):
        return apply1(op, self)
    method.__name__ = op.name
    method.__doc__ = op.doc
    return method


def _fast_method(fast, fn):
    """x.mul(y), x.add(y), ...: the operator's one-call path (x * y) when called as the operator
    would be, the public function otherwise (alpha=, keywords, arrays): the same op either way,
    at the operator's cost (x.mul(y) took 39 Python calls where x * y takes 8)."""
    def method(self, *args, **kwargs):
        if len(args) == 1 and not kwargs:
            r = fast(self, args[0])
            if r is not NotImplemented:
                return r
        return fn(self, *args, **kwargs)
    functools.update_wrapper(method, fn)
    return method


def bind(tensor_cls):
    """Give `tensor_cls` every exported method and every operator an entry declares."""
    public = {}
    for e in FUNCTIONS.values():
        if e.op is not None:
            public.setdefault(e.op, e.fn)
    fast = {op: binary_operator(op, public[op]) for op in REGISTRY.values()
            if "fast" in op.operators.values() and op in public}
    for name, e in METHODS.items():
        if e.fast_unary:
            setattr(tensor_cls, name, _unary_method(e.op))
        elif e.op in fast and e.fn is public.get(e.op):
            setattr(tensor_cls, name, _fast_method(fast[e.op], e.fn))
        else:
            setattr(tensor_cls, name, e.fn)
    for op in REGISTRY.values():
        for dunder, kind in op.operators.items():
            fn = public[op]
            if kind == "fast":
                impl = binary_operator(op, fn)
            elif kind == "call":
                impl = _not_impl_guard(fn)
            elif kind == "reflected":
                impl = _not_impl_guard(_swap(fn))
            elif kind == "unary":
                impl = fn
            else:
                raise ValueError(f"op {op.name!r}: unknown operator kind {kind!r} for {dunder}")
            setattr(tensor_cls, dunder, impl)
    # what is not an op: properties, indexing, and Python's protocol defaults
    tensor_cls.T = property(T)
    tensor_cls.mT = property(mT)
    tensor_cls.__getitem__ = getitem
    tensor_cls.__pos__ = lambda self: self
    tensor_cls.__hash__ = object.__hash__
    tensor_cls.__and__ = lambda self, o: tensor_cls._make(np.logical_and(self._data, getattr(o, "_data", o)))
    tensor_cls.__or__ = lambda self, o: tensor_cls._make(np.logical_or(self._data, getattr(o, "_data", o)))


_xp.install(Tensor, sys.modules[__name__])      # the create_graph namespace runs through these ops
