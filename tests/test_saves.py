"""Declared saves: each registry entry states what its rules read (`saves=`), as PyTorch's
derivatives.yaml does. The declarations are checked here against the rules' own code (this
test reads their bytecode; the engine does not), and their effect against PyTorch: an
in-place change of a value no rule reads never fails a backward, one of a value a rule reads
always does."""
import dis

import numpy as np
import pytest

import engine
from engine.ops import REGISTRY, defop


def _read(rule):
    names = set()
    for ins in dis.get_instructions(rule):
        if ins.opname.startswith("LOAD_FAST") or ins.opname in ("LOAD_DEREF", "LOAD_CLOSURE"):
            names.update(ins.argval if isinstance(ins.argval, tuple) else (ins.argval,))
    return names


DIFF = sorted(n for n, op in REGISTRY.items() if op.differentiable and op.vjps is not None)


@pytest.mark.parametrize("name", DIFF)
def test_declared_saves_are_exactly_what_each_rule_reads(name):
    op = REGISTRY[name]
    rules = (op.vjps,) if op.variadic else op.vjps
    for i, (rule, declared) in enumerate(zip(rules, op.saves)):
        if rule is None:
            continue
        code = rule.__code__
        params = code.co_varnames[:code.co_argcount]
        inputs = () if op.variadic else params[3:3 + len(rules)]
        read = _read(rule) & (set(inputs) | {"out"})
        assert set(declared) == read, f"{name} rule {i} reads {sorted(read)}, declares {sorted(declared)}"


def test_an_entry_without_saves_or_with_unknown_names_is_refused():
    with pytest.raises(ValueError, match="declare what each rule reads"):
        defop("t_nosaves", np.sin, (lambda xp, g, out, x: g,), nodes="T0")
    with pytest.raises(ValueError, match="not an input"):
        defop("t_badsaves", np.sin, (lambda xp, g, out, x: g,), nodes="T1", saves=("z",))
    with pytest.raises(ValueError, match="2 entries for 1 rules"):
        defop("t_count", np.sin, (lambda xp, g, out, x: g,), nodes="T2", saves=("", ""))
    assert not {"t_nosaves", "t_badsaves", "t_count"} & set(REGISTRY)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _cat_after_inplace(t, join):
    w = t.tensor([1.0, 2.0], dtype=t.float64, requires_grad=True)
    a, b = w * 2, w * 3
    c = join([a, b])
    a.add_(1)                        # CatBackward0/StackBackward0 read no input
    c.sum().backward()
    return w.grad.numpy()


@pytest.mark.parametrize("join", ["cat", "stack"])
def test_cat_and_stack_save_no_input(join):
    got = _cat_after_inplace(engine, getattr(engine, join))
    np.testing.assert_array_equal(got, [5.0, 5.0])          # d/dw of sum(2w, 3w)
    torch = _torch()
    if torch is not None:
        np.testing.assert_array_equal(_cat_after_inplace(torch, getattr(torch, join)), got)


def _mm_after_inplace(t, change):
    x = t.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=t.float64, requires_grad=True)
    W = t.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=t.float64)
    h = x * 2
    o = h @ W
    (h if change == "self" else W).add_(1)
    try:
        o.sum().backward()
    except RuntimeError as e:
        return "error: " + str(e).split(":")[0]
    return x.grad.numpy().tolist()


@pytest.mark.parametrize("change", ["self", "mat2"])
def test_mm_saves_only_the_operand_the_other_gradient_reads(change):
    got = _mm_after_inplace(engine, change)
    if change == "self":             # only x needs a gradient: mat2 is saved, self is not
        assert got == (2 * np.ones((2, 2)) @ np.array([[1.0, -1.0], [0.5, 2.0]]).T).tolist()
    else:
        assert got.startswith("error: one of the variables needed for gradient computation")
    torch = _torch()
    if torch is not None:
        assert _mm_after_inplace(torch, change) == got


def test_mul_saves_the_other_operand_only_for_the_input_that_needs_it():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    w = engine.tensor([3.0, 4.0])
    h = x * 1.0
    y = h * w
    h.add_(1)                        # MulBackward0 for h reads w, not h
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
    y = x * w
    w.add_(1)                        # ...but it reads w
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
