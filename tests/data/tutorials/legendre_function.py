# A custom autograd Function in the style of the "Extending PyTorch" examples: P3(x) =
# (5x^3 - 3x) / 2 with its hand-written backward, used inside a small fit, and checked.
import torch


class LegendreP3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 0.5 * (5 * x ** 3 - 3 * x)

    @staticmethod
    def backward(ctx, grad_output):
        x, = ctx.saved_tensors
        return grad_output * 1.5 * (5 * x ** 2 - 1)


x = torch.linspace(-1, 1, 7, dtype=torch.float64)
target = torch.sin(x)
a = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
b = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
for step in range(3):
    pred = LegendreP3.apply(a * x + b)
    loss = ((pred - target) ** 2).sum()
    loss.backward()
    with torch.no_grad():
        a -= 0.01 * a.grad
        b -= 0.01 * b.grad
        a.grad = None
        b.grad = None
    print(step, round(loss.item(), 10))
inp = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
print(torch.autograd.gradcheck(LegendreP3.apply, (inp,)))
print(LegendreP3.apply(inp).grad_fn)
