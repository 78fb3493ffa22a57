"""torch.autograd.forward_ad on the engine: dual_level, make_dual, unpack_dual.

A dual tensor is recorded like a tensor that requires grad; its tangent is kept by the level.
`unpack_dual(y).tangent` is J t, the Jacobian-vector product of everything between the duals
and y, computed on demand through reverse mode: u -> J^T u is linear, and the gradient of
(J^T u) . t with respect to u is J t (the double-backward trick). So every op with a backward
has a forward derivative, with the registry's rules as the single source. A custom Function
that defines `jvp` gets it called with its inputs' tangents when it runs inside a level (its
output becomes a dual with that tangent, as in PyTorch; such a Function needs no backward here).
"""
import collections
import sys

from .. import errors as _errors

from ..grad_mode import enable_grad
from ..tensor import _FORWARD_AD, Tensor
from .._names import torch_repr

UnpackedDualTensor = collections.namedtuple("UnpackedDualTensor", ["primal", "tangent"])

_LEVELS = []        # one dict per open level: id(dual) -> _Dual


class _Dual:
    __slots__ = ("dual", "tangent", "user_graph")

    def __init__(self, dual, tangent, user_graph):
        self.dual, self.tangent, self.user_graph = dual, tangent, user_graph


@torch_repr("torch.autograd.forward_ad.dual_level")
class dual_level:  # noqa: N801 - PyTorch's name
    """Inside it, make_dual tensors carry tangents; leaving it forgets them."""

    def __enter__(self):
        return enter_dual_level()

    def __exit__(self, *exc):
        exit_dual_level()
        return False


def enter_dual_level():
    if _LEVELS:
        raise _errors.EngineRuntimeError("Nested forward mode AD is not supported at the moment")
    _LEVELS.append({})
    return len(_LEVELS) - 1


def exit_dual_level(*, level=None):
    if not _LEVELS:
        raise _errors.EngineRuntimeError("Trying to exit a forward AD level that was not the last one that was created. "
                           "This is not supported.")
    _LEVELS.pop()


def active():
    return bool(_LEVELS)


def make_dual(tensor, tangent, *, level=None):
    """A tensor equal to `tensor` whose tangent (forward gradient) is `tangent`."""
    if not _LEVELS:
        raise _errors.EngineRuntimeError("To create a dual Tensor, you need to be inside a forward AD level (with "
                           "torch.autograd.forward_ad.dual_level():)")
    if not isinstance(tensor, Tensor) or not isinstance(tangent, Tensor):
        raise TypeError("make_dual expects Tensors for the primal and the tangent")
    if tuple(tangent.shape) != tuple(tensor.shape):
        raise _errors.EngineRuntimeError("Trying to set a forward gradient that has a different size than that of the original "
                           f"Tensor, this is not supported. Tensor is of size {list(tensor.shape)} while the given "
                           f"forward gradient is of size {list(tangent.shape)}.")
    if not tensor.is_floating_point():
        raise ValueError(f"Expected primal to be floating point or complex, but got: {tensor.dtype}")
    user_graph = tensor.requires_grad
    if user_graph:
        dual = tensor.view_as(tensor)
    else:          # recorded for the tangents' sake only: requires_grad and repr hide it, as PyTorch has none
        dual = tensor.detach().requires_grad_(True)
        dual._fwd_only = True
        _FORWARD_AD[0] = sys.modules[__name__]
    _LEVELS[-1][id(dual)] = _Dual(dual, tangent, user_graph)
    return dual


def unpack_dual(tensor, *, level=None):
    """(primal, tangent): tangent is None when `tensor` does not depend on a dual."""
    if not _LEVELS or not isinstance(tensor, Tensor):
        return UnpackedDualTensor(tensor, None)
    duals = list(_LEVELS[-1].values())
    user_graph = any(d.user_graph for d in duals)
    primal = tensor if user_graph else tensor.detach()
    own = _LEVELS[-1].get(id(tensor))
    if own is not None:
        return UnpackedDualTensor(primal, own.tangent)
    if not tensor._rg or not duals:
        return UnpackedDualTensor(primal, None)
    from . import grad
    with enable_grad():
        u = tensor.detach().new_zeros(tuple(tensor.shape)).requires_grad_(True)
        gs = grad([tensor], [d.dual for d in duals], [u], create_graph=True, allow_unused=True)
        s = None
        for g, d in zip(gs, duals):
            if g is not None:
                term = (g * d.tangent).sum()
                s = term if s is None else s + term
        if s is None:
            return UnpackedDualTensor(primal, None)
        if not s.requires_grad:             # J^T u does not depend on u: the tangent is zero
            return UnpackedDualTensor(primal, tensor.detach() * 0)
        jt, = grad([s], [u], allow_unused=True)
    tangent = tensor.detach() * 0 if jt is None else jt.detach()
    return UnpackedDualTensor(primal, tangent)


def apply_with_jvp(cls, ctx, args, kwargs):
    """Run a custom Function that defines jvp inside a level: forward on the primals, then its
    jvp on the inputs' tangents; the output is a dual with that tangent. None when no input
    has a tangent (then the Function runs as usual)."""
    tangents = [unpack_dual(a).tangent if isinstance(a, Tensor) else None for a in args]
    if all(t is None for t in tangents):
        return None
    from ..grad_mode import no_grad
    primals = [a.detach() if isinstance(a, Tensor) else a for a in args]
    ctx.needs_input_grad = tuple(isinstance(a, Tensor) for a in args)
    with no_grad():
        if cls._setup_style:
            out = cls.forward(*primals, **kwargs)
            cls.setup_context(ctx, tuple(primals), out)
        else:
            out = cls.forward(ctx, *primals, **kwargs)
        zeros = [t if t is not None or not isinstance(a, Tensor) else a.detach() * 0 for a, t in zip(primals, tangents)]
        t_out = cls.jvp(ctx, *zeros)
    if isinstance(out, tuple):
        t_out = t_out if isinstance(t_out, tuple) else (t_out,)
        return tuple(make_dual(o, t) if t is not None else o for o, t in zip(out, t_out))
    return make_dual(out, t_out)
