"""Benchmarks against PyTorch, JAX and HIPS autograd: run `python -m benchmarks`."""
