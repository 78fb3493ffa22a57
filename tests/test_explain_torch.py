"""explain on real PyTorch code as the red team read it (issue 19, C items), on both backends: an
nn.Module's parameters by their qualified names (net.fc1.weight, not leaf/input0), PyTorch's
MmBackward0 and TBackward0 rules filled in (mm's operands are matrices, t() swaps 0 and 1),
a source line without its trailing comment, both outputs of a two-output Function, and the
second of two gradients sent to one Function named as its output 1."""
import json

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()
BACKENDS = ["engine", "torch"]

NET = '''import {lib} as torch
import {lib}.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4).double()
        self.fc2 = nn.Linear(4, 2).double()

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


torch.manual_seed(0)
net = Net()


def f(x):
    return net(x).pow(2).sum()
'''
TWO = '''import {lib} as torch


class Two(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 2, x * x

    @staticmethod
    def backward(ctx, ga, gb):
        x, = ctx.saved_tensors
        return 2 * ga + 2 * x * gb


def f(x, W):
    h = x @ W.t()  # a comment, with "#" and words
    a, b = Two.apply(h)
    return (a + b).sum()
'''


def _explain(tmp_path, backend, source, *values):
    if backend == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    p = tmp_path / "t.py"
    p.write_text(source.format(lib="torch" if backend == "torch" else "engine"))
    r = runner.invoke(app, ["explain", str(p), *values, "--backend", backend, "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("backend", BACKENDS)
def test_module_parameters_go_by_their_qualified_names(tmp_path, backend):
    doc = _explain(tmp_path, backend, NET, "--x", "randn(5,3)")
    leaves = [s["leaf"] for c in doc["calls"] for s in c["steps"] if s["node"] == "AccumulateGrad"]
    assert sorted(leaves) == ["net.fc1.bias", "net.fc1.weight", "net.fc2.bias", "net.fc2.weight", "x"]
    sent_to = {k for c in doc["calls"] for s in c["steps"] for k in s.get("sent", {})}
    assert not any(k.startswith(("input", "leaf")) for k in sent_to), sent_to


@pytest.mark.parametrize("backend", BACKENDS)
def test_mm_t_and_a_two_output_function(tmp_path, backend):
    doc = _explain(tmp_path, backend, TWO, "--x", "[[1,2]]", "--W", "[[0.5,-1],[2,0.25]]")
    fwd = {f["node"]: f for f in doc["forward"]}
    assert fwd["MmBackward0"]["computes"].startswith("line 17: h = x @ W.t(), step 2 of 2")
    assert "#" not in fwd["MmBackward0"]["computes"]
    assert fwd["TwoBackward"]["value"] == "([[-3, 5]], [[2.25, 6.25]])"
    steps = {s["node"]: s for s in doc["calls"][0]["steps"] if s["node"] != "AccumulateGrad"}
    assert steps["MmBackward0"]["rule"] == "grad_x = grad @ (TBackward0 #1)^T; grad_(TBackward0 #1) = x^T @ grad"
    assert steps["TBackward0"]["rule"] in ("grad_W = transpose(grad, 0, 1)", "grad_W = transpose(grad, -2, -1)")
    assert all(" if " not in s["rule"] for s in steps.values())
    assert list(steps["AddBackward0"]["sent"]) == ["TwoBackward #3", "TwoBackward #3 (its output 1)"]


@pytest.mark.parametrize("shape", [(100_000,), (100_001,), (400, 251), (3, 50_000, 1)])
def test_a_big_forward_value_is_shown_as_fmt_shows_it_without_copying_it(shape):
    """Above KEPT elements explain keeps only the numbers it shows, read from the value itself
    (a 10**9-element expand copied 8 GB before the size limit could refuse it); what it shows is
    what fmt shows of the whole array, on both sides of the threshold and for a broadcast view."""
    import numpy as np

    from cli.commands.explain import KEPT, _fmt_value, _kept, fmt
    a = np.random.default_rng(0).standard_normal(shape)
    for v in (a, np.broadcast_to(a[..., :1], shape)):
        assert _fmt_value(_kept(v)) == fmt(np.array(v))
        assert isinstance(_kept(v), np.ndarray) == (v.size <= KEPT)
    torch = pytest.importorskip("torch")
    from cli.commands.explain import _Forward
    t = torch.from_numpy(a)
    fw = _Forward.__new__(_Forward)
    fw.target = type("T", (), {"to_numpy": staticmethod(lambda x: x.detach().numpy().copy())})()
    assert _fmt_value(fw._torch_kept(t)) == fmt(a)


def test_explain_refuses_a_huge_expand_before_copying_it():
    import tracemalloc
    tracemalloc.start()
    r = runner.invoke(app, ["explain", "sum(x.expand(10**9)) + w", "--w", "eye(2)", "--x", "2"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.exit_code == 2 and "would have 1,000,000,000 elements" in r.stderr
    assert peak < 200 * 2 ** 20, peak           # it peaked at 8 GB
