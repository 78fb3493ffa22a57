"""The checker from Python: `check(fn, *inputs, ...)` runs the same check as `autograd check`
(cli/checking.py) on a function of torch tensors or of engine tensors -- the backend follows the
tensors, never a mix -- and returns a Report; `assert_gradients` raises AssertionError with the
rendered report. Importing this module imports neither torch nor Rich: torch only when torch
tensors are passed.

    from cli import check, assert_gradients
    report = check(MyFn.apply, torch.randn(3, dtype=torch.float64, requires_grad=True))
    report.verdict, report.to_json()             # "pass" ..., exactly `autograd check --json`
    assert_gradients(MyFn.apply, x, strict=True)  # in a test

The inputs that require grad are checked (all floating-point tensors when none does), on copies;
anything that is not a tensor is passed as it is. Options mean what the CLI's do: eps, atol, rtol,
fast, order (2: second derivatives too), locate, strict (suspicious fails), sweep, seed.
"""
import html
import inspect
import io
import os

from .errors import CliError


def check(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast=False, order=1, locate=False, strict=False,
          sweep=False, seed=0, names=None):
    """Check fn's gradients at `inputs` against central finite differences: a Report."""
    from .checking import run_check
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, not {order!r}")
    target, tensors = _target(fn, inputs, names)
    result = run_check(target, tensors, eps=eps, atol=atol, rtol=rtol, fast=fast, order=order, locate=locate,
                       sweep=sweep, seed=seed)
    return Report(result, strict=strict, locate=locate)


def assert_gradients(fn, *inputs, **options):
    """check(fn, *inputs, **options), raising AssertionError with the report when it fails
    (a suspicious verdict too with strict=True); returns the Report when it passes."""
    __tracebackhide__ = True         # pytest shows the report, not this frame
    report = check(fn, *inputs, **options)
    if not report.passed:
        raise AssertionError(report.text())
    return report


class Report:
    """A check's outcome: `verdict` ("pass", "suspicious", "fail", "inconclusive"), `passed`
    (False for fail and inconclusive, and for suspicious when strict), `inputs` (per input: the
    worst element's errors and values), `located` (the nodes re-checked on their own, when they
    were), `pattern` (the error's shape), `sweep`; `to_json()` is `autograd check --json`'s
    document, `text()` its printed report. It shows itself as an HTML table in a notebook."""

    def __init__(self, result, strict=False, locate=False):
        self._result, self.strict, self._locate = result, strict, locate
        self._doc = result.to_json()

    verdict = property(lambda self: self._doc["verdict"])
    passed = property(lambda self: not self._result.failed(self.strict))
    inputs = property(lambda self: self._doc["inputs"])
    failures = property(lambda self: self._doc["failures"])
    warnings = property(lambda self: self._doc["warnings"])
    located = property(lambda self: self._doc.get("locate"))
    pattern = property(lambda self: self._doc.get("pattern"))
    sweep = property(lambda self: self._doc.get("sweep"))
    suspicion = property(lambda self: self._doc.get("suspicion"))
    inconclusive = property(lambda self: self._doc.get("inconclusive"))

    def __bool__(self):
        return self.passed

    def to_json(self):
        """The document `autograd check --json` prints for the same target and inputs."""
        return self._result.to_json()

    def text(self):
        """The report as `autograd check` prints it, in plain text (warnings included)."""
        from . import render
        from .commands.check import render_result
        buf = io.StringIO()
        old = render._STDOUT
        render.set_stdout(buf)
        try:
            con = render._Plain()
            render_result(con, self._result, strict=self.strict, locate_asked=self._locate,
                          warn=lambda w: buf.write(f"warning: {w}\n"))
        finally:
            render.set_stdout(old)
        return buf.getvalue()

    __str__ = text

    def __repr__(self):
        return f"<gradient check report: {self.verdict}>"

    def _repr_html_(self):
        e = html.escape
        color = {"pass": "#2a7d2a", "suspicious": "#b8860b", "inconclusive": "#b8860b"}.get(self.verdict, "#c00")
        rows = "".join(
            f"<tr><td>{e(name)}</td><td>{v['max_abs_error']:.3g}</td><td>{v['max_rel_error']:.3g}</td>"
            f"<td>{e(str(v['worst_index']))}</td><td>{v['analytical']:.6g}</td><td>{v['numerical']:.6g}</td>"
            f"<td>{'pass' if v['passed'] else 'FAIL'}</td></tr>" for name, v in self.inputs.items())
        why = self.suspicion or self.inconclusive or (self.failures[0] if self.failures else "")
        located = ""
        if self.located:
            located = ("<h4>local checks</h4><table><tr><th>node</th><th>made at</th><th>max abs err</th>"
                       "<th>result</th></tr>" + "".join(
                           f"<tr><td>{e(c['node'])}</td><td>{e(c['where'] or '-')}</td><td>{c['max_abs_err']:.3g}</td>"
                           f"<td>{e(c['verdict'])}</td></tr>" for c in self.located) + "</table>")
        pattern = f"<p>the error's shape: {e(self.pattern)}</p>" if self.pattern else ""
        return (f"<div class='autograd-check'><p><b style='color:{color}'>{e(self.verdict.upper())}</b>"
                f"{': ' + e(why) if why else ''}</p><table><tr><th>input</th><th>abs err</th><th>rel err</th>"
                f"<th>worst at</th><th>analytical</th><th>numerical</th><th>result</th></tr>{rows}</table>"
                f"{pattern}{located}</div>")


def graph(*outputs, names=None, **options):
    """The backward graph of `outputs` (torch or engine tensors) for a notebook: a Graph that
    shows itself as the interactive page of `autograd graph -o g.html` (pan, zoom, search, the
    side panel) in an iframe, or -- without Graphviz's dot -- as its DOT text, saying so.
    names: {name: leaf tensor}; options: engine.dotgraph.build's (show_values, show_saved, ...)."""
    from engine import dotgraph
    kinds = {_kind(o) for o in outputs}
    if None in kinds or len(kinds) != 1:
        raise CliError("graph takes the output tensors of one backend (torch or engine)")
    view = {}
    if kinds == {"torch"}:
        from . import torch_backend
        view = {"view": torch_backend.view()}
    ids = {id(t): n for n, t in (names or {}).items()}
    g = dotgraph.build(list(outputs), ids, **view, **options)
    return Graph(g, dotgraph.dot_text(g), ids if kinds == {"engine"} else None)


class Graph:
    """What graph() returns: `.source` (DOT), `.html()` (the page, None without Graphviz)."""

    def __init__(self, built, source, engine_names):
        self._built, self.source, self._names = built, source, engine_names

    def html(self):
        import shutil
        import subprocess
        if shutil.which("dot") is None:
            return None
        from .htmlpage import page
        from .outputs import _rules
        svg = subprocess.run(["dot", "-Tsvg"], input=self.source.encode(), capture_output=True, check=True).stdout
        rules = _rules(self._built, self._names) if self._names is not None else {}
        return page(self._built, svg.decode("utf-8"), rules)

    def _repr_html_(self):
        text = self.html()
        if text is None:
            return ("<div><p><i>Graphviz's <code>dot</code> is not installed, so the graph is shown as its DOT "
                    "text (install graphviz for the interactive page):</i></p><pre>" + html.escape(self.source)
                    + "</pre></div>")
        return (f"<iframe srcdoc=\"{html.escape(text, quote=True)}\" style=\"width:100%;height:520px;border:1px "
                "solid #ccc\"></iframe>")


def _kind(t):
    """'torch', 'engine' or None (not a tensor), without importing torch."""
    import sys
    mod = type(t).__module__ or ""
    if mod.startswith("torch") and "torch" in sys.modules and isinstance(t, sys.modules["torch"].Tensor):
        return "torch"
    from engine import Tensor
    return "engine" if isinstance(t, Tensor) else None


def _target(fn, inputs, names):
    """A Target running fn on the inputs, and {name: the tensor copy checked}."""
    from .targets import Target
    kinds = {_kind(x) for x in inputs} - {None}
    if not kinds:
        raise CliError("check needs at least one tensor among the inputs (torch or engine tensors)")
    if len(kinds) > 1:
        raise CliError("the inputs mix torch and engine tensors: a check runs on one backend, so give all of them "
                       "as torch tensors or all as engine tensors")
    backend = kinds.pop()
    params = list(names) if names else _param_names(fn, len(inputs))
    pos = [k for k, x in enumerate(inputs) if _kind(x) is not None]
    wanted = [k for k in pos if inputs[k].requires_grad and inputs[k].is_floating_point()]
    if not wanted:           # as gradcheck: the inputs that require grad; none: every float tensor
        wanted = [k for k in pos if inputs[k].is_floating_point()]
    tensors = {}
    for k in pos:
        x = inputs[k].detach().clone()
        tensors[params[k]] = x.requires_grad_(True) if k in wanted else x
    constants = {k: x for k, x in enumerate(inputs) if k not in pos}

    def call(given):
        args = [constants[k] if k in constants else given[params[k]] for k in range(len(inputs))]
        return fn(*args)
    label = getattr(fn, "__qualname__", None) or type(fn).__name__
    target = Target("function", label, [params[k] for k in pos], call, backend=backend)
    roots = list(getattr(fn, "__globals__", {}).items())
    lib = target.lib
    if isinstance(fn, lib.nn.Module):
        roots.insert(0, ("", fn))
    target.module_roots = roots
    target.user_files = _user_files(fn)
    return target, tensors


def _param_names(fn, n):
    """The inputs' names: fn's parameters (a Function's forward without ctx), else input0..."""
    owner = getattr(fn, "__self__", None)
    try:
        if isinstance(owner, type) and hasattr(owner, "forward"):        # MyFunction.apply
            params = list(inspect.signature(owner.forward).parameters)
            if len(params) == n + 1:
                params = params[1:]
        else:
            params = [p.name for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return params if len(params) == n and len(set(params)) == n else [f"input{k}" for k in range(n)]


def _user_files(fn):
    """The files whose lines say where a node was made: the file fn (or its Function, or its
    nn.Module's class) is defined in, resolved -- the file `autograd check FILE` would be given,
    so the two say the same."""
    files = set()
    for obj in (fn, getattr(fn, "__self__", None), type(fn)):
        try:
            f = inspect.getsourcefile(obj)
        except (TypeError, OSError):
            f = None
        if f:
            files.add(os.path.realpath(f))
    return {f for f in files if "site-packages" not in f and not f.startswith(os.path.dirname(__file__))}
