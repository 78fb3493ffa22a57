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
from ..grad_mode import STATE, enable_grad, no_grad
from ..graph import run_backward, walk
from ..tensor import Tensor
from . import backward, functional, grad as _grad
from .function import BackwardCFunction
from .functional import first_not_batch_aware


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
    kind: str = "jacobian"      # "grad": the .grad an ordinary backward() left, vs v^T J numerical

    def describe(self):
        if np.isnan(self.worst_numerical) and not np.isnan(self.worst_analytical):
            at = ", ".join(map(str, self.worst_index[1]))
            where = f"{self.input_name}[{at}]" if at else self.input_name
            return (f"the finite-difference step left the function's domain at {where} (numerical NaN, analytical "
                    f"{self.worst_analytical:.10g}): {where} +- eps is outside where the function is defined "
                    "(sqrt, log or a fractional power near 0?), so central differences cannot judge this "
                    "element; check at a point further inside the domain, or with a smaller --eps")
        return self._describe()

    def _describe(self):
        o, i = self.worst_index
        if self.kind == "grad":
            at = f"{self.input_name}[{', '.join(map(str, i))}]" if i else self.input_name
            return (f"{self.input_name}.grad after backward() does not match finite differences: worst at "
                    f"{at}: .grad {self.worst_analytical:.10g}, numerical {self.worst_numerical:.10g} "
                    f"(abs error {self.max_abs_error:.3g})")
        at = lambda name, idx: f"{name}[{', '.join(map(str, idx))}]" if idx else name  # noqa: E731
        return (f"Jacobian mismatch for output {self.output} ({self.output_name}) with respect to input "
                f"{self.input} ({self.input_name}): worst at {at(self.output_name, o)} / "
                f"{at(self.input_name, i)}: analytical {self.worst_analytical:.10g}, numerical "
                f"{self.worst_numerical:.10g} (abs error {self.max_abs_error:.3g})")


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
    verdict: str = ""            # "pass", "suspicious" or "fail" (check_gradients(verdicts=True))
    suspicion: str = ""          # why a passing check is suspicious

    def __bool__(self):
        return self.passed

    def summary(self):
        if self.passed:
            return "gradcheck passed"
        return "; ".join(self.failures)


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


def _numerical(func, inputs, idx, eps, tick=None):
    """Central differences, one column per input element: list over outputs of (out_n, in_n).
    tick(): called after each element (a progress bar)."""
    return _numerical_columns(func, inputs, idx, eps, range(inputs[idx]._data.size), tick)


def _analytical(func, inputs, diff):
    """Analytical Jacobians from backward: [output][input] -> (out_n, in_n) arrays."""
    with enable_grad():
        outs = func(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    table = []
    for o in outs:
        if o.grad_fn is None and not o.requires_grad:
            table.append([np.zeros((o._data.size, inputs[i]._data.size)) for i in diff])
            continue
        rows = functional.jacobian_rows(o, [inputs[i] for i in diff], False, True, warn=False)
        table.append([np.zeros((o._data.size, inputs[i]._data.size)) if r is None
                      else np.asarray(r, dtype=np.float64).reshape(o._data.size, inputs[i]._data.size)
                      for r, i in zip(rows, diff)])
    return outs, table


def _compare(a, n, atol, rtol):
    """(passed, flat index of the worst violation, max abs error, max rel error) for a vs n."""
    err = np.abs(a - n)
    allowed = atol + rtol * np.abs(n)
    ok = bool(np.all(err <= allowed)) and not np.any(np.isnan(a) != np.isnan(n))
    if not err.size:
        return ok, 0, 0.0, 0.0
    worst = int(np.argmax(np.where(np.isnan(err), np.inf, err - allowed)))
    rel = err / np.where(np.abs(n) > 0, np.abs(n), np.inf)
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
    leaves = list(inputs)
    for i in diff:
        leaves[i] = inputs[i].detach().requires_grad_(True)
    with enable_grad():
        outs = func(*leaves)
    outs = outs if isinstance(outs, tuple) else (outs,)
    live = [(o, v) for o, v in zip(outs, cotangents) if o.grad_fn is not None or o._rg]
    if len(live) == 1 and live[0][0]._data.size == 1 and np.all(live[0][1] == 1):
        live[0][0].backward()                        # exactly y.backward()
    elif live:
        backward([o for o, _ in live], [Tensor._make(v.astype(o._data.dtype)) for o, v in live])
    return [np.zeros(inputs[i]._data.shape) if leaves[i]._grad is None
            else np.asarray(leaves[i]._grad._data, dtype=np.float64) for i in diff]


def _grad_results(func, inputs, diff, names, outs, numerical, atol, rtol, seed):
    """kind="grad" results: backward()'s .grad against v^T J from finite differences."""
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
        res.append(PairResult(-1, i, "backward()", names[i], (), shape, a.reshape(1, -1),
                              n.reshape(1, -1), max_abs, max_rel, ((), idx),
                              float(a[w]) if a.size else 0.0, float(n[w]) if n.size else 0.0, ok,
                              kind="grad"))
    return res


def _custom_functions(outs):
    """Names of the user-defined Function nodes on the graph of `outs`, in traversal order.
    Built-in ops are checked against finite differences by the engine's own tests, so when a
    check fails these are the first suspects."""
    names = []
    for n in walk(o.grad_fn for o in outs):
        if isinstance(n, BackwardCFunction):
            # a Function that runs another autograd's graph (the CLI's PyTorch backend) names
            # the custom Functions found there, in `ctx.inner_functions`
            for name in getattr(n, "inner_functions", None) or [n.name()]:
                if name not in names:
                    names.append(name)
    return names


def _extra_checks(outs, inputs, diff, nondet_tol, undefined_grad=True, batched_grad=False,
                  grad_dtypes=False):
    """PyTorch's side checks: backward is deterministic and multiplies by grad_output
    (check_undefined_grad: the engine materialises an undefined grad_output as zeros, as a
    Function does by default, so a zero grad_output must give zero gradients); with
    check_batched_grad, a batch of grad_outputs (is_grads_batched) gives what one backward per
    grad_output gives; with check_grad_dtypes, each gradient has its input's dtype."""
    res = {"deterministic": True}
    if undefined_grad:
        res["zero_grad_output"] = True
    msgs = []
    live = [o for o in outs if o.grad_fn is not None]
    if not live:
        return res, msgs
    ins = [inputs[i] for i in diff]
    rng = np.random.default_rng(0)
    seeds = [rng.standard_normal(o._data.shape) for o in live]
    a = run_backward(live, seeds, retain_graph=True, create_graph=False, inputs=ins, accumulate=False,
                     allow_unused=True)
    b = run_backward(live, seeds, retain_graph=True, create_graph=False, inputs=ins, accumulate=False,
                     allow_unused=True)
    for ga, gb in zip(a, b):
        if ga is not None and gb is not None and np.max(np.abs(np.asarray(ga) - np.asarray(gb)), initial=0) > nondet_tol:
            res["deterministic"] = False
            msgs.append("Backward is not reentrant, i.e., running backward with same input and grad_output "
                        "multiple times gives different values, although analytical gradient matches "
                        f"numerical gradient.The tolerance for nondeterminism was {nondet_tol}.")
            break
    if grad_dtypes:
        res["grad_dtypes"] = all(g is None or np.asarray(g).dtype == t._data.dtype for g, t in zip(a, ins))
        if not res["grad_dtypes"]:
            msgs.append("Gradient has dtype mismatch")
    if undefined_grad:
        zeros = [np.zeros(o._data.shape) for o in live]
        z = run_backward(live, zeros, retain_graph=True, create_graph=False, inputs=ins, accumulate=False,
                         allow_unused=True)
        for g in z:
            if g is not None and np.any(np.asarray(g) != 0):
                res["zero_grad_output"] = False
                msgs.append("backward not multiplied by grad_output")
                break
    if batched_grad:
        ok, msg = _batched_check(live, ins, rng, nondet_tol)
        res["batched_grad"] = ok
        if not ok:
            msgs.append(msg)
    return res, msgs


def _batched_check(live, ins, rng, tol, batch=3):
    """is_grads_batched over `batch` grad_outputs == one backward per grad_output."""
    bad = first_not_batch_aware(live)
    if bad is not None:
        return False, (f"check_batched_grad: {bad.name()} is a custom Function whose backward is not marked "
                       "batch_aware, so it cannot take a batch of grad_outputs")
    seeds = [rng.standard_normal((batch,) + o._data.shape) for o in live]
    together = run_backward(live, seeds, retain_graph=True, create_graph=False, inputs=ins, accumulate=False,
                            allow_unused=True, nb=1)
    for b in range(batch):
        one = run_backward(live, [s[b] for s in seeds], retain_graph=True, create_graph=False, inputs=ins,
                           accumulate=False, allow_unused=True)
        for k, (g1, gb) in enumerate(zip(one, together)):
            if (g1 is None) != (gb is None):
                return False, f"Batched grad check failed for input {k}: a gradient is missing in one of the two"
            if g1 is not None and not np.allclose(np.asarray(gb)[b], np.asarray(g1), rtol=1e-10, atol=1e-12 + tol):
                return False, (f"Batched grad check failed for input {k}: backward with a batch of grad_outputs "
                               f"differs from one backward per grad_output (row {b})")
    return True, ""


def _kink_warnings(func, inputs, eps):
    """Evaluate once with kink watching on: ops whose input lies within eps of a kink."""
    found = []
    STATE.kink_watch = (eps, found)
    try:
        _eval(func, inputs)
    finally:
        STATE.kink_watch = None
    out = []
    for name, where in found:
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
                     f"beyond what rtol={rtol:g} can absorb; use a larger eps (1e-6 is PyTorch's default)")
    warns += _kink_warnings(func, inputs, eps)
    for w in warns:
        warnings.warn(w, UserWarning, stacklevel=3)
    if fast_mode:
        report = _fast(func, inputs, diff, names, eps, atol, rtol, warns, seed, output_names)
        if report.passed:
            return report
        full = check_gradients(func, inputs, eps=eps, atol=atol, rtol=rtol, fast_mode=False,
                               nondet_tol=nondet_tol, input_names=input_names, output_names=output_names,
                               check_undefined_grad=check_undefined_grad,
                               check_batched_grad=check_batched_grad, check_grad_dtypes=check_grad_dtypes)
        full.fast_mode = True
        full.checks["fast"] = False
        full.failures.insert(0, report.failures[0])
        full.passed = False
        return full
    outs, analytical = _analytical(func, inputs, diff)
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
    for i_pos, i in enumerate(diff):
        try:
            numerical = _numerical(func, inputs, i, eps, tick)
        except KeyboardInterrupt:
            raise CheckInterrupted(pairs, done[0], total) from None
        numericals.append(numerical)
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
                           float(n[w]) if n.size else 0.0, ok)
            pairs.append(p)
            if not ok:
                failures.append(p.describe())
    for p in _grad_results(func, inputs, diff, names, outs, numericals, atol, rtol, seed):
        pairs.append(p)
        if not p.passed:
            failures.append(p.describe())
    suspects = _custom_functions(outs)
    checks, msgs = _extra_checks(outs, inputs, diff, nondet_tol, check_undefined_grad, check_batched_grad,
                                 check_grad_dtypes)
    failures += msgs
    if failures and suspects:
        failures.append(f"custom Functions on this graph (the built-in ops are tested): {', '.join(suspects)}")
    report = GradcheckReport(not failures, eps, atol, rtol, False, pairs, checks, warns, failures, suspects)
    if verdicts and failures and any(inputs[i]._data.dtype != np.float64 for i in diff):
        report = _judged_in_float64(func, inputs, diff, report, eps, atol, rtol, input_names, output_names, seed)
    if verdicts:
        report.verdict = "fail" if report.failures else "pass"
        if not failures:
            report.suspicion = _suspicion(func, inputs, pairs, eps)
            if report.suspicion:
                report.verdict = "suspicious"
    return report


def _judged_in_float64(func, inputs, diff, report, eps, atol, rtol, input_names, output_names, seed):
    """A check that fails on float32 inputs, run again on float64 copies: when that passes, the
    failure is float32's finite differences, not the gradient -- say so and pass; otherwise the
    float64 failures stand."""
    ins64 = tuple(Tensor._make(inputs[i]._data.astype(np.float64)).requires_grad_(True) if i in diff else inputs[i]
                  for i in range(len(inputs)))
    try:
        r64 = check_gradients(func, ins64, eps=eps, atol=atol, rtol=rtol, input_names=input_names,
                              output_names=output_names, seed=seed)
    except Exception:  # noqa: BLE001 - the function may not take float64: keep the float32 verdict
        return report
    worst = max((p.max_abs_error for p in report.pairs), default=0.0)
    if r64.passed:
        report.warnings.append(
            f"the check fails in float32 (max abs error {worst:.3g}) and passes on float64 copies of the same "
            "inputs: float32 finite differences cannot resolve this gradient, which is right (for float32, "
            "eps ~1e-3 with atol and rtol ~1e-2 would pass)")
        report.failures = []
        report.passed = True
        return report
    r64.warnings = report.warnings + ["judged on float64 copies of the float32 inputs, which fail too"]
    return r64


_EPS64 = float(np.finfo(np.float64).eps)
SUSPICION_RATIO = 1000.0      # discrepancy / finite-difference error that is not numerics
COLUMNS_RESAMPLED = 4         # input elements per pair re-differenced with eps/2


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
        k = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        if ratio[k] > SUSPICION_RATIO and (worst is None or ratio[k] > worst[0]):
            r, c = int(k[0]), int(cols[k[1]])
            worst = (float(ratio[k]), p, r, c, float(gap[k]), float(fd_err[k] + floor[k]))
    if worst is None:
        return ""
    ratio, p, r, c, gap, err = worst
    at_in = np.unravel_index(c, p.input_shape) if p.input_shape else ()
    at_out = np.unravel_index(r, p.output_shape) if p.output_shape else ()
    name = lambda n, idx: f"{n}[{', '.join(str(int(v)) for v in idx)}]" if idx else n  # noqa: E731
    a, n = float(p.analytical[r, c]), float(p.numerical[r, c])
    rel = f", {abs(a - n) / abs(n):.2g} relative" if n else ""
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


def _numerical_columns(func, inputs, idx, eps, cols, tick=None):
    """Central differences for the given flat elements of input idx: list over outputs of
    (out_n, len(cols)) arrays. The input is perturbed in place (a strided one through its flat
    iterator) and restored."""
    outs0 = _eval(func, inputs)
    res = [np.zeros((o._data.size, len(cols))) for o in outs0]
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
        if "does not require grad" not in str(e) and "does not have a grad_fn" not in str(e):
            raise

    def with_grad(*args):
        with enable_grad():
            outs = func(*args)
        if isinstance(outs, tuple):
            return tuple(o.detach() if not _grad_mode_on() else o for o in outs)
        return outs.detach() if not _grad_mode_on() else outs
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
    with enable_grad():
        outs = func(*inputs)             # for the shapes, and the custom Functions on its graph
    outs = outs if isinstance(outs, tuple) else (outs,)
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
    return GradcheckReport(ok, eps, atol, rtol, True, [], {"fast": ok}, warns, failures,
                           _custom_functions(outs))


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
    outs, analytical = _analytical(func, inputs, diff)
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
    return _read_sweep(list(eps_grid), errors, analytical)


def _read_sweep(eps, errors, analytical):
    scale = max((float(np.max(np.abs(a))) for row in analytical for a in row if a.size), default=1.0) or 1.0
    errs = np.maximum(np.asarray(errors, dtype=np.float64), 1e-300)
    k = int(np.argmin(errs))
    left = slice(0, k + 1)
    order = 0.0
    if k >= 2:
        order = float(np.polyfit(np.log10(eps[left]), np.log10(errs[left]), 1)[0])
    best = float(errs[k])
    rel = best / scale
    if rel < 1e-7 and (order > 1.0 or k < 2):
        verdict = "right"
        message = (f"the error falls as eps^{order:.1f} down to {best:.1g} at eps={eps[k]:.0e} and then grows "
                   "(round-off): your gradient is right" if k >= 2 and k < len(eps) - 1 else
                   f"the error reaches {best:.1g} at eps={eps[k]:.0e}: your gradient is right")
    elif abs(order) < 0.5 and rel > 1e-6:
        verdict = "wrong"
        message = (f"the error is flat at {best:.2g} for every eps (slope {order:.1f}): finite differences "
                   "converge, the analytical gradient does not agree with them -- the gradient is wrong")
    else:
        verdict = "unclear"
        message = (f"the smallest error is {best:.2g} at eps={eps[k]:.0e} (slope {order:.1f} before it): "
                   "neither clean convergence nor a flat gap -- a kink, a step leaving the domain, or float32?")
    return Sweep(list(eps), [float(e) for e in errors], order, float(eps[k]), best, verdict, message)


def pattern(analytical, numerical, atol=1e-5, rtol=1e-3):
    """A recognisable shape of the error between two Jacobians (2-D arrays), in words, or "":
    a constant factor, a transpose, flipped signs, zeros where the numerical one is not, or
    the error confined to some rows or columns."""
    a = np.asarray(analytical, dtype=np.float64)
    n = np.asarray(numerical, dtype=np.float64)
    if a.shape != n.shape or not a.size or not np.all(np.isfinite(a)) or not np.all(np.isfinite(n)):
        return ""
    tol = atol + rtol * np.abs(n)
    bad = np.abs(a - n) > tol
    if not bad.any():
        return ""
    big = np.abs(n) > max(10 * atol, 1e-3 * np.abs(n).max())
    if big.sum() >= 2:
        ratio = a[big] / n[big]
        r = float(np.median(ratio))
        if abs(r - 1) > rtol and np.allclose(ratio, r, rtol=1e-3, atol=0) and \
                np.allclose(a[~big], r * n[~big], atol=10 * atol):
            return (f"a constant factor: every element is x{r:.6g} the numerical one "
                    f"({(r - 1) * 100:+.3g} %)")
    if a.shape[0] == a.shape[1] and a.shape[0] > 1 and np.allclose(a, n.T, rtol=rtol, atol=atol) and \
            not np.allclose(a, n, rtol=rtol, atol=atol):
        return "a transpose: the analytical Jacobian is the numerical one transposed"
    flipped = bad & (np.abs(a + n) <= tol) & big
    if flipped.any() and not (bad & ~flipped).any():
        k = int(flipped.sum())
        return f"flipped signs: {k} element{'s' if k != 1 else ''} with the right size and the wrong sign"
    zeros = bad & (a == 0)
    if zeros.any() and not (bad & ~zeros).any():
        k = int(zeros.sum())
        return f"zeros where the numerical Jacobian is not zero ({k} element{'s' if k != 1 else ''}): a gradient not passed on"
    rows = np.flatnonzero(bad.any(axis=1))
    cols = np.flatnonzero(bad.any(axis=0))
    if a.shape[0] > 1 and len(rows) < a.shape[0]:
        return (f"the error is confined to {len(rows)} of {a.shape[0]} rows (output elements "
                f"{', '.join(map(str, rows[:6]))}{', ...' if len(rows) > 6 else ''})")
    if a.shape[1] > 1 and len(cols) < a.shape[1]:
        return (f"the error is confined to {len(cols)} of {a.shape[1]} columns (input elements "
                f"{', '.join(map(str, cols[:6]))}{', ...' if len(cols) > 6 else ''}): wrong for some inputs only "
                "(a sign-dependent branch, or a broadcast not summed?)")
    return ""
