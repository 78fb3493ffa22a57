"""The op registry (`REGISTRY`) and every op's public function; attaches Tensor methods.

Import order matters only here: the op modules register entries, then this module binds the
registry's functions to Tensor as methods and operators, and provides the `xp_*` functions
through which rules run on Tensors under create_graph=True (engine/_xp.py).
"""
import numpy as np

from ..tensor import Tensor
from ._core import REGISTRY, apply, apply1, binary_operator, defop  # noqa: F401
from .elementwise import ADD, MUL, SUB, DIV
from .elementwise import (abs, absolute, add, clamp, clip, cos, div, divide, eq, exp, ge,  # noqa: F401
                          greater, greater_equal, gt, le, less, less_equal, log, log1p,
                          logical_not, lt, maximum, minimum, mul, multiply, ne, neg, negative,
                          not_equal, pow, reciprocal, relu, sigmoid, sign, sin, softplus, sqrt,
                          sub, subtract, tan, tanh, true_divide, where)
from .linalg import bmm, dot, ger, inner, matmul, mm, mv, outer, vdot  # noqa: F401
from .reduce import (amax, amin, argmax, argmin, log_softmax, logsumexp, max, mean, min,  # noqa: F401
                     norm, prod, softmax, std, sum, var)
from .shape import (T, bool_, broadcast_to, cat, clone, concat, concatenate, contiguous,  # noqa: F401
                    copy_from, double, expand, expand_as, flatten, float_, full_like_op, getitem,
                    index_put, int_, long, mT, permute, reshape, reshape_as, squeeze, stack,
                    swapaxes, swapdims, to, transpose, unindex, unsqueeze, view, view_as)


# -- the Tensor-namespace vocabulary for rules under create_graph (see engine/_xp.py) -----------
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


# -- Tensor methods and operators --------------------------------------------------------------
def _swap(fn):
    def r(self, other):
        return fn(other, self)
    return r


def _method_where(self, condition, y):
    return where(condition, self, y)


def _not_impl_guard(fn):
    def op(self, other):
        if not isinstance(other, (Tensor, int, float, bool, np.ndarray, np.generic)):
            return NotImplemented
        return fn(self, other)
    op.__name__ = fn.__name__
    return op


_METHODS = {
    "add": add, "sub": sub, "mul": mul, "div": div, "divide": div, "true_divide": div,
    "multiply": mul, "subtract": sub, "negative": neg, "pow": pow, "absolute": abs,
    "softplus": softplus, "clamp": clamp, "clip": clip, "maximum": maximum, "minimum": minimum,
    "where": _method_where, "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge,
    "sign": sign, "logical_not": logical_not,
    "sum": sum, "mean": mean, "prod": prod, "max": max, "min": min, "amax": amax, "amin": amin,
    "argmax": argmax, "argmin": argmin, "var": var, "std": std, "logsumexp": logsumexp,
    "norm": norm, "softmax": softmax, "log_softmax": log_softmax,
    "reshape": reshape, "view": view, "view_as": view_as, "reshape_as": reshape_as,
    "flatten": flatten, "transpose": transpose, "swapaxes": swapaxes, "swapdims": swapdims,
    "permute": permute, "unsqueeze": unsqueeze, "squeeze": squeeze, "expand": expand,
    "expand_as": expand_as, "broadcast_to": broadcast_to, "clone": clone,
    "contiguous": contiguous, "to": to, "double": double, "float": float_, "long": long,
    "int": int_, "bool": bool_, "matmul": matmul, "dot": dot, "mm": mm, "mv": mv, "bmm": bmm,
    "outer": outer, "inner": inner,
}
for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)


def _unary_method(op):
    """x.tanh() straight to the unary fast path (no argument checks: self is a Tensor)."""
    def method(self):
        return apply1(op, self)
    method.__name__ = op.name
    method.__doc__ = op.doc
    return method


for _op in (REGISTRY[n] for n in ("exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "tanh",
                                  "sigmoid", "relu", "abs", "neg", "reciprocal")):
    setattr(Tensor, _op.name, _unary_method(_op))
Tensor.__neg__ = Tensor.neg

Tensor.T = property(T)
Tensor.mT = property(mT)
Tensor.__getitem__ = getitem
Tensor.__add__ = binary_operator(ADD, add)
Tensor.__radd__ = Tensor.__add__           # x + 2 and 2 + x both record AddBackward0(x, None)
Tensor.__sub__ = binary_operator(SUB, sub)
Tensor.__rsub__ = _not_impl_guard(_swap(sub))
Tensor.__mul__ = binary_operator(MUL, mul)
Tensor.__rmul__ = Tensor.__mul__
Tensor.__truediv__ = binary_operator(DIV, div)
Tensor.__rtruediv__ = _not_impl_guard(_swap(div))
Tensor.__pow__ = _not_impl_guard(pow)
Tensor.__rpow__ = _not_impl_guard(_swap(pow))
Tensor.__matmul__ = _not_impl_guard(matmul)
Tensor.__rmatmul__ = _not_impl_guard(_swap(matmul))
Tensor.__neg__ = neg
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = abs
Tensor.__eq__ = _not_impl_guard(eq)
Tensor.__ne__ = _not_impl_guard(ne)
Tensor.__lt__ = _not_impl_guard(lt)
Tensor.__le__ = _not_impl_guard(le)
Tensor.__gt__ = _not_impl_guard(gt)
Tensor.__ge__ = _not_impl_guard(ge)
Tensor.__hash__ = object.__hash__
Tensor.__invert__ = logical_not
Tensor.__and__ = lambda self, o: Tensor._make(np.logical_and(self._data, getattr(o, "_data", o)))
Tensor.__or__ = lambda self, o: Tensor._make(np.logical_or(self._data, getattr(o, "_data", o)))
