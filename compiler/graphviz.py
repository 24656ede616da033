"""An entry graph as a picture, for `netc graph FILE -o out.svg|png|dot`.

Each node is labelled with the user's name for it (`h`, `y_hat`, a param's name), its op and
shape, and the `.net` line it comes from; forward, backward and update nodes have their own
colors (leaves too: inputs, params, optimizer state, constants); each fused loop is a dashed
cluster, so the effect of the `fuse` pass is visible. The DOT text is written by hand (no
dependency); svg/png go through Graphviz's `dot` when it is installed, else a PNG (or SVG) is
drawn with networkx's layered layout and matplotlib (an optional dependency, imported inside
`draw_matplotlib`).
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Dict, List, Optional

import networkx as nx

from .ir import Graph

COLORS = {
    "forward": "#cfe2ff", "backward": "#ffd6d6", "update": "#d4f5d4",
    "input": "#ffffff", "target": "#ffffff", "param": "#fff3b0", "state": "#e0d4f7", "const": "#eeeeee",
}


def phase_of(G: Graph, n: int) -> str:
    """forward | backward | update, or the role of a leaf. Node ids tell the phases apart
    (autodiff and the optimizer add their nodes in turn); a node a train pass added later
    (a high id) is backward when a gradient node reads it."""
    d = G.node(n)
    if d["op"] in ("input", "target", "param", "state", "const"):
        return d["op"]
    bwd = G.backward_from if G.backward_from is not None else float("inf")
    upd = G.update_from if G.update_from is not None else float("inf")
    if n >= upd:
        if any(bwd <= m < upd for m in nx.descendants(G.g, n)):
            return "backward"
        return "update"
    if n >= bwd:
        return "backward"
    return "forward"


VIEWS = {
    "forward": "forward pass and loss (blue){fused}; --train draws the whole train step",
    "predict": "predict: the forward pass only (blue){fused}",
    "train": "train step: forward (blue), backward (red), update (green){fused}",
}


def title_of(model_name: str, entry: str) -> str:
    """The title of a picture of one entry point, saying what the view holds."""
    view = {"train_step": "train", "evaluate": "forward", "predict": "predict"}[entry]
    return f"{model_name}: " + VIEWS[view].format(fused="; dashed boxes: fused loops")


def labels(G: Graph, names: Optional[Dict[int, str]] = None, source: Optional[str] = None) -> Dict[int, str]:
    """node -> its label lines joined by newlines: the user's name (from `names`, a ModelIR's
    `defs` reversed, or a leaf's own name), the op and shape, and the `.net` line (`source`:
    the file's text) it comes from."""
    lines = source.splitlines() if source else []
    out = {}
    for n in G.g.nodes:
        d = G.node(n)
        if d["op"] == "const":
            out[n] = f"{d['attrs']['value']:g}"
            continue
        shape = "[" + ", ".join(str(x) for x in d["shape"]) + "]"
        name = (names or {}).get(n) or d.get("name") or ""
        parts = [name] if name else []
        parts.append(f"{d['op']} {shape}")
        span = d.get("span")
        if span is not None and span.line and 0 < span.line <= len(lines) and d["op"] not in ("param", "input", "target"):
            text = " ".join(lines[span.line - 1].split("#")[0].split())
            if len(text) > 36:
                text = text[:35] + "…"
            parts.append(f"{span.line}: {text}")
        out[n] = "\n".join(parts)
    return out


def _q(text: str) -> str:
    """A DOT string; a label's line breaks are written as the two characters \\n."""
    return '"' + str(text).replace('"', '\\"') + '"'


def to_dot(G: Graph, title: str = "netc", names: Optional[Dict[int, str]] = None,
           source: Optional[str] = None, caption: Optional[str] = None) -> str:
    """DOT text of G; `names` (node -> the user's name) and `source` (the .net text) label the
    nodes; `caption` is the picture's title (default: the three phases' colors)."""
    if caption is None:
        caption = title + ": forward (blue), backward (red), update (green); dashed boxes: fused loops"
    text = labels(G, names, source)
    lines = [f"digraph {_q(title)} {{", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [color="#777777", arrowsize=0.6];',
             f"  label={_q(caption)};",
             "  labelloc=t;"]
    groups: Dict[int, List[int]] = {}
    for n in G.topo():
        gid = G.node(n).get("group")
        if gid is not None:
            groups.setdefault(gid, []).append(n)

    def node_line(n: int, indent: str) -> str:
        d = G.node(n)
        ph = phase_of(G, n)
        label = text[n].replace("\n", "\\n")
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


def layers(G: Graph) -> Dict[int, int]:
    """node -> its layer: the longest path from the leaves (a value below everything it
    reads), then every node with readers moved down to just above its first reader, so a
    side input (a target's one-hot, a bias) sits next to where it is used."""
    order = list(nx.topological_sort(G.g))
    depth: Dict[int, int] = {}
    for n in order:
        depth[n] = 1 + max((depth[i] for i in G.inputs(n)), default=-1)
    for n in reversed(order):
        users = G.users(n)
        if users:
            depth[n] = min(depth[u] for u in users) - 1
    low = min(depth.values(), default=0)
    return {n: d - low for n, d in depth.items()}


def positions(G: Graph, depth: Dict[int, int], sweeps: int = 6) -> Dict[int, tuple]:
    """(x, layer) of each node: within a layer, nodes ordered by the mean position of their
    neighbours in the layers above and below (the barycenter heuristic, a few sweeps down and
    up), so that edges cross less."""
    by_layer: Dict[int, List[int]] = {}
    for n in nx.topological_sort(G.g):
        by_layer.setdefault(depth[n], []).append(n)
    x: Dict[int, float] = {}

    def place(layer):
        row = by_layer[layer]
        for i, n in enumerate(row):
            x[n] = i - (len(row) - 1) / 2
    for k in by_layer:
        place(k)
    ks = sorted(by_layer)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        for k in (ks[1:] if down else ks[-2::-1]):
            def key(n):
                nb = G.inputs(n) if down else G.users(n)
                nb = [m for m in nb if m in x]
                return sum(x[m] for m in nb) / len(nb) if nb else x[n]
            by_layer[k].sort(key=key)
            place(k)
    return {n: (x[n], depth[n]) for n in x}


def draw_matplotlib(G: Graph, path: str, title: str, names: Optional[Dict[int, str]] = None,
                    source: Optional[str] = None) -> None:
    """The picture without Graphviz: networkx's layered (multipartite) layout, top to bottom,
    drawn with matplotlib; the same labels, colors and fused loops (a dashed outline) as DOT."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("drawing the graph without Graphviz needs matplotlib (pip install matplotlib), "
                           "or install Graphviz's `dot`, or write a .dot file") from e
    text = labels(G, names, source)
    depth = layers(G)
    H = nx.DiGraph()
    for n in G.g.nodes:
        H.add_node(n, layer=depth[n])
    H.add_edges_from((u, v) for u, v in G.g.edges())
    width = max(sum(1 for n in H if depth[n] == k) for k in set(depth.values()))
    nlayers = max(depth.values()) + 1
    sx, sy = 2.3, 1.15
    pos = {n: (x * sx, -d * sy) for n, (x, d) in positions(G, depth).items()}
    fig_w = min(max(8.0, width * 2.4), 60.0)
    fig_h = min(max(5.0, nlayers * 0.95 + 1.0), 80.0)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    for u, v in H.edges():
        (x0, y0), (x1, y1) = pos[u], pos[v]
        span = depth[v] - depth[u]           # an edge over several layers bends around the nodes between
        ax.annotate("", xy=(x1, y1 + 0.28), xytext=(x0, y0 - 0.28),
                    arrowprops=dict(arrowstyle="-|>", color="#888888", lw=0.7, shrinkA=0, shrinkB=0,
                                    connectionstyle=f"arc3,rad={0.25 if span > 1 else 0.0}"))
    sizes: Dict[int, int] = {}
    for n in G.g.nodes:
        gid = G.node(n).get("group")
        if gid is not None:
            sizes[gid] = sizes.get(gid, 0) + 1
    palette = plt.get_cmap("tab10")
    for n in H.nodes:
        ph = phase_of(G, n)
        x, y = pos[n]
        leaf = ph in ("input", "target", "param", "state")
        gid = G.node(n).get("group")
        fused = gid is not None and sizes[gid] > 1          # a fused loop: a dashed outline, one color per loop
        ax.text(x, y, text[n], ha="center", va="center", fontsize=7.5,
                bbox=dict(boxstyle="round4,pad=0.35" if leaf else "round,pad=0.35",
                          fc=COLORS[ph] if G.op(n) != "const" else "#ffffff",
                          ec=(palette(gid % 10) if fused else "#333333") if G.op(n) != "const" else "#ffffff",
                          lw=1.6 if fused else 0.8, ls="--" if fused else "-"), zorder=3)
    for k, n in G.outputs.items():
        x, y = pos[n]
        ax.text(x, y - 0.5, k, ha="center", va="top", fontsize=7, style="italic", color="#444444", zorder=3)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.6)
    ax.set_axis_off()
    ax.set_title(title.replace("dashed boxes: fused loops", "dashed outlines of one color: one fused loop"),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(dot_text: str, path: str, G: Optional[Graph] = None, title: str = "",
           names: Optional[Dict[int, str]] = None, source: Optional[str] = None) -> str:
    """Write DOT text to `path`: as it is for .dot, through Graphviz's `dot` for .svg/.png;
    without `dot`, draw `G` with matplotlib instead. Returns how it was drawn: dot | graphviz |
    matplotlib."""
    fmt = path.rsplit(".", 1)[-1].lower()
    if fmt in ("dot", "gv"):
        with open(path, "w") as f:
            f.write(dot_text)
        return "dot"
    exe = shutil.which("dot")
    if exe is None:
        if G is None:
            raise RuntimeError(f"writing .{fmt} needs the Graphviz `dot` program (apt-get install graphviz); "
                               f"write a .dot file instead")
        draw_matplotlib(G, path, title, names, source)
        return "matplotlib"
    r = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot_text, text=True, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"dot failed: {r.stderr.strip()}")
    return "graphviz"
