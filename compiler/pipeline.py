"""OLD PATH, kept only until the runtime and the CLI call `compiler.frontend` (issue 9): the
names below moved. Nothing inside compiler/ imports this module.

    compile_program(program, ...)  -> frontend.lower(frontend.check(program, ...), ...)
    build_graph(model, ...)        -> traingraph.build(model, ...) (a TrainGraph, not a 4-tuple)
    entry_graphs(model, G, ...)    -> frontend.entry_graphs(checked)
    Artifact                       -> backend.contract.CompiledModel (the CPU's: backend.cpu.Artifact)
"""
from __future__ import annotations

from typing import Optional

from netc.dsl import ast as A

from .backend.cpu import RULES
from .backend.cpu.artifact import Artifact  # noqa: F401
from .elaborate import ModelIR
from .frontend import DTYPES, check, lower  # noqa: F401
from .ir import Graph
from .traingraph import StateInfo, build  # noqa: F401
from .traingraph import entry_graphs as _entry_graphs


def build_graph(model: ModelIR, disabled=(), verify_each: bool = False):
    tg = build(model, disabled, verify_each)
    return tg.forward, tg.graph, tg.states, tg.report


def entry_graphs(model: ModelIR, G: Graph, disabled=(), verify_each: bool = False):
    return _entry_graphs(model, G, RULES, disabled, verify_each)


def compile_program(program: A.Program, dtype: str = "float32", disabled=(), verify_each: bool = False,
                    threads: Optional[int] = None, device: Optional[str] = "cpu"):
    return lower(check(program, disabled, verify_each), device=device, dtype=dtype, threads=threads)
