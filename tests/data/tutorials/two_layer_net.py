# A two-layer network trained with nn and optim, weights set deterministically so that every
# backend prints the same numbers.
import torch
import torch.nn as nn

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
N, D_in, H, D_out = 8, 4, 6, 3
x = torch.linspace(-1, 1, N * D_in, dtype=torch.float64).reshape(N, D_in).to(device)
y = torch.cos(torch.arange(N * D_out, dtype=torch.float64)).reshape(N, D_out)

model = nn.Sequential(nn.Linear(D_in, H), nn.Tanh(), nn.Linear(H, D_out)).double()
with torch.no_grad():
    for k, p in enumerate(model.parameters()):
        p.copy_(torch.sin(torch.arange(p.numel(), dtype=torch.float64) + k).reshape(p.shape) * 0.3)
loss_fn = nn.MSELoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
for t in range(5):
    y_pred = model(x)
    loss = loss_fn(y_pred, y)
    print(t, round(loss.item(), 10))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print([name for name, _ in model.named_parameters()])
print(model)
