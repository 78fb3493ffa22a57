"""Gradient checking: analytical Jacobians (backward) against central finite differences.

`check_gradients` returns a `GradcheckReport` (what the CLI renders); `gradcheck` and
`gradgradcheck` wrap it with PyTorch's signature and return True, or raise `GradcheckError`
carrying the report. Beyond PyTorch's comparison the report names the worst element of every
(output, input) pair, and warns about float32 inputs and inputs within eps of a kink.

The checker checks what users run: besides the Jacobian rows (autograd.grad, one row per
output element), it runs an ordinary `.backward()` on fresh leaves, the exact path
`autograd grad` prints, and compares the `.grad` it leaves with the same cotangent applied to
the finite-difference Jacobian (`kind="grad"` results). The fast mode checks only that path.
"""
import dataclasses
import warnings

import numpy as np

from .. import errors
from ..grad_mode import enable_grad, no_grad
from ..tensor import Tensor
from . import functional, grad as _grad
from .backend import backend_of


class GradcheckError(errors.EngineError, RuntimeError):
    """A failed gradient check; `.report` holds every number behind the verdict."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


GradcheckError.__name__ = GradcheckError.__qualname__ = "GradcheckError"


@dataclasses.dataclass
class PairResult:
    """One (output, input) pair: both Jacobians (flattened to 2-D) and where they differ most."""

    output: int
    input: int
    output_name: str
    input_name: str
    output_shape: tuple
    input_shape: tuple
    analytical: np.ndarray
    numerical: np.ndarray
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple          # (output multi-index, input multi-index)
    worst_analytical: float
    worst_numerical: float
    passed: bool
    kind: str = "jacobian"      # "grad": the .grad an ordinary backward() left, vs v^T J numerical;
                                # "float64": a float32 gradient against the float64 one (analytical, numerical)
    note: str = ""              # how the verdict re-judged this pair ("pass at eps 1e-08", "unresolved")
    bound: object = None        # "float64" pairs: the allowed error, per element
    overflow: str = ""          # the dtype whose range f(x +- eps) left at the worst element ("" if none)

    def describe(self):
        if self.kind == "float64":
            return self._describe_float32()
        if self.overflow and not np.isfinite(self.worst_numerical):
            at = ", ".join(map(str, self.worst_index[1]))
            where = f"{self.input_name}[{at}]" if at else self.input_name
            big = np.finfo(self.overflow).max
            num = "NaN" if np.isnan(self.worst_numerical) else f"{self.worst_numerical:.10g}"
            return (f"the function overflowed at {where} (numerical {num}, analytical {self.worst_analytical:.10g}): "
                    f"f({where} +- eps) is infinite, beyond the largest {self.overflow} number ({big:.2g}), so "
                    "central differences cannot judge this element; check at smaller values, or rescale the "
                    "function")
        if np.isnan(self.worst_numerical) and not np.isnan(self.worst_analytical):
            at = ", ".join(map(str, self.worst_index[1]))
            where = f"{self.input_name}[{at}]" if at else self.input_name
            return (f"the finite-difference step left the function's domain at {where} (numerical NaN, analytical "
                    f"{self.worst_analytical:.10g}): {where} +- eps is outside where the function is defined "
                    "(sqrt, log or a fractional power near 0?), so central differences cannot judge this "
                    "element; check at a point further inside the domain, or with a smaller --eps")
        return self._describe()

    def _describe_float32(self):
        o, i = self.worst_index
        at = f"{self.input_name}[{', '.join(map(str, i))}]" if i else self.input_name
        what = "the .grad after backward()" if self.output_name == "backward()" else f"d{self.output_name}/d{self.input_name}"
        if np.isnan(self.worst_analytical) or np.isinf(self.worst_analytical):
            return (f"the float32 gradient holds {self.worst_analytical} at {at} ({what}) where the float64 one of the "
                    f"same computation is {self.worst_numerical:.10g}: a float32-only bug (an overflow, exp of a large "
                    "value, or a division by a number that rounds to 0 in float32)")
        return (f"the float32 gradient ({what}) differs from the float64 one of the same computation: worst at {at}: "
                f"float32 {self.worst_analytical:.10g}, float64 {self.worst_numerical:.10g} (abs error "
                f"{self.worst_abs_error:.3g}, more than {FLOAT32_K:g} times float32's own error there): a float32-only "
                "bug (precision lost in a cancellation, or a step done at lower precision)")

    @property
    def worst_abs_error(self):
        """|analytical - numerical| at the element the report names (max_abs_error is the largest
        anywhere in the pair, which may be another element: one within its tolerance)."""
        return abs(self.worst_analytical - self.worst_numerical)

    @property
    def worst_rel_error(self):
        e, n = self.worst_abs_error, abs(self.worst_numerical)
        return e / n if n > 0 else (float("inf") if e > 0 else 0.0)

    def _describe(self):
        o, i = self.worst_index
        if self.kind == "grad":
            at = f"{self.input_name}[{', '.join(map(str, i))}]" if i else self.input_name
            return (f"{self.input_name}.grad after backward() does not match finite differences: worst at "
                    f"{at}: .grad {self.worst_analytical:.10g}, numerical {self.worst_numerical:.10g} "
                    f"(abs error {self.worst_abs_error:.3g})")
        at = lambda name, idx: f"{name}[{', '.join(map(str, idx))}]" if idx else name  # noqa: E731
        return (f"Jacobian mismatch for output {self.output} ({self.output_name}) with respect to input "
                f"{self.input} ({self.input_name}): worst at {at(self.output_name, o)} / "
                f"{at(self.input_name, i)}: analytical {self.worst_analytical:.10g}, numerical "
                f"{self.worst_numerical:.10g} (abs error {self.worst_abs_error:.3g})")


@dataclasses.dataclass
class GradcheckReport:
    passed: bool
    eps: float
    atol: float
    rtol: float
    fast_mode: bool
    pairs: list
    checks: dict                 # {"deterministic": bool, "zero_grad_output": bool, "fast": bool}
    warnings: list
    failures: list
    suspects: list = dataclasses.field(default_factory=list)   # custom Functions on the graph
    verdict: str = ""            # "pass", "suspicious", "fail" or "inconclusive" (check_gradients(verdicts=True))
    suspicion: str = ""          # why a passing check is suspicious
    inconclusive: str = ""       # why finite differences could not judge it (verdict "inconclusive")

    def __bool__(self):
        return self.passed

    def summary(self):
        if self.passed:
            return "gradcheck passed"
        text = "; ".join(self.failures)
        if self.suspects:                 # said with the failure, not counted as one (JSON failures)
            text += f"; {SUSPECTS_WORDS}: {', '.join(self.suspects)}"
        return text


SUSPECTS_WORDS = "custom Functions on this graph (the first suspects: built-in ops are trusted, their backward is tested)"


def _float_inputs(inputs):
    return [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]


def _eval(func, inputs):
    """func's outputs as fresh arrays (an output may alias an input that is being perturbed)."""
    with no_grad():
        out = func(*inputs)
    out = out if isinstance(out, tuple) else (out,)
    return tuple(Tensor._make(np.array(o._data, copy=True)) for o in out)


class CheckInterrupted(KeyboardInterrupt):
    """Ctrl-C during a check: `.pairs` holds the (output, input) results finished before it,
    `.done` and `.total` the input elements differenced so far and in all."""

    def __init__(self, pairs, done, total):
        super().__init__()
        self.pairs, self.done, self.total = pairs, done, total


def _numerical(func, inputs, idx, eps, tick=None, overflow=None):
    """Central differences, one column per input element: list over outputs of (out_n, in_n).
    tick(): called after each element (a progress bar); overflow: see _numerical_columns."""
    return _numerical_columns(func, inputs, idx, eps, range(inputs[idx]._data.size), tick, overflow)


def _analytical(func, inputs, diff):
    """The backend's run of func (a graph) and the analytical Jacobians from it:
    (run, [output][input] -> (out_n, in_n) arrays)."""
    run = backend_of(func).forward(inputs, diff)
    return run, run.jacobian()


def _largest(err, ref):
    """The flat index of the largest error; where every error is 0, of the largest reference value
    (not a cell where both sides are 0)."""
    e = np.where(np.isnan(err), 0.0, err)
    if e.size and float(np.max(e)) > 0:
        return int(np.argmax(e))
    return int(np.argmax(np.abs(np.where(np.isfinite(ref), ref, 0.0))))


def _compare(a, n, atol, rtol):
    """(passed, flat index of the worst violation, max abs error, max rel error) for a vs n."""
    err = np.abs(a - n)
    allowed = atol + rtol * np.abs(n)
    ok = bool(np.all(err <= allowed)) and not np.any(np.isnan(a) != np.isnan(n))
    if not err.size:
        return ok, 0, 0.0, 0.0
    # failing: the element furthest beyond its tolerance; passing: the largest error (the one the
    # row's "abs err" reports -- argmax of err - allowed picked an element where both sides are 0)
    worst = _largest(err, n) if ok else int(np.argmax(np.where(np.isnan(err), np.inf, err - allowed)))
    # relative to a numerical 0 an error is infinite where it is outside the tolerance (analytical 1,
    # numerical 0 read "rel err 1e-12": that element was left out), and not counted where within it
    rel = np.where(np.abs(n) > 0, err / np.where(np.abs(n) > 0, np.abs(n), 1.0), np.where(err > allowed, np.inf, 0.0))
    return ok, worst, float(np.nanmax(err)), float(np.nanmax(rel))


def _cotangents(outs, seed):
    """What backward() is seeded with: 1 for a one-element output (as `autograd grad` and
    `y.backward()` do), else a seeded random cotangent."""
    rng = np.random.default_rng(seed)
    return [np.ones(o._data.shape) if o._data.size == 1 else rng.standard_normal(o._data.shape)
            for o in outs]


def _backward_grads(func, inputs, diff, cotangents):
    """The .grad an ordinary backward() leaves on fresh leaves copied from `inputs` (the path
    `autograd grad` prints): one float64 array per input in `diff` (zeros where it got none)."""
    return backend_of(func).backward_grads(inputs, diff, cotangents)


def _grad_results(func, inputs, diff, names, outs, numerical, atol, rtol, seed, overflows=None):
    """kind="grad" results: backward()'s .grad against v^T J from finite differences.
    overflows: per input, the masks _numerical_columns made (which columns overflowed)."""
    vs = _cotangents(outs, seed)
    grads = _backward_grads(func, inputs, diff, vs)
    res = []
    for i_pos, (i, g) in enumerate(zip(diff, grads)):
        n = sum(v.reshape(-1) @ numerical[i_pos][k] for k, v in enumerate(vs))
        n = np.asarray(n, dtype=np.float64).reshape(-1)
        a = g.reshape(-1)
        ok, w, max_abs, max_rel = _compare(a, n, atol, rtol)
        shape = inputs[i]._data.shape
        idx = tuple(int(v) for v in np.unravel_index(w, shape)) if len(shape) and a.size else ()
        over = ""
        if overflows is not None and a.size:
            hit = [k for k, m in enumerate(overflows[i_pos]) if m[:, w].any()]
            over = outs[hit[0]]._data.dtype.name if hit else ""
        res.append(PairResult(-1, i, "backward()", names[i], (), shape, a.reshape(1, -1),
                              n.reshape(1, -1), max_abs, max_rel, ((), idx),
                              float(a[w]) if a.size else 0.0, float(n[w]) if n.size else 0.0, ok,
                              kind="grad", overflow=over))
    return res


def _extra_checks(run, inputs, diff, nondet_tol, undefined_grad=True, batched_grad=False,
                  grad_dtypes=False, fresh_graph=None):
    """PyTorch's side checks on a backend's Run (backend.py): backward is deterministic and
    multiplies by grad_output (check_undefined_grad: an undefined grad_output is materialised as
    zeros, as a Function does by default, so a zero grad_output must give zero gradients); with
    check_batched_grad, a batch of grad_outputs (is_grads_batched) gives what one backward per
    grad_output gives; with check_grad_dtypes, each gradient has its input's dtype.
    fresh_graph(): a new Run of the same function on the same inputs."""
    res = {"deterministic": True}
    if undefined_grad:
        res["zero_grad_output"] = True
    msgs = []
    live = [run.outputs[k] for k in run.live]
    if not live:
        return res, msgs
    ins = [inputs[i] for i in diff]
    rng = np.random.default_rng(0)
    seeds = [rng.standard_normal(o._data.shape) for o in live]
    a = run.vjp(seeds)
    b = run.vjp(seeds)
    # a and b are later calls on a graph whose backward already ran (the Jacobian rows): a
    # backward right once and different after (state kept on ctx) gives a == b. So also the first
    # call on a fresh graph, with the same cotangents, against a second call on it: the same
    # computation twice, so any difference is the backward's own
    fresh = fresh_graph() if fresh_graph is not None else None
    pairs = [(a, b)]
    if fresh is not None and len(fresh.live) == len(live):
        pairs.append((fresh.vjp(seeds), a))
    spread, bad = 0.0, False
    for x, y in pairs:
        for gx, gy in zip(x, y):
            if gx is None or gy is None:
                continue
            d = np.abs(np.asarray(gx, dtype=np.float64) - np.asarray(gy, dtype=np.float64))
            if d.size:
                spread = max(spread, float(np.nanmax(d)) if not np.isnan(d).all() else 0.0)
                bad |= bool(np.any(d > nondet_tol))
    if bad:
        res["deterministic"] = False
        msgs.append("Backward is not reentrant, i.e., running backward with same input and grad_output "
                    "multiple times gives different values, although analytical gradient matches "
                    f"numerical gradient.The tolerance for nondeterminism was {nondet_tol}. (Here repeated calls "
                    f"with the same grad_output differ by up to {spread:.3g}.)")
    if grad_dtypes:
        res["grad_dtypes"] = all(g is None or np.asarray(g).dtype == t._data.dtype for g, t in zip(a, ins))
        if not res["grad_dtypes"]:
            msgs.append("Gradient has dtype mismatch")
    if undefined_grad:
        z = run.vjp([np.zeros(o._data.shape) for o in live])
        for g, ga in zip(z, a):
            # a finite non-zero gradient from a zero grad_output; or NaN where the gradient from a
            # random grad_output is finite (a backward that makes NaN of a zero grad_output:
            # torch.where(g != 0, ..., nan)). NaN where that gradient is not finite either is
            # 0 * inf (an overflowed gradient times the zero), said where the values are judged
            if g is None:
                continue
            g = np.asarray(g)
            finite_a = np.isfinite(np.asarray(ga, dtype=np.float64)) if ga is not None and np.shape(ga) == g.shape \
                else np.zeros(g.shape, dtype=bool)
            if np.any(np.isfinite(g) & (g != 0)) or np.any(np.isnan(g) & finite_a):
                res["zero_grad_output"] = False
                msgs.append("backward not multiplied by grad_output")
                break
    if batched_grad:
        ok, msg = _batched_check(run, rng, nondet_tol)
        res["batched_grad"] = ok
        if not ok:
            msgs.append(msg)
    return res, msgs


def _batched_check(run, rng, tol, batch=3):
    """is_grads_batched over `batch` grad_outputs == one backward per grad_output."""
    bad = run.not_batch_aware()
    if bad:
        return False, f"check_batched_grad: {bad}, so it cannot take a batch of grad_outputs"
    live = [run.outputs[k] for k in run.live]
    seeds = [rng.standard_normal((batch,) + o._data.shape) for o in live]
    together = run.vjp(seeds, batched=True)
    for b in range(batch):
        one = run.vjp([s[b] for s in seeds])
        for k, (g1, gb) in enumerate(zip(one, together)):
            if (g1 is None) != (gb is None):
                return False, f"Batched grad check failed for input {k}: a gradient is missing in one of the two"
            if g1 is not None and not np.allclose(np.asarray(gb)[b], np.asarray(g1), rtol=1e-10, atol=1e-12 + tol):
                return False, (f"Batched grad check failed for input {k}: backward with a batch of grad_outputs "
                               f"differs from one backward per grad_output (row {b})")
    return True, ""


def _kink_warnings(func, inputs, eps, low=None):
    """Evaluate once with kink watching on: ops whose input lies within eps of a kink. low (a list):
    gets the first dtype below float64 an op inside f received."""
    from ..observe import KinkWatch, observe
    with observe(KinkWatch(eps)) as watch:
        _eval(func, inputs)
    if low is not None:
        low.extend(watch.low[:1])
    out = []
    for name, where in watch.found:
        out.append(f"an input of '{name}' lies within eps={eps:g} of a point where it is not differentiable "
                   f"(at index {where}); a mismatch there may be the op's subgradient choice, not a bug")
    return out


@dataclasses.dataclass
class StepResolution:
    """How finely float64 resolves the step eps at the inputs' values, at the worst element."""
    ratio: float        # spacing(|x|) / eps: the relative round-off of one central difference there
    lost: bool          # x + eps == x (or x - eps == x) there: no difference at all
    input: int          # where: the input's position ...
    index: tuple        # ... and the element
    value: float        # x there
    spacing: float      # the gap to the next float64 there


def step_resolution(inputs, eps):
    """StepResolution of eps at the element of `inputs` (arrays or Tensors) of largest magnitude,
    where float64's spacing is widest (a float32 input is judged again on float64 copies, so
    float64 decides); None when there is no finite element."""
    worst = None
    for i, t in enumerate(inputs):
        x = np.asarray(t._data if isinstance(t, Tensor) else t, dtype=np.float64)
        ax = np.abs(x).reshape(-1)
        ax = np.where(np.isfinite(ax), ax, -1.0)
        if ax.size == 0 or ax.max() < 0:
            continue
        k = int(np.argmax(ax))
        if worst is None or ax[k] > abs(worst.value):
            v = float(x.reshape(-1)[k])
            idx = tuple(int(j) for j in np.unravel_index(k, x.shape)) if x.ndim else ()
            spacing = float(np.spacing(abs(v)))
            worst = StepResolution(spacing / eps, v + eps == v or v - eps == v, i, idx, v, spacing)
    return worst


def _names(func, inputs, names):
    if names:
        return list(names)
    try:
        import inspect
        params = list(inspect.signature(func).parameters)
        if len(params) == len(inputs):
            return params
    except (TypeError, ValueError):
        pass
    return [f"input{i}" for i in range(len(inputs))]


def check_gradients(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=False, nondet_tol=0.0,
                    input_names=None, output_names=None, seed=0, check_undefined_grad=True,
                    check_batched_grad=False, check_grad_dtypes=False, verdicts=False, progress=None):
    """Run the full check (or the fast v^T J u check) and return a GradcheckReport.

    verdicts=True also tells a bug from numerics: a check within tolerance whose discrepancy is
    far above the finite-difference error itself (estimated by Richardson: the same differences
    with eps/2, on the input elements where analytical and numerical differ most) is
    "suspicious" -- a backward off by 0.1 % passes rtol=1e-3, but float64 central differences
    are good to ~1e-10 there."""
    _, inputs = functional.as_tuple(inputs)
    inputs = tuple(inputs)
    func = _with_grad_if_needed(func, inputs)
    diff = _float_inputs(inputs)
    names = _names(func, inputs, input_names)
    warns = []
    for i in diff:
        if inputs[i]._data.dtype != np.float64:
            warns.append(f"input {i} ({names[i]}) is {inputs[i]._data.dtype.name}: finite differences are "
                         "unreliable below float64; use float64 inputs for a trustworthy check")
    res = step_resolution([inputs[i] for i in diff], eps)
    if res is not None and res.ratio > rtol / 10:
        name = names[diff[res.input]]
        where = f"{name}[{', '.join(map(str, res.index))}]" if res.index else name
        warns.append(f"eps={eps:g} is only {1 / res.ratio:.3g} times float64's spacing at {where} = {res.value:g} "
                     f"({res.spacing:.2g}): round-off in each central difference is about {res.ratio:.1g} of it, "
                     f"over a tenth of rtol={rtol:g}, enough to hide or fake an error near the tolerance; use a larger eps "
                     "(1e-6 is PyTorch's default)")
    low = []                          # float32 (or less) inside f, whatever its inputs
    warns += _kink_warnings(func, inputs, eps, low)
    for w in warns:
        warnings.warn(w, UserWarning, stacklevel=3)
    if fast_mode:
        report = _fast(func, inputs, diff, names, eps, atol, rtol, warns, seed, output_names)
        if report.passed and verdicts:
            report = _fast_directions(func, inputs, diff, names, report, eps, rtol, seed)
        if report.passed:
            report.verdict = ("suspicious" if report.suspicion else "pass") if verdicts else ""
            return report
        outs = _eval(func, inputs)
        large = sum(o._data.size for o in outs) * sum(inputs[i]._data.size for i in diff) > FAST_FULL_FOLLOW_UP
        if large and verdicts and any(inputs[i]._data.dtype != np.float64 for i in diff):
            judged = _fast_against_float64(func, inputs, diff, report, eps, atol, rtol, input_names,
                                           output_names, seed)
            if judged is not None:
                return judged
        if large:
            # too large for the dense Jacobian: find the wrong input elements in blocks instead
            settled = _fast_follow_up(func, inputs, diff, names, report, eps, atol, rtol, seed)
            report.passed = False
            report.verdict = ("fail" if settled else "inconclusive") if verdicts else ""
            if verdicts and not settled:
                report.inconclusive = report.failures[1]
                report.failures.insert(0, f"inconclusive: {report.inconclusive}")
            return report
        full = check_gradients(func, inputs, eps=eps, atol=atol, rtol=rtol, fast_mode=False,
                               nondet_tol=nondet_tol, input_names=input_names, output_names=output_names,
                               check_undefined_grad=check_undefined_grad,
                               check_batched_grad=check_batched_grad, check_grad_dtypes=check_grad_dtypes,
                               verdicts=verdicts, seed=seed)
        full.fast_mode = True
        full.checks["fast"] = False
        if verdicts and full.verdict in ("pass", "suspicious", "inconclusive"):
            # the full check, with every verdict (steps re-judged, float32 against float64), is the
            # judge of the fast one's mismatch: a projection of finite differences fails with them
            # (float32 inside f was "fast check failed" while the full check found it right)
            full.warnings.append(f"the fast check's mismatch ({report.failures[0]}) is finite differences': the "
                                 f"full check, element by element, is {full.verdict}")
            return full
        # the full check's own failure leads (its rows are what the table shows: the fast one's
        # float32 projection, 0.227 against 0.285, read as a 25 % error for a 1 % bug, red team)
        full.failures.append(report.failures[0])
        full.passed = False
        if verdicts:
            full.verdict = "fail"
        return full
    run, analytical = _analytical(func, inputs, diff)
    outs = run.outputs
    onames = list(output_names) if output_names else [f"output{k}" if len(outs) > 1 else "output"
                                                       for k in range(len(outs))]
    pairs = []
    failures = []
    numericals = []
    total = sum(inputs[i]._data.size for i in diff)
    done = [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)
    overflows = []
    for i_pos, i in enumerate(diff):
        over = []
        try:
            numerical = _numerical(func, inputs, i, eps, tick, overflow=over)
        except KeyboardInterrupt:
            raise CheckInterrupted(pairs, done[0], total) from None
        numericals.append(numerical)
        overflows.append(over)
        for k, o in enumerate(outs):
            a = analytical[k][i_pos]
            n = numerical[k]
            ok, w, max_abs, max_rel = _compare(a, n, atol, rtol)
            if a.size:                   # an empty input or output has no worst element
                w = np.unravel_index(w, a.shape)
                o_idx = tuple(int(v) for v in np.unravel_index(w[0], o._data.shape)) if o._data.ndim else ()
                i_idx = tuple(int(v) for v in np.unravel_index(w[1], inputs[i]._data.shape)) if inputs[i]._data.ndim else ()
            else:
                w, o_idx, i_idx = (0, 0), (), ()
            p = PairResult(k, i, onames[k], names[i], o._data.shape, inputs[i]._data.shape, a, n, max_abs,
                           max_rel, (o_idx, i_idx), float(a[w]) if a.size else 0.0,
                           float(n[w]) if n.size else 0.0, ok,
                           overflow=o._data.dtype.name if a.size and over[k][w] else "")
            pairs.append(p)
            if not ok:
                failures.append(p.describe())
    for p in _grad_results(func, inputs, diff, names, outs, numericals, atol, rtol, seed, overflows):
        pairs.append(p)
        if not p.passed:
            failures.append(p.describe())
    suspects = run.custom_functions()
    checks, msgs = _extra_checks(run, inputs, diff, nondet_tol, check_undefined_grad, check_batched_grad,
                                 check_grad_dtypes, lambda: backend_of(func).forward(inputs, diff))
    failures += msgs
    report = GradcheckReport(not failures, eps, atol, rtol, False, pairs, checks, warns, failures, suspects)
    if not verdicts:
        return report
    report.verdict = "fail" if failures else "pass"
    if len(failures) > len(msgs):     # finite-difference mismatches: are they the gradient's?
        # judged as when they are the only failures, and a side check's failure stays one (a
        # float32 backward not multiplied by grad_output led with float32's noise in its
        # differences, "confined to 10 of 20 columns: wrong for some inputs only", red team)
        report.failures = [f for f in failures if f not in msgs]
        if any(inputs[i]._data.dtype != np.float64 for i in diff):
            _against_float64(func, inputs, diff, report, eps, atol, rtol, input_names, output_names, seed)
        else:
            _rejudge_steps(func, inputs, report, outs, atol, rtol, seed,
                           kink=any("not differentiable" in w for w in warns), low=low[0] if low else "")
        if msgs:
            report.failures = report.failures + msgs
            report.passed, report.verdict, report.suspicion = False, "fail", ""
    if not failures:
        report.suspicion = _suspicion(func, inputs, pairs, eps)
        if report.suspicion:
            report.verdict = "suspicious"
    return report


FLOAT32_K = 64.0              # a float32 gradient may differ from float64 by this times float32's own error
STEPS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)   # the steps a failing element is re-judged at
COLUMNS_REJUDGED = 8          # input elements per failing pair re-differenced at every step


def _against_float64(func, inputs, diff, report, eps, atol, rtol, input_names, output_names, seed):
    """A float32 check whose finite differences fail, judged against a float64 reference of the
    same computation (the report is amended, never replaced): the float64 copies are checked
    against their own finite differences (with every verdict of a float64 check), and each
    float32 gradient must lie within FLOAT32_K times float32's own error of the float64 one --
    float32's resolution, or the float32 forward's measured error when that is larger. A NaN or
    inf in the float32 gradient where the float64 one is finite is a failure. The float32 rows
    stay in the report, marked as not judged by their finite differences."""
    ins64 = tuple(Tensor._make(inputs[i]._data.astype(np.float64)).requires_grad_(True) if i in diff else inputs[i]
                  for i in range(len(inputs)))
    try:
        r64 = check_gradients(func, ins64, eps=eps, atol=atol, rtol=rtol, input_names=input_names,
                              output_names=output_names, seed=seed, verdicts=True)
        out32, out64 = _eval(func, inputs), _eval(func, ins64)
    except Exception:  # noqa: BLE001 - the function may not take float64: the float32 verdict stands
        report.warnings.append("the function does not run on float64 copies of the float32 inputs, so the float32 "
                               "finite differences could not be judged against a float64 reference")
        return
    scale = max((float(np.max(np.abs(o._data))) for o in out64 if o._data.size), default=0.0) or 1.0
    err_f = max((float(np.max(np.abs(a._data.astype(np.float64) - b._data))) for a, b in zip(out32, out64)
                 if a._data.size), default=0.0) / scale
    u = max(float(np.finfo(np.float32).eps) / 2, err_f)
    refs = []
    p64 = {(p.kind, p.output, p.input): p for p in r64.pairs}
    vs = _cotangents(out64, seed)
    spread = _float32_sensitivity(func, ins64, diff, vs, seed)
    scale_of = {}
    for q in r64.pairs:
        if q.kind in ("jacobian", "grad") and q.analytical.size:
            top = float(np.max(np.abs(np.where(np.isfinite(q.analytical), q.analytical, 0.0))))
            scale_of[(q.kind, q.output)] = max(scale_of.get((q.kind, q.output), 0.0), top)
    for p in report.pairs:
        q = p64.get((p.kind, p.output, p.input))
        if q is None or p.kind not in ("jacobian", "grad"):
            continue
        a, ref = p.analytical.astype(np.float64), q.analytical
        # float32's error in a result is relative to the terms summed into it, not to the result:
        # .grad = v^T J sums v_i J_ij over the outputs, so its scale is |v|^T |J| (a LayerNorm's
        # gradient cancels O(1) terms down to 1e-5; its float32 error is float32's times O(1))
        terms = 0.0
        if p.kind == "grad":
            jac = [r for r in r64.pairs if r.kind == "jacobian" and r.input == p.input]
            if len(jac) == len(vs):
                terms = sum(np.abs(v).reshape(-1) @ np.abs(r.analytical) for v, r in zip(vs, jac)).reshape(ref.shape)
        # and the gradient's own sensitivity to float32's rounding of its inputs (a net whose
        # layers cancel: the float64 gradient itself moves that much when x moves by float32's eps)
        moved = spread.get((p.kind, p.output, p.input), 0.0)
        # and the largest gradient of the same backward pass, any input's: the intermediate
        # gradients are summed at float32's resolution of their size, also into a gradient that
        # cancels to 0 in exact arithmetic (a bias shifting every softmax logit of its row: its
        # float32 gradient is a residue of 1e-8 where float64's is 1e-17, which was "a
        # float32-only bug" of built-in ops alone)
        widest = scale_of.get((p.kind, p.output), 0.0)
        bound = FLOAT32_K * (u * (np.abs(ref) + (float(np.max(np.abs(ref))) if ref.size else 0.0) + terms + widest)
                             + moved) + 1e-30
        err = np.abs(a - ref)
        bad = ~(err <= bound)                                   # NaN and inf are outside every bound
        # failing: the element furthest beyond its bound (NaN or inf first); passing: the largest
        # error -- argmax of err - bound picked a cell where both gradients are 0 (red team B)
        over = np.where(np.isfinite(err), err / bound, np.inf)
        w = (int(np.argmax(np.where(bad, over, -np.inf))) if bad.any() else _largest(err, ref)) if a.size else 0
        wi = np.unravel_index(w, a.shape) if a.size else (0, 0)
        o_idx = tuple(int(v) for v in np.unravel_index(wi[0], p.output_shape)) if p.output_shape else ()
        i_idx = tuple(int(v) for v in np.unravel_index(wi[1], p.input_shape)) if p.input_shape else ()
        finite = err[np.isfinite(err)]
        refs.append(PairResult(p.output, p.input, p.output_name, p.input_name, p.output_shape, p.input_shape, a, ref,
                               float(np.max(finite)) if finite.size else float("nan"),
                               float(np.max(finite / np.maximum(np.abs(ref[np.isfinite(err)]), 1e-300)))
                               if finite.size else float("nan"),
                               (o_idx, i_idx), float(a[wi]) if a.size else 0.0, float(ref[wi]) if a.size else 0.0,
                               not bool(bad.any()), kind="float64", bound=bound))
        if not p.passed:
            p.note = "not judged (float32 steps)"
    report.pairs.extend(refs)
    wrong = [r.describe() for r in refs if not r.passed]
    if r64.verdict == "fail" or r64.verdict == "inconclusive":
        # the evidence shown is the float64 copies' own check (their rows, the heat map and the
        # error's shape), not the float32 differences, which are noise here (red team: a FAIL
        # with no failing row, and float32 differences in the table)
        own = {(q.kind, q.output, q.input): q for q in r64.pairs}
        for k, q in enumerate(report.pairs):
            if q.kind in ("jacobian", "grad") and (q.kind, q.output, q.input) in own:
                r = own[(q.kind, q.output, q.input)]
                r.note = ("pass on float64 copies" if r.passed else
                          "wrong on float64 copies" if r64.verdict == "fail" else "float64 copies: unresolved")
                report.pairs[k] = r
        report.verdict = r64.verdict
        report.inconclusive = r64.inconclusive
        report.failures = [f"on float64 copies of the float32 inputs: {f}" for f in r64.failures] + wrong
        return
    if wrong:
        report.failures = wrong
        return
    worst = max((p.max_abs_error for p in report.pairs if p.kind == "jacobian"), default=0.0)
    report.warnings.append(
        f"float32 finite differences cannot resolve this gradient (max abs error {worst:.3g}); judged instead "
        f"against a float64 reference of the same computation: the float64 gradient passes its own check, and the "
        f"float32 one is within {FLOAT32_K:g} times float32's error of it (float32's error here: {u:.2g} relative)")
    report.failures = []
    report.passed = True
    report.verdict = "pass"
    if r64.verdict == "suspicious":       # the float64 copy's own verdict carries (a 0.1 % bug)
        report.verdict = "suspicious"
        report.suspicion = f"on float64 copies of the float32 inputs: {r64.suspicion}"
        report.warnings[-1] = report.warnings[-1].replace("the float64 gradient passes its own check",
                                                          "the float64 gradient is within its own tolerance "
                                                          "(but suspicious, below)")


def _float32_sensitivity(func, ins64, diff, vs, seed, tries=2):
    """{(kind, output, input): |change|} of the float64 gradients when every float32 input moves by
    float32's resolution (x * (1 + r eps32), r random in [-1, 1]): the error any float32
    computation of this gradient has, however well written. An empty dict if it cannot run."""
    rng = np.random.default_rng(seed + 32)
    e32 = float(np.finfo(np.float32).eps)
    out = {}
    try:
        _, base = _analytical(func, ins64, diff)
        base_g = _backward_grads(func, ins64, diff, vs)
        for _ in range(tries):
            moved = tuple(Tensor._make(t._data * (1 + e32 * rng.uniform(-1, 1, t._data.shape))).requires_grad_(True)
                          if i in diff else t for i, t in enumerate(ins64))
            _, jac = _analytical(func, moved, diff)
            grads = _backward_grads(func, moved, diff, vs)
            for k, row in enumerate(jac):
                for i_pos, i in enumerate(diff):
                    d = np.abs(row[i_pos] - base[k][i_pos])
                    key = ("jacobian", k, i)
                    out[key] = np.maximum(out.get(key, 0.0), np.where(np.isfinite(d), d, 0.0))
            for i_pos, i in enumerate(diff):
                d = np.abs(grads[i_pos] - base_g[i_pos]).reshape(1, -1)
                key = ("grad", -1, i)
                out[key] = np.maximum(out.get(key, 0.0), np.where(np.isfinite(d), d, 0.0))
    except Exception:  # noqa: BLE001 - a function that cannot run there: no allowance for it
        return {}
    return out


_LOW_EPS = {"float32": 2.0 ** -23, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}   # machine epsilon by name
LOW_INSIDE_SLACK = 1000.0     # float32 inside f: gaps below this times its eps, of the pass's largest gradient, are its round-off


def _rejudge_steps(func, inputs, report, outs, atol, rtol, seed, kink=False, low=""):
    """Failing float64 elements judged again at every step in STEPS (the report is amended): an
    element passes when finite differences agree with the analytical value at two adjacent steps;
    it is wrong when they settle (two adjacent steps agree with each other to a tenth of the gap)
    on a value the analytical one does not match; otherwise finite differences did not converge
    there and the verdict is "inconclusive", with the reason in words."""
    failing = [p for p in report.pairs if p.kind == "jacobian" and not p.passed and p.analytical.size]
    if not failing:
        return
    if any((~np.isfinite(p.analytical) & np.isfinite(p.numerical)).any() for p in failing):
        return      # NaN or inf in the gradient where finite differences give a number: wrong, at any step
    cols = {}
    for p in failing:
        bad = ~(np.abs(p.analytical - p.numerical) <= atol + rtol * np.abs(p.numerical))
        gap = np.where(bad, np.nan_to_num(np.abs(p.analytical - p.numerical), nan=np.inf), -1.0).max(axis=0)
        picked = [int(c) for c in np.argsort(-gap)[:COLUMNS_REJUDGED] if gap[c] >= 0]
        cols[p.input] = sorted(set(cols.get(p.input, [])) | set(picked))
    steps = sorted(set(STEPS) | {report.eps}, reverse=True)
    nums = {i: [_numerical_columns(func, inputs, i, h, c) for h in steps] for i, c in cols.items()}
    verdicts, best, nan_seen, rejudged, hidden, frozen = [], {}, False, {}, None, False
    low_gap = low_widest = -1.0
    h = np.asarray(steps, dtype=np.float64)[:, None, None]
    for p in failing:
        c = cols[p.input]
        a = p.analytical[:, c]
        n = np.stack([nums[p.input][k][p.output] for k in range(len(steps))])          # (steps, rows, cols)
        bad = ~(np.abs(a - p.numerical[:, c]) <= atol + rtol * np.abs(p.numerical[:, c]))
        nan_seen |= bool(np.isnan(n[:, bad]).any())
        gap = np.abs(a - n)
        agree = gap <= atol + rtol * np.abs(n)
        ok = agree[:-1] & agree[1:]                                                    # two adjacent steps
        # float64's round-off of f's own value, over the step: (f(x+h) - f(x-h)) / 2h cannot
        # resolve a change smaller than eps64 |f| / h. A gap below it at a step is no evidence:
        # 1e12 + 1e-3 x^2 rounds to the same f on both sides (differences 0 at every step, which
        # "agree" with each other), and so does exp(600) beside exp(700) in one sum (red team A1-2)
        f = np.abs(outs[p.output]._data.astype(np.float64)).reshape(-1)
        floor = 2 * _EPS64 * np.where(np.isfinite(f), f, 0.0)[None, :, None] / h          # (steps, rows, 1)
        resolved = gap > floor
        # f's value did not move at all over a step (differences exactly 0) although it moved at a
        # larger one, and the gradient is not 0: the step is below f's own resolution -- float32
        # inside a float64 f, whose outputs are no longer float32 values once mixed with float64
        # (a red team's float32 sin times x "settled" on 0 at 1e-7..1e-10 and was "wrong at every
        # step" at second order) -- no evidence either way. A derivative that is 0 (round, a clamp's
        # flat part) gives zeros at every step, the largest too, and still settles on 0
        moved = np.logical_or.accumulate(n != 0, axis=0)
        still = (n == 0) & np.concatenate([np.zeros_like(moved[:1]), moved[:-1]]) & (a != 0)[None]
        resolved &= ~still
        frozen |= bool(still[:, bad].any())
        # settled: two adjacent steps agree with each other as the check asks the two sides to
        # (atol + rtol*|numerical|), and to a tenth of their gap to the analytical value. Within
        # a tenth of the gap alone is not enough: where the differences are tiny beside a huge
        # analytical value (sin(1e9 x): |n| ~ 1/eps, the gradient 1e9) every step "agrees" so
        # (or to round-off's floor at the smaller step, where that exceeds the tolerance: a huge f's
        # differences cannot agree to rtol, and still settle ten times closer than the gap)
        fine = np.abs(n[:-1] - n[1:]) <= np.minimum(0.1 * np.minimum(gap[:-1], gap[1:]),
                                                   np.maximum(atol + rtol * np.abs(n[1:]), 3 * floor[1:]))
        settled = fine & ~agree[:-1] & ~agree[1:] & resolved[:-1] & resolved[1:]
        under = bad & ~ok.any(axis=0) & ~resolved.any(axis=0)       # below round-off at every step
        if under.any() and hidden is None:
            r, q = np.argwhere(under)[0]
            hidden = (p, int(r), int(c[q]), float(f[r]), float(gap[0, r, q]))
        passed, wrong = ok.any(axis=0) & bad, settled.any(axis=0) & ~ok.any(axis=0) & bad
        if wrong.any() and low and not kink:
            # f computes in float32 inside (an op in it received float32 though the inputs are
            # float64): its gradient carries float32's round-off, relative to the pass's largest
            # gradient, and its differences freeze below float32's resolution, so a gap of that
            # size is no bug (red team: LayerNorm in float32 of values ~300 and a shift c, whose
            # gradient is 0 exactly: analytical -3e-5, "wrong at every step"). A gap beyond it (a
            # 0.1 % error) still is
            widest = max((float(np.max(np.abs(np.where(np.isfinite(q.analytical), q.analytical, 0.0))))
                          for q in report.pairs if q.kind == "jacobian" and q.output == p.output and q.analytical.size),
                         default=0.0)
            slack = LOW_INSIDE_SLACK * _LOW_EPS.get(low, _LOW_EPS["float32"]) * widest
            settled_gap = np.min(np.where(settled, gap[1:], np.inf), axis=0)      # where they settled
            worst_gap = float(np.max(np.where(wrong, settled_gap, 0.0)))
            if worst_gap <= slack:
                wrong = np.zeros_like(wrong)
                low_gap = max(low_gap, worst_gap)
                low_widest = max(low_widest, widest)
        if wrong.any():
            verdicts.append("fail")
            # at a kink the differences settle on the average of the two one-sided slopes, which
            # is no verdict on the op's subgradient choice (the warning and locate say so)
            p.note = "differs at every step: a kink?" if kink else "wrong at every step"
        elif passed.sum() == bad.sum():
            verdicts.append("pass")
            okb = ok[:, bad]                         # (adjacent step pairs, failing elements)
            every = okb.all(axis=1)
            k = int(np.argmax(every)) if every.any() else int(np.argmax(okb.sum(axis=1)))
            best[p.input_name] = steps[k + 1]
            p.note = f"pass at eps {steps[k + 1]:.0e}"
            # the row shows the differences it passed with: each failing element at its first
            # step pair that agrees (it showed eps's NaN beside "pass", red team C5)
            n_best = p.numerical.copy()
            sub = n_best[:, c]
            first = np.argmax(ok, axis=0) + 1                                           # (rows, cols)
            rows, cl = np.nonzero(bad)
            sub[rows, cl] = n[first[rows, cl], rows, cl]
            n_best[:, c] = sub
            _restate(p, n_best, atol, rtol)
            rejudged[(p.output, p.input)] = n_best
        else:
            verdicts.append("inconclusive")
            p.note = "unresolved"
    if "fail" in verdicts:
        return
    # the .grad rows: backward()'s .grad must be v^T J of the analytical Jacobian the steps vouch for
    vs = _cotangents(outs, seed)
    table = {(p.output, p.input): p.analytical for p in report.pairs if p.kind == "jacobian"}
    for p in report.pairs:
        if p.kind != "grad" or p.passed:
            continue
        vta = sum(v.reshape(-1) @ table[(k, p.input)] for k, v in enumerate(vs) if (k, p.input) in table)
        vta = np.asarray(vta, dtype=np.float64).reshape(-1)
        got = p.analytical.reshape(-1)
        if not np.all((got == vta) | (np.abs(got - vta) <= report.atol + report.rtol * np.abs(vta))):
            return                        # backward() disagrees with the Jacobian rows: a real failure
        p.note = "pass (= v^T J)"
        nums_t = {(q.output, q.input): rejudged.get((q.output, q.input), q.numerical) for q in report.pairs
                  if q.kind == "jacobian"}
        vtn = sum(v.reshape(-1) @ nums_t[(k, p.input)] for k, v in enumerate(vs) if (k, p.input) in nums_t)
        if np.ndim(vtn):                  # v^T of the differences the rows passed with
            _restate(p, np.asarray(vtn, dtype=np.float64).reshape(1, -1), report.atol, report.rtol)
    if all(v == "pass" for v in verdicts):
        for p in report.pairs:
            if p.note.startswith("pass"):
                p.passed = True
        at = ", ".join(f"{name} at eps {h:.0e}" for name, h in best.items())
        report.warnings.append(
            f"finite differences with eps={report.eps:g} were untrustworthy here (a step too large for how fast the "
            f"function changes, round-off, or a step leaving the domain); at smaller or larger steps they agree with "
            f"the analytical gradient ({at}), so it is right")
        report.failures = []
        report.passed = True
        report.verdict = "pass"
        return
    report.verdict = "inconclusive"
    # an element whose differences are no number says why in its own words (an overflow, the domain)
    said = next((p for p in failing if p.note == "unresolved" and not np.isfinite(p.worst_numerical)), None)
    if low and said is None and low_gap >= 0:          # a gap waived as float32's round-off: say so
        report.inconclusive = (f"f computes in {low} inside (an op in it receives {low} values, though its inputs "
                               f"are float64): its gradient carries {low}'s round-off: {low_gap:.2g} here, beside "
                               f"gradients of {low_widest:.2g}, and its finite "
                               f"differences freeze below {low}'s resolution, so neither can be judged to "
                               f"atol={report.atol:g}; check it in float64 throughout, or with a tolerance above "
                               f"{low}'s error")
    elif said is None and hidden is not None:
        report.inconclusive = _why_hidden(*hidden, steps[0])
    else:
        report.inconclusive = said.describe() if said is not None else _why_unresolved(func, inputs, nan_seen, frozen)
    report.failures.insert(0, f"inconclusive: {report.inconclusive}")


def _restate(p, numerical, atol, rtol):
    """A re-judged pair's errors and worst element, against the differences it was judged by."""
    p.numerical = numerical
    _, w, p.max_abs_error, p.max_rel_error = _compare(p.analytical, numerical, atol, rtol)
    if not p.analytical.size:
        return
    r, col = np.unravel_index(w, p.analytical.shape)
    p.worst_analytical, p.worst_numerical = float(p.analytical[r, col]), float(numerical[r, col])
    o_idx = tuple(int(v) for v in np.unravel_index(r, p.output_shape)) if len(p.output_shape) else ()
    i_idx = tuple(int(v) for v in np.unravel_index(col, p.input_shape)) if len(p.input_shape) else ()
    p.worst_index = (o_idx, i_idx)


def _why_hidden(p, row, col, value, gap, largest):
    """The words for a gradient that float64's round-off of f hides at every step."""
    o_idx = tuple(int(v) for v in np.unravel_index(row, p.output_shape)) if len(p.output_shape) else ()
    i_idx = tuple(int(v) for v in np.unravel_index(col, p.input_shape)) if len(p.input_shape) else ()
    out = p.output_name + (f"[{', '.join(map(str, o_idx))}]" if o_idx else "")
    inp = p.input_name + (f"[{', '.join(map(str, i_idx))}]" if i_idx else "")
    return (f"round-off: {out} is {value:.3g}, which float64 resolves only to about {_EPS64 * value:.2g}; an error "
            f"of {gap:.3g} in d {out}/d {inp} moves f(x +- eps) by {gap * largest:.2g} even at eps={largest:g}, "
            f"below that, so finite differences cannot say whether the gradient is right (check where the output "
            f"is smaller, e.g. without a large constant term)")


def _why_unresolved(func, inputs, nan_seen, frozen=False):
    """The reason, in words, that finite differences converged at no step. frozen: f's value did
    not move at all over small steps where it moved at larger ones."""
    if nan_seen:
        return ("finite differences leave the function's domain at some steps and do not settle at the others "
                "(sqrt, log or a fractional power near 0?): check at a point further inside the domain")
    outs = _eval(func, inputs)
    vals = [o._data for o in outs if o._data.dtype == np.float64 and o._data.size]
    if frozen or vals and all(np.array_equal(v, v.astype(np.float32).astype(np.float64)) for v in vals) and \
            any(not np.array_equal(v, np.round(v)) for v in vals):
        if frozen and not (vals and all(np.array_equal(v, v.astype(np.float32).astype(np.float64)) for v in vals)):
            return ("f's value does not change at all over the small steps although it changes at larger ones: f "
                    "computes at a lower precision inside (float32?), so its differences carry that precision's "
                    "round-off over the step and no step resolves the gradient to the tolerance; compute in float64 "
                    "inside f, or check with --dtype float32 and its tolerances")
        return ("f computes in float32 inside (its float64 outputs hold only float32 values), so its differences "
                "carry float32's round-off (~1e-7 relative) over the step: no step resolves the gradient to the "
                "tolerance; compute in float64 inside f, or check with --dtype float32 and its tolerances")
    return ("no step makes finite differences converge: they change with the step by more than the gap between "
            "analytical and numerical (round-off, or a function that varies faster than a step can resolve: "
            "ill-conditioned), so they cannot say whether the gradient is right")


_EPS64 = float(np.finfo(np.float64).eps)
SUSPICION_RATIO = 1000.0      # discrepancy / finite-difference error that is not numerics
COLUMNS_RESAMPLED = 4         # input elements per pair re-differenced with eps/2
STILL_STEPS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 1e3)   # larger steps at which differences exactly 0 are taken again
JUMP = 100.0                  # f moving past its flat steps by this times the gradient: a jump, not a derivative


def _is_float32(v):
    v = np.asarray(v, dtype=np.float64)
    return v.astype(np.float32).astype(np.float64) == v


def _value_spacing(f, as32):
    """The spacing of f's values: float32's where f computes them in float32 (as32: float32 inside
    f absorbs a change below its spacing: (x.float() * 1e-8 + 1).sum() does not move even over a
    step of 1, and its gradient 1e-8 is right), else float64's. 0 has float32's smallest spacing:
    nothing absorbs a change of it."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(as32, np.spacing(f.astype(np.float32)).astype(np.float64), np.spacing(f))


def _float32_valued(func, inputs, p, f0):
    """Per output element of pair p: whether f's value is a float32 number both at the inputs and at
    a step of ~1e-3 or ~0.77 along the input element where f moves most -- f computes it in float32
    (a float64 value is a float32 number by chance at one point, as the sum 2.0 of nice inputs is,
    not also at a point that is no short binary fraction away)."""
    as32 = _is_float32(f0)
    if not as32.any():
        return as32
    j = int(np.argmax(np.abs(p.numerical).sum(axis=0)))
    x = inputs[p.input]
    seen = np.zeros_like(as32)
    # steps that are no short binary fractions: a float64 f of nice inputs (integers, 0.5) has nice
    # values at nice steps too, float32 numbers both (a red team's x^2 + x at -2, -1, 0.5, 3 is
    # 12.75, and 20.75 a step of 1 away), which made its leak "float32's spacing"; the larger step:
    # a derivative of 1e-8 moves a float32 f of 1 only there
    for step in (1.2345679e-3, 0.76543211):
        moved = Tensor._make(np.array(x._data, dtype=x._data.dtype)).requires_grad_(True)
        moved._data.reshape(-1)[j] += step
        try:
            f1 = _eval(func, tuple(moved if k == p.input else t for k, t in enumerate(inputs)))[p.output]
        except Exception:  # noqa: BLE001 - f does not run there: no second point
            continue
        f1 = np.abs(f1._data.astype(np.float64)).reshape(-1)[:, None]
        seen |= _is_float32(f1) & (f1 != f0) & np.isfinite(f1)
    return as32 & seen


def _suspicion(func, inputs, pairs, eps):
    """Why a passing check looks like a bug (see check_gradients), or "". Only in float64:
    below it, finite differences cannot resolve a gap of this size (the float32 warning says
    so instead)."""
    if any(isinstance(t, Tensor) and t.requires_grad and t._data.dtype != np.float64 for t in inputs):
        return ""
    worst = None
    outs0 = None
    for p in pairs:
        if p.kind != "jacobian" or not p.analytical.size:
            continue
        if outs0 is None:
            outs0 = _eval(func, inputs)
        diff = np.abs(p.analytical - p.numerical)
        if not np.isfinite(diff).all():
            continue
        cols = np.argsort(-diff.max(axis=0))[:COLUMNS_RESAMPLED]
        half = _numerical_columns(func, inputs, p.input, eps / 2, cols)[p.output]
        fd_err = 4.0 / 3.0 * np.abs(p.numerical[:, cols] - half)      # Richardson: error of the eps result
        scale = np.abs(p.numerical[:, cols])
        # float64 round-off at best, plus what rounding does to a difference: the outputs'
        # last bits over the step (a sum of thousands: 1e-9 and up) and x + eps not being
        # exactly eps away from x (x = 40: a relative step error of ~1e-9)
        f_mag = np.abs(outs0[p.output]._data.astype(np.float64).reshape(-1))[:, None]
        x_c = np.abs(inputs[p.input]._data.astype(np.float64).reshape(-1)[cols])[None, :]
        floor = (1e-13 * (1.0 + scale) + 8 * _EPS64 * (1.0 + f_mag) / eps
                 + scale * np.spacing(x_c + eps) / eps)
        gap = diff[:, cols]
        ratio = gap / (fd_err + floor)
        real = gap > 1e-9 * (1.0 + scale)                              # not a round-off-sized gap
        ratio = np.where(real, ratio, 0.0)
        # differences exactly 0 at eps and eps/2 leave only round-off's floor as their error, and a
        # leak of 1e-6 into a gradient that is exactly 0 (a mask's zeros, a hard gate's threshold)
        # is 300 times that floor: not enough (red team: such leaks passed --strict, while --locate
        # called the node suspicious). f not changing at all, to the last bit, over larger steps
        # says more: its derivative is below f's spacing over the largest such step. Where f then
        # moves, it must move by a jump or a flat region's edge (a gate's threshold crossed, a ReLU
        # at -0.5: differences JUMP times the gradient claimed and more); a real derivative that
        # float32 inside f absorbs moves it by about itself ((x.float() * 1e-6 + 1).sum() first
        # moves at a step of 0.1 by 1.2e-6), and is no evidence. A step f cannot take (overflow,
        # the domain) ends the evidence there
        still = real & (ratio <= SUSPICION_RATIO) & (p.numerical[:, cols] == 0) & (half == 0)
        flat = np.zeros_like(still)
        if still.any():
            wide = []
            for h in STILL_STEPS:
                try:
                    wide.append(_numerical_columns(func, inputs, p.input, h, cols)[p.output])
                except Exception:  # noqa: BLE001 - f does not run a step this far away
                    break
            if wide:
                w = np.stack(wide)                                                # (steps, rows, cols)
                n_flat = np.logical_and.accumulate(w == 0, axis=0).sum(axis=0)    # leading steps with 0
                top = len(STILL_STEPS)
                moved = np.take_along_axis(w, np.minimum(n_flat, len(wide) - 1)[None], 0)[0]
                a_c = np.abs(p.analytical[:, cols])
                jump = (n_flat < len(wide)) & np.isfinite(moved) & (np.abs(moved) > JUMP * a_c)
                flat = still & (n_flat >= 1) & ((n_flat == top) | jump)
                h_flat = np.asarray(STILL_STEPS)[np.maximum(n_flat, 1) - 1]
            if flat.any():
                spacing = _value_spacing(f_mag, _float32_valued(func, inputs, p, f_mag))
                bound = 1e-13 + 4 * spacing / h_flat                              # (rows, cols)
                ratio = np.where(flat, gap / bound, ratio)
        k = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        if ratio[k] > SUSPICION_RATIO and (worst is None or ratio[k] > worst[0]):
            r, c = int(k[0]), int(cols[k[1]])
            err = float(bound[k]) if flat[k] else float(fd_err[k] + floor[k])
            worst = (float(ratio[k]), p, r, c, float(gap[k]), err, float(h_flat[k]) if flat[k] else 0.0)
    if worst is None:
        return ""
    ratio, p, r, c, gap, err, flat = worst
    at_in = np.unravel_index(c, p.input_shape) if p.input_shape else ()
    at_out = np.unravel_index(r, p.output_shape) if p.output_shape else ()
    name = lambda n, idx: f"{n}[{', '.join(str(int(v)) for v in idx)}]" if idx else n  # noqa: E731
    a, n = float(p.analytical[r, c]), float(p.numerical[r, c])
    rel = f", {abs(a - n) / abs(n):.2g} relative" if n else ""
    if flat:
        return (f"within tolerance, but at {name(p.output_name, at_out)} / {name(p.input_name, at_in)} the analytical "
                f"{a:.10g} is not 0, while f does not change at all when {name(p.input_name, at_in)} moves by up to "
                f"{flat:g}: its central differences are exactly 0 at every step from {eps:g} to {flat:g}, so its "
                f"derivative there is below ~{err:.2g} ({ratio:.3g} times smaller): numerics do not explain it, the "
                "gradient is probably wrong (a leak into a gradient that is 0) -- unless f computes in float32 "
                "inside, whose rounding absorbs a change this small")
    return (f"within tolerance, but at {name(p.output_name, at_out)} / {name(p.input_name, at_in)} the analytical "
            f"{a:.10g} and numerical {n:.10g} differ by {gap:.3g}{rel}, {ratio:.3g} times the finite-difference "
            f"error itself (~{err:.2g}, from steps eps and eps/2 and round-off): numerics do not explain it, the gradient is "
            "probably wrong")


def second_order(func, inputs, names=None, grad_outputs=None, seed=0):
    """(first_order, inputs + grad_outputs, names): checking first_order checks func's second
    derivatives (gradgradcheck). first_order(*inputs, *v) = the gradients of v . func(inputs)."""
    _, inputs = functional.as_tuple(inputs)
    inputs = tuple(inputs)
    n = len(inputs)
    diff = _float_inputs(inputs)
    if grad_outputs is None:
        with no_grad():
            outs = func(*inputs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        rng = np.random.default_rng(seed)
        grad_outputs = tuple(Tensor._make(rng.standard_normal(o._data.shape).astype(o._data.dtype)).requires_grad_(True)
                             for o in outs)

    def first_order(*args):
        xs, vs = args[:n], args[n:]
        with enable_grad():       # the numerical side evaluates under no_grad; this needs a graph
            ys = func(*xs)
            ys = ys if isinstance(ys, tuple) else (ys,)
            gs = _grad(list(ys), [xs[i] for i in diff], grad_outputs=list(vs), create_graph=True,
                       allow_unused=True)
        return tuple(g if g is not None else xs[i] * 0.0 for g, i in zip(gs, diff))
    names = list(names) if names else [f"input{i}" for i in range(n)]
    vnames = ["grad_output" if len(grad_outputs) == 1 else f"grad_output{k}" for k in range(len(grad_outputs))]
    first_order.__name__ = "first derivatives"
    return first_order, inputs + tuple(grad_outputs), names + vnames


def _numerical_columns(func, inputs, idx, eps, cols, tick=None, overflow=None):
    """Central differences for the given flat elements of input idx: list over outputs of
    (out_n, len(cols)) arrays. The input is perturbed in place (a strided one through its flat
    iterator) and restored. overflow: a list that receives, per output, a mask of the same
    shape: where f(x + eps) or f(x - eps) was infinite (and neither NaN), so that the difference
    is no number because the values overflowed, not because the step left the domain.
    A backend that computes them itself (the CLI's PyTorch backend, batched) has `differences`,
    called with the same arguments for the same result (backend.py)."""
    own = getattr(backend_of(func), "differences", None)
    if own is not None:
        return own(inputs, idx, eps, cols, tick, overflow)
    outs0 = _eval(func, inputs)
    res = [np.zeros((o._data.size, len(cols))) for o in outs0]
    over = [np.zeros((o._data.size, len(cols)), dtype=bool) for o in outs0]
    if overflow is not None:
        overflow.extend(over)
    data = inputs[idx]._data
    flat = data.reshape(-1)
    if not np.shares_memory(flat, data):
        flat = data.flat
    for j, c in enumerate(cols):
        old = flat[c]
        flat[c] = old + eps
        plus = _eval(func, inputs)
        flat[c] = old - eps
        minus = _eval(func, inputs)
        flat[c] = old
        for k, (pl, mi) in enumerate(zip(plus, minus)):
            res[k][:, j] = ((pl._data.astype(np.float64) - mi._data.astype(np.float64)) / (2 * eps)).reshape(-1)
            if overflow is not None:
                p, m = pl._data.reshape(-1), mi._data.reshape(-1)
                over[k][:, j] = (np.isinf(p) | np.isinf(m)) & ~np.isnan(p) & ~np.isnan(m)
        if tick is not None:
            tick()
    return res


def _with_grad_if_needed(func, inputs):
    """func, or func run with grad mode on when it computes gradients itself (autograd.grad
    inside f): the numerical side evaluates under no_grad, where such a target cannot run."""
    try:
        _eval(func, inputs)
        return func
    except Exception as e:  # noqa: BLE001 - a front end may wrap the engine's error in its own
        # a target that needs grad mode to run at all (autograd.grad inside f, a hook registered
        # on an intermediate): it runs with grad on, as gradcheck runs it; when it fails so too,
        # the error is the target's own, as first raised
        try:
            with enable_grad():
                func(*inputs)
        except Exception:  # noqa: BLE001
            raise e from None

    def with_grad(*args):
        with enable_grad():
            outs = func(*args)
        if isinstance(outs, tuple):
            return tuple(o.detach() if not _grad_mode_on() else o for o in outs)
        return outs.detach() if not _grad_mode_on() else outs
    own = getattr(func, "backend", None)      # a PyTorch target stays on PyTorch; its differences run
    if own is not None:                       # under no_grad, so the checker's loop of with_grad runs them
        import copy
        own = copy.copy(own)
        own.differences = None
    with_grad.backend = own
    return with_grad


def _grad_mode_on():
    from ..grad_mode import is_grad_enabled
    return is_grad_enabled()


def _fast(func, inputs, diff, names, eps, atol, rtol, warns, seed, output_names):
    """v^T J u for random unit u (over all inputs at once) and v: two evaluations, one backward."""
    rng = np.random.default_rng(seed)
    us = {i: rng.standard_normal(inputs[i]._data.shape) for i in diff}
    norm = np.sqrt(sum(float(np.sum(u * u)) for u in us.values())) or 1.0
    us = {i: u / norm for i, u in us.items()}
    run = backend_of(func).forward(inputs, diff)     # the shapes, the side checks, the custom Functions
    outs = run.outputs
    vs = []
    for o in outs:
        v = rng.standard_normal(o._data.shape)
        vs.append(v / (np.sqrt(np.sum(v * v)) or 1.0))
    # the analytical side is the .grad an ordinary backward() leaves: what users run
    grads = _backward_grads(func, inputs, diff, vs)
    analytical = sum(float(np.sum(g * us[i])) for g, i in zip(grads, diff))
    olds = {i: inputs[i]._data.copy() for i in diff}
    for i in diff:
        inputs[i]._data += eps * us[i]
    plus = _eval(func, inputs)
    for i in diff:
        inputs[i]._data[...] = olds[i] - eps * us[i]
    minus = _eval(func, inputs)
    for i in diff:
        inputs[i]._data[...] = olds[i]
    numerical = sum(float(np.sum((p._data - m._data) / (2 * eps) * v)) for p, m, v in zip(plus, minus, vs))
    err = abs(analytical - numerical)
    ok = err <= atol + rtol * abs(numerical)
    failures = [] if ok else [f"fast check failed: v^T J u analytical {analytical:.10g}, numerical "
                              f"{numerical:.10g} (abs error {err:.3g})"]
    # the side checks run in fast mode too (as in PyTorch's): a backward that is not reentrant,
    # or not multiplied by grad_output (NaN where grad_output is 0), passed --fast before
    checks, msgs = _extra_checks(run, inputs, diff, 0.0, True, False, False,
                                 lambda: backend_of(func).forward(inputs, diff))
    failures += msgs
    return GradcheckReport(ok and not msgs, eps, atol, rtol, True, [], {"fast": ok, **checks}, warns, failures,
                           run.custom_functions())


FAST_DIRECTIONS = 3            # random directions of the scaled fast check
FAST_FULL_FOLLOW_UP = 10 ** 6  # Jacobian elements up to which a failed fast check re-runs the full one
FAST_BLOCKS = 64               # blocks of an input's elements the follow-up of a larger one tries


def _unit(rng, shapes):
    """Standard normal arrays of the given shapes, scaled together to unit norm."""
    arrs = [rng.standard_normal(sh) for sh in shapes]
    norm = np.sqrt(sum(float(np.sum(a * a)) for a in arrs)) or 1.0
    return [a / norm for a in arrs]


def _directional(func, inputs, us, vs, h):
    """v . (f(x + h u) - f(x - h u)) / 2h, u = {input index: direction}, and its round-off floor."""
    olds = {i: inputs[i]._data.copy() for i in us}
    try:
        for i, u in us.items():
            inputs[i]._data[...] = olds[i] + h * u
        plus = _eval(func, inputs)
        for i, u in us.items():
            inputs[i]._data[...] = olds[i] - h * u
        minus = _eval(func, inputs)
    finally:
        for i in us:
            inputs[i]._data[...] = olds[i]
    val = sum(float(np.sum((p._data.astype(np.float64) - m._data.astype(np.float64)) * v)) / (2 * h)
              for p, m, v in zip(plus, minus, vs))
    size = sum(float(np.sum(np.abs(p._data.astype(np.float64) * v))) for p, v in zip(plus, vs))
    res = max(float(np.finfo(p._data.dtype).eps) for p in plus) if plus else _EPS64
    return val, 8 * res * (1.0 + size) / h


def _projection_test(a, pieces, rtol):
    """Which projections fail: |analytical - numerical| above rtol times the projection's own
    scale (its size, or the RMS size of all of them when that is larger: a direction that
    happens to be nearly orthogonal to the Jacobian is not held to its tiny value) plus ten
    times the finite-difference error (Richardson, eps against eps/2, and round-off). No
    absolute atol: projections onto unit directions are as small as the Jacobian's RMS
    element, which a per-element atol would swamp (a 0.5 % bug on a 256 x 256 softmax)."""
    ns = np.array([n for n, _, _ in pieces])
    scale = float(np.sqrt(np.mean(ns * ns))) if ns.size else 0.0
    out = []
    for av, (n, half, floor) in zip(a, pieces):
        err = 4.0 / 3.0 * abs(n - half) + floor
        out.append((abs(av - n) > rtol * max(abs(n), scale) + 10.0 * err, av, n, err))
    return out


def _fast_directions(func, inputs, diff, names, report, eps, rtol, seed):
    """The fast check in FAST_DIRECTIONS more random directions, with a tolerance scaled to the
    projections (_projection_test): what the one-direction check with PyTorch's atol misses at
    real sizes. Returns the report (failed, with the worst direction said, or as it was)."""
    rng = np.random.default_rng(seed + 1)
    outs = _eval(func, inputs)
    a, pieces = [], []
    for _ in range(FAST_DIRECTIONS):
        us = dict(zip(diff, _unit(rng, [inputs[i]._data.shape for i in diff])))
        vs = _unit(rng, [o._data.shape for o in outs])
        grads = _backward_grads(func, inputs, diff, vs)
        a.append(sum(float(np.sum(g * us[i])) for g, i in zip(grads, diff)))
        n, floor = _directional(func, inputs, us, vs, eps)
        half, _ = _directional(func, inputs, us, vs, eps / 2)
        pieces.append((n, half, floor))
    tested = _projection_test(a, pieces, rtol)
    bad = [t for t in tested if t[0]]
    if bad:
        _, av, n, err = max(bad, key=lambda t: abs(t[1] - t[2]))
        report.passed = False
        report.checks["fast"] = False
        report.failures.insert(0, f"fast check failed: v^T J u analytical {av:.10g}, numerical {n:.10g} (abs error "
                                  f"{abs(av - n):.3g}, {abs(av - n) / max(abs(n), 1e-300):.2g} relative, while finite "
                                  f"differences are good to ~{err:.2g}) in {len(bad)} of {FAST_DIRECTIONS} random "
                                  "directions")
        return report
    # within tolerance in every direction; suspicious, as in the full check, when a projection's
    # gap is far beyond what finite differences can explain (a 0.1 % bug passed --fast)
    if all(inputs[i]._data.dtype == np.float64 for i in diff):
        scale = float(np.sqrt(np.mean(np.array([n for n, _, _ in pieces]) ** 2))) if pieces else 0.0
        worst = None
        for av, (n, half, floor) in zip(a, pieces):
            gap, err = abs(av - n), 4.0 / 3.0 * abs(n - half) + floor + 1e-13 * (1.0 + abs(n))
            if gap > 1e-9 * (1.0 + scale) and gap > SUSPICION_RATIO * err and (worst is None or gap / err > worst[0]):
                worst = (gap / err, av, n, gap, err)
        if worst is not None:
            ratio, av, n, gap, err = worst
            report.suspicion = (f"within tolerance, but in a random direction v^T J u the analytical {av:.10g} and "
                                f"numerical {n:.10g} differ by {gap:.3g} ({gap / max(abs(n), 1e-300):.2g} relative), "
                                f"{ratio:.3g} times the finite-difference error itself (~{err:.2g}, from steps eps "
                                "and eps/2 and round-off): numerics do not explain it, the gradient is probably wrong")
    return report


def _fast_against_float64(func, inputs, diff, report, eps, atol, rtol, input_names, output_names, seed):
    """A failed fast check of float32 inputs too large for the full one, judged as the full check
    judges float32 (_against_float64): the fast check on float64 copies, with every verdict, and
    backward's float32 v^T J within FLOAT32_K times float32's error of the float64 one (scaled by
    the largest element of either). A red team's right 256 x 256 float32 softmax was "fast check
    failed" on float32's noise in v^T J u. Returns the report, or None when f does not run on
    float64 copies (the float32 verdict stands)."""
    ins64 = tuple(Tensor._make(inputs[i]._data.astype(np.float64)).requires_grad_(True) if i in diff else inputs[i]
                  for i in range(len(inputs)))
    try:
        r64 = check_gradients(func, ins64, eps=eps, atol=atol, rtol=rtol, fast_mode=True, input_names=input_names,
                              output_names=output_names, seed=seed, verdicts=True)
        outs64 = _eval(func, ins64)
    except Exception:  # noqa: BLE001 - the function may not take float64
        return None
    if r64.verdict in ("fail", "inconclusive"):
        r64.failures = [f"on float64 copies of the float32 inputs: {f}" for f in r64.failures]
        if r64.inconclusive:
            r64.inconclusive = f"on float64 copies of the float32 inputs: {r64.inconclusive}"
        return r64
    vs = _cotangents(outs64, seed)
    g32 = _backward_grads(func, inputs, diff, vs)
    g64 = _backward_grads(func, ins64, diff, vs)
    u = float(np.finfo(np.float32).eps) / 2
    widest = max((float(np.max(np.abs(g))) for g in g64 if g.size), default=0.0)
    wrong = []
    for i, a, ref in zip(diff, g32, g64):
        err = np.abs(a - ref)
        bound = FLOAT32_K * u * (np.abs(ref) + widest) + 1e-30
        if not np.all(err <= bound):                     # NaN and inf are outside every bound
            k = int(np.argmax(np.where(np.isfinite(err), err / bound, np.inf)))
            name = (input_names[i] if input_names else f"input{i}")
            wrong.append(f"the float32 gradient (backward() of {name}) differs from the float64 one of the same "
                         f"computation: worst at element {k}: float32 {a.reshape(-1)[k]:.10g}, float64 "
                         f"{ref.reshape(-1)[k]:.10g}, more than {FLOAT32_K:g} times float32's own error there: a "
                         f"float32-only bug (precision lost in a cancellation, or a step done at lower precision)")
    if wrong:
        report.failures = wrong
        report.verdict = "fail"
        return report
    r64.warnings.append(f"the fast check's mismatch in float32 ({report.failures[0]}) is float32's finite "
                        f"differences': on float64 copies the fast check is {r64.verdict}, and backward's float32 "
                        f"gradient is within {FLOAT32_K:g} times float32's error of the float64 one")
    return r64


def _fast_follow_up(func, inputs, diff, names, report, eps, atol, rtol, seed):
    """After a failed fast check too large for a dense Jacobian: which input elements are wrong,
    in bounded memory. With one random cotangent v, backward gives v^T J for every input element;
    the elements are split into FAST_BLOCKS blocks, each checked by a projection on it alone, and
    the worst failing block is halved down to one element, whose v^T J is then differenced
    directly, at every step in STEPS. Returns False when that element's differences agree with
    backward at two adjacent steps, or at none settle (finite differences, not the gradient, may
    be what failed: the caller says inconclusive, with the reason first after the fast failure),
    else True. Memory: a few arrays of the inputs' size."""
    rng = np.random.default_rng(seed + 2)
    outs = _eval(func, inputs)
    vs = _unit(rng, [o._data.shape for o in outs])
    grads = dict(zip(diff, _backward_grads(func, inputs, diff, vs)))

    def block_test(i, elems):
        shape = inputs[i]._data.shape
        u = np.zeros(int(np.prod(shape)))
        r = rng.standard_normal(len(elems))
        # the norm of the block's values alone (np.linalg.norm of all of u is a BLAS dot over
        # every element: 84 of them cost 0.46 s of a 0.94 s --fast at 256x256 on 2 loaded cores)
        u[elems] = r / (float(np.sqrt(np.sum(r * r))) or 1.0)
        u = u.reshape(shape)
        av = float(np.sum(grads[i] * u))
        n, floor = _directional(func, inputs, {i: u}, vs, eps)
        half, _ = _directional(func, inputs, {i: u}, vs, eps / 2)
        return av, (n, half, floor)
    found, unsettled = [], []
    for i in diff:
        size = inputs[i]._data.size
        blocks = [b for b in np.array_split(np.arange(size), min(FAST_BLOCKS, size)) if b.size]
        tries = [block_test(i, b) for b in blocks]
        tested = _projection_test([t[0] for t in tries], [t[1] for t in tries], rtol)
        failing = [(blk, t) for blk, t in zip(blocks, tested) if t[0]]
        if not failing:
            continue
        elems, _ = max(failing, key=lambda bt: abs(bt[1][1] - bt[1][2]) / (bt[1][3] + 1e-300))
        while elems.size > 1:                          # halve the worst block down to one element
            halves = [elems[: elems.size // 2], elems[elems.size // 2:]]
            tries = [block_test(i, h) for h in halves]
            res = _projection_test([t[0] for t in tries], [t[1] for t in tries], rtol)
            elems = halves[int(np.argmax([abs(r[1] - r[2]) / (r[3] + 1e-300) for r in res]))]
        e = int(elems[0])
        unit = np.zeros(size)
        unit[e] = 1.0
        n, _ = _directional(func, inputs, {i: unit.reshape(inputs[i]._data.shape)}, vs, eps)
        at = tuple(int(k) for k in np.unravel_index(e, inputs[i]._data.shape))
        where = f"{names[i]}[{', '.join(map(str, at))}]" if at else names[i]
        g = float(grads[i].reshape(-1)[e])
        if not _wrong_at_every_step(func, inputs, i, unit.reshape(inputs[i]._data.shape), vs, g, atol, rtol):
            unsettled.append(f"the fast check fails, but where the follow-up isolates it ({where}: v^T J "
                             f"{g:.10g}, differences {n:.10g} at eps {eps:g}) finite differences agree with "
                             f"backward at other steps, or settle at none (float32 inside f, ill-conditioning, a "
                             f"kink): finite differences may be what failed; check a smaller piece in full")
            continue
        found.append(f"wrong in {len(failing)} of {len(blocks)} blocks of {names[i]}'s {size} elements; one wrong "
                     f"element: {where}: (v^T J) analytical {g:.10g}, numerical {n:.10g}")
        report.pairs.append(PairResult(-1, i, "backward()", names[i], (), inputs[i]._data.shape,
                                       np.array([[g]]), np.array([[n]]), abs(g - n),
                                       abs(g - n) / max(abs(n), 1e-300), ((), at), g, n, False, kind="grad"))
    if found:
        report.failures[1:1] = found
        return True
    if unsettled:
        report.failures[1:1] = unsettled
        return False
    report.failures.insert(1, "no block of the inputs fails on its own: the error is spread over all of them")
    return True


def _wrong_at_every_step(func, inputs, i, unit, vs, g, atol, rtol):
    """Whether the differences of v^T f along one input element settle on a value backward's
    g does not match: no two adjacent steps in STEPS agree with g, and two adjacent ones agree
    with each other (to the tolerance, and to a tenth of their gap to g). No atol, as in
    _projection_test: one element's v^T J on a 256 x 256 softmax is ~1e-4, and atol=1e-5 let its
    0.5 % bug agree at every step; round-off's floor at each step stands in for it, and a step
    whose floor exceeds the tolerance (1e-10 there) is no evidence of agreement."""
    ns, floors = np.array([_directional(func, inputs, {i: unit}, vs, h) for h in STEPS]).T
    gap = np.abs(ns - g)
    tol = rtol * np.abs(ns) + floors
    agree = (gap <= tol) & (floors <= rtol * np.abs(ns))   # where round-off's floor is below the tolerance
    if np.any(agree[:-1] & agree[1:]):
        return False
    fine = np.abs(ns[:-1] - ns[1:]) <= np.minimum(0.1 * np.minimum(gap[:-1], gap[1:]), tol[1:])
    moved = np.logical_or.accumulate(ns != 0)
    still = (ns == 0) & np.concatenate([[False], moved[:-1]])       # below f's resolution (_rejudge_steps)
    return bool(np.any(fine & np.isfinite(ns[:-1]) & ~still[:-1] & ~still[1:]))


def _forward_ad_failures(func, inputs, eps, atol, rtol):
    """check_forward_ad: each Jacobian column from forward-mode AD (a unit tangent on one input
    element, autograd.forward_ad) against central differences."""
    from . import forward_ad as fwAD
    diff = _float_inputs(inputs)
    failures = []
    for i in diff:
        numerical = _numerical(func, inputs, i, eps)
        x = inputs[i]
        cols = [[] for _ in numerical]
        for j in range(x._data.size):
            unit = np.zeros(x._data.size, x._data.dtype)
            unit[j] = 1.0
            with fwAD.dual_level():
                args = list(inputs)
                args[i] = fwAD.make_dual(x.detach(), Tensor._make(unit.reshape(x._data.shape)))
                outs = func(*args)
                outs = outs if isinstance(outs, tuple) else (outs,)
                for k, o in enumerate(outs):
                    t = fwAD.unpack_dual(o).tangent
                    cols[k].append(np.zeros(o._data.size) if t is None else t._data.astype(np.float64).reshape(-1))
        for k, (num, col) in enumerate(zip(numerical, cols)):
            ana = np.stack(col, axis=1) if col else np.zeros_like(num)
            err = np.abs(ana - num)
            bad = err > atol + rtol * np.abs(num)
            if np.any(bad):
                r, c = np.unravel_index(int(np.argmax(np.where(bad, err, -1))), bad.shape)
                failures.append(f"Jacobian computed with forward mode mismatch for output {k} with respect to input "
                                f"{i}: element ({r}, {c}): forward mode {ana[r, c]:.10g}, numerical {num[r, c]:.10g}")
    return failures


def _unsupported(**flags):
    for name, (value, supported) in flags.items():
        if value != supported:
            raise NotImplementedError(f"gradcheck: {name}={value!r} is not supported by this engine "
                                      f"(it has no sparse or masked tensors, and no forward-over-reverse check)")


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, fast_mode=False,
              nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
              check_backward_ad=True, check_forward_ad=False, masked=None):
    """PyTorch's gradcheck: True when every Jacobian matches, else raise GradcheckError (or False).

    Every parameter does what PyTorch's does, or is refused: masked=True raises
    NotImplementedError (no masked tensors). check_forward_ad compares forward-mode Jacobian
    columns (autograd.forward_ad) with central differences."""
    if not check_backward_ad and not check_forward_ad:
        raise ValueError("Expected at least one of check_forward_ad or check_backward_ad to be True")
    _unsupported(masked=(bool(masked), False))
    if check_forward_ad:
        _, ins = functional.as_tuple(inputs)
        failures = _forward_ad_failures(func, tuple(ins), eps, atol, rtol)
        if failures:
            if raise_exception:
                raise GradcheckError("; ".join(failures), None)
            return False
        if not check_backward_ad:
            return True
    report = check_gradients(func, inputs, eps=eps, atol=atol, rtol=rtol, fast_mode=fast_mode,
                             nondet_tol=nondet_tol, check_undefined_grad=check_undefined_grad,
                             check_batched_grad=check_batched_grad, check_grad_dtypes=check_grad_dtypes)
    if report.passed:
        return True
    if raise_exception:
        raise GradcheckError(report.summary(), report)
    return False


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
                  check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False, masked=False):
    """Check second derivatives: gradcheck of (inputs, v) -> grad(func(inputs), inputs, v).
    gen_non_contig_grad_outputs makes the random grad_outputs non-contiguous views."""
    if not check_rev_over_rev and not check_fwd_over_rev:
        raise ValueError("Expected at least one of check_fwd_over_rev or check_rev_over_rev to be True")
    _unsupported(check_fwd_over_rev=(check_fwd_over_rev, False), masked=(bool(masked), False))
    _, inputs = functional.as_tuple(inputs)
    inputs = tuple(inputs)
    with no_grad():
        outs = func(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    if grad_outputs is None:
        rng = np.random.default_rng(0)

        def draw(o):
            if gen_non_contig_grad_outputs and o._data.ndim:
                # every other element of a twice-as-long last dim: same values, strided memory
                wide = rng.standard_normal(o._data.shape[:-1] + (2 * o._data.shape[-1],))
                return wide[..., ::2].astype(o._data.dtype, copy=False)
            return rng.standard_normal(o._data.shape).astype(o._data.dtype)
        grad_outputs = tuple(Tensor._make(draw(o)).requires_grad_(True) for o in outs)
    else:
        _, grad_outputs = functional.as_tuple(grad_outputs)
    first_order, all_inputs, _ = second_order(func, inputs, grad_outputs=tuple(grad_outputs))
    return gradcheck(first_order, all_inputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, fast_mode=fast_mode, nondet_tol=nondet_tol,
                     check_undefined_grad=check_undefined_grad, check_grad_dtypes=check_grad_dtypes,
                     check_batched_grad=check_batched_grad)


SWEEP_EPS = tuple(10.0 ** -k for k in range(1, 13))       # 1e-1 ... 1e-12


@dataclasses.dataclass
class Sweep:
    """The finite-difference error for each step size, and what its shape says."""
    eps: list
    errors: list               # max |analytical - numerical| over the swept elements, per eps
    order: float               # the fitted slope of log(error) against log(eps) before round-off
    best_eps: float
    best_error: float
    verdict: str               # "right", "wrong" or "unclear"
    message: str


def sweep(func, inputs, *, eps_grid=SWEEP_EPS, columns=8, input_names=None):
    """Central differences at every step in eps_grid against the analytical Jacobian, on the
    input elements where they differ most at eps=1e-6 (at most `columns` per input). Truncation
    error falls as eps^2 and round-off grows as 1/eps, so a right gradient's error falls with
    slope ~2 to a minimum near 1e-5..1e-8 and rises after; a wrong one is flat at the size of
    the bug."""
    _, inputs = functional.as_tuple(inputs)
    inputs = tuple(inputs)
    func = _with_grad_if_needed(func, inputs)
    diff = _float_inputs(inputs)
    run, analytical = _analytical(func, inputs, diff)
    outs = run.outputs
    picks = []
    for i_pos, i in enumerate(diff):
        n0 = _numerical_columns(func, inputs, i, 1e-6, range(inputs[i]._data.size))
        gap = np.max([np.abs(analytical[k][i_pos] - n0[k]).max(axis=0) if n0[k].size else
                      np.zeros(inputs[i]._data.size) for k in range(len(outs))], axis=0)
        picks.append((i_pos, i, list(np.argsort(-gap)[:columns])))
    errors = []
    for e in eps_grid:
        worst = 0.0
        for i_pos, i, cols in picks:
            num = _numerical_columns(func, inputs, i, e, cols)
            for k in range(len(outs)):
                a = analytical[k][i_pos][:, cols]
                if a.size:
                    worst = max(worst, float(np.nanmax(np.abs(a - num[k]))))
        errors.append(worst)
    # float64's round-off of f's own value over each step: an error below it is no evidence
    fmax = max((float(np.max(np.abs(o._data))) for o in outs if o._data.size and np.isfinite(o._data).all()),
               default=0.0)
    return _read_sweep(list(eps_grid), errors, analytical, fmax)


def _read_sweep(eps, errors, analytical, fmax=None):
    """What the error-against-step curve says. "wrong" only when it is flat -- the same error,
    within a factor of 3, at every step from 1e-3 to 1e-8 -- since only then do finite
    differences agree with each other and not with the gradient; a curve that spans decades
    is finite differences at work (truncation falling, round-off growing), never a verdict on
    the gradient. Steps that left the function's domain (NaN) are named and left out."""
    scale = max((float(np.max(np.abs(a))) for row in analytical for a in row if a.size), default=1.0) or 1.0
    raw = np.asarray(errors, dtype=np.float64)
    raw = np.where(np.isfinite(raw), raw, np.nan)          # inf: a step reached a pole (log at 0)
    out = [e for e, v in zip(eps, raw) if np.isnan(v)]
    note = (f" (steps {', '.join(f'{e:.0e}' for e in out)} left the function's domain)" if out else "")
    keep = ~np.isnan(raw)
    if not keep.any():
        return Sweep(list(eps), [float(e) for e in errors], 0.0, float(eps[0]), float("nan"), "unclear",
                     "every step left the function's domain: check at a point further inside it")
    e_ok = np.asarray(eps, dtype=np.float64)[keep]
    errs = np.maximum(raw[keep], 1e-300)
    k = int(np.argmin(errs))
    order = 0.0
    if k >= 2:
        order = float(np.polyfit(np.log10(e_ok[:k + 1]), np.log10(errs[:k + 1]), 1)[0])
    best = float(errs[k])
    rel = best / scale
    window = errs[(e_ok <= 1e-3) & (e_ok >= 1e-8)]
    flat = window.size >= 3 and float(window.max() / window.min()) <= 3.0
    # ... and not falling again below 1e-8: a function that varies faster than those steps resolve
    # (sin(1e9 x)) is flat there at the gradient's own size and converges only at smaller steps
    tail = errs[e_ok < 1e-8]
    converging = flat and tail.size > 0 and float(tail.min()) < float(window.min()) / 3
    best_eps = float(e_ok[k])
    if rel < 1e-7 and (order > 1.0 or k < 2):
        verdict = "right"
        message = (f"the error falls as eps^{order:.1f} down to {best:.1g} at eps={best_eps:.0e} and then grows "
                   "(round-off): your gradient is right" if 2 <= k < len(errs) - 1 else
                   f"the error reaches {best:.1g} at eps={best_eps:.0e}: your gradient is right")
    elif converging:
        verdict = "unclear"
        message = (f"the error stays near {float(window.min()):.2g} for every eps from 1e-3 to 1e-8 and then falls, "
                   f"to {float(tail.min()):.2g} at eps={float(e_ok[e_ok < 1e-8][int(np.argmin(tail))]):.0e}: the "
                   "function varies faster than those steps resolve, and finite differences only begin to converge "
                   "below them -- they cannot say the gradient is wrong")
    elif flat and abs(order) < 0.5 and rel > 1e-6 and fmax and bool(np.all(errs <= 2 * _EPS64 * fmax / e_ok)):
        # flat only because float64's rounding of a huge f hides every step's change (1e12 + 1e-3 x^2)
        verdict = "unclear"
        message = (f"round-off: the output is {fmax:.3g}, and at every step the error ({float(errs.min()):.2g} at "
                   f"least) is below what float64's rounding of that value does to a central difference there "
                   f"(about {float((2 * _EPS64 * fmax / e_ok).min()):.2g} at eps={float(e_ok[0]):.0e}): finite "
                   "differences cannot say whether the gradient is right")
    elif flat and abs(order) < 0.5 and rel > 1e-6:
        verdict = "wrong"
        message = (f"the error is flat at {best:.2g} for every eps from 1e-3 to 1e-8 (slope {order:.1f}): finite "
                   "differences converge, the analytical gradient does not agree with them -- the gradient is wrong")
    elif k < len(errs) - 1 and float(errs[k + 1:].max()) > 30 * best:
        verdict = "unclear"
        message = (f"the error is smallest, {best:.2g}, at eps={best_eps:.0e} and grows "
                   f"{float(errs[k + 1:].max()) / best:.2g}-fold at smaller steps: round-off dominates (float32 "
                   "inside f, or large values), so finite differences agree with the gradient to that much and "
                   "can say no more")
    else:
        verdict = "unclear"
        message = (f"the smallest error is {best:.2g} at eps={best_eps:.0e} (slope {order:.1f} before it): "
                   "neither clean convergence nor a flat gap -- a kink, a step leaving the domain, or float32?")
    return Sweep(list(eps), [float(e) for e in errors], order, best_eps, best, verdict, message + note)


def pattern(analytical, numerical, atol=1e-5, rtol=1e-3, input_shape=None):
    """A recognisable shape of the error between two Jacobians (2-D arrays), in words, or "":
    a constant factor, a transpose (of the whole Jacobian, or of a square matrix input's
    gradient: input_shape (k, k), the backward returning grad_W.T), flipped signs, zeros where
    the numerical one is not, or the error confined to some rows or columns."""
    a = np.asarray(analytical, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    if a.shape != n.shape or not a.size or not np.all(np.isfinite(a)) or not np.all(np.isfinite(n)):
        return ""
    # input elements f does not use (the odd columns of x[:, ::2]) are 0 on both sides: no part of
    # the error's shape (a transposed slice's gradient was "confined to 12 of 24 columns: wrong for
    # some inputs only", red team); column numbers still name the input's own elements
    ids = np.arange(a.shape[1])
    used = (a != 0).any(axis=0) | (n != 0).any(axis=0)
    if used.any() and not used.all():
        a, n, ids, input_shape = a[:, used], n[:, used], ids[used], None
    tol = atol + rtol * np.abs(n)
    bad = np.abs(a - n) > tol
    if not bad.any():
        return ""
    big = np.abs(n) > max(10 * atol, 1e-3 * np.abs(n).max())
    if big.sum() >= 2:
        ratio = a[big] / n[big]
        r = float(np.median(ratio))
        # the ratios agree to a twentieth of their distance from 1 (an additive error of 1e-3 on a
        # diagonal of 0.5, 0.25 and 4 gives ratios 1.002, 1.004 and 1.00025: no constant factor)
        if abs(r - 1) > rtol and abs(r) > rtol and np.allclose(ratio, r, rtol=0, atol=0.05 * abs(r - 1)) and \
                np.allclose(a[~big], r * n[~big], atol=10 * atol):
            if abs(r + 1) <= rtol:
                return ("a sign flip: every element is the numerical one negated (a minus sign lost or added, "
                        "or a subtraction the wrong way round)")
            return (f"a constant factor: every element is x{r:.6g} the numerical one "
                    f"({(r - 1) * 100:+.3g} %)")
    if a.shape[0] == a.shape[1] and a.shape[0] > 1 and np.allclose(a, n.T, rtol=rtol, atol=atol) and \
            not np.allclose(a, n, rtol=rtol, atol=atol):
        return "a transpose: the analytical Jacobian is the numerical one transposed"
    if input_shape is not None and len(input_shape) == 2 and input_shape[0] == input_shape[1] > 1 and \
            a.shape[1] == input_shape[0] * input_shape[1]:
        k = input_shape[0]
        swapped = a.reshape(a.shape[0], k, k).transpose(0, 2, 1).reshape(a.shape)
        if np.all(np.abs(swapped - n) <= tol):
            return ("a transpose: the gradient of the matrix input is its numerical gradient transposed (the "
                    "backward returns grad.T, or multiplies in the wrong order)")
    flipped = bad & (np.abs(a + n) <= tol) & big
    if flipped.any() and not (bad & ~flipped).any():
        k = int(flipped.sum())
        return f"flipped signs: {k} element{'s' if k != 1 else ''} with the right size and the wrong sign"
    zeros = bad & (a == 0)
    if zeros.any() and not (bad & ~zeros).any():
        k = int(zeros.sum())
        return f"zeros where the numerical Jacobian is not zero ({k} element{'s' if k != 1 else ''}): a gradient not passed on"
    if not np.any(np.abs(n) > 10 * atol) and np.any(np.abs(a) > 10 * atol):
        # nothing to differentiate: the function is flat here (round, sign, a step), the backward not
        return ("the numerical Jacobian is 0 (the function is flat here: piecewise constant, like round or sign) "
                "where the analytical is not: a straight-through or surrogate gradient, which finite differences "
                "cannot confirm, or a gradient given where there is none")
    off = np.abs(a - n) > 10 * atol                 # an offset: the same error added wherever there is one
    if off.sum() >= 2:
        d = (a - n)[off]
        c = float(np.median(d))
        k = int(off.sum())
        bc = ids[np.flatnonzero(off.any(axis=0))]    # the input elements (columns) they sit in
        minority = 2 * len(bc) <= a.shape[1]
        where = (f"{k} element{'s' if k != 1 else ''} (input elements {', '.join(map(str, bc[:6]))}"
                 f"{', ...' if len(bc) > 6 else ''})")
        nz = np.abs(n[off]) > 10 * atol
        q = a[off][nz] / n[off][nz] if nz.all() else None
        same_factor = q is not None and np.allclose(q, float(np.median(q)), rtol=0, atol=0.01 * abs(float(np.median(q)) - 1))
        same_offset = np.allclose(d, c, rtol=0, atol=0.01 * abs(c))
        if same_offset and same_factor and minority:       # equal values: a factor or an offset alike
            return (f"wrong at {where} only, by the same amount (x{float(np.median(q)):.4g}, or "
                    f"{c:+.3g}; the rest agree): wrong for some inputs only (a sign-dependent branch, a slope "
                    "or a term on one branch?)")
        if same_factor and minority:
            return (f"a constant factor at {where} only (x{float(np.median(q)):.4g}; the rest "
                    "agree): wrong for some inputs only (a sign-dependent branch, or a slope on one branch?)")
        if same_offset and not same_factor:
            return (f"a constant offset: the analytical is the numerical {c:+.3g} at {k} element{'s' if k != 1 else ''}"
                    f" (the rest agree): a term added, not a factor")
    rows = np.flatnonzero(bad.any(axis=1))
    cols = np.flatnonzero(bad.any(axis=0))
    if a.shape[0] > 1 and len(rows) < a.shape[0]:
        if a.shape[0] >= 3 and list(rows) == list(range(1, a.shape[0])):
            # the rows of a graph with a custom Function are one backward call each
            return (f"every row but the first is wrong ({len(rows)} of {a.shape[0]} rows, output elements 1 on): "
                    "either output element 0 escapes the bug (a branch its input does not take), or the backward "
                    "is right on its first call only (state kept between calls: each row is a backward call)")
        if 2 * len(rows) <= a.shape[0]:
            return (f"the error is confined to {len(rows)} of {a.shape[0]} rows (output elements "
                    f"{', '.join(map(str, rows[:6]))}{', ...' if len(rows) > 6 else ''})")
    if a.shape[1] > 1 and len(cols) < a.shape[1] and 2 * len(cols) <= a.shape[1]:
        # "confined" only to a minority: 11 of 12 columns wrong is an error nearly everywhere
        unused = f" used by f; {len(used) - a.shape[1]} more it does not use" if a.shape[1] < len(used) else ""
        return (f"the error is confined to {len(cols)} of {a.shape[1]} columns{unused} (input elements "
                f"{', '.join(map(str, ids[cols][:6]))}{', ...' if len(cols) > 6 else ''}): wrong for some inputs only "
                "(a sign-dependent branch, or a broadcast not summed?)")
    return ""
