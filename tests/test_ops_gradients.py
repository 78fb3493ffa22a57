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


def test_every_op_is_complete():
    """A registered op must have a node name per variant, a public function, samples, and
    a rule (or explicit None) for every input; methods exist on Tensor."""
    for name, op in REGISTRY.items():
        assert op.func is not None, f"{name} has no public function"
        assert op.samples, f"{name} has no test samples"
        assert op.doc, f"{name} has no doc line"
        if op.differentiable:
            assert op.node_names, f"{name} has no node name"
            assert all(n.endswith(tuple(f"Backward{i}" for i in range(5))) or n in ("CopySlices", "CopyBackwards")
                       for n in op.node_names), name
            if not op.variadic:
                assert isinstance(op.vjps, tuple), name
        if op.method:
            assert hasattr(engine.Tensor, name), f"{name} is not a Tensor method"


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
