"""Elementwise ops: arithmetic, unary math, clamp/maximum/minimum/where, comparisons.

Each entry is forward + one rule per input (vocabulary in engine/ops/_core.py). Broadcasting
is undone by the backward loop, so rules here are written in the broadcast shape.
"""
from .. import errors as _errors
import numpy as np

from ..tensor import Tensor
from .. import _xp
from ._core import apply, apply1, defop, export

UNARY = [((),), ((2,),), ((3, 2),), ((1, 2),), ((2, 3, 4),)]
BINARY = [((), ()), ((2,), ()), ((3, 2), (2,)), ((1, 2), (3, 1)), ((2, 3, 4), (3, 4)), ((2, 3), 1.5), ((2,), (2,))]


def _samples(shapes):
    return [(s, {}) for s in shapes]


# -- arithmetic --------------------------------------------------------------------------------
ADD = defop("add", np.add, (lambda xp, g, out, x, y: g, lambda xp, g, out, x, y: g),
            saves=('', ''), operators={"__add__": "fast", "__radd__": "fast"}, nodes="AddBackward0", samples=_samples(BINARY), doc="x + y",
            formula=('grad', 'grad'))
SUB = defop("sub", np.subtract, (lambda xp, g, out, x, y: g, lambda xp, g, out, x, y: -g),
            saves=('', ''), operators={"__sub__": "fast", "__rsub__": "reflected"}, nodes="SubBackward0", samples=_samples(BINARY), doc="x - y",
            formula=('grad', '-grad'))
RSUB = defop("rsub", lambda x, other: other - x, (lambda xp, g, out, x, other: -g,),
             saves=('',), nodes="RsubBackward1", samples=[(((2, 3),), {"other": 2.0})],
             doc="other - x for a number `other` (what `2 - x` records)",
             formula='-grad')
MUL = defop("mul", np.multiply, (lambda xp, g, out, x, y: g * y, lambda xp, g, out, x, y: g * x),
            saves=('y', 'x'), operators={"__mul__": "fast", "__rmul__": "fast"}, nodes="MulBackward0", samples=_samples(BINARY), doc="x * y",
            formula=('grad * y', 'grad * x'))
# x * a number inside a backward formula (PyTorch's mul.Scalar, as pow's backward records it:
# MulBackward1, its _saved_other the number); a user's `x * 3` wraps 3 and records MulBackward0
MUL_SCALAR = defop("mul_scalar", lambda x, other: x * other, (lambda xp, g, out, x, other: g * other,),
                   saves=('',), nodes="MulBackward1", samples=[(((2, 3),), {"other": 2.5})],
                   doc="x * a number, as a backward formula records it",
                   formula='grad * other')


def mul_scalar(x, other):
    """x * a number recorded as MulBackward1 (xp.mul_scalar in a rule under create_graph)."""
    return apply1(MUL_SCALAR, x, {"other": other})


DIV = defop("div", np.true_divide,
            (lambda xp, g, out, x, y: g / y, lambda xp, g, out, x, y: -g * x / (y * y)),
            saves=('y', 'x y'), operators={"__truediv__": "fast", "__rtruediv__": "reflected"},
            nodes="DivBackward0", domain=("real", "nonzero"), samples=_samples(BINARY), doc="x / y",
            formula=('grad / y', '-grad * x / y^2'))
NEG = defop("neg", np.negative, (lambda xp, g, out, x: -g,), saves=('',), nodes="NegBackward0", fresh=True, operators={"__neg__": "unary"},
            samples=_samples(UNARY), doc="-x",
            formula='-grad')
RECIPROCAL = defop("reciprocal", lambda x: 1.0 / x, (lambda xp, g, out, x: -g * out * out,),
                   saves=('out',), nodes="ReciprocalBackward0", domain=("nonzero",), samples=_samples(UNARY),
                   doc="1 / x",
                   formula='-grad * result^2')


def _pow_scalar_vjp(xp, g, out, x, exponent):
    # PyTorch's pow_backward: exponent 0 gives a zero gradient (not 0 * x**-1, which is nan at 0)
    if exponent == 0:
        return g * 0.0
    if exponent == 2 and xp is _xp.NUMPY:
        return g * (x * 2.0)          # the common square, without computing x ** 1
    # PyTorch: grad * (exponent * x.pow(exponent - 1)), which double backward records as
    # MulBackward0 <- MulBackward1 <- PowBackward0
    return g * xp.mul_scalar(x ** (exponent - 1), float(exponent))


def _pow_base_vjp(xp, g, out, x, y):
    # d/dx x**y = y * x**(y-1), masked to 0 where y == 0 (PyTorch)
    return xp.where(xp.raw(y) == 0, 0.0, g * y * x ** (y - 1))


def _pow_exp_vjp(xp, g, out, x, y):
    # d/dy x**y = x**y * log(x), masked to 0 where x == 0 and y >= 0 (PyTorch)
    mask = (xp.raw(x) == 0) & (xp.raw(y) >= 0)
    return xp.where(mask, 0.0, g * out * xp.log(xp.where(mask, 1.0, x)))


POW = defop("pow", lambda x, exponent: np.power(x, exponent), (_pow_scalar_vjp,),
            saves=('x',), nodes="PowBackward0", domain=("positive",),
            samples=[(((2, 3),), {"exponent": 2}), (((3,),), {"exponent": 0.5}),
                     (((2,),), {"exponent": -1.5}), (((),), {"exponent": 3})],
            doc="x ** exponent for a number exponent",
            formula='0 if exponent == 0 else grad * exponent * x^(exponent - 1)')
POW_T = defop("pow_tensor", np.power, (_pow_base_vjp, _pow_exp_vjp), saves=('x y', 'x y out'), nodes="PowBackward1",
              operators={"__pow__": "call", "__rpow__": "reflected"},
              domain=("positive", "real"), samples=_samples(BINARY[:6]),
              doc="x ** y for tensors x and y",
              formula=('where(y == 0, 0, grad * y * x^(y - 1))',
                       'where((x == 0) & (y >= 0), 0, grad * result * log(x))'))
RPOW = defop("rpow", lambda x, base: np.power(base, x),
             (lambda xp, g, out, x, base: g * out * float(np.log(base)),),
             saves=('out',), nodes="PowBackward2", samples=[(((2, 3),), {"base": 2.0})],
             doc="base ** x for a number base",
             formula='grad * result * log(base)')


# -- unary math --------------------------------------------------------------------------------
def _unary(name, fwd, rule, node, domain=("real",), kinks=None, doc="", fresh=False, saves=None,
           operators=None, formula=None):
    return defop(name, fwd, (rule,), nodes=node, domain=domain, samples=_samples(UNARY),
                 kinks=kinks, doc=doc or f"elementwise {name}(x)", fresh=fresh, saves=saves,
                 operators=operators, formula=formula)


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)   # no overflow warning for large |x|


def _softplus(x, beta=1.0, threshold=20.0):
    # PyTorch: x where beta*x > threshold, else log1p(exp(beta*x)) / beta
    bx = x * beta
    return np.where(bx > threshold, x, np.log1p(np.exp(np.minimum(bx, threshold))) / beta)


def _softplus_vjp(xp, g, out, x, beta=1.0, threshold=20.0):
    bx = xp.raw(x) * beta
    return xp.where(bx > threshold, g, g * xp.sigmoid(x * beta))


EXP = _unary("exp", np.exp, lambda xp, g, out, x: g * out, "ExpBackward0", saves=('out',),
             formula='grad * result')
LOG = _unary("log", np.log, lambda xp, g, out, x: g / x, "LogBackward0", ("positive",), saves=('x',),
             formula='grad / x')
LOG1P = _unary("log1p", np.log1p, lambda xp, g, out, x: g / (x + 1.0), "Log1PBackward0", ("positive",), saves=('x',),
               formula='grad / (1 + x)')
SQRT = _unary("sqrt", np.sqrt, lambda xp, g, out, x: g / (2.0 * out), "SqrtBackward0", ("positive",), saves=('out',),
              formula='grad / (2 * result)')
SIN = _unary("sin", np.sin, lambda xp, g, out, x: g * xp.cos(x), "SinBackward0", saves=('x',),
             formula='grad * cos(x)')
COS = _unary("cos", np.cos, lambda xp, g, out, x: -g * xp.sin(x), "CosBackward0", saves=('x',),
             formula='-grad * sin(x)')
TAN = _unary("tan", np.tan, lambda xp, g, out, x: g * (1.0 + out * out), "TanBackward0", ("unit",), saves=('out',),
             formula='grad * (1 + result^2)')
ASIN = _unary("asin", np.arcsin, lambda xp, g, out, x: g / xp.sqrt(1.0 - x * x), "AsinBackward0", ("unit",),
              saves=('x',),
              formula='grad / sqrt(1 - x^2)')
ACOS = _unary("acos", np.arccos, lambda xp, g, out, x: -g / xp.sqrt(1.0 - x * x), "AcosBackward0", ("unit",),
              saves=('x',),
              formula='-grad / sqrt(1 - x^2)')
ATAN = _unary("atan", np.arctan, lambda xp, g, out, x: g / (1.0 + x * x), "AtanBackward0", saves=('x',),
              formula='grad / (1 + x^2)')
SINH = _unary("sinh", np.sinh, lambda xp, g, out, x: g * xp.cosh(x), "SinhBackward0", saves=('x',),
              formula='grad * cosh(x)')
COSH = _unary("cosh", np.cosh, lambda xp, g, out, x: g * xp.sinh(x), "CoshBackward0", saves=('x',),
              formula='grad * sinh(x)')
EXPM1 = _unary("expm1", np.expm1, lambda xp, g, out, x: g * (out + 1.0), "Expm1Backward0", saves=('out',),
               formula='grad * (result + 1)')
RSQRT = _unary("rsqrt", lambda x: 1.0 / np.sqrt(x), lambda xp, g, out, x: -0.5 * g * out * out * out,
               "RsqrtBackward0", ("positive",), saves=('out',),
               formula='-0.5 * grad * result^3')
# floor'(x) = 0 everywhere it exists (PyTorch's FloorBackward0 returns zeros)
FLOOR = _unary("floor", np.floor, lambda xp, g, out, x: g * 0.0, "FloorBackward0", ("kinkfree",),
               kinks=lambda x, **a: [x - np.round(x)], saves=('',),
               formula="0, a step's slope wherever it has one")
TANH = _unary("tanh", np.tanh, lambda xp, g, out, x: xp.tanh_backward(g, out), "TanhBackward0",
               fresh=True, saves=('out',),
              formula='grad * (1 - result^2)')
SIGMOID = _unary("sigmoid", _sigmoid, lambda xp, g, out, x: xp.sigmoid_backward(g, out),
                  "SigmoidBackward0", fresh=True, saves=('out',),
                 formula='grad * result * (1 - result)')
# abs'(0) = 0 (PyTorch uses sgn(x), which is 0 at 0)
ABS = _unary("abs", np.abs, lambda xp, g, out, x: g * np.sign(xp.raw(x)), "AbsBackward0",
             ("kinkfree",), kinks=lambda x, **a: [x], saves=('x',), operators={"__abs__": "unary"},
             formula='grad * sign(x), so 0 at x = 0')
# relu'(0) = 0 (PyTorch's threshold_backward passes the gradient only where out > 0)
RELU = _unary("relu", lambda x: np.maximum(x, 0), lambda xp, g, out, x: g * (xp.raw(out) > 0),
              "ReluBackward0", ("kinkfree",), kinks=lambda x, **a: [x], saves=('out',),
              formula='where(x > 0, grad, 0), so 0 at x = 0')
SOFTPLUS = defop("softplus", _softplus, (_softplus_vjp,), saves=('x',), nodes="SoftplusBackward0",
                 samples=_samples(UNARY) + [(((3,),), {"beta": 2.0})],
                 doc="log(1 + exp(x)), linear above threshold (torch.nn.functional.softplus)",
                 formula='where(beta * x > threshold, grad, grad * sigmoid(beta * x))')


# -- clamp, maximum, minimum, where ------------------------------------------------------------
def _clamp(x, min=None, max=None):  # noqa: A002
    if min is not None and max is not None:
        return np.minimum(np.maximum(x, min), max)
    if min is not None:
        return np.maximum(x, min)
    return np.minimum(x, max)


def _clamp_vjp(xp, g, out, x, min=None, max=None):  # noqa: A002
    # The gradient passes where min <= x <= max, bounds included (PyTorch's clamp_backward)
    xr = xp.raw(x)
    mask = np.ones(np.shape(xr), dtype=bool)
    if min is not None:
        mask &= xr >= min
    if max is not None:
        mask &= xr <= max
    return g * mask


def _clamp_kinks(x, min=None, max=None, **_):  # noqa: A002
    return [x - b for b in (min, max) if b is not None]


CLAMP = defop("clamp", _clamp, (_clamp_vjp,), saves=('x',), nodes="ClampBackward1", domain=("kinkfree",),
              samples=[(((2, 3),), {"min": -0.5, "max": 0.5}), (((4,),), {"min": 0.0}),
                       (((3,),), {"max": 0.2})],
              kinks=_clamp_kinks, doc="x limited to [min, max]",
              formula='where((x >= min) & (x <= max), grad, 0), the bounds included')


def _tie_split(xp, g, mine, other, keep):
    # maximum/minimum: where x == y each side gets half (PyTorch's maximum backward)
    a, b = xp.raw(mine), xp.raw(other)
    return xp.where(a == b, g * 0.5, g * keep(a, b))


MAXIMUM = defop("maximum", np.maximum,
                (lambda xp, g, out, x, y: _tie_split(xp, g, x, y, np.greater),
                 lambda xp, g, out, x, y: _tie_split(xp, g, y, x, np.greater)),
                saves=('x y', 'x y'), nodes="MaximumBackward0", domain=("real", "real"), samples=_samples(BINARY[:5]),
                kinks=lambda x, y, **a: [x - y], doc="elementwise max; ties split the gradient in half",
                formula=('where(x == y, grad / 2, where(x > y, grad, 0)), a tie splits grad in half',
                         'where(x == y, grad / 2, where(y > x, grad, 0)), a tie splits grad in half'))
MINIMUM = defop("minimum", np.minimum,
                (lambda xp, g, out, x, y: _tie_split(xp, g, x, y, np.less),
                 lambda xp, g, out, x, y: _tie_split(xp, g, y, x, np.less)),
                saves=('x y', 'x y'), nodes="MinimumBackward0", domain=("real", "real"), samples=_samples(BINARY[:5]),
                kinks=lambda x, y, **a: [x - y], doc="elementwise min; ties split the gradient in half",
                formula=('where(x == y, grad / 2, where(x < y, grad, 0)), a tie splits grad in half',
                         'where(x == y, grad / 2, where(y < x, grad, 0)), a tie splits grad in half'))
WHERE = defop("where", lambda x, y, condition: np.where(condition, x, y),
              (lambda xp, g, out, x, y, condition: xp.where(condition, g, 0.0),
               lambda xp, g, out, x, y, condition: xp.where(condition, 0.0, g)),
              saves=('', ''), nodes="WhereBackward0",
              samples=[(((2, 3), (2, 3)), {"condition": np.array([[True, False, True], [False, True, False]])}),
                       (((3,), ()), {"condition": np.array([True, False, True])})],
              doc="where(condition, x, y): x where condition holds, else y",
              formula=('where(condition, grad, 0)', 'where(condition, 0, grad)'))


# -- comparisons and other non-differentiable elementwise ops --------------------------------
def _cmp(name, fn):
    return defop(name, fn, None, nodes=(), differentiable=False, operators={f"__{name}__": "call"},
                 samples=_samples(BINARY[:5]), doc=f"elementwise {name} (a bool tensor, no gradient)")


EQ, NE, LT, LE, GT, GE = (_cmp(n, f) for n, f in (("eq", np.equal), ("ne", np.not_equal),
                                                  ("lt", np.less), ("le", np.less_equal),
                                                  ("gt", np.greater), ("ge", np.greater_equal)))
# sign'(x) = 0 wherever it exists; PyTorch records SignBackward0 (zeros), so a graph through
# sign(x) * x has the node and sign(x).requires_grad is True; sgn is sign for real tensors
SIGN = _unary("sign", np.sign, lambda xp, g, out, x: g * 0.0, "SignBackward0", ("kinkfree",),
              kinks=lambda x, **a: [x], saves=('',), doc="sign of x (-1, 0 or 1; its gradient is 0)",
              formula="0, a step's slope wherever it has one")
SGN = _unary("sgn", np.sign, lambda xp, g, out, x: g * 0.0, "SgnBackward0", ("kinkfree",),
             kinks=lambda x, **a: [x], saves=('',), doc="sgn of x: sign for real tensors (its gradient is 0)",
             formula="0, a step's slope wherever it has one")
LOGICAL_NOT = defop("logical_not", np.logical_not, None, nodes=(), differentiable=False,
                    operators={"__invert__": "unary"},
                    samples=_samples(UNARY), doc="not x")


# -- public functions --------------------------------------------------------------------------
def _t(v):
    return v if isinstance(v, Tensor) else Tensor._make(np.asarray(v))


@export("add", op=ADD, keywords=("alpha",))
def add(input, other, *, alpha=1):  # noqa: A002 - PyTorch's names (torch.add(input=..., other=...))
    x, y = input, other
    if alpha != 1:
        y = y * alpha
    if not isinstance(x, Tensor):
        return apply(ADD, (y, x)) if isinstance(y, Tensor) else _t(np.add(x, y))
    return apply(ADD, (x, y))


@export("sub", "subtract", op=SUB, keywords=("alpha",))
def sub(input, other, *, alpha=1):  # noqa: A002
    x, y = input, other
    if alpha != 1:
        y = y * alpha
    if not isinstance(x, Tensor):
        if isinstance(y, Tensor) and isinstance(x, (int, float)):
            return apply1(RSUB, y, {"other": x})
        x = _t(x)
    return apply(SUB, (x, y))


@export("mul", "multiply", op=MUL)
def mul(input, other):  # noqa: A002
    x, y = input, other
    if not isinstance(x, Tensor):
        return apply(MUL, (y, x)) if isinstance(y, Tensor) else _t(np.multiply(x, y))
    return apply(MUL, (x, y))


@export("div", "divide", "true_divide", op=DIV)
def div(input, other):  # noqa: A002
    x, y = input, other
    if not isinstance(x, Tensor):
        if isinstance(y, Tensor) and isinstance(x, (int, float)):
            return mul(reciprocal(y), x)        # PyTorch records 2 / x as reciprocal(x) * 2
        x = _t(x)
    return apply(DIV, (x, y))


@export("pow", op=POW_T, keywords=("exponent",))
def pow(x, exponent):  # noqa: A001
    if not isinstance(x, Tensor):
        if isinstance(exponent, Tensor) and isinstance(x, (int, float)):
            return apply1(RPOW, exponent, {"base": x})
        x = _t(x)
    if isinstance(exponent, Tensor):
        return apply(POW_T, (x, exponent))
    return apply1(POW, x, {"exponent": exponent})


def _u(op, *aliases):
    """The public function of a one-input op without attributes; its Tensor method takes the
    unary fast path."""
    def fn(x):
        return apply1(op, x if isinstance(x, Tensor) else _t(x))
    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = op.doc
    return export(op.name, *aliases, op=op, fast_unary=True)(fn)


neg, reciprocal = _u(NEG, "negative"), _u(RECIPROCAL)
exp, log, log1p, sqrt = _u(EXP), _u(LOG), _u(LOG1P), _u(SQRT)
asin, acos, atan = _u(ASIN, "arcsin"), _u(ACOS, "arccos"), _u(ATAN, "arctan")
sinh, cosh, expm1, rsqrt, floor = _u(SINH), _u(COSH), _u(EXPM1), _u(RSQRT), _u(FLOOR)


@export("square")
def square(x):
    """x ** 2 (PyTorch records PowBackward0)."""
    return pow(x, 2)
sin, cos, tan, tanh, sigmoid = _u(SIN), _u(COS), _u(TAN), _u(TANH), _u(SIGMOID)
abs, relu = _u(ABS, "absolute"), _u(RELU)  # noqa: A001
sign, sgn, logical_not = _u(SIGN), _u(SGN), _u(LOGICAL_NOT)


@export("softplus", op=SOFTPLUS, keywords=("beta", "threshold"))
def softplus(x, beta=1.0, threshold=20.0):
    attrs = {} if (beta == 1.0 and threshold == 20.0) else {"beta": beta, "threshold": threshold}
    return apply1(SOFTPLUS, x, attrs)


@export("clamp", "clip", op=CLAMP, keywords=("min", "max"))
def clamp(x, min=None, max=None):  # noqa: A002
    if min is None and max is None:
        raise _errors.EngineRuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    attrs = {}
    if min is not None:
        attrs["min"] = float(min)
    if max is not None:
        attrs["max"] = float(max)
    return apply1(CLAMP, x, attrs)


@export("maximum", op=MAXIMUM)
def maximum(x, y):
    return apply(MAXIMUM, (_t(x), _t(y)))


@export("minimum", op=MINIMUM)
def minimum(x, y):
    return apply(MINIMUM, (_t(x), _t(y)))


@export("where", op=WHERE, method=False)
def where(condition, x=None, y=None):
    cond = condition._data if isinstance(condition, Tensor) else np.asarray(condition)
    if x is None and y is None:            # torch.where(cond): the indices where cond holds
        return tuple(Tensor._make(i.astype(np.int64)) for i in np.nonzero(cond))
    if cond.dtype != np.bool_:
        raise _errors.EngineRuntimeError(f"where expected condition to be a boolean tensor, but got a tensor with dtype {cond.dtype}")
    if not isinstance(x, Tensor) and not isinstance(y, Tensor):
        return _t(np.where(cond, x, y))
    return apply(WHERE, (x, y), {"condition": cond})


@export("where", function=False)
def where_method(self, condition, y):
    """x.where(condition, y): x where condition holds, else y."""
    return where(condition, self, y)


def _c(op, *aliases):
    def fn(x, y):
        return apply(op, (_t(x), y._data if isinstance(y, Tensor) else y))
    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = op.doc
    return export(op.name, *aliases, op=op)(fn)


eq, ne, lt, le = _c(EQ), _c(NE, "not_equal"), _c(LT, "less"), _c(LE, "less_equal")
gt, ge = _c(GT, "greater"), _c(GE, "greater_equal")

# how the registry's tests call the entries whose public function takes other arguments
RSUB.func = lambda x, other: sub(other, x)
MUL_SCALAR.func = mul_scalar
POW.func = lambda x, exponent: pow(x, exponent)
RPOW.func = lambda x, base: pow(base, x)
WHERE.func = lambda x, y, condition: where(condition, x, y)


# -- erf, atan2, activations (torch.nn.functional's, with PyTorch's node names) ----------------
_erf_scalar = np.frompyfunc(__import__("math").erf, 1, 1)
_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


def _erf(x):
    """erf elementwise, through libm's erf (numpy has none; exact, ~0.1 us per element)."""
    x = np.asarray(x)
    return np.asarray(_erf_scalar(x), dtype=x.dtype if x.dtype.kind == "f" else np.float64)


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def _gelu_vjp(xp, g, out, x, approximate="none"):
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        t = xp.tanh(inner)
        return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x))
    cdf = 0.5 * (1.0 + xp.erf(x * float(1 / np.sqrt(2.0))))
    pdf = xp.exp(-0.5 * x * x) * float(1 / np.sqrt(2 * np.pi))
    return g * (cdf + x * pdf)


ERF = _unary("erf", _erf, lambda xp, g, out, x: g * float(2 / np.sqrt(np.pi)) * xp.exp(-x * x), "ErfBackward0",
             saves=('x',), doc="the error function erf(x)",
             formula='grad * 2 / sqrt(pi) * exp(-x^2)')
ATAN2 = defop("atan2", np.arctan2,
              (lambda xp, g, out, x, y: g * y / (x * x + y * y),
               lambda xp, g, out, x, y: -g * x / (x * x + y * y)),
              saves=('x y', 'x y'), nodes="Atan2Backward0", domain=("nonzero", "nonzero"),
              samples=_samples(BINARY[:5]), doc="atan2(x, other): the angle of the point (other, x)",
              formula=('grad * y / (x^2 + y^2)', '-grad * x / (x^2 + y^2)'))
SILU = _unary("silu", lambda x: x * _sigmoid(x),
              lambda xp, g, out, x: g * xp.sigmoid(x) * (1.0 + x * (1.0 - xp.sigmoid(x))), "SiluBackward0",
              saves=('x',), doc="x * sigmoid(x) (torch.nn.functional.silu)",
              formula='grad * sigmoid(x) * (1 + x * (1 - sigmoid(x)))')
GELU = defop("gelu", _gelu, (_gelu_vjp,), saves=('x',), nodes="GeluBackward0",
             samples=_samples(UNARY) + [(((3, 2),), {"approximate": "tanh"})],
             doc="x * Phi(x), Phi the normal CDF (approximate='tanh' for the tanh formula)",
             formula=('grad * (0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))) + 0.5 * x * (1 - '
                      'tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))^2) * sqrt(2 / pi) * (1 + 3 * 0.044715 * x^2)) '
                      'if approximate == "tanh" else grad * (0.5 * (1 + erf(x / sqrt(2))) + x * exp(-x^2 / 2) / '
                      'sqrt(2 * pi))'))
LEAKY_RELU = defop("leaky_relu", lambda x, negative_slope=0.01: np.where(x > 0, x, x * negative_slope),
                   (lambda xp, g, out, x, negative_slope=0.01: xp.where(xp.raw(x) > 0, g, g * negative_slope),),
                   saves=('x',), nodes="LeakyReluBackward0", domain=("kinkfree",), kinks=lambda x, **a: [x],
                   samples=_samples(UNARY) + [(((3,),), {"negative_slope": 0.2})],
                   doc="x where x > 0, else negative_slope * x",
                   formula='where(x > 0, grad, grad * negative_slope), so grad * negative_slope at x = 0')
ELU = defop("elu", lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
            (lambda xp, g, out, x, alpha=1.0: xp.where(xp.raw(x) > 0, g, g * (out + alpha)),),
            saves=('x out',), nodes="EluBackward0", domain=("kinkfree",), kinks=lambda x, **a: [x],
            samples=_samples(UNARY) + [(((3,),), {"alpha": 0.5})],
            doc="x where x > 0, else alpha * (exp(x) - 1)",
            formula='where(x > 0, grad, grad * (result + alpha)), so grad * (result + alpha) at x = 0')
HARDTANH = defop("hardtanh", lambda x, min_val=-1.0, max_val=1.0: np.clip(x, min_val, max_val),
                 (lambda xp, g, out, x, min_val=-1.0, max_val=1.0:
                  xp.where((xp.raw(x) > min_val) & (xp.raw(x) < max_val), g, g * 0.0),),
                 saves=('x',), nodes="HardtanhBackward0", domain=("kinkfree",),
                 kinks=lambda x, min_val=-1.0, max_val=1.0, **a: [x - min_val, x - max_val],
                 samples=_samples(UNARY) + [(((4,),), {"min_val": 0.0, "max_val": 6.0})],
                 doc="x limited to [min_val, max_val]; no gradient at or beyond them",
                 formula='where((x > min_val) & (x < max_val), grad, 0), so 0 at the bounds')

erf = _u(ERF)
_LN2, _LN10 = float(np.log(2.0)), float(np.log(10.0))
LOG2 = _unary("log2", np.log2, lambda xp, g, out, x: g / (x * _LN2), "Log2Backward0", ("positive",), saves=('x',),
              formula='grad / (x * log(2))')
LOG10 = _unary("log10", np.log10, lambda xp, g, out, x: g / (x * _LN10), "Log10Backward0", ("positive",),
               saves=('x',),
               formula='grad / (x * log(10))')
EXP2 = _unary("exp2", np.exp2, lambda xp, g, out, x: g * out * _LN2, "Exp2Backward0", saves=('out',),
              formula='grad * result * log(2)')
# round, ceil and trunc have a zero derivative wherever they have one (PyTorch returns zeros)
ROUND = _unary("round", np.round, lambda xp, g, out, x: g * 0.0, "RoundBackward0", ("kinkfree",),
               kinks=lambda x, **a: [x - np.floor(x) - 0.5], saves=('',),
               formula="0, a step's slope wherever it has one")
CEIL = _unary("ceil", np.ceil, lambda xp, g, out, x: g * 0.0, "CeilBackward0", ("kinkfree",),
              kinks=lambda x, **a: [x - np.round(x)], saves=('',),
              formula="0, a step's slope wherever it has one")
TRUNC = _unary("trunc", np.trunc, lambda xp, g, out, x: g * 0.0, "TruncBackward0", ("kinkfree",),
               kinks=lambda x, **a: [x - np.round(x)], saves=('',),
               formula="0, a step's slope wherever it has one")
log2, log10, exp2 = _u(LOG2), _u(LOG10), _u(EXP2)
round, ceil, trunc = _u(ROUND), _u(CEIL), _u(TRUNC, "fix")  # noqa: A001
silu = _u(SILU)


@export("atan2", "arctan2", op=ATAN2)
def atan2(x, other):
    return apply(ATAN2, (_t(x), _t(other)))


@export("gelu", op=GELU, keywords=("approximate",))
def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise _errors.EngineRuntimeError(f"approximate argument must be either none or tanh.")
    return apply1(GELU, x, {} if approximate == "none" else {"approximate": approximate})


@export("leaky_relu", op=LEAKY_RELU, keywords=("negative_slope",))
def leaky_relu(x, negative_slope=0.01, inplace=False):
    return apply1(LEAKY_RELU, x, {} if negative_slope == 0.01 else {"negative_slope": float(negative_slope)})


@export("elu", op=ELU, keywords=("alpha",))
def elu(x, alpha=1.0, inplace=False):
    return apply1(ELU, x, {} if alpha == 1.0 else {"alpha": float(alpha)})


@export("hardtanh", op=HARDTANH, keywords=("min_val", "max_val"))
def hardtanh(x, min_val=-1.0, max_val=1.0, inplace=False):
    return apply1(HARDTANH, x, {} if (min_val, max_val) == (-1.0, 1.0) else
                  {"min_val": float(min_val), "max_val": float(max_val)})


@export("relu6")
def relu6(x, inplace=False):
    """min(max(x, 0), 6) (PyTorch records HardtanhBackward0)."""
    return hardtanh(x, 0.0, 6.0)


# -- tests of values (no gradient): bool tensors, or a Python bool for equal/allclose ----------
def _pred(name, fn, doc):
    def pred(x):
        return Tensor._make(fn(_t(x)._data))
    pred.__name__ = pred.__qualname__ = name
    pred.__doc__ = doc
    return export(name)(pred)


isnan = _pred("isnan", np.isnan, "x != x, elementwise (a bool tensor)")
isinf = _pred("isinf", np.isinf, "x is +-inf, elementwise (a bool tensor)")
isfinite = _pred("isfinite", np.isfinite, "x is neither inf nor nan (a bool tensor)")


@export("isclose", keywords=("rtol", "atol", "equal_nan"))
def isclose(x, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|x - other| <= atol + rtol * |other|, elementwise (a bool tensor)."""
    return Tensor._make(np.isclose(_t(x)._data, _t(other)._data, rtol=rtol, atol=atol, equal_nan=equal_nan))


@export("allclose", keywords=("rtol", "atol", "equal_nan"))
def allclose(x, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Whether isclose holds everywhere (a Python bool)."""
    return bool(np.allclose(_t(x)._data, _t(other)._data, rtol=rtol, atol=atol, equal_nan=equal_nan))


@export("equal")
def equal(x, other):
    """Same shape and the same values (a Python bool)."""
    a, b = _t(x)._data, _t(other)._data
    return a.shape == b.shape and bool(np.array_equal(a, b))


HARDTANH.func = lambda x, min_val=-1.0, max_val=1.0: hardtanh(x, min_val, max_val)
