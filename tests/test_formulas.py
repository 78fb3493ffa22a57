"""Every differentiable op states its rules as the lesson writes them (`formula=` on its defop,
vocabulary in engine/ops/_core.py), and `autograd explain` shows them (issue 23).

The formulas are checked three ways: each op has one (one per rule, None exactly where the rule
is None); each names only `grad`, `result`, its rule's parameters and the fixed vocabulary; and
each one that is an expression is evaluated here -- parsed with `ast` and run by a small
evaluator over an allow-list, independent of explain's renderer -- at the registry's samples,
and compared with what the op's rule returns, fitted to the input's shape as the backward loop
fits it (graph._fit), to 1e-10.
"""
import ast
import json
import math
import operator
import re

import numpy as np
import pytest

import engine
from engine._xp import NUMPY
from engine.graph import _fit, class_attr
from engine.observe import Observer, observe
from engine.ops import REGISTRY
from engine.ops._core import _rule_params
from opcases import make_inputs, to_tensors

DIFFERENTIABLE = sorted(n for n, o in REGISTRY.items() if o.differentiable and o.vjps is not None)


# -- reading a formula ------------------------------------------------------------------------------
def to_python(text):
    """The lesson's notation as Python: a^T -> a.mT, ^ -> **."""
    return re.sub(r"\^T\b", ".mT", text).replace("^", "**")


def parse(text):
    return ast.parse(to_python(text), mode="eval")


def split(text):
    """(expression, words): a formula that is an expression, one followed by words after its first
    top-level ', ', or words alone (expression None)."""
    try:
        parse(text)
        return text, ""
    except SyntaxError:
        pass
    depth = 0
    for i, c in enumerate(text):
        depth += c in "([{"
        depth -= c in ")]}"
        if c == "," and depth == 0 and text[i + 1:i + 2] == " ":
            try:
                parse(text[:i])
            except SyntaxError:
                return None, text
            return text[:i], text[i + 2:]
    return None, text


def _erf(a):
    return np.vectorize(math.erf, otypes=[float])(a)


def _keep(fn):
    return lambda a, dim=None: fn(a, axis=dim, keepdims=True)


# the vocabulary's functions (engine/ops/_core.py's docstring), in numpy
FUNCS = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "sinh": np.sinh,
    "cosh": np.cosh, "tanh": np.tanh, "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)), "erf": _erf,
    "softplus": lambda a: np.logaddexp(0.0, a), "sign": np.sign, "abs": np.abs, "where": np.where,
    "clamp": lambda a, lo: np.maximum(a, lo), "numel": np.size,
    "outer": lambda a, b: np.asarray(a)[..., :, None] * np.asarray(b)[..., None, :],
    "inv": np.linalg.inv, "solve": np.linalg.solve, "sum": _keep(np.sum), "mean": _keep(np.mean),
    "unsqueeze": np.expand_dims, "squeeze": lambda a, dim: np.squeeze(a, axis=dim), "reshape": np.reshape,
    "transpose": np.swapaxes, "permute": np.transpose, "argsort": lambda d: tuple(int(i) for i in np.argsort(d)),
    "flip": np.flip, "cumsum": lambda a, dim: np.cumsum(a, axis=dim), "roll": np.roll,
    "tril": np.tril, "triu": np.triu, "diagonal": lambda a, k=0: np.diagonal(a, k, -2, -1),
    "select": lambda a, dim, i: np.take(a, i, axis=dim),
    "slice": lambda a, dim, start, stop: np.take(a, np.arange(start, stop), axis=dim),
}
CONSTANTS = {"pi": math.pi, "inf": math.inf}
WORD_FUNCS = set(FUNCS) | {"diag"}           # a function a formula in words may mention
BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.Pow: operator.pow, ast.MatMult: operator.matmul, ast.BitAnd: operator.and_, ast.BitOr: operator.or_}
CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
          ast.Gt: operator.gt, ast.GtE: operator.ge}
ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp, ast.Call, ast.Name,
           ast.Constant, ast.Attribute, ast.Subscript, ast.Tuple, ast.Load, ast.USub, ast.Not, ast.And, ast.Or,
           *BINOPS, *CMPOPS)


def evaluate(node, env):
    """The value of a parsed formula; env maps the rule's names to values."""
    ev = lambda n: evaluate(n, env)  # noqa: E731
    if not isinstance(node, ALLOWED):
        raise AssertionError(f"not in the vocabulary: {ast.dump(node)}")
    if isinstance(node, ast.Expression):
        return ev(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Tuple):
        return tuple(ev(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        v = ev(node.operand)
        if isinstance(node.op, ast.Not):
            return not v
        return tuple(-e for e in v) if isinstance(v, tuple) else -v
    if isinstance(node, ast.BinOp):
        return BINOPS[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.Compare):
        left, res = ev(node.left), True
        for op, right_node in zip(node.ops, node.comparators):
            right = ev(right_node)
            # a test against a missing bound (None) holds
            res = res & (np.True_ if left is None or right is None else CMPOPS[type(op)](left, right))
            left = right
        return res
    if isinstance(node, ast.BoolOp):
        vals = [ev(v) for v in node.values]
        assert all(isinstance(v, (bool, np.bool_)) for v in vals), "and/or test attributes only"
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.IfExp):
        test = ev(node.test)
        assert isinstance(test, (bool, np.bool_)), "a choice is made by an attribute, never by array values"
        return ev(node.body) if test else ev(node.orelse)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name) and node.func.id in FUNCS and not node.keywords, ast.dump(node)
        return FUNCS[node.func.id](*[ev(a) for a in node.args])
    if isinstance(node, ast.Attribute):
        assert node.attr == "mT", node.attr
        return np.swapaxes(ev(node.value), -1, -2)
    if isinstance(node, ast.Subscript):
        return ev(node.value)[ev(node.slice)]
    raise AssertionError(ast.dump(node))


def rules_of(op):
    return (op.vjps,) if op.variadic else op.vjps


def formulas_of(op):
    assert op.formula is not None, f"{op.name}: no formula"
    return (op.formula,) if op.variadic else op.formula


def param_names(op, k):
    """The names formula k may use besides grad, result and the vocabulary."""
    rule = rules_of(op)[0 if op.variadic else k]
    params = _rule_params(rule)
    return set(params[2:] if op.variadic else params[3:])    # a variadic rule: (xp, g, i, attrs...)


# -- 1. every op has its formulas ---------------------------------------------------------------
def formula_problems(ops=None):
    """What is wrong with the formulas' presence and alignment, one line per op."""
    out = []
    for name in DIFFERENTIABLE if ops is None else ops:
        op = REGISTRY[name]
        if op.formula is None:
            out.append(f"{name}: no formula (defop(..., formula=...))")
        elif op.variadic:
            if not isinstance(op.formula, str) or not op.formula:
                out.append(f"{name}: a variadic op's formula is one string")
        elif len(op.formula) != len(op.vjps):
            out.append(f"{name}: {len(op.formula)} formulas for {len(op.vjps)} rules")
        else:
            for k, (rule, text) in enumerate(zip(op.vjps, op.formula)):
                if (rule is None) != (text is None) or (text is not None and not (isinstance(text, str) and text)):
                    out.append(f"{name}: formula {k} is {text!r} where the rule is {rule}")
    return out


def test_every_differentiable_op_has_a_formula_per_rule():
    assert len(DIFFERENTIABLE) >= 110
    assert formula_problems() == []


def test_an_op_without_a_formula_fails(monkeypatch):
    """The check above catches an op that lost its formula, or has one too few."""
    monkeypatch.setattr(REGISTRY["exp"], "formula", None)
    monkeypatch.setattr(REGISTRY["mul"], "formula", ("grad * y",))
    assert formula_problems() == ["exp: no formula (defop(..., formula=...))", "mul: 1 formulas for 2 rules"]


def test_defop_refuses_a_formula_that_does_not_match_its_rules():
    from engine.ops import defop
    with pytest.raises(ValueError, match="formula has 1 entries for 2 rules"):
        defop("t_bad", np.add, (lambda xp, g, out, x, y: g, lambda xp, g, out, x, y: g), saves=("", ""),
              nodes="TBadBackward0", formula=("grad",))
    with pytest.raises(ValueError, match="formula 1 is given where the rule is None"):
        defop("t_bad", np.add, (lambda xp, g, out, x, y: g, None), saves=("", ""), nodes="TBadBackward0",
              formula=("grad", "grad"))
    assert "t_bad" not in REGISTRY


# -- 2. each names only its rule's names ------------------------------------------------------------
FORBIDDEN = ("np.", "xp.", "_vjp", "<lambda>", "engine/ops", "input1")


def name_problems(op):
    out = []
    for k, text in enumerate(formulas_of(op)):
        if text is None:
            continue
        params = param_names(op, k)
        allowed = params | {"grad", "result"} | set(CONSTANTS)
        out += [f"{k}: {bad!r} in {text!r}" for bad in FORBIDDEN if bad in text]
        expr, words = split(text)
        if expr is not None:
            tree = parse(expr)
            funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
            for n in ast.walk(tree):
                if not isinstance(n, ALLOWED):
                    out.append(f"{k}: {type(n).__name__} is not in the vocabulary ({expr!r})")
                elif isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name) and n.func.id in FUNCS):
                    out.append(f"{k}: calls {ast.unparse(n.func)!r}, not a vocabulary function")
                elif isinstance(n, ast.Name) and id(n) not in funcs and n.id not in allowed:
                    out.append(f"{k}: names {n.id!r}, not grad, result or a parameter of the rule {sorted(params)}")
                elif isinstance(n, ast.Attribute) and n.attr != "mT":
                    out.append(f"{k}: .{n.attr}")
        for m in re.finditer(r"[A-Za-z_][\w.]*", words):
            w = m.group(0).rstrip(".")
            called = words[m.end():m.end() + 1] == "("
            if called and w not in WORD_FUNCS:
                out.append(f"{k}: words call {w!r}, not a vocabulary function")
            if ("_" in w or "." in w) and w not in params:
                out.append(f"{k}: words name {w!r}, not a parameter of the rule")
            if w in ("xp", "np", "out", "gg") or (w == "g" and "g" not in params):
                out.append(f"{k}: words name the rule's {w!r} (say grad / result)")
    return out


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_a_formula_names_only_grad_result_its_rules_parameters_and_the_vocabulary(name):
    assert name_problems(REGISTRY[name]) == []


def test_a_formula_naming_the_rules_code_fails(monkeypatch):
    monkeypatch.setattr(REGISTRY["abs"], "formula", ("grad * np.sign(x)",))
    monkeypatch.setattr(REGISTRY["sin"], "formula", ("g * cos(x)",))
    monkeypatch.setattr(REGISTRY["cos"], "formula", ("-grad * sine(x)",))
    assert name_problems(REGISTRY["abs"]) and name_problems(REGISTRY["sin"]) and name_problems(REGISTRY["cos"])


# -- 3. STRONG CHECK: each expression equals its rule at the registry's samples -----------------------
def recorded(op, spec, k):
    """(node, input arrays, attributes) of every node of `op` the sample records."""
    args, kwargs = make_inputs(op, spec, seed=k)
    ts = to_tensors(args)
    seen = []

    class Seen(Observer):
        def on_node(self, node, ins, attrs, outs):
            seen.append((node, ins, dict(attrs or {})))
    with observe(Seen()):
        op.func(*ts, **kwargs)
    return [s for s in seen if class_attr(s[0], "op") is op]


def _defaults(rule):
    import inspect
    return {p.name: p.default for p in inspect.signature(rule).parameters.values()
            if p.default is not inspect.Parameter.empty}


def check_sample(op, spec, k):
    """Evaluate every expression formula of `op` at sample k against its rule; how many were
    evaluated (formulas in words are not)."""
    nodes = recorded(op, spec, k)       # none: the sample reaches another entry (x ** 1.5 is pow's)
    checked = 0
    rng = np.random.default_rng(1000 + k)
    for node, ins, attrs in nodes:
        out = op.forward(*ins, **attrs)
        out = tuple(np.asarray(o) for o in out) if op.multi else np.asarray(out)
        g = [rng.standard_normal(np.shape(o)) for o in out] if op.multi else rng.standard_normal(np.shape(out))
        for i, text in enumerate(formulas_of(op) * (len(ins) if op.variadic else 1)):
            if text is None:
                continue
            expr, _ = split(text)
            if expr is None:
                continue
            rule = op.vjps if op.variadic else op.vjps[i]
            want = rule(NUMPY, g, i, **attrs) if op.variadic else rule(NUMPY, g, out, *ins, **attrs)
            params = _rule_params(rule)
            env = dict(CONSTANTS)
            env.update(_defaults(rule))
            env.update(attrs)
            if op.variadic:
                env["i"] = i
            else:
                env.update(zip(params[3:3 + len(ins)], ins))
            grad, result = g, out
            if "dims" in params and "keepdim" in params and not env["keepdim"]:
                # a reduction's formula reads grad and result with the reduced dims kept (size 1)
                grad, result = np.expand_dims(g, env["dims"]), np.expand_dims(out, env["dims"])
            env["grad"], env["result"] = grad, result
            with np.errstate(all="ignore"):
                got = evaluate(parse(expr), env)
            shape = np.shape(ins[i])
            fit = lambda v: _fit(NUMPY, np.asarray(v, dtype=np.float64), shape, np.dtype(np.float64), 0)  # noqa: E731
            want = np.zeros(shape) if want is None else want           # norm with p = 0: no gradient
            np.testing.assert_allclose(fit(got), fit(want), rtol=1e-10, atol=1e-10,
                                       err_msg=f"{op.name} sample {k} input {i}: {expr}")
            checked += 1
    return checked


SAMPLES = [pytest.param(name, k, spec, id=f"{name}-{k}") for name in DIFFERENTIABLE
           for k, spec in enumerate(REGISTRY[name].samples)]


@pytest.mark.parametrize("name,k,spec", SAMPLES)
def test_each_expression_formula_equals_its_rule_at_the_samples(name, k, spec):
    op = REGISTRY[name]
    if check_sample(op, spec, k) == 0:
        kinds = [split(t)[0] is not None for t in formulas_of(op) if t is not None]
        assert not any(kinds) or not recorded(op, spec, k), f"{name} sample {k}: nothing evaluated"
        pytest.skip("formulas in words" if recorded(op, spec, k) else f"the sample records no {name} node")


def counts():
    """(ops with every formula checked numerically, ops with some, ops in words alone)."""
    every = some = words = 0
    for name in DIFFERENTIABLE:
        kinds = [split(t)[0] is not None for t in formulas_of(REGISTRY[name]) if t is not None]
        every += all(kinds)
        some += any(kinds) and not all(kinds)
        words += not any(kinds)
    return every, some, words


def test_most_formulas_are_checked_numerically():
    """Each op whose formulas include an expression has it evaluated at one sample at least."""
    every, some, words = counts()
    assert every + some + words == len(DIFFERENTIABLE)
    assert every >= 85 and words <= 25, (every, some, words)
    for name in DIFFERENTIABLE:
        op = REGISTRY[name]
        if any(split(t)[0] is not None for t in formulas_of(op) if t is not None):
            assert sum(check_sample(op, spec, k) for k, spec in enumerate(op.samples)), name


def test_a_formula_that_disagrees_with_its_rule_fails(monkeypatch):
    """The strong check catches a wrong formula: mul's rule for x is grad * y, not grad * x; pow's
    exponent off by one; a sum that forgot the reduced dims are kept."""
    for name, wrong in (("mul", ("grad * x", "grad * x")), ("pow", ("grad * exponent * x^exponent",)),
                        ("softmax", ("result * (grad - sum(grad * result))",))):
        op = REGISTRY[name]
        monkeypatch.setattr(op, "formula", wrong)
        with pytest.raises(AssertionError, match="Not equal to tolerance"):
            for k, spec in enumerate(op.samples):
                check_sample(op, spec, k)


# -- 4. explain shows them --------------------------------------------------------------------------
def _explain(expr, *values):
    from typer.testing import CliRunner

    from cli.app import app
    runner = CliRunner()
    args = ["explain", expr, *values]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, (text.stdout, text.stderr)
    doc = runner.invoke(app, args + ["--json"])
    assert doc.exit_code == 0, doc.stderr
    rules = [s["rule"] for c in json.loads(doc.stdout)["calls"] for s in c["steps"] if s.get("rule")]
    return text.stdout, rules


EXPLAINED = [
    ("sum(x**2)", ["--x", "1,2"], ["grad_x = grad * 2 * x"]),
    ("sum(x**3)", ["--x", "1,2"], ["grad_x = grad * 3 * x^2"]),
    ("sum(x**0.5)", ["--x", "1,2"], ["grad_x = grad * 0.5 * x^(-0.5)"]),
    ("sum(abs(x))", ["--x", "1,-2"], ["grad_x = grad * sign(x), so 0 at x = 0"]),
    ("sum(x/2)", ["--x", "1,2"], ["grad_x = grad / 2"]),
    ("sum(abs(x)/2)", ["--x", "1,2"], ["grad_(abs(x)) = grad / 2", "grad_x = grad * sign(x)"]),
    ("sum(tanh(W1 @ x + b1))", ["--W1", "1,2;3,4", "--x", "1,2", "--b1", "0,1"],
     ["grad_(W1 @ x + b1) = grad * (1 - result^2)", "grad_(W1 @ x) = grad; grad_b1 = grad",
      "grad_W1 = outer(grad, x); grad_x = W1^T @ grad"]),
    ("sum(W @ V)", ["--W", "1,2;3,4", "--V", "1,0;0,1"], ["grad_W = grad @ V^T; grad_V = W^T @ grad"]),
    ("max(x)", ["--x", "1,3,3"], ["grad_x = where(x == result, grad / sum(x == result, -1), 0), ties share grad evenly"]),
    ("sum(max(W, dim=0).values)", ["--W", "1,2;3,4"], ["grad_W = grad at the index max returned along the dim"]),
    ("sum(reshape(x, (2, 2)) * W)", ["--x", "1,2,3,4", "--W", "1,2;3,4"],
     ["grad_(reshape(x, (2, 2))) = grad * W; grad_W = grad * reshape(x, (2, 2))", "grad_x = reshape(grad, 4)"]),
    ("sum(cat([x, w]))", ["--x", "1,2", "--w", "3,4,5"],
     ["grad_x = slice(grad, -1, 0, 2); grad_w = slice(grad, -1, 2, 5)"]),
    ("cross_entropy(z, [0, 1])", ["--z", "1,2;3,4"],
     ["= -grad at each sample's target class", "grad_z = grad - exp(result) * sum(grad, -1)"]),
    ("nll_loss(log_softmax(z, 1), [0, 1])", ["--z", "1,2;3,4"],
     ["grad_(log_softmax(z, 1)) = -grad at each sample's target class"]),
    ("mse_loss(x, w)", ["--x", "1,2", "--w", "3,4"],
     ["grad_x = 2 * grad * (x - w) / numel(x); grad_w = -2 * grad * (x - w) / numel(x)"]),
    ("x[0]", ["--x", "1,2"], ["grad_x = grad placed at the indexed positions of x, zeros elsewhere"]),
    ("sum(clamp(x, min=0))", ["--x", "1,-2"], ["grad_x = where(x >= 0, grad, 0), the bounds included"]),
    ("sum(exp(x) * sin(w) / cos(x))", ["--x", "1,2", "--w", "1,1"],
     ["grad_(exp(x) * sin(w)) = grad / cos(x); grad_(cos(x)) = -grad * (exp(x) * sin(w)) / cos(x)^2"]),
    ("logsumexp(x)", ["--x", "1,2"], ["grad_x = grad * exp(x - result)"]),
    ("norm(x)", ["--x", "3,4"], ["grad_x = where(result == 0, 0, grad * x / result)"]),
    ("sum(softplus(x))", ["--x", "1,2"], ["grad_x = where(x > 20, grad, grad * sigmoid(x))"]),
    ("binary_cross_entropy_with_logits(x, y)", ["--x", "1,2", "--y", "0.5,1", "--wrt", "x"],
     ["grad_x = grad * (1 - y - (1 - sigmoid(x))) / numel(x)"]),
    ("sum(x / w)", ["--x", "1,2", "--w", "3,4", "--detach", "w"], ["grad_x = grad / w"]),
]


@pytest.mark.parametrize("expr,values,want", EXPLAINED, ids=[e[0] for e in EXPLAINED])
def test_explain_shows_each_rule_as_the_lesson_writes_it(expr, values, want):
    stdout, rules = _explain(expr, *values)
    for bad in ("engine/ops", "<lambda>", "np.", "xp.", "_vjp"):
        assert bad not in stdout, stdout
    for rule in rules:
        assert "input1" not in rule and "input0" not in rule, rule
    for w in want:
        assert any(w in r for r in rules), (w, rules)
        assert f"rule: {w}" in stdout or w in stdout, stdout


def test_explain_keeps_a_custom_functions_backward():
    stdout, rules = _explain("examples/my_square.py", "--func", "MySquare", "--x", "3")
    assert rules == ["your backward (MySquare.backward)"]


def test_every_registry_formula_renders_for_a_recorded_node():
    """explain's renderer takes every formula of every op, at each sample's node, without error,
    and leaves none of the rule's code in it."""
    from cli.commands.explain import _rule
    for name in DIFFERENTIABLE:
        op = REGISTRY[name]
        for k, spec in enumerate(op.samples):
            for node, ins, attrs in recorded(op, spec, k):
                text = _rule(node, [f"a{i}" for i in range(len(node._next))])
                assert text.startswith("grad_a"), (name, text)
                for bad in ("np.", "xp.", "_vjp", "<lambda>", ".mT", "**"):
                    assert bad not in text, (name, text)
