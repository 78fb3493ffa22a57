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


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    return _reduce((input - target) ** 2, reduction)


def nll_loss(input, target, reduction="mean"):  # noqa: A002
    """-input[n, target[n]] for log-probabilities `input` of shape (N, C), class indices `target`."""
    if input.ndim == 1:
        return _reduce(-input[target], reduction)
    n = input.shape[0]
    picked = input[arange(n), target]
    return _reduce(-picked, reduction)


def cross_entropy(input, target, reduction="mean"):  # noqa: A002
    """nll_loss(log_softmax(input, dim=1), target), as PyTorch composes it (class indices)."""
    dim = 1 if input.ndim >= 2 else 0
    return nll_loss(log_softmax(input, dim), target, reduction)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):  # noqa: A002
    """(1 - y) x + log(1 + exp(-x)), with softplus for the log term: stable, and its gradient is
    sigmoid(x) - y everywhere (x = 0 included)."""
    return _reduce((1.0 - target) * input + softplus(-input), reduction)


def binary_cross_entropy(input, target, reduction="mean"):  # noqa: A002
    """-(y log p + (1 - y) log(1 - p)), each log clamped at -100 as PyTorch does."""
    lp = input.log().clamp(min=-100.0)
    l1p = (1.0 - input).log().clamp(min=-100.0)
    return _reduce(-(target * lp + (1.0 - target) * l1p), reduction)


def silu(input):  # noqa: A002
    return input * sigmoid(input)


def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero each element with probability p and scale the rest by 1/(1-p) while training."""
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    from ..tensor import default_generator
    keep = (default_generator.rng.random(tuple(input.shape)) >= p) / (1.0 - p)
    return input * Tensor(keep.astype(input.numpy(force=True).dtype))
