"""The engine's composite functions (exported names with no registry entry of their own: einsum,
split, cross_entropy, ...): each one's values and gradients against central differences in
float64, and against PyTorch (values, gradients, node names) when it is installed. A composite
without a case here fails test_every_composite_has_a_case."""
import zlib

import numpy as np
import pytest

import engine
from engine.ops._core import FUNCTIONS

# name -> (call(m, *inputs), input shapes); m is engine or torch. Integer-valued or boolean
# results (argmin, isclose, ...) are compared by value only.
# nan and inf on purpose (isfinite, isinf, isnan cases): numpy says so, PyTorch does not
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning",
                                        "ignore:divide by zero encountered:RuntimeWarning",
                                        "ignore:torch.qr is deprecated:UserWarning")

CASES = {
    "all": (lambda m, x: m.all(x > 0, dim=1), [(3, 4)]),
    "allclose": (lambda m, x: m.tensor(m.allclose(x, x + 1e-9)), [(3,)]),
    "any": (lambda m, x: m.any(x > 1, dim=0), [(3, 4)]),
    "argmax": (lambda m, x: m.argmax(x, dim=1), [(3, 4)]),
    "argmin": (lambda m, x: m.argmin(x, dim=0, keepdim=True), [(3, 4)]),
    "argsort": (lambda m, x: m.argsort(x, dim=-1, descending=True), [(3, 4)]),
    "argwhere": (lambda m, x: m.argwhere(x > 0), [(3, 4)]),
    "bmm": (lambda m, a, b: m.bmm(a, b), [(2, 3, 4), (2, 4, 5)]),
    "broadcast_to": (lambda m, x: m.broadcast_to(x, (2, 3, 4)), [(3, 1)]),
    "chunk": (lambda m, x: m.chunk(x, 3, dim=1), [(2, 7)]),
    "cross_entropy": (lambda m, x: m.nn.functional.cross_entropy(x, m.tensor([0, 3, 1])), [(3, 4)]),
    "cross_entropy_sum": (lambda m, x: m.nn.functional.cross_entropy(x, m.tensor([2, 0]), reduction="sum"),
                          [(2, 5)]),
    "detach": (lambda m, x: m.detach(x) * x, [(4,)]),
    "dot": (lambda m, a, b: m.dot(a, b), [(5,), (5,)]),
    "einsum": (lambda m, a, b: m.einsum("ij,jk->ik", a, b), [(3, 4), (4, 2)]),
    "einsum_batch_trace": (lambda m, a, b: m.einsum("bij,bji->b", a, b), [(2, 3, 4), (2, 4, 3)]),
    "einsum_outer_implicit": (lambda m, a, b: m.einsum("i,j", a, b), [(3,), (4,)]),
    "equal": (lambda m, x: m.tensor(m.equal(x, x)), [(3,)]),
    "flatten": (lambda m, x: m.flatten(x, start_dim=1), [(2, 3, 4)]),
    "ger": (lambda m, a, b: m.ger(a, b), [(3,), (4,)]),
    "inner": (lambda m, a, b: m.inner(a, b), [(2, 4), (3, 4)]),
    "isclose": (lambda m, x: m.isclose(x, x * (1 + 1e-7)), [(5,)]),
    "isfinite": (lambda m, x: m.isfinite(m.log(x)), [(5,)]),
    "isinf": (lambda m, x: m.isinf(1 / (x * 0)), [(3,)]),
    "isnan": (lambda m, x: m.isnan(m.sqrt(x)), [(5,)]),
    "meshgrid": (lambda m, a, b: m.meshgrid(a, b, indexing="ij"), [(3,), (4,)]),
    "meshgrid_xy": (lambda m, a, b: m.meshgrid(a, b, indexing="xy"), [(3,), (4,)]),
    "mm": (lambda m, a, b: m.mm(a, b), [(3, 4), (4, 2)]),
    "moveaxis": (lambda m, x: m.moveaxis(x, 0, -1), [(2, 3, 4)]),
    "movedim": (lambda m, x: m.movedim(x, (0, 1), (2, 0)), [(2, 3, 4)]),
    "msort": (lambda m, x: m.msort(x), [(4, 3)]),
    "mv": (lambda m, a, b: m.mv(a, b), [(3, 4), (4,)]),
    "narrow": (lambda m, x: m.narrow(x, 1, 1, 2), [(3, 5)]),
    "nonzero": (lambda m, x: m.nonzero(x > 0), [(3, 4)]),
    "outer": (lambda m, a, b: m.outer(a, b), [(3,), (2,)]),
    "relu6": (lambda m, x: m.nn.functional.relu6(x * 4), [(6,)]),
    "select": (lambda m, x: m.select(x, 1, 2), [(3, 4)]),
    "split": (lambda m, x: m.split(x, 2, dim=0), [(5, 3)]),
    "split_one_piece_used": (lambda m, x: m.split(x, 2, dim=1)[1], [(3, 5)]),     # the others get no gradient
    "split_sections": (lambda m, x: m.split(x, [1, 3], dim=1), [(2, 4)]),
    "square": (lambda m, x: m.square(x), [(4,)]),
    "unbind_one_piece_used": (lambda m, x: m.unbind(x, dim=0)[2] * 3, [(4, 2)]),
    "unbind": (lambda m, x: m.unbind(x, dim=1), [(2, 3)]),

    "vdot": (lambda m, a, b: m.vdot(a, b), [(4,), (4,)]),
    # torch.linalg's composites (issue 23) and the top-level names PyTorch gives the same ops
    "det": (lambda m, a: m.det(a), [(3, 3)]),
    "inverse": (lambda m, a: m.inverse(a), [(2, 3, 3)]),
    "slogdet": (lambda m, a: m.slogdet(a), [(3, 3)]),
    "qr": (lambda m, a: m.qr(a), [(4, 3)]),
    "linalg.svdvals": (lambda m, a: m.linalg.svdvals(a), [(2, 4, 3)]),
    "linalg.vector_norm": (lambda m, a: m.linalg.vector_norm(a, 3, dim=(0, 2)), [(2, 3, 4)]),
    "linalg.matrix_norm": (lambda m, a: m.linalg.matrix_norm(a, "nuc"), [(2, 3, 4)]),
    "linalg.matrix_norm_inf_keepdim": (lambda m, a: m.linalg.matrix_norm(a, float("inf"), keepdim=True), [(3, 4)]),
    "linalg.norm": (lambda m, a: m.linalg.norm(a), [(2, 3, 4)]),
    "linalg.norm_ord_dim": (lambda m, a: m.linalg.norm(a, -2, dim=(2, 0)), [(3, 2, 4)]),
    "view": (lambda m, x: x.view(3, 4) if m is not engine else engine.view(x, 3, 4), [(2, 6)]),
}


def _inputs(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return [rng.standard_normal(s) for s in CASES[name][1]]


def _outputs(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _is_float(t):
    return t.dtype in (engine.float64, engine.float32) if isinstance(t, engine.Tensor) else t.is_floating_point()


def _run(m, name, arrays, grad=True):
    """Outputs as arrays, the gradient of a fixed weighted sum of the float outputs for each input,
    and the outputs' node names."""
    ts = [m.tensor(a, dtype=m.float64, requires_grad=grad) for a in arrays]
    ys = _outputs(CASES[name][0](m, *ts))
    values = [y.detach().numpy().copy() for y in ys]
    names = [None if y.grad_fn is None else (y.grad_fn.name() if m is engine else type(y.grad_fn).__name__)
             for y in ys]
    floats = [y for y in ys if _is_float(y) and y.requires_grad]
    grads = None
    if grad and floats:
        total = sum((y * m.tensor(_weights(y.shape, k), dtype=m.float64)).sum() for k, y in enumerate(floats))
        total.backward()
        grads = [np.zeros(a.shape) if t.grad is None else t.grad.numpy().copy() for t, a in zip(ts, arrays)]
    return values, grads, names


def _weights(shape, k):
    return np.random.default_rng(100 + k).standard_normal(tuple(shape))


def _loss(name, arrays):
    with engine.no_grad():
        ys = [y for y in _outputs(CASES[name][0](engine, *[engine.tensor(a) for a in arrays])) if _is_float(y)]
        return sum(float((y.numpy() * _weights(y.shape, k)).sum()) for k, y in enumerate(ys))


def test_every_composite_has_a_case():
    composites = {n for n, e in FUNCTIONS.items() if e.op is None}
    assert composites, "no composites found: the test reads engine.ops._core.FUNCTIONS"
    missing = sorted(n for n in composites if not any(c == n or c.startswith(n + "_") for c in CASES))
    assert not missing, f"composites with no case in tests/test_composites.py: {missing}"


# detach cuts the derivative on purpose, so differences (which see x twice) cannot judge it:
# d/dx sum(detach(x) * x * W) = x * W in closed form
CLOSED = {"detach": lambda x: [x * _weights(x.shape, 0)]}


@pytest.mark.parametrize("name", sorted(CASES))
def test_composite_gradients_match_central_differences(name):
    arrays = _inputs(name)
    values, grads, _ = _run(engine, name, arrays)
    if grads is None:
        pytest.skip(f"{name} has no differentiable float output (its values are compared with PyTorch)")
    if name in CLOSED:
        for got, want in zip(grads, CLOSED[name](*arrays)):
            np.testing.assert_allclose(got, want, rtol=1e-14)
        return
    eps = 1e-6
    for i, a in enumerate(arrays):
        num = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + eps
            up = _loss(name, arrays)
            a[idx] = old - eps
            down = _loss(name, arrays)
            a[idx] = old
            num[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[i], num, rtol=1e-6, atol=1e-8, err_msg=f"{name}: input {i}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_composite_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    arrays = _inputs(name)
    ours = _run(engine, name, arrays)
    theirs = _run(torch, name, arrays)
    assert len(ours[0]) == len(theirs[0])
    for a, b in zip(ours[0], theirs[0]):
        assert a.shape == b.shape and a.dtype.kind == b.dtype.kind, (a, b)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert (ours[1] is None) == (theirs[1] is None)
    for a, b in zip(ours[1] or [], theirs[1] or []):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    if not name.startswith("einsum"):
        assert ours[2] == theirs[2]
    # einsum: PyTorch lowers it to permute/view/bmm and records those nodes (ViewBackward0 on
    # top); the engine composes broadcast products and sums (SumBackward1). Values and
    # gradients are compared above; the node names are a known difference, stated in README.


def test_einsum_names_its_wrong_argument():
    with pytest.raises(TypeError, match=r"einsum\(\): the first argument must be the equation"):
        engine.einsum(engine.ones(2), engine.ones(2))


@pytest.mark.parametrize("equation,message", [
    ("ij->ij;x", "einsum(): invalid subscript given at index 6 in the equation string, subscripts must be in [a-zA-Z]"),
    ("i;j->j", "einsum(): invalid subscript given at index 1 in the equation string, subscripts must be in [a-zA-Z]"),
    ("ij->k", "einsum(): output subscript k does not appear in the equation for any input operand"),
    ("ij->jj", "einsum(): output subscript j appears more than once in the output"),
])
def test_einsum_rejects_a_bad_equation_with_pytorchs_message(equation, message):
    """The messages are PyTorch 2.13's for the same equations (read from torch.einsum)."""
    with pytest.raises(RuntimeError) as e:
        engine.einsum(equation, engine.ones(2, 3))
    assert str(e.value) == message



@pytest.mark.parametrize("n", [6, 10000])
def test_pieces_match_plain_slicing_across_the_size_threshold(n):
    """Above 4096 elements sum() hands back one value (Uniform); the pieces' node gets it through
    the loop's general branch. Its gradients equal those of plain slices (x[:h], x[h:]) exactly,
    with backward(), autograd.grad and create_graph alike."""
    x0 = np.random.default_rng(n).standard_normal(n)
    h = n // 2
    w = np.random.default_rng(1).standard_normal((2, h))

    def loss(x, pieces):
        a, b = engine.chunk(x, 2) if pieces else (x[:h], x[h:])
        u = engine.unbind(x.reshape(2, h)) if pieces else (x.reshape(2, h)[0], x.reshape(2, h)[1])
        return b.sum() + a.mean() + (u[1] * engine.tensor(w[1])).sum()

    grads = []
    for pieces in (True, False):
        x = engine.tensor(x0, requires_grad=True)
        loss(x, pieces).backward()
        g1 = x.grad.numpy().copy()
        g2, = engine.autograd.grad(loss(x, pieces), x)
        g3, = engine.autograd.grad(loss(x, pieces), x, create_graph=True)
        np.testing.assert_array_equal(g1, g2.numpy())
        np.testing.assert_allclose(g1, g3.detach().numpy(), rtol=1e-15)
        grads.append(g1)
    np.testing.assert_array_equal(grads[0], grads[1])
    want = np.concatenate([np.full(h, 1.0 / h), np.ones(h)]) + np.concatenate([np.zeros(h), w[1]])
    np.testing.assert_allclose(grads[0], want, rtol=1e-14)


def test_pieces_made_in_inference_mode_are_inference_tensors():
    with engine.inference_mode():
        a, b = engine.chunk(engine.ones(4, requires_grad=True), 2)
    assert a.is_inference() and b.is_inference()
