"""The CPU's compiled model: the runtime's entry points over the imported @njit module."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List

import numba
import numpy as np

from ...cache import seal
from ...values import ModelIR
from ...ir import Graph
from ...traingraph import SPLIT_ENTRY_POINTS, StateInfo, grad_layout
from .codegen import is_planned


@dataclass
class Artifact:
    """A model compiled for the CPU (the backend contract, `CompiledModel`): what the runtime
    needs, and each stage for inspection. Params and optimizer state are the caller's host
    arrays, which the kernels update in place."""
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
        self._arenas: Dict[str, object] = {}     # entry point -> its arenas per batch size (_caller)
        self._calls = {name: (_split_caller if name in SPLIT_ENTRY_POINTS else _caller)(self, name)
                       for name in self.entries}
        self.grad_layout = grad_layout(self.model) if "grad_step" in self.entries else []
        self.grad_size = sum(math.prod(shape) for _, _, shape in self.grad_layout)
        self._called: set = set()           # entry points past their first call
        self._gathered = None               # (key, X rows, y rows): a shuffled chunk's rows
        self._epoch_types: set = set()      # the argument types train_epoch is compiled for
        out = self.entries["train_step"].outputs.get("output") if "train_step" in self.entries else None
        # the shape of one sample's output of the train step (None: it returns none)
        self.output_row = tuple(self.entries["train_step"].shape(out)[1:]) if out is not None else None

    def _call(self, name: str, args: tuple):
        """First call of an entry point: Numba compiles it (or loads it from its cache) -- time
        that -- then the fast caller replaces the method on this instance. A method bound
        before that (`step = art.train_step`) keeps coming here: it goes straight through."""
        if name in self._called:
            return self._calls[name](*args)
        hits = getattr(getattr(self.module, name, None), "_cache_hits", {})
        before = sum(hits.values())
        t0 = time.perf_counter()
        try:
            r = self._calls[name](*args)
        except OSError:
            # Numba compiled the entry point but could not write or read its cache files (the
            # cache cleared meanwhile by `netc cache clear`, a full disk): the compiled code is
            # loaded, so the call runs; it computed nothing before the compile
            r = self._calls[name](*args)
        cached = ", from Numba's cache" if sum(hits.values()) > before else ""
        self.timings[f"jit {name} (first call{cached})"] = time.perf_counter() - t0
        seal(self.module)                   # Numba's new cache files, recorded as they are
        self._called.add(name)
        setattr(self, name, self._calls[name])
        return r

    # The runtime's contract: these three signatures stay fixed whatever the backend generates.
    def train_step(self, x, y, lr, step, params: list, states: list, losses, out=None):
        """One step: forward, backward and the optimizer's update of `params` and `states` in
        place; the loss terms (before the update) go to `losses`; returns the output batch
        (written into `out` when given)."""
        return self._call("train_step", (x, y, lr, step, params, states, losses, out))

    def train_epoch(self, X, y, batch: int, lr, step0: int, params: list, states: list, order=None,
                    start: int = 0, stop=None, terms=None, outs=None):
        """The train steps of batches [start, stop) of an epoch over the rows of X (in `order`
        when given; default: all batches), batch j numbered step step0 + j + 1: its loss terms
        go to terms[j] (float64 [batches, terms]) and its outputs to its rows of `outs` (the
        outputs of all rows in batch order); both are allocated when not given (a caller that
        runs an epoch in chunks passes the same ones to each). Returns (terms, outs).

        The batch loop is compiled (the generated `train_epoch`: the step's body in a loop over
        contiguous batch views), so a chunk costs one call from Python; in `order`, the rows
        of up to CHUNK_BYTES of data are gathered at a time (np.take into a kept buffer) and
        the loop runs over them. Nothing is allocated per batch. A non-finite loss does not
        stop the chunk; the caller reads the terms after it."""
        n = len(X)
        nb = -(-n // batch)
        stop = nb if stop is None else stop
        if terms is None:
            terms = np.zeros((nb, len(self.loss_names)))
        if outs is None and self.output_row is not None:
            outs = np.empty((n,) + self.output_row, self.dtype)
        dt = np.dtype(self.dtype).type
        if not self._epoch_compiled_loop(outs):
            # no compiled epoch (no memory plan), or this process has the step compiled and not
            # the epoch loop: step by step (the same numbers), rather than a second compile
            for j in range(start, stop):
                rows = slice(j * batch, (j + 1) * batch)
                if order is not None:
                    rows = order[rows]
                self.train_step(X[rows], y[rows], dt(lr), dt(step0 + j + 1), params, states, terms[j],
                                None if outs is None else outs[j * batch:(j + 1) * batch])
            return terms, outs
        has_y = self.model.target is not None
        X = np.ascontiguousarray(X)
        y = np.ascontiguousarray(y) if has_y else None
        tail = (np.full(1, lr, self.dtype), step0, *params, *states, terms, outs,
                *self._arenas["train_step"](batch)[0])
        if order is None:
            self._run_epoch(X, y, start, stop, batch, start * batch, tail)
            return terms, outs
        per = self._gather_batches(X, y, batch)
        for b in range(start, stop, per):
            e = min(b + per, stop)
            xb, yb = self._take(X, y, order[b * batch:min(e * batch, n)])
            self._run_epoch(xb, yb, b, e, batch, 0, tail)
        return terms, outs

    def train_epochs(self, X, y, batch: int, lrs, step0: int, params: list, states: list, orders=None,
                     terms=None, outs=None):
        """Whole epochs, one after another: epoch e at learning rate lrs[e] over the rows of X
        (in orders[e] when given: int64 [epochs, n]), its batch j numbered step step0 + e *
        batches + j + 1; loss terms into terms[e, j] (float64 [epochs, batches, terms]) and
        outputs into outs[e] ([epochs, n, ...]; both allocated when not given). Returns
        (terms, outs). The same numbers as one train_epoch call per epoch; a block of short
        epochs costs one call from Python (the generated train_epoch loops over the epochs:
        the data set as it is, or -- shuffled -- the epochs' rows gathered one after another,
        as many epochs at a time as fit in CHUNK_BYTES)."""
        n, K = len(X), len(lrs)
        nb = -(-n // batch)
        if terms is None:
            terms = np.zeros((K, nb, len(self.loss_names)))
        if outs is None and self.output_row is not None:
            outs = np.empty((K, n) + self.output_row, self.dtype)
        has_y = self.model.target is not None
        X = np.ascontiguousarray(X)
        y = np.ascontiguousarray(y) if has_y else None
        row = X[:1].nbytes + (y[:1].nbytes if has_y else 0)
        per = K if orders is None else self.CHUNK_BYTES // max(row * n, 1)
        if not self._epoch_compiled_loop(outs) or per < 1:
            for e in range(K):            # epoch by epoch (an epoch larger than a gather buffer)
                self.train_epoch(X, y, batch, lrs[e], step0 + e * nb, params, states,
                                 None if orders is None else orders[e], 0, nb, terms[e],
                                 None if outs is None else outs[e])
            return terms, outs
        lrs = np.asarray(lrs, self.dtype)
        arena = self._arenas["train_step"](batch)[0]
        for e0 in range(0, K, per):
            e1 = min(e0 + per, K)
            tail = (lrs[e0:e1], step0 + e0 * nb, *params, *states, terms[e0:e1].reshape(-1, terms.shape[2]),
                    outs[e0:e1].reshape((-1,) + outs.shape[2:]), *arena)
            if orders is None:
                self._run_epoch(X, y, 0, nb, batch, 0, tail, n, 0, nb)
                continue
            self._keep_rows(n * per, X, y)
            xb, yb = self._take(X, y, orders[e0:e1].reshape(-1))
            self._run_epoch(xb, yb, 0, nb, batch, 0, tail, n, n, nb)
        return terms, outs

    # The split step (compiled with `split=True`, for data-parallel training): grad_step then
    # apply_step is train_step.
    def grad_step(self, x, y, step, params: list, grads, losses, out=None):
        """Forward and backward of one batch: each trainable param's gradient into its part of
        the contiguous 1-D buffer `grads` (`grad_layout`), the loss terms into `losses`, the
        buffers (batchnorm's statistics) updated in place; returns the output batch."""
        return self._call("grad_step", (x, y, step, params, grads, losses, out))

    def apply_step(self, lr, step, params: list, states: list, grads) -> None:
        """The optimizer's update of `params` and `states`, in place, from the buffer `grads`."""
        return self._call("apply_step", (lr, step, params, states, grads))
    def _epoch_compiled_loop(self, outs) -> bool:
        """Whether train_epoch runs the generated epoch loop: there is one, and the step was
        not compiled on its own first (a process that calls train_step itself -- a test, a
        benchmark of the raw step -- keeps using it, so it compiles one of the two)."""
        return hasattr(self.module, "train_epoch") and outs is not None and \
            (bool(self._epoch_types) or "train_step" not in self._called)

    CHUNK_BYTES = 4 << 20       # rows gathered at a time for a shuffled epoch (X and y)

    def _gather_batches(self, X, y, batch: int) -> int:
        """How many batches are gathered at a time, with the buffers for them kept in
        self._gathered (allocated once per fit's shapes)."""
        row = X[:1].nbytes + (y[:1].nbytes if y is not None else 0)
        per = max(1, self.CHUNK_BYTES // max(row * batch, 1))
        self._keep_rows(min(per * batch, len(X)), X, y)
        return per

    def _keep_rows(self, rows: int, X, y) -> None:
        """Buffers for `rows` rows of X and y in self._gathered (kept while they fit)."""
        key = (rows, X.shape[1:], X.dtype) + ((y.shape[1:], y.dtype) if y is not None else ())
        if self._gathered is None or self._gathered[0] != key:
            self._gathered = (key, np.empty((rows,) + X.shape[1:], X.dtype),
                              np.empty((rows,) + y.shape[1:], y.dtype) if y is not None else None)

    def _take(self, X, y, rows):
        """(X rows, y rows or None): the rows `rows` gathered into the kept buffers."""
        xb = self._gathered[1][:len(rows)]
        np.take(X, rows, axis=0, out=xb, mode="clip")
        yb = None
        if y is not None:
            yb = self._gathered[2][:len(rows)]
            np.take(y, rows, axis=0, out=yb, mode="clip")
        return xb, yb

    def _run_epoch(self, X, y, b0: int, b1: int, batch: int, r0: int, tail: tuple, ne: int = -1, es: int = 0,
                   nb: int = 0) -> bool:
        """One call of the generated train_epoch (batches [b0, b1) of the len(tail[0]) epochs
        whose rows are ne apart in X with stride es; ne = -1: all of X, one epoch); the first
        for these types compiles it (or loads it from Numba's cache), timed for `--verbose`.
        Whether it compiled."""
        head = (X, y) if y is not None else (X,)
        ne = len(X) if ne < 0 else ne
        key = (X.dtype, X.ndim, X.flags.writeable) + \
            ((y.dtype, y.ndim, y.flags.writeable) if y is not None else ()) + (len(tail),)
        compiled = False
        if key not in self._epoch_types:
            compiled = self._compile_epoch(head + (b0, b0, batch, r0, ne, es, nb) + tail)
            self._epoch_types.add(key)
        if b1 > b0:
            self.module.train_epoch(*head, b0, b1, batch, r0, ne, es, nb, *tail)
        return compiled

    def compile_epoch(self, X, y, batch: int, lr, params: list, states: list, order=None) -> float:
        """Compile what `train_epoch` runs for these arrays (or load it from Numba's cache)
        without running a step: the seconds it took, 0.0 when it was ready (the runtime
        shows a notice meanwhile)."""
        if "output" not in self.entries["train_step"].outputs or not self._epoch_compiled_loop(True):
            return 0.0
        t0 = time.perf_counter()
        n = len(X)
        terms = np.zeros((-(-n // batch), len(self.loss_names)))
        E = self.entries["train_step"]
        outs = np.empty((1,) + self.output_row, self.dtype)
        has_y = self.model.target is not None
        X = np.ascontiguousarray(X)
        y = np.ascontiguousarray(y) if has_y else None
        if order is not None:
            self._gather_batches(X, y, batch)
            X, y = self._gathered[1], self._gathered[2]
        tail = (np.full(1, lr, self.dtype), 0, *params, *states, terms, outs,
                *self._arenas["train_step"](batch)[0])
        compiled = self._run_epoch(X, y, 0, 0, batch, 0, tail)          # no batches: compiles only
        return time.perf_counter() - t0 if compiled else 0.0

    def _compile_epoch(self, args: tuple) -> bool:
        """Compile train_epoch for these arguments' types (the step's body in the batch loop:
        a fit compiles the step once, in there), timed, and record Numba's new cache files."""
        jit = self.module.train_epoch
        sig = tuple(numba.typeof(v) for v in args)
        if sig in jit.overloads:
            return False
        t0 = time.perf_counter()
        try:
            jit.compile(sig)
        except OSError:             # the cache folder went away meanwhile: compiled, not saved
            pass
        cached = getattr(jit, "_cache_hits", {}).get(sig, 0) > 0      # Numba loaded it from its cache
        what = "jit train_step+epoch loop (first call" + (", from Numba's cache)" if cached else ")")
        self.timings[what] = time.perf_counter() - t0
        seal(self.module)
        return True

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
    size, reused; an output is a fresh array, since the caller may keep it: the train step
    hands out its last one again when nothing references it any more, `_lean_train_step`)."""
    E = art.entries[name]
    jit = getattr(art.module, name)
    dt = np.dtype(art.dtype)
    has_y = art.model.target is not None
    out_node = E.outputs.get("output")
    planned = is_planned(E)
    rest = tuple(E.shape(out_node)[1:]) if out_node is not None else None
    if planned:
        _, (a, c) = E.memplan.layout()
        arena_size = (a, c) if E.memplan.slots else None
    else:
        arena_size = None
    per_batch: Dict[int, list] = {}

    def buffers(B):
        """[extra positional arguments but the out array, out shape, the arena or None, the
        train step's last output] for batch size B."""
        got = per_batch.get(B)
        if got is None:
            if len(per_batch) >= ARENAS_KEPT:
                per_batch.pop(next(iter(per_batch)))
            arena = (np.empty(max(arena_size[0] * B + arena_size[1], 1), dt),) if arena_size else ()
            oshape = (B,) + rest if rest is not None else None
            got = per_batch[B] = [arena, oshape, arena[0] if arena else None,
                                  np.empty(oshape, dt) if oshape is not None else None]
        return got
    art._arenas[name] = buffers

    def _generic(x, y, rest_args, into=None):
        if not planned:
            r = jit(x, *y, *rest_args)
            if into is not None and r is not None:
                into[...] = r
                return into
            return r
        arena, oshape = buffers(x.shape[0])[:2]
        out = ((np.empty(oshape, dt) if into is None else into),) if oshape is not None else ()
        jit(x, *y, *rest_args, *out, *arena)
        return out[0] if out else None
    if name == "train_step":
        if planned and has_y and rest is not None and arena_size:       # the usual case, kept lean
            return _lean_train_step(jit, per_batch, buffers, dt, len(art.model.params), len(art.states))

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


def _split_caller(art: "Artifact", name: str):
    """The caller of grad_step or apply_step: the gradients are views of the caller's one
    contiguous buffer (made once per buffer), passed as the generated function's out arrays
    (grad_step) or gradient arguments (apply_step)."""
    E = art.entries[name]
    jit = getattr(art.module, name)
    dt = np.dtype(art.dtype)
    has_y = art.model.target is not None
    planned = is_planned(E)
    out_node = E.outputs.get("output") if name == "grad_step" else None
    rest = tuple(E.shape(out_node)[1:]) if out_node is not None else None
    size = (0, 0)
    if planned and E.memplan.slots:
        size = E.memplan.layout()[1]
    arenas: Dict[int, tuple] = {}
    views: Dict[int, tuple] = {}
    layout = grad_layout(art.model)

    def arena(B):
        if not (planned and E.memplan.slots):
            return ()
        got = arenas.get(B)
        if got is None:
            if len(arenas) >= ARENAS_KEPT:
                arenas.pop(next(iter(arenas)))
            got = arenas[B] = (np.empty(max(size[0] * B + size[1], 1), dt),)
        return got

    def grad_views(grads):
        got = views.get(id(grads))
        if got is None or got[0] is not grads:
            if len(views) >= ARENAS_KEPT:
                views.pop(next(iter(views)))
            got = views[id(grads)] = (grads, tuple(grads[o:o + math.prod(s)].reshape(s) for _, o, s in layout))
        return got[1]

    if name == "grad_step":
        def grad_step(x, y, step, params, grads, losses, out=None):
            gv = grad_views(grads)
            ys = (y,) if has_y else ()
            if out is None and rest is not None:
                out = np.empty((x.shape[0],) + rest, dt)
            outs = ((out,) if rest is not None else ()) + gv
            if planned:
                r = jit(x, *ys, dt.type(0), step, *params, losses, *outs, *arena(x.shape[0]))
            else:
                r = jit(x, *ys, dt.type(0), step, *params, losses)
            if r is not None:       # unplanned: every return; planned: all of them when one is a scalar
                r = r if isinstance(r, tuple) else (r,)
                for dst, v in zip(outs, r):
                    if dst is not v:
                        dst[...] = v
            return out
        return grad_step

    def apply_step(lr, step, params, states, grads):
        jit(lr, step, *params, *states, *grad_views(grads), *arena(0))
    return apply_step


def _lean_train_step(jit, per_batch: dict, buffers, dt, n_params: int, n_states: int):
    """The train step's caller for the usual case (a memory plan, a target, an output batch),
    written for this model's numbers of params and states: they are unpacked into names and
    the generated function is called with plain positional arguments (a call that star-unpacks
    the two lists costs more than a tenth of a small model's step).

    The output: the caller may keep it, so each step's is a new array -- unless nothing
    references the last one any more (the caller dropped it and every view of it: a view holds
    its base), which is then written again; a loop that drops the outputs allocates nothing,
    and one that keeps them gets a new array each step."""
    ps = [f"p{k}" for k in range(n_params)]
    ss = [f"s{k}" for k in range(n_states)]
    unpack = "".join(f"    {', '.join(v)}, = {lst}\n" for v, lst in ((ps, "params"), (ss, "states")) if v)
    src = ("def train_step(x, y, lr, step, params, states, losses, out=None):\n"
           "    got = per_batch.get(len(x)) or buffers(len(x))\n"
           "    if out is None:\n"
           "        out = got[3]\n"
           "        if getrefcount(out) > 3:        # got[3], out, the argument: someone else holds it\n"
           "            out = got[3] = empty(got[1], dt)\n"
           f"{unpack}"
           f"    jit(x, y, lr, step, {''.join(a + ', ' for a in ps + ss)}losses, out, got[2])\n"
           "    return out\n")
    scope = {"per_batch": per_batch, "buffers": buffers, "jit": jit, "dt": dt, "empty": np.empty,
             "getrefcount": sys.getrefcount}
    exec(compile(src, f"<netc train_step caller: {n_params} params, {n_states} states>", "exec"), scope)
    return scope["train_step"]
