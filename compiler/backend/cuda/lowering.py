"""The CUDA lowering table: how each registry op runs on the GPU, ONE entry per op, found by
the op's name (`lowering`); an op the table lacks raises MissingLowering naming it.

  * elementwise ops are "pointwise" with the registry's one scalar formula (`Op.formula`),
    rendered in CUDA's math namespace (`MATH`: math.exp, abs, max); an entry of its own only
    where CUDA differs (sign) or the op reads operands at indices of its own (expand, onehot,
    transpose, slice, pad, concat)
  * "kernel" ops launch the hand-written kernels of `kernels.py` (matmul, reductions, rows)
  * "view" (reshape) and "host" (size: a scalar of the batch size)

`RULES` tells the grouping (`compiler.fuse`) what fuses into one generated kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from ...fuse import Rules
from ...ir import Graph
from ...shapes import B
from ...ops import REGISTRY, dropout_threshold
from ..contract import MissingLowering

# CUDA's math namespace for the registry's scalar formulas (the module imports math)
MATH = {"abs": "abs", "maximum": "max"}


def math_fn(name: str) -> str:
    return MATH.get(name, f"math.{name}")


# ======================================================================= the lowering table
@dataclass
class Lowering:
    """How one op runs on the GPU.

    kind   "pointwise": a scalar expression in a fused kernel (also on the host for scalars);
           "kernel": driver lines launching hand-written kernels; "view": a reshaped view;
           "host": a scalar the driver computes from the batch size.
    expr   pointwise: (ctx, operand expressions, attrs, index variables) -> expression
    index  pointwise: (graph, node, operand position) -> the index expressions (over the
           node's index variables i0, i1, ...) its operand is read at, or None for an operand
           read only for its shape; default: NumPy broadcasting
    emit   kernel / view / host: (ctx, node) -> driver lines
    """
    kind: str
    expr: Optional[Callable] = None
    index: Optional[Callable] = None
    emit: Optional[Callable] = None


def broadcast_index(G: Graph, n: int, p: int) -> List[str]:
    out, shape = G.shape(n), G.shape(G.inputs(n)[p])
    r, k = len(out), len(shape)
    return ["0" if shape[j] == 1 and out[r - k + j] != 1 else f"i{r - k + j}" for j in range(k)]


LOWERINGS: Dict[str, Lowering] = {}


def _pw(name, expr, index=None):
    LOWERINGS[name] = Lowering("pointwise", expr=expr, index=index)


# the elementwise ops: the registry's one formula, in CUDA's math namespace (`MATH`)
for _name, _op in REGISTRY.items():
    if _op.formula is not None:
        _pw(_name, lambda c, a, at, ix, _f=_op.formula: _f(c, a, at))

# where CUDA differs: no math.sign; ops that read operands at indices of their own
_pw("sign", lambda c, a, at, ix: f"({c.const(1.0)} if {a[0]} > {c.const(0.0)} else "
                                 f"({c.const(-1.0)} if {a[0]} < {c.const(0.0)} else {c.const(0.0)}))")
# broadcast g back over the reduced axes: read g at the kept index; `like` gives only the shape
_pw("expand", lambda c, a, at, ix: a[0],
    index=lambda G, n, p: [f"i{k}" for k in range(len(G.shape(n))) if k not in G.attrs(n)["axes"]] if p == 0 else None)
_pw("onehot", lambda c, a, at, ix: f"({c.const(1.0)} if {a[0]} == {ix[-1]} else {c.const(0.0)})",
    index=lambda G, n, p: [f"i{k}" for k in range(len(G.shape(n)) - 1)])
# the train view's operand; never reached after traingraph.view (the table is complete)
_pw("phase", lambda c, a, at, ix: a[0])


def _flat(G, n, ix):
    """The row-major flat index of the node's index variables."""
    shape = G.shape(n)
    flat = ix[0] if shape else "0"
    for d, i in zip(shape[1:], ix[1:]):
        flat = f"({flat} * {d} + {i})"
    return flat


# dropout's mask: the counter-based hash of (seed, step, flat index), the CPU's formula
_pw("dropout_mask", lambda c, a, at, ix: (f"({c.const(1.0 / (1.0 - at['rate']))} if K.dropout_keep({a[1]}, {a[2]}, "
                                          f"{_flat(c.G, c.node, ix)}, {dropout_threshold(at['rate'])}) else {c.const(0.0)})"),
    index=lambda G, n, p: None if p == 0 else ["0"] if p == 1 else [])
_pw("transpose", lambda c, a, at, ix: a[0], index=lambda G, n, p: ["i1", "i0"])
_pw("slice", lambda c, a, at, ix: a[0],
    index=lambda G, n, p: _shifted(G, n, G.attrs(n)["axis"], -G.attrs(n)["start"]))


def _shifted(G, n, axis, shift):
    """The node's own index, minus `shift` along `axis`."""
    return [f"(i{k} - {shift})" if k == axis and shift > 0 else (f"(i{k} + {-shift})" if k == axis and shift < 0
            else f"i{k}") for k in range(len(G.shape(n)))]


def _pad_expr(c, a, at, ix):
    i, lo = ix[at["axis"]], at["before"]
    hi = lo + c.G.shape(c.G.inputs(c.node)[0])[at["axis"]]
    return f"({a[0]} if {lo} <= {i} < {hi} else {c.const(0.0)})"      # reads only inside


def _concat_expr(c, a, at, ix):
    i, sizes = ix[at["axis"]], [c.G.shape(u)[at["axis"]] for u in c.G.inputs(c.node)]
    expr, end = a[-1], sum(sizes[:-1])
    for k in range(len(a) - 2, -1, -1):           # the operand whose range holds i
        expr = f"({a[k]} if {i} < {end} else {expr})"
        end -= sizes[k]
    return expr


def _concat_index(G, n, p):
    ax = G.attrs(n)["axis"]
    return _shifted(G, n, ax, sum(G.shape(u)[ax] for u in G.inputs(n)[:p]))


_pw("pad", _pad_expr, index=lambda G, n, p: _shifted(G, n, G.attrs(n)["axis"], G.attrs(n)["before"]))
_pw("concat", _concat_expr, index=_concat_index)


def _emit_matmul(c, n):
    a, b = c.operands(n)
    at = c.G.attrs(n)
    return [f"K.matmul({a}, {b}, {c.name(n)}, {bool(at.get('ta'))}, {bool(at.get('tb'))})"]


def _emit_reduce(c, n, mean=False, kind="sum"):
    """Reduce one contiguous run of axes at a time (the last run first), each as [O, R, I]:
    a row reduction when I = 1 (one block per row), else a column reduction."""
    (x,) = c.operands(n)
    shape = list(c.dshape(c.G.inputs(n)[0]))
    axes = sorted(c.G.attrs(n)["axes"])
    runs: List[List[int]] = []
    for a in axes:
        if runs and runs[-1][-1] == a - 1:
            runs[-1].append(a)
        else:
            runs.append([a])
    total = prod([shape[a] for a in axes]) if mean else "1"
    lines, cur, cur_shape = [], x, shape
    if not axes:                                   # nothing to reduce: a copy
        return [f"{c.name(n)}.copy_to_device({x})"]
    for k, run in enumerate(reversed(runs)):
        lo, hi = run[0], run[-1] + 1
        O, R, I = prod(cur_shape[:lo]), prod(cur_shape[lo:hi]), prod(cur_shape[hi:])
        new_shape = cur_shape[:lo] + cur_shape[hi:]
        last = k == len(runs) - 1
        out = c.name(n) if last else c.temp(n, new_shape)
        denom = total if last else "1"
        if I == "1":
            lines.append(f"K.reduce_rows({c.view(cur, cur_shape, [O, R])}, {c.view(out, new_shape, [O])}, "
                         f"{denom}{_kind(kind)})")
        else:
            lines.append(f"K.reduce_cols({c.view(cur, cur_shape, [O, R, I])}, "
                         f"{c.view(out, new_shape, [O, I])}, {denom}{_kind(kind)})")
        cur, cur_shape = out, new_shape
    return lines


def _kind(kind):
    return "" if kind == "sum" else f", {kind!r}"


def _emit_lse(c, n):
    """log-sum-exp over the trailing axes: one row per kept element."""
    (x,) = c.operands(n)
    shape = list(c.dshape(c.G.inputs(n)[0]))
    k = len(c.G.attrs(n)["axes"])
    rows = [prod(shape[:len(shape) - k]), prod(shape[len(shape) - k:])]
    return [f"K.logsumexp_rows({c.view(x, shape, rows)}, {c.view(c.name(n), c.dshape(n), rows[:1])})"]


def _emit_rows(kind):
    def emit(c, n):
        (x,) = c.operands(n)
        shape = list(c.dshape(n))
        rows = [prod(shape[:-1]), str(shape[-1])]
        return [f"K.{kind}_rows({c.view(x, shape, rows)}, {c.view(c.name(n), shape, rows)})"]
    return emit


def _emit_reshape(c, n):
    (x,) = c.operands(n)
    return [f"{c.name(n)} = {c.view(x, c.dshape(c.G.inputs(n)[0]), c.dshape(n))}"]


def _emit_size(c, n):
    shape = c.dshape(c.G.inputs(n)[0])
    return [f"{c.name(n)} = DT({prod([shape[a] for a in c.G.attrs(n)['axes']])})"]


LOWERINGS["matmul"] = Lowering("kernel", emit=_emit_matmul)
LOWERINGS["reduce_sum"] = Lowering("kernel", emit=_emit_reduce)
LOWERINGS["reduce_mean"] = Lowering("kernel", emit=lambda c, n: _emit_reduce(c, n, mean=True))
LOWERINGS["reduce_max"] = Lowering("kernel", emit=lambda c, n: _emit_reduce(c, n, kind="max"))
LOWERINGS["reduce_min"] = Lowering("kernel", emit=lambda c, n: _emit_reduce(c, n, kind="min"))
LOWERINGS["logsumexp"] = Lowering("kernel", emit=_emit_lse)
LOWERINGS["softmax"] = Lowering("kernel", emit=_emit_rows("softmax"))
LOWERINGS["log_softmax"] = Lowering("kernel", emit=_emit_rows("log_softmax"))
def _emit_image(keys):
    """A convolution or pooling (or an adjoint): one thread per output element (kernels.image)."""
    def emit(c, n):
        at = c.G.attrs(n)
        ints = ", ".join(str(v) for k in keys for v in at[k])
        return [f"K.image({c.G.op(n)!r}, ({', '.join(c.operands(n))},), {c.name(n)}, {ints})"]
    return emit


for _op in ("conv2d", "conv2d_dx", "conv2d_dw"):
    LOWERINGS[_op] = Lowering("kernel", emit=_emit_image(("stride", "pad")))
for _op in ("maxpool", "maxpool_dx", "avgpool", "avgpool_dx"):
    LOWERINGS[_op] = Lowering("kernel", emit=_emit_image(("k", "stride")))
LOWERINGS["reshape"] = Lowering("view", emit=_emit_reshape)
LOWERINGS["size"] = Lowering("host", emit=_emit_size)


def prod(dims: Sequence) -> str:
    """A Python expression for the product of dims (ints, or the batch size 'nb')."""
    static = 1
    dyn = []
    for d in dims:
        if isinstance(d, str) and not d.isdigit():
            dyn.append(d)
        else:
            static *= int(d)
    parts = dyn + ([str(static)] if static != 1 or not dyn else [])
    return " * ".join(parts)


# ======================================================================= grouping rules
def lowering(G: Graph, n: int) -> Lowering:
    """The entry of node n's op; MissingLowering names an op the table lacks."""
    op = G.op(n)
    if op not in LOWERINGS:
        raise MissingLowering(op, "cuda")
    return LOWERINGS[op]


def operand_index(G: Graph, n: int, p: int) -> Optional[List[str]]:
    return (lowering(G, n).index or broadcast_index)(G, n, p)


def value_operands(G: Graph, n: int) -> List[int]:
    ins = G.inputs(n)
    low = lowering(G, n)
    if low.kind == "host":
        return []
    if low.kind == "pointwise":
        return [u for p, u in enumerate(ins) if operand_index(G, n, p) is not None]
    return ins


def reads_pointwise(G: Graph, n: int, p: int) -> bool:
    idx = operand_index(G, n, p)
    return idx is not None and idx == [f"i{k}" for k in range(len(G.shape(n)))]


def _host(G: Graph, n: int, flags: List[bool]) -> bool:
    low = lowering(G, n)
    if low.kind == "host":
        return True
    scalar = G.shape(n) == () or (low.kind == "view" and B not in G.shape(n) and
                                  math.prod(G.shape(n)) == 1)
    return scalar and all(flags) and low.kind in ("pointwise", "view") and G.op(n) in REGISTRY \
        and (REGISTRY[G.op(n)].elementwise or low.kind == "view")


def _fusible(G: Graph, n: int) -> bool:
    return lowering(G, n).kind == "pointwise"


# a kernel thread computes one element of its group's shape: a producer joins its consumer's
# kernel when the consumer reads it at its own index; reductions are hand-written kernels
RULES = Rules(fusible=_fusible,
              joins=lambda G, n, p: (_fusible(G, G.inputs(n)[p]) and G.shape(G.inputs(n)[p]) == G.shape(n)
                                     and reads_pointwise(G, n, p)),
              value_operands=value_operands, host=_host)
