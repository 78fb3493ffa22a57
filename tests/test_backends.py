"""The false pass is gone: a .py file that says `import torch` and has a wrong backward never
gets "passed", with or without PyTorch installed, whatever --backend says.

It used to: with PyTorch installed, real torch.autograd.Function.apply received engine tensors,
ran forward as plain engine ops and never called the wrong backward. Now a target runs on one
backend: real PyTorch (torch tensors, PyTorch's autograd, cli/torch_backend.py), or the engine's
PyTorch API (torch mapped to the engine while the target runs). Tests marked for PyTorch skip
when it is not installed; "torch absent" is simulated where it is, so both run in CI."""
import importlib.util
import json
import pathlib
import sys

import pytest
from typer.testing import CliRunner

from cli import backends
from cli.app import app

runner = CliRunner()
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed (pip install torch)")

# the project's own wrong-backward example (1 % off), as the torch file a user would have
EXAMPLE = (pathlib.Path(__file__).resolve().parents[1] / "examples" / "wrong_backward.py").read_text()
assert "import engine as torch\n" in EXAMPLE
WRONG = EXAMPLE.replace("import engine as torch\n", "import torch\n") + \
    "\n\ndef f(x):\n    return Cube.apply(x).sum()\n"
RIGHT = WRONG.replace("g * 3 * x ** 2 * 1.01", "g * 3 * x ** 2")
assert RIGHT != WRONG


@pytest.fixture(params=[pytest.param(True, marks=needs_torch), False], ids=["torch_installed", "torch_absent"])
def installed(request, monkeypatch):
    if not request.param:             # as if PyTorch were not installed (`import torch` is the engine's)
        monkeypatch.setattr(backends, "torch_installed", lambda: False)
    return request.param


@pytest.mark.parametrize("backend", ["auto", "engine", "torch"])
@pytest.mark.parametrize("command", ["check", "grad --check", "jacobian --check --func Cube",
                                     "check --fast"])
def test_a_wrong_backward_in_a_torch_file_never_passes(tmp_path, installed, backend, command):
    target = tmp_path / "cube.py"
    target.write_text(WRONG)
    argv = command.split() + [str(target), "--x", "1,2", "--backend", backend]
    r = runner.invoke(app, argv)
    assert "passed" not in r.stdout.replace("FAILED", "").lower() or r.exit_code != 0
    if backend == "torch" and not installed:
        assert r.exit_code == 2 and "needs PyTorch, which is not installed" in r.stderr
        return
    assert r.exit_code == 1 and "FAIL" in r.stdout, (r.stdout, r.stderr)     # the user's backward was called
    on_torch = backend == "torch" or (backend == "auto" and installed)
    if on_torch:
        assert "backend: PyTorch" in r.stdout
    else:
        assert "backend: engine" in r.stdout
    if command == "check":
        assert "CubeBackward" in r.stdout                          # named, on either backend


@pytest.mark.parametrize("backend", ["engine", pytest.param("torch", marks=needs_torch)])
def test_a_right_backward_in_a_torch_file_passes(tmp_path, backend):
    target = tmp_path / "cube.py"
    target.write_text(RIGHT)
    r = runner.invoke(app, ["check", str(target), "--x", "1,2", "--backend", backend, "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["passed"] is True and doc["backend"] == backend
    doc = json.loads(runner.invoke(app, ["grad", str(target), "--x", "1,2", "--backend", backend, "--json"]).stdout)
    assert doc["gradients"] == {"x": [3.0, 12.0]}                  # 3 x^2
    assert doc["backend"] == backend and doc["output"]["grad_fn"] == "SumBackward0"


@needs_torch
def test_on_the_torch_backend_pytorch_computes_the_gradients(tmp_path, monkeypatch):
    """The analytical side is PyTorch's autograd: the user's backward is called by PyTorch, with
    torch tensors, and the engine never sees the target's tensors."""
    log = tmp_path / "calls.txt"
    target = tmp_path / "cube.py"
    target.write_text(RIGHT.replace("x, = ctx.saved_tensors", "x, = ctx.saved_tensors\n"
                                    f"        open({str(log)!r}, 'a').write(type(g).__module__ + '\\n')"))
    r = runner.invoke(app, ["check", str(target), "--x", "1,2,3", "--backend", "torch"])
    assert r.exit_code == 0, r.stdout + r.stderr
    calls = log.read_text().split()
    assert calls and set(calls) == {"torch"}                 # called by PyTorch, with torch tensors


@needs_torch
def test_graph_on_the_torch_backend_is_pytorchs_graph(tmp_path):
    import torch
    target = tmp_path / "net.py"
    target.write_text("import torch\nimport torch.nn.functional as F\n\n"
                      "def f(x, w, b):\n    return torch.tanh(F.linear(x, w, b)).sum()\n")
    r = runner.invoke(app, ["graph", str(target), "--x", "randn(2,3)", "--w", "randn(4,3)", "--b", "randn(4)",
                            "--show-saved"])
    assert r.exit_code == 0, r.stderr
    x, w, b = torch.randn(2, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True), torch.randn(4, requires_grad=True)
    names = []
    node = torch.tanh(torch.nn.functional.linear(x, w, b)).sum().grad_fn
    while node is not None:               # PyTorch's own chain: Sum <- Tanh <- Addmm
        names.append(node.name())
        node = next((n for n, _ in node.next_functions if n is not None and "Accumulate" not in n.name()), None)
    assert names[:3] == ["SumBackward0", "TanhBackward0", "AddmmBackward0"]
    labels = [line.split('label="')[1].split('"')[0].split("\\n")[0] for line in r.stdout.splitlines()
              if 'label="' in line]
    for n in names:
        assert n in labels
    assert "mat1" in labels and "result" in labels         # saved tensors from _saved_mat1, _saved_result


@needs_torch
def test_a_helper_module_that_imports_torch_is_not_run_on_engine_tensors(tmp_path):
    """The target file does not say `import torch`, but the function it names comes from one
    that does: it runs on PyTorch (auto), or is refused (--backend engine); never a false pass."""
    (tmp_path / "helper_cube.py").write_text(WRONG)
    target = tmp_path / "uses_helper.py"
    target.write_text("from helper_cube import f\n")
    r = runner.invoke(app, ["check", str(target), "--x", "1,2"])
    assert r.exit_code == 1 and "FAIL" in r.stdout
    r = runner.invoke(app, ["check", str(target), "--x", "1,2", "--backend", "engine"])
    assert r.exit_code == 2 and "uses real PyTorch" in r.stderr


def test_the_torch_name_is_the_engines_only_while_the_target_runs(tmp_path):
    before = sys.modules.get("torch")
    target = tmp_path / "cube.py"
    target.write_text(RIGHT)
    assert runner.invoke(app, ["check", str(target), "--x", "1,2", "--backend", "engine"]).exit_code == 0
    assert sys.modules.get("torch") is before                      # nothing left shadowing a real torch


def test_a_name_the_engine_lacks_is_one_clear_error(tmp_path):
    target = tmp_path / "dev.py"
    target.write_text("import torch\ndevice = torch.not_a_thing\ndef f(x):\n    return x.sum()\n")
    r = runner.invoke(app, ["grad", str(target), "--x", "1", "--backend", "engine"])
    assert r.exit_code == 2 and "Traceback (most recent" not in r.stderr
    assert "the engine has no torch.not_a_thing (yet)" in r.stderr


def test_files_without_torch_and_expressions_are_unaffected(tmp_path):
    target = tmp_path / "plain.py"
    target.write_text("def f(x):\n    return (x * x).sum()\n")
    for backend in ("auto", "engine"):
        assert runner.invoke(app, ["check", str(target), "--x", "1,2", "--backend", backend]).exit_code == 0
        assert runner.invoke(app, ["check", "sum(x*x)", "--x", "1,2", "--backend", backend]).exit_code == 0
    r = runner.invoke(app, ["check", "sum(x*x)", "--x", "1,2", "--backend", "torch"])
    assert r.exit_code == 2 and "expressions run on the engine" in r.stderr
    r = runner.invoke(app, ["check", str(target), "--x", "1,2", "--backend", "torch"])
    assert r.exit_code == 2 and "does not import torch" in r.stderr
    r = runner.invoke(app, ["check", "sum(x*x)", "--x", "1,2", "--backend", "tensorflow"])
    assert r.exit_code == 2 and "--backend must be one of auto, engine, torch" in r.stderr


@pytest.mark.parametrize("source,expected", [
    ("import torch\n", True), ("import torch.nn as nn\n", True), ("from torch import nn\n", True),
    ("from torch.autograd import Function\n", True), ("import torchvision\n", False),
    ("import numpy as torch\n", False), ("# import torch\nx = 'import torch'\n", False),
    ("def f():\n    import torch\n", True),
])
def test_what_counts_as_importing_torch(source, expected):
    assert backends.imports_torch(source) is expected


MODULE_FILE = """import torch
import torch.nn as nn

net = nn.Linear(3, 2)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))

    def forward(self, x):
        return (self.body(x) ** 2).sum()


class NeedsArgs(nn.Module):
    def __init__(self, n):
        super().__init__()
"""


@pytest.mark.parametrize("backend", ["engine", pytest.param("torch", marks=needs_torch)])
def test_module_targets_check_their_parameters(tmp_path, backend):
    target = tmp_path / "mods.py"
    target.write_text(MODULE_FILE)
    # an instance: inputs are forward's argument and the parameters, by qualified name
    r = runner.invoke(app, ["grad", str(target), "--func", "net", "--input", "1,2,3", "--wrt", "weight,bias",
                            "--grad-output", "[1,1]", "--json", "--backend", backend])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["backend"] == backend
    assert doc["gradients"] == {"weight": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], "bias": [1.0, 1.0]}  # closed form
    assert list(doc["inputs"]) == ["input", "weight", "bias"]
    # a class made without arguments; its nested parameters are checked against finite differences
    r = runner.invoke(app, ["check", str(target), "--func", "Net", "--x", "randn(5,3)", "--json", "--backend", backend])
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["passed"], r.stderr
    assert set(doc["inputs"]) == {"x", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"}
    # a parameter given a value on the command line is used
    r = runner.invoke(app, ["grad", str(target), "--func", "net", "--input", "1,2,3", "--weight", "zeros(2,3)",
                            "--bias", "5,6", "--wrt", "input", "--grad-output", "[1,0]", "--json", "--backend", backend])
    doc = json.loads(r.stdout)
    assert doc["output"]["value"] == [5.0, 6.0] and doc["gradients"] == {"input": [0.0, 0.0, 0.0]}
    r = runner.invoke(app, ["check", str(target), "--func", "NeedsArgs", "--backend", backend])
    assert r.exit_code == 2 and "cannot be made without arguments" in r.stderr
