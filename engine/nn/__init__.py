"""engine.nn: PyTorch's torch.nn on the engine -- Module, Parameter, the common layers and
losses -- and `engine.nn.functional`. Enough for the classic tutorial networks; a layer the
engine lacks is an AttributeError naming it (cli/backends.py turns that into one message)."""
from . import functional  # noqa: F401
from .modules import (BCEWithLogitsLoss, CrossEntropyLoss, Identity, Linear, Module, MSELoss,  # noqa: F401
                      NLLLoss, ReLU, Sequential, Sigmoid, Softmax, Tanh)
from .parameter import Parameter  # noqa: F401
