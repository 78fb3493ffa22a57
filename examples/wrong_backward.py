"""A custom Function whose backward is wrong by 1 %: `autograd check` finds and names it (exit 1).

    autograd check examples/wrong_backward.py --func Cube --x 1,2,3
"""
import engine as torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * 3 * x ** 2 * 1.01     # the bug: should be g * 3 * x**2
