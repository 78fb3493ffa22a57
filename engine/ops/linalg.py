"""Linear algebra: matmul (1-D, 2-D and batched operands), dot, outer, mm, mv, bmm.

matmul is one entry whose node name follows the operands as PyTorch's does (DotBackward0,
MvBackward0, MmBackward0, BmmBackward0). Rules swap only the last two dims, so leading batch
dims of a cotangent pass straight through.
"""
import numpy as np

from .. import errors
from ..tensor import Tensor
from ._core import apply, defop, export
from .elementwise import mul
from .shape import reshape


# xd, yd: the operands' ndims, kept as attributes so that each rule reads only the operand it
# needs (MmBackward0 saves mat2 for self's gradient and self for mat2's, as PyTorch does)
def _mm_x(xp, g, out, x, y, xd, yd):
    if yd == 1:                           # (..., n, m) @ (m,) and (m,) @ (m,)
        return xp.expand_dims(g, -1) * y
    if xd == 1:                           # (m,) @ (..., m, k): a row vector times y
        return xp.matmul(xp.expand_dims(g, -2), xp.swapaxes(y, -1, -2))
    return xp.matmul(g, xp.swapaxes(y, -1, -2))


def _mm_y(xp, g, out, x, y, xd, yd):
    if xd == 1 and yd == 1:
        return xp.expand_dims(g, -1) * x
    if xd == 1:                           # (m,) @ (..., m, k) -> outer(x, g)
        return xp.expand_dims(x, -1) * xp.expand_dims(g, -2)
    if yd == 1 and xd == 2:               # (n, m) @ (m,): g (..., n) @ x is one GEMM
        return xp.matmul(g, x)
    if yd == 1:                           # (..., n, m) @ (m,) -> g @ x, batch-aware
        r = xp.matmul(xp.expand_dims(g, -2), x)
        s = xp.shape(r)
        return xp.reshape(r, tuple(s[:-2]) + (s[-1],))
    return xp.matmul(xp.swapaxes(x, -1, -2), g)


def _matmul(x, y, xd, yd):
    return np.matmul(x, y)


MATMUL = defop("matmul", _matmul, (_mm_x, _mm_y),
               saves=("y", "x"), operators={"__matmul__": "call", "__rmatmul__": "reflected"},
               nodes=("DotBackward0", "MvBackward0", "MmBackward0", "BmmBackward0", "VdotBackward0"),
               samples=[(((3,), (3,)), {}), (((2, 3), (3,)), {}), (((3,), (3, 2)), {}),
                        (((2, 3), (3, 4)), {}), (((2, 2, 3), (2, 3, 4)), {}), (((2, 2, 3), (3, 2)), {}),
                        (((3,), (2, 3, 4)), {}),
                        # square: the gradient of sum() has the shape of both operands
                        (((3, 3), (3, 3)), {}), (((2, 3, 3), (2, 3, 3)), {})],
               doc="matrix product (x @ y) for 1-D, 2-D and batched operands")


def _matmul_error(a, b):
    sa, sb = a.shape, b.shape
    if a.ndim == 1 and b.ndim == 1:
        return (f"inconsistent tensor size, expected tensor [{sa[0]}] and src [{sb[0]}] to have the same "
                f"number of elements, but got {sa[0]} and {sb[0]} elements respectively")
    if a.ndim == 2 and b.ndim == 1:
        return f"size mismatch, got input ({sa[0]}), mat ({sa[0]}x{sa[1]}), vec ({sb[0]})"
    if a.ndim <= 2 and b.ndim <= 2:
        ra = (1,) + sa if a.ndim == 1 else sa
        return f"mat1 and mat2 shapes cannot be multiplied ({ra[0]}x{ra[1]} and {sb[0]}x{sb[1]})"
    return f"matmul: shapes {list(sa)} and {list(sb)} cannot be multiplied"


@export("matmul", op=MATMUL)
def matmul(x, y):
    if not isinstance(x, Tensor):
        x = Tensor._make(np.asarray(x))
    if not isinstance(y, Tensor):
        y = Tensor._make(np.asarray(y))
    a, b = x._data, y._data
    if a.ndim == 0 or b.ndim == 0:
        raise errors.ShapeError(
            f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise errors.ShapeError(_matmul_error(a, b))
    if a.ndim == 1 and b.ndim == 1:
        v = 0
    elif a.ndim == 2 and b.ndim == 1:
        v = 1
    elif a.ndim <= 2 and b.ndim <= 2:
        v = 2
    else:
        v = 3
    try:
        return apply(MATMUL, (x, y), {"xd": a.ndim, "yd": b.ndim}, v=v)
    except ValueError:
        raise errors.ShapeError(_matmul_error(a, b)) from None


ADDMM = defop("addmm", lambda bias, mat1, mat2: bias + np.matmul(mat1, mat2),
              (lambda xp, g, out, bias, mat1, mat2: g,
               lambda xp, g, out, bias, mat1, mat2: xp.matmul(g, xp.swapaxes(mat2, -1, -2)),
               lambda xp, g, out, bias, mat1, mat2: xp.matmul(xp.swapaxes(mat1, -1, -2), g)),
              saves=("", "mat2", "mat1"), nodes="AddmmBackward0",
              samples=[(((3,), (2, 4), (4, 3)), {}), (((2, 3), (2, 4), (4, 3)), {}), (((), (2, 2), (2, 3)), {})],
              doc="bias + mat1 @ mat2 for matrices (what nn.Linear records)")


@export("addmm", op=ADDMM)
def addmm(input, mat1, mat2):  # noqa: A002
    """input + mat1 @ mat2, mat1 and mat2 matrices (input broadcast to the product's shape)."""
    if mat1.ndim != 2:
        raise errors.ShapeError("mat1 must be a matrix, got " f"{mat1.ndim}-D tensor")
    if mat2.ndim != 2:
        raise errors.ShapeError("mat2 must be a matrix, got " f"{mat2.ndim}-D tensor")
    if mat1.shape[1] != mat2.shape[0]:
        raise errors.ShapeError(_matmul_error(mat1, mat2))
    if not isinstance(input, Tensor):
        input = Tensor._make(np.asarray(input, dtype=mat1._data.dtype))  # noqa: A001
    return apply(ADDMM, (input, mat1, mat2))


@export("dot")
def dot(x, y):
    if x.ndim != 1 or y.ndim != 1:
        raise errors.ShapeError(f"1D tensors expected, but got {x.ndim}D and {y.ndim}D tensors")
    return matmul(x, y)


@export("vdot")
def vdot(x, y):
    """dot of real vectors (conj(x) . y), recorded as PyTorch does: VdotBackward0."""
    if x.ndim != 1 or y.ndim != 1:
        raise errors.ShapeError(f"1D tensors expected, but got {x.ndim}D and {y.ndim}D tensors")
    if x.shape[0] != y.shape[0]:
        raise errors.ShapeError(_matmul_error(x._data, y._data))
    return apply(MATMUL, (x, y), {"xd": 1, "yd": 1}, v=4)


@export("inner")
def inner(x, y):
    """Sum over the last dims of x and y: shape x.shape[:-1] + y.shape[:-1] (a number times a
    tensor when either is 0-D), as torch.inner; recorded as PyTorch's tensordot records it (the
    pieces flattened to matrices, one MmBackward0, the result viewed back: ViewBackward0)."""
    if x.ndim == 0 or y.ndim == 0:
        return x * y
    if x.shape[-1] != y.shape[-1]:
        raise errors.ShapeError(f"inner() the last dimension must match on both input tensors but got shapes "
                                f"{list(x.shape)} and {list(y.shape)}")
    k = x.shape[-1]
    if x.ndim == 1 and y.ndim == 1:
        return matmul(x, y).reshape(())
    out = matmul(x.reshape(-1, k), y.reshape(-1, k).t())
    return out.reshape(tuple(x.shape[:-1]) + tuple(y.shape[:-1]))




@export("mm")
def mm(x, y):
    if x.ndim != 2:
        raise errors.ShapeError("self must be a matrix")
    if y.ndim != 2:
        raise errors.ShapeError("mat2 must be a matrix")
    return matmul(x, y)


@export("mv")
def mv(x, y):
    if x.ndim != 2 or y.ndim != 1:
        raise errors.ShapeError(f"vector + matrix @ vector expected, got {x.ndim}, {y.ndim}")
    return matmul(x, y)


@export("bmm")
def bmm(x, y):
    if x.ndim != 3 or y.ndim != 3:
        raise errors.ShapeError("batch1 and batch2 must be 3D tensors")
    return matmul(x, y)


@export("outer", "ger")
def outer(x, y):
    """The outer product x y^T of two vectors.

    PyTorch records outer(a, b) as a.reshape(-1, 1) * b (ViewBackward0 -> MulBackward0)."""
    return mul(reshape(x, (-1, 1)), y)


