"""torchviz's make_dot on the engine (for `import torchviz` in a file run on the engine's
PyTorch API): the backward graph as a Graphviz document, drawn by engine.dotgraph."""
from . import dotgraph
from .tensor import Tensor


class Digraph:
    """What make_dot returns: `.source` is the DOT text; render/save/pipe write or return it
    (render and pipe need Graphviz's `dot`)."""

    def __init__(self, source):
        self.source = source

    def __str__(self):
        return self.source

    def save(self, filename="Digraph.gv", directory=None):
        import os
        path = os.path.join(directory, filename) if directory else filename
        with open(path, "w") as f:
            f.write(self.source)
        return path

    def pipe(self, format="svg", encoding=None):  # noqa: A002 - graphviz's parameter name
        import subprocess
        out = subprocess.run(["dot", f"-T{format}"], input=self.source.encode(), capture_output=True, check=True).stdout
        return out.decode(encoding) if encoding else out

    def render(self, filename="Digraph.gv", directory=None, view=False, cleanup=False, format="pdf"):  # noqa: A002
        path = self.save(filename, directory)
        target = f"{path}.{format}"
        with open(target, "wb") as f:
            f.write(self.pipe(format))
        if cleanup:
            import os
            os.remove(path)
        return target

    def _repr_svg_(self):
        """The drawing in a notebook (Graphviz's dot), or None without dot (the HTML below shows)."""
        import shutil
        return self.pipe("svg", "utf-8") if shutil.which("dot") else None

    def _repr_html_(self):
        """In a notebook: the SVG drawing when Graphviz's dot is installed; without it, the DOT text
        itself, saying so (no Graphviz is needed to see what the graph holds)."""
        import html
        svg = self._repr_svg_()
        if svg is not None:
            return svg[svg.index("<svg"):]
        return ("<div><p><i>Graphviz's <code>dot</code> is not installed, so the graph is shown as its DOT text "
                "(install graphviz to see it drawn, or paste it into any Graphviz viewer):</i></p><pre>"
                + html.escape(self.source) + "</pre></div>")


def make_dot(var, params=None, show_attrs=False, show_saved=False, max_attr_chars=50):
    outs = [var] if isinstance(var, Tensor) else [v for v in var if isinstance(v, Tensor)]
    names = {id(t): n for n, t in (params or {}).items()}
    return Digraph(dotgraph.to_dot(outs, names, show_saved=show_saved or show_attrs))
