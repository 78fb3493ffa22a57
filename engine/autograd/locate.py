"""Where a gradient goes wrong: every backward node re-checked on its own.

`locate(func, inputs)` runs func once observed (engine.observe: a _Recorder), which is handed
each node as it is made, with copies of the values its forward received and where in the
user's code it was made. Each node is then checked locally: its backward on a random cotangent
v against central differences of v . forward(its recorded inputs) -- a registry op's forward
from the registry, a custom Function's own forward. A node whose local check fails is wrong by
itself, whatever the rest of the graph does; the first such node in forward order is where to
look first.
"""
import dataclasses
import functools
import os
import traceback

import numpy as np

from ..grad_mode import no_grad
from ..observe import KinkWatch, Observer, observe
from ..graph import _fit, class_attr, node_name
from ..tensor import Tensor
from .._xp import NUMPY


@dataclasses.dataclass
class LocalCheck:
    node: str                # the node's name (MulBackward0, CubeBackward)
    where: str               # file:line of the user's code that made it ("" when unknown)
    custom: bool             # a user Function
    max_abs_err: float
    max_rel_err: float
    passed: bool
    order: int               # position in forward order
    span: tuple = None       # (start, end) in an expression, when the front end knows it
    verdict: str = ""        # "pass", "suspicious" (within tolerance, far beyond the finite-difference
                             # error), "fail", "kink" (an input within eps of a kink: not judged) or
                             # "domain" (a step x +- eps left the forward's domain: not judged)
    node_ref: object = dataclasses.field(default=None, repr=False, compare=False)   # the node itself
    module: str = ""         # the nn.Module it was made in (its qualified name), when known
    nested: bool = False     # applied inside another Function's forward (it makes no node there)
    in_backward_of: str = "" # applied inside that Function's backward (recorded with --order 2, when that
                             # Function fails at second order: its second derivatives go through this one)
    second: str = ""         # check --order 2: a custom Function's own second-order check ("pass",
                             # "fail"; "" when not run); built-in ops' double backward is trusted
    second_why: str = ""     # why the second-order check failed, in one line
    spread: float = 0.0      # how far two backward calls with the same cotangent differ (0: reentrant)
    nth: tuple = ()          # (k, n): the k-th of n applications of the same node at the same place
                             # (a Function applied twice on one line), () when it is the only one


class _Recorder(Observer):
    """Each node made, with copies of the values its forward received, where it was made (file:line,
    the expression's span) and the nn.Module it was made in."""

    def __init__(self, user_files, span_of, module_names=None):
        self.items = []
        self.user_files = user_files
        self.span_of = span_of
        self.module_names = module_names

    def on_node(self, node, args, attrs, out=None):
        vals = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else
                     (Tensor._make(np.array(a._data, copy=True)) if isinstance(a, Tensor) else a) for a in args)
        module = ""
        if self.module_names is not None:
            from ..nn import Module
            module = module_of_stack(self.module_names, Module)
        self.items.append((node, vals, dict(attrs or {}), _where(self.user_files),
                           self.span_of() if self.span_of else None, module))


def module_of_stack(names, module_type):
    """The qualified name (from names: {id(module): name}, else its class name) of the innermost
    module_type instance whose method is on the stack, or ""."""
    import sys
    frame = sys._getframe(1)
    while frame is not None:
        me = frame.f_locals.get("self")
        if isinstance(me, module_type):
            return names.get(id(me)) or type(me).__name__
        frame = frame.f_back
    return ""


def module_names(roots, module_type):
    """{id(module): qualified name} for every module under the (prefix, object) roots given."""
    names = {}
    for prefix, root in roots:
        if isinstance(root, module_type):
            for qual, m in root.named_modules():
                names.setdefault(id(m), ".".join(p for p in (prefix, qual) if p) or type(root).__name__)
    return names


def parameter_names(roots, module_type):
    """{id(parameter): qualified name} (net.fc1.weight) for every parameter of the modules under
    the (prefix, object) roots given, the first name found kept for a shared one."""
    names = {}
    for prefix, root in roots:
        if isinstance(root, module_type):
            for qual, p in root.named_parameters():
                names.setdefault(id(p), ".".join(q for q in (prefix, qual) if q))
    return names


_OWN = __file__.rsplit("/autograd/", 1)[0]      # the engine package: not "where" a user made a node
# ... nor the tool's other packages beside it (the CLI's torch backend applies Functions too)
_TOOL = tuple(os.path.join(os.path.dirname(_OWN), d) + os.sep for d in ("cli", "engine", "expressions", "benchmarks"))


def _where(user_files, skip=3):
    """file:line of the innermost frame in the user's code (in user_files when given: resolved
    paths, matched against each frame's resolved file name, since a target loaded by a relative
    path -- `autograd check ste.py` -- has relative names in its frames)."""
    frames = [f for f in reversed(traceback.extract_stack()[:-skip]) if not f.filename.startswith(_OWN)]
    if user_files is None:
        return f"{frames[0].filename}:{frames[0].lineno}" if frames else ""
    mine = next((k for k, f in enumerate(frames) if _resolved(f.filename) in user_files), None)
    if mine is None:
        return ""
    # a frame inner to the target's own, in a file of the user's beside it (a helper module the
    # target calls into): the innermost such, else the target's
    for f in frames[:mine]:
        if users_file(f.filename):
            return f"{f.filename}:{f.lineno}"
    return f"{frames[mine].filename}:{frames[mine].lineno}"


def users_file(filename):
    """Whether `filename` is the user's own code: a target file or a module of theirs beside it
    (a Function applied in pkg/ops.py was said to be made at the target's line that called into
    it). Not this tool, not Python's library, not an installed package (torch's nn.Module frames),
    not code without a file. (The CLI trims an error's traceback to these frames too.)"""
    if not filename or filename.startswith("<"):
        return False
    return _users_path(_resolved(filename))


@functools.lru_cache(maxsize=1024)
def _users_path(path):
    import sysconfig
    if path.startswith(tuple(_resolved(d.rstrip(os.sep)) + os.sep for d in _TOOL)):
        return False
    installed = {_resolved(sysconfig.get_path(k)) for k in ("stdlib", "platstdlib", "purelib", "platlib")
                 if sysconfig.get_path(k)}
    return not any(path.startswith(d + os.sep) for d in installed) and os.path.exists(path)


def _resolved(filename):
    """filename's real path. A frame's file name is relative when the target was given so
    (`autograd check net.py`): it is read against the working folder of now, which a cache keyed
    by the name alone would not see change (a second run elsewhere in one process)."""
    if not os.path.isabs(filename):
        filename = os.path.join(os.getcwd(), filename)
    return _real(filename)


@functools.lru_cache(maxsize=1024)
def _real(path):
    return os.path.realpath(path)


def locate(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, user_files=None, span_of=None, outputs=None,
           module_names=None, max_elements=None, order=1):
    """[LocalCheck] for every node func's graph makes, in forward order (see the module doc).
    user_files: the paths whose frames say where a node was made; span_of(): the expression
    span being evaluated now (the CLI's compiler), or None; outputs: a list that receives the
    run's outputs (to draw the graph the checks name); module_names: {id(nn.Module): qualified
    name}, to say which module each node was made in. max_elements: input elements differenced
    per argument of a node (default MAX_LOCAL_ELEMENTS; a seeded sample beyond). order=2: each
    custom Function is also checked at second order on its own (_second_order_engine)."""
    with observe(_Recorder(user_files, span_of, module_names)) as rec:
        res = func(*inputs)
    if outputs is not None:
        outputs.extend(res if isinstance(res, tuple) else (res,))
    rng = np.random.default_rng(seed)
    return check_applications(
        rec.items, lambda k, item: _local_row(k, item, eps, rng, atol, rtol, max_elements),
        lambda item: _second_order_engine(*item[:3], eps, atol, rtol),
        lambda item: _applied_in_backward(*item[:3], user_files, module_names), order)


def check_applications(records, row, second_order, applied_in_backward, order=1):
    """locate's one loop, for both backends: each recorded node application (`records`, in
    forward order: the engine's recorder, or PyTorch's Function.apply recorded) checked on its
    own -- row(k, record) -> LocalCheck or None (nothing to check) -- and with order=2 each
    custom Function's second derivatives (second_order(record) -> (verdict, why)); when those
    fail, the Functions its backward applies (applied_in_backward(record) -> records), checked
    the same way and marked as made there (inside_backward)."""
    out = []
    for k, item in enumerate(records):
        c = row(k, item)
        if c is None:
            continue
        out.append(c)
        if order == 2 and c.custom:
            c.second, c.second_why = second_order(item)
            if c.second == "fail":
                out.extend(inside_backward(c, [row(k, it) for it in applied_in_backward(item)]))
    return out


def _local_row(k, item, eps, rng, atol, rtol, max_elements):
    """The LocalCheck of one recorded node (k: its place in forward order), or None when it has
    nothing to check."""
    node, vals, attrs, where, span, module = item
    res = _check_node(node, vals, attrs, eps, rng, max_elements or MAX_LOCAL_ELEMENTS)
    if res is None:
        return None
    kink = _near_kink(node, vals, attrs, eps)
    err, rel, ok, verdict = judge(res, atol, rtol, kink=kink)
    if kink and class_attr(node, "_forward_cls") is not None:
        # a Function whose forward has a kink within eps (a custom ReLU at 0): judged again
        # where no input is near it -- a kink there, or wrong there too
        err, rel, ok, verdict = _off_the_kink(node, vals, attrs, eps, rng, atol, rtol, max_elements, err, rel)
    c = LocalCheck(node_name(node), where, class_attr(node, "_forward_cls") is not None, err, rel, ok, k,
                   span, verdict, node, module)
    c.spread = float(res[6]) if np.isfinite(res[6]) else 0.0
    return c


def inside_backward(outer, rows):
    """The local checks of the custom Functions `outer`'s backward applies (it failed at second
    order: its second derivatives are theirs too), marked as made there; when one of them is
    wrong on its own, outer's reason says so -- that one is where to look (both backends)."""
    rows = [r for r in rows if r is not None]
    for r in rows:
        r.in_backward_of, r.order = outer.node, outer.order
    bad = next((r for r in rows if r.verdict in ("fail", "suspicious")), None)
    if bad is not None:
        at = f" at {bad.where}" if bad.where else ""
        outer.second_why = (f"its backward applies {bad.node}{at}, whose own backward is wrong (local check, max abs "
                            f"error {bad.max_abs_err:.3g}); {outer.second_why}")
    return rows


def _alone(node, vals, attrs):
    """(one, xs): a recorded custom Function applied alone -- one(*xs) -> its outputs that need a
    gradient -- and float64 copies of the inputs it received that needed one; None if none did."""
    from ..grad_mode import enable_grad
    cls = class_attr(node, "_forward_cls")
    needs = tuple(getattr(node, "needs_input_grad", ()) or ())
    pos = [i for i, v in enumerate(vals) if isinstance(v, Tensor) and _is_float(v) and i < len(needs) and needs[i]]
    if not pos:
        return None
    xs = tuple(Tensor._make(np.array(_arr(vals[i]), dtype=np.float64)).requires_grad_(True) for i in pos)

    def one(*ts):
        args = list(vals)
        for i, t in zip(pos, ts):
            args[i] = t
        with enable_grad():
            out = cls.apply(*args, **attrs)
        outs = out if isinstance(out, tuple) else (out,)
        return tuple(o for o in outs if isinstance(o, Tensor) and o.requires_grad)
    return one, xs


def _second_order_engine(node, vals, attrs, eps, atol, rtol):
    """A recorded custom Function's second derivatives, checked on their own: gradgradcheck of
    the Function alone on float64 copies of the inputs it received (those that needed a
    gradient), its output cotangents random. ("pass" | "fail", why)."""
    from .checker import gradgradcheck
    alone = _alone(node, vals, attrs)
    if alone is None:
        return "", ""
    one, xs = alone
    return second_order_verdict(lambda: gradgradcheck(one, xs, eps=eps, atol=atol, rtol=rtol))


def _applied_in_backward(node, vals, attrs, user_files, module_names):
    """The custom Function applications a recorded Function's backward makes, run once with
    create_graph on random cotangents (a backward written with another Function: its second
    derivatives are that Function's first): recorded as locate records the forward's."""
    from ..grad_mode import enable_grad
    from . import grad
    alone = _alone(node, vals, attrs)
    if alone is None:
        return []
    one, xs = alone
    rng = np.random.default_rng(0)
    try:
        outs = one(*xs)
        vs = [Tensor._make(rng.standard_normal(o._data.shape)) for o in outs]
        with observe(_Recorder(user_files, None, module_names)) as rec, enable_grad():
            grad(outs, xs, vs, create_graph=True, allow_unused=True)
    except Exception:  # noqa: BLE001 - a backward that does not run again: nothing more to name
        return []
    return [it for it in rec.items if class_attr(it[0], "_forward_cls") is not None]


def second_order_verdict(run):
    """("pass" | "fail", why) of a gradgradcheck call that raises on a mismatch (both backends)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            run()
        except Exception as e:  # noqa: BLE001 - a mismatch, or a backward that cannot be differentiated
            text = str(e).strip()
            # the first clause (PyTorch's first line ends in a comma before its dumped matrices)
            why = text.splitlines()[0].split("; ")[0].rstrip(" ,;:") if text else type(e).__name__
            return "fail", why[:300]
    return "pass", ""


def judge(res, atol, rtol, kink=False):
    """(max abs err, max rel err, passed, verdict) of one local check's numbers (local_check):
    the same reading for an engine node and for a PyTorch Function (cli/torch_backend.py)."""
    err, rel, ana, num, half, noise, spread = res
    ok = _within(ana, num, atol, rtol, noise)
    if spread > 0 and not np.isnan(spread):       # two calls with the same cotangent differ
        return max(err, spread), rel, False, "fail"
    if kink:
        return err, rel, True, "kink"
    if any(bool(np.any(np.isnan(n) & np.isfinite(a))) for a, n in zip(ana, num)):
        return err, rel, True, "domain"     # a step left the forward's domain: finite differences cannot judge
    if not ok:
        return err, rel, False, "fail"
    return err, rel, True, "suspicious" if _beyond_numerics(ana, num, half, noise) else "pass"


def _near_kink(node, vals, attrs, eps):
    cls = class_attr(node, "_forward_cls")
    if cls is not None:                     # a Function: the engine ops its forward runs, watched
        try:
            with observe(KinkWatch(eps)) as watch:
                _forward_of(node, vals, attrs)(list(vals))
        except Exception:  # noqa: BLE001 - a forward that does not run again says nothing of kinks
            return False
        return bool(watch.found)
    op = class_attr(node, "op")
    if op is None or op.kinks is None:
        return False
    arrays = [np.asarray(_arr(v), dtype=np.float64) for v in vals if _is_float(v)]
    try:
        return any(bool(np.any(np.abs(np.asarray(d)) <= eps)) for d in op.kinks(*arrays, **dict(getattr(node, "_attrs", None) or {})))
    except Exception:  # noqa: BLE001 - a kink test that does not fit these values says nothing
        return False


KINK_SHIFT = 30.0             # a Function near a kink is re-checked with its inputs moved this many eps


def shifted(vals, eps, rng):
    """vals with every float input moved by KINK_SHIFT * eps * (1 + u), u in [0, 1), a random sign
    per element: whatever lay within eps of a kink lies 29 eps or more from it."""
    out = []
    for v in vals:
        if _is_float(v):
            a = np.asarray(_arr(v))
            d = KINK_SHIFT * eps * (1 + rng.random(a.shape)) * rng.choice([-1.0, 1.0], a.shape)
            out.append(_like(v, a.astype(np.float64) + d))
        else:
            out.append(v)
    return tuple(out)


def _off_the_kink(node, vals, attrs, eps, rng, atol, rtol, max_elements, err, rel):
    """A Function's verdict at shifted inputs (a fresh application: its backward there): "kink"
    when it passes there, "fail" when it is wrong away from the kink as well."""
    from ..grad_mode import enable_grad
    cls = class_attr(node, "_forward_cls")
    moved = shifted(vals, eps, rng)
    needs = tuple(getattr(node, "needs_input_grad", ()) or ())
    try:
        with enable_grad():
            args = [Tensor._make(np.array(v._data, copy=True)).requires_grad_(bool(needs[i]) if i < len(needs) else False)
                    if isinstance(v, Tensor) and _is_float(v) else v for i, v in enumerate(moved)]
            out = cls.apply(*args, **attrs)
        outs = out if isinstance(out, tuple) else (out,)
        fresh = next((o.grad_fn for o in outs if isinstance(o, Tensor) and o.grad_fn is not None), None)
        res = None if fresh is None else _check_node(fresh, moved, attrs, eps, rng, max_elements or MAX_LOCAL_ELEMENTS)
    except Exception:  # noqa: BLE001 - it cannot run there: the kink verdict stands
        res = None
    if res is None or _near_kink(fresh, moved, attrs, eps):
        return err, rel, True, "kink"
    e2, r2, ok2, v2 = judge(res, atol, rtol)
    return (err, rel, True, "kink") if v2 == "pass" else (e2, r2, ok2, v2)


def _beyond_numerics(ana, num, half, noise, ratio=1000.0):
    """The checker's suspicion test, per node: a gap far above the finite-difference error
    (Richardson from steps eps and eps/2) and not round-off sized. noise: the round-off of a
    central difference of v . forward (machine epsilon x |v| . |output| / eps): large values
    (sum of [9, 16]) make differences noisy at 1e-9 where the gradient is exact."""
    for a, n, h, z in zip(ana, num, half, noise):
        gap = np.abs(a - n)
        fd = 4.0 / 3.0 * np.abs(n - h) + 1e-13 * (1.0 + np.abs(n))
        if np.any((gap > ratio * fd) & (gap > 1e-9 * (1.0 + np.abs(n))) & (gap > 10.0 * z)):
            return True
    return False


def _within(analytical, numerical, atol, rtol, noise):
    """Within tolerance, or within what round-off does to the differences (10x noise): a node
    whose values are in the thousands cannot be judged at rtol=1e-3 by a step of 1e-6."""
    return all(bool(np.all(np.abs(a - n) <= atol + rtol * np.abs(n) + 10.0 * z))
               for a, n, z in zip(analytical, numerical, noise))


LOW_PRECISION_K = 64.0        # a float32 backward may differ from float64 differences by this times float32's eps
MAX_LOCAL_ELEMENTS = 1024     # input elements differenced per argument of one node (a seeded sample beyond)
MAX_LOCAL_ELEMENTS_FAST = 128  # ... with check --fast (a 256 x 256 softmax: 4.5 s of local checks at 1024)


def _check_node(node, vals, attrs, eps, rng, max_elements=MAX_LOCAL_ELEMENTS):
    """local_check of one engine node (its forward from the registry or its Function), or None."""
    cast = (getattr(node, "_attrs", None) or {}).get("dtype")
    low = any(_is_float(v) and _arr(v).dtype != np.float64 for v in vals) or \
        (isinstance(cast, np.dtype) and cast.kind == "f" and cast != np.float64)
    forward = _forward_of(node, vals, attrs, float64=low)
    if forward is None:
        return None

    def run(args):
        with no_grad():
            return forward(args)
    resolution = 0.0
    if low:
        # a node that received float32 (a cast, a layer run in float32): its forward differenced in
        # float32 carries float32's round-off over the step (x + 1e-6 rounds to 8 ulps of 1: a
        # correct ToCopyBackward0 was called wrong, red team A4), so it is differenced in float64 --
        # the same op on float64 copies, a custom Function on float64 tensors -- and its own float32
        # backward judged against that, as the checker judges a float32 gradient (never the reverse)
        vals64 = tuple(_as64(v) for v in vals)
        try:
            run(list(vals64))
            resolution = max(float(np.finfo(_arr(v).dtype).eps) for v in vals if _is_float(v))
            resolution = max(resolution, float(np.finfo(cast).eps) if isinstance(cast, np.dtype) and cast.kind == "f"
                             else 0.0)
            vals = vals64
        except Exception:  # noqa: BLE001 - a forward that takes only float32: differenced as it is
            forward = _forward_of(node, vals, attrs)
    pos = _tensor_positions(node, vals)
    if class_attr(node, "_forward_cls") is not None:
        asked = tuple(getattr(node, "needs_input_grad", ()) or ())
        needs = [bool(asked[i]) if i < len(asked) else False for i in pos]
    else:
        needs = [k < len(node._next) and node._next[k] is not None for k in range(len(pos))]
    op = class_attr(node, "op")
    unique = getattr(op, "unique_part", None)
    attrs_ = dict(getattr(node, "_attrs", None) or {})
    return local_check(run, lambda vs: _backward(node, vs), vals, pos, eps, rng, max_elements=max_elements,
                       needs=needs, each_output=class_attr(node, "_forward_cls") is not None,
                       unique=None if unique is None else (lambda vs: unique(vs, **attrs_)), resolution=resolution)


def local_check(forward, backward, vals, tensor_pos, eps, rng, max_elements=None, needs=None, each_output=False,
                unique=None, resolution=0.0):
    """local_check_with of the random cotangents on every output; with each_output (a custom
    Function of several outputs), also with a cotangent on one output only and None on the
    others -- the branch a set_materialize_grads(False) backward takes when one output is used,
    as gradcheck's rows run it -- the worst of them returned."""
    res = local_check_with(forward, backward, vals, tensor_pos, eps, rng, max_elements, needs, unique=unique,
                           resolution=resolution)
    if res is None or not each_output:
        return res
    outs = forward(list(vals))
    if len(outs) < 2:
        return res
    for k in range(len(outs)):
        one = local_check_with(forward, backward, vals, tensor_pos, eps, rng, max_elements, needs, only=k,
                               unique=unique, resolution=resolution)
        if one is not None and one[0] > res[0]:
            res = one
    return res


def local_check_with(forward, backward, vals, tensor_pos, eps, rng, max_elements=None, needs=None, only=None,
                     unique=None, resolution=0.0):
    """(max abs err, max rel err, analytical grads, numerical grads, eps/2 grads, noise) of one
    application, or None when it has nothing to check (no float input, or a backward that
    cannot run again). forward(vals) -> list of output arrays; backward(vs) -> one gradient per
    position in tensor_pos (None where there is none); vals: the inputs it received (arrays or
    engine tensors; anything else passed as is). max_elements: difference at most that many
    elements of an input (a seeded sample; the rest are taken as they are). needs: per position in
    tensor_pos, whether that input needed a gradient: a backward that returns None for one that
    did says its gradient is zero, and that is checked too (a backward returning None for `scale`
    or with needs_input_grad read the wrong way round once passed every local check). unique(vs)
    -> vs: zero cotangents on the parts of the outputs that are not unique (an op's `unique_part`).
    resolution: the machine epsilon the backward computed in, when below float64 (float32's for a
    node that received float32, differenced on float64 copies); its rounding is allowed for."""
    floats = [i for i, v in enumerate(vals) if _is_float(v)]
    if not floats:
        return None
    outs = forward(list(vals))
    vs = [rng.standard_normal(np.shape(o)) for o in outs]
    if unique is not None:        # outputs a backward leaves alone (svd's extra columns): no cotangent there
        vs = unique(vs)
    if only is not None:                  # a cotangent on output `only`, None (not given) on the rest
        vs = [v if k == only else None for k, v in enumerate(vs)]
    try:
        grads = backward(vs)
        again = backward(vs)          # a second call with the same cotangents: the same, or not reentrant
    except Exception:  # noqa: BLE001 - freed, or a backward that cannot run again: not checkable here
        return None
    spread = max((float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0))
                  for a, b in zip(grads, again) if a is not None and b is not None and np.shape(a) == np.shape(b)),
                 default=0.0)
    ana, num, half, xs, lows = [], [], [], [], []
    for j, i in enumerate(tensor_pos):
        if i not in floats or j >= len(grads):
            continue
        if grads[j] is None:
            if needs is None or j >= len(needs) or not needs[j]:
                continue
            grads = list(grads)
            grads[j] = np.zeros(np.shape(_arr(vals[i])))
        gdt = np.asarray(grads[j]).dtype
        g = np.asarray(grads[j], dtype=np.float64)
        x = np.array(_arr(vals[i]), dtype=np.float64)
        picked = None
        if max_elements is not None and x.size > max_elements:
            picked = np.sort(rng.choice(x.size, max_elements, replace=False))
        n, h = (_differences(forward, vals, i, x, step, vs, picked) for step in (eps, eps / 2))
        if g.shape != n.shape:          # fitted as the backward loop fits it, in its one place
            g = _fit(NUMPY, g, n.shape, g.dtype, 0)
        if picked is not None:          # compare only the sampled elements
            g, n, h, x = (np.ascontiguousarray(a).reshape(-1)[picked] for a in (g, n, h, x))
        ana.append(g)
        num.append(n)
        half.append(h)
        xs.append(x)
        # a float32 backward judged against float64 differences: its own rounding is no bug (the
        # bound the checker gives a float32 gradient beside its float64 reference)
        low = max(resolution, float(np.finfo(gdt).eps) if gdt.kind == "f" and gdt.itemsize < 8 else 0.0)
        lows.append(LOW_PRECISION_K * low * (np.abs(g) + (float(np.max(np.abs(g))) if g.size else 0.0)))
    if not ana:
        return None
    err = max(float(np.max(np.abs(a - n))) if a.size else 0.0 for a, n in zip(ana, num))
    rel = max(float(np.max(np.abs(a - n) / np.maximum(np.abs(n), 1e-300))) if a.size else 0.0
              for a, n in zip(ana, num))
    # round-off in a central difference of v . forward: the outputs' last bits over the step,
    # and x + eps not being exactly eps away from x
    # (at the outputs' own precision: float32 outputs carry float32's round-off)
    res_eps = max((float(np.finfo(np.asarray(o).dtype).eps) for o in outs if np.asarray(o).dtype.kind == "f"),
                  default=float(np.finfo(np.float64).eps))
    out_noise = res_eps * sum(float(np.sum(np.abs(v) * np.abs(np.asarray(o, dtype=np.float64))))
                              for v, o in zip(vs, outs) if v is not None) / eps
    noise = [out_noise + np.abs(n) * np.spacing(np.abs(x) + eps) / eps + lo for n, x, lo in zip(num, xs, lows)]
    return err, rel, ana, num, half, noise, spread


def _differences(forward, vals, i, x, eps, vs, picked=None):
    """Central differences of v . forward with respect to input i, element by element (only the
    flat elements in `picked` when given; the others stay 0)."""
    # C-ordered, whatever the recorded input's layout: reshape(-1) of a transposed or Fortran-
    # ordered array is a copy, so writing into it would leave the differences all zero
    x = np.ascontiguousarray(x)
    n = np.zeros(x.shape, dtype=np.float64)
    flat = n.reshape(-1)
    for e in (range(x.size) if picked is None else picked):
        plus, minus = list(vals), list(vals)
        xp_, xm_ = x.copy(), x.copy()
        xp_.flat[e] += eps
        xm_.flat[e] -= eps
        plus[i], minus[i] = _like(vals[i], xp_), _like(vals[i], xm_)
        with no_grad():
            fp, fm = forward(plus), forward(minus)
        flat[e] = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) * v))
                      for a, b, v in zip(fp, fm, vs) if v is not None) / (2 * eps)
    return n


def _is_float(v):
    a = _arr(v)
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _arr(v):
    return v._data if isinstance(v, Tensor) else v


def _like(template, arr):
    return Tensor._make(arr.astype(template._data.dtype)) if isinstance(template, Tensor) else \
        arr.astype(np.asarray(template).dtype)


def _tensor_positions(node, vals):
    """The positions of the inputs the node's backward returns gradients for, in order."""
    if class_attr(node, "_forward_cls") is not None:          # a Function: its Tensor arguments
        return [i for i, v in enumerate(vals) if isinstance(v, Tensor)]
    return list(range(len(vals)))


def _as64(v):
    """A float input as float64 (the same kind of value: an array or an engine tensor)."""
    if not _is_float(v) or _arr(v).dtype == np.float64:
        return v
    return Tensor._make(_arr(v).astype(np.float64)) if isinstance(v, Tensor) else np.asarray(v, np.float64)


def _forward_of(node, vals, attrs, float64=False):
    """vals -> list of output arrays, for the op or Function that made node (with float64: a
    registry op's `dtype` attribute that asks for less than float64 asks for float64, so that
    .float() is differenced as the identity it is)."""
    cls = class_attr(node, "_forward_cls")
    if cls is not None:
        def run(args):
            # fresh copies each call: a forward that works in place (mark_dirty) must not change
            # the recorded inputs the next difference starts from
            args = [Tensor._make(np.array(a._data, copy=True)) if isinstance(a, Tensor) else a for a in args]
            res = cls.apply(*args, **attrs)
            res = res if isinstance(res, tuple) else (res,)
            return [r._data if isinstance(r, Tensor) else np.asarray(r) for r in res]
        return run
    pieces = class_attr(node, "forward_arrays")           # split/chunk/unbind: several outputs
    if pieces is not None:
        return lambda args: pieces(node, _arr(args[0]))
    op = class_attr(node, "op")
    if op is None:
        return None
    node_attrs = dict(getattr(node, "_attrs", None) or {})
    if float64 and isinstance(node_attrs.get("dtype"), np.dtype) and node_attrs["dtype"].kind == "f":
        node_attrs["dtype"] = np.dtype(np.float64)

    if getattr(op, "multi", False):                       # slogdet, qr, svd: one array per output
        return lambda args: [np.asarray(o) for o in op.forward(*[_arr(a) for a in args], **node_attrs)]

    def run(args):
        return [np.asarray(op.forward(*[_arr(a) for a in args], **node_attrs))]
    return run


def _backward(node, vs):
    """The node's own backward on cotangents vs (the graph is kept: nothing is released)."""
    if class_attr(node, "_forward_cls") is not None or node._n_outputs > 1:
        res = node.apply([None if v is None else np.asarray(v, dtype=np.float64) for v in vs], NUMPY, False)
    else:
        res = node.apply([np.asarray(vs[0], dtype=getattr(node, "_dtype", np.float64))], NUMPY, False)
    return [None if r is None else np.asarray(getattr(r, "_data", r)) for r in res]
