"""`graph -o graph.html` in a real headless Chromium: the page loads with no network, a click on
a node fills the side panel with what that node is, the search box finds nodes, and a node
`check --dot` found wrong is red. Skipped, saying why, without Graphviz, Chromium (Debian's
chromium + chromium-driver) or selenium; .ci/run installs them."""
import shutil

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


def _browser():
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    if shutil.which("chromedriver") is None or shutil.which("chromium") is None:
        pytest.skip("Chromium and its driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium")
    from selenium.webdriver.chrome.service import Service
    try:
        return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    except Exception as e:  # noqa: BLE001 - a browser that does not start is a skip with the reason
        pytest.skip(f"Chromium did not start: {str(e).splitlines()[0]}")


def test_the_page_shows_a_clicked_node_and_finds_nodes(tmp_path):
    out = tmp_path / "graph.html"
    r = runner.invoke(app, ["graph", "sum(tanh(w*x))", "--w", "1,2", "--x", "3,4", "--show-values", "--show-grad",
                            "--show-saved", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    text = out.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text   # self-contained
    driver = _browser()
    try:
        from selenium.webdriver.common.by import By
        driver.get(out.as_uri())
        nodes = driver.find_elements(By.CSS_SELECTOR, "g.node")
        assert len(nodes) >= 8
        tanh = next(n for n in nodes if "TanhBackward0" in n.text)
        tanh.click()
        assert driver.find_element(By.ID, "node-title").text == "TanhBackward0"
        panel = driver.find_element(By.ID, "panel").text
        assert "saved for backward" in panel and "gradient flows to" in panel
        assert driver.find_element(By.ID, "node-rule").text == "forward: tanh\ngrad_input = grad * (1 - result^2)"
        mul = next(n for n in nodes if "MulBackward0" in n.text)
        mul.click()
        assert driver.find_element(By.ID, "node-rule").text == "forward: mul\ngrad_w = grad * x; grad_x = grad * w"
        saved = {a.text: a for a in driver.find_elements(By.CSS_SELECTOR, "#panel a[data-go]")}
        assert {"self", "other"} <= set(saved)                       # what MulBackward0 saved, as links
        saved["other"].click()
        assert driver.find_element(By.ID, "node-title").text == "other"
        driver.find_element(By.CSS_SELECTOR, "#panel a[data-go]").click()      # "this saved tensor is": x
        assert driver.find_element(By.ID, "node-title").text == "x"
        leaf = next(n for n in nodes if "value [1, 2]" in n.text)
        leaf.click()
        label = driver.find_element(By.ID, "node-label").text
        assert "value [1, 2]" in label and "grad [" in label                              # w's values and .grad
        box = driver.find_element(By.ID, "search")
        box.send_keys("Backward0")
        assert driver.find_element(By.ID, "count").text.startswith("3 matches")                   # Sum, Tanh, Mul
    finally:
        driver.quit()


def test_a_node_check_finds_wrong_is_red_on_the_page(tmp_path):
    f = tmp_path / "cube.py"
    f.write_text("import engine as torch\n\n\nclass Cube(torch.autograd.Function):\n    @staticmethod\n"
                 "    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x ** 3\n\n"
                 "    @staticmethod\n    def backward(ctx, g):\n        x, = ctx.saved_tensors\n"
                 "        return g * 3 * x ** 2 * 1.01\n\n\ndef f(x):\n    return Cube.apply(x.tanh()).sum()\n")
    out = tmp_path / "check.html"
    r = runner.invoke(app, ["check", str(f), "--x", "0.5,1", "--dot", str(out)])
    assert r.exit_code == 1
    driver = _browser()
    try:
        from selenium.webdriver.common.by import By
        driver.get(out.as_uri())
        cube = next(n for n in driver.find_elements(By.CSS_SELECTOR, "g.node") if "CubeBackward" in n.text)
        assert cube.find_element(By.CSS_SELECTOR, "polygon, path").get_attribute("fill") == "tomato"
        cube.click()
        assert "local check fails" in driver.find_element(By.ID, "panel").text
    finally:
        driver.quit()


def _view_box(driver):
    return driver.execute_script("const b = document.querySelector('#view svg').viewBox.baseVal;"
                                 "return [b.x, b.y, b.width, b.height];")


def _in_view(driver, node):
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(), v = document.getElementById('view').getBoundingClientRect();"
        "return r.width > 4 && r.left >= v.left && r.right <= v.right && r.top >= v.top && r.bottom <= v.bottom;",
        node)


def _height(driver, node):
    return driver.execute_script("return arguments[0].getBoundingClientRect().height", node)


def test_a_graph_of_10000_nodes_is_searched_and_walked(tmp_path):
    f = tmp_path / "chain.py"
    f.write_text("import engine as torch\n\n\ndef f(x):\n    for k in range(5000):\n"
                 "        x = torch.sin(x) * 1.0001\n    return x.sum()\n")
    out = tmp_path / "big.html"
    r = runner.invoke(app, ["graph", str(f), "--x", "1,2", "--max-nodes", "20000", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    driver = _browser()
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        driver.set_window_size(1200, 800)
        driver.get(out.as_uri())
        assert driver.execute_script("return document.querySelectorAll('g.node').length") >= 10000
        # the first view is the chain's top at a readable scale, not all 10,000 nodes at a speck each
        whole = driver.execute_script("const s = document.querySelector('#view svg');"
                                      "return [0, 0, parseFloat(s.getAttribute('width')), parseFloat(s.getAttribute('height'))];")
        first = _view_box(driver)
        assert first[3] < whole[3] / 100
        top = driver.execute_script("return Array.from(document.querySelectorAll('g.node'))"
                                    ".find(g => g.querySelector('text').textContent === 'x')")      # the leaf, on top
        assert _in_view(driver, top) and _height(driver, top) >= 20
        box = driver.find_element(By.ID, "search")
        box.send_keys("SinBackward0")
        assert driver.find_element(By.ID, "count").text.startswith("5000 matches")
        box.send_keys(Keys.ENTER)
        assert driver.find_element(By.ID, "count").text.startswith("1 of 5000")
        assert driver.find_element(By.ID, "node-title").text == "SinBackward0"
        picked = driver.find_element(By.CSS_SELECTOR, "g.node.picked")
        assert _in_view(driver, picked) and _height(driver, picked) >= 20              # zoomed in on it: it reads
        # the panel's link walks the chain: to the MulBackward0 the sine's gradient flows from
        driver.find_element(By.CSS_SELECTOR, "#panel a[data-go]").click()
        nxt = driver.find_element(By.CSS_SELECTOR, "g.node.picked")
        assert nxt != picked and _in_view(driver, nxt)
        before = _view_box(driver)
        view = driver.find_element(By.ID, "view")
        from selenium.webdriver.common.action_chains import ActionChains
        ActionChains(driver).move_to_element_with_offset(view, -200, 0).click_and_hold().move_by_offset(100, 50) \
            .release().perform()
        after = _view_box(driver)
        assert after[0] < before[0] and after[1] < before[1] and after[2] == before[2]   # dragged, same zoom
        driver.execute_script("arguments[0].dispatchEvent(new WheelEvent('wheel', {deltaY: 100, clientX: 300,"
                              "clientY: 300, bubbles: true, cancelable: true}))", view)
        assert _view_box(driver)[2] > after[2]                                             # zoomed out
        driver.find_element(By.ID, "fit").click()
        assert [round(v) for v in _view_box(driver)] == [round(v) for v in whole]
    finally:
        driver.quit()
