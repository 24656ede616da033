"""Text renderings of each compiler stage, for `netc show --stage ...`."""
from __future__ import annotations

from typing import Dict

from netc.dsl import ast as A

from . import backend
from .elaborate import elaborate
from .frontend import check, kernels_source
from .fuse import entry_roots, schedule
from .ir import Graph
from .shapes import fmt_shape
from .passes import PASSES


def graph_text(G: Graph, title: str) -> str:
    lines = [f"# {title}: {G.g.number_of_nodes()} nodes"]
    for n in G.topo():
        d = G.node(n)
        ins = ", ".join(f"%{i}" for i in G.inputs(n))
        attrs = {k: v for k, v in d["attrs"].items()}
        label = d["name"] or ""
        shape = "[" + ", ".join(str(x) for x in d["shape"]) + "]"
        where = f"  ; line {d['span'].line}" if d.get("span") is not None and d["span"].line else ""
        a = f" {attrs}" if attrs else ""
        grp = f"  group {d['group']}" if d.get("group") is not None else ""
        lines.append(f"%{n:<4d} = {d['op']}({ins}){a} {label} : {shape} {d['dtype']}{where}{grp}")
    for k, v in G.outputs.items():
        lines.append(f"output {k} = %{v}")
    return "\n".join(lines)


def report_text(report: Dict[str, int], disabled=()) -> str:
    """Which rewrites fired: one line per pass of the pipeline, in order."""
    what = {"stabilize": "rewrites", "simplify": "rewrites", "fold_constants": "constants folded",
            "cse": "duplicates removed", "dce": "dead nodes removed (all entry points)",
            "fuse": "nodes fused into a loop with others", "memplan": "arrays sharing a slot"}
    lines = ["# passes, in order (phase: times fired)"]
    for name, phase, _ in PASSES:
        if name in disabled:
            lines.append(f"#   {name:15s} {phase:8s} off")
        else:
            lines.append(f"#   {name:15s} {phase:8s} {report.get(name, 0):5d}  {what.get(name, '')}")
    return "\n".join(lines)


def plan_text(G: Graph) -> str:
    """The kernels of an entry graph of the CPU backend and its memory plan."""
    losses, returns, assigns = entry_roots(G)
    mp = G.memplan
    if mp is not None:
        sched = mp.schedule
    else:
        sched = schedule(G, losses + returns + [v for _, v in assigns], assigns, backend.get("cpu").RULES)
    name = G.entry or "?"
    lines = [f"# entry point {name}: {len(sched.kernels)} kernels"]
    for K in sched.kernels:
        ops = ", ".join(f"{G.op(n)}%{n}" for n in K.pre + K.nodes)     # pre: small products inside the loop
        lines.append(f"#   {K.kind:9s} {fmt_shape(K.shape) if K.kind == 'loop' else '':14s} {ops}")
    if sched.inplace:
        lines.append("#   in place: " + ", ".join(f"%{v} -> {G.node(l)['name']}" for v, l in sched.inplace.items()))
    if mp is not None:
        _, (a, c) = mp.layout()
        lines.append(f"#   arena: {len(mp.slots)} slots for {len(mp.slot_of)} arrays, {a} x batch + {c} elements")
    else:
        lines.append("#   no memory plan: arrays are allocated at each call")
    return "\n".join(lines)


def stage(program: A.Program, which: str, dtype: str = "float32", disabled=(), device: str = "cpu") -> str:
    """The text of one stage (`netc show --stage`): ast, ir, grad, optimized (the CPU's entry
    graphs and their kernels), kernels (the generated source of `device`)."""
    if which == "ast":
        return "\n".join(repr(s) for s in program.statements)
    if which == "ir":
        return graph_text(elaborate(program).graph, "forward graph (before passes)")
    if which == "grad":
        G = check(program, tuple(disabled) + ("simplify", "fold_constants", "cse", "dce")).train.graph
        return graph_text(G, "train graph: forward, backward and update (no graph passes)")
    if which == "optimized":
        checked = check(program, disabled)
        G, report = checked.train.graph, dict(checked.train.report)
        graphs, entry_report = backend.get("cpu").entry_graphs(checked)
        report.update(entry_report)
        fired = ", ".join(f"{k}: {v}" for k, v in report.items())
        parts = [report_text(report, disabled)]
        E = graphs.get("train_step") or graphs.get("predict") or G
        parts.append(graph_text(E, f"optimized {E.entry or 'train'} graph (rewrites fired: {fired})"))
        view = graphs.get("predict") or graphs.get("evaluate")
        if view is not None and E is not view and any(G.op(n) == "phase" for n in G.g.nodes):
            # batchnorm / dropout: the other view of the same file
            parts.append(graph_text(view, f"optimized {view.entry} graph (the predict view: running "
                                          f"statistics, no dropout)"))
        for name, E in graphs.items():
            parts.append(plan_text(E))
        return "\n".join(parts)
    return kernels_source(check(program, disabled), device, dtype)
