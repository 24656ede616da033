"""A compiled model with its params and optimizer state, and the training loop around the
compiled train step: batching, schedules, metrics, early stopping."""
from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from netc.compiler.pipeline import Artifact

from . import data as D
from . import metrics as M
from . import schedules as S
from .init import initialize
from .settings import EarlyStop, TrainSettings


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


@dataclass
class History:
    """Per-epoch records: {"epoch", "lr", "train": {...}, "val": {...}, "time"}."""
    epochs: List[dict] = field(default_factory=list)
    stopped_epoch: Optional[int] = None       # epoch early stopping ended the run at (1-based)
    best_epoch: Optional[int] = None          # epoch whose weights were restored (1-based)

    def __getitem__(self, key: str) -> List[float]:
        """history["val.loss"] -> that value for each epoch."""
        split, _, name = key.partition(".")
        return [e[split][name] for e in self.epochs if name in e.get(split, {})]


class Model:
    """A compiled `.net` model. Params and optimizer state are NumPy arrays that the compiled
    kernels update in place."""

    def __init__(self, artifact: Artifact, settings: TrainSettings, file: str = "<string>",
                 source: str = "", seed: Optional[int] = None):
        self.artifact = artifact
        self.source = source
        self.ir = artifact.model
        self.settings = settings
        self.file = file
        self.dtype = np.dtype(artifact.dtype)
        self.step = 0                         # train steps taken (Adam's t is step + 1)
        self.epoch = 0
        self._init_params(settings.seed if seed is None else seed)

    # ------------------------------------------------------------ params
    def _init_params(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._params: Dict[str, np.ndarray] = {}
        for p in self.ir.params:
            self._params[p.name] = np.ascontiguousarray(initialize(p.init.kind, p.init.args, p.shape, rng), self.dtype)
        self._state: Dict[str, np.ndarray] = {
            s.name: np.full(self._params[s.param].shape, s.init, self.dtype) for s in self.artifact.states}

    @property
    def params(self) -> "ParamView":
        """name -> array; assign with model.params["W"] = array (shape checked)."""
        return ParamView(self._params, self.dtype)

    @property
    def state(self) -> Dict[str, np.ndarray]:
        return self._state

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def loss_names(self) -> List[str]:
        return self.artifact.loss_names

    # ------------------------------------------------------------ data
    def prepare(self, X, y=None, source: str = "data") -> D.Dataset:
        """Check and convert arrays for this model (raises DataError)."""
        X = np.asarray(X)
        if y is None:
            y = np.zeros(len(X), np.int64) if self.ir.target is None or self.ir.target.kind == "class" \
                else np.zeros((len(X),) + self.ir.target.shape)
        t = self.ir.target
        kind = t.kind if t else "class"
        if len(X) == 0:            # an empty split: nothing to check
            ydt, yshape = (np.int64, ()) if kind == "class" else (self.dtype, t.shape)
            return D.Dataset(np.zeros((0,) + self.ir.input_shape, self.dtype), np.zeros((0,) + yshape, ydt), name=source)
        ds = D.Dataset(X, np.asarray(y), name=source)
        width = (t.classes if t.kind == "class" else int(np.prod(t.shape))) if t else max(int(ds.y.max(initial=0)) + 1, 1)
        ds = D.validate(ds, self.ir.input_shape, kind, width, source)
        X = np.ascontiguousarray(ds.X, self.dtype)
        y = np.ascontiguousarray(ds.y, np.int64 if kind == "class" else self.dtype)
        return D.Dataset(X, y, ds.classes, ds.name)

    # ------------------------------------------------------------ entry points
    def _args(self):
        return [self._params[p.name] for p in self.ir.params]

    def predict(self, X, batch: int = 1024) -> np.ndarray:
        """The model's `output` for each row of X (probabilities for a softmax output)."""
        if not self.artifact.has_predict:
            raise ValueError("the model has no output to predict")
        ds = self.prepare(X, None, "X")
        outs = [self.artifact.predict(ds.X[i:i + batch], self._args()) for i in range(0, len(ds.X), batch)]
        return np.concatenate(outs) if outs else np.zeros((0,) + self.ir.graph.shape(self.ir.output)[1:])

    predict_proba = predict

    def predict_classes(self, X) -> np.ndarray:
        return M.predicted_labels(self.predict(X))

    def _evaluate(self, ds: D.Dataset, batch: int = 1024):
        """Loss terms (batch-size weighted means) and outputs over a prepared data set."""
        k = len(self.loss_names)
        sums = np.zeros(k)
        losses = np.zeros(k)
        outs = []
        for i in range(0, len(ds.X), batch):
            xb, yb = ds.X[i:i + batch], ds.y[i:i + batch]
            out = self.artifact.evaluate(xb, yb, self._args(), losses)
            sums += losses * len(xb)
            outs.append(out)
        return sums / max(len(ds.X), 1), (np.concatenate(outs) if outs else None)

    def evaluate(self, X, y, metrics: Optional[List[str]] = None) -> Dict[str, float]:
        """Loss terms, total loss and metrics on (X, y)."""
        ds = self.prepare(X, y, "data")
        return self._metrics(ds, metrics)

    def _metrics(self, ds: D.Dataset, names: Optional[List[str]] = None) -> Dict[str, float]:
        if len(ds.X) == 0:
            return {}
        terms, out = self._evaluate(ds)
        res = {"loss": float(terms.sum())}
        if len(terms) > 1:
            res.update({n: float(v) for n, v in zip(self.loss_names, terms)})
        res.update(self._metric_values(ds.y, out, names))
        return res

    def _metric_values(self, y, out, names=None) -> Dict[str, float]:
        names = self.settings.metrics if names is None else names
        t = self.ir.target
        if out is None or not names or t is None:
            return {}
        return M.compute(names, y, out, t.kind, t.classes)

    # ------------------------------------------------------------ training
    def fit(self, X, y, epochs: Optional[int] = None, batch=None, validation=None, shuffle: Optional[bool] = None,
            callbacks: Optional[List[Callable]] = None, verbose: bool = False, stop: Optional[EarlyStop] = None,
            log: Optional[Callable[[str], None]] = None) -> History:
        """Train on (X, y). `batch` is a number or "full"; `validation` is (Xv, yv);
        callbacks are called as cb(model, record) after each epoch (return True to stop)."""
        train = self.prepare(X, y, "X")
        val = self.prepare(*validation, source="validation") if validation is not None else None
        return self._fit(train, val, epochs=epochs, batch=batch, shuffle=shuffle, callbacks=callbacks,
                         stop=stop, log=log or (print if verbose else None))

    def _fit(self, train: D.Dataset, val: Optional[D.Dataset], epochs=None, batch=None, shuffle=None,
             callbacks=None, stop=None, log=None) -> History:
        s = self.settings
        if not self.loss_names:
            raise ValueError("the model has no loss to train")
        epochs = s.epochs if epochs is None else int(epochs)
        batch = s.batch if batch is None else (None if batch == "full" else int(batch))
        n = len(train.X)
        if n == 0:
            raise D.DataError("the training set is empty")
        bs = n if batch is None else min(batch, n)
        shuffle = s.shuffle if shuffle is None else shuffle
        stop = stop if stop is not None else s.stop
        if stop is not None and stop.monitor.startswith("val.") and (val is None or len(val.X) == 0):
            raise D.DataError(f"early stopping watches {stop.monitor} but there is no validation data",
                              ) from None
        base_lr = float(self.ir.optimizer[1].get("lr", _default_lr(self.ir.optimizer[0])))
        if s.lr_scale:
            base_lr *= bs / s.lr_scale
        sched = S.make_schedule(s.schedule[0], base_lr, max(epochs, 1), **s.schedule[1])
        rng = np.random.default_rng([s.seed, 1])
        history = History()
        k = len(self.loss_names)
        losses = np.zeros(k)
        best, best_params, wait = None, None, 0
        state_args = [self._state[st.name] for st in self.artifact.states]
        step_fn = self.artifact.train_step
        params = self._args()
        for epoch in range(epochs):
            t0 = time.perf_counter()
            lr = sched.lr_at(epoch)
            lr_dt, order = self.dtype.type(lr), (rng.permutation(n) if shuffle else np.arange(n))
            sums = np.zeros(k)
            outs = []
            for i in range(0, n, bs):
                idx = order[i:i + bs]
                xb, yb = (train.X[idx], train.y[idx]) if shuffle else (train.X[i:i + bs], train.y[i:i + bs])
                self.step += 1
                out = step_fn(xb, yb, lr_dt, self.dtype.type(self.step), params, state_args, losses)
                if not np.all(np.isfinite(losses)):
                    bad = self.loss_names[int(np.argmin(np.isfinite(losses)))]
                    raise TrainingDiverged(
                        f"loss '{bad}' became {losses[np.argmin(np.isfinite(losses))]} at epoch {epoch + 1}, "
                        f"step {self.step} (learning rate {lr:g})")
                sums += losses * len(idx)
                outs.append(out)
            self.epoch += 1
            terms = sums / n
            rec = {"epoch": self.epoch, "lr": lr, "train": {"loss": float(terms.sum())}}
            if k > 1:
                rec["train"].update({nm: float(v) for nm, v in zip(self.loss_names, terms)})
            y_seen = train.y[order] if shuffle else train.y
            rec["train"].update(self._metric_values(y_seen, np.concatenate(outs)))
            if val is not None and len(val.X):
                rec["val"] = self._metrics(val)
            rec["time"] = time.perf_counter() - t0
            history.epochs.append(rec)
            if log:
                log(format_epoch(rec, epochs))
            watched = _watched(rec, stop, sched)
            sched.observe(watched if watched is not None else rec["train"]["loss"])
            if callbacks and any(cb(self, rec) for cb in callbacks):
                break
            if stop is not None and watched is not None:
                better = best is None or (watched < best - stop.min_delta if stop.mode == "min"
                                          else watched > best + stop.min_delta)
                if better:
                    best, wait, history.best_epoch = watched, 0, self.epoch
                    best_params = {nm: a.copy() for nm, a in self._params.items()}
                else:
                    wait += 1
                    if wait > stop.patience:
                        history.stopped_epoch = self.epoch
                        break
        if best_params is not None:
            for nm, a in best_params.items():
                self._params[nm][...] = a
            if log and history.best_epoch != self.epoch:
                log(f"early stopping: {'stopped at epoch ' + str(history.stopped_epoch) + ', ' if history.stopped_epoch else ''}"
                    f"restored the weights of epoch {history.best_epoch} ({stop.monitor} = {best:.4f})")
        return history

    def save(self, path: str) -> None:
        """Write params, optimizer state and the model's source to the directory `path`, atomically."""
        from .checkpoint import save
        save(self, path)

    def __repr__(self):
        n = sum(a.size for a in self._params.values())
        return f"<netc.Model '{self.name}': {len(self._params)} params, {n} numbers, {self.artifact.dtype}>"


def _default_lr(opt: str) -> float:
    from netc.compiler.optim import OPTIMIZER_ARGS
    return OPTIMIZER_ARGS[opt]["lr"]


def _watched(rec, stop: Optional[EarlyStop], sched) -> Optional[float]:
    if stop is None:
        return rec.get("val", {}).get("loss")
    split, _, metric = stop.monitor.partition(".")
    return rec.get(split, {}).get(metric)


def format_epoch(rec: dict, epochs: int) -> str:
    width = len(str(epochs))
    parts = [f"epoch {rec['epoch']:>{width}}/{epochs}"]
    for split in ("train", "val"):
        for k, v in rec.get(split, {}).items():
            parts.append(f"{'' if split == 'train' else 'val_'}{k} {v:.4f}")
    parts.append(f"lr {rec['lr']:.4g}")
    parts.append(f"{rec['time'] * 1000:.0f} ms")
    return "  ".join(parts)


class ParamView(dict):
    """model.params: reading gives the live arrays; assigning copies into them (shape checked)."""

    def __init__(self, store: Dict[str, np.ndarray], dtype):
        super().__init__(store)
        self._store, self._dtype = store, dtype

    def __setitem__(self, name, value):
        if name not in self._store:
            import difflib
            close = difflib.get_close_matches(name, self._store, n=1)
            raise KeyError(f"no param '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""))
        value = np.asarray(value, dtype=self._dtype)
        if value.shape != self._store[name].shape:
            raise ValueError(f"param '{name}' has shape {self._store[name].shape}, got {value.shape}")
        self._store[name][...] = value
