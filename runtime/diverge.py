"""Where a training run diverged: the failing step is re-run from its params (the epoch is
replayed from its start with the compiled step, which is deterministic) through the NumPy
interpreter (compiler/interp.py), node by node in topological order, and the first node whose
value is not finite is named with its op and the `.net` line it comes from."""
from __future__ import annotations

from collections import deque
from typing import List, Optional

import numpy as np

from netc.compiler import interp
from netc.dsl.diagnostics import Diagnostic, render


class TrainingDiverged(Exception):
    """A loss (or a param after an update) became NaN or infinite. `epoch` and `step` are
    1-based; `origin` describes the first non-finite value of the failing step (see
    `diagnose`) and `where` renders it with its `.net` line. Not a user error: the CLI exits
    with status 1 and names the last good checkpoint."""

    def __init__(self, message: str, epoch: int, step: int, loss: str, value: float,
                 origin: Optional[dict] = None, where: str = ""):
        super().__init__(message)
        self.epoch, self.step, self.loss, self.value = epoch, step, loss, value
        self.origin, self.where = origin, where
        self.checkpoint: Optional[str] = None     # the last good checkpoint, set by a run directory
        self.restored_epoch: Optional[int] = None  # early stopping's best epoch, restored


def _fmt(v: float) -> str:
    return "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")


def _first_bad(a: np.ndarray) -> float:
    a = np.asarray(a, np.float64).reshape(-1)
    return float(a[np.argmax(~np.isfinite(a))])


def _classify(G, n: int):
    """("forward" | "backward" | "update", the updated leaf's name or None) of node n of a
    train graph: the update depends on the learning rate, the step or optimizer state; the
    forward pass is what the losses and the output need; the rest is the gradient."""
    if _after_lr(G, n):
        for k, v in G.outputs.items():
            if k.startswith("update:") and (v == n or n in set(G.topo([v]))):
                return "update", k.split(":", 1)[1]
        return "update", None
    fwd = [v for k, v in G.outputs.items() if k.startswith("loss") or k == "output"]
    return ("forward" if n in set(G.topo(fwd)) else "backward"), None


def _after_lr(G, n: int) -> bool:
    """Whether n depends on the learning rate, the step count or an optimizer state (the
    step count only in the update: dropout's masks read it in the forward pass)."""
    if G.update_from is not None and n < G.update_from:
        return False
    for a in G.topo([n]):
        d = G.node(a)
        if d["op"] == "state" or (d["op"] == "input" and d.get("name") in ("lr", "step")):
            return True
    return False


def _span_near(G, n: int, forward: bool):
    """The node's span, else the nearest one: downstream (towards the loss) for a forward
    node, upstream for a backward one."""
    seen, queue = {n}, deque([n])
    while queue:
        m = queue.popleft()
        span = G.node(m).get("span")
        if span is not None and span.line > 0:
            return span
        nxt = G.users(m) if forward else G.inputs(m)
        for u in nxt:
            if u not in seen:
                seen.add(u)
                queue.append(u)
    return None


def diagnose(model, train, order, bs: int, b: int, step0: int, lr: float, epoch: int,
             snap_p: List[np.ndarray], snap_s: List[np.ndarray], update: bool = False):
    """A TrainingDiverged for step `b` (0-based within the epoch) of the 0-based `epoch`.
    Leaves the model's params at some point of the epoch (the caller restores them)."""
    art = model.artifact
    G = art.graph
    dt = model.dtype.type
    params = model.param_arrays()
    states = model.state_arrays()

    def batch(j):
        if order is None:
            return train.X[j * bs:(j + 1) * bs], train.y[j * bs:(j + 1) * bs]
        idx = order[j * bs:(j + 1) * bs]
        return train.X[idx], train.y[idx]

    def replay(upto: int):
        """Params and state as they were just before step `upto` of the epoch."""
        for a, s in zip(params + states, snap_p + snap_s):
            np.copyto(a, s)
        if upto:            # the epoch's compiled batch loop, as the fit ran it
            art.train_epoch(train.X, train.y, bs, dt(lr), step0, params, states, order, 0, upto)
            art.release()   # a device's copies back into the host arrays, and no longer held

    def feeds(j):
        xb, yb = batch(j)
        f = {G.node(model.ir.input_node)["name"]: xb, "lr": dt(lr), "step": dt(step0 + j + 1)}
        if model.ir.target is not None:
            f[G.node(model.ir.target.node)["name"]] = yb
        f.update({p.name: a for p, a in zip(model.ir.params, params)})
        f.update({s.name: a for s, a in zip(art.states, states)})
        return f

    replay(b)
    xb, yb = batch(b)
    losses = np.zeros(len(art.loss_names))
    art.evaluate(xb, yb, params, losses)
    bad_loss = next((i for i, v in enumerate(losses) if not np.isfinite(v)), None)
    params_ok = all(np.isfinite(a).all() for a in params + states)
    update_roots = [v for k, v in G.outputs.items() if k.startswith("update:")]
    step = step0 + b + 1
    if bad_loss is not None and params_ok:
        head = f"loss '{art.loss_names[bad_loss]}' is {_fmt(losses[bad_loss])}"
        roots, at = [G.outputs[f"loss:{nm}"] for nm in art.loss_names], b
    elif bad_loss is None:             # finite loss, but the update made a param non-finite
        roots, at = update_roots, b
        head = None
    else:                              # the previous step's update made a param non-finite
        at = b - 1
        if at < 0:
            roots = None
        else:
            replay(at)
            roots = update_roots
        head = f"loss '{art.loss_names[bad_loss]}' is {_fmt(losses[bad_loss])}"
    found = interp.first_nonfinite(G, feeds(at), roots, model.dtype) if roots is not None else None
    origin: Optional[dict] = None
    where = ""
    if head is None:
        kind, leaf = _classify(G, found[0]) if found is not None else (None, None)
        if kind == "update" and leaf is not None:
            leaf = {s.name: s.param for s in art.states}.get(leaf, leaf)
            head = f"the update made param '{leaf}' {_fmt(_first_bad(found[1]))}"
        else:
            bad = next((p.name for p, a in zip(model.ir.params, params) if not np.isfinite(a).all()), "?")
            head = f"param '{bad}' became non-finite"
    if found is not None:
        node, value = found
        kind, pname = _classify(G, node)
        d = G.node(node)
        shape = "[" + ", ".join(str(x) for x in d["shape"]) + "]"
        span = _span_near(G, node, forward=kind == "forward")
        if kind == "update":
            opt = model.ir.optimizer
            span = opt[2] if opt[2] is not None and opt[2].line > 0 else span
            pname = {s.name: s.param for s in art.states}.get(pname, pname)
            what = f"by `{d['op']}` {shape} in the {opt[0]} update of param '{pname}'"
        elif kind == "backward":
            what = f"by `{d['op']}` {shape} in the backward pass (the gradient of this line)"
        else:
            what = f"by `{d['op']}` {shape}"
        val = _fmt(_first_bad(value))
        origin = {"node": node, "op": d["op"], "kind": kind, "value": val, "param": pname,
                  "file": span.file if span else None, "line": span.line if span else None,
                  "col": span.col if span else None,
                  "step": step0 + at + 1}
        if span is not None:
            msg = f"the first non-finite value ({val}) is computed {what}" + \
                  (f" at step {step0 + at + 1}" if at != b else "")
            where = render(Diagnostic(span, msg, severity="note"), model.source)
        else:
            where = f"note: the first non-finite value ({val}) is computed {what}"
    message = f"training diverged at epoch {epoch + 1}, step {step} (learning rate {lr:g}): {head}"
    if where:
        message += "\n" + where
    value = float(losses[bad_loss]) if bad_loss is not None else float("nan")
    return TrainingDiverged(message, epoch + 1, step, art.loss_names[bad_loss] if bad_loss is not None else "",
                            value, origin, where)


def stop(runner, order, batch_index: int, step0: int, lr: float, epoch: int, update: bool = False):
    """End a diverged epoch of `runner` (the loop's _Epochs, or distributed.DataParallel: its
    model, train set, batch size, params, states and their snapshots at the epoch's start):
    diagnose the failing step, put back the params and state of the epoch's start, raise."""
    m = runner.model
    err = diagnose(m, runner.train, order, runner.bs, batch_index, step0, lr, epoch, runner.snap_p, runner.snap_s,
                   update)
    for a, b in zip(runner.snap_p + runner.snap_s, runner.params + runner.states):
        np.copyto(b, a)
    m.step = step0
    raise err
