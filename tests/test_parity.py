"""PyTorch parity for the engine's edges: second backward after a saved number, numpy
functions on tensors that require grad, .grad with history, once_differentiable, mark_dirty,
pickling errors, grad-mode bookkeeping across threads. Each expected value is a closed form;
where PyTorch is installed the same code runs on it and must agree."""
import gc
import pickle
import threading

import numpy as np
import pytest

import engine
from engine.grad_mode import OFF_DEFAULT


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def both(fn):
    """fn(module) on the engine, and on PyTorch when it is installed: the two must agree."""
    got = fn(engine)
    torch = _torch()
    if torch is not None:
        assert fn(torch) == got, f"PyTorch: {fn(torch)!r}, engine: {got!r}"
    return got


def _second_backward(t, f):
    x = t.tensor([1.0, 2.0], dtype=t.float64, requires_grad=True)
    z = f(x).sum()
    z.backward()
    try:
        z.backward()
    except RuntimeError as e:
        return "error: " + str(e)[:60]
    return x.grad.tolist()


@pytest.mark.parametrize("name,f,closed", [
    ("mul", lambda x: x * 2, None), ("div", lambda x: x / 2, None), ("pow", lambda x: x ** 2, None),
    ("rmul", lambda x: 2 * x, None),
    ("add", lambda x: x + 2, [2.0, 2.0]), ("rsub", lambda x: 2 - x, [-2.0, -2.0]),
    ("sub", lambda x: x - 2, [2.0, 2.0]),
])
def test_second_backward_fails_exactly_when_a_value_was_saved(name, f, closed):
    got = both(lambda t: _second_backward(t, f))
    if closed is None:
        assert got.startswith("error: Trying to backward through the graph a second time")
    else:
        assert got == closed            # nothing saved: the second call accumulates again


def test_graph_knows_whether_a_second_backward_would_fail():
    from engine.graph import frees_saved_values
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    assert frees_saved_values((x * 2).sum()) and frees_saved_values((x.exp() + 1).sum())
    assert not frees_saved_values((x + 2).sum()) and not frees_saved_values((2 - x).mean())


def test_numpy_functions_refuse_tensors_that_require_grad():
    def go(t):
        x = t.tensor([1.0, 2.0], dtype=t.float64, requires_grad=True)
        try:
            np.exp(x)
        except RuntimeError as e:
            msg = str(e)
        ok = np.exp(x.detach()).tolist()
        with t.no_grad():
            inside = x.numpy().tolist()        # allowed while grad mode is off
        return msg, [round(v, 6) for v in ok], inside
    msg, ok, inside = both(go)
    assert msg == "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."
    assert ok == [round(np.e, 6), round(np.e ** 2, 6)] and inside == [1.0, 2.0]


def test_grad_with_history_is_accumulated_in_place():
    def go(t):
        x = t.tensor([1.0, 2.0], dtype=t.float64, requires_grad=True)
        g = t.tensor([1.0, 1.0], dtype=t.float64, requires_grad=True)
        x.grad = g * 1
        old = x.grad
        (x * 3).sum().backward()
        return x.grad.tolist(), x.grad is old, type(x.grad.grad_fn).__name__
    assert both(go) == ([4.0, 4.0], True, "MulBackward0")


def _once(t, double):
    from_mod = t.autograd.function if t is not engine else engine.autograd

    class Cube(t.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        @from_mod.once_differentiable
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * 3 * x ** 2

    x = t.tensor([1.0, 2.0], dtype=t.float64, requires_grad=True)
    y = Cube.apply(x).sum()
    if not double:
        y.backward()
        return x.grad.tolist()
    # the double backward needs a grad_output that requires grad (PyTorch's rule: only then
    # are the results marked)
    v = t.tensor(1.0, dtype=t.float64, requires_grad=True)
    (gx,) = t.autograd.grad(y, x, grad_outputs=v, create_graph=True)
    try:
        gx.sum().backward()
    except RuntimeError as e:
        return "error: " + str(e)
    return "no error"


def test_once_differentiable_in_the_documented_order():
    assert both(lambda t: _once(t, False)) == [3.0, 12.0]
    assert both(lambda t: _once(t, True)) == (
        "error: trying to differentiate twice a function that was marked with @once_differentiable")


def _dirty(t, leaf):
    class AddOneInplace(t.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x.numpy()[...] += 1          # in place, behind the engine's back
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    a = t.tensor([1.0, 2.0], dtype=t.float64, requires_grad=True)
    x = a if leaf else a.clone()
    try:
        b = x * x
        y = AddOneInplace.apply(x)
    except RuntimeError as e:
        return "error: " + str(e)[:50]
    res = [y is x, type(y.grad_fn).__name__, x._version]
    try:
        b.sum().backward()               # b saved x, which was modified: PyTorch refuses
    except RuntimeError as e:
        res.append("error: " + str(e)[:60])
    (y * 2).sum().backward()
    res.append(a.grad.tolist())
    return res


def test_mark_dirty_rebases_the_input_and_bumps_its_version():
    got = both(lambda t: _dirty(t, False))
    assert got[:3] == [True, "AddOneInplaceBackward", 1]
    assert got[3].startswith("error: one of the variables needed for gradient computation has")
    assert got[4] == [2.0, 2.0]
    assert both(lambda t: _dirty(t, True)).startswith("error: a leaf Variable that requires grad")


@pytest.mark.parametrize("make", [
    lambda: engine.errors.EngineRuntimeError("boom"),
    lambda: engine.errors.ShapeError("shape"), lambda: engine.errors.DimensionError("dim"),
    lambda: engine.errors.MissingDerivativeError("missing"),
])
def test_engine_errors_survive_pickle(make):
    e = make()
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is type(e) and str(back) == str(e)
    assert type(e).__name__ in ("RuntimeError", "IndexError", "MissingDerivativeError")


def test_a_real_backward_error_survives_pickle():
    x = engine.tensor([1.0], requires_grad=True)
    z = (x * 2).sum()
    z.backward()
    with pytest.raises(RuntimeError) as info:
        z.backward()
    back = pickle.loads(pickle.dumps(info.value))
    assert isinstance(back, engine.EngineError) and "second time" in str(back)


def test_a_thread_that_ends_inside_no_grad_is_uncounted():
    base = OFF_DEFAULT[0]

    def body():
        engine.no_grad().__enter__()             # never exited
        engine.set_detect_anomaly(False)
    t = threading.Thread(target=body)
    t.start()
    t.join()
    gc.collect()
    assert OFF_DEFAULT[0] == base
    with engine.no_grad():
        assert OFF_DEFAULT[0] == base + 1
    assert OFF_DEFAULT[0] == base


def test_grad_times_says_the_second_call_fails_only_when_pytorchs_would():
    from typer.testing import CliRunner
    from cli.app import app
    runner = CliRunner()
    saved = runner.invoke(app, ["grad", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--times", "2"])
    assert "would fail, as in PyTorch" in saved.stdout
    added = runner.invoke(app, ["grad", "sum(w+x)", "--w", "1,2", "--x", "3,4", "--times", "2"])
    assert "would run even without retain_graph=True" in added.stdout
    assert "would fail" not in added.stdout


# -- parameters PyTorch has: each does what PyTorch's does, or is refused ------------------
def _functional_errors(t, call):
    F = t.autograd.functional
    x = t.tensor([1.0, 2.0], dtype=t.float64)
    z = t.tensor([3.0], dtype=t.float64)
    try:
        call(F, x, z)
    except (RuntimeError, NotImplementedError, ValueError) as e:
        return type(e).__name__ + ": " + str(e)
    return "no error"


@pytest.mark.parametrize("call", [
    lambda F, x, z: F.vjp(lambda a, b: a * 2, (x, z), x, strict=True),
    lambda F, x, z: F.hvp(lambda a, b: (a ** 3).sum(), (x, z), (x, z), strict=True),
    lambda F, x, z: F.jacobian(lambda a, b: a * 2, (x, z), strict=True, vectorize=False),
    lambda F, x, z: F.jacobian(lambda a, b: a * 2, (x, z), strict=True),
    lambda F, x, z: F.vjp(lambda a, b: a * b, (x, z), x, strict=True),
], ids=["vjp", "hvp", "jacobian_loop", "jacobian_vectorized", "vjp_dependent"])
def test_functional_strict_mode(call):
    got = both(lambda t: _functional_errors(t, call))
    assert ("independent of input 1" in got or "not supported together" in got) or got == "no error"


def test_functional_strict_messages_are_pytorchs():
    assert _functional_errors(engine, lambda F, x, z: F.vjp(lambda a, b: a * 2, (x, z), x, strict=True)) == (
        "RuntimeError: The output of the user-provided function is independent of input 1. This is not allowed "
        "in strict mode.")
    assert _functional_errors(engine, lambda F, x, z: F.vjp(lambda a, b: a * b, (x, z), x, strict=True)) == "no error"


def test_forward_mode_strategies_are_refused_not_ignored():
    F = engine.autograd.functional
    x = engine.tensor([1.0, 2.0])
    with pytest.raises(NotImplementedError, match="no forward-mode AD"):
        F.jacobian(lambda a: a * 2, x, strategy="forward-mode")
    with pytest.raises(NotImplementedError, match="no forward-mode AD"):
        F.hessian(lambda a: (a ** 3).sum(), x, outer_jacobian_strategy="forward-mode")
    with pytest.raises(ValueError):
        F.jacobian(lambda a: a * 2, x, strategy="sideways")


def test_gradcheck_flags_are_implemented_or_refused():
    gc_ = engine.autograd.gradcheck
    x = engine.tensor([0.5, -1.0, 2.0], requires_grad=True)
    assert gc_(lambda a: a.sin(), (x,), check_forward_ad=True)          # tests/test_autograd_api.py
    with pytest.raises(NotImplementedError, match="masked"):
        gc_(lambda a: a.sin(), (x,), masked=True)
    with pytest.raises(ValueError, match="at least one of"):
        gc_(lambda a: a.sin(), (x,), check_backward_ad=False)
    assert gc_(lambda a: a.sin() * a, (x,), check_batched_grad=True, check_grad_dtypes=True)
    assert engine.autograd.gradgradcheck(lambda a: (a.sin() * a).sum() * a, (x,), gen_non_contig_grad_outputs=True,
                                         check_batched_grad=True)
    with pytest.raises(NotImplementedError, match="check_fwd_over_rev"):
        engine.autograd.gradgradcheck(lambda a: a.sin(), (x,), check_fwd_over_rev=True)


class _RowsOnly(engine.autograd.Function):
    """A correct backward that cannot take a batch of grad_outputs (not batch_aware)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        return g * 2 * a


class _NotMultiplied(engine.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        return a * 1.0

    @staticmethod
    def backward(ctx, g):
        return g + 0.5                   # not multiplied by g: nonzero for a zero grad_output


def test_gradcheck_side_flags_catch_what_they_check():
    x = engine.tensor([0.5, -1.0, 2.0], requires_grad=True)
    assert engine.autograd.gradcheck(_RowsOnly.apply, (x,))
    with pytest.raises(engine.autograd.GradcheckError, match="batch_aware"):
        engine.autograd.gradcheck(_RowsOnly.apply, (x,), check_batched_grad=True)
    # a backward that adds a constant: caught by the Jacobian, and (undefined grad) by zeros
    report = engine.autograd.check_gradients(_NotMultiplied.apply, (x,))
    assert report.checks["zero_grad_output"] is False
    report = engine.autograd.check_gradients(_NotMultiplied.apply, (x,), check_undefined_grad=False)
    assert "zero_grad_output" not in report.checks and not report.passed


def test_check_grad_dtypes_catches_a_loop_that_does_not_cast(monkeypatch):
    """The loop casts every gradient to its input's dtype (as PyTorch's validate_outputs does),
    so check_grad_dtypes passes; with the cast broken, it fails."""
    import warnings
    import engine.graph as graph
    x32 = engine.tensor([0.5, -1.0], dtype=engine.float32, requires_grad=True)
    f = lambda a: a * engine.tensor([2.0, 3.0])        # noqa: E731 - float64 operand: float64 result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = engine.autograd.check_gradients(f, (x32,), check_grad_dtypes=True, atol=1e-2)
        assert report.checks["grad_dtypes"] is True
        real = graph._fit
        monkeypatch.setattr(graph, "_fit", lambda xp, g, shape, dtype, nb: real(xp, g, shape, g.dtype, nb))
        report = engine.autograd.check_gradients(f, (x32,), check_grad_dtypes=True, atol=1e-2)
    assert report.checks["grad_dtypes"] is False and "Gradient has dtype mismatch" in report.failures
