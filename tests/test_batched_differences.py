"""Finite differences on the torch backend: batched through torch.func.vmap where the target
allows it, one evaluation at a time where it does not -- the same numbers either way.

The reference is the engine checker's own loop (`_numerical_columns` on a function without the
backend's hook), which perturbs one element at a time; every case crosses a block boundary
(the block size is made small) so that blocks are stitched together as they are at real sizes."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from cli import torch_backend  # noqa: E402
from engine.autograd import checker  # noqa: E402


def _loop_reference(fn, inputs, idx, eps, cols):
    """The engine's loop on the same PyTorch function (no hook: one evaluation per step)."""
    f = torch_backend.engine_function(fn)
    f.backend.differences = None
    over = []
    res = checker._numerical_columns(f, inputs, idx, eps, cols, overflow=over)
    return res, over


def _hooked(fn, inputs, idx, eps, cols):
    f = torch_backend.engine_function(fn)
    over = []
    res = checker._numerical_columns(f, inputs, idx, eps, cols, overflow=over)
    return res, over, f.backend.differences


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(torch_backend.Differences, "MAX_BLOCK", 7)
    monkeypatch.setattr(torch_backend.Differences, "MIN_COLUMNS", 1)


def _inputs(*arrays):
    return tuple(engine.tensor(a, requires_grad=True) for a in arrays)


@pytest.mark.parametrize("layout", ["C", "transposed", "strided", "fortran"])
def test_elementwise_targets_give_the_loops_numbers_exactly(small_blocks, layout):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 10))
    if layout == "transposed":
        a = rng.standard_normal((10, 6)).T
    elif layout == "strided":
        a = rng.standard_normal((6, 20))[:, ::2]
    elif layout == "fortran":
        a = np.asfortranarray(a)
    b = rng.standard_normal(10)

    def fn(x, y):
        return torch.sin(x) * y + x ** 3, (torch.exp(x) * y).sum(dim=0)
    inputs = _inputs(a, b)
    cols = range(60)
    ref, ref_over = _loop_reference(fn, inputs, 0, 1e-6, cols)
    got, over, fd = _hooked(fn, inputs, 0, 1e-6, cols)
    assert fd.batched is True and fd.fallback == ""
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        assert np.array_equal(r, g)                  # the very same floating-point operations
    for r, g in zip(ref_over, over):
        assert np.array_equal(r, g)
    assert np.array_equal(inputs[0]._data, a)      # the input is left as it was


def test_a_matmul_target_agrees_with_the_loop_to_the_last_bits(small_blocks):
    rng = np.random.default_rng(2)
    w, x = rng.standard_normal((9, 5)), rng.standard_normal((4, 9))

    def fn(w, x):
        return torch.tanh(x @ w).pow(2).mean()
    inputs = _inputs(w, x)
    for idx in (0, 1):
        n = inputs[idx]._data.size
        ref, _ = _loop_reference(fn, inputs, idx, 1e-6, range(n))
        got, _, fd = _hooked(fn, inputs, idx, 1e-6, range(n))
        assert fd.batched is True
        # a batched matmul sums in another order: ~1e-17 in f, ~1e-11 in a difference over 2e-6,
        # far below the differences' own truncation error (~eps^2 = 1e-12 relative... of f''')
        assert np.allclose(ref[0], got[0], rtol=0, atol=1e-9)
        # and the derivative is the closed form: d mean(tanh(xw)^2) = 2 tanh sech^2 / N
        t = np.tanh(x @ w)
        g = 2 * t * (1 - t ** 2) / t.size
        want = (x.T @ g) if idx == 0 else (g @ w.T)
        assert np.allclose(got[0].reshape(-1), want.reshape(-1), atol=1e-8)


class _NoVmap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 2 * x * g


def _control_flow(x):
    return x * 2 if x.sum() > 0 else x * 3


class _SetupNoVmap(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 2 * x * g


class _InPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.mark_dirty(x)
        return x.mul_(3)

    @staticmethod
    def backward(ctx, g):
        return 3 * g


class _Nested(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _NoVmap.apply(x) * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 3 * x * x * g


class _ThroughNumpy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.from_numpy(x.numpy() ** 2)

    @staticmethod
    def backward(ctx, g):
        raise AssertionError("not called by finite differences")


_bound_apply = _NoVmap.apply          # bound before any check runs: the real apply, which vmap refuses


@pytest.mark.parametrize("fn", [
    lambda x: _NoVmap.apply(x).sum(),              # old style: forward(ctx, x), no vmap rule
    lambda x: _SetupNoVmap.apply(x).sum(),         # forward(x) + setup_context, no vmap rule
    lambda x: _InPlace.apply(x.clone()) * x,       # mark_dirty: in place on its input
    lambda x: _Nested.apply(torch.sin(x)),         # a Function inside another's forward
], ids=["ctx-forward", "setup_context", "mark_dirty", "nested"])
def test_custom_functions_are_batched_through_their_own_forward(small_blocks, fn):
    """vmap refuses a custom Function without a vmap rule even under no_grad; the differences need
    only its forward, which is plain torch code: batched, the loop's numbers exactly."""
    inputs = _inputs(np.linspace(0.5, 2, 16))
    ref, _ = _loop_reference(fn, inputs, 0, 1e-6, range(16))
    got, _, fd = _hooked(fn, inputs, 0, 1e-6, range(16))
    assert fd.batched is True, fd.fallback
    assert np.array_equal(ref[0], got[0])


@pytest.mark.parametrize("fn,why", [
    (lambda x: _ThroughNumpy.apply(x).sum(), "data pointer"),
    (lambda x: _bound_apply(x).sum(), "it must override the setup_context staticmethod"),
    (_control_flow, "data-dependent control flow"),
    (lambda x: x * x.sum().item(), ".item()"),
])
def test_targets_vmap_refuses_fall_back_to_the_loop_with_the_reason_said(small_blocks, fn, why):
    inputs = _inputs(np.linspace(0.5, 2, 16))
    ref, _ = _loop_reference(fn, inputs, 0, 1e-6, range(16))
    got, _, fd = _hooked(fn, inputs, 0, 1e-6, range(16))
    assert fd.batched is False
    assert fd.fallback.startswith("finite differences ran one evaluation at a time") and why in fd.fallback, fd.fallback
    assert np.array_equal(ref[0], got[0])


def test_an_overflow_is_marked_as_the_loop_marks_it(small_blocks):
    inputs = _inputs(np.array([1.0, 709.7827, 2.0, 709.78271289, -3.0] * 3))

    def fn(x):
        return torch.exp(x)
    ref, ref_over = _loop_reference(fn, inputs, 0, 1e-6, range(15))
    got, over, fd = _hooked(fn, inputs, 0, 1e-6, range(15))
    assert fd.batched is True and ref_over[0].any()
    assert np.array_equal(ref_over[0], over[0])
    assert np.array_equal(np.isnan(ref[0]), np.isnan(got[0]))
    assert np.array_equal(ref[0][np.isfinite(ref[0])], got[0][np.isfinite(got[0])])


def test_blocks_fit_the_memory_budget(small_blocks, monkeypatch):
    """A block holds BLOCK_BYTES of perturbed copies and outputs: with 8 KB and a 100-element
    input (2 x (100 + 1) x 8 bytes per column), 5 columns per block: every call takes the same
    buffer of 2 x 5 copies (the last block's spare rows are not read)."""
    monkeypatch.setattr(torch_backend.Differences, "BLOCK_BYTES", 8192)
    sizes = []
    real = torch.func.vmap

    def spy(fn, **kw):
        mapped = real(fn, **kw)

        def run(xb):
            sizes.append(xb.shape[0])
            return mapped(xb)
        return run
    monkeypatch.setattr(torch.func, "vmap", spy)
    inputs = _inputs(np.linspace(-1, 1, 100))
    _hooked(lambda x: (x * x).sum(), inputs, 0, 1e-6, range(23))
    assert sizes == [10, 10, 10, 10, 10]


def test_a_check_on_pytorch_says_when_it_could_not_batch(tmp_path):
    from typer.testing import CliRunner
    import json
    from cli.app import app
    p = tmp_path / "t.py"
    p.write_text("import torch\nclass Sq(torch.autograd.Function):\n    @staticmethod\n"
                 "    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x * x\n"
                 "    @staticmethod\n    def backward(ctx, g):\n        x, = ctx.saved_tensors\n"
                 "        return 2 * x * g\n"
                 "def f(x):\n    return Sq.apply(x).sum()\ndef g(x):\n    return (x * x).sum() if x.sum() > 0 else x.sum()\n")
    x = ["--x", "linspace(0.5, 2, 40)", "--backend", "torch"]
    r = CliRunner().invoke(app, ["check", str(p), *x, "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["finite_differences"] == {"batched": True, "note": ""}
    r = CliRunner().invoke(app, ["check", str(p), "--x", "1,2,3", "--backend", "torch", "--json"])
    doc = json.loads(r.stdout)       # 3 elements: the loop (vmap's set-up costs more), nothing to say
    assert r.exit_code == 0 and doc["finite_differences"] == {"batched": False, "note": ""}
    r = CliRunner().invoke(app, ["check", str(p), "--func", "g", *x, "--json"])
    doc = json.loads(r.stdout)
    assert doc["finite_differences"]["batched"] is False and "control flow" in doc["finite_differences"]["note"], doc
    r = CliRunner().invoke(app, ["check", str(p), "--func", "g", *x])
    assert "note: finite differences ran one evaluation at a time" in r.stderr


def test_batched_numbers_that_disagree_with_single_ones_are_not_used(small_blocks, monkeypatch):
    """The first block is compared with single evaluations; made to disagree (the comparison
    says no), the loop is used and says why -- and gives the loop's numbers."""
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: False)
    inputs = _inputs(np.linspace(0.5, 2, 16))

    def fn(x):
        return torch.sin(x) * x
    ref, _ = _loop_reference(fn, inputs, 0, 1e-6, range(16))
    got, _, fd = _hooked(fn, inputs, 0, 1e-6, range(16))
    assert fd.batched is False and "differ from single evaluations" in fd.fallback
    assert np.array_equal(ref[0], got[0])


def test_a_target_that_changes_its_input_in_place_still_gets_each_blocks_own_copies(small_blocks, monkeypatch):
    """The buffer of perturbed copies is reused from block to block (only the perturbed entries
    are put back); f working in place on its input (a version bump) makes it copied afresh."""
    def fn(x):
        x.mul_(2)                    # the user's f works on its input in place (and undoes it:
        y = torch.sin(x / 2)         # x * 2 / 2 is x exactly, so single evaluations agree)
        x.div_(2)
        return y * 2

    copies = []
    real_copy = torch.Tensor.copy_

    def spy(self, src, *a, **k):
        copies.append(tuple(self.shape))
        return real_copy(self, src, *a, **k)
    monkeypatch.setattr(torch.Tensor, "copy_", spy)
    inputs = _inputs(np.linspace(-1, 1, 20))
    got, _, fd = _hooked(fn, inputs, 0, 1e-6, range(20))
    assert fd.batched is True
    assert copies.count((14, 20)) == 3                # the 2 x 7 copies made afresh after each of 3 blocks
    assert np.allclose(np.diag(got[0]), 2 * np.cos(np.linspace(-1, 1, 20)), atol=1e-8)   # d 2 sin(x) = 2 cos(x)
    assert np.allclose(got[0] - np.diag(np.diag(got[0])), 0, atol=1e-12)
