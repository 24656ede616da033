"""The op registry: every primitive defined once.

An `Op` holds, for one primitive:
  shape(in_shapes, attrs) -> out shape       raises ir.ShapeError for operands that don't fit
  ref(*arrays, **attrs) -> array             the NumPy reference implementation
  vjp(graph, node, g) -> [grad or None, ...]  the vector-Jacobian product, *built as IR nodes*
  cases                                       operand shapes/attrs/domains the tests iterate over
  formula(m, ins, attrs) -> str               elementwise ops: the op on scalar operands, ONE
                                              formula for every backend (see `Math`)

How an op runs on a backend is that backend's business: one entry per op in its lowering
table (`compiler/backend/cpu/lowering.py`, `compiler/backend/cuda/lowering.py`); a registry
op without one fails loudly there (`MissingLowering`), and a test checks every table.

Layers, activations built from primitives, losses and regularizers are compositions in
`compiler.builtins`; they never appear here. Tests iterate REGISTRY, so registering an op is
what gets it tested (gradient vs. central differences, kernel vs. reference).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Sequence

import numpy as np

from .shapes import B, ShapeError, fmt_shape, is_batched


def _special():
    """scipy.special, imported when a NumPy formula first needs it (sigmoid, logsumexp, erf:
    constant folding, the divergence replay), not with the compiler (0.15 s of a start-up)."""
    return importlib.import_module("scipy.special")


@dataclass
class Case:
    """Operands for the registry tests: full shapes (B becomes a small batch), and domains:
    "real", "pos" (positive reals), "away0" (reals away from 0, for kinks), "int:C" (labels)."""
    shapes: List[tuple]
    attrs: dict = field(default_factory=dict)
    domains: Optional[List[str]] = None

    def sample(self, k: int, rng: np.random.Generator, batch: int = 3) -> np.ndarray:
        """Draw operand k from its domain, with the batch axis B of size `batch`."""
        shape = tuple(batch if d == B else d for d in self.shapes[k])
        domain = (self.domains or [None] * len(self.shapes))[k] or "real"
        if domain.startswith("int:"):
            return rng.integers(0, int(domain[4:]), shape).astype(np.int64)
        x = np.asarray(rng.standard_normal(shape))
        if domain == "pos":
            return np.asarray(np.abs(x) + 0.5)
        if domain == "away0":            # away from kinks (abs at 0, max/min at ties)
            return np.asarray(np.where(x >= 0, x + 0.3, x - 0.3))
        return x

    def is_int(self, k: int) -> bool:
        return ((self.domains or [None] * len(self.shapes))[k] or "").startswith("int:")


class Math(Protocol):
    """What a scalar formula may ask of the backend that renders it (the way tinygrad's
    renderers share a C-style base): the name of a math function in the backend's namespace
    (`fn("exp")` is "np.exp" on the CPU, "math.exp" on CUDA), the name of a constant of the
    model's float type, and the value of an operand that is a constant."""

    def fn(self, name: str) -> str: ...

    def const(self, value: float) -> str: ...

    def const_value(self, i: int) -> Optional[float]: ...


@dataclass
class Op:
    name: str
    arity: Optional[int]
    shape: Callable
    ref: Callable
    vjp: Optional[Callable]
    cases: List[Case]
    dtype: str = "float"
    elementwise: bool = False
    doc: str = ""
    # formula(m: Math, ins, attrs) -> str: an elementwise op on scalar operands, in Python
    # syntax both backends compile (Numba CPU loops, numba.cuda kernels); None for the others
    formula: Optional[Callable] = None


REGISTRY: Dict[str, Op] = {}


def register(op: Op) -> Op:
    assert op.name not in REGISTRY, f"op '{op.name}' registered twice"
    REGISTRY[op.name] = op
    return op


# ======================================================================= shape rules
def broadcast_shape(shapes: Sequence[tuple]) -> tuple:
    """NumPy broadcasting where the batch axis B only meets B: batched operands must have the
    same rank (the compiler aligns per-sample shapes before emitting an op)."""
    batched = [s for s in shapes if is_batched(s)]
    if batched:
        r = len(batched[0])
        if any(len(s) != r for s in batched) or any(len(s) >= r for s in shapes if not is_batched(s)):
            raise ShapeError("shapes " + " and ".join(fmt_shape(s) for s in shapes) + " do not broadcast")
    n = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(1, n + 1):
        dims = {s[-i] for s in shapes if len(s) >= i} - {1}
        if len(dims) > 1:
            raise ShapeError("shapes " + " and ".join(fmt_shape(s) for s in shapes) + " do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(reversed(out))


def _same(shapes, attrs):
    return shapes[0]


def _reduced(shapes, attrs):
    axes = attrs["axes"]
    s = shapes[0]
    if any(a >= len(s) or a < 0 for a in axes):
        raise ShapeError(f"cannot reduce axes {axes} of a value of shape {fmt_shape(s)}")
    return tuple(d for i, d in enumerate(s) if i not in axes)


# ======================================================================= gradient helpers
def unbroadcast(G, g: int, shape: tuple) -> int:
    """Sum g (of a broadcast result's shape) down to `shape`: the adjoint of broadcasting."""
    gs = G.shape(g)
    if gs == tuple(shape):
        return g
    lead = len(gs) - len(shape)
    axes = list(range(lead)) + [lead + i for i, d in enumerate(shape) if d == 1 and gs[lead + i] != 1]
    r = G.add("reduce_sum", [g], {"axes": tuple(axes)}) if axes else g
    if G.shape(r) != tuple(shape):
        r = G.add("reshape", [r], {"shape": tuple(shape)})
    return r


def _binary_vjp(fa, fb):
    """vjp for a broadcasting binary op from the local derivatives fa/fb(G, a, b, out, g)."""
    def vjp(G, n, g):
        a, b = G.inputs(n)
        ga = fa(G, a, b, n, g) if fa else None
        gb = fb(G, a, b, n, g) if fb else None
        return [None if ga is None else unbroadcast(G, ga, G.shape(a)),
                None if gb is None else unbroadcast(G, gb, G.shape(b))]
    return vjp


def _unary_vjp(f):
    def vjp(G, n, g):
        (a,) = G.inputs(n)
        return [f(G, a, n, g)]
    return vjp


def _mul(G, *xs):
    r = xs[0]
    for x in xs[1:]:
        r = G.add("mul", [r, x])
    return r


# ======================================================================= elementwise binary
def _binop(name, sym, ref, fa, fb, doc, domains=None, formula=None):
    register(Op(
        name=name, arity=2, shape=lambda s, a: broadcast_shape(s), ref=ref,
        vjp=_binary_vjp(fa, fb),
        cases=[Case([(B, 3), (B, 3)], domains=domains), Case([(B, 4), (4,)], domains=domains),
               Case([(B, 2, 3), ()], domains=domains), Case([(B, 1), (B, 3)], domains=domains)],
        elementwise=True, doc=doc, formula=formula or (lambda m, ins, attrs: f"({ins[0]} {sym} {ins[1]})")))


_binop("add", "+", np.add, lambda G, a, b, n, g: g, lambda G, a, b, n, g: g, "a + b")
_binop("sub", "-", np.subtract, lambda G, a, b, n, g: g,
       lambda G, a, b, n, g: G.add("neg", [g]), "a - b")
_binop("mul", "*", np.multiply, lambda G, a, b, n, g: G.add("mul", [g, b]),
       lambda G, a, b, n, g: G.add("mul", [g, a]), "a * b")
_binop("div", "/", np.divide, lambda G, a, b, n, g: G.add("div", [g, b]),
       lambda G, a, b, n, g: G.add("neg", [G.add("div", [G.add("mul", [g, n]), b])]),
       "a / b", domains=["real", "pos"])


def _pow_formula(m, ins, attrs):
    k = m.const_value(1)
    if k == 2.0:
        return f"({ins[0]} * {ins[0]})"
    return f"({ins[0]} ** {ins[1]})"


def _pow_da(G, a, b, n, g):
    # d/da a**b = b * a**(b-1)
    return _mul(G, g, b, G.add("pow", [a, G.add("sub", [b, G.const(1.0)])]))


def _pow_db(G, a, b, n, g):
    if G.op(b) == "const":          # the usual case, x ** 2: no gradient to a constant
        return None
    return _mul(G, g, n, G.add("log", [a]))


_binop("pow", "**", np.power, _pow_da, _pow_db, "a ** b (a > 0 unless b is a constant)",
       domains=["pos", "real"], formula=_pow_formula)


def _select_vjp(first_wins):
    """maximum/minimum: the gradient flows to the operand that was selected; at a tie to b,
    so relu(x) = maximum(x, 0) has gradient 0 at x = 0 like PyTorch's."""
    def fa(G, a, b, n, g):
        mask = G.add("greater", [a, b] if first_wins else [b, a])
        return G.add("mul", [g, mask])

    def fb(G, a, b, n, g):
        mask = G.add("greater", [a, b] if first_wins else [b, a])
        return G.add("mul", [g, G.add("sub", [G.const(1.0), mask])])
    return fa, fb


# max/min of two scalars: Python's own, on every backend
register(Op("maximum", 2, lambda s, a: broadcast_shape(s), np.maximum, _binary_vjp(*_select_vjp(True)),
            [Case([(B, 3), (B, 3)], domains=["away0", "real"]), Case([(B, 4), ()], domains=["away0", "real"])],
            elementwise=True, doc="elementwise max",
            formula=lambda m, ins, attrs: f"max({ins[0]}, {ins[1]})"))
register(Op("minimum", 2, lambda s, a: broadcast_shape(s), np.minimum, _binary_vjp(*_select_vjp(False)),
            [Case([(B, 3), (B, 3)], domains=["away0", "real"]), Case([(B, 4), ()], domains=["away0", "real"])],
            elementwise=True, doc="elementwise min",
            formula=lambda m, ins, attrs: f"min({ins[0]}, {ins[1]})"))
register(Op("greater", 2, lambda s, a: broadcast_shape(s),
            lambda a, b: (a > b).astype(np.result_type(a, b, np.float32)), None,
            [Case([(B, 3), (B, 3)]), Case([(B, 3), ()])], elementwise=True,
            doc="1.0 where a > b else 0.0 (not differentiable: a mask)",
            formula=lambda m, ins, attrs: f"({m.const(1.0)} if {ins[0]} > {ins[1]} else {m.const(0.0)})"))


# ======================================================================= elementwise unary
def _unop(name, ref, formula, f, doc, domain="real"):
    register(Op(name, 1, _same, ref, _unary_vjp(f) if f else None,
                [Case([(B, 5)], domains=[domain]), Case([(3, 2)], domains=[domain]), Case([()], domains=[domain])],
                elementwise=True, doc=doc, formula=formula))


def _call(fname):
    """The formula of an op that is one math function of its operand."""
    return lambda m, i, a: f"{m.fn(fname)}({i[0]})"


_unop("neg", np.negative, lambda m, i, a: f"(-{i[0]})", lambda G, a, n, g: G.add("neg", [g]), "-a")
_unop("exp", np.exp, _call("exp"), lambda G, a, n, g: G.add("mul", [g, n]), "e ** a")
_unop("log", np.log, _call("log"), lambda G, a, n, g: G.add("div", [g, a]),
      "natural log", domain="pos")
_unop("sqrt", np.sqrt, _call("sqrt"),
      lambda G, a, n, g: G.add("div", [g, G.add("mul", [n, G.const(2.0)])]), "square root", domain="pos")
_unop("abs", np.abs, _call("abs"),
      lambda G, a, n, g: G.add("mul", [g, G.add("sign", [a])]), "|a|", domain="away0")
_unop("sign", np.sign, _call("sign"), None, "sign of a (not differentiable)")
_unop("sigmoid", lambda x: _special().expit(x),
      lambda m, i, a: f"({m.const(1.0)} / ({m.const(1.0)} + {m.fn('exp')}(-{i[0]})))",
      lambda G, a, n, g: _mul(G, g, n, G.add("sub", [G.const(1.0), n])), "1 / (1 + e^-a)")
_unop("tanh", np.tanh, _call("tanh"),
      lambda G, a, n, g: G.add("mul", [g, G.add("sub", [G.const(1.0), G.add("mul", [n, n])])]), "tanh")
_unop("softplus", lambda x: np.logaddexp(0.0, x),
      lambda m, i, a: (f"({m.fn('maximum')}({i[0]}, {m.const(0.0)}) + "
                       f"{m.fn('log1p')}({m.fn('exp')}(-{m.fn('abs')}({i[0]}))))"),
      lambda G, a, n, g: G.add("mul", [g, G.add("sigmoid", [a])]), "log(1 + e^a), computed stably")


# ======================================================================= softmax family (last axis)
def _last_axis(shapes, attrs):
    if len(shapes[0]) == 0 or (is_batched(shapes[0]) and len(shapes[0]) == 1):
        raise ShapeError(f"softmax needs a vector, got {fmt_shape(shapes[0])}")
    return shapes[0]


def _softmax_ref(x):
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax_ref(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _sum_last_keep(G, x):
    s = G.shape(x)
    r = G.add("reduce_sum", [x], {"axes": (len(s) - 1,)})
    return G.add("reshape", [r], {"shape": s[:-1] + (1,)})


def _softmax_vjp(G, n, g):
    # p * (g - sum(g * p))
    return [G.add("mul", [n, G.add("sub", [g, _sum_last_keep(G, G.add("mul", [g, n]))])])]


def _log_softmax_vjp(G, n, g):
    # g - softmax(x) * sum(g): with g = -onehot(y)/B this is (p - onehot(y)) / B
    return [G.add("sub", [g, G.add("mul", [G.add("exp", [n]), _sum_last_keep(G, g)])])]


_sm_cases = [Case([(B, 4)]), Case([(5,)]), Case([(B, 2, 3)])]
register(Op("softmax", 1, _last_axis, _softmax_ref, _softmax_vjp, _sm_cases, doc="softmax over the last axis"))
register(Op("log_softmax", 1, _last_axis, _log_softmax_ref, _log_softmax_vjp, _sm_cases,
            doc="log of softmax, computed stably"))


def _trailing_reduced(shapes, attrs):
    s, axes = shapes[0], tuple(attrs["axes"])
    if not axes or axes != tuple(range(len(s) - len(axes), len(s))) or (is_batched(s) and 0 in axes):
        raise ShapeError(f"logsumexp reduces the trailing per-sample axes, not {axes} of {fmt_shape(s)}")
    return tuple(s[:len(s) - len(axes)])


def _logsumexp_vjp(G, n, g):
    # g * softmax(x): exp(x - lse), broadcast back over the reduced axes; finite for any x
    (x,) = G.inputs(n)
    axes = G.attrs(n)["axes"]
    lse = G.add("expand", [n, x], {"axes": axes})
    return [G.add("mul", [G.add("expand", [g, x], {"axes": axes}), G.add("exp", [G.add("sub", [x, lse])])])]


register(Op("logsumexp", 1, _trailing_reduced, lambda x, axes: _special().logsumexp(x, axis=tuple(axes)),
            _logsumexp_vjp,
            [Case([(B, 4)], {"axes": (1,)}), Case([(B, 2, 3)], {"axes": (1, 2)}), Case([(5,)], {"axes": (0,)})],
            doc="log(sum(exp(x))) over the trailing `axes`, max-shifted so it never overflows"))


# ======================================================================= reductions and shape ops
def _reduce_sum_vjp(G, n, g):
    (a,) = G.inputs(n)
    return [G.add("expand", [g, a], {"axes": G.attrs(n)["axes"]})]


def _reduce_mean_vjp(G, n, g):
    (a,) = G.inputs(n)
    axes = G.attrs(n)["axes"]
    return [G.add("div", [G.add("expand", [g, a], {"axes": axes}), G.add("size", [a], {"axes": axes})])]


_red_cases = [Case([(B, 4)], {"axes": (1,)}), Case([(B, 4)], {"axes": (0,)}), Case([(B, 4)], {"axes": (0, 1)}),
              Case([(B, 2, 3)], {"axes": (1, 2)}), Case([(3, 2)], {"axes": (0, 1)})]
register(Op("reduce_sum", 1, _reduced, lambda x, axes: np.sum(x, axis=tuple(axes)), _reduce_sum_vjp,
            _red_cases, doc="sum over `axes` (dropped)"))
register(Op("reduce_mean", 1, _reduced, lambda x, axes: np.mean(x, axis=tuple(axes)), _reduce_mean_vjp,
            _red_cases, doc="mean over `axes` (dropped)"))


def _expand_shape(shapes, attrs):
    g, like = shapes
    kept = tuple(d for i, d in enumerate(like) if i not in attrs["axes"])
    if tuple(g) != kept:
        raise ShapeError(f"cannot expand {fmt_shape(g)} to {fmt_shape(like)}")
    return like


def _expand_ref(g, like, axes):
    return np.broadcast_to(np.expand_dims(g, tuple(axes)), like.shape).copy()


register(Op("expand", 2, _expand_shape, _expand_ref,
            lambda G, n, g: [G.add("reduce_sum", [g], {"axes": G.attrs(n)["axes"]}), None],
            [Case([(B,), (B, 3)], {"axes": (1,)}), Case([(3,), (B, 3)], {"axes": (0,)}), Case([(), (B, 3)], {"axes": (0, 1)})],
            doc="broadcast g back over the `axes` that a reduction removed; the second operand gives the shape"))
register(Op("size", 1, lambda s, a: (), lambda x, axes: np.float64(np.prod([x.shape[i] for i in axes])), None,
            [Case([(B, 3)], {"axes": (0,)}), Case([(B, 3)], {"axes": (0, 1)})],
            doc="number of elements along `axes` (the batch size is known only at run time)"))


def _reshape_shape(shapes, attrs):
    src, dst = shapes[0], tuple(attrs["shape"])
    if is_batched(src) != is_batched(dst):
        raise ShapeError(f"cannot reshape {fmt_shape(src)} to {fmt_shape(dst)}")
    if int(np.prod([d for d in src if d != B])) != int(np.prod([d for d in dst if d != B])):
        raise ShapeError(f"cannot reshape {fmt_shape(src)} to {fmt_shape(dst)}: sizes differ")
    return dst


register(Op("reshape", 1, _reshape_shape,
            lambda x, shape: x.reshape(tuple(x.shape[0] if d == B else d for d in shape)),
            lambda G, n, g: [G.add("reshape", [g], {"shape": G.shape(G.inputs(n)[0])})],
            [Case([(B, 6)], {"shape": (B, 2, 3)}), Case([(B,)], {"shape": (B, 1)}), Case([(2, 3)], {"shape": (6,)})],
            doc="same elements, another shape (batch axis stays first)"))


def _transpose_shape(shapes, attrs):
    s = shapes[0]
    if len(s) != 2 or is_batched(s):
        raise ShapeError(f"transpose needs a matrix, got {fmt_shape(s)}")
    return (s[1], s[0])


register(Op("transpose", 1, _transpose_shape, lambda x: x.T.copy(),
            lambda G, n, g: [G.add("transpose", [g])], [Case([(3, 2)])], doc="matrix transpose"))


# ======================================================================= matrix product
def _matmul_shape(shapes, attrs):
    a, b = shapes
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(f"matmul needs matrices, got {fmt_shape(a)} and {fmt_shape(b)}")
    m, k1 = (a[1], a[0]) if attrs.get("ta") else (a[0], a[1])
    k2, n = (b[1], b[0]) if attrs.get("tb") else (b[0], b[1])
    if k1 != k2:
        raise ShapeError(f"inner sizes {k1} and {k2} differ")
    if n == B:
        raise ShapeError("the batch axis cannot become a column")
    return (m, n)


def _matmul_ref(a, b, ta=False, tb=False):
    return (a.T if ta else a) @ (b.T if tb else b)


def _matmul_vjp(G, n, g):
    a, b = G.inputs(n)
    ta, tb = G.attrs(n).get("ta", False), G.attrs(n).get("tb", False)
    mm = lambda x, y, tx=False, ty=False: G.add("matmul", [x, y], {"ta": tx, "tb": ty})
    if not ta and not tb:      # C = A B
        return [mm(g, b, False, True), mm(a, g, True, False)]
    if not ta and tb:          # C = A B^T  (a dense layer: X W^T)
        return [mm(g, b), mm(g, a, True, False)]
    if ta and not tb:          # C = A^T B
        return [mm(b, g, False, True), mm(a, g)]
    return [mm(b, g, True, True), mm(g, a, True, True)]     # C = A^T B^T


register(Op("matmul", 2, _matmul_shape, _matmul_ref, _matmul_vjp,
            [Case([(B, 3), (4, 3)], {"ta": False, "tb": True}), Case([(B, 3), (3, 4)]),
             Case([(B, 3), (B, 4)], {"ta": True, "tb": False}), Case([(3, 2), (4, 3)], {"ta": True, "tb": True}),
             Case([(2, 3), (3, 4)])],
            doc="op(a) @ op(b) for matrices, op = transpose when `ta`/`tb`"))


# ======================================================================= class labels
def _onehot_shape(shapes, attrs):
    if len(shapes[0]) != 1:      # class targets are one label per sample: a batch vector
        raise ShapeError(f"onehot needs one label per sample, got labels of shape {fmt_shape(shapes[0])}")
    return tuple(shapes[0]) + (attrs["classes"],)


def _onehot_ref(y, classes):
    return np.eye(classes)[y.astype(np.int64)]


register(Op("onehot", 1, _onehot_shape, _onehot_ref, None,
            [Case([(B,)], {"classes": 4}, domains=["int:4"])],
            doc="one-hot rows of zero-indexed class labels (not differentiable)"))


# ======================================================================= erf, max/min reductions, concat
# The error function, for the exact gelu: x * (1 + erf(x / sqrt 2)) / 2 (PyTorch's default).
_unop("erf", lambda x: _special().erf(x), _call("erf"),
      lambda G, a, n, g: _mul(G, g, G.const(2.0 / np.sqrt(np.pi)), G.add("exp", [G.add("neg", [G.add("mul", [a, a])])])),
      "the error function, 2/sqrt(pi) * integral of exp(-t^2) from 0 to a")


def _extreme_vjp(is_max):
    """max/min over `axes`: the gradient goes to the selected elements, split evenly between
    ties (as torch.amax/amin)."""
    def vjp(G, n, g):
        (a,) = G.inputs(n)
        axes = G.attrs(n)["axes"]
        m = G.add("expand", [n, a], {"axes": axes})
        beaten = G.add("greater", [m, a] if is_max else [a, m])      # 1 where a is not the extreme
        mask = G.add("sub", [G.const(1.0), beaten])
        share = G.add("div", [g, G.add("reduce_sum", [mask], {"axes": axes})])     # g / number of ties
        return [G.add("mul", [G.add("expand", [share, a], {"axes": axes}), mask])]
    return vjp


_ext_cases = [Case([(B, 4)], {"axes": (1,)}), Case([(B, 4)], {"axes": (0,)}), Case([(B, 2, 3)], {"axes": (1, 2)}),
              Case([(3, 2)], {"axes": (0, 1)}), Case([(2, 3, 4)], {"axes": (0, 2)})]
register(Op("reduce_max", 1, _reduced, lambda x, axes: np.max(x, axis=tuple(axes)), _extreme_vjp(True),
            _ext_cases, doc="maximum over `axes` (dropped)"))
register(Op("reduce_min", 1, _reduced, lambda x, axes: np.min(x, axis=tuple(axes)), _extreme_vjp(False),
            _ext_cases, doc="minimum over `axes` (dropped)"))


def _concat_shape(shapes, attrs):
    ax = attrs["axis"]
    first = shapes[0]
    if not 0 <= ax < len(first) or first[ax] == B:
        raise ShapeError(f"cannot concatenate along axis {ax} of {fmt_shape(first)}")
    for s in shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != ax):
            raise ShapeError(f"cannot concatenate {fmt_shape(first)} and {fmt_shape(s)} along axis {ax}")
    return tuple(first[:ax]) + (sum(s[ax] for s in shapes),) + tuple(first[ax + 1:])


def _concat_vjp(G, n, g):
    ax = G.attrs(n)["axis"]
    out, start = [], 0
    for a in G.inputs(n):
        size = G.shape(a)[ax]
        out.append(G.add("slice", [g], {"axis": ax, "start": start, "stop": start + size}))
        start += size
    return out


register(Op("concat", None, _concat_shape, lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_vjp,
            [Case([(B, 2), (B, 3)], {"axis": 1}), Case([(B, 2), (B, 3), (B, 1)], {"axis": 1}),
             Case([(2, 3), (4, 3)], {"axis": 0}), Case([(B, 2, 2), (B, 2, 1)], {"axis": 2})],
            doc="operands joined along `axis` (all other sizes equal)"))


def _slice_shape(shapes, attrs):
    s, ax, start, stop = shapes[0], attrs["axis"], attrs["start"], attrs["stop"]
    if not 0 <= ax < len(s) or s[ax] == B or not 0 <= start < stop <= s[ax]:
        raise ShapeError(f"cannot take {start}:{stop} of axis {ax} of {fmt_shape(s)}")
    return tuple(s[:ax]) + (stop - start,) + tuple(s[ax + 1:])


def _slice_vjp(G, n, g):
    (a,) = G.inputs(n)
    at = G.attrs(n)
    return [G.add("pad", [g], {"axis": at["axis"], "before": at["start"],
                               "after": G.shape(a)[at["axis"]] - at["stop"]})]


register(Op("slice", 1, _slice_shape,
            lambda x, axis, start, stop: x[(slice(None),) * axis + (slice(start, stop),)].copy(), _slice_vjp,
            [Case([(B, 5)], {"axis": 1, "start": 1, "stop": 4}), Case([(4, 3)], {"axis": 0, "start": 0, "stop": 2})],
            doc="elements start:stop along `axis` (the adjoint of concat)"))


def _pad_shape(shapes, attrs):
    s, ax = shapes[0], attrs["axis"]
    if not 0 <= ax < len(s) or s[ax] == B or attrs["before"] < 0 or attrs["after"] < 0:
        raise ShapeError(f"cannot pad axis {ax} of {fmt_shape(s)}")
    return tuple(s[:ax]) + (s[ax] + attrs["before"] + attrs["after"],) + tuple(s[ax + 1:])


def _pad_ref(x, axis, before, after):
    widths = [(0, 0)] * x.ndim
    widths[axis] = (before, after)
    return np.pad(x, widths)


register(Op("pad", 1, _pad_shape, _pad_ref,
            lambda G, n, g: [G.add("slice", [g], {"axis": G.attrs(n)["axis"], "start": G.attrs(n)["before"],
                                                  "stop": G.attrs(n)["before"] + G.shape(G.inputs(n)[0])[G.attrs(n)["axis"]]})],
            [Case([(B, 2)], {"axis": 1, "before": 1, "after": 2}), Case([(2, 3)], {"axis": 0, "before": 0, "after": 1})],
            doc="zeros added before and after along `axis` (the adjoint of slice)"))


# ------------------------------------------------------------------ train and predict views, dropout
# `phase(t, e)`: the value `t` in the train step and `e` in evaluate/predict. The compiler
# picks one operand per entry point (`traingraph.view`), so no kernel ever sees a phase node;
# its reference and lowerings (the train operand) exist for the oracle and the table tests.
def _phase_shape(shapes, attrs):
    if tuple(shapes[0]) != tuple(shapes[1]):
        raise ShapeError(f"phase operands differ: {fmt_shape(shapes[0])} and {fmt_shape(shapes[1])}")
    return tuple(shapes[0])


register(Op("phase", 2, _phase_shape, lambda t, e: np.array(t, copy=True), lambda G, n, g: [g, None],
            [Case([(B, 3), (B, 3)]), Case([(2, 3), (2, 3)])],
            doc="the train view's operand (first) or the predict view's (second), chosen per entry point"))

# dropout's mask: a counter-based generator (no state but the key): the element at flat index
# k of the step `step` keeps its value iff hash(seed, step, k) / 2**32 >= rate. The hash is
# three rounds of a 32-bit integer mixer in 64-bit arithmetic (every product < 2**63), the
# same in NumPy here, in the CPU's @njit helper and in the CUDA device function, so a resumed
# run and the GPU draw the same masks.
MIX_M1, MIX_M2, MASK32 = 0x7FEB352D, 0x4F6CDD1D, 0xFFFFFFFF


def mix32(x):
    """The 32-bit mixer on int64 values (scalars or arrays) in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * MIX_M1) & MASK32
    x = x ^ (x >> 15)
    x = (x * MIX_M2) & MASK32
    return x ^ (x >> 16)


def dropout_keep_ref(seed, step, flat):
    """The uniform number in [0, 1) of each element (int64 flat indices) of one step."""
    h = mix32(np.int64(int(seed)) & MASK32)
    h = mix32(h ^ (np.int64(int(step)) & MASK32))
    return mix32(h ^ (np.asarray(flat, np.int64) & MASK32)) * (2.0 ** -32)


def dropout_threshold(rate: float) -> int:
    """The integer form of the test hash / 2**32 >= rate: hash >= ceil(rate 2**32) (exact)."""
    return int(np.ceil(rate * 2.0 ** 32))


def _dropmask_shape(shapes, attrs):
    like, seed, step = shapes
    if tuple(seed) != (1,) or tuple(step) != ():
        raise ShapeError(f"dropout_mask needs a seed [1] and a scalar step, got {fmt_shape(seed)}, {fmt_shape(step)}")
    if not 0.0 <= attrs["rate"] < 1.0:
        raise ShapeError(f"dropout rate {attrs['rate']} not in [0, 1)")
    return tuple(like)


def _dropmask_ref(like, seed, step, rate):
    u = dropout_keep_ref(np.asarray(seed).reshape(-1)[0], step, np.arange(np.size(like)))
    return np.where(u >= rate, 1.0 / (1.0 - rate), 0.0).reshape(np.shape(like))


# the mask does not depend on the values of `like` (only on its shape): no gradient flows
register(Op("dropout_mask", 3, _dropmask_shape, _dropmask_ref, lambda G, n, g: [None, None, None],
            [Case([(B, 5), (1,), ()], {"rate": 0.5}, ["real", "pos", "pos"]),
             Case([(B, 2, 3, 3), (1,), ()], {"rate": 0.25}, ["real", "pos", "pos"])],
            doc="inverted dropout's mask of `like`'s shape: 0 or 1/(1-rate), keyed by (seed, step, flat index)"))


# ======================================================================= images: convolution and pooling
# Batched NCHW images [B, C, H, W]. A kernel `k` and `stride`/`pad` are pairs (rows, columns).
# A pooled or convolved size is floor((H + 2 pad - k) / stride) + 1 (PyTorch's floor mode).
def out_size(h: int, k: int, stride: int, pad: int = 0) -> int:
    return (h + 2 * pad - k) // stride + 1


def _image(s, what) -> tuple:
    if len(s) != 4 or not is_batched(s):
        raise ShapeError(f"{what} needs images [C, H, W] per sample, got {fmt_shape(s)}")
    return s


def _conv_out(H, W, k, stride, pad, what):
    ho, wo = out_size(H, k[0], stride[0], pad[0]), out_size(W, k[1], stride[1], pad[1])
    if ho < 1 or wo < 1:
        raise ShapeError(f"a {k[0]}x{k[1]} {what} does not fit in a {H}x{W} image"
                         + (f" padded by {pad[0]}x{pad[1]}" if any(pad) else ""))
    return ho, wo


def _conv2d_shape(shapes, attrs):
    x, w = shapes
    _image(x, "conv")
    if len(w) != 4 or is_batched(w):
        raise ShapeError(f"conv needs a kernel [n, C, kh, kw], got {fmt_shape(w)}")
    if w[1] != x[1]:
        raise ShapeError(f"the kernel {fmt_shape(w)} has {w[1]} channels but the image {fmt_shape(x)} has {x[1]}")
    ho, wo = _conv_out(x[2], x[3], w[2:], attrs["stride"], attrs["pad"], "kernel")
    return (x[0], w[0], ho, wo)


def _windows(xp, kh, kw, sh, sw, ho, wo):
    """Each kernel offset (i, j) with the strided [B, C, ho, wo] view of the padded input it meets."""
    for i in range(kh):
        for j in range(kw):
            yield i, j, (slice(None), slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))


def _padded(x, pad):
    return np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))


def _conv2d_ref(x, w, stride, pad):
    xp = _padded(x, pad)
    ho, wo = out_size(x.shape[2], w.shape[2], stride[0], pad[0]), out_size(x.shape[3], w.shape[3], stride[1], pad[1])
    out = np.zeros((x.shape[0], w.shape[0], ho, wo), np.result_type(x, w))
    for i, j, win in _windows(xp, w.shape[2], w.shape[3], *stride, ho, wo):
        out += np.einsum("bchw,oc->bohw", xp[win], w[:, :, i, j])
    return out


def _conv2d_dx_shape(shapes, attrs):
    g, w = shapes
    H, W = attrs["hw"]
    _image(g, "conv2d_dx")
    if g[1] != w[0] or g[2:] != _conv_out(H, W, w[2:], attrs["stride"], attrs["pad"], "kernel"):
        raise ShapeError(f"conv2d_dx: gradient {fmt_shape(g)} does not fit kernel {fmt_shape(w)} on {H}x{W}")
    return (g[0], w[1], H, W)


def _conv2d_dx_ref(g, w, stride, pad, hw):
    B_, ho, wo = g.shape[0], g.shape[2], g.shape[3]
    dxp = np.zeros((B_, w.shape[1], hw[0] + 2 * pad[0], hw[1] + 2 * pad[1]), np.result_type(g, w))
    for i, j, win in _windows(dxp, w.shape[2], w.shape[3], *stride, ho, wo):
        dxp[win] += np.einsum("bohw,oc->bchw", g, w[:, :, i, j])
    return dxp[:, :, pad[0]:pad[0] + hw[0], pad[1]:pad[1] + hw[1]].copy()


def _conv2d_dw_shape(shapes, attrs):
    x, g = shapes
    _image(x, "conv2d_dw")
    _image(g, "conv2d_dw")
    k = attrs["k"]
    if g[2:] != _conv_out(x[2], x[3], k, attrs["stride"], attrs["pad"], "kernel"):
        raise ShapeError(f"conv2d_dw: gradient {fmt_shape(g)} does not fit image {fmt_shape(x)}")
    return (g[1], x[1], k[0], k[1])


def _conv2d_dw_ref(x, g, stride, pad, k):
    xp = _padded(x, pad)
    dw = np.zeros((g.shape[1], x.shape[1], k[0], k[1]), np.result_type(x, g))
    for i, j, win in _windows(xp, k[0], k[1], *stride, g.shape[2], g.shape[3]):
        dw[:, :, i, j] = np.einsum("bohw,bchw->oc", g, xp[win])
    return dw


def _conv2d_vjp(G, n, g):
    x, w = G.inputs(n)
    at = G.attrs(n)
    sp = {"stride": at["stride"], "pad": at["pad"]}
    return [G.add("conv2d_dx", [g, w], dict(sp, hw=tuple(G.shape(x)[2:]))),
            G.add("conv2d_dw", [x, g], dict(sp, k=tuple(G.shape(w)[2:])))]


def _conv2d_dx_vjp(G, n, gg):
    # conv2d_dx(g, w) is bilinear: <dx(g, w), G> = <g, conv(G, w)>
    g, w = G.inputs(n)
    at = G.attrs(n)
    sp = {"stride": at["stride"], "pad": at["pad"]}
    return [G.add("conv2d", [gg, w], sp), G.add("conv2d_dw", [gg, g], dict(sp, k=tuple(G.shape(w)[2:])))]


def _conv2d_dw_vjp(G, n, gw):
    # <dw(x, g), Gw> = <g, conv(x, Gw)> = <dx(g, Gw), x>
    x, g = G.inputs(n)
    at = G.attrs(n)
    sp = {"stride": at["stride"], "pad": at["pad"]}
    return [G.add("conv2d_dx", [g, gw], dict(sp, hw=tuple(G.shape(x)[2:]))), G.add("conv2d", [x, gw], sp)]


def _s(stride=(1, 1), pad=(0, 0)):
    return {"stride": stride, "pad": pad}


register(Op("conv2d", 2, _conv2d_shape, _conv2d_ref, _conv2d_vjp,
            [Case([(B, 2, 5, 5), (3, 2, 3, 3)], _s()), Case([(B, 2, 6, 5), (2, 2, 3, 2)], _s((2, 1), (1, 0))),
             Case([(B, 1, 5, 6), (2, 1, 2, 3)], _s((2, 2), (1, 1))), Case([(B, 3, 4, 4), (2, 3, 1, 1)], _s())],
            doc="2-D cross-correlation of images x[B, C, H, W] with kernels w[n, C, kh, kw], "
                "`stride` and zero `pad` (rows, columns): [B, n, Ho, Wo]"))
register(Op("conv2d_dx", 2, _conv2d_dx_shape, _conv2d_dx_ref, _conv2d_dx_vjp,
            [Case([(B, 3, 3, 3), (3, 2, 3, 3)], dict(_s(), hw=(5, 5))),
             Case([(B, 2, 3, 4), (2, 2, 3, 2)], dict(_s((2, 1), (1, 0)), hw=(6, 5))),
             Case([(B, 2, 3, 3), (2, 1, 2, 3)], dict(_s((2, 2), (1, 1)), hw=(5, 6)))],
            doc="the input gradient of conv2d: g[B, n, Ho, Wo] and w give [B, C, H, W] (`hw` = H, W)"))
register(Op("conv2d_dw", 2, _conv2d_dw_shape, _conv2d_dw_ref, _conv2d_dw_vjp,
            [Case([(B, 2, 5, 5), (B, 3, 3, 3)], dict(_s(), k=(3, 3))),
             Case([(B, 2, 6, 5), (B, 2, 3, 4)], dict(_s((2, 1), (1, 0)), k=(3, 2))),
             Case([(B, 1, 5, 6), (B, 2, 3, 3)], dict(_s((2, 2), (1, 1)), k=(2, 3)))],
            doc="the kernel gradient of conv2d: x[B, C, H, W] and g[B, n, Ho, Wo] give [n, C, kh, kw] (`k` = kh, kw)"))


def _pool_shape(shapes, attrs):
    x = _image(shapes[0], "pooling")
    ho, wo = _conv_out(x[2], x[3], attrs["k"], attrs["stride"], (0, 0), "pooling window")
    return (x[0], x[1], ho, wo)


def _pool_windows(x, k, stride):
    ho, wo = out_size(x.shape[2], k[0], stride[0]), out_size(x.shape[3], k[1], stride[1])
    return ho, wo, list(_windows(x, k[0], k[1], *stride, ho, wo))


def _maxpool_ref(x, k, stride):
    _, _, wins = _pool_windows(x, k, stride)
    return np.max(np.stack([x[w] for _, _, w in wins]), axis=0)


def _maxpool_dx_shape(shapes, attrs):
    x, g = shapes
    if tuple(g) != _pool_shape([x], attrs):
        raise ShapeError(f"maxpool_dx: gradient {fmt_shape(g)} does not fit {fmt_shape(x)}")
    return x


def _maxpool_dx_ref(x, g, k, stride):
    """g routed to the first maximum of each window (row-major order, as PyTorch)."""
    _, _, wins = _pool_windows(x, k, stride)
    arg = np.argmax(np.stack([x[w] for _, _, w in wins]), axis=0)
    dx = np.zeros(x.shape, np.result_type(x, g))
    for t, (_, _, w) in enumerate(wins):
        dx[w] += np.where(arg == t, g, 0.0)
    return dx


def _avgpool_ref(x, k, stride):
    _, _, wins = _pool_windows(x, k, stride)
    return sum(x[w] for _, _, w in wins) / (k[0] * k[1])


def _avgpool_dx_shape(shapes, attrs):
    g = _image(shapes[0], "avgpool_dx")
    H, W = attrs["hw"]
    if g[2:] != _conv_out(H, W, attrs["k"], attrs["stride"], (0, 0), "pooling window"):
        raise ShapeError(f"avgpool_dx: gradient {fmt_shape(g)} does not fit {H}x{W}")
    return (g[0], g[1], H, W)


def _avgpool_dx_ref(g, k, stride, hw):
    dx = np.zeros(g.shape[:2] + tuple(hw), g.dtype)
    for _, _, w in _windows(dx, k[0], k[1], *stride, g.shape[2], g.shape[3]):
        dx[w] += g / (k[0] * k[1])
    return dx


def _p(k, stride):
    return {"k": k, "stride": stride}


_pool_cases = [Case([(B, 2, 4, 4)], _p((2, 2), (2, 2))), Case([(B, 1, 5, 5)], _p((3, 3), (2, 2))),
               Case([(B, 2, 5, 4)], _p((2, 3), (1, 1))), Case([(B, 1, 5, 7)], _p((2, 2), (2, 3)))]
register(Op("maxpool", 1, _pool_shape, _maxpool_ref,
            lambda G, n, g: [G.add("maxpool_dx", [G.inputs(n)[0], g], dict(G.attrs(n)))], _pool_cases,
            doc="the maximum of each kh x kw window of images, windows `stride` apart (may overlap)"))
register(Op("maxpool_dx", 2, _maxpool_dx_shape, _maxpool_dx_ref, None,
            [Case([(B, 2, 4, 4), (B, 2, 2, 2)], _p((2, 2), (2, 2))),
             Case([(B, 1, 5, 5), (B, 1, 2, 2)], _p((3, 3), (2, 2))),
             Case([(B, 2, 5, 4), (B, 2, 4, 2)], _p((2, 3), (1, 1)))],
            doc="the gradient of maxpool: g routed to the first maximum of each window of x, summed where "
                "windows overlap (piecewise constant in x; not differentiated again)"))
register(Op("avgpool", 1, _pool_shape, _avgpool_ref,
            lambda G, n, g: [G.add("avgpool_dx", [g], dict(G.attrs(n), hw=tuple(G.shape(G.inputs(n)[0])[2:])))],
            _pool_cases, doc="the mean of each kh x kw window of images, windows `stride` apart (may overlap)"))
register(Op("avgpool_dx", 1, _avgpool_dx_shape, _avgpool_dx_ref,
            lambda G, n, g: [G.add("avgpool", [g], {"k": G.attrs(n)["k"], "stride": G.attrs(n)["stride"]})],
            [Case([(B, 2, 2, 2)], dict(_p((2, 2), (2, 2)), hw=(4, 4))),
             Case([(B, 1, 2, 2)], dict(_p((3, 3), (2, 2)), hw=(5, 5))),
             Case([(B, 2, 4, 2)], dict(_p((2, 3), (1, 1)), hw=(5, 4)))],
            doc="the gradient of avgpool: each window's g spread evenly over it (`hw` = H, W)"))
