"""The graph as a lesson draws it (issue 23): inputs that do not require grad are drawn (the
lesson's x in w*x), saved tensors carry PyTorch's names (addmm's mat1/mat2), the legend lists only
what the drawing has, values keep nodes narrow, --show-grad on a non-scalar output says what it
seeded (or takes --grad-output), and the page in Chromium at 1400x900 draws its text at a
readable size with no empty label box. On both backends where a backend is involved."""
import json
import re
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()
BOTH = ["engine", "torch"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def node_ids(dot, pattern):
    return [m.group(1) for m in re.finditer(r"^\s*(n\d+) \[label=\"" + pattern, dot, re.M)]


def target(tmp_path, backend, body):
    if backend == "torch":
        pytest.importorskip("torch")
    path = tmp_path / "t.py"
    path.write_text("import torch\n" + body)
    return [path, "--backend", backend]


@pytest.mark.parametrize("backend", BOTH)
def test_an_input_without_grad_is_drawn_with_the_node_that_saved_it(tmp_path, backend):
    args = target(tmp_path, backend, "def f(w, x):\n    return (w * x).sum() + (w + x).sum()\n")
    r = invoke("graph", *args, "--w", "1,2", "--x", "3,4", "--wrt", "w")
    assert r.exit_code == 0, r.stderr
    dot = r.stdout
    (x,) = node_ids(dot, r"x\\n\(2,\) float64\\nrequires_grad=False")
    (mul,) = node_ids(dot, "MulBackward0")
    assert f"{x} -> {mul} [style=dotted];" in dot                 # mul saved x (for w's gradient)
    assert len(re.findall(rf"^\s*{x} ->", dot, re.M)) == 1          # add saved nothing: no edge to it
    assert 'legend_constant [label="input, no grad"' in dot
    r = invoke("graph", *args, "--w", "1,2", "--x", "3,4")         # both require grad: no such node
    assert "requires_grad=False" not in r.stdout and "legend_constant" not in r.stdout


def test_an_input_no_node_saved_says_so():
    r = invoke("graph", "sum(w + x)", "--w", "1,2", "--x", "3,4", "--wrt", "w")
    assert "x\\n(2,) float64\\nrequires_grad=False; no backward node uses it" in r.stdout


def test_the_legend_lists_only_what_the_drawing_has():
    plain = invoke("graph", "sum(w*x)", "--w", "1,2", "--x", "3,4").stdout
    saved = invoke("graph", "sum(w*x)", "--w", "1,2", "--x", "3,4", "--show-saved").stdout
    assert "saved for backward" not in plain and "legend_saved" in saved
    assert "legend_fail" not in plain


def test_saved_tensors_carry_pytorchs_names():
    """What each node saved, by the name PyTorch gives it (grad_fn._saved_<name>)."""
    torch = pytest.importorskip("torch")
    import engine
    cases = {"addmm": lambda m, c, a, b, v: m.addmm(c, a, b), "mm": lambda m, c, a, b, v: a @ b,
             "mv": lambda m, c, a, b, v: a @ v, "dot": lambda m, c, a, b, v: v @ v,
             "mul": lambda m, c, a, b, v: a * a, "mse": lambda m, c, a, b, v: m.nn.functional.mse_loss(c, c * 2)}
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in ((2,), (2, 3), (3, 2), (3,))]
    for name, fn in cases.items():
        got = {}
        for lib in (engine, torch):
            c, a, b, v = (lib.tensor(x, requires_grad=True) for x in arrays)
            node = fn(lib, c, a, b, v).grad_fn
            if lib is torch:
                got["torch"] = {k[7:] for k in dir(node) if k.startswith("_saved_")
                                and isinstance(getattr(node, k), torch.Tensor)}
            else:
                got["engine"] = set(node._saved_values)
        assert got["engine"] == got["torch"], (name, got)
    r = invoke("graph", "sum(addmm(b, A, B))", "--b", "1,2", "--A", "randn(2,3)", "--B", "randn(3,2)", "--show-saved")
    assert 'label="mat1\\n(2, 3) float64"' in r.stdout and 'label="mat2\\n(3, 2) float64"' in r.stdout
    assert "third" not in r.stdout and "other" not in r.stdout


def test_values_keep_a_node_narrow():
    r = invoke("graph", "sum(W @ x)", "--W", "randn(4,5)", "--x", "randn(5)", "--show-values")
    labels = re.findall(r'label="([^"]*)"', r.stdout)
    lines = [line for lab in labels for line in lab.split("\\n")]
    assert max(len(line) for line in lines) <= 40, max(lines, key=len)
    W = next(lab for lab in labels if lab.startswith("W\\n"))
    assert W.split("\\n")[2:] == ["value", W.split("\\n")[3], W.split("\\n")[4], W.split("\\n")[5], "..."]
    assert W.split("\\n")[3].startswith("[") and W.split("\\n")[3].endswith(", ...]")


@pytest.mark.parametrize("backend", BOTH)
def test_show_grad_on_a_non_scalar_output_says_so_or_takes_grad_output(tmp_path, backend):
    args = target(tmp_path, backend, "def f(w, x):\n    return w * x\n")
    r = invoke("graph", *args, "--w", "1,2", "--x", "3,4", "--show-grad")
    assert r.exit_code == 0 and "not a scalar (shape (2,)); --show-grad seeded its backward with ones" in r.stderr
    assert 'w\\n(2,) float64\\ngrad [3, 4]' in r.stdout                 # d sum(w*x)/dw = x
    r = invoke("graph", *args, "--w", "1,2", "--x", "3,4", "--show-grad", "--grad-output", "1,-2")
    assert r.exit_code == 0 and "not a scalar" not in r.stderr
    assert 'w\\n(2,) float64\\ngrad [3, -8]' in r.stdout                # v * x with v = (1, -2)
    r = invoke("graph", *args, "--w", "1,2", "--x", "3,4", "--show-grad", "--grad-output", "1,2,3")
    assert r.exit_code == 2 and "--grad-output has shape (3,) but the output has shape (2,)" in r.stderr
    r = invoke("graph", *args, "--w", "1,2", "--x", "3,4", "--grad-output", "1,2")
    assert r.exit_code == 2 and "add --show-grad" in r.stderr
    r = invoke("graph", *args[:1], "--backend", backend, "--w", "1,2", "--x", "3,4", "--show-grad", "--func", "f")
    assert r.exit_code == 0


def _browser():
    from tests.test_html_graph import _browser as browser
    d = browser()
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",          # the page itself 1400x900
                      {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    return d


def _lines(node):
    return node.text.split("\n")


README_PAGES = [
    ["sum(w*x)", "--w", "1,2", "--x", "3,4", "--wrt", "w", "--show-values"],
    ["sum(tanh(W2 @ tanh(W1 @ x + b1) + b2))", "--W1", "randn(4,3)", "--x", "randn(3)", "--b1", "randn(4)",
     "--W2", "randn(2,4)", "--b2", "randn(2)", "--show-values", "--show-grad"],
    ["sum(tanh(w*x))", "--w", "1,2", "--x", "3,4", "--show-values", "--show-grad", "--show-saved"],
    ["sum(" + "tanh(" * 12 + "x * 0.5" + ")" * 13, "--x", "randn(30)", "--show-values"],      # taller than the view
]


def test_the_page_draws_readable_text_and_the_input_without_grad(tmp_path):
    """In Chromium at 1400x900 (the first view, before any zoom): every label of the drawing at
    12 px or more -- --show-values once shrank the whole drawing to ~6 px -- and x, which needs no
    gradient, drawn. A node without a label shows no empty box in the panel."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    pages = []
    for k, argv in enumerate(README_PAGES):
        out = tmp_path / f"g{k}.html"
        r = invoke("graph", *argv, "-o", out)
        assert r.exit_code == 0, r.stderr
        pages.append(out)
    driver = _browser()
    try:
        from selenium.webdriver.common.by import By
        for k, out in enumerate(pages):
            driver.get(out.as_uri())
            sizes = driver.execute_script(
                "return Array.from(document.querySelectorAll('#view svg g.node text, #view svg g.cluster text'))"
                ".map(t => t.getBoundingClientRect().height)")
            assert sizes and min(sizes) >= 12, (README_PAGES[k][0], min(sizes))
            assert max(sizes) <= 30, (README_PAGES[k][0], max(sizes))        # a tiny graph is not blown up
            assert driver.execute_script("return [innerWidth, innerHeight]") == [1400, 900]
            if k == 0:
                texts = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#view svg g.node text")]
                assert "x" in texts and "requires_grad=False" in texts, texts
                node = next(n for n in driver.find_elements(By.CSS_SELECTOR, "g.node")
                            if "AccumulateGrad" in _lines(n)[:2])
                node.click()
                assert driver.find_element(By.ID, "node-title").text == "AccumulateGrad"
                assert not driver.find_elements(By.ID, "node-label")        # nothing to show: no empty box
                node = next(n for n in driver.find_elements(By.CSS_SELECTOR, "g.node") if "x" in _lines(n)[:2])
                node.click()
                panel = driver.find_element(By.ID, "panel").text
                assert "input that does not require grad" in panel and "saved by" in panel
                driver.save_screenshot(str(tmp_path / "first.png"))
    finally:
        driver.quit()


@pytest.mark.parametrize("name", ["a&amp;b", "p&lt;q&gt;", "&#38;", "x & y", "&amp;amp;"])
def test_a_name_with_an_entity_is_drawn_as_written(name):
    """Graphviz decodes entities in a label: a leaf named "a&amp;b" was drawn "a&b" (red team C7)."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    import subprocess
    import xml.etree.ElementTree as ET

    import engine
    from engine import dotgraph
    w = engine.tensor([1.0, 2.0], requires_grad=True)
    dot = dotgraph.to_dot((w * 2).sum(), {id(w): name})
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True).stdout
    texts = [t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert name in texts, texts


@pytest.mark.parametrize("backend", BOTH)
def test_the_page_gives_each_node_its_rule_on_both_backends(tmp_path, backend):
    """The page's panel reads a node's rule from the registry entry of its op; a PyTorch node from
    the entry with the same node name (it had none on the torch backend)."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    from cli.htmlpage import script_json  # noqa: F401 - the page's data is JSON in a script
    args = target(tmp_path, backend, "def f(w, x):\n    return torch.tanh(w * x).sum()\n")
    out = tmp_path / "g.html"
    r = invoke("graph", *args, "--w", "1,2", "--x", "3,4", "-o", out)
    assert r.exit_code == 0, r.stderr
    text = out.read_text()
    info = json.loads(text[text.index("const INFO = ") + len("const INFO = "):text.index(";\nconst svg")])
    rules = {d["title"]: d["rule"] for d in info.values() if d["rule"]}
    assert rules["TanhBackward0"] == "forward: tanh\ngrad_input = grad * (1 - result^2)", rules
    assert rules["MulBackward0"] == "forward: mul\ngrad_w = grad * x; grad_x = grad * w", rules
