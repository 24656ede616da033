"""The compile driver: AST -> forward IR -> forward passes -> autodiff -> optimizer update ->
graph passes -> generated source -> imported kernels. Each stage's result is kept on the
Artifact, so `netc show --stage ...` can print any of them."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from netc.dsl import ast as A

from . import passes as P
from .autodiff import grad
from .cache import load_module
from .codegen_cpu import Function, generate
from .elaborate import ModelIR, elaborate
from .ir import Graph, verify
from .optim import add_update

DTYPES = ("float32", "float64")


@dataclass
class StateInfo:
    name: str
    param: str
    init: float


@dataclass
class Artifact:
    """A compiled model: what the runtime needs, and each stage for inspection."""
    model: ModelIR
    forward: Graph                      # the forward graph after the forward passes
    graph: Graph                        # forward + backward + update, after the train passes
    dtype: str
    states: List[StateInfo]
    source: str
    module: object
    loss_names: List[str]
    pass_report: Dict[str, int]
    timings: Dict[str, float] = field(default_factory=dict)
    entries: Dict[str, Graph] = field(default_factory=dict)     # entry point -> its graph
    threads: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        self._calls = {name: _caller(self, name) for name in self.entries}

    def _call(self, name: str, args: tuple):
        """First call of an entry point: Numba compiles it (or loads it from its cache) -- time
        that -- then the fast caller replaces the method on this instance."""
        t0 = time.perf_counter()
        r = self._calls[name](*args)
        self.timings[f"jit {name} (first call)"] = time.perf_counter() - t0
        setattr(self, name, self._calls[name])
        return r

    # The runtime's contract: these three signatures stay fixed whatever the backend generates.
    def train_step(self, x, y, lr, step, params: list, states: list, losses, out=None):
        """One step: forward, backward and the optimizer's update of `params` and `states` in
        place; the loss terms (before the update) go to `losses`; returns the output batch
        (written into `out` when given)."""
        return self._call("train_step", (x, y, lr, step, params, states, losses, out))

    def train_epoch(self, X, y, batch: int, lr, step0: int, params: list, states: list, order=None):
        """An epoch of train steps over the rows of X (in `order` when given), numbered
        step0 + 1, ...: returns the loss terms of each batch (float64 [batches, terms]) and the
        outputs of all rows in batch order. Each batch is a contiguous view of the epoch's
        data, and its loss terms and output are written in place: a step costs the compiled
        call and a few slices. A non-finite loss does not stop the epoch; the caller reads the
        terms once, at its end (as from a GPU)."""
        import numpy as np
        Xe, Ye = (X, y) if order is None else (X[order], y[order])
        n = len(Xe)
        terms = np.zeros((-(-n // batch), len(self.loss_names)))
        out_node = self.entries["train_step"].outputs.get("output")
        outs = np.empty((n,) + tuple(self.entries["train_step"].shape(out_node)[1:]), self.dtype) \
            if out_node is not None else None
        dt = np.dtype(self.dtype).type
        for j, i in enumerate(range(0, n, batch)):
            self.train_step(Xe[i:i + batch], Ye[i:i + batch], lr, dt(step0 + j + 1), params, states, terms[j],
                            None if outs is None else outs[i:i + batch])
        return terms, outs

    def evaluate(self, x, y, params: list, losses):
        """Loss terms into `losses`; returns the output batch."""
        return self._call("evaluate", (x, y, params, losses))

    def predict(self, x, params: list):
        return self._call("predict", (x, params))

    @property
    def has_predict(self) -> bool:
        return "predict" in self.entries

    # Residency hooks of the backend contract: on the CPU the host arrays are the kernels' own.
    device = "cpu"

    def hold(self) -> None:
        """Nothing to do: params and state live in host memory."""

    def sync(self) -> None:
        """Nothing to do: params and state live in host memory."""

    def release(self, sync: bool = True) -> None:
        """Nothing to do: params and state live in host memory."""


ARENAS_KEPT = 4         # arenas kept per entry point (one per recent batch size)


def _caller(art: "Artifact", name: str):
    """A Python function with the signature of the runtime's contract for entry point `name`,
    calling the generated function with what it takes besides: `losses`, the `out` array of
    the output and, with a memory plan, the arena of this batch size (allocated once per batch
    size, reused; an output is a fresh array, since the caller may keep it)."""
    import numpy as np
    from .codegen_cpu import is_planned
    E = art.entries[name]
    jit = getattr(art.module, name)
    dt = np.dtype(art.dtype)
    has_y = art.model.target is not None
    out_node = E.outputs.get("output")
    planned = is_planned(E)
    rest = tuple(E.shape(out_node)[1:]) if out_node is not None else None
    if planned:
        _, (a, c) = E.g.graph["memplan"].layout()
        arena_size = (a, c) if E.g.graph["memplan"].slots else None
    else:
        arena_size = None
    per_batch: Dict[int, tuple] = {}

    def buffers(B):
        """(extra positional arguments but the out array, out shape) for batch size B."""
        got = per_batch.get(B)
        if got is None:
            if len(per_batch) >= ARENAS_KEPT:
                per_batch.pop(next(iter(per_batch)))
            arena = (np.empty(max(arena_size[0] * B + arena_size[1], 1), dt),) if arena_size else ()
            got = per_batch[B] = (arena, (B,) + rest if rest is not None else None)
        return got

    def _generic(x, y, rest_args, into=None):
        if not planned:
            r = jit(x, *y, *rest_args)
            if into is not None and r is not None:
                into[...] = r
                return into
            return r
        arena, oshape = buffers(x.shape[0])
        out = ((np.empty(oshape, dt) if into is None else into),) if oshape is not None else ()
        jit(x, *y, *rest_args, *out, *arena)
        return out[0] if out else None
    if name == "train_step":
        if planned and has_y and rest is not None and arena_size:
            def train_step(x, y, lr, step, params, states, losses, out=None):   # the usual case, kept lean
                got = per_batch.get(x.shape[0]) or buffers(x.shape[0])
                if out is None:
                    out = np.empty(got[1], dt)
                jit(x, y, lr, step, *params, *states, losses, out, *got[0])
                return out
            return train_step

        def train_step(x, y, lr, step, params, states, losses, out=None):
            return _generic(x, (y,) if has_y else (), (lr, step, *params, *states, losses), out)
        return train_step
    if name == "evaluate":
        def evaluate(x, y, params, losses):
            return _generic(x, (y,) if has_y else (), (*params, losses))
        return evaluate

    def predict(x, params):
        return _generic(x, (), tuple(params))

    return predict


def build_graph(model: ModelIR, disabled=(), verify_each: bool = False):
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
        params = [p.node for p in model.params]
        G.g.graph["backward_from"] = G._next          # node ids from here on: the gradient
        grads = grad(G, total, params)
        G.g.graph["update_from"] = G._next            # ... and from here on: the update
        name, args, _ = model.optimizer
        for sname, node, pname in add_update(G, name, args, grads):
            states.append(StateInfo(sname, pname, G.attrs(node)["init"]))
    report.update(P.run(G, P.GRAPH, disabled, verify_each))
    if verify_each:
        verify(G)
    return forward, G, states, report


ENTRY_POINTS = ("train_step", "evaluate", "predict")


def entry_graphs(model: ModelIR, G: Graph, disabled=(), verify_each: bool = False):
    """One graph per entry point, each keeping only its outputs (train_step: loss terms,
    output, updates; evaluate: loss terms, output; predict: output), with the entry passes
    (dce, fuse, memplan) run on it. Returns ({name: graph}, {pass: fired, summed})."""
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
        E = G.copy()
        E.g.graph = {"outputs": {k: v for k, v in G.outputs.items() if keep[name](k)}, "entry": name,
                     **{k: G.g.graph[k] for k in ("backward_from", "update_from") if k in G.g.graph}}
        for k, v in P.run(E, P.ENTRY, disabled, verify_each).items():
            report[k] = report.get(k, 0) + v
        graphs[name] = E
    return graphs, report


def functions(model: ModelIR, G: Graph, states: List[StateInfo], graphs: Optional[Dict[str, Graph]] = None) -> List[Function]:
    """The entry points: train_step (forward, backward, update), evaluate, predict. Their
    arguments are the runtime's (x, y, lr, step, params..., states...); the generated code
    adds `losses`, the `out` array and, with a memory plan, the arena."""
    from .fuse import entry_roots
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


def compile_cpu(model: ModelIR, forward: Graph, G: Graph, states: List[StateInfo], report: Dict[str, int],
                dtype: str, t: Dict[str, float], disabled=(), verify_each: bool = False,
                threads: Optional[int] = None) -> Artifact:
    """The CPU backend: entry graphs, generated source, the imported module."""
    from .threads import configure
    t0 = time.perf_counter()
    graphs, entry_report = entry_graphs(model, G, disabled, verify_each)
    report.update(entry_report)
    t["entry passes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    header = f"model '{model.name}', backend cpu, {dtype}"
    source = generate(G, functions(model, G, states, graphs), dtype, header)
    t["codegen"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    module = load_module(source, "cpu", model.name)
    t["cache/import"] = time.perf_counter() - t0
    chosen = configure(threads)
    return Artifact(model, forward, G, dtype, states, source, module,
                    [l.name for l in model.losses], report, t, graphs, chosen)


def compile_program(program: A.Program, dtype: str = "float32", disabled=(), verify_each: bool = False,
                    threads: Optional[int] = None, device: Optional[str] = "cpu") -> Artifact:
    """Compile a parsed program (the front end's check, then lower); raises NetcError for the
    user's mistakes."""
    from .frontend import check, lower
    return lower(check(program, disabled, verify_each), device=device, dtype=dtype, threads=threads)
