"""Verdicts that tell a bug from numerics (check_gradients(verdicts=True), `autograd check`):
pass, suspicious (within tolerance, but far beyond the finite-difference error, which is
estimated from steps eps and eps/2), fail. Each case's answer is known: correct functions,
including ones that are hard for finite differences, never get "suspicious"; backwards off by
a small factor do."""
import json
import pathlib

import numpy as np
import pytest
from typer.testing import CliRunner

import engine
from cli.app import app
from engine.autograd.checker import check_gradients

runner = CliRunner()
X = np.linspace(-1.7, 2.3, 9)


def _fn(factor, rule=lambda x: x.cos()):
    class Scaled(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * rule(x) * factor
    return Scaled.apply


@pytest.mark.parametrize("factor", [1.0001, 1.001, 1.0005])
def test_a_backward_slightly_off_is_suspicious_though_within_tolerance(factor):
    r = check_gradients(_fn(factor), (engine.tensor(X, requires_grad=True),), verdicts=True)
    assert r.passed and r.verdict == "suspicious"
    assert "numerics do not explain it" in r.suspicion


@pytest.mark.parametrize("factor", [1.01, 1.05])
def test_a_backward_further_off_fails(factor):
    r = check_gradients(_fn(factor), (engine.tensor(X, requires_grad=True),), verdicts=True)
    assert not r.passed and r.verdict == "fail"


CORRECT = {
    "sin": (lambda t: t.sin(), X),
    "exp-square": (lambda t: (t * t).exp(), X / 2),
    "softmax": (lambda t: engine.softmax(t, 0), X),
    "matmul chain": (lambda t: (t.reshape(3, 3) @ t.reshape(3, 3)).tanh(), X),
    "near a kink": (lambda t: t.abs() + t.relu(), np.array([1e-4, -2e-4, 0.5])),
    "ill-conditioned": (lambda t: (t * 1e4).sin() * 1e-4, X),
    "large values": (lambda t: t.exp() * 1e6, X),
    "log near 0": (lambda t: t.log(), np.array([1e-3, 2e-3, 0.5])),
    "the engine's own Function": (_fn(1.0), X),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_gradients_are_never_suspicious(name):
    f, x = CORRECT[name]
    r = check_gradients(f, (engine.tensor(x, requires_grad=True),), verdicts=True)
    assert r.verdict in ("pass", "fail") and not r.suspicion, r.suspicion
    if name not in ("near a kink", "ill-conditioned"):
        assert r.verdict == "pass", r.failures


def test_float32_is_not_called_suspicious():
    x = engine.tensor(X, dtype=engine.float32, requires_grad=True)
    with pytest.warns(UserWarning, match="float32: finite differences are unreliable"):
        r = check_gradients(lambda t: t.sin() * t, (x,), eps=1e-3, atol=1e-2, rtol=1e-2, verdicts=True)
    assert r.verdict == "pass", r.suspicion


def test_the_command_line_says_suspicious_and_strict_makes_it_exit_1():
    f = pathlib.Path(__file__).resolve().parents[1] / "examples" / "slightly_off.py"     # 0.1 % off
    r = runner.invoke(app, ["check", str(f), "--func", "Sin", "--x", "0.5,1,2"])
    assert r.exit_code == 0 and "SUSPICIOUS" in r.stdout
    assert runner.invoke(app, ["check", str(f), "--func", "Sin", "--x", "0.5,1,2", "--strict"]).exit_code == 1
    doc = json.loads(runner.invoke(app, ["check", str(f), "--func", "Sin", "--x", "0.5,1,2", "--json"]).stdout)
    assert doc["verdict"] == "suspicious" and doc["passed"] is True and "numerics" in doc["suspicion"]
    r = runner.invoke(app, ["grad", str(f), "--func", "Sin", "--x", "0.5", "--check"])
    assert "SUSPICIOUS" in r.stdout
    r = runner.invoke(app, ["check", "sum(sin(x) * x)", "--x", "0.5,1,2", "--json", "--strict"])
    assert r.exit_code == 0 and json.loads(r.stdout)["verdict"] == "pass"


def test_order_2_checks_second_derivatives(tmp_path):
    # right first derivative, wrong second: backward computed from a detached x has no x-dependence
    f = tmp_path / "detached.py"
    f.write_text("import engine as torch\n\n\nclass Cube(torch.autograd.Function):\n    @staticmethod\n"
                 "    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x ** 3\n\n"
                 "    @staticmethod\n    def backward(ctx, g):\n        x, = ctx.saved_tensors\n"
                 "        return g * 3 * x.detach() ** 2\n")
    argv = ["check", str(f), "--func", "Cube", "--x", "0.5,-1.5"]
    assert runner.invoke(app, argv).exit_code == 0
    r = runner.invoke(app, argv + ["--order", "2"])
    assert r.exit_code == 1 and "FAIL" in r.stdout
    assert runner.invoke(app, ["check", "sum(x ** 3 * y)", "--x", "0.5,2", "--y", "1,3", "--order", "2"]).exit_code == 0


def test_a_target_that_computes_gradients_itself_is_checked(tmp_path):
    f = tmp_path / "inner.py"
    f.write_text("import engine as torch\n\n\ndef f(x):\n    y = (x ** 3).sum()\n"
                 "    g, = torch.autograd.grad(y, x, create_graph=True)\n    return g\n")
    doc = json.loads(runner.invoke(app, ["check", str(f), "--x", "0.5,2", "--json"]).stdout)
    assert doc["passed"] and doc["verdict"] == "pass"
    doc = json.loads(runner.invoke(app, ["jacobian", str(f), "--x", "0.5,2", "--json", "--check"]).stdout)
    assert doc["jacobian"]["x"] == [[3.0, 0.0], [0.0, 12.0]] and doc["check"]["passed"]     # d(3x^2)/dx = 6x


def test_a_step_outside_the_domain_is_said_plainly():
    # eps=1e-6 leaves sqrt's domain at x = 1e-7; steps of 1e-9 and 1e-10 stay inside and agree
    r = runner.invoke(app, ["check", "sum(sqrt(x))", "--x", "1e-7,1", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["verdict"] == "pass" and "x at eps 1e-10" in " ".join(doc["warnings"])
    # at x = 1e-13 every step tried leaves it: inconclusive, the domain named, never "wrong"
    r = runner.invoke(app, ["check", "sum(sqrt(x))", "--x", "1e-13,1"])
    assert r.exit_code == 1 and "INCONCLUSIVE: the finite-difference step left the function's domain at x[0]" in r.stdout
    assert "step leaves the domain (not judged)" in r.stdout and "wrong" not in r.stdout.lower()


def test_sweep_tells_convergence_from_a_flat_gap(tmp_path):
    import xml.etree.ElementTree as ET
    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "slightly_off.py"
    svg = tmp_path / "sweep.svg"
    r = runner.invoke(app, ["check", str(example), "--func", "Sin", "--x", "0.5,1,2", "--sweep", "--plot", str(svg),
                            "--json"])
    doc = json.loads(r.stdout)
    assert [p["eps"] for p in doc["sweep"]["points"]] == [10.0 ** -k for k in range(1, 13)]
    assert doc["sweep"]["verdict"] == "wrong" and abs(doc["sweep"]["order"]) < 0.5
    errs = [p["max_abs_err"] for p in doc["sweep"]["points"]]
    assert max(errs[2:10]) / min(errs[2:10]) < 1.1                  # flat at the bug's size
    root = ET.parse(svg).getroot()
    assert len([e for e in root.iter() if e.tag.endswith("circle")]) == 12
    doc = json.loads(runner.invoke(app, ["check", "sum(exp(x*x))", "--x", "0.5,1", "--sweep", "--json"]).stdout)
    assert doc["sweep"]["verdict"] == "right" and 1.5 < doc["sweep"]["order"] < 2.5   # central differences: eps^2
    errs = [p["max_abs_err"] for p in doc["sweep"]["points"]]
    assert errs[3] / errs[4] > 50                                   # a step 10x smaller: ~100x less error
    r = runner.invoke(app, ["check", "sum(x)", "--x", "1", "--plot", str(svg)])
    assert r.exit_code == 2 and "add --sweep" in r.stderr


def test_the_verdict_benchmark_meets_its_targets(capsys):
    """benchmarks/verdicts.py: every bug torch's gradcheck catches, >= 90 % of those it misses
    (with --strict --order 2), no false alarm on the correct set; without PyTorch, the same on
    our own counts."""
    from benchmarks import verdicts
    doc = verdicts.main(["--json"])
    capsys.readouterr()
    assert doc["cases"]["bugs"] >= 40 and doc["cases"]["correct"] + doc["cases"]["hard but correct"] >= 40
    backends = ["ours"] + (["ours on torch"] if "ours on torch" in doc["systems"] else [])
    for ours in backends:                         # the engine and, with PyTorch, the torch backend
        for mode in ("", " --strict", " --strict --order 2"):
            assert doc["systems"][ours + mode]["false alarms"] == [], ours + mode
        best = doc["systems"][ours + " --strict --order 2"]
        if "torch gradcheck" in doc["systems"]:
            assert doc["systems"][ours]["of the bugs torch catches"] == doc["cases"]["bugs torch catches"]
            assert best["of the bugs torch misses"] >= 0.9 * doc["cases"]["bugs torch misses"]
        assert best["bugs caught"] >= 0.95 * best["bugs run"]
        found, of = map(int, doc["systems"][ours]["locate: the wrong Function first"].split("/"))
        assert of >= 60 and found >= 0.95 * of, ours


def test_a_failure_shows_the_jacobians_and_names_the_errors_shape(tmp_path):
    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "wrong_backward.py"
    doc = json.loads(runner.invoke(app, ["check", str(example), "--func", "Cube", "--x", "1,2,3", "--json"]).stdout)
    assert doc["pattern"] == "a constant factor: every element is x1.01 the numerical one (+1 %)"
    np.testing.assert_allclose(doc["jacobians"]["analytical"], np.diag([3.03, 12.12, 27.27]))   # 3x^2 * 1.01
    r = runner.invoke(app, ["check", str(example), "--func", "Cube", "--x", "1,2,3"])
    assert "analytical" in r.stdout and "difference" in r.stdout and "the error's shape: a constant factor" in r.stdout
    f = tmp_path / "t.py"
    f.write_text("import engine as torch\nA = torch.tensor([[1.0, 2.0], [3.0, 4.0]])\n\n\n"
                 "class M(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n"
                 "        return A @ x\n\n    @staticmethod\n    def backward(ctx, g):\n        return A @ g\n")
    doc = json.loads(runner.invoke(app, ["check", str(f), "--func", "M", "--x", "1,2", "--json"]).stdout)
    assert doc["pattern"].startswith("a transpose")
    doc = json.loads(runner.invoke(app, ["check", "sum(x*x)", "--x", "1,2", "--json"]).stdout)
    assert "pattern" not in doc and "jacobians" not in doc                    # nothing failed
    from engine.autograd.checker import pattern
    big = np.arange(1.0, 5001.0).reshape(50, 100)
    wrong = big.copy()
    wrong[:, 7] *= -1
    assert pattern(wrong, big).startswith("flipped signs: 50 elements")


def test_progress_is_reported_and_ctrl_c_says_what_was_checked(tmp_path):
    seen = []
    x = engine.tensor(np.linspace(0, 1, 7), requires_grad=True)
    y = engine.tensor(np.ones(3), requires_grad=True)
    check_gradients(lambda a, b: (a.sin().sum() * b), (x, y), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(k, 10) for k in range(1, 11)]
    f = tmp_path / "slow.py"
    f.write_text("CALLS = [0]\n\n\ndef f(x, y):\n    CALLS[0] += 1\n    if CALLS[0] > 20:\n"
                 "        raise KeyboardInterrupt\n    return (x.sin() * 2).sum() + (y * y).sum()\n")
    r = runner.invoke(app, ["check", str(f), "--x", "0.1,0.2,0.3", "--y", "1,2,3,4,5,6,7,8,9,10,11,12"])
    assert r.exit_code == 130
    assert "interrupted after differencing" in r.stderr and "out / x: pass" in r.stderr     # an input is y


def test_sweep_png_needs_the_plot_extra(tmp_path):
    import importlib.util
    png = tmp_path / "sweep.png"
    r = runner.invoke(app, ["check", "sum(exp(x*x))", "--x", "0.5,1", "--sweep", "--plot", str(png)])
    if importlib.util.find_spec("matplotlib") is None:
        assert r.exit_code == 2 and "needs matplotlib" in r.stderr and not png.exists()
    else:
        assert r.exit_code == 0 and png.read_bytes()[:4] == bytes([0x89]) + b"PNG"


@pytest.mark.parametrize("x", ["3,4", "30,40", "300,-400,250", "3000,4000"])
def test_a_right_gradient_at_large_values_is_not_suspicious(x):
    """sum(x^2) + sum(3x) is exact, but at x = 40 the step x + 1e-6 is not exactly 1e-6 away and
    the output's last bits over the step are ~1e-9: once called "suspicious, 1.1e4 times the
    finite-difference error" (and, node by node with --locate, "fail" at 3000). The verdicts
    count round-off as numerics now."""
    from cli.app import app
    from typer.testing import CliRunner
    r = CliRunner().invoke(app, ["check", "sum(x ** 2) + sum(x * 3)", "--x", x, "--locate", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["verdict"] == "pass", doc.get("suspicion")
    assert {c["verdict"] for c in doc["locate"]} == {"pass"}
