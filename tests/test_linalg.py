"""engine.linalg (issue 23): solve, inv, det, slogdet, cholesky, qr, svd, svdvals and the norms.

Gradients against central finite differences in float64 on batched, transposed (non-contiguous)
and large inputs (past the loop's 4096-element buffer threshold); PyTorch as the oracle for
values, gradients, second order, node names, return types and error messages (skipped cleanly
without torch). The registry's own cases (tests/test_ops_gradients.py, test_torch_oracle.py)
cover each entry's samples as well.
"""
import numpy as np
import pytest

import engine

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3
L = engine.linalg


def _fd(f, arrays, r):
    """Central differences of sum(f(*arrays) * r) for each array (f runs without a graph)."""
    out = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + EPS
            fp = np.sum(f(*arrays) * r)
            a[i] = old - EPS
            fm = np.sum(f(*arrays) * r)
            a[i] = old
            g[i] = (fp - fm) / (2 * EPS)
        out.append(g)
    return out


def _check_fd(fn, *arrays, seed=0):
    """fn(*tensors) -> Tensor: .backward()'s gradients equal central differences."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    ts = [engine.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    r = np.random.default_rng(seed).standard_normal(out.shape)
    (out * engine.tensor(r)).sum().backward()

    def f(*arrs):           # leaves that require grad: fn may take a gradient itself (second order)
        return fn(*[engine.tensor(a, requires_grad=True) for a in arrs]).detach().numpy()
    for k, (t, num) in enumerate(zip(ts, _fd(f, arrays, r))):
        np.testing.assert_allclose(t.grad.numpy(), num, atol=ATOL, rtol=RTOL, err_msg=f"input {k}")


rng = np.random.default_rng(23)


def _well(shape):
    """Random square matrices kept away from singular: A + n I."""
    a = rng.standard_normal(shape)
    return a + shape[-1] * np.eye(shape[-1])


def _svd_inv(U, S, Vh):
    k = S.shape[-1]
    U, Vh = U[..., :k], Vh[..., :k, :]
    return engine.cat([S.reshape(-1), (U @ Vh).reshape(-1), (U * U).reshape(-1), (Vh * Vh).reshape(-1)])


# -- finite differences: batched, transposed, large ----------------------------------------------
FD_CASES = {
    "inv": (lambda A: L.inv(A), [(2, 3, 3)]),
    "inv_T": (lambda A: L.inv(A.mT), [(4, 4)]),
    "det": (lambda A: L.det(A), [(3, 2, 3, 3)]),
    "det_T": (lambda A: L.det(A.transpose(-1, -2)), [(2, 4, 4)]),
    "slogdet": (lambda A: L.slogdet(A).logabsdet, [(2, 3, 3)]),
    "slogdet_sign_unused": (lambda A: L.slogdet(A)[1] * 2.0 + L.slogdet(A)[0].detach(), [(3, 3)]),
    "solve_vec_batch": (lambda A, b: L.solve(A, b), [(2, 3, 3), (2, 3)]),
    "solve_broadcast": (lambda A, B: L.solve(A, B), [(2, 1, 3, 3), (4, 3, 2)]),
    "solve_T": (lambda A, B: L.solve(A.mT, B.mT), [(3, 3), (2, 3)]),
    "solve_left_false": (lambda A, B: L.solve(A, B, left=False), [(2, 3, 3), (4, 3)]),
    "cholesky": (lambda A: L.cholesky(A @ A.mT + 3 * engine.eye(3)), [(2, 3, 3)]),
    "cholesky_upper_T": (lambda A: L.cholesky((A.mT @ A) + 4 * engine.eye(4), upper=True), [(4, 4)]),
    "qr_tall": (lambda A: engine.cat([t.reshape(-1) for t in L.qr(A)]), [(2, 5, 3)]),
    "qr_wide_T": (lambda A: engine.cat([t.reshape(-1) for t in L.qr(A.mT)]), [(5, 3)]),
    "qr_complete_square": (lambda A: engine.cat([t.reshape(-1) for t in L.qr(A, "complete")]), [(3, 3)]),
    "qr_only_R": (lambda A: L.qr(A).R, [(4, 3)]),
    "qr_only_Q": (lambda A: L.qr(A).Q, [(3, 4)]),
    "svd_square": (lambda A: _svd_inv(*L.svd(A)), [(2, 3, 3)]),
    "svd_tall_reduced": (lambda A: _svd_inv(*L.svd(A, full_matrices=False)), [(5, 3)]),
    "svd_wide_full_T": (lambda A: _svd_inv(*L.svd(A.mT)), [(2, 5, 3)]),
    "svd_only_U": (lambda A: L.svd(A, full_matrices=False).U ** 2, [(4, 3)]),
    "svdvals": (lambda A: L.svdvals(A), [(2, 4, 3)]),
    "matrix_norm_nuc": (lambda A: L.matrix_norm(A, "nuc"), [(2, 3, 4)]),
    "matrix_norm_2": (lambda A: L.matrix_norm(A, 2, dim=(0, 2), keepdim=True), [(3, 2, 4)]),
    "norm_fro": (lambda A: L.norm(A, dim=(-1, -2)), [(2, 3, 4)]),
    "vector_norm_3": (lambda x: L.vector_norm(x, 3, dim=1), [(2, 3, 4)]),
}


@pytest.mark.parametrize("name", sorted(FD_CASES))
def test_gradient_matches_finite_differences(name):
    fn, shapes = FD_CASES[name]
    arrays = [_well(s) if len(s) >= 2 and s[-1] == s[-2] else rng.standard_normal(s) for s in shapes]
    _check_fd(fn, *arrays)


def test_large_batches_cross_the_buffer_threshold():
    """2 x 48 x 48 = 4608 elements (> 4096, where the loop's buffers change policy): inv, det,
    solve and the svd against closed forms (d det/dA = det A^-T; d tr(A^-1)/dA = -A^-2^T;
    d sum(S)/dA = U Vh)."""
    a = _well((2, 48, 48))
    A = engine.tensor(a, requires_grad=True)
    L.det(A).sum().backward()
    np.testing.assert_allclose(A.grad.numpy(), np.linalg.det(a)[:, None, None] * np.linalg.inv(a).transpose(0, 2, 1),
                               rtol=1e-9, atol=1e-12 * np.abs(np.linalg.det(a)).max())
    A.grad = None
    (L.inv(A) * engine.tensor(np.eye(48))).sum().backward()         # trace of the inverse
    ia = np.linalg.inv(a)
    np.testing.assert_allclose(A.grad.numpy(), -(ia @ ia).transpose(0, 2, 1), rtol=1e-9, atol=1e-13)
    A.grad = None
    L.svdvals(A).sum().backward()
    U, S, Vh = np.linalg.svd(a)
    np.testing.assert_allclose(A.grad.numpy(), U @ Vh, rtol=1e-8, atol=1e-10)
    b = rng.standard_normal((2, 48))
    B = engine.tensor(b, requires_grad=True)
    A.grad = None
    L.solve(A, B).sum().backward()             # x = A^-1 b: d sum(x)/db = A^-T 1, d/dA = -(A^-T 1) x^T
    gb = np.linalg.solve(a.transpose(0, 2, 1), np.ones((2, 48, 1)))[..., 0]
    np.testing.assert_allclose(B.grad.numpy(), gb, rtol=1e-9, atol=1e-12)
    x = np.linalg.solve(a, b[..., None])[..., 0]
    np.testing.assert_allclose(A.grad.numpy(), -gb[:, :, None] * x[:, None, :], rtol=1e-9, atol=1e-12)


def test_det_at_an_exactly_singular_matrix_gives_zeros_as_pytorch():
    """PyTorch 2.13 returns zeros there (its own behaviour, not the cofactor matrix [[0,0,0],[0,0,0],
    [0,0,2]]); the engine follows it, and a nonsingular matrix in the same batch keeps its gradient."""
    a = np.stack([np.diag([1.0, 2.0, 0.0]), np.diag([1.0, 2.0, 4.0])])
    A = engine.tensor(a, requires_grad=True)
    L.det(A).sum().backward()
    np.testing.assert_array_equal(A.grad.numpy()[0], np.zeros((3, 3)))
    np.testing.assert_allclose(A.grad.numpy()[1], np.diag([8.0, 4.0, 2.0]))


def test_second_order_through_create_graph_matches_finite_differences():
    """d/dA of sum(grad of f) where the first gradient was recorded (rules run as engine ops)."""
    fns = {"det": lambda A: L.det(A), "inv": lambda A: L.inv(A).sum(),
           "slogdet": lambda A: L.slogdet(A)[1], "cholesky": lambda A: L.cholesky(A @ A.mT + 3 * engine.eye(3)).sum(),
           "svdvals": lambda A: (L.svdvals(A) ** 2).sum() + L.svdvals(A)[0],
           "qr": lambda A: (L.qr(A).R ** 2).sum() + L.qr(A).Q[0, 1]}
    a = _well((3, 3))
    for name, f in fns.items():
        def first(A, f=f):
            return engine.autograd.grad(f(A), A, create_graph=True)[0]
        _check_fd(first, a)
        b = np.array(a)
        bt = engine.tensor(b, requires_grad=True)
        assert first(bt).grad_fn is not None, name


def test_solve_second_order_in_b():
    a, b = _well((3, 3)), rng.standard_normal((3, 2))
    _check_fd(lambda A, B: engine.autograd.grad((L.solve(A, B) ** 2).sum(), (A, B), create_graph=True)[0], a, b)


def test_slogdet_returns_a_named_pair():
    A = engine.tensor(-_well((3, 3)), requires_grad=True)
    r = L.slogdet(A)
    sign, logabsdet = r
    assert r.sign is sign and r.logabsdet is logabsdet
    assert sign.item() == np.sign(np.linalg.det(A.detach().numpy()))
    assert sign.grad_fn is logabsdet.grad_fn and sign.grad_fn.name() == "LinalgSlogdetBackward0"
    assert (sign._output_nr, logabsdet._output_nr) == (0, 1)
    sign.sum().backward()             # only the sign: no gradient reaches A, as in PyTorch
    assert A.grad is None or not np.any(A.grad.numpy())


def test_release_and_in_place_checks_on_a_multi_output_node():
    A = engine.tensor(_well((3, 3)), requires_grad=True)
    U, S, Vh = L.svd(A)
    y = S.sum() + U.sum()
    y.backward(retain_graph=True)
    y.backward()
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()
    Q, R = L.qr(A)
    z = R.sum()
    with engine.no_grad():
        Q.mul_(2.0)
    with pytest.raises(RuntimeError, match=r"which is output 0 of LinalgQr, is at version 1; expected "
                                           r"version 0"):
        z.backward()


def test_float32_in_float32_out():
    a = _well((2, 3, 3)).astype(np.float32)
    A = engine.tensor(a, requires_grad=True)
    for y in (L.inv(A), L.det(A), L.slogdet(A)[1], L.svd(A)[1], L.qr(A)[1], L.cholesky(A @ A.mT),
              L.solve(A, A), L.norm(A), L.matrix_norm(A, "nuc")):
        assert y.dtype == engine.float32
        y.sum().backward()
        assert A.grad.dtype == engine.float32
        A.grad = None


def test_vector_norm_orders_against_closed_forms():
    x = np.array([3.0, -4.0, 0.0, 1.0])
    t = engine.tensor(x)
    assert L.vector_norm(t).item() == pytest.approx(np.sqrt(26))
    assert L.vector_norm(t, 0).item() == 3.0
    assert L.vector_norm(t, np.inf).item() == 4.0
    assert L.vector_norm(t, -np.inf).item() == 0.0
    assert L.vector_norm(t, 1).item() == 8.0
    assert L.norm(t, 3).item() == pytest.approx(92 ** (1 / 3))
    y = engine.tensor([1.0, -2.0, 2.0], requires_grad=True)
    L.vector_norm(y, -np.inf).backward()
    np.testing.assert_allclose(y.grad.numpy(), [1.0, 0.0, 0.0])
    y.grad = None
    n0 = L.vector_norm(y, 0)
    assert n0.item() == 3.0 and n0.grad_fn.name() == "LinalgVectorNormBackward0"
    n0.backward()
    assert y.grad is None                    # a count: no gradient reaches y (PyTorch's .grad stays None)


def test_errors_without_torch():
    with pytest.raises(L.LinAlgError, match="input matrix is singular"):
        L.inv(engine.zeros(2, 2))
    assert issubclass(L.LinAlgError, RuntimeError)
    with pytest.raises(TypeError, match="must be Number, not str"):
        L.vector_norm(engine.ones(3), "fro")


def test_expressions_reach_linalg():
    from expressions.compiler import compile_expression
    a = _well((3, 3))
    A = engine.tensor(a, requires_grad=True)
    y = compile_expression("linalg.det(A) + linalg.norm(A, ord='nuc') + linalg.slogdet(A)[1]").run({"A": A})
    expect = np.linalg.det(a) + np.linalg.svd(a, compute_uv=False).sum() + np.linalg.slogdet(a)[1]
    assert y.item() == pytest.approx(expect)
    y = compile_expression("det(A) + inverse(A).sum()").run({"A": A})
    assert y.item() == pytest.approx(np.linalg.det(a) + np.linalg.inv(a).sum())
    # a variable called linalg is the variable, not the namespace
    v = engine.tensor(a)
    assert compile_expression("linalg.det()", ("linalg",)).run({"linalg": v}).item() == pytest.approx(np.linalg.det(a))


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
    "inv": (lambda m, A: m.linalg.inv(A), [(2, 3, 3)]),
    "inverse_T": (lambda m, A: m.inverse(A.mT), [(4, 4)]),
    "det": (lambda m, A: m.linalg.det(A), [(2, 3, 3)]),
    "det_top": (lambda m, A: m.det(A.mT), [(3, 3)]),
    "slogdet": (lambda m, A: m.linalg.slogdet(A)[1], [(2, 3, 3)]),
    "slogdet_top": (lambda m, A: m.slogdet(A).logabsdet, [(3, 3)]),
    "solve": (lambda m, A, B: m.linalg.solve(A, B), [(2, 3, 3), (2, 3)]),
    "solve_mat": (lambda m, A, B: m.linalg.solve(A, B), [(2, 1, 3, 3), (4, 3, 2)]),
    "solve_left": (lambda m, A, B: m.linalg.solve(A.mT, B, left=False), [(3, 3), (2, 3)]),
    "cholesky": (lambda m, A: m.linalg.cholesky(A), ["spd", (2, 3, 3)]),
    "cholesky_upper_T": (lambda m, A: m.linalg.cholesky(A.mT, upper=True), ["spd", (3, 3)]),
    "qr_R": (lambda m, A: m.linalg.qr(A).R, [(2, 4, 3)]),
    "qr_Q_wide": (lambda m, A: m.linalg.qr(A).Q, [(3, 5)]),
    "qr_complete": (lambda m, A: m.linalg.qr(A, mode="complete").Q, [(3, 4)]),
    "qr_top": (lambda m, A: m.qr(A)[1], [(4, 3)]),
    "svd_S": (lambda m, A: m.linalg.svd(A).S, [(2, 4, 3)]),
    "svd_U": (lambda m, A: m.linalg.svd(A, full_matrices=False).U.abs(), [(4, 3)]),
    "svd_Vh_wide": (lambda m, A: m.linalg.svd(A, full_matrices=False).Vh.abs(), [(2, 3, 5)]),
    "svd_full_U": (lambda m, A: m.linalg.svd(A)[0][..., :3].abs(), [(5, 3)]),
    "svdvals": (lambda m, A: m.linalg.svdvals(A), [(3, 4)]),
    "norm": (lambda m, A: m.linalg.norm(A), [(2, 3, 4)]),
    "norm_ord_mat": (lambda m, A: m.linalg.norm(A, 2), [(3, 4)]),
    "norm_ord_vec": (lambda m, A: m.linalg.norm(A, -1.5), [(4,)]),
    "norm_dim": (lambda m, A: m.linalg.norm(A, 1, dim=(2, 1), keepdim=True), [(2, 3, 4)]),
    "vector_norm_inf": (lambda m, A: m.linalg.vector_norm(A, float("inf"), dim=(0, 2)), [(2, 3, 4)]),
    "vector_norm_0": (lambda m, A: m.linalg.vector_norm(A, 0, dim=-1), [(2, 3)]),
    "matrix_norm_nuc_keep": (lambda m, A: m.linalg.matrix_norm(A, "nuc", dim=(0, 2), keepdim=True), [(3, 2, 4)]),
    "matrix_norm_-inf": (lambda m, A: m.linalg.matrix_norm(A, -float("inf")), [(2, 3, 4)]),
}


@pytest.mark.filterwarnings("ignore:torch.qr is deprecated")
@pytest.mark.parametrize("name", sorted(ORACLE))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_pytorch(name, dtype):
    torch = _torch()
    fn, shapes = ORACLE[name]
    r = np.random.default_rng(len(name))
    spd = shapes[0] == "spd"                  # positive-definite inputs: a a^T + n I
    arrays = [(r.standard_normal(s) + (s[-1] * np.eye(s[-1]) if len(s) >= 2 and s[-1] == s[-2] else 0))
              for s in shapes[spd:]]
    if spd:
        arrays = [a @ np.swapaxes(a, -1, -2) + a.shape[-1] * np.eye(a.shape[-1]) for a in arrays]
    arrays = [a.astype(dtype) for a in arrays]
    ours_in = [engine.tensor(a, requires_grad=True) for a in arrays]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours, theirs = fn(engine, *ours_in), fn(torch, *theirs_in)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    assert ours.dtype == getattr(engine, dtype) and ours.shape == tuple(theirs.shape), "forward: dtype/shape"
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), **tol, err_msg="forward")
    assert _names(ours) == _names(theirs), "node names"
    g = r.standard_normal(ours.shape).astype(dtype)
    ours.backward(engine.tensor(g))
    theirs.backward(torch.tensor(g))
    for k, (a, b) in enumerate(zip(ours_in, theirs_in)):
        if b.grad is None:                    # vector_norm(ord=0): no gradient reaches the input
            assert a.grad is None, f"gradient of input {k}"
            continue
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **tol, err_msg=f"gradient of input {k}")


def test_second_order_matches_pytorch():
    torch = _torch()
    a = _well((2, 3, 3))
    for f in (lambda m, A: (m.linalg.det(A) ** 2).sum(), lambda m, A: m.linalg.inv(A).sin().sum(),
              lambda m, A: (m.linalg.svdvals(A) ** 3).sum(), lambda m, A: m.linalg.qr(A).R.exp().sum(),
              lambda m, A: m.linalg.cholesky(A @ A.mT).sum()):
        res = []
        for m in (engine, torch):
            A = m.tensor(a, requires_grad=True)
            (g,) = m.autograd.grad(f(m, A), A, create_graph=True)
            (g * g).sum().backward()
            res.append((g.detach().numpy(), A.grad.numpy()))
        np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(res[0][1], res[1][1], rtol=1e-7, atol=1e-9)


def test_det_at_a_singular_matrix_matches_pytorch():
    torch = _torch()
    a = np.array([[[1.0, 2.0], [2.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]])
    res = []
    for m in (engine, torch):
        A = m.tensor(a, requires_grad=True)
        m.linalg.det(A).sum().backward()
        res.append(A.grad.numpy())
    np.testing.assert_allclose(res[0], res[1], atol=1e-12)


@pytest.mark.filterwarnings("ignore:torch.qr is deprecated")
def test_return_types_and_reprs_match_pytorch():
    torch = _torch()
    a = _well((3, 3))
    for f in (lambda m, A: m.linalg.slogdet(A), lambda m, A: m.slogdet(A), lambda m, A: m.linalg.qr(A),
              lambda m, A: m.qr(A)):
        ours, theirs = f(engine, engine.tensor(a)), f(torch, torch.tensor(a))
        assert repr(ours) == repr(theirs).replace(", dtype=torch.float64", "")
    U, S, Vh = engine.linalg.svd(engine.tensor(rng.standard_normal((5, 3))))
    tU, tS, tVh = torch.linalg.svd(torch.tensor(rng.standard_normal((5, 3))))
    assert (U.shape, S.shape, Vh.shape) == (tuple(tU.shape), tuple(tS.shape), tuple(tVh.shape))
    Q, R = engine.linalg.qr(engine.tensor(rng.standard_normal((5, 3))), mode="r")
    tQ, tR = torch.linalg.qr(torch.tensor(rng.standard_normal((5, 3))), mode="r")
    assert (Q.shape, R.shape) == (tuple(tQ.shape), tuple(tR.shape))


def _message(fn):
    try:
        fn()
    except Exception as e:     # noqa: BLE001 - the message is what is compared
        return type(e).__name__, str(e).split("\n")[0]
    return None


def _sq(n, batch=()):
    return np.ones(batch + (n, n))


ERRORS = [
    lambda m: m.linalg.det(m.tensor(np.ones((2, 3)))),
    lambda m: m.linalg.det(m.tensor(np.ones(3))),
    lambda m: m.linalg.inv(m.tensor(np.ones((2, 3)))),
    lambda m: m.linalg.inv(m.tensor(np.zeros((3, 3)))),
    lambda m: m.linalg.inv(m.tensor(np.stack([np.eye(3), np.zeros((3, 3))]))),
    lambda m: m.linalg.inv(m.tensor(np.array([[1.0, 2.0], [2.0, 4.0]]))),
    lambda m: m.linalg.slogdet(m.tensor(np.ones((2, 3)))),
    lambda m: m.linalg.cholesky(m.tensor(np.ones((2, 3)))),
    lambda m: m.linalg.cholesky(m.tensor(-np.eye(3))),
    lambda m: m.linalg.cholesky(m.tensor(np.stack([np.eye(3), np.diag([1.0, 1.0, -1.0])]))),
    lambda m: m.linalg.solve(m.tensor(np.ones((2, 3))), m.tensor(np.ones(3))),
    lambda m: m.linalg.solve(m.tensor(np.eye(3)), m.tensor(np.ones(4))),
    lambda m: m.linalg.solve(m.tensor(np.eye(3)), m.tensor(np.ones((4, 2)))),
    lambda m: m.linalg.solve(m.tensor(np.zeros((3, 3))), m.tensor(np.ones(3))),
    lambda m: m.linalg.solve(m.tensor(np.ones(3)), m.tensor(np.ones(3))),
    lambda m: m.linalg.solve(m.tensor(np.eye(3)), m.tensor(np.ones((2, 4))), left=False),
    lambda m: m.linalg.qr(m.tensor(np.ones(3))),
    lambda m: m.linalg.qr(m.tensor(np.eye(3)), mode="x"),
    lambda m: m.linalg.svd(m.tensor(np.ones(3))),
    lambda m: m.linalg.matrix_norm(m.tensor(np.ones(3))),
    lambda m: m.linalg.matrix_norm(m.tensor(np.eye(3)), 3),
    lambda m: m.linalg.matrix_norm(m.tensor(np.eye(3)), dim=0),
    lambda m: m.linalg.norm(m.tensor(np.ones((2, 2, 2))), 2),
    lambda m: m.linalg.norm(m.tensor(np.eye(3)), "fro", dim=0),
    lambda m: m.linalg.norm(m.tensor(np.ones(3)), "fro"),
    lambda m: m.linalg.norm(m.tensor(np.eye(3)), dim=(0, 1, 1)),
    lambda m: m.linalg.vector_norm(m.tensor(np.eye(3)), "fro"),
    lambda m: m.linalg.qr(m.tensor(np.ones((3, 2)), requires_grad=True), mode="r")[1].sum().backward(),
    lambda m: m.linalg.qr(m.tensor(np.random.default_rng(0).standard_normal((3, 2)), requires_grad=True),
                          mode="complete")[1].sum().backward(),
]


@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_errors_match_pytorch(k):
    torch = _torch()
    theirs = _message(lambda: ERRORS[k](torch))
    ours = _message(lambda: ERRORS[k](engine))
    assert theirs is not None
    assert ours == theirs


_NAN = np.array([[np.nan, 1.0], [1.0, 1.0]])
_OK = np.array([[2.0, 1.0], [1.0, 3.0]])
NONFINITE = [
    (lambda m, A: m.linalg.svd(A), _NAN),
    (lambda m, A: m.linalg.svdvals(A), np.stack([_OK, _NAN])),
    (lambda m, A: m.linalg.det(A), _NAN),
    (lambda m, A: m.linalg.slogdet(A), np.stack([_NAN, _OK])),
    (lambda m, A: m.linalg.inv(A), np.stack([_OK, _NAN])),
    (lambda m, A: m.linalg.solve(A, m.ones(2, dtype=A.dtype)), _NAN),
    (lambda m, A: m.linalg.solve(m.eye(2, dtype=A.dtype), A), _NAN),
    (lambda m, A: m.linalg.cholesky(A), np.array([[4.0, 1.0], [1.0, np.nan]])),
]


@pytest.mark.parametrize("k", range(len(NONFINITE)))
def test_nonfinite_inputs_as_pytorch(k):
    """A NaN in a matrix: PyTorch's NaN results or its LinAlgError, never numpy's exceptions or
    its numbers (numpy's det of a NaN matrix is 0). (qr is left out: LAPACK builds differ in where
    a NaN spreads.)"""
    torch = _torch()
    fn, a = NONFINITE[k]
    res = []
    for m in (engine, torch):
        try:
            out = fn(m, m.tensor(a))
        except Exception as e:  # noqa: BLE001 - compared
            res.append((type(e).__name__, str(e)))
            continue
        outs = out if isinstance(out, tuple) else (out,)
        res.append([np.isnan(o.numpy()).tolist() for o in outs] +
                   [np.nan_to_num(o.numpy(), nan=7.0).round(6).tolist() for o in outs])
    assert res[0] == res[1]


def test_saved_tensor_hooks_see_a_multi_output_nodes_saves():
    """slogdet/svd record through apply_multi, which skipped saved_tensors_hooks (pack was never
    called; PyTorch calls it). Pack runs at save time, unpack before the backward uses them, and
    the gradient is the closed form: d logabsdet / dA = A^-T."""
    import numpy as np
    import engine
    packed, unpacked = [], []
    A = engine.tensor([[2.0, 1.0], [1.0, 3.0]], requires_grad=True)
    with engine.autograd.graph.saved_tensors_hooks(lambda t: (packed.append(1), t * 1)[1],
                                                   lambda t: (unpacked.append(1), t)[1]):
        _, logabsdet = engine.linalg.slogdet(A)
    assert packed and not unpacked
    logabsdet.backward()
    assert unpacked
    assert np.allclose(A.grad.numpy(), np.linalg.inv(A.detach().numpy()).T, rtol=1e-14)
