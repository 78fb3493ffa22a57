"""A small convolutional network, seeded: the same weights, inputs and gradients as on PyTorch.
(Written for these tests, in the style of PyTorch's "Neural Networks" tutorial.)"""
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(x, 1))


net = Net()
print(net)
x = torch.randn(2, 1, 8, 8)
target = torch.tensor([0, 2])
out = net(x)
print(out)
loss = F.cross_entropy(out, target)
print(loss)
print(loss.grad_fn.name(), loss.grad_fn.next_functions[0][0].name())
loss.backward()
print(net.conv.bias.grad)
print(net.fc.weight.grad.sum(dim=1))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
for step in range(3):
    opt.zero_grad()
    loss = F.cross_entropy(net(x), target)
    loss.backward()
    opt.step()
    print(step, round(loss.item(), 4))
