"""The backend contract: what every backend's compiled model offers the runtime, and the one
exception a backend raises for an op it cannot lower."""
from __future__ import annotations

from typing import Dict, List, Optional, Protocol, runtime_checkable

from ..values import ModelIR
from ..ir import Graph
from ..traingraph import StateInfo


class MissingLowering(Exception):
    """An op of the registry has no lowering on a backend: a bug of netc's, named loudly (the
    registry-driven test that every op has an entry in each backend's table catches it first)."""

    def __init__(self, op: str, backend: str):
        self.op, self.backend = op, backend
        label = {"cpu": "CPU", "cuda": "CUDA"}.get(backend, backend)
        super().__init__(f"op '{op}' has no {label} lowering (add an entry to compiler/backend/{backend}/lowering.py)")


@runtime_checkable
class CompiledModel(Protocol):
    """A model compiled for one backend (`compiler.frontend.lower`). The params and optimizer
    state are the caller's host arrays, passed in every call (the runtime owns them); a
    backend that keeps device copies says so through the residency hooks.

    train_step   one step: forward, backward and the optimizer's update of `params` and
                 `states` in place; the loss terms (before the update) into `losses`; returns
                 the output batch (written into `out` when given)
    train_epoch  the steps of batches [start, stop) of an epoch over the rows of X (in
                 `order` when given; default all batches), batch j numbered step0 + j + 1:
                 returns (loss terms per batch, float64 [batches, terms]; outputs of all rows
                 in batch order, or None), written into `terms` / `outs` when given (a runtime
                 running an epoch in chunks, for its progress, passes the same ones each call)
    train_epochs whole epochs one after another, epoch e at learning rate lrs[e] (in
                 orders[e] when given), numbered on from step0: the same numbers as a
                 train_epoch per epoch, returned as (terms [epochs, batches, terms], outputs
                 [epochs, samples, ...] or None); a block of short epochs costs one call
    compile_epoch
                 compile (or load from a cache) what train_epoch runs for these arrays,
                 without running a step: the seconds it took, 0.0 when nothing was to do
    evaluate     loss terms into `losses`; returns the output batch
    predict      the output batch
    hold / sync / release
                 residency: keep params and state on the device between steps / copy them
                 back into the host arrays / stop (no-ops on the CPU)
    """
    model: ModelIR
    dtype: str
    device: str
    states: List[StateInfo]
    loss_names: List[str]
    source: str
    module: object
    entries: Dict[str, Graph]
    pass_report: Dict[str, int]
    timings: Dict[str, float]
    threads: Dict[str, object]
    forward: Graph
    graph: Graph

    @property
    def has_predict(self) -> bool: ...

    def train_step(self, x, y, lr, step, params: list, states: list, losses, out=None): ...

    def train_epoch(self, X, y, batch: int, lr, step0: int, params: list, states: list,
                    order: Optional[object] = None, start: int = 0, stop: Optional[int] = None,
                    terms=None, outs=None): ...

    def train_epochs(self, X, y, batch: int, lrs, step0: int, params: list, states: list,
                     orders: Optional[object] = None, terms=None, outs=None): ...

    def compile_epoch(self, X, y, batch: int, lr, params: list, states: list,
                      order: Optional[object] = None) -> float: ...

    def evaluate(self, x, y, params: list, losses): ...

    def predict(self, x, params: list): ...

    def hold(self) -> None: ...

    def sync(self) -> None: ...

    def release(self, sync: bool = True) -> None: ...
