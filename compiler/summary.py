"""`netc summary`: the model as written, one row per statement (input, param, definition or
layer call, loss term), with its output shape per sample, the params it creates (names,
shapes, counts) and its forward FLOPs per sample; totals, and the FLOPs of a whole train step
(forward, backward and the optimizer's update).

Which nodes a row owns: the rows are visited in the order they were elaborated (the id of the
node each one defines; ids only grow), and each owns its value's ancestors that no earlier row
owns. So a definition owns the ops written in it (and in the layers it calls), a param belongs
to the first definition that uses it, and a rewrite of the forward passes (log(softmax) ->
log_softmax) belongs to the row it serves.

FLOPs (one table, `FLOPS`, keyed by registry op name): a matrix product of m x k by k x n is
2·m·k·n (a multiply and an add each); every elementwise op is 1 per output element (exp and
sigmoid too, as fvcore and ptflops count activations); a reduction is 1 per input element;
softmax 3 per element (exp, sum, divide), log_softmax 3 per element and 1 per row (the log),
logsumexp 2 per element and 1 per result; only what a train step computes counts (a softmax
whose cross-entropy was rewritten to log_softmax costs nothing unless it is the output); data movement (reshape, transpose, expand, concat,
slice, pad, onehot, size) is 0. A count is linear in the batch size B: the part proportional
to B is "per sample", the rest (the optimizer's update, a weight penalty) is "per step".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import networkx as nx
import numpy as np

from netc.dsl import ast as A

from .ir import LEAF_OPS, Graph
from .ops import REGISTRY
from .shapes import B
from .values import ModelIR


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _matmul(ins, out, attrs) -> int:
    a = ins[0]
    k = a[0] if attrs.get("ta") else a[1]
    return 2 * _prod(out) * k


def _rows(ins, out, attrs) -> int:
    return _prod(out) // out[-1] if len(out) else 1


# op -> FLOPs(concrete operand shapes, concrete output shape, attrs); elementwise ops are 1 per
# output element and need no entry.
FLOPS: Dict[str, Callable] = {
    "matmul": _matmul,
    "reduce_sum": lambda ins, out, a: _prod(ins[0]), "reduce_mean": lambda ins, out, a: _prod(ins[0]),
    "reduce_max": lambda ins, out, a: _prod(ins[0]), "reduce_min": lambda ins, out, a: _prod(ins[0]),
    "softmax": lambda ins, out, a: 3 * _prod(out),
    "log_softmax": lambda ins, out, a: 3 * _prod(out) + _rows(ins, out, a),
    "logsumexp": lambda ins, out, a: 2 * _prod(ins[0]) + _prod(out),
    # images: a multiply-add per kernel tap (conv), a compare or add per window element (pools)
    "conv2d": lambda ins, out, a: 2 * _prod(out) * _prod(ins[1][1:]),
    "conv2d_dx": lambda ins, out, a: 2 * _prod(ins[0]) * _prod(ins[1][1:]),
    "conv2d_dw": lambda ins, out, a: 2 * _prod(ins[1]) * _prod(out[1:]),
    "maxpool": lambda ins, out, a: _prod(out) * _prod(a["k"]),
    "maxpool_dx": lambda ins, out, a: _prod(ins[1]) * _prod(a["k"]),
    "avgpool": lambda ins, out, a: _prod(out) * _prod(a["k"]),
    "avgpool_dx": lambda ins, out, a: _prod(ins[0]) * _prod(a["k"]),
    "dropout_mask": lambda ins, out, a: _prod(out),          # one hash per element
    **{op: (lambda ins, out, a: 0) for op in ("reshape", "transpose", "expand", "concat", "slice", "pad",
                                                "onehot", "size", "phase")},
}


def node_flops(G: Graph, n: int, batch: int) -> int:
    """The FLOPs of node n with the batch axis of size `batch` (leaves: 0)."""
    d = G.node(n)
    if d["op"] in LEAF_OPS:
        return 0
    concrete = lambda s: tuple(batch if x == B else int(x) for x in s)
    out = concrete(d["shape"])
    spec = REGISTRY[d["op"]]
    if d["op"] in FLOPS:
        return int(FLOPS[d["op"]]([concrete(G.shape(i)) for i in G.inputs(n)], out, d["attrs"]))
    if spec.elementwise:
        return _prod(out)
    raise KeyError(f"op '{d['op']}' has no FLOPs rule in compiler/summary.py's FLOPS")


def flops(G: Graph, nodes) -> Tuple[int, int]:
    """(per sample, per step) FLOPs of `nodes`: counts are linear in the batch size."""
    f1 = sum(node_flops(G, n, 1) for n in nodes)
    f2 = sum(node_flops(G, n, 2) for n in nodes)
    return f2 - f1, 2 * f1 - f2


@dataclass
class Row:
    line: int
    text: str                                  # the statement as written (its first line)
    shape: Optional[tuple]                     # per sample (None: not a tensor)
    params: List[Tuple[str, tuple]] = field(default_factory=list)
    forward: int = 0                           # FLOPs per sample
    fixed: int = 0                             # FLOPs per step (not proportional to the batch)

    @property
    def param_count(self) -> int:
        return sum(_prod(s) for _, s in self.params)


@dataclass(repr=False)
class Summary:
    name: str
    rows: List[Row]
    params: int                  # the number of trainable numbers: "params" everywhere in netc
    tensors: int                 # the number of param arrays
    forward: int                 # FLOPs per sample of the forward pass (outputs and losses)
    forward_fixed: int
    train: int                   # FLOPs per sample of a whole train step
    train_fixed: int             # ... and per step (the optimizer's update, weight penalties)

    def table(self) -> str:
        head = ("line", "statement", "output/sample", "params", "FLOPs/sample")
        body = []
        for r in self.rows:
            shape = "-" if r.shape is None else _fmt(r.shape)
            ps = [f"{n} {_fmt(s)} = {_prod(s):,}" for n, s in r.params] or [""]
            body.append((str(r.line), r.text, shape, ps[0], f"{r.forward:,}" + (f" + {r.fixed:,}/step" if r.fixed else "")))
            body.extend(("", "", "", p, "") for p in ps[1:])
        w = [max(len(x[i]) for x in [head] + body) for i in range(5)]
        line = lambda x: f"{x[0]:>{w[0]}}  {x[1]:<{w[1]}}  {x[2]:<{w[2]}}  {x[3]:<{w[3]}}  {x[4]:>{w[4]}}".rstrip()
        rule = "-" * len(line(tuple("x" * k for k in w)))
        out = [f"model '{self.name}'", line(head), rule] + [line(x) for x in body] + [rule]
        out.append(f"params: {self.params:,} in {self.tensors} tensor{'s' if self.tensors != 1 else ''}")
        out.append(f"forward FLOPs: {self.forward:,} per sample" + (f" + {self.forward_fixed:,} per step" if self.forward_fixed else ""))
        out.append(f"train step FLOPs (forward, backward, update): {self.train:,} per sample + {self.train_fixed:,} per step")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    __repr__ = __str__


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _text(program: A.Program, st) -> str:
    lines = program.source.splitlines()
    t = lines[st.span.line - 1] if 0 < st.span.line <= len(lines) else ""
    t = t.split("#")[0].strip() if "#" in t else t.strip()
    return t if len(t) <= 48 else t[:45] + "..."


def summarize(forward: Graph, train: Graph, model: ModelIR, program: A.Program) -> Summary:
    """The summary of a checked model: `forward` and `train` are the train graph's forward part
    (after the forward passes) and the whole train graph."""
    losses = {l.name: l for l in model.losses}
    params = {p.node: p for p in model.params}
    rows: List[Tuple[int, Row]] = []           # (root node, row)
    loss_decls = program.of_type(A.LossDecl)
    for st in program.statements:
        root = None
        if isinstance(st, (A.InputDecl, A.ParamDecl, A.Assign)):
            root = model.defs.get(st.name)
        elif isinstance(st, A.LossDecl):
            k = loss_decls.index(st)
            name = st.name or ("loss" if len(loss_decls) == 1 else f"loss{k}")
            if name in losses:
                root = forward.outputs.get(f"loss:{name}", losses[name].node)
        else:
            continue
        if root is None or root not in forward.g:
            continue
        shape = forward.shape(root)
        rows.append((root, Row(st.span.line, _text(program, st), tuple(shape[1:]) if shape[:1] == (B,) else tuple(shape))))
    # what a train step computes of the forward graph: the ancestors of the losses and the output
    # (a softmax whose loss was rewritten to log_softmax, and that is not the output, is dead)
    fwd_nodes = set()
    for r in [v for k, v in forward.outputs.items() if k.startswith("loss:") or k == "output"]:
        fwd_nodes |= nx.ancestors(forward.g, r) | {r}
    claimed = set()
    for root, row in sorted(rows, key=lambda r: r[0]):
        own = sorted((nx.ancestors(forward.g, root) | {root}) - claimed)
        claimed |= set(own)
        row.params = [(params[n].name, params[n].shape) for n in own if n in params and params[n].trainable]
        row.forward, row.fixed = flops(forward, [n for n in own if n in fwd_nodes])
    roots = [v for k, v in train.outputs.items() if k.startswith(("loss:", "update:")) or k == "output"]
    live = train.topo(roots)
    fwd, fwd_fixed = flops(forward, fwd_nodes)
    tr, tr_fixed = flops(train, live)
    trained = [p for p in model.params if p.trainable]        # buffers (running statistics) aside
    return Summary(model.name, [r for _, r in rows], sum(_prod(p.shape) for p in trained), len(trained),
                   fwd, fwd_fixed, tr, tr_fixed)
