"""PyTorch as the oracle: forward values, gradients and node names for the whole registry.

Skipped when torch is not importable; .ci/run installs the CPU build so CI runs it. Each check names the stage that
failed: forward, node name, or gradient.
"""
import numpy as np
import pytest

import engine
from engine.ops import REGISTRY
from opcases import cases, make_inputs, to_tensors

torch = pytest.importorskip("torch")

# How each registry op is called in PyTorch when the name differs (None: no PyTorch counterpart)
TORCH_CALL = {
    "rsub": lambda x, other: other - x,
    "mul_scalar": lambda x, other: torch.ops.aten.mul.Scalar(x, other),
    "pow": lambda x, exponent: x ** exponent,
    "pow_tensor": lambda x, y: x ** y,
    "rpow": lambda x, base: base ** x,
    "softplus": lambda x, **kw: torch.nn.functional.softplus(x, **kw),
    "where": lambda x, y, condition: torch.where(torch.tensor(condition), x, y),
    "max_dim": lambda x, dim, keepdim=False: x.max(dim, keepdim)[0],
    "min_dim": lambda x, dim, keepdim=False: x.min(dim, keepdim)[0],
    "norm": lambda x, p=2, dim=None, keepdim=False: torch.linalg.vector_norm(x, p, dim, keepdim),
    "index": lambda x, key: x[_tkey(key)],
    "index_put": None, "unindex": None, "fill": None, "copy": None,
    "to": lambda x, dtype: x.to(torch.float64, copy=True),
    "reshape": lambda x, shape: x.reshape(shape),
    "expand": lambda x, size: x.expand(size),
    "permute": lambda x, dims: x.permute(dims),
    "cat": lambda tensors, dim=0: torch.cat(tensors, dim),
    "stack": lambda tensors, dim=0: torch.stack(tensors, dim),
    "logsumexp": lambda x, dim=None, keepdim=False: x.logsumexp(tuple(range(x.ndim)) if dim is None else dim, keepdim),
    "max": lambda x: x.max(), "min": lambda x: x.min(),
    "repeat": lambda x, repeats: x.repeat(*repeats),
    "diag_embed": lambda x, diagonal: torch.diag(x, diagonal),
    "diagonal": lambda x, diagonal: torch.diag(x, diagonal),
    "gather": lambda x, dim, index: torch.gather(x, dim, torch.tensor(index)),
    "sort": lambda x, dim=-1, descending=False: torch.sort(x, dim, descending)[0],
    "topk": lambda x, k, dim=-1, largest=True: torch.topk(x, k, dim, largest)[0],
    "masked_fill": lambda x, mask, value: x.masked_fill(torch.tensor(mask), value),
    "index_select": lambda x, dim, index: torch.index_select(x, dim, torch.tensor(index)),
    "index_add": lambda x, source, dim, index, alpha=1: torch.index_add(x, dim, torch.tensor(index), source,
                                                                        alpha=alpha),
    "scatter": lambda x, src, dim, index: torch.scatter(x, dim, torch.tensor(index), src),
    "scatter_value": lambda x, dim, index, value: torch.scatter(x, dim, torch.tensor(index), value),
    "scatter_add": lambda x, src, dim, index: torch.scatter_add(x, dim, torch.tensor(index), src),
    "scatter_reduce": lambda x, src, dim, index, reduce, include_self=True: torch.scatter_reduce(
        x, dim, torch.tensor(index), src, reduce, include_self=include_self),
    "unfold": lambda x, dimension, size, step: x.unfold(dimension, size, step),
    "linalg_inv": lambda A: torch.linalg.inv(A),
    "linalg_det": lambda A: torch.linalg.det(A),
    "linalg_solve": lambda A, B, left=True: torch.linalg.solve(A, B, left=left),
    "linalg_cholesky": lambda A, upper=False: torch.linalg.cholesky(
        A @ A.mT + A.shape[-1] * torch.eye(A.shape[-1], dtype=A.dtype), upper=upper),
    "linalg_slogdet": lambda A: torch.linalg.slogdet(A)[1],
    "linalg_qr": lambda A, mode="reduced": torch.cat([t.reshape(-1) for t in torch.linalg.qr(A, mode)]),
    "linalg_svd": lambda A, full_matrices=True: _torch_svd_invariants(A, full_matrices),
    "mse_loss": lambda x, y, **kw: torch.nn.functional.mse_loss(x, y, **kw),
    "binary_cross_entropy": lambda x, y, **kw: torch.nn.functional.binary_cross_entropy(x, y, **kw),
    "binary_cross_entropy_with_logits": lambda x, y, pos_weight=None, **kw:
        torch.nn.functional.binary_cross_entropy_with_logits(
            x, y, pos_weight=None if pos_weight is None else torch.tensor(pos_weight), **kw),
    "nll_loss": lambda x, target, weight=None, **kw: torch.nn.functional.nll_loss(
        x, torch.tensor(target), weight=None if weight is None else torch.tensor(weight), **kw),
}
# Node-name differences we accept, with the reason
NAME_EXCEPTIONS = {
    ("matmul", 2): "1-D @ 2-D: PyTorch records SqueezeBackward4 over MmBackward0; we record one MmBackward0",
    ("matmul", 4): "batched: PyTorch wraps BmmBackward0 in UnsafeViewBackward0",
    ("matmul", 5): "batched: PyTorch folds into MmBackward0 under UnsafeViewBackward0",
    ("matmul", 6): "batched: PyTorch folds into MmBackward0 under UnsafeViewBackward0",
    ("matmul", 8): "batched: PyTorch wraps BmmBackward0 in UnsafeViewBackward0",
    ("to", 0): "PyTorch's to(copy=True) of the same dtype records CloneBackward0",
    ("reshape", 3): "reshape of a 0-d tensor",
}


def _torch_svd_invariants(A, full_matrices):
    """What SVD.func returns (engine/ops/linalg.py), on PyTorch."""
    U, S, Vh = torch.linalg.svd(A, full_matrices=full_matrices)
    k = S.shape[-1]
    U, Vh = U[..., :k], Vh[..., :k, :]
    return torch.cat([t.reshape(-1) for t in (S, U @ Vh, U * U, Vh * Vh)])


def _tkey(key):
    if isinstance(key, tuple):
        return tuple(torch.tensor(k) if isinstance(k, np.ndarray) else k for k in key)
    return torch.tensor(key) if isinstance(key, np.ndarray) else key


def _torch_tensors(args):
    return to_tensors(args, module=torch)


@pytest.mark.parametrize("name,k,spec", list(cases()))
def test_matches_pytorch(name, k, spec):
    call = TORCH_CALL.get(name, getattr(torch, name, None) or getattr(torch.nn.functional, name, None))
    if call is None:
        pytest.skip(f"{name} has no PyTorch counterpart")
    op = REGISTRY[name]
    args, kwargs = make_inputs(op, spec, seed=k)
    ours_in = to_tensors(args)
    theirs_in = _torch_tensors(args)
    ours = op.func(*ours_in, **kwargs)
    tkw = {kk: v for kk, v in kwargs.items()}
    theirs = call(*theirs_in, **tkw)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12,
                               err_msg=f"{name}: forward")
    if (name, k) not in NAME_EXCEPTIONS and theirs.grad_fn is not None:
        assert ours.grad_fn.name() == theirs.grad_fn.name(), f"{name}: node name"
    r = np.random.default_rng(k).standard_normal(ours.shape)
    (ours * engine.tensor(r)).sum().backward()
    (theirs * torch.tensor(r)).sum().backward()
    flat_o = [t for t in ours_in if isinstance(t, engine.Tensor)] + [v for t in ours_in if isinstance(t, list) for v in t]
    flat_t = [t for t in theirs_in if isinstance(t, torch.Tensor)] + [v for t in theirs_in if isinstance(t, list) for v in t]
    for i, (a, b) in enumerate(zip(flat_o, flat_t)):
        if b.grad is None:
            assert a.grad is None or not np.any(a.grad.numpy()), f"{name}: gradient of input {i}"
            continue
        # force=True: PyTorch's sgn backward leaves a ZeroTensor, which .numpy() refuses
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(force=True), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{name}: gradient of input {i}")


@pytest.mark.parametrize("seed", range(30))
def test_repr_matches_pytorch_on_random_tensors(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 5, rng.integers(0, 4)))
    scale = 10.0 ** rng.integers(-6, 9)
    a = rng.standard_normal(shape) * scale
    if seed % 3 == 0:
        a = np.round(a)
    ours = repr(engine.tensor(a))
    theirs = repr(torch.tensor(a)).replace(", dtype=torch.float64", "").replace(",\n       dtype=torch.float64", "")
    assert ours == theirs
