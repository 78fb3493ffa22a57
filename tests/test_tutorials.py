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


_NUMBER = re.compile(r"-?\d+\.\d+(?:e[+-]?\d+)?")


def _same_print(ours, theirs):
    """The same text, numbers equal to the precision printed: the engine computes in float64 where
    PyTorch's tutorial runs in float32, so a printed 0.4736 may be PyTorch's 0.4737 (one unit in
    the last printed place, and no more, is allowed)."""
    a, b = _normalise(ours), _normalise(theirs)
    assert _NUMBER.sub("#", a) == _NUMBER.sub("#", b)            # all the words, shapes and layout
    for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)):
        mantissa = y.split("e")[0]
        unit = 10.0 ** -len(mantissa.split(".")[1]) * (10.0 ** int(y.split("e")[1]) if "e" in y else 1.0)
        assert abs(float(x) - float(y)) <= 1.01 * unit, f"printed {x} where PyTorch prints {y}"


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
    _same_print(ours, r.stdout)


def test_printed_numbers_are_compared_to_their_last_digit_and_no_further():
    _same_print("tensor([0.4736, 2.])", "tensor([0.4737, 2.])")
    _same_print("1.5e-03", "1.6e-03")
    for ours, theirs in [("tensor([0.4735])", "tensor([0.4737])"), ("1.5e-03", "1.7e-03"),
                         ("tensor([0.4736])", "Tensor([0.4736])"), ("0.1 0.2", "0.1")]:
        with pytest.raises(AssertionError):
            _same_print(ours, theirs)


# (file, where its script part starts, Function, inputs, the text a broken copy changes, into what)
CUSTOM = [
    ("legendre_function.py", "\n\n\nx = torch.linspace", "LegendreP3", ["--x", "0.3,-0.7,0.9"],
     "1.5 * (5 * x ** 2 - 1)", "1.5 * (5 * x ** 2 - 1.01)"),
    ("setup_context_functions.py", "\n\n\nx = torch.tensor", "LinearFn",
     ["--input", "randn(4,3)", "--weight", "randn(2,3)", "--bias", "randn(2)"],
     "grad_output.t().mm(input)", "grad_output.t().mm(input) * 1.01"),
    ("setup_context_functions.py", "\n\n\nx = torch.tensor", "CubeWithSlope", ["--x", "0.5,-2"],
     "grad_out * slope + grad_slope * 6 * x", "grad_out * slope + grad_slope * 6.1 * x"),
]


@pytest.mark.parametrize("backend", ["engine", "torch"])
@pytest.mark.parametrize("name,cut,func,values,right,wrong", CUSTOM, ids=[c[2] for c in CUSTOM])
def test_custom_functions_pass_check_and_broken_copies_fail(tmp_path, backend, name, cut, func, values, right, wrong):
    """On the engine's PyTorch API and on real PyTorch: the tutorial's Function passes
    `autograd check`, a copy with its backward broken fails it and is named."""
    if backend == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    runner = CliRunner()
    src = (DIR / name).read_text()
    fn = src[:src.index(cut)] + "\n"       # the Functions, not the script
    assert right in fn
    good = tmp_path / "good.py"
    good.write_text(fn)
    r = runner.invoke(app, ["check", str(good), "--func", func, *values, "--backend", backend])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert f"backend: {'PyTorch' if backend == 'torch' else 'engine'}" in r.stdout
    bad = tmp_path / "bad.py"
    bad.write_text(fn.replace(right, wrong))
    r = runner.invoke(app, ["check", str(bad), "--func", func, *values, "--backend", backend])
    assert r.exit_code == 1 and f"{func}Backward" in r.stdout, r.stdout + r.stderr
