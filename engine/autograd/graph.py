"""torch.autograd.graph on the engine: saved-tensor hooks and multi-grad hooks.

`saved_tensors_hooks(pack, unpack)`: while active, every value a node saves for backward is
given to pack at once, and backward uses unpack(what pack returned), called at each use --
built-in ops and custom Functions alike (PyTorch's semantics). `save_on_cpu` is the same with
hooks that keep the tensor as it is (the engine has only the CPU).
"""
from .. import errors as _errors
from ..graph import Node  # noqa: F401 - torch.autograd.graph.Node
from ..grad_mode import STATE
from .._names import torch_repr


@torch_repr("torch.autograd.graph.saved_tensors_hooks")
class saved_tensors_hooks:  # noqa: N801 - PyTorch's name
    def __init__(self, pack_hook, unpack_hook):
        self.pack_hook, self.unpack_hook = pack_hook, unpack_hook

    def __enter__(self):
        if getattr(STATE, "saved_hooks_disabled", None):
            raise _errors.EngineRuntimeError(STATE.saved_hooks_disabled)
        STATE.saved_hooks = tuple(STATE.saved_hooks) + ((self.pack_hook, self.unpack_hook),)
        return self

    def __exit__(self, *exc):
        STATE.saved_hooks = tuple(STATE.saved_hooks)[:-1]
        return False


@torch_repr("torch.autograd.graph.save_on_cpu")
class save_on_cpu(saved_tensors_hooks):  # noqa: N801
    """Saved tensors go to CPU memory; on the engine they are there already."""

    def __init__(self, pin_memory=False, device_type="cuda"):
        super().__init__(lambda t: t, lambda t: t)


@torch_repr("contextlib._GeneratorContextManager")  # PyTorch: a @contextmanager
class disable_saved_tensors_hooks:  # noqa: N801
    """Inside, using saved_tensors_hooks raises RuntimeError(error_message)."""

    def __init__(self, error_message):
        self.error_message = error_message

    def __enter__(self):
        if STATE.saved_hooks:
            raise _errors.EngineRuntimeError(self.error_message)
        self.prev = getattr(STATE, "saved_hooks_disabled", None)
        STATE.saved_hooks_disabled = self.error_message
        return self

    def __exit__(self, *exc):
        STATE.saved_hooks_disabled = self.prev
        return False


def register_multi_grad_hook(tensors, fn, *, mode="all"):
    """fn(grads) once the gradients of all `tensors` in a backward pass are computed (mode "all":
    grads[i] is None for a tensor the pass did not reach), or fn(grad) with the first one
    computed (mode "any"). Returns a handle whose remove() unregisters."""
    from .. import graph as _g
    if mode not in ("all", "any"):
        raise ValueError(f"Expects mode to be one of ('all', 'any') but got {mode}")
    tensors = tuple(tensors)
    state = {"pass": None, "grads": {}, "done": False}

    def start():
        current = _g.current_pass()
        if state["pass"] is not current:          # the first of these hooks in a new pass
            state.update({"pass": current, "grads": {}, "done": False})
            if mode == "all":
                _g.at_pass_end(finish)

    def make(i):
        def hook(g):
            start()
            if mode == "any":
                if not state["done"]:
                    state["done"] = True
                    fn(g)
            else:
                state["grads"][i] = g
        return hook

    def finish():
        fn(tuple(state["grads"].get(i) for i in range(len(tensors))))
        state["pass"] = None

    handles = [t.register_hook(make(i)) for i, t in enumerate(tensors) if t.requires_grad]
    return _MultiHandle(handles)


@torch_repr("torch.autograd.graph._MultiHandle")
class _MultiHandle:
    def __init__(self, handles):
        self.handles = handles

    def remove(self):
        for h in self.handles:
            h.remove()
