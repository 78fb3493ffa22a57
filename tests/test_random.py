"""After torch.manual_seed(s), the engine draws the numbers PyTorch draws (engine/_random.py):
randn on both of PyTorch's paths (fewer than 16 elements: Box-Muller pairs with a cached sine
sample; 16 or more: blocks of 16, a remainder re-drawn), rand, randint, randperm, normal_,
uniform_, and the initial weights of nn.Linear and nn.Conv2d."""
import numpy as np
import pytest

import engine

try:
    import torch
except ImportError:
    torch = None


def test_known_values_without_pytorch():
    # PyTorch 2.x: torch.manual_seed(0); torch.randn(3) -> tensor([ 1.5410, -0.2934, -2.1788])
    engine.manual_seed(0)
    np.testing.assert_allclose(engine.randn(3).numpy(), [1.5409961, -0.2934289, -2.1787894], rtol=1e-6)


def test_the_same_seed_gives_the_same_numbers_and_another_does_not():
    engine.manual_seed(7)
    a = engine.randn(40).numpy()
    engine.manual_seed(7)
    assert np.array_equal(a, engine.randn(40).numpy())
    engine.manual_seed(8)
    assert not np.array_equal(a, engine.randn(40).numpy())


CASES = [
    ("randn 3", lambda m: m.randn(3)), ("randn 5 twice", lambda m: m.stack([m.randn(5), m.randn(5)])),
    ("randn 16", lambda m: m.randn(16)), ("randn 4x5 (remainder)", lambda m: m.randn(4, 5)),
    ("randn 1000", lambda m: m.randn(1000)), ("randn float64", lambda m: m.randn(3, 7, dtype=m.float64)),
    ("randn float64 small", lambda m: m.randn(5, dtype=m.float64)), ("rand", lambda m: m.rand(2, 9)),
    ("rand float64", lambda m: m.rand(11, dtype=m.float64)), ("randint", lambda m: m.randint(-3, 7, (12,))),
    ("randperm", lambda m: m.randperm(50)), ("normal_", lambda m: m.empty(33).normal_(2.0, 0.5)),
    ("uniform_", lambda m: m.empty(3, 3).uniform_(-2, 3)),
    ("Linear", lambda m: m.cat([p.detach().reshape(-1) for p in m.nn.Linear(7, 5).parameters()])),
    ("Conv2d", lambda m: m.cat([p.detach().reshape(-1) for p in m.nn.Conv2d(2, 3, 3).parameters()])),
    ("normal(mean, std, size)", lambda m: m.normal(1.0, 3.0, size=(4,))),
    # a default-dtype tensor's *_like draws PyTorch's float32 stream (they drew its float64 one)
    ("rand_like", lambda m: m.stack([m.rand_like(m.zeros(5)), m.rand(5)])),
    ("randn_like Parameter", lambda m: m.cat([m.randn_like(m.nn.Parameter(m.zeros(20))), m.randn(3)])),
    ("randn_like float64", lambda m: m.randn_like(m.zeros(6, dtype=m.float64), dtype=m.float64)),
]


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch)")
@pytest.mark.parametrize("seed", [0, 1234, 2 ** 40 + 5])
@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_draws_match_pytorch(seed, name, make):
    torch.manual_seed(seed)
    engine.manual_seed(seed)
    theirs = make(torch).detach().numpy()
    ours = make(engine).detach().numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=2e-7)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed (pip install torch)")
@pytest.mark.parametrize("seed", [0, 7, 1234])
@pytest.mark.parametrize("name", ["uniform_", "Linear", "Conv2d"])
def test_uniform_draws_are_pytorchs_bit_for_bit(seed, name):
    """uniform_ with bounds that are not float32 numbers, and the layers' initial weights drawn
    by it, equal PyTorch's float32 values exactly (the float32 kernel: bounds in float32, the
    draw scaled in double, stored as float32); a float32 multiply was one ulp off."""
    make = dict(CASES)[name] if name != "uniform_" else (lambda m: m.empty(40, 30).uniform_(-0.3, 0.7))
    torch.manual_seed(seed)
    engine.manual_seed(seed)
    theirs = make(torch).detach().double().numpy()
    np.testing.assert_array_equal(make(engine).detach().numpy(), theirs)
