"""The Tensor: a numpy array plus autograd state, and the factories that make tensors.

Ops and their Tensor methods (`x.sum()`, `x * y`, ...) are attached from the op registry in
engine/ops; this module holds only state, properties, in-place plumbing and repr.
"""
import warnings
import weakref

import numpy as np

from . import _device, _dtype, errors
from ._format import tensor_repr
from .grad_mode import STATE, no_grad
from .graph import RemovableHandle
from .graph import node_name

_NONLEAF_GRAD_WARNING = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad field "
    "to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you "
    "access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead. See "
    "github.com/pytorch/pytorch/pull/30531 for more information.")

_LEGACY_TYPE = {"float64": "DoubleTensor", "float32": "FloatTensor", "float16": "HalfTensor",
                "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor",
                "int8": "CharTensor", "uint8": "ByteTensor", "bool": "BoolTensor"}


# engine.autograd.forward_ad once it has made a dual of a tensor that did not require grad: the
# engine records such a dual's graph (tangents are computed through reverse mode) where PyTorch's
# forward AD records none, so requires_grad and repr hide that graph (_forward_only); and repr
# shows a tensor's tangent inside a dual level, as PyTorch's does
_FORWARD_AD = [None]


def _forward_only(t):
    """Whether t has a graph only because of forward AD: every leaf it depends on is a dual that
    make_dual made from a tensor that did not require grad."""
    if t._fwd_only:
        return True
    node = t.grad_fn
    if node is None:
        return False
    seen, stack, found = set(), [node], False
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        var = getattr(n, "variable", None)
        if isinstance(var, Tensor):
            if not var._fwd_only:
                return False
            found = True
        stack.extend(x for x in n._next if x is not None)
    return found


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    State lives in class-level defaults so that making a tensor on the per-op path sets only
    what differs from them (`_data`, `_vc`, and for graph outputs `grad_fn`, `_rg`).
    """

    grad_fn = None
    _rg = False            # requires_grad
    _grad = None
    _output_nr = 0
    _retains_grad = False
    _hooks = None          # leaf tensor hooks
    _post_acc_hooks = None  # leaf hooks run after .grad is accumulated
    _acc = None            # weakref to this leaf's AccumulateGrad node
    _name = None           # variable name, when a front end knows it (DOT labels)
    _vc = None             # version counter [n], shared with detach()ed aliases; made on first need
    _inference = False     # made inside inference_mode
    _fwd_only = False      # a forward-AD dual of a tensor that did not require grad (see _forward_only)
    __array_priority__ = 1000  # ndarray (op) Tensor defers to the Tensor's reflected op

    # -- construction -------------------------------------------------------------------------
    def __init__(self, data=None, *sizes, dtype=None, requires_grad=False):
        if isinstance(data, int) and not isinstance(data, bool) or sizes:
            # the legacy torch.Tensor(2, 3): an uninitialised (here: zero) float tensor of that shape
            self._data = np.zeros((data,) + tuple(sizes), _dtype.DEFAULT_FLOAT)
            return
        arr = _to_array(data if data is not None else [], dtype)
        if dtype is None and arr.dtype.kind in "iub" and not isinstance(data, np.ndarray):
            arr = arr.astype(_dtype.DEFAULT_FLOAT)  # torch.Tensor([1, 2]) is floating
        self._data = arr
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, arr, grad_fn=None, rg=False):
        t = cls.__new__(cls)
        t._data = arr
        if grad_fn is not None:
            t.grad_fn = grad_fn
            t._rg = True
        elif rg:
            t._rg = True
        return t

    # -- autograd state -------------------------------------------------------------------------
    @property
    def requires_grad(self):
        if self._rg and _FORWARD_AD[0] is not None and _forward_only(self):
            return False
        return self._rg

    @requires_grad.setter
    def requires_grad(self, value):
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad=True):
        if self.grad_fn is not None:
            if not requires_grad:
                raise errors.EngineRuntimeError(errors.NON_LEAF_REQUIRES_GRAD)
            return self
        if requires_grad and self._data.dtype.kind not in "fc":
            raise errors.EngineRuntimeError(errors.NOT_FLOATING)
        self._rg = bool(requires_grad)
        return self

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def grad(self):
        if self.grad_fn is not None and not self._retains_grad:
            warnings.warn(_NONLEAF_GRAD_WARNING, UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad of type {type(value).__name__}")
            if value._data.shape != self._data.shape:
                raise errors.EngineRuntimeError("assigned grad has data of a different size")
        self._grad = value

    @grad.deleter
    def grad(self):
        self._grad = None

    @property
    def data(self):
        t = Tensor._make(self._data)
        return t

    @data.setter
    def data(self, value):
        self._data = value._data if isinstance(value, Tensor) else _to_array(value, None)

    @property
    def output_nr(self):
        return self._output_nr

    @property
    def _version(self):
        if self._inference:
            raise errors.EngineRuntimeError("Inference tensors do not track version counter.")
        return 0 if self._vc is None else self._vc[0]

    def is_inference(self):
        return self._inference

    def retain_grad(self):
        if self.grad_fn is None:
            if not self._rg:
                raise errors.EngineRuntimeError("can't retain_grad on Tensor that has requires_grad=False")
            return
        if self._retains_grad:
            return
        self._retains_grad = True
        node = self.grad_fn
        node._plain = False
        if node._retains is None:
            node._retains = {}
        node._retains[self._output_nr] = weakref.ref(self)

    @property
    def retains_grad(self):
        return self._retains_grad

    def register_hook(self, hook):
        """hook(grad) -> Tensor or None, called with the gradient flowing into this tensor."""
        if not self._rg:
            raise errors.EngineRuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            return self.grad_fn._add_pre_hook(self._output_nr, hook)
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return RemovableHandle(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """hook(tensor) after this leaf's .grad has been accumulated in a backward pass."""
        if not self._rg:
            raise errors.EngineRuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise errors.EngineRuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if self._post_acc_hooks is None:
            self._post_acc_hooks = []
        self._post_acc_hooks.append(hook)
        return RemovableHandle(self._post_acc_hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def detach(self):
        """A new leaf sharing this tensor's storage and version counter, with no history."""
        t = Tensor.__new__(Tensor)
        t._data = self._data
        t._vc = vc_of(self)
        return t

    def detach_(self):
        self.grad_fn = None
        self._rg = False
        self._output_nr = 0
        return self

    # -- metadata -----------------------------------------------------------------------------
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[wrap_dim(dim, self._data.ndim)]

    def stride(self, dim=None):
        """Elements to step in memory per index of each dim, as PyTorch counts them (a transposed
        tensor's are reversed; an expanded dim's are 0)."""
        st = tuple(s // self._data.itemsize for s in self._data.strides) if self._data.itemsize else \
            (0,) * self._data.ndim
        return st if dim is None else st[wrap_dim(dim, self._data.ndim)]

    def is_contiguous(self, memory_format=None):
        return bool(self._data.flags.c_contiguous)

    @property
    def dtype(self):
        return _dtype.from_numpy_dtype(self._data.dtype)

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return self._data.size

    nelement = numel

    def element_size(self):
        return self._data.itemsize

    def is_floating_point(self):
        return self._data.dtype.kind == "f"

    def is_complex(self):
        return self._data.dtype.kind == "c"      # never, today: the engine has no complex dtypes

    @property
    def device(self):
        return _device.CPU

    def cpu(self):
        return self

    def cuda(self, *args, **kwargs):
        _device.check("cuda")

    def type(self, dtype=None):
        if dtype is None:
            return "torch." + _LEGACY_TYPE.get(self._data.dtype.name, "Tensor")
        legacy = getattr(dtype, "legacy_dtype", None)     # x.type(torch.FloatTensor)
        if isinstance(dtype, str):
            name = dtype.rsplit(".", 1)[-1]
            legacy = next((k for k, v in _LEGACY_TYPE.items() if v == name), None)
            if legacy is None:
                raise ValueError(f"invalid type: '{dtype}'")
        return self.to(_dtype.from_numpy_dtype(np.dtype(legacy)) if legacy is not None else dtype)

    def ndimension(self):
        return self._data.ndim

    def clamp_min(self, min):  # noqa: A002
        return self.clamp(min=min)

    def clamp_max(self, max):  # noqa: A002
        return self.clamp(max=max)

    # -- conversion ---------------------------------------------------------------------------
    def item(self):
        if self._data.size != 1:
            raise errors.EngineRuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(()).item()

    def tolist(self):
        return self._data.tolist()

    def numpy(self, force=False):
        # refused only while grad mode is on (PyTorch): a Function's forward may call it
        if self._rg and not force and STATE.enabled:
            raise errors.EngineRuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return self._data

    def __array__(self, dtype=None, copy=None):
        # numpy functions on a tensor that requires grad would drop the gradient silently:
        # PyTorch refuses them with numpy()'s error (np.exp(x) -> RuntimeError)
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise errors.EngineRuntimeError(
                "Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._data.reshape(()).item())

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    __hash__ = object.__hash__

    def __repr__(self, *, tensor_contents=None):
        suffixes = []
        fwd = _FORWARD_AD[0]
        if fwd is not None and self._rg and _forward_only(self):
            pass                       # forward AD's graph: PyTorch records none
        elif self.grad_fn is not None:
            suffixes.append(f"grad_fn=<{node_name(self.grad_fn).rsplit('::', 1)[-1]}>")
        elif self._rg:
            suffixes.append("requires_grad=True")
        if fwd is not None and fwd.active():
            tangent = fwd.unpack_dual(self).tangent
            if tangent is not None:      # PyTorch shows a 0-d tangent as its number
                suffixes.append(f"tangent={tangent.item()!r}" if tangent.ndim == 0 else f"tangent={tangent!r}")
        d = self._data
        default = d.dtype == _dtype.DEFAULT_FLOAT or d.dtype.name in ("int64", "bool")
        return tensor_repr(d, suffixes, default, repr(_dtype.from_numpy_dtype(d.dtype)))

    __str__ = __repr__

    def __format__(self, spec):
        if self._data.ndim == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec)

    def __reduce_ex__(self, proto):
        return (_rebuild, (self._data, self._rg))

    # -- in place -----------------------------------------------------------------------------
    def _check_inplace(self):
        if self.grad_fn is None and self._rg and STATE.enabled:
            raise errors.EngineRuntimeError(errors.LEAF_INPLACE)

    def _bump(self):
        vc_of(self)[0] += 1

    def _inplace(self, fn, *args, ufunc=None):
        """Run out-of-place `fn(self, *args)` and write its result into this tensor's storage.

        Outside graph recording a numpy ufunc writes in place directly. When recording, the old
        value is copied first (a rule may need it) and this tensor takes the new node as its
        grad_fn (PyTorch's history rebase).
        """
        self._check_inplace()
        recording = STATE.enabled and (self._rg or any(isinstance(a, Tensor) and a._rg for a in args))
        if not recording:
            if ufunc is not None:
                vals = [a._data if isinstance(a, Tensor) else a for a in args]
                rt = np.result_type(self._data, *vals)
                if not np.can_cast(rt, self._data.dtype, casting="same_kind"):
                    raise errors.EngineRuntimeError(
                        f"result type {_TYPE_NAMES.get(rt.name, rt.name)} can't be cast to the desired "
                        f"output type {_TYPE_NAMES.get(self._data.dtype.name, self._data.dtype.name)}")
                ufunc(self._data, *vals, out=self._data, casting="unsafe")
            else:
                with no_grad():
                    res = fn(self, *args)
                self._write(res._data)
            self._bump()
            return self
        old = Tensor._make(self._data.copy(), self.grad_fn, self._rg)
        old._output_nr = self._output_nr
        old._acc = self._acc
        res = fn(old, *args)
        self._write(res._data)
        self._bump()
        self.grad_fn = res.grad_fn
        self._output_nr = res._output_nr
        self._rg = True
        return self

    def _write(self, arr):
        if arr.shape != self._data.shape:
            try:
                arr = np.broadcast_to(arr, self._data.shape)
            except ValueError:
                raise errors.ShapeError(
                    f"output with shape {list(self._data.shape)} doesn't match the broadcast shape {list(arr.shape)}") from None
        if not np.can_cast(arr.dtype, self._data.dtype, casting="same_kind"):
            raise errors.EngineRuntimeError(
                f"result type {_TYPE_NAMES.get(arr.dtype.name, arr.dtype.name)} can't be cast to the desired "
                f"output type {_TYPE_NAMES.get(self._data.dtype.name, self._data.dtype.name)}")
        np.copyto(self._data, arr, casting="unsafe")

    def zero_(self):
        return self.fill_(0)

    def uniform_(self, a=0.0, b=1.0, *, generator=None):
        """Fill with draws from U(a, b) (no gradient: like fill_, the old values are forgotten)."""
        arr = (generator or default_generator).uniform(self._data.shape, self._double_stream(), a, b)
        return self.copy_(Tensor._make(arr.astype(self._data.dtype)))

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        arr = (generator or default_generator).normal(self._data.shape, self._double_stream(), mean, std)
        return self.copy_(Tensor._make(arr.astype(self._data.dtype)))

    def random_(self, low=None, high=None, *, generator=None):
        g = generator or default_generator
        if low is None and high is None:        # the dtype's whole range (an engine float64 is float32's)
            nd = self._data.dtype
            stands_for = np.dtype(np.float32) if nd == np.float64 and not self._double_stream() else nd
            return self.copy_(Tensor._make(g.full_range(self._data.shape, stands_for).astype(nd)))
        if high is None:
            low, high = 0, low
        arr = g.randint(low, high, self._data.shape)
        return self.copy_(Tensor._make(arr.astype(self._data.dtype)))

    def bernoulli_(self, p=0.5, *, generator=None):
        u = (generator or default_generator).uniform(self._data.shape, False)
        return self.copy_(Tensor._make((u < p).astype(self._data.dtype)))

    def _double_stream(self):
        """PyTorch's float64 stream for a float64 tensor made with an explicit dtype; the engine's
        default float64 stands for PyTorch's float32 (see engine._random)."""
        return self._data.dtype == np.float64 and _dtype.DEFAULT_SET

    def pow_(self, exponent):
        return self._inplace(ops.pow, exponent)

    def fill_(self, value):
        return self._inplace(lambda s, v: ops.full_like_op(s, v), value)

    def copy_(self, src):
        return self._inplace(lambda s, v: ops.copy_from(s, v), src)

    def add_(self, other, *, alpha=1):
        if alpha != 1:
            other = other * alpha
        return self._inplace(ops.add, other, ufunc=np.add)

    def sub_(self, other, *, alpha=1):
        if alpha != 1:
            other = other * alpha
        return self._inplace(ops.sub, other, ufunc=np.subtract)

    def mul_(self, other):
        return self._inplace(ops.mul, other, ufunc=np.multiply)

    def div_(self, other):
        return self._inplace(ops.div, other, ufunc=np.true_divide)

    def clamp_(self, min=None, max=None):  # noqa: A002
        return self._inplace(lambda s: ops.clamp(s, min, max))

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def __setitem__(self, key, value):
        return self._inplace(lambda s, v: ops.index_put(s, key, v), value)


_TYPE_NAMES = {"float64": "Double", "float32": "Float", "float16": "Half", "int64": "Long",
               "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


class Size(tuple):
    """torch.Size: a tuple that prints as `torch.Size([2, 3])`."""

    def __repr__(self):
        return f"torch.Size({list(self)})"

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n


def vc_of(t):
    """t's version counter, made on first need (most tensors never need one)."""
    vc = t._vc
    if vc is None:
        vc = t._vc = [0]
    return vc


def _rebuild(data, rg):
    t = Tensor._make(data)
    t._rg = rg
    return t


def wrap_dim(dim, ndim):
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise errors.DimensionError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n if ndim else 0


def _to_array(data, dtype):
    nd = _dtype.to_numpy_dtype(dtype)
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, (list, tuple)) and any(isinstance(v, Tensor) for v in _flat(data)):
        arr = np.array(_untensor(data))
    else:
        arr = data
    try:
        arr = np.array(arr, dtype=nd, copy=True)
    except ValueError as e:
        raise errors.EngineError(f"could not make a tensor from {type(data).__name__}: {e}") from None
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise TypeError(f"new(): invalid data type '{arr.dtype}'")
    if nd is None and arr.dtype.kind == "f" and arr.dtype != np.float32 and arr.dtype != np.float16:
        arr = arr.astype(_dtype.DEFAULT_FLOAT, copy=False)
    if arr.dtype not in _dtype.FROM_NP:
        if arr.dtype.kind == "i" or arr.dtype.kind == "u":
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"unsupported dtype {arr.dtype}")
    return arr


def _flat(seq):
    for v in seq:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def _untensor(seq):
    return [(_untensor(v) if isinstance(v, (list, tuple)) else (v._data if isinstance(v, Tensor) else v)) for v in seq]


# -- factories ----------------------------------------------------------------------------------
def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new tensor holding a copy of `data` (float64 by default for floats)."""
    _device.check(device)
    if isinstance(data, Tensor):
        warnings.warn(
            "To copy construct from a tensor, it is recommended to use sourceTensor.detach().clone() "
            "or sourceTensor.detach().clone().requires_grad_(True), rather than torch.tensor(sourceTensor).",
            UserWarning, stacklevel=2)
    t = Tensor._make(_to_array(data, dtype))
    if STATE.inference:
        t._inference = True
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data, dtype=None):
    if isinstance(data, Tensor) and (dtype is None or data.dtype == dtype):
        return data
    return tensor(data, dtype)


def from_numpy(arr):
    return Tensor._make(np.asarray(arr))


def _shape_args(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        return tuple(size[0])
    return tuple(size)


def _factory(arr, requires_grad):
    t = Tensor._make(arr)
    if STATE.inference:
        t._inference = True
    if requires_grad:
        t.requires_grad_(True)
    return t


def _float_dtype(dtype):
    return _dtype.to_numpy_dtype(dtype) or _dtype.DEFAULT_FLOAT


@_device.on_cpu
def zeros(*size, dtype=None, requires_grad=False):
    return _factory(np.zeros(_shape_args(size), _float_dtype(dtype)), requires_grad)


@_device.on_cpu
def ones(*size, dtype=None, requires_grad=False):
    return _factory(np.ones(_shape_args(size), _float_dtype(dtype)), requires_grad)


@_device.on_cpu
def empty(*size, dtype=None, requires_grad=False, memory_format=None, pin_memory=False):
    """torch.empty: uninitialised in PyTorch; zeros here (shape, dtype and requires_grad as PyTorch)."""
    return zeros(*size, dtype=dtype, requires_grad=requires_grad)


@_device.on_cpu
def full(size, fill_value, dtype=None, requires_grad=False):
    if dtype is None:
        nd = np.asarray(fill_value).dtype
        nd = _dtype.DEFAULT_FLOAT if nd.kind == "f" else nd
    else:
        nd = _dtype.to_numpy_dtype(dtype)
    return _factory(np.full(tuple(size), fill_value, nd), requires_grad)


@_device.on_cpu
def zeros_like(t, dtype=None, requires_grad=False):
    return _factory(np.zeros(t._data.shape, _dtype.to_numpy_dtype(dtype) or t._data.dtype), requires_grad)


@_device.on_cpu
def empty_like(t, dtype=None, requires_grad=False, memory_format=None):
    """torch.empty_like: uninitialised in PyTorch; zeros here (shape, dtype and requires_grad as PyTorch)."""
    return zeros_like(t, dtype=dtype, requires_grad=requires_grad)


@_device.on_cpu
def ones_like(t, dtype=None, requires_grad=False):
    return _factory(np.ones(t._data.shape, _dtype.to_numpy_dtype(dtype) or t._data.dtype), requires_grad)


@_device.on_cpu
def full_like(t, fill_value, dtype=None, requires_grad=False):
    return _factory(np.full(t._data.shape, fill_value, _dtype.to_numpy_dtype(dtype) or t._data.dtype), requires_grad)


@_device.on_cpu
def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    nd = _dtype.to_numpy_dtype(dtype)
    if nd is None:
        ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
        nd = np.dtype("int64") if ints else _dtype.DEFAULT_FLOAT
    return _factory(np.arange(start, end, step, dtype=nd), requires_grad)


@_device.on_cpu
def linspace(start, end, steps, dtype=None, requires_grad=False):
    return _factory(np.linspace(start, end, steps, dtype=_float_dtype(dtype)), requires_grad)


@_device.on_cpu
def eye(n, m=None, dtype=None, requires_grad=False):
    return _factory(np.eye(n, m, dtype=_float_dtype(dtype)), requires_grad)


class _DefaultGenerator:
    """The global random state (torch.default_generator): engine._random.Generator, made on
    first use (numpy.random is a tenth of `import engine`, and the CLI rarely needs it)."""

    _gen = None

    def _get(self):
        if self._gen is None:
            from ._random import Generator
            self._gen = Generator()
        return self._gen

    def __getattr__(self, name):
        return getattr(self._get(), name)

    def manual_seed(self, seed):
        self._get().manual_seed(seed)
        return self


default_generator = _DefaultGenerator()


def Generator(device="cpu"):  # noqa: N802 - torch.Generator
    from ._random import Generator as _G
    return _G(device)


def _double_stream(dtype):
    """Whether to draw as PyTorch does for float64 (else its float32 stream): an explicit dtype
    decides; without one, PyTorch's default float32, unless set_default_dtype chose float64."""
    if dtype is not None:
        return _dtype.to_numpy_dtype(dtype) == np.float64
    return _dtype.DEFAULT_SET and _dtype.DEFAULT_FLOAT == np.float64


def manual_seed(seed):
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state):
    default_generator.set_state(state)


@_device.on_cpu
def rand(*size, dtype=None, requires_grad=False, generator=None):
    size = _shape_args(size)
    arr = (generator or default_generator).uniform(size, _double_stream(dtype))
    return _factory(arr.astype(_float_dtype(dtype), copy=False), requires_grad)


@_device.on_cpu
def randn(*size, dtype=None, requires_grad=False, generator=None):
    size = _shape_args(size)
    arr = (generator or default_generator).normal(size, _double_stream(dtype))
    return _factory(arr.astype(_float_dtype(dtype), copy=False), requires_grad)


def _like_dtype(t, dtype):
    """The dtype a *_like draw asks for: t's, except that a tensor of the engine's default float64
    stands for PyTorch's default float32 (an nn.Parameter, torch.zeros(3)): it draws from that
    stream, as randn(3) does (t.uniform_() reads the same way: Tensor._double_stream)."""
    if dtype is not None:
        return dtype
    return None if t._data.dtype == np.float64 and not t._double_stream() else t.dtype


@_device.on_cpu
def rand_like(t, dtype=None, requires_grad=False):
    return rand(*t.shape, dtype=_like_dtype(t, dtype), requires_grad=requires_grad)


@_device.on_cpu
def randn_like(t, dtype=None, requires_grad=False):
    return randn(*t.shape, dtype=_like_dtype(t, dtype), requires_grad=requires_grad)


@_device.on_cpu
def randint(low, high=None, size=(), dtype=None, generator=None, requires_grad=False):
    if high is None:
        low, high = 0, low
    nd = _dtype.to_numpy_dtype(dtype) or np.dtype("int64")
    return Tensor._make((generator or default_generator).randint(low, high, tuple(size)).astype(nd))


@_device.on_cpu
def randperm(n, dtype=None, generator=None, requires_grad=False):
    nd = _dtype.to_numpy_dtype(dtype) or np.dtype("int64")
    return Tensor._make((generator or default_generator).randperm(int(n)).astype(nd))


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """torch.normal(mean, std, size) with numbers, or elementwise with tensors."""
    _device.check(device)
    gen = generator or default_generator
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = mean._data if isinstance(mean, Tensor) else mean
        sd = std._data if isinstance(std, Tensor) else std
        shape = np.broadcast_shapes(np.shape(m), np.shape(sd))
        z = gen.normal(shape, np.result_type(m, sd) == np.float64 and _dtype.DEFAULT_SET)
        return _factory((z * sd + m).astype(_float_dtype(dtype)), requires_grad)
    z = gen.normal(tuple(size), _double_stream(dtype), float(mean), float(std))
    return _factory(z.astype(_float_dtype(dtype)), requires_grad)


def is_tensor(obj):
    return isinstance(obj, Tensor)


# -- methods and operators: bound from the op registry and its exports (engine/ops), the single
# source of every op. engine.ops and engine.autograd import this module: they are imported here,
# at the end, where Tensor exists; the methods above use them only when called.
from . import ops  # noqa: E402
from .autograd import backward  # noqa: E402
ops.bind(Tensor)


def _unary_inplace(name):
    fn = getattr(ops, name)

    def method(self):
        return self._inplace(fn)
    method.__name__ = method.__qualname__ = name + "_"
    method.__doc__ = f"In place: self = {name}(self)."
    return method


for _n in ("abs", "exp", "log", "sqrt", "neg", "sin", "cos", "tanh", "sigmoid", "relu", "floor", "ceil", "round",
           "reciprocal", "square", "sign", "trunc"):
    setattr(Tensor, _n + "_", _unary_inplace(_n))
