"""engine.nn: just `engine.nn.functional` (relu, softplus, softmax, ...), for PyTorch-style code."""
from . import functional  # noqa: F401
