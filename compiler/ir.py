"""The IR: a networkx MultiDiGraph of primitive ops over batched tensors.

Node attributes (the contract of DESIGN.md):
  op     name of a primitive in the registry (`compiler.ops.REGISTRY`), or one of the leaf ops
         "input", "target", "param", "state", "const"
  attrs  dict of the op's static attributes (axes, transpose flags, a constant's value, ...)
  shape  tuple; a batched value has the symbol `B` as its first axis (programs are written
         per sample and the compiler adds the batch axis)
  dtype  "float" (the model's float type, chosen at code generation) or "int" (class labels)
  span   the source span it came from (dsl.ast.Span) or None
  role   input | target | param | state | const | compute
  name   the user-visible name of leaves (params, states, inputs), else None
Edge attribute: `arg`, the operand position (a node may use the same value twice: `x * x`).
Graph attribute `outputs`: name -> node id of the values the stages below read
(e.g. "loss", "loss:main", "output", "update:W_h").
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import networkx as nx

from .ops import REGISTRY
from .shapes import Shape

LEAF_OPS = ("input", "target", "param", "state", "const")


class Graph:
    """A thin builder over `nx.MultiDiGraph`; every node is created through `add`."""

    def __init__(self, g: Optional[nx.MultiDiGraph] = None):
        self.g = g if g is not None else nx.MultiDiGraph(outputs={})
        self._next = max(self.g.nodes, default=-1) + 1
        self._consts: Dict[Tuple[float, str], int] = {}

    # ------------------------------------------------------------ construction
    def add(self, op: str, inputs: Iterable[int] = (), attrs: Optional[dict] = None, *,
            shape: Optional[Shape] = None, dtype: Optional[str] = None, role: str = "compute",
            span=None, name: Optional[str] = None) -> int:
        inputs = list(inputs)
        attrs = dict(attrs or {})
        if shape is None or dtype is None:
            spec = REGISTRY[op]
            in_shapes = [self.shape(i) for i in inputs]
            if shape is None:
                shape = tuple(spec.shape(in_shapes, attrs))
            if dtype is None:
                dtype = spec.dtype
        n = self._next
        self._next += 1
        self.g.add_node(n, op=op, attrs=attrs, shape=tuple(shape), dtype=dtype, span=span,
                        role=role, name=name)
        for pos, i in enumerate(inputs):
            self.g.add_edge(i, n, arg=pos)
        return n

    def leaf(self, op: str, name: str, shape: Shape, dtype: str = "float", span=None,
             attrs: Optional[dict] = None) -> int:
        role = op if op != "const" else "const"
        return self.add(op, (), attrs or {}, shape=shape, dtype=dtype, role=role, span=span,
                        name=name)

    def const(self, value: float) -> int:
        """A scalar constant, shared between its uses."""
        key = (float(value), "float")
        if self._consts.get(key) not in self.g:      # not made yet, or removed by a pass
            self._consts[key] = self.add("const", (), {"value": float(value)}, shape=(),
                                         dtype="float", role="const")
        return self._consts[key]

    # ------------------------------------------------------------ queries
    def node(self, n: int) -> dict:
        return self.g.nodes[n]

    def op(self, n: int) -> str:
        return self.g.nodes[n]["op"]

    def attrs(self, n: int) -> dict:
        return self.g.nodes[n]["attrs"]

    def shape(self, n: int) -> Shape:
        return self.g.nodes[n]["shape"]

    def inputs(self, n: int) -> List[int]:
        """Operands of n in argument order."""
        edges = sorted(self.g.in_edges(n, data="arg"), key=lambda e: e[2])
        return [u for u, _, _ in edges]

    def users(self, n: int) -> List[int]:
        return sorted({v for _, v in self.g.out_edges(n)})

    @property
    def next_id(self) -> int:
        """The id the next node will get (ids only grow: nodes added later have larger ids)."""
        return self._next

    # ------------------------------------------------------------ graph metadata
    # Stored in the networkx graph's own dict (so `copy` carries it), read and written only
    # through these typed properties.
    @property
    def outputs(self) -> Dict[str, int]:
        """Named roots: "loss:NAME" per loss term, "loss" (their sum), "output", "update:..."."""
        return self.g.graph.setdefault("outputs", {})

    @property
    def entry(self) -> Optional[str]:
        """The entry point this graph was cut for (train_step, evaluate, predict), or None."""
        return self.g.graph.get("entry")

    @entry.setter
    def entry(self, name: str) -> None:
        self.g.graph["entry"] = name

    @property
    def backward_from(self) -> Optional[int]:
        """The first node id of the gradient (None before autodiff): ids only grow."""
        return self.g.graph.get("backward_from")

    @backward_from.setter
    def backward_from(self, n: int) -> None:
        self.g.graph["backward_from"] = n

    @property
    def update_from(self) -> Optional[int]:
        """The first node id of the optimizer's update (None before it is added)."""
        return self.g.graph.get("update_from")

    @update_from.setter
    def update_from(self, n: int) -> None:
        self.g.graph["update_from"] = n

    @property
    def memplan(self):
        """The memory plan of an entry graph (`memplan.MemoryPlan`), or None without one."""
        return self.g.graph.get("memplan")

    @memplan.setter
    def memplan(self, plan) -> None:
        self.g.graph["memplan"] = plan

    def cut(self, entry: str, outputs: Dict[str, int]) -> "Graph":
        """A copy of this graph for one entry point: the given outputs, the same phase marks."""
        E = self.copy()
        E.g.graph = {"outputs": dict(outputs), "entry": entry,
                     **{k: self.g.graph[k] for k in ("backward_from", "update_from") if k in self.g.graph}}
        return E

    def nodes_with(self, **kv) -> List[int]:
        return [n for n, d in self.g.nodes(data=True) if all(d.get(k) == v for k, v in kv.items())]

    def topo(self, roots: Optional[Iterable[int]] = None) -> List[int]:
        """Nodes in a deterministic topological order; with `roots`, only their ancestors."""
        if roots is None:
            sub = self.g
        else:
            keep = set()
            for r in roots:
                keep.add(r)
                keep |= nx.ancestors(self.g, r)
            sub = self.g.subgraph(keep)
        return list(nx.lexicographical_topological_sort(sub))

    # ------------------------------------------------------------ rewriting
    def replace_uses(self, old: int, new: int) -> None:
        """Point every use of `old` (and every output naming it) at `new`."""
        for _, v, k, d in list(self.g.out_edges(old, keys=True, data=True)):
            self.g.remove_edge(old, v, k)
            self.g.add_edge(new, v, arg=d["arg"])
        for key, n in list(self.outputs.items()):
            if n == old:
                self.outputs[key] = new

    def copy(self) -> "Graph":
        return Graph(self.g.copy())


def verify(graph: Graph) -> None:
    """Check the IR's invariants; raises AssertionError naming the first broken one."""
    g = graph.g
    assert nx.is_directed_acyclic_graph(g), "the graph has a cycle"
    for n, d in g.nodes(data=True):
        for key in ("op", "attrs", "shape", "dtype", "role"):
            assert key in d, f"node {n} lacks '{key}'"
        op = d["op"]
        ins = graph.inputs(n)
        args = sorted(a for _, _, a in g.in_edges(n, data="arg"))
        assert args == list(range(len(ins))), f"node {n} ({op}) has operand positions {args}"
        if op in LEAF_OPS:
            assert not ins, f"leaf node {n} ({op}) has operands"
            assert d["role"] == op or (op == "const" and d["role"] == "const"), \
                f"leaf node {n} has role {d['role']} for op {op}"
            continue
        assert op in REGISTRY, f"node {n} has unknown op '{op}'"
        spec = REGISTRY[op]
        if spec.arity is not None:
            assert len(ins) == spec.arity, f"node {n} ({op}) has {len(ins)} operands, wants {spec.arity}"
        want = tuple(spec.shape([graph.shape(i) for i in ins], d["attrs"]))
        assert want == d["shape"], f"node {n} ({op}) has shape {d['shape']}, its rule gives {want}"
    for key, n in graph.outputs.items():
        assert n in g, f"output '{key}' names a missing node {n}"
