"""Kernel grouping: which nodes of an entry point one kernel computes, and in what order.

Backend-neutral: a backend describes its ops with three questions (`Rules`), and `schedule`
answers with an ordered list of `Step`s:

  host   scalars the driver computes on the host (from lr, step, the batch size, constants);
  fused  a connected set of pointwise nodes of one shape: one loop / one kernel, whose values
         stay in registers except its `outputs`, which later steps or the caller read;
  node   any other node (a matrix product, a reduction, a row softmax, a view), alone.

Fusion merges a producer into its consumer when the consumer reads it at the same index
(`reads_pointwise`) and both have the same shape, unless that would make a cycle between steps
(a value leaving the group and coming back through another step). Steps are then ordered
topologically with the ones that write optimizer updates last, so an update can write its
param in place: every other reader of the old value has run by then.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Sequence, Set

from .ir import Graph


@dataclass
class Rules:
    """What a backend tells the grouping about its ops.

    fusable(G, n)             n can be part of a fused step
    reads_pointwise(G, n, p)  n reads its operand p at its own index (so it may fuse with it)
    value_operands(G, n)      the operands whose values n reads (not those it only takes a shape
                              from, like `expand`'s second operand or `size`'s)
    host(G, n, operands_host) n is a scalar the driver can compute on the host, given whether
                              each of its value operands is a host value
    """
    fusable: Callable[[Graph, int], bool]
    reads_pointwise: Callable[[Graph, int, int], bool]
    value_operands: Callable[[Graph, int], List[int]]
    host: Callable[[Graph, int, List[bool]], bool]


@dataclass
class Step:
    kind: str                                      # "host" | "fused" | "node"
    nodes: List[int]                               # in topological order
    outputs: List[int] = field(default_factory=list)   # values read after the step
    shape: tuple = ()


LEAVES = ("input", "target", "param", "state", "const")


def needed_nodes(G: Graph, roots: Iterable[int], rules: Rules) -> List[int]:
    """The compute nodes the roots need (following value operands only), topologically."""
    seen: Set[int] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if G.op(n) not in LEAVES:
            stack.extend(rules.value_operands(G, n))
    order = {n: i for i, n in enumerate(G.topo())}
    return sorted((n for n in seen if G.op(n) not in LEAVES), key=order.__getitem__)


def schedule(G: Graph, roots: Sequence[int], rules: Rules, late: Iterable[int] = ()) -> List[Step]:
    """The steps computing `roots`; steps holding a node of `late` (optimizer updates) run as
    late as the dependencies allow."""
    nodes = needed_nodes(G, roots, rules)
    pos = {n: i for i, n in enumerate(nodes)}
    consumers: Dict[int, List[int]] = {n: [] for n in nodes}
    for n in nodes:
        for u in rules.value_operands(G, n):
            if u in consumers:
                consumers[u].append(n)

    # -- host scalars
    host: Set[int] = set()
    for n in nodes:
        flags = [_is_host_leaf(G, u) or u in host for u in rules.value_operands(G, n)]
        if rules.host(G, n, flags):
            host.add(n)

    # -- fusion: union of pointwise producer/consumer pairs of one shape
    group: Dict[int, int] = {n: n for n in nodes if n not in host}
    members: Dict[int, Set[int]] = {n: {n} for n in group}

    def find(n):
        while group[n] != n:
            group[n] = group[group[n]]
            n = group[n]
        return n

    def creates_cycle(a: Set[int], b: Set[int]) -> bool:
        both = a | b
        stack = [c for m in both for c in consumers[m] if c not in both]
        seen: Set[int] = set()
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            for d in consumers[c]:
                if d in both:
                    return True
                stack.append(d)
        return False

    for n in nodes:
        if n in host or not rules.fusable(G, n):
            continue
        for p, u in enumerate(G.inputs(n)):
            if u not in group or u in host or not rules.fusable(G, u):
                continue
            if G.shape(u) != G.shape(n) or not rules.reads_pointwise(G, n, p):
                continue
            gu, gn = find(u), find(n)
            if gu == gn or creates_cycle(members[gu], members[gn]):
                continue
            group[gn] = gu
            members[gu] |= members.pop(gn)

    # -- steps, ordered topologically; late ones last
    late = set(late)
    roots_set = set(roots)
    steps: Dict[int, Step] = {}
    for g, ms in members.items():
        ms_sorted = sorted(ms, key=pos.__getitem__)
        kind = "fused" if rules.fusable(G, ms_sorted[0]) else "node"
        outs = [m for m in ms_sorted if m in roots_set or any(c not in ms for c in consumers[m])]
        steps[g] = Step(kind, ms_sorted, outs, G.shape(ms_sorted[0]))
    deps: Dict[int, Set[int]] = {g: set() for g in steps}
    for g, st in steps.items():
        for m in st.nodes:
            for u in rules.value_operands(G, m):
                if u in group and find(u) != g:
                    deps[g].add(find(u))
    users: Dict[int, Set[int]] = {g: set() for g in steps}
    for g, ds in deps.items():
        for d in ds:
            users[d].add(g)
    ready = [g for g, ds in deps.items() if not ds]
    ordered: List[Step] = [Step("host", [n], [n], G.shape(n)) for n in nodes if n in host]
    waiting = {g: len(ds) for g, ds in deps.items()}
    while ready:
        ready.sort(key=lambda g: (bool(late & set(steps[g].nodes)), pos[steps[g].nodes[0]]))
        g = ready.pop(0)
        ordered.append(steps[g])
        for u in users[g]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    assert len(ordered) == len(steps) + len(host), "kernel grouping made a cycle"
    return ordered


def _is_host_leaf(G: Graph, n: int) -> bool:
    d = G.node(n)
    return d["op"] == "const" or (d["op"] == "input" and d["shape"] == ())
