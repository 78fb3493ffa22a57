"""The torch backend: a .py target that imports torch runs on real PyTorch.

Inputs are torch tensors (float64 unless --dtype says float32); the target's own code, its
custom Functions and PyTorch's autograd run untouched. What the commands share with the engine
backend is not the tensors but the report:

- grad and graph use the torch tensors directly: the value, `.grad` after PyTorch's own
  `backward()`, its reprs, and PyTorch's `grad_fn` graph (names from PyTorch, saved tensors from
  its `_saved_*` attributes), drawn by engine.dotgraph through `TorchView`.
- check and jacobian use the engine's checker through its backend interface
  (engine/autograd/backend.py), implemented here by `TorchBackend`: the target runs on torch
  tensors, the analytical side is PyTorch's autograd on PyTorch's graph -- the user's custom
  backward included, `.grad` from PyTorch's own backward() -- and the numerical side is central
  differences of the PyTorch forward, batched (`Differences`); the checker, tables, JSON and
  exit codes are the same. --locate records every custom Function application (`locate`).

PyTorch is imported here only, and only when a target runs on it.
"""
import contextlib
import re

import numpy as np

from engine.graph import node_name  # noqa: E402 - the engine is loaded whenever this module is


def torch():
    import torch as _torch
    return _torch


def label():
    return f"PyTorch {torch().__version__}"


@contextlib.contextmanager
def autograd_errors():
    """Around PyTorch's autograd running a target's graph (backward(), autograd.grad): what it
    raises is about the user's code -- their backward's result (a wrong shape, a list, too few
    gradients), a graph their f already freed with its own y.backward() -- so it is a usage error
    (exit 2) with PyTorch's own first line, as the engine's errors for the same things are. An
    error raised inside the user's backward itself keeps their traceback."""
    try:
        yield
    except (RuntimeError, TypeError) as e:
        from .errors import CliError
        from .targets import user_traceback
        if user_traceback(e) is not None or isinstance(e, CliError):
            raise
        raise CliError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None


def vjp(outputs, inputs, grad_outputs, **kwargs):
    """torch.autograd.grad(outputs, inputs, grad_outputs, **kwargs), as the gradient of the one
    scalar sum_k sum(outputs[k] * grad_outputs[k]): the same vector-Jacobian product (each
    output's backward receives its cotangent exactly: 1.0 * g), without the tensor cotangents
    that make PyTorch's _make_grads import torch.fx's symbolic shapes and with them sympy --
    0.5 s of every CLI check on PyTorch, paid on its first backward."""
    t = torch()
    total = None
    for o, g in zip(outputs, grad_outputs):
        term = (o * g).sum()
        total = term if total is None else total + term
    return t.autograd.grad(total, inputs, **kwargs)


def to_numpy(t):
    """A torch tensor's values as a numpy array (a copy). bfloat16, which numpy lacks, comes as
    float32, which holds every bfloat16 value exactly."""
    from engine._layout import same_layout
    t = t.detach().cpu()
    if t.dtype == torch().bfloat16:
        t = t.to(torch().float32)
    return same_layout(t.numpy())         # in its memory layout: a transposed input stays transposed


def dtype_names(outs):
    """The dtypes (names: "float64", "bfloat16", ...) of `outs` and of every tensor their graph's
    nodes produced (PyTorch records each node's output metadata)."""
    names = {str(o.dtype).replace("torch.", "") for o in outs}
    for n in TorchView.walk([o.grad_fn for o in outs]):
        for m in getattr(n, "_input_metadata", ()) or ():
            names.add(str(m.dtype).replace("torch.", ""))
    return names


def fresh_leaf(t):
    """A new leaf with t's values, dtype, requires_grad and memory layout (clone() packs a strided
    slice densely: f would see other strides than in the check)."""
    from engine._layout import same_layout
    if t.dtype == torch().bfloat16 or t.device.type != "cpu":
        return t.detach().clone().requires_grad_(t.requires_grad)
    return torch().from_numpy(same_layout(t.detach().numpy())).requires_grad_(t.requires_grad)


def to_engine(t):
    """A torch tensor as an engine leaf with the same values, dtype and requires_grad."""
    from engine.tensor import Tensor
    e = Tensor._make(to_numpy(t))
    return e.requires_grad_(True) if t.requires_grad and e.is_floating_point() else e


def _to_torch(x):
    from engine._layout import same_layout
    return torch().from_numpy(same_layout(x.numpy(force=True)))


class TorchBackend:
    """PyTorch's own autograd as the checker's backend (engine/autograd/backend.py): the target
    runs on torch tensors, its graph is PyTorch's, its vector-Jacobian products are
    torch.autograd.grad with the user's backward in them, and .grad is what PyTorch's backward()
    leaves. The checker hands it engine tensors (its numbers); they reach PyTorch as torch
    tensors on the same memory, in the same layout (a transposed input stays transposed)."""

    name = "torch"

    def __init__(self, fn):
        self.fn = fn
        self.differences = Differences(fn)

    @staticmethod
    def _leaves(inputs, diff):
        return [_to_torch(x).requires_grad_(True) if i in diff else _to_torch(x) for i, x in enumerate(inputs)]

    def forward(self, inputs, diff):
        return TorchRun(self.fn, self._leaves(inputs, set(diff)), diff)

    def backward_grads(self, inputs, diff, cotangents):
        t = torch()
        leaves = self._leaves(inputs, set(diff))
        with t.enable_grad():
            outs = self.fn(*leaves)
        outs = _tuple(outs)
        live = [(o, v) for o, v in zip(outs, cotangents) if o.requires_grad]
        with autograd_errors():
            if len(live) == 1 and live[0][0].numel() == 1 and np.all(live[0][1] == 1):
                live[0][0].backward()                        # exactly y.backward()
            elif live:      # backward() of sum_k <o_k, v_k>: the same .grad, without sympy's import (vjp)
                sum((o * t.from_numpy(np.asarray(v)).to(o.dtype)).sum() for o, v in live).backward()
        return [np.zeros(inputs[i]._data.shape) if leaves[i].grad is None
                else to_numpy(leaves[i].grad).astype(np.float64) for i in diff]


def _tuple(outs):
    return tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)


class TorchRun:
    """The target run once on PyTorch with grad mode on: a Run (engine/autograd/backend.py)."""

    ROW_BLOCK_BYTES = 1 << 25      # the one-hot cotangents of a batched Jacobian block

    def __init__(self, fn, leaves, diff):
        t = torch()
        import engine
        with t.enable_grad():
            outs = _tuple(fn(*leaves))
        self._outs = outs
        self._ins = [leaves[i] for i in diff]
        self.outputs = tuple(engine.Tensor._make(to_numpy(o)) for o in outs)
        self.live = [k for k, o in enumerate(outs) if o.requires_grad]

    def _grad(self, pairs, batched=False):
        """torch.autograd.grad of sum_k <outputs[k], cotangent[k]> as float arrays (None: no gradient)."""
        need = [x for x in self._ins if x.requires_grad]
        if not pairs or not need:
            return [None] * len(self._ins)
        with autograd_errors():
            if batched:
                gs = torch().autograd.grad([o for o, _ in pairs], need, [g for _, g in pairs], retain_graph=True,
                                           allow_unused=True, is_grads_batched=True)
            else:
                gs = vjp([o for o, _ in pairs], need, [g for _, g in pairs], retain_graph=True, allow_unused=True)
        return [None if g is None else to_numpy(g) for g in gs]

    def vjp(self, cotangents, batched=False):
        # an output whose cotangent is all zeros gets none (PyTorch's grad of the others only): a
        # Function with set_materialize_grads(False) then sees None, as in gradcheck's rows, and
        # its None branch is checked too
        t = torch()
        live = [self._outs[k] for k in self.live]
        pairs = [(o, t.from_numpy(np.asarray(g)).to(o.dtype)) for o, g in zip(live, cotangents)
                 if g is not None and (len(self._outs) == 1 or np.any(g))]
        return self._grad(pairs, batched)

    def jacobian(self):
        table = []
        for k, o in enumerate(self._outs):
            n = o.numel()
            rows = [np.zeros((n, x.numel())) for x in self._ins]
            table.append(rows)
            if not o.requires_grad:
                continue
            done = self._batched_rows(o, rows) if not custom_functions([o]) else False
            if not done:
                eye = np.zeros(n)
                for r in range(n):                # one backward per row, as gradcheck
                    eye[r] = 1.0
                    gs = self._grad([(o, torch().from_numpy(eye.reshape(tuple(o.shape))).to(o.dtype))])
                    eye[r] = 0.0
                    for row, g in zip(rows, gs):
                        if g is not None:
                            row[r] = g.reshape(-1)
        return table

    def _batched_rows(self, o, rows):
        """The Jacobian rows of output o in blocks of one-hot cotangents, one batched
        autograd.grad each (is_grads_batched): a graph of PyTorch's own ops (a custom Function
        without a vmap rule takes its rows one at a time). False when PyTorch refuses."""
        t = torch()
        n = o.numel()
        block = max(1, min(n, self.ROW_BLOCK_BYTES // max(8 * n, 1)))
        try:
            for start in range(0, n, block):
                stop = min(n, start + block)
                seed = t.zeros((stop - start, n), dtype=o.dtype)
                seed[t.arange(stop - start), t.arange(start, stop)] = 1.0
                gs = self._grad([(o, seed.reshape((stop - start,) + tuple(o.shape)))], batched=True)
                for row, g in zip(rows, gs):
                    if g is not None:
                        row[start:stop] = g.reshape(stop - start, -1)
        except Exception:  # noqa: BLE001 - vmap refuses an op: the row loop, which raises what is real
            return False
        return True

    def custom_functions(self):
        return custom_functions(self._outs)

    def not_batch_aware(self):
        try:
            seeds = [torch().zeros((1,) + tuple(self._outs[k].shape), dtype=self._outs[k].dtype) for k in self.live]
            self._grad(list(zip([self._outs[k] for k in self.live], seeds)), batched=True)
        except Exception as e:  # noqa: BLE001 - what PyTorch says of a batch of cotangents
            return f"PyTorch cannot backward a batch of grad_outputs here ({str(e).strip().splitlines()[0]})"
        return ""


@contextlib.contextmanager
def _forwards_only():
    """While finite differences run batched: `SomeFunction.apply(...)` calls the Function's own
    forward and nothing else. Differences need forward values only, and vmap refuses a custom
    Function without a vmap rule (most of them) even under no_grad; its forward is plain torch
    code that vmap batches. (A `fn = SomeFunction.apply` bound before the run still reaches the
    real apply, which vmap refuses: the loop runs then. Differences._agrees compares the first
    column with the real apply either way.)"""
    from torch.autograd.function import Function, FunctionCtx, _SingleLevelFunction
    original = Function.__dict__["apply"]
    default_setup = _SingleLevelFunction.setup_context

    def apply(cls, *args, **kwargs):
        if cls.setup_context is not default_setup:       # PyTorch 2 style: forward(*args), no ctx
            return cls.forward(*args, **kwargs)
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, torch().Tensor) and a.requires_grad for a in args)
        return cls.forward(ctx, *args, **kwargs)
    Function.apply = classmethod(apply)
    try:
        yield
    finally:
        Function.apply = original


class Differences:
    """Central differences of a PyTorch target, computed in PyTorch (the engine's checker calls
    this for its numerical side: engine.autograd.checker._numerical_columns).

    Batched where the target allows it: a block of perturbed copies of one input -- +eps and -eps
    at one element each -- goes through `torch.func.vmap` in one call, in blocks that fit
    BLOCK_BYTES. The first block is compared with single evaluations of its first column; when
    vmap refuses the target (a custom Function without vmap support, data-dependent control flow,
    `.item()`, an in-place op on the input, randomness) or its numbers disagree, every later call
    runs one evaluation at a time, on a private torch copy of the input perturbed in place (no
    numpy round trip per evaluation), and `fallback` says why. Batched numbers equal the loop's
    to the last bits of float64 (a batched matmul rounds its sums in another order), far below
    the error of the differences themselves."""

    BLOCK_BYTES = 1 << 26          # the perturbed copies and their outputs, per block
    MAX_BLOCK = 512                # columns per block (2 evaluations each)
    AGREE = 1e-10                  # batched vs single, relative to the output's size
    MIN_COLUMNS = 32               # fewer columns than this: the loop is faster than vmap's set-up

    def __init__(self, fn):
        self.fn = fn
        self.batched = None            # None: not tried yet; then True or False
        self.fallback = ""             # why the loop is used (said once, in the report)
        self.ran_batched = False       # whether any differences of this target ran batched

    @staticmethod
    def _inputs(xs):
        """Private torch copies of the engine inputs, in their memory layout; the rest as they are."""
        from engine._layout import same_layout
        return [torch().from_numpy(same_layout(x._data)) if hasattr(x, "_data") else x for x in xs]

    @staticmethod
    def _tuple(outs):
        return tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)

    def __call__(self, xs, idx, eps, cols, tick=None, overflow=None):
        t = torch()
        ins = self._inputs(xs)
        cols = [int(c) for c in cols]
        with t.no_grad():
            outs0 = self._tuple(self.fn(*ins))
        sizes = [o.numel() for o in outs0]
        res = [np.zeros((n, len(cols))) for n in sizes]
        over = [np.zeros((n, len(cols)), dtype=bool) for n in sizes]
        if overflow is not None:
            overflow.extend(over)
        start = 0
        if self.batched is not False and len(cols) >= self.MIN_COLUMNS and _dense(ins[idx]):
            # (a strided slice -- gaps in its memory -- is perturbed in place by the loop, so that f
            # sees its strides; the batch lays each copy out densely)
            start = self._batched(ins, idx, eps, cols, res, over, tick, sum(sizes))
            self.ran_batched = self.ran_batched or start > 0
        if start < len(cols):
            self._loop(ins, idx, eps, cols, start, res, over, tick)
        return res

    def _put(self, res, over, j, plus, minus, eps):
        t = torch()
        for k, (p, m) in enumerate(zip(plus, minus)):
            p, m = p.detach().to(t.float64), m.detach().to(t.float64)
            res[k][:, j] = ((p - m) / (2 * eps)).reshape(p.shape[0], -1).numpy().T
            over[k][:, j] = ((p.isinf() | m.isinf()) & ~p.isnan() & ~m.isnan()).reshape(p.shape[0], -1).numpy().T

    def _loop(self, ins, idx, eps, cols, start, res, over, tick):
        t = torch()
        base = ins[idx]                  # a private copy: perturbed in place, restored after each
        shape = tuple(base.shape)
        with t.no_grad():
            for j in range(start, len(cols)):
                at = np.unravel_index(cols[j], shape) if shape else ()
                old = base[at].clone()
                base[at] = old + eps
                plus = [o.detach().to(t.float64, copy=True) for o in self._tuple(self.fn(*ins))]
                base[at] = old - eps
                minus = [o.detach().to(t.float64, copy=True) for o in self._tuple(self.fn(*ins))]
                base[at] = old
                self._put(res, over, slice(j, j + 1), [p.reshape(1, -1) for p in plus],
                          [m.reshape(1, -1) for m in minus], eps)
                if tick is not None:
                    tick()

    def _batched(self, ins, idx, eps, cols, res, over, tick, out_n):
        """Blocks through vmap; returns how many columns were done (all, or 0 after a refusal)."""
        t = torch()
        base = ins[idx]
        shape, n = tuple(base.shape), base.numel()
        # each perturbed copy is laid out in memory as the input is (a transposed or Fortran-ordered
        # input stays so inside f: a reduction then sums in the same order as the loop's)
        perm = sorted(range(len(shape)), key=lambda d: -base.stride(d)) if shape else []
        inv = [perm.index(d) for d in range(len(shape))]
        mem_shape = tuple(shape[d] for d in perm)
        flat = base.permute(perm).reshape(-1) if shape else base.reshape(-1)
        if perm != sorted(perm):
            cols_mem = [int(np.ravel_multi_index(tuple(np.unravel_index(c, shape)[d] for d in perm), mem_shape))
                        for c in cols]
        else:
            cols_mem = cols
        per_col = 2 * (n + out_n) * 8
        block = max(1, min(self.MAX_BLOCK, self.BLOCK_BYTES // max(per_col, 1), len(cols)))

        def one(xi):
            args = list(ins)
            args[idx] = xi.reshape(mem_shape).permute(inv) if shape else xi.reshape(shape)
            return self.fn(*args)
        mapped = t.func.vmap(one, randomness="error")
        # one buffer for every block: rows [0, block) are +eps copies, [block, 2 block) -eps ones;
        # after a block only its 2m perturbed entries are put back (a fresh copy per block cost
        # more than f itself at 32k elements: 64 MB of page faults and copying per block)
        buf = flat.unsqueeze(0).repeat(2 * block, 1)
        done = 0
        while done < len(cols):
            c = cols[done:done + block]
            m = len(c)
            where = t.tensor(cols_mem[done:done + block], dtype=t.long)
            rows = t.arange(m)
            buf[rows, where] = flat[where] + eps
            buf[block + rows, where] = flat[where] - eps
            version = buf._version
            try:
                with t.no_grad(), _forwards_only():
                    outs = self._tuple(mapped(buf))
                if self.batched is None:
                    self._agrees(outs, ins, idx, c[0], eps, block)
            except Exception as e:  # noqa: BLE001 - any refusal: the loop computes the same thing
                if self.batched:            # it ran before on this target: a real error, raise it
                    raise
                self.batched = False
                lines = str(e).strip().splitlines() or [type(e).__name__]
                text = lines[-1] if lines[0].startswith("Traceback") else lines[0]   # a user traceback: its error
                text = re.sub(r"^[A-Za-z_.]*(Error|Exception): ", "", text).split(". ")[0].rstrip(".")[:240]
                self.fallback = (f"finite differences ran one evaluation at a time: torch.func.vmap "
                                 f"cannot batch this target ({text})")
                return done
            if buf._version != version:      # f changed its input in place: copy afresh
                buf.copy_(flat.unsqueeze(0).expand(2 * block, n))
            else:
                buf[rows, where] = flat[where]
                buf[block + rows, where] = flat[where]
            self.batched = True
            plus = [o[:m].reshape(m, -1) for o in outs]
            minus = [o[block:block + m].reshape(m, -1) for o in outs]
            self._put(res, over, slice(done, done + m), plus, minus, eps)
            done += m
            if tick is not None:
                for _ in range(m):
                    tick()
        return done

    def _agrees(self, outs, ins, idx, col, eps, m):
        """The first column of the first block against single evaluations (raises if not)."""
        t = torch()
        base = ins[idx]
        at = np.unravel_index(col, tuple(base.shape)) if base.dim() else ()
        old = base[at].clone()
        try:
            singles = []
            for sign, row in ((1, 0), (-1, m)):
                base[at] = old + sign * eps
                with t.no_grad():
                    got = self._tuple(self.fn(*ins))
                singles += [(o[row], s) for o, s in zip(outs, got)]
        finally:
            base[at] = old
        for b, s in singles:
            b, s = b.to(t.float64), s.detach().to(t.float64)
            if b.shape != s.shape:
                raise RuntimeError("its batched outputs have another shape than single ones")
            scale = float(s.abs().max()) if s.numel() else 0.0
            if not t.allclose(b, s, rtol=0, atol=self.AGREE * max(scale, 1e-300), equal_nan=True):
                raise RuntimeError("its batched outputs differ from single evaluations")


def _dense(x):
    """Whether a torch tensor's memory is a permutation of a contiguous block (no gaps)."""
    dims = sorted((d for d in range(x.dim()) if x.shape[d] > 1), key=lambda d: -x.stride(d))
    size = 1
    for d in reversed(dims):
        if x.stride(d) != size:
            return False
        size *= x.shape[d]
    return True


def _kink_distances(name, args, kwargs):
    """For a PyTorch op with kinks (abs, relu, clamp, maximum, ...): the arrays whose zeros are its
    kinks, as the engine's registry entries give them; [] for any other op."""
    name = name.rstrip("_")
    if not args or not isinstance(args[0], torch().Tensor) or not args[0].is_floating_point():
        return []

    def arr(v):
        return v.detach().to(torch().float64).cpu().numpy() if isinstance(v, torch().Tensor) else np.float64(v)
    x = arr(args[0])
    if name in ("abs", "absolute", "relu", "leaky_relu", "elu", "celu", "selu", "relu6"):
        return [x] + ([x - 6.0] if name == "relu6" else [])
    if name in ("clamp", "clip", "clamp_min", "clamp_max"):
        lo = kwargs.get("min", args[1] if len(args) > 1 else None)
        hi = kwargs.get("max", args[2] if len(args) > 2 else None)
        if name == "clamp_max":
            lo, hi = None, kwargs.get("max", args[1] if len(args) > 1 else None)
        return [x - arr(b) for b in (lo, hi) if b is not None]
    if name == "hardtanh":
        lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
        hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
        return [x - lo, x - hi]
    if name in ("maximum", "minimum", "fmax", "fmin") and len(args) > 1:
        return [x - arr(args[1])]
    return []


def kink_watch(eps, found, low=None):
    """A TorchFunctionMode that appends (op name, index) to found for each op called with an input
    within eps of one of its kinks -- the engine's kink watch, for PyTorch code; and to `low` (a
    list, when given) the first dtype below float64 an op receives (float32 inside a float64 f)."""
    from torch.overrides import TorchFunctionMode
    t = torch()
    lows = {t.float32: "float32", t.float16: "float16", t.bfloat16: "bfloat16"}

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if low is not None and not low:
                for a in args:
                    if isinstance(a, t.Tensor) and a.dtype in lows:
                        low.append(lows[a.dtype])
                        break
            name = getattr(func, "__name__", "")
            if name.rstrip("_") in _KINKED:
                try:
                    for d in _kink_distances(name, args, kwargs):
                        near = np.abs(np.asarray(d)) <= eps
                        if np.any(near):
                            idx = np.unravel_index(int(np.argmax(near)), near.shape) if near.ndim else ()
                            found.append((name.rstrip("_"), tuple(int(i) for i in idx)))
                            break
                except Exception:  # noqa: BLE001 - a watch never changes what the code does
                    pass
            elif name in _SELECTING:
                try:
                    idx = _tie_within(func, args, kwargs, eps)
                    if idx is not None:
                        found.append((name, idx))
                except Exception:  # noqa: BLE001 - a watch never changes what the code does
                    pass
            return func(*args, **kwargs)
    return Watch()


# ops that select among their input's elements (max and its pools, sorts): a tie is their kink
_SELECTING = {"max", "amax", "min", "amin", "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
              "max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d",
              "adaptive_max_pool3d", "topk", "sort", "kthvalue", "median", "nanmedian", "cummax", "cummin"}


def _tie_within(func, args, kwargs, eps):
    """The output index where a selecting op (max, max_pool2d, topk, sort, ...) meets a tie within
    eps, or None: its output is piecewise linear in its input, y(x + d) + y(x - d) - 2 y(x) = 0 on
    one piece and |d_a - d_b| where two candidates a, b swap -- d with distinct sizes per element
    (red team: max_pool2d over an integer image with ties was FAILED on PyTorch, while the
    engine's MaxBackward0 said "a kink")."""
    t = torch()
    x = args[0] if args else None
    if not isinstance(x, t.Tensor) or not x.is_floating_point() or x.numel() < 2:
        return None
    n = x.numel()
    rng = np.random.default_rng(0)
    r = (rng.permutation(n) / n + 0.5) * rng.choice([-1.0, 1.0], n)
    d = t.from_numpy(r.reshape(tuple(x.shape))).to(x.dtype) * eps

    def first(y):
        y = y[0] if isinstance(y, (tuple, list)) else y          # (values, indices) of max(dim), topk, sort
        return y.detach().to(t.float64).numpy()
    with t.no_grad():
        ys = [first(func(v, *args[1:], **kwargs)) for v in (x + d, x - d, x)]
    second = np.abs(ys[0] + ys[1] - 2 * ys[2])
    near = second > np.maximum(eps / (4 * n), 64 * np.finfo(np.float64).eps * (1 + np.abs(ys[2])))
    if not np.any(near):
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(near)), near.shape)) if near.ndim else ()


_KINKED = {"abs", "absolute", "relu", "leaky_relu", "elu", "celu", "selu", "relu6", "clamp", "clip", "clamp_min",
           "clamp_max", "hardtanh", "maximum", "minimum", "fmax", "fmin"}


def engine_function(fn):
    """`fn` (torch tensors -> torch tensor(s)) as a function of engine tensors for the engine's
    checker: calling it evaluates the target in PyTorch (under no_grad unless the engine's grad
    mode is on: a target that computes gradients itself) and returns the values as engine
    tensors, with no graph; its `backend` (TorchBackend) is what the checker differentiates."""
    import engine

    def f(*xs):
        t = torch()
        from engine.observe import KinkWatch, active
        watch = active(KinkWatch)          # the engine's checker watches for kinks: watch PyTorch's ops too
        grad = engine.is_grad_enabled()
        with (t.enable_grad() if grad else t.no_grad()), (kink_watch(watch.eps, watch.found, watch.low)
                                                          if watch is not None else contextlib.nullcontext()):
            # with grad on (a target that registers a hook or calls backward() itself), the inputs
            # that need a gradient on the engine's side need one on PyTorch's
            outs = fn(*[_to_torch(x).requires_grad_(True) if grad and x.requires_grad and x.is_floating_point()
                        else _to_torch(x) for x in xs])
        if isinstance(outs, (tuple, list)):
            return tuple(engine.tensor(to_numpy(o)) for o in outs)
        return engine.tensor(to_numpy(outs))
    f.backend = TorchBackend(fn)
    return f


def custom_functions(outs):
    """Names of the user's torch.autograd.Function nodes on the PyTorch graph of `outs`."""
    from torch.autograd.function import BackwardCFunction
    names = []
    for n in TorchView.walk([o.grad_fn for o in outs if hasattr(o, "grad_fn")]):
        if isinstance(n, BackwardCFunction) and node_name(n) not in names:
            names.append(node_name(n))
    return names


def saved_tensors(node):
    """[(name, tensor)] of a PyTorch node's saved tensors (`_saved_self` -> "self")."""
    from torch.autograd.function import BackwardCFunction
    if isinstance(node, BackwardCFunction):       # a custom Function: ctx.save_for_backward(...)
        return [(f"saved{k}", v) for k, v in enumerate(node.saved_tensors) if v is not None]
    out = []
    for attr in dir(node):
        if attr.startswith("_saved_"):
            v = getattr(node, attr)     # RuntimeError once freed by a backward without retain_graph
            if isinstance(v, torch().Tensor):
                out.append((attr[len("_saved_"):], v))
    return out


def frees_saved_values(out):
    """Whether PyTorch's backward() on `out` frees saved tensors (so a second call would fail)."""
    for n in TorchView.walk([out.grad_fn]):
        try:
            if saved_tensors(n):
                return True
        except RuntimeError:            # already freed: it had saved something
            return True
    return False


class TorchView:
    """engine.dotgraph's view of a PyTorch graph (see engine.dotgraph.EngineView)."""

    tensor_type = None      # set on first use (PyTorch imported only then)

    @staticmethod
    def root(o):
        return o.grad_fn

    @staticmethod
    def walk(roots):
        """Every node reachable from roots, each once, in a fixed iterative order."""
        seen = set()
        stack = [r for r in reversed(list(roots)) if r is not None]
        order = []
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            order.append(n)
            for nxt, _ in reversed(n.next_functions):
                if nxt is not None and nxt not in seen:
                    stack.append(nxt)
        return order

    @staticmethod
    def data(t):
        return to_numpy(t)

    @staticmethod
    def grad(t):
        if not (t.is_leaf or t.retains_grad) or t.grad is None:
            return None
        return to_numpy(t.grad)

    @staticmethod
    def variable(node):
        return getattr(node, "variable", None) if node_name(node).endswith("AccumulateGrad") else None

    @staticmethod
    def forward_name(node):
        name = node_name(node)
        return name[:-len("Backward0")].lower() if name.endswith("Backward0") else ""

    @staticmethod
    def saved(node):
        return [(name, TorchView.data(v)) for name, v in saved_tensors(node)]

    @staticmethod
    def uses(node, t):
        """The names under which node saved tensor t (the same storage, shape and strides)."""
        try:
            saved = saved_tensors(node)
        except RuntimeError:                 # freed by a backward without retain_graph
            return []
        return [name for name, v in saved if v.data_ptr() == t.data_ptr() and v.shape == t.shape
                and v.stride() == t.stride()]

    @staticmethod
    def children(node):
        return [n for n, _ in node.next_functions]


def view():
    TorchView.tensor_type = torch().Tensor
    return TorchView


def expression_library():
    """What an expression calls when it runs on PyTorch (--compare torch): the same language
    (names are checked against the engine's registry first), PyTorch's functions at run time."""
    from expressions.compiler import EngineLibrary

    class TorchLibrary(EngineLibrary):
        def __init__(self):
            t = torch()
            self.Tensor, self.tensor, self._torch = t.Tensor, t.tensor, t

        def function(self, name, method):
            t = self._torch
            if "." in name and not method:              # linalg.det: torch.linalg.det
                mod, _, attr = name.rpartition(".")
                found = getattr(getattr(t, mod, None), attr, None)
            else:
                found = getattr(t.Tensor, name, None) if method else (
                    getattr(t, name, None) or getattr(t.nn.functional, name, None))
            if found is None:
                raise NoCounterpart(f"{'.' if method else ''}{name}")
            return found

        def compare(self, op):
            return getattr(self._torch, op)
    return TorchLibrary()


class NoCounterpart(LookupError):
    """An expression function the engine has and PyTorch does not."""


def node_names(roots, view):
    """The names of the nodes on a graph, in walk order (AccumulateGrad without namespace)."""
    return [node_name(n).replace("torch::autograd::", "") for n in view.walk(roots)]


def second_order(fn, inputs, names, seed=0):
    """The second-order check on PyTorch (the engine's checker.second_order, with PyTorch's
    autograd underneath): first_order(*xs, *vs) = torch.autograd.grad(fn(xs), xs, vs,
    create_graph=True), made an engine function by engine_function, so the checker's backward of
    it is PyTorch's double backward. Returns (first_order, inputs + grad_outputs, names)."""
    import engine
    t = torch()
    inputs = tuple(inputs)
    n = len(inputs)
    diff = [i for i, x in enumerate(inputs) if isinstance(x, engine.Tensor) and x.requires_grad]
    with t.no_grad():
        outs = fn(*[_to_torch(x) for x in inputs])
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    rng = np.random.default_rng(seed)
    vs = tuple(engine.tensor(rng.standard_normal(tuple(o.shape)).astype(o.detach().numpy().dtype)).requires_grad_(True)
               for o in outs)

    def first_order(*args):
        xs, gs_in = list(args[:n]), args[n:]
        outer = t.is_grad_enabled()             # the backend's run (on) or finite differences (off)
        with t.enable_grad():
            for i in diff:                      # under the checker's no_grad (finite differences)
                if not xs[i].requires_grad:     # the inputs come plain: make them leaves
                    xs[i] = xs[i].detach().requires_grad_(True)
            ys = fn(*xs)
            ys = ys if isinstance(ys, (tuple, list)) else (ys,)
            pairs = [(y, g) for y, g in zip(ys, gs_in) if y.requires_grad]
            gs = vjp([y for y, _ in pairs], [xs[i] for i in diff], [g for _, g in pairs],
                                 create_graph=outer, allow_unused=True) if pairs else [None] * len(diff)
        if outer and _error_node_in([g.grad_fn for g in gs if g is not None and g.grad_fn is not None]):
            # a once_differentiable backward: PyTorch marks its results with an Error node, which
            # raises only when run -- and it is never run when it sits under other ops (x * f(x):
            # its edges lead to the grad_output, not to x), or with allow_unused: the second
            # derivative through it came out 0, "wrong at every step". The engine raises; so does
            # this, in its words
            from .errors import CliError
            raise CliError("trying to differentiate twice a function that was marked with @once_differentiable: "
                           "its backward has no second derivative, so --order 2 cannot check it")
        res = tuple(g if g is not None else t.zeros_like(xs[i]) for g, i in zip(gs, diff))
        if not outer:
            res = tuple(r.detach() for r in res)
        return res
    vnames = ["grad_output" if len(vs) == 1 else f"grad_output{k}" for k in range(len(vs))]
    return engine_function(first_order), inputs + vs, list(names) + vnames


def _error_node_in(roots):
    """Whether PyTorch's graph from roots holds an Error or DelayedError node (what
    once_differentiable puts on its results under create_graph)."""
    seen, stack = set(), list(roots)
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node_name(node).rsplit("::", 1)[-1] in ("Error", "DelayedError"):
            return True
        stack.extend(nxt for nxt, _ in node.next_functions)
    return False


@contextlib.contextmanager
def _recording(user_files, module_names):
    """While inside: every custom Function application is recorded (a list of dicts, yielded) --
    `torch.autograd.Function.apply` wrapped, and each Function subclass's own forward (PyTorch
    looks forward up on every call, so a `fn = MyFunction.apply` bound before is seen too) --
    its class, copies of the inputs it received, whether each needed a gradient, where in the
    user's code it was made, in which nn.Module, and whether inside another Function's forward."""
    from torch.autograd.function import Function

    from engine.autograd.locate import _where, module_of_stack
    t = torch()
    records = []
    state = {"depth": 0, "off": False, "done": 0}
    patched = {}                       # class -> its own forward / setup_context attributes, restored after

    def record(cls, args, ctx):
        rec = {"cls": cls, "kwargs": {}, "where": _where(user_files, skip=3), "nested": state["depth"] > 0,
               "module": module_of_stack(module_names or {}, t.nn.Module), "node": ctx,
               "args": [a.detach().clone() if isinstance(a, t.Tensor) else a for a in args],
               "needs": [isinstance(a, t.Tensor) and a.requires_grad and a.is_floating_point() for a in args]}
        records.append(rec)

    def patch(cls):
        """Wrap cls's own forward (and setup_context) for this run: `fn = MyFunction.apply`, bound
        before the run, still reaches them, as PyTorch looks forward up on every call."""
        if cls in patched or "forward" not in vars(cls):
            return
        own = {k: vars(cls)[k] for k in ("forward", "setup_context") if k in vars(cls)}
        patched[cls] = own
        fwd = own["forward"].__func__ if isinstance(own["forward"], staticmethod) else own["forward"]
        setup = "setup_context" in own

        def forward(*args, **kwargs):
            rec = None
            if not state["off"]:
                record(cls, args if setup else args[1:], None if setup else args[0])
                rec = records[-1]
            state["depth"] += 1
            try:
                return fwd(*args, **kwargs)
            finally:
                state["depth"] -= 1
                if rec is not None:
                    rec["done"] = state["done"] = state["done"] + 1
        cls.forward = staticmethod(forward)
        if setup:
            own_sc = own["setup_context"]
            sc = own_sc.__func__ if isinstance(own_sc, staticmethod) else own_sc

            def setup_context(ctx, inputs, output):
                if not state["off"]:
                    last = next((r for r in reversed(records) if r["cls"] is cls and r["node"] is None), None)
                    if last is not None:
                        last["node"] = ctx
                return sc(ctx, inputs, output)
            cls.setup_context = staticmethod(setup_context)

    def every_subclass(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from every_subclass(sub)
    original = Function.__dict__["apply"]

    def apply(cls, *args, **kwargs):              # a Function class made while the target runs
        patch(cls)
        return original.__func__(cls, *args, **kwargs)
    for cls in list(every_subclass(Function)):
        patch(cls)
    Function.apply = classmethod(apply)
    try:
        yield records
    finally:
        # in the order the applications finished, as the engine makes its nodes: a Function applied
        # inside another's forward comes before it, so a wrong inner one is named first, not the
        # right wrapper that fails through it (red team: a checkpoint-style Function)
        records.sort(key=lambda r: r.get("done", float("inf")))
        Function.apply = original
        for cls, own in patched.items():
            for k, v in own.items():
                setattr(cls, k, v)
        state["off"] = True                 # the classes are restored: nothing records now


def locate(fn, inputs, *, eps, atol, rtol, user_files, module_names=None, seed=0, max_elements=None, order=1):
    """Where a PyTorch target's gradient goes wrong: every custom Function application, checked
    on its own. The target runs once with `torch.autograd.Function.apply` wrapped (for this run
    only, and each Function subclass's own forward, which PyTorch looks up at every call, so a
    `fn = MyFunction.apply` bound before the run is seen too), which records each application --
    its class, copies of the inputs it received, whether
    each needed a gradient, where in the user's code it was made and in which nn.Module -- nested
    applications (inside another Function's forward, inside modules, applied twice) included.
    Each is then re-checked by the engine's local check (engine.autograd.locate.local_check): its
    backward on random cotangents against central differences of its own forward. Built-in PyTorch
    ops are trusted (PyTorch tests them). Returns ([LocalCheck] in forward order, outputs)."""
    from engine.autograd.locate import check_applications
    t = torch()
    with _recording(user_files, module_names) as records, t.enable_grad():
        outs = fn(*inputs)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    rng = np.random.default_rng(seed)
    checks = check_applications(records, lambda k, rec: _torch_row(k, rec, eps, rng, atol, rtol, max_elements),
                                lambda rec: _second_order_torch(rec, eps, atol, rtol),
                                lambda rec: _applied_in_backward(rec, user_files, module_names), order)
    return checks, list(outs)


def _torch_row(k, rec, eps, rng, atol, rtol, max_elements):
    """The LocalCheck of one recorded Function application (k: its place in forward order), or
    None when it has nothing to check."""
    from engine.autograd.locate import LocalCheck, judge
    res = _local(rec, eps, rng, max_elements)
    if res is None:
        return None
    err, rel, ok, verdict = judge(res, atol, rtol)
    if verdict != "pass" and _kinked(rec, eps):
        # its forward has a kink within eps (a custom ReLU at 0): judged again where no
        # input is near it -- a kink there, or wrong there too
        again = _local(rec, eps, rng, max_elements, shift=True)
        if again is None:
            verdict, ok = "kink", True
        else:
            e2, r2, ok2, v2 = judge(again, atol, rtol)
            err, rel, ok, verdict = (err, rel, True, "kink") if v2 == "pass" else (e2, r2, ok2, v2)
    c = LocalCheck(f"{rec['cls'].__name__}Backward", rec["where"], True, err, rel, ok, k, None, verdict, rec["node"])
    c.module = rec["module"]
    c.nested = rec["nested"]
    c.spread = float(res[6]) if np.isfinite(res[6]) else 0.0
    return c


def _alone(rec):
    """(one, xs): a recorded Function applied alone -- one(*xs) -> its outputs that need a
    gradient -- and float64 copies of the inputs it received that needed one; None if none did."""
    t = torch()
    cls, kwargs, args = rec["cls"], rec["kwargs"], rec["args"]
    pos = [i for i, need in enumerate(rec["needs"]) if need]
    if not pos:
        return None
    xs = tuple(args[i].detach().to(t.float64).clone().requires_grad_(True) for i in pos)

    def one(*ts):
        full = [a.clone() if isinstance(a, t.Tensor) else a for a in args]
        for i, x in zip(pos, ts):
            full[i] = x.clone()       # a copy: a forward that works in place (mark_dirty) refuses a leaf
        out = cls.apply(*full, **kwargs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return tuple(o for o in outs if isinstance(o, t.Tensor) and o.requires_grad)
    return one, xs


def _applied_in_backward(rec, user_files, module_names):
    """The Function applications a recorded Function's backward makes, run once with create_graph
    on random cotangents (a backward written with another Function: its second derivatives are
    that Function's first), recorded as the target's run records them."""
    t = torch()
    alone = _alone(rec)
    if alone is None:
        return []
    one, xs = alone
    gen = t.Generator().manual_seed(0)
    try:
        with t.enable_grad():
            outs = one(*xs)
            vs = [t.randn(o.shape, dtype=o.dtype, generator=gen) for o in outs]
            with _recording(user_files, module_names) as inner:
                vjp(outs, xs, vs, create_graph=True, allow_unused=True)
    except Exception:  # noqa: BLE001 - a backward that does not run again: nothing more to name
        return []
    return inner


def _second_order_torch(rec, eps, atol, rtol):
    """A recorded Function application's second derivatives on their own: the engine's checker on
    PyTorch's double backward of the Function alone (second_order), on float64 copies of the inputs
    that needed a gradient -- gradgradcheck, in the words the engine's own local check uses."""
    import engine
    from engine.autograd.checker import gradcheck
    from engine.autograd.locate import second_order_verdict
    t = torch()
    alone = _alone(rec)
    if alone is None:
        return "", ""
    one, xs = alone
    ins = tuple(engine.tensor(x.detach().numpy().copy()).requires_grad_(True) for x in xs)

    def run():
        # the engine's gradgradcheck on PyTorch's double backward (second_order, as the whole
        # target's --order 2 runs): its words name the worst element and both values, as on the
        # engine, where PyTorch's first line says only "Jacobian mismatch for output 0 ..."
        def graphed(*ts):            # one's outputs are those that need a gradient: grad mode on, and
            with t.enable_grad():    # inputs that need one (second_order's first call gives plain ones)
                return one(*(x if x.requires_grad else x.detach().requires_grad_(True) for x in ts))
        fn2, ins2, _ = second_order(graphed, ins, [f"input{i}" for i in range(len(ins))])
        gradcheck(fn2, ins2, eps=eps, atol=atol, rtol=rtol)
    return second_order_verdict(run)


def _kinked(rec, eps):
    """Whether a recorded Function's forward, run again on its inputs, meets a kink within eps."""
    t = torch()
    found = []
    try:
        with t.no_grad(), kink_watch(eps, found):
            rec["cls"].apply(*[a.clone() if isinstance(a, t.Tensor) else a for a in rec["args"]], **rec["kwargs"])
    except Exception:  # noqa: BLE001 - a forward that does not run again says nothing of kinks
        return False
    return bool(found)


def _local(rec, eps, rng, max_elements=None, shift=False):
    """engine.autograd.locate.local_check of one recorded Function application, on PyTorch (with
    shift: at inputs moved off any kink, engine.autograd.locate.shifted)."""
    from engine.autograd.locate import MAX_LOCAL_ELEMENTS, local_check, shifted
    t = torch()
    cls, kwargs, args = rec["cls"], rec["kwargs"], rec["args"]
    pos = [i for i, need in enumerate(rec["needs"]) if need]
    if not pos:
        return None
    # the values local_check differences: numpy copies of the float inputs that needed a gradient
    # (in the memory layout they arrived in: a backward that reads a transposed input's memory
    # order is checked on the layout it saw -- order="K" -- as the engine's local check is)
    vals = [np.array(a.numpy(), copy=True, order="K") if i in pos else a for i, a in enumerate(args)]
    if shift:
        moved = shifted([vals[i] for i in pos], eps, rng)
        for i, m in zip(pos, moved):
            vals[i] = m
    own = vals                         # what the analytical side (the Function's own backward) runs on

    def call(vs, grad):
        xs = [t.from_numpy(np.array(v, copy=True, order="K")).requires_grad_(grad) if i in pos else
              (v.clone() if isinstance(v, t.Tensor) else v) for i, v in enumerate(vs)]
        with t.enable_grad() if grad else t.no_grad():
            # the Function gets a copy of each leaf (CloneBackward, gradient 1): a forward that works in
            # place with mark_dirty refuses a leaf that requires grad, and was never checked at all
            args = [x.clone() if grad and i in pos else x for i, x in enumerate(xs)]
            out = cls.apply(*args, **kwargs)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return xs, [o for o in out if isinstance(o, t.Tensor) and o.is_floating_point()]

    def forward(vs):
        # in the outputs' own dtype: local_check's round-off estimate is float32's for float32
        # outputs (cast to float64 here, right float32 Functions were "suspicious" on PyTorch)
        return [o.detach().numpy() for o in call(vs, False)[1]]

    resolution = 0.0
    if any(vals[i].dtype.kind == "f" and vals[i].dtype.itemsize < 8 for i in pos):
        # float32 inputs: the forward differenced on float64 copies when it runs there (float32's
        # round-off over the step hid a wrong float32 Function), its own float32 backward judged
        # against them within float32's resolution (engine.autograd.locate.local_check_with)
        up = [np.asarray(v, np.float64) if i in pos else v for i, v in enumerate(vals)]
        try:
            forward(up)
            resolution = max(float(np.finfo(vals[i].dtype).eps) for i in pos if vals[i].dtype.kind == "f")
            vals = up
        except Exception:  # noqa: BLE001 - a Function that takes only float32: differenced as it is
            pass
    graph = []                         # one graph, its backward called as often as asked (retained)

    def backward(vs):
        if not graph:
            graph.append(call(own, True))
        xs, outs = graph[0]
        live = [(o, v) for o, v in zip(outs, vs) if o.requires_grad and v is not None]
        if not live:
            return [None] * len(pos)
        gs = vjp([o for o, _ in live], [xs[i] for i in pos],
                 [t.from_numpy(np.asarray(v, dtype=np.float64)).to(o.dtype) for o, v in live],
                 allow_unused=True, retain_graph=True)
        return [None if g is None else g.detach().numpy() for g in gs]
    return local_check(forward, backward, vals, pos, eps, rng, max_elements=max_elements or MAX_LOCAL_ELEMENTS,
                       needs=[True] * len(pos), each_output=True, resolution=resolution)
