"""PyTorch's torch.nn.functional, written with engine ops (so every one is differentiable
through the registry's rules, and its graph shows the ops it is made of)."""
from .. import ops
from ..ops import log_softmax, relu, sigmoid, softmax, softplus, tanh  # noqa: F401
from ..tensor import Tensor, arange


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def linear(input, weight, bias=None):  # noqa: A002
    """input @ weight^T + bias, recorded as PyTorch records it: AddmmBackward0 with a bias (in a
    ViewBackward0 for input that is not a matrix), MmBackward0 without."""
    if bias is None or weight.ndim != 2 or input.ndim == 0:
        y = input @ weight.t() if weight.ndim == 2 else input @ weight
        return y if bias is None else y + bias
    if input.ndim == 2:
        return ops.addmm(bias, input, weight.t())
    lead = tuple(input.shape[:-1])
    y = ops.addmm(bias, input.reshape(-1, input.shape[-1]), weight.t())
    return y.reshape(lead + (weight.shape[0],))


mse_loss = ops.mse_loss
nll_loss = ops.nll_loss
binary_cross_entropy = ops.binary_cross_entropy
binary_cross_entropy_with_logits = ops.binary_cross_entropy_with_logits


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,  # noqa: A002
                  reduction="mean", label_smoothing=0.0):
    """nll_loss(log_softmax(input, dim=1), target), as PyTorch composes it, for class indices;
    for class probabilities (a float target shaped like input), -(target * log_softmax).sum(1)."""
    dim = 1 if input.ndim >= 2 else 0
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


silu = ops.silu
gelu = ops.gelu
leaky_relu = ops.leaky_relu
elu = ops.elu
hardtanh = ops.hardtanh
relu6 = ops.relu6


def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero each element with probability p and scale the rest by 1/(1-p) while training."""
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    from ..tensor import default_generator
    keep = (default_generator.rng.random(tuple(input.shape)) >= p) / (1.0 - p)
    return input * Tensor(keep.astype(input.numpy(force=True).dtype))


def one_hot(tensor, num_classes=-1):
    """Class indices -> an int64 tensor with a trailing dim of num_classes (no gradient)."""
    import numpy as np
    idx = tensor.numpy()
    if idx.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    n = int(idx.max()) + 1 if num_classes == -1 else int(num_classes)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise RuntimeError("Class values must be smaller than num_classes." if idx.max() >= n else
                           "Class values must be non-negative.")
    return Tensor._make(np.eye(n, dtype=np.int64)[idx])


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):  # noqa: A002
    """input / max(||input||_p along dim, eps), as PyTorch composes it (norm, clamp_min, expand, div)."""
    denom = input.norm(p, dim, keepdim=True).clamp(min=eps).expand_as(input)
    return input / denom


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    return _reduce((input - target).abs(), reduction)
