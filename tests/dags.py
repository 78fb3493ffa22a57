"""Random computation graphs for backward-loop tests: each step combines two earlier values
(leaves or results), so gradients fan in and out, edges are shared, and AddBackward0 hands
one array to several consumers."""
import numpy as np
from hypothesis import strategies as st

import engine

OPS = {
    "add": lambda a, b: a + b, "mul": lambda a, b: a * b, "sub": lambda a, b: a - b,
    "tanh": lambda a, b: a.tanh(), "sin": lambda a, b: a.sin(), "neg": lambda a, b: -a,
    "exp": lambda a, b: (a * 0.1).exp(), "scale": lambda a, b: a * 1.5,
    "sum_keep": lambda a, b: a.sum(-1, keepdim=True) + b,      # broadcasting back
    "sum_row": lambda a, b: a.sum(-1, keepdim=True) * b, "mean_all": lambda a, b: a.mean() + b,
}

# a graph: up to 12 steps (op, first operand, second operand), operands taken modulo the count
programs = st.lists(st.tuples(st.sampled_from(sorted(OPS)), st.integers(0, 50), st.integers(0, 50)),
                    min_size=1, max_size=12)


def build(ops, leaves):
    """The scalar loss of program `ops` on `leaves`: several results feed it (sum and mean)."""
    vals = list(leaves)
    for name, i, j in ops:
        vals.append(OPS[name](vals[i % len(vals)], vals[j % len(vals)]))
    results = vals[len(leaves):]
    total = results[-1].sum()
    for k, v in enumerate(results[:-1:2]):
        total = total + (v.sum() * 0.5 if k % 2 else v.mean())
    return total


def finite_differences(ops, arrays, eps=1e-6):
    """Central differences of build(ops, arrays) in float64."""
    grads = []
    for k, a in enumerate(arrays):
        g = a * 0.0
        for idx in np.ndindex(a.shape):
            vals = []
            for sign in (1, -1):
                moved = [b.copy() for b in arrays]
                moved[k][idx] += sign * eps
                with engine.no_grad():
                    vals.append(build(ops, [engine.tensor(m) for m in moved]).item())
            g[idx] = (vals[0] - vals[1]) / (2 * eps)
        grads.append(g)
    return grads
