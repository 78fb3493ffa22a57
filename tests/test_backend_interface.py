"""The checker's backend interface (engine/autograd/backend.py): on PyTorch the analytical side
is PyTorch's autograd itself (cli/torch_backend.TorchBackend), its Jacobian rows batched through
is_grads_batched in blocks where PyTorch can, one row at a time where it cannot."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from cli import torch_backend  # noqa: E402
from engine.autograd.backend import EngineBackend, backend_of  # noqa: E402


def _softmax_jacobian(x):
    """d(2 softmax(x))/dx, closed form: 2 (diag(s) - s s^T), one row block per row of x."""
    s = np.exp(x - x.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    rows, cols = x.shape
    J = np.zeros((x.size, x.size))
    for r in range(rows):
        b = slice(r * cols, (r + 1) * cols)
        J[b, b] = 2 * (np.diag(s[r]) - np.outer(s[r], s[r]))
    return J


class Softmax2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = torch.softmax(x, -1)
        ctx.save_for_backward(s)
        return 2 * s

    @staticmethod
    def backward(ctx, g):
        s, = ctx.saved_tensors
        return 2 * s * (g - (g * s).sum(-1, keepdim=True))


@pytest.mark.parametrize("block_bytes", [1 << 25, 8 * 60 * 7])      # one block; blocks of 7 rows (60 = 4 x 15)
@pytest.mark.parametrize("custom", [False, True])
def test_torch_jacobian_rows_are_the_closed_form_in_blocks_and_one_by_one(monkeypatch, block_bytes, custom):
    monkeypatch.setattr(torch_backend.TorchRun, "ROW_BLOCK_BYTES", block_bytes)
    calls = []
    real = torch_backend.TorchRun._batched_rows

    def spy(self, o, rows):
        calls.append(o.numel())
        return real(self, o, rows)
    monkeypatch.setattr(torch_backend.TorchRun, "_batched_rows", spy)
    x = np.random.default_rng(3).standard_normal((4, 15))
    fn = (lambda t: Softmax2.apply(t)) if custom else (lambda t: 2 * torch.softmax(t, -1))
    f = torch_backend.engine_function(fn)
    run = backend_of(f).forward((engine.tensor(x, requires_grad=True),), [0])
    J = run.jacobian()[0][0]
    np.testing.assert_allclose(J, _softmax_jacobian(x), rtol=1e-12, atol=1e-14)
    # PyTorch's own ops go batched; a custom Function without a vmap rule row by row
    assert calls == ([] if custom else [60])


def test_transposed_and_float32_inputs_reach_pytorch_as_they_are():
    seen = {}

    def fn(w):
        seen["strides"], seen["dtype"] = w.stride(), w.dtype
        return (w * w).sum()
    w = np.asfortranarray(np.arange(6.0).reshape(2, 3)).astype(np.float32)
    f = torch_backend.engine_function(fn)
    g, = backend_of(f).backward_grads((engine.tensor(w, requires_grad=True),), [0], [np.ones(())])
    assert seen["strides"] == (1, 2) and seen["dtype"] == torch.float32
    np.testing.assert_array_equal(g, 2 * w)


def test_the_engine_is_the_backend_of_a_plain_function_and_pytorch_of_a_torch_one():
    assert isinstance(backend_of(lambda x: x), EngineBackend)
    assert isinstance(backend_of(torch_backend.engine_function(lambda x: x)), torch_backend.TorchBackend)


def test_a_backward_wrong_on_pytorch_is_seen_through_every_path_of_the_interface():
    """Jacobian rows, .grad from backward() and the side checks all come from PyTorch's graph: a
    Function 1 % off fails the rows and the .grad path; a backward not multiplied by grad_output
    fails its side check."""
    from engine.autograd.checker import check_gradients

    class Off(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 1.01 * g * x.cos()

    class Unscaled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * x.cos() + (g == 0) * 1.0
    x = engine.tensor(np.linspace(-1, 1, 5), requires_grad=True)
    r = check_gradients(torch_backend.engine_function(Off.apply), (x,), verdicts=True)
    assert r.verdict == "fail" and r.suspects == ["OffBackward"]
    assert {p.kind for p in r.pairs if not p.passed} == {"jacobian", "grad"}
    r = check_gradients(torch_backend.engine_function(Unscaled.apply), (x,), verdicts=True)
    assert r.verdict == "fail" and r.checks["zero_grad_output"] is False
