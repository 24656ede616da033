"""The CUDA compiled model (the backend contract, `CompiledModel`): the runtime's entry points
(train_step, evaluate, predict with host NumPy arrays, as on the CPU) over device-resident
params and optimizer state.

Residency. By default every call uploads the arrays it is given and train_step copies the
updated params and optimizer state back into their host arrays (correct for any caller, one
round trip per step). A training loop calls `hold()` first: from then on train_step keeps a
device copy of each param / state array (uploaded once, keyed by the host array's identity),
the device copies are the true values and the host arrays go stale until `sync()` copies them
back (the runtime does at the end of every epoch); evaluate / predict read the device copies
while they exist. `release()` syncs (unless told not to) and goes back to the default.
`train_epoch` runs a whole epoch with the data set on the device too (the runtime uses it
for every epoch of a fit): the host reads the loss terms and outputs once per epoch.

Imported only when a device other than the CPU is asked for: the CPU path never imports
numba.cuda.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

from ...traingraph import SPLIT_ENTRY_POINTS, grad_layout


# ======================================================================= the artifact
class CudaArtifact:
    """A model compiled for the GPU: the backend contract (`CompiledModel`), as the CPU's."""

    device = "cuda"

    def __init__(self, model, forward, graph, dtype: str, states, source: str, module,
                 pass_report: Dict[str, int], timings: Dict[str, float]):
        from numba import cuda           # optional: imported only when the GPU is used
        self.model, self.forward, self.graph, self.dtype = model, forward, graph, dtype
        self.states, self.source, self.module = states, source, module
        self.loss_names = [l.name for l in model.losses]
        self.pass_report, self.timings = pass_report, timings
        self.entries = {f: graph for f in ("train_step", "evaluate", "predict") if hasattr(module, f)}
        # the split step (data-parallel training), when compiled with it
        self.entries.update({f: graph for f in SPLIT_ENTRY_POINTS if hasattr(module, f)})
        self.grad_layout = grad_layout(model) if hasattr(module, "grad_step") else []
        self.grad_size = sum(math.prod(shape) for _, _, shape in self.grad_layout)
        self.threads: Dict[str, object] = {}
        self._cuda = cuda
        from . import kernels            # imports numba.cuda
        self._K = kernels
        self.dtype_type = np.dtype(dtype).type
        self._mirrors: Dict[int, Tuple[np.ndarray, object]] = {}
        self._data: Dict[Tuple[int, int], tuple] = {}    # train_epoch's device copies of data sets
        self._holding = False
        self._losses = None

    @property
    def has_predict(self) -> bool:
        return hasattr(self.module, "predict")

    # ------------------------------------------------------------ residency
    def _to_device(self, a):
        if hasattr(a, "copy_to_host"):         # already on the device
            return a
        return self._cuda.to_device(np.ascontiguousarray(a))

    def _resident(self, a):
        """The device copy of host array `a`, made on first use and kept."""
        entry = self._mirrors.get(id(a))
        if entry is None or entry[0] is not a:
            entry = (a, self._to_device(a))
            self._mirrors[id(a)] = entry
        return entry[1]

    def _current(self, a):
        """The device copy while there is one, else the host value uploaded for this call."""
        entry = self._mirrors.get(id(a))
        return entry[1] if entry is not None and entry[0] is a else self._to_device(a)

    def hold(self) -> None:
        """Keep params and optimizer state on the device from the next train_step on."""
        self._holding = True

    def sync(self) -> None:
        """Copy the device values of params and optimizer state into their host arrays."""
        for host, dev in self._mirrors.values():
            dev.copy_to_host(host)

    def release(self, sync: bool = True) -> None:
        """sync() (unless `sync` is false: the host arrays were set meanwhile, e.g. put back
        after a diverged step), forget the device copies, stop holding."""
        if sync:
            self.sync()
        self._mirrors.clear()
        self._data.clear()
        self._holding = False

    def _loss_buffer(self):
        k = len(self.loss_names)
        if self._losses is None:
            self._losses = self._cuda.device_array(max(k, 1), np.float64)
        return self._losses

    # ------------------------------------------------------------ the runtime's contract
    def train_step(self, x, y, lr, step, params: list, states: list, losses, out=None):
        """One step on the device (see the contract); the output batch is copied back into
        `out` when given."""
        arrays = list(params) + list(states)
        dev = [self._resident(a) for a in arrays] if self._holding else [self._to_device(a) for a in arrays]
        L = self._loss_buffer()
        got = self.module.train_step(self._to_device(x), self._to_device(y), lr, step, *dev, L)
        losses[:] = L.copy_to_host()[:len(losses)]
        if not self._holding:                    # write-through: the host arrays are updated
            for host, d in zip(arrays, dev):
                if d is not host:
                    d.copy_to_host(host)
        if got is None:
            return None
        if out is not None:
            got.copy_to_host(out)
            return out
        return got.copy_to_host()

    # ------------------------------------------------------------ the split step (data parallel)
    def _arrays(self, arrays):
        return [self._resident(a) for a in arrays] if self._holding else [self._to_device(a) for a in arrays]

    def _write_through(self, arrays, dev) -> None:
        if not self._holding:
            for host, d in zip(arrays, dev):
                if d is not host:
                    d.copy_to_host(host)

    def grad_step(self, x, y, step, params: list, grads, losses, out=None):
        """Forward and backward on the device; each trainable param's gradient copied into its
        part of the host buffer `grads` (`grad_layout`: what MPI reduces), the loss terms into
        `losses`, the buffers updated; returns the output batch."""
        dev = self._arrays(params)
        L = self._loss_buffer()
        got = self.module.grad_step(self._to_device(x), self._to_device(y), self.dtype_type(0), step, *dev, L)
        got = got if isinstance(got, tuple) else (got,)
        outs, gs = (got[0], got[1:]) if self.model.output is not None else (None, got)
        for (_, o, shape), g in zip(self.grad_layout, gs):
            g.copy_to_host(grads[o:o + math.prod(shape)].reshape(shape))
        losses[:] = L.copy_to_host()[:len(losses)]
        self._write_through(params, dev)
        if outs is None:
            return None
        if out is not None:
            outs.copy_to_host(out)
            return out
        return outs.copy_to_host()

    def apply_step(self, lr, step, params: list, states: list, grads) -> None:
        """The optimizer's update on the device from the host buffer `grads` (uploaded once)."""
        arrays = list(params) + list(states)
        dev = self._arrays(arrays)
        g = self._cuda.to_device(np.ascontiguousarray(grads))
        gv = [g[o:o + math.prod(shape)].reshape(shape) for _, o, shape in self.grad_layout]
        self.module.apply_step(lr, step, *dev, *gv)
        self._write_through(arrays, dev)

    def _fits(self, nbytes: int) -> bool:
        """Whether a data set of `nbytes` fits on the device next to the model's buffers (half
        of the free memory: the rest is for params, state and each batch's intermediates)."""
        return nbytes <= self._cuda.current_context().get_memory_info().free / 2

    def _dataset(self, X, Y):
        """The device copies of X and Y: device arrays as they are; host arrays uploaded once
        while holding (a fit passes the same arrays every epoch); None when they don't fit, and
        the epoch streams its batches from the host."""
        if hasattr(X, "copy_to_host"):
            return X, self._to_device(Y)
        entry = self._data.get((id(X), id(Y)))
        if entry is not None and entry[0] is X and entry[1] is Y:
            return entry[2]
        dev = (self._to_device(X), self._to_device(Y)) if self._fits(X.nbytes + Y.nbytes) else None
        if self._holding:
            self._data[(id(X), id(Y))] = (X, Y, dev)
        return dev

    def train_epoch(self, X, Y, batch: int, lr, step0: int, params: list, states: list, order=None,
                    start: int = 0, stop=None, terms=None, outs=None):
        """Batches [start, stop) of an epoch of train steps on the device (default: all):
        batches of `batch` rows of X, Y in `order` (a permutation) or as stored, batch j
        numbered step step0 + j + 1; params and state held on the device (see hold()). X, Y
        are device arrays or host arrays (uploaded once per fit when they fit, else each batch
        is gathered on the host and uploaded). Each step writes its loss terms into a row of a
        device array, so the host reads nothing until the end of the call. Returns (the loss
        terms of each batch, (batches, loss terms) float64; the outputs of the epoch's samples
        in batch order, or None): `terms` and `outs` when given (a runtime running an epoch in
        chunks passes the same ones to each call), rows [start, stop) and their samples' rows
        written."""
        cuda = self._cuda
        self.hold()
        data = self._dataset(X, Y)
        dev = [self._resident(a) for a in list(params) + list(states)]
        n, k = X.shape[0], len(self.loss_names)
        nb = -(-n // batch)
        stop = nb if stop is None else stop
        if terms is None:
            terms = np.zeros((nb, k))
        r0, r1 = start * batch, min(stop * batch, n)
        dterms = cuda.device_array((max(stop - start, 1), max(k, 1)), np.float64)
        idx = None if order is None or data is None else cuda.to_device(np.asarray(order[r0:r1], np.int64))
        douts = None
        for b in range(start, stop):
            i = b * batch
            j = min(i + batch, n)
            if data is None:             # streamed: one batch at a time from the host
                rows = slice(i, j) if order is None else order[i:j]
                xb, yb = self._to_device(X[rows]), self._to_device(Y[rows])
            elif idx is None:
                xb, yb = data[0][i:j], data[1][i:j]
            else:
                xb, yb = self._K.gather_rows(data[0], idx[i - r0:j - r0]), self._K.gather_rows(data[1], idx[i - r0:j - r0])
            out = self.module.train_step(xb, yb, lr, self.dtype_type(step0 + b + 1), *dev, dterms[b - start])
            if out is not None:          # the step's output buffer is reused: keep a copy
                if douts is None:
                    douts = cuda.device_array((r1 - r0,) + tuple(out.shape[1:]), out.dtype)
                douts[i - r0:j - r0].copy_to_device(out)
        if stop > start:
            terms[start:stop] = dterms.copy_to_host()[:stop - start, :k]
        if douts is not None:
            if outs is None:
                outs = np.empty((n,) + tuple(douts.shape[1:]), douts.dtype)
            outs[r0:r1] = douts.copy_to_host()
        return terms, outs

    def train_epochs(self, X, Y, batch: int, lrs, step0: int, params: list, states: list, orders=None,
                     terms=None, outs=None):
        """Whole epochs one after another (see the CPU artifact's): one train_epoch per epoch,
        the data set and the params staying on the device between them."""
        n, K = X.shape[0], len(lrs)
        nb = -(-n // batch)
        if terms is None:
            terms = np.zeros((K, nb, len(self.loss_names)))
        for e in range(K):
            _, out = self.train_epoch(X, Y, batch, self.dtype_type(lrs[e]), step0 + e * nb, params, states,
                                      None if orders is None else orders[e], 0, nb, terms[e],
                                      None if outs is None else outs[e])
            if outs is None and out is not None:
                outs = np.empty((K,) + out.shape, out.dtype)
                outs[e] = out
        return terms, outs

    def compile_epoch(self, X, Y, batch: int, lr, params: list, states: list, order=None) -> float:
        """Nothing ahead of time: the kernels compile at their first launch (0.0)."""
        return 0.0

    def evaluate(self, x, y, params: list, losses):
        L = self._loss_buffer()
        out = self.module.evaluate(self._to_device(x), self._to_device(y), *[self._current(a) for a in params], L)
        losses[:] = L.copy_to_host()[:len(losses)]
        return None if out is None else out.copy_to_host()

    def predict(self, x, params: list):
        out = self.module.predict(self._to_device(x), *[self._current(a) for a in params])
        return out.copy_to_host()
