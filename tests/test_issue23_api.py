"""nn.Parameter's repr and str, forward-mode duals (requires_grad, grad_fn and repr as PyTorch),
and the profiler (issue 23)."""
import numpy as np
import pytest

import engine
import engine.autograd.forward_ad as fwAD


def test_parameter_repr_and_str():
    p = engine.nn.Parameter(engine.tensor([[1.0, 2.0], [3.0, 4.0]]))
    want = "Parameter containing:\ntensor([[1., 2.],\n        [3., 4.]], requires_grad=True)"
    assert repr(p) == want and str(p) == want
    assert repr(engine.nn.Parameter(engine.tensor([1.0]), requires_grad=False)) == \
        "Parameter containing:\ntensor([1.])"
    assert "Parameter containing:" not in repr(p * 2)          # ops on a Parameter give plain Tensors


def test_parameter_repr_matches_pytorch():
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)          # the engine's default: neither prints float64
    try:
        for data, kw in (([[1.5, -2.0], [3.0, 4.25]], {}), ([1.0, 2.0], {"requires_grad": False}), (3.0, {}),
                         (np.arange(12.0).reshape(3, 4) / 7, {})):
            for dtype in ("float64", "float32"):
                ours = engine.nn.Parameter(engine.tensor(np.asarray(data, dtype=dtype)), **kw)
                theirs = torch.nn.Parameter(torch.tensor(np.asarray(data, dtype=dtype)), **kw)
                assert repr(ours) == repr(theirs) and str(ours) == str(theirs)
    finally:
        torch.set_default_dtype(old)


def test_a_dual_of_a_plain_tensor_records_nothing_visible():
    with fwAD.dual_level():
        d = fwAD.make_dual(engine.tensor([1.0, 2.0]), engine.ones(2))
        assert not d.requires_grad and d.grad_fn is None
        y = d.sin() * 3
        assert not y.requires_grad
        assert repr(d) == "tensor([1., 2.], tangent=tensor([1., 1.]))"
        assert repr(y) == "tensor([2.5244, 2.7279], tangent=tensor([ 1.6209, -1.2484]))"
        np.testing.assert_allclose(fwAD.unpack_dual(y).tangent.numpy(), 3 * np.cos([1.0, 2.0]))
        w = engine.tensor([1.0, 1.0], requires_grad=True)
        z = y * w                                   # a user graph: shown as usual
        assert z.requires_grad and z.grad_fn.name() == "MulBackward0"
        x = engine.tensor([1.0, 2.0], requires_grad=True)
        e = fwAD.make_dual(x, engine.ones(2))       # of a tensor that requires grad: a view, as PyTorch
        assert e.requires_grad and e.grad_fn.name() == "ViewBackward0"
    assert repr(d) == "tensor([1., 2.])" and not y.requires_grad


def test_duals_match_pytorch():
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)          # the engine's default: neither repr prints a dtype
    res = []
    try:
        for m in (engine, torch):
            fw = m.autograd.forward_ad
            with fw.dual_level():
                d = fw.make_dual(m.tensor([0.5, -1.0]), m.tensor([1.0, 2.0]))
                y = (d.exp() * d).sum()
                x = m.tensor([0.5, -1.0], requires_grad=True)
                e = fw.make_dual(x, m.ones(2))
                # (y.grad_fn is not compared: the engine keeps the node it computes tangents through)
                res.append((d.requires_grad, d.grad_fn is None, y.requires_grad, repr(d), repr(y),
                            float(fw.unpack_dual(y).tangent), e.requires_grad, type(e.grad_fn).__name__))
            res[-1] += (repr(d), repr(y))
    finally:
        torch.set_default_dtype(old)
    assert res[0] == res[1]


def test_profiler_lists_the_engine_ops_and_nodes():
    from engine.autograd import profiler
    x = engine.randn(20, 20, requires_grad=True)
    with profiler.profile() as prof:
        with profiler.record_function("block"):
            y = (x * 2).sin().sum() + engine.linalg.det(x)
        y.backward()
    rows = {e.key: e for e in prof.key_averages()}
    for key in ("mul", "sin", "sum", "linalg_det", "add", "block", "MulBackward0", "SinBackward0",
                "LinalgDetBackward0", "SumBackward0"):
        assert key in rows and rows[key].count == 1, key
    assert rows["block"].cpu_time_total >= rows["mul"].cpu_time_total + rows["linalg_det"].cpu_time_total
    assert all(e.self_cpu_time_total <= e.cpu_time_total + 1e-9 for e in rows.values())
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=5)
    lines = table.splitlines()
    assert "Self CPU %" in lines[1] and "# of Calls" in lines[1] and lines[-1].startswith("Self CPU time total: ")
    assert len(lines) == 3 + 5 + 2
    import sys
    assert sys.getprofile() is None                 # nothing is left listening after the block


def test_torch_profiler_module():
    import engine.profiler as tp
    with tp.profile(activities=[tp.ProfilerActivity.CPU]) as prof:
        (engine.ones(3, requires_grad=True) * 2).sum().backward()
    assert {"mul", "sum", "MulBackward0"} <= {e.key for e in prof.key_averages()}


def test_a_parameters_grad_is_a_plain_tensor():
    p = engine.nn.Parameter(engine.ones(2))
    (p * 2).sum().backward()
    assert type(p.grad) is engine.Tensor and str(p.grad) == "tensor([2., 2.])"
    (p * 2).sum().backward()                       # accumulated in place: still a plain Tensor
    assert type(p.grad) is engine.Tensor and str(p.grad) == "tensor([4., 4.])"
