"""Graph export: golden DOT files compared exactly, each parsed by the real Graphviz `dot`,
determinism, a 100,000-node chain, and the --max-nodes cut.

Regenerate the golden files after an intended change with UPDATE_GOLDEN=1, then read the diff.
"""
import os
import pathlib
import shutil
import subprocess
import time

import pytest
from typer.testing import CliRunner

import engine
from cli.app import app
from engine import dotgraph

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = pathlib.Path(__file__).parent / "golden"
EX = ROOT / "examples"
DATA = pathlib.Path(__file__).parent / "data"

CASES = {
    "seed": ["sum(w*x)", "--w", "1,2", "--x", "3,4", "--wrt", "w"],
    "broadcast": ["sum(A * b + c)", "--A", "1,2,3;4,5,6", "--b", "1,0,-1", "--c", "0.5"],
    "shared": [str(DATA / "shared.py")],
    "custom_function": [str(EX / "my_square.py")],
    "show_values": ["sum(w*x)", "--w", "1,2", "--x", "3,4", "--show-values"],
    "show_grad": ["sum(w*x)", "--w", "1,2", "--x", "3,4", "--show-grad"],
    "retain_grad": ["sum(tanh(w*x))", "--w", "1,2", "--x", "3,4", "--show-grad", "--retain-grad"],
    "show_saved": ["sum(tanh(w*x))", "--w", "1,2", "--x", "3,4", "--show-saved"],
    "forward": ["sum(tanh(w*x))", "--w", "1,2", "--x", "3,4", "--forward"],
    "rankdir_lr": ["sum(w*x)", "--w", "1,2", "--x", "3,4", "--rankdir", "LR"],
    "mlp": [str(EX / "mlp.py")],
}


def _export(args, suffix=".dot", tmp=None):
    out = tmp / f"g{suffix}"
    r = CliRunner().invoke(app, ["graph", *args, "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    return out.read_text()


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_dot(name, tmp_path):
    text = _export(CASES[name], tmp=tmp_path)
    golden = GOLDEN / f"{name}.dot"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert _export(CASES[name], tmp=tmp_path) == text          # byte-identical on a second run


def test_golden_mermaid(tmp_path):
    text = _export(CASES["seed"], ".mmd", tmp_path)
    golden = GOLDEN / "seed.mmd"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed (.ci/run installs it)")
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_files_parse_with_real_graphviz(name):
    r = subprocess.run(["dot", "-Tsvg"], input=(GOLDEN / f"{name}.dot").read_bytes(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert b"<svg" in r.stdout


def test_seed_graph_structure():
    """Independent of the golden file: what the seed graph must hold."""
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    x = engine.tensor([3.0, 4.0])
    z = (w * x).sum()
    text = dotgraph.to_dot(z, {id(w): "w"})
    for part in ('label="output\\n() float64"', 'label="SumBackward0"', 'label="MulBackward0"',
                 'label="AccumulateGrad"', 'label="w\\n(2,) float64"', "fillcolor=lightblue",
                 "fillcolor=darkolivegreen1"):
        assert part in text
    # data-flow order: leaf -> AccumulateGrad -> MulBackward0 -> SumBackward0 -> output
    assert "n5 -> n4;" in text and "n4 -> n3;" in text and "n3 -> n2;" in text and "n2 -> n1;" in text


def test_shared_subexpression_is_one_node_with_three_uses(tmp_path):
    text = (GOLDEN / "shared.dot").read_text()
    tanh_id = next(line.split()[0] for line in text.splitlines() if 'label="TanhBackward0"' in line)
    assert text.count(f"  {tanh_id} -> ") == 3
    assert text.count('label="TanhBackward0"') == 1


def test_hundred_thousand_node_chain_exports_linearly():
    x = engine.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(50_000):
        y = y * 1.0001 + 0.0001
    t0 = time.perf_counter()
    text = dotgraph.to_dot(y, max_nodes=200_000)
    elapsed = time.perf_counter() - t0
    assert text.count("MulBackward0") == 50_000 and text.count("AddBackward0") == 50_000
    assert elapsed < 5.0, f"export took {elapsed:.1f}s"


def test_max_nodes_collapses_the_rest_with_a_note():
    x = engine.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100):
        y = y * 2.0
    text = dotgraph.to_dot(y, max_nodes=10)
    assert text.count("MulBackward0") == 10
    assert "91 more backward nodes not shown (raise --max-nodes to see them)" in text   # 90 Mul + AccumulateGrad
