"""What every command shares: reading TARGET (an expression or a .py file), the `--NAME VALUES`
arguments, and turning them into engine tensors. No math and no rendering here.
"""
import inspect
import pathlib
import re
import sys
import traceback

from .errors import CliError, UserCodeError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class Values(dict):
    """{name: value text}, plus the command's option names (a variable may not reuse one)."""

    known_options = frozenset()


def parse_variable_args(args, known_options):
    """`--w 1,2 --x=-1,2` (the tokens Click left over) -> {"w": "1,2", "x": "-1,2"}."""
    values = Values()
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise CliError(f"unexpected argument '{tok}': give variable values as --NAME VALUES after the "
                           "target, like --w 1,2 (a variable named like one of the command's options, such "
                           "as --json, must be renamed)")
        name, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and not _looks_numeric(args[i + 1])):
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
                           "digits and _")
        if "_" in name and name.replace("_", "-") in known_options:
            raise CliError(f"no such option: --{name} (did you mean --{name.replace('_', '-')}?)")
        if name in known_options:
            raise CliError(f"the variable '{name}' clashes with the option --{name}: rename the variable")
        if name in values:
            raise CliError(f"--{name} is given twice: give each variable once")
        values[name] = value
    return values


def near_option(name, known_options):
    """The command option `name` is probably a misspelling of, or None."""
    import difflib
    options = sorted(o for o in known_options if len(o) > 1)
    near = difflib.get_close_matches(name.replace("_", "-"), options, n=1, cutoff=0.75)
    return near[0] if near else None


def _looks_numeric(s):
    return bool(re.match(r"^--?[0-9.]", s))


class Target:
    """A loaded TARGET. `call(tensors)` runs it on {name: Tensor} and returns a tuple of outputs."""

    def __init__(self, kind, text, names, call, defaults=None, program=None, label=None):
        self.kind = kind
        self.text = text
        self.names = names
        self._call = call
        self.defaults = defaults or {}
        self.program = program
        self.label = label or text

    def call(self, tensors):
        out = self._call(tensors)
        single = not isinstance(out, (tuple, list))
        outs = (out,) if single else tuple(out)
        if not outs:
            raise CliError("the target returned no outputs (an empty tuple); return a tensor or a tuple of tensors")
        import engine
        for k, o in enumerate(outs):
            if not isinstance(o, engine.Tensor):
                raise CliError(f"the target returned {type(o).__name__} (output {k}); it must return engine "
                               "tensors, one or a tuple")
        return outs, single

    def function(self, names):
        """A positional function of the given input names (for jacobian / gradcheck)."""
        def fn(*xs):
            outs, single = self.call(dict(zip(names, xs)))
            return outs[0] if single else outs
        return fn


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
        backends.choose(backend, path, source)
        return _load_file(path, func_name, shim=backends.imports_torch(source))
    backends.choose_expression(backend)
    from expressions import compile_expression
    program = compile_expression(text, variables=given)
    return Target("expression", text, list(program.variables), program.run, program=program)


def _load_file(path, func_name, shim=False):
    import importlib.util
    module_name = "__autograd_target__"
    from importlib.machinery import SourceFileLoader
    # an explicit source loader: a file named t.PY is Python too (the suffix picks no loader)
    spec = importlib.util.spec_from_file_location(module_name, str(path),
                                                  loader=SourceFileLoader(module_name, str(path)))
    module = importlib.util.module_from_spec(spec)
    _USER_FILES.add(path.resolve())
    sys.path.insert(0, str(path.resolve().parent))
    from .backends import torch_on_engine
    try:
        with torch_on_engine(shim):          # `import torch` is the engine's, while it loads
            spec.loader.exec_module(module)  # the user's own file, run as `python file.py` would
    except KeyboardInterrupt:
        raise                                # Ctrl-C is 130, not the user's error
    except SystemExit as e:
        raise CliError(f"{path} called exit({e.code}) while being loaded") from None
    except BaseException as e:  # noqa: BLE001 - the user's code may raise anything
        raise UserCodeError(user_traceback(e) or _format(e, [])) from None
    finally:
        sys.path.pop(0)
    if not hasattr(module, func_name):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module_name)
        hint = f"; it defines {', '.join(found)}: pick one with --func NAME" if found else ""
        raise CliError(f"{path} has no function '{func_name}'{hint}")
    obj = getattr(module, func_name)
    import engine
    if isinstance(obj, type) and issubclass(obj, engine.autograd.Function):
        params = [p for p in inspect.signature(obj.forward).parameters][1:]
        fn = obj.apply
    elif callable(obj):
        params = list(inspect.signature(obj).parameters)
        fn = obj
    else:
        raise CliError(f"'{func_name}' in {path} is not a function")
    defaults = getattr(module, "inputs", {}) or {}
    if not isinstance(defaults, dict):
        raise CliError(f"'inputs' in {path} must be a dict of name -> values")

    def call(tensors):
        try:
            with torch_on_engine(shim):
                return fn(*[tensors[p] for p in params])
        except (CliError, KeyboardInterrupt):
            raise
        except SystemExit as e:
            raise UserCodeError(_format(e, _mine(e)) + f"\nyour code called sys.exit({e.code!r}) in "
                                f"{func_name}: nothing was computed or checked") from None
        except BaseException as e:  # noqa: BLE001 - the user's code may raise anything
            raise UserCodeError(user_traceback(e) or _format(e, [])) from None
    return Target("file", str(path), params, call, defaults=defaults, label=f"{path.name}:{func_name}")


MAX_JACOBIAN = 10 ** 8    # elements of a dense Jacobian (800 MB in float64)


def check_jacobian_size(target, tensors, chosen, hint, outs=None):
    """Refuse, before any work, a dense Jacobian that would not fit: one forward gives the output
    sizes (`jacobian 'x*2' --x 'randn(100000)'` asked for 74.5 GiB and died of MemoryError)."""
    import engine
    if outs is None:
        with engine.no_grad():
            outs, _ = target.call(tensors)
    n = sum(o.numel() for o in outs) * sum(tensors[c].numel() for c in chosen)
    if n > MAX_JACOBIAN:
        raise CliError(f"the Jacobian would have {n:,} elements ({n * 8 / 2 ** 30:.1f} GiB in float64); the limit is "
                       f"{MAX_JACOBIAN:,}: {hint}")


_USER_FILES = set()       # the .py targets loaded in this process (resolved paths)


def _mine(e):
    """The frames of e's traceback that are in a loaded target file."""
    frames = traceback.extract_tb(e.__traceback__)
    return [f for f in frames if pathlib.Path(f.filename).resolve() in _USER_FILES]


def _format(e, frames):
    lines = ["Traceback (in your file):\n"] + traceback.format_list(frames) if frames else []
    lines += traceback.format_exception_only(type(e), e)
    return "".join(lines).rstrip()


def user_traceback(e):
    """e's traceback trimmed to the frames in the user's .py target (what they can act on), or
    None when none of it ran there. Catches errors raised anywhere in the user's code: while it
    loads, in f, in a Function's forward or backward (called from inside the engine)."""
    frames = _mine(e)
    return _format(e, frames) if frames else None


def build_inputs(target, raw, *, wrt=None, dtype="float64", seed=0):
    """{name: Tensor} for the target's variables; those in `wrt` (default: all) require grad."""
    import numpy as np

    import engine
    from expressions import parse_value
    from expressions.values import LazyGenerator
    for n in target.names:
        if n in getattr(raw, "known_options", ()):
            raise CliError(f"the variable '{n}' clashes with the option --{n}: rename the variable")
    unknown = [n for n in raw if n not in target.names]
    if unknown:
        near = near_option(unknown[0], getattr(raw, "known_options", ()))
        if near:
            raise CliError(f"no such option: --{unknown[0]} (did you mean --{near}?)")
        used = ", ".join(target.names) or "no variables"
        raise CliError(f"--{unknown[0]} is given but the target does not use '{unknown[0]}' (it uses {used})")
    rng = LazyGenerator(seed)          # numpy.random is imported only for randn/rand values
    np_dtype = {"float64": np.float64, "float32": np.float32}[dtype]
    tensors = {}
    for name in target.names:
        if name in raw:
            arr = parse_value(raw[name], rng, name=name)
        elif name in target.defaults:
            v = target.defaults[name]
            arr = np.array(v.numpy(force=True) if isinstance(v, engine.Tensor) else v, dtype=np.float64)
        else:
            span = target.program.span_of(name) if target.program else None
            raise CliError(f"'{name}' has no value: pass --{name} VALUES", span=span, text=target.text)
        tensors[name] = engine.tensor(arr.astype(np_dtype))
    chosen = list(target.names) if not wrt else [w.strip() for w in wrt.split(",") if w.strip()]
    for w in chosen:
        if w not in tensors:
            raise CliError(f"--wrt names '{w}', which the target does not use (it uses {', '.join(target.names)})")
    for name in chosen:
        tensors[name].requires_grad_(True)
    return tensors, chosen
