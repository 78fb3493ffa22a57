import engine as torch

# Weights (Leaf nodes)
w = torch.tensor([1.0, 2.0], requires_grad=True)
x = torch.tensor([3.0, 4.0]) # Data (No grad needed)

# Forward Pass (Building the Graph)
y = w * x          # MulBackward
z = y.sum()        # AddBackward

print(z) 
# tensor(11., grad_fn=<SumBackward0>)
# grad_fn is the link to the graph
