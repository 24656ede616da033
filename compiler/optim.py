"""Optimizers as graph: each one adds, per param, the nodes of its update with exactly
PyTorch's semantics. Optimizer state (momentum buffers, moments) is graph state ("state"
leaves); the learning rate and the 1-based step count are scalar inputs of the train step, so
a schedule never recompiles."""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

from .ir import Graph

# name -> allowed keyword arguments and their defaults (PyTorch's); the elaborator checks calls
OPTIMIZER_ARGS: Dict[str, Dict[str, float]] = {
    "sgd": dict(lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    "adam": dict(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
    "adamw": dict(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
    "rmsprop": dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0),
    "adagrad": dict(lr=0.01, lr_decay=0.0, weight_decay=0.0, eps=1e-10, initial_accumulator_value=0.0),
}


class Updater:
    """Helpers shared by the update rules; `t` is the 1-based step, `lr` the learning rate."""

    def __init__(self, G: Graph, lr: int, t: int):
        self.G, self.lr, self.t = G, lr, t
        self.states: List[Tuple[str, int, str]] = []      # (state name, state node, param name)

    def c(self, v):
        return self.G.const(v)

    def op(self, name, *xs, **attrs):
        return self.G.add(name, list(xs), attrs)

    def state(self, pname: str, suffix: str, like: int, init: float = 0.0) -> int:
        name = f"{pname}.{suffix}"
        n = self.G.leaf("state", name, self.G.shape(like), attrs={"init": init, "param": pname})
        self.states.append((name, n, pname))
        return n

    def assign(self, leaf: int, value: int) -> None:
        self.G.outputs[f"update:{self.G.node(leaf)['name']}"] = value

    def first_step(self) -> int:
        """1.0 on the first step, else 0.0 (PyTorch starts a momentum buffer as a copy of g)."""
        return self.op("greater", self.c(1.5), self.t)


def _sgd(u: Updater, p: int, g: int, name: str, a: dict) -> None:
    op, c = u.op, u.c
    if a["weight_decay"]:
        g = op("add", g, op("mul", p, c(a["weight_decay"])))
    if a["momentum"]:
        buf = u.state(name, "momentum", p)
        first = u.first_step()
        keep = op("mul", c(a["momentum"]), op("sub", c(1.0), first))          # 0 on the first step
        scale = op("add", first, op("mul", op("sub", c(1.0), first), c(1.0 - a["dampening"])))
        new_buf = op("add", op("mul", buf, keep), op("mul", g, scale))
        u.assign(buf, new_buf)
        g = op("add", g, op("mul", new_buf, c(a["momentum"]))) if a["nesterov"] else new_buf
    u.assign(p, op("sub", p, op("mul", g, u.lr)))


def _adam(u: Updater, p: int, g: int, name: str, a: dict, decoupled: bool = False) -> None:
    op, c = u.op, u.c
    if a["weight_decay"]:
        if decoupled:     # AdamW: p <- p (1 - lr wd) before the Adam step
            p_used = op("mul", p, op("sub", c(1.0), op("mul", u.lr, c(a["weight_decay"]))))
        else:
            g = op("add", g, op("mul", p, c(a["weight_decay"])))
            p_used = p
    else:
        p_used = p
    m, v = u.state(name, "exp_avg", p), u.state(name, "exp_avg_sq", p)
    b1, b2 = a["beta1"], a["beta2"]
    new_m = op("add", op("mul", m, c(b1)), op("mul", g, c(1.0 - b1)))
    new_v = op("add", op("mul", v, c(b2)), op("mul", op("mul", g, g), c(1.0 - b2)))
    bc1 = op("sub", c(1.0), op("pow", c(b1), u.t))
    bc2 = op("sub", c(1.0), op("pow", c(b2), u.t))
    step_size = op("div", u.lr, bc1)
    denom = op("add", op("div", op("sqrt", new_v), op("sqrt", bc2)), c(a["eps"]))
    u.assign(m, new_m)
    u.assign(v, new_v)
    u.assign(p, op("sub", p_used, op("mul", op("div", new_m, denom), step_size)))


def _rmsprop(u: Updater, p: int, g: int, name: str, a: dict) -> None:
    op, c = u.op, u.c
    if a["weight_decay"]:
        g = op("add", g, op("mul", p, c(a["weight_decay"])))
    sq = u.state(name, "square_avg", p)
    new_sq = op("add", op("mul", sq, c(a["alpha"])), op("mul", op("mul", g, g), c(1.0 - a["alpha"])))
    u.assign(sq, new_sq)
    step = op("div", g, op("add", op("sqrt", new_sq), c(a["eps"])))
    if a["momentum"]:
        buf = u.state(name, "momentum", p)
        step = op("add", op("mul", buf, c(a["momentum"])), step)
        u.assign(buf, step)
    u.assign(p, op("sub", p, op("mul", step, u.lr)))


def _adagrad(u: Updater, p: int, g: int, name: str, a: dict) -> None:
    op, c = u.op, u.c
    if a["weight_decay"]:
        g = op("add", g, op("mul", p, c(a["weight_decay"])))
    acc = u.state(name, "sum", p, init=a["initial_accumulator_value"])
    clr = op("div", u.lr, op("add", c(1.0), op("mul", op("sub", u.t, c(1.0)), c(a["lr_decay"]))))
    new_acc = op("add", acc, op("mul", g, g))
    u.assign(acc, new_acc)
    u.assign(p, op("sub", p, op("mul", op("div", g, op("add", op("sqrt", new_acc), c(a["eps"]))), clr)))


RULES: Dict[str, Callable] = {
    "sgd": _sgd, "adam": _adam, "rmsprop": _rmsprop, "adagrad": _adagrad,
    "adamw": lambda u, p, g, name, a: _adam(u, p, g, name, a, decoupled=True),
}


def step_leaf(G: Graph) -> int:
    """The train step's 1-based step count, a scalar input (one leaf, shared with dropout)."""
    for n in G.g.nodes:
        if G.op(n) == "input" and G.node(n)["name"] == "step":
            return n
    return G.leaf("input", "step", ())


def add_update(G: Graph, optimizer: str, args: dict, grads: Dict[int, int]) -> List[Tuple[str, int, str]]:
    """Add the update of every param (grads: param node -> gradient node) to G, as outputs
    "update:NAME". Returns the optimizer's state leaves as (name, node, param name)."""
    a = dict(OPTIMIZER_ARGS[optimizer])
    a.update(args)
    lr = G.leaf("input", "lr", ())
    t = step_leaf(G)
    u = Updater(G, lr, t)
    for p, g in grads.items():
        RULES[optimizer](u, p, g, G.node(p)["name"], a)
    return u.states
