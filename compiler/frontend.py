"""The compiler's front door: `check` a parsed program (elaborate, shape-check, differentiate,
the graph passes), then `lower` what was checked onto a backend.

    checked = check(program)                 # every mistake of the file at once (NetcError)
    compiled = lower(checked, device="cpu")  # a CompiledModel (see compiler/backend)

Everything that turns a program into kernels goes through these two functions: `netc.compile`,
`netc.load`, resuming a run, `netc check/show/graph` and the tests.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from netc.dsl import ast as A

from .elaborate import ModelIR, elaborate
from .ir import Graph
from .pipeline import DTYPES, StateInfo, build_graph


@dataclass
class TrainGraph:
    """What autodiff and the graph passes make of a model: the forward graph (after the
    forward passes), the train graph (forward + backward + optimizer update, after the graph
    passes), the optimizer's state arrays, and how often each pass fired."""
    forward: Graph
    graph: Graph
    states: List[StateInfo]
    report: Dict[str, int]


@dataclass
class Checked:
    """A program that passed every check: its elaborated model and its train graph."""
    program: A.Program
    model: ModelIR
    train: TrainGraph
    disabled: tuple = ()
    verify_each: bool = False
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.program.source


def check(program: A.Program, disabled=(), verify_each: bool = False) -> Checked:
    """Elaborate `program` and build its train graph; raises NetcError with every problem."""
    t = {}
    t0 = time.perf_counter()
    model = elaborate(program)
    t["elaborate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    forward, G, states, report = build_graph(model, tuple(disabled), verify_each)
    t["graph+autodiff+passes"] = time.perf_counter() - t0
    return Checked(program, model, TrainGraph(forward, G, states, report), tuple(disabled), verify_each, t)


def lower(checked: Checked, device: Optional[str] = "cpu", dtype: str = "float32",
          threads: Optional[int] = None):
    """Compile what was checked for a device ("cpu", "cuda", "auto", or None for the train
    block's `device`): returns the backend's CompiledModel."""
    from .backend_cuda import resolve_device
    from .pipeline import compile_cpu
    assert dtype in DTYPES, dtype
    tg, t = checked.train, dict(checked.timings)
    report = dict(tg.report)
    if device != "cpu" and resolve_device(device, checked.model, checked.source) == "cuda":
        from .backend_cuda import compile_cuda
        return compile_cuda(checked.model, tg.forward, tg.graph, tg.states, report, dtype, t, checked.disabled)
    return compile_cpu(checked.model, tg.forward, tg.graph, tg.states, report, dtype, t, checked.disabled,
                       checked.verify_each, threads)


def entry_graphs(checked: Checked) -> Dict[str, Graph]:
    """The optimized graph of each entry point (train_step, evaluate, predict) of the CPU
    backend, for `netc graph`."""
    from .pipeline import entry_graphs as _entry_graphs
    graphs, _ = _entry_graphs(checked.model, checked.train.graph.copy(), checked.disabled, checked.verify_each)
    return graphs


def kernels_source(checked: Checked, device: str = "cpu", dtype: str = "float32") -> str:
    """The generated source of a backend, without importing or compiling it (the CUDA source
    needs numba-cuda's code generator only, no GPU)."""
    if device == "cuda":
        from .backend_cuda import generate_source
        tg = checked.train
        return generate_source(checked.model, tg.graph, tg.states, dtype, checked.disabled)
    return lower(checked, "cpu", dtype).source
