"""A small MLP loss with its inputs in an `inputs` dict: check the gradients of every weight.

    autograd check examples/mlp.py --wrt W1,b1,W2
    autograd graph examples/mlp.py -o mlp.svg
"""
import numpy as np

import engine as torch

rng = np.random.default_rng(0)
inputs = {
    "X": rng.standard_normal((4, 3)),
    "W1": rng.standard_normal((3, 5)) * 0.5,
    "b1": np.zeros(5),
    "W2": rng.standard_normal((5, 2)) * 0.5,
    "Y": rng.standard_normal((4, 2)),
}


def f(X, W1, b1, W2, Y):
    hidden = torch.tanh(X @ W1 + b1)
    return ((hidden @ W2 - Y) ** 2).mean()
