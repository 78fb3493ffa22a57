"""The graph PyTorch 2.13 records, node for node, where public tutorials look at it (issue 23):
sign and sgn (SignBackward0 / SgnBackward0 with a zero gradient), `x.T` on every rank
(PermuteBackward0, and PyTorch's deprecation warnings), inner as tensordot runs it, reshape of
a strided tensor (ReshapeAliasBackward0), x ** number's double backward (MulBackward1),
scatter_reduce with ties and zeros; and the reprs of the engine's helper objects."""
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import engine


def _tree(fn, depth=0):
    """The graph below fn as indented names, inputs in next_functions order (not a set: the
    order is part of what PyTorch records)."""
    if fn is None:
        return []
    out = ["  " * depth + type(fn).__name__]
    for f, _ in fn.next_functions:
        out += _tree(f, depth + 1)
    return out


def _torch():
    return pytest.importorskip("torch")


CASES = {
    "sign_times_x": (lambda m, x: (m.sign(x) * x).sum(), [(5,)]),
    "sgn": (lambda m, x: m.sgn(x) * x, [(4,)]),
    "sign_method": (lambda m, x: x.sign().exp(), [(2, 3)]),
    "T_1d": (lambda m, x: x.T * 2, [(4,)]),
    "T_0d": (lambda m, x: x.T * 2, [()]),
    "T_2d": (lambda m, x: x.T * 2, [(2, 3)]),
    "T_3d": (lambda m, x: x.T * 2, [(2, 3, 4)]),
    "inner_11": (lambda m, x, y: m.inner(x, y), [(3,), (3,)]),
    "inner_21": (lambda m, x, y: m.inner(x, y), [(2, 3), (3,)]),
    "inner_12": (lambda m, x, y: m.inner(x, y), [(3,), (4, 3)]),
    "inner_22": (lambda m, x, y: m.inner(x, y), [(2, 3), (4, 3)]),
    "inner_32": (lambda m, x, y: m.inner(x, y), [(2, 5, 3), (4, 3)]),
    "inner_13": (lambda m, x, y: m.inner(x, y), [(2,), (3, 4, 2)]),
    "inner_big": (lambda m, x, y: m.inner(x, y), [(70, 65), (80, 65)]),           # past 4096 elements
    "inner_big_strided": (lambda m, x, y: m.inner(x.t(), y), [(65, 70), (5, 80, 65)]),
    "reshape_alias_same": (lambda m, x: x.t().reshape(3, 4), [(4, 3)]),
    "reshape_alias_split": (lambda m, x: x.t().reshape(3, 2, 2), [(4, 3)]),
    "reshape_slice": (lambda m, x: x[:, ::2].reshape(12), [(4, 6)]),
    "reshape_copy": (lambda m, x: x.t().reshape(12), [(4, 3)]),
    "reshape_contiguous": (lambda m, x: x.reshape(2, 6), [(4, 3)]),
    "expand_reshape": (lambda m, x: x.expand(4, 3).reshape(12), [(1, 3)]),
    "expand_reshape_alias": (lambda m, x: x.expand(4, 3).reshape(2, 2, 3), [(1, 3)]),
}


def _inputs(m, shapes, seed=0):
    r = np.random.default_rng(seed)
    return [m.tensor(r.uniform(0.5, 2.0, s) * r.choice([-1.0, 1.0], s), dtype=m.float64, requires_grad=True)
            for s in shapes]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_graph_is_pytorchs(name):
    torch = _torch()
    fn, shapes = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours_in, theirs_in = _inputs(engine, shapes), _inputs(torch, shapes)
        ours, theirs = fn(engine, *ours_in), fn(torch, *theirs_in)
    assert _tree(ours.grad_fn) == _tree(theirs.grad_fn)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-12)
    g = np.random.default_rng(1).standard_normal(tuple(ours.shape))
    go = engine.autograd.grad(ours, ours_in, engine.tensor(g), allow_unused=True)
    gt = torch.autograd.grad(theirs, theirs_in, torch.tensor(g), allow_unused=True)
    for a, b in zip(go, gt):
        np.testing.assert_allclose(a.numpy(), b.numpy(force=True), rtol=1e-12, atol=1e-14)


def test_sign_is_differentiable_with_a_zero_gradient():
    """As PyTorch: sign(x) requires grad, so sum(sign(x) * x) has gradient sign(x) (the product
    rule's other term is 0), which a finite difference away from 0 confirms."""
    x = engine.tensor([1.5, -2.0, 0.7], requires_grad=True)
    y = engine.sign(x)
    assert y.requires_grad and y.grad_fn.name() == "SignBackward0"
    (y * x).sum().backward()
    eps = 1e-6
    xs = x.detach().numpy()
    fd = [((np.sign(xs + eps * e) * (xs + eps * e)).sum() - (np.sign(xs - eps * e) * (xs - eps * e)).sum())
          / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(x.grad.numpy(), fd, rtol=1e-8)


@pytest.mark.parametrize("shape,message", [
    ((3,), "The use of `x.T` on tensors of dimension other than 2 to reverse their shape is deprecated"),
    ((2, 3, 4), "The use of `x.T` on tensors of dimension other than 2 to reverse their shape is deprecated"),
    ((), "Tensor.T is deprecated on 0-D tensors. This function is the identity in these cases."),
])
def test_T_warns_as_pytorch_once_per_process(shape, message):
    """PyTorch warns once per process (TORCH_WARN_ONCE) and never for a matrix; the second .T
    stays silent. A fresh interpreter, since the first warning of the test session would
    otherwise be spent."""
    code = (f"import warnings; warnings.simplefilter('always')\n"
            f"import engine\n"
            f"engine.zeros(2, 3).T\n"
            f"x = engine.zeros({shape!r})\n"
            f"x.T\n"
            f"x.T\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("UserWarning") == 1, r.stderr
    assert message in r.stderr
    assert "<string>:5: UserWarning" in r.stderr      # points at the user's line, not the engine's


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1, 1])
def test_pow_double_backward_records_pytorchs_nodes(exponent):
    torch = _torch()
    trees, grads = [], []
    for m in (engine, torch):
        x = m.tensor([1.5, 2.0, 0.75], dtype=m.float64, requires_grad=True)
        g, = m.autograd.grad((x ** exponent).sum(), x, create_graph=True)
        trees.append(_tree(g.grad_fn))
        grads.append(m.autograd.grad(g.sum(), x)[0].numpy())
    assert trees[0] == trees[1]
    assert trees[0][:2] == ["MulBackward0", "  MulBackward1"]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)
    # and the closed form: d2/dx2 x**p = p (p - 1) x**(p - 2)
    x = np.array([1.5, 2.0, 0.75])
    np.testing.assert_allclose(grads[0], exponent * (exponent - 1) * x ** (exponent - 2), rtol=1e-12)


# -- scatter_reduce ------------------------------------------------------------------------------
def _sr_inputs(m):
    # ties (2 and 2 into one position, 0 and 0 into another) and zeros, for prod and amax/amin
    x = m.tensor([[1., 2, 3], [4, 0, 6], [0.5, 2, 7]], dtype=m.float64, requires_grad=True)
    s = m.tensor([[2., 0, 1], [3, 5, 0.5], [4, 0, 1.5]], dtype=m.float64, requires_grad=True)
    i = m.tensor([[0, 1, 1], [0, 1, 0], [2, 1, 1]])
    return x, s, i


@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_matches_pytorch_with_ties_and_zeros(reduce, include_self):
    torch = _torch()
    res = []
    for m in (engine, torch):
        x, s, i = _sr_inputs(m)
        y = x.scatter_reduce(0, i, s, reduce, include_self=include_self)
        g = m.arange(9.0, dtype=m.float64).reshape(3, 3) + 1
        res.append((y.grad_fn.name(), y.detach().numpy(), *[t.numpy() for t in m.autograd.grad(y, (x, s), g)]))
    assert res[0][0] == res[1][0] == "ScatterReduceBackward0"
    for a, b in zip(res[0][1:], res[1][1:]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
def test_scatter_reduce_gradient_is_finite_differences(reduce):
    """Away from ties, against central differences in float64 (the oracle aside)."""
    r = np.random.default_rng(3)
    x = engine.tensor(r.uniform(0.5, 2, (5, 4)), requires_grad=True)
    s = engine.tensor(r.uniform(0.5, 2, (7, 4)), requires_grad=True)
    i = engine.tensor(r.integers(0, 5, (7, 4)))
    for inc in (True, False):
        assert engine.autograd.gradcheck(lambda a, b: a.scatter_reduce(0, i, b, reduce, include_self=inc), (x, s))
        if reduce != "prod":
            assert engine.autograd.gradgradcheck(lambda a, b: a.scatter_reduce(0, i, b, reduce, include_self=inc),
                                                 (x, s))


def test_scatter_reduce_prod_says_it_has_no_double_backward():
    x, s, i = _sr_inputs(engine)
    y = x.scatter_reduce(0, i, s, "prod")
    with pytest.raises(NotImplementedError, match="double backward for scatter_reduce"):
        engine.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="reduce argument must be either sum, prod, mean, amax or amin"):
        x.scatter_reduce(0, i, s, "max")


def test_scatter_reduce_in_place():
    x, s, i = _sr_inputs(engine)
    a = x.detach().clone()
    a.scatter_reduce_(0, i, s.detach(), "amax")
    np.testing.assert_array_equal(a.numpy(), x.scatter_reduce(0, i, s, "amax").detach().numpy())


# -- reprs -----------------------------------------------------------------------------------------
def _helpers(m):
    x = m.randn(3, requires_grad=True)
    y = x * 2
    return {
        "tensor hook": x.register_hook(lambda g: g),
        "node hook": y.grad_fn.register_hook(lambda *a: None),
        "node prehook": y.grad_fn.register_prehook(lambda *a: None),
        "multi grad hook": m.autograd.graph.register_multi_grad_hook([x], lambda g: None),
        "post accumulate hook": x.register_post_accumulate_grad_hook(lambda t: None),
        "no_grad": m.no_grad(), "enable_grad": m.enable_grad(), "inference_mode": m.inference_mode(),
        "set_grad_enabled": m.set_grad_enabled(True),
        "saved_tensors_hooks": m.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t),
        "disable_saved_tensors_hooks": m.autograd.graph.disable_saved_tensors_hooks("no"),
        "profile": m.autograd.profiler.profile(), "torch.profiler": m.profiler.profile(),
        "dual_level": m.autograd.forward_ad.dual_level(),
        "detect_anomaly": m.autograd.detect_anomaly(),
    }


def test_helper_objects_print_pytorchs_names():
    torch = _torch()
    ours, theirs = _helpers(engine), _helpers(torch)
    addr = re.compile(r" at 0x[0-9a-f]+")
    for k in ours:
        assert addr.sub("", repr(ours[k])) == addr.sub("", repr(theirs[k])), k
    assert repr(ours["multi grad hook"]).startswith("<torch.autograd.graph._MultiHandle object at 0x")
    # the class keeps its own module: what tells engine objects from PyTorch's reads it
    assert type(ours["tensor hook"]).__module__ == "engine.graph"


def test_torch_autograd_grad_mode_is_reachable():
    assert engine.autograd.grad_mode.no_grad is engine.no_grad


# -- PyTorch's keyword names and the errors of a wrong call -------------------------------------
KEYWORD_CALLS = {
    "matmul": lambda m, a, b: m.matmul(input=a, other=b[0]),
    "mm": lambda m, a, b: m.mm(input=a, mat2=b),
    "bmm": lambda m, a, b: m.bmm(input=a[None], mat2=b[None]),
    "dot": lambda m, a, b: m.dot(input=a[0], tensor=b[0]),
    "add": lambda m, a, b: m.add(input=a, other=b, alpha=2),
    "sub": lambda m, a, b: m.sub(input=a, other=b, alpha=0.5),
    "mul": lambda m, a, b: m.mul(input=a, other=b),
    "div": lambda m, a, b: m.div(input=a, other=b),
}


@pytest.mark.parametrize("name", sorted(KEYWORD_CALLS))
def test_pytorchs_keyword_names(name):
    """torch.matmul(input=..., other=...) (PyTorch's polynomial tutorial writes it so)."""
    torch = _torch()
    a, b = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[0.5, -2.0], [1.5, 4.0]])
    ours = KEYWORD_CALLS[name](engine, engine.tensor(a), engine.tensor(b))
    theirs = KEYWORD_CALLS[name](torch, torch.tensor(a), torch.tensor(b))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-15)


def test_to_refuses_a_keyword_it_does_not_take_as_pytorch():
    """x.to(requires_grad=True) raises PyTorch's TypeError (it was ignored: a tutorial that shows
    the error went on printing)."""
    torch = _torch()
    msgs = []
    for m in (engine, torch):
        with pytest.raises(TypeError) as e:
            m.zeros(2).to(requires_grad=True)
        msgs.append(str(e.value))
        with pytest.raises(TypeError) as e:
            m.zeros(2).to(m.float32, requires_grad=False)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[2] and msgs[1] == msgs[3]
    assert engine.zeros(2).to(dtype=engine.float32, copy=False, non_blocking=False).dtype == engine.float32


# -- the order leaves are accumulated in ---------------------------------------------------------
ORDER_GRAPHS = {
    "mul then add": lambda m, x, w, b, c: ((x * w + b) @ m.tensor([[1.0, 0.5], [2.0, -1.0]], dtype=m.float64).t()
                                          * c).sum(),
    "stack": lambda m, x, w, b, c: (m.stack([x, w]) @ b.unsqueeze(1)).sum() + (x * x).sum(),
    "branches": lambda m, x, w, b, c: (x.exp() * w.sin() + b.tanh() * c).sum(),
    "mm": lambda m, x, w, b, c: (x.unsqueeze(0) @ m.stack([w, b]).t()).sum() * c.sum(),
}


@pytest.mark.parametrize("name", sorted(ORDER_GRAPHS))
def test_leaves_accumulate_in_pytorchs_order(name):
    """PyTorch's ready queue runs an AccumulateGrad as soon as it is ready (top priority), leaves
    made ready together in the node's input order; post-accumulate hooks (and explain) see that
    order. The engine's stack ran the other branch first."""
    torch = _torch()
    orders = []
    for m in (engine, torch):
        log = []
        leaves = []
        for n in "xwbc":
            t = m.tensor([1.0, 2.0], dtype=m.float64, requires_grad=True)
            t.register_post_accumulate_grad_hook(lambda p, n=n: log.append(n))
            leaves.append(t)
        ORDER_GRAPHS[name](m, *leaves).backward()
        orders.append(log)
    assert orders[0] == orders[1]


# -- anomaly mode's traceback of the forward call --------------------------------------------------
ANOMALY_FORMS = {
    "operator": "y = x * zero",
    "method": "y = x.mul(zero)",
    "function": "y = m.mul(x, zero)",
    "exp method": "y = (x * 0 - 800).exp() * 0",
    "engine.exp": "y = m.exp(x * 0 - 800) * 0",
    "chunk": "y = m.cat([x, x]).chunk(2)[0] * zero",
}


def _anomaly_frames(m, form, path):
    """The frames (file, line, function) of the forward traceback anomaly mode warns with, for a
    node whose backward makes NaN, restricted to this test file's frames."""
    import traceback
    src = (f"def make(m, x, zero):\n    {form}\n    return (y * m.tensor(float('nan'))).sum()\n")
    ns = {}
    exec(compile(src, str(path), "exec"), ns)
    x = m.tensor([1.0, 2.0], dtype=m.float64, requires_grad=True)
    zero = m.tensor([0.0, 0.0], dtype=m.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with m.autograd.detect_anomaly():
            try:
                ns["make"](m, x, zero).backward()
            except RuntimeError:
                pass
    said = next(str(w.message) for w in caught if "Traceback of forward call" in str(w.message))
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', said)
    return [f for f in frames if f[0] == str(path)], frames[-1][0] == str(path)


@pytest.mark.parametrize("form", sorted(ANOMALY_FORMS))
def test_anomaly_traceback_ends_at_the_users_line(form, tmp_path):
    """The traceback of the forward call ends at the user's line whatever form made the node
    (it ended one frame too high for x * y, x.exp(), engine.exp(x) and inside chunk)."""
    torch = _torch()
    path = tmp_path / "user_code.py"
    ours, ours_last = _anomaly_frames(engine, ANOMALY_FORMS[form], path)
    theirs, theirs_last = _anomaly_frames(torch, ANOMALY_FORMS[form], path)
    assert ours == theirs and ours_last and theirs_last, (ours, theirs)


@pytest.mark.parametrize("call", ["x.mul(y)", "x.add(y)", "x.sub(y)", "x.div(y)", "x.mul(2.5)", "x.sub(2)",
                                  "x.add(y, alpha=2)", "x.mul(other=y)", "x.div(2.0)"])
def test_a_method_is_its_operator(call):
    """x.mul(y) runs the operator's one-call path (as fast as x * y) with the same values, node
    and gradients as the public function it wraps; keywords and arrays take the function."""
    torch = _torch()
    res = []
    for m in (engine, torch):
        x = m.tensor([1.5, -2.0, 0.5], dtype=m.float64, requires_grad=True)
        y = m.tensor([0.5, 3.0, -1.0], dtype=m.float64, requires_grad=True)
        out = eval(call, {"x": x, "y": y, "np": np})
        out.sum().backward()
        res.append((out.grad_fn.name(), out.detach().numpy(), x.grad.numpy(),
                    None if y.grad is None else y.grad.numpy()))
    assert res[0][0] == res[1][0]
    for a, b in zip(res[0][1:], res[1][1:]):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-14)



@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
def test_scatter_reduce_at_size_is_the_plain_loop(reduce):
    """6000 source elements into 50 x 40 positions, against a plain Python loop over them."""
    r = np.random.default_rng(5)
    x = r.uniform(0.5, 1.5, (50, 40))
    src = r.uniform(0.5, 1.5, (150, 40))
    idx = r.integers(0, 50, (150, 40))
    for include_self in (True, False):
        got = engine.tensor(x).scatter_reduce(0, engine.tensor(idx), engine.tensor(src), reduce,
                                             include_self=include_self).numpy()
        groups = {}
        for i in range(150):
            for j in range(40):
                groups.setdefault((idx[i, j], j), []).append(src[i, j])
        want = x.copy()
        for (i, j), vals in groups.items():
            vals = vals + ([x[i, j]] if include_self else [])
            want[i, j] = {"sum": sum, "prod": np.prod, "mean": np.mean, "amax": max, "amin": min}[reduce](vals)
        np.testing.assert_allclose(got, want, rtol=1e-12)
