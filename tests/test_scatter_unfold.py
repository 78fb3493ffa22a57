"""index_add, scatter, scatter_add (and their in-place forms), Tensor.unfold, empty/empty_like
(issue 23): closed forms and finite differences here, PyTorch as the oracle (skipped without
it). The registry's cases (test_ops_gradients.py, test_torch_oracle.py, test_backward_paths.py)
cover each entry's samples too."""
import numpy as np
import pytest

import engine

rng = np.random.default_rng(7)


def _leaf(a, dtype=np.float64):
    return engine.tensor(np.asarray(a, dtype=dtype), requires_grad=True)


def test_index_add_closed_form_with_repeated_indices():
    x, s = _leaf(np.zeros((4, 2))), _leaf([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    y = engine.index_add(x, 0, engine.tensor([1, 1, 3]), s, alpha=2.0)
    np.testing.assert_array_equal(y.detach().numpy(), [[0, 0], [8, 12], [0, 0], [10, 12]])
    w = rng.standard_normal((4, 2))
    (y * engine.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), w)
    np.testing.assert_array_equal(s.grad.numpy(), 2.0 * w[[1, 1, 3]])


def test_scatter_and_scatter_add_closed_forms():
    x, src = _leaf(np.arange(12.0).reshape(3, 4)), _leaf(-np.arange(1.0, 7.0).reshape(3, 2))
    idx = engine.tensor([[3, 0], [1, 2], [0, 0]])
    y = x.scatter(1, idx[:2], src[:2])            # unique positions in each row
    want = np.arange(12.0).reshape(3, 4)
    want[0, 3], want[0, 0], want[1, 1], want[1, 2] = -1, -2, -3, -4
    np.testing.assert_array_equal(y.detach().numpy(), want)
    w = rng.standard_normal((3, 4))
    (y * engine.tensor(w)).sum().backward()
    gx = w.copy()
    gx[0, [3, 0]] = 0
    gx[1, [1, 2]] = 0
    np.testing.assert_array_equal(x.grad.numpy(), gx)
    np.testing.assert_array_equal(src.grad.numpy()[:2], [[w[0, 3], w[0, 0]], [w[1, 1], w[1, 2]]])
    x.grad = src.grad = None
    z = engine.scatter_add(x, 1, idx, src)        # row 2 adds both to column 0
    assert z.detach().numpy()[2, 0] == 8.0 - 5.0 - 6.0
    (z * engine.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), w)
    np.testing.assert_array_equal(src.grad.numpy(), np.take_along_axis(w, idx.numpy(), 1))
    v = x.scatter(0, engine.tensor([[2, 0, 1, 2]]), value=9.5)
    assert v.grad_fn.name() == "ScatterBackward1"
    np.testing.assert_array_equal(v.detach().numpy()[[2, 0, 1, 2], [0, 1, 2, 3]], [9.5] * 4)


def test_unfold_closed_forms_past_the_buffer_threshold():
    """5000 elements (> 4096): each element's gradient of unfold(...).sum() is the number of
    windows that hold it."""
    n, size, step = 5000, 7, 3
    x = _leaf(rng.standard_normal(n))
    u = x.unfold(0, size, step)
    nwin = (n - size) // step + 1
    assert u.shape == (nwin, size) and u.grad_fn.name() == "UnfoldBackward0"
    np.testing.assert_array_equal(u.detach().numpy()[5], x.detach().numpy()[15:22])
    u.sum().backward()
    count = np.zeros(n)
    for i in range(nwin):
        count[i * step:i * step + size] += 1
    np.testing.assert_array_equal(x.grad.numpy(), count)
    a = _leaf(rng.standard_normal((3, 6, 2)))
    v = a.unfold(1, 3, 2)                          # a middle dim: (3, 2, 2, 3)
    assert v.shape == (3, 2, 2, 3)
    np.testing.assert_array_equal(v.detach().numpy()[1, 1, 0], a.detach().numpy()[1, 2:5, 0])


def _fd_check(fn, *arrays):
    ts = [_leaf(a) for a in arrays]
    out = fn(*ts)
    r = rng.standard_normal(out.shape)
    (out * engine.tensor(r)).sum().backward()
    for t, a in zip(ts, arrays):
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + 1e-6
            fp = np.sum(fn(*[engine.tensor(b) for b in arrays]).numpy() * r)
            a[i] = old - 1e-6
            fm = np.sum(fn(*[engine.tensor(b) for b in arrays]).numpy() * r)
            a[i] = old
            num[i] = (fp - fm) / 2e-6
        np.testing.assert_allclose(t.grad.numpy(), num, atol=1e-5, rtol=1e-3)


def test_finite_differences_on_transposed_and_in_place_inputs():
    idx = engine.tensor([[2, 0, 1]])
    _fd_check(lambda x, s: x.mT.scatter(0, idx, s), rng.standard_normal((3, 3)), rng.standard_normal((1, 3)))
    _fd_check(lambda x, s: (x * 1.0).scatter_add_(1, engine.tensor([[0, 0], [2, 1]]), s.mT),
              rng.standard_normal((2, 3)), rng.standard_normal((2, 2)))
    _fd_check(lambda x, s: (x.mT * 1.0).index_add_(1, engine.tensor([2, 0, 2]), s, alpha=-0.5),
              rng.standard_normal((3, 2)), rng.standard_normal((2, 3)))
    _fd_check(lambda x: x.mT.unfold(0, 2, 1).sin(), rng.standard_normal((2, 4)))


def test_second_order_of_scatter_add_and_unfold():
    x = _leaf(rng.standard_normal((2, 5)))
    s = _leaf(rng.standard_normal((2, 2)))
    y = (engine.scatter_add(x, 1, engine.tensor([[4, 4], [0, 1]]), s) ** 3).sum() + (x.unfold(1, 2, 1) ** 3).sum()
    gx, gs = engine.autograd.grad(y, (x, s), create_graph=True)
    assert gx.grad_fn is not None and gs.grad_fn is not None
    (gx.sum() + gs.sum()).backward()
    assert x.grad is not None and s.grad is not None


def test_in_place_forms_follow_the_tensor():
    x = engine.zeros(3, 2)
    r = x.index_add_(0, engine.tensor([0, 0]), engine.ones(2, 2))
    assert r is x and x.numpy()[0, 0] == 2.0
    x.scatter_(1, engine.tensor([[1], [0], [1]]), 7.0)
    assert x.numpy().tolist() == [[2.0, 7.0], [7.0, 0.0], [0.0, 7.0]]
    x.scatter_add_(0, engine.tensor([[2, 2]]), engine.ones(1, 2))
    assert x.numpy()[2].tolist() == [1.0, 8.0]


def test_empty_and_empty_like():
    e = engine.empty(2, 3)
    assert e.shape == (2, 3) and e.dtype == engine.float64 and not e.requires_grad
    e = engine.empty((2, 3), dtype=engine.float32, requires_grad=True)
    assert e.shape == (2, 3) and e.dtype == engine.float32 and e.requires_grad and e.is_leaf
    x = engine.ones(4, 1, dtype=engine.float32)
    f = engine.empty_like(x)
    assert f.shape == (4, 1) and f.dtype == engine.float32 and not f.requires_grad
    assert engine.empty_like(x, dtype=engine.int64).dtype == engine.int64
    assert engine.empty_like(x, requires_grad=True).requires_grad


def test_expressions_reach_them():
    from expressions.compiler import compile_expression
    x = _leaf(rng.standard_normal((3, 4)))
    s = _leaf(rng.standard_normal((1, 4)))
    y = compile_expression("sum(scatter(x, 0, i, s)) + sum(scatter_add(x, 1, j, s)) + sum(index_add(x, 0, [1], s))")
    v = y.run({"x": x, "s": s, "i": engine.tensor([[2, 0, 1, 1]]), "j": engine.tensor([[0, 0]])})
    want = x.detach().numpy().copy()
    want[[2, 0, 1, 1], [0, 1, 2, 3]] = s.detach().numpy()[0]
    xs, ss = x.detach().numpy().sum(), s.detach().numpy()
    assert v.item() == pytest.approx(want.sum() + xs + ss[0, :2].sum() + xs + ss.sum())


# -- PyTorch as the oracle -----------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch")


def _names(t):
    out, stack, seen = [], [t.grad_fn], set()
    while stack:
        n = stack.pop()
        if n is None or n in seen:
            continue
        seen.add(n)
        out.append(n.name().replace("torch::autograd::", ""))
        stack.extend(x for x, _ in n.next_functions)
    return out


ORACLE = {
    "index_add": (lambda m, x, s: m.index_add(x, 1, m.tensor([2, 0, 2]), s, alpha=3), [(2, 4), (2, 3)]),
    "index_add_method_T": (lambda m, x, s: x.mT.index_add(0, m.tensor([1, 0]), s), [(3, 2), (2, 3)]),
    "index_add_": (lambda m, x, s: (x * 2).index_add_(0, m.tensor([0, 0, 3]), s), [(4, 2), (3, 2)]),
    "scatter": (lambda m, x, s: m.scatter(x, 0, m.tensor([[2, 0, 1]]), s), [(3, 3), (1, 3)]),
    "scatter_value": (lambda m, x: x.scatter(1, m.tensor([[1], [0]]), -2.5), [(2, 3)]),
    "scatter_": (lambda m, x, s: (x + 0).scatter_(2, m.tensor([[[0, 1]], [[1, 0]]]), s), [(2, 1, 2), (2, 1, 2)]),
    "scatter_add": (lambda m, x, s: x.scatter_add(0, m.tensor([[0, 0], [1, 0], [0, 1]]), s), [(2, 2), (3, 2)]),
    "scatter_add_T": (lambda m, x, s: m.scatter_add(x.mT, 1, m.tensor([[0, 0, 2]]), s), [(3, 2), (1, 3)]),
    "scatter_add_": (lambda m, x, s: (x * 1).scatter_add_(1, m.tensor([[2, 2, 2]]), s), [(1, 3), (1, 3)]),
    "unfold": (lambda m, x: x.unfold(0, 2, 1), [(4, 3)]),
    "unfold_last_T": (lambda m, x: x.mT.unfold(-1, 3, 2), [(7, 2)]),
    "unfold_size0": (lambda m, x: x.unfold(1, 0, 1), [(2, 3)]),
}


@pytest.mark.parametrize("name", sorted(ORACLE))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_pytorch(name, dtype):
    torch = _torch()
    fn, shapes = ORACLE[name]
    r = np.random.default_rng(len(name))
    arrays = [r.standard_normal(s).astype(dtype) for s in shapes]
    ours_in = [engine.tensor(a, requires_grad=True) for a in arrays]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours, theirs = fn(engine, *ours_in), fn(torch, *theirs_in)
    assert ours.dtype == getattr(engine, dtype) and ours.shape == tuple(theirs.shape), "forward: dtype/shape"
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-7, err_msg="forward")
    assert _names(ours) == _names(theirs), "node names"
    g = r.standard_normal(ours.shape).astype(dtype)
    ours.backward(engine.tensor(g))
    theirs.backward(torch.tensor(g))
    for k, (a, b) in enumerate(zip(ours_in, theirs_in)):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-7, err_msg=f"gradient {k}")


def _message(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the message is what is compared
        return type(e).__name__, str(e).split("\n")[0]
    return None


def _x(m, rg=False):
    return m.tensor(np.arange(12.0).reshape(4, 3), requires_grad=rg)


ERRORS = [
    lambda m: _x(m).index_add(0, m.tensor([[0, 2]]), m.ones(2, 3, dtype=m.float64)),
    lambda m: _x(m).index_add(0, m.tensor([0, 2, 1]), m.ones(2, 3, dtype=m.float64)),
    lambda m: _x(m).index_add(0, m.tensor([0, 2]), m.ones(2, 4, dtype=m.float64)),
    lambda m: _x(m).index_add(0, m.tensor([0.0, 2.0], dtype=m.float32), m.ones(2, 3, dtype=m.float64)),
    lambda m: _x(m).index_add(0, m.tensor([0, 5]), m.ones(2, 3, dtype=m.float64)),
    lambda m: _x(m).index_add(0, m.tensor([0, 2]), m.ones(2, 3, dtype=m.float32)),
    lambda m: _x(m, True).index_add_(0, m.tensor([0, 2]), m.ones(2, 3, dtype=m.float64)),
    lambda m: _x(m).scatter(0, m.tensor([[0.0, 1.0]]), m.ones(1, 2, dtype=m.float64)),
    lambda m: _x(m).scatter(0, m.tensor([0, 1]), m.ones(2, dtype=m.float64)),
    lambda m: _x(m).scatter(0, m.tensor([[0, 1, 2, 3]]), m.ones(2, 3, dtype=m.float64)),
    lambda m: _x(m).scatter(0, m.tensor([[5, 1, 2]]), m.ones(2, 3, dtype=m.float64)),
    lambda m: _x(m).scatter(0, m.tensor([[0, 1, 2]]), m.ones(2, 3, dtype=m.float32)),
    lambda m: _x(m).scatter_add(1, m.tensor([[0, 3]]), m.ones(1, 2, dtype=m.float64)),
    lambda m: _x(m).scatter(0, m.tensor([[0, 1]]), m.ones(2, 3, dtype=m.float64, requires_grad=True)).sum().backward(),
    lambda m: _x(m).unfold(0, 5, 1),
    lambda m: _x(m).unfold(0, 2, 0),
    lambda m: _x(m).unfold(2, 2, 1),
]


@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_errors_match_pytorch(k):
    torch = _torch()
    theirs = _message(lambda: ERRORS[k](torch))
    assert theirs is not None
    assert _message(lambda: ERRORS[k](engine)) == theirs
