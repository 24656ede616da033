"""A NumPy interpreter of the IR from the registry's reference implementations: the oracle
the generated kernels are tested against, and a way to evaluate any node of any graph."""
from __future__ import annotations

from typing import Dict, Iterable

import numpy as np

from .ir import Graph
from .ops import REGISTRY


def evaluate(G: Graph, feeds: Dict[str, np.ndarray], nodes: Iterable[int]) -> Dict[int, np.ndarray]:
    """Values of `nodes`; `feeds` gives every leaf needed by name (inputs, targets, params,
    state, "lr", "step")."""
    nodes = list(nodes)
    values: Dict[int, np.ndarray] = {}
    for n in G.topo(nodes):
        d = G.node(n)
        if d["op"] == "const":
            values[n] = np.float64(d["attrs"]["value"])
        elif d["op"] in ("input", "target", "param", "state"):
            values[n] = feeds[d["name"]]
        else:
            args = [values[i] for i in G.inputs(n)]
            values[n] = REGISTRY[d["op"]].ref(*args, **d["attrs"])
    return {n: values[n] for n in nodes}
