"""Hostile names in every field of every graph output: the page (graph -o .html, check --dot .html)
in a real headless Chromium, and the DOT and Mermaid texts. A name from the user's code -- a
Function class, a parameter, a variable, the folder the target lives in -- is only ever shown as
text: nothing in it runs, ends the page's script, or splices data into the markup.

The payloads are the ones that broke the page: the old substitution marker `__INFO__` (the JSON
was spliced into the SVG wherever a name held it), a tag with an event handler, `<!--<script>`
(which stopped the page's script), quotes of both kinds, `&`, and U+2028."""
import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.htmlpage import script_json
from engine.dotgraph import mermaid_text

runner = CliRunner()

PAYLOAD = "__INFO__<img src=x onerror=document['title']='PWNED'><!--<script>\u2028\"'&"
# folder names cannot hold '/', and the payload needs none
FOLDER = "d<img src=x onerror=document['title']='PWNED'>__INFO__"

TARGET = '''import {lib} as torch

H = {payload!r}


def _fwd(ctx, x):
    ctx.save_for_backward(x)
    return x * x


def _bwd(ctx, g):
    x, = ctx.saved_tensors
    return 2 * g * x{bug}


Sq = type("Sq" + H, (torch.autograd.Function,), {{"forward": staticmethod(_fwd), "backward": staticmethod(_bwd)}})


class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_parameter("w" + H, torch.nn.Parameter(torch.ones(2, dtype=torch.float64)))

    def forward(self, a__INFO__b):
        return Sq.apply(a__INFO__b * getattr(self, "w" + H)).sum()
'''


def _target(tmp_path, lib="engine", bug=""):
    folder = tmp_path / FOLDER
    folder.mkdir(exist_ok=True)
    path = folder / f"t_{lib}{'_bug' if bug else ''}.py"
    path.write_text(TARGET.format(lib=lib, payload=PAYLOAD, bug=bug))
    return path


def _page(tmp_path, argv):
    out = tmp_path / FOLDER / "p.html"
    r = runner.invoke(app, argv + ["-o" if argv[0] == "graph" else "--dot", str(out)])
    assert r.exit_code in (0, 1), r.stderr + r.stdout
    return out


def _scripts(text):
    return re.findall(r"<script>(.*?)</script>", text, flags=re.S)


@pytest.mark.parametrize("lib", ["engine", "torch"])
def test_the_page_keeps_every_hostile_name_out_of_its_markup_and_script(tmp_path, lib):
    if lib == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    f = _target(tmp_path, lib)
    text = _page(tmp_path, ["graph", str(f), "--func", "M", "--a__INFO__b", "1,2", "--show-values",
                            "--show-saved", "--show-grad", "--backend", lib]).read_text()
    scripts = _scripts(text)
    assert len(scripts) == 1                                   # one script, the page's own, whole
    info = scripts[0].split("const INFO = ", 1)[1].split(";\nconst svg", 1)[0]
    assert not set(info) & set("<>&\u2028\u2029")              # the data can neither end nor change the script
    data = json.loads(info)
    titles = {d["title"] for d in data.values()}
    assert f"Sq{PAYLOAD}Backward" in titles                    # ... and the browser reads the names unchanged
    assert any(t.endswith(f"w{PAYLOAD}") for t in titles) and "a__INFO__b" in titles
    svg = text[text.index("<svg"):text.index("</svg>")]
    assert "<img" not in svg and "<script" not in svg and "<!--<" not in svg   # names are text in the SVG
    assert text.count("__INFO__") == svg.count("__INFO__") + info.count("__INFO__")


def test_json_in_a_script_escapes_what_html_parses_and_reads_back_the_same():
    value = {"a": "</script><!--<script>&amp;\u2028\u2029>", "b": ["x"]}
    text = script_json(value)
    assert not set(text) & set("<>&\u2028\u2029")
    assert json.loads(text) == value


def test_mermaid_labels_are_entity_codes_where_they_could_be_markup():
    text = mermaid_text(f"Sq{PAYLOAD}\n(2,) float64")
    assert not set(text.replace("<br/>", "")) & set("<>\"'&`\u2028\u2029")
    assert text.startswith("Sq__INFO__#60;img src=x") and text.endswith("<br/>(2,) float64")
    assert "#35;" in mermaid_text("a#b") and "#quot;" not in text          # '#' itself is a code: no entity sneaks in


@pytest.mark.parametrize("lib", ["engine", "torch"])
def test_dot_and_mermaid_outputs_hold_hostile_names_as_text(tmp_path, lib):
    if lib == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    f = _target(tmp_path, lib)
    dot = runner.invoke(app, ["graph", str(f), "--func", "M", "--a__INFO__b", "1,2", "--backend", lib])
    assert dot.exit_code == 0, dot.stderr
    for line in dot.stdout.splitlines():
        if re.match(r"  n\d+ \[label=", line):                        # every quote inside a label is escaped: one string
            body = line.split('label="', 1)[1]
            assert re.fullmatch(r'(?:[^"\\]|\\.)*", .*', body), line
    if shutil.which("dot"):
        import subprocess
        r = subprocess.run(["dot", "-Tsvg"], input=dot.stdout.encode(), capture_output=True)
        assert r.returncode == 0 and b"<img" not in r.stdout
    mmd = tmp_path / "g.mmd"
    r = runner.invoke(app, ["graph", str(f), "--func", "M", "--a__INFO__b", "1,2", "--backend", lib, "-o", str(mmd)])
    assert r.exit_code == 0, r.stderr
    for line in mmd.read_text().splitlines():
        m = re.fullmatch(r'  n\d+\["(.*)"\](?::::\w+)?', line)
        if m:
            assert not set(m.group(1).replace("<br/>", "")) & set("<>\"'&`\u2028\u2029"), line


def _browser():
    from tests.test_html_graph import _browser as start
    return start()


@pytest.mark.parametrize("command", ["graph", "check"])
@pytest.mark.parametrize("lib", ["engine", "torch"])
def test_no_name_runs_in_chromium_and_the_page_still_works(tmp_path, lib, command):
    if lib == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (.ci/run installs it)")
    if command == "graph":
        f = _target(tmp_path, lib)
        argv = ["graph", str(f), "--func", "M", "--a__INFO__b", "1,2", "--show-values", "--show-saved",
                "--show-grad", "--backend", lib]
    else:                                                            # a wrong backward: its node is painted
        f = _target(tmp_path, lib, bug=" * 1.01")
        argv = ["check", str(f), "--func", "M", "--a__INFO__b", "1,2", "--backend", lib]
    out = _page(tmp_path, argv)
    driver = _browser()
    try:
        from selenium.webdriver.common.by import By
        driver.get(out.as_uri())
        assert driver.title == "autograd graph"
        driver.find_element(By.ID, "fit").click()          # every node in view, to be clicked
        nodes = driver.find_elements(By.CSS_SELECTOR, "g.node")
        seen = set()
        for n in nodes:                                    # every node's panel, its links and the search
            n.click()
            seen.add(driver.find_element(By.ID, "node-title").text)
            assert driver.title == "autograd graph"
        assert driver.execute_script("return document.querySelectorAll('#panel img, #view img, script').length") == 1
        wanted = f"Sq{PAYLOAD}Backward".replace("\u2028", "").replace("\n", "")
        assert any(t.replace("\u2028", "").replace("\n", "").replace(" ", "") == wanted.replace(" ", "")
                   for t in seen), seen
        if command == "check":                             # the wrong node is painted, its name intact
            assert any(n.find_element(By.CSS_SELECTOR, "polygon, path").get_attribute("fill") == "tomato"
                       and "PWNED" in n.text for n in nodes)
        box = driver.find_element(By.ID, "search")
        box.send_keys("__INFO__")
        assert re.match(r"\d+ match", driver.find_element(By.ID, "count").text)      # the script runs
        assert driver.title == "autograd graph"
    finally:
        driver.quit()
