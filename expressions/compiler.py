"""Expression text -> checked AST -> a Program of engine calls.

The text is parsed with `ast.parse(mode="eval")` and walked by an allow-list: a table from
node type to a compile method. Anything not in the table is rejected with its column span.
Nothing found through the text is ever called except the engine functions named in the op
registry's exports (engine.ops.public_functions, each with the keywords it declares); no Python
`eval`, `exec` or `compile` is used.
Constant arithmetic is done in float64 with numpy, so `9**9**9**9` is `inf` at once.
"""
import ast
import difflib
import math

import numpy as np

from .errors import ExpressionError

MAX_LENGTH = 10_000
MAX_DEPTH = 100
CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}


def _functions():
    from engine.ops import public_functions
    return public_functions()


def _keywords(name):
    """The keyword arguments an expression may pass to `name`, as its export declares them."""
    from engine.ops import expression_keywords
    return expression_keywords(name)


_FUNCS = None


def functions():
    """Name -> engine function callable from an expression (from the engine's op registry)."""
    global _FUNCS
    if _FUNCS is None:
        _FUNCS = _functions()
    return _FUNCS


def _namespaces():
    """The submodules whose functions an expression calls as `linalg.det(A)`."""
    return {n.split(".", 1)[0] for n in functions() if "." in n}


def _is_str(node):
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _takes_string(name, keyword):
    """Whether `keyword` of function `name` takes a string (its default is one: reduction="mean")."""
    import inspect
    try:
        p = inspect.signature(functions()[name]).parameters.get(keyword)
    except (TypeError, ValueError, KeyError):
        return False
    return p is not None and (isinstance(p.default, str) or keyword in _STRING_KEYWORDS)


_STRING_KEYWORDS = frozenset({"ord"})       # linalg.norm(A, ord='nuc'): None by default, a string or a number


# the parameters that take a tensor (the registry's vocabulary: x, y; PyTorch's names elsewhere):
# a list of numbers given there is a tensor, on the engine as in PyTorch (whose functions take
# no list there: `cross_entropy(z, [0, 2])` under --compare torch)
_TENSOR_PARAMS = frozenset({"x", "y", "input", "other", "tensor", "target", "weight", "pos_weight", "exponent",
                            "mat1", "mat2", "index", "mask", "condition", "src", "source"})
_INDEX_TARGETS = frozenset({"cross_entropy", "nll_loss"})      # whole numbers there are class indices


def _tensor_slots(name):
    """({position}, {keyword}) of the parameters of function `name` that take a tensor, and the
    kind of tensor a list there becomes: "index" (int64) or "float" (the other tensors' dtype)."""
    import inspect
    try:
        params = list(inspect.signature(functions()[name]).parameters)
    except (TypeError, ValueError, KeyError):
        return {}, {}

    def kind(p):
        return "index" if p == "index" or (p == "target" and name in _INDEX_TARGETS) else "float"
    return ({i: kind(p) for i, p in enumerate(params) if p in _TENSOR_PARAMS},
            {p: kind(p) for p in params if p in _TENSOR_PARAMS})


def _list_as_tensor(lib, v, kind, like):
    """A tuple of numbers (a list in the expression) given for a tensor parameter, as a tensor:
    int64 class indices where every number is whole, else the dtype of the call's tensors."""
    arr = np.asarray(v)
    if kind == "index" and arr.dtype.kind in "iu":
        return lib.tensor(arr.astype(np.int64))
    t = lib.tensor(arr.astype(np.float64))
    return t.to(like.dtype) if like is not None and like.is_floating_point() else t


def _first_param(name):
    import inspect
    try:
        params = list(inspect.signature(functions()[name]).parameters)
    except (TypeError, ValueError, KeyError):
        return None
    return params[0] if params else None


class EngineLibrary:
    """What a compiled expression calls at run time: the engine (the default). Another tensor
    library (the CLI's `--compare torch` passes PyTorch's) gives the same four things; names are
    always checked against the engine's registry first, so the language is the same."""

    def __init__(self):
        import engine
        self.Tensor = engine.Tensor
        self.tensor = engine.tensor
        self._ops = engine.ops

    def function(self, name, method):
        return functions()[name]

    def compare(self, op):
        return getattr(self._ops, op)

    def binop(self, name):
        Tensor, tensor = self.Tensor, self.tensor

        def fn(a, b):
            if not isinstance(a, Tensor):
                if name == "matmul":
                    a = tensor(np.asarray(a, dtype=np.float64))
                else:
                    return getattr(Tensor, _REFLECTED[name])(b, a)
            return getattr(Tensor, _DUNDER[name])(a, b)
        return fn


class Const:
    """A compile-time number (or tuple of them): folded, never a Tensor."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class Pieces:
    """What a function that returns several tensors gives (split, chunk, unbind, meshgrid; max,
    sort, topk with a dim give (values, indices)), as in PyTorch: pick one with [i] (or .values /
    .indices); a sequence argument (stack, cat) takes them all. Used as one tensor, it is an
    error that says so."""

    __slots__ = ("items", "named", "seg", "span")

    def __init__(self, items, seg, span):
        self.items = tuple(items)
        self.named = hasattr(items, "values") and hasattr(items, "indices")
        self.seg, self.span = seg, span

    def message(self):
        pick = f"{self.seg}[0]" + (f" or {self.seg}.values" if self.named else "")
        what = "(values, indices)" if self.named else f"{len(self.items)} tensors"
        return f"'{self.seg}' gives {what}, not one tensor: pick one, as in {pick}"


class Program:
    """A compiled expression: `variables` in order of first use, `run(values)` builds the graph."""

    def __init__(self, text, root, variables, spans, lib, running=None):
        self.lib = lib
        self.text = text
        self._root = root
        self.variables = variables
        self._spans = spans
        self._running = running or [None]

    def running_span(self):
        """The (start, end) of the operation this program is running now, or None: who watches
        the nodes made (locate, explain) asks it which part of the text made each."""
        return self._running[0]

    def span_of(self, name):
        return self._spans.get(name)

    def run(self, values):
        """Evaluate with `values` (name -> engine Tensor); returns a Tensor."""
        for name in self.variables:
            if name not in values:
                raise ExpressionError(f"'{name}' has no value: pass --{name} VALUES", self._spans[name], self.text)
        out = self._root(values)
        if isinstance(out, Pieces):
            raise ExpressionError(out.message(), out.span, self.text)
        if isinstance(out, Const):
            return self.lib.tensor(np.asarray(out.value, dtype=np.float64))
        return out


def compile_expression(text, variables=(), lib=None):
    """Compile `text`; raises ExpressionError (with a span) for anything outside the language.
    variables: names the caller has values for; such a name is a variable even where it would
    be a constant (`e`, `pi`, `inf`, `nan`). lib: what the program calls (EngineLibrary)."""
    if not isinstance(text, str):
        raise ExpressionError("the expression must be text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text)} characters long; the limit is {MAX_LENGTH}",
                              (MAX_LENGTH, len(text)), text)
    if not text.strip():
        raise ExpressionError("the expression is empty", (0, len(text)), text)
    try:
        tree = ast.parse(text.strip() if "\n" not in text else text, mode="eval")
    except SyntaxError as e:
        off = _syntax_offset(text, e)
        if "too many nested" in (e.msg or ""):
            raise ExpressionError(f"the expression is nested too deeply ({e.msg})", (off, off + 1), text) from None
        raise ExpressionError(f"invalid syntax: {e.msg}", (off, off + 1), text) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"the expression is nested too deeply (limit {MAX_DEPTH} levels)", (0, len(text)),
                              text) from None
    except ValueError as e:  # e.g. null bytes
        raise ExpressionError(f"invalid text: {e}", (0, len(text)), text) from None
    lib = lib or EngineLibrary()
    c = _Compiler(text if "\n" in text else text.strip(), text, frozenset(variables), lib)
    try:
        root = c.compile(tree.body, 0)
    except RecursionError:
        raise ExpressionError(f"the expression is nested too deeply (limit {MAX_DEPTH} levels)", (0, len(text)),
                              text) from None
    return Program(text, root, c.variables, c.spans, lib, c.running)


def _syntax_offset(text, e):
    if e.lineno is None or e.offset is None:
        return 0
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[:e.lineno - 1]) + max(e.offset - 1, 0)


class _Compiler:
    def __init__(self, source, original, given=frozenset(), lib=None):
        self.lib = lib
        self.given = given
        self.source = source
        self.text = original
        self.shift = original.find(source) if source in original else 0
        self.variables = []
        self.spans = {}
        self.running = [None]      # the span of the operation being run now (Program.running_span)
        # line starts as Python's tokenizer counts lines: \n, \r\n and a lone \r end a line
        self._line_starts = [0]
        for i, ch in enumerate(source):
            if ch == "\n" or (ch == "\r" and source[i + 1:i + 2] != "\n"):
                self._line_starts.append(i + 1)

    # -- helpers ---------------------------------------------------------------------------------
    def span(self, node):
        start = self._line_starts[node.lineno - 1] + node.col_offset
        end_line = getattr(node, "end_lineno", node.lineno) or node.lineno
        end = self._line_starts[end_line - 1] + (node.end_col_offset or node.col_offset + 1)
        return (start + self.shift, end + self.shift)

    def segment(self, node):
        s, e = self.span(node)
        return self.text[s:e]

    def error(self, message, node):
        return ExpressionError(message, self.span(node), self.text)

    def compile(self, node, depth):
        if depth > MAX_DEPTH:
            raise self.error(f"the expression is nested too deeply (limit {MAX_DEPTH} levels)", node)
        method = _DISPATCH.get(type(node))
        if method is None:
            raise self.error(_rejection(node), node)
        return method(self, node, depth + 1)

    def guarded(self, node, fn):
        """Run an engine call, turning engine errors into ExpressionErrors that point at `node`."""
        from engine.errors import EngineError
        seg = self.segment(node)
        span = self.span(node)
        text = self.text

        def run(env):
            try:
                out = fn(env)
            except ExpressionError:
                raise
            except (EngineError, IndexError, TypeError, ValueError, ZeroDivisionError, OverflowError,
                    MemoryError) as e:
                raise ExpressionError(f"{_clean(e)} in '{seg}'", span, text) from None
            _check_size(_shape(out), seg, span, text)        # views too: expand() is free, its use is not
            return out
        return run

    # -- leaves ------------------------------------------------------------------------------------
    def c_constant(self, node, depth):
        v = node.value
        if isinstance(v, bool):
            return lambda env, v=v: Const(v)
        if isinstance(v, (int, float)):
            if isinstance(v, int) and abs(v) > 2 ** 53:
                v = float(v)
            return lambda env, v=v: Const(v)
        if isinstance(v, str):
            raise self.error("a string is not allowed here: strings are only the values of keywords that take "
                             "one (reduction='sum') and einsum's equation", node)
        kind = "strings" if isinstance(v, bytes) else type(v).__name__ + " values"
        raise self.error(f"{kind} are not allowed in expressions", node)

    def c_name(self, node, depth):
        name = node.id
        if name.startswith("_"):
            raise self.error(f"names starting with '_' are not allowed ('{name}')", node)
        if name in CONSTANTS and name not in self.given:
            return lambda env, v=CONSTANTS[name]: Const(v)
        if name in functions() and name not in self.given:
            raise self.error(f"'{name}' is a function: call it, as in {name}(x)", node)
        if name in ("True", "False", "None"):
            raise self.error(f"'{name}' is not allowed here", node)
        if name not in self.spans:
            self.variables.append(name)
            self.spans[name] = self.span(node)
        return lambda env, name=name: env[name]

    # -- operators ---------------------------------------------------------------------------------
    def c_binop(self, node, depth):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.error(f"the operator '{_OP_TEXT.get(type(node.op), type(node.op).__name__)}' is not "
                             "allowed; use + - * / ** @", node)
        left = self.compile(node.left, depth)
        right = self.compile(node.right, depth)
        name = op
        fn = self.lib.binop(name)
        seg = self.segment(node)
        span = self.span(node)
        text = self.text
        sym = _OP_TEXT[type(node.op)]

        def run(env):
            a, b = _one(left(env), self.text), _one(right(env), self.text)
            if isinstance(a, Const) and isinstance(b, Const):
                return Const(_fold(name, a.value, b.value))
            a = a.value if isinstance(a, Const) else a
            b = b.value if isinstance(b, Const) else b
            try:
                pre = (_product_shape("matmul", _shape(a), _shape(b)) if name == "matmul"
                       else np.broadcast_shapes(_shape(a), _shape(b)))
            except ValueError:
                pre = None                            # not broadcastable: the op says so below
            if pre is not None:
                _check_size(pre, seg, span, text)
            try:
                self.running[0] = span
                out = fn(a, b)
            except Exception as e:   # noqa: BLE001 - every engine failure becomes a pointed message
                raise ExpressionError(_binop_message(sym, a, b, e, seg), span, text) from None
            _check_size(_shape(out), seg, span, text)
            return out
        return run

    def c_unaryop(self, node, depth):
        operand = self.compile(node.operand, depth)
        span = self.span(node)
        if isinstance(node.op, ast.USub):
            def run(env):
                v = _one(operand(env), self.text)
                self.running[0] = span
                return Const(-v.value) if isinstance(v, Const) else -v
            return run
        if isinstance(node.op, ast.UAdd):
            return operand
        raise self.error(f"the operator '{_OP_TEXT.get(type(node.op), 'not')}' is not allowed", node)

    def c_compare(self, node, depth):
        if len(node.ops) != 1:
            raise self.error("chained comparisons are not allowed; combine two comparisons with where()", node)
        op = _CMPS.get(type(node.ops[0]))
        if op is None:
            raise self.error("only < <= > >= == != comparisons are allowed", node)
        left = self.compile(node.left, depth)
        right = self.compile(node.comparators[0], depth)

        lib = self.lib
        cmp = lib.compare(op)

        def fn(env):
            a, b = _one(left(env), self.text), _one(right(env), self.text)
            a = a.value if isinstance(a, Const) else a
            b = b.value if isinstance(b, Const) else b
            if not isinstance(a, lib.Tensor):
                a = lib.tensor(a)
            return cmp(a, b)
        return self.guarded(node, fn)

    # -- calls, attributes, subscripts -----------------------------------------------------------
    def c_call(self, node, depth):
        f = node.func
        if isinstance(f, ast.Name):
            name, self_arg = f.id, None
            self._check_function(name, f)
        elif (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in _namespaces()
              and f.value.id not in self.given):
            # a submodule's function, spelled as in PyTorch: linalg.det(A) (no variable is named linalg)
            name, self_arg = f"{f.value.id}.{f.attr}", None
            self._check_function(name, f)
        elif isinstance(f, ast.Attribute):
            name = f.attr
            if name.startswith("_"):
                raise ExpressionError(f"attributes starting with '_' are not allowed ('.{name}')",
                                      self.attr_span(f), self.text)
            self._check_function(name, f, method=True)
            self_arg = self.compile(f.value, depth)
        else:
            raise self.error("only engine functions can be called (like tanh(x) or x.sum())", f)
        takes_tensors = _takes_sequence(functions()[name])
        fn = self.lib.function(name, self_arg is not None)
        allowed = _keywords(name)
        span = self.span(node)
        args = []
        takes_equation = _first_param(name) == "equation"
        for i, a in enumerate(node.args):
            if isinstance(a, ast.Starred):
                raise self.error("starred arguments (*args) are not allowed", a)
            args.append(self._string(a) if i == 0 and takes_equation and _is_str(a) else self._arg(a, depth))
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.error("**keyword arguments are not allowed", kw.value)
            if kw.arg in kwargs:
                raise self.error(f"keyword argument repeated: {kw.arg}=", kw.value)
            if kw.arg not in allowed:
                hint = f"; {name} takes {', '.join(f'{k}=' for k in sorted(allowed))}" if allowed else \
                    f"; {name} takes no keyword arguments"
                raise self.error(f"unknown keyword '{kw.arg}='{hint}", kw.value)
            kwargs[kw.arg] = (self._string(kw.value) if _is_str(kw.value) and _takes_string(name, kw.arg)
                              else self._arg(kw.value, depth))

        lib = self.lib
        by_position, by_keyword = _tensor_slots(name)

        seg = self.segment(node)

        def call(env):
            vals = [a(env) for a in args]
            vals = [_unconst(v) for v in vals]
            for k, v in enumerate(vals):
                if isinstance(v, Pieces):
                    if not takes_tensors:
                        raise ExpressionError(v.message(), v.span, self.text)
                    vals[k] = list(v.items)           # stack(chunk(x, 2)): a sequence of them
            if not takes_tensors and any(isinstance(v, list) for v in vals):
                raise ExpressionError(f"{name}() takes tensors, not a list: to join several tensors use "
                                      f"stack([...]) or cat([...])", span, self.text)
            kv = {k: _unconst(v(env)) for k, v in kwargs.items()}
            if self_arg is not None:
                s = _unconst(_one(self_arg(env), self.text))
                vals.insert(0, s if isinstance(s, lib.Tensor) else lib.tensor(s))
            elif vals and not isinstance(vals[0], (lib.Tensor, list, str)):
                vals[0] = lib.tensor(np.asarray(vals[0], dtype=np.float64))
            like = next((v for v in list(vals) + list(kv.values()) if isinstance(v, lib.Tensor)), None)
            for k, v in enumerate(vals):
                if isinstance(v, tuple) and k in by_position:
                    vals[k] = _list_as_tensor(lib, v, by_position[k], like)
            for k, v in kv.items():
                if isinstance(v, tuple) and k in by_keyword:
                    kv[k] = _list_as_tensor(lib, v, by_keyword[k], like)
            if name in _PRODUCTS and len(vals) >= 2:          # results larger than their inputs
                shape = _product_shape(name, _shape(vals[0]), _shape(vals[1]))
                if shape is not None:
                    _check_size(shape, self.segment(node), span, self.text)
            self.running[0] = span
            out = fn(*vals, **kv)
            if isinstance(out, tuple) and not isinstance(out, lib.Tensor):
                return Pieces(out, seg, span)        # chunk(x, 2)[1], max(x, dim=0).values
            return out
        return self.guarded(node, call)

    def _check_function(self, name, node, method=False):
        if name.startswith("_"):
            raise self.error(f"names starting with '_' are not allowed ('{name}')", node)
        if name not in functions():
            near = difflib.get_close_matches(name, list(functions()), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            what = "method" if method else "function"
            raise self.error(f"unknown {what} '{name}'{hint}", node)

    def _string(self, node):
        """A string given as data to an engine function (reduction='sum', einsum's equation):
        passed as is, never evaluated; the function says when it is not one it takes."""
        v = node.value
        if len(v) > 100:
            raise self.error("a string argument is limited to 100 characters", node)
        return lambda env, v=v: Const(v)

    def _arg(self, node, depth):
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [self.compile(e, depth) for e in node.elts]
            for e in node.elts:
                if isinstance(e, ast.Starred):
                    raise self.error("starred arguments (*args) are not allowed", e)

            def seq(env):
                vals = [_one(i(env), self.text) for i in items]
                if all(isinstance(v, Const) for v in vals):
                    return Const(tuple(_int_if_whole(v.value) for v in vals))
                return [v.value if isinstance(v, Const) else v for v in vals]
            return seq
        return self.compile(node, depth)

    def attr_span(self, node):
        """The '.name' part of an attribute node."""
        start = self.span(node.value)[1]
        return (start, self.span(node)[1])

    def c_attribute(self, node, depth):
        if node.attr in ("values", "indices"):
            value = self.compile(node.value, depth)
            attr = node.attr

            def pick(env):
                v = value(env)
                if not (isinstance(v, Pieces) and v.named):
                    raise ExpressionError(f"'.{attr}' is only on what max, min, sort, topk, kthvalue, median and "
                                          "mode return with a dim", self.attr_span(node), self.text)
                return v.items[0 if attr == "values" else 1]
            return self.guarded(node, pick)
        if node.attr != "T":
            if node.attr in functions():
                raise ExpressionError(f"'.{node.attr}' is a method: call it, as in x.{node.attr}()",
                                      self.attr_span(node), self.text)
            raise ExpressionError(f"attribute '.{node.attr}' is not allowed; only .T (transpose), .values and "
                                  ".indices are",
                                  self.attr_span(node), self.text)
        value = self.compile(node.value, depth)

        def run(env):
            v = value(env)
            if isinstance(v, Const):
                return v
            return v.T
        return self.guarded(node, run)

    def c_subscript(self, node, depth):
        value = self.compile(node.value, depth)
        key = self._index(node.slice, depth)

        def run(env):
            v = value(env)
            if isinstance(v, Const):
                raise ExpressionError("a number cannot be indexed", self.span(node), self.text)
            k = key(env)
            if isinstance(v, Pieces):
                if not isinstance(k, int):
                    raise ExpressionError(f"pick one of '{v.seg}' with a whole number, as in {v.seg}[0]",
                                          self.span(node), self.text)
                if not -len(v.items) <= k < len(v.items):
                    raise ExpressionError(f"'{v.seg}' gives {len(v.items)} tensors: [{k}] is out of range",
                                          self.span(node), self.text)
                return v.items[k]
            self.running[0] = self.span(node)
            return v[k]
        return self.guarded(node, run)

    def _index(self, node, depth):
        if isinstance(node, ast.Tuple):
            parts = [self._index_item(e, depth) for e in node.elts]
            return lambda env: tuple(p(env) for p in parts)
        return self._index_item(node, depth)

    def _index_item(self, node, depth):
        if isinstance(node, ast.Slice):
            parts = [self._int_expr(p, depth) if p is not None else (lambda env: None)
                     for p in (node.lower, node.upper, node.step)]
            return lambda env: slice(*(p(env) for p in parts))
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            return lambda env: Ellipsis
        if isinstance(node, ast.Constant) and node.value is None:
            return lambda env: None
        if isinstance(node, ast.List):           # x[[0, 2]]: integer-list (advanced) indexing
            items = [self._int_expr(e, depth) for e in node.elts]
            return lambda env: np.array([i(env) for i in items], dtype=np.int64)
        return self._int_or_index_tensor(node, depth)

    def _int_or_index_tensor(self, node, depth):
        """An index: a whole number, or a tensor of whole numbers (logp[[0, 1], t] with t the
        class indices), as PyTorch takes them."""
        inner = self.compile(node, depth)
        span, text = self.span(node), self.text
        lib = self.lib

        def run(env):
            v = inner(env)
            if isinstance(v, Const):
                if isinstance(v.value, bool) or not float(v.value).is_integer():
                    raise ExpressionError("indices must be whole numbers (ints, slices, ...)", span, text)
                return int(v.value)
            if isinstance(v, lib.Tensor):
                arr = np.asarray(v.detach().numpy())
                if arr.dtype.kind == "b":
                    return arr
                if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
                    arr = arr.astype(np.int64)     # values given as numbers on the command line
                if arr.dtype.kind not in "iu":
                    raise ExpressionError("indices must be whole numbers (ints, slices, or a tensor of whole numbers "
                                          "or booleans)", span, text)
                return arr.astype(np.int64)
            raise ExpressionError("indices must be whole numbers (ints, slices, ...)", span, text)
        return run

    def _int_expr(self, node, depth):
        inner = self.compile(node, depth)
        span, text = self.span(node), self.text

        def run(env):
            v = inner(env)
            if not isinstance(v, Const) or isinstance(v.value, bool) or not float(v.value).is_integer():
                raise ExpressionError("indices must be whole numbers (ints, slices, ...)", span, text)
            return int(v.value)
        return run

    def c_tuple(self, node, depth):
        raise self.error("a tuple is only allowed as a function argument, like reshape(x, (2, 3))", node)


def _one(v, text):
    """v, which must be one value (not what chunk() or max(x, dim=0) return)."""
    if isinstance(v, Pieces):
        raise ExpressionError(v.message(), v.span, text)
    return v


def _unconst(v):
    if isinstance(v, Const):
        return _int_if_whole(v.value) if not isinstance(v.value, tuple) else v.value
    if isinstance(v, list):
        return [_unconst(x) for x in v]
    return v


def _int_if_whole(v):
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer() and abs(v) < 2 ** 53:
        return int(v)
    return v


def _fold(name, a, b):
    with np.errstate(all="ignore"):
        fa, fb = np.float64(a), np.float64(b)
        if name == "add":
            r = fa + fb
        elif name == "sub":
            r = fa - fb
        elif name == "mul":
            r = fa * fb
        elif name == "div":
            r = fa / fb if fb != 0 else (np.float64(np.nan) if fa == 0 else np.copysign(np.inf, fa) * np.copysign(1, fb))
        elif name == "pow":
            r = np.power(fa, fb)
        else:
            raise ExpressionError("'@' needs tensors, not numbers")
    r = float(r)
    if isinstance(a, int) and isinstance(b, int) and name in ("add", "sub", "mul") and abs(r) < 2 ** 53:
        return int(r)
    return r


def _clean(e):
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg


def _check_size(shape, seg, span, text):
    from .values import MAX_DIMS, MAX_ELEMENTS
    if len(shape) > MAX_DIMS:       # numpy's broadcasting takes no more: the next op would die of it
        raise ExpressionError(f"'{seg}' would have {len(shape)} dimensions; the limit is {MAX_DIMS}", span, text)
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_ELEMENTS:
        raise ExpressionError(f"'{seg}' would have {n:,} elements; the limit is {MAX_ELEMENTS:,}", span, text)


_PRODUCTS = {"matmul", "mm", "bmm", "mv", "outer", "ger"}


def _product_shape(name, sa, sb):
    """The result shape of a product whose result can be far larger than its inputs (outer of two
    1e5-vectors is 1e10 elements), known before computing it; None when the shapes do not fit
    (the op then says why)."""
    if name in ("outer", "ger"):
        return (int(np.prod(sa)), int(np.prod(sb)))
    if len(sa) == 0 or len(sb) == 0:
        return None
    a = (1,) + tuple(sa) if len(sa) == 1 else tuple(sa)
    b = tuple(sb) + (1,) if len(sb) == 1 else tuple(sb)
    try:
        batch = np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        return None
    out = tuple(batch) + (a[-2], b[-1])
    if len(sa) == 1:
        out = out[:-2] + out[-1:]
    if len(sb) == 1:
        out = out[:-1]
    return out


def _takes_sequence(fn):
    """Whether `fn`'s first parameter is a sequence of tensors (cat, stack)."""
    import inspect
    try:
        first = next(iter(inspect.signature(fn).parameters), None)
    except (TypeError, ValueError):
        return False
    return first == "tensors"


def _shape(v):
    if isinstance(v, Pieces):
        return max((tuple(np.shape(t)) for t in v.items), key=lambda s: int(np.prod(s)), default=())
    return tuple(np.shape(v))          # a Tensor's .shape, or a number's ()


def _binop_message(sym, a, b, e, seg):
    sa, sb = _shape(a), _shape(b)
    if sym == "@":
        return f"cannot multiply shapes {sa} and {sb} with '@' in '{seg}' ({_clean(e)})"
    try:
        np.broadcast_shapes(sa, sb)
    except ValueError:
        return f"cannot broadcast shapes {sa} and {sb} in '{seg}'"
    return f"{_clean(e)} in '{seg}'"


def _rejection(node):
    kinds = {
        ast.Lambda: "lambda", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
        ast.DictComp: "comprehensions", ast.GeneratorExp: "generator expressions",
        ast.JoinedStr: "f-strings", ast.FormattedValue: "f-strings", ast.NamedExpr: "assignment (:=)",
        ast.IfExp: "conditional expressions", ast.BoolOp: "and/or",
        ast.Dict: "dicts", ast.Set: "sets", ast.Await: "await", ast.Yield: "yield",
        ast.YieldFrom: "yield", ast.Starred: "starred arguments (*args)", ast.List: "lists outside arguments",
        ast.Slice: "slices outside [...]",
    }
    kinds_hint = {ast.IfExp: "use where(cond, a, b)", ast.BoolOp: "use where() with comparisons"}
    what = kinds.get(type(node), type(node).__name__)
    hint = kinds_hint.get(type(node))
    verb = "are" if what.endswith("s") else "is"
    return f"{what} {verb} not allowed in expressions" + (f"; {hint}" if hint else "")


_DUNDER = {"add": "__add__", "sub": "__sub__", "mul": "__mul__", "div": "__truediv__",
           "pow": "__pow__", "matmul": "__matmul__"}
_REFLECTED = {"add": "__radd__", "sub": "__rsub__", "mul": "__rmul__", "div": "__rtruediv__",
              "pow": "__rpow__", "matmul": "__rmatmul__"}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow", ast.MatMult: "matmul"}
_OP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@",
            ast.FloorDiv: "//", ast.Mod: "%", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
            ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not", ast.Invert: "~"}
_CMPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
_DISPATCH = {
    ast.Constant: _Compiler.c_constant, ast.Name: _Compiler.c_name, ast.BinOp: _Compiler.c_binop,
    ast.UnaryOp: _Compiler.c_unaryop, ast.Compare: _Compiler.c_compare, ast.Call: _Compiler.c_call,
    ast.Attribute: _Compiler.c_attribute, ast.Subscript: _Compiler.c_subscript, ast.Tuple: _Compiler.c_tuple,
}
