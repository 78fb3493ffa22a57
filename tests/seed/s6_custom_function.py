import engine as torch

class MySquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input) # Save for backward
        return input ** 2

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        # d(x^2)/dx = 2x
        # Chain rule: grad_output * local_derivative
        return grad_output * (2 * input)

# Usage
sq = MySquare.apply
out = sq(torch.tensor(3.0, requires_grad=True))
out.backward()
print(out, out.grad_fn.name())
