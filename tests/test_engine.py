"""Engine semantics that PyTorch users rely on: graph structure, errors, hooks, modes, memory."""
import gc
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dags
import engine
from engine import errors


def test_next_functions_structure_matches_pytorch():
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    x = engine.tensor([3.0, 4.0])
    z = (w * x).sum()
    assert z.grad_fn.name() == "SumBackward0"
    (mul, nr), = z.grad_fn.next_functions
    assert mul.name() == "MulBackward0" and nr == 0
    (acc, i0), (none, i1) = mul.next_functions
    assert type(acc).__name__ == "AccumulateGrad" and acc.variable is w and (i0, i1) == (0, 0)
    assert none is None
    # the same leaf is reached through the same AccumulateGrad node
    assert (w * 2).grad_fn.next_functions[0][0] is (w + 1).grad_fn.next_functions[0][0]


def test_second_backward_raises_pytorch_message_and_retain_graph_accumulates():
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    z = (w * engine.tensor([3.0, 4.0])).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [6.0, 8.0])
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        z.backward()


def test_nodes_that_saved_nothing_can_run_twice():
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    z = (w + 1).sum()
    z.backward()
    z.backward()             # PyTorch allows this: nothing was saved
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0])


@pytest.mark.parametrize("make,msg", [
    (lambda: (engine.tensor([1.0, 2.0], requires_grad=True) * 2).backward(),
     "grad can be implicitly created only for scalar outputs"),
    (lambda: engine.tensor([1.0, 2.0]).sum().backward(),
     "element 0 of tensors does not require grad and does not have a grad_fn"),
    (lambda: engine.tensor([1, 2], requires_grad=True),
     "Only Tensors of floating point and complex dtype can require gradients"),
    (lambda: engine.tensor([1.0], requires_grad=True).add_(1),
     "a leaf Variable that requires grad is being used in an in-place operation."),
])
def test_error_messages_use_pytorch_wording(make, msg):
    with pytest.raises(RuntimeError) as e:
        make()
    assert str(e.value) == msg
    assert isinstance(e.value, errors.EngineError)


def test_modified_saved_tensor_is_detected():
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    y = w.exp()
    y.add_(1)
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: \[torch.DoubleTensor \[2\]\], "
                                           r"which is output 0 of Exp, is at version 1; expected version 0"):
        y.sum().backward()
    a = w * 2
    b = a * a
    a.mul_(3)
    with pytest.raises(RuntimeError, match="which is output 0 of Mul, is at version 1"):
        b.sum().backward()


def test_inplace_on_nonleaf_rebases_history():
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    y = w * 2
    y += 1
    y *= w
    assert y.grad_fn.name() == "MulBackward0"
    y.sum().backward()
    # y = (2w + 1) * w -> dy/dw = 4w + 1
    np.testing.assert_allclose(w.grad.numpy(), [5.0, 9.0])


def test_gradient_descent_under_no_grad_updates_leaf_in_place():
    w = engine.tensor([1.0, -2.0], requires_grad=True)
    ref = w
    for _ in range(200):
        loss = ((w - 3.0) ** 2).sum()
        loss.backward()
        with engine.no_grad():
            w -= 0.1 * w.grad
        w.grad.zero_()
    assert ref is w and w.is_leaf and w.requires_grad
    np.testing.assert_allclose(w.numpy(force=True), [3.0, 3.0], atol=1e-6)


def test_detach_shares_storage_and_has_no_history():
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    d = w.detach()
    assert d.grad_fn is None and not d.requires_grad and d.is_leaf
    d.zero_()
    np.testing.assert_array_equal(w.detach().numpy(), [0.0, 0.0])


def test_retain_grad_and_nonleaf_grad_warning():
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    y = w * 3
    y.retain_grad()
    v = w * 2
    (y * v).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [2.0, 4.0])   # d(sum(y*v))/dy = v
    with pytest.warns(UserWarning, match="is not a leaf Tensor is being accessed"):
        assert v.grad is None


def test_hooks_read_and_replace_gradients():
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    y = w * 3
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    h = w.register_hook(lambda g: g * 10)
    y.sum().backward()
    np.testing.assert_array_equal(seen[0], [1.0, 1.0])
    np.testing.assert_array_equal(w.grad.numpy(), [30.0, 30.0])
    h.remove()
    w.grad = None
    (w * 3).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [3.0, 3.0])


def test_grad_modes_nest_decorate_and_are_thread_local():
    assert engine.is_grad_enabled()
    with engine.no_grad():
        assert not engine.is_grad_enabled()
        with engine.enable_grad():
            assert engine.is_grad_enabled()
        assert not engine.is_grad_enabled()
    assert engine.is_grad_enabled()

    @engine.no_grad()
    def f():
        return engine.is_grad_enabled()
    assert f() is False and engine.is_grad_enabled()
    with engine.set_grad_enabled(False):
        other = []
        t = threading.Thread(target=lambda: other.append(engine.is_grad_enabled()))
        t.start()
        t.join()
        assert other == [True] and not engine.is_grad_enabled()
    assert engine.is_grad_enabled()


def test_recording_follows_each_threads_own_mode():
    """The per-op path reads one process-wide count of threads off the default modes and
    only then its own thread's state: another thread's no_grad must not stop this thread
    recording, nor this thread's no_grad leak into another."""
    from engine.grad_mode import OFF_DEFAULT
    assert OFF_DEFAULT[0] == 0
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    inside, go, done = threading.Event(), threading.Event(), []

    def other():
        with engine.no_grad():
            done.append((x * 2).requires_grad)          # not recorded in this thread
            inside.set()
            go.wait(5)
        done.append((x * 2).requires_grad)              # recorded again after the block

    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    assert OFF_DEFAULT[0] == 1
    y = x * 3 + 1                                        # this thread still records
    assert y.grad_fn is not None and y.grad_fn.name() == "AddBackward0"
    with engine.no_grad():
        assert (x * 3).grad_fn is None and OFF_DEFAULT[0] == 2
    go.set()
    t.join()
    assert done == [False, True] and OFF_DEFAULT[0] == 0
    with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"), engine.autograd.detect_anomaly():
        assert OFF_DEFAULT[0] == 1 and (x * 2).grad_fn._trace
    assert OFF_DEFAULT[0] == 0 and (x * 2).grad_fn._trace is None
    y.sum().backward()                                   # backward's own no-grad switch restores it
    assert OFF_DEFAULT[0] == 0 and x.grad.tolist() == [3.0, 3.0]


def test_shared_subexpression_runs_each_node_once():
    x = engine.tensor(2.0, requires_grad=True)
    y = x * x
    calls = []
    y.grad_fn.register_hook(lambda gi, go: calls.append(1))
    z = y + y * y          # y used three times
    z.backward()
    assert len(calls) == 1
    # z = x^2 + x^4 -> 2x + 4x^3 = 36
    assert x.grad.item() == pytest.approx(36.0)


def test_million_op_chain_backward_without_recursion():
    x = engine.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(500_000):
        y = y * 1.0000001 + 0.0
    y.backward()
    assert x.grad.item() == pytest.approx(1.0000001 ** 500_000, rel=1e-9)


def test_memory_is_flat_over_many_iterations():
    rng = np.random.default_rng(0)
    W = engine.tensor(rng.standard_normal((8, 8)), requires_grad=True)
    x = engine.tensor(rng.standard_normal(8))

    def step():
        loss = ((W @ x).tanh() ** 2).mean()
        loss.backward()
        W.grad = None

    for _ in range(200):
        step()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(10_000):
        step()
    gc.collect()   # young-generation bookkeeping is not a leak; the graph itself has no cycles
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 20_000, f"memory grew by {grown} bytes over 10,000 iterations"


def test_graph_has_no_reference_cycles():
    gc.collect()
    gc.disable()
    try:
        w = engine.tensor([1.0, 2.0], requires_grad=True)
        y = (w.exp() * w).sum()
        y.backward()
        del y, w
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("value,expected", [
    # expected strings printed by PyTorch 2.13 for the same values (dtype float64 shown there)
    (np.array([[1.0, 2.5], [300.0, 4.0]]), "tensor([[  1.0000,   2.5000],\n        [300.0000,   4.0000]])"),
    (np.array([1e-5, 1.0]), "tensor([1.0000e-05, 1.0000e+00])"),
    (np.array([True, False]), "tensor([ True, False])"),
    (np.zeros(0), "tensor([])"),
    (np.zeros((2, 0)), "tensor([], size=(2, 0))"),
    (np.array([np.nan, 1.0, np.inf]), "tensor([nan, 1., inf])"),
    (np.array([0.1234567, 100.5]), "tensor([  0.1235, 100.5000])"),
    (np.array(-0.5), "tensor(-0.5000)"),
    (np.array([-1.0, 2.0]), "tensor([-1.,  2.])"),
    (np.arange(12.0).reshape(2, 2, 3), "tensor([[[ 0.,  1.,  2.],\n         [ 3.,  4.,  5.]],\n\n"
                                       "        [[ 6.,  7.,  8.],\n         [ 9., 10., 11.]]])"),
    (np.arange(2000.0), "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
                        "        1.9990e+03])"),
    (np.array([1, 2]), "tensor([1, 2])"),
])
def test_repr_matches_pytorch(value, expected):
    assert repr(engine.tensor(value)) == expected


def test_repr_suffixes():
    assert repr(engine.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)) == \
        "tensor([[1., 2.],\n        [3., 4.]], requires_grad=True)"
    x32 = engine.tensor([1.0, 2.0], dtype=engine.float32)
    # one dtype naming, PyTorch's, in repr, dtype, type() and error texts
    assert repr(x32) == "tensor([1., 2.], dtype=torch.float32)"
    assert repr(x32.dtype) == "torch.float32" and str(engine.float64) == "torch.float64"
    assert x32.type() == "torch.FloatTensor" and engine.tensor([1]).type() == "torch.LongTensor"
    assert repr(engine.tensor([1, 2], dtype=engine.int32)) == "tensor([1, 2], dtype=torch.int32)"
    w = x32.requires_grad_(True) * 1.0
    y = w.sin()
    w.add_(1)                        # PyTorch 2.13's text, checked: "... of Add, is at version 1"
    with pytest.raises(RuntimeError, match=r"\[torch.FloatTensor \[2\]\], which is output 0 of Add, is at"):
        y.sum().backward()


def test_custom_function_errors_name_the_function():
    class Bad(engine.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g

    class Bad2(engine.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return engine.ones(3)

    w = engine.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"function BadBackward returned an incorrect number of gradients \(expected 2, got 1\)"):
        Bad.apply(w, w).sum().backward()
    with pytest.raises(RuntimeError, match=r"Function Bad2Backward returned an invalid gradient at index 0 - got \[3\] but expected shape compatible with \[2\]"):
        Bad2.apply(w).sum().backward()


def test_custom_function_and_builtin_ops_share_one_graph():
    class Cube(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * 3 * x ** 2

    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = (Cube.apply(x.sin()) * x).sum()
    assert y.grad_fn.next_functions[0][0].next_functions[0][0].name() == "CubeBackward"
    y.backward()
    s, c = np.sin([1.0, 2.0]), np.cos([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), 3 * s ** 2 * c * np.array([1.0, 2.0]) + s ** 3)


def test_backward_inputs_only_accumulates_there():
    a = engine.tensor(1.0, requires_grad=True)
    b = engine.tensor(2.0, requires_grad=True)
    (a * b).backward(inputs=[a])
    assert a.grad.item() == 2.0 and b.grad is None
    # a non-leaf input gets its .grad too, and accumulates (values printed by PyTorch 2.13)
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    y = w * 3
    z = (y * y).sum()
    z.backward(inputs=[y], retain_graph=True)
    with pytest.warns(UserWarning, match="not a leaf"):     # PyTorch warns on this access too
        assert y.grad.tolist() == [6.0, 12.0] and w.grad is None
    z.backward(inputs=[y, w])
    with pytest.warns(UserWarning, match="not a leaf"):
        assert y.grad.tolist() == [12.0, 24.0] and w.grad.tolist() == [18.0, 36.0]


def test_indexing_records_pytorch_chain():
    x = engine.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x[0, :1]
    assert y.grad_fn.name() == "SliceBackward0"
    assert y.grad_fn.next_functions[0][0].name() == "SelectBackward0"
    assert x[x > 1].grad_fn.name() == "IndexBackward0"
    assert x[None].grad_fn.name() == "UnsqueezeBackward0"
    assert x[...].grad_fn.name() == "AliasBackward0"
    x[[0, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 2.0], [0.0, 0.0]])


def test_setitem_on_nonleaf_is_differentiable():
    w = engine.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = engine.tensor(5.0, requires_grad=True)
    y = w * 2
    y[1] = v * 3
    assert y.grad_fn.name() == "CopySlices"
    y.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 0.0, 2.0])
    assert v.grad.item() == 3.0


def test_shape_errors_use_pytorch_wording():
    with pytest.raises(RuntimeError, match=r"The size of tensor a \(2\) must match the size of tensor b \(3\) at non-singleton dimension 0"):
        engine.tensor([1.0, 2.0]) * engine.tensor([1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)"):
        engine.ones(2, 3) @ engine.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"shape '\[4\]' is invalid for input of size 6"):
        engine.ones(2, 3).reshape(4)
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        engine.ones(2, 3).sum(dim=2)


def test_factories_and_dtypes():
    assert engine.tensor([1.0]).dtype == engine.float64 and engine.tensor([1]).dtype == engine.int64
    assert engine.tensor([True]).dtype == engine.bool
    assert engine.zeros(2, 3).shape == (2, 3) and engine.ones((2,)).numpy().tolist() == [1.0, 1.0]
    assert engine.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert engine.arange(4).tolist() == [0, 1, 2, 3] and engine.arange(4).dtype == engine.int64
    assert engine.linspace(0, 1, 3).tolist() == [0.0, 0.5, 1.0]
    assert engine.eye(2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    x = engine.tensor([[1.0, 2.0]], dtype=engine.float32)
    assert engine.zeros_like(x).dtype == engine.float32 and engine.ones_like(x).tolist() == [[1.0, 1.0]]
    engine.manual_seed(3)
    a = engine.randn(3)
    engine.manual_seed(3)
    assert engine.randn(3).tolist() == a.tolist()
    r = engine.rand(1000)
    assert ((r.numpy() >= 0) & (r.numpy() < 1)).all()
    with pytest.raises(RuntimeError, match="Only Tensors of floating point"):
        engine.tensor([True]).requires_grad_()


def test_tensor_attributes_and_inplace_methods():
    w = engine.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert w.is_leaf and w.requires_grad and w.grad_fn is None and w.ndim == 2
    assert w.shape == (2, 2) and repr(w.shape) == "torch.Size([2, 2])" and w.T.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert w.sum().item() == 10.0 and w.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert isinstance(w.data, engine.Tensor) and not w.data.requires_grad
    with pytest.raises(RuntimeError, match="Use tensor.detach\\(\\).numpy\\(\\) instead"):
        w.numpy()
    y = w * 2
    assert not y.is_leaf
    y.detach_()
    assert y.is_leaf and y.grad_fn is None and not y.requires_grad
    t = engine.zeros(3)
    t.fill_(2.0)
    t.copy_(engine.tensor([1.0, 2.0, 3.0]))
    t.add_(1).sub_(0.5).mul_(2).div_(4)
    t += 1
    t -= 1
    t *= 2
    t /= 2
    assert t.tolist() == [0.75, 1.25, 1.75]
    assert t._version == 10           # each in-place op bumps the version counter
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type Long"):
        engine.tensor([1, 2]).add_(0.5)
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
        (w * 2).requires_grad = False


def test_function_ctx_needs_input_grad_and_non_differentiable():
    seen = {}

    class SortDesc(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale):
            seen["needs"] = ctx.needs_input_grad
            idx = engine.tensor(np.argsort(-x.detach().numpy()))
            ctx.mark_non_differentiable(idx)
            ctx.save_for_backward(idx)
            return x[idx] * scale, idx

        @staticmethod
        def backward(ctx, g, g_idx):
            idx, = ctx.saved_tensors
            out = engine.zeros(g.shape)
            out[idx] = g
            return out * 2.0, None

    x = engine.tensor([1.0, 3.0, 2.0], requires_grad=True)
    vals, idx = SortDesc.apply(x, 2.0)
    assert seen["needs"] == (True, False)
    assert not idx.requires_grad and vals.grad_fn.name() == "SortDescBackward"
    (vals * engine.tensor([1.0, 10.0, 100.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [200.0, 2.0, 20.0])


# -- the backward loop's buffers: sums added in place must never leak into shared gradients ----
@settings(max_examples=60, deadline=None)
@given(dags.programs, st.integers(0, 2 ** 32 - 1))
def test_random_dags_match_finite_differences_and_accumulate(ops, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1, 1, (2, 3)) for _ in range(3)]
    leaves = [engine.tensor(a, requires_grad=True) for a in arrays]
    loss = dags.build(ops, leaves)
    loss.backward(retain_graph=True)
    first = [None if t.grad is None else t.grad.numpy().copy() for t in leaves]
    expected = dags.finite_differences(ops, arrays)
    for got, want in zip(first, expected):
        np.testing.assert_allclose(0 if got is None else got, want, rtol=1e-5, atol=1e-7)
    loss.backward()                        # a second pass accumulates: exactly twice the first
    for t, f in zip(leaves, first):
        if f is not None:
            np.testing.assert_allclose(t.grad.numpy(), 2 * f, rtol=1e-12, atol=1e-15)
    # the same graph through the hook path of the loop (a hook on the root) agrees too
    leaves2 = [engine.tensor(a, requires_grad=True) for a in arrays]
    loss2 = dags.build(ops, leaves2)
    seen = []
    loss2.grad_fn.register_hook(lambda gi, go: seen.append(1))
    engine.autograd.backward(loss2, inputs=leaves2)
    for t, f in zip(leaves2, first):
        if f is not None:
            np.testing.assert_allclose(t.grad.numpy(), f, rtol=1e-12, atol=1e-15)
    assert seen == [1]


def test_gradient_passed_to_two_inputs_is_not_summed_into_in_place():
    # AddBackward0 hands the same array to both of its inputs; each must treat it as shared
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    u = x * 3.0
    v = x * 5.0
    s = u + v                               # grad of s goes to u and v as one array
    loss = (s + u).sum() + (s + v).sum() * 2.0
    loss.backward()
    # d/dx: s = 8x; loss = (8x + 3x) + 2(8x + 5x) = 11x + 26x
    np.testing.assert_array_equal(x.grad.numpy(), [37.0, 37.0])


def test_second_output_of_a_function_feeds_ops_with_its_output_number():
    """A Function with two outputs: ops on its second output record edge (ctx, 1), and the
    gradient reaches the right output in both backward loops."""
    class Split(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0, x * 3.0

        @staticmethod
        def backward(ctx, ga, gb):
            return ga * 2.0 + gb * 3.0

    x0 = np.array([0.5, -1.0])

    def build(x):
        a, b = Split.apply(x)
        y = engine.tensor([2.0, 5.0])
        return a, b, (b * y).sum() + b.tanh().sum() + (y * b).sum(0) + a.sum()

    x = engine.tensor(x0, requires_grad=True)
    a, b, loss = build(x)
    ctx = a.grad_fn
    assert b.grad_fn is ctx and b.output_nr == 1
    mul = loss.grad_fn.next_functions[0][0].next_functions[0][0].next_functions[0][0].next_functions[0][0]
    assert mul.name() == "MulBackward0" and mul.next_functions[0] == (ctx, 1)
    assert (b.tanh()).grad_fn.next_functions == ((ctx, 1),)
    assert (a * b).grad_fn.next_functions == ((ctx, 0), (ctx, 1))
    loss.backward()
    t = np.tanh(3 * x0)
    want = 3 * (np.array([2.0, 5.0]) * 2 + (1 - t * t)) + 2       # via b = 3x, a = 2x
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-12)
    x2 = engine.tensor(x0, requires_grad=True)
    (g,) = engine.autograd.grad(build(x2)[2], [x2])               # captured, not accumulated
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-12)
