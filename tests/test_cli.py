"""The `autograd` command through Typer's CliRunner (stdout and stderr apart), plus a few runs of
the installed console script as a real subprocess."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app

ROOT = pathlib.Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def as_json(result):
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)      # stdout holds exactly one JSON document


def test_seed_example_text_and_exact_gradient():
    r = invoke("grad", "sum(w*x)", "--w", "1,2", "--x", "3,4")
    assert r.exit_code == 0 and r.stderr == ""
    assert "tensor(11., grad_fn=<SumBackward0>)" in r.stdout
    doc = as_json(invoke("grad", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--json"))
    assert doc["gradients"] == {"w": [3.0, 4.0], "x": [1.0, 2.0]}      # d(w.x)/dw = x, d/dx = w
    assert doc["output"] == {"value": 11.0, "shape": [], "grad_fn": "SumBackward0"}
    assert doc["inputs"]["w"] == {"value": [1.0, 2.0], "shape": [2], "requires_grad": True}


def test_accumulation_table_and_zero_grad():
    doc = as_json(invoke("grad", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--wrt", "w", "--times", "2", "--json"))
    assert [c["gradients"]["w"] for c in doc["accumulation"]] == [[3.0, 4.0], [6.0, 8.0]]
    assert doc["inputs"]["x"]["requires_grad"] is False and "x" not in doc["gradients"]
    doc = as_json(invoke("grad", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--times", "3", "--zero-grad", "--json"))
    assert [c["gradients"]["w"] for c in doc["accumulation"]] == [[3.0, 4.0]] * 3
    r = invoke("grad", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--times", "2")
    assert "Gradients accumulate" in r.stdout and "retain_graph=True" in r.stdout
    assert "tensor([6., 8.])" in r.stdout


def test_non_scalar_output_needs_grad_output():
    r = invoke("grad", "w*x", "--w", "1,2", "--x", "3,4")
    assert r.exit_code == 2 and r.stdout == ""
    assert "not a scalar: pass --grad-output VALUES" in r.stderr and "Traceback" not in r.stderr
    doc = as_json(invoke("grad", "w*x", "--w", "1,2", "--x", "3,4", "--grad-output", "10,100", "--json"))
    assert doc["gradients"]["w"] == [30.0, 400.0]          # v * x elementwise


def test_output_that_is_the_variable_itself():
    doc = as_json(invoke("grad", "x", "--x", "3", "--json"))
    assert doc["gradients"]["x"] == 1.0 and doc["output"]["grad_fn"] is None      # as x.backward() in PyTorch
    r = invoke("grad", "2 * 3")
    assert r.exit_code == 2 and "does not depend on any variable" in r.stderr


def test_negative_and_equals_values():
    doc = as_json(invoke("grad", "sum(w*x)", "--w=-1,2", "--x", "-3,4e-1", "--json"))
    assert doc["gradients"]["w"] == [-3.0, 0.4]


def test_jacobian_matches_closed_form():
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = np.array([0.5, -1.0])
    doc = as_json(invoke("jacobian", "tanh(W @ x)", "--W", "1,2;3,4", "--x", "0.5,-1", "--json"))
    d = 1 - np.tanh(A @ x) ** 2
    np.testing.assert_allclose(doc["jacobian"]["x"], d[:, None] * A, rtol=1e-12)
    expected_W = np.zeros((2, 2, 2))
    for i in range(2):
        expected_W[i, i, :] = d[i] * x
    np.testing.assert_allclose(doc["jacobian"]["W"], expected_W, rtol=1e-12)
    r = invoke("jacobian", "tanh(W @ x)", "--W", "1,2;3,4", "--x", "0.5,-1")
    assert "y[0]" in r.stdout and "x[1]" in r.stdout and "shown as 2 rows" in r.stdout


def test_large_jacobian_is_summarised_with_full_option():
    r = invoke("jacobian", "x * 2", "--x", "arange(40)")
    assert r.exit_code == 0 and "pass --full" in r.stdout and "x[39]" in r.stdout and "x[20]" not in r.stdout
    r = invoke("jacobian", "x * 2", "--x", "arange(40)", "--full")
    assert "x[20]" in r.stdout


def test_check_passes_and_fails_with_exit_codes():
    doc = as_json(invoke("check", "sum(sin(x)*x)", "--x", "randn(5)", "--json"))
    assert doc["passed"] is True and doc["inputs"]["x"]["passed"] is True
    assert doc["inputs"]["x"]["max_abs_error"] < 1e-6
    r = invoke("check", EX / "wrong_backward.py", "--func", "Cube", "--x", "1,2,3", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["passed"] is False
    x = doc["inputs"]["x"]
    assert x["worst_index"] == [[2], [2]]                         # the largest x has the largest error
    assert x["numerical"] == pytest.approx(27.0, rel=1e-6) and x["analytical"] == pytest.approx(27.27)
    assert doc["custom_functions"] == ["CubeBackward"]
    r = invoke("check", EX / "wrong_backward.py", "--func", "Cube", "--x", "1,2,3")
    assert r.exit_code == 1 and "FAIL" in r.stdout and "y[2], x[2]" in r.stdout
    assert "custom Functions on this graph (the first suspects: built-in ops are trusted, their backward is tested): CubeBackward" in r.stdout


def test_check_warns_at_kinks_and_for_float32():
    r = invoke("check", "sum(relu(x))", "--x", "-1,0,2")
    assert r.exit_code == 1 and "lies within eps" in r.stderr and "subgradient" in r.stderr
    r = invoke("check", "sum(sin(x))", "--x", "1,2", "--dtype", "float32", "--atol", "1e-2", "--rtol", "1e-2")
    assert "float32" in r.stderr


def test_graph_dot_on_stdout_and_to_file(tmp_path):
    r = invoke("graph", "sum(w*x)", "--w", "1,2", "--x", "3,4")
    assert r.exit_code == 0 and r.stdout.startswith("digraph autograd {") and "SumBackward0" in r.stdout
    out = tmp_path / "g.dot"
    r = invoke("graph", "sum(w*x)", "--w", "1,2", "--x", "3,4", "-o", out)
    assert r.exit_code == 0 and out.read_text().startswith("digraph")
    r = invoke("graph", "sum(w*x)", "--w", "1,2", "--x", "3,4", "-o", tmp_path / "g.mmd")
    assert (tmp_path / "g.mmd").read_text().startswith("flowchart TB")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_graph_renders_svg(tmp_path):
    out = tmp_path / "g.svg"
    r = invoke("graph", "sum(w*x)", "--w", "1,2", "--x", "3,4", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert "<svg" in out.read_text()


def test_missing_graphviz_is_said_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    r = invoke("graph", "sum(w*undefined_var)", "--w", "1,2", "-o", tmp_path / "g.png")
    assert r.exit_code == 2
    assert "needs Graphviz's 'dot' program" in r.stderr and "apt-get install graphviz" in r.stderr
    assert "undefined_var" not in r.stderr       # said before the target was even evaluated


@pytest.mark.parametrize("args,fragment", [
    (["grad", "sum(w*x"], "invalid syntax"),
    (["grad", "tanhh(w)", "--w", "1"], "unknown function 'tanhh'; did you mean 'tanh'"),
    (["grad", "sum(w*y)", "--w", "1,2"], "'y' has no value: pass --y VALUES"),
    (["grad", "sum(w*x)", "--w", "1,2", "--x", "1,2,3"], "cannot broadcast shapes (2,) and (3,) in 'w*x'"),
    (["grad", "sum(w)", "--w", "1,2", "--w", "3"], "--w is given twice"),
    (["grad", "sum(w)", "--w", "1,2", "--z", "3"], "--z is given but the target does not use 'z'"),
    (["grad", "sum(seed*2)", "--w", "1"], "the variable 'seed' is named like the option --seed: give its value after --"),
    (["grad", "sum(w)", "--w", "1,,2"], "empty item"),
    (["grad", "sum(w)", "--w", "randn(100000,100000)"], "the limit is 100,000,000"),
    (["grad", "nope.py"], "file not found: 'nope.py'"),
    (["grad", "sum(w)", "--w", "1", "--wrt", "q"], "--wrt names 'q'"),
    (["grad", "sum(w)", "--w", "1", "--dtype", "int8"], "--dtype must be float64 or float32"),
    (["grad", "().__class__", "--w", "1"], "not allowed"),
])
def test_usage_errors_exit_2_with_one_clear_message(args, fragment):
    r = invoke(*args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_caret_points_at_the_offending_part():
    r = invoke("grad", "sum(w*x) + tanhh(w)", "--w", "1,2", "--x", "3,4")
    lines = r.stderr.splitlines()
    assert lines[1].strip() == "sum(w*x) + tanhh(w)"
    assert lines[2] == "  " + " " * 11 + "^" * 5


def test_debug_shows_traceback():
    r = invoke("grad", "sum(w*y)", "--w", "1,2", "--debug")
    assert r.exit_code == 2 and "Traceback" in r.stderr


def test_python_file_targets():
    doc = as_json(invoke("grad", EX / "my_square.py", "--func", "MySquare", "--x", "3", "--json"))
    assert doc["output"]["grad_fn"] == "MySquareBackward" and doc["gradients"]["x"] == 6.0
    doc = as_json(invoke("grad", EX / "my_square.py", "--json"))         # f and the inputs dict
    assert doc["gradients"]["x"] == [2.0, 4.0, 6.0]
    doc = as_json(invoke("grad", EX / "control_flow.py", "--json"))
    x = np.array([0.5, -1.5, 2.0])
    # sum(x) > 0 on every step: y = tanh(tanh(tanh(x)*x)*x)*x; check against finite differences
    def f(v):
        y = v
        for _ in range(3):
            y = np.tanh(y) * v if y.sum() > 0 else y - v ** 2
        return y.sum()
    fd = [(f(x + e) - f(x - e)) / 2e-6 for e in np.eye(3) * 1e-6]
    np.testing.assert_allclose(doc["gradients"]["x"], fd, rtol=1e-6)
    r = invoke("check", EX / "mlp.py", "--wrt", "W1,b1,W2", "--json")
    assert json.loads(r.stdout)["passed"] is True


def test_python_file_that_raises_shows_its_own_traceback(tmp_path):
    p = tmp_path / "bad.py"
    p.write_text("import engine\n\ndef f(x):\n    return helper(x)\n\ndef helper(x):\n    raise ValueError('boom')\n")
    r = invoke("grad", p, "--x", "1")
    assert r.exit_code == 2
    assert "ValueError: boom" in r.stderr and "bad.py" in r.stderr and "helper" in r.stderr
    assert "cli/targets.py" not in r.stderr and "typer" not in r.stderr


def test_version_and_help_with_examples():
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.startswith("autograd-cli ")
    for cmd in ("grad", "jacobian", "check", "graph"):
        r = invoke(cmd, "--help")
        assert r.exit_code == 0 and "Example: autograd " + cmd in r.stdout


def _script():
    p = pathlib.Path(sys.executable).parent / "autograd"
    if not p.exists():
        pytest.skip("the autograd console script is not installed in this environment")
    return str(p)


def test_installed_script_seed_example():
    r = subprocess.run([_script(), "grad", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--json"],
                       capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode == 0 and json.loads(r.stdout)["gradients"]["w"] == [3.0, 4.0]


def test_installed_script_plain_when_piped_and_exit_codes():
    r = subprocess.run([_script(), "grad", "sum(w*x)", "--w", "1,2", "--x", "3,4"], capture_output=True, text=True)
    assert r.returncode == 0 and "\x1b[" not in r.stdout          # no colour codes when piped
    r = subprocess.run([_script(), "grad", "sum(w*x)", "--w", "1,2"], capture_output=True, text=True)
    assert r.returncode == 2 and "'x' has no value" in r.stderr
    r = subprocess.run([_script(), "check", str(EX / "wrong_backward.py"), "--func", "Cube", "--x", "1,2"],
                       capture_output=True, text=True)
    assert r.returncode == 1


def test_rich_rendering_path(monkeypatch):
    monkeypatch.setenv("AUTOGRAD_RICH", "1")         # what a terminal gets
    r = invoke("grad", "sum(w*x)", "--w", "1,2", "--x", "3,4")
    assert r.exit_code == 0 and "─" in r.stdout
    assert "tensor(11., grad_fn=<SumBackward0>)" in r.stdout and "tensor([3., 4.])" in r.stdout
    r = invoke("check", EX / "wrong_backward.py", "--func", "Cube", "--x", "1,2,3")
    assert r.exit_code == 1 and "FAIL" in r.stdout


def test_grad_check_and_dot_options(tmp_path):
    out = tmp_path / "g.dot"
    doc = as_json(invoke("grad", "sum(tanh(w*x))", "--w", "1,2", "--x", "3,4", "--check", "--dot", out, "--json"))
    assert doc["check"]["passed"] is True
    text = out.read_text()
    assert "TanhBackward0" in text and "grad [" in text            # --dot shows values and gradients
    r = invoke("grad", EX / "wrong_backward.py", "--func", "Cube", "--x", "1,2", "--grad-output", "1,1", "--check")
    assert r.exit_code == 1 and "gradient check FAILED" in r.stdout


def test_check_fast_mode_and_jacobian_check():
    doc = as_json(invoke("check", "sum(sin(x)*x)", "--x", "randn(50)", "--fast", "--json"))
    assert doc["passed"] is True and doc["fast_mode"] is True and doc["checks"] == {"fast": True, "deterministic": True, "zero_grad_output": True}   # the side checks run too
    r = invoke("check", EX / "wrong_backward.py", "--func", "Cube", "--x", "1,2,3", "--fast", "--json")
    doc = json.loads(r.stdout)
    # the full re-check's failure leads (the table's rows); the fast check's projection follows
    assert r.exit_code == 1 and doc["failures"][0].startswith("Jacobian mismatch")
    assert any(f.startswith("fast check failed") for f in doc["failures"][1:])
    assert doc["inputs"]["x"]["worst_index"] == [[2], [2]]       # the full re-run says where
    doc = as_json(invoke("jacobian", "tanh(W @ x)", "--W", "1,2;3,4", "--x", "0.5,-1", "--check", "--json"))
    assert doc["check"]["passed"] is True


def test_seed_example_imports_only_what_it_needs():
    """Start-up is a target (benchmarks/): the seed example must not pull in numpy.random (~14 ms),
    Rich (~40 ms, piped output is plain text) or pydantic, and work out only the saves of the ops
    it uses (each op's table of what to save per pattern of inputs is filled on first use)."""
    code = ("import sys; sys.argv = ['autograd', 'grad', 'sum(w*x)', '--w', '1,2', '--x', '3,4']\n"
            "from cli.app import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "from engine.ops import REGISTRY\n"
            "analysed = sorted(n for n, op in REGISTRY.items() if op.keep_table)\n"
            "print('MODULES', ' '.join(m for m in ('numpy.random', 'rich', 'pydantic') if m in sys.modules))\n"
            "print('ANALYSED', ' '.join(analysed))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in r.stdout.splitlines()
                 if line.startswith(("MODULES", "ANALYSED")))
    assert lines["MODULES"] == ""
    assert lines["ANALYSED"].split() == ["mul", "sum"]       # the ops the expression used
    # randn values still come from the seeded generator, made on first use
    r1, r2 = (invoke("grad", "sum(w*x)", "--w", "randn(3)", "--x", "1,1,1", "--json") for _ in range(2))
    assert json.loads(r1.stdout)["gradients"]["x"] == json.loads(r2.stdout)["gradients"]["x"]


def test_json_writes_nan_and_infinities_as_strings():
    doc = as_json(invoke("grad", "sum(sqrt(x))", "--x", "0,1", "--json"))
    assert doc["gradients"]["x"] == ["Infinity", 0.5]               # d sqrt(x)/dx = 1/(2 sqrt x)
    doc = as_json(invoke("grad", "sum(x*y)", "--x", "1,-inf", "--y", "nan,1", "--json"))
    assert doc["output"]["value"] == "NaN"
    assert doc["inputs"]["x"]["value"] == [1.0, "-Infinity"] and doc["gradients"]["y"] == [1.0, "-Infinity"]
    assert [float(v) for v in doc["inputs"]["x"]["value"]] == [1.0, float("-inf")]
