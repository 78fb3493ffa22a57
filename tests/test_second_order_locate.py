"""check --order 2 locates second-order bugs (issue 19): each custom Function is also checked at
second order on its own (gradgradcheck of the Function alone on float64 copies of its inputs), on
both backends, and the report never says "every node passes" above a second-order FAIL. The
answers are known by construction: a backward whose value is right but whose own derivative is
not (a detached cos, x + x.detach()) and right ones."""
import json

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()
BACKENDS = ["engine", "torch"]

SIN = '''import {lib} as torch


class MySin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * torch.cos({cos_of})


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * ({twice})


def f(x, w):
    return (MySin.apply(Square.apply(x)) * w).sum()


inputs = {{"x": torch.tensor([0.3, -0.7, 1.1, 0.5], dtype=torch.float64),
          "w": torch.tensor([1.5, -0.5, 0.25, 2.0], dtype=torch.float64)}}
'''


def _run(path, backend, *extra):
    if backend == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    r = runner.invoke(app, ["check", str(path), "--order", "2", "--backend", backend, *extra])
    return r


def _write(tmp_path, backend, cos_of="x", twice="2 * x"):
    p = tmp_path / "fns.py"
    p.write_text(SIN.format(lib="torch" if backend == "torch" else "engine", cos_of=cos_of, twice=twice))
    return p


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bug,culprit", [("cos", "MySinBackward"), ("square", "SquareBackward")])
def test_a_function_wrong_only_at_second_order_is_named(tmp_path, backend, bug, culprit):
    kw = {"cos_of": "x.detach()"} if bug == "cos" else {"twice": "x + x.detach()"}
    p = _write(tmp_path, backend, **kw)
    r = _run(p, backend, "--json")
    assert r.exit_code == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["first_order"]["passed"] and not doc["second_order"]["passed"]
    by = {c["node"]: c for c in doc["locate"]}
    assert by[culprit]["verdict"] == "pass"                      # right at first order
    assert by[culprit]["second_order"]["verdict"] == "fail"
    other = "SquareBackward" if culprit == "MySinBackward" else "MySinBackward"
    assert by[other]["second_order"]["verdict"] == "pass"
    text = _run(p, backend).stdout
    assert f"first node wrong at second order in forward order: {culprit} at fns.py:" in text
    assert "every node passes" not in text
    # the reason in one clean clause (PyTorch's first line ended in a comma before its matrices)
    why = by[culprit]["second_order"]["why"]
    assert why.startswith("Jacobian mismatch for output 0") and not why.endswith(","), why


@pytest.mark.parametrize("backend", BACKENDS)
def test_right_functions_pass_at_both_orders_on_their_own(tmp_path, backend):
    p = _write(tmp_path, backend)
    r = _run(p, backend, "--json", "--locate")
    assert r.exit_code == 0, r.stdout
    doc = json.loads(r.stdout)
    customs = [c for c in doc["locate"] if c["custom_function"]]
    assert {c["node"] for c in customs} == {"MySinBackward", "SquareBackward"}
    assert all(c["second_order"]["verdict"] == "pass" for c in customs)
    assert "every node passes on its own, as the whole does" in _run(p, backend, "--locate").stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_order_locate_has_no_second_order_column(tmp_path, backend):
    """Without --order 2 nothing is checked at second order (the detached cos passes: its first
    derivative is right), and the JSON says nothing of it."""
    if backend == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    p = _write(tmp_path, backend, cos_of="x.detach()")
    r = runner.invoke(app, ["check", str(p), "--locate", "--json", "--backend", backend])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and all("second_order" not in c for c in doc["locate"])


ONCE = '''import {lib} as torch
from {lib}.autograd.function import once_differentiable


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * 3 * x ** 2


def f(x):
    return Cube.apply(x).sum()
'''


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_2_of_a_once_differentiable_function_says_why_in_the_same_words(tmp_path, backend):
    p = tmp_path / "once.py"
    p.write_text(ONCE.format(lib="torch" if backend == "torch" else "engine"))
    r = _run(p, backend, "--x", "0.5,-1.5")
    assert r.exit_code == 2
    assert r.stderr.strip() == ("error: trying to differentiate twice a function that was marked with "
                                "@once_differentiable: its backward has no second derivative, so --order 2 "
                                "cannot check it")
    assert runner.invoke(app, ["check", str(p), "--x", "0.5,-1.5", "--backend", backend]).exit_code == 0


HALF = '''import {lib} as torch


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * (x + x.detach())     # 2x, whose own derivative is 1, not 2


def f(x):
    return Square.apply(x)
'''


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_order_only_bug_gets_its_shape(tmp_path, backend):
    """Right at first order, wrong at second: the error's shape is read off the second
    derivatives (there was none: the first-order pair it reads passed)."""
    p = tmp_path / "half.py"
    p.write_text(HALF.format(lib="torch" if backend == "torch" else "engine"))
    r = _run(p, backend, "--x", "0.5,-1.5,2.0", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["first_order"]["passed"]
    assert doc["pattern"].startswith("a constant factor: every element is x0.5 the numerical one"), doc["pattern"]


NESTED = '''import {lib} as torch


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * {slope} * x


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x / 3

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return {g} * Square.apply(x)


def f(x):
    return Cube.apply(x).sum()
'''


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_function_applied_inside_another_functions_backward_is_named(tmp_path, backend, monkeypatch):
    """Cube's backward is g * Square(x): right at first order whatever Square's backward is (its
    forward is x*x), so only second order sees a wrong Square.backward (3x for 2x), through
    Cube's. The culprit is Square, applied at line 25 inside Cube's backward (red team c21)."""
    (tmp_path / "nest.py").write_text(NESTED.format(lib="torch" if backend == "torch" else "engine", slope=3, g="g"))
    monkeypatch.chdir(tmp_path)
    r = _run("nest.py", backend, "--x", "0.3,-0.7,1.1,0.5", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["verdict"] == "fail"
    assert doc["first_order"]["verdict"] == "pass"                 # not "suspicious": first order is right
    rows = {c["node"]: c for c in doc["locate"]}
    assert rows["CubeBackward"]["verdict"] == "pass" and rows["CubeBackward"]["second_order"]["verdict"] == "fail"
    assert "its backward applies SquareBackward at nest.py:25" in rows["CubeBackward"]["second_order"]["why"]
    sq = rows["SquareBackward"]
    assert sq["verdict"] == "fail" and sq["where"] == "nest.py:25" and sq["inside_backward_of"] == "CubeBackward"
    r = _run("nest.py", backend, "--x", "0.3,-0.7,1.1,0.5")
    assert ("first node wrong at second order: SquareBackward at nest.py:25 (inside CubeBackward's backward)"
            in " ".join((r.stdout + r.stderr).split()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_right_function_inside_a_backward_passes_and_the_outer_one_is_named(tmp_path, backend, monkeypatch):
    """Square is right; Cube's backward detaches g, so Cube's derivative in g is lost (second order
    only): Square's row passes, and Cube is the one named."""
    (tmp_path / "nest.py").write_text(NESTED.format(lib="torch" if backend == "torch" else "engine", slope=2,
                                                    g="g.detach()"))
    monkeypatch.chdir(tmp_path)
    doc = json.loads(_run("nest.py", backend, "--x", "0.3,-0.7,1.1,0.5", "--json").stdout)
    rows = {c["node"]: c for c in doc["locate"]}
    assert doc["verdict"] == "fail" and rows["CubeBackward"]["second_order"]["verdict"] == "fail"
    assert "its backward applies" not in rows["CubeBackward"]["second_order"]["why"]
    assert rows["SquareBackward"]["verdict"] == "pass" and rows["SquareBackward"]["inside_backward_of"] == "CubeBackward"
    r = _run("nest.py", backend, "--x", "0.3,-0.7,1.1,0.5")
    assert "first node wrong at second order in forward order: CubeBackward at nest.py:29" in " ".join((r.stdout + r.stderr).split())


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_right_nothing_is_probed_and_everything_passes(tmp_path, backend, monkeypatch):
    (tmp_path / "nest.py").write_text(NESTED.format(lib="torch" if backend == "torch" else "engine", slope=2, g="g"))
    monkeypatch.chdir(tmp_path)
    r = _run("nest.py", backend, "--x", "0.3,-0.7,1.1,0.5", "--json", "--locate")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["verdict"] == "pass"
    assert not any("inside_backward_of" in c for c in doc["locate"])
