"""The CPU lowering table: how each registry op runs in the generated @njit code, ONE entry
per op, found by the op's name (`lowering`). An entry says which kernel the op becomes and
gives its code:

  loop       computed one element at a time inside a fused loop: `code(c, ins, attrs)` is a
             scalar expression (c: `LoopCtx`; ins: the operands' scalar expressions, built when
             read). Elementwise ops use the registry's one formula (`Op.formula`) in the CPU's
             math namespace (`MATH`); index-aware ops (onehot, expand, size) read operands at
             indices of their own. `sink`: a reduction accumulated in its operand's loop (a sum;
             divided by the count when `mean`).
  rows       a row kernel over the trailing axes (softmax family): `code(r)` says what it
             writes of each row from the pass over it (see codegen `_Rows`); `together` keys
             the row kernels that share one pass (the same rows of one operand)
  matmul     a BLAS call; a small one (`small_product`) is computed inside the fused loop
             that reads it instead (`inline`): `code` is then its element at the loop index
  view       a reshaped view of a materialized array
  transpose  a copy loop
  expr       an array expression `code(c, ins, attrs)` (c: `ExprCtx`; allocates): ops with no
             loop lowering
  call       a call of a hand-written kernel of `kernels.py` that writes into the node's
             array (a slot of the arena: allocates nothing): `code(c, ins, out, attrs, work)`
             is the statement (convolution and pooling); `scratch(G, n)` the shape of the work
             array it needs while it runs (planned in the arena too), or None

`RULES` tells the grouping (`compiler.fuse`) which nodes fuse and each node's kernel kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Hashable, List, Optional, Tuple, Union

import numpy as np

from ...fuse import Rules, Schedule
from ...fuse import fuse_elementwise as _fuse_elementwise
from ...fuse import schedule as _schedule
from ...ir import LEAF_OPS, Graph
from ...shapes import B
from ...ops import REGISTRY, dropout_threshold
from ..contract import MissingLowering

# the CPU's math namespace for the registry's scalar formulas: NumPy's functions (Numba
# compiles them on scalars), erf from the kernels module (a ufunc)
MATH = {"erf": "K.erf"}


def math_fn(name: str) -> str:
    return MATH.get(name, f"np.{name}")


@dataclass(frozen=True)
class Lowering:
    """One op on the CPU: its kernel kind (or a function (G, n) -> kind, for an op whose kind
    depends on its operands), its code (see the module doc), whether it is a sink, and for a
    loop whether its operands' expressions are built before its code runs (`eager`, in order:
    the constants they name keep their numbering) or only when read (index-aware ops)."""
    kind: Union[str, Callable[[Graph, int], str]]
    code: Optional[Callable] = None
    sink: bool = False
    mean: bool = False
    eager: bool = True
    scratch: Optional[Callable[[Graph, int], Optional[tuple]]] = None
    together: Optional[Callable[[Graph, int], Hashable]] = None     # see fuse.Rules.together

    def kind_of(self, G: Graph, n: int) -> str:
        return self.kind(G, n) if callable(self.kind) else self.kind


LOWERINGS: Dict[str, Lowering] = {}


def lowering(G: Graph, n: int) -> Lowering:
    """The entry of node n's op; MissingLowering names an op the table lacks."""
    op = G.op(n)
    if op not in LOWERINGS:
        raise MissingLowering(op, "cpu")
    return LOWERINGS[op]


# ======================================================================= what a lowering may ask
class ExprCtx:
    """What an array expression or a formula may ask about its node and operands."""

    DT = "DT"

    def __init__(self, G: Graph, node: int, const_name: Callable[[float], str]):
        self.G, self.node = G, node
        self.const = const_name          # const(0.5) -> name of a global holding DT(0.5)

    def fn(self, name: str) -> str:
        return math_fn(name)

    def in_shape(self, i: int) -> tuple:
        return self.G.shape(self.G.inputs(self.node)[i])

    def const_value(self, i: int) -> Optional[float]:
        n = self.G.inputs(self.node)[i]
        return self.G.attrs(n)["value"] if self.G.op(n) == "const" else None

    def shape_expr(self, shape: tuple, like: str) -> str:
        """A tuple expression for `shape`, reading the batch size off array `like`."""
        dims = [f"{like}.shape[0]" if d == B else str(d) for d in shape]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class LoopCtx(ExprCtx):
    """Inside a loop over `index` (the loop variables): `at(i, drop)` reads operand i at the
    loop index without the loop axes `drop` (the generator's `access`); `elem(i, idx)` reads
    operand i (computed before the loop) at the index expressions `idx`."""

    def __init__(self, G: Graph, node: int, const_name, index: List[str], at: Callable[[int, tuple], str],
                 elem: Optional[Callable[[int, List[str]], str]] = None):
        super().__init__(G, node, const_name)
        self.index, self.at, self.elem = index, at, elem


class Operands:
    """The operands' scalar expressions, each built when a lowering reads it (an index-aware
    lowering reads some operands only at indices of its own, or not at all)."""

    def __init__(self, read: Callable[[int], str], count: int):
        self._read, self._count = read, count

    def __getitem__(self, i: int) -> str:
        return self._read(i)

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        return (self._read(i) for i in range(self._count))


def size(dims) -> str:
    """A Python expression for the number of elements of `dims` (the batch axis is `B`)."""
    static = 1
    dyn = []
    for d in dims:
        if d == B:
            dyn.append("B")
        else:
            static *= d
    return " * ".join(dyn + [str(static)]) if dyn else str(static)


# ======================================================================= elementwise: the registry's formula
for _name, _op in REGISTRY.items():
    if _op.formula is not None:
        LOWERINGS[_name] = Lowering("loop", _op.formula)

# ======================================================================= index-aware loops
LOWERINGS["onehot"] = Lowering(
    "loop", lambda c, ins, at: (f"({c.const(1.0)} if {c.at(0, (len(c.index) - 1,))} == {c.index[-1]} "
                                f"else {c.const(0.0)})"), eager=False)
# broadcast g back over the reduced axes: read g at the kept index (a scalar as it is)
LOWERINGS["expand"] = Lowering(
    "loop", lambda c, ins, at: ins[0] if c.in_shape(0) == () else c.at(0, tuple(at["axes"])), eager=False)
LOWERINGS["size"] = Lowering(
    "loop", lambda c, ins, at: f"DT({size([c.in_shape(0)[t] for t in at['axes']])})", eager=False)


def flat_index(shape, index: List[str]) -> str:
    """The row-major flat index of the loop index `index` over `shape` (B the batch axis)."""
    flat = index[0] if shape else "0"
    for d, i in zip(shape[1:], index[1:]):
        flat = f"({flat} * {d} + {i})"
    return flat


# dropout's mask: the counter-based hash of (seed, step, flat index), kernels.dropout_mask
LOWERINGS["dropout_mask"] = Lowering(
    "loop", lambda c, ins, at: (f"({c.const(1.0 / (1.0 - at['rate']))} if K.dropout_keep({c.at(1, ())}, {c.at(2, ())}, "
                                f"{flat_index(c.G.shape(c.node), c.index)}, {dropout_threshold(at['rate'])}) else {c.const(0.0)})"),
    eager=False)
# the train view's operand; never reached after traingraph.view (the table is complete)
LOWERINGS["phase"] = Lowering("loop", lambda c, ins, at: ins[0])
# a reshape of a scalar is the scalar (fused); of an array, a view
LOWERINGS["reshape"] = Lowering(
    lambda G, n: "loop" if G.shape(G.inputs(n)[0]) == () else "view", lambda c, ins, at: ins[0])
# reductions accumulate inside the loop over their operand (codegen `k_loop`)
LOWERINGS["reduce_sum"] = Lowering("loop", sink=True)
LOWERINGS["reduce_mean"] = Lowering("loop", sink=True, mean=True)


# ======================================================================= row kernels (softmax family)
# Each says what it writes of a row given the shared pass over it (codegen `_Rows`): the row's
# maximum `mx`, s = sum(exp(x - mx)), then `inv` = 1/s or `lse` = mx + log(s); row kernels over
# the same rows of one operand share that pass (softmax and the log-softmax of the loss).
def _softmax_row(r) -> None:
    r.start(trailing=1, out_cols=True)
    r.keep_exp()                                   # each exp into its output column as it is summed
    r.col(f"{r.o}[r, j] *= {r.inv}")


def _log_softmax_row(r) -> None:
    r.start(trailing=1, out_cols=True)
    r.col(f"{r.o}[r, j] = {r.x}[r, j] - {r.lse}")


def _logsumexp_row(r) -> None:
    r.start(trailing=len(r.attrs["axes"]), out_cols=False)
    if r.o is None:          # a scalar logsumexp has one row; the loop ran once
        r.after(f"{r.result} = {r.lse}")
    else:
        r.row(f"{r.o}[r] = {r.lse}")


def _rows_of(trailing):
    """The key of a row kernel's pass: its operand and how many trailing axes make a row."""
    return lambda G, n: (G.inputs(n)[0], trailing(G.attrs(n)))


LOWERINGS["softmax"] = Lowering("rows", _softmax_row, together=_rows_of(lambda at: 1))
LOWERINGS["log_softmax"] = Lowering("rows", _log_softmax_row, together=_rows_of(lambda at: 1))
LOWERINGS["logsumexp"] = Lowering("rows", _logsumexp_row, together=_rows_of(lambda at: len(at["axes"])))

# ======================================================================= BLAS, views, copies
# A matrix product is a BLAS call -- unless it is small and its contraction length is known when
# the code is generated: then the fused loop that reads it computes it, one element at a time
# at its own index, as an unrolled sum (`inline`; fuse.schedule). For a few multiply-adds per
# element a BLAS call costs more than the arithmetic, and the product is never stored.
SMALL_PRODUCT = 32          # at most this many multiply-adds per element (not over the batch)...
SHORT_PRODUCT = 64          # ...or this many when the contraction is at most
SHORT_CONTRACTION = 4       # this long (measured on MLPs of 2 to 32 units, batch 32)


def _product_dims(G: Graph, n: int):
    """(rows, columns, contraction) of a matmul node."""
    a = G.shape(G.inputs(n)[0])
    at = G.attrs(n)
    m, k = (a[1], a[0]) if at.get("ta") else (a[0], a[1])
    return m, G.shape(n)[1], k


def small_product(G: Graph, n: int) -> bool:
    """A product computed inside the loop that reads it: its contraction is static and each
    element costs few multiply-adds (a layer of a few units; mnist's keep BLAS). Unrolled, a
    multiply-add is two scalar loads: a long contraction is only worth it for narrow results."""
    _, cols, k = _product_dims(G, n)
    return k != B and (k * cols <= SMALL_PRODUCT or (k <= SHORT_CONTRACTION and k * cols <= SHORT_PRODUCT))


def _product_element(c, ins, at) -> str:
    """Element [i, j] of the product (i, j: the loop's last two variables), unrolled."""
    i, j = c.index[-2], c.index[-1]
    _, _, k = _product_dims(c.G, c.node)
    a = (lambda t: c.elem(0, [str(t), i])) if at.get("ta") else (lambda t: c.elem(0, [i, str(t)]))
    b = (lambda t: c.elem(1, [j, str(t)])) if at.get("tb") else (lambda t: c.elem(1, [str(t), j]))
    return "(" + " + ".join(f"{a(t)} * {b(t)}" for t in range(k)) + ")"


LOWERINGS["matmul"] = Lowering("matmul", _product_element, eager=False)
LOWERINGS["transpose"] = Lowering("transpose")


# ======================================================================= array expressions
def _extreme(largest: bool, whole: str):
    """max/min over axes: the kept axes first, the reduced ones flattened into rows, then one
    pass per row."""
    def code(c, ins, attrs):
        s = c.in_shape(0)
        axes = sorted(attrs["axes"])
        if len(axes) == len(s):
            return f"{whole}({ins[0]})"
        kept = [i for i in range(len(s)) if i not in axes]
        perm = tuple(kept + axes)
        x = ins[0] if perm == tuple(range(len(s))) else f"np.transpose({ins[0]}, {perm})"
        if B in [s[a] for a in axes]:
            rows = f"({int(np.prod([s[i] for i in kept]))}, -1)"
        else:
            rows = f"(-1, {int(np.prod([s[a] for a in axes]))})"
        out = c.shape_expr(tuple(s[i] for i in kept), ins[0])
        return f"K.rowextreme(np.ascontiguousarray({x}).reshape({rows}), {largest}).reshape({out})"
    return code


def _index(axis: int, start: int, stop: int) -> str:
    return "[" + ":, " * axis + f"{start}:{stop}]"


def _pad(c, ins, attrs):
    s, ax = c.in_shape(0), attrs["axis"]
    parts = []
    for width in (attrs["before"], None, attrs["after"]):
        if width is None:
            parts.append(ins[0])
        elif width:
            zeros = c.shape_expr(tuple(s[:ax]) + (width,) + tuple(s[ax + 1:]), ins[0])
            parts.append(f"np.zeros({zeros}, {c.DT})")
    return parts[0] if len(parts) == 1 else f"np.concatenate(({', '.join(parts)},), axis={ax})"


LOWERINGS["reduce_max"] = Lowering("expr", _extreme(True, "np.max"))
LOWERINGS["reduce_min"] = Lowering("expr", _extreme(False, "np.min"))
LOWERINGS["concat"] = Lowering("expr", lambda c, ins, at: f"np.concatenate(({', '.join(ins)},), axis={at['axis']})")
LOWERINGS["slice"] = Lowering(
    "expr", lambda c, ins, at: f"np.ascontiguousarray({ins[0]}{_index(at['axis'], at['start'], at['stop'])})")
LOWERINGS["pad"] = Lowering("expr", _pad)


# ======================================================================= images: kernels writing into their slot
def _pair_args(*keys):
    return lambda at: ", ".join(str(v) for k in keys for v in at[k])


def _call(fn, *keys):
    args = _pair_args(*keys)
    return Lowering("call", lambda c, ins, out, at, work: f"K.{fn}({', '.join(ins)}, {out}, {args(at)})")


def _conv_dims(G: Graph, n: int):
    """(C, kh, kw, filters, Ho, Wo) of a convolution node or one of its adjoints."""
    op, (a, b) = G.op(n), G.inputs(n)
    if op == "conv2d":
        f, C, kh, kw = G.shape(b)
        ho, wo = G.shape(n)[2:]
    elif op == "conv2d_dx":
        f, C, kh, kw = G.shape(b)
        ho, wo = G.shape(a)[2:]
    else:
        C, (kh, kw) = G.shape(a)[1], G.attrs(n)["k"]
        f, ho, wo = G.shape(b)[1:]
    return C, kh, kw, f, ho, wo


def _conv_scratch(G: Graph, n: int) -> Optional[tuple]:
    """The im2col work array: the patches [C*kh*kw, B*Ho*Wo] and the [filters, B*Ho*Wo]
    operand or result of the product."""
    C, kh, kw, f, ho, wo = _conv_dims(G, n)
    return (B, (C * kh * kw + f) * ho * wo)


def _conv(fn):
    """A convolution or one of its adjoints: im2col + one BLAS product over the batch (direct
    loops were measured slower at every shape tried: bench/RESULTS.md)."""
    args = _pair_args("stride", "pad")
    return Lowering("call", lambda c, ins, out, at, work: f"K.{fn}_gemm({', '.join(ins)}, {out}, {work}, {args(at)})",
                    scratch=_conv_scratch)


LOWERINGS["conv2d"] = _conv("conv2d")
LOWERINGS["conv2d_dx"] = _conv("conv2d_dx")
LOWERINGS["conv2d_dw"] = _conv("conv2d_dw")
LOWERINGS["maxpool"] = _call("maxpool", "k", "stride")
LOWERINGS["maxpool_dx"] = _call("maxpool_dx", "k", "stride")
LOWERINGS["avgpool"] = _call("avgpool", "k", "stride")
LOWERINGS["avgpool_dx"] = _call("avgpool_dx", "k", "stride")


# ======================================================================= grouping rules
def kind(G: Graph, n: int) -> str:
    return lowering(G, n).kind_of(G, n)


def is_sink(G: Graph, n: int) -> bool:
    return G.op(n) not in LEAF_OPS and lowering(G, n).sink


def is_fusible(G: Graph, n: int) -> bool:
    """An op computed one element at a time inside a loop."""
    if G.op(n) in LEAF_OPS:
        return False
    low = lowering(G, n)
    return low.kind_of(G, n) == "loop" and not low.sink


# CPU loops index operands by NumPy broadcasting, so an operand of the node's own shape is read
# at the node's index; a reduction accumulates in the loop over its operand's shape. Every
# operand counts as a dependency (the default value_operands): conservative, and the CPU's
# loops stay as they were
def scratch(G: Graph, n: int) -> Optional[tuple]:
    """The work array n's kernel needs (im2col patches), or None."""
    if G.op(n) in LEAF_OPS:
        return None
    low = lowering(G, n)
    return low.scratch(G, n) if low.scratch is not None else None


def together(G: Graph, n: int):
    """Nodes with one key share a kernel (row kernels over the same rows of one operand)."""
    if G.op(n) in LEAF_OPS:
        return None
    low = lowering(G, n)
    return low.together(G, n) if low.together is not None else None


def inline(G: Graph, n: int) -> bool:
    """A small matrix product is computed inside the fused loop that reads it."""
    return G.op(n) == "matmul" and small_product(G, n)


RULES = Rules(fusible=is_fusible, sink=is_sink, kind=kind, scratch=scratch, together=together, inline=inline,
              joins=lambda G, n, p: is_sink(G, n) or G.shape(G.inputs(n)[p]) == G.shape(n))


def fuse_elementwise(G: Graph) -> int:
    """The `fuse` pass with the CPU's rules."""
    return _fuse_elementwise(G, RULES)


def schedule(G: Graph, roots: List[int], assigns: List[Tuple[int, int]]) -> Schedule:
    """The CPU kernels computing `roots` (see `fuse.schedule`)."""
    return _schedule(G, roots, assigns, RULES)
