"""engine: a reverse-mode autograd engine on numpy that behaves like torch.autograd.

`import engine as torch` runs PyTorch-style code: tensors, the dynamic graph, backward, grad
modes, custom Functions. The package imports numpy and nothing else of ours above it; it never
prints or exits.
"""
from . import _dtype
from ._device import (accelerator, backends, cuda, device, get_default_device, mps,  # noqa: F401
                      set_default_device)
from ._dtype import (bool_, double, dtype, float16, float32, float64, half, int8, int16,  # noqa: F401
                     int32, int64, long, short, uint8)
from .errors import EngineError, EngineRuntimeError, MissingDerivativeError, ShapeError  # noqa: F401
from .grad_mode import (detect_anomaly, enable_grad, inference_mode, is_grad_enabled,  # noqa: F401
                        no_grad, set_detect_anomaly, set_grad_enabled)
from .tensor import (Size, Tensor, arange, as_tensor, empty, eye, from_numpy, full,  # noqa: F401
                     full_like, is_tensor, linspace, manual_seed, ones, ones_like, rand,
                     rand_like, randint, randn, randn_like, seed, tensor, zeros, zeros_like)
from . import ops as _ops  # noqa: E402
globals().update(_ops.public_functions())     # every exported op function: engine.tanh, engine.cat, ...
from . import autograd  # noqa: E402,F401
from . import nn  # noqa: E402,F401
from . import optim  # noqa: E402,F401

bool = bool_  # noqa: A001 - engine.bool as in torch.bool
float = float32  # noqa: A001
int = int32  # noqa: A001
__version__ = "0.1.0"


def get_default_dtype():
    return float64


def is_floating_point(t):
    return t.is_floating_point()


def numel(t):
    return t.numel()
