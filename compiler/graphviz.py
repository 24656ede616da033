"""The train graph as Graphviz DOT, for `netc graph FILE -o out.svg|png|dot`.

Forward, backward and update nodes have their own colors (leaves too: inputs, params,
optimizer state, constants); each fused loop is a dashed cluster, so the effect of the
`fuse` pass is visible. The DOT text is written by hand (no dependency); rendering to
svg/png needs the `dot` program of Graphviz.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Dict, List

from .ir import Graph

COLORS = {
    "forward": "#cfe2ff", "backward": "#ffd6d6", "update": "#d4f5d4",
    "input": "#ffffff", "target": "#ffffff", "param": "#fff3b0", "state": "#e0d4f7", "const": "#eeeeee",
}


def phase_of(G: Graph, n: int) -> str:
    """forward | backward | update, or the role of a leaf."""
    d = G.node(n)
    if d["op"] in ("input", "target", "param", "state", "const"):
        return d["op"]
    if n >= (G.update_from if G.update_from is not None else float("inf")):
        return "update"
    if n >= (G.backward_from if G.backward_from is not None else float("inf")):
        return "backward"
    return "forward"


def _q(text: str) -> str:
    """A DOT string; a label's line breaks are written as the two characters \\n."""
    return '"' + str(text).replace('"', '\\"') + '"'


def to_dot(G: Graph, title: str = "netc") -> str:
    lines = [f"digraph {_q(title)} {{", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [color="#777777", arrowsize=0.6];',
             f"  label={_q(title + ': forward (blue), backward (red), update (green); dashed boxes: fused loops')};",
             "  labelloc=t;"]
    groups: Dict[int, List[int]] = {}
    for n in G.topo():
        gid = G.node(n).get("group")
        if gid is not None:
            groups.setdefault(gid, []).append(n)

    def node_line(n: int, indent: str) -> str:
        d = G.node(n)
        ph = phase_of(G, n)
        shape = "[" + ", ".join(str(x) for x in d["shape"]) + "]"
        if d["op"] == "const":
            label = f"{d['attrs']['value']:g}"
        else:
            label = f"{d['name']}\\n" if d.get("name") else ""
            label += f"{d['op']} {shape}"
        attrs = [f"label={_q(label)}", f"fillcolor={_q(COLORS[ph])}",
                 f"tooltip={_q(f'%{n} {ph}')}", f"class={_q(ph)}"]
        if ph in ("input", "target", "param", "state"):
            attrs.append("shape=ellipse")
        if d["op"] == "const":
            attrs.append("shape=plaintext")
        return f"{indent}n{n} [{', '.join(attrs)}];"

    grouped = set()
    for gid, members in groups.items():
        if len(members) < 2:
            continue
        lines.append(f"  subgraph cluster_g{gid} {{")
        lines.append(f'    style=dashed; color="#555555"; label={_q(f"loop {gid}")}; fontsize=9;')
        for n in members:
            lines.append(node_line(n, "    "))
            grouped.add(n)
        lines.append("  }")
    for n in G.topo():
        if n not in grouped:
            lines.append(node_line(n, "  "))
    for u, v, d in G.g.edges(data=True):
        lines.append(f"  n{u} -> n{v};")
    for i, (k, n) in enumerate(G.outputs.items()):
        lines.append(f"  out{i} [label={_q(k)}, shape=note, fillcolor=\"#ffffff\"];")
        lines.append(f"  n{n} -> out{i} [style=dotted];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, path: str) -> None:
    """Write DOT text to `path`: as it is for .dot, through Graphviz's `dot` for .svg/.png."""
    fmt = path.rsplit(".", 1)[-1].lower()
    if fmt in ("dot", "gv"):
        with open(path, "w") as f:
            f.write(dot_text)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(f"writing .{fmt} needs the Graphviz `dot` program (apt-get install graphviz); "
                           f"write a .dot file instead")
    r = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot_text, text=True, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"dot failed: {r.stderr.strip()}")
