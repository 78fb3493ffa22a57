"""`check --locate` (and any failing check): every backward node re-checked on its own, the
wrong ones named with where they were made. The wrong node is known in each case: a custom
Function made wrong on purpose, or a built-in op's rule broken by monkeypatch."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import engine
from cli.app import app
from engine.autograd.locate import locate

runner = CliRunner()

FILE = """import engine as torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * 3 * x ** 2 * FACTOR


def f(x, w):
    h = torch.tanh(x * w)
    return Cube.apply(h).sum() + (h * h).mean()
"""


def _file(tmp_path, factor):
    p = tmp_path / "mixed.py"
    p.write_text(FILE.replace("FACTOR", repr(factor)))
    return p


def test_the_wrong_function_is_named_with_its_line(tmp_path):
    r = runner.invoke(app, ["check", str(_file(tmp_path, 1.01)), "--x", "0.5,1,-1", "--w", "2", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1
    wrong = [c for c in doc["locate"] if not c["passed"]]
    assert [c["node"] for c in wrong] == ["CubeBackward"] and wrong[0]["custom_function"]
    assert wrong[0]["where"] == "mixed.py:18"                       # the line that applied it
    assert {c["node"] for c in doc["locate"] if c["passed"]} >= {"TanhBackward0", "MulBackward0", "MeanBackward0"}
    r = runner.invoke(app, ["check", str(_file(tmp_path, 1.01)), "--x", "0.5,1,-1", "--w", "2"])
    assert "first wrong node in forward order: CubeBackward at mixed.py:18" in r.stdout


def test_a_passing_check_locates_only_when_asked(tmp_path):
    argv = ["check", str(_file(tmp_path, 1.0)), "--x", "0.5,1,-1", "--w", "2", "--json"]
    assert "locate" not in json.loads(runner.invoke(app, argv).stdout)
    doc = json.loads(runner.invoke(app, argv + ["--locate"]).stdout)
    assert doc["locate"] and all(c["passed"] for c in doc["locate"])


@pytest.mark.parametrize("n", [3, 5000])
def test_a_broken_builtin_rule_is_found_in_an_expression(monkeypatch, n):
    cls = engine.ops.REGISTRY["exp"].node_cls[0]
    real = cls._vjp
    monkeypatch.setattr(cls, "_vjp", lambda self, g, release: [r * 1.01 for r in real(self, g, release)])
    x = engine.tensor(np.linspace(-1, 1, n), requires_grad=True)
    checks = locate(lambda t: (t.tanh() * t.exp()).sum(), (x,))
    assert [c.node for c in checks if not c.passed] == ["ExpBackward0"]
    r = runner.invoke(app, ["check", "sum(tanh(x) * exp(x))", "--x", "0.5,1", "--json"])
    doc = json.loads(r.stdout)
    wrong = [c for c in doc["locate"] if not c["passed"]]
    assert r.exit_code == 1 and [c["node"] for c in wrong] == ["ExpBackward0"]
    assert wrong[0]["where"] == "'exp(x)' (columns 15-20)"


def test_broadcasting_and_numbers_are_fitted_like_the_backward_loop_fits_them():
    x = engine.tensor(np.ones((2, 3)), requires_grad=True)
    b = engine.tensor([0.5, -1.0, 2.0], requires_grad=True)
    s = engine.tensor(1.5, requires_grad=True)
    checks = locate(lambda x, b, s: ((x * b + s) * 2).sum(0).exp().mean(), (x, b, s))
    assert checks and all(c.passed for c in checks), [(c.node, c.max_abs_err) for c in checks]


def test_local_verdicts_say_kink_and_suspicious():
    doc = json.loads(runner.invoke(app, ["check", "sum(relu(x))", "--x", "-1,0,2", "--json"]).stdout)
    by = {c["node"]: c["verdict"] for c in doc["locate"]}
    assert by == {"ReluBackward0": "kink", "SumBackward0": "pass"}
    import pathlib
    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "slightly_off.py"
    doc = json.loads(runner.invoke(app, ["check", str(example), "--func", "Sin", "--x", "0.5,1,2", "--json"]).stdout)
    assert doc["verdict"] == "suspicious" and [c["verdict"] for c in doc["locate"]] == ["suspicious"]


def test_check_dot_paints_the_wrong_node_red(tmp_path):
    import os
    import stat
    out = tmp_path / "g.dot"
    r = runner.invoke(app, ["check", str(_file(tmp_path, 1.01)), "--x", "0.5,1,-1", "--w", "2", "--dot", str(out)])
    assert r.exit_code == 1
    text = out.read_text()
    red = [line for line in text.splitlines() if "fillcolor=tomato" in line and "legend_" not in line]
    assert 'legend_fail [label="local check fails"' in text  # the legend names the red it drew
    assert len(red) == 1 and "CubeBackward\\nFAIL: local check" in red[0]
    assert "TanhBackward0" in text and "fillcolor=tomato" not in [ln for ln in text.splitlines() if "Tanh" in ln][0]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask          # not mkstemp's 0600


@pytest.mark.parametrize("x", [[3.0, 4.0], [30.0, 40.0], [300.0, -400.0, 250.0]])
def test_round_off_of_large_values_is_not_called_suspicious(x):
    """sum() of [9, 16] (or of 10^5-sized values) is exact, but central differences of v . sum
    carry round-off of eps_machine x |v| . |values| / eps: ~1e-9 and up. A correct node must not
    be marked suspicious for it (it was, at [3, 4] after chunk, with some random cotangents)."""
    t = engine.tensor(x, requires_grad=True)
    for seed in range(8):
        checks = locate(lambda t: (t ** 2).sum() + (t * 3).sum(), (t,), seed=seed)
        assert [c.verdict for c in checks] == ["pass"] * len(checks), [(c.node, c.max_abs_err, c.verdict)
                                                                        for c in checks]


@pytest.mark.parametrize("expr,node", [("sum(chunk(x, 2)[1] ** 2)", "SplitBackward0"),
                                       ("sum(unbind(reshape(x, (2, 2)), 1)[0] * 3)", "UnbindBackward0")])
def test_a_wrong_multi_output_node_is_found(monkeypatch, expr, node):
    from engine.ops.structured import _PiecesBackward
    real = _PiecesBackward.apply
    assert locate(lambda t: engine.chunk(t, 2)[1].sum(), (engine.tensor([1.0, 2, 3, 4], requires_grad=True),))
    monkeypatch.setattr(_PiecesBackward, "apply", lambda self, g, xp, cg: [r * 1.01 for r in real(self, g, xp, cg)])
    doc = json.loads(runner.invoke(app, ["check", expr, "--x", "1,2,3,4", "--json"]).stdout)
    assert [c["node"] for c in doc["locate"] if not c["passed"]] == [node]


def test_a_target_given_by_a_relative_path_says_where_its_nodes_were_made(tmp_path, monkeypatch):
    _file(tmp_path, 1.01)
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["check", "mixed.py", "--x", "0.5,1,-1", "--w", "2", "--json"])
    wrong = [c for c in json.loads(r.stdout)["locate"] if not c["passed"]]
    assert [(c["node"], c["where"]) for c in wrong] == [("CubeBackward", "mixed.py:18")]


LAYOUTS = {
    "contiguous": lambda a: a,
    "transposed (.T of a copy)": lambda a: np.ascontiguousarray(a.T).T,
    "fortran": np.asfortranarray,
    "strided [:, ::2]": lambda a: np.repeat(a, 2, axis=1)[:, ::2],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("expr", ["sin(W).sum()", "(W.T @ W).sum()", "(W.t() * 2).exp().sum()",
                                  "W[:, ::2].tanh().sum()", "(W.T[::2] ** 2).sum()"])
def test_local_verdicts_do_not_depend_on_an_inputs_memory_layout(layout, expr):
    """Every built-in node passes locally whatever the layout of the arrays it received (a
    transposed input once made every node after it FAIL: its differences were written into a
    copy and stayed zero)."""
    W = engine.tensor(LAYOUTS[layout](np.random.default_rng(1).standard_normal((4, 6))), requires_grad=True)
    fn = {"sin(W).sum()": lambda W: W.sin().sum(), "(W.T @ W).sum()": lambda W: (W.T @ W).sum(),
          "(W.t() * 2).exp().sum()": lambda W: (W.t() * 2).exp().sum(),
          "W[:, ::2].tanh().sum()": lambda W: W[:, ::2].tanh().sum(),
          "(W.T[::2] ** 2).sum()": lambda W: (W.T[::2] ** 2).sum()}[expr]
    checks = locate(fn, (W,))
    assert checks and all(c.verdict == "pass" for c in checks), [(c.node, c.max_abs_err) for c in checks]


def test_nn_linear_nodes_pass_locally_and_only_the_wrong_function_fails():
    class Scale(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 3

        @staticmethod
        def backward(ctx, g):
            return g * 3.03

    lin = engine.nn.Linear(5, 3).double()
    x = engine.tensor(np.random.default_rng(2).standard_normal((4, 5)), requires_grad=True)
    checks = locate(lambda x: Scale.apply(engine.tanh(lin(x))).sum(), (x,))
    assert [c.node for c in checks if c.verdict != "pass"] == ["ScaleBackward"]
    assert {"AddmmBackward0", "TBackward0", "TanhBackward0"} <= {c.node for c in checks if c.verdict == "pass"}


def test_the_cli_locates_nothing_wrong_in_a_transposed_input():
    r = runner.invoke(app, ["check", "sum(sin(W.T))", "--W", "randn(6,4)", "--locate", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["locate"] and all(c["verdict"] == "pass" for c in doc["locate"])


L2 = """import engine as torch


class L2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return 1e-4 * (w * w).sum()

    @staticmethod
    def backward(ctx, g):
        w, = ctx.saved_tensors
        return g * 1e-4 * w * FACTOR


def f(w, x):
    return ((x @ w) ** 2).sum() * 50 + L2.apply(w)
"""


@pytest.mark.parametrize("factor,verdict", [(1.0, "suspicious"), (2.0, "pass")])
def test_a_node_wrong_on_its_own_makes_a_passing_verdict_say_why(tmp_path, factor, verdict):
    """An L2 penalty whose backward returns w for 2w hides within rtol of the data gradient: the
    whole passes, the node fails its local check -- and the verdict says so instead of 'passed'."""
    p = tmp_path / "l2.py"
    p.write_text(L2.replace("FACTOR", repr(factor)))
    argv = ["check", str(p), "--w", "randn(3)", "--x", "randn(4,3)", "--locate"]
    doc = json.loads(runner.invoke(app, argv + ["--json"]).stdout)
    assert doc["verdict"] == verdict
    failing = [c["node"] for c in doc["locate"] if c["verdict"] == "fail"]
    assert failing == (["L2Backward"] if factor == 1.0 else [])
    if verdict == "suspicious":
        assert "L2Backward at l2.py:17 fails its own local check" in doc["suspicion"]
        assert runner.invoke(app, argv + ["--strict"]).exit_code == 1


def test_an_in_place_function_is_checked_on_the_inputs_it_received(tmp_path):
    """A correct in-place ReLU (mark_dirty): its node was re-checked on its output (the input as
    forward left it), so every negative input sat on the kink and the node FAILED."""
    p = tmp_path / "relu_ip.py"
    p.write_text("import engine as torch\n\n\nclass InplaceReLU(torch.autograd.Function):\n    @staticmethod\n"
                 "    def forward(ctx, x):\n        ctx.mark_dirty(x)\n        x.clamp_(min=0)\n"
                 "        ctx.save_for_backward(x)\n        return x\n\n    @staticmethod\n    def backward(ctx, g):\n"
                 "        out, = ctx.saved_tensors\n        return g * (out > 0).to(g.dtype)\n\n\n"
                 "def f(x):\n    return InplaceReLU.apply(x * 1.0).sum()\n")
    doc = json.loads(runner.invoke(app, ["check", str(p), "--x", "0.5,-1,2,-0.3", "--locate", "--json"]).stdout)
    assert doc["verdict"] == "pass"
    assert {c["node"]: c["verdict"] for c in doc["locate"]}["InplaceReLUBackward"] == "pass"


NET = '''import {lib} as torch
import {lib}.nn as nn


class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s):
        ctx.s = s
        return x * s

    @staticmethod
    def backward(ctx, g):
        return g * ctx.s, None


class BadNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x - x.mean(-1, keepdim=True)

    @staticmethod
    def backward(ctx, g):
        return g            # forgets the mean's gradient: should be g - g.mean(-1, keepdim=True)


class Inner(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 3

    @staticmethod
    def backward(ctx, g):
        return g * 3.3      # wrong, though its forward runs only inside Outer's


class Outer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return Inner.apply(x) + 1

    @staticmethod
    def backward(ctx, g):
        return g * 3


class Norm(nn.Module):
    def forward(self, x):
        return BadNorm.apply(x)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.norm = Norm()

    def forward(self, x):
        return Scale.apply(self.norm(torch.tanh(self.lin(x))), 2.0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = Block()
        self.block2 = Block()

    def forward(self, x):
        return Outer.apply(self.block2(self.block1(x))).sum()


torch.manual_seed(0)
net = Net().double()


def f(x):
    return net(x)


def right(x):
    lin = net.block1.lin
    return torch.tanh(lin(x.t()[:, ::2])).sum() + Scale.apply(x.t(), 2.0).sum()
'''


def _net(tmp_path, backend):
    if backend == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    p = tmp_path / "net.py"
    p.write_text(NET.format(lib="torch" if backend == "torch" else "engine"))
    return p


@pytest.mark.parametrize("backend", ["engine", "torch"])
def test_the_wrong_function_inside_nested_modules_is_located_first_with_its_module(tmp_path, backend, monkeypatch):
    _net(tmp_path, backend)
    monkeypatch.chdir(tmp_path)                      # as users run it: a relative path
    r = runner.invoke(app, ["check", "net.py", "--x", "randn(3,4)", "--backend", backend, "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["verdict"] == "fail"
    wrong = [c for c in doc["locate"] if c["verdict"] == "fail"]
    assert wrong[0]["node"] == "BadNormBackward" and wrong[0]["where"] == "net.py:48"
    assert wrong[0]["module"] == "net.block1.norm"
    assert [c["module"] for c in wrong if c["node"] == "BadNormBackward"] == ["net.block1.norm", "net.block2.norm"]
    passing = {c["node"] for c in doc["locate"] if c["verdict"] == "pass"}
    assert "ScaleBackward" in passing and "OuterBackward" in passing
    if backend == "torch":               # nested inside Outer's forward: recorded, checked, and wrong on its own
        inner = [c for c in doc["locate"] if c["node"] == "InnerBackward"]
        assert inner and inner[0]["verdict"] == "fail"
        assert "built-in PyTorch ops are trusted" in doc["locate_scope"]
    r = runner.invoke(app, ["check", "net.py", "--x", "randn(3,4)", "--backend", backend])
    assert "first wrong node in forward order: BadNormBackward at net.py:48 in net.block1.norm" in r.stdout


@pytest.mark.parametrize("backend", ["engine", "torch"])
def test_correct_linear_layers_on_transposed_inputs_pass_locally(tmp_path, backend):
    f = _net(tmp_path, backend)
    r = runner.invoke(app, ["check", str(f), "--func", "right", "--x", "randn(8,4)", "--backend", backend,
                            "--locate", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["verdict"] == "pass", doc
    assert doc["locate"] and all(c["verdict"] == "pass" for c in doc["locate"])


@pytest.mark.parametrize("backend", ["engine", "torch"])
def test_check_dot_paints_the_located_nodes_on_both_backends(tmp_path, backend):
    f = _net(tmp_path, backend)
    out = tmp_path / "located.dot"
    r = runner.invoke(app, ["check", str(f), "--x", "randn(3,4)", "--backend", backend, "--dot", str(out)])
    assert r.exit_code == 1, r.stderr
    red = [line for line in out.read_text().splitlines() if "fillcolor=tomato" in line and "legend_" not in line]
    assert len(red) == 2 and all("BadNormBackward" in line and "FAIL: local check" in line for line in red)
