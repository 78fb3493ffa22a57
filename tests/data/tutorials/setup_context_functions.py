"""Custom Functions in PyTorch 2's style (setup_context, several outputs, a jvp), checked with
gradcheck, used in a module, and under torch.func. (Written for these tests, in the style of
PyTorch's "Extending PyTorch" notes.)"""
import torch
import torch.nn as nn
from torch.autograd import Function, gradcheck


class LinearFn(Function):
    @staticmethod
    def forward(input, weight, bias):
        return input.mm(weight.t()) + bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias = inputs
        ctx.save_for_backward(input, weight)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_output.mm(weight) if ctx.needs_input_grad[0] else None
        grad_weight = grad_output.t().mm(input) if ctx.needs_input_grad[1] else None
        return grad_input, grad_weight, grad_output.sum(0)


class CubeWithSlope(Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x ** 3, 3 * x ** 2

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, = inputs
        ctx.save_for_backward(x, output[1])

    @staticmethod
    def backward(ctx, grad_out, grad_slope):
        x, slope = ctx.saved_tensors
        return grad_out * slope + grad_slope * 6 * x


def cube(x):
    return CubeWithSlope.apply(x)[0]


class Scale(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(n) * 2)
        self.bias = nn.Parameter(torch.arange(float(n)))

    def forward(self, x):
        return LinearFn.apply(x, self.weight, self.bias)


x = torch.tensor([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]], dtype=torch.float64, requires_grad=True)
w = torch.tensor([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0]], dtype=torch.float64, requires_grad=True)
b = torch.tensor([0.1, -0.2], dtype=torch.float64, requires_grad=True)
print(gradcheck(LinearFn.apply, (x, w, b)))
v = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
print(gradcheck(cube, (v,)), torch.autograd.gradgradcheck(cube, (v,)))
m = Scale(3)
out = m(x.detach().float()).sum()
out.backward()
print(out, m.weight.grad, m.bias.grad)
print(torch.func.grad(lambda t: cube(t).sum())(v.detach()))
print(torch.func.vmap(cube)(torch.tensor([[1.0, 2.0], [3.0, 4.0]])))
print(torch.func.jacrev(cube)(torch.tensor([1.0, -1.0])))
