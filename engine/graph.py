"""The backward graph: nodes, AccumulateGrad, and the backward pass.

Every node, built-in op or user `Function`, is a `Node` with `next_functions` (PyTorch's
`(node or None, output_nr)` pairs) and an `apply(grads, xp, create_graph)` that returns one
gradient per edge. `run_backward` is the only place gradients flow: iterative, with dependency
counts (never recursion), each node run once with its incoming gradients summed, and the one
place where a gradient is reduced back to the shape of what it belongs to (`_fit`).

One loop serves every pass (backward, autograd.grad, create_graph, batched cotangents,
hooks, anomaly mode); the common pass runs op nodes' first-order rules directly as a branch
inside it. Each buffered gradient carries an explicit owned flag (`_own`): only a sum the
pass allocated, or a result of an op declared `fresh`, is ever added into in place.
`walk(roots)` is the traversal of the graph (backward's discovery is the same walk fused with
its dependency count).

What does not live here: op rules (engine/ops), the Tensor class (engine/tensor.py).
"""
import gc
import itertools
import weakref

import numpy as np

from . import errors
from .grad_mode import STATE
from ._names import torch_repr


class _Freed:
    """Marker for a node whose saved values were released after a backward pass."""

    def __repr__(self):
        return "<freed>"


FREED = _Freed()


class Node:
    """A backward function. Subclasses are per op (`MulBackward0`) or per user Function.

    Per-node state lives in class-level defaults, so making a node sets only what differs
    from them. Every node class calls `seed_attributes` once, before it has instances.
    """

    _next = ()           # the node each input's gradient goes to (None: needs none), in order
    _nrs = None          # which output of that node each input was, when any is not output 0
    _saved = None        # values kept for backward; FREED after release
    _buf = None          # incoming gradient(s) during one backward pass
    _own = False         # ...and whether it is a sum this pass allocated (see `_add`)
    _deps = 0            # pending incoming edges during one backward pass
    _pre_hooks = None    # {output_nr: [fn]}: tensor hooks of the tensors this node produced
    _retains = None      # {output_nr: weakref(tensor)}: tensors that called retain_grad()
    _node_hooks = None   # [fn(grad_inputs, grad_outputs)]
    _node_pre_hooks = None
    _fresh = False       # op nodes whose rules return arrays of their own (defop's `fresh`)
    _plain = False       # True on op nodes (one output, first-order rules in `_vjp`) until a
                         # hook or retain_grad is set on one: then the loop takes `_execute`
    _trace = None        # anomaly mode: where the forward op ran
    _meta = None         # [(shape, dtype)] per output, for fitting incoming gradients (Functions)
    _shape = None        # single-output nodes (ops): their output's shape and dtype, kept
    _dtype = None        # as two attributes so recording allocates nothing for them
    _n_outputs = 1
    _leaf = False        # AccumulateGrad: runs as soon as it is ready (PyTorch gives it top priority)
    batch_aware = True   # rules accept cotangents with leading batch dimensions
    metadata = None

    def _pack_saved(self, pack, unpack):
        """Under saved_tensors_hooks, when the node is made: pack what it saved (ops/_core.observed).
        A node that saves nothing (the pieces of chunk/split/unbind) packs nothing."""

    @property
    def next_functions(self):
        """PyTorch's ((node or None, output_nr), ...). Stored as `_next` (+ `_nrs`): one tuple
        per node instead of one per edge, and plain node tuples for the backward loop."""
        return tuple(zip(self._next, self._nrs or _ZEROS))

    @next_functions.setter
    def next_functions(self, edges):
        self._next = tuple(e[0] for e in edges)
        nrs = tuple(e[1] for e in edges)
        self._nrs = nrs if any(nrs) else None

    def name(self):
        return type(self).__name__

    def __repr__(self):
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    def register_hook(self, fn):
        """fn(grad_inputs, grad_outputs) after the node runs (PyTorch's Node.register_hook)."""
        self._plain = False
        if self._node_hooks is None:
            self._node_hooks = []
        self._node_hooks.append(fn)
        return RemovableHandle(self._node_hooks, fn)

    def register_prehook(self, fn):
        self._plain = False
        if self._node_pre_hooks is None:
            self._node_pre_hooks = []
        self._node_pre_hooks.append(fn)
        return RemovableHandle(self._node_pre_hooks, fn)

    def _add_pre_hook(self, nr, fn):
        self._plain = False
        if self._pre_hooks is None:
            self._pre_hooks = {}
        lst = self._pre_hooks.setdefault(nr, [])
        lst.append(fn)
        return RemovableHandle(lst, fn)

    def _release(self):
        self._saved = FREED

    def _frees_saved(self):
        """Whether this node keeps values that a backward without retain_graph frees."""
        return False


def node_name(node):
    """A node's name, read from its class: on a custom Function's node (which is its ctx, as in
    PyTorch) the user may have set an attribute called `name`; the tools never read the user's."""
    return type(node).name(node)


def class_attr(node, attr, default=None):
    """A node's class attribute (`op`, `_forward_cls`, `forward_arrays`...), never what a user
    stored under that name on a Function's ctx."""
    return getattr(type(node), attr, default)


def seed_attributes(cls, names):
    """Declare the instance attribute names of a new class `cls` before it has instances.

    CPython 3.11/3.12 keep a class's instance attributes in a table of names shared by all
    its instances, and let that table take new names only while the class is young (its spare
    room shrinks by one with every instance made). A name first set after a few dozen
    instances exist, as the backward loop's `_deps` and `_buf` are on nodes made during the
    forward pass, gives every such instance a dict of its own: ~0.5 us per node per pass
    (measured: small-ops backward 3.55 -> 3.25 ms). Setting every name once, on a throwaway
    instance of the new class, puts them all in the shared table. Harmless on other Pythons.
    """
    o = object.__new__(cls)
    for name in names:
        setattr(o, name, None)


# what an op node or AccumulateGrad gets on the per-op path and in every backward pass; rarer
# state (hooks, anomaly traces) is left out: each name seeded widens every instance by a slot
NODE_ATTRS = ("_next", "_saved", "_ver", "_ovc", "_out", "_attrs", "_shape", "_dtype",
              "_buf", "_own", "_deps")


@torch_repr("torch.utils.hooks.RemovableHandle")
class RemovableHandle:
    """What register_hook returns: `.remove()` unregisters."""

    def __init__(self, lst, fn):
        self._lst, self._fn = lst, fn

    def remove(self):
        try:
            self._lst.remove(self._fn)
        except ValueError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class AccumulateGrad(Node):
    """Where a leaf's gradient lands. A leaf holds it weakly (no cycle), as in PyTorch."""

    _leaf = True

    def __init__(self, variable):
        self.variable = variable
        self._refresh()

    def _refresh(self):
        """Cache the leaf's shape and dtype, like PyTorch's input metadata."""
        v = self.variable
        self._arr = v._data
        self._shape, self._dtype = v._data.shape, v._data.dtype

    def name(self):
        return "torch::autograd::AccumulateGrad"


seed_attributes(AccumulateGrad, ("_next", "variable", "_arr", "_shape", "_dtype", "_buf", "_own", "_deps"))


def accumulator(t):
    """The AccumulateGrad node of leaf `t` (one per leaf while it is referenced)."""
    ref = t._acc
    node = ref() if ref is not None else None
    if node is None:
        node = AccumulateGrad(t)
        t._acc = weakref.ref(node)
    elif node._arr is not t._data:          # `.data` was replaced since the node was made
        node._refresh()
    return node


def producer(t):
    """The node the gradient of `t` (which requires grad) goes to: its grad_fn, or its leaf's
    AccumulateGrad; looked up inline since this runs for every leaf use on the per-op path.
    With `t._output_nr` it is PyTorch's gradient edge."""
    fn = t.grad_fn
    if fn is not None:
        return fn
    ref = t._acc
    acc = ref() if ref is not None else None
    if acc is None or acc._arr is not t._data:
        acc = accumulator(t)
    return acc


def edge_of(t):
    """PyTorch's gradient edge (node, output_nr) for any tensor, or None when it does not
    require grad."""
    if t.grad_fn is None and not t._rg:
        return None
    return (producer(t), t._output_nr)


_ZEROS = itertools.repeat(0)    # the output numbers of the common case (every input was output 0)



# ---------------------------------------------------------------------------------------------
# Array namespaces for rules: one set of rules serves first order (numpy arrays, nothing
# recorded) and higher order (Tensors, every step recorded) by being written against `xp`.

def _fit(xp, g, shape, dtype, nb):
    """Reduce or expand gradient `g` to `batch + shape` (batch = its first `nb` dims), cast to dtype.

    The one place broadcasting is undone: rules may return a gradient in the broadcast shape of
    the op's result (summed here) or with size-1 dims where the input had more (expanded here).
    """
    gshape = xp.shape(g)
    if gshape[nb:] != shape or len(gshape) - nb != len(shape):
        lead = len(gshape) - nb - len(shape)
        if lead > 0:
            g = xp.sum(g, tuple(range(nb, nb + lead)), False)
            gshape = xp.shape(g)
        elif lead < 0:
            g = xp.reshape(g, gshape[:nb] + (1,) * (-lead) + gshape[nb:])
            gshape = xp.shape(g)
        axes = tuple(nb + i for i, (s, gs) in enumerate(zip(shape, gshape[nb:])) if s == 1 and gs != 1)
        if axes:
            g = xp.sum(g, axes, True)
            gshape = xp.shape(g)
        if gshape[nb:] != shape:
            try:
                g = xp.broadcast_to(g, gshape[:nb] + shape)
            except ValueError:
                raise errors.ShapeError(
                    f"gradient of shape {list(gshape[nb:])} cannot be fitted to shape {list(shape)}") from None
    if xp.dtype(g) != dtype:
        g = xp.astype(g, dtype)
    return g


from ._lazy import Uniform  # noqa: E402
from . import _xp  # noqa: E402
from ._xp import NUMPY as _NUMPY, TENSOR as _TENSOR  # noqa: E402


_ndarray = np.ndarray


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _check_nan(node, grads, xp):
    for i, g in enumerate(grads):
        if g is not None and np.isnan(xp.raw(g)).any():
            import warnings
            if node._trace:
                warnings.warn(f"Error detected in {node_name(node)}. Traceback of forward call that caused "
                              "the error:\n" + "".join(node._trace), stacklevel=3)
            raise errors.EngineRuntimeError(f"Function '{node_name(node)}' returned nan values in its {i}th output.")


def walk(roots, follow=None):
    """Every node reachable from `roots` (nodes; None is skipped), each once, depth first: a
    node comes before the nodes its gradient goes to along the edge that reached it. The
    traversal of the graph for the checker, functional, DOT and the CLI, as
    HIPS autograd's toposort; iterative, so a chain of a million nodes is fine. (Backward's
    discovery in `_run` is the same walk fused with its dependency count; see there.)
    follow(node) -> bool, when given, limits the edges taken to the nodes it accepts."""
    stack = []
    seen = set()
    for r in roots:
        if r is not None and r not in seen:
            seen.add(r)
            stack.append(r)
    mark, push = seen.add, stack.append
    while stack:
        n = stack.pop()
        yield n
        for nxt in n._next:
            if nxt is not None and nxt not in seen and (follow is None or follow(nxt)):
                mark(nxt)
                push(nxt)


def dtypes(roots):
    """The dtypes of the tensors the nodes reachable from `roots` (nodes) produced: what a
    graph computed in (a float16 step inside a float64 function shows here)."""
    found = set()
    for n in walk(roots):
        if n._dtype is not None:
            found.add(np.dtype(n._dtype))
        for _, dt in n._meta or ():
            found.add(np.dtype(dt))
    return found


def frees_saved_values(t):
    """Whether a backward from tensor `t` without retain_graph frees values some node saved,
    so that a second backward fails ("Trying to backward through the graph a second time"),
    exactly as in PyTorch: `(x * 2).sum()` does (the 2 is saved), `(x + 2).sum()` does not."""
    return any(n._frees_saved() for n in walk([t.grad_fn]))


def run_backward(roots, root_grads, *, retain_graph, create_graph, inputs=None,
                 accumulate=True, allow_unused=False, nb=0):
    """Run the backward pass from `roots` (tensors) seeded with `root_grads`.

    inputs: tensors to stop at. With accumulate=True (Tensor.backward(inputs=...)) only their
    .grad is written; with accumulate=False (autograd.grad) their gradients are returned and
    no .grad is touched. nb: number of leading batch dims carried by every gradient
    (vectorized Jacobians).
    """
    xp = _TENSOR if create_graph else _NUMPY
    prev_mode = STATE.enabled
    prev_pass = _PASS[0]
    _PASS[0] = token = object()
    STATE.enabled = bool(create_graph)
    # The loop makes no reference cycles, so the cyclic collector has nothing to find here;
    # left on, it re-traverses the whole live graph again and again (~1/3 of a deep chain's time).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        res = _run(roots, root_grads, xp, retain_graph, create_graph, inputs, accumulate, allow_unused, nb)
        callbacks = _AT_END.pop(token, ())
        for cb in callbacks:
            cb()
        return res
    finally:
        _AT_END.pop(token, None)
        _PASS[0] = prev_pass
        STATE.enabled = prev_mode
        if gc_was_on:
            gc.enable()


_PASS = [None]      # the backward pass running now (a token), for hooks that span a pass
_AT_END = {}        # token -> [callback] to run when that pass ends (multi-grad hooks)


def current_pass():
    return _PASS[0]


def at_pass_end(callback):
    """Run callback() when the backward pass running now ends (PyTorch's queue_callback)."""
    _AT_END.setdefault(_PASS[0], []).append(callback)


def _run(roots, root_grads, xp, retain_graph, create_graph, inputs, accumulate, allow_unused, nb):
    """The one backward loop. Every pass (backward, autograd.grad, create_graph, vectorized
    Jacobians, hooks, anomaly mode) runs through it; the common pass takes the `direct`
    branch for op nodes without hooks and nothing else differs."""
    # Targets: where gradients are captured (autograd.grad) or the only leaves written (inputs=).
    targets = None
    if inputs is not None:
        targets = {}
        for k, t in enumerate(inputs):
            e = edge_of(t)
            if e is None:
                raise errors.EngineRuntimeError(
                    "One of the differentiated Tensors does not require grad")
            targets.setdefault(e[0], []).append((e[1], k))

    root_nodes = []
    for i, (t, g) in enumerate(zip(roots, root_grads)):
        e = edge_of(t)
        if e is None:
            raise errors.EngineRuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn")
        root_nodes.append((e[0], e[1], g))

    # 1. Discover the graph and count each node's incoming edges (0 between passes). This is
    #    walk() with the count itself as the visited mark (a count going up from 0 marks a
    #    first visit; roots hold a mark of 1 during the walk) instead of a set: measured on a
    #    100,000-node chain, walk() plus a counting pass cost 14 ms more (12 % of the backward),
    #    so the hot path keeps this fused form. Only a backward pass may use the counts this
    #    way: walk() stays safe to call anywhere, also from a hook during a pass.
    roots_unique = list(dict.fromkeys(n for n, _, _ in root_nodes))
    for n in roots_unique:
        n._deps = 1
    stack = roots_unique[:]
    order = []
    push_order = order.append
    while stack:
        n = stack.pop()
        push_order(n)
        for nxt in n._next:
            if nxt is not None:
                d = nxt._deps
                nxt._deps = d + 1
                if not d:
                    stack.append(nxt)
    for n in roots_unique:
        n._deps -= 1

    # 2. With targets, run only nodes on a path to one (PyTorch's exec_info).
    needed = None
    if targets is not None:
        needed = set()
        for n in _sinks_first(order):
            if any(nxt is not None and (nxt in targets or nxt in needed) for nxt in n._next):
                needed.add(n)

    captured = {} if (targets is not None and not accumulate) else None
    release = not retain_graph
    # The common pass (first order on numpy, no targets, no anomaly mode): an op node without
    # hooks runs its first-order rule directly; everything else goes through `_execute`.
    direct = xp is _NUMPY and targets is None and not STATE.anomaly
    try:
        for n, nr, g in root_nodes:
            _add(n, nr, g, xp, nb)
        ready = [n for n in dict.fromkeys(r[0] for r in root_nodes) if n._deps == 0]
        pop, push = ready.pop, ready.append
        while ready:
            node = pop()
            fresh = False
            if direct and node._plain:
                g = node._buf
                node._buf = None
                if g is not None:
                    grads_in = node._vjp(g, release)
                    fresh = node._fresh
                else:
                    grads_in = None
                    if release:
                        node._release()
            else:
                grads_in = _execute(node, xp, retain_graph, create_graph, targets, captured,
                                    accumulate, inputs, needed)
            # PyTorch's ready queue gives AccumulateGrad the highest priority: leaves made ready
            # by this node run next, in its inputs' order (pushed last, in reverse, on the stack)
            leaves = None
            if grads_in is None:
                for nxt in node._next:
                    if nxt is not None:
                        d = nxt._deps - 1
                        nxt._deps = d
                        if not d:
                            if not nxt._leaf:
                                push(nxt)
                            elif leaves is None:
                                leaves = [nxt]
                            else:
                                leaves.append(nxt)
                if leaves is not None:
                    ready.extend(reversed(leaves))
                continue
            for nxt, gi, nr in zip(node._next, grads_in, node._nrs or _ZEROS):
                if nxt is None:
                    continue
                if gi is not None and (needed is None or nxt in needed or nxt in targets):
                    if direct and gi.shape == nxt._shape and gi.dtype is nxt._dtype:
                        # fitted already, in the common pass: `_add`'s two usual cases inline
                        # (a leaf summing hundreds of gradients pays a call for each otherwise)
                        b = nxt._buf
                        if b is None:            # the first: held (0-d results may be numpy
                            nxt._buf = gi        # scalars, never owned)
                            nxt._own = fresh and gi.__class__ is _ndarray
                        elif nxt._own:
                            b += gi              # a sum of ours: add in place
                        else:
                            _add(nxt, nr, gi, xp, nb, fresh)
                    else:
                        _add(nxt, nr, gi, xp, nb, fresh)
                d = nxt._deps - 1
                nxt._deps = d
                if not d:
                    if not nxt._leaf:
                        push(nxt)
                    elif leaves is None:
                        leaves = [nxt]
                    else:
                        leaves.append(nxt)
            if leaves is not None:
                ready.extend(reversed(leaves))
    except BaseException:
        _reset(order)
        raise

    if captured is not None:
        out = [None] * len(inputs)
        for k in range(len(inputs)):
            g = captured.get(k)
            if g is None and not allow_unused:
                raise errors.EngineRuntimeError(
                    f"The differentiated Tensor at index {k} appears to not have been used in the graph. "
                    "Set allow_unused=True if this is the desired behavior.")
            out[k] = g
        return out
    return None


def _reset(order):
    """Leave the graph reusable (retain_graph) after an error part-way through a pass."""
    for n in order:
        n._deps = 0
        n._buf = None
        n._own = False


def _sinks_first(order):
    """The discovered nodes ordered so each comes after every node it points to."""
    pending = {n: sum(1 for nxt in n._next if nxt is not None) for n in order}
    parents = {}
    for n in order:
        for nxt in n._next:
            if nxt is not None:
                parents.setdefault(nxt, []).append(n)
    ready = [n for n, c in pending.items() if c == 0]
    while ready:
        n = ready.pop()
        yield n
        for p in parents.get(n, ()):
            pending[p] -= 1
            if pending[p] == 0:
                ready.append(p)


# -- gradient buffers ----------------------------------------------------------------------------
# A node of one output (ops, AccumulateGrad) buffers its incoming gradient as `_buf`, with
# `_own` beside it; a Function of n outputs keeps a list of n of each. `_own` is the one
# statement of whether a buffered gradient may be written in place: True only for a sum this
# pass allocated (nothing else can reference it); a gradient as a rule returned it may be
# shared (AddBackward0 hands one array to both inputs, x * 1 is x, a view of a saved value)
# and is never written.

def _add(node, nr, g, xp, nb, owned=False):
    """Sum gradient `g` into `node`'s buffer for output `nr` (HIPS autograd's add_outgrads).

    `g` is first fitted to the output's shape and dtype (the one place broadcasting is undone);
    one value reaching a large first-order buffer (what sum() and mean() hand back) is kept as
    a `Uniform` instead of an array of copies of it. `owned`: g is an array of its own (from an
    op that declares `fresh`), so it may take the sum in place of allocating one."""
    single = node._shape is not None
    shape, dtype = (node._shape, node._dtype) if single else node._meta[nr]
    g0 = g
    if xp is _NUMPY and not nb:
        if getattr(g, "shape", None) != shape or g.dtype != dtype:
            if np.size(g) == 1 and _prod(shape) >= _xp.INPLACE_MIN:
                g = Uniform(np.asarray(g, dtype=dtype).reshape(()), shape)
            else:
                g = _fit(xp, g, shape, dtype, 0)
    else:
        g = _fit(xp, g, shape, dtype, nb)
    owned = owned and g is g0 and type(g) is _ndarray     # not a view or cast made by fitting
    if single:
        b = node._buf
        if b is None:
            node._buf = g
            node._own = owned
        elif node._own:
            b += g                   # a sum of ours, fitted like g: add in place
        elif owned:
            g += b
            node._buf = g
            node._own = True
        else:
            node._buf = s = b + g
            node._own = type(s) is _ndarray and xp is _NUMPY    # 0-d sums are numpy scalars
        return
    if node._buf is None:
        node._buf = [None] * node._n_outputs
        node._own = [False] * node._n_outputs
    bufs, own = node._buf, node._own
    b = bufs[nr]
    if b is None:
        bufs[nr] = g
        own[nr] = owned
    elif own[nr]:
        b += g
    elif owned:
        g += b
        bufs[nr] = g
        own[nr] = True
    else:
        bufs[nr] = s = b + g
        own[nr] = type(s) is _ndarray and xp is _NUMPY


def _run_tensor_hooks(hooks, g, xp):
    for hook in list(hooks):
        res = hook(xp.wrap(g))
        if res is not None:
            g = xp.unwrap(res)
    return g


def _execute(node, xp, retain_graph, create_graph, targets, captured, accumulate, inputs=None,
             needed=None):
    """Run one node that the direct branch does not: tensor hooks, retain_grad, capture, then
    AccumulateGrad or the node's rule. Hooks, Functions, captures and .grad see arrays, never a
    `Uniform`."""
    buf, own = node._buf, node._own
    node._buf = None
    if node._shape is not None:             # one output: the raw buffer
        buf, own = [buf], [own]
    elif buf is None:
        buf, own = [None] * node._n_outputs, [False] * node._n_outputs
    for nr, g in enumerate(buf):
        if type(g) is Uniform:
            buf[nr] = g.array()
    if node._pre_hooks:
        for nr, hooks in node._pre_hooks.items():
            if buf[nr] is not None and hooks:
                g = _run_tensor_hooks(hooks, buf[nr], xp)
                if g is not buf[nr]:
                    buf[nr], own[nr] = g, False
    if node._retains:
        for nr, ref in node._retains.items():
            t = ref()
            if t is not None and buf[nr] is not None:
                g = xp.wrap(xp.copy(buf[nr]))
                t._grad = g if t._grad is None else t._grad + g
    if node._node_pre_hooks:
        for hook in list(node._node_pre_hooks):
            res = hook(tuple(xp.wrap(g) if g is not None else None for g in buf))
            if res is not None:
                buf = [xp.unwrap(r) if r is not None else None for r in res]
                own = [False] * len(buf)

    is_leaf = type(node) is AccumulateGrad
    if targets is not None:
        wanted = targets.get(node)
        if captured is not None and wanted:
            for nr, k in wanted:
                g = buf[nr]
                if is_leaf and node.variable._hooks and g is not None:
                    g = _run_tensor_hooks(node.variable._hooks, g, xp)
                if g is not None:
                    captured[k] = xp.wrap(g) if create_graph else g
        elif wanted and not is_leaf and accumulate:
            # backward(inputs=[y]) with a non-leaf y: its gradient goes into y.grad (PyTorch)
            for nr, k in wanted:
                if buf[nr] is not None:
                    _accumulate(inputs[k], buf[nr], create_graph)
        if is_leaf and (captured is not None or not wanted):
            return None
        if not is_leaf and node not in needed:
            return None

    if is_leaf:
        g = buf[0]
        if g is None or not accumulate:
            return None
        var = node.variable
        owned = own[0]
        if var._hooks:
            h = _run_tensor_hooks(var._hooks, g, xp)
            owned = owned and h is g
            g = h
        _accumulate(var, g, create_graph, owned)
        if var._post_acc_hooks:
            for hook in list(var._post_acc_hooks):
                hook(var)
        return None

    if all(g is None for g in buf):
        return None
    grads_in = node.apply(buf, xp, create_graph)
    if STATE.anomaly and STATE.anomaly_check_nan:
        _check_nan(node, grads_in, xp)
    if node._node_hooks:
        w = lambda seq: tuple(xp.wrap(g) if g is not None else None for g in seq)  # noqa: E731
        for hook in list(node._node_hooks):
            res = hook(w(grads_in), w(buf))
            if res is not None:
                grads_in = [xp.unwrap(r) if r is not None else None for r in res]
    if not retain_graph:
        node._release()
    return grads_in


def _accumulate(var, g, create_graph, owned=False):
    """Add `g` into leaf `var`.grad (PyTorch's AccumulateGrad). Without create_graph the sum is
    made in place, also into a .grad that has history (grad mode is off there, as in PyTorch);
    an `owned` g (a sum this pass allocated) becomes .grad without a copy."""
    make = type(var)._make
    cur = var._grad
    if create_graph:
        gt = _TENSOR.wrap(g)
        var._grad = gt if cur is None else cur + gt
        return
    if cur is None:
        if owned and g.dtype == var._data.dtype:
            var._grad = make(g)
        else:
            var._grad = make(np.array(g, dtype=var._data.dtype, copy=True))
    elif cur._data.shape != np.shape(g):
        var._grad = make(np.asarray(cur._data + g))
    else:
        np.add(cur._data, g, out=cur._data, casting="unsafe")
        cur._bump()
