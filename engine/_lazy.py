"""Structured first-order gradients: arrays whose structure saves whole passes of work.

Two kinds occur at the start of common backward passes, and stay structured through the
elementwise rules that follow:

- `Uniform`: one value everywhere. sum() and mean() hand it to a large input; written out,
  the rules would multiply whole arrays by that 1 (MulBackward0's g * y, ExpBackward0's
  g * out), passes the hand-written numpy gradient never makes.
- `Diagonal`: the identity a vectorized Jacobian seeds its one backward pass with, scaled
  per element: a batch of n cotangents, the k-th zero but for element k. Elementwise rules
  scale the diagonal (O(n), not O(n^2)); a matmul rule turns it into `d[:, None] * W`
  instead of a GEMM with a mostly-zero matrix.

Both are numpy-compatible: a ufunc they can answer in structured form is answered so, and
the result is the value the dense array would give (x * 1.0 is x bit for bit; the zeros
off a diagonal stay zeros only where the dense product would be zero, so operands with
inf or NaN fall back to the dense array). Everything else (other numpy functions, methods,
indexing) sees the dense array. The backward loop turns them into arrays before hooks,
Functions, captured gradients and .grad see a gradient.
"""
import numpy as np


class _Structured(np.lib.mixins.NDArrayOperatorsMixin):
    __slots__ = ()

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

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

    def _dense(self, ufunc, method, inputs, kwargs):
        args = [i.array() if isinstance(i, _Structured) else i for i in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs = dict(kwargs, out=tuple(o.array() if isinstance(o, _Structured) else o for o in out))
        return getattr(ufunc, method)(*args, **kwargs)


class Uniform(_Structured):
    """One value (a 0-d array) broadcast to `shape`. A ufunc whose other operands have the
    full shape sees the 0-d value (numpy broadcasts it for free); a multiplication by
    exactly 1 returns the other operand itself; a ufunc of uniforms and numbers alone stays
    uniform (-g, g / n)."""

    __slots__ = ("value", "shape", "dtype")

    def __init__(self, value, shape):
        self.value = value
        self.shape = shape
        self.dtype = value.dtype

    def array(self):
        """The broadcast (read-only) array this stands for."""
        return np.broadcast_to(self.value, self.shape)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        full = has_array = False
        if method == "__call__" and ufunc.signature is None:     # elementwise (matmul: dense)
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
        if not full:
            return self._dense(ufunc, method, inputs, kwargs)
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


class Diagonal(_Structured):
    """A batch of n = d.size cotangents of shape d.shape, the k-th zero but for element k,
    which holds d.flat[k]: shape (n,) + d.shape. Diagonal(ones) is the identity seed of a
    vectorized Jacobian."""

    __slots__ = ("d", "shape", "dtype")

    def __init__(self, d):
        self.d = d
        self.shape = (d.size,) + d.shape
        self.dtype = d.dtype

    def array(self):
        n = self.d.size
        out = np.zeros((n, n), self.dtype)
        out.flat[::n + 1] = self.d.reshape(-1)
        return out.reshape(self.shape)

    def _site(self, a):
        """`a` as an operand that broadcasts within one cotangent (no batch dim), or None."""
        s = np.shape(a)
        if len(s) > self.d.ndim:
            return None
        try:
            if np.broadcast_shapes(s, self.d.shape) != self.d.shape:
                return None
        except ValueError:
            return None
        return a

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            return self._dense(ufunc, method, inputs, kwargs)
        if ufunc is np.matmul:
            return self._matmul(inputs, kwargs)
        diag = [i for i in inputs if type(i) is Diagonal]
        if any(i.shape != self.shape for i in diag):
            return self._dense(ufunc, method, inputs, kwargs)
        if len(inputs) == 1 and ufunc in (np.negative, np.positive):
            return Diagonal(ufunc(self.d))
        if len(inputs) != 2:
            return self._dense(ufunc, method, inputs, kwargs)
        a, b = inputs
        if len(diag) == 2 and ufunc in (np.add, np.subtract, np.multiply):
            return Diagonal(ufunc(a.d, b.d))
        if ufunc is np.multiply or (ufunc is np.true_divide and type(a) is Diagonal):
            other = b if type(a) is Diagonal else a
            if self._site(other) is not None and np.all(np.isfinite(other)):
                # off the diagonal 0 * other (or 0 / other) is 0 for finite, nonzero-safe other;
                # division by 0 gives nan off the diagonal densely, so it is left to numpy
                if ufunc is np.multiply or np.all(np.asarray(other) != 0):
                    return Diagonal(np.asarray(ufunc(a.d, b) if a is self else ufunc(a, b.d)))
        return self._dense(ufunc, method, inputs, kwargs)

    def _matmul(self, inputs, kwargs):
        a, b = inputs
        if a is self and self.d.ndim == 1 and type(b) is np.ndarray and b.ndim in (1, 2) \
                and b.shape[0] == self.d.shape[0] and np.all(np.isfinite(b)):
            d = self.d
            return d * b if b.ndim == 1 else d[:, None] * b       # row k of diag(d) @ b
        return self._dense(np.matmul, "__call__", inputs, kwargs)

    def __repr__(self):
        return f"Diagonal({self.d!r})"
