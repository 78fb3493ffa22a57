"""The plain backward loop's shortcuts for large arrays, checked against the general loop.

Above `_INPLACE_MIN` elements the plain loop keeps the gradient sum()/mean() hand back as a
`Uniform` (one value, no array), adds into arrays nothing else references instead of
allocating, and rules reuse their temporaries. The general loop (autograd.grad, hooks) does
none of that, so it is the reference here; the thresholds are lowered to 2 elements (numpy
turns 0-d results into scalars, which the in-place rule paths do not take) so every op's
samples take the shortcuts.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import engine
import engine._xp as xp_module
import engine.graph as graph_module
from engine._lazy import Diagonal, Uniform
from engine.ops import REGISTRY
import dags
from opcases import cases, leaves, make_inputs, to_tensors


LOW = 2


# -- Uniform on its own --------------------------------------------------------------------------
def _u(value, shape, dtype=np.float64):
    return Uniform(np.asarray(value, dtype=dtype), shape)


@pytest.mark.parametrize("value", [1.0, -2.5, 0.0])
@pytest.mark.parametrize("call", [
    lambda g, y: g * y, lambda g, y: y * g, lambda g, y: g + y, lambda g, y: y - g,
    lambda g, y: g / y, lambda g, y: -g * y, lambda g, y: np.multiply(y, g),
    lambda g, y: np.where(y > 0, g, 0.0), lambda g, y: np.sum(g, axis=0) + y[0],
    lambda g, y: g[1:] * y[1:], lambda g, y: np.expand_dims(g, 0)[0] * y,
    lambda g, y: g * y[0],                               # the other operand broadcasts
    lambda g, y: np.asarray(g) + 0 * y,
])
def test_uniform_gives_what_its_array_gives(value, call):
    y = np.random.default_rng(0).uniform(0.5, 2.0, (4, 5))
    u = _u(value, (4, 5))
    got = np.asarray(call(u, y))
    want = call(np.full((4, 5), value), y)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_uniform_shortcuts_return_the_operand_and_stay_uniform():
    y = np.arange(6.0).reshape(2, 3)
    one = _u(1.0, (2, 3))
    assert one * y is y and y * one is y               # x * 1.0 == x exactly: no pass, no copy
    assert np.multiply(y, one, out=y) is y
    neg = -one
    assert type(neg) is Uniform and neg.value == -1.0 and neg.shape == (2, 3)
    assert type(one * 3.0) is Uniform                   # uniforms alone stay uniform
    # a dtype change is not skipped: float32 * float64 1.0 is float64, as numpy says
    y32 = y.astype(np.float32)
    r = one * y32
    assert r is not y32 and r.dtype == np.float64
    # anything that is not a ufunc sees the broadcast array
    assert one.sum() == 6.0 and one.reshape(3, 2).shape == (3, 2) and len(one) == 2
    assert one.ndim == 2 and one.size == 6
    np.testing.assert_array_equal(np.array(one, copy=True), np.ones((2, 3)))


# -- every registry op: plain loop with the shortcuts == general loop -----------------------
def _grads(name, spec, k, loss, plain):
    op = REGISTRY[name]
    args, kwargs = make_inputs(op, spec, seed=k)
    ts = to_tensors(args)
    out = op.func(*ts, **kwargs)
    scalar = loss(out)
    ls = leaves(ts)
    if plain:
        scalar.backward()
        return [None if t.grad is None else t.grad.numpy() for t in ls]
    gs = engine.autograd.grad(scalar, ls, allow_unused=True)
    return [None if g is None else g.numpy() for g in gs]


LOSSES = {"sum": lambda o: o.sum(), "mean": lambda o: o.mean(),
          "scaled": lambda o: (o.sum() * 3.0 - 1.0)}


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("name,k,spec", list(cases()))
def test_plain_loop_shortcuts_match_general_loop(name, k, spec, loss, monkeypatch):
    want = _grads(name, spec, k, LOSSES[loss], plain=False)
    monkeypatch.setattr(graph_module, "_INPLACE_MIN", LOW)
    monkeypatch.setattr(xp_module, "_INPLACE_MIN", LOW)
    got = _grads(name, spec, k, LOSSES[loss], plain=True)
    for i, (g, w) in enumerate(zip(got, want)):
        assert (g is None) == (w is None), f"{name} input {i}"
        if g is not None:
            assert g.shape == w.shape and g.dtype == w.dtype, f"{name} input {i}"
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14, err_msg=f"{name} input {i}")


def test_large_sum_gradient_is_exact_and_grad_owns_its_memory():
    x0 = np.random.default_rng(1).standard_normal(50_000)
    x = engine.tensor(x0, requires_grad=True)
    (x.tanh() * x + (-x).exp()).sum().backward()
    t = np.tanh(x0)
    np.testing.assert_allclose(x.grad.numpy(), (1 - t * t) * x0 + t - np.exp(-x0), rtol=1e-13, atol=1e-15)
    # .grad is an array of its own: not the input, not a saved activation, writeable
    assert not np.shares_memory(x.grad.numpy(), x0) and x.grad.numpy().flags.writeable
    y = engine.tensor(x0, requires_grad=True)
    (y * 1.0).sum().backward()                 # MulBackward0 hands back y's own values...
    assert not np.shares_memory(y.grad.numpy(), y.detach().numpy())   # ...copied into .grad
    np.testing.assert_array_equal(y.grad.numpy(), np.ones_like(x0))


# -- random DAGs: shared gradients are never summed into ----------------------------------------
@settings(max_examples=40, deadline=None)
@given(dags.programs, st.integers(0, 2 ** 32 - 1))
def test_random_dags_with_shortcuts_match_general_loop(ops, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1, 1, (3, 4)) for _ in range(3)]
    ref = [engine.tensor(a, requires_grad=True) for a in arrays]
    want = engine.autograd.grad(dags.build(ops, ref), ref, allow_unused=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(graph_module, "_INPLACE_MIN", LOW)
        mp.setattr(xp_module, "_INPLACE_MIN", LOW)
        xs = [engine.tensor(a, requires_grad=True) for a in arrays]
        loss = dags.build(ops, xs)
        loss.backward(retain_graph=True)
        first = [None if t.grad is None else t.grad.numpy().copy() for t in xs]
        loss.backward()
    for f, w, t in zip(first, want, xs):
        assert (f is None) == (w is None)
        if f is not None:
            np.testing.assert_allclose(f, w.numpy(), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(t.grad.numpy(), 2 * f, rtol=1e-12, atol=1e-14)


# -- Diagonal: the vectorized Jacobian's identity seed ------------------------------------------
_D = np.array([[1.5, -2.0, 0.5], [3.0, 1.0, -0.25]])
_SITE = np.array([0.5, -1.5, 2.0])


@pytest.mark.parametrize("other", [
    _SITE, np.array([0.5, np.inf, 2.0]), np.array([np.nan, 1.0, 1.0]), np.array([0.0, 1.0, 2.0]),
    np.array([[1.0], [-3.0]]), 2.5,
], ids=["finite", "inf", "nan", "zero", "column", "number"])
@pytest.mark.parametrize("call", [
    lambda g, o: g * o, lambda g, o: o * g, lambda g, o: g / o, lambda g, o: o / g,
    lambda g, o: g + o, lambda g, o: g - o, lambda g, o: -g * o, lambda g, o: g * g * o,
    lambda g, o: (g + g) * o, lambda g, o: np.where(np.asarray(o) > 0, g, 0.0),
    lambda g, o: np.sum(g * o, axis=0), lambda g, o: np.reshape(g * o, (6, -1)),
], ids=["mul", "rmul", "div", "rdiv", "add", "sub", "negmul", "dd", "sum_dd", "where", "sum", "reshape"])
def test_diagonal_gives_what_its_array_gives(call, other):
    diag = Diagonal(_D)
    with np.errstate(all="ignore"):
        got = np.asarray(call(diag, other))
        want = call(diag.array(), other)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)           # NaN where the dense array has NaN


@pytest.mark.parametrize("w", [np.arange(12.0).reshape(4, 3) - 5, np.arange(4.0) - 1.5,
                               np.array([[1.0, np.inf], [0.0, 1.0], [2.0, 2.0], [1.0, 1.0]])])
def test_diagonal_matmul_is_the_scaled_rows(w):
    d = np.array([2.0, -1.0, 0.5, 3.0])
    diag = Diagonal(d)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(np.matmul(diag, w), diag.array() @ w)
        np.testing.assert_array_equal(diag @ w, diag.array() @ w)
    assert np.asarray(Diagonal(np.ones((2, 3)))).shape == (6, 2, 3)
    np.testing.assert_array_equal(np.asarray(Diagonal(np.ones(4))), np.eye(4))


def test_vectorized_jacobian_keeps_the_row_loops_nan_off_the_diagonal():
    from engine.autograd.functional import jacobian
    c = engine.tensor([np.inf, 1.0, 2.0])
    x = engine.tensor([1.0, 2.0, 3.0])
    with np.errstate(all="ignore"):
        vec = jacobian(lambda t: (t * c).tanh() * 2.0, x, vectorize=True).numpy()
        loop = jacobian(lambda t: (t * c).tanh() * 2.0, x, vectorize=False).numpy()
    np.testing.assert_array_equal(vec, loop)
    assert np.isnan(vec[1, 0]) and vec[1, 2] == 0.0          # 0 * inf, as the dense seed gives
