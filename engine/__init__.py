"""engine: a reverse-mode autograd engine on numpy that behaves like torch.autograd.

`import engine as torch` runs PyTorch-style code: tensors, the dynamic graph, backward, grad
modes, custom Functions. The package imports numpy and nothing else of ours above it; it never
prints or exits.
"""
import builtins as _builtins

from . import _dtype
from ._device import (accelerator, backends, cuda, device, get_default_device, mps,  # noqa: F401
                      set_default_device)
from ._dtype import (bool_, double, dtype, float16, float32, float64, half, int8, int16,  # noqa: F401
                     int32, int64, long, short, uint8)
from .errors import EngineError, EngineRuntimeError, MissingDerivativeError, ShapeError  # noqa: F401
from .grad_mode import (detect_anomaly, enable_grad, inference_mode, is_grad_enabled,  # noqa: F401
                        is_inference_mode_enabled, no_grad, set_detect_anomaly, set_grad_enabled)
from .tensor import (Generator, Size, Tensor, arange, as_tensor, default_generator, empty, empty_like, eye,  # noqa: F401
                     from_numpy, full, full_like, get_rng_state, initial_seed, is_tensor, linspace,
                     manual_seed, normal, ones, ones_like, rand, rand_like, randint, randn, randn_like,
                     randperm, seed, set_rng_state, tensor, zeros, zeros_like)
from . import ops as _ops  # noqa: E402
globals().update({n: f for n, f in _ops.public_functions().items() if "." not in n})   # engine.tanh, ...
from . import autograd, linalg  # noqa: E402,F401  (engine.linalg.det: the `linalg.` exports)

bool = bool_  # noqa: A001 - engine.bool as in torch.bool
float = float32  # noqa: A001
int = int32  # noqa: A001
__version__ = "0.1.0"


pi, e, inf, nan = 3.141592653589793, 2.718281828459045, _builtins.float("inf"), _builtins.float("nan")


def get_default_dtype():
    """The dtype of new floating tensors: float64 unless set_default_dtype changed it (the
    engine's default is float64, for gradient checking; PyTorch's is float32)."""
    return _dtype.from_numpy_dtype(_dtype.DEFAULT_FLOAT)


def set_default_dtype(d):
    import numpy as _np
    nd = _dtype.to_numpy_dtype(d)
    if nd is None or nd.kind != "f":
        raise TypeError("only floating-point types are supported as the default type")
    _dtype.DEFAULT_FLOAT = _np.dtype(nd)
    _dtype.DEFAULT_SET = True


def finfo(type=None):  # noqa: A002
    """Machine limits of a floating dtype (eps, max, min, tiny, resolution)."""
    import numpy as _np
    return _np.finfo(_dtype.to_numpy_dtype(type or get_default_dtype()))


def logspace(start, end, steps, base=10.0, dtype=None, requires_grad=False):
    return (linspace(start, end, steps, dtype=dtype) * _np_log(base)).exp().requires_grad_(requires_grad)


def _np_log(v):
    import math
    return math.log(v)


def save(obj, f, pickle_module=None, pickle_protocol=2, **kwargs):
    """Pickle obj (tensors, modules, state dicts) to a path or a binary file object."""
    import pickle
    pm = pickle_module or pickle
    if hasattr(f, "write"):
        pm.dump(obj, f, protocol=pickle_protocol)
    else:
        with open(f, "wb") as fh:
            pm.dump(obj, fh, protocol=pickle_protocol)


def load(f, map_location=None, pickle_module=None, weights_only=None, **kwargs):
    """What save wrote (a path or a binary file object). Like torch.load, it unpickles: load only
    files you trust."""
    import pickle
    pm = pickle_module or pickle
    if hasattr(f, "read"):
        return pm.load(f)
    with open(f, "rb") as fh:
        return pm.load(fh)


def _legacy(name, dt):
    nd = _dtype.to_numpy_dtype(dt).name

    def make(*args):
        """torch.FloatTensor([1, 2]) (the data) or torch.FloatTensor(2, 3) (uninitialised: zeros)."""
        if len(args) == 1 and not isinstance(args[0], _builtins.int):
            return tensor(args[0], dtype=dt)
        return zeros(*args, dtype=dt)
    make.__name__ = make.__qualname__ = name
    make.legacy_dtype = nd                # x.type(torch.FloatTensor)
    return make


FloatTensor, DoubleTensor = _legacy("FloatTensor", float32), _legacy("DoubleTensor", float64)
LongTensor, IntTensor, BoolTensor = _legacy("LongTensor", int64), _legacy("IntTensor", int32), _legacy("BoolTensor", bool_)


def is_floating_point(t):
    return t.is_floating_point()


def numel(t):
    return t.numel()


def __getattr__(name):
    """engine.func (torch.func), engine.vmap, engine.nn and engine.optim load on first use: every
    module imported at start-up is paid by every command, and most never need these."""
    import importlib
    if name in ("func", "vmap"):
        mod = importlib.import_module(".func", __name__)
        return mod if name == "func" else mod.vmap
    if name in ("nn", "optim", "profiler"):       # torch.nn, torch.optim, torch.profiler: loaded when first used
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'engine' has no attribute '{name}'")
