"""`autograd explain` as the lesson tells it (issue 23): what each node sends, fitted to the input
it goes to; a gradient reached by several paths shown as the sum of their parts; every forward
node's value, matrices as matrices; one label per step of a call that makes several nodes; the
user's source line for a file; an unused output of a split; and the same story on PyTorch's
graph (--backend torch). Expected numbers are closed forms or PyTorch's."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.commands.explain import fmt

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def explain_json(*args):
    r = invoke("explain", *args, "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def steps_of(doc, call=0):
    return doc["calls"][call]["steps"]


def test_a_sum_sends_every_element_its_one():
    """sum's rule returns a lazy uniform gradient; what reaches x is one 1 per element."""
    doc = explain_json("sum(exp(x))", "--x", "0,1,2")
    s = steps_of(doc)
    assert s[0]["node"] == "SumBackward0" and s[0]["sent"] == {"exp(x)": "[1, 1, 1]"}
    assert s[1]["node"] == "ExpBackward0" and s[1]["received"] == "[1, 1, 1]"
    assert s[1]["sent"] == {"x": fmt(np.exp([0.0, 1.0, 2.0]))}          # d/dx exp = exp


def test_a_broadcast_input_is_sent_its_reduced_gradient():
    """b (shape (2,)) broadcast over the rows of a (3, 2): what reaches b is the column sums."""
    a = np.arange(6.0).reshape(3, 2)
    doc = explain_json("sum(a*b)", "--a", "[[0,1],[2,3],[4,5]]", "--b", "1,2")
    mul = next(s for s in steps_of(doc) if s["node"] == "MulBackward0")
    assert mul["sent"]["b"] == fmt(a.sum(0)) and mul["sent"]["a"] == fmt(np.broadcast_to([1.0, 2.0], (3, 2)))


def test_two_paths_to_a_leaf_are_shown_as_a_sum():
    """x reached by x*w and by x**2: the lesson's accumulation, w + 2x, shown part by part."""
    doc = explain_json("sum(x*w) + sum(x**2)", "--x", "1,2", "--w", "3,-1")
    acc = next(s for s in steps_of(doc) if s.get("leaf") == "x")
    assert sorted(acc["sum_of"][0]) == sorted([fmt(np.array([3.0, -1.0])), fmt(np.array([2.0, 4.0]))])
    assert acc["received"].endswith(" = " + fmt(np.array([5.0, 3.0])))
    assert doc["gradients"]["x"] == [5.0, 3.0]
    w = next(s for s in steps_of(doc) if s.get("leaf") == "w")
    assert "sum_of" not in w and " + " not in w["received"]                 # one path: no sum
    r = invoke("explain", "sum(x*w) + sum(x**2)", "--x", "1,2", "--w", "3,-1")
    assert "gradients add up" in r.stdout


def test_every_forward_node_shows_its_value():
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = np.array([0.5, -1.0])
    b = np.array([0.1, 0.2])
    doc = explain_json("sum(tanh(W @ x + b))", "--W", "[[1,2],[3,4]]", "--x", "0.5,-1", "--b", "0.1,0.2")
    values = [f["value"] for f in doc["forward"]]
    assert None not in values
    assert values == [fmt(W @ x), fmt(W @ x + b), fmt(np.tanh(W @ x + b)), fmt(np.tanh(W @ x + b).sum())]


def test_matrices_print_as_matrices():
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    doc = explain_json("sum(A @ A)", "--A", "[[1,2],[3,4]]")
    assert doc["forward"][0]["value"] == "[[7, 10], [15, 22]]" == fmt(A @ A)
    r = invoke("explain", "sum(A @ A)", "--A", "[[1,2],[3,4]]")
    lines = r.stdout.splitlines()
    k = next(i for i, line in enumerate(lines) if "MmBackward0: A @ A =" in line)
    assert lines[k + 1].strip() == "[[ 7, 10]" and lines[k + 2].strip() == "[15, 22]]"
    big = invoke("explain", "sum(x)", "--x", "ones(20, 20)", "--json")
    assert "flat of (20, 20)" in json.loads(big.stdout)["calls"][0]["steps"][0]["sent"]["x"]   # too big: flat


def test_a_call_that_makes_two_nodes_labels_each():
    doc = explain_json("cross_entropy(z, [2])", "--z", "[[1,2,3]]")
    labels = {f["node"]: f["computes"] for f in doc["forward"]}
    assert labels["LogSoftmaxBackward0"] != labels["NllLossBackward0"]
    assert "log_softmax" in labels["LogSoftmaxBackward0"] and "nll_loss" in labels["NllLossBackward0"]


def test_a_split_piece_not_used_is_said_to_be_zeros():
    doc = explain_json("sum(chunk(x, 2)[1])", "--x", "1,2,3,4")
    split = next(s for s in steps_of(doc) if s["node"] == "SplitBackward0")
    assert split["received"] == "output 0: nothing (not used; zeros); output 1: [1, 1]"
    assert doc["gradients"]["x"] == [0.0, 0.0, 1.0, 1.0]
    assert "None" not in split["received"]


FILE = """import {lib}

class Square({lib}.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 2 * x * g

def f(w, x):
    h = {lib}.tanh(w * x)
    y = Square.apply(h) + h
    return {lib}.nn.functional.cross_entropy({lib}.stack([y, x]), {lib}.tensor([0, 1]))
"""


def _torch_reference():
    torch = pytest.importorskip("torch")
    ns = {}
    exec(compile(FILE.format(lib="torch"), "<torch file>", "exec"), ns)
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    out = ns["f"](w, x)
    names, stack, seen = [], [out.grad_fn], set()
    while stack:
        n = stack.pop()
        if n is None or n in seen:
            continue
        seen.add(n)
        names.append(n.name().rsplit("::", 1)[-1])
        stack.extend(m for m, _ in n.next_functions)
    out.backward()
    return sorted(names), w.grad.numpy(), x.grad.numpy()


@pytest.mark.parametrize("backend", ["engine", "torch"])
def test_a_file_on_both_backends_tells_the_same_story(tmp_path, backend):
    """A file that imports torch, told on PyTorch's own graph (--backend torch) and on the
    engine's: PyTorch's node names, the user's source lines, sums where paths meet, the custom
    Function's backward, and PyTorch's gradients."""
    if backend == "torch":
        pytest.importorskip("torch")
    names, gw, gx = _torch_reference()
    path = tmp_path / "net.py"
    path.write_text(FILE.format(lib="torch"))
    doc = explain_json(path, "--w", "1,2", "--x", "3,4", "--backend", backend)
    assert doc["backend"] == backend
    steps = steps_of(doc)
    assert sorted(s["node"] for s in steps) == names
    assert np.allclose(doc["gradients"]["w"], gw, rtol=1e-12) and np.allclose(doc["gradients"]["x"], gx, rtol=1e-12)
    computes = {f["node"]: f["computes"] for f in doc["forward"]}
    assert computes["TanhBackward0"].startswith("line 15: h = torch.tanh(w * x)")
    assert computes["SquareBackward"] == "line 16: y = Square.apply(h) + h, step 1 of 2: Square.apply"
    assert computes["AddBackward0"] == "line 16: y = Square.apply(h) + h, step 2 of 2: add"
    assert all(f["value"] is not None for f in doc["forward"]), doc["forward"]
    tanh = next(s for s in steps if s["node"] == "TanhBackward0")
    assert len(tanh["sum_of"][0]) == 2                        # from Square and from the + directly
    sq = next(s for s in steps if s["node"] == "SquareBackward")
    assert sq["rule"] == "your backward (Square.backward)"
    r = invoke("explain", path, "--w", "1,2", "--x", "3,4", "--backend", backend)
    assert r.exit_code == 0 and r.stdout.startswith("backend: " + ("PyTorch" if backend == "torch" else "engine"))


def test_the_two_backends_send_the_same_numbers(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "net.py"
    path.write_text(FILE.format(lib="torch"))
    docs = [explain_json(path, "--w", "1,2", "--x", "3,4", "--backend", b) for b in ("engine", "torch")]
    told = [[(s["node"], s["received"], sorted(s.get("sent", {}).values())) for s in steps_of(d)] for d in docs]
    assert sorted(told[0]) == sorted(told[1])
    saved = [{f["node"]: f.get("saved") for f in d["forward"]} for d in docs]
    for node in ("MulBackward0", "TanhBackward0"):           # PyTorch's _saved_* names and values
        assert saved[0][node] == saved[1][node], node
    assert saved[1]["MulBackward0"] == {"other": "[3, 4]", "self": "[1, 2]"}
    assert saved[1]["TanhBackward0"] == {"result": fmt(np.tanh([3.0, 8.0]))}


def test_explain_backend_torch_on_an_expression_is_refused():
    r = invoke("explain", "sum(x)", "--x", "1", "--backend", "torch")
    assert r.exit_code == 2 and "expressions run on the engine" in r.stderr


def test_a_rule_is_read_before_backward_frees_what_it_names():
    """x/2 with --no-retain: the node's saved 2 is freed by the first backward; the rule and the
    sent line were read after it and said `input1`."""
    r = invoke("explain", "x/2", "--x", "3", "--no-retain")
    assert r.exit_code == 0 and "rule: grad_x = grad / 2" in r.stdout and "input1" not in r.stdout, r.stdout
