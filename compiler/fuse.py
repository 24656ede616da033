"""Elementwise fusion and the kernel schedule of one entry point.

`fuse_elementwise` is a pass: it groups elementwise nodes of the same shape (and the
reductions that consume them) so that code generation emits each group as ONE loop nest in
which the intermediate values are scalars: bias + activation, the activation-gradient mask,
the whole optimizer update of a param. It annotates nodes with `group` and returns how many
nodes it merged. A group is always convex (no path leaves it and comes back), so it can run
as one kernel.

`schedule` turns an entry graph into the ordered list of kernels code generation emits: one
loop per group (or per unfused node), a BLAS call per matmul, a row kernel per softmax, ...
It also decides which optimizer updates are written in place into their param/state (after
every other reader of that param has run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import networkx as nx

from .ir import LEAF_OPS, Graph

REDUCTIONS = ("reduce_sum", "reduce_mean")
ROW_OPS = ("softmax", "log_softmax", "logsumexp")
INDEXED = ("onehot", "expand", "size")      # fused with index-aware lowerings in codegen


def is_fusible(G: Graph, n: int) -> bool:
    """An op computed one element at a time inside a loop."""
    from .ops import REGISTRY
    op = G.op(n)
    if op in LEAF_OPS:
        return False
    if op in INDEXED:
        return op != "onehot" or len(G.shape(G.inputs(n)[0])) == 1
    if op == "reshape":          # a scalar put into a [1]-shaped array
        return G.shape(G.inputs(n)[0]) == ()
    spec = REGISTRY.get(op)
    return spec is not None and spec.elementwise and spec.scalar is not None


# ------------------------------------------------------------------ the pass
class _Reach:
    """Ancestor/descendant sets as bit masks, for the convexity test of a candidate group."""

    def __init__(self, G: Graph):
        self.bit = {n: 1 << i for i, n in enumerate(G.topo())}
        self.desc: Dict[int, int] = {}
        self.anc: Dict[int, int] = {}
        order = G.topo()
        for n in reversed(order):
            m = 0
            for v in G.users(n):
                m |= self.bit[v] | self.desc[v]
            self.desc[n] = m
        for n in order:
            m = 0
            for u in G.inputs(n):
                m |= self.bit[u] | self.anc[u]
            self.anc[n] = m

    def convex(self, members) -> bool:
        mb = d = a = 0
        for m in members:
            mb |= self.bit[m]
            d |= self.desc[m]
            a |= self.anc[m]
        return (d & a & ~mb) == 0


def fuse_elementwise(G: Graph) -> int:
    """Group fusible nodes of equal shape with their fusible operands, and attach each
    reduction to the group of its operand. Annotates node['group']; returns the number of
    nodes that joined another node's group."""
    for n in G.g.nodes:
        G.node(n).pop("group", None)
    reach = _Reach(G)
    group: Dict[int, int] = {}
    members: Dict[int, set] = {}
    next_id = 0
    merged = 0
    for n in G.topo():
        fus = is_fusible(G, n)
        red = G.op(n) in REDUCTIONS
        if not (fus or red):
            continue
        ins = G.inputs(n)
        if fus:
            s = G.shape(n)
            cands = {group[o] for o in ins if o in group and G.shape(o) == s and not _is_sink(G, o)}
        else:
            x = ins[0]
            cands = {group[x]} if x in group and not _is_sink(G, x) else set()
        chosen = None
        if cands:
            union = set().union(*(members[c] for c in cands)) | {n}
            if _valid(G, reach, union):
                chosen = sorted(cands)
            else:       # try the largest single candidate group
                for c in sorted(cands, key=lambda c: -len(members[c])):
                    if _valid(G, reach, members[c] | {n}):
                        chosen = [c]
                        break
        if chosen:
            keep = chosen[0]
            for c in chosen[1:]:
                for m in members[c]:
                    group[m] = keep
                members[keep] |= members.pop(c)
            members[keep].add(n)
            group[n] = keep
            merged += 1
        else:
            group[n] = next_id
            members[next_id] = {n}
            next_id += 1
    for n, gid in group.items():
        G.node(n)["group"] = gid
    return merged


def _valid(G: Graph, reach: "_Reach", members: set) -> bool:
    """A group can run as one loop: convex, and no member reads a reduction of the same group
    (the loop would read a sum it is still accumulating, e.g. expand(reduce_sum(e), like=e))."""
    if not reach.convex(members):
        return False
    return not any(_is_sink(G, o) and o in members for m in members for o in G.inputs(m))


def _is_sink(G: Graph, n: int) -> bool:
    return G.op(n) in REDUCTIONS


# ------------------------------------------------------------------ kernels and their order
@dataclass
class Kernel:
    """kind: loop (a fused group: `nodes` in order, reductions among them are sinks), matmul,
    rows (softmax family over the last axis), view (reshape), transpose, expr (the registry's
    array expression: ops without a loop lowering)."""
    kind: str
    nodes: List[int]
    shape: tuple = ()

    @property
    def node(self) -> int:
        return self.nodes[0]


@dataclass
class Schedule:
    kernels: List[Kernel]
    kernel_of: Dict[int, int]               # node -> index in kernels
    inplace: Dict[int, int] = field(default_factory=dict)   # value node -> leaf it is written into
    copies: List[Tuple[int, int]] = field(default_factory=list)  # (leaf, value) copied at the end


def _kind(G: Graph, n: int) -> str:
    op = G.op(n)
    if is_fusible(G, n) or op in REDUCTIONS:
        return "loop"
    if op == "matmul":
        return "matmul"
    if op in ROW_OPS and len(G.shape(G.inputs(n)[0])) >= 1:
        return "rows"
    if op == "reshape":
        return "view"       # of a materialized array (a scalar source is fused above)
    if op == "transpose":
        return "transpose"
    return "expr"


def schedule(G: Graph, roots: List[int], assigns: List[Tuple[int, int]]) -> Schedule:
    """The kernels computing `roots` (and the values of `assigns`), in an order that respects
    every dependency and runs each in-place update after the other readers of its leaf."""
    order = G.topo(roots) if roots else []
    kernels: List[Kernel] = []
    kernel_of: Dict[int, int] = {}
    by_group: Dict[int, int] = {}
    for n in order:
        if G.op(n) in LEAF_OPS:
            continue
        kind = _kind(G, n)
        gid = G.node(n).get("group")
        if kind == "loop" and gid is not None and gid in by_group:
            k = by_group[gid]
            kernels[k].nodes.append(n)
        else:
            shape = G.shape(G.inputs(n)[0]) if G.op(n) in REDUCTIONS else G.shape(n)
            kernels.append(Kernel(kind, [n], shape if kind == "loop" else G.shape(n)))
            k = len(kernels) - 1
            if kind == "loop" and gid is not None:
                by_group[gid] = k
        kernel_of[n] = k
    # a group whose members all are reductions of one input keeps that input's shape; a group
    # with elementwise members iterates over their (common) shape
    for K in kernels:
        if K.kind == "loop":
            elem = [m for m in K.nodes if G.op(m) not in REDUCTIONS]
            if elem:
                K.shape = G.shape(elem[0])
    kg = nx.DiGraph()
    kg.add_nodes_from(range(len(kernels)))
    for k, K in enumerate(kernels):
        for m in K.nodes:
            for i in G.inputs(m):
                j = kernel_of.get(i)
                if j is not None and j != k:
                    kg.add_edge(j, k)
    # in-place updates: the value is written straight into the leaf, inside its loop
    inplace: Dict[int, int] = {}
    copies: List[Tuple[int, int]] = []
    returns = set(roots) - {v for _, v in assigns}
    for leaf, v in assigns:
        k = kernel_of.get(v)
        ok = (k is not None and kernels[k].kind == "loop" and G.op(v) not in REDUCTIONS and G.shape(v) != ()
              and G.shape(v) == G.shape(leaf) == kernels[k].shape and v not in inplace
              and v not in returns and G.op(leaf) in ("param", "state"))
        if ok:
            readers = {kernel_of[u] for u in _readers(G, leaf) if u in kernel_of} - {k}
            added = [(r, k) for r in readers if not kg.has_edge(r, k)]
            kg.add_edges_from(added)
            if nx.is_directed_acyclic_graph(kg):
                inplace[v] = leaf
                continue
            kg.remove_edges_from(added)
        copies.append((leaf, v))
    first = {k: min(K.nodes) for k, K in enumerate(kernels)}
    topo = list(nx.lexicographical_topological_sort(kg, key=lambda k: first[k]))
    remap = {old: new for new, old in enumerate(topo)}
    kernels = [kernels[k] for k in topo]
    kernel_of = {n: remap[k] for n, k in kernel_of.items()}
    return Schedule(kernels, kernel_of, inplace, copies)


def _readers(G: Graph, leaf: int) -> List[int]:
    """Nodes that read `leaf`, directly or through reshape views of it."""
    out, todo = [], [leaf]
    while todo:
        x = todo.pop()
        for u in G.users(x):
            out.append(u)
            if G.op(u) == "reshape":
                todo.append(u)
    return out


def entry_roots(G: Graph):
    """An entry graph's outputs as (losses, returns, assigns): "loss:NAME" terms, "output",
    and "update:LEAF" values (leaf node, value node)."""
    leaves = {G.node(n)["name"]: n for n in G.g.nodes if G.op(n) in ("param", "state")}
    losses = [n for k, n in G.outputs.items() if k.startswith("loss:")]
    returns = [G.outputs["output"]] if "output" in G.outputs else []
    assigns = [(leaves[k.split(":", 1)[1]], n) for k, n in G.outputs.items() if k.startswith("update:")]
    return losses, returns, assigns
