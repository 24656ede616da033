"""The compiler's front door: `check` a parsed program (elaborate, shape-check, differentiate,
the graph passes), then `lower` what was checked onto a backend.

    checked = check(program)                 # every mistake of the file at once (NetcError)
    compiled = lower(checked, device="cpu")  # a CompiledModel (see compiler/backend)

Everything that turns a program into kernels goes through these two functions: `netc.compile`,
`netc.load`, resuming a run, `netc check/show/graph` and the tests. The backend comes from the
one table of `compiler.backend`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional

from netc.dsl import ast as A

from . import backend
from .backend.contract import CompiledModel
from .elaborate import elaborate
from .values import ModelIR
from .ir import Graph
from .traingraph import StateInfo, TrainGraph, build  # noqa: F401  (part of the front door)

DTYPES = ("float32", "float64")


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
    train = build(model, tuple(disabled), verify_each)
    t["graph+autodiff+passes"] = time.perf_counter() - t0
    return Checked(program, model, train, tuple(disabled), verify_each, t)


def lower(checked: Checked, device: Optional[str] = "cpu", dtype: str = "float32",
          threads: Optional[int] = None, split: bool = False) -> CompiledModel:
    """Compile what was checked for a device ("cpu", "cuda", "auto", or None for the train
    block's `device`): returns the backend's CompiledModel. `split`: also the entry points
    grad_step and apply_step (data-parallel training), generated only when asked."""
    assert dtype in DTYPES, dtype
    name = "cpu" if device == "cpu" else backend.select(device, checked.model, checked.source)
    if split:
        return backend.get(name).compile(checked, dtype, threads, split=True)
    return backend.get(name).compile(checked, dtype, threads)


def entry_graphs(checked: Checked) -> Dict[str, Graph]:
    """The optimized graph of each entry point (train_step, evaluate, predict) of the CPU
    backend, for `netc graph`."""
    graphs, _ = backend.get("cpu").entry_graphs(checked)
    return graphs


def kernels_source(checked: Checked, device: str = "cpu", dtype: str = "float32") -> str:
    """The generated source of a backend, without importing or compiling it (the CUDA source
    needs numba-cuda's code generator only, no GPU)."""
    return backend.get(device).source(checked, dtype)
