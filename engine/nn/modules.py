"""torch.nn.Module and the common layers and losses, on engine ops.

A Module registers the Parameters and Modules assigned to its attributes, in order, so that
`parameters()`, `named_parameters()` (qualified names like `0.weight`), `state_dict()`,
`zero_grad()`, `train()`/`eval()` behave as PyTorch's. Layers compute with the engine's ops, so
their graphs are engine graphs (a Linear layer records MmBackward0 + AddBackward0 where PyTorch
records AddmmBackward0).
"""
import math
from collections import OrderedDict

import numpy as np

from .. import errors
from ..grad_mode import no_grad
from ..tensor import Tensor
from . import functional as F
from .parameter import Parameter, zero_grads


def _check_name(kind, name):
    """PyTorch's rules (and words) for the name of a parameter, buffer or submodule: qualified
    names (`net.0.weight`) are joined with dots, so a dot in a name would make two names one."""
    if not isinstance(name, str):
        raise errors.EngineTypeError(f"{kind} name should be a string. Got {type(name).__name__}")
    if "." in name:
        raise errors.EngineKeyError(f'{kind} name can\'t contain "."' + (f", got: {name}" if kind == "module" else ""))
    if name == "":
        raise errors.EngineKeyError(f'{kind} name can\'t be empty string ""')


class Module:
    """Base class of every layer: subclass, assign Parameters and Modules in __init__, define
    forward(); call the module to run it."""

    training = True

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())

    def _tables(self):
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameters or modules before Module.__init__() call")
        return self._parameters, self._modules

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            params, mods = self._tables()
            _check_name("parameter", name)
            mods.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params, mods = self._tables()
            _check_name("module", name)
            params.pop(name, None)
            mods[name] = value
        else:
            d = self.__dict__
            if "_parameters" in d and name in d["_parameters"]:
                if value is not None:
                    raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                    "(torch.nn.Parameter or None expected)")
                d["_parameters"][name] = None
                return
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for table in ("_parameters", "_modules", "_buffers"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._modules, self._buffers):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        self._tables()
        _check_name("parameter", name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        self._tables()
        _check_name("buffer", name)
        self._buffers[name] = tensor

    def add_module(self, name, module):
        self._tables()
        _check_name("module", name)
        self._modules[name] = module

    register_module = add_module

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        d = self.__dict__
        if "_forward_hooks" in d or "_forward_pre_hooks" in d or "_backward_hooks" in d or "_backward_pre_hooks" in d:
            from .hooks import call
            return call(self, args, kwargs)
        return self.forward(*args, **kwargs)

    # -- hooks (engine/nn/hooks.py), as PyTorch's -------------------------------------------------
    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        from .hooks import add
        return add(self, "_forward_pre_hooks", (hook, with_kwargs), prepend)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False, always_call=False):
        from .hooks import add
        return add(self, "_forward_hooks", (hook, with_kwargs, always_call), prepend)

    def register_full_backward_hook(self, hook, prepend=False):
        from .hooks import add
        return add(self, "_backward_hooks", hook, prepend)

    def register_full_backward_pre_hook(self, hook, prepend=False):
        from .hooks import add
        return add(self, "_backward_pre_hooks", hook, prepend)

    # -- traversal ------------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix=""):
        for mprefix, m in self.named_modules(prefix=prefix):
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mprefix}.{name}" if mprefix else name), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    # -- state ----------------------------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        zero_grads(self.parameters(), set_to_none)

    def state_dict(self):
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.detach()
        for name, b in self.named_buffers():
            out[name] = b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        own = dict(self.named_parameters())
        own.update(dict(self.named_buffers()))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise errors.EngineRuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}")
        with no_grad():
            for k, v in state_dict.items():
                if k in own:
                    arr = v._data if isinstance(v, Tensor) else np.asarray(getattr(v, "detach", lambda: v)())
                    own[k]._data[...] = np.asarray(arr, dtype=own[k]._data.dtype)
        return missing, unexpected

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args, **kwargs):
        from .._device import check
        dtype = kwargs.get("dtype")
        check(kwargs.get("device"))
        for a in args:
            if isinstance(a, str) or type(a).__name__ == "device":
                check(a)
            elif a is not None:
                dtype = a
        if dtype is not None:
            for p in self.parameters():
                p._data = p._data.astype(Tensor([], dtype=dtype)._data.dtype)
        return self

    def cpu(self):
        return self

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}(" + (extra + "\n" if extra else "\n") + \
            "".join("  " + line + "\n" for line in lines) + ")"


def _uniform(shape, bound):
    """U(-bound, bound) as PyTorch's float32 parameters draw it (so a seeded nn.Linear gets
    PyTorch's initial weights), widened to the engine's default dtype."""
    from .. import _dtype
    from ..tensor import default_generator
    return default_generator.uniform(shape, _dtype.DEFAULT_SET and _dtype.DEFAULT_FLOAT == "float64",
                                     -bound, bound).astype(_dtype.DEFAULT_FLOAT)


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features), initialised as PyTorch's (uniform
    within 1/sqrt(in_features))."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        from .._device import check
        check(device)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Parameter(Tensor(_uniform((out_features, in_features), bound), dtype=dtype))
        self.bias = Parameter(Tensor(_uniform((out_features,), bound), dtype=dtype)) if bias else None
        if not bias:
            self._parameters["bias"] = None

    def forward(self, input):  # noqa: A002 - PyTorch's parameter name (a target's input name)
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Sequential(Module):
    def __init__(self, *mods):
        super().__init__()
        if len(mods) == 1 and isinstance(mods[0], OrderedDict):
            for name, m in mods[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(mods):
                self.add_module(str(i), m)

    def forward(self, input):  # noqa: A002 - PyTorch's parameter name
        for m in self._modules.values():
            input = m(input)  # noqa: A001
        return input

    def __getitem__(self, i):
        mods = list(self._modules.values())
        return Sequential(*mods[i]) if isinstance(i, slice) else mods[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, m):
        self.add_module(str(len(self._modules)), m)
        return self


def _activation(name, fn, extra=None):
    def forward(self, input):  # noqa: A002 - PyTorch's parameter name
        return fn(self, input)
    cls = type(name, (Module,), {"forward": forward, "__module__": __name__,
                                 "extra_repr": extra or (lambda self: "")})
    return cls


ReLU = _activation("ReLU", lambda self, x: F.relu(x))
Tanh = _activation("Tanh", lambda self, x: x.tanh())
Sigmoid = _activation("Sigmoid", lambda self, x: x.sigmoid())
Identity = _activation("Identity", lambda self, x: x)


SiLU = _activation("SiLU", lambda self, x: F.silu(x))
ReLU6 = _activation("ReLU6", lambda self, x: F.relu6(x))


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, input):  # noqa: A002
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha

    def forward(self, input):  # noqa: A002
        return F.elu(input, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input):  # noqa: A002
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, input):  # noqa: A002
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace=False"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):  # noqa: A002
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ModuleList(Module):
    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleDict(Module):
    def __init__(self, modules=None):
        super().__init__()
        for k, m in (modules or {}).items():
            self.add_module(k, m)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        fan_in = (in_channels // groups) * k[0] * k[1]
        bound = 1.0 / fan_in ** 0.5          # PyTorch's kaiming_uniform_(a=sqrt(5)) bound
        self.weight = Parameter(_uniform((out_channels, in_channels // groups) + k, bound))
        if bias:
            self.bias = Parameter(_uniform((out_channels,), bound))
        else:
            self._parameters["bias"] = None

    def forward(self, input):  # noqa: A002
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        def pair(v):
            return v if isinstance(v, (tuple, str)) else (v, v)
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={pair(self.stride)}"
        if self.padding not in (0, (0, 0)):
            s += f", padding={pair(self.padding)!r}" if isinstance(self.padding, str) else f", padding={pair(self.padding)}"
        if self.dilation not in (1, (1, 1)):
            s += f", dilation={pair(self.dilation)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class ConvTranspose2d(Module):
    """weight (in_channels, out_channels/groups, kh, kw); initialised as PyTorch (its fan-in is
    weight.size(1) * kh * kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.dilation, self.groups = dilation, groups
        bound = 1.0 / ((out_channels // groups) * k[0] * k[1]) ** 0.5
        self.weight = Parameter(_uniform((in_channels, out_channels // groups) + k, bound))
        if bias:
            self.bias = Parameter(_uniform((out_channels,), bound))
        else:
            self._parameters["bias"] = None

    def forward(self, input, output_size=None):  # noqa: A002
        if output_size is not None:
            raise NotImplementedError("ConvTranspose2d(output_size=...) is not in the engine yet")
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                  self.groups, self.dilation)

    def extra_repr(self):
        def pair(v):
            return v if isinstance(v, tuple) else (v, v)
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={pair(self.stride)}"
        if self.padding not in (0, (0, 0)):
            s += f", padding={pair(self.padding)}"
        if self.dilation not in (1, (1, 1)):
            s += f", dilation={pair(self.dilation)}"
        if self.output_padding not in (0, (0, 0)):
            s += f", output_padding={pair(self.output_padding)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride or kernel_size, padding, dilation
        self.ceil_mode = ceil_mode

    def forward(self, input):  # noqa: A002
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class Softplus(Module):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input):  # noqa: A002
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        from ..tensor import ones, zeros
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ones(*self.normalized_shape))
            self.bias = Parameter(zeros(*self.normalized_shape)) if bias else None
        else:
            self._parameters["weight"] = self._parameters["bias"] = None

    def forward(self, input):  # noqa: A002
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, device=None, dtype=None):
        super().__init__()
        from ..tensor import default_generator
        from .. import _dtype
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        w = default_generator.normal((num_embeddings, embedding_dim), False).astype(_dtype.DEFAULT_FLOAT)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = Parameter(Tensor(w) if _weight is None else _weight)

    def forward(self, input):  # noqa: A002
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class DataParallel(Module):
    """Runs `module` (the engine has one CPU device, so there is nothing to spread over)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class LogSoftmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):  # noqa: A002 - PyTorch's parameter name
        return F.log_softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):  # noqa: A002 - PyTorch's parameter name
        return F.softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{reduction} is not a valid value for reduction")
        self.reduction = reduction


class MSELoss(_Loss):
    def forward(self, input, target):  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)


class NLLLoss(_Loss):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, input, target):  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class CrossEntropyLoss(_Loss):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(reduction)
        self.weight, self.ignore_index, self.label_smoothing = weight, ignore_index, label_smoothing

    def forward(self, input, target):  # noqa: A002
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class BCELoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):  # noqa: A002
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class L1Loss(_Loss):
    def forward(self, input, target):  # noqa: A002
        return F.l1_loss(input, target, reduction=self.reduction)
