"""The gradient check as `autograd check` and the Python API (cli/api.py) run it: from a loaded
target and its input tensors to a CheckResult -- the first-order report, the second-order one
(--order 2), the sweep, the located nodes and the error's shape -- and the one JSON document
both give (`CheckResult.to_json`). Option parsing, files and rendering stay with the command;
the math stays in engine/autograd (checker, locate)."""
import dataclasses

JSON_MATRIX_CAP = 10_000      # elements of a Jacobian --json carries


@dataclasses.dataclass
class CheckResult:
    target: object
    report: object               # engine.autograd.checker.GradcheckReport, first order
    second: object = None        # the second-order report (order=2)
    swept: object = None         # engine.autograd.checker.Sweep (sweep=True)
    located: list = None         # [engine.autograd.locate.LocalCheck] when nodes were re-checked
    ran: list = None             # the outputs of the run located (to draw its graph)
    leaves: dict = None          # {name: the leaf tensor that run used}
    worst: object = None         # the failing pair shown (a PairResult), when the gradient is wrong
    pattern: str = ""            # the error's shape in words, or ""
    differences: dict = None     # how the finite differences ran: {"batched": bool or None, "note": str}
    located_on: str = ""         # where the nodes were located, when not on the inputs as given

    @property
    def verdict(self):
        """The worse of the first- and second-order verdicts."""
        return _combined(self.report, self.second)

    def failed(self, strict=False):
        """Whether the check fails (exit 1): fail or inconclusive, and suspicious with strict."""
        return self.verdict in ("fail", "inconclusive") or (strict and self.verdict == "suspicious")

    def marks(self):
        """{node: reason} of the located nodes to paint red (check --dot)."""
        marks = {c.node_ref: f"{c.verdict.upper()}: local check, max abs err {c.max_abs_err:.3g}"
                 for c in self.located or () if c.verdict in ("fail", "suspicious") and c.node_ref is not None}
        for c in self.located or ():
            if c.second == "fail" and c.node_ref is not None and c.node_ref not in marks:
                marks[c.node_ref] = f"FAIL: second-order local check ({c.second_why})"
        return marks

    def to_json(self):
        """The document `autograd check --json` prints."""
        from . import render
        report, second, worst, located = self.report, self.second, self.worst, self.located
        doc = {**self.target.json_fields(), **render.check_json(report)}
        if second is not None:
            doc["order"] = 2
            doc["first_order"] = {"passed": report.passed, "verdict": doc["verdict"]}
            doc["second_order"] = render.check_json(second)
            doc["passed"] = report.passed and second.passed
            doc["verdict"] = self.verdict
        if worst is not None or self.pattern:
            doc["pattern"] = self.pattern or None
        if worst is not None:
            if worst.analytical.size <= JSON_MATRIX_CAP:
                doc["jacobians"] = {"output": worst.output_name, "input": worst.input_name,
                                    "analytical": render.to_jsonable(worst.analytical),
                                    "numerical": render.to_jsonable(worst.numerical)}
        if self.swept is not None:
            s = self.swept
            doc["sweep"] = {"points": [{"eps": e, "max_abs_err": v} for e, v in zip(s.eps, s.errors)],
                            "order": s.order, "best_eps": s.best_eps, "verdict": s.verdict, "message": s.message}
        if self.differences is not None:
            doc["finite_differences"] = self.differences
        if located is not None:
            doc["locate"] = [{"node": c.node, "where": c.where, "custom_function": c.custom,
                              "max_abs_err": c.max_abs_err, "max_rel_err": c.max_rel_err, "passed": c.passed,
                              "verdict": c.verdict, **({"module": c.module} if c.module else {}),
                              **({"second_order": {"verdict": c.second, "why": c.second_why}} if c.second else {}),
                              **({"spread": c.spread} if c.spread > 0 else {}),
                              **({"application": c.nth[0], "applications_here": c.nth[1]} if c.nth else {}),
                              **({"inside_backward_of": c.in_backward_of} if c.in_backward_of else {})}
                             for c in located]
            if not self.target.engine_graph:
                doc["locate_scope"] = "custom Functions (built-in PyTorch ops are trusted)"
            if self.located_on:
                doc["locate_on"] = self.located_on
        return doc


def run_check(target, tensors, *, outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, fast=False, order=1, locate=False,
              sweep=False, seed=0, progress=None, on_interrupt=None):
    """The whole check of `target` at `tensors` ({name: tensor} of its backend; those requiring
    grad are checked): first order, second order when order=2, the sweep, and every node re-checked
    on its own when asked or when the check does not pass. outputs: (outs, single) of a forward
    already run (one is run otherwise, for the outputs' names). on_interrupt(CheckInterrupted) is
    called on Ctrl-C before KeyboardInterrupt is raised again. Where a node was made is read from
    the frames in target.user_files."""
    import warnings

    from engine.autograd.checker import CheckInterrupted, check_gradients, pattern

    from .targets import output_names
    names = list(tensors)
    outs, single = outputs if outputs is not None else target.call(tensors)
    onames = output_names(len(outs), single, names)
    fn = target.engine_function(names)        # on PyTorch: its backward is PyTorch's autograd
    inputs = tuple(target.to_engine(t) for t in tensors.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            report = check_gradients(fn, inputs, eps=eps, atol=atol, rtol=rtol, fast_mode=fast, input_names=names,
                                     output_names=onames, verdicts=True, progress=progress)
            second = None
            if order == 2:       # second order adds to the first: both are checked, both reported
                from engine.autograd.function import ONCE_DIFFERENTIABLE
                fn2, inputs2, names2 = target.second_order(fn, inputs, names, seed=seed)
                try:
                    second = check_gradients(fn2, inputs2, eps=eps, atol=atol, rtol=rtol, fast_mode=fast,
                                             input_names=names2, verdicts=True, progress=progress,
                                             output_names=[f"grad_{n}" for n, x in zip(names, inputs)
                                                           if x.requires_grad])
                except RuntimeError as e:
                    if not str(e).startswith(ONCE_DIFFERENTIABLE):
                        raise
                    from .errors import CliError      # the same words as on PyTorch (cli/torch_backend.py)
                    raise CliError(f"{ONCE_DIFFERENTIABLE}: its backward has no second derivative, so --order 2 "
                                   "cannot check it") from None
        except CheckInterrupted as e:
            if on_interrupt is not None:
                on_interrupt(e)
            raise KeyboardInterrupt from None
    result = CheckResult(target, report, second)
    own = getattr(getattr(fn, "backend", None), "differences", None)
    result.differences = ({"batched": own.ran_batched, "note": own.fallback} if own is not None else
                          {"batched": False, "note": "the engine evaluates f once per step"})
    if sweep:
        from engine.autograd.checker import sweep as run_sweep
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result.swept = run_sweep(fn, inputs, input_names=names)
    result.worst = _worst_failing_pair(report)
    at_kink = any("not differentiable" in w for w in report.warnings)     # a subgradient choice: no error shape
    deciding = report
    if result.worst is None and second is not None and second.verdict == "fail" and report.passed:
        # right at first order, wrong at second: the shape (and heat map) of the second derivatives
        result.worst, deciding = _worst_failing_pair(second), second
    if result.worst is not None and deciding.verdict == "fail" and not at_kink:
        # an error's shape only where the verdict says the gradient is wrong (not finite differences)
        w = result.worst
        result.pattern = pattern(w.analytical, w.numerical, atol, rtol, w.input_shape)
    elif report.verdict == "fail" and not report.failures[0].startswith("inconclusive") and all(
            p.passed for p in report.pairs if p.kind == "jacobian") and any(
            not p.passed for p in report.pairs if p.kind == "grad"):
        # the Jacobian rows (autograd.grad, one backward call each, the first ones) are right, and
        # .grad from the backward() run after them is not (red team: a backward wrong from its
        # second call had no word of it)
        result.pattern = ("the Jacobian rows are right and .grad from a later backward() is not: the backward "
                          "gives other results on later calls (state kept between calls?), or backward() takes "
                          "another path than autograd.grad")
    second_failed = second is not None and not second.passed
    if locate or not report.passed or report.verdict == "suspicious" or second_failed:
        from engine.autograd.locate import MAX_LOCAL_ELEMENTS, MAX_LOCAL_ELEMENTS_FAST
        most = MAX_LOCAL_ELEMENTS_FAST if fast else MAX_LOCAL_ELEMENTS    # --fast: a smaller sample per node
        if target.engine_graph:
            result.located, result.ran = _locate(target, fn, inputs, eps, atol, rtol, most, order)
            result.leaves = {n: t for n, t in zip(names, inputs)}
        else:                         # PyTorch: every custom Function application, re-checked
            result.located, result.ran, result.leaves = _locate_torch(target, tensors, names, eps, atol, rtol, seed,
                                                                      most, order)
        if _from_float64_copies(report) and not any(c.verdict in ("fail", "suspicious") for c in result.located):
            # the verdict is the float64 copies' (a float32 check is judged so), and float32's own
            # local checks allow float32's resolution, which hides what float64 shows (a leak of 1e-6
            # beside gradients of 1: "every node passes on its own" under a suspicious verdict, red
            # team): the nodes are located on the copies the verdict was reached on
            copies = {n: _float64_copy(target, t) for n, t in tensors.items()}
            if target.engine_graph:
                ins64 = tuple(target.to_engine(t) for t in copies.values())
                result.located, result.ran = _locate(target, fn, ins64, eps, atol, rtol, most, order)
                result.leaves = dict(zip(names, ins64))
            else:
                result.located, result.ran, result.leaves = _locate_torch(target, copies, names, eps, atol, rtol,
                                                                          seed, most, order)
            result.located_on = "float64 copies of the float32 inputs, as the verdict was reached"
        _number_repeats(result.located)
        _agree(report, result.located)
        _at_kink(report, result.located, at_kink, torch=not target.engine_graph)
    return result


def _number_repeats(located):
    """Applications of the same node at the same place (a Function applied twice on one line) are
    told apart by their place in forward order: (k, n) in each one's `nth`."""
    key = lambda c: (c.node, c.where, c.module, c.nested, c.in_backward_of)  # noqa: E731
    counts = {}
    for c in located:
        counts[key(c)] = counts.get(key(c), 0) + 1
    seen = {}
    for c in located:
        n = counts[key(c)]
        if n > 1 and c.where:
            seen[key(c)] = seen.get(key(c), 0) + 1
            c.nth = (seen[key(c)], n)


def _from_float64_copies(report):
    """Whether a float32 check's verdict was reached on float64 copies of its inputs, and is not a pass."""
    said = [report.suspicion] if report.verdict == "suspicious" else report.failures if report.verdict == "fail" else []
    return any(s.startswith("on float64 copies") for s in said)


def _float64_copy(target, t):
    """A float32 input as a float64 leaf of the same backend (other inputs as they are)."""
    if target.engine_graph:
        from engine.tensor import Tensor
        if not isinstance(t, Tensor) or t._data.dtype.kind != "f" or t._data.dtype == "float64":
            return t
        import numpy as np
        return Tensor._make(t._data.astype(np.float64)).requires_grad_(t.requires_grad)
    lib = target.lib
    if not isinstance(t, lib.Tensor) or not t.is_floating_point() or t.dtype == lib.float64:
        return t
    return t.detach().to(lib.float64).requires_grad_(t.requires_grad)


def _at_kink(report, located, kink_seen, torch=False):
    """A mismatch where the only nodes not right on their own sit at a kink (and are right away
    from it: a custom ReLU re-checked off 0) is the op's subgradient choice against differences
    that average the two one-sided slopes: inconclusive, with the reason -- not "wrong"."""
    if report.verdict != "fail" or located is None or any(c.verdict in ("fail", "suspicious") for c in located):
        return
    kinks = [c for c in located if c.verdict == "kink"]
    if not all(f.startswith("Jacobian mismatch") or ".grad after backward()" in f for f in report.failures):
        return
    if kinks:
        c = kinks[0]
        what = f"an input of {c.node}" + (f" at {c.where}" if c.where else "")
    elif torch and kink_seen and not located:      # only PyTorch's own ops, trusted, one at a kink
        said = next(w for w in report.warnings if "not differentiable" in w)
        what = said.split(" lies within", 1)[0]
    else:
        return
    report.verdict = "inconclusive"
    report.inconclusive = (f"a kink: {what} lies within eps={report.eps:g} of a point where it is not "
                           "differentiable, and no node is wrong away from such points; there the analytical value "
                           "is a subgradient choice and finite differences average the two one-sided slopes, so they "
                           "cannot judge it (check at a point away from the kink)")
    report.failures.insert(0, f"inconclusive: {report.inconclusive}")


def _combined(first, second):
    """One verdict for a first-order report and a second-order one (or None): the worse of the two."""
    verdicts = {r.verdict or ("pass" if r.passed else "fail") for r in (first, second) if r is not None}
    for v in ("fail", "inconclusive", "suspicious"):
        if v in verdicts:
            return v
    return "pass"


def _locate(target, fn, inputs, eps, atol, rtol, max_elements=None, order=1):
    """Every backward node checked on its own (engine.autograd.locate), with where it was made:
    file:line in a .py target, the part of an expression."""
    import warnings

    from engine.autograd.locate import locate, module_names
    from engine.nn import Module

    span_of = target.program.running_span if target.kind == "expression" else None
    ran = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks = locate(fn, inputs, eps=eps, atol=atol, rtol=rtol, user_files=target.user_files,
                        span_of=span_of, outputs=ran, max_elements=max_elements, order=order,
                        module_names=module_names(target.module_roots, Module) if target.module_roots else None)
    for c in checks:
        if c.span is not None:
            a, b = c.span
            c.where = f"'{target.text[a:b]}' (columns {a + 1}-{b})"
        elif c.where:
            c.where = _short(c.where)
    return checks, ran


def _short(where):
    """file:line as the user would type the file: relative to the working folder when it is
    inside it (pkg/ops.py:18), else its name."""
    import os
    path, _, line = where.rpartition(":")
    try:
        rel = os.path.relpath(os.path.realpath(path))
    except ValueError:
        rel = path
    if rel.startswith(".."):
        rel = os.path.basename(path)
    return f"{rel}:{line}"


def _agree(report, located):
    """The verdict and the local checks agree, or the report says why: a node that fails on its own
    while the whole passes makes the verdict suspicious (its error is within tolerance at the
    outputs -- small beside the rest of the gradient, or cancelled by it -- and still a bug); so
    does a node whose own check is suspicious (within tolerance, far beyond its finite-difference
    error) -- the whole cannot pass while the table names a first wrong node."""
    if report.verdict != "pass":
        return
    located = [c for c in located if not c.in_backward_of]     # made by a backward: second order's business
    wrong = [c for c in located if c.verdict == "fail"] or [c for c in located if c.verdict == "suspicious"]
    if not wrong:
        return
    c = wrong[0]
    where = f" at {c.where}" if c.where else ""
    report.verdict = "suspicious"
    if c.verdict == "fail":
        report.suspicion = (f"the whole is within tolerance, but {c.node}{where} fails its own local check (max abs "
                            f"error {c.max_abs_err:.3g} against its own forward): its error is too small to show at "
                            "the outputs (within atol + rtol*|gradient| there) or is cancelled by the rest of the graph; "
                            "it is still a wrong backward")
    else:
        report.suspicion = (f"the whole is within tolerance, but {c.node}{where} is suspicious on its own (max abs "
                            f"error {c.max_abs_err:.3g} against its own forward, far beyond what finite differences of "
                            "it err by): an error too small for the tolerances, at the outputs and on its own, and "
                            "still not numerics")


def _locate_torch(target, tensors, names, eps, atol, rtol, seed, max_elements=None, order=1):
    """On PyTorch: the target run once with every custom Function application recorded, each
    re-checked on its own (cli/torch_backend.locate); built-in PyTorch ops are trusted. Returns
    (checks, the run's outputs, {name: the leaf it ran on})."""
    import warnings

    from engine.autograd.locate import module_names

    from . import torch_backend
    t_lib = target.lib
    leaves = [torch_backend.fresh_leaf(t) for t in tensors.values()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks, outs = torch_backend.locate(target.function(names), leaves, eps=eps, atol=atol, rtol=rtol,
                                            user_files=target.user_files, seed=seed,
                                            max_elements=max_elements, order=order,
                                            module_names=module_names(target.module_roots, t_lib.nn.Module))
    for c in checks:
        if c.where:
            c.where = _short(c.where)
    return checks, outs, dict(zip(names, leaves))


def _worst_failing_pair(report):
    """The failing pair to show (heat map, pattern), when the verdict is that the gradient is wrong."""
    if report.verdict not in ("fail", ""):
        return None
    failing = [p for p in report.pairs if p.kind == "jacobian" and not p.passed and p.analytical.size
               and not p.note.startswith("not judged")]      # float32 noise, judged against float64 instead
    return max(failing, key=lambda p: p.max_abs_error, default=None)
