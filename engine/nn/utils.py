"""torch.nn.utils on the engine: gradient clipping and parameters as one vector."""
from .. import errors as _errors
import math

import numpy as np

from ..grad_mode import no_grad
from ..tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale every .grad so that their joint norm is at most max_norm; returns the norm before."""
    ps = _grads(parameters)
    if not ps:
        return Tensor._make(np.asarray(0.0))
    arrays = [p.grad.numpy() for p in ps]
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(a))) for a in arrays)
    else:
        total = float(sum(float(np.sum(np.abs(a) ** norm_type)) for a in arrays) ** (1.0 / norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise _errors.EngineRuntimeError(f"The total norm of order {float(norm_type)} for gradients from `parameters` is "
                           "non-finite, so it cannot be clipped. To disable this error and scale the gradients by "
                           "the non-finite norm anyway, set `error_if_nonfinite=False`")
    coef = min(max_norm / (total + 1e-6), 1.0)
    with no_grad():
        for p in ps:
            p.grad.mul_(coef)
    return Tensor._make(np.asarray(total, dtype=arrays[0].dtype))


def clip_grad_value_(parameters, clip_value, foreach=None):
    with no_grad():
        for p in _grads(parameters):
            p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters):
    from ..ops import cat
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    k = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(vec[k:k + n].reshape(tuple(p.shape)))
            k += n
