"""Thin guards, each pinned by more than one test: a node used several times is drawn once;
string constants never enter an expression; nothing is recorded while grad mode is off."""
import numpy as np
import pytest

import engine
from engine import dotgraph
from engine.ops import REGISTRY
from expressions.compiler import compile_expression
from expressions.errors import ExpressionError
from opcases import cases, make_inputs, to_tensors


# -- a shared node is one node -------------------------------------------------------------------
def _lines(text, label):
    return [line for line in text.splitlines() if f'label="{label}"' in line]


def _edges_from(text, node_id):
    return [line for line in text.splitlines() if line.strip().startswith(f"{node_id} -> ")]


def test_a_node_used_three_times_is_drawn_once_with_three_edges():
    x = engine.tensor([0.5, -1.0], requires_grad=True)
    y = x.tanh()
    text = dotgraph.to_dot((y * y + y).sum())
    (tanh,) = _lines(text, "TanhBackward0")
    assert len(_edges_from(text, tanh.split()[0])) == 3          # twice into Mul, once into Add


def test_a_leaf_used_by_two_ops_has_one_accumulator_and_one_leaf_node():
    x = engine.tensor([0.5, -1.0], requires_grad=True)
    text = dotgraph.to_dot((x.sin() + x.cos()).sum(), {id(x): "x"})
    (acc,) = _lines(text, "AccumulateGrad")
    assert len(_edges_from(text, acc.split()[0])) == 2
    assert sum(1 for line in text.splitlines() if 'label="x' in line) == 1


def test_mermaid_draws_a_shared_node_once():
    x = engine.tensor([0.5, -1.0], requires_grad=True)
    y = x.exp()
    text = dotgraph.to_mermaid((y * y).sum())
    assert text.count("ExpBackward0") == 1


# -- strings never enter an expression ---------------------------------------------------------
@pytest.mark.parametrize("text", [
    '"abc"', "'x'", 'x + "1"', 'sum(x, dim="0")', 'x["a"]', 'b"ab"', 'tanh("x")', '"a" * 3',
    'x if "s" else x', '[x, "s"]', '"%s" % x',
])
def test_string_constants_are_rejected_where_they_stand(text):
    with pytest.raises(ExpressionError) as e:
        prog = compile_expression(text)
        prog.run({v: engine.tensor([1.0, 2.0]) for v in prog.variables})
    assert "not allowed" in e.value.message


def test_the_string_rejection_points_at_the_string():
    with pytest.raises(ExpressionError) as e:
        compile_expression('sum(x, dim="0")')
    assert e.value.message == ("a string is not allowed here: strings are only the values of keywords that take "
                               "one (reduction='sum') and einsum's equation")
    assert e.value.span == (11, 14)


@pytest.mark.parametrize("text,want", [
    ("mse_loss(x, 2 * x, reduction='sum')", 15.0),          # sum((x - 2x)^2) = 1 + 4 + 9 + 1
    ("einsum('i,i->', x, x)", 15.0),
    ("sum(einsum('i,j->ij', x, x))", 49.0),
])
def test_strings_are_data_where_a_function_takes_one(text, want):
    prog = compile_expression(text)
    out = prog.run({"x": engine.tensor([1.0, 2.0, 3.0, 1.0])})
    assert float(out.item()) == want


def test_a_string_a_keyword_does_not_take_is_rejected():
    with pytest.raises(ExpressionError, match="not allowed"):
        compile_expression("sum(x, dim='0')")
    with pytest.raises(ExpressionError, match="100 characters"):
        compile_expression("mse_loss(x, x, reduction='" + "a" * 101 + "')")


# -- nothing is recorded with grad mode off ------------------------------------------------------
@pytest.mark.parametrize("mode", ["no_grad", "set_grad_enabled", "inference_mode"])
@pytest.mark.parametrize("name,k,spec", list(cases()))
def test_no_op_records_with_grad_mode_off(name, k, spec, mode):
    op = REGISTRY[name]
    args, kwargs = make_inputs(op, spec, seed=k)
    ts = to_tensors(args)
    ctx = {"no_grad": engine.no_grad, "set_grad_enabled": lambda: engine.set_grad_enabled(False),
           "inference_mode": engine.inference_mode}[mode]()
    with ctx:
        out = op.func(*ts, **kwargs)
    assert out.grad_fn is None and not out.requires_grad, f"{name} recorded under {mode}"
    out = op.func(*ts, **kwargs)                 # and records again once the mode is left
    assert out.grad_fn is not None, f"{name} did not record with grad mode on"


class _Square(engine.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        return a * a

    @staticmethod
    def backward(ctx, g):
        return g


@pytest.mark.parametrize("call", [
    lambda x: x * 2, lambda x: 2 * x, lambda x: x * x, lambda x: x + x, lambda x: x - 1,
    lambda x: x / 2, lambda x: -x, lambda x: x ** 2, lambda x: x.tanh(), lambda x: x.exp(),
    lambda x: x @ x, lambda x: x[0], lambda x: x.sum(), lambda x: _Square.apply(x),
    lambda x: x.reshape(2, 1),
], ids=["mul_number", "rmul", "mul", "add", "sub", "div", "neg", "pow", "tanh", "exp", "matmul",
        "index", "sum", "function", "reshape"])
def test_operators_methods_and_functions_record_nothing_under_no_grad(call):
    x = engine.tensor([0.5, 2.0], requires_grad=True)
    with engine.no_grad():
        out = call(x)
    assert out.grad_fn is None and not out.requires_grad
    assert call(x).grad_fn is not None


def test_no_grad_as_decorator_and_nested_enable_grad():
    x = engine.tensor([0.5, 2.0], requires_grad=True)

    @engine.no_grad()
    def decorated():
        return x * 3
    assert decorated().grad_fn is None and (x * 3).grad_fn is not None
    with engine.no_grad():
        with engine.enable_grad():
            assert (x * 3).grad_fn is not None
        assert (x * 3).grad_fn is None
