"""The backward graph as Graphviz DOT (and Mermaid) text. Pure functions: no I/O, no printing.

(Named dotgraph, not dot: `engine.dot` is PyTorch's dot product.)

Layout follows torchviz's legend so its users feel at home: leaves light blue, the output
green, saved tensors orange, backward nodes light grey. Node ids come from a counter in one
fixed, iterative traversal (never `id()`), attributes are written in one order, numbers in one
format: the same graph gives byte-identical text. Traversal is iterative, so a 100,000-node
chain exports without touching the recursion limit, in time linear in its size.
"""
import numpy as np

from .graph import AccumulateGrad, accumulator, walk
from .graph import class_attr, node_name
from .tensor import Tensor

COLORS = {"leaf": "lightblue", "output": "darkolivegreen1", "saved": "orange", "op": "lightgrey",
          "accumulate": "lightgrey", "note": "white", "fail": "tomato", "constant": "white"}
LEGEND = {"leaf": "leaf (input)", "constant": "input, no grad", "op": "backward node", "saved": "saved for backward",
          "output": "output", "fail": "local check fails"}
PER_LINE = 3             # numbers per line of a value on a node (a wide node shrinks the whole drawing)
MAX_VALUES = 6


def fmt_number(v):
    """The one number format: 6 significant digits, no trailing noise."""
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    v = float(v)
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    s = f"{v:.6g}"
    return "0" if s == "-0" else s


def fmt_values(arr):
    """A short rendering of an array's values: [1, 2, 3, ...] (at most MAX_VALUES numbers)."""
    a = np.asarray(arr)
    if a.ndim == 0:
        return fmt_number(a.item())
    flat = a.reshape(-1)
    items = [fmt_number(x) for x in flat[:MAX_VALUES].tolist()]
    more = ", ..." if flat.size > MAX_VALUES else ""
    if a.ndim == 1:
        return "[" + ", ".join(items) + more + "]"
    return "[" + ", ".join(items) + more + f"] (flat of {tuple(a.shape)})"


def fmt_shape(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# characters that end a line for str.splitlines, and other control characters: in a DOT string
# the first become the label's own line break, the rest U+FFFD, so one node is always one line
_DOT_CONTROL = {**{c: "\\n" for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"},
                **{chr(c): "\ufffd" for c in range(32) if chr(c) not in "\n\r\t\x0b\x0c\x1c\x1d\x1e"},
                "\x7f": "\ufffd", "\\": "\\\\", '"': '\\"',
                "&": "&amp;"}        # Graphviz reads entities in a label: a name "a&amp;b" would draw as "a&b"
_DOT_TABLE = str.maketrans(_DOT_CONTROL)


def _esc(s):
    """Text as the inside of a quoted DOT string: quotes and backslashes escaped (so Graphviz's
    own escapes like \\N and \\l cannot be reached), & as &amp; (Graphviz decodes entities in a
    label), line breaks as \\n, no raw control character."""
    return s.translate(_DOT_TABLE)


class _Graph:
    """Nodes and edges in a fixed order, ready to be written as DOT or Mermaid."""

    def __init__(self):
        self.nodes = []      # (id, kind, label)
        self.edges = []      # (src, dst, style)
        self.note = None
        self.objects = {}    # id -> the backward node drawn there (the HTML page asks it for its rule)
        self.came_from = {}  # saved tensor's id -> the id of the leaf it is (the HTML page links them)


def _tensor_label(name, arr, show_values, grad=None, extra=None):
    parts = [name] if name else []
    parts.append(f"{fmt_shape(arr.shape)} {arr.dtype.name}")
    if extra:
        parts.append(extra)
    if show_values:
        parts.extend(value_lines("value", arr))
    if grad is not None:
        parts.extend(value_lines("grad", grad))
    return "\n".join(parts)


def value_lines(head, arr):
    """A value as a few short lines, so a node stays narrow: a matrix by rows (at most PER_LINE
    rows and columns), a vector PER_LINE numbers a line; the shape is on the label already."""
    a = np.asarray(arr)
    if a.ndim == 0:
        return [f"{head} {fmt_number(a.item())}"]
    if a.ndim == 2 and a.size:
        rows = []
        for r in a[:PER_LINE].tolist():
            cells = [fmt_number(v) for v in r[:PER_LINE]] + (["..."] if a.shape[1] > PER_LINE else [])
            rows.append("[" + ", ".join(cells) + "]")
        if a.shape[0] > PER_LINE:
            rows.append("...")
        return [head] + rows
    flat = a.reshape(-1)
    nums = [fmt_number(v) for v in flat[:2 * PER_LINE].tolist()]
    lines = [", ".join(nums[i:i + PER_LINE]) for i in range(0, len(nums), PER_LINE)] or [""]
    lines = [line + "," for line in lines[:-1]] + lines[-1:]
    more = ", ..." if flat.size > 2 * PER_LINE else ""
    lines[0] = "[" + lines[0]
    lines[-1] = lines[-1] + more + "]" + (" (flat)" if a.ndim > 1 else "")
    if len(lines) == 1:
        return [f"{head} {lines[0]}"]
    return [head] + lines


class EngineView:
    """How `build` reads the engine's graph. Another autograd (the CLI's PyTorch backend) passes
    its own view with the same methods, so both graphs are drawn by one layout."""

    tensor_type = Tensor

    @staticmethod
    def root(o):
        return o.grad_fn if o.grad_fn is not None or not o._rg else accumulator(o)

    walk = staticmethod(walk)

    @staticmethod
    def data(t):
        return t._data

    @staticmethod
    def grad(t):
        return t._grad._data if t._grad is not None else None

    @staticmethod
    def variable(node):
        """The leaf tensor an AccumulateGrad node feeds, or None for any other node."""
        return node.variable if isinstance(node, AccumulateGrad) else None

    @staticmethod
    def forward_name(node):
        op = class_attr(node, "op")
        return op.name if op is not None else (class_attr(node, "_forward_cls").__name__ if class_attr(node, "_forward_cls") else "")

    saved = staticmethod(lambda node: _saved_of(node))

    @staticmethod
    def uses(node, t):
        """The names under which node saved tensor t (its data), if it did."""
        return [name for name, arr in _saved_of(node) if arr is t._data]

    @staticmethod
    def children(node):
        return node._next


def build(outputs, names=None, *, show_values=False, show_grad=False, show_saved=False, forward=False,
          max_nodes=1000, node_grads=None, output_names=None, view=EngineView, highlight=None, constants=None):
    """The graph behind `outputs` (a Tensor or a sequence) as a _Graph.

    names: {id(tensor): name} for leaves (a leaf without one shows its shape and values only).
    node_grads: {node: [array per output]} gradients seen flowing into each node (--retain-grad).
    view: how the graph is read (EngineView; the CLI passes PyTorch's).
    highlight: {node: reason} nodes painted red with the reason in their label (check --locate).
    constants: [(name, tensor)] inputs that do not require grad (the lesson's x in w*x): drawn
    too, with a dotted edge to each node that saved them (the only way a backward node uses them).
    """
    outs = [outputs] if isinstance(outputs, view.tensor_type) else list(outputs)
    names = names or {}
    g = _Graph()
    counter = [0]

    def new_id():
        counter[0] += 1
        return f"n{counter[0]}"

    root_of = [view.root(o) for o in outs]
    # the nodes shown: the first max_nodes of the one graph walk (each reached from one before
    # it, so what is shown is connected); the rest are counted in a note
    order = []
    hidden = 0
    for n in view.walk(root_of):
        if len(order) < max_nodes:
            order.append(n)
        else:
            hidden += 1
    ids = {}
    for k, o in enumerate(outs):
        oname = (output_names[k] if output_names else ("output" if len(outs) == 1 else f"output{k}"))
        oid = new_id()
        g.nodes.append((oid, "output", _tensor_label(oname, view.data(o), show_values,
                                                     view.grad(o) if show_grad else None)))
        if root_of[k] is not None:
            if root_of[k] not in ids:
                ids[root_of[k]] = new_id()
            g.edges.append((ids[root_of[k]], oid, ""))
    for node in order:
        if node not in ids:
            ids[node] = new_id()

    leaf_ids = {}
    leaf_of_array = {}       # id(leaf's array) -> its node id, to say which leaf a saved tensor is
    saved_arrays = []
    for node in order:
        nid = ids[node]
        var = view.variable(node)
        if var is not None:
            g.nodes.append((nid, "accumulate", "AccumulateGrad"))
            lid = leaf_ids.get(id(var))
            if lid is None:
                lid = new_id()
                leaf_ids[id(var)] = lid
                name = names.get(id(var)) or ""
                grad = view.grad(var) if show_grad else None
                g.nodes.append((lid, "leaf", _tensor_label(name, view.data(var), show_values, grad)))
                data = view.data(var)
                leaf_of_array[id(data)] = (lid, data)       # the array kept alive: its id stays its own
            g.edges.append((lid, nid, ""))
            continue
        label = node_name(node)
        if forward:
            fwd = view.forward_name(node)
            label = f"{fwd} -> {label}" if fwd else label
        if node_grads and node in node_grads:
            label += "\ngrad " + "; ".join(fmt_values(a) for a in node_grads[node] if a is not None)
        g.objects[nid] = node
        if highlight and node in highlight:
            g.nodes.append((nid, "fail", f"{label}\n{highlight[node]}"))
        else:
            g.nodes.append((nid, "op", label))
        if show_saved:
            for sname, arr in view.saved(node):
                sid = new_id()
                g.nodes.append((sid, "saved", f"{sname}\n{fmt_shape(arr.shape)} {arr.dtype.name}"))
                g.edges.append((sid, nid, "dashed"))
                saved_arrays.append((sid, arr))
        for nxt in view.children(node):
            if nxt is not None and nxt in ids:
                g.edges.append((ids[nxt], nid, ""))
    for sid, arr in saved_arrays:
        if id(arr) in leaf_of_array:
            g.came_from[sid] = leaf_of_array[id(arr)][0]
    for name, t in constants or ():
        cid = new_id()
        users = [(ids[n], sname) for n in order if view.variable(n) is None for sname in view.uses(n, t)]
        how = "requires_grad=False" + ("" if users else "; no backward node uses it")
        g.nodes.append((cid, "constant", _tensor_label(name, view.data(t), show_values, extra=how)))
        for nid, sname in users:
            g.edges.append((cid, nid, "dotted"))
    g.nodes = [(nid, kind, label if label.strip() else f"(unnamed {LEGEND.get(kind, kind)})")
               for nid, kind, label in g.nodes]
    if hidden:
        g.note = (new_id(), f"{hidden} more backward nodes not shown (raise --max-nodes to see them)")
    return g


def _saved_of(node):
    values = getattr(node, "_saved_values", None)
    if isinstance(values, dict):
        return sorted(values.items())
    out = []
    saved = getattr(node, "_saved", None)
    if isinstance(saved, tuple):
        for k, (s, _) in enumerate(saved):
            data = getattr(s, "_data", None) if s is not None else None
            if data is None and hasattr(s, "data"):
                data = s.data
            if isinstance(data, np.ndarray):
                out.append((f"saved{k}", data))
    return out


_SHAPES = {"leaf": "box", "output": "box", "saved": "box", "op": "box", "accumulate": "box", "note": "note"}


def to_dot(outputs, names=None, *, rankdir="TB", legend=True, **options):
    """DOT text for the backward graph of `outputs` (see `build` for the options)."""
    return dot_text(build(outputs, names, **options), rankdir, legend)


def dot_text(g, rankdir="TB", legend=True):
    """A built graph (build) as DOT text."""
    lines = ["digraph autograd {",
             f'  graph [rankdir={rankdir}, fontname="Helvetica", fontsize=10];',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    for nid, kind, label in g.nodes:
        lines.append(f'  {nid} [label="{_esc(label)}", fillcolor={COLORS[kind]}];')
    if g.note:
        lines.append(f'  {g.note[0]} [label="{_esc(g.note[1])}", shape=note, fillcolor=white];')
    for src, dst, style in g.edges:
        lines.append(f"  {src} -> {dst}" + (f" [style={style}]" if style else "") + ";")
    if legend:                # what this drawing has, in one column beside it
        used = {kind for _, kind, _ in g.nodes}
        kinds = [k for k in LEGEND if k in used or k in ("leaf", "op", "output")]
        lines += ['  subgraph cluster_legend {',
                  '    label="legend"; fontsize=10; style=dashed;']
        lines += [f'    legend_{k} [label="{LEGEND[k]}", fillcolor={COLORS[k]}];' for k in kinds]
        lines.append('    ' + " -> ".join(f"legend_{k}" for k in kinds) + ' [style=invis];')
        lines.append('  }')
    lines.append("}")
    return "\n".join(lines) + "\n"


_MERMAID_PLAIN = frozenset(" _.,:()+-*/=^[]!?%@~")


def mermaid_text(label):
    """A label as the text of a Mermaid node ["..."]: letters, digits and plain punctuation as they
    are, every other character (quotes, <, >, &, #, backticks, U+2028 ...) as Mermaid's entity code
    #NNN; so that no name can close the string, start markup or an entity; lines joined by <br/>."""
    return "<br/>".join("".join(c if c.isalnum() or c in _MERMAID_PLAIN else f"#{ord(c)};" for c in line)
                        for line in label.split("\n"))


def to_mermaid(outputs, names=None, *, rankdir="TB", **options):
    """A Mermaid flowchart of the same graph (renders in GitHub markdown)."""
    g = build(outputs, names, **options)
    lines = [f"flowchart {'LR' if rankdir == 'LR' else 'TB'}"]
    for nid, kind, label in g.nodes:
        lines.append(f'  {nid}["{mermaid_text(label)}"]:::{kind}')
    if g.note:
        lines.append(f'  {g.note[0]}["{mermaid_text(g.note[1])}"]')
    for src, dst, style in g.edges:
        lines.append(f"  {src} {'-.->' if style in ('dashed', 'dotted') else '-->'} {dst}")
    used = {kind for _, kind, _ in g.nodes}
    for kind, color in COLORS.items():
        if kind == "fail" and kind not in used:      # only check --dot paints nodes red
            continue
        css = {"darkolivegreen1": "#caff70", "lightblue": "#add8e6", "orange": "#ffa500", "tomato": "#ff6347",
               "lightgrey": "#d3d3d3", "white": "#ffffff"}[color]
        lines.append(f"  classDef {kind} fill:{css},stroke:#333")
    return "\n".join(lines) + "\n"
