"""Forward-mode AD, torch.func, saved-tensor hooks and what a node saved, with fixed numbers.
(Written for these tests, in the style of PyTorch's forward-AD, Jacobians/Hessians and
saved-tensor-hooks tutorials.)"""
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

x = torch.tensor([0.5, -1.0, 2.0])
t = torch.tensor([1.0, 0.0, -2.0])
with fwAD.dual_level():
    dual = fwAD.make_dual(x, t)
    out = torch.sin(dual) * dual.exp()
    primal, tangent = fwAD.unpack_dual(out)
print(primal)
print(tangent)
print(fwAD.unpack_dual(out).tangent)


def f(v):
    return (v.tanh() * v ** 2).sum()


print(grad(f)(x))
print(hessian(f)(x))
print(jacfwd(jacrev(f))(x).equal(hessian(f)(x)))
print(jvp(torch.sin, (x,), (t,)))
print(vmap(grad(f))(torch.stack([x, 2 * x])))

a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
y = a * a.exp()
print(y.grad_fn._saved_self is a, y.grad_fn._saved_other.equal(a.exp()))
z = a.exp()
print(z.grad_fn._saved_result.equal(z), z.grad_fn._saved_result is z)


def pack(tensor):
    print("pack", tensor)
    return tensor * 10


def unpack(tensor):
    print("unpack", tensor)
    return tensor / 10


with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
    w = (a * 2).pow(2)
w.sum().backward()
print(a.grad)
