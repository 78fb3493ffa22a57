"""F.conv_transpose2d and nn.ConvTranspose2d (issue 23): the adjoint identity with conv2d and
finite differences without torch; PyTorch's values, gradients (input, weight, bias), shapes and
error messages as the oracle (skipped without it)."""
import numpy as np
import pytest

import engine
import engine.nn.functional as F

rng = np.random.default_rng(5)

# (N or None for unbatched, C_in, H, W, C_out per group, kernel, stride, padding, output_padding, groups,
#  dilation, bias)
CASES = [
    (2, 4, 5, 5, 3, 3, 1, 0, 0, 1, 1, True),
    (1, 4, 5, 4, 3, (3, 2), 2, 1, 1, 2, 1, True),
    (2, 6, 3, 4, 2, 3, (2, 3), (1, 2), (1, 0), 3, 1, False),
    (None, 2, 4, 4, 2, 2, 2, 0, 1, 1, 2, True),
    (1, 3, 3, 3, 2, 3, 3, 2, 2, 1, 1, False),
    (2, 2, 6, 5, 1, (2, 3), 1, (0, 1), 0, 2, (2, 1), True),
    (1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, True),
    (1, 2, 3, 3, 2, 3, 1, 3, 0, 1, 2, True),
]


def _arrays(case, dtype=np.float64):
    n, cin, h, w, og, k, stride, pad, op, groups, dil, bias = case
    k = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(((n,) if n else ()) + (cin, h, w)).astype(dtype)
    wt = rng.standard_normal((cin, og) + k).astype(dtype)
    b = rng.standard_normal(og * groups).astype(dtype) if bias else None
    return x, wt, b, dict(stride=stride, padding=pad, output_padding=op, groups=groups, dilation=dil)


@pytest.mark.parametrize("k", range(len(CASES)))
def test_adjoint_of_conv2d(k):
    """<conv_transpose2d(x, W), y> = <x, conv2d(y, W)> with the same stride, padding, groups and
    dilation (conv2d is the engine's other, independent composite)."""
    x, wt, _, kw = _arrays(CASES[k])
    X, W = engine.tensor(x), engine.tensor(wt)
    out = F.conv_transpose2d(X, W, **kw)
    y = rng.standard_normal(out.shape)
    conv_kw = {key: kw[key] for key in ("stride", "padding", "groups", "dilation")}
    back = F.conv2d(engine.tensor(y), W, **conv_kw)
    if back.shape != X.shape:     # output_padding rows that no kernel reads: conv2d sees a prefix
        back = back[(Ellipsis,) + tuple(slice(0, s) for s in X.shape[-2:])]
    np.testing.assert_allclose(np.sum(out.numpy() * y), np.sum(x * back.numpy()), rtol=1e-10)


def test_finite_differences_input_weight_bias():
    x, wt, b, kw = _arrays((1, 4, 3, 3, 1, (2, 3), 2, (1, 0), (1, 1), 2, 1, True))
    arrays = [x, wt, b]
    ts = [engine.tensor(a, requires_grad=True) for a in arrays]
    out = F.conv_transpose2d(*ts, **kw)
    r = rng.standard_normal(out.shape)
    (out * engine.tensor(r)).sum().backward()
    for t, a in zip(ts, arrays):
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            vals = []
            for step in (1e-6, -1e-6):
                a[i] = old + step
                vals.append(np.sum(F.conv_transpose2d(*[engine.tensor(v) for v in arrays], **kw).numpy() * r))
            a[i] = old
            num[i] = (vals[0] - vals[1]) / 2e-6
        np.testing.assert_allclose(t.grad.numpy(), num, atol=1e-5, rtol=1e-3)


def test_module():
    engine.manual_seed(0)
    m = engine.nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2, dilation=2)
    assert m.weight.shape == (4, 3, 3, 2) and m.bias.shape == (6,)
    assert np.abs(m.weight.detach().numpy()).max() <= 1 / np.sqrt(3 * 3 * 2)
    y = m(engine.randn(2, 4, 5, 5))
    assert y.shape == (2, 6, 12, 10)        # (5 - 1) * 2 - 2 * 1 + 2 * (k - 1) + 1 + 1 for k = 3, 2
    y.sum().backward()
    assert m.weight.grad.shape == m.weight.shape and m.bias.grad.shape == (6,)


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("k", range(len(CASES)))
def test_matches_pytorch(k, dtype):
    torch = _torch()
    x, wt, b, kw = _arrays(CASES[k], np.dtype(dtype))
    res = []
    for m, fn in ((engine, F.conv_transpose2d), (torch, torch.nn.functional.conv_transpose2d)):
        ins = [m.tensor(a, requires_grad=True) for a in (x, wt)] + ([m.tensor(b, requires_grad=True)] if b is not None
                                                                   else [None])
        y = fn(*ins, **kw)
        g = np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(dtype)
        (y * m.tensor(g)).sum().backward()
        res.append([y.detach().numpy()] + [t.grad.numpy() for t in ins if t is not None])
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=1e-4, atol=1e-4)
    assert res[0][0].dtype == res[1][0].dtype
    for what, a, t in zip(("output", "input grad", "weight grad", "bias grad"), *res):
        assert a.shape == t.shape, what
        np.testing.assert_allclose(a, t, err_msg=what, **tol)


def test_large_output_matches_pytorch():
    """2 x 4 x 24 x 24 = 4608 output elements, past the loop's 4096-element threshold."""
    torch = _torch()
    x, wt, b, kw = _arrays((2, 3, 11, 11, 4, 4, 2, 1, 0, 1, 1, True))
    res = []
    for m, fn in ((engine, F.conv_transpose2d), (torch, torch.nn.functional.conv_transpose2d)):
        ins = [m.tensor(a, requires_grad=True) for a in (x, wt, b)]
        y = fn(*ins, **kw)
        assert tuple(y.shape) == (2, 4, 22, 22) or y.numel() >= 4096
        y.sin().sum().backward()
        res.append([y.detach().numpy()] + [t.grad.numpy() for t in ins])
    for a, t in zip(*res):
        np.testing.assert_allclose(a, t, rtol=1e-10, atol=1e-10)


def test_module_repr_matches_pytorch():
    torch = _torch()
    for args, kw in (((4, 6, 3), {}), ((4, 6, (3, 2)), dict(stride=2, padding=1, output_padding=1, groups=2,
                                                            bias=False, dilation=2))):
        assert repr(engine.nn.ConvTranspose2d(*args, **kw)) == repr(torch.nn.ConvTranspose2d(*args, **kw))


ERRORS = [
    lambda m, F: F.conv_transpose2d(m.ones(1, 4, 5, 5), m.ones(3, 2, 3, 3)),
    lambda m, F: F.conv_transpose2d(m.ones(1, 3, 5, 5), m.ones(3, 2, 3, 3), stride=2, output_padding=2),
    lambda m, F: F.conv_transpose2d(m.ones(5, 5), m.ones(3, 2, 3, 3)),
    lambda m, F: F.conv_transpose2d(m.ones(1, 3, 5, 5), m.ones(3, 2, 3)),
    lambda m, F: F.conv_transpose2d(m.ones(1, 4, 5, 5), m.ones(4, 2, 3, 3), groups=3),
    lambda m, F: F.conv_transpose2d(m.ones(1, 3, 1, 1), m.ones(3, 2, 3, 3), padding=2),
    lambda m, F: F.conv_transpose2d(m.ones(1, 3, 5, 5), m.ones(3, 2, 3, 3), bias=m.ones(3)),
    lambda m, F: F.conv_transpose2d(m.ones(1, 3, 5, 5), m.ones(3, 2, 3, 3), padding=-1),
    lambda m, F: F.conv_transpose2d(m.ones(1, 3, 5, 5), m.ones(3, 2, 3, 3), stride=0),
]


@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_errors_match_pytorch(k):
    torch = _torch()

    def msg(m, fns):
        try:
            ERRORS[k](m, fns)
        except Exception as e:  # noqa: BLE001 - the message is what is compared
            return type(e).__name__, str(e).split("\n")[0]
        return None
    theirs = msg(torch, torch.nn.functional)
    assert theirs is not None
    assert msg(engine, F) == theirs
