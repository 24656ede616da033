"""CUDA backend: the optimized graph as readable Python source of `numba.cuda` kernels and a
host-side driver function per entry point (train_step, evaluate, predict).

  * Pointwise nodes are grouped by `compiler.fuse` (with this backend's RULES) and each group
    becomes ONE generated kernel (one thread per element of the group's shape; intermediate
    values stay in registers; `--no-pass fuse`: one kernel per node). Besides the registry's elementwise ops, `expand`, `onehot` and `transpose`
    are pointwise here: they read an operand at an index computed from their own.
  * Matrix products, reductions and row softmaxes call the hand-written kernels of
    `backend/cuda/kernels.py` (tiled shared-memory matmul, row and column reductions).
  * `reshape` is a view; scalars that depend only on lr, step, the batch size and constants
    (the optimizer's bias corrections, momentum switches, 1/B) are computed by the driver on
    the host and passed to kernels as arguments.
  * Optimizer updates are scheduled last and write their param / state in place when every
    other reader of the old value has run; the other assignments are copies at the end.
  * Intermediate buffers are allocated once per batch size and reused between steps.

The lowering of each op is its entry in `lowering.LOWERINGS` (one table, keyed by op name),
never in ops.py: GPU code is imported only when asked for. The source is cached by content
like the CPU's.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

from ...fuse import Step
from ...fuse import steps as schedule_steps
from ...ir import Graph
from ...shapes import B
from ...traingraph import arg_name
from .lowering import RULES, lowering, math_fn, operand_index, prod, reads_pointwise, value_operands


# ======================================================================= code generation
def _type(dtype: str, G: Graph, n: int, ndim: Optional[int] = None) -> str:
    base = "int64" if G.node(n)["dtype"] == "int" else dtype
    nd = max(len(G.shape(n)), 1) if ndim is None else ndim
    return f"{base}[{', '.join([':'] * (nd - 1) + ['::1'])}]"


def _where(G: Graph, nodes) -> str:
    lines = sorted({G.node(n)["span"].line for n in nodes
                    if G.node(n).get("span") is not None and G.node(n)["span"].line})
    if not lines:
        return ""
    return f"  line {lines[0]}" if len(lines) == 1 else f"  lines {', '.join(map(str, lines))}"


class _Ctx:
    """What lowerings may ask while one entry point is generated."""

    def __init__(self, gen: "_Generator", G: Graph, fn):
        self.gen, self.G, self.func = gen, G, fn
        self.names: Dict[int, str] = {n: arg_name(G, n) for n in fn.args}
        self.host: set = set()
        self.buffers: List[Tuple[str, str, str]] = []      # (name, shape expr, dtype expr)
        self.node = None

    # -- names and shapes
    def dshape(self, n: int) -> List[str]:
        """The device shape of a value: the batch axis is `nb`; scalars are 1-element arrays."""
        s = [("nb" if d == B else str(d)) for d in self.G.shape(n)]
        return s or ["1"]

    def name(self, n: int) -> str:
        d = self.G.node(n)
        if d["op"] == "const":
            return self.gen.const(d["attrs"]["value"])
        if n not in self.names:
            raise ValueError(f"{self.func.name} needs '{d['name'] or n}' before it is computed")
        return self.names[n]

    def operands(self, n: int) -> List[str]:
        return [self.name(u) for u in self.G.inputs(n)]

    def alloc(self, name: str, shape: Sequence[str], dtype: str = "DT") -> str:
        self.buffers.append((name, _tuple(shape), dtype))
        return name

    def temp(self, n: int, shape: Sequence[str]) -> str:
        return self.alloc(f"t{n}_{len(self.buffers)}", shape or ["1"])

    @staticmethod
    def view(x: str, shape: Sequence[str], want: Sequence[str]) -> str:
        if (list(shape) or ["1"]) == (list(want) or ["1"]):
            return x
        return f"{x}.reshape({_tuple(want)})"

    # -- for pointwise expressions (the registry's formulas: `ops.Math`)
    def fn(self, name: str) -> str:
        return math_fn(name)

    def const(self, value: float) -> str:
        return self.gen.const(value)

    def const_value(self, p: int) -> Optional[float]:
        u = self.G.inputs(self.node)[p]
        return self.G.attrs(u)["value"] if self.G.op(u) == "const" else None


def _tuple(dims: Sequence[str]) -> str:
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class _Generator:
    def __init__(self, G: Graph, dtype: str, fuse: bool = True):
        self.G, self.dtype, self.fuse = G, dtype, fuse
        self.consts: Dict[float, str] = {}
        self.kernels: Dict[str, Tuple[str, str, str]] = {}   # body -> (name, source, signature)

    def const(self, value: float) -> str:
        if value not in self.consts:
            self.consts[value] = f"C{len(self.consts)}"
        return self.consts[value]

    def kernel(self, stem: str, params: List[str], body: List[str], doc: str, sig: List[str]) -> str:
        """A generated kernel; identical ones (the forward pass of train_step, evaluate and
        predict) are emitted once."""
        key = "\n".join(params + body)
        if key not in self.kernels:
            name = f"k{len(self.kernels)}_{stem}"
            src = (f"@cuda.jit(cache=CACHE)\ndef {name}({', '.join(params)}):\n    \"\"\"{doc}\"\"\"\n"
                   + "\n".join("    " + line for line in body) + "\n")
            self.kernels[key] = (name, src, "(" + ", ".join(sig) + ")")
        return self.kernels[key][0]

    # ------------------------------------------------------------ one entry point
    def function(self, fn) -> str:
        if fn.graph is not None:      # the entry point's view of the graph (same node ids)
            self.G = fn.graph
        G = self.G
        c = _Ctx(self, G, fn)
        assign_values = [v for _, v in fn.assigns]
        roots = list(fn.losses) + list(fn.returns) + assign_values
        steps = schedule_steps(G, roots, RULES, late=assign_values, fuse=self.fuse)
        in_place = _in_place(G, fn, steps)
        lines: List[str] = []
        batched = [n for n in fn.args if G.shape(n) and G.shape(n)[0] == B]
        lines.append(f"nb = {c.name(batched[0])}.shape[0]" if batched else "nb = 1")
        for n in fn.args:
            if G.shape(n) == () and G.op(n) == "input":
                lines.append(f"{c.name(n)} = DT({c.name(n)})")
        plan_at = len(lines)
        for st in steps:
            if st.kind == "host":
                (n,) = st.nodes
                c.host.add(n)
                c.names[n] = f"v{n}"
                lines += self._host(c, n)
            elif st.kind == "fused":
                lines += self._fused(c, st, in_place)
            else:
                (n,) = st.nodes
                low = lowering(G, n)
                c.node = n
                if low.kind != "view":
                    c.names[n] = c.alloc(f"v{n}", c.dshape(n))
                else:
                    c.names[n] = f"v{n}"
                emitted = low.emit(c, n)
                emitted[-1] += f"  # {G.op(n)} {list(G.shape(n))}{_where(G, [n])}"
                lines += emitted
        if fn.losses:
            lines.append(self._losses(c, fn))
        for leaf, value in fn.assigns:
            if in_place.get(value) != leaf:
                lines.append(f"{c.name(leaf)}.copy_to_device({c.name(value)})  # update {G.node(leaf)['name']}")
        if fn.returns:
            lines.append("return " + ", ".join(c.name(n) for n in fn.returns))
        if c.buffers:
            names = ", ".join(b[0] for b in c.buffers) + ("," if len(c.buffers) == 1 else "")
            lines.insert(plan_at, f"{names} = K.planned(_alloc_{fn.name}, nb)")
        alloc = (f"def _alloc_{fn.name}(nb):\n    \"\"\"The buffers of {fn.name} for a batch of nb.\"\"\"\n"
                 f"    return (\n" + "".join(f"        K.empty({s}, {d}),  # {b}\n" for b, s, d in c.buffers)
                 + "    )\n")
        args = [c.name(n) for n in fn.args] + (["losses"] if fn.losses else [])
        head = f"def {fn.name}({', '.join(args)}):"
        return alloc + "\n\n" + head + "\n" + "\n".join("    " + l for l in lines) + "\n"

    def _host(self, c: _Ctx, n: int) -> List[str]:
        G = self.G
        low = lowering(G, n)
        c.node = n
        where = f"  # {G.op(n)} (host scalar){_where(G, [n])}"
        if low.kind == "host":
            out = low.emit(c, n)
        elif low.kind == "view":
            out = [f"v{n} = {c.name(G.inputs(n)[0])}"]
        else:
            out = [f"v{n} = DT({low.expr(c, c.operands(n), G.attrs(n), [])})"]
        out[-1] += where
        return out

    def _fused(self, c: _Ctx, st: Step, in_place: Dict[int, int]) -> List[str]:
        G = self.G
        shape = G.shape(st.nodes[0])
        r = len(shape)
        ix = [f"i{k}" for k in range(r)]
        params: List[str] = ["n"]
        sig: List[str] = ["int64"]
        local: Dict[int, str] = {}
        body: List[str] = []
        ops = []
        for m in st.nodes:
            c.node = m
            low = lowering(G, m)
            args = []
            for p, u in enumerate(G.inputs(m)):
                idx = operand_index(G, m, p)
                if idx is None:
                    args.append(None)
                elif u in local:
                    args.append(local[u])
                elif G.op(u) == "const":
                    args.append(c.name(u))
                else:
                    name = c.name(u)
                    if name not in params:
                        params.append(name)
                        host = u in c.host or (G.op(u) == "input" and G.shape(u) == ())
                        sig.append(self.dtype if host else _type(self.dtype, G, u))
                    args.append(name if (u in c.host or G.shape(u) == () and G.op(u) == "input")
                                else f"{name}[{', '.join(idx) if idx else '0'}]")
            local[m] = f"t{m}"
            body.append(f"t{m} = {low.expr(c, args, G.attrs(m), ix)}  # {G.op(m)}{_where(G, [m])}")
            ops.append(G.op(m))
        outs = []
        for m in st.outputs:
            if m in in_place:
                name = c.name(in_place[m])
            else:
                name = c.alloc(f"v{m}", c.dshape(m), "DT" if G.node(m)["dtype"] == "float" else "np.int64")
            c.names[m] = name
            params.append(f"o_{name}")
            sig.append(_type(self.dtype, G, m))
            outs.append(f"o_{name}[{', '.join(ix) if r else '0'}] = t{m}")
        unravel = []
        if r == 1:
            unravel = ["i0 = i"]
        elif r > 1:
            unravel.append("j = i")
            for k in range(r - 1, 0, -1):
                unravel.append(f"i{k} = j % {shape[k]}")
                unravel.append(f"j = j // {shape[k]}" if k > 1 else f"i0 = j // {shape[k]}")
        kbody = ["for i in range(cuda.grid(1), n, cuda.gridsize(1)):  # grid-stride: any n fits"] \
            + ["    " + l for l in unravel + body + outs]
        doc = f"{', '.join(dict.fromkeys(ops))} over {list(shape)}{_where(G, st.nodes)}"
        stem = "_".join(list(dict.fromkeys(ops))[:3])
        kname = self.kernel(stem, params, kbody, doc, sig)
        args = [p[2:] if p.startswith("o_") else p for p in params[1:]]
        return [f"K.launch({kname}, {prod(c.dshape(st.nodes[0]))}, {', '.join(args)})"
                f"  # {' '.join(ops[:6])}{' ...' if len(ops) > 6 else ''} {list(shape)}{_where(G, st.nodes)}"]

    def _losses(self, c: _Ctx, fn) -> str:
        params, sig, body = ["L"], ["float64[::1]"], []
        for i, n in enumerate(fn.losses):
            host = n in c.host
            params.append(f"a{i}")
            sig.append(self.dtype if host else _type(self.dtype, self.G, n))
            body.append(f"L[{i}] = a{i}" + ("" if host else "[0]"))
        name = self.kernel("losses", params, body, "the loss terms, into a float64 array", sig)
        return f"{name}[1, 1](losses, {', '.join(c.name(n) for n in fn.losses)})  # the loss terms"


def _in_place(G: Graph, fn, steps: List[Step]) -> Dict[int, int]:
    """value node -> leaf, for the updates that may write their leaf directly: the value is an
    output of a fused step, that step reads the leaf (or a view of it) only at each thread's
    own index, and every other reader of it runs in an earlier step."""
    where = {n: i for i, st in enumerate(steps) for n in st.nodes}
    leaves = [leaf for leaf, _ in fn.assigns]
    out: Dict[int, int] = {}
    for leaf, value in fn.assigns:
        if leaves.count(leaf) != 1 or value not in where or value in out:
            continue
        k = where[value]
        if steps[k].kind != "fused" or value not in steps[k].outputs:
            continue
        aliases = {leaf} | {m for m in where if lowering(G, m).kind == "view"
                            and G.inputs(m)[0] == leaf}           # views share the leaf's memory
        ok = True
        for m in where:
            if m in aliases:
                continue
            for p, u in enumerate(G.inputs(m)):
                if u not in aliases or u not in value_operands(G, m):
                    continue                                     # reads only its shape
                if where[m] == k:
                    ok = ok and u == leaf and reads_pointwise(G, m, p)
                elif where[m] > k:
                    ok = False
        if ok:
            out[value] = leaf
    return out


def generate(G: Graph, functions, dtype: str, header: str = "", fuse: bool = True) -> str:
    """The module source: constants, kernels, buffer plans and one driver per entry point;
    `fuse` false (`--no-pass fuse`): one kernel per pointwise node."""
    gen = _Generator(G, dtype, fuse)
    drivers = [gen.function(fn) for fn in functions]
    lines = [f"# generated by netc: {header}".rstrip(),
             "import math", "", "import numpy as np", "from numba import cuda", "",
             "from netc.compiler.backend.cuda import kernels as K", "",
             f"DT = np.{dtype}", "CACHE = not K.SIM            # numba's on-disk cache of compiled kernels"]
    for value, name in gen.consts.items():
        lit = repr(float(value)) if math.isfinite(value) else f"float('{value}')"
        lines.append(f"{name} = DT({lit})")
    kernels = [src for _, src, _ in gen.kernels.values()]
    sigs = ",\n".join(f"    ({name!r}, {sig!r})" for name, _, sig in gen.kernels.values())
    return ("\n".join(lines) + "\n\n\n" + "\n\n".join(kernels) + "\n\n"
            + "# every kernel above with its argument types (the PTX test compiles each)\n"
            + f"KERNELS = [\n{sigs}\n]\n\n\n" + "\n\n".join(drivers))
