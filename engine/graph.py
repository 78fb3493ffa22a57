"""The backward graph: nodes, AccumulateGrad, and the backward pass.

Every node, built-in op or user `Function`, is a `Node` with `next_functions` (PyTorch's
`(node or None, output_nr)` pairs) and an `apply(grads, xp, create_graph)` that returns one
gradient per edge. `run_backward` is the only place gradients flow: iterative, with dependency
counts (never recursion), each node run once with its incoming gradients summed, and the one
place where a gradient is reduced back to the shape of what it belongs to (`_fit`).

It discovers the graph once and then runs one of two loops with the same semantics: the
general one (`inputs=`/autograd.grad targets, hooks, anomaly mode, create_graph, batched
cotangents) and `_run_plain`, the same steps for the common pass (first order on numpy, no
targets) with the per-node work cut down, since that loop is most of a small op's cost. The
tests run the same graphs through both (tests/test_backward_paths.py).

What does not live here: op rules (engine/ops), the Tensor class (engine/tensor.py).
"""
import gc
import itertools
import weakref
from sys import getrefcount as _refcount

import numpy as np

from . import errors
from .grad_mode import STATE


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
    _deps = 0            # pending incoming edges during one backward pass
    _pre_hooks = None    # {output_nr: [fn]}: tensor hooks of the tensors this node produced
    _retains = None      # {output_nr: weakref(tensor)}: tensors that called retain_grad()
    _node_hooks = None   # [fn(grad_inputs, grad_outputs)]
    _node_pre_hooks = None
    _plain = False       # True on op nodes (one output, first-order rules in `_vjp`) until a
                         # hook or retain_grad is set on one: then the loop takes `_execute`
    _trace = None        # anomaly mode: where the forward op ran
    _meta = None         # [(shape, dtype)] per output, for fitting incoming gradients (Functions)
    _shape = None        # single-output nodes (ops): their output's shape and dtype, kept
    _dtype = None        # as two attributes so recording allocates nothing for them
    n_outputs = 1
    batch_aware = True   # rules accept cotangents with leading batch dimensions
    metadata = None

    @property
    def next_functions(self):
        """PyTorch's ((node or None, output_nr), ...). Stored as `_next` (+ `_nrs`): one tuple
        per node instead of one per edge, and plain node tuples for the backward loops."""
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
        return _Handle(self._node_hooks, fn)

    def register_prehook(self, fn):
        self._plain = False
        if self._node_pre_hooks is None:
            self._node_pre_hooks = []
        self._node_pre_hooks.append(fn)
        return _Handle(self._node_pre_hooks, fn)

    def _add_pre_hook(self, nr, fn):
        self._plain = False
        if self._pre_hooks is None:
            self._pre_hooks = {}
        lst = self._pre_hooks.setdefault(nr, [])
        lst.append(fn)
        return _Handle(lst, fn)

    def _release(self):
        self._saved = FREED


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
              "_buf", "_deps")


class _Handle:
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


seed_attributes(AccumulateGrad, ("_next", "variable", "_arr", "_shape", "_dtype", "_buf", "_deps"))


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
from ._xp import NUMPY as _NUMPY, TENSOR as _TENSOR, _INPLACE_MIN  # noqa: E402


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
                warnings.warn(f"Error detected in {node.name()}. Traceback of forward call that caused "
                              "the error:\n" + "".join(node._trace), stacklevel=3)
            raise errors.EngineRuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output.")


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
    STATE.enabled = bool(create_graph)
    # The loop makes no reference cycles, so the cyclic collector has nothing to find here;
    # left on, it re-traverses the whole live graph again and again (~1/3 of a deep chain's time).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _run(roots, root_grads, xp, retain_graph, create_graph, inputs, accumulate, allow_unused, nb)
    finally:
        STATE.enabled = prev_mode
        if gc_was_on:
            gc.enable()


def _run(roots, root_grads, xp, retain_graph, create_graph, inputs, accumulate, allow_unused, nb):
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

    # 1. Discover the graph iteratively and count each node's incoming edges. A count going
    #    up from 0 marks a node seen for the first time (counts are 0 between passes); roots
    #    hold a mark of 1 during the walk so that reaching one again does not re-walk it.
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

    if targets is None and xp is _NUMPY and not nb and not STATE.anomaly:
        return _run_plain(root_nodes, order, retain_graph, accumulate)

    # 2. With targets, run only nodes on a path to one (PyTorch's exec_info).
    needed = None
    if targets is not None:
        needed = set()
        for n in _sinks_first(order):
            if any(nxt is not None and (nxt in targets or nxt in needed) for nxt in n._next):
                needed.add(n)

    captured = {} if (targets is not None and not accumulate) else None
    owned = {}                   # node -> [sum this pass allocated, per output] (safe to add into)
    try:
        for n, nr, g in root_nodes:
            _add(n, nr, g, xp, nb, owned)
        ready = [n for n in dict.fromkeys(r[0] for r in root_nodes) if n._deps == 0]
        pop, push = ready.pop, ready.append
        release = not retain_graph
        simple = targets is None and not STATE.anomaly
        while ready:
            node = pop()
            buf = node._buf
            node._buf = None
            if simple and node._plain:
                # the common case: one output, no hooks, nothing to capture; apply frees what
                # the node saved once it has used it (unless retain_graph)
                if owned:
                    owned.pop(node, None)
                if buf is not None:
                    grads_in = node.apply(buf, xp, create_graph, release)
                else:
                    grads_in = None
                    if release:
                        node._release()
            else:
                grads_in = _execute(node, buf, xp, retain_graph, create_graph, targets, captured,
                                    accumulate, owned.pop(node, None), inputs, needed)
            if grads_in is None:
                for nxt in node._next:
                    if nxt is not None:
                        nxt._deps -= 1
                        if nxt._deps == 0:
                            push(nxt)
                continue
            for nxt, gi, nr in zip(node._next, grads_in, node._nrs or _ZEROS):
                if nxt is None:
                    continue
                if gi is not None and (targets is None or nxt in needed or nxt in targets):
                    _add(nxt, nr, gi, xp, nb, owned)
                nxt._deps -= 1
                if nxt._deps == 0:
                    push(nxt)
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


def _run_plain(root_nodes, order, retain_graph, accumulate):
    """The common pass: first order on numpy arrays, no inputs=/autograd.grad targets, no
    anomaly mode, no batch dims. Same semantics as the general loop in `_run`, fewer steps:

    - a node of one output and known shape (ops, AccumulateGrad) holds its incoming gradient
      as the array itself; a sum this pass allocated is held as `[array]`, which marks it
      ours: later gradients are added into it in place, and a leaf takes it as .grad without
      a copy. (A rule's result is never written in place: it may be shared, as AddBackward0
      hands the same array to both inputs.) Functions keep the list protocol of `_add`;
    - op nodes without hooks (`_plain`) run their first-order rules via `_vjp` directly.
    """
    release = not retain_graph
    owned = {}                                   # for the list protocol (Functions) only
    try:
        for n, nr, g in root_nodes:
            _add_plain(n, nr, g, owned)
        ready = [n for n in dict.fromkeys(r[0] for r in root_nodes) if n._deps == 0]
        pop, push = ready.pop, ready.append
        while ready:
            node = pop()
            g = node._buf
            node._buf = None
            if node._plain:
                if g is not None:
                    if type(g) is list:
                        g = g[0]
                    grads_in = node._vjp(g, release)
                else:
                    grads_in = None
                    if release:
                        node._release()
            else:
                if node._shape is None:              # list protocol
                    mine = owned.pop(node, None) if owned else None
                elif type(g) is list:                # a sum of ours: [array]
                    mine = g
                else:
                    mine = None
                    if g is not None:
                        g = [g.array() if type(g) is Uniform else g]
                grads_in = _execute(node, g, _NUMPY, retain_graph, False, None, None, accumulate,
                                    mine)
            if grads_in is None:
                for nxt in node._next:
                    if nxt is not None:
                        d = nxt._deps - 1
                        nxt._deps = d
                        if not d:
                            push(nxt)
                continue
            for nxt, gi, nr in zip(node._next, grads_in, node._nrs or _ZEROS):
                if nxt is None:
                    continue
                if gi is not None:
                    if gi.shape == nxt._shape and gi.dtype is nxt._dtype:
                        # fitted already (the usual case): store it, or sum into the buffer
                        b = nxt._buf
                        if b is None:
                            nxt._buf = gi
                        elif type(b) is list:
                            b[0] += gi
                        else:
                            nxt._buf = _sum(b, gi)
                    else:
                        _add_plain(nxt, nr, gi, owned)
                d = nxt._deps - 1
                nxt._deps = d
                if not d:
                    push(nxt)
    except BaseException:
        _reset(order)
        raise
    return None


def _sum(b, g):
    """The new raw buffer for b + g when the buffer `b` is not a sum of this pass: `[sum]`,
    marked ours. A large sum is written into whichever of the two arrays nothing else
    references (PyTorch's AccumulateGrad steals a gradient the same way); the counts: `b` is
    held by its node's buffer and the caller's local, `g` by the caller's zip tuple (or
    argument) and local; each also by this frame and getrefcount's own argument."""
    if type(g) is np.ndarray and g.size >= _INPLACE_MIN:
        if type(b) is np.ndarray and b.base is None and _refcount(b) == 4 and b.flags.writeable:
            b += g
            return [b]
        if g.base is None and _refcount(g) == 4 and g.flags.writeable:
            g += b
            return [g]
    s = b + g
    return [s] if type(s) is np.ndarray else s          # 0-d sums are numpy scalars


def _add_plain(node, nr, g, owned):
    """`_add` for the plain loop: a raw buffer for nodes of known shape, else `_add`.
    One value fitted to a large shape (what sum/mean hand back) is kept as a `Uniform`."""
    shape = node._shape
    if shape is None:
        _add(node, nr, g.array() if type(g) is Uniform else g, _NUMPY, 0, owned)
        return
    if getattr(g, "shape", None) != shape or g.dtype != node._dtype:
        if np.size(g) == 1 and _prod(shape) >= _INPLACE_MIN:
            g = Uniform(np.asarray(g, dtype=node._dtype).reshape(()), shape)
        else:
            g = _fit(_NUMPY, g, shape, node._dtype, 0)
    b = node._buf
    if b is None:
        node._buf = g
    elif type(b) is list:
        b[0] += g
    else:
        node._buf = _sum(b, g)


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


def _add(node, nr, g, xp, nb, owned):
    """Sum gradient `g` into `node`'s buffer for output `nr`, fitted to that output's shape."""
    if node._shape is not None:            # ops and AccumulateGrad
        shape, dtype = node._shape, node._dtype
    else:                                  # Functions: one entry per output
        shape, dtype = node._meta[nr]
    if nb or xp is not _NUMPY or getattr(g, "shape", None) != shape or g.dtype != dtype:
        g = _fit(xp, g, shape, dtype, nb)
    buf = node._buf
    if buf is None:
        node._buf = buf = [None] * node.n_outputs
    old = buf[nr]
    if old is None:
        buf[nr] = g
    elif xp is _NUMPY:
        # A sum this loop made is its own: add into it instead of allocating again. A rule's
        # result is never written in place (it may be shared, e.g. AddBackward0 passes g on).
        mine = owned.get(node)
        if mine is not None and mine[nr] is old:
            old += g                 # both were fitted to this output's shape and dtype above
        else:
            buf[nr] = old = old + g
            if type(old) is np.ndarray:          # 0-d sums come back as numpy scalars
                if mine is None:
                    owned[node] = mine = [None] * node.n_outputs
                mine[nr] = old
    else:
        buf[nr] = old + g


def _run_tensor_hooks(hooks, g, xp):
    for hook in list(hooks):
        res = hook(xp.wrap(g))
        if res is not None:
            g = xp.unwrap(res)
    return g


def _execute(node, buf, xp, retain_graph, create_graph, targets, captured, accumulate, owned=None,
             inputs=None, needed=None):
    """Run one node: tensor hooks, retain_grad, capture, then AccumulateGrad or the node's rule."""
    if buf is None:
        buf = [None] * node.n_outputs
    if node._pre_hooks:
        for nr, hooks in node._pre_hooks.items():
            if buf[nr] is not None and hooks:
                buf[nr] = _run_tensor_hooks(hooks, buf[nr], xp)
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
        if var._hooks:
            g = _run_tensor_hooks(var._hooks, g, xp)
        _accumulate(var, g, create_graph, fresh=owned is not None and owned[0] is g)
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


def _accumulate(var, g, create_graph, fresh=False):
    """Add `g` into leaf `var`.grad: in place when no graph is built (PyTorch's AccumulateGrad).
    A `fresh` g (a sum this pass allocated, referenced nowhere else) becomes .grad without a copy."""
    from .tensor import Tensor
    cur = var._grad
    if create_graph:
        gt = g if isinstance(g, Tensor) else Tensor._make(np.asarray(g))
        var._grad = gt if cur is None else cur + gt
        return
    if cur is None:
        if fresh and g.dtype == var._data.dtype and g.flags.writeable:
            var._grad = Tensor._make(g)
        else:
            var._grad = Tensor._make(np.array(g, dtype=var._data.dtype, copy=True))
    elif cur.grad_fn is not None or cur._data.shape != np.shape(g):
        var._grad = Tensor._make(np.asarray(cur._data + g))
    else:
        np.add(cur._data, g, out=cur._data, casting="unsafe")
        cur._bump()
