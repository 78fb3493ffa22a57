"""A custom Function whose backward is off by 0.1 %: within PyTorch's default tolerance
(rtol=1e-3), so gradcheck passes it; `autograd check` calls it suspicious, because the gap is
about a billion times the finite-difference error (use --strict to make that exit 1).

    autograd check examples/slightly_off.py --func Sin --x 0.5,1,2
"""
import engine as torch


class Sin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * x.cos() * 1.001       # the bug: 0.1 % too large
