"""Per-sample -> batched lowering: programs are written for one sample (`W @ x + b` with x a
vector) and run on a batch (X Wᵀ + b). A value's shape is either per sample with the batch
axis first (`(B, 3)`: an input, or anything computed from it) or shared by all samples (a
param, a constant). These functions build the graph nodes that give an operation its
per-sample meaning on a batch: aligning ranks, keeping the batch axis first, matrix products
of a param with a per-sample vector, and the batch mean of a loss term.

Each takes the graph and `error(span, message, hint=None)`, which reports a mistake and does
not return (the elaborator's, which also names the layer calls being expanded).
"""
from __future__ import annotations

from typing import Callable, Tuple

from .ir import Graph
from .shapes import B, ShapeError, fmt_shape, is_batched, per_sample
from .ops import broadcast_shape

Error = Callable[..., None]


def sample_axes(G: Graph, n: int) -> Tuple[int, ...]:
    """The axes of one sample's value: all but the batch axis (all of a shared value's)."""
    s = G.shape(n)
    return tuple(range(1, len(s))) if is_batched(s) else tuple(range(len(s)))


def align(G: Graph, n: int, rank: int) -> int:
    """Pad a batched value's per-sample shape with 1s on the left up to `rank`."""
    s = G.shape(n)
    if not is_batched(s) or len(s) - 1 == rank:
        return n
    return G.add("reshape", [n], {"shape": (B,) + (1,) * (rank - len(s) + 1) + tuple(s[1:])})


def elementwise(G: Graph, op: str, x: int, y: int, span, what: str, error: Error) -> int:
    """A broadcasting binary op with per-sample semantics: per-sample shapes broadcast
    right-aligned, and the batch axis stays first."""
    sx, sy = G.shape(x), G.shape(y)
    px, py = per_sample(sx), per_sample(sy)
    try:
        out = broadcast_shape([px, py])
    except ShapeError:
        error(span, f"shapes {fmt_shape(sx)} and {fmt_shape(sy)} do not match for {what}",
              "sizes must be equal or 1 (compared from the right)")
    if is_batched(sx) or is_batched(sy):
        x = align(G, x, len(out))
        y = align(G, y, len(out))
    return G.add(op, [x, y], span=span)


def matmul(G: Graph, x: int, y: int, span, error: Error) -> int:
    """`x @ y` per sample: between shared values as written; a param with a per-sample vector
    (`W @ x`, `x @ W`) as one matrix product over the batch."""
    sx, sy = G.shape(x), G.shape(y)
    px, py = per_sample(sx), per_sample(sy)
    bx, by = is_batched(sx), is_batched(sy)

    def bad(msg=None):
        error(span, msg or f"shapes {fmt_shape(sx)} and {fmt_shape(sy)} do not fit for '@'",
              f"'A @ B' needs the last size of A ({px[-1]}) to equal the first size of B ({py[0]})"
              if msg is None else None)
    if not px or not py:
        bad(f"'@' needs vectors or matrices, got {fmt_shape(sx)} and {fmt_shape(sy)}; use '*' to scale by a number")
    if px[-1] != py[0]:
        bad()
    if bx and by:
        error(span, "'@' between two per-sample values is not supported",
              "one operand must be a param (a matrix shared by all samples)")
    if not bx and not by:
        if len(px) == 2 and len(py) == 2:
            return G.add("matmul", [x, y], span=span)
        if len(px) == 2 and len(py) == 1:
            r = G.add("matmul", [G.add("reshape", [y], {"shape": (1, py[0])}), x], {"tb": True}, span=span)
            return G.add("reshape", [r], {"shape": (px[0],)})
        if len(px) == 1 and len(py) == 2:
            r = G.add("matmul", [G.add("reshape", [x], {"shape": (1, px[0])}), y], span=span)
            return G.add("reshape", [r], {"shape": (py[1],)})
        r = G.add("matmul", [G.add("reshape", [x], {"shape": (1, px[0])}),
                             G.add("reshape", [y], {"shape": (py[0], 1)})], span=span)
        return G.add("reshape", [r], {"shape": ()})
    if by:      # W @ x: per sample [o, i] @ [i]  ->  X Wᵀ
        if len(py) != 1 or len(px) > 2:
            bad("'@' with a per-sample operand needs a vector: W @ x with W a matrix and x a vector")
        w = x if len(px) == 2 else G.add("reshape", [x], {"shape": (1, px[0])})
        r = G.add("matmul", [y, w], {"tb": True}, span=span)
        return r if len(px) == 2 else G.add("reshape", [r], {"shape": (B,)})
    # x @ W: per sample [i] @ [i, o]  ->  X W
    if len(px) != 1 or len(py) > 2:
        bad("'@' with a per-sample operand needs a vector: x @ W with x a vector and W a matrix")
    w = y if len(py) == 2 else G.add("reshape", [y], {"shape": (py[0], 1)})
    r = G.add("matmul", [x, w], span=span)
    return r if len(py) == 2 else G.add("reshape", [r], {"shape": (B,)})


def batch_mean(G: Graph, node: int, value_span, span, error: Error) -> int:
    """A loss term (a scalar per sample, written at `value_span`) as its mean over the batch,
    a scalar; the mean node carries `span`, the loss statement's."""
    s = G.shape(node)
    ps = per_sample(s)
    if any(x != 1 for x in ps):
        error(value_span, f"a loss must be a scalar per sample, got shape {fmt_shape(s)}",
              "reduce it with sum(...) or mean(...)")
    if ps:
        node = G.add("reshape", [node], {"shape": (B,) if is_batched(s) else ()})
    if is_batched(s):
        node = G.add("reduce_mean", [node], {"axes": (0,)}, span=span)
    return node
