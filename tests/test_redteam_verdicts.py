"""Verdicts a red team doubted (issue 19), each tried on both backends: differences that
float64's round-off of a huge f hides are inconclusive, not "wrong"; a float32 cast or layer
inside f is differenced in float64 by locate, so a right one is not blamed and a wrong one is;
a node locate calls suspicious makes the whole suspicious. Expected answers are known by
construction (a gradient right or wrong on purpose)."""
import json

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()
BACKENDS = ["engine", "torch"]


def _lib(backend):
    if backend == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    return "torch" if backend == "torch" else "engine"


def _run(args, backend):
    r = runner.invoke(app, [*args, "--backend", backend, "--json"])
    assert r.exit_code in (0, 1), r.stderr
    return r.exit_code, json.loads(r.stdout)


HUGE = '''import {lib} as torch


class Offset(torch.autograd.Function):
    """1e12 + scale * x**2, with a backward of factor * 2 * scale * x."""
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 1e12 + {scale} * x ** 2

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * {factor} * 2 * {scale} * x


def f(x):
    return Offset.apply(x).sum()
'''


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gradient_hidden_by_round_off_of_a_huge_value_is_inconclusive_not_wrong(tmp_path, backend):
    """f = 1e12 + 1e-3 x^2 rounds to the same float64 on both sides of every step: the differences
    are 0 at every step and agree with each other, which was read as "wrong at every step"."""
    lib = _lib(backend)
    for factor in ("1.0", "1.5"):          # right or 50 % off: neither can be seen through 1e12
        p = tmp_path / f"hidden_{factor}.py"
        p.write_text(HUGE.format(lib=lib, scale="1e-3", factor=factor))
        code, doc = _run(["check", str(p), "--x", "1,2,3"], backend)
        assert code == 1 and doc["verdict"] == "inconclusive", doc
        assert "round-off" in doc["inconclusive"] and "wrong" not in doc["inconclusive"]
        assert not doc.get("pattern")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bug_large_enough_to_show_through_a_huge_value_still_fails(tmp_path, backend):
    """The other side of the round-off floor: at scale 50 the differences resolve the gradient
    (the gap, 50-150, is far above 1e12's round-off over any step tried), so 50 % off is wrong."""
    p = tmp_path / "shows.py"
    p.write_text(HUGE.format(lib=_lib(backend), scale="50.0", factor="1.5"))
    code, doc = _run(["check", str(p), "--x", "1,2,3"], backend)
    assert code == 1 and doc["verdict"] == "fail", doc
    p.write_text(HUGE.format(lib=_lib(backend), scale="50.0", factor="1.0"))
    code, doc = _run(["check", str(p), "--x", "1,2,3"], backend)
    assert code == 0 and doc["verdict"] == "pass", doc


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sum_with_an_absorbed_term_is_inconclusive(tmp_path, backend):
    """exp(600) beside exp(700) in one sum: its change is below 1e304's resolution at every step."""
    p = tmp_path / "absorbed.py"
    p.write_text(f"import {_lib(backend)} as torch\n\n\ndef f(x):\n    return torch.exp(x).sum()\n")
    code, doc = _run(["check", str(p), "--x", "600,700"], backend)
    assert code == 1 and doc["verdict"] == "inconclusive" and "round-off" in doc["inconclusive"], doc


@pytest.mark.parametrize("expr,want", [("sum(1e12 + 1e-3*x**2)", "unclear"), ("sum(50*x**2)", "right"),
                                       ("sum(2*x)", "right"), ("sum(x**3)", "right")])
def test_sweep_says_round_off_where_no_step_can_show_the_gradient(expr, want):
    """--sweep read the flat error of 1e12 + 1e-3 x^2 (differences 0 at every step) as "the gradient
    is wrong"; differences exact at every step (a quadratic, a line) still read right, not round-off."""
    code, doc = _run(["check", expr, "--x", "1,2,3", "--sweep"], "engine")
    assert doc["sweep"]["verdict"] == want, doc["sweep"]
    assert ("round-off: the output is 3e+12" in doc["sweep"]["message"]) == (want == "unclear")


CAST = '''import {lib} as torch


class Gelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 0.5 * x * (1 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        c = 0.7978845608028654
        t = torch.tanh(c * (x + 0.044715 * x ** 3))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x ** 2)) * {factor}


def f(x):
    h = Gelu.apply(x.float()).double()        # the layer runs in float32 (mixed precision)
    return (h * 3).exp().sum()
'''


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("factor", ["1.0", "1.0005", "1.01"])
def test_locate_differences_a_float32_layer_in_float64(tmp_path, backend, factor):
    """A right float32 layer and its casts pass locate (ToCopyBackward0 was called the first wrong
    node: its float32 differences carried float32's round-off); one 1 % off fails and is named
    first; one 0.05 % off -- within tolerance, far beyond float32's own error -- is suspicious."""
    p = tmp_path / "mixed.py"
    p.write_text(CAST.format(lib=_lib(backend), factor=factor))
    code, doc = _run(["check", str(p), "--x", "0.3,-1.2,0.8,2.0,-0.4", "--locate"], backend)
    by = {}
    for c in doc["locate"]:
        by.setdefault(c["node"], []).append(c["verdict"])
    assert set(by.get("ToCopyBackward0", ["pass"])) == {"pass"}, doc["locate"]
    expected = {"1.0": "pass", "1.0005": "suspicious", "1.01": "fail"}[factor]
    assert by["GeluBackward"] == [expected], doc["locate"]
    wrong = [c for c in doc["locate"] if c["verdict"] != "pass"]
    if expected != "pass":
        assert wrong[0]["node"] == "GeluBackward" and wrong[0]["where"].endswith("mixed.py:19")
        assert doc["verdict"] in ("fail", "suspicious", "inconclusive")
    else:
        assert not wrong


TINY = '''import {lib} as torch


class TinySin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y)
        return 1e-8 * torch.sin(y)

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return {sign}1e-8 * g * torch.cos(y)


def f(x, y):
    return (1e8 * x).sum() + TinySin.apply(y).sum()
'''


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sign", ["-", ""])
def test_a_node_locate_calls_suspicious_makes_the_whole_suspicious(tmp_path, backend, sign):
    """A sign flip at 1e-8 is within atol at the outputs, and the locate table named it the first
    wrong node above a verdict of `passed` (exit 0). The whole is suspicious now, saying why; the
    right Function stays a pass."""
    p = tmp_path / "tiny.py"
    p.write_text(TINY.format(lib=_lib(backend), sign=sign))
    code, doc = _run(["check", str(p), "--x", "0.1,0.2,0.3", "--y", "0.5,1.0,-0.7", "--locate"], backend)
    tiny = [c["verdict"] for c in doc["locate"] if c["node"] == "TinySinBackward"]
    if sign == "-":
        assert tiny == ["suspicious"] and doc["verdict"] == "suspicious", doc
        assert "TinySinBackward" in doc["suspicion"] and "suspicious on its own" in doc["suspicion"]
        r = runner.invoke(app, ["check", str(p), "--x", "0.1,0.2,0.3", "--y", "0.5,1.0,-0.7", "--locate",
                                "--backend", backend, "--strict"])
        assert r.exit_code == 1
    else:
        assert tiny == ["pass"] and doc["verdict"] == "pass" and code == 0, doc


LAYOUT = '''import sys
import numpy as np
import {lib} as torch


class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        {wx}
        return gx, g * x


def f(x, w):
    print("strides", tuple(w.stride()), w.is_contiguous(), file=sys.stderr)
    return Scale.apply(x, w).sum(0)


inputs = {{"x": torch.randn(3, 3, dtype=torch.float64), "w": {w}}}
'''
# a backward that reads w's storage as if it were row-major (as_strided from its first element):
# right only when w is contiguous
MEMORY = ("gx = g * torch.tensor(np.lib.stride_tricks.as_strided(w.detach().numpy(), (9,), (8,)).copy()"
          ".reshape(3, 3))")
RIGHT = "gx = g * w"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("w,strides", [("torch.randn(3, 3, dtype=torch.float64).T", (1, 3)),
                                       ("torch.randn(3, 3, dtype=torch.float64).t()", (1, 3)),
                                       ("torch.randn(3, 6, dtype=torch.float64)[:, ::2]", (6, 2)),
                                       ("torch.tensor(np.asfortranarray(np.random.randn(3, 3)))", (1, 3))])
def test_the_files_own_layout_reaches_f_and_a_memory_order_bug_is_caught(tmp_path, backend, w, strides):
    """f was handed contiguous copies of a transposed `inputs` tensor, so a backward that reads
    memory in storage order passed (red team A3). f sees the file's strides now, on both backends;
    the storage-order bug fails and a right backward passes on the same input."""
    lib = _lib(backend)
    if backend == "engine" and "asfortranarray" in w:
        w = "torch.tensor(np.asfortranarray(np.random.randn(3, 3)))"
    for rule, want in ((MEMORY, "fail"), (RIGHT, "pass")):
        p = tmp_path / "layout.py"
        p.write_text(LAYOUT.format(lib=lib, wx=rule, w=w))
        r = runner.invoke(app, ["check", str(p), "--backend", backend, "--json"])
        assert r.exit_code in (0, 1), r.stderr
        seen = {line for line in r.stderr.splitlines() if line.startswith("strides")}
        assert seen == {f"strides {strides} False"}, seen            # every call f gets, both sides
        assert json.loads(r.stdout)["verdict"] == want, (rule, r.stdout[:400])


F32 = '''import {lib} as torch


class Softplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.log(1 + torch.exp(x)) if x.dtype == torch.float64 else torch.nn.functional.softplus(x)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        e = torch.exp(x)                   # overflows in float32 past 88
        return g * e / (1 + e)


def f(x):
    return Softplus.apply(x).sum()


inputs = {{"x": torch.tensor([-3.0, 0.5, 20.0, {big}], dtype=torch.float32)}}
'''


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_float32_inputs_value_is_checked_as_float32_and_said(tmp_path, backend):
    """The file's float32 `inputs` were silently made float64, where exp(95) does not overflow:
    the float32-only NaN passed (red team A6). They stay float32 (a note says so), the NaN
    fails; --dtype float64 checks float64 copies, as asked; away from the overflow it passes."""
    lib = _lib(backend)
    p = tmp_path / "f32.py"
    p.write_text(F32.format(lib=lib, big="95.0"))
    r = runner.invoke(app, ["check", str(p), "--backend", backend, "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["verdict"] == "fail", r.stdout[:300]
    assert "x is float32 in the file, and checked so" in r.stderr
    assert "nan" in " ".join(json.loads(r.stdout)["failures"])
    r = runner.invoke(app, ["check", str(p), "--backend", backend, "--json", "--dtype", "float64"])
    assert r.exit_code == 0 and "float32 in the file" not in r.stderr, r.stdout[:300]
    p.write_text(F32.format(lib=lib, big="5.0"))
    r = runner.invoke(app, ["check", str(p), "--backend", backend, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["verdict"] == "pass", r.stdout[:300]


def test_engine_tensors_report_strides_and_contiguity_as_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    import engine
    for make in (lambda m: m.ones(2, 3).T, lambda m: m.ones(3, 6)[:, ::2], lambda m: m.ones(4, 5),
                 lambda m: m.ones(3).expand(2, 3), lambda m: m.ones(2, 3, 4).permute(2, 0, 1), lambda m: m.ones(1, 3).T):
        a, b = make(engine), make(torch)
        assert a.stride() == b.stride() and a.is_contiguous() == b.is_contiguous(), (a.stride(), b.stride())
        assert a.stride(-1) == b.stride(-1)
    x = engine.ones(2, 3, requires_grad=True)
    assert x.contiguous() is x
    y = x.T.contiguous()
    assert y.is_contiguous() and y.stride() == (2, 1) and type(y.grad_fn).__name__ == "CloneBackward0"
    y.sum().backward()
    assert x.grad.tolist() == [[1.0] * 3] * 2


def test_a_missing_torch_name_reads_as_an_attribute_error_in_the_users_traceback(tmp_path):
    p = tmp_path / "strided.py"
    p.write_text("import torch\n\n\ndef f(x):\n    return torch.as_strided(x, (2,), (1,)).sum()\n")
    r = runner.invoke(app, ["check", str(p), "--x", "1,2", "--backend", "engine"])
    assert r.exit_code == 2
    assert "AttributeError: the engine has no torch.as_strided (yet)" in r.stderr and "cli." not in r.stderr


RELU = '''import {lib} as torch


class MyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return {rule}


def f(x):
    return (MyReLU.apply(x) * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=x.dtype)).sum()
'''


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rule,want", [("g * (x > 0).to(g.dtype)", "inconclusive"),
                                       ("g * (x >= 0).to(g.dtype)", "inconclusive"),
                                       ("g * 1.5 * (x > 0).to(g.dtype)", "fail"),
                                       ("g * (x < 0).to(g.dtype)", "fail")])
def test_a_custom_relu_at_its_kink_is_inconclusive_and_a_wrong_one_still_fails(tmp_path, backend, rule, want):
    """A right custom ReLU at x = 0 was called wrong (the built-in one got the kink warning). Its
    forward is watched for kinks now and the node re-checked off them: a right one is a kink (the
    whole inconclusive, saying so), a wrong one fails there too."""
    p = tmp_path / "relu.py"
    p.write_text(RELU.format(lib=_lib(backend), rule=rule))
    code, doc = _run(["check", str(p), "--x", "-0.5,0,0.7,1.2"], backend)
    assert code == 1 and doc["verdict"] == want, doc["failures"]
    node = [c["verdict"] for c in doc["locate"] if c["node"] == "MyReLUBackward"]
    assert node == (["kink"] if want == "inconclusive" else ["fail"]), doc["locate"]
    if want == "inconclusive":
        assert doc["inconclusive"].startswith("a kink") and "MyReLUBackward" in doc["inconclusive"]
    code, doc = _run(["check", str(p), "--x", "-0.5,0.3,0.7,1.2"], backend)      # away from the kink
    assert doc["verdict"] == ("pass" if want == "inconclusive" else "fail"), doc["failures"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pytorchs_own_ops_at_a_kink_are_inconclusive_with_the_warning(tmp_path, backend):
    p = tmp_path / "kinks.py"
    p.write_text(f"import {_lib(backend)} as torch\n\n\ndef f(x):\n"
                 "    return torch.abs(x).sum() + torch.relu(x - 1).sum() + x.clamp(max=2.0).sum()\n")
    # abs at 0: differences (0) meet its subgradient (0), a pass beside the warning; relu(x - 1) at
    # 1 and clamp(max=2) at 2: they average 0.5 where the subgradient is 0 or 1
    for at, want, kink in (("-1,0,0.5,1.5,3", "pass", True), ("-1,1,0.5,1.5,3", "inconclusive", True),
                           ("-1,2,0.5,1.5,3", "inconclusive", True), ("-1,0.2,0.5,1.5,3", "pass", False)):
        r = runner.invoke(app, ["check", str(p), "--x", at, "--backend", backend, "--json"])
        doc = json.loads(r.stdout)
        assert doc["verdict"] == want, (at, doc["failures"])
        assert ("not differentiable" in " ".join(doc["warnings"])) == kink, doc["warnings"]
