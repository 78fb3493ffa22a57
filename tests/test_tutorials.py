"""Tutorial-style PyTorch files (tests/data/tutorials, written for these tests in the style of
PyTorch's autograd tutorials, its "Extending PyTorch" examples and the classic two-layer
network) run with `torch` mapped to the engine and print what PyTorch prints (float64 aside:
the engine's default dtype, so PyTorch's ", dtype=torch.float64" suffix is dropped, and object
addresses). Their custom Functions pass `autograd check` and a broken copy fails it."""
import io
import pathlib
import re
import runpy
import subprocess
import sys
from contextlib import redirect_stdout

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.backends import torch_on_engine

DIR = pathlib.Path(__file__).parent / "data" / "tutorials"
FILES = sorted(p.name for p in DIR.glob("*.py"))


def _normalise(text):
    text = text.replace(", dtype=torch.float64", "")
    return re.sub(r" at 0x[0-9a-f]+", " at 0x", text)


def _on_engine(path):
    buf = io.StringIO()
    with torch_on_engine(True), redirect_stdout(buf):
        runpy.run_path(str(path), run_name="__main__")
    return buf.getvalue()


@pytest.mark.parametrize("name", FILES)
def test_tutorial_runs_on_the_engine_and_prints_what_pytorch_prints(name):
    ours = _on_engine(DIR / name)
    assert ours.strip()
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.skip("PyTorch is not installed (.ci/run installs it): ran on the engine only")
    r = subprocess.run([sys.executable, str(DIR / name)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _normalise(ours) == _normalise(r.stdout)


def test_the_custom_function_passes_check_and_a_broken_copy_fails(tmp_path):
    runner = CliRunner()
    src = (DIR / "legendre_function.py").read_text()
    fn = src[:src.index("\n\n\nx = torch.linspace")] + "\n"       # the Function, not the script
    good = tmp_path / "legendre.py"
    good.write_text(fn)
    r = runner.invoke(app, ["check", str(good), "--func", "LegendreP3", "--x", "0.3,-0.7,0.9", "--backend", "engine"])
    assert r.exit_code == 0, r.stdout + r.stderr
    bad = tmp_path / "legendre_bad.py"
    bad.write_text(fn.replace("1.5 * (5 * x ** 2 - 1)", "1.5 * (5 * x ** 2 - 1.01)"))
    r = runner.invoke(app, ["check", str(bad), "--func", "LegendreP3", "--x", "0.3,-0.7,0.9", "--backend", "engine"])
    assert r.exit_code == 1 and "LegendreP3Backward" in r.stdout
