"""Variable values typed on the command line -> numpy arrays.

Syntaxes: `3` (0-d), `1,2` (vector), `1,2;3,4` (matrix rows), `[[1,2],[3,4]]` (nested list),
`randn(3,4)` `rand(2)` `zeros(3)` `ones(2,2)` `arange(5)` `linspace(0,1,5)` `eye(3)` (seeded),
`@path.npy`, `@path.csv`, `@path.txt`. Numbers are read with float(), so `-1`, `1e-3`, `inf`
and `nan` work. Nothing here evaluates Python.
"""
import math
import pathlib
import re

import numpy as np

from .errors import ValueSyntaxError

MAX_ELEMENTS = 10 ** 8
MAX_NESTING = 32
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.S)
GENERATORS = ("randn", "rand", "zeros", "ones", "arange", "linspace", "eye")
SYNTAX_HELP = ("a number (3), a list (1,2), rows (1,2;3,4), a nested list ([[1,2],[3,4]]), "
               "randn(3,4), rand(2), zeros(3), ones(2,2), arange(5), linspace(0,1,5), eye(3), "
               "or @file.npy / @file.csv / @file.txt")


def _number(tok, what):
    t = tok.strip()
    if not t:
        raise ValueSyntaxError(f"empty item in {what}")
    try:
        return float(t)
    except ValueError:
        raise ValueSyntaxError(f"could not read '{t}' as a number in {what}; expected {SYNTAX_HELP}") from None


def _check_size(shape, what):
    n = 1
    for s in shape:
        if s < 0:
            raise ValueSyntaxError(f"negative size {s} in {what}")
        n *= s
    if n > MAX_ELEMENTS:
        raise ValueSyntaxError(f"{what} would have {n:,} elements; the limit is {MAX_ELEMENTS:,}")


def _ints(args, what):
    out = []
    for a in args:
        v = _number(a, what)
        if not v.is_integer():
            raise ValueSyntaxError(f"sizes must be whole numbers in {what}, got {a.strip()}")
        out.append(int(v))
    return out


def _generator(name, argtext, rng, text):
    args = [a for a in argtext.split(",")] if argtext.strip() else []
    if name in ("randn", "rand", "zeros", "ones"):
        if not args:
            raise ValueSyntaxError(f"{name}() needs a shape, like {name}(3) or {name}(2,3)")
        shape = _ints(args, text)
        _check_size(shape, text)
        if len(shape) > MAX_DIMS:
            raise ValueSyntaxError(f"{text} has {len(shape)} dimensions; the limit is {MAX_DIMS}")
        if name == "randn":
            return rng.standard_normal(shape)
        if name == "rand":
            return rng.random(shape)
        return np.zeros(shape) if name == "zeros" else np.ones(shape)
    if name == "eye":
        n = _ints(args, text)
        if len(n) not in (1, 2):
            raise ValueSyntaxError("eye() takes one or two sizes, like eye(3)")
        _check_size(n * (2 // len(n)), text)
        return np.eye(*n)
    if name == "arange":
        vals = [_number(a, text) for a in args]
        if not 1 <= len(vals) <= 3:
            raise ValueSyntaxError("arange() takes 1 to 3 numbers: arange(end), arange(start, end[, step])")
        if len(vals) == 3 and vals[2] == 0:
            raise ValueSyntaxError("arange() step must not be 0")
        start, end, step = (0.0, vals[0], 1.0) if len(vals) == 1 else (vals[0], vals[1], vals[2] if len(vals) == 3 else 1.0)
        if not all(math.isfinite(v) for v in (start, end, step)):
            raise ValueSyntaxError("arange() needs finite numbers")
        _check_size([max(0, math.ceil((end - start) / step))], text)
        return np.arange(start, end, step, dtype=np.float64)
    if name == "linspace":
        if len(args) != 3:
            raise ValueSyntaxError("linspace() takes start, end and a count: linspace(0,1,5)")
        a, b = _number(args[0], text), _number(args[1], text)
        n, = _ints(args[2:], text)
        _check_size([n], text)
        return np.linspace(a, b, n)
    near = [g for g in GENERATORS if g[:2] == name[:2]]
    hint = f"; did you mean {near[0]}?" if near else ""
    raise ValueSyntaxError(f"unknown value function '{name}'{hint} Expected {SYNTAX_HELP}")


def _nested(text):
    """Parse `[[1,2],[3,4]]` (numbers, brackets, commas) without evaluating anything."""
    pos = 0
    n = len(text)

    def skip():
        nonlocal pos
        while pos < n and text[pos] in " \t\n":
            pos += 1

    def parse(depth):
        nonlocal pos
        if depth > MAX_NESTING:
            raise ValueSyntaxError(f"lists nested more than {MAX_NESTING} deep")
        skip()
        if pos < n and text[pos] == "[":
            pos += 1
            items = []
            skip()
            if pos < n and text[pos] == "]":
                pos += 1
                return items
            while True:
                items.append(parse(depth + 1))
                skip()
                if pos < n and text[pos] == ",":
                    pos += 1
                    continue
                if pos < n and text[pos] == "]":
                    pos += 1
                    return items
                raise ValueSyntaxError(f"expected ',' or ']' at position {pos + 1} in {text!r}")
        m = re.match(r"[^,\[\]\s]*", text[pos:])
        tok = m.group(0)
        pos += len(tok)
        return _number(tok, repr(text))

    value = parse(0)
    skip()
    if pos != n:
        raise ValueSyntaxError(f"unexpected '{text[pos:pos + 10]}' after the list in {text!r}")
    try:
        arr = np.array(value, dtype=np.float64)
    except ValueError:
        raise ValueSyntaxError(f"ragged nested list {text!r}: every row must have the same length") from None
    return arr


MAX_TEXT_BYTES = 2 * 10 ** 9      # a .csv/.txt this large cannot hold <= MAX_ELEMENTS numbers sensibly
MAX_DIMS = 32      # numpy's iterators (np.broadcast, nditer) take at most 32 dimensions, and its arrays 64


def _file(path_text):
    """Read @path: sizes are checked from the .npy header or the file size before reading;
    pickles are never loaded; only regular files are read."""
    import os
    import stat
    path = pathlib.Path(path_text.strip()).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv", ".txt"):
        raise ValueSyntaxError(f"cannot read '{path}': use a .npy, .csv or .txt file")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ValueSyntaxError(f"file not found: '{path}'") from None
    except OSError as e:
        raise ValueSyntaxError(f"cannot read '{path}': {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueSyntaxError(f"'{path}' is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueSyntaxError(f"'{path}' is not a regular file (a device, pipe or socket); save the values "
                               "to a file first")
    if st.st_size == 0:
        raise ValueSyntaxError(f"'{path}' is empty")
    if not os.access(path, os.R_OK):
        raise ValueSyntaxError(f"cannot read '{path}': permission denied")
    try:
        if suffix == ".npy":
            arr = _npy(path)
        else:
            if st.st_size > MAX_TEXT_BYTES:
                raise ValueSyntaxError(f"'{path}' is {st.st_size:,} bytes; text files up to {MAX_TEXT_BYTES:,} "
                                       "bytes are read (save large arrays as .npy)")
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")          # numpy's "Empty input file" warning
                arr = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, dtype=np.float64, ndmin=0)
            if arr.size == 0:
                raise ValueSyntaxError(f"'{path}' holds no numbers")
    except (OSError, ValueError, EOFError) as e:
        raise ValueSyntaxError(f"could not read '{path}': {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    _check_elements(arr.shape, f"'{path}'")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _npy(path):
    """A .npy array, its header read first: shape and dtype are checked before any data is."""
    with open(path, "rb") as fh:
        head = fh.read(6)
        if head[:2] == b"PK":
            raise ValueSyntaxError(f"'{path}' is a zip archive (an .npz), not a .npy file: load it with "
                                   "numpy and save one array with numpy.save")
        if head != b"\x93NUMPY":
            raise ValueSyntaxError(f"'{path}' is not a .npy file (it does not start with numpy's header)")
        fh.seek(0)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject or dtype.kind not in "fiub":
        raise ValueSyntaxError(f"'{path}' does not hold numbers (dtype {dtype}); only numeric arrays are read")
    _check_elements(shape, f"'{path}'")
    return np.load(path, allow_pickle=False)


def _check_elements(shape, what):
    if len(shape) > MAX_DIMS:
        raise ValueSyntaxError(f"{what} has {len(shape)} dimensions; the limit is {MAX_DIMS}")
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_ELEMENTS:
        raise ValueSyntaxError(f"{what} has {n:,} elements; the limit is {MAX_ELEMENTS:,}")


class LazyGenerator:
    """numpy's default_rng(seed), made on first use: importing numpy.random costs ~14 ms of
    start-up, and most values are not random."""

    def __init__(self, seed=0):
        self._seed = seed
        self._gen = None

    def __getattr__(self, name):
        if self._gen is None:
            self._gen = np.random.default_rng(self._seed)
        return getattr(self._gen, name)


def parse_value(text, rng=None, name=None):
    """Parse one value; `rng` (a numpy Generator or LazyGenerator) feeds randn/rand."""
    what = f"--{name}" if name else "the value"
    if rng is None:
        rng = LazyGenerator(0)
    if not isinstance(text, str) or not text.strip():
        raise ValueSyntaxError(f"{what} is empty; expected {SYNTAX_HELP}")
    t = text.strip()
    try:
        if t.startswith("@"):
            return _file(t[1:])
        if t.startswith("["):
            return _nested(t)
        m = _CALL.match(t)
        if m:
            return _generator(m.group(1), m.group(2), rng, t)
        if ";" in t:
            rows = [r for r in t.split(";")]
            if rows and not rows[-1].strip():
                rows = rows[:-1]
            parsed = [[_number(v, f"row {i + 1} of {what}") for v in r.split(",")] for i, r in enumerate(rows)]
            widths = {len(r) for r in parsed}
            if len(widths) > 1:
                first = len(parsed[0])
                bad = next(i for i, r in enumerate(parsed) if len(r) != first)
                raise ValueSyntaxError(f"row {bad + 1} of {what} has {len(parsed[bad])} values but row 1 has {first}")
            return np.array(parsed, dtype=np.float64)
        if "," in t:
            items = t.split(",")
            return np.array([_number(v, f"item {i + 1} of {what}") for i, v in enumerate(items)], dtype=np.float64)
        return np.array(_number(t, what), dtype=np.float64)
    except ValueSyntaxError as e:
        if name and not e.message.startswith("--"):
            e.message = e.args[0] if e.args[0].startswith(what) else f"{what}: {e.args[0]}"
            e.args = (e.message,)
        raise
