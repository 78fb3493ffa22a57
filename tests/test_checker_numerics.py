"""The checker's numerical side is central differences, (f(x+eps) - f(x-eps)) / 2eps, in both
modes: pinned on x**3, where central and one-sided differences differ by far more than the
tolerance used here (central: 3x^2 + eps^2; forward: 3x^2 + 3x eps + eps^2)."""
import numpy as np
import pytest

import engine
from engine.autograd.checker import _numerical, check_gradients

EPS = 1e-2


def cube(x):
    return x ** 3


def test_numerical_jacobian_is_the_central_difference():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    (jac,) = _numerical(cube, (x,), 0, EPS)
    x0 = np.array([1.0, 2.0])
    central = ((x0 + EPS) ** 3 - (x0 - EPS) ** 3) / (2 * EPS)      # = 3x^2 + eps^2
    np.testing.assert_allclose(np.diag(jac), central, rtol=1e-12)
    np.testing.assert_allclose(np.diag(jac), 3 * x0 ** 2 + EPS ** 2, rtol=1e-12)
    assert jac[0, 1] == 0 and jac[1, 0] == 0
    forward = ((x0 + EPS) ** 3 - x0 ** 3) / EPS
    assert np.all(np.abs(np.diag(jac) - forward) > 0.02)          # not one-sided


@pytest.mark.parametrize("fast", [False, True])
def test_both_modes_accept_exactly_the_central_error(fast):
    """The analytical 3x^2 is off the central difference by eps^2 = 1e-4 at x = 1 (and by
    3x eps = 0.03 from a forward difference): atol 2e-4 passes, 5e-5 fails."""
    x = engine.tensor(1.0, requires_grad=True)
    assert check_gradients(cube, (x,), eps=EPS, atol=2e-4, rtol=0.0, fast_mode=fast).passed
    assert not check_gradients(cube, (x,), eps=EPS, atol=5e-5, rtol=0.0, fast_mode=fast).passed


@pytest.mark.parametrize("fn,values,where", [
    (lambda x: x * 10, 1e308, "x"),                       # x*10 is inf at x +- eps: inf - inf is NaN
    (lambda x: x.exp(), 1000.0, "x"),
    (lambda x: x.exp().sum(), [1000.0, 1.0], "x[0]"),
    (lambda x: (x * x).sum(), [1e200, 1.0], "x[0]"),
])
def test_an_overflow_is_called_an_overflow_not_the_domain(fn, values, where):
    x = engine.tensor(values, requires_grad=True)
    assert not np.all(np.isfinite(fn(x).detach().numpy()))               # the value itself overflowed
    report = check_gradients(fn, (x,), input_names=["x"])
    assert not report.passed
    first = report.failures[0]
    assert first.startswith(f"the function overflowed at {where}"), first
    assert "beyond the largest float64 number (1.8e+308)" in first and "domain" not in first


@pytest.mark.parametrize("fn,values", [(lambda x: x.sqrt().sum(), [0.0, 1.0]), (lambda x: x.log(), 0.0)])
def test_leaving_the_domain_is_still_the_domain(fn, values):
    report = check_gradients(fn, (engine.tensor(values, requires_grad=True),), input_names=["x"])
    assert "left the function's domain" in report.failures[0] and "overflow" not in report.failures[0]
