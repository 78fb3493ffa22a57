"""The two array namespaces backward rules are written against.

A rule `lambda xp, g, out, x: g * xp.cos(x)` runs on numpy arrays through `NUMPY` when no
graph is wanted (first order: nothing recorded, nothing paid), and on Tensors through `TENSOR`
under `create_graph=True`, where every step is an engine op and so is itself differentiable.
Both offer the same small vocabulary; dims in rules count from the end so that cotangents
with leading batch dimensions (vectorized Jacobians) pass through unchanged.
"""
import numpy as np

_INPLACE_MIN = 4096   # elements: below this, reusing a temporary costs more than allocating


class Uniform(np.lib.mixins.NDArrayOperatorsMixin):
    """A first-order gradient with one value everywhere, as sum() and mean() hand back to a
    large input, kept as that value until something needs the array.

    The common loss `sum(f(x))` starts its backward pass with ones; written out, the rules
    would multiply whole arrays by that 1 (MulBackward0's g * y, ExpBackward0's g * out),
    each a pass over memory the hand-written numpy gradient never makes. Here a ufunc whose
    other operands already have the full shape sees the value as a 0-d array (numpy
    broadcasts it for free), a multiplication by exactly 1 returns the other operand itself
    (bit-identical: x * 1.0 == x in IEEE arithmetic, NaN and -0.0 included), and a ufunc of
    uniforms alone stays uniform (-g). Anything else (other numpy functions, methods,
    indexing) sees the broadcast array.

    Only the plain backward loop makes these (graph._add_plain, for >= _INPLACE_MIN elements),
    and it turns them back into arrays before hooks, Functions and .grad see a gradient.
    """

    __slots__ = ("value", "shape", "dtype")

    def __init__(self, value, shape):
        self.value = value            # a 0-d array
        self.shape = shape
        self.dtype = value.dtype

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def array(self):
        """The broadcast (read-only) array this stands for."""
        return np.broadcast_to(self.value, self.shape)

    def __array__(self, dtype=None, copy=None):
        a = self.array()
        if copy or dtype is not None and dtype != a.dtype:
            return np.array(a, dtype=dtype, copy=True)
        return a

    def __getattr__(self, name):
        return getattr(self.array(), name)

    def __getitem__(self, key):
        return self.array()[key]

    def __len__(self):
        return self.shape[0]

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        full = has_array = False
        if method == "__call__":
            full = True
            for i in inputs + (out or ()):
                if type(i) is Uniform:
                    full = full and i.shape == self.shape
                else:
                    s = np.shape(i)
                    if s == self.shape:
                        has_array = True
                    elif s != ():
                        full = False         # it broadcasts against the full shape
        if not full:                         # let numpy see the broadcast array
            args = [i.array() if type(i) is Uniform else i for i in inputs]
            return getattr(ufunc, method)(*args, **kwargs)
        vals = [i.value if type(i) is Uniform else i for i in inputs]
        if not has_array:                    # uniforms and numbers only: still uniform
            return Uniform(np.asarray(ufunc(*vals, **kwargs)), self.shape)
        if ufunc is np.multiply and len(inputs) == 2 and len(kwargs) == (out is not None):
            a, b = inputs
            u, other = (a, b) if type(a) is Uniform else (b, a)
            if (type(u) is Uniform and u.value == 1 and type(other) is np.ndarray
                    and other.dtype == u.dtype and (out is None or out[0] is other)):
                return other                 # other * 1.0 is other, bit for bit
        return ufunc(*vals, **kwargs)

    def __repr__(self):
        return f"Uniform({self.value!r}, shape={self.shape})"


class _Numpy:
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    sqrt = staticmethod(np.sqrt)
    tanh = staticmethod(np.tanh)
    abs = staticmethod(np.abs)
    matmul = staticmethod(np.matmul)
    broadcast_to = staticmethod(np.broadcast_to)
    reshape = staticmethod(np.reshape)
    swapaxes = staticmethod(np.swapaxes)
    transpose = staticmethod(np.transpose)
    expand_dims = staticmethod(np.expand_dims)
    concatenate = staticmethod(np.concatenate)

    @staticmethod
    def sigmoid(x):
        return 0.5 * (np.tanh(0.5 * x) + 1.0)

    @staticmethod
    def tanh_backward(g, out):
        """g * (1 - out**2) with one temporary instead of three (PyTorch's tanh_backward)."""
        if out.size < _INPLACE_MIN:
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
        if out.size < _INPLACE_MIN:
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
        return a.dtype if isinstance(a, np.ndarray) else np.asarray(a).dtype

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
        from .tensor import Tensor
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


class _Tensor:
    """Same vocabulary on Tensors through engine ops (filled in lazily to avoid import cycles)."""

    def __getattr__(self, name):
        from . import ops
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
        from .tensor import Tensor
        return a if isinstance(a, Tensor) else Tensor._make(np.asarray(a))

    @staticmethod
    def unwrap(t):
        return t

    @staticmethod
    def const(a):
        from .tensor import Tensor
        return Tensor._make(np.asarray(a))


NUMPY = _Numpy()
TENSOR = _Tensor()
