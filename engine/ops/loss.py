"""Loss functions as single ops, as PyTorch records them (MseLossBackward0, NllLossBackward0,
BinaryCrossEntropyBackward0, BinaryCrossEntropyWithLogitsBackward0); torch.nn.functional's
versions (engine/nn/functional.py) call these.

reduction: "mean" (the default), "sum" or "none". Under "mean"/"sum" the output is a scalar,
so a rule's cotangent is batch + (): `_spread` gives it trailing ones to meet the input.
"""
from .. import errors as _errors
import numpy as np

from ..tensor import Tensor
from ._core import apply, defop, export

REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss, reduction, denom=None):
    if reduction == "none":
        return loss
    total = np.sum(loss)
    return total / (loss.size if denom is None else denom) if reduction == "mean" else total


def _spread(xp, g, nd, reduction):
    """The cotangent of a reduced loss, shaped to broadcast against an input of nd dims."""
    if reduction == "none":
        return g
    return xp.reshape(g, tuple(xp.shape(g)) + (1,) * nd)


def _scale(x, reduction):
    return 1.0 / max(np.size(x), 1) if reduction == "mean" else 1.0


def _t(v):
    return v if isinstance(v, Tensor) else Tensor._make(np.asarray(v))


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


# -- mse_loss ----------------------------------------------------------------------------------
def _mse_x(xp, g, out, x, y, reduction="mean"):
    return _spread(xp, g, len(xp.shape(x)), reduction) * (2.0 * _scale(xp.raw(x), reduction)) * (x - y)


def _mse_y(xp, g, out, x, y, reduction="mean"):
    return _spread(xp, g, len(xp.shape(x)), reduction) * (-2.0 * _scale(xp.raw(x), reduction)) * (x - y)


MSE_LOSS = defop("mse_loss", lambda x, y, reduction="mean": _reduce((x - y) ** 2, reduction), (_mse_x, _mse_y),
                 saves=("x y", "x y"), nodes="MseLossBackward0", domain=("real", "real"),
                 samples=[(((3,), (3,)), {}), (((2, 3), (2, 3)), {"reduction": "sum"}),
                          (((2, 3), (2, 3)), {"reduction": "none"})],
                 doc="mean of (input - target)^2",
                 formula=('2 * grad * (x - y) / numel(x) if reduction == "mean" else 2 * grad * (x - y)',
                          '-2 * grad * (x - y) / numel(x) if reduction == "mean" else -2 * grad * (x - y)'))


@export("mse_loss", op=MSE_LOSS, method=False, keywords=("reduction",))
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):  # noqa: A002
    _check_reduction(reduction)
    input, target = _t(input), _t(target)   # noqa: A001
    if tuple(input.shape) != tuple(target.shape):
        import warnings
        warnings.warn(f"Using a target size ({tuple(target.shape)}) that is different to the input size "
                      f"({tuple(input.shape)}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", UserWarning, stacklevel=2)
        shape = np.broadcast_shapes(tuple(input.shape), tuple(target.shape))
        input, target = input.expand(shape), target.expand(shape)  # noqa: A001
    return apply(MSE_LOSS, (input, target), {} if reduction == "mean" else {"reduction": reduction})


# -- nll_loss (and cross_entropy = nll_loss of log_softmax) -----------------------------------
def _nll_mask(shape, target, weight, ignore_index):
    """M with M[n, target[n]] = weight[target[n]] (0 where target == ignore_index), the class dim
    being 1 (0 for an input without a batch dim); and the sum of the weights (mean's divisor)."""
    cdim = 0 if len(shape) == 1 else 1
    c = shape[cdim]
    keep = target != ignore_index
    safe = np.where(keep, target, 0)
    if np.any((safe < 0) | (safe >= c)):
        bad = int(safe[(safe < 0) | (safe >= c)].flat[0])
        raise IndexError(f"Target {bad} is out of bounds.")
    w = (np.ones(c) if weight is None else weight)[safe] * keep
    onehot = np.moveaxis(np.eye(c)[safe], -1, cdim) if len(shape) > 1 else np.eye(c)[safe]
    m = onehot * (np.expand_dims(w, cdim) if len(shape) > 1 else w)
    return m, float(np.sum(w))


def _nll_fwd(x, mask, total, reduction="mean"):
    cdim = 0 if x.ndim == 1 else 1
    picked = -np.sum(x * mask, axis=cdim)
    if reduction == "none":
        return picked
    s = np.sum(picked)
    return s / total if reduction == "mean" else s


def _nll_vjp(xp, g, out, x, mask, total, reduction="mean"):
    nd = len(np.shape(mask))
    if reduction == "none" and nd > 1:
        return xp.expand_dims(g, 1 - nd) * (-mask)           # the class dim, counted from the end
    return _spread(xp, g, nd, "sum") * (-(mask / total if reduction == "mean" else mask))


NLL_LOSS = defop("nll_loss", _nll_fwd, (_nll_vjp,), saves=('',), nodes=("NllLossBackward0", "NllLoss2DBackward0"),
                 samples=[(((3, 4),), {"target": np.array([0, 3, 1])}),
                          (((4,),), {"target": np.array(2)}),
                          (((3, 4),), {"target": np.array([0, 3, 1]), "reduction": "sum"}),
                          (((3, 4),), {"target": np.array([0, 3, 1]), "reduction": "none"}),
                          (((2, 3, 2),), {"target": np.array([[0, 2], [1, 1]])}),
                          (((3, 4),), {"target": np.array([0, 3, 1]), "weight": np.array([1.0, 2.0, 0.5, 3.0])}),
                          (((3, 4),), {"target": np.array([0, -100, 1])})],
                 doc="-input[n, target[n]], averaged (input: log-probabilities; target: class indices)",
                 formula=("-grad at each sample's target class, times that class's weight (0 for an ignored "
                          "target), 0 elsewhere; a mean loss also divides by the sum of the targets' weights",))


@export("nll_loss", op=NLL_LOSS, method=False, keywords=("reduction", "ignore_index"))
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,  # noqa: A002
             reduction="mean"):
    _check_reduction(reduction)
    input = _t(input)  # noqa: A001
    t = target._data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise _errors.EngineRuntimeError(f"expected scalar type Long but found {Tensor._make(t).dtype}")
    if input.ndim == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    if input.ndim > 1 and t.shape != (input.shape[0],) + tuple(input.shape[2:]):
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({t.shape[0] if t.ndim else 0}).")
    w = None if weight is None else np.asarray(weight._data if isinstance(weight, Tensor) else weight, np.float64)
    mask, total = _nll_mask(tuple(input.shape), t.astype(np.int64), w, ignore_index)
    attrs = {"mask": mask.astype(input._data.dtype), "total": total}
    if reduction != "mean":
        attrs["reduction"] = reduction
    return apply(NLL_LOSS, (input,), attrs, v=int(input.ndim > 2))    # PyTorch: NllLoss2d beyond (N, C)


NLL_LOSS.func = lambda x, target, reduction="mean", weight=None: nll_loss(
    x, Tensor._make(target), weight=weight, reduction=reduction)


# -- binary cross-entropy, on probabilities and on logits --------------------------------------
def _bce_fwd(x, y, w, reduction="mean"):
    with np.errstate(divide="ignore"):
        loss = -(y * np.maximum(np.log(x), -100.0) + (1.0 - y) * np.maximum(np.log1p(-x), -100.0))
    return _reduce(loss * w, reduction)


def _bce_x(xp, g, out, x, y, w, reduction="mean"):
    denom = xp.clamp((1.0 - x) * x, 1e-12)           # PyTorch's EPSILON
    return _spread(xp, g, len(xp.shape(x)), reduction) * (w * _scale(xp.raw(x), reduction)) * (x - y) / denom


def _bce_y(xp, g, out, x, y, w, reduction="mean"):
    with np.errstate(divide="ignore"):
        d = xp.clamp(xp.log(1.0 - x), -100.0) - xp.clamp(xp.log(x), -100.0)
    return _spread(xp, g, len(xp.shape(x)), reduction) * (w * _scale(xp.raw(x), reduction)) * d


BCE = defop("binary_cross_entropy", _bce_fwd, (_bce_x, _bce_y), saves=("x y", "x"),
            nodes="BinaryCrossEntropyBackward0", domain=("probability", "probability"),
            samples=[(((3,), (3,)), {}), (((2, 3), (2, 3)), {"reduction": "sum"}),
                     (((2, 3), (2, 3)), {"reduction": "none"})],
            doc="-(target log(input) + (1 - target) log(1 - input)), logs clamped at -100",
            formula=('grad * w * (x - y) / (numel(x) * clamp((1 - x) * x, 1e-12)) if reduction == "mean" else '
                     'grad * w * (x - y) / clamp((1 - x) * x, 1e-12), the denominator held at 1e-12 or more',
                     'grad * w * (clamp(log(1 - x), -100) - clamp(log(x), -100)) / numel(x) if reduction == '
                     '"mean" else grad * w * (clamp(log(1 - x), -100) - clamp(log(x), -100)), the logs held at '
                     '-100 or more'))


def _bcel_fwd(x, y, w, pw, reduction="mean"):
    sp = np.logaddexp(0.0, -x)                      # softplus(-x), stable
    loss = (1.0 - y) * x + (1.0 + (pw - 1.0) * y) * sp
    return _reduce(loss * w, reduction)


def _bcel_x(xp, g, out, x, y, w, pw, reduction="mean"):
    s = xp.sigmoid(x)
    grad = (1.0 - y) - (y * (pw - 1.0) + 1.0) * (1.0 - s)
    return _spread(xp, g, len(xp.shape(x)), reduction) * (w * _scale(xp.raw(x), reduction)) * grad


def _bcel_y(xp, g, out, x, y, w, pw, reduction="mean"):
    sp = xp.softplus(-x)
    return _spread(xp, g, len(xp.shape(x)), reduction) * (w * _scale(xp.raw(x), reduction)) * ((pw - 1.0) * sp - x)


BCE_LOGITS = defop("binary_cross_entropy_with_logits", _bcel_fwd, (_bcel_x, _bcel_y), saves=("x y", "x"),
                   nodes="BinaryCrossEntropyWithLogitsBackward0", domain=("real", "probability"),
                   samples=[(((3,), (3,)), {}), (((2, 3), (2, 3)), {"reduction": "sum"}),
                            (((2, 3), (2, 3)), {"reduction": "none"}),
                            (((2, 3), (2, 3)), {"pos_weight": np.array([1.0, 2.0, 0.5])})],
                   doc="binary cross-entropy of sigmoid(input), computed stably from the logits",
                   formula=('grad * w * ((1 - y) - (1 + (pw - 1) * y) * (1 - sigmoid(x))) / numel(x) if '
                            'reduction == "mean" else grad * w * ((1 - y) - (1 + (pw - 1) * y) * (1 - '
                            'sigmoid(x)))',
                            'grad * w * ((pw - 1) * softplus(-x) - x) / numel(x) if reduction == "mean" else '
                            'grad * w * ((pw - 1) * softplus(-x) - x)'))


def _weights(weight, dtype):
    if weight is None:
        return np.asarray(1.0, dtype)
    return np.asarray(weight._data if isinstance(weight, Tensor) else weight, dtype)


@export("binary_cross_entropy", op=BCE, method=False, keywords=("reduction",))
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    _check_reduction(reduction)
    input, target = _t(input), _t(target)  # noqa: A001
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"Using a target size ({tuple(target.shape)}) that is different to the input size "
                         f"({tuple(input.shape)}) is deprecated. Please ensure they have the same size.")
    d = input._data
    if np.any((d < 0) | (d > 1)):
        raise _errors.EngineRuntimeError("all elements of input should be between 0 and 1")
    attrs = {"w": _weights(weight, d.dtype)}
    if reduction != "mean":
        attrs["reduction"] = reduction
    return apply(BCE, (input, target), attrs)


@export("binary_cross_entropy_with_logits", op=BCE_LOGITS, method=False, keywords=("reduction",))
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,  # noqa: A002
                                     reduction="mean", pos_weight=None):
    _check_reduction(reduction)
    input, target = _t(input), _t(target)  # noqa: A001
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"Target size ({list(target.shape)}) must be the same as input size ({list(input.shape)})")
    d = input._data
    attrs = {"w": _weights(weight, d.dtype), "pw": _weights(pos_weight, d.dtype)}
    if reduction != "mean":
        attrs["reduction"] = reduction
    return apply(BCE_LOGITS, (input, target), attrs)


BCE.func = lambda x, y, reduction="mean": binary_cross_entropy(x, y, reduction=reduction)
BCE_LOGITS.func = lambda x, y, reduction="mean", pos_weight=None: binary_cross_entropy_with_logits(
    x, y, reduction=reduction, pos_weight=None if pos_weight is None else Tensor._make(pos_weight))


@export("cross_entropy", method=False, keywords=("reduction", "ignore_index", "label_smoothing"))
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,  # noqa: A002
                  reduction="mean", label_smoothing=0.0):
    """nll_loss(log_softmax(input, dim=1), target), as PyTorch composes it, for class indices;
    for class probabilities (a float target shaped like input), -(target * log_softmax).sum(1)."""
    dim = 1 if input.ndim >= 2 else 0
    from .reduce import log_softmax
    logp = log_softmax(input, dim)
    if isinstance(target, Tensor) and target.is_floating_point():
        if label_smoothing:
            n = input.shape[dim]
            target = target * (1.0 - label_smoothing) + label_smoothing / n
        loss = -(logp * target).sum(dim)
        if weight is not None:
            raise NotImplementedError("cross_entropy with class probabilities and weight= is not in the engine yet")
        return {"mean": loss.mean, "sum": loss.sum}.get(reduction, lambda: loss)() if reduction != "none" else loss
    if label_smoothing:
        raise NotImplementedError("cross_entropy(label_smoothing=...) with class indices is not in the engine yet")
    return nll_loss(logp, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
