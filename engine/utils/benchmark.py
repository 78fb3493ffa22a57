"""torch.utils.benchmark's Timer, enough for tutorials that time a statement and print it: timeit
runs the statement `number` times (setup once) and returns a Measurement that prints as PyTorch's
does (its times are this machine's, as PyTorch's are)."""
import timeit as _timeit

from .._names import torch_repr


def _unit(t):
    for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if t >= scale:
            return scale, name
    return 1e-9, "ns"


class Measurement:
    def __init__(self, number_per_run, raw_times, stmt, setup="pass", label=None, sub_label=None,
                 description=None, num_threads=1):
        self.number_per_run, self.raw_times = number_per_run, list(raw_times)
        self.stmt, self.setup, self.label, self.sub_label = stmt, setup, label, sub_label
        self.description, self.num_threads = description, num_threads

    @property
    def times(self):
        return [t / self.number_per_run for t in self.raw_times]

    @property
    def median(self):
        ts = sorted(self.times)
        n = len(ts)
        return ts[n // 2] if n % 2 else (ts[n // 2 - 1] + ts[n // 2]) / 2

    @property
    def mean(self):
        return sum(self.times) / len(self.times)

    def __repr__(self):
        head = f"<torch.utils.benchmark.utils.common.Measurement object at {id(self):#x}>"
        lines = [head]
        if self.label or self.sub_label:
            lines.append(": ".join(x for x in (self.label, self.sub_label) if x))
        lines.append(self.description or self.stmt)
        if self.setup and self.setup != "pass":
            lines.append(f"setup: {self.setup}")
        scale, unit = _unit(self.median)
        lines.append(f"  {self.median / scale:.2f} {unit}")
        n = len(self.raw_times)
        lines.append(f"  {n} measurement{'s' if n != 1 else ''}, {self.number_per_run} runs , "
                     f"{self.num_threads} thread{'s' if self.num_threads != 1 else ''}")
        return "\n".join(lines)

    __str__ = __repr__


@torch_repr("torch.utils.benchmark.utils.timer.Timer")
class Timer:
    def __init__(self, stmt="pass", setup="pass", global_setup="", timer=None, globals=None,  # noqa: A002
                 label=None, sub_label=None, description=None, env=None, num_threads=1, language="python"):
        self.stmt, self.setup, self.label, self.sub_label = stmt, setup, label, sub_label
        self.description, self.num_threads = description, num_threads
        self._globals = dict(globals or {})
        if "torch" not in self._globals:
            import sys
            self._globals["torch"] = sys.modules.get("torch") or __import__("engine")
        self._timer = _timeit.Timer(stmt=stmt, setup=setup, timer=timer or _timeit.default_timer,
                                    globals=self._globals)

    def _measure(self, number, repeats=1):
        return Measurement(number, [self._timer.timeit(number) for _ in range(repeats)], self.stmt, self.setup,
                           self.label, self.sub_label, self.description, self.num_threads)

    def timeit(self, number=1000000):
        return self._measure(number)

    def repeat(self, repeat=-1, number=-1):
        return self._measure(max(number, 1), max(repeat, 1))

    def blocked_autorange(self, callback=None, min_run_time=0.2):
        number, _ = self._timer.autorange()
        return self._measure(number)

    def adaptive_autorange(self, threshold=0.1, *, min_run_time=0.01, max_run_time=10.0, callback=None):
        return self.blocked_autorange(min_run_time=min_run_time)
