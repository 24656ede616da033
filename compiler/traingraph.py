"""The train graph, backend-neutral: what autodiff, the optimizer and the graph passes make of
an elaborated model (`build`), the graph of each entry point (`entry_graphs`: train_step,
evaluate, predict, with the entry passes of a backend's rules) and their argument lists
(`functions`). Both backends lower from here; the front door is `compiler.frontend`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from . import passes as P
from .autodiff import grad
from .values import ModelIR
from .fuse import Rules, entry_roots
from .ir import Graph, verify
from .optim import add_update


@dataclass
class StateInfo:
    """An optimizer state array: its name, the param it belongs to, its initial value."""
    name: str
    param: str
    init: float


@dataclass
class TrainGraph:
    """What autodiff and the graph passes make of a model: the forward graph (after the
    forward passes), the train graph (forward + backward + optimizer update, after the graph
    passes), the optimizer's state arrays, and how often each pass fired."""
    forward: Graph
    graph: Graph
    states: List[StateInfo]
    report: Dict[str, int]
    grads: Dict[str, int] = field(default_factory=dict)     # trainable param -> its gradient node


@dataclass
class Function:
    """An entry point: its leaf arguments in order (node ids; one missing from the graph is an
    unused argument), the scalars it writes to the float64 array `losses`, its returned
    values, and the assignments leaf <- value done by the step. `graph`: the entry graph
    (default: the graph given to the code generator)."""
    name: str
    args: List[int]
    losses: List[int] = field(default_factory=list)
    returns: List[int] = field(default_factory=list)
    assigns: List[Tuple[int, int]] = field(default_factory=list)
    graph: Optional[Graph] = None


def build(model: ModelIR, disabled=(), verify_each: bool = False) -> TrainGraph:
    """The train graph of an elaborated model, and the forward graph it grew from."""
    G = model.graph
    report = P.run(G, P.FORWARD, disabled, verify_each)
    for loss in model.losses:
        G.outputs[f"loss:{loss.name}"] = loss.node
    if model.output is not None:
        G.outputs["output"] = model.output
    forward = G.copy()
    states: List[StateInfo] = []
    if model.losses:
        total = G.outputs[f"loss:{model.losses[0].name}"]
        for loss in model.losses[1:]:
            total = G.add("add", [total, G.outputs[f"loss:{loss.name}"]])
        G.outputs["loss"] = total
        params = [p.node for p in model.params if p.trainable]     # buffers have no gradient
        G.backward_from = G.next_id         # node ids from here on: the gradient
        grads = grad(G, total, params)
        G.update_from = G.next_id           # ... and from here on: the update
        name, args, _ = model.optimizer
        for sname, node, pname in add_update(G, name, args, grads):
            states.append(StateInfo(sname, pname, G.attrs(node)["init"]))
        for p in model.params:
            if p.trainable:
                G.outputs[f"grad:{p.name}"] = grads[p.node]      # followed through the passes, then kept aside
    report.update(P.run(G, P.GRAPH, disabled, verify_each))
    if verify_each:
        verify(G)
    kept = {k.split(":", 1)[1]: G.outputs.pop(k) for k in list(G.outputs) if k.startswith("grad:")}
    return TrainGraph(forward, G, states, report, kept)


ENTRY_POINTS = ("train_step", "evaluate", "predict")


def view(G: Graph, entry: str) -> int:
    """The train or the predict view of a graph, in place: every `phase(t, e)` node becomes its
    operand `t` in the train step and `e` in evaluate and predict (batchnorm's batch or running
    statistics, dropout's mask or none). Not a pass: it is what the entry point means, so it
    cannot be switched off; the operand left unused is dropped by dce. Returns how many."""
    k = 1 if entry != "train_step" else 0
    phases = [n for n in G.g.nodes if G.op(n) == "phase"]
    for n in phases:
        G.replace_uses(n, G.inputs(n)[k])
        G.g.remove_node(n)
    return len(phases)


def arg_name(G: Graph, n: int) -> str:
    """The name of a leaf argument in generated code: in_x, tg_y, p_W, s_m_W; lr and step."""
    d = G.node(n)
    if d["op"] == "input" and d["name"] in ("lr", "step"):
        return d["name"]
    return {"input": "in_", "target": "tg_", "param": "p_", "state": "s_"}[d["op"]] + re.sub(r"\W", "_", d["name"])


def entry_graphs(model: ModelIR, G: Graph, rules: Rules, disabled=(), verify_each: bool = False):
    """One graph per entry point, each keeping only its outputs (train_step: loss terms,
    output, updates; evaluate: loss terms, output; predict: output), with the entry passes
    (dce, fuse, memplan) run on it for a backend's `rules`. Returns ({name: graph}, {pass:
    fired, summed})."""
    keep = {
        "train_step": lambda k: k.startswith(("loss:", "update:")) or k == "output",
        "evaluate": lambda k: k.startswith("loss:") or k == "output",
        "predict": lambda k: k == "output",
    }
    graphs, report = {}, {}
    for name in ENTRY_POINTS:
        if name != "predict" and not model.losses:
            continue
        if name == "predict" and "output" not in G.outputs:
            continue
        E = G.cut(name, {k: v for k, v in G.outputs.items() if keep[name](k)})
        view(E, name)
        for k, v in P.run(E, P.ENTRY, disabled, verify_each, rules).items():
            report[k] = report.get(k, 0) + v
        graphs[name] = E
    return graphs, report


def functions(model: ModelIR, G: Graph, states: List[StateInfo], graphs: Optional[Dict[str, Graph]] = None) -> List[Function]:
    """The entry points: train_step (forward, backward, update), evaluate, predict. Their
    arguments are the runtime's (x, y, lr, step, params..., states...); the generated code
    adds `losses`, the `out` array and, with a memory plan, the arena."""
    if graphs is None:       # one graph for all (the CUDA backend): the entry points the model has
        graphs = {n: G for n in ENTRY_POINTS
                  if (model.losses if n != "predict" else "output" in G.outputs)}
    leaf = {G.node(n)["name"]: n for n in G.g.nodes if G.op(n) in ("input", "target", "param", "state")}
    x = model.input_node
    params = [p.node for p in model.params]
    y = [model.target.node] if model.target is not None else []
    fns = []
    for name in ENTRY_POINTS:
        if name not in graphs:
            continue
        E = graphs[name]
        if name == "train_step":
            args = [x] + y + [leaf["lr"], leaf["step"]] + params + [leaf[s.name] for s in states]
        elif name == "evaluate":
            args = [x] + y + params
        else:
            args = [x] + params
        losses = [E.outputs[f"loss:{l.name}"] for l in model.losses] if name != "predict" else []
        _, returns, assigns = entry_roots(E)
        fns.append(Function(name, args, losses=losses, returns=returns,
                            assigns=assigns if name == "train_step" else [], graph=E))
    return fns


# ------------------------------------------------------------------ the split step (data parallel)
SPLIT_ENTRY_POINTS = ("grad_step", "apply_step")


def grad_leaf_name(param: str) -> str:
    """The name of apply_step's gradient argument of `param` (arg_name: in_grad_NAME)."""
    return f"grad_{param}"


def split_graphs(model: ModelIR, tg: TrainGraph, rules: Optional[Rules], disabled=(), verify_each: bool = False):
    """The train step split in two entry graphs, for data-parallel training (compiled only when
    asked): `grad_step` (the train view's forward and backward: loss terms, output, the
    buffers' updates and one "grad:NAME" output per trainable param, which the code generators
    write into views of one contiguous gradient buffer) and `apply_step` (the optimizer's update
    of params and state, reading each gradient from an `input` leaf `grad_NAME` instead of the
    backward pass). Running one then the other is the fused train_step. Returns ({name: graph},
    {pass: fired, summed}); `rules` None: no entry pass (the CUDA backend, which schedules what
    each entry point's outputs need)."""
    G = tg.graph
    trainable = {p.name for p in model.params if p.trainable}
    if not model.losses or not tg.grads:
        return {}, {}
    updates = {k: v for k, v in G.outputs.items() if k.startswith("update:")}
    to_apply = {k: v for k, v in updates.items() if k.split(":", 1)[1] not in
                {p.name for p in model.params if not p.trainable}}
    keep = {k: v for k, v in G.outputs.items() if k.startswith("loss:") or k == "output"}
    keep.update({k: v for k, v in updates.items() if k not in to_apply})      # buffers: batchnorm's statistics
    keep.update({f"grad:{name}": g for name, g in tg.grads.items()})
    graphs, report = {}, {}
    E = G.cut("grad_step", keep)
    view(E, "train_step")
    graphs["grad_step"] = E
    A = G.cut("apply_step", to_apply)
    view(A, "train_step")
    done = set()
    for name, g in tg.grads.items():
        if g in done or A.op(g) in ("input", "target", "param", "state"):
            continue                # a gradient that is a leaf itself: apply_step reads that leaf
        done.add(g)
        leaf = A.leaf("input", grad_leaf_name(name), A.shape(g), A.node(g)["dtype"])
        A.replace_uses(g, leaf)
    graphs["apply_step"] = A
    for name in SPLIT_ENTRY_POINTS:
        if rules is None:           # a backend that schedules by itself (CUDA): computes what the outputs need
            continue
        for k, v in P.run(graphs[name], P.ENTRY, disabled, verify_each, rules).items():
            report[k] = report.get(k, 0) + v
    bad = [A.node(n)["name"] for n in A.topo(list(A.outputs.values())) if A.op(n) in ("input", "target")
           and A.node(n)["name"] not in ("lr", "step") and not A.node(n)["name"].startswith("grad_")]
    assert not bad, f"the optimizer update reads the batch ({bad}): it cannot be split"
    assert trainable >= set(tg.grads)
    return graphs, report


def grad_layout(model: ModelIR) -> List[Tuple[str, int, tuple]]:
    """The contiguous gradient buffer of the split step: (param, offset, shape) of each
    trainable param, in the params' order."""
    out, off = [], 0
    for p in model.params:
        if p.trainable:
            shape = tuple(int(d) for d in p.shape)
            out.append((p.name, off, shape))
            n = 1
            for d in shape:
                n *= d
            off += n
    return out


def split_functions(model: ModelIR, G: Graph, states: List[StateInfo], grads: Dict[str, int],
                    graphs: Dict[str, Graph]) -> List[Function]:
    """The split step's entry points, given their graphs (`split_graphs`): grad_step(x, y, lr,
    step, params...) writes the loss terms, returns the output and each trainable param's
    gradient (in the params' order) and updates the buffers; apply_step(lr, step, params...,
    states..., grads...) updates params and state in place."""
    if not graphs:
        return []
    leaf = {G.node(n)["name"]: n for n in G.g.nodes if G.op(n) in ("input", "target", "param", "state")}
    params = [p.node for p in model.params]
    y = [model.target.node] if model.target is not None else []
    E, A = graphs["grad_step"], graphs["apply_step"]
    returns = ([E.outputs["output"]] if "output" in E.outputs else []) + [E.outputs[f"grad:{n}"] for n in grads]
    _, _, assigns = entry_roots(E)
    grad_step = Function("grad_step", [model.input_node] + y + [leaf["lr"], leaf["step"]] + params,
                         losses=[E.outputs[f"loss:{l.name}"] for l in model.losses], returns=returns,
                         assigns=assigns, graph=E)
    gleaf = {A.node(n)["name"]: n for n in A.g.nodes if A.op(n) == "input"}
    gargs = [gleaf.get(grad_leaf_name(n), -1 - k) for k, n in enumerate(grads)]    # -k: unused (a leaf gradient)
    _, _, assigns = entry_roots(A)
    apply_step = Function("apply_step", [leaf["lr"], leaf["step"]] + params + [leaf[s.name] for s in states] + gargs,
                          assigns=assigns, graph=A)
    return [grad_step, apply_step]
