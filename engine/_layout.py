"""A copy of an array in the same memory layout as the original, gaps included.

A user's input may be transposed (`W.T`, `.t()`, `np.asfortranarray`) or a strided slice
(`x[:, ::2]`); a backward that assumes row-major memory (`as_strided`, `.view` on a transposed
tensor) is wrong only there. `np.array(a, copy=True)` keeps a transpose (order "K") but packs a
slice densely; this keeps the element strides themselves, over a fresh buffer."""
import numpy as np


def same_layout(a, dtype=None):
    """A fresh, writeable array equal to `a` (cast to dtype) whose strides, in elements, are a's.
    Negative or zero strides (a reversed view, a broadcast) are packed in order "K" instead:
    neither is a layout a checker's perturbation can reproduce element by element."""
    a = np.asarray(a)
    dtype = np.dtype(dtype or a.dtype)
    if a.flags.c_contiguous or a.size == 0 or a.ndim == 0:
        return np.array(a, dtype=dtype, copy=True, order="C")
    steps = [s // a.itemsize for s in a.strides]
    if any(s <= 0 for s, n in zip(steps, a.shape) if n > 1) or any(s % a.itemsize for s in a.strides):
        return np.array(a, dtype=dtype, copy=True, order="K")
    extent = 1 + sum((n - 1) * s for n, s in zip(a.shape, steps))
    buf = np.zeros(extent, dtype=dtype)
    out = np.lib.stride_tricks.as_strided(buf, a.shape, tuple(s * dtype.itemsize for s in steps))
    out[...] = a
    return out
