"""User-defined differentiable operations: `engine.autograd.Function`.

As in PyTorch, `ctx` is the graph node itself: `MySquare.apply(x)` makes a `MySquareBackward`
node that sits in the same graph and runs through the same backward loop as built-in ops.
"""
from .. import errors as _errors
import functools
import threading

import numpy as np

from .. import errors
from ..graph import FREED, Node, edge_of, seed_attributes
from ..graph import node_name
from ..grad_mode import OFF_DEFAULT, STATE, no_grad, set_grad_enabled
from ..ops._core import observed
from ..tensor import Tensor, vc_of


class _OutputRef:
    """A saved output, kept as its array (saving the Tensor itself would make a cycle)."""

    __slots__ = ("nr", "data", "vc", "version")

    def __init__(self, nr, t):
        self.nr, self.data, self.vc = nr, t._data, vc_of(t)
        self.version = self.vc[0]


def _expandable(shape, target):
    """Can `shape` be broadcast to `target` (so a gradient of `target` sums back to it)?"""
    if len(shape) > len(target):
        return False
    for s, t in zip(reversed(shape), reversed(target)):
        if s != 1 and s != t:
            return False
    return True


class _Transforms(threading.local):
    """How many engine.func transforms (and vmaps) run in this thread."""

    depth = 0       # torch.func transforms running in this thread
    vmap = 0        # of which vmaps


ACTIVE = _Transforms()


def check_function(cls):
    """What PyTorch requires of a custom Function used inside torch.func transforms."""
    if not cls._setup_style:
        raise _errors.EngineRuntimeError("In order to use an autograd.Function with functorch transforms (vmap, grad, jvp, jacrev, "
                           "...), it must override the setup_context staticmethod. For more details, please see "
                           "https://pytorch.org/docs/main/notes/extending.func.html")
    if ACTIVE.vmap and not (getattr(cls, "generate_vmap_rule", False) or "vmap" in vars(cls)):
        raise _errors.EngineRuntimeError(f"You tried to vmap over {cls.__name__}, but it does not have vmap support. Please override "
                           "and implement the vmap staticmethod or set generate_vmap_rule=True. For more details, "
                           "please see https://pytorch.org/docs/main/notes/extending.func.html")


class _Packed:
    """A value saved under saved_tensors_hooks: what pack returned, and the unpack to call."""

    __slots__ = ("packed", "unpack_hook")

    def __init__(self, packed, unpack_hook):
        self.packed, self.unpack_hook = packed, unpack_hook


class BackwardCFunction(Node):
    """The node (and ctx) of a user Function. One subclass per Function: `<Name>Backward`."""

    _forward_cls = None
    batch_aware = False
    materialize_grads = True

    def __init__(self):
        self.to_save = ()
        self.needs_input_grad = ()
        self.non_differentiable = ()
        self.dirty_tensors = ()
        self._arg_count = 0
        self._tensor_pos = ()

    # -- ctx API ---------------------------------------------------------------------------------
    def _pack_saved(self, pack, unpack):
        """Under saved_tensors_hooks (ops/_core.observed): what save_for_backward kept, packed with
        grad mode off, unpacked at each use; an output is packed as the Tensor it is."""
        with no_grad():
            self._saved = tuple(
                (_Packed(pack(Tensor._make(t.data, self, True) if isinstance(t, _OutputRef) else t), unpack), 0)
                if isinstance(t, (Tensor, _OutputRef)) else (t, v) for t, v in self._saved)

    def save_for_backward(self, *tensors):
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError("save_for_backward can only save variables, but argument "
                                f"{tensors.index(t)} is of type {type(t).__name__}")
        self.to_save = tensors

    def save_for_forward(self, *tensors):
        """Tensors a jvp needs (read back through ctx.saved_tensors, as in PyTorch)."""
        self.save_for_backward(*tensors)

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = tensors

    def mark_dirty(self, *tensors):
        self.dirty_tensors = tensors

    def set_materialize_grads(self, value):
        self.materialize_grads = bool(value)

    @property
    def saved_tensors(self):
        saved = self._saved
        if saved is FREED:
            raise errors.EngineRuntimeError(errors.SECOND_BACKWARD)
        if saved is None:
            return tuple(self.to_save)
        out = []
        for s, v in saved:
            if isinstance(s, _Packed):
                out.append(s.unpack_hook(s.packed))
            elif isinstance(s, _OutputRef):
                if s.vc[0] != s.version:
                    raise errors.EngineRuntimeError(errors.modified_message(
                        s.data.shape, s.data.dtype, self, s.nr, s.vc[0], s.version))
                t = Tensor._make(s.data, self, True)
                t._output_nr = s.nr
                out.append(t)
            elif isinstance(s, Tensor):
                if s._version != v:
                    raise errors.EngineRuntimeError(errors.modified_message(
                        s._data.shape, s._data.dtype, s.grad_fn, s._output_nr, s._version, v))
                out.append(s)
            else:
                out.append(s)
        return tuple(out)

    saved_variables = saved_tensors

    def _release(self):
        self._saved = FREED

    def __repr__(self):
        # PyTorch names a custom Function's node by the module it creates it in
        return f"<torch.autograd.function.{type(self).__name__} object at {hex(id(self))}>"

    def _frees_saved(self):
        return self._saved is FREED or bool(self._saved)

    # -- graph node ------------------------------------------------------------------------------
    def apply(self, grads, xp, create_graph, release=False):
        res = self._apply(grads, xp, create_graph)
        if release:
            self._release()
        return res

    def _apply(self, grads, xp, create_graph):
        cls = self._forward_cls
        gts = []
        for nr, g in enumerate(grads):
            if g is None and self.materialize_grads:
                shape, dtype = self._meta[nr]
                g = np.zeros(shape, dtype)
            gts.append(None if g is None else xp.wrap(g))
        with set_grad_enabled(create_graph):
            res = cls.backward(self, *gts)
        if not isinstance(res, tuple):
            res = (res,)
        if len(res) != self._arg_count:
            # PyTorch allows extra trailing Nones
            if len(res) > self._arg_count and all(r is None for r in res[self._arg_count:]):
                res = res[:self._arg_count]
            else:
                raise errors.EngineRuntimeError(
                    f"function {node_name(self)} returned an incorrect number of gradients "
                    f"(expected {self._arg_count}, got {len(res)})")
        tensor_pos = self._tensor_pos
        for pos, r in enumerate(res):            # what PyTorch's engine checks, with its words
            if r is None:
                continue
            if pos not in tensor_pos:
                raise errors.EngineRuntimeError(
                    f"function {node_name(self)} returned a gradient different than None at position {pos + 1}, but "
                    f"the corresponding forward input was not a Variable")
            if not isinstance(r, Tensor):
                raise errors.EngineRuntimeError(f"expected Variable or None (got {_type_name(r)})")
        out = []
        for k, pos in enumerate(tensor_pos):
            r = res[pos]
            nxt = self._next[k]
            if r is None or nxt is None:
                out.append(None)
                continue
            shape = self._in_shapes[k]
            if tuple(r._data.shape) != tuple(shape) and not _expandable(shape, r._data.shape):
                raise errors.ShapeError(
                    f"Function {node_name(self)} returned an invalid gradient at index {pos} - got "
                    f"{list(r._data.shape)} but expected shape compatible with {list(shape)}")
            out.append(r if create_graph else r._data)
        return out


def _type_name(obj):
    """A type's name as CPython's tp_name spells it (what PyTorch's messages show): `list`,
    `numpy.ndarray` (a static type outside builtins), a class's own name."""
    t = type(obj)
    heap = t.__flags__ & (1 << 9)                  # Py_TPFLAGS_HEAPTYPE: tp_name is the bare name
    return t.__qualname__ if heap or t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


# what a Function's ctx gets besides the node state (user attributes come after these)
_CTX_ATTRS = ("_next", "_nrs", "_saved", "_buf", "_own", "_deps") + ("to_save", "needs_input_grad", "non_differentiable", "dirty_tensors",
                                "_arg_count", "_tensor_pos", "_n_outputs", "_meta", "_in_shapes",
                                "materialize_grads", "_trace")


class FunctionMeta(type):
    def __init__(cls, name, bases, attrs):
        super().__init__(name, bases, attrs)
        cls._backward_cls = type(name + "Backward", (BackwardCFunction,),
                                 {"_forward_cls": cls, "__module__": cls.__module__,
                                  "batch_aware": attrs.get("batch_aware", False)})
        seed_attributes(cls._backward_cls, _CTX_ATTRS)
        # PyTorch 2 style: forward(*args) without ctx, then setup_context(ctx, inputs, output)
        cls._setup_style = any("setup_context" in vars(k) for k in cls.__mro__
                               if k.__name__ != "Function" or k.__module__ != __name__)
        cls._has_jvp = any("jvp" in vars(k) for k in cls.__mro__
                           if k.__name__ != "Function" or k.__module__ != __name__)


class Function(metaclass=FunctionMeta):
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grad_outputs)`; call `.apply`.

    Set the class attribute `batch_aware = True` when backward handles cotangents with leading
    batch dims; otherwise vectorized Jacobians fall back to one backward per row for graphs
    that contain this Function.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    vjp = backward

    @staticmethod
    def setup_context(ctx, inputs, output):
        """Override (a staticmethod) to take ctx out of forward: forward(*args) runs first, then
        setup_context(ctx, inputs, output) saves what backward needs (PyTorch 2's style)."""
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def jvp(ctx, *grad_inputs):
        raise NotImplementedError("You must implement the jvp function for custom autograd.Function to use it "
                                  "with forward mode AD.")

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = cls._backward_cls()
        if ACTIVE.depth:                    # inside torch.func transforms: PyTorch's requirements
            check_function(cls)
        if cls._has_jvp:
            from . import forward_ad
            if forward_ad.active():
                out = forward_ad.apply_with_jvp(cls, ctx, args, kwargs)
                if out is not None:
                    return out
        tensor_pos = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor))
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._rg for a in args)
        record = STATE.enabled and any(ctx.needs_input_grad)
        # observers (locate) get the inputs as forward received them: a forward that works in
        # place (mark_dirty) has changed them by the time the node exists
        received = tuple(Tensor._make(np.array(a._data, copy=True)) if isinstance(a, Tensor) else a for a in args) \
            if record and STATE.observers else args
        with no_grad():
            if cls._setup_style:
                result = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, result)
            else:
                result = cls.forward(ctx, *args, **kwargs)
        if not record:
            ctx.to_save = ()
            return result
        single = not isinstance(result, tuple)
        outputs = (result,) if single else result
        # the inputs' edges, taken before a dirty input's history is rebased onto this node
        ctx.next_functions = tuple(edge_of(args[i]) or (None, 0) for i in tensor_pos)
        inputs_by_id = {id(args[i]) for i in tensor_pos}
        dirty = {id(t) for t in ctx.dirty_tensors}
        wrapped = []
        nondiff = {id(t) for t in ctx.non_differentiable}
        for nr, o in enumerate(outputs):
            if not isinstance(o, Tensor):
                wrapped.append(o)
                continue
            differentiable = id(o) not in nondiff and o._data.dtype.kind == "f"
            if id(o) in dirty:
                # modified in place (mark_dirty): the input itself becomes this output, its
                # version bumped and its history rebased onto this node (PyTorch)
                if o.grad_fn is None and o._rg:
                    raise errors.EngineRuntimeError(errors.LEAF_DIRTY)
                o._bump()
            elif id(o) in inputs_by_id:      # an input returned as is: the output aliases it
                alias = Tensor._make(o._data)
                alias._vc = vc_of(o)
                o = alias
            if differentiable:
                o.grad_fn = ctx
                o._rg = True
                o._output_nr = nr
            wrapped.append(o)
        ctx._n_outputs = len(outputs)
        ctx._meta = [(o._data.shape, o._data.dtype) if isinstance(o, Tensor) else ((), np.dtype("float64"))
                     for o in wrapped]
        ctx._in_shapes = tuple(args[i]._data.shape for i in tensor_pos)
        ctx._arg_count = len(args)
        ctx._tensor_pos = tensor_pos
        out_ids = {id(o): nr for nr, o in enumerate(outputs) if isinstance(o, Tensor)}
        saved = []
        for t in ctx.to_save:
            if t is None:
                saved.append((None, 0))
            elif id(t) in out_ids and t.grad_fn is ctx:
                saved.append((_OutputRef(out_ids[id(t)], t), 0))
            else:
                saved.append((t, vc_of(t)[0]))
        ctx._saved = tuple(saved)
        ctx.to_save = ()
        if OFF_DEFAULT[0]:
            observed(ctx, received, kwargs, tuple(getattr(w, "_data", w) for w in wrapped))
        return wrapped[0] if single else tuple(wrapped)


ONCE_DIFFERENTIABLE = "trying to differentiate twice a function that was marked with @once_differentiable"


class DelayedError(Node):
    """The node of a once_differentiable backward's outputs under create_graph: reaching it in
    a backward raises (PyTorch's DelayedError)."""

    def __init__(self, msg, shape, dtype):
        self.msg = msg
        self._shape, self._dtype = shape, dtype

    def apply(self, grads, xp, create_graph, release=False):
        raise errors.EngineRuntimeError(self.msg)


def once_differentiable(fn):
    """Decorate a Function's backward that is not itself differentiable: it runs under no_grad,
    and under create_graph its results carry a node that raises when a double backward reaches
    it (PyTorch's torch.autograd.function.once_differentiable). Works under @staticmethod."""
    @functools.wraps(fn)
    def wrapper(ctx, *args):
        with no_grad():
            outputs = fn(ctx, *args)
        if not STATE.enabled or not any(isinstance(a, Tensor) and a._rg for a in args):
            return outputs
        single = not isinstance(outputs, tuple)
        res = []
        for o in ((outputs,) if single else outputs):
            if isinstance(o, Tensor):
                o = o.detach()
                o.grad_fn = DelayedError(ONCE_DIFFERENTIABLE, o._data.shape, o._data.dtype)
                o._rg = True
            res.append(o)
        return res[0] if single else tuple(res)
    return wrapper
