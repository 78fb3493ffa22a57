"""nn.Module hooks as PyTorch runs them (engine/nn/hooks.py): forward pre-hooks and forward hooks
(with_kwargs, prepend, a returned value replacing the input or output), full backward hooks and
backward pre-hooks (what they receive, a returned gradient replacing it, the invalid-count error,
PyTorch's warning when no input requires grad), and handles that remove them."""
import warnings

import numpy as np
import pytest

import engine


def _scenario(m):
    """Hooks on a two-layer net; returns the log of what every hook saw and the gradients."""
    nn = m.nn
    log = []
    m.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    net = Net().double()

    def shapes(ts):
        return [None if t is None else tuple(t.shape) for t in ts]

    def fwd(mod, inp, out):
        log.append(("fwd", type(mod).__name__, shapes(inp), tuple(out.shape)))

    def pre(mod, inp):
        log.append(("pre", type(mod).__name__, len(inp)))
        return (inp[0] * 2,)

    def bwd(mod, gi, go):
        log.append(("bwd", type(mod).__name__, shapes(gi), shapes(go),
                    [None if g is None else round(g.sum().item(), 9) for g in gi],
                    [round(g.sum().item(), 9) for g in go]))

    def bwd_pre(mod, go):
        log.append(("bwd_pre", type(mod).__name__, shapes(go)))
        return (go[0] * 3,)

    handles = [net.fc1.register_forward_hook(fwd), net.act.register_forward_pre_hook(pre),
               net.fc2.register_full_backward_hook(bwd), net.act.register_full_backward_hook(bwd),
               net.fc1.register_full_backward_hook(bwd), net.fc2.register_full_backward_pre_hook(bwd_pre),
               net.fc1.register_forward_hook(lambda mod, i, o: log.append(("first",)), prepend=True)]
    x = m.tensor([[0.5, -1.0, 2.0], [1.0, 0.25, -0.5]], dtype=m.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net(x).sum().backward()
    log.append(("warnings", [str(w.message)[:60] for w in caught]))
    grads = [net.fc1.weight.grad.numpy().copy()]
    x2 = x.clone().requires_grad_()
    net(x2).pow(2).sum().backward()
    grads.append(x2.grad.numpy().copy())
    for h in handles:
        h.remove()
    log.append(("removed", round(net(x).sum().item(), 9), len(log)))

    lin = nn.Linear(3, 1).double()
    lin.register_forward_hook(lambda mod, a, kw, out: log.append(("kw", sorted(kw))), with_kwargs=True)
    lin.register_forward_hook(lambda mod, a, out: out + 1)
    log.append(("replaced", round((lin(x) - lin.forward(x)).sum().item(), 9)))
    lin.register_full_backward_hook(lambda mod, gi, go: (gi[0], gi[0]))
    with pytest.raises(RuntimeError) as err:
        lin(x2).sum().backward()
    log.append(("error", str(err.value)))
    return log, grads


def test_module_hooks_match_pytorch():
    torch = pytest.importorskip("torch")
    ours, theirs = _scenario(engine), _scenario(torch)
    assert ours[0] == theirs[0]
    for a, b in zip(ours[1], theirs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_a_backward_hook_that_zeroes_grad_input_stops_the_gradient():
    """Independently of PyTorch: a hook returning zeros for the module's grad_input leaves every
    parameter upstream of it without gradient, and the pre-hook's factor scales the rest by the
    closed form (d/dW of sum(3 * (W x)) = 3 x for a linear layer without bias)."""
    nn = engine.nn
    a, b = nn.Linear(2, 2, bias=False).double(), nn.Linear(2, 1, bias=False).double()
    b.register_full_backward_hook(lambda mod, gi, go: tuple(engine.zeros_like(g) for g in gi))
    x = engine.tensor([[1.0, -2.0]], dtype=engine.float64)
    b(a(x)).sum().backward()
    assert not np.any(a.weight.grad.numpy())
    c = nn.Linear(2, 1, bias=False).double()
    c.register_full_backward_pre_hook(lambda mod, go: (go[0] * 3,))
    c(x).sum().backward()
    np.testing.assert_allclose(c.weight.grad.numpy(), 3 * x.numpy())


def test_hooks_leave_a_module_without_them_on_the_plain_call():
    lin = engine.nn.Linear(2, 2)
    h = lin.register_forward_hook(lambda *a: None)
    assert "_forward_hooks" in lin.__dict__ and len(lin._forward_hooks) == 1
    h.remove()
    assert len(lin._forward_hooks) == 0
    assert repr(h).startswith("<torch.utils.hooks.RemovableHandle object at 0x")
