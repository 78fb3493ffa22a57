import engine as torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
x = torch.tensor([3.0, 4.0])
z = (w * x).sum()
z.backward(retain_graph=True)
print(w.grad)
# the lesson: calling z.backward() again makes w.grad [6.0, 8.0] (PyTorch needs retain_graph=True)
z.backward()
print(w.grad)
w.grad.zero_()
print(w.grad)
try:
    z.backward()          # the graph was freed by the last call: PyTorch raises here
except RuntimeError as e:
    print(type(e).__name__, str(e)[:60])
