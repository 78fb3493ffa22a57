"""Reductions: sum mean prod max min amax amin var std logsumexp norm, and softmax/log_softmax.

Dims are normalised to negative numbers (counted from the end) before they reach a rule, so the
rules work unchanged on cotangents with leading batch dims. `_unreduce` puts reduced dims back
as size 1; the backward loop expands them to the input's shape.
"""
import builtins

import numpy as np

from .. import errors
from ..tensor import Tensor, wrap_dim
from ._core import apply1, defop, export
from .elementwise import maximum, minimum

SHAPES = [(2,), (3, 2), (2, 3, 4)]


def norm_dims(dim, ndim):
    """dim (None, int, or sequence) -> sorted tuple of negative dims; None means every dim."""
    if dim is None:
        return tuple(range(-ndim, 0))
    if isinstance(dim, (list, tuple)):
        if len(dim) == 0:
            return tuple(range(-ndim, 0))
        wrapped = [wrap_dim(d, ndim) for d in dim]
        for k, d in enumerate(wrapped):
            if d in wrapped[:k]:
                raise errors.EngineRuntimeError(f"dim {d} appears multiple times in the list of dims")
        dims = tuple(sorted(d - builtins.max(ndim, 1) for d in wrapped))
    else:
        dims = (wrap_dim(dim, ndim) - builtins.max(ndim, 1),)
    if ndim == 0:
        return ()
    return dims


def _unreduce(xp, g, dims, keepdim):
    return g if keepdim or not dims else xp.expand_dims(g, dims)


def _count(shape, dims):
    n = 1
    for d in dims:
        n *= shape[d]
    return n


def _samples(extra=()):
    out = [((s,), {}) for s in SHAPES]
    out += [(((3, 2),), {"dim": 0}), (((2, 3, 4),), {"dim": (0, 2), "keepdim": True}),
            (((2, 3),), {"dim": -1})]
    return out + list(extra)


# -- sum / mean --------------------------------------------------------------------------------
SUM = defop("sum", lambda x, dims, keepdim: np.sum(x, axis=dims, keepdims=keepdim),
            (lambda xp, g, out, x, dims, keepdim: _unreduce(xp, g, dims, keepdim),),
            saves=('',), nodes=("SumBackward0", "SumBackward1"), samples=_samples([(((),), {})]),
            doc="sum over dim (all dims by default)",
            formula='grad, copied to every summed element')
MEAN = defop("mean", lambda x, dims, keepdim, n: np.mean(x, axis=dims, keepdims=keepdim),
             (lambda xp, g, out, x, dims, keepdim, n: _unreduce(xp, g, dims, keepdim) / n,),
             saves=('',), nodes=("MeanBackward0", "MeanBackward1"), samples=_samples([(((),), {})]),
             doc="mean over dim (all dims by default)",
             formula='grad / n, copied to every averaged element')


def _exclusive_prod(x, axis):
    """Product of every other element along axis (no division, so zeros are handled)."""
    x = np.moveaxis(x, axis, -1)
    ones = np.ones(x.shape[:-1] + (1,), dtype=x.dtype)
    left = np.cumprod(np.concatenate([ones, x[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, x[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return np.moveaxis(left * right, -1, axis)


def _prod_vjp(xp, g, out, x, dims, keepdim):
    gk = _unreduce(xp, g, dims, keepdim)
    xr = xp.raw(x)
    if not (xr == 0).any():
        return gk * (_unreduce(xp, out, dims, keepdim) / x)
    if isinstance(x, Tensor):
        raise errors.MissingDerivativeError("double backward of prod with a zero input is not implemented")
    if len(dims) == 1:
        others = _exclusive_prod(xr, dims[0])
    else:
        others = _exclusive_prod(xr.reshape(-1), 0).reshape(xr.shape)
    return gk * others


PROD = defop("prod", lambda x, dims, keepdim: np.prod(x, axis=dims, keepdims=keepdim), (_prod_vjp,),
             saves=('x out',), nodes=("ProdBackward0", "ProdBackward1"), domain=("nonzero",),
             samples=[(((2,),), {}), (((3, 2),), {}), (((3, 2),), {"dim": 0}),
                      (((2, 3),), {"dim": 1, "keepdim": True})],
             doc="product over one dim (all dims by default)",
             formula='grad * result / x, or where x holds a zero: grad times the product of the other elements')


# -- max / min / amax / amin -------------------------------------------------------------------
def _even_vjp(xp, g, out, x, dims, keepdim):
    # ties share the gradient evenly (PyTorch's evenly_distribute_backward / amax's backward)
    outk = xp.raw(out) if keepdim else np.expand_dims(xp.raw(out), dims)
    mask = xp.raw(x) == outk
    count = mask.sum(axis=dims, keepdims=True)
    return _unreduce(xp, g, dims, keepdim) * (mask / count)


def _select_vjp(xp, g, out, x, dims, keepdim, idx):
    # max(x, dim): the whole gradient goes to the index returned (PyTorch's
    # value_selecting_reduction_backward), not shared among ties
    d = dims[0]
    n = np.shape(xp.raw(x))[d]
    shape = [1] * np.ndim(idx)
    shape[d] = n
    onehot = np.arange(n).reshape(shape) == idx
    return _unreduce(xp, g, dims, keepdim) * onehot


def _take(x, dims, keepdim, idx):
    v = np.take_along_axis(x, idx, axis=dims[0])
    return v if keepdim else np.squeeze(v, axis=dims[0])


def _tie_gap(x, dims=None, dim=None, **_):
    """Distance between the two largest (and two smallest) values along dims: ties are kinks."""
    if x.ndim == 0 or x.size == 0:          # nothing to tie (an empty input: reshape(-1) cannot size it)
        return []
    if dims is None:
        dims = norm_dims(dim, x.ndim)
    moved = np.moveaxis(x, [d % x.ndim for d in dims], list(range(-len(dims), 0)))
    flat = np.sort(moved.reshape(moved.shape[:moved.ndim - len(dims)] + (-1,)), axis=-1)
    if flat.shape[-1] < 2:
        return []
    return [flat[..., -1] - flat[..., -2], flat[..., 1] - flat[..., 0]]


_RED_SAMPLES = [(((4,),), {}), (((3, 2),), {}), (((3, 2),), {"dim": 0}),
                (((2, 3, 4),), {"dim": -1, "keepdim": True})]
MAX_ALL = defop("max", lambda x, dims, keepdim: np.max(x, axis=dims, keepdims=keepdim), (_even_vjp,),
                saves=('x out',), nodes="MaxBackward1", samples=_RED_SAMPLES[:2], kinks=_tie_gap,
                doc="the largest element; max(x, dim) gives (values, indices)",
                formula='where(x == result, grad / sum(x == result, dims), 0), ties share grad evenly')
MIN_ALL = defop("min", lambda x, dims, keepdim: np.min(x, axis=dims, keepdims=keepdim), (_even_vjp,),
                saves=('x out',), nodes="MinBackward1", samples=_RED_SAMPLES[:2], kinks=_tie_gap,
                doc="the smallest element; min(x, dim) gives (values, indices)",
                formula='where(x == result, grad / sum(x == result, dims), 0), ties share grad evenly')
MAX_DIM = defop("max_dim", _take, (_select_vjp,), saves=('x',), nodes="MaxBackward0", kinks=_tie_gap,
                samples=[], doc="values of max along a dim (internal: max(x, dim))",
                formula=('grad at the index max returned along the dim, 0 elsewhere (that one index, even among '
                         'ties)',))
MIN_DIM = defop("min_dim", _take, (_select_vjp,), saves=('x',), nodes="MinBackward0", kinks=_tie_gap,
                samples=[], doc="values of min along a dim (internal: min(x, dim))",
                formula=('grad at the index min returned along the dim, 0 elsewhere (that one index, even among '
                         'ties)',))
AMAX = defop("amax", lambda x, dims, keepdim: np.max(x, axis=dims, keepdims=keepdim), (_even_vjp,),
             saves=('x out',), nodes="AmaxBackward0", samples=_RED_SAMPLES, kinks=_tie_gap, doc="max over dims; ties share the gradient",
             formula='where(x == result, grad / sum(x == result, dims), 0), ties share grad evenly')
AMIN = defop("amin", lambda x, dims, keepdim: np.min(x, axis=dims, keepdims=keepdim), (_even_vjp,),
             saves=('x out',), nodes="AminBackward0", samples=_RED_SAMPLES, kinks=_tie_gap, doc="min over dims; ties share the gradient",
             formula='where(x == result, grad / sum(x == result, dims), 0), ties share grad evenly')


# -- var / std / logsumexp / norm --------------------------------------------------------------
def _var_vjp(xp, g, out, x, dims, keepdim, correction, n):
    centered = x - xp.mean(x, dims, True)
    return _unreduce(xp, g, dims, keepdim) * centered * (2.0 / (n - correction))


def _std_vjp(xp, g, out, x, dims, keepdim, correction, n):
    centered = x - xp.mean(x, dims, True)
    return _unreduce(xp, g, dims, keepdim) * centered / (_unreduce(xp, out, dims, keepdim) * (n - correction))


VAR = defop("var", lambda x, dims, keepdim, correction, n: np.var(x, axis=dims, ddof=correction, keepdims=keepdim),
            (_var_vjp,), saves=('x',), nodes="VarBackward0", samples=_samples(), doc="variance (correction=1 by default)",
            formula='2 * grad * (x - mean(x, dims)) / (n - correction)')
STD = defop("std", lambda x, dims, keepdim, correction, n: np.std(x, axis=dims, ddof=correction, keepdims=keepdim),
            (_std_vjp,), saves=('x out',), nodes="StdBackward0", samples=_samples(), doc="standard deviation (correction=1)",
            formula='grad * (x - mean(x, dims)) / ((n - correction) * result)')


def _logsumexp(x, dims, keepdim):
    m = np.max(x, axis=dims, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    r = np.log(np.sum(np.exp(x - m), axis=dims, keepdims=True)) + m
    return r if keepdim else np.squeeze(r, axis=dims)


LOGSUMEXP = defop("logsumexp", _logsumexp,
                  (lambda xp, g, out, x, dims, keepdim:
                   _unreduce(xp, g, dims, keepdim) * xp.exp(x - _unreduce(xp, out, dims, keepdim)),),
                  saves=('x out',), nodes="LogsumexpBackward0", samples=_samples(),
                  doc="log(sum(exp(x))) over dim, computed stably",
                  formula='grad * exp(x - result)')


def _norm(x, dims, keepdim, p):
    a = np.abs(x)
    if p == 2:
        return np.sqrt(np.sum(a * a, axis=dims, keepdims=keepdim))
    if p == np.inf:
        return np.max(a, axis=dims, keepdims=keepdim)
    if p == -np.inf:
        return np.min(a, axis=dims, keepdims=keepdim)
    if p == 0:                                   # the number of nonzero elements
        return np.sum(a != 0, axis=dims, keepdims=keepdim).astype(x.dtype)
    if p == 1:
        return np.sum(a, axis=dims, keepdims=keepdim)
    return np.sum(a ** p, axis=dims, keepdims=keepdim) ** (1.0 / p)


def _norm_vjp(xp, g, out, x, dims, keepdim, p):
    gk = _unreduce(xp, g, dims, keepdim)
    outk = _unreduce(xp, out, dims, keepdim)
    xr = xp.raw(x)
    if p == 1:
        return gk * np.sign(xr)
    if p == 0:                                   # a count: no gradient reaches x (PyTorch's .grad stays None)
        return None
    if p == np.inf or p == -np.inf:              # ties share the gradient (PyTorch's amax rule)
        mask = np.abs(xr) == xp.raw(outk)
        return gk * (np.sign(xr) * mask / mask.sum(axis=dims, keepdims=True))
    # the gradient where the norm is 0 is taken as 0 (PyTorch masks it the same way)
    zero = xp.raw(outk) == 0
    safe = xp.where(zero, 1.0, outk)
    if p == 2:
        return xp.where(zero, 0.0, gk * x / safe)
    return xp.where(zero, 0.0, gk * x * xp.abs(x) ** (p - 2) / safe ** (p - 1))


NORM = defop("norm", _norm, (_norm_vjp,), saves=('x out',), nodes="LinalgVectorNormBackward0", domain=("kinkfree",),
             samples=_samples([(((3,),), {"p": 1}), (((2, 3),), {"p": 3, "dim": 1}),
                               (((2, 3),), {"p": -np.inf, "dim": 1}), (((4,),), {"p": 0.5}),
                               (((2, 3),), {"p": -1.5, "dim": 0})]),
             doc="vector p-norm over dim (p=2 by default)",
             formula=('grad * sign(x) if p == 1 else 0 if p == 0 else grad * sign(x) * (abs(x) == result) / '
                      'sum(abs(x) == result, dims) if abs(p) == inf else where(result == 0, 0, grad * x * '
                      'abs(x)^(p - 2) / result^(p - 1))'))


# -- softmax / log_softmax ---------------------------------------------------------------------
def _softmax(x, dim):
    e = np.exp(x - np.max(x, axis=dim, keepdims=True))
    return e / np.sum(e, axis=dim, keepdims=True)


def _log_softmax(x, dim):
    s = x - np.max(x, axis=dim, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=dim, keepdims=True))


SOFTMAX = defop("softmax", _softmax,
                (lambda xp, g, out, x, dim: out * (g - xp.sum(g * out, (dim,), True)),),
                saves=('out',), nodes="SoftmaxBackward0",
                samples=[(((3,),), {"dim": 0}), (((2, 3),), {"dim": 1}), (((2, 3, 4),), {"dim": 0})],
                doc="exp(x) / sum(exp(x)) along dim",
                formula='result * (grad - sum(grad * result, dim))')
LOG_SOFTMAX = defop("log_softmax", _log_softmax,
                    (lambda xp, g, out, x, dim: g - xp.exp(out) * xp.sum(g, (dim,), True),),
                    saves=('out',), nodes="LogSoftmaxBackward0",
                    samples=[(((3,),), {"dim": 0}), (((2, 3),), {"dim": 1}), (((2, 3, 4),), {"dim": 0})],
                    doc="log(softmax(x)) along dim, computed stably",
                    formula='grad - exp(result) * sum(grad, dim)')


# -- public functions --------------------------------------------------------------------------
def _red(x, op, dim, keepdim, extra=None):
    dims = norm_dims(dim, x._data.ndim)
    attrs = {"dims": dims, "keepdim": bool(keepdim)}
    if extra:
        attrs.update(extra)
    return apply1(op, x, attrs, 0 if dim is None or len(op.node_names) == 1 else 1)


@export("sum", op=SUM, keywords=("dim", "keepdim"))
def sum(x, dim=None, keepdim=False, *, dtype=None):  # noqa: A001
    if dtype is not None:
        x = x.to(dtype)
    return _red(x, SUM, dim, keepdim)


@export("mean", op=MEAN, keywords=("dim", "keepdim"))
def mean(x, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    dims = norm_dims(dim, x._data.ndim)
    return _red(x, MEAN, dim, keepdim, {"n": _count(x._data.shape, dims)})


@export("prod", op=PROD, keywords=("dim", "keepdim"))
def prod(x, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        x = x.to(dtype)
    if isinstance(dim, (list, tuple)):
        raise TypeError("prod(): argument 'dim' must be int, not tuple")
    return _red(x, PROD, dim, keepdim)


class _ReturnType(tuple):
    """torch.return_types.max(values=..., indices=...)."""

    _name = "max"

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]

    def __repr__(self):
        return f"torch.return_types.{self._name}(\nvalues={self[0]!r},\nindices={self[1]!r})"


class _MaxResult(_ReturnType):
    _name = "max"


class _MinResult(_ReturnType):
    _name = "min"


def _minmax(x, dim, keepdim, op_all, op_dim, argf, result, other_fn):
    if isinstance(dim, Tensor):
        return other_fn(x, dim)
    if dim is None:
        if x._data.size == 0:
            raise errors.EngineRuntimeError(
                f"{op_all.name}(): Expected reduction dim to be specified for input.numel() == 0. "
                "Specify the reduction dim with the 'dim' argument.")
        return _red(x, op_all, None, False)
    dims = norm_dims(dim, x._data.ndim)
    d = dims[0] if dims else 0
    if x._data.ndim == 0:
        return result(x * 1, Tensor._make(np.array(0)))
    idx = np.expand_dims(argf(x._data, axis=d), d)
    values = apply1(op_dim, x, {"dims": dims, "keepdim": bool(keepdim), "idx": idx})
    return result(values, Tensor._make(idx if keepdim else np.squeeze(idx, axis=d)))


@export("max", op=MAX_ALL, keywords=("dim", "keepdim"))
def max(x, dim=None, keepdim=False):  # noqa: A001
    return _minmax(x, dim, keepdim, MAX_ALL, MAX_DIM, np.argmax, _MaxResult, maximum)


@export("min", op=MIN_ALL, keywords=("dim", "keepdim"))
def min(x, dim=None, keepdim=False):  # noqa: A001
    return _minmax(x, dim, keepdim, MIN_ALL, MIN_DIM, np.argmin, _MinResult, minimum)


@export("amax", op=AMAX, keywords=("dim", "keepdim"))
def amax(x, dim=(), keepdim=False):
    return _red(x, AMAX, dim, keepdim)


@export("amin", op=AMIN, keywords=("dim", "keepdim"))
def amin(x, dim=(), keepdim=False):
    return _red(x, AMIN, dim, keepdim)


@export("argmax", keywords=("dim", "keepdim"))
def argmax(x, dim=None, keepdim=False):
    if dim is None:
        return Tensor._make(np.asarray(np.argmax(x._data)))
    return Tensor._make(np.asarray(np.argmax(x._data, axis=dim, keepdims=keepdim)))


@export("argmin", keywords=("dim", "keepdim"))
def argmin(x, dim=None, keepdim=False):
    if dim is None:
        return Tensor._make(np.asarray(np.argmin(x._data)))
    return Tensor._make(np.asarray(np.argmin(x._data, axis=dim, keepdims=keepdim)))


def _correction(unbiased, correction):
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


@export("var", op=VAR, keywords=("dim", "unbiased", "keepdim", "correction"))
def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(unbiased, bool) is False and unbiased is not None and dim is None:
        dim, unbiased = unbiased, None
    dims = norm_dims(dim, x._data.ndim)
    c = _correction(unbiased, correction)
    return _red(x, VAR, dim, keepdim, {"correction": c, "n": _count(x._data.shape, dims)})


@export("std", op=STD, keywords=("dim", "unbiased", "keepdim", "correction"))
def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(unbiased, bool) is False and unbiased is not None and dim is None:
        dim, unbiased = unbiased, None
    dims = norm_dims(dim, x._data.ndim)
    c = _correction(unbiased, correction)
    return _red(x, STD, dim, keepdim, {"correction": c, "n": _count(x._data.shape, dims)})


@export("logsumexp", op=LOGSUMEXP, keywords=("dim", "keepdim"))
def logsumexp(x, dim=None, keepdim=False):
    """PyTorch requires `dim`; here `dim=None` reduces every dim (handy on the command line)."""
    return _red(x, LOGSUMEXP, dim, keepdim)


@export("norm", op=NORM, keywords=("p", "dim", "keepdim"))
def norm(x, p=2, dim=None, keepdim=False):
    if p == "fro":
        p = 2
    return _red(x, NORM, dim, keepdim, {"p": float(p) if p != np.inf else np.inf})


@export("softmax", op=SOFTMAX, keywords=("dim",))
def softmax(x, dim=None):
    if dim is None:
        dim = 0 if x._data.ndim in (0, 1, 3) else 1   # PyTorch's legacy implicit dim choice
    return apply1(SOFTMAX, x, {"dim": wrap_dim(dim, x._data.ndim) - builtins.max(x._data.ndim, 1)})


@export("log_softmax", op=LOG_SOFTMAX, keywords=("dim",))
def log_softmax(x, dim=None):
    if dim is None:
        dim = 0 if x._data.ndim in (0, 1, 3) else 1
    return apply1(LOG_SOFTMAX, x, {"dim": wrap_dim(dim, x._data.ndim) - builtins.max(x._data.ndim, 1)})


# how the registry's tests call the entries whose public function returns more, or takes other arguments
MAX_ALL.func = lambda x, dim=None, keepdim=False: (max(x, dim, keepdim) if dim is None else max(x, dim, keepdim)[0])
MIN_ALL.func = lambda x, dim=None, keepdim=False: (min(x, dim, keepdim) if dim is None else min(x, dim, keepdim)[0])
MAX_ALL.returns = MIN_ALL.returns = "values, indices with dim"
MAX_DIM.func = lambda x, dim, keepdim=False: max(x, dim, keepdim)[0]
MIN_DIM.func = lambda x, dim, keepdim=False: min(x, dim, keepdim)[0]
MAX_DIM.samples = MIN_DIM.samples = [(((3, 2),), {"dim": 0}), (((2, 3, 4),), {"dim": -1, "keepdim": True})]
