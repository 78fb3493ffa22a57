"""The lesson's snippets (tests/seed/*.py, verbatim but for `import engine as torch`) print what
PyTorch prints. The expected text is the lesson's own comment; with torch installed, each
snippet also runs under real PyTorch and the two outputs must match exactly."""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEED = pathlib.Path(__file__).parent / "seed"

EXPECTED = {
    "s3_requires_grad.py": "tensor(11., grad_fn=<SumBackward0>)\n",
    "s4_backward.py": "tensor([3., 4.])\n",
    "s4_accumulate.py": ("tensor([3., 4.])\ntensor([6., 8.])\ntensor([0., 0.])\n"
                         "RuntimeError Trying to backward through the graph a second time (or direc\n"),
    "s5_no_grad.py": "False None\n",
    "s5_detach.py": "tensor([3., 8.]) True False None\ntensor([4., 9.], grad_fn=<MulBackward0>)\n",
    "s6_custom_function.py": "tensor(9., grad_fn=<MySquareBackward>) MySquareBackward\n",
}


def _run(path, module_dir=None, torch=False):
    code = path.read_text()
    if torch:
        code = code.replace("import engine as torch", "import torch")
    env_path = str(ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(ROOT), env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_snippet_prints_what_pytorch_prints(name):
    r = _run(SEED / name)
    assert r.returncode == 0, r.stderr
    assert r.stdout == EXPECTED[name]


def test_every_snippet_has_an_expectation():
    assert sorted(p.name for p in SEED.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_snippet_matches_real_pytorch(name):
    pytest.importorskip("torch")
    code = (SEED / name).read_text().replace("import engine as torch", "import torch")
    code = code.replace("torch.tensor(", "torch.tensor(dtype=torch.float64, data=")  # our default dtype
    ours = _run(SEED / name)
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout == theirs.stdout.replace(", dtype=torch.float64", "")
