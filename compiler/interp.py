"""A NumPy interpreter of the IR from the registry's reference implementations: the oracle
the generated kernels are tested against, and a way to evaluate any node of any graph (the
runtime uses it to find where a diverged training step first produced a NaN or infinity)."""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

from .ir import Graph
from .ops import REGISTRY


def run(G: Graph, feeds: Dict[str, np.ndarray], nodes: Iterable[int],
        dtype=None) -> Iterator[Tuple[int, np.ndarray]]:
    """(node, value) for every ancestor of `nodes` (and themselves), node by node in the
    graph's topological order. With `dtype` (the model's float type) constants and float
    results are kept in it, so the values are those a kernel of that type computes."""
    dt = np.dtype(dtype) if dtype is not None else None
    values: Dict[int, np.ndarray] = {}
    for n in G.topo(list(nodes)):
        d = G.node(n)
        if d["op"] == "const":
            v = np.float64(d["attrs"]["value"]) if dt is None else dt.type(d["attrs"]["value"])
        elif d["op"] in ("input", "target", "param", "state"):
            v = feeds[d["name"]]
        else:
            args = [values[i] for i in G.inputs(n)]
            with np.errstate(all="ignore"):
                v = REGISTRY[d["op"]].ref(*args, **d["attrs"])
            if dt is not None and d["dtype"] == "float":
                v = np.asarray(v).astype(dt, copy=False) if np.ndim(v) else dt.type(v)
        values[n] = v
        yield n, v


def evaluate(G: Graph, feeds: Dict[str, np.ndarray], nodes: Iterable[int], dtype=None) -> Dict[int, np.ndarray]:
    """Values of `nodes`; `feeds` gives every leaf needed by name (inputs, targets, params,
    state, "lr", "step")."""
    nodes = list(nodes)
    values = dict(run(G, feeds, nodes, dtype))
    return {n: values[n] for n in nodes}


def first_nonfinite(G: Graph, feeds: Dict[str, np.ndarray], nodes: Iterable[int],
                    dtype=None) -> Optional[Tuple[int, np.ndarray]]:
    """The first node (in topological order) among the ancestors of `nodes` whose value holds a
    NaN or an infinity, with that value; None when every value is finite. Every operand of
    that node is finite, so it is where the non-finite value is born."""
    for n, v in run(G, feeds, nodes, dtype):
        a = np.asarray(v)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            return n, a
    return None
