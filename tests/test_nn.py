"""engine.nn and engine.optim: Module bookkeeping, layers, losses and optimizers. Closed forms
always; with PyTorch installed, the same network (same weights, same data) is trained on both
and every parameter must agree after every step."""
import numpy as np
import pytest

import engine


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def test_module_registers_parameters_and_modules_in_order():
    class Net(engine.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = engine.nn.Sequential(engine.nn.Linear(3, 4), engine.nn.Tanh(), engine.nn.Linear(4, 2))
            self.scale = engine.nn.Parameter(engine.tensor(2.0))
            self.note = "not a parameter"

        def forward(self, x):
            return self.body(x) * self.scale
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "body.0.weight", "body.0.bias",
                                                      "body.2.weight", "body.2.bias"]
    assert list(net.state_dict()) == [n for n, _ in net.named_parameters()]
    assert all(p.requires_grad and p.is_leaf for p in net.parameters())
    assert net.training and not net.eval().training and not net.body[1].training and net.train().training
    out = net(engine.randn(5, 3))
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert repr(net.body) == ("Sequential(\n  (0): Linear(in_features=3, out_features=4, bias=True)\n"
                              "  (1): Tanh()\n  (2): Linear(in_features=4, out_features=2, bias=True)\n)")


def test_linear_is_x_wt_plus_b_and_sgd_is_p_minus_lr_g():
    lin = engine.nn.Linear(3, 2)
    w, b = lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy()
    x = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(lin(engine.tensor(x)).detach().numpy(), x @ w.T + b, rtol=1e-14)
    opt = engine.optim.SGD(lin.parameters(), lr=0.5)
    lin(engine.tensor(x)).sum().backward()
    opt.step()
    np.testing.assert_allclose(lin.weight.detach().numpy(), w - 0.5 * np.ones((2, 1)) * x, rtol=1e-14)
    np.testing.assert_allclose(lin.bias.detach().numpy(), b - 0.5, rtol=1e-14)


def test_losses_match_their_formulas():
    logits = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]])
    target = np.array([1, 2])
    lse = np.log(np.exp(logits).sum(1))
    ce = engine.nn.CrossEntropyLoss()(engine.tensor(logits), engine.tensor(target)).item()
    assert ce == pytest.approx(np.mean(lse - logits[[0, 1], target]), rel=1e-13)
    z = np.array([-2.0, 0.0, 3.0])
    y = np.array([0.0, 1.0, 1.0])
    bce = engine.nn.BCEWithLogitsLoss()(engine.tensor(z), engine.tensor(y)).item()
    assert bce == pytest.approx(np.mean(np.log1p(np.exp(-z)) + (1 - y) * z), rel=1e-13)
    zt = engine.tensor(z, requires_grad=True)
    engine.nn.functional.binary_cross_entropy_with_logits(zt, engine.tensor(y), reduction="sum").backward()
    np.testing.assert_allclose(zt.grad.numpy(), 1 / (1 + np.exp(-z)) - y, rtol=1e-13)   # sigmoid(z) - y, z=0 too


def _train(t, net_fn, opt_fn, loss_fn, weights, x, y, steps=4):
    net = net_fn(t)
    with t.no_grad():
        for p, w in zip(net.parameters(), weights):
            p.copy_(t.tensor(w, dtype=t.float64))
    opt = opt_fn(t, net.parameters())
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(t)(net(t.tensor(x, dtype=t.float64)), t.tensor(y))
        loss.backward()
        opt.step()
        history.append([p.detach().numpy().copy() for p in net.parameters()])
    return history


NETS = {"mlp": lambda t: t.nn.Sequential(t.nn.Linear(3, 5), t.nn.ReLU(), t.nn.Linear(5, 3)).double()}
OPTS = {
    "sgd": lambda t, ps: t.optim.SGD(ps, lr=0.1),
    "sgd_momentum_wd": lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01, dampening=0.1),
    "sgd_nesterov": lambda t, ps: t.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
    "adam": lambda t, ps: t.optim.Adam(ps, lr=0.01),
    "adam_wd_amsgrad": lambda t, ps: t.optim.Adam(ps, lr=0.02, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True),
    "adamw": lambda t, ps: t.optim.AdamW(ps, lr=0.02, weight_decay=0.1),
    "rmsprop": lambda t, ps: t.optim.RMSprop(ps, lr=0.01),
    "rmsprop_centered_momentum": lambda t, ps: t.optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True,
                                                               weight_decay=0.01),
    "adagrad": lambda t, ps: t.optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.01),
}
LOSSES = {
    "cross_entropy": (lambda t: t.nn.CrossEntropyLoss(), "classes"),
    "nll": (lambda t: (lambda out, y: t.nn.NLLLoss()(t.nn.functional.log_softmax(out, dim=1), y)), "classes"),
    "mse": (lambda t: t.nn.MSELoss(), "values"),
    "bce_logits": (lambda t: t.nn.BCEWithLogitsLoss(reduction="sum"), "binary"),
}


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("opt", sorted(OPTS))
def test_training_matches_pytorch_step_for_step(opt, loss):
    torch = _torch()
    if torch is None:
        pytest.skip("PyTorch is not installed (.ci/run installs it)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3))
    loss_fn, kind = LOSSES[loss]
    y = {"classes": rng.integers(0, 3, 6), "values": rng.standard_normal((6, 3)),
         "binary": rng.integers(0, 2, (6, 3)).astype(np.float64)}[kind]
    weights = [rng.standard_normal((5, 3)) * 0.5, rng.standard_normal(5) * 0.1,
               rng.standard_normal((3, 5)) * 0.5, rng.standard_normal(3) * 0.1]
    ours = _train(engine, NETS["mlp"], OPTS[opt], loss_fn, weights, x, y)
    theirs = _train(torch, NETS["mlp"], OPTS[opt], loss_fn, weights, x, y)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for k, (pa, pb) in enumerate(zip(a, b)):
            np.testing.assert_allclose(pa, pb, rtol=1e-10, atol=1e-12, err_msg=f"step {step} parameter {k}")


def test_zero_grad_sets_none_or_zeroes_in_place():
    lin = engine.nn.Linear(2, 2)
    opt = engine.optim.SGD(lin.parameters(), lr=0.1)
    lin(engine.ones(1, 2)).sum().backward()
    g = lin.weight.grad
    opt.zero_grad(set_to_none=False)
    assert lin.weight.grad is g and not g.numpy().any()          # the same tensor, zeroed
    lin(engine.ones(1, 2)).sum().backward()
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None


EXTRAS = {
    "smooth_l1": lambda m: m.nn.functional.smooth_l1_loss(m.randn(5, requires_grad=True), m.randn(5)),
    "huber": lambda m: m.nn.functional.huber_loss(m.randn(5, requires_grad=True), m.randn(5), delta=0.5),
    "kl_div": lambda m: m.nn.functional.kl_div(m.nn.functional.log_softmax(m.randn(3, 4, requires_grad=True), 1),
                                              m.nn.functional.softmax(m.randn(3, 4), 1), reduction="batchmean"),
    "cosine_similarity": lambda m: m.nn.functional.cosine_similarity(m.randn(3, 4, requires_grad=True), m.randn(3, 4)),
    "layer_norm": lambda m: m.nn.LayerNorm(4)(m.randn(2, 4, requires_grad=True)),
    "embedding": lambda m: m.nn.Embedding(5, 3)(m.tensor([[0, 4], [2, 2]])),
    "logsigmoid": lambda m: m.nn.functional.logsigmoid(m.randn(4, requires_grad=True) * 30),
    "conv2d_module": lambda m: m.nn.Conv2d(2, 3, 3, stride=2, padding=1)(m.randn(1, 2, 7, 7, requires_grad=True)),
    "maxpool": lambda m: m.nn.MaxPool2d(2)(m.randn(1, 2, 6, 6, requires_grad=True)),
    "gelu_module": lambda m: m.nn.GELU(approximate="tanh")(m.randn(5, requires_grad=True)),
    "bce_weighted": lambda m: m.nn.BCEWithLogitsLoss(pos_weight=m.tensor([2.0, 0.5]))(
        m.randn(3, 2, requires_grad=True), m.rand(3, 2)),
    "cross_entropy_probs": lambda m: m.nn.functional.cross_entropy(
        m.randn(3, 4, requires_grad=True), m.nn.functional.softmax(m.randn(3, 4), 1)),
    "cross_entropy_ignore": lambda m: m.nn.CrossEntropyLoss(ignore_index=1)(m.randn(3, 4, requires_grad=True),
                                                                            m.tensor([0, 1, 3])),
}


@pytest.mark.parametrize("name", sorted(EXTRAS))
def test_more_layers_and_losses_match_pytorch(name):
    """Seeded the same (engine/_random.py draws PyTorch's numbers), run on both: the same values,
    and the same gradient for the leaf the case creates first."""
    torch = pytest.importorskip("torch")
    outs = []
    for m in (torch, engine):
        m.manual_seed(0)
        leaves = []
        real = m.randn

        def randn(*a, **k):
            t = real(*a, **k)
            if k.get("requires_grad"):
                leaves.append(t)
            return t
        m.randn = randn
        try:
            y = EXTRAS[name](m)
        finally:
            m.randn = real
        params = list(leaves)
        if y.requires_grad:
            y.sum().backward()
        outs.append((y.detach().numpy(), [p.grad.numpy() for p in params if p.grad is not None]))
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-6)
    assert len(outs[1][1]) == len(outs[0][1])
    for a, b in zip(outs[1][1], outs[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
