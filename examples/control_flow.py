"""Python control flow builds the graph as it runs: the path taken decides the gradient.

    autograd grad examples/control_flow.py --x 0.5,-1.5,2
"""
import engine as torch


def f(x):
    y = x
    for step in range(3):
        if y.sum() > 0:
            y = torch.tanh(y) * x
        else:
            y = y - x ** 2
    return y.sum()


inputs = {"x": [0.5, -1.5, 2.0]}
