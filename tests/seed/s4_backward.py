import engine as torch

w = torch.tensor([1.0, 2.0], requires_grad=True)
x = torch.tensor([3.0, 4.0]) # Data (No grad needed)
y = w * x          # MulBackward
z = y.sum()        # AddBackward

# Backward Pass
z.backward()

# Gradients are accumulated in .grad
print(w.grad) 
# dz/dw = d(w*x)/dw = x
# Result: [3.0, 4.0]
