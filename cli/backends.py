"""Which backend a target runs on, and the `torch` name mapped onto the engine while a target
that imports torch runs there.

A target runs on exactly one backend, so engine tensors never reach PyTorch's functions: a file
that says `import torch` used to be handed engine tensors by real `torch.autograd.Function.apply`,
which ran its forward as plain engine ops and never called its backward -- a wrong backward
reported "passed". Now:

- engine: expressions, and .py files that do not import torch; a file that imports torch runs
  on the engine's PyTorch API when asked (`--backend engine`), or under `auto` when PyTorch is
  not installed. `torch`, `torch.nn`, `torch.nn.functional` and `torch.autograd` are the
  engine's, put in place only while the target loads and runs, and a name the engine lacks is
  one clear error naming `torch.X`.
- torch: a file that imports torch runs on real PyTorch (cli/torch_backend.py) under `auto`
  when PyTorch is importable, or when asked with `--backend torch`; real torch never sees an
  engine tensor.

Installing autograd-cli installs no package named torch; nothing here shadows a real torch
outside a target's run.
"""
import ast
import contextlib
import importlib.util
import sys
import types

from .errors import CliError

BACKENDS = ("auto", "engine", "torch")
# torch's module -> the engine's module that stands for it while a target runs on the engine
ENGINE_MODULES = {"torch": "engine", "torch.nn": "engine.nn", "torch.nn.functional": "engine.nn.functional",
                  "torch.nn.init": "engine.nn.init", "torch.autograd": "engine.autograd",
                  "torch.autograd.function": "engine.autograd.function",
                  "torch.autograd.functional": "engine.autograd.functional",
                  "torch.autograd.graph": "engine.autograd.graph",
                  "torch.autograd.forward_ad": "engine.autograd.forward_ad",
                  "torch.func": "engine.func", "torch.optim": "engine.optim",
                  "torch.optim.lr_scheduler": "engine.optim.lr_scheduler", "torch.nn.utils": "engine.nn.utils",
                  "torch.autograd.grad_mode": "engine.grad_mode", "torch.autograd.anomaly_mode": "engine.grad_mode",
                  "torch.autograd.profiler": "engine.autograd.profiler", "torch.profiler": "engine.profiler",
                  "torch.nn.parameter": "engine.nn.parameter", "torch.nn.modules": "engine.nn.modules",
                  "torch.utils": "engine.utils", "torch.utils.data": "engine.utils.data",
                  "torch.utils.benchmark": "engine.utils.benchmark",
                  "torchviz": "engine.torchviz"}     # torchviz.make_dot draws the engine's graph
TORCH_MODULES = tuple(ENGINE_MODULES)


class MissingTorchName(AttributeError):
    """A torch.X (from a module: _Shim) or Tensor.X (from an engine tensor: _tensor_getattr) the
    engine does not provide: one error for both. An AttributeError, so that hasattr()
    and getattr(obj, name, default) in PyTorch code see what they expect; its text is made only
    when shown (a hasattr() probe pays for no "did you mean")."""

    def __init__(self, qualname, owner=None):
        super().__init__(qualname)
        self.qualname, self.owner = qualname, owner

    def __str__(self):
        import difflib
        where, _, attr = self.qualname.rpartition(".")
        names = [n for n in dir(self.owner) if not n.startswith("_")] if self.owner is not None else []
        near = difflib.get_close_matches(attr, names, n=1, cutoff=0.8) if not attr.startswith("_") else []
        hint = f" (did you mean {where}.{near[0]}?)" if near else ""
        return (f"the engine has no {self.qualname} (yet){hint}: this file uses a part of PyTorch the engine does not "
                f"provide; run it on real PyTorch instead (pip install torch, then --backend torch, the default for "
                f"such a file when PyTorch is installed)")


# shown as what it is to the user's code (hasattr sees one): `AttributeError: the engine has no
# torch.as_strided (yet) ...`, not the CLI's own module path in their traceback
MissingTorchName.__module__, MissingTorchName.__qualname__ = "builtins", "AttributeError"


def imports_torch(source):
    """Whether Python `source` imports torch (import torch, import torch.nn, from torch import ...)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torch" \
                and not node.level:
            return True
    return False


def torch_installed():
    mod = sys.modules.get("torch")
    if mod is not None and not isinstance(mod, _Shim):
        return True
    try:
        return importlib.util.find_spec("torch") is not None
    except (ValueError, ImportError):
        return False


def choose(backend, path, source):
    """The backend ("engine" or "torch") a .py target at `path` runs on; CliError where it cannot."""
    if backend not in BACKENDS:
        raise CliError(f"--backend must be one of {', '.join(BACKENDS)}, not '{backend}'")
    uses_torch = imports_torch(source)
    if backend == "torch":
        if not uses_torch:
            raise CliError(f"{path.name} does not import torch, so it is written for the engine: run it without "
                           "--backend torch")
        if not torch_installed():
            raise CliError("--backend torch needs PyTorch, which is not installed here: pip install torch, or run "
                           "the file on the engine's PyTorch API with --backend engine")
        return "torch"
    if uses_torch and backend == "auto" and torch_installed():
        return "torch"
    return "engine"


def reaches_real_torch(module, obj):
    """Which name in a target that does not import torch itself refers to real PyTorch (a helper
    module that imports it), or None. Such a target must not get engine tensors: real
    torch.autograd.Function.apply would run its forward as engine ops and never call backward."""
    real = sys.modules.get("torch")
    if real is None or isinstance(real, _Shim):
        return None
    spaces = [vars(module)] + [getattr(f, "__globals__", {}) for f in (obj, getattr(obj, "forward", None)) if f]
    for space in spaces:
        for name, v in space.items():
            owner = v.__name__ if isinstance(v, types.ModuleType) else getattr(v, "__module__", None)
            if isinstance(owner, str) and owner.split(".")[0] == "torch":
                mod = space.get("__name__", "?")
                return f"'{name}' in {mod}" if mod != module.__name__ else f"'{name}'"
    return None


def choose_expression(backend):
    if backend not in BACKENDS:
        raise CliError(f"--backend must be one of {', '.join(BACKENDS)}, not '{backend}'")
    if backend == "torch":
        raise CliError("--backend torch is for .py files that import torch; expressions run on the engine")
    return "engine"


class _Shim(types.ModuleType):
    """`torch.X` as the engine's X; a missing name is one clear error."""

    def __init__(self, name, target):
        super().__init__(name)
        self.__target = target

    def __getattr__(self, attr):
        try:
            return getattr(self.__target, attr)
        except AttributeError:
            raise MissingTorchName(f"{self.__name__}.{attr}", self.__target) from None


def _tensor_getattr(self, name):
    """engine.Tensor.__getattr__ (set with the shims): only names a Tensor lacks get here. While a
    file's `import torch` is the engine (`x.unfold`), the same error as a missing torch.X;
    otherwise, and for dunders (Python's and numpy's own probes), Python's usual one."""
    if _ACTIVE[0] and not (name.startswith("__") and name.endswith("__")):
        e = MissingTorchName(f"Tensor.{name}", type(self))
    else:
        e = AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
    e.name, e.obj = name, self            # what Python's "Did you mean: ...?" reads
    raise e


def _shims():
    import importlib
    shims = {}
    for name, target in ENGINE_MODULES.items():
        try:
            shims[name] = _Shim(name, importlib.import_module(target))
        except ImportError:                 # an engine module not built: torch.X stays missing
            continue
    for name, shim in shims.items():        # torch.nn.functional is an attribute of torch.nn
        parent, _, child = name.rpartition(".")
        if parent in shims:
            setattr(shims[parent], child, shim)
    return shims


_SHIMS = None
_ACTIVE = [0]       # how many torch_on_engine(True) blocks are running


@contextlib.contextmanager
def torch_on_engine(active):
    """While the target loads or runs: `import torch` gives the engine (when `active`)."""
    global _SHIMS
    if not active:
        yield
        return
    if _SHIMS is None:
        _SHIMS = _shims()
        from engine import Tensor
        Tensor.__getattr__ = _tensor_getattr       # once: a class changed per call costs every lookup
    saved = {name: sys.modules.get(name) for name in TORCH_MODULES}
    sys.modules.update(_SHIMS)
    _ACTIVE[0] += 1
    try:
        yield
    finally:
        _ACTIVE[0] -= 1
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
