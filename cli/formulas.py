"""The op registry's formulas (engine/ops/_core.py: `formula=` on each defop) rendered for one
recorded node, as `autograd explain` and the graph page show a node's local rule: the rule's
parameter names become what each input is called (a variable, the text of the subexpression that
computed it, or the value of a constant number), its attributes their values, and what those
settle is folded (`x**2`: "grad_x = grad * 2 * x"; `x/2`: "grad_x = grad / 2")."""
import ast
import inspect
import math
import operator as opr
import re

import numpy as np

from engine.tensor import Tensor


def node_rule(node, op, inputs):
    """"grad_a = ...; grad_b = ..." for the inputs of `node` that want a gradient; inputs: what
    explain calls each input (a name, or the text that computed it)."""
    n = len(inputs)
    formulas = (op.formula,) * n if op.variadic else op.formula
    rule = next(r for r in ((op.vjps,) if op.variadic else op.vjps) if r is not None)
    params, defaults = _signature(rule)
    values = dict(defaults)
    values.update(getattr(node, "_attrs", None) or {})
    shown = {}
    if not op.variadic:
        for k, p in enumerate(params[3:3 + n]):
            shown[p] = _shown_input(node, k, inputs[k])
    parts = []
    for k, text in enumerate(formulas):
        if k >= len(node._next) or node._next[k] is None or text is None:   # no gradient wanted or none
            continue
        vals = dict(values, i=k) if op.variadic else values
        parts.append(f"{_lhs(inputs[k])} = {_render(text, shown, vals)}")
    return "; ".join(parts)


_SIGNATURES = {}


def _signature(rule):
    """(parameter names, {name: default}) of a rule, read once per rule."""
    sig = _SIGNATURES.get(rule)
    if sig is None:
        ps = inspect.signature(rule).parameters.values()
        sig = _SIGNATURES[rule] = (tuple(p.name for p in ps),
                                   {p.name: p.default for p in ps if p.default is not inspect.Parameter.empty})
    return sig


def _shown_input(node, k, name):
    """What input k is called in a formula: explain's name for it, or the value of a constant
    number (`x/2`: the 2) that the node saved (after a backward without retain_graph the value
    is freed, and the constant keeps explain's name for it)."""
    if node._next[k] is not None or name != f"input{k}":
        return ("name", name.removesuffix(" (detached)"))      # --detach: w's value, named w
    saved = getattr(node, "_saved", None)
    v = saved[k] if isinstance(saved, tuple) and k < len(saved) else None
    v = v._data if isinstance(v, Tensor) else v
    v = _scalar(v, any_shape=True)
    return ("name", name) if v is _NO or v is None else ("value", v)


_NO = object()


def _scalar(v, any_shape=False):
    """v as a Python number, string, bool, None or tuple of ints, or _NO (an array: it keeps its name)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.dtype.kind in "biuf" and (v.ndim == 0 or (any_shape and v.size == 1)):
        return v.reshape(()).item()
    if isinstance(v, tuple) and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v):
        return tuple(int(e) for e in v)
    return _NO


def _lhs(name):
    return f"grad_{name}" if re.fullmatch(r"[A-Za-z_]\w*", name) else f"grad_({name})"


def _render(text, shown, values):
    """One formula, rendered: an expression (then any words after its first top-level ', '), or words."""
    expr, words = _split(text)
    if expr is None:
        return _words(text, shown, values)
    tree = _parse(expr)
    key = []
    for nm in _names(tree):
        if nm in shown:
            key.append((nm, shown[nm]))
        elif nm in values and (s := _scalar(values[nm])) is not _NO:
            key.append((nm, ("value", s)))
    key = tuple(key)
    body = _RENDERED.get((expr, key))
    if body is None:
        body = _RENDERED[expr, key] = _show(_fold(_subst(tree.body, dict(key))))[0]
    return body + (f", {_words(words, shown, values)}" if words else "")


_PARSED, _RENDERED, _SPLIT = {}, {}, {}


def _to_python(text):
    """The lesson's notation as Python: a^T -> a.mT, ^ -> **."""
    return re.sub(r"\^T\b", ".mT", text).replace("^", "**")


def _parse(expr):
    tree = _PARSED.get(expr)
    if tree is None:
        tree = _PARSED[expr] = ast.parse(_to_python(expr), mode="eval")
    return tree


def _names(tree):
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in funcs})


def _split(text):
    """(expression, words) of a formula (engine/ops/_core.py): expression None for words alone."""
    if text in _SPLIT:
        return _SPLIT[text]
    res = (None, text)
    try:
        _parse(text)
        res = (text, "")
    except SyntaxError:
        depth = 0
        for i, c in enumerate(text):
            depth += c in "([{"
            depth -= c in ")]}"
            if c == "," and depth == 0 and text[i + 1:i + 2] == " ":
                try:
                    _parse(text[:i])
                    res = (text[:i], text[i + 2:])
                except SyntaxError:
                    pass
                break
    _SPLIT[text] = res
    return res


def _words(text, shown, values):
    """Words with the rule's names replaced: inputs by what explain calls them (in parentheses
    when they are more than one token), attributes that are numbers by their values."""

    def one(m):
        w = m.group(0)
        if w in shown:
            kind, v = shown[w]
            return _num(v) if kind == "value" else (v if _atomic(v) else f"({v})")
        v = _scalar(values.get(w, _NO))
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return _num(v)
        return w
    return re.sub(r"\b[A-Za-z_]\w*\b", one, text)


def _atomic(text):
    """Whether text reads as one token: a name or number, or one followed by (...) or [...]."""
    m = re.match(r"[A-Za-z_][\w.]*|\d+(\.\d+)?(e-?\d+)?", text)
    if m is None:
        return False
    i = m.end()
    while i < len(text):
        if text[i] not in "([":
            return False
        depth = 0
        for j in range(i, len(text)):
            depth += text[j] in "(["
            depth -= text[j] in ")]"
            if depth == 0:
                break
        else:
            return False
        i = j + 1
    return True


def _num(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return repr(v).replace("'", '"') if isinstance(v, str) else str(v)
    if isinstance(v, tuple):
        return _num(v[0]) if len(v) == 1 else "(" + ", ".join(_num(e) for e in v) + ")"
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


class _Shown:
    """An input's text in a formula tree (a name, or a subexpression such as `W1 @ x + b1`)."""

    def __init__(self, text):
        self.text = text


def _subst(n, key):
    """A copy of tree n with names replaced: ("name", text) -> the text, ("value", v) -> v."""
    if isinstance(n, ast.Name):
        if n.id == "inf":
            return ast.Constant(math.inf)
        s = key.get(n.id)
        if s is None:
            return n
        return _Shown(s[1]) if s[0] == "name" else ast.Constant(s[1])
    if isinstance(n, ast.Call):
        return ast.Call(n.func, [_subst(a, key) for a in n.args], [])
    if not isinstance(n, ast.AST):
        return n
    new = type(n)()
    for field, v in ast.iter_fields(n):
        setattr(new, field, [_subst(e, key) for e in v] if isinstance(v, list) else _subst(v, key))
    return new


def _const(n, kinds=(int, float)):
    return isinstance(n, ast.Constant) and isinstance(n.value, kinds) and not (
        isinstance(n.value, bool) and bool not in kinds)


def _fold(n):
    """Fold what a node's attributes settled: arithmetic on numbers, x * 1, x^1, 0 * x, tests of
    attributes (choosing a branch of `a if test else b`), a test against a missing bound (None)."""
    if isinstance(n, _Shown) or not isinstance(n, ast.AST):
        return n
    if isinstance(n, ast.Call):
        args = [_fold(a) for a in n.args]
        name = n.func.id if isinstance(n.func, ast.Name) else None
        if name == "argsort" and len(args) == 1 and _const(args[0], (tuple,)):
                    return ast.Constant(tuple(int(i) for i in np.argsort(args[0].value)))
        if name == "abs" and len(args) == 1 and _const(args[0]):
            return ast.Constant(abs(args[0].value))
        return ast.Call(n.func, args, [])
    if isinstance(n, ast.IfExp):
        test = _fold(n.test)
        if isinstance(test, ast.Constant):
            return _fold(n.body if test.value else n.orelse)
        return ast.IfExp(test, _fold(n.body), _fold(n.orelse))
    if isinstance(n, ast.Tuple):
        elts = [_fold(e) for e in n.elts]
        if all(_const(e, (int,)) for e in elts):
            return ast.Constant(tuple(e.value for e in elts))
        return ast.Tuple(elts)
    if isinstance(n, ast.UnaryOp):
        v = _fold(n.operand)
        if isinstance(n.op, ast.USub):
            if _const(v):
                return ast.Constant(-v.value)
            if _const(v, (tuple,)):
                return ast.Constant(tuple(-e for e in v.value))
            if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub):
                return v.operand
        if isinstance(n.op, ast.Not) and _const(v, (bool,)):
            return ast.Constant(not v.value)
        return ast.UnaryOp(n.op, v)
    if isinstance(n, ast.Subscript):
        v, s = _fold(n.value), _fold(n.slice)
        if _const(v, (tuple,)) and _const(s, (int,)) and -len(v.value) <= s.value < len(v.value):
            return ast.Constant(v.value[s.value])
        return ast.Subscript(v, s)
    if isinstance(n, ast.Compare):
        parts = [_fold(n.left)] + [_fold(c) for c in n.comparators]
        if any(isinstance(p, ast.Constant) and p.value is None for p in parts):
            return ast.Constant(True)              # a missing bound: the test holds
        if all(isinstance(p, ast.Constant) for p in parts):
            ops = {ast.Eq: opr.eq, ast.NotEq: opr.ne, ast.Lt: opr.lt, ast.LtE: opr.le, ast.Gt: opr.gt, ast.GtE: opr.ge}
            try:
                return ast.Constant(all(ops[type(o)](a.value, b.value) for o, a, b in zip(n.ops, parts, parts[1:])))
            except TypeError:
                pass
        return ast.Compare(parts[0], n.ops, parts[1:])
    if isinstance(n, ast.BoolOp):
        vals = [_fold(v) for v in n.values]
        stop = isinstance(n.op, ast.Or)            # the value that decides: True for or, False for and
        if any(_const(v, (bool,)) and v.value is stop for v in vals):
            return ast.Constant(stop)
        vals = [v for v in vals if not _const(v, (bool,))]
        return ast.Constant(not stop) if not vals else vals[0] if len(vals) == 1 else ast.BoolOp(n.op, vals)
    if isinstance(n, ast.BinOp):
        return _fold_binop(n.op, _fold(n.left), _fold(n.right))
    if isinstance(n, ast.Attribute):
        return ast.Attribute(_fold(n.value), n.attr, n.ctx)
    return n


def _fold_binop(op, a, b):
    ca, cb = _const(a), _const(b)
    va, vb = (a.value if ca else None), (b.value if cb else None)
    if ca and cb:
        if isinstance(op, ast.Add):
            return ast.Constant(va + vb)
        if isinstance(op, ast.Sub):
            return ast.Constant(va - vb)
        if isinstance(op, ast.Mult):
            return ast.Constant(va * vb)
        if isinstance(op, ast.Div) and vb != 0 and float(va / vb).is_integer():
            return ast.Constant(va // vb if isinstance(va, int) and isinstance(vb, int) else va / vb)
        if isinstance(op, ast.Pow) and isinstance(vb, int) and 0 <= vb <= 8 and abs(va) <= 100:
            return ast.Constant(va ** vb)
    if isinstance(op, ast.BitAnd):
        for x, y in ((a, b), (b, a)):
            if _const(x, (bool,)):
                return y if x.value else ast.Constant(False)
    if isinstance(op, ast.Mult):
        if (ca and va == 0) or (cb and vb == 0):
            return ast.Constant(0)
        if ca and va == 1:
            return b
        if cb and vb == 1:
            return a
    if isinstance(op, ast.Div):
        if cb and vb == 1:
            return a
        if ca and va == 0:
            return ast.Constant(0)
    if isinstance(op, ast.Add):
        if ca and va == 0:
            return b
        if cb and vb == 0:
            return a
    if isinstance(op, ast.Sub):
        if cb and vb == 0:
            return a
        if ca and va == 0:
            return _fold(ast.UnaryOp(ast.USub(), b))
    if isinstance(op, ast.Pow):
        if cb and vb == 1:
            return a
        if cb and vb == 0:
            return ast.Constant(1)
    return ast.BinOp(a, op, b)


# how tightly each form binds, as in Python: a part binding less than its place needs is parenthesised
_BINARY = {"Add": (10, " + "), "Sub": (10, " - "), "Mult": (11, " * "), "Div": (11, " / "), "MatMult": (11, " @ "),
           "Pow": (13, "^"), "BitAnd": (8, " & "), "BitOr": (6, " | ")}
_COMPARE = {"Eq": " == ", "NotEq": " != ", "Lt": " < ", "LtE": " <= ", "Gt": " > ", "GtE": " >= "}


def _show(n):
    """(text, binding) of a formula tree in the lesson's notation."""

    def wrap(m, need, signed=False):
        t, p = _show(m)
        return f"({t})" if p < need or (signed and p == 12) else t
    if isinstance(n, _Shown):
        return n.text, (15 if _atomic(n.text) else 0)
    if isinstance(n, ast.Constant):
        t = _num(n.value)
        return t, (12 if t.startswith("-") else 15)
    if isinstance(n, ast.Name):
        return n.id, 15
    if isinstance(n, ast.Call):
        return f"{n.func.id}({', '.join(_show(a)[0] for a in n.args)})", 15
    if isinstance(n, ast.Subscript):
        return f"{wrap(n.value, 15)}[{_show(n.slice)[0]}]", 15
    if isinstance(n, ast.Attribute):                 # a.mT
        return f"{wrap(n.value, 15)}^T", 15
    if isinstance(n, ast.Tuple):
        return "(" + ", ".join(_show(e)[0] for e in n.elts) + ")", 15
    if isinstance(n, ast.UnaryOp):
        if isinstance(n.op, ast.Not):
            return f"not {wrap(n.operand, 4)}", 4
        return f"-{wrap(n.operand, 12)}", 12
    if isinstance(n, ast.BinOp):
        p, sym = _BINARY[type(n.op).__name__]
        if p == 13:                                  # ^ groups to the right; a signed exponent in parentheses
            return f"{wrap(n.left, 14)}^{wrap(n.right, 13)}", 13
        # a signed right operand in parentheses too: grad * (-x), not grad * -x
        return f"{wrap(n.left, p)}{sym}{wrap(n.right, p + 1, signed=True)}", p
    if isinstance(n, ast.Compare):
        parts = [wrap(n.left, 6)] + [wrap(c, 6) for c in n.comparators]
        return parts[0] + "".join(_COMPARE[type(o).__name__] + t for o, t in zip(n.ops, parts[1:])), 5
    if isinstance(n, ast.BoolOp):
        p, sym = (3, " and ") if isinstance(n.op, ast.And) else (2, " or ")
        return sym.join(wrap(v, p + 1) for v in n.values), p
    if isinstance(n, ast.IfExp):
        return f"{wrap(n.body, 2)} if {wrap(n.test, 2)} else {wrap(n.orelse, 1)}", 1
    return ast.unparse(n), 0
