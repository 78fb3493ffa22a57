"""`graph -o graph.html`: one self-contained page (no network, no CDN) holding the graph as
Graphviz drew it (SVG), with pan and zoom, a search box, and a side panel that shows, for the
node under the pointer or clicked, what its label says (op, shape, dtype, values, gradient), the
tensors it saved and the nodes it feeds and is fed by. Nodes painted red (check --dot) stay red.

The page is built by construction, in one place (`page`): the template is cut into its fixed
pieces first, and each value is then put between them escaped for the context it lands in --
Graphviz's SVG as markup (Graphviz escapes every label as XML text), the node data as JSON made
safe inside <script> (`script_json`). Nothing is substituted into the page after a value is in
it, so a name that looks like a marker, a tag or a comment is only ever text.
"""
import json
import re

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>autograd graph</title>
<style>
body{margin:0;font:13px Helvetica,Arial,sans-serif;display:flex;height:100vh}
#view{flex:1;overflow:hidden;position:relative;background:#fafafa;cursor:grab}
#view svg{width:100%;height:100%}
#side{width:320px;border-left:1px solid #ccc;padding:10px;overflow:auto;background:#fff}
#search{width:100%;box-sizing:border-box;padding:4px;margin-bottom:8px}
#panel h3{margin:4px 0}#panel pre{white-space:pre-wrap;background:#f4f4f4;padding:6px}
.hit polygon,.hit path,.hit ellipse{stroke:#d00!important;stroke-width:3px!important}
.picked polygon,.picked path{stroke:#00f!important;stroke-width:3px!important}
</style></head><body>
<div id="view">\x00SVG\x00</div>
<div id="side"><input id="search" placeholder="search nodes (name, op, value)">
<button id="fit" title="show the whole graph (or double-click it)">Whole graph</button>
<div id="count"></div><div id="panel"><p>Point at or click a node.</p></div>
<p style="color:#777">Drag to pan, wheel to zoom, double-click for the whole graph.
Enter in the search box goes to the next match; a node's links go to that node.</p></div>
<script>
const INFO = \x00INFO\x00;
const svg = document.querySelector("#view svg");
const nodes = Array.from(svg.querySelectorAll("g.node"));
const byId = {};
nodes.forEach(g => { const t = g.querySelector("title"); if (t) { byId[t.textContent] = g; g.dataset.id = t.textContent; } });
function show(id) {
  const d = INFO[id]; if (!d) return;
  const list = (title, ids) => ids.length ? "<h4>" + title + "</h4><ul>" + ids.map(i =>
      "<li><a href='#' data-go='" + esc(i) + "'>" + esc(INFO[i] ? INFO[i].title : i) + "</a></li>").join("") + "</ul>" : "";
  document.getElementById("panel").innerHTML = "<h3 id='node-title'>" + esc(d.title) + "</h3><p>" + esc(d.kind) +
      "</p>" + (d.label ? "<pre id='node-label'>" + esc(d.label) + "</pre>" : "") + (d.note ? "<p id='node-note'>" + esc(d.note) + "</p>" : "") +
      (d.rule ? "<h4>op and rule</h4><pre id='node-rule'>" + esc(d.rule) + "</pre>" : "") +
      list("saved for backward", d.saved) + list("this saved tensor is", d.is) + list("saved by", d.by) + list("gradient flows from", d.from) + list("gradient flows to", d.to);
  document.querySelectorAll("#panel a[data-go]").forEach(a => a.onclick = e => { e.preventDefault(); pick(a.dataset.go, true); });
}
function esc(s) { return String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c])); }
let picked = null;
function pick(id, centre) { if (picked) picked.classList.remove("picked"); picked = byId[id];
  if (picked) { picked.classList.add("picked"); if (centre) focus(picked); } show(id); }
nodes.forEach(g => { g.addEventListener("mouseenter", () => { if (!picked) show(g.dataset.id); });
                     g.addEventListener("click", e => { e.stopPropagation(); pick(g.dataset.id); }); });
let hits = [], at = -1;
const box = document.getElementById("search");
box.addEventListener("input", e => {
  const q = e.target.value.toLowerCase(); hits = []; at = -1;
  nodes.forEach(g => { const d = INFO[g.dataset.id]; const hit = q && d && (d.title + " " + d.label).toLowerCase().includes(q);
                       g.classList.toggle("hit", !!hit); if (hit) hits.push(g); });
  document.getElementById("count").textContent = q ? hits.length + " match" + (hits.length === 1 ? "" : "es") +
      (hits.length ? " (Enter: next)" : "") : "";
});
box.addEventListener("keydown", e => { if (e.key !== "Enter" || !hits.length) return;
  at = (at + (e.shiftKey ? hits.length - 1 : 1)) % hits.length; pick(hits[at].dataset.id, true);
  document.getElementById("count").textContent = (at + 1) + " of " + hits.length + " (Enter: next, Shift+Enter: back)"; });
const vb = svg.viewBox.baseVal; const full = [vb.x, vb.y, vb.width, vb.height]; let drag = null;
const view = document.getElementById("view");
function toUser(x, y) { const p = svg.createSVGPoint(); p.x = x; p.y = y; return p.matrixTransform(svg.getScreenCTM().inverse()); }
function focus(g) {        // centre the view on g, zoomed so that it reads (never beyond the whole graph)
  const r = g.getBoundingClientRect(); const a = toUser(r.left, r.top), b = toUser(r.right, r.bottom);
  const v = view.getBoundingClientRect();
  const w = Math.min(Math.max(full[2], full[3] * v.width / v.height), Math.max((b.x - a.x) * 4, 400));
  const h = w * v.height / v.width;
  vb.x = (a.x + b.x) / 2 - w / 2; vb.y = (a.y + b.y) / 2 - h / 2; vb.width = w; vb.height = h; }
view.addEventListener("wheel", e => { e.preventDefault(); const k = e.deltaY > 0 ? 1.15 : 1 / 1.15;
  const m = toUser(e.clientX, e.clientY);
  vb.x = m.x - (m.x - vb.x) * k; vb.y = m.y - (m.y - vb.y) * k; vb.width *= k; vb.height *= k; }, {passive: false});
function fit() { [vb.x, vb.y, vb.width, vb.height] = full; }
const MIN_SCALE = 1.25, MAX_SCALE = 1.8;   // px a point: Graphviz's 10 pt labels at 12.5 to 18 px
function first() {  // the first view: the whole graph when its text stays readable at that scale,
  const v = view.getBoundingClientRect();        // else the graph's top at MIN_SCALE (pan, or Whole graph)
  const s = Math.min(v.width / full[2], v.height / full[3]), k = Math.min(Math.max(s, MIN_SCALE), MAX_SCALE);
  const w = v.width / k, h = v.height / k;
  vb.width = w; vb.height = h; vb.x = full[0] + (full[2] - w) / 2;
  vb.y = s < MIN_SCALE ? full[1] : full[1] + (full[3] - h) / 2; }
first();
view.addEventListener("dblclick", fit);
document.getElementById("fit").addEventListener("click", fit);
view.addEventListener("mousedown", e => { drag = toUser(e.clientX, e.clientY); view.style.cursor = "grabbing"; });
window.addEventListener("mouseup", () => { drag = null; view.style.cursor = "grab"; });
window.addEventListener("mousemove", e => { if (!drag) return; const m = toUser(e.clientX, e.clientY);
  vb.x -= m.x - drag.x; vb.y -= m.y - drag.y; });
</script></body></html>
"""


def page(g, svg, rules=None):
    """The page for graph g (engine.dotgraph._Graph) as Graphviz rendered it (svg text)."""
    info = {}
    for nid, kind, label in g.nodes:
        lines = label.split("\n")
        info[nid] = {"title": lines[0], "kind": {"leaf": "leaf (input)", "output": "output", "saved": "saved tensor",
                                                "op": "backward node", "accumulate": "AccumulateGrad (writes .grad)",
                                                "fail": "backward node: its local check fails",
                                                "constant": "input that does not require grad"}.get(kind, kind),
                     "label": "\n".join(lines[1:]) if len(lines) > 1 else "",
                     "note": "", "rule": (rules or {}).get(nid, ""), "saved": [], "is": [], "from": [], "to": [], "by": []}
        if kind == "fail":
            info[nid]["note"] = lines[-1]
    for sid, lid in g.came_from.items():
        info[sid]["is"].append(lid)
    for src, dst, style in g.edges:
        if src in info and dst in info:
            if style in ("dashed", "dotted"):      # a saved tensor, or an input without grad it saved
                info[dst]["saved"].append(src)
                info[src]["by"].append(dst)
            else:                  # an edge runs from a node's input side to it: gradients flow dst -> src
                info[src]["from"].append(dst)
                info[dst]["to"].append(src)
    return _HEAD + svg[svg.index("<svg"):] + _MIDDLE + script_json(info) + _TAIL


# The template's fixed pieces, cut once at markers (NUL bytes) that no value can reach: the values
# go between them, never into the template by substitution.
_HEAD, _MIDDLE, _TAIL = (PAGE.split("\x00SVG\x00")[0], *PAGE.split("\x00SVG\x00")[1].split("\x00INFO\x00"))
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value):
    """JSON text that is safe inside an HTML <script> element: every <, > and & is a \\u escape
    (so no </script>, <!--, or <script> can end or change the script's parsing), and so are
    U+2028 and U+2029 (line terminators in older JavaScript); the value JavaScript reads is the same."""
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_UNSAFE[m.group()], json.dumps(value))

