"""torch.autograd.profiler on the engine: `profile` (a context manager) and `record_function`.

Inside `with profile() as prof:` every registry op's forward (the engine's one per-op path:
apply, apply1, apply_multi and the binary operators) and every backward node the loop runs are
timed; `prof.key_averages().table()` lists them with self and total CPU time and call counts,
in PyTorch's layout (the timings are the engine's, not PyTorch's). It listens through Python's
profiling hook (sys.setprofile), installed only while a profile is open: outside one the
per-op path pays nothing.
"""
import sys
import time
from .._names import torch_repr

__all__ = ["profile", "record_function", "EventList", "FunctionEventAvg"]


class FunctionEventAvg:
    """One row of key_averages(): an op or node name, its calls and its times (microseconds)."""

    def __init__(self, key):
        self.key = key
        self.count = 0
        self.self_cpu_time_total = 0.0
        self.cpu_time_total = 0.0

    @property
    def cpu_time(self):
        return self.cpu_time_total / self.count if self.count else 0.0

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} self_cpu_time={_fmt(self.self_cpu_time_total)} "
                f"cpu_time={_fmt(self.cpu_time)} count={self.count}>")


def _fmt(us):
    """PyTorch's time format: 145.965us, 1.234ms, 2.345s."""
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


class EventList(list):
    """The rows of key_averages(), with table() as PyTorch prints it."""

    def table(self, sort_by=None, row_limit=100, max_name_column_width=55, header=None, top_level_events_only=False,
              **kwargs):
        rows = list(self)
        keys = {"self_cpu_time_total": lambda e: e.self_cpu_time_total, "cpu_time_total": lambda e: e.cpu_time_total,
                "cpu_time": lambda e: e.cpu_time, "count": lambda e: e.count}
        if sort_by is not None:
            if sort_by not in keys:
                raise AttributeError(f"'FunctionEventAvg' object has no attribute '{sort_by}'")
            rows.sort(key=keys[sort_by], reverse=True)
        if row_limit is not None and row_limit > 0:
            rows = rows[:row_limit]
        total = sum(e.self_cpu_time_total for e in self) or 1.0
        width = max([len("Name")] + [min(len(e.key), max_name_column_width) for e in rows]) + 2
        cols = ["Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "# of Calls"]
        line = "-" * width + "  " + "  ".join("-" * 12 for _ in cols) + "  "
        out = [line, "Name".rjust(width) + "  " + "  ".join(c.rjust(12) for c in cols) + "  ", line]
        for e in rows:
            name = e.key if len(e.key) <= max_name_column_width else e.key[:max_name_column_width - 3] + "..."
            vals = [f"{100 * e.self_cpu_time_total / total:.2f}%", _fmt(e.self_cpu_time_total),
                    f"{100 * e.cpu_time_total / total:.2f}%", _fmt(e.cpu_time_total), _fmt(e.cpu_time), str(e.count)]
            out.append(name.rjust(width) + "  " + "  ".join(v.rjust(12) for v in vals) + "  ")
        out.append(line)
        out.append(f"Self CPU time total: {_fmt(sum(e.self_cpu_time_total for e in self))}")
        return "\n".join(out) + "\n"

    def __str__(self):
        return self.table()

    def __repr__(self):
        # PyTorch: unfinished until the with-block ends, then its events
        return "<unfinished torch.autograd.profile>" if not self._finished else self.table()


def _watched():
    """code object -> how to name the event of a frame running it."""
    from .. import graph
    from ..ops import _core

    def op_name(frame):
        op = frame.f_locals.get("op")
        return getattr(op, "name", None)

    def node_name(frame):
        node = frame.f_locals.get("self") or frame.f_locals.get("node")
        return None if node is None else graph.node_name(node)
    codes = {}
    for fn in (_core.apply, _core.apply1, _core.apply_multi):
        codes[fn.__code__] = op_name
    # the closures every op's operator and first-order rules are made of (one code object each)
    codes[_core.binary_operator(_PROBE_OP(), None).__code__] = op_name
    codes[_core._unary_vjp(None).__code__] = node_name
    codes[_core._binary_vjp(None, None).__code__] = node_name
    for cls in (_core.OpNode, _core.MultiOpNode):
        for meth in ("apply", "_vjp"):
            if meth in vars(cls):
                codes[vars(cls)[meth].__code__] = node_name
    codes[graph._execute.__code__] = node_name
    return codes


class _PROBE_OP:
    """A stand-in op, to reach the code object binary_operator's closures share."""
    forward = staticmethod(lambda x, y: x)
    node_cls = (None,)
    keep_table = None
    name = "probe"


@torch_repr("torch.autograd.profiler.record_function")
class record_function:  # noqa: N801 - PyTorch's name
    """A user-named range: its time is listed under `name` in the open profile (if any)."""

    def __init__(self, name, args=None):
        self.name = name

    def __enter__(self):
        prof = _ACTIVE[-1] if _ACTIVE else None
        if prof is not None:
            prof._push(self.name, ("range", id(self)))
        return self

    def __exit__(self, *exc):
        prof = _ACTIVE[-1] if _ACTIVE else None
        if prof is not None:
            prof._pop(("range", id(self)))
        return False


_ACTIVE = []


class profile:  # noqa: N801 - PyTorch's name
    """with profile() as prof: ...; print(prof.key_averages().table(sort_by="self_cpu_time_total"))."""

    def __init__(self, enabled=True, *, use_cuda=False, use_device=None, record_shapes=False, with_flops=False,
                 profile_memory=False, with_stack=False, with_modules=False, use_kineto=True, use_cpu=True,
                 experimental_config=None, acc_events=False, custom_trace_id_callback=None):
        self.enabled = enabled
        self._rows = {}
        self._stack = []        # [key, token, start, child time]
        self._codes = None
        self._previous = None
        self.entered = False
        self._finished = False

    def __enter__(self):
        if not self.enabled:
            return self
        if self.entered:
            raise RuntimeError("Profiler context manager is not reentrant")
        self.entered = True
        self._codes = _watched()
        self._previous = sys.getprofile()
        _ACTIVE.append(self)
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        sys.setprofile(self._previous)
        _ACTIVE.remove(self)
        while self._stack:           # anything still open (an exception) closes now
            self._pop(self._stack[-1][1])
        self._finished = True
        return False

    def _push(self, key, token):
        self._stack.append([key, token, time.perf_counter(), 0.0])

    def _pop(self, token):
        if not self._stack or self._stack[-1][1] != token:
            return
        key, _, start, child = self._stack.pop()
        total = (time.perf_counter() - start) * 1e6
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = FunctionEventAvg(key)
        row.count += 1
        row.cpu_time_total += total
        row.self_cpu_time_total += total - child
        if self._stack:
            self._stack[-1][3] += total

    def _hook(self, frame, event, arg):
        if event == "call":
            namer = self._codes.get(frame.f_code)
            if namer is not None:
                key = namer(frame)
                if key is not None:
                    # one event per op or node: apply -> _apply -> _vjp of the same node counts once
                    kind = "nested" if self._stack and self._stack[-1][0] == key else "frame"
                    self._stack.append([key, (kind, id(frame)), time.perf_counter(), 0.0])
        elif event == "return" and self._stack:
            top = self._stack[-1]
            if top[1][1] == id(frame):
                if top[1][0] == "nested":
                    self._stack.pop()
                    if self._stack:
                        self._stack[-1][3] += top[3]
                else:
                    self._pop(top[1])

    def key_averages(self, group_by_input_shape=False, group_by_stack_n=0):
        return EventList(self._rows.values())

    def table(self, **kwargs):
        return self.key_averages().table(**kwargs)

    def total_average(self):
        t = FunctionEventAvg("Total")
        for e in self._rows.values():
            t.count += e.count
            t.self_cpu_time_total += e.self_cpu_time_total
            t.cpu_time_total += e.self_cpu_time_total
        return t

    def __str__(self):
        return self.table()

    def __repr__(self):
        # PyTorch: unfinished until the with-block ends, then its events
        return "<unfinished torch.autograd.profile>" if not self._finished else self.table()
