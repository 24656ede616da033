"""Text renderings of each compiler stage, for `netc show --stage ...`."""
from __future__ import annotations

from netc.dsl import ast as A

from .ir import Graph, fmt_shape


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
        lines.append(f"%{n:<4d} = {d['op']}({ins}){a} {label} : {shape} {d['dtype']}{where}")
    for k, v in G.outputs.items():
        lines.append(f"output {k} = %{v}")
    return "\n".join(lines)


def stage(program: A.Program, which: str, dtype: str = "float32", disabled=()) -> str:
    from .elaborate import elaborate
    from .pipeline import build_graph, compile_program
    if which == "ast":
        return "\n".join(repr(s) for s in program.statements)
    if which == "ir":
        return graph_text(elaborate(program).graph, "forward graph (before passes)")
    if which == "grad":
        model = elaborate(program)
        _, G, _, _ = build_graph(model, disabled=tuple(disabled) + tuple(
            n for n in ("simplify", "fold_constants", "cse", "dce")))
        return graph_text(G, "train graph: forward, backward and update (no graph passes)")
    if which == "optimized":
        model = elaborate(program)
        _, G, _, report = build_graph(model, disabled)
        fired = ", ".join(f"{k}: {v}" for k, v in report.items())
        return graph_text(G, f"optimized train graph (rewrites fired: {fired})")
    return compile_program(program, dtype=dtype, disabled=disabled).source
