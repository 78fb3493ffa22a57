"""The expression language: constructs match hand-written engine calls; rejections; escapes;
values; limits; property tests."""
import pathlib
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from expressions import ExpressionError, ValueSyntaxError, compile_expression, parse_value

DATA = pathlib.Path(__file__).parent / "data"
rng = np.random.default_rng(0)
W = rng.standard_normal((3, 2))
X = rng.standard_normal(2)
B = rng.standard_normal(3)
T = rng.standard_normal(3)
P = rng.uniform(0.5, 2, (2, 3))


def _leaves(**arrays):
    return {k: engine.tensor(v, requires_grad=True) for k, v in arrays.items()}


# (expression, the same computation written against the engine directly)
CONSTRUCTS = [
    ("sum(w*x)", lambda v: (v["w"] * v["x"]).sum()),
    ("mean((tanh(W @ x + b) - t)**2)", lambda v: ((engine.tanh(v["W"] @ v["x"] + v["b"]) - v["t"]) ** 2).mean()),
    ("logsumexp(W @ x)", lambda v: engine.logsumexp(v["W"] @ v["x"])),
    ("x.sum(dim=0)", lambda v: v["P"].sum(dim=0)),
    ("P.sum(dim=1, keepdim=True)", lambda v: v["P"].sum(dim=1, keepdim=True)),
    ("max(P, dim=0)[0]", lambda v: engine.max(v["P"], dim=0)[0]),
    ("max(P, dim=0).values", lambda v: engine.max(v["P"], dim=0).values),
    ("chunk(P, 2, dim=1)[1]", lambda v: engine.chunk(v["P"], 2, dim=1)[1]),
    ("stack(unbind(P), dim=1)", lambda v: engine.stack(engine.unbind(v["P"]), dim=1)),
    ("P.T[0, 1:]", lambda v: v["P"].T[0, 1:]),
    ("P[-1]", lambda v: v["P"][-1]),
    ("P[..., ::2]", lambda v: v["P"][..., ::2]),
    ("where(P > 1, P, 2*P)", lambda v: engine.where(v["P"] > 1, v["P"], 2 * v["P"])),
    ("reshape(P, (3, 2))", lambda v: v["P"].reshape(3, 2)),
    ("-P + +P / 2 - 3", lambda v: -v["P"] + v["P"] / 2 - 3),
    ("2 ** x - 1 / x", lambda v: 2 ** v["x"] - 1 / v["x"]),
    ("x ** 3", lambda v: v["x"] ** 3),
    ("pi * e * x", lambda v: np.pi * np.e * v["x"]),
    ("norm(P, dim=1)", lambda v: engine.norm(v["P"], dim=1)),
    ("softmax(W @ x, dim=0)", lambda v: engine.softmax(v["W"] @ v["x"], dim=0)),
    ("clamp(x, min=-0.5, max=0.5)", lambda v: engine.clamp(v["x"], -0.5, 0.5)),
    ("P.log().exp().sqrt()", lambda v: v["P"].log().exp().sqrt()),
    ("outer(x, b)", lambda v: engine.outer(v["x"], v["b"])),
    ("cat((x, b))", lambda v: engine.cat([v["x"], v["b"]])),
]


@pytest.mark.parametrize("text,direct", CONSTRUCTS, ids=[c[0] for c in CONSTRUCTS])
def test_construct_matches_engine_call(text, direct):
    arrays = {"w": X + 1, "x": X, "W": W, "b": B, "t": T, "P": P}
    prog = compile_expression(text)
    if text.startswith("x.sum"):
        arrays["x"] = P
    ours = _leaves(**{k: arrays[k] for k in prog.variables})
    theirs = _leaves(**{k: arrays[k] for k in prog.variables})
    if text.startswith("x.sum"):
        theirs["P"] = theirs["x"]
    a = prog.run(ours)
    b = direct(theirs)
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy())
    assert a.grad_fn.name() == b.grad_fn.name()
    r = rng.standard_normal(a.shape)
    (a * engine.tensor(r)).sum().backward()
    (b * engine.tensor(r)).sum().backward()
    for k in prog.variables:
        other = theirs["P"] if (k == "x" and text.startswith("x.sum")) else theirs[k]
        np.testing.assert_allclose(ours[k].grad.numpy(), other.grad.numpy())


def _rows(path):
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            yield line


@pytest.mark.parametrize("line", list(_rows(DATA / "rejected.tsv")))
def test_rejected_expressions_with_message_and_span(line):
    text, fragment, span = line.split("\t")
    start, end = (int(v) for v in span.split(":"))
    with pytest.raises(ExpressionError) as e:
        prog = compile_expression(text)
        prog.run({v: engine.tensor([1.0, 2.0]) for v in prog.variables})
    assert fragment in e.value.message
    assert e.value.span == (start, end), e.value.span
    assert e.value.caret().splitlines()[1] == " " * start + "^" * (end - start)


@pytest.mark.parametrize("payload", list(_rows(DATA / "escapes.txt")))
def test_escape_payloads_are_rejected_and_run_nothing(payload, tmp_path):
    sentinel = tmp_path / "SENTINEL"
    text = payload.replace("{S}", str(sentinel))
    with pytest.raises(ExpressionError):
        prog = compile_expression(text)
        prog.run({v: engine.tensor([1.0, 2.0]) for v in prog.variables})
    assert not sentinel.exists()


def test_shape_errors_point_at_the_operator():
    prog = compile_expression("sum(w*x) + 1")
    with pytest.raises(ExpressionError) as e:
        prog.run({"w": engine.tensor([1.0, 2.0]), "x": engine.tensor([1.0, 2.0, 3.0])})
    assert e.value.message == "cannot broadcast shapes (2,) and (3,) in 'w*x'"
    assert e.value.span == (4, 7)


def test_missing_variable_says_how_to_give_it():
    with pytest.raises(ExpressionError) as e:
        compile_expression("w + y").run({"w": engine.tensor(1.0)})
    assert e.value.message == "'y' has no value: pass --y VALUES" and e.value.span == (4, 5)


def test_limits():
    with pytest.raises(ExpressionError, match="limit is 10000"):
        compile_expression("x+" * 6000 + "x")
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("(" * 300 + "x" + ")" * 300)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("-" * 500 + "x")
    t0 = time.perf_counter()
    assert np.isinf(compile_expression("9**9**9**9").run({}).item())
    with np.errstate(over="ignore"):
        assert np.isinf(compile_expression("x**1e308").run({"x": engine.tensor(2.0)}).item())
    assert time.perf_counter() - t0 < 1.0
    t0 = time.perf_counter()
    with pytest.raises(ValueSyntaxError, match="limit is 100,000,000"):
        parse_value("randn(100000,100000)")
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("text,expected", [
    ("3", np.array(3.0)), ("1,2", np.array([1.0, 2.0])), ("1,2;3,4", np.array([[1.0, 2.0], [3.0, 4.0]])),
    ("[[1,2],[3,4]]", np.array([[1.0, 2.0], [3.0, 4.0]])), ("-1,2e-3", np.array([-1.0, 0.002])),
    ("inf,nan", np.array([np.inf, np.nan])), ("zeros(3)", np.zeros(3)), ("ones(2,2)", np.ones((2, 2))),
    ("arange(5)", np.arange(5.0)), ("linspace(0,1,5)", np.linspace(0, 1, 5)), ("[]", np.zeros(0)),
])
def test_value_syntaxes(text, expected):
    np.testing.assert_array_equal(parse_value(text), expected)


def test_random_values_are_seeded_and_files_load(tmp_path):
    a = parse_value("randn(3,4)", np.random.default_rng(7))
    b = parse_value("randn(3,4)", np.random.default_rng(7))
    assert a.shape == (3, 4) and np.array_equal(a, b)
    assert ((0 <= parse_value("rand(50)")) & (parse_value("rand(50)") < 1)).all()
    arr = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "a.npy", arr)
    np.savetxt(tmp_path / "a.csv", arr, delimiter=",")
    np.savetxt(tmp_path / "a.txt", arr)
    for name in ("a.npy", "a.csv", "a.txt"):
        np.testing.assert_array_equal(parse_value(f"@{tmp_path / name}"), arr)


@pytest.mark.parametrize("text,fragment", [
    ("1,2;3", "row 2 of the value has 1 values but row 1 has 2"),
    ("1,,2", "empty item in item 2"),
    ("abc", "could not read 'abc' as a number"),
    ("[[1,2],[3]]", "ragged nested list"),
    ("randm(3)", "unknown value function 'randm'; did you mean rand"),
    ("@missing.npy", "file not found"),
    ("@file.json", "use a .npy, .csv or .txt file"),
    ("zeros(1.5)", "sizes must be whole numbers"),
    ("", "is empty"),
])
def test_bad_values_say_what_was_expected(text, fragment):
    with pytest.raises(ValueSyntaxError) as e:
        parse_value(text)
    assert fragment in e.value.message


# -- property tests ------------------------------------------------------------------------------
UNARY = ["tanh", "exp", "sin", "cos", "sigmoid", "abs", "relu", "softplus"]
REDUCE = ["sum", "mean", "amax", "logsumexp"]


def _expr():
    leaf = st.sampled_from(["x", "y", "1.5", "2", "pi"])

    def extend(children):
        return st.one_of(
            st.tuples(children, st.sampled_from(["+", "-", "*"]), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(UNARY), children).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(REDUCE), children).map(lambda t: f"{t[0]}({t[1]})"),
            children.map(lambda c: f"-{c}"),
            children.map(lambda c: f"({c}) ** 2"),
        )
    return st.recursive(leaf, extend, max_leaves=12)


def _direct(text, env):
    """The same expression evaluated by walking it with Python operators on engine Tensors
    (an independent reference: no compiler involved, just the engine's own API)."""
    import ast
    tree = ast.parse(text, mode="eval").body

    def ev(n):
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.Name):
            return np.pi if n.id == "pi" else env[n.id]
        if isinstance(n, ast.UnaryOp):
            return -ev(n.operand)
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            op = type(n.op)
            if not isinstance(a, engine.Tensor) and not isinstance(b, engine.Tensor):
                a = engine.tensor(float(a))
            return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                    ast.Pow: lambda: a ** b}[op]()
        a = ev(n.args[0])
        a = a if isinstance(a, engine.Tensor) else engine.tensor(float(a))
        fn = getattr(engine.ops, n.func.id)
        return fn(a)
    return ev(tree)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expr())
def test_random_valid_expressions_match_direct_engine_calls(text):
    env = {"x": engine.tensor([0.3, -1.2, 2.0]), "y": engine.tensor([[0.5], [1.5]])}
    from engine.errors import EngineError
    try:
        ours = compile_expression(text).run(env)
    except ExpressionError as e:          # every text of this grammar is valid: never rejected
        pytest.fail(f"valid expression {text!r} rejected: {e.message}")
    except EngineError as e:              # the engine refused it: so must the direct calls
        with pytest.raises(type(e)), np.errstate(all="ignore"):
            _direct(text, env)
        return
    with np.errstate(all="ignore"):
        ref = _direct(text, env)
    np.testing.assert_allclose(ours.detach().numpy(), np.asarray(ref.detach().numpy() if isinstance(ref, engine.Tensor) else ref),
                               rtol=1e-12, equal_nan=True)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=80) | st.text(max_size=40))
def test_random_text_raises_only_expression_errors_and_fast(text):
    from engine.errors import EngineError
    t0 = time.perf_counter()
    try:
        prog = compile_expression(text)
        prog.run({v: engine.tensor([1.0, 2.0]) for v in prog.variables})
    except (ExpressionError, EngineError):
        pass
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("text,variables", [("\\\rA", ["A"]), ("sum(\rx)", ["x"]), ("sum(x\r\n+y)", ["x", "y"])])
def test_carriage_returns_count_as_line_breaks(text, variables):
    """Python's tokenizer ends a line at \\r too; the spans must agree (hypothesis found '\\\\\\rA')."""
    assert compile_expression(text).variables == variables


def test_integer_lists_and_index_tensors_select_as_in_pytorch():
    """x[[0, 2]] and logp[[0, 1], t] (t: class indices, given as whole numbers on the command
    line) pick what PyTorch picks; the gradient goes back to the picked places only."""
    x = engine.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = compile_expression("sum(x[[0, 2]] * 10)").run({"x": x})
    out.backward()
    assert out.item() == 40.0 and x.grad.tolist() == [10.0, 0.0, 10.0]
    z = engine.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    t = engine.tensor([1.0, 0.0])
    picked = compile_expression("z[[0, 1], t]").run({"z": z, "t": t})
    assert picked.tolist() == [0.7, 0.5]
    with pytest.raises(ExpressionError, match="indices must be whole numbers"):
        compile_expression("z[[0, 1], t / 3]").run({"z": z, "t": engine.tensor([1.0, 2.0])})


@pytest.mark.parametrize("text,message,at", [
    ("sum(chunk(P, 2))", "'chunk(P, 2)' gives 2 tensors, not one tensor: pick one, as in chunk(P, 2)[0]",
     "chunk(P, 2)"),
    ("chunk(P, 2) * 2", "'chunk(P, 2)' gives 2 tensors, not one tensor", "chunk(P, 2)"),
    ("-unbind(P)", "'unbind(P)' gives 2 tensors, not one tensor", "unbind(P)"),
    ("max(P, dim=0)", "'max(P, dim=0)' gives (values, indices), not one tensor: pick one, as in max(P, dim=0)[0] "
                      "or max(P, dim=0).values", "max(P, dim=0)"),
    ("chunk(P, 2).sum()", "'chunk(P, 2)' gives 2 tensors", "chunk(P, 2)"),
    ("chunk(P, 2)[2]", "'chunk(P, 2)' gives 2 tensors: [2] is out of range", "chunk(P, 2)[2]"),
    ("P.values", "'.values' is only on what max, min, sort, topk", ".values"),
    ("stack([chunk(P, 2), P])", "'chunk(P, 2)' gives 2 tensors", "chunk(P, 2)"),
])
def test_several_tensors_are_picked_from_as_in_pytorch(text, message, at):
    """A function returning several tensors gives them all, as PyTorch does ([i], .values,
    stack(...)); using them as one tensor says how to pick one (it once silently took the first)."""
    prog = compile_expression(text)
    with pytest.raises(ExpressionError) as e:
        prog.run({"P": engine.tensor([[1.0, 5.0], [3.0, 2.0]])})
    assert e.value.message.startswith(message)
    assert text[e.value.span[0]:e.value.span[1]] == at
