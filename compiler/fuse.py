"""Fusion: which nodes of an entry point run as one loop (CPU) or one kernel (CUDA), and in
what order. One grouping algorithm for both backends; a backend describes its ops with `Rules`.

`group` is the algorithm. In topological order, a node the backend can compute one element at
a time (`fusible`) joins the groups of the operands it may share a loop with (`joins`: same
index space), and a reduction the backend accumulates inside the loop of its operand (`sink`)
joins that operand's group. Every merge keeps two invariants, so a group can always run as one
loop: it is convex (no path leaves it and comes back: that would need a kernel of another
group in the middle), and no member reads a sink of its own group (it would read a sum that is
still accumulating, e.g. expand(reduce_sum(e), like=e)).

  * CPU (`backend/cpu/lowering.RULES`): the `fuse` pass annotates node["group"] of each entry
    graph, and `schedule` turns it into `Kernel`s for the CPU code generator and memplan: one
    loop per group (with its reductions as sinks), a BLAS call per matmul, a row kernel per
    softmax, ... (each node's kernel kind is its entry in the CPU lowering table)
  * CUDA (`backend/cuda/lowering.RULES`): `steps` groups while it schedules (the backend lowers one graph
    for all entry points): pointwise nodes only, no sinks (a reduction is a hand-written
    kernel), and scalars of lr, step, the batch size and constants computed on the host.

With the pass switched off (`--no-pass fuse`) every node is its own loop / kernel on both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, Iterable, List, Optional, Sequence, Set, Tuple

import networkx as nx

from .ir import LEAF_OPS, Graph


# ------------------------------------------------------------------ the rules of a backend
@dataclass
class Rules:
    """What a backend tells the grouping about its ops.

    fusible(G, n)             n is computed one element at a time inside a fused loop
    joins(G, n, p)            n may share a loop with its operand p (asked when n is fusible
                              or a sink and p is in a group)
    sink(G, n)                n is a reduction accumulated inside the loop of its operand,
                              which ends there (no member of that loop may read it)
    value_operands(G, n)      the operands whose values n reads (not those it only takes a
                              shape from, like `expand`'s second operand)
    host(G, n, operands_host) n is a scalar the driver computes on the host, given whether
                              each of its value operands is a host value
    kind(G, n)                the kernel kind of n in a `schedule` (loop, matmul, rows, view,
                              transpose, expr: the CPU's kernels)
    scratch(G, n)             the shape of a work array n's kernel needs while it runs (the
                              patches of an im2col convolution), or None; planned in the arena
    together(G, n)            a key (or None): nodes of a kernel kind other than loop with one
                              key run as ONE kernel, at the first one's place (the CPU's row
                              kernels over one operand: softmax and log-softmax share a pass);
                              the key must name all the operands they read
    inline(G, n)              n's kernel (a small matrix product: the CPU's) may instead be
                              computed one element at a time inside the one fused loop that
                              reads it, at that loop's index (`Kernel.pre`; see `schedule`)
    """
    fusible: Callable[[Graph, int], bool]
    joins: Callable[[Graph, int, int], bool]
    sink: Callable[[Graph, int], bool] = lambda G, n: False
    value_operands: Callable[[Graph, int], List[int]] = lambda G, n: G.inputs(n)
    host: Callable[[Graph, int, List[bool]], bool] = lambda G, n, flags: False
    kind: Callable[[Graph, int], str] = lambda G, n: "loop"
    scratch: Callable[[Graph, int], Optional[tuple]] = lambda G, n: None
    together: Callable[[Graph, int], Optional[Hashable]] = lambda G, n: None
    inline: Callable[[Graph, int], bool] = lambda G, n: False


# ------------------------------------------------------------------ the grouping algorithm
class _Reach:
    """Ancestor/descendant sets within `nodes` (topologically ordered) as bit masks, for the
    convexity test; dependencies are the value operands (reading only an operand's shape is
    no reason to run after it)."""

    def __init__(self, G: Graph, nodes: Sequence[int], rules: Rules):
        self.bit = {n: 1 << i for i, n in enumerate(nodes)}
        self.desc: Dict[int, int] = {}
        self.anc: Dict[int, int] = {}
        users: Dict[int, List[int]] = {n: [] for n in nodes}
        for n in nodes:
            m = 0
            for u in (rules.value_operands(G, n) if G.op(n) not in LEAF_OPS else ()):
                if u in self.bit:
                    m |= self.bit[u] | self.anc[u]
                    users[u].append(n)
            self.anc[n] = m
        for n in reversed(nodes):
            m = 0
            for v in users[n]:
                m |= self.bit[v] | self.desc[v]
            self.desc[n] = m

    def convex(self, members) -> bool:
        mb = d = a = 0
        for m in members:
            mb |= self.bit[m]
            d |= self.desc[m]
            a |= self.anc[m]
        return (d & a & ~mb) == 0


def group(G: Graph, rules: Rules, nodes: Sequence[int]) -> Tuple[Dict[int, int], int]:
    """Groups of `nodes` (topologically ordered): node -> group id for every fusible node and
    sink among them, and the number of nodes that joined another node's group."""
    reach = _Reach(G, nodes, rules)
    gid: Dict[int, int] = {}
    members: Dict[int, Set[int]] = {}
    next_id = merged = 0
    for n in nodes:
        if not (rules.fusible(G, n) or rules.sink(G, n)):
            continue
        cands = {gid[u] for p, u in enumerate(G.inputs(n))
                 if u in gid and not rules.sink(G, u) and rules.joins(G, n, p)}
        chosen = None
        if cands:
            if _valid(G, rules, reach, set().union(*(members[c] for c in cands)) | {n}):
                chosen = sorted(cands)
            else:       # try the largest single candidate group
                for c in sorted(cands, key=lambda c: -len(members[c])):
                    if _valid(G, rules, reach, members[c] | {n}):
                        chosen = [c]
                        break
        if chosen:
            keep = chosen[0]
            for c in chosen[1:]:
                for m in members[c]:
                    gid[m] = keep
                members[keep] |= members.pop(c)
            merged += 1
        else:
            keep, next_id = next_id, next_id + 1
            members[keep] = set()
        members[keep].add(n)
        gid[n] = keep
    return gid, merged


def _valid(G: Graph, rules: Rules, reach: _Reach, members: Set[int]) -> bool:
    """A group can run as one loop: convex, and no member reads a sink of the same group."""
    if not reach.convex(members):
        return False
    return not any(o in members and rules.sink(G, o) for m in members for o in G.inputs(m))


def fuse_elementwise(G: Graph, rules: Rules) -> int:
    """The `fuse` pass (an entry graph): annotates node['group'] with the groups of the
    backend's `rules`; returns the number of nodes that joined another node's group."""
    for n in G.g.nodes:
        G.node(n).pop("group", None)
    gid, merged = group(G, rules, G.topo())
    for n, g in gid.items():
        G.node(n)["group"] = g
    return merged


# ------------------------------------------------------------------ CPU: kernels and their order
@dataclass
class Kernel:
    """kind: loop (a fused group: `nodes` in order, reductions among them are sinks), matmul,
    rows (softmax family over the last axis), view (reshape), transpose, expr (an array
    expression: ops without a loop lowering). See the CPU lowering table."""
    kind: str
    nodes: List[int]
    shape: tuple = ()
    pre: List[int] = field(default_factory=list)    # loop: products computed inside it (Rules.inline)

    @property
    def node(self) -> int:
        return self.nodes[0]


@dataclass
class Schedule:
    kernels: List[Kernel]
    kernel_of: Dict[int, int]               # node -> index in kernels
    inplace: Dict[int, int] = field(default_factory=dict)   # value node -> leaf it is written into
    copies: List[Tuple[int, int]] = field(default_factory=list)  # (leaf, value) copied at the end
    sinks: Set[int] = field(default_factory=set)             # reductions accumulated in their loop


def schedule(G: Graph, roots: List[int], assigns: List[Tuple[int, int]], rules: Rules) -> Schedule:
    """The kernels computing `roots` (and the values of `assigns`), in an order that respects
    every dependency and runs each in-place update after the other readers of its leaf; each
    node's kernel kind and whether it is a sink come from the backend's `rules`."""
    order = G.topo(roots) if roots else []
    kernels: List[Kernel] = []
    kernel_of: Dict[int, int] = {}
    by_group: Dict[int, int] = {}
    by_key: Dict[tuple, int] = {}
    sinks: Set[int] = set()
    for n in order:
        if G.op(n) in LEAF_OPS:
            continue
        kind = rules.kind(G, n)
        if kind == "loop" and rules.sink(G, n):
            sinks.add(n)
        gid = G.node(n).get("group")
        key = (kind, rules.together(G, n)) if kind != "loop" else (kind, None)
        if kind == "loop" and gid is not None and gid in by_group:
            k = by_group[gid]
            kernels[k].nodes.append(n)
        elif key[1] is not None and key in by_key:
            k = by_key[key]
            kernels[k].nodes.append(n)
        else:
            shape = G.shape(G.inputs(n)[0]) if n in sinks else G.shape(n)
            kernels.append(Kernel(kind, [n], shape if kind == "loop" else G.shape(n)))
            k = len(kernels) - 1
            if kind == "loop" and gid is not None:
                by_group[gid] = k
            if key[1] is not None:
                by_key[key] = k
        kernel_of[n] = k
    # a group whose members all are reductions of one input keeps that input's shape; a group
    # with elementwise members iterates over their (common) shape
    for K in kernels:
        if K.kind == "loop":
            elem = [m for m in K.nodes if m not in sinks]
            if elem:
                K.shape = G.shape(elem[0])
    kernels, kernel_of = _inline(G, kernels, kernel_of, set(roots), rules)
    kg = nx.DiGraph()
    kg.add_nodes_from(range(len(kernels)))
    for k, K in enumerate(kernels):
        for m in K.pre + K.nodes:
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
        ok = (k is not None and kernels[k].kind == "loop" and v not in sinks and G.shape(v) != ()
              and G.shape(v) == G.shape(leaf) == kernels[k].shape and v not in inplace
              and v not in returns and G.op(leaf) in ("param", "state"))
        # (a product inlined into loop k reads the leaf at other indices than the loop's)
        ok = ok and not any(u in kernels[k].pre for u in _readers(G, leaf))
        if ok:
            readers = {kernel_of[u] for u in _readers(G, leaf) if u in kernel_of} - {k}
            added = [(r, k) for r in readers if not kg.has_edge(r, k)]
            kg.add_edges_from(added)
            if nx.is_directed_acyclic_graph(kg):
                inplace[v] = leaf
                continue
            kg.remove_edges_from(added)
        copies.append((leaf, v))
    first = {k: min(K.pre + K.nodes) for k, K in enumerate(kernels)}
    topo = list(nx.lexicographical_topological_sort(kg, key=lambda k: first[k]))
    remap = {old: new for new, old in enumerate(topo)}
    kernels = [kernels[k] for k in topo]
    kernel_of = {n: remap[k] for n, k in kernel_of.items()}
    return Schedule(kernels, kernel_of, inplace, copies, sinks)


def _inline(G: Graph, kernels: List[Kernel], kernel_of: Dict[int, int], roots: Set[int], rules: Rules):
    """Kernels of one node that `rules.inline` allows (small matrix products) whose users all
    are in ONE loop kernel over the product's shape (a group of the fuse pass): computed in
    that loop, as its `pre`, one element at the loop's index, instead of on their own. A
    value the entry point returns stays a kernel of its own. Returns the kernels left and
    each node's kernel."""
    gone: Set[int] = set()
    for k, K in enumerate(kernels):
        n = K.node
        if K.kind == "loop" or len(K.nodes) != 1 or n in roots or not rules.inline(G, n):
            continue
        users = {kernel_of.get(u) for u in G.users(n)}
        if len(users) != 1 or None in users:
            continue
        j = users.pop()
        L = kernels[j]
        if L.kind != "loop" or L.shape != G.shape(n) or G.node(L.node).get("group") is None:
            continue
        L.pre.append(n)
        kernel_of[n] = j
        gone.add(k)
    if not gone:
        return kernels, kernel_of
    keep = [k for k in range(len(kernels)) if k not in gone]
    remap = {old: new for new, old in enumerate(keep)}
    return [kernels[k] for k in keep], {n: remap[k] for n, k in kernel_of.items()}


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
    """An entry graph's outputs as (losses, returns, assigns): "loss:NAME" terms, "output"
    (then grad_step's "grad:NAME" gradients), and "update:LEAF" values (leaf node, value node)."""
    leaves = {G.node(n)["name"]: n for n in G.g.nodes if G.op(n) in ("param", "state")}
    losses = [n for k, n in G.outputs.items() if k.startswith("loss:")]
    returns = [G.outputs["output"]] if "output" in G.outputs else []
    returns += [n for k, n in G.outputs.items() if k.startswith("grad:")]
    assigns = [(leaves[k.split(":", 1)[1]], n) for k, n in G.outputs.items() if k.startswith("update:")]
    return losses, returns, assigns


# ------------------------------------------------------------------ CUDA: steps and their order
@dataclass
class Step:
    """host: a scalar the driver computes; fused: a group, one generated kernel whose values
    stay in registers except its `outputs` (read by later steps or the caller); node: any other
    node (a matrix product, a reduction, a row softmax, a view), alone."""
    kind: str                                      # "host" | "fused" | "node"
    nodes: List[int]                               # in topological order
    outputs: List[int] = field(default_factory=list)
    shape: tuple = ()


def needed_nodes(G: Graph, roots: Iterable[int], rules: Rules) -> List[int]:
    """The compute nodes the roots need (following value operands only), topologically."""
    seen: Set[int] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if G.op(n) not in LEAF_OPS:
            stack.extend(rules.value_operands(G, n))
    order = {n: i for i, n in enumerate(G.topo())}
    return sorted((n for n in seen if G.op(n) not in LEAF_OPS), key=order.__getitem__)


def steps(G: Graph, roots: Sequence[int], rules: Rules, late: Iterable[int] = (), fuse: bool = True) -> List[Step]:
    """The steps computing `roots`: host scalars first, then the groups of `group` (every node
    alone when `fuse` is false) in topological order, those holding a node of `late`
    (optimizer updates, which may then write their param in place) as late as possible."""
    nodes = needed_nodes(G, roots, rules)
    pos = {n: i for i, n in enumerate(nodes)}
    consumers: Dict[int, List[int]] = {n: [] for n in nodes}
    for n in nodes:
        for u in rules.value_operands(G, n):
            if u in consumers:
                consumers[u].append(n)
    host: Set[int] = set()
    for n in nodes:
        flags = [_is_host_leaf(G, u) or u in host for u in rules.value_operands(G, n)]
        if rules.host(G, n, flags):
            host.add(n)
    device = [n for n in nodes if n not in host]
    gid = group(G, rules, device)[0] if fuse else {}
    members: Dict[object, List[int]] = {}
    for n in device:                   # a node outside every group is a step of its own
        members.setdefault(gid.get(n, ("alone", n)), []).append(n)
    step_of = {n: g for g, ms in members.items() for n in ms}
    roots_set = set(roots)
    by_group: Dict[object, Step] = {}
    for g, ms in members.items():
        kind = "fused" if rules.fusible(G, ms[0]) else "node"
        outs = [m for m in ms if m in roots_set or any(step_of[c] != g for c in consumers[m])]
        by_group[g] = Step(kind, ms, outs, G.shape(ms[0]))
    kg = nx.DiGraph()
    kg.add_nodes_from(members)
    for g, ms in members.items():
        for m in ms:
            for u in rules.value_operands(G, m):
                if u in step_of and step_of[u] != g:
                    kg.add_edge(step_of[u], g)
    late = set(late)
    key = {g: (any(m in late for m in ms), pos[ms[0]]) for g, ms in members.items()}
    ordered = [Step("host", [n], [n], G.shape(n)) for n in nodes if n in host]
    return ordered + [by_group[g] for g in nx.lexicographical_topological_sort(kg, key=key.__getitem__)]


def _is_host_leaf(G: Graph, n: int) -> bool:
    d = G.node(n)
    return d["op"] == "const" or (d["op"] == "input" and d["shape"] == ())
