"""Linear algebra: matmul (1-D, 2-D and batched operands), dot, outer, mm, mv, bmm.

matmul is one entry whose node name follows the operands as PyTorch's does (DotBackward0,
MvBackward0, MmBackward0, BmmBackward0). Rules swap only the last two dims, so leading batch
dims of a cotangent pass straight through.
"""
import numpy as np

from .. import errors
from ..tensor import Tensor
from ._core import apply, apply1, defop, export
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
               doc="matrix product (x @ y) for 1-D, 2-D and batched operands",
               formula=('grad * y if xd == 1 and yd == 1 else outer(grad, y) if yd == 1 else y @ grad if xd == 1 '
                        'and yd == 2 else squeeze(y @ unsqueeze(grad, -1), -1) if xd == 1 else grad @ y^T',
                        'grad * x if xd == 1 and yd == 1 else outer(x, grad) if xd == 1 else x^T @ grad if xd == '
                        '2 and yd == 1 else squeeze(unsqueeze(grad, -2) @ x, -2) if yd == 1 else x^T @ grad'))


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
def matmul(input, other):  # noqa: A002 - PyTorch's names (torch.matmul(input=..., other=...))
    x, y = input, other
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
              doc="bias + mat1 @ mat2 for matrices (what nn.Linear records)",
              formula=('grad', 'grad @ mat2^T', 'mat1^T @ grad'))


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
def dot(input, tensor):  # noqa: A002
    x, y = input, tensor
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
    tensor when either is 0-D), as torch.inner; recorded as PyTorch's tensordot records it."""
    if x.ndim == 0 or y.ndim == 0:
        return x * y
    if x.shape[-1] != y.shape[-1]:
        raise errors.ShapeError(f"inner() the last dimension must match on both input tensors but got shapes "
                                f"{list(x.shape)} and {list(y.shape)}")
    from .shape import permute
    k = x.shape[-1]
    # tensordot(x, y, ([-1], [-1])) as PyTorch runs it: each side permuted (the contracted dim
    # last in x, first in y: a PermuteBackward0 even when it moves nothing), reshaped to a
    # matrix, one mm (a dot for two vectors), the result viewed back to its shape
    xp = permute(x, tuple(range(x.ndim)))
    yp = permute(y, (y.ndim - 1,) + tuple(range(y.ndim - 1)))
    if x.ndim == 1 and y.ndim == 1:
        return dot(xp, yp).reshape(())
    out = mm(xp.reshape(-1, k), yp.reshape(k, -1))
    return out.reshape(tuple(x.shape[:-1]) + tuple(y.shape[:-1]))




@export("mm")
def mm(input, mat2):  # noqa: A002
    x, y = input, mat2
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
def bmm(input, mat2):  # noqa: A002
    x, y = input, mat2
    if x.ndim != 3 or y.ndim != 3:
        raise errors.ShapeError("batch1 and batch2 must be 3D tensors")
    return matmul(x, y)


@export("outer", "ger")
def outer(x, y):
    """The outer product x y^T of two vectors.

    PyTorch records outer(a, b) as a.reshape(-1, 1) * b (ViewBackward0 -> MulBackward0)."""
    return mul(reshape(x, (-1, 1)), y)




# -- torch.linalg: solve, inv, det, slogdet, cholesky, qr, svd (engine.linalg names them) -------
# Every op takes leading batch dims (numpy's gufuncs broadcast them). Rules follow PyTorch's
# formulas (FunctionsManual.cpp) for real inputs, written against xp so that create_graph=True
# records them: xp.solve and xp.inv are these ops again on Tensors.
class LinAlgError(errors.EngineRuntimeError):
    """torch.linalg.LinAlgError: a matrix that is singular or not positive-definite."""


LinAlgError.__name__ = LinAlgError.__qualname__ = "_LinAlgError"     # PyTorch's type name


def _mT(a):
    return np.swapaxes(a, -1, -2)


def _check_matrix(fn, A, square=True):
    if A.ndim < 2:
        raise errors.EngineRuntimeError(f"{fn}: The input tensor A must have at least 2 dimensions.")
    if square and A.shape[-1] != A.shape[-2]:
        raise errors.EngineRuntimeError(f"{fn}: A must be batches of square matrices, but they are "
                                        f"{A.shape[-2]} by {A.shape[-1]} matrices")
    if A._data.dtype.kind not in "fc":
        raise errors.EngineRuntimeError(f"{fn}: Expected a floating point or complex tensor as input. "
                                        f"Got {_dtype_name(A)}")


def _dtype_name(A):
    from .._dtype import scalar_type_name
    return scalar_type_name(A._data.dtype)


def _batch_prefix(a, k):
    """PyTorch's "(Batch element i): " for the first failing matrix of a batch."""
    return f"(Batch element {k}): " if a.ndim > 2 else ""


def _first_zero_pivot(m):
    """LAPACK getrf's info for one matrix: the 1-based index of the first exactly-zero pivot of
    LU with partial pivoting (0: none)."""
    u = np.array(m, dtype=np.float64, copy=True)
    n = u.shape[0]
    for k in range(n):
        p = k + int(np.argmax(np.abs(u[k:, k])))
        if u[p, k] == 0:
            return k + 1
        u[[k, p]] = u[[p, k]]
        u[k + 1:, k:] -= np.outer(u[k + 1:, k] / u[k, k], u[k, k:])
    return 0


def _singular(a):
    """(batch index, LAPACK info) of the first singular matrix in batch a."""
    flat = a.reshape((-1,) + a.shape[-2:])
    for k, m in enumerate(flat):
        info = _first_zero_pivot(m)
        if info:
            return k, info
    return 0, 1


def _nonfinite(a):
    """Which matrices of batch a hold a NaN or an infinity (LAPACK's results there are NaN in
    PyTorch, where numpy raises or returns numbers), or None when none does."""
    bad = ~np.isfinite(a).all(axis=(-1, -2))
    return bad if bad.any() else None


def _nan_where(bad, a, fn):
    """fn on the finite matrices of a, NaN for those in `bad` (computed on an identity)."""
    safe = np.where(bad[..., None, None], np.eye(a.shape[-1], dtype=a.dtype), a)
    out = fn(safe)
    return np.where(bad.reshape(bad.shape + (1,) * (out.ndim - bad.ndim)), np.nan, out)


def _inv(a):
    bad = _nonfinite(a)
    if bad is not None:
        return _nan_where(bad, a, _inv)
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        k, info = _singular(a)
        raise LinAlgError(f"linalg.inv: {_batch_prefix(a, k)}The diagonal element {info} is zero, the inversion "
                          "could not be completed because the input matrix is singular.") from None


def _solve(a, b):
    """X with a X = b, b a batch of matrices (numpy broadcasts the batch dims)."""
    bad = _nonfinite(a)
    if bad is not None:             # (a NaN in b only spreads through the solve, as in LAPACK)
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a, b = np.broadcast_to(a, shape + a.shape[-2:]), np.broadcast_to(b, shape + b.shape[-2:])
        bad = np.broadcast_to(bad, shape)
        out = _solve(np.where(bad[..., None, None], np.eye(a.shape[-1], dtype=a.dtype), a), b)
        return np.where(bad[..., None, None], np.nan, out)
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        k, _ = _singular(np.broadcast_to(a, np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + a.shape[-2:]))
        raise LinAlgError(f"torch.linalg.solve: {_batch_prefix(a, k)}The solver failed because the input matrix "
                          "is singular.") from None


# inv: out = A^-1; gA = -out^T g out^T (PyTorch saves the inverse)
INV = defop("linalg_inv", lambda x: _inv(x),
            (lambda xp, g, out, x: -xp.matmul(xp.swapaxes(out, -1, -2), xp.matmul(g, xp.swapaxes(out, -1, -2))),),
            saves=("out",), nodes="LinalgInvExBackward0",
            samples=[(((3, 3),), {}), (((2, 4, 4),), {}), (((1, 1),), {})],
            doc="linalg.inv(A): the inverse of square matrices A (batched)",
            formula='-result^T @ grad @ result^T')


# solve: X = A^-1 B (left) or B A^-1 (left=False); B a vector when it is 1-D or has A's batch
# shape with one dim less (PyTorch's rule). gB = A^-T gX, gA = -gB X^T (transposed for left=False)
def _solve_fwd(A, B, vector, left):
    if vector:
        return _solve(A, B[..., None])[..., 0]
    return _solve(A, B) if left else _mT(_solve(_mT(A), _mT(B)))


def _solve_gB(xp, g, out, A, B, vector, left):
    return _solve_adjoint(xp, g, A, vector, left)


def _solve_adjoint(xp, g, A, vector, left):
    """A^-T g (left) or g A^-T: the gradient of B."""
    if vector:
        return xp.squeeze(xp.solve(xp.swapaxes(A, -1, -2), xp.expand_dims(g, -1)), -1)
    if left:
        return xp.solve(xp.swapaxes(A, -1, -2), g)
    return xp.swapaxes(xp.solve(A, xp.swapaxes(g, -1, -2)), -1, -2)


def _solve_gA(xp, g, out, A, B, vector, left):
    gB = _solve_adjoint(xp, g, A, vector, left)
    if vector:
        return -(xp.expand_dims(gB, -1) * xp.expand_dims(out, -2))
    if left:
        return -xp.matmul(gB, xp.swapaxes(out, -1, -2))
    return -xp.matmul(xp.swapaxes(out, -1, -2), gB)


SOLVE = defop("linalg_solve", _solve_fwd, (_solve_gA, _solve_gB), saves=("A out", "A"),
              nodes="LinalgSolveExBackward0",
              samples=[(((3, 3), (3,)), {}), (((3, 3), (3, 2)), {}), (((2, 3, 3), (2, 3)), {}),
                       (((2, 3, 3), (3, 4)), {}), (((2, 1, 3, 3), (4, 3, 2)), {}),
                       (((3, 3), (2, 3)), {"left": False})],
              doc="linalg.solve(A, B): X with A X = B (B a vector or matrices; left=False: X A = B)",
              formula=('-outer(squeeze(solve(A^T, unsqueeze(grad, -1)), -1), result) if vector else -solve(A^T, '
                       'grad) @ result^T if left else -result^T @ solve(A, grad^T)^T',
                       'squeeze(solve(A^T, unsqueeze(grad, -1)), -1) if vector else solve(A^T, grad) if left '
                       'else solve(A, grad^T)^T'))


# det: d det / dA = det A^-T. At an exactly singular matrix PyTorch 2.13 returns zeros (not
# the cofactor matrix, the derivative there): the engine does the same, so that code behaves
# as it does on PyTorch (the inverse of I stands in for the singular matrix's, times det = 0).
def _det_vjp(xp, g, out, x):
    singular = xp.raw(out) == 0
    if np.any(singular):
        x = xp.where(np.asarray(singular)[..., None, None], np.eye(xp.shape(x)[-1]), x)
    return xp.expand_dims(g * out, (-1, -2)) * xp.swapaxes(xp.inv(x), -1, -2)


def _det(x):
    bad = _nonfinite(x)
    return np.linalg.det(x) if bad is None else _nan_where(bad, x, np.linalg.det)


def _slogdet(x):
    bad = _nonfinite(x)
    if bad is None:
        return np.linalg.slogdet(x)
    sign, logabs = np.linalg.slogdet(np.where(bad[..., None, None], np.eye(x.shape[-1], dtype=x.dtype), x))
    return np.where(bad, 0.0, sign).astype(x.dtype), np.where(bad, np.nan, logabs).astype(x.dtype)


DET = defop("linalg_det", _det, (_det_vjp,), saves=("x out",), nodes="LinalgDetBackward0",
            samples=[(((3, 3),), {}), (((2, 4, 4),), {}), (((1, 1),), {})],
            doc="linalg.det(A): the determinant of square matrices A (batched)",
            formula='unsqueeze(grad * result, (-2, -1)) * inv(x)^T, 0 where x is singular (as PyTorch)')


# slogdet: (sign, log|det|); only log|det| has a gradient for real A: g A^-T
def _slogdet_vjp(xp, g, out, x):
    if g[1] is None:
        return None
    return xp.expand_dims(g[1], (-1, -2)) * xp.swapaxes(xp.inv(x), -1, -2)


SLOGDET = defop("linalg_slogdet", _slogdet, (_slogdet_vjp,), saves=("x",),
                nodes="LinalgSlogdetBackward0", multi=True, returns="sign, logabsdet",
                samples=[(((3, 3),), {}), (((2, 4, 4),), {})],
                doc="linalg.slogdet(A): (sign, logabsdet) of det(A), computed stably",
                formula=('the grad of logabsdet times inv(x)^T, for each matrix (the sign gets no gradient)',))


# cholesky: A = L L^T; gA = L^-T Phi(L^T gL) L^-1 symmetrized, Phi the lower triangle with its
# diagonal halved (Murray 2016, as PyTorch); upper=True returns U = L^T
def _cholesky_fwd(x, upper):
    try:
        L = np.linalg.cholesky(x)
        if not np.isfinite(np.diagonal(L, axis1=-2, axis2=-1)).all():
            raise np.linalg.LinAlgError("a NaN pivot")      # LAPACK's potrf stops there
    except np.linalg.LinAlgError:
        flat = x.reshape((-1,) + x.shape[-2:])
        for k, m in enumerate(flat):
            for order in range(1, m.shape[-1] + 1):
                try:
                    if not np.isfinite(np.linalg.cholesky(m[:order, :order])[-1, -1]):
                        raise np.linalg.LinAlgError("a NaN pivot")
                except np.linalg.LinAlgError:
                    raise LinAlgError(f"linalg.cholesky: {_batch_prefix(x, k)}The factorization could not be "
                                      "completed because the input is not positive-definite (the leading minor "
                                      f"of order {order} is not positive-definite).") from None
        raise
    return _mT(L).copy() if upper else L


def _cholesky_vjp(xp, g, out, x, upper):
    L, gL = (xp.swapaxes(out, -1, -2), xp.swapaxes(g, -1, -2)) if upper else (out, g)
    n = xp.shape(L)[-1]
    P = xp.matmul(xp.swapaxes(L, -1, -2), gL)
    phi = xp.tril(P, -1) + P * (0.5 * np.eye(n))
    Linv = xp.inv(L)
    gA = xp.matmul(xp.swapaxes(Linv, -1, -2), xp.matmul(phi, Linv))
    return 0.5 * (gA + xp.swapaxes(gA, -1, -2))


CHOLESKY = defop("linalg_cholesky", _cholesky_fwd, (_cholesky_vjp,), saves=("out",),
                 nodes="LinalgCholeskyExBackward0",
                 samples=[(((3, 3),), {"upper": False}), (((2, 4, 4),), {"upper": False}),
                          (((3, 3),), {"upper": True})],
                 doc="linalg.cholesky(A): L, lower triangular, with L L^T = A for positive-definite A",
                 formula=('with L the lower factor (result, or its transpose when upper): the symmetric part of '
                          'inv(L)^T @ P @ inv(L), P the lower triangle of L^T @ grad (transposed alike) with its '
                          "diagonal halved (Murray's rule, as PyTorch)",))


# qr: A = Q R. Square or tall (m >= n, reduced; Walter & Lehmann, as in PyTorch's
#   linalg_qr_backward): M = R gR^T - gQ^T Q,  gA = (gQ + Q copyltu(M)) R^-T, where
#   copyltu(M) = tril(M) + tril(M, -1)^T (the lower triangle mirrored).
# Wide (m < n): A = [X | Y], R = [U | V] with X = Q U square, V = Q^T Y: X's gradient is the
# square case's with gQ + Y gV^T, Y's is Q gV.
def _qr_square(xp, gQ, gR, Q, R):
    M = None
    if gR is not None:
        M = xp.matmul(R, xp.swapaxes(gR, -1, -2))
    if gQ is not None:
        c = xp.matmul(xp.swapaxes(gQ, -1, -2), Q)
        M = -c if M is None else M - c
    M = xp.tril(M) + xp.swapaxes(xp.tril(M, -1), -1, -2)
    b = xp.matmul(Q, M) if gQ is None else gQ + xp.matmul(Q, M)
    return xp.swapaxes(xp.solve(R, xp.swapaxes(b, -1, -2)), -1, -2)       # b R^-T


def _qr_vjp(xp, g, out, x, mode):
    if mode == "r":
        raise errors.EngineRuntimeError(
            "The derivative of linalg.qr depends on Q, which is not computed when mode='r'. Please use "
            "linalg.qr(A, mode='reduced') if you are going to differentiate through linalg.qr.")
    gQ, gR = g
    Q, R = out
    m, n = xp.shape(Q)[-2], xp.shape(R)[-1]
    if m > n and mode == "complete":
        raise errors.EngineRuntimeError("The QR decomposition is not differentiable when mode='complete' and "
                                        "nrows > ncols.")
    if m >= n:
        return _qr_square(xp, gQ, gR, Q, R)
    U, V = xp.index(R, (Ellipsis, slice(None), slice(0, m))), xp.index(R, (Ellipsis, slice(None), slice(m, None)))
    Y = xp.index(x, (Ellipsis, slice(None), slice(m, None)))
    gU = gV = None
    if gR is not None:
        gU = xp.index(gR, (Ellipsis, slice(None), slice(0, m)))
        gV = xp.index(gR, (Ellipsis, slice(None), slice(m, None)))
        gQ = xp.matmul(Y, xp.swapaxes(gV, -1, -2)) if gQ is None else gQ + xp.matmul(Y, xp.swapaxes(gV, -1, -2))
    gX = _qr_square(xp, gQ, gU, Q, U)
    gY = xp.matmul(Q, gV) if gV is not None else xp.const(np.zeros(xp.shape(gX)[:-1] + (n - m,), xp.dtype(gX)))
    return xp.concatenate([gX, gY], axis=-1)


def _qr_fwd(x, mode):
    if mode == "r":
        R = np.linalg.qr(x, mode="r")
        return np.zeros(x.shape[:-2] + (0,), x.dtype), R
    return tuple(np.linalg.qr(x, mode=mode))


QR = defop("linalg_qr", _qr_fwd, (_qr_vjp,), saves=("x out",), nodes="LinalgQrBackward0", multi=True,
           returns="Q, R", samples=[(((3, 3),), {"mode": "reduced"}), (((4, 3),), {"mode": "reduced"}),
                                    (((2, 3, 5),), {"mode": "reduced"}), (((3, 3),), {"mode": "complete"}),
                                    (((2, 5, 2),), {"mode": "reduced"})],
           doc="linalg.qr(A, mode='reduced'): (Q, R) with A = Q R, Q orthonormal columns, R upper triangular",
           formula=("the grads of Q and R pulled back through x = Q R (Walter and Lehmann's rule, as PyTorch; "
                    "none for mode 'complete' with more rows than columns)",))


# svd: A = U diag(S) Vh. PyTorch's svd_backward (distinct singular values; a rectangular A of
# full rank); with full_matrices the extra columns of U (rows of Vh) are not unique, so only the
# first k take part, as PyTorch narrows them. Singular values only: U diag(gS) Vh.
def _svd_vjp(xp, g, out, x, full_matrices):
    gU, gS, gVh = g
    U, S, Vh = out
    k = xp.shape(S)[-1]
    if full_matrices:
        U = xp.index(U, (Ellipsis, slice(None), slice(0, k)))
        Vh = xp.index(Vh, (Ellipsis, slice(0, k), slice(None)))
        gU = None if gU is None else xp.index(gU, (Ellipsis, slice(None), slice(0, k)))
        gVh = None if gVh is None else xp.index(gVh, (Ellipsis, slice(0, k), slice(None)))
    m, n = xp.shape(U)[-2], xp.shape(Vh)[-1]
    if gU is None and gVh is None:
        return xp.matmul(U * xp.expand_dims(gS, -2), Vh)
    S2 = S * S
    E = xp.expand_dims(S2, -2) - xp.expand_dims(S2, -1) + np.eye(k)      # ones on the diagonal
    inner = None
    if gU is not None:
        UgU = xp.matmul(xp.swapaxes(U, -1, -2), gU)
        inner = (UgU - xp.swapaxes(UgU, -1, -2)) * xp.expand_dims(S, -2)
    if gVh is not None:
        VgV = xp.matmul(Vh, xp.swapaxes(gVh, -1, -2))
        t = xp.expand_dims(S, -1) * (VgV - xp.swapaxes(VgV, -1, -2))
        inner = t if inner is None else inner + t
    gA = inner / E
    if gS is not None:
        gA = gA + xp.expand_dims(gS, -1) * np.eye(k)
    if m > n and gU is not None:
        gA = xp.matmul(U, gA)
        gUS = gU / xp.expand_dims(S, -2)
        gA = gA + gUS - xp.matmul(U, xp.matmul(xp.swapaxes(U, -1, -2), gUS))
        return xp.matmul(gA, Vh)
    if m < n and gVh is not None:
        gA = xp.matmul(gA, Vh)
        SgVh = gVh / xp.expand_dims(S, -1)
        gA = gA + SgVh - xp.matmul(xp.matmul(SgVh, xp.swapaxes(Vh, -1, -2)), Vh)
        return xp.matmul(U, gA)
    return xp.matmul(U, xp.matmul(gA, Vh))


def _svd(x, full_matrices):
    bad = _nonfinite(x) if x.shape[-1] and x.shape[-2] else None
    if bad is not None:
        k = int(np.flatnonzero(bad.reshape(-1))[0])
        raise LinAlgError(f"linalg.svd: {_batch_prefix(x, k)}The algorithm failed to converge because the input "
                          "matrix contained non-finite values.")
    return tuple(np.linalg.svd(x, full_matrices=full_matrices))


SVD = defop("linalg_svd", _svd,
            (_svd_vjp,), saves=("out",), nodes="LinalgSvdBackward0", multi=True, returns="U, S, Vh",
            samples=[(((3, 3),), {"full_matrices": False}), (((4, 3),), {"full_matrices": False}),
                     (((2, 3, 5),), {"full_matrices": False}), (((4, 3),), {"full_matrices": True}),
                     (((2, 3, 4),), {"full_matrices": True})],
            doc="linalg.svd(A, full_matrices=True): (U, S, Vh) with A = U diag(S) Vh",
            formula=("the grads of U, S and Vh pulled back through x = U diag(S) Vh (PyTorch's rule; distinct "
                     'singular values); a grad of S alone gives U diag(grad of S) Vh',))


# -- the public functions: engine.linalg.NAME (the expression language's `linalg.NAME`), and the
# top-level names PyTorch also has with the same meaning (det, slogdet, inverse, qr) ------------
def _float(A, fn):
    if not isinstance(A, Tensor):
        A = Tensor._make(np.asarray(A, dtype=np.float64))
    _check_matrix(fn, A)
    return A


@export("linalg.inv", op=INV, method=False)
def linalg_inv(A):
    return apply1(INV, _float(A, "linalg.inv"))


@export("inverse")
def inverse(x):
    """inverse(A): the inverse of square matrices A (torch.inverse, linalg.inv)"""
    return linalg_inv(x)


@export("linalg.det", op=DET, method=False)
def linalg_det(A):
    return apply1(DET, _float(A, "linalg.det"))


@export("det")
def det(x):
    """det(A): the determinant of square matrices A (torch.det, linalg.det)"""
    return linalg_det(x)


class _SlogdetResult(tuple):
    """torch.return_types.linalg_slogdet / slogdet: a named tuple (sign, logabsdet)."""

    __slots__ = ()
    _name = "linalg_slogdet"

    def __new__(cls, sign, logabsdet):
        return tuple.__new__(cls, (sign, logabsdet))

    sign = property(lambda self: self[0])
    logabsdet = property(lambda self: self[1])

    def __repr__(self):
        return f"torch.return_types.{self._name}(\nsign={self[0]!r},\nlogabsdet={self[1]!r})"


class _SlogdetTop(_SlogdetResult):
    __slots__ = ()
    _name = "slogdet"


@export("linalg.slogdet", op=SLOGDET, method=False)
def linalg_slogdet(A):
    from ._core import apply_multi
    return _SlogdetResult(*apply_multi(SLOGDET, _float(A, "linalg.slogdet")))


@export("slogdet")
def slogdet(x):
    """slogdet(A): (sign, logabsdet) of det(A) (torch.slogdet, linalg.slogdet)"""
    return _SlogdetTop(*linalg_slogdet(x))


@export("linalg.cholesky", op=CHOLESKY, method=False, keywords=("upper",))
def linalg_cholesky(A, *, upper=False):
    return apply1(CHOLESKY, _float(A, "linalg.cholesky"), {"upper": bool(upper)})


def _named(name, fields, values):
    """A torch.return_types-like named tuple."""
    import collections
    cls = _NAMED.get(name)
    if cls is None:
        base = collections.namedtuple(name, fields)
        cls = _NAMED[name] = type(name, (base,), {"__slots__": (), "__repr__": lambda self: (
            f"torch.return_types.{name}(\n" + ",\n".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")")})
    return cls(*values)


_NAMED = {}


@export("linalg.qr", op=QR, method=False, keywords=("mode",))
def linalg_qr(A, mode="reduced"):
    from ._core import apply_multi
    if mode not in ("reduced", "r", "complete"):
        raise errors.EngineRuntimeError(f"qr received unrecognized mode '{mode}' but expected one of 'reduced' "
                                        "(default), 'r', or 'complete'")
    return _named("linalg_qr", ("Q", "R"), apply_multi(QR, _float_any(A, "linalg.qr"), {"mode": mode}))


@export("qr", keywords=("some",))
def qr(x, some=True):
    """qr(A, some=True): (Q, R) with A = Q R (torch.qr; linalg.qr with mode='reduced' or 'complete')"""
    return _named("qr", ("Q", "R"), linalg_qr(x, "reduced" if some else "complete"))


def _float_any(A, fn):
    if not isinstance(A, Tensor):
        A = Tensor._make(np.asarray(A, dtype=np.float64))
    _check_matrix(fn, A, square=False)
    return A


@export("linalg.svd", op=SVD, method=False, keywords=("full_matrices",))
def linalg_svd(A, full_matrices=True):
    from ._core import apply_multi
    return _named("linalg_svd", ("U", "S", "Vh"),
                  apply_multi(SVD, _float_any(A, "linalg.svd"), {"full_matrices": bool(full_matrices)}))


@export("linalg.svdvals", method=False)
def linalg_svdvals(A):
    """linalg.svdvals(A): the singular values of A, descending (output S of LinalgSvdBackward0, as PyTorch)"""
    from ._core import apply_multi
    return apply_multi(SVD, _float_any(A, "linalg.svdvals"), {"full_matrices": False})[1]


def _is_vector_rhs(A, B):
    return B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))


@export("linalg.solve", op=SOLVE, method=False, keywords=("left",))
def linalg_solve(A, B, *, left=True):
    A = _float_any(A, "linalg.solve")
    if not isinstance(B, Tensor):
        B = Tensor._make(np.asarray(B, dtype=A._data.dtype))
    _check_matrix("linalg.solve", A)
    vector = bool(left) and _is_vector_rhs(A, B)
    if not left and B.ndim == 1:
        raise errors.EngineRuntimeError("linalg.solve: Vector broadcasting of the left hand side is not supported "
                                        "for left=False. In this case linalg.solve is equivalent to B / A.squeeze(-1)")
    n = A.shape[-1]
    rows, cols = (B.shape[-1], 1) if vector else (B.shape[-2], B.shape[-1])
    if (rows if left else cols) != n:
        eq = "AX = B" if left else "XA = B"
        dims = f"{n}x{n} and {rows}x{cols}"
        raise errors.EngineRuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation {eq} ({dims})")
    if A._data.dtype != B._data.dtype:
        raise errors.EngineRuntimeError(f"linalg.solve: Expected A and B to have the same dtype, but found "
                                        f"A of type {_dtype_name(A)} and B of type {_dtype_name(B)} instead")
    return apply(SOLVE, (A, B), {"vector": vector, "left": bool(left)})


INV.func = linalg_inv
DET.func = linalg_det
SOLVE.func = lambda A, B, left=True: linalg_solve(A, B, left=left)
# how the registry's tests call the entries: one tensor out, a function of every output that is
# unique (Cholesky of a positive-definite matrix made from A; of an SVD the values, U Vh and the
# squares of the singular vectors, which sign flips leave alone)
CHOLESKY.func = lambda A, upper=False: linalg_cholesky(_spd(A), upper=upper)
SLOGDET.func = lambda A: linalg_slogdet(A)[1]
QR.func = lambda A, mode="reduced": _flat_cat(linalg_qr(A, mode))


def _svd_invariants(A, full_matrices=True):
    U, S, Vh = linalg_svd(A, full_matrices)
    k = S.shape[-1]
    U, Vh = U[..., :k], Vh[..., :k, :]
    return _flat_cat((S, matmul(U, Vh), U * U, Vh * Vh))


SVD.func = _svd_invariants


def _svd_unique_part(vs, full_matrices):
    """Cotangents (of U, S, Vh) with zeros on what is not unique: with full_matrices, U's columns
    and Vh's rows past k = min(m, n) (any orthonormal completion; the rule ignores them, as
    PyTorch's). check --locate differences only the rest."""
    if not full_matrices:
        return vs
    gU, gS, gVh = (np.array(v, dtype=np.float64) for v in vs)
    k = gS.shape[-1]
    gU[..., k:] = 0.0
    gVh[..., k:, :] = 0.0
    return [gU, gS, gVh]


SVD.unique_part = _svd_unique_part


def _flat_cat(ts):
    from .shape import cat
    return cat([reshape(t, (-1,)) for t in ts], 0)


def _spd(A):
    """A positive-definite matrix made from any square A (the tests' Cholesky input): A A^T + n I."""
    n = A.shape[-1]
    return matmul(A, A.mT) + Tensor._make(n * np.eye(n))


# -- norms: vector_norm is the `norm` entry (LinalgVectorNormBackward0); matrix norms are
# composed of it, of the singular values and of amax/amin/sum, as PyTorch composes them -------
def _number_ord(ord):  # noqa: A002
    if isinstance(ord, (bool, str)) or not isinstance(ord, (int, float, np.integer, np.floating)):
        raise errors.EngineTypeError(f"linalg_vector_norm(): argument 'ord' (position 2) must be Number, not "
                                     f"{type(ord).__name__}")
    return float(ord)


@export("linalg.vector_norm", method=False, keywords=("ord", "dim", "keepdim"))
def linalg_vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):  # noqa: A002
    """linalg.vector_norm(x, ord=2, dim=None, keepdim=False): the ord-norm of x over dim (all elements by default)"""
    from .reduce import NORM, _red
    if not isinstance(x, Tensor):
        x = Tensor._make(np.asarray(x, dtype=np.float64))
    if dtype is not None:
        x = x.to(dtype)
    if x._data.dtype.kind not in "fc":
        raise errors.EngineRuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. "
                                        f"Got {_dtype_name(x)}")
    return _red(x, NORM, dim, keepdim, {"p": _number_ord(ord)})


def _two_dims(dim, ndim):
    if isinstance(dim, (int, np.integer)) or len(tuple(dim)) != 2:
        # what linalg.norm(A, 'fro', dim=0) says; matrix_norm itself refuses an int dim as a
        # TypeError (below)
        got = dim if isinstance(dim, (int, np.integer)) else " ".join(str(d) for d in dim)
        raise errors.EngineRuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got {got}")
    from ..tensor import wrap_dim
    d0, d1 = (wrap_dim(int(d), ndim) for d in dim)
    if d0 == d1:
        raise errors.EngineRuntimeError(f"linalg.matrix_norm: dims must be different. Got ({d0}, {d1})")
    return d0, d1


@export("linalg.matrix_norm", method=False, keywords=("ord", "dim", "keepdim"))
def linalg_matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None, _from_norm=False):  # noqa: A002
    """linalg.matrix_norm(A, ord='fro', dim=(-2, -1), keepdim=False): the 'fro', 'nuc', 1, -1, 2, -2, inf or -inf norm"""
    from .reduce import amax, amin, sum as _sum
    if not isinstance(A, Tensor):
        A = Tensor._make(np.asarray(A, dtype=np.float64))
    if isinstance(dim, (int, np.integer)) and not _from_norm:
        raise errors.EngineTypeError("linalg_matrix_norm() received an invalid combination of arguments - got "
                                     "(Tensor, dim=int), but expected one of:\n (Tensor input, Number ord, tuple of "
                                     "ints dim, bool keepdim, *, torch.dtype dtype)\n (Tensor input, str ord, tuple of "
                                     "ints dim, bool keepdim, *, torch.dtype dtype)")
    if A.ndim < 2:
        raise errors.EngineRuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    d0, d1 = _two_dims(dim, A.ndim)
    if dtype is not None:
        A = A.to(dtype)
    if ord == "fro":
        return linalg_vector_norm(A, 2, (d0, d1), keepdim)
    if ord in ("nuc", 2, -2):
        # as PyTorch: the two dims moved last (a PermuteBackward0 even when they are), reduced
        # with keepdim, and moved back
        from .shape import permute, unsqueeze
        perm = [d for d in range(A.ndim) if d not in (d0, d1)] + [d0, d1]
        S = linalg_svdvals(permute(A, *perm))
        r = (_sum if ord == "nuc" else amax if ord > 0 else amin)(S, -1, keepdim)
        if keepdim:
            r = unsqueeze(r, -1)
            return permute(r, *(int(i) for i in np.argsort(perm)))
        return r
    if ord in (1, -1, np.inf, -np.inf):
        red, keep = (d0, d1) if abs(ord) == 1 else (d1, d0)       # sum over `red`, max over `keep`
        s = linalg_vector_norm(A, 1, red, keepdim)
        return (amax if ord > 0 else amin)(s, keep - (1 if not keepdim and red < keep else 0), keepdim)
    raise errors.EngineRuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")


@export("linalg.norm", method=False, keywords=("ord", "dim", "keepdim"))
def linalg_norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):  # noqa: A002
    """linalg.norm(A, ord=None, dim=None, keepdim=False): vector_norm or matrix_norm, by dim and ord (as PyTorch)"""
    if not isinstance(A, Tensor):
        A = Tensor._make(np.asarray(A, dtype=np.float64))
    if isinstance(ord, str):                    # 'fro' and 'nuc' are matrix norms whatever dim says
        return linalg_matrix_norm(A, ord, (-2, -1) if dim is None else dim, keepdim, dtype=dtype, _from_norm=True)
    if dim is not None:
        dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
        if len(dims) == 1:
            return linalg_vector_norm(A, 2 if ord is None else ord, dims, keepdim, dtype=dtype)
        if len(dims) == 2:
            return linalg_matrix_norm(A, "fro" if ord is None else ord, dims, keepdim, dtype=dtype)
        raise errors.EngineRuntimeError(f"linalg.norm: If dim is specified, it must be of length 1 or 2. Got "
                                        f"{list(dims)}")
    if ord is None:
        return linalg_vector_norm(A, 2, None, keepdim, dtype=dtype)
    if A.ndim not in (1, 2):
        raise errors.EngineRuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be 1D "
                                        f"or 2D. Got {A.ndim}D.")
    if A.ndim == 2:
        return linalg_matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    return linalg_vector_norm(A, ord, None, keepdim, dtype=dtype)
