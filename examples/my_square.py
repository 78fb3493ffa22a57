"""The lesson's custom Function: y = x**2 with a hand-written backward.

    autograd grad examples/my_square.py --func MySquare --x 3
    autograd check examples/my_square.py --func MySquare
"""
import engine as torch


class MySquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 2

    @staticmethod
    def backward(ctx, grad_output):
        x, = ctx.saved_tensors
        return grad_output * (2 * x)


def f(x):
    return MySquare.apply(x).sum()


inputs = {"x": [1.0, 2.0, 3.0]}
