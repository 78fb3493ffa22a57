"""The two array namespaces backward rules are written against.

A rule `lambda xp, g, out, x: g * xp.cos(x)` runs on numpy arrays through `NUMPY` when no
graph is wanted (first order: nothing recorded, nothing paid), and on Tensors through `TENSOR`
under `create_graph=True`, where every step is an engine op and so is itself differentiable.
Both offer the same small vocabulary; dims in rules count from the end so that cotangents
with leading batch dimensions (vectorized Jacobians) pass through unchanged.
"""
import numpy as np

INPLACE_MIN = 4096   # elements: below this, reusing a temporary costs more than allocating

# The Tensor class and the ops package, handed over by engine.ops once both exist (`install`):
# this module sits below them (the backward loop uses it), so it never imports them.
Tensor = None
ops = None


def install(tensor_cls, ops_module):
    global Tensor, ops
    Tensor, ops = tensor_cls, ops_module


class _Numpy:
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    sqrt = staticmethod(np.sqrt)
    tanh = staticmethod(np.tanh)
    sinh = staticmethod(np.sinh)
    cosh = staticmethod(np.cosh)
    abs = staticmethod(np.abs)
    matmul = staticmethod(np.matmul)
    broadcast_to = staticmethod(np.broadcast_to)
    reshape = staticmethod(np.reshape)
    swapaxes = staticmethod(np.swapaxes)
    transpose = staticmethod(np.transpose)
    expand_dims = staticmethod(np.expand_dims)
    concatenate = staticmethod(np.concatenate)
    flip = staticmethod(np.flip)
    roll = staticmethod(np.roll)
    tril = staticmethod(np.tril)
    triu = staticmethod(np.triu)
    solve = staticmethod(np.linalg.solve)      # batches of matrices on both sides
    inv = staticmethod(np.linalg.inv)

    @staticmethod
    def squeeze(a, dim):
        return np.squeeze(a, axis=dim)

    @staticmethod
    def clamp(a, min=None, max=None):  # noqa: A002
        return np.clip(a, min, max)

    @staticmethod
    def softplus(x):
        return np.logaddexp(0.0, x)

    @staticmethod
    def erf(x):
        from .ops.elementwise import _erf
        return _erf(x)

    @staticmethod
    def cumsum(a, dim):
        return np.cumsum(a, axis=dim)

    @staticmethod
    def sigmoid(x):
        return 0.5 * (np.tanh(0.5 * x) + 1.0)

    @staticmethod
    def tanh_backward(g, out):
        """g * (1 - out**2) with one temporary instead of three (PyTorch's tanh_backward)."""
        if out.size < INPLACE_MIN:
            # small: keyword-argument ufunc calls cost more, and a Python float operand costs
            # more than an array one (numpy 2's weak-scalar promotion): g - g*out*out is three
            # array-array ops, ~0.5 us less than g * (1.0 - out*out) on 10 elements
            return g - g * out * out
        t = out * out
        np.subtract(1.0, t, out=t)
        if g.shape == t.shape:
            return np.multiply(t, g, out=t)
        return g * t

    @staticmethod
    def sigmoid_backward(g, out):
        """g * out * (1 - out) with one temporary."""
        if out.size < INPLACE_MIN:
            t = g * out
            return t - t * out
        t = 1.0 - out
        np.multiply(t, out, out=t)
        if g.shape == t.shape:
            return np.multiply(t, g, out=t)
        return g * t

    @staticmethod
    def shape(a):
        return np.shape(a)

    @staticmethod
    def dtype(a):
        dt = getattr(a, "dtype", None)       # arrays, numpy scalars, structured gradients
        return dt if dt is not None else np.asarray(a).dtype

    @staticmethod
    def astype(a, dtype):
        return np.asarray(a).astype(dtype)

    @staticmethod
    def sum(a, axes, keepdim):
        return np.sum(a, axis=axes, keepdims=keepdim)

    @staticmethod
    def where(cond, a, b):
        return np.where(cond, a, b)

    @staticmethod
    def raw(a):
        return a

    @staticmethod
    def wrap(a):
        return Tensor._make(np.asarray(a))

    @staticmethod
    def unwrap(t):
        return t._data

    @staticmethod
    def copy(a):
        return np.array(a, copy=True)

    @staticmethod
    def index(a, key):
        return a[key]

    @staticmethod
    def mean(a, axes, keepdim):
        return np.mean(a, axis=axes, keepdims=keepdim)

    @staticmethod
    def unindex(g, shape, key, out_ndim, accumulate):
        """Zeros of `batch + shape` with `g` added at `key` (the adjoint of a[key])."""
        nb = np.ndim(g) - out_ndim
        out = np.zeros(np.shape(g)[:nb] + tuple(shape), dtype=np.asarray(g).dtype)
        full = (slice(None),) * nb + key
        if accumulate:
            np.add.at(out, full, g)
        else:
            out[full] = g
        return out

    @staticmethod
    def zeros_like(a):
        return np.zeros_like(a)

    @staticmethod
    def const(a):
        return a

    @staticmethod
    def mul_scalar(a, c):
        return a * c


class _Tensor:
    """Same vocabulary on Tensors through engine ops (looked up on first use of each name)."""

    def __getattr__(self, name):
        fn = getattr(ops, "xp_" + name, None) or getattr(ops, name)
        setattr(self, name, fn)
        return fn

    @staticmethod
    def shape(a):
        return tuple(a._data.shape) if hasattr(a, "_data") else np.shape(a)

    @staticmethod
    def dtype(a):
        return a._data.dtype if hasattr(a, "_data") else np.asarray(a).dtype

    @staticmethod
    def raw(a):
        return a._data if hasattr(a, "_data") else a

    @staticmethod
    def wrap(a):
        return a if isinstance(a, Tensor) else Tensor._make(np.asarray(a))

    @staticmethod
    def unwrap(t):
        return t

    @staticmethod
    def const(a):
        return Tensor._make(np.asarray(a))


NUMPY = _Numpy()
TENSOR = _Tensor()
