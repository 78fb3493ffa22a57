"""Verdicts on code written as people write it, on both backends (issue 19): second order adds
to first order; float32 is judged against a float64 reference, never replaced by it; what
finite differences cannot resolve is not called a bug. Each expected answer is known by
construction (a Function made wrong on purpose, or a right one)."""
import json

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()

BACKENDS = ["engine", "torch"]

FUNCTION = '''import {lib} as torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return {rule}


def f(x):
    return Cube.apply(x).sum()
'''


def _file(tmp_path, backend, rule, name="cube.py"):
    if backend == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    p = tmp_path / name
    p.write_text(FUNCTION.format(lib="torch" if backend == "torch" else "engine", rule=rule))
    return p


def _check(path, backend, *extra):
    r = runner.invoke(app, ["check", str(path), "--x", "0.5,-1.5", "--backend", backend, "--json", *extra])
    assert r.exit_code in (0, 1), r.stderr
    return r.exit_code, json.loads(r.stdout)


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_2_checks_the_first_order_too(tmp_path, backend):
    """A Function wrong at first order (and right at second) once passed with --order 2."""
    f = _file(tmp_path, backend, "g * 3.1 * x ** 2")
    code, doc = _check(f, backend, "--order", "2")
    assert code == 1 and doc["passed"] is False and doc["verdict"] == "fail"
    assert doc["first_order"] == {"passed": False, "verdict": "fail"}
    assert doc["second_order"]["verdict"] in ("pass", "fail")
    r = runner.invoke(app, ["check", str(f), "--x", "0.5,-1.5", "--backend", backend, "--order", "2"])
    assert "first order" in r.stdout and "second order" in r.stdout and "FAILED (first order)" in r.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_2_catches_a_bug_only_second_derivatives_see(tmp_path, backend):
    f = _file(tmp_path, backend, "g * 3 * x.detach() ** 2")     # no x-dependence left for double backward
    code, doc = _check(f, backend)
    assert code == 0 and doc["verdict"] == "pass"
    code, doc = _check(f, backend, "--order", "2")
    assert code == 1 and doc["first_order"]["passed"] is True and doc["second_order"]["passed"] is False
    assert doc["verdict"] == "fail"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_right_function_passes_both_orders(tmp_path, backend):
    f = _file(tmp_path, backend, "g * 3 * x ** 2")
    code, doc = _check(f, backend, "--order", "2")
    assert code == 0 and doc["verdict"] == "pass" and doc["second_order"]["passed"] is True
    names = set(doc["second_order"]["inputs"])
    assert names == {"x", "grad_output"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_2_refuses_a_second_order_jacobian_past_the_limit_before_any_work(tmp_path, backend):
    f = _file(tmp_path, backend, "g * 3 * x ** 2")
    r = runner.invoke(app, ["check", str(f), "--x", "randn(12000)", "--backend", backend, "--order", "2"])
    assert r.exit_code == 2 and "the Jacobian would have 144,012,000 elements" in r.stderr
