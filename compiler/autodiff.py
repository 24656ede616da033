"""Reverse-mode differentiation over the IR. The gradient is itself graph: every adjoint is a
node built by the ops' vjp rules, so forward, backward and update compile together."""
from __future__ import annotations

from typing import Dict, List, Optional

import networkx as nx

from .ir import LEAF_OPS, Graph
from .ops import REGISTRY


class MissingGradient(Exception):
    """An op on the path from a param to the loss has no vjp rule."""


def grad(G: Graph, loss: int, wrt: List[int], adjoints: Optional[Dict[int, int]] = None) -> Dict[int, int]:
    """Add the nodes of d(loss)/d(w) for each w in `wrt` (loss must be a scalar); returns w -> node.
    Adjoints of values used more than once are summed. A w the loss does not depend on gets 0.
    `adjoints`, when given, receives the adjoint of every node on the way (the math view)."""
    assert G.shape(loss) == (), "the loss must be a scalar"
    # only nodes between a w and the loss carry adjoints
    downstream = set(wrt)
    for w in wrt:
        downstream |= nx.descendants(G.g, w)
    on_path = set(G.topo([loss])) & downstream
    contributions: Dict[int, List[int]] = {loss: [G.const(1.0)]}
    adjoint: Dict[int, int] = {}
    for n in reversed(G.topo([loss])):
        if n not in contributions or n not in on_path:
            continue
        parts = contributions.pop(n)
        g = parts[0]
        for p in parts[1:]:
            g = G.add("add", [g, p])
        adjoint[n] = g
        op = G.op(n)
        if op in LEAF_OPS:
            continue
        ins = G.inputs(n)
        if not any(i in on_path for i in ins):
            continue
        spec = REGISTRY[op]
        if spec.vjp is None:
            raise MissingGradient(f"op '{op}' has no gradient rule but lies between a param and the loss")
        for i, gi in zip(ins, spec.vjp(G, n, g)):
            if gi is not None and i in on_path:
                contributions.setdefault(i, []).append(gi)
    if adjoints is not None:
        adjoints.update(adjoint)
    return {w: adjoint[w] if w in adjoint else G.add("mul", [w, G.const(0.0)]) for w in wrt}
