"""The CUDA backend: one graph for all entry points, grouped into generated numba.cuda kernels
(`codegen`) by the lowering table (`lowering`), the hand-written kernels (`kernels`) and the
device-resident compiled model (`artifact.CudaArtifact`). Imported only when the GPU is asked
for (`compiler.backend.get("cuda")`); numba.cuda itself only when a model is compiled."""
from __future__ import annotations

import time
from importlib.metadata import version
from typing import Optional

from ...cache import load_module
from ...traingraph import ENTRY_POINTS, functions, split_functions, split_graphs, view
from .artifact import CudaArtifact
from .codegen import generate
from .lowering import LOWERINGS, RULES  # noqa: F401  (the backend's table and rules)

NAME = "cuda"


def source(checked, dtype: str = "float32", split: bool = False) -> str:
    """The CUDA module's source. Of the entry passes only `fuse` applies (dce: each entry point
    computes only what its roots need; memory: a buffer per value, allocated once per batch
    size), and the backend groups while it schedules, so switching it off is passed on here.
    Needs numba-cuda's code generator only, no GPU."""
    model, tg = checked.model, checked.train
    header = f"model '{model.name}', backend cuda, {dtype}, numba-cuda {version('numba-cuda')}"
    G = tg.graph
    graphs = None       # one graph for all, unless it has train and predict views (batchnorm, dropout)
    if any(G.op(n) == "phase" for n in G.g.nodes):
        graphs = {}
        for name in ENTRY_POINTS:
            E = G.copy()
            view(E, name)
            graphs[name] = E
    fns = functions(model, G, tg.states, graphs)
    if split:           # grad_step and apply_step (data-parallel training), only when asked
        sgraphs, _ = split_graphs(model, tg, None, checked.disabled, checked.verify_each)
        fns += split_functions(model, G, tg.states, tg.grads, sgraphs)
    return generate(G, fns, dtype, header, fuse="fuse" not in checked.disabled)


def compile(checked, dtype: str = "float32", threads: Optional[int] = None, split: bool = False) -> CudaArtifact:
    """Generated source, the imported module: the GPU's CompiledModel (`threads` is the CPU's
    business and ignored here). `split`: also grad_step and apply_step."""
    tg, t = checked.train, dict(checked.timings)
    t0 = time.perf_counter()
    src = source(checked, dtype, split)
    t["codegen"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    module = load_module(src)
    t["cache/import"] = time.perf_counter() - t0
    return CudaArtifact(checked.model, tg.forward, tg.graph, dtype, tg.states, src, module, dict(tg.report), t)
