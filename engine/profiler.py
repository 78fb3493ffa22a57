"""torch.profiler on the engine: profile, record_function, ProfilerActivity (the CPU only).

The same timer as engine.autograd.profiler (its profile takes torch.profiler's keywords too:
activities, schedule, on_trace_ready; a schedule is not followed: everything inside is timed).
"""
import enum

from .autograd import profiler as _profiler
from .autograd.profiler import EventList, record_function  # noqa: F401
from ._names import torch_repr


class ProfilerActivity(enum.Enum):
    CPU = 0
    CUDA = 1
    MPS = 2


@torch_repr("torch.profiler.profiler.profile")
class profile(_profiler.profile):  # noqa: N801 - PyTorch's name
    def __init__(self, *, activities=None, schedule=None, on_trace_ready=None, record_shapes=False,
                 profile_memory=False, with_stack=False, with_flops=False, with_modules=False, **kwargs):
        super().__init__(record_shapes=record_shapes, profile_memory=profile_memory, with_stack=with_stack)
        self._on_trace_ready = on_trace_ready

    def step(self):
        """torch.profiler's per-iteration call: nothing to do without a schedule."""

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if self._on_trace_ready is not None:
            self._on_trace_ready(self)
        return False
