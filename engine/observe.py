"""Watching the forward: the one API for what observes nodes being made.

Everything that watches the engine run -- the gradient checker's kink watch, `--locate`'s and
`explain`'s record of every node application -- is an `Observer`, made active on its own thread
by `observe(observer)`. Two kinds of event reach it:

- `on_op(op, inputs, attrs)`: every registry op run, graph or not, before anything is recorded
  (observers with `ops = True` only: it costs every op, so an observer asks for it);
- `on_node(node, inputs, attrs, outputs)`: every node made -- an op's, a multi-output op's, the
  pieces of `chunk`/`split`/`unbind`, a custom Function's application -- from the one place in
  engine/ops/_core.py that finishes a node (`observed`), where anomaly mode's forward trace and
  saved_tensors_hooks' packing happen too. `inputs` are what the forward received (arrays or
  numbers for ops; copies of the Tensors for a Function, taken before a forward that works in
  place changed them), `outputs` the output array or arrays.

Observers stack: nested `observe` blocks all see the events, innermost last. Nothing of this
costs the per-op path while no thread observes (grad_mode.OFF_DEFAULT).
"""
import contextlib

import numpy as np

from .grad_mode import STATE


class Observer:
    """Subclass and override what you need (both do nothing here)."""

    ops = False         # True: on_op is called for every op run

    def on_op(self, op, inputs, attrs):
        pass

    def on_node(self, node, inputs, attrs, outputs):
        pass


@contextlib.contextmanager
def observe(observer):
    """Inside, `observer` sees this thread's forward (the events above)."""
    prev = STATE.observers, STATE.op_observers
    STATE.observers = prev[0] + (observer,)
    if getattr(observer, "ops", False):
        STATE.op_observers = prev[1] + (observer,)
    try:
        yield observer
    finally:
        STATE.observers, STATE.op_observers = prev


def active(kind):
    """The innermost active observer of class `kind` on this thread, or None (a backend that
    runs code the engine does not see follows the engine's watch: cli/torch_backend.py)."""
    for o in reversed(STATE.observers):
        if isinstance(o, kind):
            return o
    return None


class KinkWatch(Observer):
    """Records the ops whose inputs lie within `eps` of a kink (a point where the op is not
    differentiable, from its registry entry's `kinks`): `found` holds (op name, index of the first
    such element). The gradient checker's warning, and locate's reading of a Function's forward."""

    ops = True

    def __init__(self, eps):
        self.eps = eps
        self.found = []
        self.low = []        # the dtypes below float64 an op received (float32 inside a float64 f)

    def on_op(self, op, inputs, attrs):
        if not self.low:
            for v in inputs:
                if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.dtype.itemsize < 8:
                    self.low.append(v.dtype.name)
                    break
        if op.kinks is None:
            return
        arrays = [np.asarray(v, dtype=np.float64) for v in inputs]
        for d in op.kinks(*arrays, **attrs):
            near = np.abs(np.asarray(d)) <= self.eps
            if np.any(near):
                idx = np.unravel_index(int(np.argmax(near)), near.shape) if near.ndim else ()
                self.found.append((op.name, tuple(int(i) for i in idx)))
                return
