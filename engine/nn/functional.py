"""PyTorch's torch.nn.functional, written with engine ops (so every one is differentiable
through the registry's rules, and its graph shows the ops it is made of)."""
from .. import errors as _errors
from .. import ops
from ..ops import log_softmax, relu, sigmoid, softmax, softplus, tanh  # noqa: F401
from ..tensor import Tensor, arange


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def linear(input, weight, bias=None):  # noqa: A002
    """input @ weight^T + bias, recorded as PyTorch records it: AddmmBackward0 with a bias (in a
    ViewBackward0 for input that is not a matrix), MmBackward0 without."""
    if bias is None or weight.ndim != 2 or input.ndim == 0:
        y = input @ weight.t() if weight.ndim == 2 else input @ weight
        return y if bias is None else y + bias
    if input.ndim == 2:
        return ops.addmm(bias, input, weight.t())
    lead = tuple(input.shape[:-1])
    y = ops.addmm(bias, input.reshape(-1, input.shape[-1]), weight.t())
    return y.reshape(lead + (weight.shape[0],))


mse_loss = ops.mse_loss
nll_loss = ops.nll_loss
binary_cross_entropy = ops.binary_cross_entropy
binary_cross_entropy_with_logits = ops.binary_cross_entropy_with_logits


cross_entropy = ops.cross_entropy


silu = ops.silu
gelu = ops.gelu
leaky_relu = ops.leaky_relu
elu = ops.elu
hardtanh = ops.hardtanh
relu6 = ops.relu6


def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero each element with probability p and scale the rest by 1/(1-p) while training."""
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    from ..tensor import default_generator
    keep = (default_generator.uniform(tuple(input.shape), False) >= p) / (1.0 - p)
    return input * Tensor(keep.astype(input.numpy(force=True).dtype))


def one_hot(tensor, num_classes=-1):
    """Class indices -> an int64 tensor with a trailing dim of num_classes (no gradient)."""
    import numpy as np
    idx = tensor.numpy()
    if idx.dtype.kind not in "iu":
        raise _errors.EngineRuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    n = int(idx.max()) + 1 if num_classes == -1 else int(num_classes)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise _errors.EngineRuntimeError("Class values must be smaller than num_classes." if idx.max() >= n else
                           "Class values must be non-negative.")
    return Tensor._make(np.eye(n, dtype=np.int64)[idx])


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):  # noqa: A002
    """input / max(||input||_p along dim, eps), as PyTorch composes it (norm, clamp_min, expand, div)."""
    denom = input.norm(p, dim, keepdim=True).clamp(min=eps).expand_as(input)
    return input / denom


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    return _reduce((input - target).abs(), reduction)


# -- convolution and pooling, composed of indexing, matmul and reductions (their gradients are
# those ops'; PyTorch records one ConvolutionBackward0 / MaxPool2DWithIndicesBackward0 node) ----
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def pad(input, pad, mode="constant", value=0.0):  # noqa: A002
    """Pad the last dims: pad = (left, right[, top, bottom[, ...]]) with `value` (constant mode)."""
    if mode != "constant":
        raise NotImplementedError(f"pad(mode={mode!r}) is not in the engine yet (only 'constant')")
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError("Padding length must be divisible by 2 and at most twice the number of dims")
    from ..ops import cat
    out = input
    for k in range(len(pad) // 2):
        before, after = int(pad[2 * k]), int(pad[2 * k + 1])
        dim = out.ndim - 1 - k
        if before < 0 or after < 0:
            raise NotImplementedError("negative padding is not in the engine yet")
        parts = []
        shape = list(out.shape)
        if before:
            shape[dim] = before
            parts.append(out.new_full(tuple(shape), value))
        parts.append(out)
        if after:
            shape[dim] = after
            parts.append(out.new_full(tuple(shape), value))
        if len(parts) > 1:
            out = cat(parts, dim)
    return out


def _patches(x, kernel, stride, padding, dilation):
    """x (N, C, H, W) -> (N, C, kh*kw, OH*OW): every receptive field, by advanced indexing."""
    import numpy as np
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    if ph or pw:
        x = pad(x, (pw, pw, ph, ph))
    h, w = x.shape[-2], x.shape[-1]
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (w - dw * (kw - 1) - 1) // sw + 1
    if oh <= 0 or ow <= 0:
        raise _errors.EngineRuntimeError(f"Calculated output size: ({oh}x{ow}). Output size is too small")
    ki, kj = np.meshgrid(np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
    oi, oj = np.meshgrid(np.arange(oh) * sh, np.arange(ow) * sw, indexing="ij")
    rows = ki.reshape(-1, 1) + oi.reshape(1, -1)
    cols = kj.reshape(-1, 1) + oj.reshape(1, -1)
    return x[:, :, rows, cols], oh, ow


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """2-D convolution (cross-correlation) of input (N, C, H, W) or (C, H, W) with weight
    (O, C/groups, kh, kw)."""
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    if x.ndim != 4 or weight.ndim != 4:
        raise _errors.EngineRuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
                           f"{list(input.shape)}")
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            padding = tuple((d * (k - 1)) // 2 for d, k in zip(_pair(dilation), weight.shape[2:]))
        else:
            raise ValueError(f"Invalid padding string {padding!r}, should be one of ('valid', 'same')")
    n, c = x.shape[0], x.shape[1]
    o, cg, kh, kw = weight.shape
    if c != cg * groups:
        raise _errors.EngineRuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
                           f"{list(x.shape)} to have {cg * groups} channels, but got {c} channels instead")
    cols, oh, ow = _patches(x, (kh, kw), _pair(stride), _pair(padding), _pair(dilation))
    from ..ops import cat
    outs = []
    og = o // groups
    for g in range(groups):
        part = cols[:, g * cg:(g + 1) * cg] if groups > 1 else cols
        w = weight[g * og:(g + 1) * og] if groups > 1 else weight
        outs.append(w.reshape(og, cg * kh * kw) @ part.reshape(n, cg * kh * kw, oh * ow))
    out = (cat(outs, 1) if groups > 1 else outs[0]).reshape(n, o, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """Transposed 2-D convolution (the adjoint of conv2d in its input) of input (N, C_in, H, W) or
    (C_in, H, W) with weight (C_in, C_out/groups, kh, kw): per group a matmul gives every input
    position's kernel-sized contribution, and index_add sums them into the output (col2im), which
    padding then crops; output_padding adds rows and columns at the end. Its gradients are
    those ops' (PyTorch records one ConvolutionBackward0)."""
    import numpy as np
    from ..ops import cat, index_add
    from ..tensor import zeros
    if input.ndim not in (3, 4):
        raise _errors.EngineRuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv_transpose2d, but got "
                                         f"input of size: {list(input.shape)}")
    if weight.ndim != 4:
        raise _errors.EngineRuntimeError(f"expected stride to be a single integer value or a list of {weight.ndim - 2} "
                                         f"values to match the convolution dimensions, but got stride="
                                         f"{list(_pair(stride))}")
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = (_pair(v) for v in (stride, padding, output_padding, dilation))
    if min(sh, sw) <= 0:
        raise _errors.EngineRuntimeError("non-positive stride is not supported")
    if min(ph, pw) < 0:
        raise _errors.EngineRuntimeError("negative padding is not supported")
    if min(oph, opw) < 0:
        raise _errors.EngineRuntimeError("negative output_padding is not supported")
    if min(dh, dw) <= 0:
        raise _errors.EngineRuntimeError("dilation should be greater than zero")
    cin, og, kh, kw = weight.shape
    if groups <= 0:
        raise _errors.EngineRuntimeError("non-positive groups is not supported")
    if cin % groups:
        raise _errors.EngineRuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at "
                                         f"dimension 0, but got weight of size [{list(weight.shape)}] instead")
    n, c, h, w = x.shape
    if c != cin:
        raise _errors.EngineRuntimeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected input"
                                         f"{list(x.shape)} to have {cin} channels, but got {c} channels instead")
    if (oph >= sh and oph >= dh) or (opw >= sw and opw >= dw):
        raise _errors.EngineRuntimeError(
            f"output padding must be smaller than either stride or dilation, but got output_padding_height: {oph} "
            f"output_padding_width: {opw} stride_height: {sh} stride_width: {sw} dilation_height: {dh} "
            f"dilation_width: {dw}")
    cout = og * groups
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != cout):
        raise _errors.EngineRuntimeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected bias to be "
                                         f"1-dimensional with {cout} elements, but got bias of size "
                                         f"{list(bias.shape)} instead")
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1, (w - 1) * sw + dw * (kw - 1) + 1
    oh, ow = full_h - 2 * ph + oph, full_w - 2 * pw + opw
    if oh <= 0 or ow <= 0:
        raise _errors.EngineRuntimeError(f"Given input size per channel: ({h} x {w}). Calculated output size per "
                                         f"channel: ({oh} x {ow}). Output size is too small")
    ch, cw = max(full_h, ph + oh), max(full_w, pw + ow)           # the canvas the kernels write on
    rows = (np.arange(kh) * dh)[:, None] + (np.arange(h) * sh)[None, :]          # (kh, h)
    cols = (np.arange(kw) * dw)[:, None] + (np.arange(w) * sw)[None, :]          # (kw, w)
    where = (rows[:, None, :, None] * cw + cols[None, :, None, :]).reshape(-1)   # (kh, kw, h, w) flat
    index = Tensor._make(where.astype(np.int64))
    cg = cin // groups
    outs = []
    for g in range(groups):
        wg = weight[g * cg:(g + 1) * cg] if groups > 1 else weight
        xg = x[:, g * cg:(g + 1) * cg] if groups > 1 else x
        parts = wg.reshape(cg, og * kh * kw).t() @ xg.reshape(n, cg, h * w)      # (n, og*kh*kw, h*w)
        canvas = zeros(n, og, ch * cw, dtype=x.dtype)
        canvas = index_add(canvas, 2, index, parts.reshape(n, og, kh * kw * h * w))
        outs.append(canvas.reshape(n, og, ch, cw)[:, :, ph:ph + oh, pw:pw + ow])
    out = cat(outs, 1) if groups > 1 else outs[0]
    if bias is not None:
        out = out + bias.reshape(1, cout, 1, 1)
    return out.squeeze(0) if unbatched else out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    if ceil_mode or return_indices:
        raise NotImplementedError("max_pool2d(ceil_mode=True / return_indices=True) is not in the engine yet")
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    k = _pair(kernel_size)
    cols, oh, ow = _patches(x, k, _pair(stride if stride is not None else kernel_size), (0, 0), _pair(dilation))
    if padding:
        raise NotImplementedError("max_pool2d(padding=...) is not in the engine yet")
    out = cols.max(dim=2)[0].reshape(x.shape[0], x.shape[1], oh, ow)
    return out.squeeze(0) if unbatched else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,  # noqa: A002
               divisor_override=None):
    if ceil_mode or divisor_override is not None:
        raise NotImplementedError("avg_pool2d(ceil_mode / divisor_override) is not in the engine yet")
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    k = _pair(kernel_size)
    cols, oh, ow = _patches(x, k, _pair(stride if stride is not None else kernel_size), _pair(padding), (1, 1))
    out = cols.mean(dim=2).reshape(x.shape[0], x.shape[1], oh, ow)
    return out.squeeze(0) if unbatched else out


def logsigmoid(input):  # noqa: A002
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    return -softplus(-input)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):  # noqa: A002
    from ..ops import where
    d = (input - target).abs()
    loss = where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta) if beta > 0 else d
    return _reduce(loss, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):  # noqa: A002
    from ..ops import where
    d = (input - target).abs()
    return _reduce(where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)), reduction)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):  # noqa: A002
    """sum target * (log target - input) (input: log-probabilities); 'batchmean' divides by the batch."""
    loss = target.exp() * (target - input) if log_target else target * (target.clamp(min=1e-45).log() - input)
    if reduction == "batchmean":
        return loss.sum() / input.shape[0]
    return _reduce(loss, reduction)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """x1 . x2 / max(||x1|| ||x2||, eps) along dim."""
    num = (x1 * x2).sum(dim)
    den = (x1.norm(2, dim) * x2.norm(2, dim)).clamp(min=eps)
    return num / den


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    return (x1 - x2 + eps).norm(p, -1, keepdim=keepdim)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """(x - mean) / sqrt(var + eps) over the last len(normalized_shape) dims, then * weight + bias."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    dims = tuple(range(-len(shape), 0))
    mean = input.mean(dims, keepdim=True)
    var = ((input - mean) ** 2).mean(dims, keepdim=True)
    out = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,  # noqa: A002
              sparse=False):
    """Rows of weight at the indices in input (their gradient is added back at those rows)."""
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding(max_norm / scale_grad_by_freq / sparse) is not in the engine yet")
    return weight[input.numpy().astype("int64")]


def softmin(input, dim=None):  # noqa: A002
    return softmax(-input, dim)
