"""torch.nn.Parameter: a leaf Tensor that a Module registers as one of its parameters."""
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that requires grad by default and that Module attributes register. Ops on it
    give plain Tensors, as in PyTorch."""

    def __init__(self, data=None, requires_grad=True):
        if isinstance(data, Tensor):
            self._data = data._data
            if data._vc is not None:
                self._vc = data._vc
        else:
            super().__init__([] if data is None else data)
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, arr, grad_fn=None, rg=False):
        # what the engine makes from a Parameter (its .grad, in the backward loop) is a plain
        # Tensor, as in PyTorch (print(p.grad) shows no "Parameter containing:")
        return Tensor._make(arr, grad_fn, rg)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__          # print(p) shows the header too, as in PyTorch


def zero_grads(params, set_to_none=True):
    """What Module.zero_grad and Optimizer.zero_grad do to each parameter: .grad = None, or a
    zeroed .grad without history (set_to_none=False)."""
    for p in params:
        if p.grad is not None:
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()
