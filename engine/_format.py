"""`repr` of tensors exactly as PyTorch prints them (torch/_tensor_str.py, default print options).

Pure formatting of a numpy array plus the suffixes the Tensor passes in; no autograd here.
"""
import math

import numpy as np

PRECISION = 4
THRESHOLD = 1000
EDGEITEMS = 3
LINEWIDTH = 80


class _Formatter:
    def __init__(self, values: np.ndarray):
        self.floating = values.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        flat = values.reshape(-1)
        if not self.floating:
            for v in flat.tolist():
                self.max_width = max(self.max_width, len(self._plain(v)))
            return
        vals = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
        if vals.size == 0:
            return
        absv = np.abs(vals)
        vmin, vmax = float(absv.min()), float(absv.max())
        self.int_mode = bool(np.all(vals == np.ceil(vals)))
        if self.int_mode:
            if vmax / vmin > 1000.0 or vmax > 1.0e8:
                self.sci_mode = True
                widths = (len(f"{v:.{PRECISION}e}") for v in vals.tolist())
            else:
                widths = (len(f"{v:.0f}") + 1 for v in vals.tolist())
        elif vmax / vmin > 1000.0 or vmax > 1.0e8 or vmin < 1.0e-4:
            self.sci_mode = True
            widths = (len(f"{v:.{PRECISION}e}") for v in vals.tolist())
        else:
            widths = (len(f"{v:.{PRECISION}f}") for v in vals.tolist())
        self.max_width = max(self.max_width, max(widths))

    @staticmethod
    def _plain(v):
        return str(v) if not isinstance(v, bool) else ("True" if v else "False")

    def format(self, v):
        if self.floating:
            if self.sci_mode:
                s = f"{v:{self.max_width}.{PRECISION}e}"
            elif self.int_mode:
                s = f"{v:.0f}"
                if not (math.isinf(v) or math.isnan(v)):
                    s += "."
            else:
                s = f"{v:.{PRECISION}f}"
        else:
            s = self._plain(v)
        return (self.max_width - len(s)) * " " + s


def _summarized(a: np.ndarray) -> np.ndarray:
    """The edge items PyTorch keeps when it summarises (get_summarized_data)."""
    if a.ndim == 0:
        return a
    if a.ndim == 1:
        if a.shape[0] > 2 * EDGEITEMS:
            return np.concatenate((a[:EDGEITEMS], a[-EDGEITEMS:]))
        return a
    if a.shape[0] > 2 * EDGEITEMS:
        parts = [_summarized(a[i]) for i in range(EDGEITEMS)]
        parts += [_summarized(a[i]) for i in range(a.shape[0] - EDGEITEMS, a.shape[0])]
    else:
        parts = [_summarized(a[i]) for i in range(a.shape[0])]
    return np.stack(parts)


def _vector(a, indent, summarize, fmt):
    elements_per_line = max(1, int(math.floor((LINEWIDTH - indent) / (fmt.max_width + 2))))
    if summarize and a.shape[0] > 2 * EDGEITEMS:
        data = ([fmt.format(v) for v in a[:EDGEITEMS].tolist()] + [" ..."]
                + [fmt.format(v) for v in a[-EDGEITEMS:].tolist()])
    else:
        data = [fmt.format(v) for v in a.tolist()]
    lines = [", ".join(data[i:i + elements_per_line]) for i in range(0, len(data), elements_per_line)]
    return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(a, indent, summarize, fmt):
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        return _vector(a, indent, summarize, fmt)
    n = a.shape[0]
    if summarize and n > 2 * EDGEITEMS:
        slices = ([_nested(a[i], indent + 1, summarize, fmt) for i in range(EDGEITEMS)] + ["..."]
                  + [_nested(a[i], indent + 1, summarize, fmt) for i in range(n - EDGEITEMS, n)])
    else:
        slices = [_nested(a[i], indent + 1, summarize, fmt) for i in range(n)]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(slices) + "]"


def array_str(a: np.ndarray, indent: int) -> str:
    """The bracketed body of a tensor's repr, as `_tensor_str` builds it."""
    if a.size == 0:
        return "[]"
    summarize = a.size > THRESHOLD
    fmt = _Formatter(_summarized(a) if summarize else a)
    return _nested(a, indent, summarize, fmt)


def tensor_repr(a: np.ndarray, suffixes: list, default_dtype: bool, dtype_name: str) -> str:
    prefix = "tensor("
    indent = len(prefix)
    pre = []
    if a.size == 0:
        if a.ndim != 1:
            pre.append("size=" + str(tuple(a.shape)))
        if a.dtype != np.float64:
            pre.append("dtype=" + dtype_name)
    elif not default_dtype:
        pre.append("dtype=" + dtype_name)
    out = [prefix + array_str(a, indent)]
    s = out[0]
    last_line_len = len(s) - s.rfind("\n") + 1
    for suffix in pre + suffixes:
        if last_line_len + len(suffix) + 2 > LINEWIDTH:
            out.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            out.append(", " + suffix)
            last_line_len += len(suffix) + 2
    out.append(")")
    return "".join(out)
