"""PyTorch's autograd API beyond backward(), on the engine: setup_context Functions, forward-mode
AD, torch.func, saved-tensor hooks and grad_fn._saved_*, post-accumulate and multi-grad hooks.
Expected values are closed forms or central differences, and PyTorch itself where installed."""
import numpy as np
import pytest

import engine
import engine.autograd.forward_ad as fwAD
from engine import func as ef

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch)")


def _x(*vals):
    return engine.tensor(list(vals))


# -- setup_context ---------------------------------------------------------------------------
class CubeSetup(engine.autograd.Function):
    @staticmethod
    def forward(x):
        return x ** 3

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * 3 * x ** 2


def test_a_setup_context_function_runs_and_checks():
    x = _x(0.5, -1.0, 2.0).requires_grad_()
    CubeSetup.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * x.detach().numpy() ** 2)
    assert engine.autograd.gradcheck(CubeSetup.apply, (x,))


# -- forward-mode AD -------------------------------------------------------------------------
@pytest.mark.parametrize("n", [5, 4100])          # beyond the backward loop's in-place threshold
def test_forward_ad_tangent_is_the_jacobian_vector_product(n):
    rng = np.random.default_rng(0)
    p, t, y = (engine.tensor(rng.standard_normal(n)) for _ in range(3))
    with fwAD.dual_level():
        d = fwAD.make_dual(p, t)
        assert fwAD.unpack_dual(d).tangent is t
        out = (d.sin() * d + y).tanh()
        primal, tangent = fwAD.unpack_dual(out)
        assert fwAD.unpack_dual(y).tangent is None
    pv, tv = p.numpy(), t.numpy()
    inner = np.sin(pv) * pv + y.numpy()
    expected = (1 - np.tanh(inner) ** 2) * (np.cos(pv) * pv + np.sin(pv)) * tv    # closed form
    np.testing.assert_allclose(tangent.numpy(), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(primal.numpy(), np.tanh(inner))
    assert primal.grad_fn is None                      # as in PyTorch: the primal carries no history


def test_a_functions_jvp_is_called_and_checked_by_gradcheck():
    calls = []

    class Exp(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.result = x.exp()
            return ctx.result

        @staticmethod
        def jvp(ctx, g):
            calls.append(1)
            return g * ctx.result

    p = _x(0.3, -0.2)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(Exp.apply(fwAD.make_dual(p, _x(1.0, 2.0))) * 3).tangent
    np.testing.assert_allclose(tangent.numpy(), 3 * np.exp(p.numpy()) * [1.0, 2.0])
    assert calls
    assert engine.autograd.gradcheck(Exp.apply, (p.requires_grad_(),), check_forward_ad=True, check_backward_ad=False)

    class Wrong(Exp):
        @staticmethod
        def jvp(ctx, g):
            return g * ctx.result * 1.01
    with pytest.raises(engine.autograd.GradcheckError, match="forward mode"):
        engine.autograd.gradcheck(Wrong.apply, (p,), check_forward_ad=True, check_backward_ad=False)


def test_make_dual_refuses_what_pytorch_refuses():
    with pytest.raises(RuntimeError, match="forward AD level"):
        fwAD.make_dual(_x(1.0), _x(1.0))
    with fwAD.dual_level(), pytest.raises(RuntimeError, match="different size"):
        fwAD.make_dual(_x(1.0, 2.0), _x(1.0))


# -- torch.func ------------------------------------------------------------------------------
def _fd(f, x, eps=1e-6):
    """Central differences of a scalar f at x (numpy in, numpy out)."""
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = eps
        g.flat[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


def test_func_transforms_match_closed_forms_and_compose():
    x = _x(0.5, 1.0, 2.0)
    xv = x.numpy()
    f = lambda t: (t.sin() * t).sum()                   # noqa: E731
    np.testing.assert_allclose(ef.grad(f)(x).numpy(), _fd(lambda v: np.sum(np.sin(v) * v), xv), rtol=1e-8)
    H = ef.hessian(f)(x).numpy()
    np.testing.assert_allclose(H, np.diag(2 * np.cos(xv) - xv * np.sin(xv)), atol=1e-12)   # f''
    np.testing.assert_allclose(ef.grad(ef.grad(lambda t: t.sin().sum()))(engine.tensor(1.0)).numpy(), -np.sin(1.0))
    out, jv = ef.jvp(lambda t: t.sin(), (x,), (_x(1.0, 2.0, 3.0),))
    np.testing.assert_allclose(jv.numpy(), np.cos(xv) * [1, 2, 3])
    out, vjp_fn = ef.vjp(lambda t: t.sin(), x)
    np.testing.assert_allclose(vjp_fn(_x(1.0, 2.0, 3.0))[0].numpy(), np.cos(xv) * [1, 2, 3])
    J = ef.jacrev(lambda a, b: a * b, argnums=(0, 1))(x, x * 2)
    np.testing.assert_allclose(J[0].numpy(), np.diag(2 * xv))
    assert ef.grad(f)(x).grad_fn is None                 # no graph carried in, none carried out


def test_vmap_of_grad_gives_per_sample_gradients():
    engine.manual_seed(0)
    net = engine.nn.Linear(3, 1)
    params = {k: v.detach() for k, v in net.named_parameters()}
    xs, ys = engine.randn(4, 3), engine.randn(4, 1)

    def loss(p, xb, yb):
        return ((ef.functional_call(net, p, (xb,)) - yb) ** 2).mean()
    per = ef.vmap(ef.grad(loss), in_dims=(None, 0, 0))(params, xs.unsqueeze(1), ys.unsqueeze(1))
    w, b = params["weight"].numpy(), params["bias"].numpy()
    for k in range(4):                                   # closed form: 2 (w.x + b - y) [x, 1]
        r = 2 * (w @ xs[k].numpy() + b - ys[k].numpy())
        np.testing.assert_allclose(per["weight"][k].numpy(), r[:, None] * xs[k].numpy()[None, :], rtol=1e-12)
        np.testing.assert_allclose(per["bias"][k].numpy(), r, rtol=1e-12)


@needs_torch
def test_func_agrees_with_pytorch():
    xv = np.array([0.3, -1.2, 2.0, 0.7])
    f_e = lambda t: (t.tanh() * t.exp()).sum()          # noqa: E731
    ours = ef.hessian(f_e)(engine.tensor(xv)).numpy()
    theirs = torch.func.hessian(lambda t: (t.tanh() * t.exp()).sum())(torch.tensor(xv)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


# -- saved tensors: grad_fn._saved_*, hooks --------------------------------------------------
def test_saved_values_are_the_tensors_pytorch_shows():
    x = engine.randn(5, requires_grad=True)
    y = x.pow(2)
    assert y.grad_fn._saved_self is x and y.grad_fn._saved_exponent == 2
    y = x.exp()
    assert y.grad_fn._saved_result is not y and y.grad_fn._saved_result.equal(y)
    with pytest.raises(AttributeError):
        (x + x).grad_fn._saved_self                       # add saves nothing
    y = x.pow(2)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="after they have already been freed"):
        y.grad_fn._saved_self


@needs_torch
def test_saved_values_match_pytorchs_names():
    xv = np.array([0.5, 1.5])
    for make in (lambda m, x: x.pow(2), lambda m, x: x.exp(), lambda m, x: x * m.ones(2, dtype=m.float64),
                 lambda m, x: m.addmm(x, m.ones(2, 2, dtype=m.float64), m.ones(2, 2, dtype=m.float64))):
        xe, xt = engine.tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
        ye, yt = make(engine, xe), make(torch, xt)
        names = [a[len("_saved_"):] for a in dir(yt.grad_fn) if a.startswith("_saved_") and "sym" not in a]
        for n in names:
            tv = getattr(yt.grad_fn, "_saved_" + n)
            if isinstance(tv, torch.Tensor):
                np.testing.assert_allclose(getattr(ye.grad_fn, "_saved_" + n).detach().numpy(), tv.detach().numpy())


@pytest.mark.parametrize("n", [5, 5000])
def test_saved_tensors_hooks_pack_at_save_and_unpack_at_use(n):
    events = []

    def pack(t):
        events.append("pack")
        return t.detach().numpy().copy()               # anything may be stored

    def unpack(a):
        events.append("unpack")
        return engine.tensor(a)

    class Sq(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 2 * g * x

    a = engine.randn(n, requires_grad=True)
    b = engine.randn(n, requires_grad=True)
    with engine.autograd.graph.saved_tensors_hooks(pack, unpack):
        y = (a * b).exp() + Sq.apply(a)
    assert events == ["pack"] * 4 and not engine.grad_mode.STATE.saved_hooks   # a, b, exp's result, Sq's x
    y.sum().backward()
    assert events.count("unpack") == 4
    av, bv = a.detach().numpy(), b.detach().numpy()
    np.testing.assert_allclose(a.grad.numpy(), np.exp(av * bv) * bv + 2 * av, rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), np.exp(av * bv) * av, rtol=1e-12)


def test_raw_saved_register_hooks():
    events = []
    x = engine.randn(4, requires_grad=True)
    y = x.pow(2)
    y.grad_fn._raw_saved_self.register_hooks(lambda t: events.append("pack") or t * 1,
                                             lambda t: events.append("unpack") or t)
    y.sum().backward()
    assert events == ["pack", "unpack"]
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy())


def test_post_accumulate_and_multi_grad_hooks():
    seen = []
    w = engine.ones(2, requires_grad=True)
    w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.numpy().copy()))
    (w * 3).sum().backward()
    np.testing.assert_allclose(seen[0], [3.0, 3.0])
    p, q = engine.ones(2, requires_grad=True), engine.ones(2, requires_grad=True)
    got = []
    handle = engine.autograd.graph.register_multi_grad_hook((p, q), lambda gs: got.append(gs))
    (p * 2 + q).sum().backward()
    (p * 5).sum().backward()
    assert len(got) == 2
    np.testing.assert_allclose(got[0][0].numpy(), [2, 2])
    np.testing.assert_allclose(got[0][1].numpy(), [1, 1])
    assert got[1][1] is None and np.allclose(got[1][0].numpy(), [5, 5])
    handle.remove()
    (p * 2).sum().backward()
    assert len(got) == 2


def test_func_transforms_ask_of_custom_functions_what_pytorch_asks():
    class OldStyle(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2
    with pytest.raises(RuntimeError, match="must override the setup_context staticmethod"):
        ef.grad(lambda t: OldStyle.apply(t).sum())(_x(1.0))
    with pytest.raises(RuntimeError, match="does not have vmap support"):
        ef.vmap(CubeSetup.apply)(_x(1.0, 2.0))

    class Vmappable(CubeSetup):
        generate_vmap_rule = True
    np.testing.assert_allclose(ef.vmap(Vmappable.apply)(_x(1.0, 2.0)).numpy(), [1.0, 8.0])
    np.testing.assert_allclose(ef.grad(lambda t: CubeSetup.apply(t).sum())(_x(1.0, 2.0)).numpy(), [3.0, 12.0])
    assert OldStyle.apply(_x(1.0)).item() == 2.0          # outside a transform: anything goes


def test_inference_tensors_track_no_version():
    with engine.inference_mode():
        made = [engine.ones(2), engine.tensor([1.0]), engine.ones(2) * 2, engine.ones(2).exp()]
    for t in made:
        assert t.is_inference()
        with pytest.raises(RuntimeError, match="Inference tensors do not track version counter"):
            t._version
    plain = engine.ones(2)
    assert not plain.is_inference() and plain._version == 0
    with engine.no_grad():
        assert not engine.ones(2).is_inference()


def test_jvp_with_create_graph_records_pytorchs_nodes():
    # PyTorch: the double backward of unsqueeze is a squeeze (SqueezeBackward1), not a view
    x = engine.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    _, jv = engine.autograd.functional.jvp(lambda t: (t * t).sum(0), x, engine.ones_like(x), create_graph=True)
    assert jv.grad_fn.name() == "SqueezeBackward1"
    np.testing.assert_allclose(jv.detach().numpy(), [2 * (1 + 3), 2 * (2 + 4)])
