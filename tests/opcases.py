"""Inputs for registry-driven tests: each op's samples turned into concrete arrays."""
import numpy as np

import engine
from engine.ops import REGISTRY


def draw(domain, shape, rng):
    if domain == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "nonzero":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    if domain == "kinkfree":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)
    if domain == "probability":
        return rng.uniform(0.05, 0.95, shape)
    if domain == "unit":
        return rng.uniform(-0.9, 0.9, shape)
    return rng.standard_normal(shape)


def _is_shape(s):
    return isinstance(s, tuple) and all(isinstance(v, int) for v in s)


def make_inputs(op, spec, seed=0, margin=1e-2):
    """Arrays for one sample: a list whose items are arrays, numbers or lists of arrays."""
    rng = np.random.default_rng(seed)
    shapes, kwargs = spec
    for _ in range(50):
        args = []
        tensor_i = 0
        for s in shapes:
            dom = op.domain[min(tensor_i, len(op.domain) - 1)]
            if _is_shape(s):
                args.append(np.asarray(draw(dom, s, rng), dtype=np.float64))
                tensor_i += 1
            elif isinstance(s, tuple):
                args.append([np.asarray(draw(dom, p, rng), dtype=np.float64) for p in s])
            else:
                args.append(s)
        if op.kinks is None:
            return args, kwargs
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        dists = op.kinks(*arrays, **kwargs)
        if all(np.all(np.abs(d) > margin) for d in dists):
            return args, kwargs
    raise AssertionError(f"could not draw inputs away from {op.name}'s kinks")


def to_tensors(args, requires_grad=True, module=engine):
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            out.append(module.tensor(a, requires_grad=requires_grad))
        elif isinstance(a, list):
            out.append([module.tensor(v, requires_grad=requires_grad) for v in a])
        else:
            out.append(a)
    return out


def leaves(tensors):
    res = []
    for t in tensors:
        if isinstance(t, list):
            res.extend(t)
        elif hasattr(t, "requires_grad") and not isinstance(t, (int, float)):
            res.append(t)
    return res


def cases(differentiable=True):
    for name, op in sorted(REGISTRY.items()):
        if op.differentiable != differentiable:
            continue
        for k, spec in enumerate(op.samples):
            yield pytest_param(name, k, spec)


def pytest_param(name, k, spec):
    import pytest
    return pytest.param(name, k, spec, id=f"{name}-{k}")
