"""torch.func on the engine: grad, grad_and_value, vjp, jvp, jacrev, jacfwd, hessian, vmap and
functional_call, built on the engine's reverse mode.

Each transform differentiates a fresh view of its arguments with create_graph=True, so the
transforms compose (hessian = jacfwd(jacrev(f)), grad(grad(f)), vmap(grad(f))) the way
PyTorch's do; when no argument carried a graph in, the results are detached, as PyTorch's
are. jvp and jacfwd give forward mode's results through reverse mode (the double-backward
trick: u -> J^T u is linear, and its gradient with respect to u along t is J t), so every op
with a backward has them. vmap runs the function once per batch element and stacks the results (same
values as PyTorch's batching rules, none of their speed).
"""
from . import errors as _errors
import contextlib

from . import autograd as _autograd
from .autograd.function import ACTIVE
from .autograd import functional as _functional
from .grad_mode import enable_grad
from .tensor import Tensor


@contextlib.contextmanager
def _transform(vmap=False):
    ACTIVE.depth += 1
    ACTIVE.vmap += vmap
    try:
        yield
    finally:
        ACTIVE.depth -= 1
        ACTIVE.vmap -= vmap


def _nums(argnums, n):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if not -n <= a < n:
            raise _errors.EngineRuntimeError(f"Got argnums={argnums}, but only {n} positional inputs")
    return tuple(a % n for a in nums)


def _flatten(obj):
    """The tensors of a pytree (a tensor, or dicts/lists/tuples of them) and a function that
    rebuilds the same structure from a list of replacements."""
    if isinstance(obj, Tensor):
        return [obj], lambda leaves: leaves[0]
    if isinstance(obj, dict):
        keys = list(obj)
        parts = [_flatten(obj[k]) for k in keys]
    elif isinstance(obj, (list, tuple)):
        keys = None
        parts = [_flatten(v) for v in obj]
    else:
        raise _errors.EngineRuntimeError(f"Expected a Tensor, or a dict, list or tuple of Tensors, got {type(obj).__name__}")
    counts = [len(p[0]) for p in parts]
    leaves = [leaf for p in parts for leaf in p[0]]

    def rebuild(new):
        out, k = [], 0
        for (_, build), c in zip(parts, counts):
            out.append(build(new[k:k + c]))
            k += c
        if keys is not None:
            return dict(zip(keys, out))
        return type(obj)(out) if isinstance(obj, tuple) and not hasattr(obj, "_fields") else \
            (type(obj)(*out) if isinstance(obj, tuple) else out)
    return leaves, rebuild


def _differentiable(t):
    return t.view_as(t) if t.requires_grad else t.detach().requires_grad_(True)


def _fresh(args, nums):
    """args with those at nums made differentiable (each tensor of a pytree argument): a view
    of a tensor that already carries a graph (a nested transform), else a new leaf. Also the
    new leaves in order, and for each argnum how to rebuild its structure."""
    new = list(args)
    leaves, builds = [], []
    for i in nums:
        flat, build = _flatten(args[i])
        fresh = [_differentiable(t) for t in flat]
        new[i] = build(fresh)
        leaves.append(fresh)
        builds.append(build)
    return new, leaves, builds


def _carries_graph(args, nums):
    return any(t.requires_grad for i in nums for t in _flatten(args[i])[0])


def _maybe_detach(x, keep):
    if keep or x is None:
        return x
    if isinstance(x, tuple):
        return tuple(_maybe_detach(v, keep) for v in x)
    return x.detach() if isinstance(x, Tensor) else x


def grad_and_value(func, argnums=0, has_aux=False):
    """A function returning (gradient of func's scalar output w.r.t. args[argnums], output)."""
    def wrapper(*args, **kwargs):
        nums = _nums(argnums, len(args))
        keep = _carries_graph(args, nums)
        with enable_grad(), _transform():
            new, leaves, builds = _fresh(args, nums)
            out = func(*new, **kwargs)
            aux = None
            if has_aux:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise _errors.EngineRuntimeError("grad_and_value(f)(*args): output of function f should be a tuple: "
                                       "(output, aux) if has_aux is True")
                out, aux = out
            if not isinstance(out, Tensor):
                raise _errors.EngineRuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return a Tensor, got "
                                   f"{type(out).__name__}")
            if out.numel() != 1:
                raise _errors.EngineRuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return a scalar Tensor, got "
                                   f"tensor with {out.ndim} dims. Maybe you wanted to use the vjp or jacrev APIs "
                                   "instead?")
            ins = [t for flat in leaves for t in flat]
            gs = _autograd.grad(out, ins, create_graph=True, allow_unused=True) if out.requires_grad else \
                [None] * len(ins)
        gs = [_maybe_detach(g if g is not None else x.detach() * 0, keep) for g, x in zip(gs, ins)]
        per_arg, k = [], 0
        for flat, build in zip(leaves, builds):
            per_arg.append(build(gs[k:k + len(flat)]))
            k += len(flat)
        g = per_arg[0] if isinstance(argnums, int) else tuple(per_arg)
        value = _maybe_detach(out, keep)
        return (g, (value, aux)) if has_aux else (g, value)
    return wrapper


def grad(func, argnums=0, has_aux=False):
    """A function returning the gradient of func's scalar output w.r.t. args[argnums]."""
    gv = grad_and_value(func, argnums, has_aux)

    def wrapper(*args, **kwargs):
        g, value = gv(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return wrapper


def vjp(func, *primals, has_aux=False):
    """(func(*primals), vjp_fn): vjp_fn(cotangent) is the tuple of v^T J for each primal."""
    nums = tuple(range(len(primals)))
    keep = _carries_graph(primals, nums)
    with enable_grad(), _transform():
        new, leaves, builds = _fresh(primals, nums)
        out = func(*new)
    aux = None
    if has_aux:
        out, aux = out
    flat_in = [t for flat in leaves for t in flat]
    single = not isinstance(out, tuple)
    outs = (out,) if single else out

    def vjp_fn(*cotangents):
        cts = cotangents[0] if single and len(cotangents) == 1 else cotangents
        cts = (cts,) if single else tuple(cts)
        live = [(o, c) for o, c in zip(outs, cts) if o.requires_grad]
        gs = [None] * len(flat_in)
        if live:
            with enable_grad():
                gs = _autograd.grad([o for o, _ in live], flat_in, [c for _, c in live], retain_graph=True,
                                    create_graph=True, allow_unused=True)
        gs = [_maybe_detach(g if g is not None else p.detach() * 0, keep) for g, p in zip(gs, flat_in)]
        per_arg, k = [], 0
        for flat, build in zip(leaves, builds):
            per_arg.append(build(gs[k:k + len(flat)]))
            k += len(flat)
        return tuple(per_arg)
    res = (_maybe_detach(out, keep), vjp_fn)
    return res + (aux,) if has_aux else res


def jvp(func, primals, tangents, *, has_aux=False):
    """(func(*primals), J @ tangents), by differentiating v -> v^T J with respect to v."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise _errors.EngineRuntimeError("jvp(f, primals, tangents): Expected primals and tangents to have the same python "
                           "structure.")
    nums = tuple(range(len(primals)))
    keep = _carries_graph(primals, nums) or any(t.requires_grad for t in tangents)
    with enable_grad(), _transform():
        new, _, _ = _fresh(primals, nums)
        out = func(*new)
        aux = None
        if has_aux:
            out, aux = out
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        us = [o.detach().new_zeros(tuple(o.shape)).requires_grad_(True) for o in outs]
        live = [(o, u) for o, u in zip(outs, us) if o.requires_grad]
        results = []
        if live:
            gs = _autograd.grad([o for o, _ in live], new, [u for _, u in live], create_graph=True, allow_unused=True)
            s = None
            for g, t in zip(gs, tangents):
                if g is not None:
                    term = (g * t).sum()
                    s = term if s is None else s + term
            jv = _autograd.grad(s, us, create_graph=True, allow_unused=True) if s is not None and s.requires_grad \
                else [None] * len(us)
        else:
            jv = [None] * len(us)
        for o, j in zip(outs, jv):
            results.append(_maybe_detach(j if j is not None else o.detach() * 0, keep))
    res = (_maybe_detach(out, keep), results[0] if single else tuple(results))
    return res + (aux,) if has_aux else res


def jacrev(func, argnums=0, *, has_aux=False):
    """A function returning the Jacobian of func w.r.t. args[argnums] (reverse mode)."""
    def wrapper(*args):
        nums = _nums(argnums, len(args))
        keep = _carries_graph(args, nums)
        aux_box = []

        def f(*xs):
            full = list(args)
            for i, x in zip(nums, xs):
                full[i] = x
            out = func(*full)
            if has_aux:
                out, aux = out
                aux_box.append(aux)
            return out
        with enable_grad(), _transform():
            new, _, _ = _fresh(args, nums)
            ins = new[nums[0]] if isinstance(argnums, int) else tuple(new[i] for i in nums)
            J = _functional.jacobian(f, ins, create_graph=True, _warn_rows=False)
        J = _maybe_detach(J, keep)
        return (J, aux_box[0]) if has_aux else J
    return wrapper


jacfwd = jacrev   # the same Jacobian; forward-mode is an implementation choice


def hessian(func, argnums=0):
    """jacfwd(jacrev(func)): the matrix of second derivatives."""
    return jacfwd(jacrev(func, argnums), argnums)


def vmap(func, in_dims=0, out_dims=0, randomness="error", *, chunk_size=None):
    """func mapped over a batch dimension of its arguments: run once per element, stacked."""
    def wrapper(*args):
        dims = (in_dims,) * len(args) if isinstance(in_dims, int) or in_dims is None else tuple(in_dims)
        if len(dims) != len(args):
            raise ValueError(f"vmap(func, in_dims={in_dims}, ...)(<inputs>): in_dims is not compatible with the "
                             f"structure of `inputs`. in_dims has structure {len(dims)} but inputs has {len(args)}")
        sizes = {t.shape[d] for a, d in zip(args, dims) if d is not None for t in _flatten(a)[0]}
        if not sizes:
            raise ValueError("vmap(func)(<inputs>): at least one input must be mapped (in_dims not None)")
        if len(sizes) > 1:
            raise ValueError(f"vmap: Expected all tensors to have the same size in the mapped dimension, got sizes "
                             f"{sorted(sizes)} for the mapped dimension")
        with _transform(vmap=True):
            results = _map(func, args, dims, sizes.pop())
        return _stacked(results, out_dims)
    return wrapper


def _map(func, args, dims, n):
    """func on each batch element (the mapped dims selected), in order."""
    results = []
    for k in range(n):
        call = []
        for a, d in zip(args, dims):
            if d is None:
                call.append(a)
            else:
                flat, build = _flatten(a)
                call.append(build([t.select(d, k) for t in flat]))
        results.append(func(*call))
    return results


def _stacked(results, out_dims):
    from .ops import stack
    flats = [_flatten(r) for r in results]
    build = flats[0][1]
    n_out = len(flats[0][0])
    od = (out_dims,) * n_out if isinstance(out_dims, int) else tuple(out_dims)
    return build([stack([f[0][j] for f in flats], od[j] if j < len(od) else 0) for j in range(n_out)])


def functional_call(module, parameter_and_buffer_dicts, args=(), kwargs=None, *, tie_weights=True, strict=False):
    """module(*args) with its named parameters and buffers replaced by the given tensors."""
    if isinstance(parameter_and_buffer_dicts, (list, tuple)):
        merged = {}
        for d in parameter_and_buffer_dicts:
            merged.update(d)
        parameter_and_buffer_dicts = merged
    args = args if isinstance(args, tuple) else (args,)
    modules = dict(module.named_modules())
    saved = []
    try:
        for name, value in parameter_and_buffer_dicts.items():
            owner_path, _, leaf = name.rpartition(".")
            owner = modules.get(owner_path)
            if owner is None:
                raise AttributeError(f"{type(module).__name__} has no submodule '{owner_path}'")
            table = owner._parameters if leaf in owner._parameters else owner._buffers
            if leaf not in table:
                if strict:
                    raise _errors.EngineRuntimeError(f"Unexpected key(s): '{name}'.")
                continue
            saved.append((table, leaf, table[leaf]))
            table[leaf] = value
        return module(*args, **(kwargs or {}))
    finally:
        for table, leaf, old in reversed(saved):
            table[leaf] = old
