"""Graph -> graph rewrites, each a named function in one ordered list (PASSES), each
switchable off (`--no-pass NAME`), each leaving a graph that `ir.verify` accepts.

Every pass mutates the Graph it is given and returns the number of rewrites that fired. A
pass belongs to a phase: "forward" passes run on the forward graph before differentiation
(so the gradient is taken of the stabilized form), "train" passes on the whole train graph
(forward, backward, update), "entry" passes on the graph of each entry point (train_step,
evaluate, predict) -- the last two, fuse and memplan, annotate the graph for code generation.
An entry pass also gets the backend's `fuse.Rules` (which ops fuse, each node's kernel kind):
`run(E, ENTRY, disabled, verify, rules)`.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np

from .fuse import Rules, fuse_elementwise
from .ir import LEAF_OPS, Graph
from .ir import verify as check
from .memplan import plan_memory
from .ops import REGISTRY

Pass = Callable[[Graph], int]


def _is_const(G: Graph, n: int, value=None) -> bool:
    return G.op(n) == "const" and (value is None or G.attrs(n)["value"] == value)


# ------------------------------------------------------------------ stabilize
def stabilize(G: Graph) -> int:
    """log(softmax(z)) -> log_softmax(z): cross_entropy(softmax(z), y) then has the gradient
    softmax(z) - onehot(y). log(sigmoid(z)) -> -softplus(-z) and log(1 - sigmoid(z)) ->
    -softplus(z): binary_cross_entropy(sigmoid(z), t) stays finite for any logit.
    log(sum(exp(z))) -> logsumexp(z), max-shifted. The patterns are on the graph, so it does
    not matter how the user named or nested them (an output, a user layer, a named value)."""
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
        elif G.op(a) == "reduce_sum" and G.op(G.inputs(a)[0]) == "exp":
            (z,) = G.inputs(G.inputs(a)[0])
            axes = tuple(sorted(G.attrs(a)["axes"]))
            s = G.shape(z)
            if axes == tuple(range(len(s) - len(axes), len(s))) and 0 not in axes:
                new = G.add("logsumexp", [z], {"axes": axes}, span=G.node(n)["span"])
        if new is not None and G.shape(new) == G.shape(n):
            G.replace_uses(n, new)
            G.g.remove_node(n)
            fired += 1
    return fired


# ------------------------------------------------------------------ softmax + cross-entropy
def _row_scale(G: Graph, g: int):
    """g = c ⊙ onehot(y), c expanded along the class axis (either operand order): (c's
    expand node, the onehot node), else None. Each row of onehot(y) sums to 1, so a row sum of
    g is c itself."""
    if G.op(g) != "mul":
        return None
    a, b = G.inputs(g)
    for e, o in ((a, b), (b, a)):
        if (G.op(o) == "onehot" and G.op(e) == "expand" and G.shape(e) == G.shape(g) == G.shape(o)
                and tuple(G.attrs(e)["axes"]) == (len(G.shape(g)) - 1,)):
            return e, o
    return None


def softmax_cross_entropy(G: Graph) -> int:
    """The gradient of cross_entropy(softmax(z), y) as the lecture derives it: log_softmax's
    vjp `g − exp(log_softmax(z)) ⊙ rowsum(g)` with g = c ⊙ onehot(y) (c per row: −1/B for a
    mean) is `(softmax(z) − onehot(y)) ⊙ (−c)`, since each row of onehot(y) sums to 1. The
    softmax is the model's own node when it has one (y_hat), so the kernel reads the
    probabilities it already computed instead of exponentiating the log-softmax again."""
    fired = 0
    for n in G.topo():
        if n not in G.g or G.op(n) != "sub":
            continue
        g, m = G.inputs(n)
        if G.op(m) != "mul":
            continue
        ex, rs = G.inputs(m)
        if G.op(ex) != "exp" or G.op(rs) != "reshape":
            ex, rs = rs, ex
        if G.op(ex) != "exp" or G.op(rs) != "reshape" or G.op(G.inputs(ex)[0]) != "log_softmax":
            continue
        (s,) = G.inputs(rs)
        if G.op(s) != "reduce_sum" or G.inputs(s)[0] != g:
            continue
        hit = _row_scale(G, g)
        (L,) = G.inputs(ex)
        if hit is None or G.shape(L) != G.shape(n):
            continue
        e, onehot = hit
        (z,) = G.inputs(L)
        p = next((u for u in G.users(z) if G.op(u) == "softmax" and G.inputs(u) == [z]), None)
        if p is None:
            p = G.add("softmax", [z], span=G.node(L)["span"])
        c, like = G.inputs(e)
        scale = G.add("expand", [G.add("neg", [c]), like], dict(G.attrs(e)))
        new = G.add("mul", [G.add("sub", [p, onehot]), scale])
        G.replace_uses(n, new)
        G.g.remove_node(n)
        for old in (m, ex, rs, s, g):       # the old adjoint's nodes, when nothing else reads them
            if old in G.g and not G.users(old) and old not in G.outputs.values():
                G.g.remove_node(old)
        fired += 1
    return fired


# ------------------------------------------------------------------ simplify
def simplify(G: Graph) -> int:
    """The cross-entropy gradient of a softmax as p - onehot(y) (`softmax_cross_entropy`);
    x*1, 1*x, x+0, 0+x, x-0, x/1, -(-x) -> x, when the shape does not change; and the
    gradient mask of relu(a) = max(a, 0) reads relu's output: greater(a, 0) ->
    greater(max(a, 0), 0) (equal values), so `a` is needed only by relu and fuses into it."""
    fired = softmax_cross_entropy(G)
    for n in G.topo():
        if G.op(n) == "greater" and _is_const(G, G.inputs(n)[1], 0.0):
            a = G.inputs(n)[0]
            for u in G.users(a):
                if (G.op(u) == "maximum" and G.inputs(u)[0] == a and _is_const(G, G.inputs(u)[1], 0.0)
                        and G.shape(u) == G.shape(a)):
                    for _, v, k, d in list(G.g.out_edges(a, keys=True, data=True)):
                        if v == n:
                            G.g.remove_edge(a, v, k)
                            G.g.add_edge(u, v, arg=d["arg"])
                    fired += 1
                    break
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
def dce(G: Graph, rules: Rules = None) -> int:
    """Drop every node that no output needs, leaves included: the predict graph has no loss,
    no target and no auxiliary head. (Entry points still take every param as an argument.)"""
    live = set(G.topo(list(G.outputs.values()))) if G.outputs else set()
    dead = [n for n in G.g.nodes if n not in live]
    G.g.remove_nodes_from(dead)
    return len(dead)




# The pipeline, in order: (name, phase, pass). One line each.
PASSES: List[Tuple[str, str, Pass]] = [
    ("stabilize", "forward", stabilize),            # log-softmax, softplus, log-sum-exp forms
    ("simplify", "train", simplify),                # identities, p - onehot(y), relu mask from relu
    ("fold_constants", "train", fold_constants),    # scalar constant expressions -> constants
    ("cse", "train", cse),                          # one node per distinct computation
    ("dce", "entry", dce),                          # each entry point keeps what its outputs need
    ("fuse", "entry", fuse_elementwise),            # elementwise groups -> one loop each
    ("memplan", "entry", plan_memory),              # arena slots, reused; no allocation per step
]
PASS_NAMES = [name for name, _, _ in PASSES]
FORWARD = [(n, f) for n, ph, f in PASSES if ph == "forward"]
GRAPH = [(n, f) for n, ph, f in PASSES if ph == "train"]
ENTRY = [(n, f) for n, ph, f in PASSES if ph == "entry"]


def run(G: Graph, passes: List[Tuple[str, Pass]], disabled=(), verify: bool = False, *rules: Rules) -> Dict[str, int]:
    """Run `passes` in order (skipping `disabled`); returns how often each fired. Entry passes
    are given the backend's `rules`."""
    report = {}
    for name, fn in passes:
        if name in disabled:
            continue
        report[name] = fn(G, *rules)
        if verify:
            check(G)
    return report
