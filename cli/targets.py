"""What every command shares: reading TARGET (an expression or a .py file), the `--NAME VALUES`
arguments, and turning them into engine tensors. No math and no rendering here.
"""
import contextlib
import inspect
import os
import pathlib
import re
import sys
import traceback

from .errors import CliError, UserCodeError

# a variable, or an nn.Module's parameter by its qualified name: net.0.weight, or 0.weight (a Sequential's)
_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*|[0-9]+(\.[A-Za-z0-9_]+)+)$")
_PARAMETER = re.compile(r"^--[0-9]+\.[A-Za-z_]")                    # --0.weight: a name, not a number


class Values(dict):
    """{name: value text}, plus the command's option spellings (max-nodes, eps, ...) and the
    names given before `--` in an option's underscore spelling (--max_nodes), which build_inputs
    judges once the target's variables are known: the variable, told to come after `--`, or a
    misspelt option."""

    known_options = frozenset()
    option_like = frozenset()


def parse_variable_args(args, known_options, after_dashdash=0):
    """`--w 1,2 --x=-1,2` (the tokens Click left over) -> {"w": "1,2", "x": "-1,2"}.
    after_dashdash: how many of the last tokens came after `--`, where every --NAME is a
    variable, an option's own spelling too: `-- --max-nodes 3` gives the variable max_nodes."""
    values = Values()
    option_like = set()
    first_after = len(args) - min(after_dashdash, len(args))
    i = 0
    while i < len(args):
        after = i >= first_after
        tok = args[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise CliError(f"unexpected argument '{tok}': give variable values as --NAME VALUES after the "
                           "target, like --w 1,2 (a variable named like one of the command's options takes "
                           "its value after --, as in -- --eps 0.5)")
        spelt, eq, value = tok[2:].partition("=")
        name = spelt.replace("-", "_") if after else spelt     # -- --max-nodes 3: the variable max_nodes
        if not eq:
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and not _looks_numeric(args[i + 1])):
                if spelt in known_options:      # an option's own spelling, with no value: a misplaced option
                    raise CliError(f"--{spelt} comes after --, where every --NAME is a variable: put the "
                                   "command's options before --")
                near = near_option(name, known_options)
                if near:
                    raise CliError(f"no such option: --{name} (did you mean --{near}?)")
                if i + 1 >= len(args):
                    raise CliError(f"--{name} needs a value, like --{name} 1,2")
                raise CliError(f"--{name} needs a value, like --{name} 1,2 (got option {args[i + 1]})")
            value = args[i + 1]
            i += 2
        else:
            i += 1
        if not _NAME.match(name):
            raise CliError(f"'--{name}' is not a variable name: names start with a letter and use letters, "
                           "digits and _ (and dots for a module's parameters, like net.0.weight)")
        if not after and "_" in name and name.replace("_", "-") in known_options:
            option_like.add(name)            # the variable, or a misspelt option: the target says which
        # a name like one of the command's options reaches here only from after `--` (Click takes
        # it as the option anywhere else): `check f.py -- --eps 0.5` gives the variable eps a value
        if name in values:
            raise CliError(f"--{name} is given twice: give each variable once")
        values[name] = value
    values.option_like = frozenset(option_like)
    return values


def option_spelling(name, known_options):
    """The command option a variable `name` is named like (max_nodes -> max-nodes), or None."""
    for spelling in (name, name.replace("_", "-")):
        if spelling in known_options:
            return spelling
    return None


def near_option(name, known_options):
    """The command option `name` is probably a misspelling of, or None."""
    import difflib
    options = sorted(o for o in known_options if len(o) > 1)
    near = difflib.get_close_matches(name.replace("_", "-"), options, n=1, cutoff=0.75)
    return near[0] if near else None


def _looks_numeric(s):
    return bool(re.match(r"^--?[0-9.]", s)) and not _PARAMETER.match(s)


class Target:
    """A loaded TARGET. `call(tensors)` runs it on {name: tensor} and returns a tuple of outputs.

    backend: "engine" (engine tensors) or "torch" (torch tensors; cli/torch_backend.py).
    """

    def __init__(self, kind, text, names, call, defaults=None, program=None, label=None, backend="engine"):
        self.kind = kind
        self.text = text
        self.names = names            # the variables (build_inputs settles them for a run)
        self.params = list(names)     # every parameter, in order: the variables and the constants
        self.origin = {}              # name -> where its default comes from (inputs['x'] in t.py)
        self._call = call
        self.defaults = defaults or {}
        self.program = program
        self.label = label or text
        self.backend = backend
        self.torch_api = False        # a file that imports torch, run on the engine's PyTorch API
        self.module_roots = []        # (name, object) pairs where the target's nn.Modules may be found
        # parameters with a non-tensor default (a Function's eps=1e-5, f's mode="sum"): constants,
        # passed their default, unless named in --wrt (or, for a function, given a value)
        self.optional = {}
        self.given_makes_variable = True     # False for a Function: a given value stays a constant
        self.constants = {}                  # the constants of this run: name -> value (build_inputs)
        self.user_files = set()              # resolved paths whose frames say where a node was made

    @property
    def lib(self):
        """The tensor library of this target's backend (engine, or torch)."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.torch()
        import engine
        return engine

    def backend_label(self):
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.label()
        return "engine"

    def constant(self, name):
        """The value a constant parameter takes in this run (its default, or the value given)."""
        import numpy as np
        v = self.constants[name] if name in self.constants else self.optional[name]
        return self.lib.tensor(v) if isinstance(v, np.ndarray) else v

    def call(self, tensors):
        out = self._call(tensors)
        single = not isinstance(out, (tuple, list))
        outs = (out,) if single else tuple(out)
        if not outs:
            raise CliError("the target returned no outputs (an empty tuple); return a tensor or a tuple of tensors")
        kind = "torch" if self.backend == "torch" else "engine"
        for k, o in enumerate(outs):
            if not isinstance(o, self.lib.Tensor):
                raise CliError(f"the target returned {type(o).__name__} (output {k}); it must return {kind} "
                               "tensors, one or a tuple")
        return outs, single

    def function(self, names):
        """A positional function of the given input names, on this target's tensors."""
        def fn(*xs):
            outs, single = self.call(dict(zip(names, xs)))
            return outs[0] if single else outs
        return fn

    def engine_function(self, names):
        """function(names) as a function of engine tensors, for the engine's checker and Jacobian
        (on the torch backend it carries its backend, PyTorch's autograd: torch_backend.engine_function)."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.engine_function(self.function(names))
        return self.function(names)

    def second_order(self, fn, inputs, names, seed=0):
        """(first_order, inputs + grad_outputs, names) whose check is a check of fn's second
        derivatives (gradgradcheck); fn and inputs as engine_function and to_engine give them. On
        PyTorch the first derivatives are torch.autograd.grad(create_graph=True) of the target,
        so their backward is PyTorch's double backward (the user's backward differentiated)."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.second_order(self.function(names), inputs, names, seed=seed)
        from engine.autograd.checker import second_order
        return second_order(fn, inputs, names, seed=seed)

    def to_engine(self, t):
        """One of this target's input tensors as an engine tensor (the same one on the engine)."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.to_engine(t)
        return t

    def no_grad(self):
        return self.lib.no_grad()

    def to_numpy(self, t):
        """One of this target's tensors as a numpy array (a copy; PyTorch's bfloat16 as float32)."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.to_numpy(t)
        return t.numpy(force=True).copy()

    def dtype_names(self, outs):
        """The dtypes ("float64", "float16", ...) of `outs` and of everything their graph computed."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.dtype_names(outs)
        from engine.graph import dtypes
        return {str(o.numpy(force=True).dtype) for o in outs} | {str(d) for d in dtypes(o.grad_fn for o in outs)}

    def autograd_errors(self):
        """Around a backward the commands run on this target's graph: on PyTorch, its errors about
        the user's code are usage errors (exit 2), as the engine's EngineErrors are."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.autograd_errors()
        import contextlib
        return contextlib.nullcontext()

    @property
    def engine_graph(self):
        """Whether the graph the checker sees is the target's own, node by node (the engine), so
        that nodes can be re-checked one by one (--locate) and the Jacobian's rows pushed through
        one batched backward; on PyTorch the checker sees PyTorch's graph through its backend
        (torch_backend.TorchBackend) and custom Functions are recorded as they are applied."""
        return self.backend != "torch"

    def graph_view(self):
        """How engine.dotgraph reads this target's graph (None: the engine's own)."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.view()
        return None

    def frees_saved_values(self, out):
        """Whether backward() on `out` frees saved values, so a second call would fail."""
        if self.backend == "torch":
            from . import torch_backend
            return torch_backend.frees_saved_values(out)
        from engine.graph import frees_saved_values
        return frees_saved_values(out)

    def json_fields(self):
        """What --json says about the backend that ran."""
        if self.backend == "torch":
            from . import torch_backend
            return {"backend": "torch", "torch_version": torch_backend.torch().__version__}
        return {"backend": "engine"}

    def header(self):
        """The line that says which backend ran, for a file that imports torch (where it matters);
        None otherwise."""
        if self.backend == "torch":
            from . import torch_backend
            return f"backend: {torch_backend.label()} (real PyTorch; inputs are torch tensors)"
        if self.torch_api:
            return "backend: engine (this file's `import torch` is the engine's PyTorch API)"
        return None


def load_target(text, func_name="f", given=(), backend="auto"):
    """TARGET as a Target. given: the variable names the command line has values for."""
    from . import backends
    path = pathlib.Path(text)
    if text.lower().endswith(".py"):
        if not path.is_file():
            raise CliError(f"file not found: '{text}'")
        try:
            source = path.read_text(errors="replace")
        except OSError as e:
            raise CliError(f"cannot read '{text}': {e.strerror}") from None
        chosen = backends.choose(backend, path, source)
        return _load_file(path, func_name, backend=chosen, requested=backend,
                          shim=chosen == "engine" and backends.imports_torch(source))
    backends.choose_expression(backend)
    from expressions import compile_expression
    program = compile_expression(text, variables=given)
    return Target("expression", text, list(program.variables), program.run, program=program)


def _load_file(path, func_name, backend="engine", shim=False, requested="auto"):
    import importlib.util
    module_name = TARGET_MODULE
    from importlib.machinery import SourceFileLoader
    # an explicit source loader: a file named t.PY is Python too (the suffix picks no loader)
    spec = importlib.util.spec_from_file_location(module_name, str(path),
                                                  loader=SourceFileLoader(module_name, str(path)))
    module = importlib.util.module_from_spec(spec)
    _on_path(path.resolve().parent)
    from .backends import torch_on_engine
    try:
        # `import torch` is the engine's, while it loads (with shim); a module of the user's
        # beside the file named as one of this tool's packages is theirs, as under python
        with torch_on_engine(shim), _theirs_first(path.resolve().parent):
            spec.loader.exec_module(module)  # the user's own file, run as `python file.py` would
    except KeyboardInterrupt:
        raise                                # Ctrl-C is 130, not the user's error
    except SystemExit as e:
        raise UserCodeError(_format(e, _mine(e)) + f"\nyour code called sys.exit({e.code!r}) while {path.name} was "
                            "being loaded: nothing was computed or checked") from None
    except BaseException as e:  # noqa: BLE001 - the user's code may raise anything
        raise UserCodeError(user_traceback(e) or _format(e, [])) from None
    if not hasattr(module, func_name):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module_name)
        hint = f"; it defines {', '.join(found)}: pick one with --func NAME" if found else ""
        raise CliError(f"{path} has no function '{func_name}'{hint}")
    obj = getattr(module, func_name)
    if backend == "engine" and not shim:
        from .backends import reaches_real_torch
        via = reaches_real_torch(module, obj)
        if via and requested == "engine":
            raise CliError(f"{path.name} does not import torch itself, but {via} uses real PyTorch: run it with "
                           "--backend torch, or import torch in the file itself to run it on the engine")
        if via:
            backend = "torch"         # loaded against real PyTorch: it runs there, never on engine tensors
    target = Target("file", str(path), [], None, label=f"{path.name}:{func_name}", backend=backend)
    target.user_files = {str(path.resolve())}
    lib = target.lib
    defaults = getattr(module, "inputs", {}) or {}
    if not isinstance(defaults, dict):
        raise CliError(f"'inputs' in {path} must be a dict of name -> values")
    defaults = dict(defaults)
    optional = {}
    if isinstance(obj, type) and issubclass(obj, lib.autograd.Function):
        params, fn = _signature(obj.forward, path, func_name), obj.apply
        # forward(ctx, x), or forward(x) with a setup_context (PyTorch 2's style)
        if getattr(obj, "setup_context", None) is getattr(lib.autograd.Function, "setup_context", None):
            params = params[1:]
        # forward(ctx, x, eps=1e-5): PyTorch gives gradients to tensor arguments only, so a
        # non-tensor default is a constant (eps was checked, clashed with --eps and FAILed)
        for name, p in _parameters(obj.forward).items():
            if name in params and p.default is not inspect.Parameter.empty and name not in defaults:
                if isinstance(p.default, lib.Tensor):
                    defaults[name] = p.default
                else:
                    optional[name] = p.default
        target.given_makes_variable = False
    elif isinstance(obj, type) and issubclass(obj, lib.nn.Module):
        try:
            with torch_on_engine(shim):
                instance = obj()
        except TypeError as e:
            raise CliError(f"'{func_name}' in {path} is an nn.Module class that cannot be made without arguments "
                           f"({e}): make an instance in the file and name it with --func") from None
        except KeyboardInterrupt:
            raise                            # Ctrl-C is 130, not the user's error
        except BaseException as e:  # noqa: BLE001 - the user's code may raise anything
            raise UserCodeError(user_traceback(e) or _format(e, [])) from None
        fn, params = _module_function(instance, func_name, defaults)
        optional = _function_defaults(instance.forward, defaults, lib)
    elif isinstance(obj, lib.nn.Module):
        fn, params = _module_function(obj, func_name, defaults)
        optional = _function_defaults(obj.forward, defaults, lib)
    elif callable(obj) and not isinstance(obj, type):
        params, fn = _signature(obj, path, func_name), obj
        optional = _function_defaults(obj, defaults, lib)
    else:
        raise CliError(f"'{func_name}' in {path} is not a function, a Function, or an nn.Module")

    try:                                  # keyword-only parameters (def f(x, *, scale=2.0)) by keyword
        kwonly = {q.name for q in inspect.signature(fn).parameters.values() if q.kind is q.KEYWORD_ONLY}
    except (TypeError, ValueError):
        kwonly = set()

    def call(tensors):
        values = [(p, tensors[p] if p in tensors else target.constant(p)) for p in params]
        args = [v for p, v in values if p not in kwonly]
        kwargs = {p: v for p, v in values if p in kwonly}
        try:
            with torch_on_engine(shim):
                return fn(*args, **kwargs)
        except (CliError, KeyboardInterrupt):
            raise
        except SystemExit as e:
            raise UserCodeError(_format(e, _mine(e)) + f"\nyour code called sys.exit({e.code!r}) in "
                                f"{func_name}: nothing was computed or checked") from None
        except BaseException as e:  # noqa: BLE001 - the user's code may raise anything
            raise UserCodeError(user_traceback(e) or _format(e, [])) from None
    target.params, target._call, target.defaults = params, call, defaults
    target.names = [p for p in params if p not in optional]
    target.optional = optional
    target.origin = {n: f"inputs['{n}'] in {path.name}" for n in getattr(module, "inputs", {}) or {}}
    target.torch_api = shim
    # where nn.Modules live, to name the module a node was made in (locate): the file's globals
    # by their names, and a module target itself (its submodules by their qualified names)
    target.module_roots = [(k, v) for k, v in vars(module).items() if not k.startswith("_")]
    if isinstance(obj, lib.nn.Module):
        target.module_roots.insert(0, ("", obj))
    elif isinstance(obj, type) and issubclass(obj, lib.nn.Module):
        target.module_roots.insert(0, ("", instance))
    return target


def _parameters(fn):
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


def _function_defaults(fn, defaults, lib):
    """The defaults of a function's parameters (f, an nn.Module's forward): a number or numbers
    (`scale=2.0`) or a tensor is the variable's value unless given; anything else (`mode="sum"`,
    `n=None`, `s=["a"]`, `n=10**400`) is a constant passed as it is, unless given a value
    (returned: name -> default)."""
    optional = {}
    for name, p in _parameters(fn).items():
        if p.default is inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in defaults:
            continue
        if isinstance(p.default, lib.Tensor) or (not isinstance(p.default, bool)
                                                  and _numeric(p.default, lib)[1] is None):
            defaults[name] = p.default          # f(x, scale=2.0): scale is 2.0 unless given
        else:
            optional[name] = p.default
    return optional


def _numeric(v, lib=None):
    """(v as a float64 array, None), or (None, what v is) when it is not a value a variable can
    take: a number, nested lists or tuples of numbers, a real numpy array or a tensor."""
    import numpy as np

    from expressions.values import MAX_DIMS
    from engine._layout import same_layout
    if lib is not None and isinstance(v, lib.Tensor):
        if v.is_complex():
            return None, f"a complex tensor ({str(v.dtype).replace('torch.', '')})"
        from . import torch_backend
        v = torch_backend.to_numpy(v) if lib.__name__ == "torch" else v.numpy(force=True)
    if isinstance(v, np.ndarray) and v.dtype.kind not in "biuf":
        kind = "complex" if v.dtype.kind == "c" else "text" if v.dtype.kind in "US" else str(v.dtype)
        return None, f"a numpy array of {kind} values (dtype {v.dtype})"
    if not isinstance(v, np.ndarray):
        bad = _not_a_number(v)
        if bad is not None:
            return None, bad
    try:
        if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
            # an array or tensor of the file's own: its layout (a transposed or sliced weight) and a
            # float32 dtype are kept, as f will be handed them in training (build_inputs says so)
            arr = same_layout(v, np.float32 if v.dtype == np.float32 else np.float64)
        else:
            arr = np.array(v, dtype=np.float64)
    except ValueError:
        return None, "a ragged list (its rows differ in length)"
    except (TypeError, OverflowError) as e:
        return None, f"not a number array ({e})"
    if arr.ndim > MAX_DIMS:
        return None, f"an array of {arr.ndim} dimensions (the limit is {MAX_DIMS})"
    return arr, None


def _not_a_number(v, where=""):
    """What in v (a number or nested lists/tuples of them) is not a real number, or None."""
    import numpy as np
    at = f" at {where}" if where else ""
    if isinstance(v, (bool, np.bool_, float, np.floating)):
        return None
    if isinstance(v, (int, np.integer)):
        if abs(int(v)) > int(np.finfo(np.float64).max):
            return f"an integer too large for float64{at} ({len(str(abs(int(v))))} digits)"
        return None
    if isinstance(v, (list, tuple)):
        for k, item in enumerate(v):
            bad = _not_a_number(item, f"{where}[{k}]")
            if bad is not None:
                return bad
        return None
    if isinstance(v, (str, bytes)):
        return f"text{at} ({v[:20]!r})"
    if v is None:
        return f"None{at}"
    if isinstance(v, (complex, np.complexfloating)):
        return f"a complex number{at} ({v})"
    kind = type(v).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}{at}"


def _signature(fn, path, func_name):
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        raise CliError(f"cannot read the arguments of '{func_name}' in {path}") from None


def _module_function(module, func_name, defaults):
    """An nn.Module as a function of its forward's inputs and its parameters, named by their
    qualified names as named_parameters() gives them (`net.0.weight`, for a class or an
    instance alike; `0.weight` for a Sequential itself); the parameters' values are their defaults."""
    inputs = list(inspect.signature(module.forward).parameters)
    named = dict(module.named_parameters())
    pnames = list(named)
    clash = [n for n in inputs if n in pnames]
    if clash:
        raise CliError(f"the input '{clash[0]}' of {func_name}.forward is named like one of its parameters: "
                       f"rename the argument")
    for n, p in zip(pnames, named.values()):
        defaults.setdefault(n, p)
    modules = dict(module.named_modules())
    owners = {}
    for qual in named:
        mod_path, _, leaf = qual.rpartition(".")
        owners[qual] = (modules[mod_path], leaf)

    def fn(*xs):
        args, values = xs[:len(inputs)], xs[len(inputs):]
        saved = {q: owner._parameters[leaf] for q, (owner, leaf) in owners.items()}
        try:
            for (owner, leaf), v in zip(owners.values(), values):
                owner._parameters[leaf] = v       # the given tensor stands in for the parameter
            return module(*args)
        finally:
            for q, (owner, leaf) in owners.items():
                owner._parameters[leaf] = saved[q]
    return fn, inputs + pnames


def output_names(n_outputs, single, input_names):
    """What the commands call a target's outputs: y (or y0, y1, ...), out/out0... when an input
    is already called y -- the same in `check` and `jacobian`."""
    import re
    stem = "out" if any(n == "y" or re.fullmatch(r"y\d+", n) for n in input_names) else "y"
    return [stem] if single else [f"{stem}{k}" for k in range(n_outputs)]


def check_real_outputs(target, outs, onames, command):
    """CliError, before any work, for a complex output: gradients, Jacobians and checks here are
    of real functions (complex numbers inside the target are fine)."""
    for k, (o, name) in enumerate(zip(outs, onames)):
        if o.is_complex():
            what = f"output {k} ({name})" if len(outs) > 1 else "the output"
            raise CliError(f"{what} is complex ({str(o.dtype).replace('torch.', '')}): {command} works on real outputs "
                           f"(complex numbers inside the target are fine); return a real tensor, like its .abs() or "
                           f".real, or torch.view_as_real of it")


HALF = ("bfloat16", "float16")


def check_precision(target, outs, what="the check"):
    """CliError, before any work, when the target computes in half precision (bfloat16 or float16,
    at the output or inside): central differences cannot resolve its gradients (a step of
    1e-6 is below its resolution; 2 looked like 0), and a float64 reference -- how float32
    inputs are judged -- exists only for a computation that follows its inputs' dtype, which an
    explicit .to(torch.bfloat16) does not."""
    half = [d for d in HALF if d in target.dtype_names(outs)]
    if half:
        raise CliError(f"the target computes in {half[0]}, whose {'8' if half[0] == 'bfloat16' else '11'} significant "
                       f"bits finite differences cannot resolve: {what} cannot judge its gradients. Check the same "
                       f"computation in float64 (without its cast to {'torch.' if target.backend == 'torch' else ''}"
                       f"{half[0]}); grad, jacobian and graph show its {half[0]} gradients as they are")


def check_step(target, tensors, chosen, eps, own_option=True):
    """CliError, before any work, for a finite-difference step that cannot make a difference: one
    below the smallest normal float64 (eps / 2, which the checker also takes, is then 0: a
    ZeroDivisionError), or one so small against an input's value that x + eps == x there (a
    central difference of 0 whatever the gradient: a right gradient is called wrong). A step
    that is representable but coarse against round-off gets the checker's own warning."""
    import math

    import numpy as np

    from engine.autograd.checker import step_resolution
    tiny = float(np.finfo(np.float64).tiny)
    if eps < tiny:
        raise CliError(f"--eps {eps:g} is below the smallest normal float64 ({tiny:.3g}): half of it, a step the "
                       "checker also takes, is 0; use a step like 1e-6 (PyTorch's default)")
    res = step_resolution([target.to_numpy(tensors[n]) for n in chosen], eps)
    if res is not None and res.lost:
        name = chosen[res.input]
        where = f"{name}[{', '.join(map(str, res.index))}]" if res.index else name
        fit = 10.0 ** math.ceil(math.log10(res.spacing * 1e5))
        use = f"use --eps {fit:g} or more" if own_option else \
            f"check it with 'autograd check --eps {fit:g}' (--check takes PyTorch's step, 1e-6)"
        raise CliError(f"the step {eps:g} is below float64's resolution at {where} = {res.value:g} (the next float is "
                       f"{res.spacing:.2g} away): x + eps is x there, so a central difference is 0 whatever the "
                       f"gradient; {use}")


MAX_JACOBIAN = 10 ** 8    # elements of a dense Jacobian (800 MB in float64)


def check_jacobian_size(target, tensors, chosen, hint, outs=None, order=1):
    """Refuse, before any work, a dense Jacobian that would not fit: one forward gives the output
    sizes (`jacobian 'x*2' --x 'randn(100000)'` asked for 74.5 GiB and died of MemoryError).
    order=2: the second-order check's too, whose outputs are the first derivatives (one per
    input element) and whose inputs are the inputs and one grad_output per output element."""
    if outs is None:            # with grad mode on: a target may compute gradients itself
        outs, _ = target.call(tensors)
    n_out = sum(o.numel() for o in outs)
    n_in = sum(tensors[c].numel() for c in chosen)
    n = n_out * n_in if order == 1 else max(n_out * n_in, n_in * (n_in + n_out))
    if n > MAX_JACOBIAN:
        raise CliError(f"the Jacobian would have {n:,} elements ({n * 8 / 2 ** 30:.1f} GiB in float64); the limit is "
                       f"{MAX_JACOBIAN:,}: {hint}")
    return n


_ADDED_PATHS = []         # folders put first on sys.path for the command that runs now


def _on_path(folder):
    """Put the target's folder first on sys.path, as `python target.py` does, for the whole
    command: f, a Function's backward and the checker's calls may import a module beside the
    file at any time (an `import helper` inside f). forget_paths() takes it off again."""
    sys.path.insert(0, str(folder))
    _ADDED_PATHS.append(str(folder))


def forget_paths():
    """Take the folders _on_path added off sys.path (the boundary calls this when a command ends)."""
    while _ADDED_PATHS:
        folder = _ADDED_PATHS.pop()
        try:
            sys.path.remove(folder)
        except ValueError:                    # the target took it off itself
            pass


TARGET_MODULE = "__autograd_target__"      # the module name a .py target is loaded under
_OURS = ("cli", "expressions", "benchmarks")  # the tool's packages a user's module may be named as


@contextlib.contextmanager
def _theirs_first(folder):
    """While the target loads: a user's cli.py or expressions/ beside it is what its `import cli`
    gets, as `python t.py` would give it (the folder is first on sys.path) -- not this tool's
    package of that name, already imported. Ours is hidden from sys.modules for the load only
    and put back after (the tool's own code does not run inside the load; a module imported
    inside f later gets ours). The engine stays: the target's `import engine` is this tool's."""
    hidden = {}
    for name in _OURS:
        ours = sys.modules.get(name)
        theirs = folder / f"{name}.py" if (folder / f"{name}.py").is_file() else folder / name / "__init__.py"
        if ours is None or not theirs.is_file():
            continue
        if os.path.realpath(str(theirs)) == os.path.realpath(getattr(ours, "__file__", "") or ""):
            continue                                   # the target sits beside this tool's own package
        hidden[name] = sys.modules.pop(name)
    try:
        yield
    finally:
        for name, ours in hidden.items():
            sys.modules[name] = ours


def _mine(e):
    """The frames of e's traceback in the user's own code: those of a loaded target file (their
    module is TARGET_MODULE), and inner to one, those in a module of theirs it called into
    (engine.autograd.locate.users_file: not this tool, not Python's library, not an installed
    package). Read from the traceback itself: no record of loaded files is kept."""
    from engine.autograd.locate import users_file
    mine, inside = [], False
    for frame, line in traceback.walk_tb(e.__traceback__):
        if frame.f_globals.get("__name__") == TARGET_MODULE:
            inside = True
        elif not (inside and users_file(frame.f_code.co_filename)):
            continue
        mine.append((frame, line))
    return traceback.StackSummary.extract(mine)


def _format(e, frames):
    lines = ["Traceback (in your file):\n"] + traceback.format_list(frames) if frames else []
    last = traceback.format_exception_only(type(e), e)
    prefix = TARGET_MODULE + "."                    # the user's own exception class: named as `python t.py` names it
    last = ["__main__." + line[len(prefix):] if line.startswith(prefix) else line for line in last]
    lines += last
    return "".join(lines).rstrip()


def user_traceback(e):
    """e's traceback trimmed to the frames in the user's .py target (what they can act on), or
    None when none of it ran there. Catches errors raised anywhere in the user's code: while it
    loads, in f, in a Function's forward or backward (called from inside the engine)."""
    frames = _mine(e)
    if not frames:
        return None
    text = _format(e, frames)
    # the errors it was raised from (raise ... from e), or during the handling of which it was
    # raised in the user's code: shown above it, the whole chain, as Python does (one level was
    # shown: a loader's FileNotFoundError under a KeyError under a ValueError lost its root)
    seen = {id(e)}
    while True:
        cause = e.__cause__ if e.__cause__ is not None else (None if e.__suppress_context__ else e.__context__)
        if cause is None or id(cause) in seen or not (e.__cause__ is not None or _mine(cause)):
            return text
        link = ("The above exception was the direct cause of the following exception:" if e.__cause__ is not None
                else "During handling of the above exception, another exception occurred:")
        text = f"{_format(cause, _mine(cause))}\n\n{link}\n\n{text}"
        seen.add(id(cause))
        e = cause


def _default_array(target, name, np):
    """A default value (the file's `inputs`, f's keyword defaults, a module's parameter) as a
    float64 array; complex or non-numeric values are the user's error, said before numpy casts
    (a ComplexWarning with this file's line, or a TypeError: exit 3)."""
    v = target.defaults[name]
    where = pathlib.Path(target.text).name
    try:
        arr = np.asarray(v.detach().numpy() if hasattr(v, "detach") else v)
    except Exception:  # noqa: BLE001 - whatever the value is, it is not an array of numbers
        arr = None
    if arr is not None and arr.dtype.kind == "c":
        raise CliError(f"the default value of '{name}' given in {where} is complex: the engine computes with real "
                       f"numbers; make it real, or pass --{name} VALUES")
    if arr is None or arr.dtype.kind not in "biuf":
        raise CliError(f"the default value of '{name}' given in {where} is not numbers "
                       f"({type(v).__name__}): make it a number, a list of numbers or an array, or pass --{name} VALUES")
    return arr.astype(np.float64)


def build_inputs(target, raw, *, wrt=None, dtype="float64", seed=0):
    """{name: Tensor} for the target's variables; those in `wrt` (default: all) require grad.
    Settles which parameters with a non-tensor default are variables in this run (those named
    in --wrt; for a function, also those given a value) and the constants' values."""
    import numpy as np

    from expressions import parse_value
    from expressions.values import LazyGenerator
    wrt_list = [w.strip() for w in wrt.split(",") if w.strip()] if wrt else []
    optional = target.optional
    promoted = {n for n in optional if n in wrt_list or (n in raw and target.given_makes_variable)}
    target.names = [n for n in target.params if n not in optional or n in promoted]
    rng = LazyGenerator(seed)          # numpy.random is imported only for randn/rand values
    target.constants = {n: _constant(n, parse_value(raw[n], rng, name=n), d) if n in raw else d
                        for n, d in optional.items() if n not in promoted}
    known = getattr(raw, "known_options", ())
    for n in target.names:
        spelling = option_spelling(n, known)
        has_default = n in target.defaults or (n in optional and _numeric(optional[n])[1] is None)
        if spelling and (n in getattr(raw, "option_like", ()) or (n not in raw and not has_default)):
            raise CliError(f"the variable '{n}' is named like the option --{spelling}: give its value after --, as in "
                           f"`-- --{n} VALUES` (before --, --{spelling} sets the option)")
    for n in sorted(getattr(raw, "option_like", ())):
        if n not in target.params:
            raise CliError(f"no such option: --{n} (did you mean --{n.replace('_', '-')}?)")
    unknown = [n for n in raw if n not in target.params]
    if unknown:
        near = near_option(unknown[0], getattr(raw, "known_options", ()))
        if near:
            raise CliError(f"no such option: --{unknown[0]} (did you mean --{near}?)")
        used = ", ".join(target.params) or "no variables"
        raise CliError(f"--{unknown[0]} is given but the target does not use '{unknown[0]}' (it uses {used})")
    from engine._layout import same_layout
    np_dtype = {"float64": np.float64, "float32": np.float32, "": None}[dtype]
    tensors = {}
    kept = []
    for name in target.names:
        if name in raw:
            arr = parse_value(raw[name], rng, name=name)
        elif name in target.defaults or (name in optional and _numeric(optional[name])[1] is None):
            v = target.defaults[name] if name in target.defaults else optional[name]
            arr, bad = _numeric(v, target.lib)
            if bad is not None:
                where = target.origin.get(name, f"the default of '{name}'")
                raise CliError(f"{where} is {bad}: a value must be a number, a (nested) list of numbers, a real "
                               f"numpy array or a tensor" + (f" (or pass --{name} VALUES)" if "text" in bad else ""))
        else:
            span = target.program.span_of(name) if target.program else None
            raise CliError(f"'{name}' has no value: pass --{name} VALUES", span=span, text=target.text)
        if np_dtype is None and arr.dtype == np.float32 and name not in raw:
            kept.append(name)            # the file's float32 value (below)
        tensors[name] = arr
    # without --dtype: a file whose values are all float32 (`inputs` of a model run in float32) is
    # checked in float32, as it runs -- float32's gradients judged against a float64 reference of
    # the same computation; once any value is float64 (typed on the command line, or the file's
    # own), all are float64, as one dtype must meet another in f (nn.Linear's float32 weight and a
    # float64 --x would not multiply). Either way it is said.
    as32 = bool(kept) and len(kept) == len(tensors)
    for name, arr in tensors.items():
        tensors[name] = _leaf(target.lib, same_layout(arr, np_dtype or (np.float32 if as32 else np.float64)))
    if kept:
        from . import render
        these = f"{', '.join(kept)} {'is' if len(kept) == 1 else 'are'} float32 in the file"
        render.remark(f"{these}, and checked so (float32 gradients judged against a float64 reference of the same "
                      f"computation); --dtype float64 checks float64 copies instead" if as32 else
                      f"{these}, and used as float64 copies beside the float64 values; --dtype float32 uses float32")
    chosen = list(target.names) if not wrt else wrt_list
    for w in chosen:
        if w not in tensors:
            raise CliError(f"--wrt names '{w}', which the target does not use (it uses {', '.join(target.params)})")
    for name in chosen:
        tensors[name].requires_grad_(True)
    return tensors, chosen


def _leaf(lib, arr):
    """A tensor of lib (the engine, or torch) holding arr itself: its memory layout -- a transposed or
    sliced value's strides -- is what f receives, as lib.tensor's copy would not keep."""
    if lib.__name__ == "torch":
        return lib.from_numpy(arr)
    from engine.tensor import Tensor
    return Tensor._make(arr)


def _constant(name, arr, default):
    """A value given on the command line for a constant parameter, in its default's kind: a
    number for a number (an int for an int), else an array (a tensor when the target runs)."""
    if isinstance(default, (int, float)) and not isinstance(default, bool) and arr.ndim == 0:
        if isinstance(default, int):
            if not float(arr).is_integer():
                raise CliError(f"--{name} takes a whole number (its default is {default}), not {float(arr):g}")
            return int(arr)
        return float(arr)
    return arr
