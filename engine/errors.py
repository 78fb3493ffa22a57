"""Errors raised by the engine.

PyTorch raises RuntimeError for most autograd misuse, and users catch that type, so the
engine's errors subclass both `EngineError` (our one base, which the CLI maps to exit code 2)
and the built-in type PyTorch would raise. Messages use PyTorch's wording where PyTorch has one.
"""


def _rebuild(module, name, args, state):
    """Unpickle an engine error by its real name (its __qualname__ shows PyTorch's type name)."""
    import importlib
    cls = getattr(importlib.import_module(module), name)
    e = cls.__new__(cls)
    e.args = args
    e.__dict__.update(state)
    return e


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    _pickle_name = "EngineError"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._pickle_name = cls.__name__       # before any renaming below
        cls._pickle_module = cls.__module__

    def __reduce__(self):
        cls = type(self)
        return (_rebuild, (cls._pickle_module, cls._pickle_name, self.args, dict(self.__dict__)))


class EngineRuntimeError(EngineError, RuntimeError):
    """Misuse that PyTorch reports as RuntimeError (second backward, in-place on a leaf, ...)."""


class ShapeError(EngineError, RuntimeError):
    """Operand shapes that do not fit an operation (PyTorch raises RuntimeError)."""


class DimensionError(EngineError, IndexError):
    """A `dim` out of range (PyTorch raises IndexError)."""


class EngineTypeError(EngineError, TypeError):
    """An argument of the wrong kind (PyTorch raises TypeError)."""


class EngineKeyError(EngineError, KeyError):
    """A name a table cannot hold (a parameter named "a.b": PyTorch raises KeyError)."""


# Show PyTorch's type names in tracebacks and `type(e).__name__` (a lesson prints them), while
# `except EngineError` still catches every one of ours: PyTorch raises Python's own RuntimeError,
# which a traceback prints as "RuntimeError: ...", so these say they are builtins' too (a
# traceback printed "engine.errors.RuntimeError: ..."); pickling finds them by _pickle_module.
for _cls, _name in ((EngineRuntimeError, "RuntimeError"), (ShapeError, "RuntimeError"), (DimensionError, "IndexError"),
                    (EngineTypeError, "TypeError"), (EngineKeyError, "KeyError")):
    _cls.__name__ = _cls.__qualname__ = _name
    _cls.__module__ = "builtins"


class MissingDerivativeError(EngineError, NotImplementedError):
    """An op has no vector-Jacobian product for one of its inputs."""


SECOND_BACKWARD = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward."
)
LEAF_INPLACE = "a leaf Variable that requires grad is being used in an in-place operation."
LEAF_DIRTY = "a leaf Variable that requires grad has been used in an in-place operation."
NOT_FLOATING = "Only Tensors of floating point and complex dtype can require gradients"
IMPLICIT_SCALAR = "grad can be implicitly created only for scalar outputs"
NON_LEAF_REQUIRES_GRAD = (
    "you can only change requires_grad flags of leaf variables. If you want to use a computed "
    "variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach()."
)


def modified_message(shape, dtype, producer, output_nr, now, expected):
    """PyTorch's text for a saved tensor changed in place before backward used it."""
    kind = "torch." + {"float64": "DoubleTensor", "float32": "FloatTensor"}.get(dtype.name, "Tensor")
    desc = f"[{kind} {list(shape)}]"
    if producer is not None:
        name = type(producer).name(producer)
        base = name[:name.rfind("Backward")] if "Backward" in name else name
        desc += f", which is output {output_nr} of {base},"
    return (f"one of the variables needed for gradient computation has been modified by an inplace "
            f"operation: {desc} is at version {now}; expected version {expected} instead. Hint: enable "
            f"anomaly detection to find the operation that failed to compute its gradient, with "
            f"torch.autograd.set_detect_anomaly(True, check_nan=False).")
