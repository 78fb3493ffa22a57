"""A benchmark of verdicts: which wrong backwards each checker catches, and where it cries wolf.

    python -m benchmarks.verdicts [--json]

The catalog is custom Functions written once for both libraries (engine and torch share the
API): correct ones, correct ones that are hard for finite differences (near kinks,
ill-conditioned, large values, float32), and subtly wrong ones (scaled by 1.001 to 1.05, one
element's sign flipped, wrong only for negative inputs, the wrong saved tensor, a transposed
matrix, swapped gradients, a broadcast not reduced, wrong only in double backward). Each is
run through our check (default: "fail" counts; --strict: "suspicious" counts too; --strict
--order 2 adds second derivatives) and, with PyTorch installed, torch.autograd.gradcheck with
its defaults, and JAX's jax.test_util.check_grads (order 1, reverse mode, its defaults) on the
same Functions turned into jax.custom_vjp by a small adapter. An exception while checking
counts as caught (the checker refused the backward).
"""
import json
import operator
import sys
import time
import warnings

import numpy as np

# -- the catalog: (name, forward(m, x), derivative(m, x, out)) for elementwise functions ---------
BASES = [
    ("sin", lambda m, x: x.sin(), lambda m, x, out: x.cos()),
    ("exp", lambda m, x: x.exp(), lambda m, x, out: out),
    ("cube", lambda m, x: x ** 3, lambda m, x, out: 3 * x ** 2),
    ("tanh", lambda m, x: x.tanh(), lambda m, x, out: 1 - out * out),
    ("softplus", lambda m, x: (x.exp() + 1).log(), lambda m, x, out: x.sigmoid()),
    ("hypot1", lambda m, x: (x * x + 1).sqrt(), lambda m, x, out: x / out),
    ("x_exp_x", lambda m, x: x * x.exp(), lambda m, x, out: (x + 1) * x.exp()),
    ("cos2", lambda m, x: (2 * x).cos(), lambda m, x, out: -2 * (2 * x).sin()),
]

# a bug: (name, derivative -> wrong derivative) given (m, x, out, d)
BUGS = [
    ("x1.001", lambda m, x, out, d: d * 1.001),
    ("x1.002", lambda m, x, out, d: d * 1.002),
    ("x1.005", lambda m, x, out, d: d * 1.005),
    ("x1.01", lambda m, x, out, d: d * 1.01),
    ("x1.05", lambda m, x, out, d: d * 1.05),
    ("one sign flipped", lambda m, x, out, d: d * _flip_first(m, d)),
    ("wrong for x<0 only", lambda m, x, out, d: m.where(x < 0, d * 1.01, d)),
    ("off by 1e-3 absolute", lambda m, x, out, d: d + 1e-3),
]


def _flip_first(m, d):
    s = m.ones_like(d)
    s[0] = -1.0
    return s


def elementwise(m, fwd, deriv, wrong=None, detach_in_backward=False):
    """A custom Function computing fwd with backward g * deriv (or the wrong derivative)."""
    class F(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = fwd(m, x)
            ctx.save_for_backward(x, out)
            return out

        @staticmethod
        def backward(ctx, g):
            x, out = ctx.saved_tensors
            if detach_in_backward:          # right first derivative, no second: a double-backward bug
                x, out = x.detach(), out.detach()
            d = deriv(m, x, out)
            if wrong is not None:
                d = wrong(m, x, out, d)
            return g * d
    return F.apply


def matmul_fn(m, bug=None):
    """f(X) = X @ A with the constant A; the bug transposes A in backward."""
    A = m.tensor([[1.0, 2.0, -1.0], [0.5, -3.0, 2.0], [2.0, 1.0, 0.25]], dtype=m.float64)

    class F(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x @ A

        @staticmethod
        def backward(ctx, g):
            return g @ (A if bug == "transposed" else A.t())
    return F.apply


def product_fn(m, bug=None):
    """f(x, y) = x * y; the bug swaps the two gradients."""
    class F(m.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            return x * y

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            return (g * x, g * y) if bug == "swapped" else (g * y, g * x)
    return F.apply


def bias_fn(m, bug=None):
    """f(x, b) = x + b with b broadcast over rows; the bug does not sum b's gradient over the
    rows (it keeps the first row: handing back the unreduced (rows, n) gradient would be summed
    by PyTorch's engine, and by ours, so it is not a bug)."""
    class F(m.autograd.Function):
        @staticmethod
        def forward(ctx, x, b):
            return x + b

        @staticmethod
        def backward(ctx, g):
            return g, (g[0] if bug == "not reduced" else g.sum(0))
    return F.apply


def wrong_saved_fn(m, bug=None):
    """sin with backward reading the output where it needs the input (cos(sin x) for cos x)."""
    class F(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = x.sin()
            ctx.save_for_backward(x, out)
            return out

        @staticmethod
        def backward(ctx, g):
            x, out = ctx.saved_tensors
            return g * (out.cos() if bug == "wrong saved" else x.cos())
    return F.apply


def catalog(m, rng_seed=0):
    """[(name, kind, fn, inputs as numpy arrays, dtype name)]: kind is "correct", "hard" (correct
    but hard for finite differences) or "bug"."""
    rng = np.random.default_rng(rng_seed)
    cases = []
    points = [rng.uniform(-1.5, 1.5, 5) for _ in range(4)]
    for name, fwd, deriv in BASES:
        for k, x in enumerate(points):
            cases.append((f"{name} #{k}", "correct", elementwise(m, fwd, deriv), [x], "float64"))
        for bug, wrong in BUGS:
            cases.append((f"{name}: {bug}", "bug", elementwise(m, fwd, deriv, wrong), [points[0]], "float64"))
        cases.append((f"{name}: wrong only in double backward", "bug2",
                      elementwise(m, fwd, deriv, detach_in_backward=True), [points[1]], "float64"))
    X = rng.standard_normal((2, 3))
    cases += [("matmul", "correct", matmul_fn(m), [X], "float64"),
              ("matmul: transposed", "bug", matmul_fn(m, "transposed"), [X], "float64"),
              ("product", "correct", product_fn(m), [points[0], points[1]], "float64"),
              ("product: gradients swapped", "bug", product_fn(m, "swapped"), [points[0], points[1]], "float64"),
              ("bias", "correct", bias_fn(m), [X, rng.standard_normal(3)], "float64"),
              ("bias: broadcast not reduced", "bug", bias_fn(m, "not reduced"), [X, rng.standard_normal(3)], "float64"),
              ("sin: wrong saved tensor", "bug", wrong_saved_fn(m, "wrong saved"), [points[2]], "float64"),
              ("sin (saved right)", "correct", wrong_saved_fn(m), [points[2]], "float64")]
    hard = [("abs near its kink", lambda m, x: x.abs(), lambda m, x, out: x.sign(), np.array([1e-4, -3e-4, 0.7])),
            ("ill-conditioned sin(1e4 x)/1e4", lambda m, x: (x * 1e4).sin() * 1e-4,
             lambda m, x, out: (x * 1e4).cos(), points[3]),
            ("large values exp(x)*1e8", lambda m, x: x.exp() * 1e8, lambda m, x, out: out, points[3]),
            ("log near 0", lambda m, x: x.log(), lambda m, x, out: 1 / x, np.array([1e-3, 5e-3, 0.5])),
            ("relu away from 0", lambda m, x: x.relu(), lambda m, x, out: (x > 0).to(x.dtype), points[0])]
    for name, fwd, deriv, x in hard:
        cases.append((name, "hard", elementwise(m, fwd, deriv), [x], "float64"))
    cases.append(("sin in float32", "hard", elementwise(m, BASES[0][1], BASES[0][2]), [points[0]], "float32"))
    cases.append(("tanh in float32", "hard", elementwise(m, BASES[3][1], BASES[3][2]), [points[1]], "float32"))
    cases.append(("ill-conditioned sin(5e5 x)/5e5", "hard", elementwise(m, lambda m, x: (x * 5e5).sin() / 5e5,
                                                                       lambda m, x, out: (x * 5e5).cos()),
                  [points[3]], "float64"))
    big = np.array([1.0, 90.0, -3.0])              # exp(90) is inf in float32: inf / inf
    cases.append(("softplus: NaN only in float32", "bug",
                  elementwise(m, lambda m, x: (x.exp() + 1).log() if x.dtype == m.float64 else
                              ((-x.abs()).exp() + 1).log() + x.relu(),
                              lambda m, x, out: x.exp() / (x.exp() + 1)), [big], "float32"))
    cases += real_code_cases(m, rng)
    return cases


def real_code_cases(m, rng):
    """Cases of the kinds engineers write and the elementwise catalog lacks: float32 inside a
    float64 f, a backward that keeps state between calls, Functions inside nn.Modules, inputs
    used transposed. Engine and torch only (JAX's adapter has no nn, no float32 casts, no
    ctx kept between calls): there the function is None and the case is not counted."""
    def mk(name, kind, build, arrays, dtype="float64"):
        return (name, kind, build() if getattr(m, "nn", None) is not None else None, arrays, dtype)
    X = rng.standard_normal((4, 3))
    W = rng.standard_normal((3, 3))
    return [mk("gelu computed in float32 inside f", "hard", lambda: gelu32_fn(m), [rng.standard_normal(6)]),
            mk("backward keeps state: wrong from its second call", "bug", lambda: stateful_fn(m, 1.5),
               [rng.standard_normal(5)]),
            mk("backward keeps state, harmlessly", "correct", lambda: stateful_fn(m, 1.0), [rng.standard_normal(5)]),
            mk("Function inside an nn.Module", "correct", lambda: module_fn(m, W, None), [X]),
            mk("Function inside an nn.Module: x1.01", "bug", lambda: module_fn(m, W, 1.01), [X]),
            mk("Function inside an nn.Module: mean's gradient dropped", "bug", lambda: module_fn(m, W, "mean"), [X]),
            mk("matmul on a transposed input", "correct", lambda: transposed_fn(m, None), [X.T.copy()]),
            mk("matmul on a transposed input: x1.002", "bug", lambda: transposed_fn(m, 1.002), [X.T.copy()]),
            mk("backward applies a Function wrong on its own (second order only)", "bug2",
               lambda: nested_backward_fn(m, 3.0), [rng.standard_normal(5)]),
            mk("backward applies a right Function", "correct", lambda: nested_backward_fn(m, 2.0),
               [rng.standard_normal(5)]),
            mk("sin Function in float32 inside f, times x (frozen steps at second order)", "hard",
               lambda: sin32_times_x_fn(m), [rng.standard_normal((4, 3))]),
            mk("softmax logits shifted by a bias in float32 (its gradient cancels to 0)", "hard",
               lambda: shifted_softmax_fn(m), [rng.standard_normal((6, 8)), rng.standard_normal((6, 1))],
               "float32"),
            mk("masked scale: 1e-6 * g leaks where the mask is 0", "bug", lambda: masked_fn(m, 1e-6),
               [rng.standard_normal((4, 6))]),
            mk("masked scale", "correct", lambda: masked_fn(m, 0.0), [rng.standard_normal((4, 6))]),
            mk("a derivative of 1e-8 computed in float32 inside f (absorbed)", "hard", lambda: tiny32_fn(m),
               [rng.standard_normal(6)]),
            mk("hard gate: 1e-6 * g * x leaks into the threshold's gradient", "bug", lambda: gate_fn(m, 1e-6),
               [rng.standard_normal(6), rng.standard_normal(6)]),
            mk("hard gate", "correct", lambda: gate_fn(m, 0.0), [rng.standard_normal(6), rng.standard_normal(6)])]


def gate_fn(m, leak):
    """x times (s > 0): the gradient with respect to s is 0 (f jumps where s crosses 0); the
    backward leaks `leak * g * x` into it."""
    class Gate(m.autograd.Function):
        @staticmethod
        def forward(ctx, x, s):
            mask = (s > 0).to(x.dtype)
            ctx.save_for_backward(mask, x)
            return x * mask

        @staticmethod
        def backward(ctx, g):
            mask, x = ctx.saved_tensors
            return g * mask, leak * g * x
    return lambda x, s: (Gate.apply(x, s) * m.linspace(-1, 2, 6)).sum()


def masked_fn(m, leak):
    """x times a fixed 0/1 mask; the backward leaks `leak * g` into the masked elements, whose
    gradient is exactly 0 (a 1e-6 leak is within every tolerance)."""
    mask = m.tensor(np.arange(24).reshape(4, 6) % 3 != 0, dtype=m.float64)

    class MaskedScale(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * mask

        @staticmethod
        def backward(ctx, g):
            return g * mask + leak * g * (1 - mask)
    w = m.linspace(-1, 2, 24).reshape(4, 6)
    return lambda x: (MaskedScale.apply(x) * w).sum()


def tiny32_fn(m):
    """Built-in ops: 1e-8 x added to 1 in float32, so f does not change at any step up to 1; its
    gradient 1e-8 is right. Hard: nothing tells it from a leak but float32 inside (suspicious at worst)."""
    return lambda x: (x.float() * 1e-8 + 1).double().sum()


def sin32_times_x_fn(m):
    """A right sin Function run in float32 inside a float64 f, its result times x: at second
    order the float32 differences are exactly 0 below float32's resolution."""
    class Sin(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * x.cos()
    return lambda x: (Sin.apply(x.float() * 3.0).double() * x).sum()


def shifted_softmax_fn(m):
    """Built-in ops only: b shifts every logit of its row, so df/db is 0 exactly; float32
    leaves a residue of ~1e-8 (float64's is 1e-17)."""
    t = m.linspace(-1, 2, 8)
    return lambda x, b: (m.softmax(x * 3.0 + b, -1) * t.to(x.dtype)).sum()


def nested_backward_fn(m, slope):
    """Cube(x) = x^3/3 whose backward is g * Square(x), Square a Function whose backward is
    g * slope * x: right at first order whatever the slope, wrong at second order unless 2."""
    class Square(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * slope * x

    class Cube(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x / 3

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * Square.apply(x)
    return Cube.apply


def gelu32_fn(m):
    """A right Function whose forward computes in float32 inside a float64 f (its backward too)."""
    class Gelu32(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            h = x.float()
            return (0.5 * h * (1 + (0.7978845608 * (h + 0.044715 * h ** 3)).tanh())).double()

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            h = x.float()
            t = (0.7978845608 * (h + 0.044715 * h ** 3)).tanh()
            d = 0.5 * (1 + t) + 0.5 * h * (1 - t * t) * 0.7978845608 * (1 + 3 * 0.044715 * h * h)
            return g * d.double()
    return Gelu32.apply


def stateful_fn(m, later):
    class Sq(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            ctx.calls = 0
            return x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            ctx.calls += 1
            return g * 2 * x * (1.0 if ctx.calls == 1 else later)
    return Sq.apply


def module_fn(m, W, bug):
    """f(x) = sum(Center(tanh(Linear(x)))): a centring Function in a module, after a real layer."""
    class Center(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x - x.mean(-1, keepdim=True)

        @staticmethod
        def backward(ctx, g):
            if bug == "mean":
                return g
            return (g - g.mean(-1, keepdim=True)) * (bug or 1.0)

    class Block(m.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = m.nn.Linear(3, 3).double()
            with m.no_grad():
                self.lin.weight.copy_(m.tensor(W, dtype=m.float64))
                self.lin.bias.copy_(m.tensor(np.linspace(-0.5, 0.5, 3), dtype=m.float64))

        def forward(self, x):
            return (Center.apply(self.lin(x).tanh()) ** 2).sum()
    return Block()


def transposed_fn(m, factor):
    A = m.tensor([[1.0, 2.0, -1.0], [0.5, -3.0, 2.0], [2.0, 1.0, 0.25]], dtype=m.float64)

    class MatA(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x @ A

        @staticmethod
        def backward(ctx, g):
            return g @ A.t() * (factor or 1.0)

    def f(xt):
        return MatA.apply(xt.t()).sin()            # the Function receives a non-contiguous view
    return f


def _tensors(m, arrays, dtype):
    dt = getattr(m, dtype)
    return tuple(m.tensor(a, dtype=dt, requires_grad=True) for a in arrays)


def ours(case, mode, backend="engine"):
    """Does our check flag the case? mode: "default", "strict", "strict+order2". backend
    "torch": the case's torch Function through the checker as the CLI runs it on PyTorch (the
    bridge, PyTorch's double backward for order 2). None where the case cannot run there."""
    import engine
    from engine.autograd.checker import check_gradients, second_order
    name, kind, fn, arrays, dtype = case
    if fn is None:
        return None
    inputs = _tensors(engine, arrays, dtype)
    if backend == "torch":
        from cli import torch_backend
        fn_t = fn
        fn = torch_backend.engine_function(fn_t)
    eps, atol, rtol = 1e-6, 1e-5, 1e-3            # the defaults, as for torch.autograd.gradcheck
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = check_gradients(fn, inputs, eps=eps, atol=atol, rtol=rtol, verdicts=True)
            flagged = r.verdict in ("fail", "inconclusive") or (mode != "default" and r.verdict == "suspicious")
            if mode == "strict+order2" and dtype == "float64" and not flagged:
                if backend == "torch":
                    f2, ins2, _ = torch_backend.second_order(fn_t, inputs, ["x"] * len(inputs))
                else:
                    f2, ins2, _ = second_order(fn, inputs)
                r2 = check_gradients(f2, ins2, eps=eps, atol=atol, rtol=rtol, verdicts=True)
                flagged = r2.verdict in ("fail", "suspicious", "inconclusive")
    except Exception:  # noqa: BLE001 - a refused backward counts as caught
        return True
    return flagged


def located_first(case, backend="engine"):
    """For a first-order bug: does locate name the case's own Function first among the failing
    nodes? The case runs between built-in ops (x * 1.0 before, * 1.0 after) so that there is
    something else to blame. None where it does not apply."""
    name, kind, fn, arrays, dtype = case
    if fn is None or kind != "bug":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if backend == "torch":
            import torch

            from cli import torch_backend
            ins = _tensors(torch, arrays, dtype)
            checks, _ = torch_backend.locate(lambda *xs: _wrapped(fn, xs), ins, eps=1e-6, atol=1e-5, rtol=1e-3,
                                             user_files=None)
        else:
            import engine
            from engine.autograd.locate import locate
            checks = locate(lambda *xs: _wrapped(fn, xs), _tensors(engine, arrays, dtype))
    wrong = [c for c in checks if c.verdict in ("fail", "suspicious")]
    return bool(wrong) and wrong[0].custom and not wrong[0].node.startswith(("Mul", "Sin", "Add"))


def _wrapped(fn, xs):
    out = fn(*[x * 1.0 for x in xs])
    return out * 1.0


def torch_gradcheck(case, mode="default"):
    """torch.autograd.gradcheck with its defaults (mode "fast": fast_mode=True; "gradgradcheck":
    gradcheck, then gradgradcheck where gradcheck passes)."""
    import torch
    name, kind, fn, arrays, dtype = case
    if fn is None:
        return None
    inputs = _tensors(torch, arrays, dtype)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bad = not torch.autograd.gradcheck(fn, inputs, raise_exception=False, fast_mode=mode == "fast")
            if not bad and mode == "gradgradcheck":
                bad = not torch.autograd.gradgradcheck(fn, inputs, raise_exception=False)
            return bad
    except Exception:  # noqa: BLE001
        return True


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    import engine
    cases = catalog(engine)
    try:
        import torch
        torch_cases = catalog(torch)
    except ImportError:
        torch_cases = None
    systems = {"ours": lambda i: ours(cases[i], "default"), "ours --strict": lambda i: ours(cases[i], "strict"),
               "ours --strict --order 2": lambda i: ours(cases[i], "strict+order2")}
    if torch_cases is not None:
        systems.update({
            "ours on torch": lambda i: ours(torch_cases[i], "default", "torch"),
            "ours on torch --strict": lambda i: ours(torch_cases[i], "strict", "torch"),
            "ours on torch --strict --order 2": lambda i: ours(torch_cases[i], "strict+order2", "torch"),
            "torch gradcheck": lambda i: torch_gradcheck(torch_cases[i]),
            "torch gradcheck fast_mode": lambda i: torch_gradcheck(torch_cases[i], "fast"),
            "torch gradcheck + gradgradcheck": lambda i: torch_gradcheck(torch_cases[i], "gradgradcheck")})
    try:
        jlib, jcases = jax_cases()
        systems["jax check_grads"] = lambda i: jax_check_grads(jlib, jcases[i])
    except ImportError:
        pass
    flags, seconds = {}, {}
    for s, f in systems.items():
        t0 = time.perf_counter()
        flags[s] = [f(i) for i in range(len(cases))]
        seconds[s] = (time.perf_counter() - t0) / max(1, sum(v is not None for v in flags[s]))
    kinds = [c[1] for c in cases]
    runs = lambda s, idx: [i for i in idx if flags[s][i] is not None]  # noqa: E731 - the cases system s ran
    bugs = [i for i, k in enumerate(kinds) if k in ("bug", "bug2")]
    first = [i for i, k in enumerate(kinds) if k == "bug"]
    good = [i for i, k in enumerate(kinds) if k in ("correct", "hard")]
    summary = {}
    for s, fl in flags.items():
        summary[s] = {"bugs caught": sum(fl[i] for i in runs(s, bugs)), "bugs run": len(runs(s, bugs)),
                      "first-order bugs caught": sum(fl[i] for i in runs(s, first)),
                      "false alarms": [cases[i][0] for i in runs(s, good) if fl[i]],
                      "ms per check (in-process)": round(seconds[s] * 1e3, 2)}
    located = {"engine": [located_first(c) for c in cases]}
    if torch_cases is not None:
        located["torch"] = [located_first(c, "torch") for c in torch_cases]
    for b, ls in located.items():
        name = "ours" if b == "engine" else "ours on torch"
        done = [v for v in ls if v is not None]
        summary[name]["locate: the wrong Function first"] = f"{sum(done)}/{len(done)}"
    if "torch gradcheck" in flags:
        t = flags["torch gradcheck"]
        missed_by_torch = [i for i in bugs if t[i] is False]
        caught_by_torch = [i for i in bugs if t[i]]
        for s in flags:
            summary[s]["of the bugs torch catches"] = sum(bool(flags[s][i]) for i in caught_by_torch)
            summary[s]["of the bugs torch misses"] = sum(bool(flags[s][i]) for i in missed_by_torch)
        totals = {"bugs torch catches": len(caught_by_torch), "bugs torch misses": len(missed_by_torch)}
        if "--cli" in argv:
            totals["ms per check through the CLI"] = cli_times()
    else:
        totals = {}
    doc = {"cases": {"bugs": len(bugs), "first-order bugs": len(first), "double-backward bugs": len(bugs) - len(first),
                     "correct": sum(k == "correct" for k in kinds), "hard but correct": sum(k == "hard" for k in kinds),
                     **totals},
           "systems": summary,
           "per_case": [{"case": c[0], "kind": c[1], **{s: flags[s][i] for s in flags}}
                        for i, c in enumerate(cases)]}
    if "--json" in argv:
        print(json.dumps(doc, indent=2))
        return doc
    c = doc["cases"]
    print(f"{c['bugs']} wrong backwards ({c['first-order bugs']} first-order, {c['double-backward bugs']} only in "
          f"double backward), {c['correct']} correct, {c['hard but correct']} correct but hard for finite differences")
    if totals:
        print(f"torch.autograd.gradcheck (defaults) catches {totals['bugs torch catches']} of them and misses "
              f"{totals['bugs torch misses']}")
    print()
    print(f"{'checker':34s} {'bugs caught':>12s} {'of torch-caught':>16s} {'of torch-missed':>16s} {'ms/check':>9s}"
          f" {'locate':>7s}  false alarms")
    for s, v in summary.items():
        tc = f"{v.get('of the bugs torch catches', '-')}" + (f"/{totals['bugs torch catches']}" if totals else "")
        tm = f"{v.get('of the bugs torch misses', '-')}" + (f"/{totals['bugs torch misses']}" if totals else "")
        print(f"{s:34s} {v['bugs caught']:>8d}/{v['bugs run']:<3d} {tc:>16s} {tm:>16s} "
              f"{v['ms per check (in-process)']:>9.1f} {v.get('locate: the wrong Function first', '-'):>7s}  "
              f"{len(v['false alarms'])}" + (f" ({', '.join(v['false alarms'])})" if v["false alarms"] else ""))
    if totals.get("ms per check through the CLI"):
        print("\nthrough the CLI (one process per check, median of 3): " +
              ", ".join(f"{k} {v:.0f} ms" for k, v in totals["ms per check through the CLI"].items()))
    return doc


CLI_CASE = """import {lib} as torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return g * 3 * x ** 2 * 1.01


def f(x):
    return Cube.apply(x).sum()
"""


def cli_times(reps=3):
    """Wall time of one `autograd check` process on a small wrong Function, each backend."""
    import pathlib
    import shutil
    import statistics
    import subprocess
    import tempfile
    exe = shutil.which("autograd") or str(pathlib.Path(sys.executable).parent / "autograd")
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for backend, lib in (("engine", "engine"), ("torch", "torch")):
            p = pathlib.Path(d) / f"cube_{backend}.py"
            p.write_text(CLI_CASE.format(lib=lib))
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                subprocess.run([exe, "check", str(p), "--x", "0.5,1,2", "--backend", backend], capture_output=True)
                times.append(time.perf_counter() - t0)
            out[f"ours on {backend}"] = statistics.median(times) * 1e3
    return out



# -- JAX: the same catalog through a small adapter (tensor methods on jnp arrays, Function as
# jax.custom_vjp), checked by jax.test_util.check_grads(order=1, modes=["rev"]) ---------------
class _JaxLib:
    """The slice of the torch API the catalog uses, on JAX (float64 enabled)."""

    def __init__(self):
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        self.jax, self.jnp = jax, jnp
        self.float64, self.float32 = jnp.float64, jnp.float32
        lib = self

        class Function:
            pass

        class autograd:  # noqa: N801 - mirrors torch.autograd
            pass
        autograd.Function = Function
        self.autograd = autograd

        def apply_of(cls):
            def apply(*xs):
                n = len(xs)

                @jax.custom_vjp
                def f(*args):
                    return _unwrap(cls.forward(_Ctx(), *[_T(a, lib) for a in args]))

                def fwd(*args):
                    ctx = _Ctx()
                    out = cls.forward(ctx, *[_T(a, lib) for a in args])
                    return _unwrap(out), (tuple(args), tuple(_unwrap(t) for t in ctx.saved_tensors))

                def bwd(residuals, g):
                    args, saved = residuals
                    ctx = _Ctx()
                    ctx.args = args
                    ctx.saved_tensors = tuple(_T(t, lib) for t in saved)
                    res = cls.backward(ctx, _T(g, lib))
                    res = res if isinstance(res, tuple) else (res,)
                    return tuple(_unwrap(r) if r is not None else jnp.zeros_like(a) for r, a in zip(res, ctx.args))[:n]
                f.defvjp(fwd, bwd)
                return f(*xs)
            return apply
        self.apply_of = apply_of

    def tensor(self, data, dtype=None):
        return _T(self.jnp.asarray(data, dtype=dtype), self)

    def ones_like(self, t):
        return _T(self.jnp.ones_like(_unwrap(t)), self)

    def where(self, c, a, b):
        return _T(self.jnp.where(_unwrap(c), _unwrap(a), _unwrap(b)), self)


class _Ctx:
    def __init__(self):
        self.saved_tensors = ()
        self.args = ()

    def save_for_backward(self, *ts):
        self.saved_tensors = ts


def _unwrap(v):
    return v.a if isinstance(v, _T) else v


class _T:
    """A jnp array with the tensor methods the catalog calls."""

    def __init__(self, a, lib):
        self.a, self.lib = a, lib

    def _w(self, a):
        return _T(a, self.lib)

    def __getattr__(self, name):
        jnp = self.lib.jnp
        table = {"sin": jnp.sin, "cos": jnp.cos, "exp": jnp.exp, "tanh": jnp.tanh, "log": jnp.log, "sqrt": jnp.sqrt,
                 "abs": jnp.abs, "sign": jnp.sign, "relu": lambda a: jnp.maximum(a, 0),
                 "sigmoid": lambda a: 1 / (1 + jnp.exp(-a)), "detach": self.lib.jax.lax.stop_gradient,
                 "t": lambda a: a.T}
        if name in table:
            return lambda: self._w(table[name](self.a))
        if name == "sum":
            return lambda dim=None: self._w(jnp.sum(self.a, axis=dim))
        if name == "to":
            return lambda dtype: self._w(self.a.astype(dtype))
        if name == "dtype":
            return self.a.dtype
        raise AttributeError(name)

    def __getitem__(self, k):
        return self._w(self.a[k])

    def __setitem__(self, k, v):
        self.a = self.a.at[k].set(_unwrap(v))

    def __neg__(self):
        return self._w(-self.a)


def _bin(op):
    def f(self, other):
        return self._w(op(self.a, _unwrap(other)))
    return f


def _rbin(op):
    def f(self, other):
        return self._w(op(_unwrap(other), self.a))
    return f


for _name, _fn in (("add", operator.add), ("sub", operator.sub), ("mul", operator.mul), ("truediv", operator.truediv),
                   ("pow", operator.pow), ("matmul", operator.matmul), ("lt", operator.lt), ("gt", operator.gt)):
    setattr(_T, f"__{_name}__", _bin(_fn))
    if _name in ("add", "sub", "mul", "truediv"):
        setattr(_T, f"__r{_name}__", _rbin(_fn))


def jax_cases():
    """The catalog built on JAX: Functions become jax.custom_vjp, their forward and backward the same code."""
    lib = _JaxLib()

    class _Meta(type):
        def __init__(cls, name, bases, ns):
            super().__init__(name, bases, ns)
            cls.apply = staticmethod(lib.apply_of(cls))
    lib.autograd.Function = _Meta("Function", (), {"forward": None, "backward": None})
    # the custom_vjp bwd needs the forward's arguments to fill zeros for None gradients
    return lib, catalog(lib)


def _raw(fn):
    def f(*args):
        return _unwrap(fn(*args))
    return f


def jax_check_grads(lib, case):
    from jax.test_util import check_grads
    name, kind, fn, arrays, dtype = case
    if fn is None:
        return None
    args = tuple(lib.jnp.asarray(a, dtype=getattr(lib, dtype)) for a in arrays)
    fn = _raw(fn)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_grads(fn, args, order=1, modes=["rev"])
        return False
    except Exception:  # noqa: BLE001 - AssertionError on a mismatch; anything else: refused
        return True


if __name__ == "__main__":
    main()
