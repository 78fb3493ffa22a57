"""Module hooks as PyTorch runs them (torch/nn/modules/module.py's _call_impl and
torch/utils/hooks.py's BackwardHook): forward pre-hooks and forward hooks around forward(),
and full backward (pre-)hooks through an identity Function on the inputs and on the outputs
(PyTorch's BackwardHookFunctionBackward nodes), so that hook(module, grad_input, grad_output)
sees the gradients of the module's own tensor inputs and outputs."""
import functools
import itertools
import os
import sys
import warnings
from collections import OrderedDict

from .. import errors
from .._names import torch_repr
from ..grad_mode import is_grad_enabled
from ..tensor import Tensor

_IDS = itertools.count()
_ENGINE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_NO_INPUT_GRAD = ("Full backward hook is firing when gradients are computed with respect to module outputs since "
                  "no inputs require gradients. See https://docs.pytorch.org/docs/main/generated/torch.nn.Module."
                  "html#torch.nn.Module.register_full_backward_hook for more details.")


def _warn_at_user_code(message):
    """A warning shown at the first frame outside the engine (the user's backward() line, where
    PyTorch's C++ engine puts it)."""
    level, f = 2, sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_ENGINE_DIR):
        level, f = level + 1, f.f_back
    warnings.warn(message, UserWarning, stacklevel=level)


@torch_repr("torch.utils.hooks.RemovableHandle")
class RemovableHandle:
    """What a Module's register_*_hook returns: `.remove()` unregisters (also as a context)."""

    def __init__(self, table):
        self.id = next(_IDS)
        self._table = table

    def remove(self):
        self._table.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def table(module, name):
    t = module.__dict__.get(name)
    if t is None:
        t = OrderedDict()
        object.__setattr__(module, name, t)
    return t


def add(module, name, entry, prepend=False):
    t = table(module, name)
    h = RemovableHandle(t)
    t[h.id] = entry
    if prepend:
        t.move_to_end(h.id, last=False)
    return h


@functools.lru_cache(maxsize=None)
def _backward_hook_function():
    """The identity Function PyTorch puts on a hooked module's inputs and outputs (its node is
    BackwardHookFunctionBackward); made on first use, as engine.autograd loads after engine.nn."""
    from ..autograd.function import Function

    class BackwardHookFunction(Function):
        @staticmethod
        def forward(ctx, *args):
            ctx.mark_non_differentiable(*[a for a in args if not a.requires_grad])
            return args

        @staticmethod
        def backward(ctx, *args):
            return args
    return BackwardHookFunction


class BackwardHook:
    def __init__(self, module, user_hooks, pre_hooks):
        self.module, self.user_hooks, self.pre_hooks = module, user_hooks, pre_hooks
        self.grad_outputs = None
        self.n_outputs = -1
        self.output_tensors_index = None
        self.n_inputs = -1
        self.input_tensors_index = None

    @staticmethod
    def _pack(indices, values, size):
        res = [None] * size
        for i, v in zip(indices, values):
            res[i] = v
        return tuple(res)

    @staticmethod
    def _unpack(indices, values):
        return tuple(values[i] for i in indices)

    def _apply(self, fn, args):
        indices = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        tensors = [args[i] for i in indices]
        if not (is_grad_enabled() and any(t.requires_grad for t in tensors)):
            return args, None
        new = _backward_hook_function().apply(*tensors)
        if not isinstance(new, tuple):
            new = (new,)
        node = next(t.grad_fn for t in new if t.grad_fn is not None)
        fn(node)
        out = list(args)
        for i, t in zip(indices, new):
            out[i] = t
        return tuple(out), indices

    def setup_input_hook(self, args):
        def hook(node):
            node.register_hook(self._input_hook)
        self.n_inputs = len(args)
        res, self.input_tensors_index = self._apply(hook, args)
        return res

    def _input_hook(self, grad_inputs, _):
        if self.grad_outputs is None:
            return None         # the gradient reached the input without passing the output (double backward)
        res = self._pack(self.input_tensors_index, grad_inputs, self.n_inputs)
        for hook in self.user_hooks:
            out = hook(self.module, res, self.grad_outputs)
            if out is None:
                continue
            if len(out) != len(res):
                raise errors.EngineRuntimeError(f"Backward hook returned an invalid number of grad_input, got "
                                                f"{len(out)}, but expected {len(res)}")
            res = out
        self.grad_outputs = None
        return self._unpack(self.input_tensors_index, res)

    def setup_output_hook(self, result):
        def hook(node):
            node.register_prehook(self._output_hook)
        single = not isinstance(result, tuple)
        args = (result,) if single else result
        self.n_outputs = len(args)
        res, self.output_tensors_index = self._apply(hook, args)
        if self.output_tensors_index is None:
            return result
        return res[0] if single else res

    def _output_hook(self, grad_output):
        self.grad_outputs = self._pack(self.output_tensors_index, grad_output, self.n_outputs)
        for hook in self.pre_hooks:
            out = hook(self.module, self.grad_outputs)
            if out is not None:
                if len(out) != len(self.grad_outputs):
                    raise errors.EngineRuntimeError(f"Backward pre hook returned an invalid number of grad_output, "
                                                    f"got {len(out)}, but expected {len(self.grad_outputs)}")
                self.grad_outputs = tuple(out)
        local = self.grad_outputs
        if self.input_tensors_index is None:            # no input requires grad: the hooks run here
            _warn_at_user_code(_NO_INPUT_GRAD)
            grad_inputs = self._pack([], [], self.n_inputs)
            for hook in self.user_hooks:
                out = hook(self.module, grad_inputs, self.grad_outputs)
                if out is not None and not (isinstance(out, tuple) and all(g is None for g in out)):
                    raise errors.EngineRuntimeError("Backward hook for Modules where no input requires gradient "
                                                    "should always return None or None for all gradients.")
            self.grad_outputs = None
        return None if local is None else self._unpack(self.output_tensors_index, local)


def call(module, args, kwargs):
    """module(*args, **kwargs) with its hooks, in PyTorch's order."""
    d = module.__dict__
    for hook, with_kwargs in list(d.get("_forward_pre_hooks", {}).values()):
        if with_kwargs:
            r = hook(module, args, kwargs)
            if r is not None:
                if not (isinstance(r, tuple) and len(r) == 2):
                    raise errors.EngineRuntimeError("forward pre-hook must return None or a tuple of (new_args, "
                                                    f"new_kwargs), but got {r}.")
                args, kwargs = r
        else:
            r = hook(module, args)
            if r is not None:
                args = r if isinstance(r, tuple) else (r,)
    bw = None
    user, pre = list(d.get("_backward_hooks", {}).values()), list(d.get("_backward_pre_hooks", {}).values())
    if user or pre:
        bw = BackwardHook(module, user, pre)
        args = bw.setup_input_hook(args)
    try:
        result = module.forward(*args, **kwargs)
    except BaseException:
        for hook, with_kwargs, always in list(d.get("_forward_hooks", {}).values()):
            if always:
                try:
                    hook(module, args, kwargs, None) if with_kwargs else hook(module, args, None)
                except Exception:  # noqa: BLE001 - PyTorch warns and re-raises the forward's error
                    pass
        raise
    for hook, with_kwargs, _ in list(d.get("_forward_hooks", {}).values()):
        r = hook(module, args, kwargs, result) if with_kwargs else hook(module, args, result)
        if r is not None:
            result = r
    if bw is not None:
        result = bw.setup_output_hook(result)
    return result
