"""Every registered op: analytical gradient vs central finite differences in float64."""
import numpy as np
import pytest

import engine
from engine.ops import REGISTRY
from opcases import cases, leaves, make_inputs, to_tensors

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3


def _fd(fn, arrays, r):
    """Central differences of sum(fn(arrays) * r) with respect to every float array."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        it = np.nditer(a, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = a[i]
            a[i] = old + EPS
            fp = np.sum(fn() * r)
            a[i] = old - EPS
            fm = np.sum(fn() * r)
            a[i] = old
            g[i] = (fp - fm) / (2 * EPS)
        grads.append(g)
    return grads


@pytest.mark.parametrize("name,k,spec", list(cases()))
def test_gradient_matches_finite_differences(name, k, spec):
    op = REGISTRY[name]
    args, kwargs = make_inputs(op, spec, seed=k)
    ts = to_tensors(args)
    out = op.func(*ts, **kwargs)
    r = np.random.default_rng(100 + k).standard_normal(out.shape)
    (out * engine.tensor(r)).sum().backward()
    arrays = [a for a in args if isinstance(a, np.ndarray)] + [v for a in args if isinstance(a, list) for v in a]
    tensors = [t for t in leaves(ts)]

    def fn():
        with engine.no_grad():
            return op.func(*to_tensors(args, requires_grad=False), **kwargs)._data
    # to_tensors copies, so perturbing `arrays` in place is seen on every call
    numeric = _fd(fn, arrays, r)
    by_id = {id(a): n for a, n in zip(arrays, numeric)}
    flat_args = [a for a in args if isinstance(a, np.ndarray)] + [v for a in args if isinstance(a, list) for v in a]
    flat_ts = [t for t in ts if isinstance(t, engine.Tensor)] + [v for t in ts if isinstance(t, list) for v in t]
    assert len(flat_ts) == len(flat_args) == len(tensors)
    for i, (a, t) in enumerate(zip(flat_args, flat_ts)):
        assert t.grad is not None, f"{name}: input {i} got no gradient"
        np.testing.assert_allclose(t.grad.numpy(), by_id[id(a)], atol=ATOL, rtol=RTOL,
                                   err_msg=f"{name} sample {k} input {i}")


# entries no function exports: each is reached through another function or an operator
REACHED_THROUGH = {
    "diagonal": "diag(matrix)", "rsub": "2 - x (sub with a number first)", "pow": "pow(x, number) and x ** number",
    "rpow": "pow(number, x) and number ** x", "max_dim": "max(x, dim)", "min_dim": "min(x, dim)",
    "index": "x[key]", "unindex": "the backward of x[key]", "index_put": "x[key] = v",
    "fill": "x.fill_(v)", "copy": "x.copy_(src)", "scatter_value": "scatter(x, dim, index, value=number)",
    "mul_scalar": "the double backward of x ** number (PyTorch's MulBackward1)",
}


def test_every_op_is_complete():
    """What a registered op needs: a node name per variant, its saves (defop refuses an entry
    without them), samples, a doc line, a rule (or explicit None) per input, a function the
    tests call, and a way in: exported by a public function (then it is an engine function,
    a Tensor method unless declared function-only, and an expression function), or reached
    through one (REACHED_THROUGH says how)."""
    from engine.ops import FUNCTIONS, METHODS
    from expressions.compiler import functions
    exported = {e.op for e in list(FUNCTIONS.values()) + list(METHODS.values()) if e.op is not None}
    for name, op in REGISTRY.items():
        assert op.func is not None, f"{name}: no function the tests can call"
        assert op.samples, f"{name} has no test samples"
        assert op.doc, f"{name} has no doc line"
        if op.differentiable:
            assert op.node_names, f"{name} has no node name"
            # torch.diag of a matrix records DiagonalBackward0_copy in PyTorch 2.13
            assert all(n.removesuffix("_copy").endswith(tuple(f"Backward{i}" for i in range(5)))
                       or n in ("CopySlices", "CopyBackwards") for n in op.node_names), name
            assert op.saves, f"{name} declares no saves"
            if not op.variadic:
                assert isinstance(op.vjps, tuple), name
        assert (op in exported) != (name in REACHED_THROUGH), \
            f"{name}: export it (engine/ops/_core.export) or say in REACHED_THROUGH how it is reached"
    for name, e in FUNCTIONS.items():
        if "." in name:              # a submodule's function: linalg.det is engine.linalg.det
            mod, _, attr = name.rpartition(".")
            assert getattr(getattr(engine, mod), attr) is e.fn, name
        else:
            assert getattr(engine, name) is e.fn and getattr(engine.ops, name) is e.fn, name
        assert functions()[name] is e.fn, f"{name} is not an expression function"
    for name, e in METHODS.items():
        assert name in vars(engine.Tensor), f"{name} is not a Tensor method"
        method = vars(engine.Tensor)[name]
        if not e.fast_unary:           # the function itself, or its operator fast path wrapping it
            assert method is e.fn or getattr(method, "__wrapped__", None) is e.fn, name
    for op in REGISTRY.values():
        for dunder in op.operators:
            assert dunder in vars(engine.Tensor), f"{op.name}: {dunder} is not bound"


def test_a_new_op_is_one_entry_and_one_export(monkeypatch):
    """Adding an op: one defop entry and one exported function; the Tensor method, operator,
    engine function and expression function follow from them."""
    import expressions.compiler as compiler
    from engine.ops import FUNCTIONS, METHODS, apply1, bind, defop, export
    op = defop("t_cube", lambda x: x ** 3, (lambda xp, g, out, x: g * 3.0 * x * x,), saves=("x",),
               nodes="TCubeBackward0", samples=[(((2,),), {})], doc="x cubed", operators={"__invert__": "unary"})
    try:
        @export("t_cube", "t_cube_alias", op=op)
        def t_cube(x):
            return apply1(op, x)
        bind(engine.Tensor)
        monkeypatch.setattr(compiler, "_FUNCS", None)
        x = engine.tensor([1.0, 2.0], requires_grad=True)
        for y in (x.t_cube(), x.t_cube_alias(), ~x, compiler.compile_expression("t_cube(x)").run({"x": x})):
            assert y.grad_fn.name() == "TCubeBackward0"
            x.grad = None
            y.sum().backward()
            np.testing.assert_allclose(x.grad.numpy(), [3.0, 12.0])
        assert op.func is t_cube
    finally:
        del REGISTRY["t_cube"]
        for n in ("t_cube", "t_cube_alias"):
            FUNCTIONS.pop(n, None)
            METHODS.pop(n, None)
            if n in vars(engine.Tensor):
                delattr(engine.Tensor, n)
        engine.Tensor.__invert__ = engine.ops.logical_not


def test_broadcast_gradient_is_reduced_to_input_shape():
    a = engine.tensor([[1.0], [2.0], [3.0]], requires_grad=True)
    b = engine.tensor([10.0, 20.0], requires_grad=True)
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [[30.0], [30.0], [30.0]])   # sum over b
    np.testing.assert_allclose(b.grad.numpy(), [6.0, 6.0])                 # sum over a


def test_max_ties_follow_pytorch():
    # full max shares among ties; max(dim) sends all to the returned index; amax shares
    a = engine.tensor([1.0, 3.0, 3.0], requires_grad=True)
    a.max().backward()
    np.testing.assert_allclose(a.grad.numpy(), [0, 0.5, 0.5])
    a.grad = None
    a.max(0)[0].backward()
    np.testing.assert_allclose(a.grad.numpy(), [0, 1, 0])
    a.grad = None
    a.amax(0).backward()
    np.testing.assert_allclose(a.grad.numpy(), [0, 0.5, 0.5])


def test_kink_subgradients():
    x = engine.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    x.relu().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0, 1])      # relu'(0) = 0
    x.grad = None
    x.abs().sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1, 0, 1])     # abs'(0) = 0
    x.grad = None
    x.clamp(0.0, 2.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 1, 1])      # bounds included
    y = engine.tensor([1.0, 2.0], requires_grad=True)
    z = engine.tensor([1.0, 1.0], requires_grad=True)
    engine.maximum(y, z).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [0.5, 1])       # tie split in half
    np.testing.assert_allclose(z.grad.numpy(), [0.5, 0])
