"""Graph -> graph rewrites, each a named function in one ordered list, each switchable off.

Two lists: FORWARD passes run on the forward graph before differentiation (so that the
gradient is taken of the stabilized form), GRAPH passes on the whole train graph after it.
Every pass mutates the Graph it is given and returns the number of rewrites that fired.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

from .ir import LEAF_OPS, Graph

Pass = Callable[[Graph], int]


def _is_const(G: Graph, n: int, value=None) -> bool:
    return G.op(n) == "const" and (value is None or G.attrs(n)["value"] == value)


# ------------------------------------------------------------------ stabilize
def stabilize(G: Graph) -> int:
    """log(softmax(z)) -> log_softmax(z): cross_entropy(softmax(z), y) then has the gradient
    softmax(z) - onehot(y). log(sigmoid(z)) -> -softplus(-z) and log(1 - sigmoid(z)) ->
    -softplus(z): binary_cross_entropy(sigmoid(z), t) stays finite for any logit. The
    patterns are on the graph, so it does not matter how the user named or nested them."""
    fired = 0
    for n in G.topo():
        if n not in G.g or G.op(n) != "log":
            continue
        (a,) = G.inputs(n)
        new = None
        if G.op(a) == "softmax":
            new = G.add("log_softmax", G.inputs(a), span=G.node(n)["span"])
        elif G.op(a) == "sigmoid":
            (z,) = G.inputs(a)
            new = G.add("neg", [G.add("softplus", [G.add("neg", [z])])], span=G.node(n)["span"])
        elif G.op(a) == "sub" and _is_const(G, G.inputs(a)[0], 1.0) and G.op(G.inputs(a)[1]) == "sigmoid":
            (z,) = G.inputs(G.inputs(a)[1])
            new = G.add("neg", [G.add("softplus", [z])], span=G.node(n)["span"])
        if new is not None and G.shape(new) == G.shape(n):
            G.replace_uses(n, new)
            G.g.remove_node(n)
            fired += 1
    return fired


# ------------------------------------------------------------------ simplify
def simplify(G: Graph) -> int:
    """x*1, 1*x, x+0, 0+x, x-0, x/1, -(-x) -> x, when the shape does not change."""
    fired = 0
    for n in G.topo():
        if n not in G.g:
            continue
        op = G.op(n)
        ins = G.inputs(n)
        keep = None
        if op == "mul":
            if _is_const(G, ins[1], 1.0):
                keep = ins[0]
            elif _is_const(G, ins[0], 1.0):
                keep = ins[1]
        elif op == "add":
            if _is_const(G, ins[1], 0.0):
                keep = ins[0]
            elif _is_const(G, ins[0], 0.0):
                keep = ins[1]
        elif op in ("sub", "div") and _is_const(G, ins[1], 0.0 if op == "sub" else 1.0):
            keep = ins[0]
        elif op == "neg" and G.op(ins[0]) == "neg":
            keep = G.inputs(ins[0])[0]
        if keep is not None and G.shape(keep) == G.shape(n) and G.node(keep)["dtype"] == G.node(n)["dtype"]:
            G.replace_uses(n, keep)
            G.g.remove_node(n)
            fired += 1
    return fired


# ------------------------------------------------------------------ constant folding
def fold_constants(G: Graph) -> int:
    """An op whose operands are all scalar constants becomes a constant."""
    import numpy as np
    from .ops import REGISTRY
    fired = 0
    for n in G.topo():
        if n not in G.g or G.op(n) in LEAF_OPS:
            continue
        ins = G.inputs(n)
        if ins and all(_is_const(G, i) for i in ins) and G.shape(n) == ():
            vals = [np.float64(G.attrs(i)["value"]) for i in ins]
            value = float(REGISTRY[G.op(n)].ref(*vals, **G.attrs(n)))
            c = G.const(value)
            G.replace_uses(n, c)
            G.g.remove_node(n)
            fired += 1
    return fired


# ------------------------------------------------------------------ CSE
def cse(G: Graph) -> int:
    """Nodes with the same op, attrs and operands compute the same value: keep one."""
    seen: Dict[Tuple, int] = {}
    fired = 0
    for n in G.topo():
        d = G.node(n)
        if d["op"] in LEAF_OPS and d["op"] != "const":
            continue
        key = (d["op"], repr(sorted(d["attrs"].items())), tuple(G.inputs(n)), d["shape"], d["dtype"])
        if key in seen:
            G.replace_uses(n, seen[key])
            G.g.remove_node(n)
            fired += 1
        else:
            seen[key] = n
    return fired


# ------------------------------------------------------------------ DCE
def dce(G: Graph) -> int:
    """Drop every compute/const node that no output needs. Leaves (inputs, params, state) stay."""
    live = set()
    for n in G.outputs.values():
        live.add(n)
        live |= set(G.topo([n]))
    dead = [n for n in G.g.nodes if n not in live and G.op(n) not in ("input", "target", "param", "state")]
    G.g.remove_nodes_from(dead)
    return len(dead)


FORWARD: List[Tuple[str, Pass]] = [
    ("stabilize", stabilize),
]
GRAPH: List[Tuple[str, Pass]] = [
    ("simplify", simplify),
    ("fold_constants", fold_constants),
    ("cse", cse),
    ("dce", dce),
]
PASS_NAMES = [name for name, _ in FORWARD + GRAPH]


def run(G: Graph, passes: List[Tuple[str, Pass]], disabled=(), verify: bool = False) -> Dict[str, int]:
    """Run `passes` in order (skipping `disabled`); returns how often each fired."""
    from .ir import verify as check
    report = {}
    for name, fn in passes:
        if name in disabled:
            continue
        report[name] = fn(G)
        if verify:
            check(G)
    return report
