"""Ops that pick, move or sum elements along a dim or a diagonal: cumsum, flip, repeat, tril,
triu, trace, diag, gather, sort, topk, masked_fill; and einsum, composed of other ops.

Dims in rules count from the end (negative), so a cotangent with leading batch dims passes
through unchanged (vectorized Jacobians); picking ops share indexing's adjoint
(`xp.unindex`, a scatter-add), so their double backward is indexing again.
"""
import builtins as _builtins

from .. import _xp, errors as _errors
import numpy as np

from ..tensor import Tensor, wrap_dim
from ..grad_mode import OFF_DEFAULT, STATE
from ..graph import NODE_ATTRS, Node, producer as _producer, seed_attributes
from ._core import apply, apply1, defop, export, observed
from .reduce import _ReturnType, norm_dims


def _neg(dim, ndim):
    """dim counted from the end: -1 is the last."""
    return (dim % ndim) - ndim if ndim else dim


def _t(v):
    return v if isinstance(v, Tensor) else Tensor._make(np.asarray(v))


# -- cumsum, flip, repeat ----------------------------------------------------------------------
CUMSUM = defop("cumsum", lambda x, dim: np.cumsum(x, axis=dim),
               (lambda xp, g, out, x, dim: xp.flip(xp.cumsum(xp.flip(g, (dim,)), dim), (dim,)),),
               saves=('',), nodes="CumsumBackward0",
               samples=[(((4,),), {"dim": 0}), (((2, 3),), {"dim": 1}), (((2, 3, 2),), {"dim": 0})],
               doc="running sum along dim",
               formula='flip(cumsum(flip(grad, dim), dim), dim), the running sums taken from the end')
FLIP = defop("flip", lambda x, dims: np.flip(x, dims).copy(), (lambda xp, g, out, x, dims: xp.flip(g, dims),),
             saves=('',), nodes="FlipBackward0",
             samples=[(((4,),), {"dims": (0,)}), (((2, 3),), {"dims": (0, 1)}), (((2, 3),), {"dims": (1,)})],
             doc="x with the order of elements reversed along dims",
             formula='flip(grad, dims)')


def _repeat_vjp(xp, g, out, x, repeats, in_shape):
    # g: batch + (r0*s0, r1*s1, ...) -> batch + (r0, s0, r1, s1, ...), summed over the r's
    full = (1,) * (len(repeats) - len(in_shape)) + tuple(in_shape)
    nb = len(xp.shape(g)) - len(repeats)
    lead = tuple(xp.shape(g)[:nb])
    split = lead + tuple(v for r, s in zip(repeats, full) for v in (r, s))
    summed = xp.sum(xp.reshape(g, split), tuple(nb + 2 * i - len(split) for i in range(len(repeats))), False)
    return xp.reshape(summed, lead + tuple(in_shape))


REPEAT = defop("repeat", lambda x, repeats, in_shape: np.tile(x, repeats), (_repeat_vjp,),
               saves=('',), nodes="RepeatBackward0",
               samples=[(((3,),), {"repeats": (2,)}), (((2, 3),), {"repeats": (2, 1)}),
                        (((2,),), {"repeats": (3, 2)})],
               doc="x tiled `repeats` times along each dim (new leading dims when there are more repeats)",
               formula=("the sum of grad's tiles, one tile for each copy of x",))


@export("cumsum", op=CUMSUM, keywords=("dim",))
def cumsum(x, dim, *, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    return apply1(CUMSUM, x, {"dim": _neg(norm_dims(dim, x.ndim)[0], x.ndim) if x.ndim else 0})


@export("flip", op=FLIP, keywords=("dims",))
def flip(x, dims):
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return apply1(FLIP, x, {"dims": tuple(_neg(d, x.ndim) for d in norm_dims(dims, x.ndim))})


@export("repeat", op=REPEAT, function=False)
def repeat(x, *repeats):
    """x.repeat(2, 1): tile x (PyTorch's Tensor.repeat, not numpy's)."""
    if len(repeats) == 1 and isinstance(repeats[0], (tuple, list)):
        repeats = tuple(repeats[0])
    if len(repeats) < x.ndim:
        raise _errors.EngineRuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of "
                           "tensor")
    return apply1(REPEAT, x, {"repeats": tuple(int(r) for r in repeats), "in_shape": tuple(x.shape)})


# -- triangles, trace, diagonals ---------------------------------------------------------------
TRIL = defop("tril", lambda x, diagonal=0: np.tril(x, diagonal), (lambda xp, g, out, x, diagonal=0: xp.tril(g, diagonal),),
             saves=('',), nodes="TrilBackward0",
             samples=[(((3, 3),), {}), (((2, 3, 4),), {"diagonal": 1}), (((3, 2),), {"diagonal": -1})],
             doc="the lower triangle of the last two dims (zeros above diagonal)",
             formula='tril(grad, diagonal)')
TRIU = defop("triu", lambda x, diagonal=0: np.triu(x, diagonal), (lambda xp, g, out, x, diagonal=0: xp.triu(g, diagonal),),
             saves=('',), nodes="TriuBackward0",
             samples=[(((3, 3),), {}), (((2, 3, 4),), {"diagonal": 1}), (((3, 2),), {"diagonal": -1})],
             doc="the upper triangle of the last two dims (zeros below diagonal)",
             formula='triu(grad, diagonal)')
TRACE = defop("trace", lambda x: np.trace(x),
              (lambda xp, g, out, x: xp.expand_dims(g, (-1, -2)) * np.eye(*xp.shape(x)[-2:]),),
              saves=('x',), nodes="TraceBackward0", samples=[(((3, 3),), {}), (((2, 3),), {})],
              doc="the sum of the main diagonal of a matrix",
              formula=('grad on the diagonal of x, 0 elsewhere',))


def _diag_key(n, m, offset):
    """Index arrays of the offset diagonal of an n x m matrix."""
    rows = np.arange(max(0, -offset), min(n, m - offset))
    return rows, rows + offset


DIAG_EMBED = defop("diag_embed", lambda v, diagonal: np.diag(v, diagonal),
                   (lambda xp, g, out, v, diagonal: xp.index(g, (Ellipsis,) + _diag_key(
                       xp.shape(g)[-2], xp.shape(g)[-1], diagonal)),),
                   saves=('',), nodes="DiagEmbedBackward0",
                   samples=[(((3,),), {"diagonal": 0}), (((2,),), {"diagonal": 1})],
                   doc="a square matrix with v on its diagonal (diag of a vector)",
                   formula='diagonal(grad, diagonal)')
DIAGONAL = defop("diagonal", lambda x, diagonal: np.diagonal(x, diagonal).copy(),
                 (lambda xp, g, out, x, diagonal: xp.unindex(g, xp.shape(x)[-2:], _diag_key(
                     *xp.shape(x)[-2:], diagonal), 1, False),),
                 saves=('x',), nodes="DiagonalBackward0_copy",
                 samples=[(((3, 3),), {"diagonal": 0}), (((3, 4),), {"diagonal": 1}), (((3, 2),), {"diagonal": -1})],
                 doc="the diagonal of a matrix, as a vector (diag of a matrix)",
                 formula=('grad put back where it was read from in x, 0 elsewhere',))


@export("tril", op=TRIL, keywords=("diagonal",))
def tril(x, diagonal=0):
    if x.ndim < 2:
        raise _errors.EngineRuntimeError("tril: input tensor must have at least 2 dimensions")
    return apply1(TRIL, x, {"diagonal": int(diagonal)} if diagonal else {})


@export("triu", op=TRIU, keywords=("diagonal",))
def triu(x, diagonal=0):
    if x.ndim < 2:
        raise _errors.EngineRuntimeError("triu: input tensor must have at least 2 dimensions")
    return apply1(TRIU, x, {"diagonal": int(diagonal)} if diagonal else {})


@export("trace", op=TRACE)
def trace(x):
    if x.ndim != 2:
        raise _errors.EngineRuntimeError("trace: expected a matrix, but got tensor with dim " + str(x.ndim))
    return apply1(TRACE, x)


@export("diag", op=DIAG_EMBED, keywords=("diagonal",))
def diag(x, diagonal=0):
    """A vector -> the matrix with it on the diagonal; a matrix -> its diagonal."""
    if x.ndim == 1:
        return apply1(DIAG_EMBED, x, {"diagonal": int(diagonal)})
    if x.ndim == 2:
        return apply1(DIAGONAL, x, {"diagonal": int(diagonal)})
    raise _errors.EngineRuntimeError("diag(): Supports 1D or 2D tensors. Got " + f"{x.ndim}D")


DIAGONAL.func = lambda x, diagonal: diag(x, diagonal)


# -- gather, sort, topk: values picked along a dim --------------------------------------------
def _along(shape, dim, index):
    """The advanced-indexing key that picks index[..., i, ...] along dim (take_along_axis)."""
    key = list(np.ogrid[tuple(slice(s) for s in index.shape)])
    key[dim] = index
    return tuple(key)


def _pick_vjp(xp, g, out, x, key, in_shape):
    return xp.unindex(g, in_shape, key, len(in_shape), True)


GATHER = defop("gather", lambda x, key, in_shape: x[key], (_pick_vjp,), saves=('',), nodes="GatherBackward0",
               samples=[(((3, 4),), {"dim": 1, "index": np.array([[0, 1], [2, 2], [3, 0]])}),
                        (((3, 2),), {"dim": 0, "index": np.array([[0, 2], [1, 1]])})],
               doc="values of x at `index` along dim (out[i][j] = x[i][index[i][j]] for dim 1)",
               formula=('grad added back at the positions of x it was gathered from, 0 elsewhere (repeated '
                        'indices add up)',))
SORT = defop("sort", lambda x, key, in_shape: x[key], (_pick_vjp,), saves=('',), nodes="SortBackward0",
             samples=[(((5,),), {}), (((3, 4),), {"dim": 0}), (((3, 4),), {"dim": 1, "descending": True})],
             doc="values sorted along dim (sort returns values and indices)",
             formula=('grad put back where each value was before sorting',))
TOPK = defop("topk", lambda x, key, in_shape: x[key], (_pick_vjp,), saves=('',), nodes="TopkBackward0",
             samples=[(((5,),), {"k": 2}), (((3, 4),), {"k": 3, "dim": 0}), (((3, 4),), {"k": 2, "largest": False})],
             doc="the k largest (or smallest) values along dim, and their indices",
             formula=('grad put back at the positions of x the values were picked from, 0 elsewhere',))


def _index_tensor(index):
    idx = index._data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise _errors.EngineRuntimeError("gather(): Expected dtype int64 for index")
    return idx.astype(np.int64)


@export("gather", op=GATHER, keywords=("dim", "index"))
def gather(x, dim, index):
    idx = _index_tensor(index)
    if idx.ndim != x.ndim:
        raise _errors.EngineRuntimeError("Index tensor must have the same number of dimensions as input tensor")
    d = norm_dims(dim, x.ndim)[0] if x.ndim else 0
    return apply1(GATHER, x, {"key": _along(x.shape, d, idx), "in_shape": tuple(x.shape)})


def _picked(op, x, d, idx):
    values = apply1(op, x, {"key": _along(x.shape, d, idx), "in_shape": tuple(x.shape)})
    return values, Tensor._make(idx)


class _SortResult(_ReturnType):
    """torch.return_types.sort(values=..., indices=...)."""
    _name = "sort"


class _TopkResult(_ReturnType):
    """torch.return_types.topk(values=..., indices=...)."""
    _name = "topk"


@export("sort", op=SORT, keywords=("dim", "descending"))
def sort(x, dim=-1, descending=False, stable=False):
    """(values, indices) sorted along dim; the values carry the gradient."""
    if x.ndim == 0:
        return _SortResult(*_picked(SORT, x, 0, np.zeros((), np.int64)))
    d = norm_dims(dim, x.ndim)[0]
    data = x._data
    idx = np.argsort(-data if descending else data, axis=d, kind="stable")
    return _SortResult(*_picked(SORT, x, d, idx))


@export("topk", op=TOPK, keywords=("k", "dim", "largest", "sorted"))
def topk(x, k, dim=-1, largest=True, sorted=True):  # noqa: A002
    """(values, indices) of the k largest (largest=False: smallest) along dim."""
    d = norm_dims(dim, x.ndim)[0] if x.ndim else 0
    n = x.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise _errors.EngineRuntimeError("selected index k out of range")
    data = x._data if x.ndim else x._data.reshape(1)
    idx = np.take(np.argsort(-data if largest else data, axis=d, kind="stable"), np.arange(k), axis=d)
    return _TopkResult(*_picked(TOPK, x, d, idx))


@export("argsort", keywords=("dim", "descending"))
def argsort(x, dim=-1, descending=False, stable=False):
    return sort(x, dim, descending)[1]


@export("msort")
def msort(x):
    return sort(x, 0)[0]


GATHER.func = lambda x, dim, index: gather(x, dim, Tensor._make(index))
SORT.func = lambda x, dim=-1, descending=False: sort(x, dim, descending)[0]
TOPK.func = lambda x, k, dim=-1, largest=True: topk(x, k, dim, largest)[0]
REPEAT.func = lambda x, repeats: repeat(x, *repeats)
SORT.returns = TOPK.returns = "values, indices"


# -- masked_fill -------------------------------------------------------------------------------
MASKED_FILL = defop("masked_fill", lambda x, mask, value: np.where(mask, value, x).astype(x.dtype),
                    (lambda xp, g, out, x, mask, value: xp.where(mask, g * 0.0, g),),
                    saves=('',), nodes="MaskedFillBackward0",
                    samples=[(((2, 3),), {"mask": np.array([[True, False, True], [False, False, True]]),
                                          "value": 0.0}),
                             (((2, 3),), {"mask": np.array([True, False, False]), "value": -1.5})],
                    doc="x with `value` where mask is True",
                    formula='where(mask, 0, grad)')


@export("masked_fill", op=MASKED_FILL, function=True)
def masked_fill(x, mask, value):
    m = mask._data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise _errors.EngineRuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {m.dtype}")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise _errors.EngineRuntimeError("masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        value = value.item()
    m = np.broadcast_to(m, x.shape)
    return apply1(MASKED_FILL, x, {"mask": m, "value": float(value)})


MASKED_FILL.func = lambda x, mask, value: masked_fill(x, Tensor._make(mask), value)


# -- einsum, composed of unsqueeze/permute, mul and sum (its gradient is theirs) --------------
@export("einsum", method=False)
def einsum(equation, *operands):
    """einsum(equation, *operands): sums of products over the equation's indices ("ij,jk->ik").

    Composed of broadcast products and sums (PyTorch's node names differ: it records the bmm
    and view ops it lowers to)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str):
        raise _errors.EngineTypeError("einsum(): the first argument must be the equation, a string like "
                                      "'ij,j->i' (einsum('ij,j->i', W, x))")
    for i, c in enumerate(equation):
        if not (c.isascii() and c.isalpha()) and c not in ",->. ":
            raise _errors.EngineRuntimeError(f"einsum(): invalid subscript given at index {i} in the equation string, "
                                             "subscripts must be in [a-zA-Z]")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    for c in rhs:
        if c.isalpha() and c not in lhs:
            raise _errors.EngineRuntimeError(f"einsum(): output subscript {c} does not appear in the equation for any "
                                             "input operand")
        if c.isalpha() and rhs.count(c) > 1:
            raise _errors.EngineRuntimeError(f"einsum(): output subscript {c} appears more than once in the output")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise _errors.EngineRuntimeError("einsum(): more operands were provided than specified in the equation"
                           if len(operands) > len(terms) else
                           "einsum(): fewer operands were provided than specified in the equation")
    if "." in eq:
        raise _errors.EngineRuntimeError("einsum(): ellipsis (...) is not supported by the engine yet")
    letters = []
    for t, x in zip(terms, operands):
        if len(t) != x.ndim:
            raise _errors.EngineRuntimeError(f"einsum(): the number of subscripts in the equation ({len(t)}) does not match the "
                               f"number of dimensions ({x.ndim}) for operand {terms.index(t)} and no ellipsis was "
                               "given")
        for c in t:
            if c not in letters:
                letters.append(c)
    if not arrow:
        rhs = "".join(sorted(c for c in letters if lhs.count(c) == 1))
    sizes = {}
    prod = None
    for t, x in zip(terms, operands):
        x = _t(x)
        if len(set(t)) < len(t):
            raise _errors.EngineRuntimeError("einsum(): a subscript repeated within one operand (a diagonal) is not supported by "
                               "the engine yet")
        for c, s in zip(t, x.shape):
            if sizes.setdefault(c, s) != s and s != 1 and sizes[c] != 1:
                raise _errors.EngineRuntimeError(f"einsum(): operands do not broadcast with remapped shapes (original): "
                                   f"subscript {c} has size {s} for one operand and {sizes[c]} for another")
            sizes[c] = max(sizes[c], s)
        order = [t.index(c) for c in letters if c in t]
        x = x.permute(*order) if order != list(range(len(order))) else x
        shape = [x.shape[[c2 for c2 in letters if c2 in t].index(c)] if c in t else 1 for c in letters]
        x = x.reshape(shape)
        prod = x if prod is None else prod * x
    summed = tuple(i for i, c in enumerate(letters) if c not in rhs)
    out = prod.sum(summed) if summed else prod
    kept = [c for c in letters if c in rhs]
    perm = [kept.index(c) for c in rhs]
    return out.permute(*perm) if perm != list(range(len(perm))) else out


# -- splitting into pieces: one node with an output per piece, as PyTorch records them
# (SplitBackward0, SplitWithSizesBackward0, UnbindBackward0); its backward joins the pieces'
# gradients, zeros for pieces that got none ------------------------------------------------
@export("narrow", keywords=("dim", "start", "length"))
def narrow(x, dim, start, length):
    d = wrap_dim(dim, x.ndim)
    start = int(start) + (x.shape[d] if start < 0 else 0)
    if start < 0 or start + length > x.shape[d]:
        raise IndexError(f"start ({start}) + length ({length}) exceeds dimension size ({x.shape[d]}).")
    return x[(slice(None),) * d + (slice(start, start + int(length)),)]


class _PiecesBackward(Node):
    """The backward of split/chunk/unbind: one output per piece; the gradient of x is the
    pieces' gradients joined along the dim (a piece that got none contributes zeros). Dims count
    from the end, so batched cotangents (vectorized Jacobians) pass through."""

    batch_aware = True
    _stacked = False          # unbind: each piece lost the dim, so its gradient gets it back

    def apply(self, grads, xp, create_graph):
        k, ref = next((k, g) for k, g in enumerate(grads) if g is not None)
        nd = len(self._meta[k][0])
        batch = tuple(xp.shape(ref))[:len(xp.shape(ref)) - nd]
        dim = self._dim                  # counted from the end of x's dims: batch dims pass
        parts = []
        for g, (shape, dtype) in zip(grads, self._meta):
            if g is None:
                g = xp.const(np.zeros(batch + tuple(shape), dtype))
            parts.append(xp.expand_dims(g, dim) if self._stacked else g)
        return [xp.concatenate(parts, axis=dim)]

    # it saves no tensors (only shapes), so a second backward through it works, as in PyTorch

    def forward_arrays(self, x):
        """The pieces of array x this node's forward made (check --locate re-runs it)."""
        d = self._dim % x.ndim
        if self._stacked:
            return [np.take(x, i, axis=d) for i in range(x.shape[d])]
        bounds = np.cumsum([shape[d] for shape, _ in self._meta])[:-1]
        return np.split(x, bounds, axis=d)


class SplitBackward0(_PiecesBackward):
    pass


class SplitWithSizesBackward0(_PiecesBackward):
    pass


class UnbindBackward0(_PiecesBackward):
    _stacked = True


for _cls in (SplitBackward0, SplitWithSizesBackward0, UnbindBackward0):
    seed_attributes(_cls, NODE_ATTRS + ("_nrs", "_meta", "_dim", "_n_outputs"))


def _pieces(x, arrays, node_cls, d):
    """Tensors for the pieces (numpy views of x's data), under one node when x needs a gradient."""
    outs = tuple(Tensor._make(a) for a in arrays)
    if not (x._rg and STATE.enabled and x._data.dtype.kind in "fc"):
        if STATE.inference:
            for t in outs:
                t._inference = True
        return outs
    node = node_cls()
    node._next = (_producer(x),)
    if x._output_nr:
        node._nrs = (x._output_nr,)
    node._saved = ()
    node._dim = d
    node._n_outputs = len(outs)
    node._meta = [(a.shape, a.dtype) for a in arrays]
    if OFF_DEFAULT[0]:
        observed(node, (x,), None, tuple(arrays))
    for nr, t in enumerate(outs):
        t.grad_fn = node
        t._rg = True
        t._output_nr = nr
    return outs


@export("split", keywords=("split_size_or_sections", "dim"))
def split(x, split_size_or_sections, dim=0):
    """Pieces of split_size along dim (the last may be smaller), or of the given sizes."""
    d = wrap_dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [min(step, n - i) for i in range(0, n, step)] if step > 0 else [n]
        node_cls = SplitBackward0
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise _errors.EngineRuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size at "
                               f"dimension {d}), but got split_sizes={sizes}")
        node_cls = SplitWithSizesBackward0
    arrays, start = [], 0
    for s in sizes:
        arrays.append(x._data[(slice(None),) * d + (slice(start, start + s),)])
        start += s
    return _pieces(x, arrays, node_cls, d - x.ndim)


@export("chunk", keywords=("chunks", "dim"))
def chunk(x, chunks, dim=0):
    """At most `chunks` pieces of equal size along dim (the last may be smaller)."""
    n = x.shape[wrap_dim(dim, x.ndim)]
    return split(x, max(-(-n // int(chunks)), 1), dim)


@export("unbind", keywords=("dim",))
def unbind(x, dim=0):
    d = wrap_dim(dim, x.ndim)
    return _pieces(x, [x._data[(slice(None),) * d + (i,)] for i in range(x.shape[d])], UnbindBackward0, d - x.ndim)


# -- new tensors shaped by the call, typed like x (Tensor.new_zeros and friends) ---------------
def _like(x, dtype):
    from .. import _dtype
    return _dtype.to_numpy_dtype(dtype) if dtype is not None else x._data.dtype


def _new(arr, requires_grad):
    t = Tensor._make(arr)
    return t.requires_grad_(True) if requires_grad else t


def _sz(size):
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else tuple(size)


@export("new_zeros", function=False)
def new_zeros(x, *size, dtype=None, device=None, requires_grad=False):
    return _new(np.zeros(_sz(size), _like(x, dtype)), requires_grad)


@export("new_ones", function=False)
def new_ones(x, *size, dtype=None, device=None, requires_grad=False):
    return _new(np.ones(_sz(size), _like(x, dtype)), requires_grad)


@export("new_empty", function=False)
def new_empty(x, *size, dtype=None, device=None, requires_grad=False):
    return _new(np.zeros(_sz(size), _like(x, dtype)), requires_grad)


@export("new_full", function=False)
def new_full(x, size, fill_value, dtype=None, device=None, requires_grad=False):
    return _new(np.full(tuple(size), fill_value, _like(x, dtype)), requires_grad)


@export("new_tensor", function=False)
def new_tensor(x, data, dtype=None, device=None, requires_grad=False):
    src = data._data if isinstance(data, Tensor) else data
    return _new(np.array(src, dtype=_like(x, dtype)), requires_grad)


# -- roll, cumprod, index_select -------------------------------------------------------------
ROLL = defop("roll", lambda x, shifts, dims: np.roll(x, shifts, dims),
             (lambda xp, g, out, x, shifts, dims: xp.roll(g, tuple(-s for s in shifts), dims),),
             saves=('',), nodes="RollBackward0",
             samples=[(((5,),), {"shifts": 2}), (((3, 4),), {"shifts": (1, -1), "dims": (0, 1)})],
             doc="x shifted circularly by `shifts` along dims",
             formula='roll(grad, -shifts, dims)')


@export("roll", op=ROLL, keywords=("shifts", "dims"))
def roll(x, shifts, dims=None):
    if dims is None and x.ndim != 1:        # flattened, rolled, viewed back (as PyTorch records it)
        return roll(x.reshape(-1), shifts, 0).reshape(tuple(x.shape))
    dims = 0 if dims is None else dims
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return apply1(ROLL, x, {"shifts": shifts, "dims": tuple(_neg(wrap_dim(d, x.ndim), x.ndim) for d in dims)})


def _cumprod_vjp(xp, g, out, x, dim):
    # d out_j / d x_i = out_j / x_i for j >= i: sum_j>=i g_j out_j / x_i (inputs here are nonzero)
    return xp.flip(xp.cumsum(xp.flip(g * out, (dim,)), dim), (dim,)) / x


CUMPROD = defop("cumprod", lambda x, dim: np.cumprod(x, axis=dim), (_cumprod_vjp,), saves=('x out',),
                nodes="CumprodBackward0", domain=("nonzero",),
                samples=[(((4,),), {"dim": 0}), (((2, 3),), {"dim": 1})],
                doc="running product along dim (its gradient here assumes no zero in x)",
                formula=('flip(cumsum(flip(grad * result, dim), dim), dim) / x, x has no zero (the engine '
                         'refuses one)'))


@export("cumprod", op=CUMPROD, keywords=("dim",))
def cumprod(x, dim, *, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    if np.any(x._data == 0) and x.requires_grad:
        raise NotImplementedError("cumprod's gradient at an input equal to 0 is not in the engine yet")
    return apply1(CUMPROD, x, {"dim": _neg(wrap_dim(dim, x.ndim), x.ndim) if x.ndim else 0})


INDEX_SELECT = defop("index_select", lambda x, key, in_shape: x[key], (_pick_vjp,), saves=('',),
                     nodes="IndexSelectBackward0",
                     samples=[(((4, 3),), {"dim": 0, "index": np.array([0, 2, 2])}),
                              (((4, 3),), {"dim": 1, "index": np.array([1])})],
                     doc="the slices of x at `index` along dim",
                     formula=('grad added back at the selected slices of x, 0 elsewhere (repeated indices add up)',))


@export("index_select", op=INDEX_SELECT, keywords=("dim", "index"))
def index_select(x, dim, index):
    idx = _index_tensor(index).reshape(-1)
    d = wrap_dim(dim, x.ndim)
    key = (slice(None),) * d + (idx,)
    return apply1(INDEX_SELECT, x, {"key": key, "in_shape": tuple(x.shape)})


INDEX_SELECT.func = lambda x, dim, index: index_select(x, dim, Tensor._make(index))


@export("nonzero", keywords=("as_tuple",))
def nonzero(x, *, as_tuple=False):
    idx = np.nonzero(_t(x)._data)
    if as_tuple:
        return tuple(Tensor._make(i.astype(np.int64)) for i in idx)
    return Tensor._make(np.stack(idx, axis=-1).astype(np.int64) if idx else np.zeros((1, 0), np.int64))


@export("argwhere")
def argwhere(x):
    return nonzero(x)


@export("meshgrid", method=False)
def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids of the given 1-D tensors (indexing 'ij' or 'xy')."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    shape = [t.numel() for t in tensors]
    if indexing == "xy" and len(shape) >= 2:
        shape[0], shape[1] = shape[1], shape[0]
    out = []
    for k, t in enumerate(tensors):
        view = [1] * len(shape)
        pos = k if indexing != "xy" or k > 1 or len(shape) < 2 else 1 - k
        view[pos] = t.numel()
        out.append(t.reshape(view).expand(tuple(shape)))
    return tuple(out)


@export("select", keywords=("dim", "index"))
def select(x, dim, index):
    """x indexed by `index` along dim, that dim removed (SelectBackward0)."""
    d = wrap_dim(dim, x.ndim)
    return x[(slice(None),) * d + (int(index),)]


@export("movedim", "moveaxis", keywords=("source", "destination"))
def movedim(x, source, destination):
    """x with dims `source` moved to `destination` (a permute: PermuteBackward0)."""
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    if len(src) != len(dst):
        raise _errors.EngineRuntimeError(f"movedim: Invalid source or destination dims: source ({src} dims) should contain the "
                           f"same number of dims as destination ({dst} dims)")
    src = [wrap_dim(d, x.ndim) for d in src]
    dst = [wrap_dim(d, x.ndim) for d in dst]
    order = [d for d in range(x.ndim) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return x.permute(*order)


# -- all / any: bool reductions (no gradient) --------------------------------------------------
def _bool_reduce(np_fn, x, dim, keepdim):
    data = _t(x)._data
    if dim is None:
        return Tensor._make(np.asarray(np_fn(data)))
    return Tensor._make(np.asarray(np_fn(data, axis=wrap_dim(dim, data.ndim) if data.ndim else None,
                                         keepdims=keepdim)))


@export("all", keywords=("dim", "keepdim"))
def all(x, dim=None, keepdim=False):  # noqa: A001
    """Whether every element is nonzero (a bool tensor; along dim when given)."""
    return _bool_reduce(np.all, x, dim, keepdim)


@export("any", keywords=("dim", "keepdim"))
def any(x, dim=None, keepdim=False):  # noqa: A001
    """Whether some element is nonzero (a bool tensor; along dim when given)."""
    return _bool_reduce(np.any, x, dim, keepdim)


# -- index_add, scatter, scatter_add: values written along a dim (the in-place forms x.index_add_,
# x.scatter_, x.scatter_add_ write the result into x, as every in-place op does) ---------------
def _index_dtype_name(arr):
    from .._dtype import scalar_type_name
    return scalar_type_name(arr.dtype)


def _int_index(index, fn):
    idx = index._data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise _errors.EngineRuntimeError(f"{fn}(): Expected dtype int32/int64 for index" +
                                         (f" but got: {_index_dtype_name(idx)}" if fn == "index_add_" else ""))
    return idx.astype(np.int64)


def _in_bounds(idx, size, d):
    bad = idx[(idx >= size) | (idx < -size)] if idx.size else idx
    if bad.size:
        raise _errors.EngineRuntimeError(f"index {int(bad.reshape(-1)[0])} is out of bounds for dimension {d} with "
                                         f"size {size}")
    return np.where(idx < 0, idx + size, idx)


def _index_add_fwd(x, source, key, alpha):
    out = np.array(x, copy=True)
    np.add.at(out, key, source * alpha if alpha != 1 else source)
    return out


INDEX_ADD = defop("index_add", _index_add_fwd,
                  (lambda xp, g, out, x, source, key, alpha: g,
                   lambda xp, g, out, x, source, key, alpha:
                   xp.index(g, (Ellipsis,) + key[-1 - _first_array(key):]) * alpha if alpha != 1 else
                   xp.index(g, (Ellipsis,) + key[-1 - _first_array(key):])),
                  saves=("", ""), nodes="IndexAddBackward0",
                  samples=[(((4, 3), (2, 3)), {"dim": 0, "index": np.array([0, 2])}),
                           (((4, 3), (3, 3)), {"dim": 0, "index": np.array([1, 1, 3]), "alpha": 2.0}),
                           (((2, 4, 3), (2, 2, 3)), {"dim": 1, "index": np.array([3, 0])})],
                  doc="x with alpha * source added at `index` along dim (repeated indices add up)",
                  formula=('grad', 'alpha * grad[key], key the positions source was added to'))


def _first_array(key):
    """How many dims after the index array a key (slices..., index) leaves: picking with
    (Ellipsis, index, slice...) counts dims from the end, so batched cotangents pass."""
    return len(key) - 1 - next(i for i, k in enumerate(key) if isinstance(k, np.ndarray))


@export("index_add", op=INDEX_ADD, keywords=("dim", "index", "source", "alpha"))
def index_add(x, dim, index, source, *, alpha=1):
    idx = _int_index(index, "index_add_")
    if idx.ndim > 1:
        raise _errors.DimensionError(f"index_add_(): Index is supposed to be a vector, but got dim: {idx.ndim} with "
                                     f"type: {_index_dtype_name(idx)} and size: {list(idx.shape)}")
    if not isinstance(source, Tensor):
        source = _t(np.asarray(source, dtype=x._data.dtype))
    d = wrap_dim(dim, x.ndim)
    n_src = source.shape[d] if source.ndim else 1
    if idx.size != n_src:
        raise _errors.EngineRuntimeError(f"index_add_(): Number of indices ({idx.size}) should be equal to "
                                         f"source.size(dim): ({n_src}), for dim: {d}")
    if source.ndim != x.ndim or _builtins.any(a != b for k, (a, b) in enumerate(zip(x.shape, source.shape)) if k != d):
        raise _errors.EngineRuntimeError(f"source tensor shape must match self tensor shape, excluding the specified "
                                         f"dimension. Got self.shape = {list(x.shape)} source.shape = "
                                         f"{list(source.shape)}")
    if source._data.dtype != x._data.dtype:
        raise _errors.EngineRuntimeError(f"index_add_(): self ({_index_dtype_name(x._data)}) and source "
                                         f"({_index_dtype_name(source._data)}) must have the same scalar type")
    idx = _in_bounds(idx.reshape(-1), x.shape[d] if x.ndim else 1, d)
    key = (slice(None),) * d + (idx,) + (slice(None),) * (x.ndim - d - 1)
    return apply(INDEX_ADD, (x, source), {"key": key, "alpha": alpha})


@export("index_add_", function=False)
def index_add_(x, dim, index, source, *, alpha=1):
    return x._inplace(lambda t, s: index_add(t, dim, index, s, alpha=alpha), source)


def _scatter_key(x, dim, index, src, fn):
    """The key writing src[:index.shape] at index along dim, with PyTorch's checks."""
    idx = _int_index(index, fn)
    if idx.ndim != x.ndim:
        raise _errors.EngineRuntimeError("Index tensor must have the same number of dimensions as self tensor")
    d = wrap_dim(dim, x.ndim)
    src_shape = tuple(src.shape) if isinstance(src, Tensor) else None
    if _builtins.any(s > x.shape[k] for k, s in enumerate(idx.shape) if k != d) or \
            (src_shape is not None and _builtins.any(s > src_shape[k] for k, s in enumerate(idx.shape))):
        tail = f" and to be no larger size than src {list(src_shape)}" if src_shape is not None else ""
        raise _errors.EngineRuntimeError(f"Expected index {list(idx.shape)} to be no larger than self {list(x.shape)} "
                                         f"apart from dimension {d}{tail}")
    idx = _in_bounds(idx, x.shape[d], d)
    key = _along(x.shape, d, idx)
    cut = tuple(slice(0, s) for s in idx.shape)
    return key, cut


def _scatter_src_vjp(name, xp, g, key, src_shape):
    """src's gradient: g at the written positions. PyTorch 2.13 returns that in index's shape and
    its engine refuses it when src is larger than index; the engine raises the same error
    (a gradient PyTorch cannot give would make code pass here and fail there)."""
    picked = xp.index(g, (Ellipsis,) + key)
    got = tuple(np.broadcast_shapes(*(k.shape for k in key))) if key else ()
    if got != tuple(src_shape):
        raise _errors.EngineRuntimeError(f"Function {name} returned an invalid gradient at index 1 - got {list(got)} "
                                         f"but expected shape compatible with {list(src_shape)}")
    return picked


def _scatter_fwd(x, src, key, cut, src_shape, mask):
    out = np.array(x, copy=True)
    out[key] = src[cut]
    return out


def _scatter_add_fwd(x, src, key, cut, src_shape):
    out = np.array(x, copy=True)
    np.add.at(out, key, src[cut])
    return out


# scatter: the written positions take src, so x's gradient is zero there (mask); with repeated
# indices one write wins and the gradient of src goes to every one of them (as in PyTorch)
SCATTER = defop("scatter", _scatter_fwd,
                (lambda xp, g, out, x, src, key, cut, src_shape, mask: xp.where(mask, g * 0.0, g),
                 lambda xp, g, out, x, src, key, cut, src_shape, mask: _scatter_src_vjp("ScatterBackward0", xp, g, key,
                                                                                        src_shape)),
                saves=("", ""), nodes="ScatterBackward0",
                # no index written twice, also once the tests tile the samples (a size-1 dim is not
                # tiled): which of two writes wins is unspecified, in PyTorch too
                samples=[(((4, 3), (1, 3)), {"dim": 0, "index": np.array([[0, 2, 3]])}),
                         (((3, 4), (3, 1)), {"dim": 1, "index": np.array([[3], [0], [2]])}),
                         (((2, 3, 2), (2, 1, 2)), {"dim": -2, "index": np.array([[[2, 0]], [[1, 1]]])})],
                doc="x with src written at `index` along dim (out[index[i][j]][j] = src[i][j] for dim 0)",
                formula=('where(mask, 0, grad), mask where src was written',
                         'grad[key], key the positions src was written to'))
SCATTER_VALUE = defop("scatter_value", lambda x, key, mask, value: _scatter_value_fwd(x, key, value),
                      (lambda xp, g, out, x, key, mask, value: xp.where(mask, g * 0.0, g),),
                      saves=("",), nodes="ScatterBackward1",
                      samples=[(((4, 3),), {"dim": 0, "index": np.array([[0, 1, 2], [3, 0, 1]]), "value": 1.5})],
                      doc="x with the number `value` written at `index` along dim",
                      formula='where(mask, 0, grad), mask where value was written')
SCATTER_ADD = defop("scatter_add", _scatter_add_fwd,
                    (lambda xp, g, out, x, src, key, cut, src_shape: g,
                     lambda xp, g, out, x, src, key, cut, src_shape: _scatter_src_vjp("ScatterAddBackward0", xp, g, key,
                                                                                      src_shape)),
                    saves=("", ""), nodes="ScatterAddBackward0",
                    samples=[(((4, 3), (2, 3)), {"dim": 0, "index": np.array([[0, 1, 2], [0, 1, 2]])}),
                             (((3, 4), (3, 2)), {"dim": 1, "index": np.array([[0, 0], [1, 2], [3, 3]])})],
                    doc="x with src added at `index` along dim (repeated indices add up)",
                    formula=('grad', 'grad[key], key the positions src was added to'))


def _scatter_value_fwd(x, key, value):
    out = np.array(x, copy=True)
    out[key] = value
    return out


def _mask(shape, key):
    m = np.zeros(shape, bool)
    m[key] = True
    return m


@export("scatter", op=SCATTER, keywords=("dim", "index", "src", "value", "reduce"))
def scatter(x, dim, index, src=None, value=None, *, reduce=None):
    """scatter(x, dim, index, src) or scatter(x, dim, index, value=number): x with src (or value) at index"""
    if reduce is not None:
        raise NotImplementedError("scatter(reduce=...) is not in the engine yet; use scatter_add (or "
                                  "scatter_reduce in PyTorch)")
    if src is None and value is None:
        raise _errors.EngineTypeError("scatter() missing 1 required argument: 'src' or 'value'")
    if src is not None and not isinstance(src, Tensor):
        value, src = src, None
    if src is None:
        key, _ = _scatter_key(x, dim, index, None, "scatter")
        v = value.item() if isinstance(value, Tensor) else value
        return apply1(SCATTER_VALUE, x, {"key": key, "mask": _mask(x.shape, key), "value": v})
    if src._data.dtype != x._data.dtype:
        raise _errors.EngineRuntimeError("scatter(): Expected self.dtype to be equal to src.dtype")
    key, cut = _scatter_key(x, dim, index, src, "scatter")
    return apply(SCATTER, (x, src), {"key": key, "cut": cut, "src_shape": tuple(src.shape),
                                     "mask": _mask(x.shape, key)})


@export("scatter_add", op=SCATTER_ADD, keywords=("dim", "index", "src"))
def scatter_add(x, dim, index, src):
    if not isinstance(src, Tensor):
        src = _t(np.asarray(src, dtype=x._data.dtype))
    if src._data.dtype != x._data.dtype:
        raise _errors.EngineRuntimeError("scatter(): Expected self.dtype to be equal to src.dtype")
    key, cut = _scatter_key(x, dim, index, src, "scatter")
    return apply(SCATTER_ADD, (x, src), {"key": key, "cut": cut, "src_shape": tuple(src.shape)})


# -- scatter_reduce: src reduced into x at index along dim (sum, prod, mean, amax, amin), with or
# without x's own values in the reduction; the rules are PyTorch's scatter_reduce_backward ---------
_REDUCE_AT = {"sum": np.add, "mean": np.add, "prod": np.multiply, "amax": np.maximum, "amin": np.minimum}
_NEUTRAL = {"sum": 0.0, "mean": 0.0, "prod": 1.0, "amax": -np.inf, "amin": np.inf}


def _scatter_reduce_np(x, s, key, reduce, include_self, mask, count):
    """The reduction on arrays: s is src cut to index's shape."""
    out = np.array(x, copy=True) if include_self else np.where(mask, _NEUTRAL[reduce], x).astype(x.dtype)
    _REDUCE_AT[reduce].at(out, key, s)
    return out / count if reduce == "mean" else out


def _scatter_reduce_fwd(x, src, key, cut, src_shape, reduce, include_self, mask, count):
    return _scatter_reduce_np(x, src[cut], key, reduce, include_self, mask, count)


def _extreme_weights(xp, out, x, src, key, cut):
    """amax/amin: the gradient is shared evenly by every value equal to the result."""
    outr, sr = xp.raw(out), xp.raw(src)[cut]
    self_is = (xp.raw(x) == outr).astype(outr.dtype)
    src_is = (sr == outr[key]).astype(outr.dtype)
    n = self_is.copy()
    np.add.at(n, key, src_is)
    return self_is, src_is, n


def _scatter_reduce_self_vjp(xp, g, out, x, src, key, cut, src_shape, reduce, include_self, mask, count):
    if reduce == "sum":
        gs = g
    elif reduce == "mean":
        gs = g / count
    elif reduce in ("amax", "amin"):
        self_is, _, n = _extreme_weights(xp, out, x, src, key, cut)
        gs = g * (self_is / n)
    else:
        gs = g * _prod_self_factor(xp, x, src, key, cut, include_self, mask, count)
    return gs if include_self else xp.where(mask, g * 0.0, gs)


def _scatter_reduce_src_vjp(xp, g, out, x, src, key, cut, src_shape, reduce, include_self, mask, count):
    name = "ScatterReduceBackward0"
    if reduce == "sum":
        return _scatter_src_vjp(name, xp, g, key, src_shape)
    if reduce == "mean":
        return _scatter_src_vjp(name, xp, g / count, key, src_shape)
    if reduce in ("amax", "amin"):
        _, src_is, n = _extreme_weights(xp, out, x, src, key, cut)
        return _scatter_src_vjp(name, xp, g * (1.0 / n), key, src_shape) * src_is
    _no_prod_double_backward(xp)
    xr, outr, sr = xp.raw(x), xp.raw(out), xp.raw(src)[cut]
    src_zero = sr == 0
    n_zero = np.zeros(xr.shape)                     # zeros of src reduced into each position
    np.add.at(n_zero, key, src_zero)
    single = src_zero & (n_zero[key] == 1)          # the only zero among its position's factors
    others = _scatter_reduce_np(xr, np.where(single, 1.0, sr), key, "prod", include_self, mask, count)
    picked = _scatter_src_vjp(name, xp, g, key, src_shape)
    return xp.where(single, picked * others[key], picked * (outr[key] / np.where(src_zero, 1.0, sr)))


def _prod_self_factor(xp, x, src, key, cut, include_self, mask, count):
    """d out / d x for prod: the product of the other factors (x's zeros taken as 1)."""
    _no_prod_double_backward(xp)
    xr = xp.raw(x)
    masked = np.where(xr == 0, 1.0, xr)
    return _scatter_reduce_np(masked, xp.raw(src)[cut], key, "prod", include_self, mask, count) / masked


def _no_prod_double_backward(xp):
    if xp is not _xp.NUMPY:
        raise NotImplementedError("the engine has no double backward for scatter_reduce(reduce='prod') yet "
                                  "(its first derivative is PyTorch's)")


SCATTER_REDUCE = defop("scatter_reduce", _scatter_reduce_fwd, (_scatter_reduce_self_vjp, _scatter_reduce_src_vjp),
                       saves=("x src out", "x src out"), nodes="ScatterReduceBackward0",
                       samples=[(((4, 3), (3, 3)), {"dim": 0, "index": np.array([[0, 1, 2], [0, 1, 2], [3, 1, 0]]),
                                                    "reduce": r, "include_self": inc})
                                for r in ("sum", "prod", "mean", "amax", "amin") for inc in (True, False)]
                       + [(((3, 4), (3, 2)), {"dim": 1, "index": np.array([[0, 0], [1, 2], [3, 3]]),
                                              "reduce": "amax", "include_self": False})],
                       doc="x with src reduced in at `index` along dim (sum, prod, mean, amax or amin)",
                       formula=("by reduce: sum passes grad, mean grad / count, prod grad times the other "
                                "factors, amax and amin share grad among the values equal to result; 0 where "
                                "src replaced x (include_self False)",
                                "by reduce: sum grad[key], mean (grad / count)[key], prod grad[key] times the "
                                "other factors, amax and amin grad[key] shared among the values equal to "
                                "result; key the positions src went to"))


@export("scatter_reduce", op=SCATTER_REDUCE, keywords=("dim", "index", "src", "reduce", "include_self"))
def scatter_reduce(x, dim, index, src, reduce, *, include_self=True):
    """x.scatter_reduce(dim, index, src, reduce, include_self=True), as PyTorch: reduce is
    'sum', 'prod', 'mean', 'amax' or 'amin'."""
    if reduce not in _REDUCE_AT:
        raise _errors.EngineRuntimeError("reduce argument must be either sum, prod, mean, amax or amin, got "
                                         f"{reduce}")
    if not isinstance(src, Tensor):
        src = _t(np.asarray(src, dtype=x._data.dtype))
    if src._data.dtype != x._data.dtype:
        raise _errors.EngineRuntimeError("scatter(): Expected self.dtype to be equal to src.dtype")
    key, cut = _scatter_key(x, dim, index, src, "scatter")
    mask = _mask(x.shape, key)
    count = 1.0
    if reduce == "mean":
        count = np.full(x.shape, 1.0 if include_self else 0.0)
        np.add.at(count, key, 1.0)
        count[count == 0] = 1.0
    return apply(SCATTER_REDUCE, (x, src), {"key": key, "cut": cut, "src_shape": tuple(src.shape),
                                            "reduce": reduce, "include_self": bool(include_self),
                                            "mask": mask, "count": count})


@export("scatter_reduce_", function=False)
def scatter_reduce_(x, dim, index, src, reduce, *, include_self=True):
    return x._inplace(lambda t, s: scatter_reduce(t, dim, index, s, reduce, include_self=include_self), src)


@export("scatter_", function=False)
def scatter_(x, dim, index, src=None, value=None, *, reduce=None):
    if isinstance(src, Tensor):
        return x._inplace(lambda t, s: scatter(t, dim, index, s, reduce=reduce), src)
    return x._inplace(lambda t: scatter(t, dim, index, src, value, reduce=reduce))


@export("scatter_add_", function=False)
def scatter_add_(x, dim, index, src):
    return x._inplace(lambda t, s: scatter_add(t, dim, index, s), src)


INDEX_ADD.func = lambda x, source, dim, index, alpha=1: index_add(x, dim, Tensor._make(index), source, alpha=alpha)
SCATTER.func = lambda x, src, dim, index: scatter(x, dim, Tensor._make(index), src)
SCATTER_VALUE.func = lambda x, dim, index, value: scatter(x, dim, Tensor._make(index), value=value)
SCATTER_ADD.func = lambda x, src, dim, index: scatter_add(x, dim, Tensor._make(index), src)
SCATTER_REDUCE.func = lambda x, src, dim, index, reduce, include_self=True: scatter_reduce(
    x, dim, Tensor._make(index), src, reduce, include_self=include_self)


# -- unfold: windows of `size` every `step` along dim, as a new last dim (Tensor.unfold) --------
def _unfold_fwd(x, key, d, in_shape):
    return np.moveaxis(x[key], d + 1, -1)


def _unfold_vjp(xp, g, out, x, key, d, in_shape):
    n = len(in_shape)
    nd = len(xp.shape(g))
    pos = nd - (n - d)                  # where the window's elements go back, counted from the end
    perm = list(range(nd - 1))
    perm.insert(pos, nd - 1)
    return xp.unindex(xp.transpose(g, tuple(perm)), in_shape, key, n + 1, True)


UNFOLD = defop("unfold", _unfold_fwd, (_unfold_vjp,), saves=("",), nodes="UnfoldBackward0",
               samples=[(((5,),), {"dimension": 0, "size": 2, "step": 1}),
                        (((4, 3),), {"dimension": 0, "size": 2, "step": 2}),
                        (((2, 5, 3),), {"dimension": 1, "size": 3, "step": 1}),
                        (((2, 3, 4),), {"dimension": -1, "size": 4, "step": 3})],
               doc="x.unfold(dim, size, step): the windows of `size` elements every `step` along dim, as a new last dim",
               formula=("each window's grad added back at the positions it was taken from (overlaps add up)",))


@export("unfold", op=UNFOLD, function=False)
def unfold(x, dimension, size, step):
    d = wrap_dim(dimension, x.ndim)
    n = x.shape[d] if x.ndim else 1
    if size > n:
        raise _errors.EngineRuntimeError(f"maximum size for tensor at dimension {d} is {n} but size is {size}")
    if step <= 0:
        raise _errors.EngineRuntimeError(f"step is {step} but must be > 0")
    if x.ndim == 0:
        raise NotImplementedError("unfold of a 0-d tensor is not in the engine yet")
    idx = np.arange((n - size) // step + 1)[:, None] * step + np.arange(size)[None, :]
    key = (slice(None),) * d + (idx,)
    return apply1(UNFOLD, x, {"key": key, "d": d, "in_shape": tuple(x.shape)})
