"""The op registry and the per-op path that records graph nodes.

An op is one `defop(...)` entry: its registry name (also the Tensor method, the expression
function and the test id), PyTorch's node name(s), a numpy forward, one vector-Jacobian
product per input (`None` where there is none), and the domain its tests draw inputs from.

Rule vocabulary (shared by every entry):
    xp   the array namespace (engine/_xp.py): numpy arrays at first order, Tensors under
         create_graph=True, so one set of rules serves both; it comes first like the `xp` of
         the array-API convention, and everything after it reads as the DESIGN's vocabulary
    g    the incoming gradient (possibly with leading batch dims: count dims from the end)
    out  the op's result
    x, y the op's inputs, in order; further keyword arguments are the op's attributes
A rule may return its gradient in the broadcast shape of `out` or with size-1 dims: the
backward loop fits it to the input's shape in one place (graph._fit).

What each rule needs is declared in its entry, as derivatives.yaml states `self`, `other` and
`result`: `saves=("y", "x")` for mul says the rule for x reads y and the rule for y reads x (names
are the rule's parameter names, `out` the result). A node saves the union over the inputs that
need a gradient, so `x * w` with only x requiring grad saves w alone, and an in-place change of
a value no rule reads never fails a backward.

Each entry also states its rules as the lesson writes them, `formula=(...)`: one string per
input (None where the rule is None; a variadic op such as cat has one string, used for every
input), the vector-Jacobian product in the rule's own parameter names, with `grad` for the
incoming gradient and `result` for the op's output (`autograd explain` shows it, the names
replaced by what each input is). A formula is an expression, an expression followed by a
comment in words after a top-level ", ", or words alone where math is not the clearest
statement (reshape, indexing, scatter, ...). Expressions use:
    * / + -   elementwise, broadcasting          @       matrix product
    ^         power                              a^T     a with its last two dims swapped
    == < <= > >= & |   elementwise tests, as 1/0 (a test against None holds: no bound)
    a if test else b   a choice made by an attribute (`reduction == "mean"`), never by values
    pi, inf; functions exp log sqrt sin cos sinh cosh tanh sigmoid erf softplus sign abs,
    where(test, a, b), clamp(a, lo), numel(a), outer(a, b), inv(a), solve(a, b) (X with a X = b),
    sum(a, dim) and mean(a, dim) (over dim, or every dim when none is given; the reduced dims kept
    with size 1), unsqueeze(a, dim), squeeze(a, dim), reshape(a, shape), transpose(a, dim0, dim1),
    permute(a, dims), argsort(dims), flip(a, dims), cumsum(a, dim), roll(a, shifts, dims),
    tril(a, k), triu(a, k), diagonal(a, k), select(a, dim, i), slice(a, dim, start, stop),
    a[key] (indexing with an attribute key).
In the formula of a reduction (its rule takes dims and keepdim), `grad` and `result` carry the
reduced dims with size 1 (what `_unreduce` gives the rule). Every formula is read against its
rule at the registry's samples (tests/test_formulas.py).
"""
import traceback

import numpy as np

from .. import errors
from ..graph import FREED, NODE_ATTRS, Node, producer as _producer, seed_attributes
from ..grad_mode import OFF_DEFAULT, STATE, no_grad as _no_grad
from .._xp import NUMPY as _NUMPY
from ..tensor import Tensor, vc_of

_ENGINE_DIR = __file__.rsplit("/ops/", 1)[0] + "/"
_NN_DIR = _ENGINE_DIR + "nn/"


def forward_trace():
    """Anomaly mode's "traceback of forward call": the stack up to the user's line that made the
    node, as PyTorch's ends there -- the engine's own op machinery (ops, tensor, autograd
    function) cut from the end, wherever the node was made (x * y, x.mul(y), engine.exp(x),
    chunk, a Function's apply); engine/nn's layers stay, as torch/nn's Python frames do."""
    stack = traceback.extract_stack()[:-1]
    k = len(stack)
    while k and stack[k - 1].filename.startswith(_ENGINE_DIR) and not stack[k - 1].filename.startswith(_NN_DIR):
        k -= 1
    return traceback.format_list(stack[:k])


REGISTRY = {}
_EMPTY = {}
_NONE1 = (None,)
_NONE2 = (None, None)
_NO_EDGE = (None, 0)
_new_tensor = _new_node = object.__new__     # instances without running __init__


class OpDef:
    """One registry entry. See the module docstring for the meaning of each field."""

    def __init__(self, name, forward, vjps, nodes, domain, samples, kinks, doc,
                 differentiable, variadic, returns, fresh=False, saves=None, operators=None, multi=False,
                 formula=None):
        self.name = name
        self.forward = forward
        self.vjps = vjps
        self.node_names = nodes
        self.domain = domain
        self.samples = samples
        self.kinks = kinks
        self.doc = doc
        self.differentiable = differentiable
        self.variadic = variadic
        self.returns = returns
        self.fresh = fresh
        self.saves = _check_saves(name, vjps, variadic, saves) if differentiable and vjps is not None else ()
        self.formula = _check_formula(name, vjps, variadic, formula)
        # how the registry's tests call this entry with a sample's tensors and attributes: the
        # public function exported with op=this entry, unless the module sets an adapter
        self.func = None
        self.operators = operators or {}     # Tensor dunder -> how it calls the public function
        n_in = 0 if variadic or vjps is None else len(vjps)
        base = MultiOpNode if multi else {1: UnaryOpNode, 2: BinaryOpNode}.get(n_in, OpNode)
        ns = {"op": self, "__module__": "engine.ops", "_fresh": fresh}
        self.multi = multi
        if base is UnaryOpNode:
            ns["_vjp"] = _unary_vjp(_rule_or_raise(self, 0))
        elif base is BinaryOpNode:
            ns["_vjp"] = _binary_vjp(_rule_or_raise(self, 0), _rule_or_raise(self, 1))
        self.node_cls = tuple(type(n, (base,), ns) for n in nodes)
        for cls in self.node_cls:
            seed_attributes(cls, NODE_ATTRS + (("_meta", "_n_outputs", "_ovcs", "_nrs") if multi else ()))
        self._keep = {}
        n = 0 if variadic or vjps is None else len(vjps)
        # keep_table[mask]: (keep-input flags, keep-out flag) when the inputs in `mask` need a
        # gradient, from the declared saves (variadic ops save no input: their rules get none)
        self.keep_table = _KeepTable(self, n) if differentiable and n else None

    def keep(self, mask, nin):
        """(keep-input flags, keep-out flag) for a pattern of inputs needing grad."""
        k = self._keep.get((mask, nin))
        if k is None:
            ins = [False] * nin
            keep_out = False
            rules = (self.vjps,) * nin if self.variadic else self.vjps
            saves = self.saves * nin if self.variadic else self.saves
            for i in range(nin):
                if mask >> i & 1:
                    params = _rule_params(rules[i])[3:]
                    for name in saves[i]:
                        if name == "out":
                            keep_out = True
                        else:
                            ins[params.index(name)] = True
            k = self._keep[(mask, nin)] = (tuple(ins), keep_out)
        return k

    def __repr__(self):
        return f"<op {self.name}: {', '.join(self.node_names)}>"


class _KeepTable(dict):
    """mask -> OpDef.keep(mask, n), filled in on first lookup (the per-op path reads it)."""

    def __init__(self, op, n):
        super().__init__()
        self.op, self.n = op, n

    def __missing__(self, mask):
        k = self[mask] = self.op.keep(mask, self.n)
        return k


def _rule_params(rule):
    """A rule's parameter names: (xp, g, out, inputs..., attributes...)."""
    code = rule.__code__
    return code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]


def _check_saves(name, vjps, variadic, saves):
    """The declared saves as one tuple of names per rule, each name `out` or an input."""
    if saves is None:
        raise ValueError(f"op {name!r}: declare what each rule reads with saves=(...), one string "
                         "of names per input ('' for none; 'out' is the result)")
    rules = (vjps,) if variadic else vjps
    if len(saves) != len(rules):
        raise ValueError(f"op {name!r}: saves has {len(saves)} entries for {len(rules)} rules")
    out = []
    for rule, names in zip(rules, saves):
        names = tuple(names.split())
        if rule is None:
            out.append(())
            continue
        allowed = {"out"} if variadic else set(_rule_params(rule)[3:3 + len(rules)]) | {"out"}
        if not set(names) <= allowed:
            raise ValueError(f"op {name!r}: saves names {sorted(set(names) - allowed)}, not an input "
                             f"of its rule or 'out'")
        out.append(names)
    return tuple(out)


def _check_formula(name, vjps, variadic, formula):
    """The formula as one string (variadic) or a tuple aligned with the rules (None where the
    rule is None); None when the entry gives none (tests/test_formulas.py fails on that)."""
    if formula is None:
        return None
    if variadic:
        if not isinstance(formula, str):
            raise ValueError(f"op {name!r}: a variadic op's formula is one string, used for every input")
        return formula
    if isinstance(formula, str):
        formula = (formula,)
    formula = tuple(formula)
    if vjps is None or len(formula) != len(vjps):
        raise ValueError(f"op {name!r}: formula has {len(formula)} entries for "
                         f"{0 if vjps is None else len(vjps)} rules")
    for k, (rule, text) in enumerate(zip(vjps, formula)):
        if (rule is None) != (text is None):
            raise ValueError(f"op {name!r}: formula {k} is {'None' if text is None else 'given'} where the rule "
                             f"is {'None' if rule is None else 'given'}")
    return formula


def defop(name, forward, vjps, *, nodes, domain=("real",), samples=(), kinks=None,
          doc="", differentiable=True, variadic=False, returns=None, fresh=False,
          saves=None, operators=None, multi=False, formula=None):
    """Register an op. `nodes` is PyTorch's node name, or a tuple of names for variants.

    multi: the forward returns a tuple of arrays, one node with an output per array (slogdet,
    qr, svd; recorded by `apply_multi`); the rule's `g` is the list of the outputs' gradients
    (None where an output got none) and `out` the tuple of outputs. One input.

    saves: what each rule reads, one string of names per input (see the module docstring).
    formula: each rule as the lesson writes it, one string per input (see the module docstring).
    fresh: every rule returns an array of its own (never the incoming gradient, a saved value,
    the output or a view of one), so the backward loop may add into it instead of allocating
    a sum; tests/test_backward_paths.py checks each op that says so.
    kinks: f(*inputs, **attrs) -> signed distances to the points where the op is not
    differentiable (the gradient checker warns when an input lies within eps of one).
    operators: {"__add__": kind} for the Tensor operators that call the public function:
    "fast" (the one-call binary path), "call" (fn(self, other)), "reflected" (fn(other, self)),
    "unary" (fn(self)).

    Its public function (engine.NAME, the Tensor method, the expression language's name) is
    the function exported with `export(..., op=entry)`; an entry exported by no function is
    reached through another one or an operator (rsub is `2 - x`).
    """
    if isinstance(nodes, str):
        nodes = (nodes,)
    if name in REGISTRY:
        raise ValueError(f"op {name!r} registered twice")
    op = OpDef(name, forward, vjps, nodes, domain, samples, kinks, doc, differentiable,
               variadic, returns, fresh, saves, operators, multi, formula)
    REGISTRY[name] = op
    return op


# -- the public surface: every engine function and Tensor method, declared where it is defined --
FUNCTIONS = {}     # name -> Export: engine.NAME and the expression language's functions
METHODS = {}       # name -> Export: Tensor.NAME


class Export:
    """One public name: `fn`, the registry entry it runs (None for a composite of other ops),
    the keyword arguments an expression may give it, and whether the Tensor method takes the
    unary fast path (no argument checks: self is a Tensor)."""

    __slots__ = ("name", "fn", "op", "keywords", "fast_unary")

    def __init__(self, name, fn, op, keywords, fast_unary):
        self.name, self.fn, self.op, self.keywords, self.fast_unary = name, fn, op, keywords, fast_unary


def export(*names, op=None, function=True, method=True, keywords=(), fast_unary=False):
    """Decorator: `fn` is the engine function `names[0]` (the others are aliases) and, with
    method=True, the Tensor method of the same names. op: the registry entry it runs (its
    `func` defaults to fn). keywords: the keyword arguments an expression may pass (each must
    be a parameter of fn)."""
    def deco(fn):
        import inspect
        params = inspect.signature(fn).parameters
        bad = [k for k in keywords if k not in params]
        if bad:
            raise ValueError(f"export {names[0]!r}: keywords {bad} are not parameters of {fn.__name__}")
        for n in names:
            for table, wanted in ((FUNCTIONS, function), (METHODS, method)):
                if wanted:
                    if n in table:
                        raise ValueError(f"{n!r} exported twice")
                    table[n] = Export(n, fn, op, tuple(keywords), fast_unary)
        if op is not None and op.func is None:
            op.func = fn
        return fn
    return deco


class OpNode(Node):
    """A node made by a registered op. Per-op subclasses carry `op` and PyTorch's name.

    `_vjp(g, release)` is first order on numpy arrays (what the backward loop's common path
    calls); `apply(grads, xp, create_graph)` is the Node protocol and serves create_graph too.
    """

    op = None
    _out = None
    _saved = ()
    _attrs = _EMPTY
    _ver = None      # versions of the saved tensors, aligned with _saved (None: not a tensor)
    _ovc = None      # the output's version counter when the output is saved (expected at 0)
    _plain = True    # one output, no hooks: the backward loop may call _vjp directly
    _packed = None   # saved values packed by saved-tensor hooks: {slot: (packed, unpack)}

    def __getattr__(self, name):
        # only for names not found otherwise: grad_fn._saved_self, _raw_saved_self, ...
        if name.startswith("_saved_"):
            return saved_value(self, name[7:])
        if name.startswith("_raw_saved_"):
            return raw_saved(self, name[11:])
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def apply(self, grads, xp, create_graph, release=False):
        if self._packed is not None and self._saved is not FREED:
            _unpack_into(self)
        if not create_graph:
            g = grads[0]
            return None if g is None else self._vjp(g, release)
        res = self._apply(grads, xp, create_graph)
        if release:
            self._release()
        return res

    def _vjp(self, g, release):
        res = self._apply([g], _NUMPY, False)
        if release:
            self._release()
        return res

    def _apply(self, grads, xp, create_graph):
        saved = self._saved
        if saved is FREED:
            raise errors.EngineRuntimeError(errors.SECOND_BACKWARD)
        g = grads[0]
        if g is None:
            return None
        if self._ver is not None or self._ovc is not None:
            _check_versions(self)
        op = self.op
        attrs = self._attrs
        nexts = self._next
        if create_graph:
            ins = saved
            out = Tensor._make(self._out, self, True) if self._out is not None else None
        else:
            ins = [s._data if isinstance(s, Tensor) else s for s in saved]
            out = self._out
        if op.variadic:
            return [op.vjps(xp, g, i, **attrs) if nexts[i] is not None else None
                    for i in range(len(nexts))]
        res = []
        for i, rule in enumerate(op.vjps):
            if nexts[i] is None:
                res.append(None)
            elif rule is None:
                raise _missing(op, i)
            elif attrs:
                res.append(rule(xp, g, out, *ins, **attrs))
            else:
                res.append(rule(xp, g, out, *ins))
        return res

    def _release(self):
        # only a node that saved a value (a tensor, or a number PyTorch would wrap as one)
        # makes a second backward fail; attributes (pow's exponent, dims) are never freed
        if self._ver is not None or self._ovc is not None:
            self._saved = FREED
            self._out = None

    def _frees_saved(self):
        return self._ver is not None or self._ovc is not None

    @property
    def _saved_values(self):
        """What this node saved for backward, by name (for DOT's --show-saved)."""
        if self._saved is FREED:
            return None
        d = {}
        names = _SAVED_NAMES.get(type(self).__name__, ("self", "other"))
        for i, s in enumerate(self._saved or ()):
            if isinstance(s, Tensor):
                d[names[i] if i < len(names) else f"input{i}"] = s._data
        if self._out is not None:
            d["result"] = self._out
        return d


# what PyTorch calls each input a node saved (its _saved_<name>), where not ("self", "other")
_SAVED_NAMES = {"AddmmBackward0": ("self", "mat1", "mat2"), "MmBackward0": ("self", "mat2"),
                "BmmBackward0": ("self", "mat2"), "MvBackward0": ("self", "vec"), "DotBackward0": ("self", "tensor"),
                "PowBackward1": ("self", "exponent"), "MseLossBackward0": ("self", "target"),
                "BinaryCrossEntropyBackward0": ("self", "target", "weight"),
                "NllLossBackward0": ("self", "target", "weight")}


# -- what a node saved, as PyTorch shows it: grad_fn._saved_self, _saved_other, _saved_result,
# _saved_<attribute>; and _raw_saved_<name>.register_hooks(pack, unpack) -------------------------
_INPUT_NAMES = {"self": 0, "input": 0, "other": 1, "mat2": 1, "vec": 1, "tensor": 1, "exponent": 1, "target": 1}
_BY_OP = {"addmm": {"self": 0, "input": 0, "mat1": 1, "mat2": 2}}


def _ever_saved(op):
    """The positions of the inputs (and "result") some rule of `op` reads."""
    names = {n for rule in op.saves for n in rule}
    rule = next((r for r in ((op.vjps,) if op.variadic else op.vjps) if r is not None), None)
    params = _rule_params(rule)[3:] if rule is not None and not op.variadic else ()
    return {i for i, p in enumerate(params) if p in names} | ({"result"} if "out" in names else set())


def _slot(node, name):
    """Which saved value `name` is: an input position, "result", or an attribute name."""
    saved = _ever_saved(node.op)
    if name == "result":
        return "result" if "result" in saved else None
    table = _BY_OP.get(node.op.name, _INPUT_NAMES)
    if name in table and table[name] < len(node._next) and table[name] in saved:
        return table[name]
    if name in node._attrs:
        return ("attr", name)
    return None


def saved_value(node, name):
    """grad_fn._saved_<name>: the saved input (the same Tensor), the output (a new Tensor with
    this node as grad_fn), or an attribute; raises as PyTorch does once backward freed it."""
    slot = _slot(node, name)
    if slot is None or (slot == "result" and node._out is None and node._packed is None and
                        node._saved is not FREED):
        raise AttributeError(f"'{type(node).__name__}' object has no attribute '_saved_{name}'")
    if isinstance(slot, tuple):
        return node._attrs[slot[1]]
    if node._saved is FREED:
        raise errors.EngineRuntimeError(errors.SECOND_BACKWARD)
    if node._packed is not None and slot in node._packed:
        packed, unpack = node._packed[slot]
        return unpack(packed)
    if slot == "result":
        return Tensor._make(node._out, node, True)
    return node._saved[slot]


class SavedTensor:
    """grad_fn._raw_saved_<name>: one saved value, whose storage hooks can be set."""

    def __init__(self, node, slot):
        self._node, self._slot = node, slot

    def register_hooks(self, pack_hook, unpack_hook):
        node = self._node
        if node._packed is not None and self._slot in node._packed:
            raise errors.EngineRuntimeError("SavedTensor hooks have already been set")
        if node._saved is FREED:
            raise errors.EngineRuntimeError(errors.SECOND_BACKWARD)
        _pack_slot(node, self._slot, pack_hook, unpack_hook)


def raw_saved(node, name):
    slot = _slot(node, name)
    if slot is None or isinstance(slot, tuple):
        raise AttributeError(f"'{type(node).__name__}' object has no attribute '_raw_saved_{name}'")
    return SavedTensor(node, slot)


def _pack_slot(node, slot, pack, unpack):
    """Hand one saved value to `pack` now and keep what it returns; backward will use unpack(it)."""
    if slot == "result":
        if node._out is None:
            return
        value = Tensor._make(node._out, node, True)
        node._out = None
    else:
        value = node._saved[slot]
        if not isinstance(value, Tensor):
            return
        node._saved = node._saved[:slot] + (None,) + node._saved[slot + 1:]
    if node._packed is None:
        node._packed = {}
    with _no_grad():                    # PyTorch runs pack hooks with grad mode off
        packed = pack(value)
    node._packed[slot] = (packed, unpack)
    node._plain = False                 # the loop runs it through apply, which unpacks


def _save_order(op):
    """The slots `op` saves in the order its rules name them (mul: other, then self), which is
    the order PyTorch's generated nodes save, pack and unpack them."""
    order = getattr(op, "_save_order", None)
    if order is None:
        rule = next((r for r in ((op.vjps,) if op.variadic else op.vjps) if r is not None), None)
        params = list(_rule_params(rule)[3:]) if rule is not None and not op.variadic else []
        order = []
        for names in op.saves:
            for n in names:
                slot = "result" if n == "out" else (params.index(n) if n in params else None)
                if slot is not None and slot not in order:
                    order.append(slot)
        op._save_order = order
    return order


def pack_saved(node, pack, unpack):
    """Under saved_tensors_hooks: pack every value `node` saved (PyTorch calls pack at save time)."""
    for slot in _save_order(node.op):
        if slot == "result" or isinstance((node._saved or ())[slot] if slot < len(node._saved or ()) else None,
                                          Tensor):
            _pack_slot(node, slot, pack, unpack)


OpNode._pack_saved = pack_saved    # the Node method (observed() calls it)


def _unpack_into(node):
    """Before a backward uses them: the saved values from unpack(packed), each time (PyTorch)."""
    saved = list(node._saved)
    ver = list(node._ver) if node._ver is not None else None
    for slot, (packed, unpack) in node._packed.items():
        v = unpack(packed)
        if not isinstance(v, Tensor):
            raise TypeError(f"Output of saved tensor unpack_hook expected to be a Tensor but got result of type "
                            f"{type(v).__name__}")
        if slot == "result":
            node._out = v._data
            if node._ovc is not None:
                node._ovc = [0]
        else:
            saved[slot] = v
            if ver is not None and ver[slot] is not None:
                ver[slot] = vc_of(v)[0]
    node._saved = tuple(saved)
    if ver is not None:
        node._ver = tuple(ver)


def _check_versions(node):
    if node._ver is not None:
        for s, v in zip(node._saved, node._ver):
            if v is not None and s._vc[0] != v:
                raise errors.EngineRuntimeError(_modified_message(s._vc, v, s, node))
    if node._ovc is not None and node._ovc[0] != 0:
        raise errors.EngineRuntimeError(_modified_message(node._ovc, 0, None, node))


def _missing(op, i):
    return errors.MissingDerivativeError(f"the derivative for '{op.name}' is not implemented for input {i}")


def _rule_or_raise(op, i):
    """The op's rule for input i, or one that raises the missing-derivative error when called."""
    rule = op.vjps[i]
    if rule is not None:
        return rule

    def missing(*args, **kwargs):
        raise _missing(op, i)
    return missing


def _unary_vjp(rule):
    """UnaryOpNode._vjp for one op, its rule bound in the closure: no loops, no packing, no
    attribute lookup for the rule. A saved input is a Tensor exactly when its version entry
    is not None."""
    def _vjp(self, g, release):
        saved = self._saved
        if saved is FREED:
            raise errors.EngineRuntimeError(errors.SECOND_BACKWARD)
        x = saved[0]
        ver = self._ver
        if ver is not None:
            if x._vc[0] != ver[0]:
                _check_versions(self)                # raises with PyTorch's message
            x = x._data
        ovc = self._ovc
        if ovc is not None and ovc[0]:
            _check_versions(self)
        attrs = self._attrs
        res = (rule(_NUMPY, g, self._out, x, **attrs) if attrs else rule(_NUMPY, g, self._out, x),)
        if release and (ver is not None or ovc is not None):     # OpNode._release, inline
            self._saved = FREED
            self._out = None
        return res
    return _vjp


def _binary_vjp(rule0, rule1):
    """BinaryOpNode._vjp for one op (see _unary_vjp)."""
    def _vjp(self, g, release):
        saved = self._saved
        if saved is FREED:
            raise errors.EngineRuntimeError(errors.SECOND_BACKWARD)
        x, y = saved
        ver = self._ver
        if ver is not None:
            v0, v1 = ver
            if v0 is not None:
                if x._vc[0] != v0:
                    _check_versions(self)
                x = x._data
            if v1 is not None:
                if y._vc[0] != v1:
                    _check_versions(self)
                y = y._data
        ovc = self._ovc
        if ovc is not None and ovc[0]:
            _check_versions(self)
        n0, n1 = self._next
        out = self._out
        attrs = self._attrs
        if attrs:
            g0 = None if n0 is None else rule0(_NUMPY, g, out, x, y, **attrs)
            g1 = None if n1 is None else rule1(_NUMPY, g, out, x, y, **attrs)
        else:
            g0 = None if n0 is None else rule0(_NUMPY, g, out, x, y)
            g1 = None if n1 is None else rule1(_NUMPY, g, out, x, y)
        if release and (ver is not None or ovc is not None):     # OpNode._release, inline
            self._saved = FREED
            self._out = None
        return (g0, g1)
    return _vjp


class UnaryOpNode(OpNode):
    """Nodes of one-input ops; each op's class gets `_vjp` from `_unary_vjp`."""


class BinaryOpNode(OpNode):
    """Nodes of two-input ops; each op's class gets `_vjp` from `_binary_vjp`."""


class MultiOpNode(OpNode):
    """Nodes of ops with several outputs (defop's `multi`): `_meta` holds each output's shape
    and dtype (so `_shape` stays None and the loop buffers one gradient per output), `_ovcs` the
    outputs' version counters when the rule reads them."""

    _plain = False       # the loop calls apply with every output's gradient
    _ovcs = None

    def _pack_saved(self, pack, unpack):
        """Its input, when saved, and each output, when saved (the rule reads them)."""
        self._packed = {}
        with _no_grad():
            if self._saved and self._saved[0] is not None:
                self._packed["input"] = (pack(self._saved[0]), unpack)
            for nr, o in enumerate(self._out or ()):
                self._packed[nr] = (pack(Tensor._make(o, self, True)), unpack)

    def apply(self, grads, xp, create_graph, release=False):
        res = self._apply(grads, xp, create_graph)
        if release:
            self._release()
        return res

    def _apply(self, grads, xp, create_graph):
        if self._packed is not None and self._saved is not FREED:
            self._unpack_multi()
        saved = self._saved
        if saved is FREED:
            raise errors.EngineRuntimeError(errors.SECOND_BACKWARD)
        if all(g is None for g in grads):
            return None
        if self._ver is not None:
            _check_versions(self)
        for nr, vc in enumerate(self._ovcs or ()):
            if vc[0] != 0:
                shape, dtype = self._meta[nr]
                raise errors.EngineRuntimeError(errors.modified_message(shape, dtype, self, nr, vc[0], 0))
        x = saved[0]
        if create_graph:
            outs = None
            if self._out is not None:
                outs = []
                for nr, o in enumerate(self._out):
                    t = Tensor._make(o, self, True)
                    t._output_nr = nr
                    outs.append(t)
                outs = tuple(outs)
        else:
            x = x._data if isinstance(x, Tensor) else x
            outs = self._out
        return [self.op.vjps[0](xp, list(grads), outs, x, **self._attrs)]

    def _unpack_multi(self):
        """Under saved_tensors_hooks: the saved input and outputs from unpack(packed), each time."""
        for slot, (packed, unpack) in self._packed.items():
            v = unpack(packed)
            if not isinstance(v, Tensor):
                raise TypeError(f"Output of saved tensor unpack_hook expected to be a Tensor but got result of type "
                                f"{type(v).__name__}")
            if slot == "input":
                self._saved = (v,)
                if self._ver is not None:
                    self._ver = (vc_of(v)[0],)
            else:
                out = list(self._out)
                out[slot] = v._data
                self._out = tuple(out)
                if self._ovcs is not None:
                    self._ovcs = [[0] for _ in self._ovcs]

    def _release(self):
        if self._ver is not None or self._ovcs is not None:
            self._saved = FREED
            self._out = None

    def _frees_saved(self):
        return self._ver is not None or self._ovcs is not None

    @property
    def _saved_values(self):
        if self._saved is FREED:
            return None
        d = {}
        if self._saved and isinstance(self._saved[0], Tensor):
            d["self"] = self._saved[0]._data
        for nr, o in enumerate(self._out or ()):
            d[f"result{nr}"] = o
        return d


def apply_multi(op, x, attrs=_EMPTY, v=0):
    """Run a `multi` op on Tensor x: a tuple of Tensors, outputs 0, 1, ... of one node when x
    needs a gradient."""
    outs = tuple(np.asarray(o) for o in op.forward(x._data, **attrs))
    if not x._rg or not STATE.enabled or x._data.dtype.kind not in "fc":
        ts = tuple(Tensor._make(o) for o in outs)
        if STATE.inference:
            for t in ts:
                t._inference = True
        return ts
    node = op.node_cls[v]()
    node._next = (_producer(x),)
    if x._output_nr:
        node._nrs = (x._output_nr,)
    keep_in, keep_out = op.keep_table[1]
    if keep_in[0]:
        node._saved = (x,)
        node._ver = (vc_of(x)[0],)
    else:
        node._saved = _NONE1
    if attrs:
        node._attrs = attrs
    node._n_outputs = len(outs)
    node._meta = [(o.shape, o.dtype) for o in outs]
    node._dtype = outs[0].dtype
    ts = []
    for nr, o in enumerate(outs):
        t = Tensor._make(o, node, True)
        t._output_nr = nr
        ts.append(t)
    if keep_out:
        node._out = outs
        node._ovcs = [vc_of(t) for t in ts]
    if OFF_DEFAULT[0]:
        observed(node, (x._data,), attrs, outs)
    return tuple(ts)


def _modified_message(vc, v, who, node):
    """`who` is the saved input Tensor, or None for the node's own output."""
    if who is None:
        return errors.modified_message(node._shape, node._dtype, node, 0, vc[0], v)
    return errors.modified_message(who._data.shape, who._data.dtype, who.grad_fn, who._output_nr, vc[0], v)


def _broadcast_error(arrays):
    shapes = [np.shape(a) for a in arrays]
    nd = max(len(s) for s in shapes)
    padded = [(1,) * (nd - len(s)) + tuple(s) for s in shapes]
    for d in range(nd - 1, -1, -1):
        sizes = {p[d] for p in padded if p[d] != 1}
        if len(sizes) > 1:
            a, b = padded[0][d], padded[1][d]
            return errors.ShapeError(
                f"The size of tensor a ({a}) must match the size of tensor b ({b}) at non-singleton "
                f"dimension {d}")
    return None


def apply(op, args, attrs=_EMPTY, v=0):
    """Run `op` forward on `args` (Tensors or plain numbers) and record a node when needed."""
    vals = []
    rg = False
    for a in args:
        if isinstance(a, Tensor):
            vals.append(a._data)
            rg = rg or a._rg
        else:
            vals.append(a)
    try:
        out = op.forward(*vals, **attrs)
    except ValueError as e:
        raise _translate(e, vals) from None
    off = OFF_DEFAULT[0]
    if off and STATE.op_observers:
        _watch(op, vals, attrs)
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if not rg or (off and not STATE.enabled) or not op.differentiable or out.dtype.kind not in "fc":
        t = Tensor._make(out)
        if off and STATE.inference:
            t._inference = True
        return t
    return _record(op, v, args, attrs, out)


def _watch(op, vals, attrs):
    """An op ran (graph or not): the observers that watch every op see it (engine.observe)."""
    for o in STATE.op_observers:
        o.on_op(op, vals, attrs)


def observed(node, ins, attrs, outs):
    """The one place every site that makes a node -- the operators, apply1, apply's _record,
    apply_multi, structured.py's pieces, Function.apply -- hands it to what watches the forward.
    Called only while some thread is off its defaults (OFF_DEFAULT): anomaly mode's forward
    trace, saved_tensors_hooks' pack (at save time, as PyTorch does; each node kind packs what it
    saves, Node._pack_saved), then engine.observe's observers, innermost last."""
    if STATE.anomaly:
        node._trace = forward_trace()
    if STATE.saved_hooks:
        node._pack_saved(*STATE.saved_hooks[-1])
    for o in STATE.observers:
        o.on_node(node, ins, attrs, outs)


def _translate(e, vals):
    if "broadcast" in str(e):
        err = _broadcast_error(vals)
        if err is not None:
            return err
    return e


def _first_version(t):
    t._vc = [0]
    return 0


def binary_operator(op, slow):
    """`Tensor.__mul__` and friends for a two-input op with no attributes: one call per use.

    Tensor and Python-number operands take the fast path below; arrays, numpy scalars, bools
    and Tensor subclasses go to `slow(x, y)`; anything else gets NotImplemented. Recording
    allocates as few GC-tracked objects as it can (the collector re-traverses every live one
    as a graph grows): the node, one tuple of its inputs' nodes, the saved pair and versions,
    and the output Tensor.
    """
    forward = op.forward
    node_cls = op.node_cls[0]
    keep_table = op.keep_table

    def operator(x, y):
        ty = type(y)
        if ty is Tensor:
            yt = True
            yd = y._data
        elif ty is float or ty is int:
            yt = False
            yd = y
        elif isinstance(y, (Tensor, np.ndarray, np.generic, bool)):
            return slow(x, y)
        else:
            return NotImplemented
        try:
            out = forward(x._data, yd)
        except ValueError as e:
            raise _translate(e, [x._data, yd]) from None
        off = OFF_DEFAULT[0]             # any thread in no_grad, anomaly mode, observed, ...?
        if off and STATE.op_observers:
            _watch(op, (x._data, yd), _EMPTY)
        if type(out) is not np.ndarray:
            out = np.asarray(out)
        xr = x._rg
        yr = yt and y._rg
        t = _new_tensor(Tensor)
        t._data = out
        if not (xr or yr) or (off and not STATE.enabled) or out.dtype.kind not in "fc":
            if off and STATE.inference:
                t._inference = True
            return t
        node = _new_node(node_cls)
        if xr:
            n0 = x.grad_fn
            if n0 is None:
                n0 = _producer(x)
            elif x._output_nr:
                node._nrs = (x._output_nr, y._output_nr if yr else 0)
        else:
            n0 = None
        if yr:
            n1 = y.grad_fn
            if n1 is None:
                n1 = _producer(y)
            elif y._output_nr:
                node._nrs = (x._output_nr if xr else 0, y._output_nr)
        else:
            n1 = None
        node._next = (n0, n1)
        (k0, k1), keep_out = keep_table[xr | (yr << 1)]
        if k0 or k1:
            node._saved = (x if k0 else None, y if k1 else None)
            # a saved number counts as saved too: PyTorch wraps it as a tensor and frees it,
            # so (x * 2).sum() fails a second backward, as (x + 2).sum() does not
            if k0 or yt:
                v0 = v1 = None
                if k0:
                    vc = x._vc
                    v0 = vc[0] if vc is not None else _first_version(x)
                if k1 and yt:
                    vc = y._vc
                    v1 = vc[0] if vc is not None else _first_version(y)
                node._ver = (v0, v1)
            else:
                node._ver = _NONE2           # a number only: nothing to version, no tuple made
        else:
            node._saved = _NONE2
        if keep_out:
            node._out = out
            node._ovc = t._vc = [0]
        node._shape = out.shape
        node._dtype = out.dtype
        t.grad_fn = node
        t._rg = True
        if off:
            observed(node, (x._data, yd), _EMPTY, out)
        return t
    operator.__name__ = op.name
    return operator


def apply1(op, x, attrs=_EMPTY, v=0):
    """The unary fast path of `apply`."""
    out = op.forward(x._data, **attrs) if attrs else op.forward(x._data)
    off = OFF_DEFAULT[0]
    if off and STATE.op_observers:
        _watch(op, (x._data,), attrs)
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    t = _new_tensor(Tensor)
    t._data = out
    if not x._rg or (off and not STATE.enabled) or not op.differentiable or out.dtype.kind not in "fc":
        if off and STATE.inference:
            t._inference = True
        return t
    node = _new_node(op.node_cls[v])
    node._next = (_producer(x),)
    if x._output_nr:
        node._nrs = (x._output_nr,)
    keep_in, keep_out = op.keep_table[1]
    if keep_in[0]:
        node._saved = (x,)
        node._ver = (vc_of(x)[0],)
    else:
        node._saved = _NONE1
    if keep_out:
        node._out = out
        node._ovc = t._vc = [0]
    if attrs:
        node._attrs = attrs
    node._shape = out.shape
    node._dtype = out.dtype
    t.grad_fn = node
    t._rg = True
    if off:
        observed(node, (x._data,), attrs, out)
    return t


def _record(op, v, args, attrs, out):
    node = op.node_cls[v]()
    nf = []
    mask = 0
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and a._rg:
            nf.append((_producer(a), a._output_nr))
            mask |= 1 << i
        else:
            nf.append(_NO_EDGE)
    node.next_functions = nf
    keep_in, keep_out = op.keep(mask, len(args))
    saved = []
    ver = []
    for a, k in zip(args, keep_in):
        saved.append(a if k else None)
        ver.append(vc_of(a)[0] if k and isinstance(a, Tensor) else None)
    node._saved = tuple(saved)
    if any(keep_in):                 # numbers included: see binary_operator
        node._ver = tuple(ver)
    if attrs:
        node._attrs = attrs
    node._shape = out.shape
    node._dtype = out.dtype
    t = Tensor._make(out, node, True)
    if keep_out:
        node._out = out
        node._ovc = vc_of(t)
    if OFF_DEFAULT[0]:
        observed(node, tuple(a._data if isinstance(a, Tensor) else a for a in args), attrs, out)
    return t


def public_functions():
    """Name -> engine function for every exported function: engine's namespace and the
    expression language's function list."""
    return {name: e.fn for name, e in FUNCTIONS.items()}


def expression_keywords(name):
    """The keyword arguments an expression may pass to function `name`."""
    e = FUNCTIONS.get(name)
    return e.keywords if e is not None else ()
