"""The CPU backend: entry graphs with the CPU's fusion and memory plan, one @njit function per
entry point (`codegen`), the lowering table (`lowering`), hand-written helpers (`kernels`) and
the compiled model (`artifact.Artifact`)."""
from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

from ...cache import load_module
from ...ir import Graph
from ...threads import configure
from ...traingraph import entry_graphs as _entry_graphs
from ...traingraph import functions, split_functions, split_graphs
from .artifact import Artifact
from .codegen import epoch_function, generate
from .warmstart import preload_blas, quick_load
from .lowering import LOWERINGS, RULES, fuse_elementwise, schedule  # noqa: F401  (the table, rules)

NAME = "cpu"


def entry_graphs(checked) -> Tuple[Dict[str, Graph], Dict[str, int]]:
    """The graph of each entry point after the entry passes (dce, fuse, memplan) with the
    CPU's rules, and how often each fired."""
    return _entry_graphs(checked.model, checked.train.graph, RULES, checked.disabled, checked.verify_each)


def _source(checked, dtype: str, graphs: Dict[str, Graph], split: Dict[str, Graph] = None) -> str:
    model, tg = checked.model, checked.train
    header = f"model '{model.name}', backend cpu, {dtype}"
    fns = functions(model, tg.graph, tg.states, graphs)
    fns += split_functions(model, tg.graph, tg.states, tg.grads, split or {})
    src = generate(tg.graph, fns, dtype, header)
    epoch = [epoch_function(src, f, model.target is not None) for f in fns if f.name == "train_step"]
    return src + ("\n\n" + epoch[0] if epoch and epoch[0] else "")


def source(checked, dtype: str = "float32", split: bool = False) -> str:
    """The generated source, without importing or compiling it (`split`: with grad_step and
    apply_step, the split train step of data-parallel training)."""
    graphs, _ = entry_graphs(checked)
    return _source(checked, dtype, graphs, _split_graphs(checked)[0] if split else None)


def _split_graphs(checked):
    return split_graphs(checked.model, checked.train, RULES, checked.disabled, checked.verify_each)


def compile(checked, dtype: str = "float32", threads: Optional[int] = None, split: bool = False) -> Artifact:
    """Entry graphs, generated source, the imported module: the CPU's CompiledModel. `split`:
    also grad_step and apply_step (data-parallel training; `Artifact.grad_step`)."""
    model, tg = checked.model, checked.train
    t, report = dict(checked.timings), dict(tg.report)
    t0 = time.perf_counter()
    graphs, entry_report = entry_graphs(checked)
    report.update(entry_report)
    sgraphs = _split_graphs(checked)[0] if split else {}
    t["entry passes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    src = _source(checked, dtype, graphs, sgraphs)
    t["codegen"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    preload_blas()          # before Numba's first compile or cache load (see warmstart)
    module = load_module(src, "cpu", model.name)
    quick_load(module)
    t["cache/import"] = time.perf_counter() - t0
    chosen = configure(threads)
    return Artifact(model, tg.forward, tg.graph, dtype, tg.states, src, module,
                    [l.name for l in model.losses], report, t, {**graphs, **sgraphs}, chosen)
