import engine as torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
x = torch.tensor([3.0, 4.0])
with torch.no_grad():
    y = w * x
    # y.requires_grad is False. No graph stored.
print(y.requires_grad, y.grad_fn)
