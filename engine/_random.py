"""Random numbers drawn the way PyTorch's CPU generator draws them, so that after
`torch.manual_seed(s)` a file run on the engine gets the numbers it gets on PyTorch.

PyTorch's CPU generator is an MT19937 seeded with the low 32 bits of the seed (numpy's legacy
RandomState seeding is the same algorithm, so its raw 32-bit outputs are PyTorch's). On top:
- uniform: float32 from 24 bits of one draw, float64 from 53 bits of two (high word first);
- normal: tensors of 16 or more elements are filled with uniforms and transformed 16 at a
  time by Box-Muller (a remainder re-draws the last 16); smaller ones draw pairs of 53-bit
  uniforms per element, keeping the second (sine) sample for the next element;
- randint: one draw modulo the range; randperm: a Fisher-Yates shuffle with one draw per step.
PyTorch's default dtype is float32 and the engine's is float64: a tensor made without a
dtype follows PyTorch's float32 stream (then is widened), unless set_default_dtype chose
float64 explicitly. Unseeded, the seed is random, as PyTorch's is.
"""
from . import errors as _errors
import numpy as np

_MASK24 = np.uint64((1 << 24) - 1)
_MASK53 = np.uint64((1 << 53) - 1)


class Generator:
    """torch.Generator's CPU algorithm (see the module docstring)."""

    def __init__(self, device="cpu"):
        self._seed = int(np.random.SeedSequence().entropy) & ((1 << 64) - 1)
        self._reset()

    def _reset(self):
        self._bits = np.random.RandomState(self._seed & 0xFFFFFFFF)._bit_generator
        self._cached_normal = None

    def manual_seed(self, seed):
        self._seed = int(seed) & ((1 << 64) - 1)
        self._reset()
        return self

    def seed(self):
        self._seed = int(np.random.SeedSequence().entropy) & ((1 << 64) - 1)
        self._reset()
        return self._seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        return (self._seed, self._bits.state, self._cached_normal)

    def set_state(self, state):
        self._seed, bits, self._cached_normal = state
        self._bits.state = bits
        return self

    # -- raw draws --------------------------------------------------------------------------------
    def _u32(self, n):
        return self._bits.random_raw(n).astype(np.uint64)

    def _u64(self, n):
        r = self._u32(2 * n).reshape(n, 2)
        return (r[:, 0] << np.uint64(32)) | r[:, 1]

    # -- distributions ----------------------------------------------------------------------------
    def uniform(self, shape, double, low=0.0, high=1.0):
        n = int(np.prod(shape, dtype=np.int64))
        if double:
            x = (self._u64(n) & _MASK53).astype(np.float64) * 2.0 ** -53
            out = x * (high - low) + low
        else:
            # PyTorch's CPU kernel: the bounds as float32 (their difference in float32), the
            # draw scaled in double (float's accumulate type on CPU), then stored as float32
            lo, hi = np.float32(low), np.float32(high)
            x = (self._u32(n) & _MASK24).astype(np.float64) * 2.0 ** -24
            out = (x * np.float64(hi - lo) + np.float64(lo)).astype(np.float32)
        return out.reshape(shape)

    def _normal_pair(self):
        u1, u2 = (self._u64(2) & _MASK53).astype(np.float64) * 2.0 ** -53
        r = np.sqrt(-2.0 * np.log1p(-u2))
        theta = 2.0 * np.pi * u1
        return r * np.cos(theta), r * np.sin(theta)

    def normal(self, shape, double, mean=0.0, std=1.0):
        n = int(np.prod(shape, dtype=np.int64))
        ft = np.float64 if double else np.float32
        if n >= 16:
            data = self.uniform((n,), double)
            for i in range(0, n - 15, 16):
                data[i:i + 16] = _box_muller16(data[i:i + 16], ft)
            if n % 16:
                data[n - 16:] = _box_muller16(self.uniform((16,), double), ft)
        else:
            vals = []
            for _ in range(n):
                if self._cached_normal is not None:
                    vals.append(self._cached_normal)
                    self._cached_normal = None
                else:
                    c, s = self._normal_pair()
                    vals.append(c)
                    self._cached_normal = s
            data = np.array(vals, dtype=np.float64).astype(ft)
        if std != 1.0 or mean != 0.0:
            data = data * ft(std) + ft(mean)
        return data.reshape(shape)

    def randint(self, low, high, shape):
        n = int(np.prod(shape, dtype=np.int64))
        span = int(high) - int(low)
        if span <= 0:
            raise _errors.EngineRuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
        draws = self._u64(n) if span >= 2 ** 32 else self._u32(n)
        return ((draws % np.uint64(span)).astype(np.int64) + int(low)).reshape(shape)

    def full_range(self, shape, nd):
        """random_() without bounds, as PyTorch's CPU kernel: a 64-bit draw for int64 and float64,
        32 bits otherwise, modulo the dtype's range (max + 1 for an integer type, 2**digits + 1
        for a floating one; its lowest bit for bool)."""
        n = int(np.prod(shape, dtype=np.int64))
        nd = np.dtype(nd)
        wide = nd in (np.dtype(np.int64), np.dtype(np.float64))
        draws = self._u64(n) if wide else self._u32(n)
        if nd == np.bool_:
            return (draws & np.uint64(1)).astype(bool).reshape(shape)
        if nd.kind == "f":
            span = (1 << {2: 11, 4: 24, 8: 53}[nd.itemsize]) + 1
        else:
            span = int(np.iinfo(nd).max) + 1
        return (draws % np.uint64(span)).astype(nd).reshape(shape)

    def randperm(self, n):
        r = np.arange(n, dtype=np.int64)
        if n > 1:
            u = self._u32(n - 1)
            for i in range(n - 1):
                z = int(u[i] % np.uint64(n - i))
                r[i], r[i + z] = r[i + z], r[i]
        return r


def _box_muller16(d, ft):
    u1 = ft(1) - d[:8]
    u2 = d[8:16]
    radius = np.sqrt(ft(-2) * np.log(u1))
    theta = ft(2.0 * np.pi) * u2
    out = np.empty(16, dtype=d.dtype)
    out[:8] = radius * np.cos(theta)
    out[8:] = radius * np.sin(theta)
    return out
