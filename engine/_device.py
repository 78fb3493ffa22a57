"""Devices: the engine computes on the CPU. PyTorch's device boilerplate works as it does on a
machine without an accelerator (`torch.device`, `torch.cuda.is_available()` is False,
`device=` on factories, `.to(device)`, `.cpu()`), and asking to compute on anything else is one
clear error, as PyTorch without CUDA raises one."""
import functools

from . import errors


class device:  # noqa: N801 - PyTorch's name
    """torch.device: any type can be named (as in PyTorch); only 'cpu' can hold tensors."""

    __slots__ = ("type", "index")

    def __init__(self, type="cpu", index=None):  # noqa: A002
        if isinstance(type, device):
            type, index = type.type, type.index
        text = str(type)
        if ":" in text:
            text, _, idx = text.partition(":")
            index = int(idx)
        self.type, self.index = text, index

    def __repr__(self):
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))


CPU = device("cpu")


def check(d):
    """Accept None, 'cpu', 'cpu:0' or a cpu device; anything else is PyTorch-without-CUDA's error."""
    if d is None:
        return CPU
    dev = d if isinstance(d, device) else device(d)
    if dev.type != "cpu":
        raise errors.EngineRuntimeError(
            f"the engine computes on the CPU only: device '{dev}' is not available here "
            f"(torch.cuda.is_available() is False; use device='cpu', or run the code on PyTorch)")
    return CPU


def on_cpu(fn):
    """A factory taking PyTorch's `device=` (checked) and `size=` keywords."""
    @functools.wraps(fn)
    def factory(*args, device=None, size=None, **kwargs):
        check(device)
        if size is not None:
            args = (tuple(size) if not isinstance(size, int) else (size,)) + args
        return fn(*args, **kwargs)
    return factory


class _NoAccelerator:
    """torch.cuda / torch.mps / torch.accelerator on a machine without one."""

    def __init__(self, name):
        self._name = name

    def is_available(self):
        return False

    def device_count(self):
        return 0

    def current_accelerator(self):
        return None

    def manual_seed(self, seed):
        return None

    manual_seed_all = manual_seed

    def __repr__(self):
        return f"<engine: no {self._name}>"


cuda = _NoAccelerator("cuda")
accelerator = _NoAccelerator("accelerator")
mps = _NoAccelerator("mps")


class _Backends:
    mps = mps
    cuda = cuda


backends = _Backends()
_DEFAULT = [CPU]


def set_default_device(d):
    _DEFAULT[0] = check(d)


def get_default_device():
    return _DEFAULT[0]
