"""The backward loop's shortcuts, proven equal to the plain computation.

Above `engine._xp.INPLACE_MIN` (4096) elements the one backward loop keeps the gradient
sum()/mean() hand back as a `Uniform` (one value, no array), and rules reuse their own
temporaries; at every size a sum the pass allocated (its owned flag) is added into in place.
The reference is the same pass with the shortcuts off (`INPLACE_MIN` beyond any size: dense
arrays everywhere), autograd.grad (which captures instead of accumulating), and central
finite differences. Every registry op runs at real sizes above the threshold, and again at
its small sample shapes with the threshold lowered to 2.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import engine
import engine._xp as xp_module
from engine._lazy import Diagonal, Uniform
from engine.ops import REGISTRY
import dags
from opcases import cases, leaves, make_inputs, to_tensors


LOW = 2
REAL = xp_module.INPLACE_MIN
OFF = 2 ** 62            # no array is this large: every shortcut off, the plain dense computation


def test_the_threshold_is_the_one_the_tests_cross():
    assert REAL == 4096
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


# -- every registry op: the shortcuts == the plain dense computation == finite differences ------
LOSSES = {"sum": lambda o: o.sum(), "mean": lambda o: o.mean(),
          "weighted": lambda o: (o * WEIGHTS(o.shape)).sum() * 3.0 - 1.0}


def WEIGHTS(shape):
    return engine.tensor(np.random.default_rng(7).uniform(0.5, 1.5, tuple(shape)))


# a product of thousands of normal draws over- or underflows: near 1 its gradient is a number
CONDITIONED = {"prod": lambda a: 1.0 + 0.01 * np.tanh(a)}


def _inputs(name, spec, k, big=False):
    op = REGISTRY[name]
    # scaled draws keep 3e-6 (3 finite-difference steps) from a kink, the samples 1e-2
    args, kwargs = make_inputs(op, spec, seed=k, margin=3e-6 if big else 1e-2)
    if big and name in CONDITIONED:
        args = [CONDITIONED[name](a) if isinstance(a, np.ndarray) else a for a in args]
    return op, args, kwargs


def _backward(op, args, kwargs, loss, how):
    """Gradients of loss(op(*args)) for every leaf, by `.backward()` or autograd.grad."""
    ts = to_tensors(args)
    scalar = loss(op.func(*ts, **kwargs))
    ls = leaves(ts)
    if how == "grad":
        gs = engine.autograd.grad(scalar, ls, allow_unused=True)
        return [None if g is None else g.numpy() for g in gs]
    scalar.backward()
    return [None if t.grad is None else t.grad.numpy() for t in ls]


def _same(got, want, what, rtol=1e-12):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert (g is None) == (w is None), f"{what}: input {i}"
        if g is not None:
            assert g.shape == w.shape and g.dtype == w.dtype, f"{what}: input {i}"
            np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-13, err_msg=f"{what}: input {i}")


def _size(spec):
    sizes = [int(np.prod(s)) for s in spec[0] if _is_shape(s)]
    sizes += [int(np.prod(p)) for s in spec[0] if isinstance(s, tuple) and not _is_shape(s) for p in s]
    return max(sizes, default=0)


def _scale_shape(s, k):
    return tuple(d * k if d > 1 else d for d in s)


def _is_shape(s):
    return isinstance(s, tuple) and all(isinstance(v, int) for v in s)


def scaled(spec, k):
    """A sample with every dimension above 1 (and any shape/size attribute) made k times larger."""
    shapes, kwargs = spec
    out = []
    for s in shapes:
        if _is_shape(s):
            out.append(_scale_shape(s, k))
        elif isinstance(s, tuple):
            out.append(tuple(_scale_shape(p, k) for p in s))
        else:
            out.append(s)
    kw = {}
    for key, v in kwargs.items():
        if key in ("shape", "size") and _is_shape(v):
            v = _scale_shape(v, k)
        elif isinstance(v, np.ndarray):              # where's condition: tiled like the inputs
            v = np.tile(v, tuple(k if d > 1 else 1 for d in v.shape))
        kw[key] = v
    return tuple(out), kw


def large_sample(name, spec, k):
    """The sample scaled until its result, or failing that an input, has >= 4096 elements;
    None when it cannot grow (0-d shapes, or no dimension above 1)."""
    op = REGISTRY[name]
    for factor in (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024, 2048):
        big = scaled(spec, factor)
        if big == spec:
            return None
        _, args, kwargs = _inputs(name, big, k, big=True)
        arrays = [a for a in args if isinstance(a, np.ndarray)] + \
            [b for a in args if isinstance(a, list) for b in a]
        try:
            with engine.no_grad():
                out = op.func(*to_tensors(args, requires_grad=False), **kwargs)
        except (engine.EngineError, ValueError):    # an attribute that does not scale
            return None
        biggest_in = max((a.size for a in arrays), default=0)
        if out.numel() >= REAL or (biggest_in >= REAL and factor >= 64):
            return big
        if biggest_in >= 16 * REAL:
            return big
    return None


LARGE = []
for _p in cases():
    _name, _k, _spec = _p.values
    _big = large_sample(_name, _spec, _k)
    if _big is not None:
        LARGE.append(pytest.param(_name, _k, _big, id=f"{_name}-{_k}"))


def test_every_differentiable_op_is_checked_above_the_threshold():
    covered = {p.values[0] for p in LARGE}
    missing = sorted({p.values[0] for p in cases()} - covered)
    assert not missing, f"ops with no sample that crosses {REAL} elements: {missing}"


def _sampled_fd(op, args, kwargs, loss, n=4, eps=1e-6, seed=0):
    """Central differences of loss(op(*args)) at n random elements of each array input."""
    rng = np.random.default_rng(seed)
    out = []
    flat_inputs = [a for a in args if isinstance(a, np.ndarray)] + \
        [b for a in args if isinstance(a, list) for b in a]
    for arr in flat_inputs:
        picks = {}
        for j in rng.choice(arr.size, size=min(n, arr.size), replace=False) if arr.size else ():
            idx = np.unravel_index(int(j), arr.shape)
            vals = []
            for sign in (1.0, -1.0):
                old = arr[idx]
                arr[idx] = old + sign * eps
                with engine.no_grad():
                    vals.append(float(loss(op.func(*to_tensors(args, requires_grad=False), **kwargs))))
                arr[idx] = old
            picks[idx] = (vals[0] - vals[1]) / (2 * eps)
        out.append(picks)
    return out


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("name,k,spec", LARGE)
def test_every_op_at_real_sizes(name, k, spec, loss, monkeypatch):
    """At the real threshold and real sizes: .backward() (Uniform, in-place temporaries and
    sums) == autograd.grad == the same pass with every shortcut off, and == central
    differences on sampled elements."""
    op, args, kwargs = _inputs(name, spec, k, big=True)
    fn = LOSSES[loss]
    got = _backward(op, args, kwargs, fn, "backward")
    _same(got, _backward(op, args, kwargs, fn, "grad"), f"{name} backward vs autograd.grad")
    monkeypatch.setattr(xp_module, "INPLACE_MIN", OFF)
    _same(got, _backward(op, args, kwargs, fn, "backward"), f"{name} shortcuts vs dense")
    monkeypatch.setattr(xp_module, "INPLACE_MIN", REAL)
    for i, (g, picks) in enumerate(zip(got, _sampled_fd(op, args, kwargs, fn))):
        for idx, num in picks.items():
            assert g is not None, f"{name} input {i}: no gradient"
            assert abs(g[idx] - num) <= 1e-5 + 1e-3 * abs(num), \
                f"{name} input {i} at {idx}: backward {g[idx]}, finite differences {num}"


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("name,k,spec", list(cases()))
def test_every_op_with_the_threshold_lowered(name, k, spec, loss, monkeypatch):
    """The small sample shapes with the shortcuts taken everywhere (threshold 2) == dense."""
    op, args, kwargs = _inputs(name, spec, k)
    fn = LOSSES[loss]
    monkeypatch.setattr(xp_module, "INPLACE_MIN", OFF)
    want = _backward(op, args, kwargs, fn, "backward")
    monkeypatch.setattr(xp_module, "INPLACE_MIN", LOW)
    _same(_backward(op, args, kwargs, fn, "backward"), want, f"{name} shortcuts vs dense")
    _same(_backward(op, args, kwargs, fn, "grad"), want, f"{name} autograd.grad vs dense")


@pytest.mark.parametrize("expr", [
    lambda a, b: (a @ b).sum(), lambda a, b: (a @ b).mean(), lambda a, b: (a @ a.T).sum(),
    lambda a, b: (2 * (a @ b)).sum(), lambda a, b: ((a @ b).tanh() * (a @ b)).sum(),
    lambda a, b: (a @ b).sum() + (a * b).mean(), lambda a, b: (a.exp() @ b.sin()).sum(),
    lambda a, b: (a[:, :1] * b[:1, :]).sum(),                  # broadcast product of 4096
], ids=["sum_mm", "mean_mm", "sum_aaT", "sum_2mm", "tanh_mm", "mixed", "exp_sin_mm", "outer_bc"])
@pytest.mark.parametrize("n", [64, 100])
def test_matmul_and_broadcast_products_at_and_above_4096(expr, n, monkeypatch):
    """sum(a @ b) crashed once the product had 4096 elements (the issue's report)."""
    rng = np.random.default_rng(n)
    a0, b0 = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    grads = []
    for threshold in (REAL, OFF):
        monkeypatch.setattr(xp_module, "INPLACE_MIN", threshold)
        a, b = engine.tensor(a0, requires_grad=True), engine.tensor(b0, requires_grad=True)
        expr(a, b).backward()
        grads.append([a.grad.numpy(), None if b.grad is None else b.grad.numpy()])
    _same(grads[0], grads[1], "shortcuts vs dense")
    # and a closed form for the first: d sum(a @ b) / da = 1 b^T, / db = a^T 1
    a, b = engine.tensor(a0, requires_grad=True), engine.tensor(b0, requires_grad=True)
    (a @ b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.ones((n, n)) @ b0.T, rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), a0.T @ np.ones((n, n)), rtol=1e-12)


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


def test_a_shared_gradient_is_never_written_in_place():
    """AddBackward0 hands one array to both inputs; the first input's buffer then holds that
    array borrowed, and a second gradient must make a new sum, not write into it."""
    for n in (3, 5000):
        x = engine.tensor(np.ones(n), requires_grad=True)
        y = engine.tensor(np.ones(n), requires_grad=True)
        h = x * 2.0
        s = h + y                       # AddBackward0: both inputs get the same array
        loss = (s * 3.0).sum() + (h * 5.0).sum()
        loss.backward()
        np.testing.assert_array_equal(x.grad.numpy(), np.full(n, 16.0))
        np.testing.assert_array_equal(y.grad.numpy(), np.full(n, 3.0))


# -- random DAGs: shared gradients are never summed into ----------------------------------------
@settings(max_examples=40, deadline=None)
@given(dags.programs, st.integers(0, 2 ** 32 - 1), st.sampled_from([LOW, REAL]))
def test_random_dags_with_shortcuts_match_dense(ops, seed, threshold):
    rng = np.random.default_rng(seed)
    shape = (3, 4) if threshold == LOW else (64, 80)
    arrays = [rng.uniform(-1, 1, shape) for _ in range(3)]
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        for key, th in (("dense", OFF), ("short", threshold)):
            mp.setattr(xp_module, "INPLACE_MIN", th)
            xs = [engine.tensor(a, requires_grad=True) for a in arrays]
            loss = dags.build(ops, xs)
            loss.backward(retain_graph=True)
            first = [None if t.grad is None else t.grad.numpy().copy() for t in xs]
            loss.backward()
            results[key] = (first, [None if t.grad is None else t.grad.numpy() for t in xs])
    for f, w, second in zip(results["short"][0], results["dense"][0], results["short"][1]):
        assert (f is None) == (w is None)
        if f is not None:
            # tanh's and sigmoid's backward round differently above the threshold (one temporary,
            # 1 - out^2 first); where gradients cancel, compare against the terms' magnitude
            scale = 1e-12 * max(1.0, float(np.abs(w).max()))
            np.testing.assert_allclose(f, w, rtol=1e-12, atol=scale)
            np.testing.assert_allclose(second, 2 * f, rtol=1e-12, atol=1e-14)   # a second pass: exact


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


# -- ops that declare fresh=True: the loop adds into their results ---------------------------
FRESH = sorted(name for name, op in REGISTRY.items() if op.fresh)


def test_some_ops_declare_fresh_results():
    assert {"tanh", "sigmoid", "neg"} <= set(FRESH)


@pytest.mark.parametrize("n", [5, 5000])
@pytest.mark.parametrize("grad", ["array", "uniform1", "uniform2"])
@pytest.mark.parametrize("name", FRESH)
def test_fresh_ops_return_arrays_of_their_own(name, grad, n):
    """The loop may write into a `fresh` op's gradient (adding into it instead of allocating a
    sum): it must share memory with nothing the pass or the user holds."""
    op = REGISTRY[name]
    x = engine.tensor(np.random.default_rng(0).uniform(0.5, 1.5, n), requires_grad=True)
    out = op.func(x)
    node = out.grad_fn
    g = {"array": np.random.default_rng(1).standard_normal(n),
         "uniform1": _u(1.0, (n,)), "uniform2": _u(2.5, (n,))}[grad]
    held = [x.detach().numpy(), out.detach().numpy()] + ([g] if type(g) is np.ndarray else [])
    for r in node._vjp(g, False):
        if type(r) is np.ndarray:
            assert r.flags.writeable and r.base is None
            assert not any(np.shares_memory(r, h) for h in held), f"{name} returned a shared array"


# -- Diagonal at real sizes: a vectorized Jacobian of 4100 outputs ------------------------------
@pytest.mark.parametrize("case", ["elementwise", "broadcast", "matmul"])
def test_vectorized_jacobian_at_real_sizes_equals_the_row_loop(case):
    """The identity seed stays a Diagonal through elementwise rules, broadcasting and a matmul
    rule; at 4100 outputs the result equals the row loop's exactly and the closed form."""
    from engine.autograd.functional import jacobian
    n = 4100
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-1, 1, n)
    c = engine.tensor(rng.uniform(0.5, 1.5, (1, n)))
    W = engine.tensor(rng.standard_normal((n, 3)))
    f = {"elementwise": lambda x: x.tanh() * x + (-x).exp(),
         "broadcast": lambda x: (x * c).sin()[0],
         "matmul": lambda x: (x.reshape(n, 1) * 2.0).tanh().reshape(n) @ W}[case]
    x = engine.tensor(x0)
    vec = jacobian(f, x, vectorize=True).numpy()
    loop = jacobian(f, x, vectorize=False).numpy()
    np.testing.assert_array_equal(vec, loop)
    t = np.tanh(x0)
    want = {"elementwise": np.diag((1 - t * t) * x0 + t - np.exp(-x0)),
            "broadcast": np.diag(np.cos(x0 * c.numpy()[0]) * c.numpy()[0]),
            "matmul": (W.numpy() * (2 * (1 - np.tanh(2 * x0) ** 2))[:, None]).T}[case]
    np.testing.assert_allclose(vec, want, rtol=1e-12, atol=1e-14)
