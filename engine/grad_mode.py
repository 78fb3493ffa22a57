"""Grad modes: no_grad, enable_grad, set_grad_enabled, is_grad_enabled, and anomaly mode.

Thread-local like PyTorch's. Reading a threading.local attribute costs ~55 ns, and the
per-op path would read several (grad enabled? anomaly? an observer? saved-tensor hooks?); instead it reads
`OFF_DEFAULT[0]`, the number of threads where any of them is not at its default, and looks
at its own thread's state only when that is not 0.
"""
import functools
import threading
from ._names import torch_repr

OFF_DEFAULT = [0]     # threads whose modes are not (grad on, no anomaly mode, no observer, no saved hooks)
_LOCK = threading.Lock()


class _Counted:
    """Held by a thread's state while that thread counts in OFF_DEFAULT. Dropping it uncounts
    the thread: when its modes return to their defaults, or when the thread ends inside
    no_grad or anomaly mode (its thread-local state, and so this, is freed then)."""

    __slots__ = ()

    def __init__(self):
        with _LOCK:
            OFF_DEFAULT[0] += 1

    def __del__(self):
        with _LOCK:
            OFF_DEFAULT[0] -= 1


def _mode(name):
    def get(self):
        return getattr(self, name)

    def set(self, value):
        setattr(self, name, value)
        off = not self._enabled or bool(self._anomaly) or bool(self._observers) or bool(self._saved_hooks)
        if off != (self._counted is not None):
            self._counted = _Counted() if off else None
    return property(get, set)


class _State(threading.local):
    _enabled = True
    _anomaly = False
    _saved_hooks = ()     # a stack of (pack, unpack) from autograd.graph.saved_tensors_hooks
    _observers = ()       # engine.observe: what watches nodes being made (locate, explain, the kink watch)
    op_observers = ()     # those of them that watch every op run (a subset: counted through _observers)
    inference = False     # inside inference_mode (grad is off too, so the per-op path is off)
    _counted = None       # a _Counted while this thread's modes are off their defaults
    anomaly_check_nan = True
    enabled = _mode("_enabled")
    anomaly = _mode("_anomaly")
    saved_hooks = _mode("_saved_hooks")
    observers = _mode("_observers")


STATE = _State()


def is_grad_enabled():
    return STATE.enabled


class _Mode:
    """Base for context managers that also work as decorators (PyTorch's behaviour)."""

    mode = True

    def __enter__(self):
        self.prev = STATE.enabled
        STATE.enabled = self.mode

    def __exit__(self, *exc):
        STATE.enabled = self.prev
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = STATE.enabled
            STATE.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                STATE.enabled = prev
        return wrapper

    def clone(self):
        return self.__class__()


@torch_repr("torch.autograd.grad_mode.no_grad")
class no_grad(_Mode):
    mode = False


@torch_repr("torch.autograd.grad_mode.enable_grad")
class enable_grad(_Mode):
    mode = True


class set_grad_enabled(_Mode):
    """`set_grad_enabled(False)` switches at once (as a function) and restores on `__exit__`."""

    def __init__(self, mode):
        self.mode = bool(mode)
        self.prev = STATE.enabled
        STATE.enabled = self.mode

    def __enter__(self):
        pass

    def __repr__(self):
        return f"torch.autograd.grad_mode.set_grad_enabled(mode={self.mode})"

    def __call__(self, fn):
        STATE.enabled = self.prev  # used as a decorator: the switch applies inside fn only
        return super().__call__(fn)


@torch_repr("torch.autograd.grad_mode.inference_mode")
class inference_mode(no_grad):
    """no_grad, and the tensors made inside are inference tensors (they track no version:
    reading `_version` raises, as in PyTorch; `is_inference()` is True)."""

    def __init__(self, mode=True):
        self.mode = not mode
        self.inference = bool(mode)

    def __enter__(self):
        self.prev_inference = STATE.inference
        STATE.inference = self.inference
        return super().__enter__()

    def __exit__(self, *exc):
        STATE.inference = self.prev_inference
        return super().__exit__(*exc)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(self.inference):
                return fn(*args, **kwargs)
        return wrapper

    def clone(self):
        return self.__class__(self.inference)


def is_inference_mode_enabled():
    return STATE.inference


def is_anomaly_enabled():
    return STATE.anomaly


@torch_repr("torch.autograd.anomaly_mode.detect_anomaly")
class detect_anomaly:
    """Record where each node's forward op was created, and raise when backward makes NaN."""

    def __init__(self, check_nan=True):
        self.check_nan = check_nan

    def __enter__(self):
        import warnings
        warnings.warn(
            "Anomaly Detection has been enabled. This mode will increase the runtime and should "
            "only be enabled for debugging.", stacklevel=2)
        self.prev = (STATE.anomaly, STATE.anomaly_check_nan)
        STATE.anomaly, STATE.anomaly_check_nan = True, self.check_nan

    def __exit__(self, *exc):
        STATE.anomaly, STATE.anomaly_check_nan = self.prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)
        return wrapper


def set_detect_anomaly(mode, check_nan=True):
    STATE.anomaly, STATE.anomaly_check_nan = bool(mode), check_nan
