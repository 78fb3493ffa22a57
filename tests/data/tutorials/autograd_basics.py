# Autograd basics in the style of an introductory tutorial: requires_grad, backward, .grad,
# accumulation, no_grad and detach. Runs on PyTorch and on the engine (torch mapped to it).
import torch

x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
y = (w * x).sum()
print(y)
y.backward()
print(x.grad, w.grad)
z = (x ** 2).sum()
z.backward()
print(x.grad)                       # accumulated: w + 2x
x.grad.zero_()
with torch.no_grad():
    q = x * 2
print(q.requires_grad, q.grad_fn)
d = x.detach()
print(d.requires_grad, d)
h = torch.tanh(x * w).mean()
print(h.grad_fn, [type(n[0]).__name__ for n in h.grad_fn.next_functions])
