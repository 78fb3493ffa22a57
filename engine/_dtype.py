"""Dtypes: thin named wrappers over numpy dtypes (`engine.float64`, ...). No tensor logic here.

One naming everywhere a dtype is shown: PyTorch's. `repr(engine.float32)` is `torch.float32`,
a tensor's repr says `dtype=torch.float32`, `x.type()` is `torch.FloatTensor`, and error texts
say `torch.DoubleTensor`, so code written as `import engine as torch` prints what PyTorch
prints (the engine's default dtype is float64, so float64 tensors show no dtype).
"""
import numpy as np


class dtype:
    __slots__ = ("name", "np", "is_floating_point", "itemsize")

    def __init__(self, name):
        self.name = name
        self.np = np.dtype(name)
        self.is_floating_point = self.np.kind == "f"
        self.itemsize = self.np.itemsize

    def __repr__(self):
        return f"torch.{self.name}"

    def __eq__(self, other):
        if isinstance(other, dtype):
            return self.np == other.np
        try:
            return self.np == np.dtype(other)
        except TypeError:
            return NotImplemented

    def __hash__(self):
        return hash(self.np)

    def __reduce__(self):
        return (dtype, (self.name,))


float16 = dtype("float16")
float32 = dtype("float32")
float64 = dtype("float64")
int8 = dtype("int8")
int16 = dtype("int16")
int32 = dtype("int32")
int64 = dtype("int64")
uint8 = dtype("uint8")
bool_ = dtype("bool")

half, float, double = float16, float32, float64  # noqa: A001 - PyTorch's aliases
short, int, long = int16, int32, int64  # noqa: A001

_ALL = (float16, float32, float64, int8, int16, int32, int64, uint8, bool_)
FROM_NP = {d.np: d for d in _ALL}
DEFAULT_SET = False                  # set_default_dtype was called (engine/_random.py's streams)
DEFAULT_FLOAT = np.dtype("float64")  # a gradient checker wants float64 by default


def to_numpy_dtype(d):
    """Accept engine dtypes, numpy dtypes, and Python's float/int/bool."""
    if d is None:
        return None
    if isinstance(d, dtype):
        return d.np
    import builtins
    if d is builtins.float:
        return DEFAULT_FLOAT
    if d is builtins.int:
        return np.dtype("int64")
    if d is builtins.bool:
        return np.dtype("bool")
    nd = np.dtype(d)
    if nd not in FROM_NP:
        raise TypeError(f"unsupported dtype {d!r}")
    return nd


def from_numpy_dtype(nd):
    try:
        return FROM_NP[nd]
    except KeyError:
        raise TypeError(f"unsupported numpy dtype {nd}") from None


_SCALAR_TYPE = {"float64": "Double", "float32": "Float", "float16": "Half", "int64": "Long", "int32": "Int",
                "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool", "complex128": "ComplexDouble",
                "complex64": "ComplexFloat"}


def scalar_type_name(nd):
    """PyTorch's ScalarType name of a numpy dtype, as its messages print it (Double, Float, Long)."""
    return _SCALAR_TYPE.get(np.dtype(nd).name, np.dtype(nd).name)
