import engine as torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
x = torch.tensor([3.0, 4.0])
y = w * x
z = y.detach() # z is a leaf now. Grads won't flow back to w through z.
print(z, z.is_leaf, z.requires_grad, z.grad_fn)
z.add_(1)      # shares storage with y
print(y)
