"""The checker from Python and pytest (issue 21): cli.check / cli.assert_gradients on torch and
engine tensors give the CLI's report; the pytest plugin's gradcheck fixture passes and fails as
it should in a user's own test suite (run by pytest in a subprocess, with --junitxml);
`python -m cli`; the notebook reprs; check --all and --points; README's examples run."""
import json
import os
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

import engine
from cli import Report, assert_gradients, check
from cli.app import app

runner = CliRunner()
ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "wrong_backward.py"


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")


def _module(tmp_path, lib, factor, name):
    """A file defining Cube with backward off by `factor`, imported as a module."""
    import importlib.util
    p = tmp_path / f"{name}.py"
    p.write_text(f"import {lib} as torch\n\n\nclass Cube(torch.autograd.Function):\n    @staticmethod\n"
                 "    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x ** 3\n\n"
                 "    @staticmethod\n    def backward(ctx, g):\n        x, = ctx.saved_tensors\n"
                 f"        return g * 3 * x ** 2 * {factor!r}\n\n\ndef f(x):\n    return Cube.apply(x * 1.0).sum()\n")
    spec = importlib.util.spec_from_file_location(name, p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return p, mod


def _tensor(lib, values):
    if lib == "torch":
        torch = _torch()
        return torch.tensor(values, dtype=torch.float64, requires_grad=True)
    return engine.tensor(values, requires_grad=True)


@pytest.mark.parametrize("lib", ["engine", "torch"])
@pytest.mark.parametrize("func", ["Cube", "f"])
def test_the_python_report_is_the_clis_json(tmp_path, lib, func):
    if lib == "torch":
        _torch()
    path, mod = _module(tmp_path, lib, 1.01, f"cube_{lib}_{func}")
    fn = mod.Cube.apply if func == "Cube" else mod.f
    report = check(fn, _tensor(lib, [1.0, 2.0, 3.0]))
    r = runner.invoke(app, ["check", str(path), "--func", func, "--x", "1,2,3", "--backend", lib, "--json"])
    assert r.exit_code == 1, r.stderr
    assert report.to_json() == json.loads(r.stdout)
    assert report.verdict == "fail" and not report.passed and not report
    assert report.pattern.startswith("a constant factor: every element is x1.01")
    wrong = [c for c in report.located if c["verdict"] == "fail"]
    assert wrong[0]["node"] == "CubeBackward"
    if func == "f":
        assert wrong[0]["where"] == f"cube_{lib}_{func}.py:17"


@pytest.mark.parametrize("lib", ["engine", "torch"])
def test_a_right_function_passes_and_options_mean_what_the_clis_do(tmp_path, lib):
    if lib == "torch":
        _torch()
    _, mod = _module(tmp_path, lib, 1.0, f"right_{lib}")
    x = _tensor(lib, [0.5, -1.0, 2.0])
    report = check(mod.Cube.apply, x, order=2, locate=True)
    assert report.passed and report.verdict == "pass" and isinstance(report, Report)
    doc = report.to_json()
    assert doc["second_order"]["passed"] and doc["locate"] and doc["backend"] == lib
    assert x.grad is None                               # the check ran on copies
    _, off = _module(tmp_path, lib, 1.001, f"off_{lib}")
    assert check(off.Cube.apply, x).verdict == "suspicious" and check(off.Cube.apply, x).passed
    assert not check(off.Cube.apply, x, strict=True).passed
    with pytest.raises(AssertionError):
        assert_gradients(off.Cube.apply, x, strict=True)


def test_assert_gradients_says_what_is_wrong_and_where(tmp_path):
    _, mod = _module(tmp_path, "engine", 1.01, "assert_me")
    with pytest.raises(AssertionError) as e:
        assert_gradients(mod.f, engine.tensor([1.0, 2.0, 3.0], requires_grad=True))
    text = str(e.value)
    assert "worst at y / x[2]: analytical 27.27, numerical 27" in text           # the element, both values
    assert "first wrong node in forward order: CubeBackward at assert_me.py:17" in text
    assert "the error's shape: a constant factor" in text
    assert "\x1b[" not in text                                                     # plain text for pytest


def test_inputs_that_mix_backends_or_hold_no_tensor_are_refused():
    torch = _torch()
    from cli.errors import CliError
    with pytest.raises(CliError, match="mix torch and engine tensors"):
        check(lambda a, b: (a * b).sum(), torch.ones(2, dtype=torch.float64), engine.ones(2))
    with pytest.raises(CliError, match="at least one tensor"):
        check(lambda a: a, 3.0)


def test_a_non_tensor_argument_is_passed_as_it_is():
    report = check(lambda x, k: (x ** k).sum(), engine.tensor([1.0, 2.0], requires_grad=True), 3)
    assert report.passed and list(report.inputs) == ["x"]


def test_importing_the_api_and_checking_engine_tensors_imports_no_torch():
    code = ("import sys, engine\nfrom cli import check\nr = check(lambda x: (x * x).sum(), "
            "engine.tensor([1.0, 2.0], requires_grad=True))\nprint(r.verdict, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["pass", "False"], out.stderr


def test_python_dash_m_cli_is_the_program(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cli", "check", str(EXAMPLE), "--func", "Cube", "--x", "1,2,3", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and json.loads(r.stdout)["verdict"] == "fail"
    r = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "check" in r.stdout


# -- the pytest plugin, as a user's project uses it ----------------------------------------------
USER_TESTS = '''import engine
{torch_import}

class EngineSquare(engine.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 2 * g * x


class Half(engine.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * x                            # should be 2 * g * x


class EngineCube(engine.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * 3 * x.detach() ** 2          # right first derivative, wrong second


def test_engine_square_right(gradcheck):
    gradcheck(lambda x: EngineSquare.apply(x).sum(), engine.tensor([0.5, -1.0, 2.0], requires_grad=True))


def test_engine_square_wrong(gradcheck):
    gradcheck(lambda x: Half.apply(x).sum(), engine.tensor([0.5, -1.0, 2.0], requires_grad=True))


def test_engine_cube_second_order(gradcheck):
    gradcheck(EngineCube.apply, engine.tensor([0.5, -1.5], requires_grad=True))
{torch_tests}'''

TORCH_TESTS = '''

class TorchTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return g * (1 - y * y)


class TorchOff(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        return g * 0.9                          # should be g * cos(x)


def test_torch_tanh_right(gradcheck):
    gradcheck(TorchTanh.apply, torch.randn(4, dtype=torch.float64, requires_grad=True), strict=True)


def test_torch_sin_wrong(gradcheck):
    gradcheck(TorchOff.apply, torch.randn(4, dtype=torch.float64, requires_grad=True))
'''


def _project(tmp_path, with_torch):
    proj = tmp_path / "userproj"
    (proj / "tests").mkdir(parents=True)
    (proj / "tests" / "test_grads.py").write_text(USER_TESTS.format(
        torch_import="import torch\n" if with_torch else "", torch_tests=TORCH_TESTS if with_torch else ""))
    return proj


def _pytest(proj, *args):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *args],
                          cwd=proj, capture_output=True, text=True, timeout=300, env=env)


def test_the_pytest_plugin_in_a_users_project(tmp_path):
    try:
        import torch  # noqa: F401
        with_torch = True
    except ImportError:
        with_torch = False
    proj = _project(tmp_path, with_torch)
    xml = tmp_path / "junit.xml"
    r = _pytest(proj, f"--junitxml={xml}")
    out = r.stdout
    outcome = {v: k for k, v in re.findall(r"^(PASSED|FAILED) tests/test_grads.py::(\w+)", out, flags=re.M)}
    assert outcome["test_engine_square_right"] == "PASSED"
    assert outcome["test_engine_square_wrong"] == "FAILED"
    assert outcome["test_engine_cube_second_order"] == "PASSED"       # first order only, by default
    if with_torch:
        assert outcome["test_torch_tanh_right"] == "PASSED" and outcome["test_torch_sin_wrong"] == "FAILED"
    assert r.returncode == 1
    lines = (proj / "tests" / "test_grads.py").read_text().splitlines()
    at = next(k for k, line in enumerate(lines, 1) if "Half.apply" in line)       # where the wrong Function is applied
    assert f"first wrong node in forward order: HalfBackward at tests/test_grads.py:{at}" in out     # the report, in the output
    assert "the error's shape: a constant factor: every element is x0.5" in out
    cases = {c.get("name"): c for c in ET.parse(xml).getroot().iter("testcase")}
    failure = cases["test_engine_square_wrong"].find("failure")
    assert failure is not None and f"HalfBackward at tests/test_grads.py:{at}" in (failure.get("message", "") + (failure.text or ""))
    assert cases["test_engine_square_right"].find("failure") is None
    r = _pytest(proj, "--gradcheck-order", "2", "-k", "cube")
    assert r.returncode == 1 and "FAILED (second order)" in r.stdout
    r = _pytest(proj, "--gradcheck-strict", "-k", "right")
    assert r.returncode == 0, r.stdout


# -- notebooks --------------------------------------------------------------------------------------
def test_a_report_is_an_html_table_in_a_notebook(tmp_path):
    _, mod = _module(tmp_path, "engine", 1.01, "nb")
    page = check(mod.Cube.apply, engine.tensor([1.0, 2.0], requires_grad=True))._repr_html_()
    assert "<table>" in page and "FAIL" in page and "CubeBackward" in page and "a constant factor" in page
    hostile = check(lambda x: (x * x).sum(), engine.tensor([1.0], requires_grad=True),
                    names=["<img src=x onerror=alert(1)>"])._repr_html_()
    assert "<img" not in hostile and "&lt;img" in hostile


def test_make_dot_shows_the_drawing_or_says_it_shows_the_dot_text(monkeypatch):
    import shutil

    from engine.torchviz import make_dot
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    graph = make_dot((x * x).sum(), params={"x": x})
    if shutil.which("dot"):
        assert graph._repr_html_().startswith("<svg") and "MulBackward0" in graph._repr_svg_()
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else real(name, *a, **k))
    assert graph._repr_svg_() is None
    html_text = graph._repr_html_()
    assert "not installed" in html_text and "MulBackward0" in html_text and "digraph" in html_text


# -- several checks at once ------------------------------------------------------------------------
LEAKY = '''import engine as torch


class LeakyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x > 0, x, 0.01 * x)

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * torch.where(x > 0, torch.ones_like(x), 0.1 * torch.ones_like(x))   # should be 0.01


class Sq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 2 * g * x


inputs = {"x": [0.5, 1.0, 2.0]}


def f(x):
    return LeakyReLU.apply(x).sum()


def g(x, y):
    return (Sq.apply(x) * y).sum()
'''


def test_points_finds_a_bug_the_given_values_miss(tmp_path):
    p = tmp_path / "leaky.py"
    p.write_text(LEAKY)
    assert runner.invoke(app, ["check", str(p)]).exit_code == 0          # at 0.5, 1, 2: no negative input
    r = runner.invoke(app, ["check", str(p), "--points", "6", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["passed"] is False
    assert doc["checks"][0]["verdict"] == "pass" and any(c["verdict"] == "fail" for c in doc["checks"][1:])
    assert len(doc["checks"]) == 6 and len(doc["reports"]) == 6
    r = runner.invoke(app, ["check", str(p), "--points", "6"])
    assert "of 6 checks pass" in r.stdout and "FAILED" in r.stdout


def test_all_checks_every_function_and_says_what_it_skips(tmp_path):
    p = tmp_path / "leaky.py"
    p.write_text(LEAKY)
    r = runner.invoke(app, ["check", str(p), "--all", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0, r.stderr
    assert [(c["target"], c["verdict"]) for c in doc["checks"]] == [("LeakyReLU", "pass"), ("Sq", "pass"),
                                                                   ("f", "pass"), ("g", "skipped")]
    assert "'y' has no value" in doc["checks"][3]["detail"]
    r = runner.invoke(app, ["check", str(p), "--all", "--y", "1,2,3", "--x", "-1,0.5,2"])
    assert r.exit_code == 1 and "of 4 checks pass" in r.stdout
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.split()[:1] in (["LeakyReLU"], ["g"])}
    assert "FAIL" in rows["LeakyReLU"] and "pass" in rows["g"]
    r = runner.invoke(app, ["check", "sum(x)", "--x", "1", "--all"])
    assert r.exit_code == 2 and "a .py file" in r.stderr


# -- README ------------------------------------------------------------------------------------------
def _readme_blocks():
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python and pytest", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readmes_python_examples_run_as_it_says(tmp_path):
    first, plugin = _readme_blocks()
    if "import torch" in first:
        _torch()
    r = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].startswith("fail a constant factor: every element is x1.01"), r.stderr
    assert lines[1].startswith("FAILED: Jacobian mismatch") and "analytical 27.27, numerical 27" in lines[1]
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_readme.py").write_text(plugin)
    r = _pytest(tmp_path)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout
    np.testing.assert_equal(len(_readme_blocks()), 2)


@pytest.mark.parametrize("lib", ["engine", "torch"])
def test_the_graph_page_shows_in_a_notebook_or_says_what_it_shows(lib, monkeypatch):
    import html as h
    import shutil

    from cli import graph
    x = _tensor(lib, [1.0, 2.0])
    g = graph((x * x).sum(), names={"x<b>": x}, show_values=True)
    if shutil.which("dot"):
        frame = g._repr_html_()
        assert frame.startswith("<iframe srcdoc=") and "<script>" not in frame      # the page, escaped into srcdoc
        page = h.unescape(frame.split('srcdoc="', 1)[1].split('" style=', 1)[0])
        assert page.startswith("<!DOCTYPE html>") and "MulBackward0" in page and "const INFO" in page
        assert "x<b>" not in page.split("const INFO", 1)[1]                       # the name escaped in the data
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "dot" else real(name, *a, **k))
    text = g._repr_html_()
    assert "not installed" in text and "digraph" in text and "x&lt;b&gt;" in text and "<b>" not in text
