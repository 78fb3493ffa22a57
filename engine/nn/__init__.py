"""engine.nn: PyTorch's torch.nn on the engine -- Module, Parameter, the common layers and
losses -- and `engine.nn.functional`. Enough for the classic tutorial networks; a layer the
engine lacks is an AttributeError naming it (cli/backends.py turns that into one message)."""
from . import functional, init, utils  # noqa: F401
from .modules import (ELU, GELU, BCELoss, BCEWithLogitsLoss, Conv2d, ConvTranspose2d, CrossEntropyLoss, DataParallel,  # noqa: F401
                      Dropout, Embedding, L1Loss, LayerNorm, MaxPool2d, SmoothL1Loss, Softplus,
                      Flatten,
                      Identity, LeakyReLU, Linear, LogSoftmax, Module, ModuleDict, ModuleList, MSELoss,
                      NLLLoss, ReLU, ReLU6, Sequential, Sigmoid, SiLU, Softmax, Tanh)
from .parameter import Parameter  # noqa: F401
