"""The compile driver: AST -> forward IR -> forward passes -> autodiff -> optimizer update ->
graph passes -> generated source -> imported kernels. Each stage's result is kept on the
Artifact, so `netc show --stage ...` can print any of them."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from netc.dsl import ast as A

from . import passes as P
from .autodiff import grad
from .cache import load_module
from .codegen_cpu import Function, arg_name, generate
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
    graph: Graph                        # forward + backward + update, optimized
    dtype: str
    states: List[StateInfo]
    source: str
    module: object
    loss_names: List[str]
    pass_report: Dict[str, int]
    timings: Dict[str, float] = field(default_factory=dict)

    # The runtime's contract: these three signatures stay fixed whatever the backend generates.
    def train_step(self, x, y, lr, step, params: list, states: list, losses):
        """One step: forward, backward and the optimizer's update of `params` and `states` in
        place; the loss terms (before the update) go to `losses`; returns the output batch."""
        return self.module.train_step(x, y, lr, step, *params, *states, losses)

    def evaluate(self, x, y, params: list, losses):
        """Loss terms into `losses`; returns the output batch."""
        return self.module.evaluate(x, y, *params, losses)

    def predict(self, x, params: list):
        return self.module.predict(x, *params)

    @property
    def has_predict(self) -> bool:
        return hasattr(self.module, "predict")


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
        grads = grad(G, total, params)
        name, args, _ = model.optimizer
        for sname, node, pname in add_update(G, name, args, grads):
            states.append(StateInfo(sname, pname, G.attrs(node)["init"]))
    report.update(P.run(G, P.GRAPH, disabled, verify_each))
    if verify_each:
        verify(G)
    return forward, G, states, report


def functions(model: ModelIR, G: Graph, states: List[StateInfo]) -> List[Function]:
    """The entry points: train_step (forward, backward, update), evaluate, predict."""
    leaf = {G.node(n)["name"]: n for n in G.g.nodes if G.op(n) in ("input", "target", "param", "state")}
    x = model.input_node
    params = [p.node for p in model.params]
    losses = [G.outputs[f"loss:{l.name}"] for l in model.losses]
    out = [G.outputs["output"]] if "output" in G.outputs else []
    y = [model.target.node] if model.target is not None else []
    fns = []
    if model.losses:
        state_nodes = [leaf[s.name] for s in states]
        assigns = [(leaf[k.split(":", 1)[1]], v) for k, v in G.outputs.items() if k.startswith("update:")]
        fns.append(Function("train_step", [x] + y + [leaf["lr"], leaf["step"]] + params + state_nodes,
                            losses=losses, returns=out, assigns=assigns))
        fns.append(Function("evaluate", [x] + y + params, losses=losses, returns=out))
    if out:
        fns.append(Function("predict", [x] + params, returns=out))
    return fns


def compile_program(program: A.Program, dtype: str = "float32", disabled=(), verify_each: bool = False) -> Artifact:
    """Compile a parsed program; raises NetcError for the user's mistakes."""
    assert dtype in DTYPES, dtype
    t = {}
    t0 = time.perf_counter()
    model = elaborate(program)
    t["elaborate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    forward, G, states, report = build_graph(model, disabled, verify_each)
    t["graph"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    header = f"model '{model.name}', backend cpu, {dtype}"
    source = generate(G, functions(model, G, states), dtype, header)
    t["codegen"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    module = load_module(source)
    t["import"] = time.perf_counter() - t0
    return Artifact(model, forward, G, dtype, states, source, module,
                    [l.name for l in model.losses], report, t)
