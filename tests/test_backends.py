"""The false pass is gone: a .py file that says `import torch` and has a wrong backward never
gets "passed", with or without PyTorch installed, whatever --backend says.

It used to: with PyTorch installed, real torch.autograd.Function.apply received engine tensors,
ran forward as plain engine ops and never called the wrong backward. Now a target runs on one
backend: on the engine's PyTorch API (torch mapped to the engine while the target runs), or
not at all with a clear error where it cannot run correctly (checking on real PyTorch is not
built yet)."""
import json
import pathlib
import sys

import pytest
from typer.testing import CliRunner

from cli import backends
from cli.app import app

runner = CliRunner()

# the project's own wrong-backward example (1 % off), as the torch file a user would have
EXAMPLE = (pathlib.Path(__file__).resolve().parents[1] / "examples" / "wrong_backward.py").read_text()
assert "import engine as torch\n" in EXAMPLE
WRONG = EXAMPLE.replace("import engine as torch\n", "import torch\n") + \
    "\n\ndef f(x):\n    return Cube.apply(x).sum()\n"
RIGHT = WRONG.replace("g * 3 * x ** 2 * 1.01", "g * 3 * x ** 2")
assert RIGHT != WRONG


@pytest.fixture(params=[True, False], ids=["torch_installed", "torch_absent"])
def installed(request, monkeypatch):
    monkeypatch.setattr(backends, "torch_installed", lambda: request.param)
    return request.param


@pytest.mark.parametrize("backend", ["auto", "engine", "torch"])
@pytest.mark.parametrize("command", ["check", "grad --check"])
def test_a_wrong_backward_in_a_torch_file_never_passes(tmp_path, installed, backend, command):
    target = tmp_path / "cube.py"
    target.write_text(WRONG)
    argv = command.split() + [str(target), "--x", "1,2", "--backend", backend]
    r = runner.invoke(app, argv)
    assert "passed" not in r.stdout.replace("FAILED", "").lower() or r.exit_code != 0
    assert r.exit_code in (1, 2), (r.exit_code, r.stdout, r.stderr)
    ran_on_engine = backend == "engine" or (backend == "auto" and not installed)
    if ran_on_engine:
        assert r.exit_code == 1 and "FAIL" in r.stdout            # the user's backward was called
        assert "CubeBackward" in r.stdout
    else:
        assert r.exit_code == 2 and "--backend engine" in r.stderr


def test_a_right_backward_in_a_torch_file_passes_on_the_engine(tmp_path):
    target = tmp_path / "cube.py"
    target.write_text(RIGHT)
    r = runner.invoke(app, ["check", str(target), "--x", "1,2", "--backend", "engine", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["passed"] is True
    doc = json.loads(runner.invoke(app, ["grad", str(target), "--x", "1,2", "--backend", "engine", "--json"]).stdout)
    assert doc["gradients"] == {"x": [3.0, 12.0]}                  # 3 x^2


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
    assert r.exit_code == 2 and "not built yet" in r.stderr
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
