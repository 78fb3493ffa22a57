"""The checker checks what users run: a fault in the common backward path (the `.backward()`
that `autograd grad` prints) must make `check_gradients`, `gradcheck`, `autograd check` and
`grad --check` fail, even when the Jacobian rows (autograd.grad) are right."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import engine
import engine.graph as graph
from cli.app import app
from engine.autograd.checker import check_gradients

runner = CliRunner()


def _scaled_accumulate(monkeypatch):
    """.grad off by 1 %: only an ordinary backward() writes .grad (autograd.grad captures)."""
    real = graph._accumulate

    def wrong(var, g, create_graph, owned=False):
        real(var, np.asarray(g) * 1.01, create_graph, False)
    monkeypatch.setattr(graph, "_accumulate", wrong)


def _wrong_release_branch(monkeypatch):
    """A fault in the branch an ordinary backward() takes: MulBackward0's first-order rule off by
    1 % only when it also frees what it saved (release=True, i.e. no retain_graph) -- the
    Jacobian rows (autograd.grad with retain_graph) never take it."""
    cls = engine.ops.REGISTRY["mul"].node_cls[0]
    real = cls._vjp

    def wrong(self, g, release):
        res = real(self, g, release)
        return tuple(r * 1.01 if (release and r is not None) else r for r in res)
    monkeypatch.setattr(cls, "_vjp", wrong)


def _wrong_first_order_sum(monkeypatch):
    """A fault in SumBackward0's first-order path only: create_graph and batched rows pass
    through `apply`, the common pass calls `_vjp` directly."""
    cls = engine.ops.REGISTRY["sum"].node_cls[0]
    real = cls._vjp

    def wrong(self, g, release):
        return [gi * 1.01 if gi is not None else None for gi in real(self, g, release)]
    monkeypatch.setattr(cls, "_vjp", wrong)


FAULTS = {"accumulate": _scaled_accumulate, "release_branch": _wrong_release_branch}


def f(x, w):
    return (x.tanh() * w + (-x).exp()).sum()


def _inputs(n=5):
    rng = np.random.default_rng(0)
    return (engine.tensor(rng.standard_normal(n), requires_grad=True),
            engine.tensor(rng.standard_normal(n), requires_grad=True))


def test_without_a_fault_every_result_passes():
    report = check_gradients(f, _inputs())
    assert report.passed
    kinds = [p.kind for p in report.pairs]
    assert kinds.count("grad") == 2 and kinds.count("jacobian") == 2


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("n", [5, 5000])          # below and above the 4096-element threshold
def test_a_fault_in_the_common_path_fails_the_check(fault, n, monkeypatch):
    FAULTS[fault](monkeypatch)
    report = check_gradients(f, _inputs(n))
    assert not report.passed
    failed = [p for p in report.pairs if not p.passed]
    assert failed and all(p.kind == "grad" for p in failed)     # the Jacobian rows are right
    assert "x.grad after backward() does not match finite differences" in report.failures[0] \
        or "input0.grad" in report.failures[0]
    with pytest.raises(engine.autograd.GradcheckError):
        engine.autograd.gradcheck(f, _inputs(n))
    # the fast mode checks only the backward() path (one random projection: a fault that
    # hits every element is caught whatever the projection)
    if fault == "accumulate":
        assert not check_gradients(f, _inputs(n), fast_mode=True).passed


def test_a_fault_in_the_first_order_rule_path_fails(monkeypatch):
    _wrong_first_order_sum(monkeypatch)
    assert not check_gradients(f, _inputs()).passed


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_autograd_check_and_grad_check_fail_on_a_fault(fault, monkeypatch):
    args = ["sum(tanh(x)*w + exp(-x))", "--x", "0.5,-1,2", "--w", "1,2,3"]
    ok = runner.invoke(app, ["check", *args])
    assert ok.exit_code == 0, ok.output
    FAULTS[fault](monkeypatch)
    r = runner.invoke(app, ["check", *args])
    assert r.exit_code == 1
    assert "x.grad" in r.stdout and "FAIL" in r.stdout
    doc = json.loads(runner.invoke(app, ["check", *args, "--json"]).stdout)
    assert doc["passed"] is False and doc["backward_grad"]["x"]["passed"] is False
    assert all(v["passed"] for v in doc["inputs"].values())     # Jacobian rows: right
    if fault == "accumulate":
        assert runner.invoke(app, ["check", *args, "--fast"]).exit_code == 1
    r = runner.invoke(app, ["grad", *args, "--check"])
    assert "gradient check FAILED" in r.stdout and "after backward()" in r.stdout


def test_grad_results_use_the_cotangent_one_for_scalar_outputs_and_random_otherwise():
    x = engine.tensor([0.5, -1.0, 2.0], requires_grad=True)
    report = check_gradients(lambda x: x * x, (x,))
    g = [p for p in report.pairs if p.kind == "grad"][0]
    # v is random: the .grad compared is v * 2x, not 2x
    assert not np.allclose(g.analytical.reshape(-1), 2 * x.detach().numpy())
    report = check_gradients(lambda x: (x * x).sum(), (x,))
    g = [p for p in report.pairs if p.kind == "grad"][0]
    np.testing.assert_allclose(g.analytical.reshape(-1), 2 * x.detach().numpy(), rtol=1e-12)
