"""A compiled model with its params and optimizer state, and the training loop around the
compiled train step: batching, schedules, metrics, early stopping, divergence checks and the
hooks a run directory uses to checkpoint every epoch (so that a run resumes exactly)."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from netc.compiler.pipeline import Artifact

from . import data as D
from . import metrics as M
from . import schedules as S
from .init import initialize
from .settings import EarlyStop, TrainSettings


class TrainingDiverged(Exception):
    """A loss (or a param after an update) became NaN or infinite. `epoch` and `step` are
    1-based; `origin` describes the first non-finite value of the failing step (see
    runtime/diverge.py) and `where` renders it with its `.net` line."""

    def __init__(self, message: str, epoch: int, step: int, loss: str, value: float,
                 origin: Optional[dict] = None, where: str = ""):
        super().__init__(message)
        self.epoch, self.step, self.loss, self.value = epoch, step, loss, value
        self.origin, self.where = origin, where
        self.checkpoint: Optional[str] = None     # the last good checkpoint, set by a run directory
        self.restored_epoch: Optional[int] = None  # early stopping's best epoch, restored


@dataclass
class History:
    """Per-epoch records: {"epoch", "lr", "train": {...}, "val": {...}, "time"}."""
    epochs: List[dict] = field(default_factory=list)
    stopped_epoch: Optional[int] = None       # epoch early stopping ended the run at (1-based)
    best_epoch: Optional[int] = None          # epoch whose weights were restored (1-based)
    monitor: Optional[str] = None             # what best_epoch is best at, e.g. "val.loss"
    restored_epoch: Optional[int] = None      # set when the weights of best_epoch were put back

    def summary(self) -> Optional[str]:
        """The early-stopping line: where it stopped and which epoch's weights were restored."""
        if self.best_epoch is None:
            return None
        best = [e for e in self.epochs if e["epoch"] == self.best_epoch]
        split, _, name = (self.monitor or "val.loss").partition(".")
        value = f" ({self.monitor} = {best[0][split][name]:.4f})" if best and name in best[0].get(split, {}) else ""
        head = f"early stopping: stopped at epoch {self.stopped_epoch}" if self.stopped_epoch else \
            "early stopping: ran all epochs"
        if self.restored_epoch is not None:
            return f"{head}; restored the weights of epoch {self.restored_epoch}{value}"
        return f"{head}; the last epoch ({self.best_epoch}) was the best{value}"

    def __getitem__(self, key: str) -> List[float]:
        """history["val.loss"] -> that value for each epoch."""
        split, _, name = key.partition(".")
        return [e[split][name] for e in self.epochs if name in e.get(split, {})]

    def __len__(self) -> int:
        return len(self.epochs)


@dataclass
class LoopState:
    """Where a training run stands after `done` epochs: what it needs to continue exactly
    (plain JSON, stored in a run's `last` checkpoint)."""
    epochs: int                               # epochs of the run
    batch: Optional[int]                      # the batch size (None: full batch)
    done: int = 0                             # epochs finished
    rng: Optional[dict] = None                # the shuffle generator's bit_generator.state
    schedule: Optional[dict] = None           # the schedule's state_dict
    monitor: str = "val.loss"                 # what `best` is best at
    best: Optional[float] = None
    best_epoch: Optional[int] = None
    wait: int = 0                             # epochs without improvement (early stopping)
    finished: bool = False
    stopped_epoch: Optional[int] = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "LoopState":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


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
        self.classes: Optional[List[str]] = None     # class names, when labels were strings
        self.scaler: Optional[Tuple[np.ndarray, np.ndarray]] = None   # (mean, std), float64
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

    def load_arrays(self, arrays: Dict[str, np.ndarray], where: str = "checkpoint") -> Dict[str, np.ndarray]:
        """Params, optimizer state and scaler from a checkpoint's arrays (shapes checked).
        Returns the `best/...` arrays (early stopping's best params), if any."""
        best = {}
        mean = std = None
        for k, v in arrays.items():
            kind, _, name = k.partition("/")
            if kind == "scaler":
                mean, std = (v, std) if name == "mean" else (mean, v)
                continue
            if kind == "best":
                best[name] = v
                continue
            target = self._params if kind == "param" else self._state if kind == "state" else None
            if target is None or name not in target or target[name].shape != v.shape:
                raise ValueError(f"{where}: array '{k}' does not fit the model")
            target[name][...] = v
        self.scaler = None if mean is None else (np.asarray(mean, np.float64), np.asarray(std, np.float64))
        return best

    # ------------------------------------------------------------ data
    def fit_scaler(self, X) -> None:
        """Standardization (per input value: mean 0, std 1) fitted on the samples X; stored with
        the model and applied by predict, evaluate and fit. Constant features keep std 1."""
        X = np.asarray(X, np.float64).reshape((len(X),) + tuple(self.ir.input_shape))
        if len(X) == 0:
            raise D.DataError("cannot standardize: the training set is empty")
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std[std == 0] = 1.0
        self.scaler = (mean, std)

    def _label_ids(self, y, source: str):
        """String labels -> class ids by the model's class names (set them when unknown)."""
        y = np.asarray(y)
        if y.dtype.kind not in "USO":
            return y
        names = np.asarray([str(v) for v in y.reshape(-1)])
        if self.classes is None:
            self.classes = sorted(set(names.tolist()))
        index = {c: i for i, c in enumerate(self.classes)}
        bad = [i for i, v in enumerate(names) if v not in index]
        if bad:
            raise D.DataError(f"{source}: sample {bad[0]}: label '{names[bad[0]]}' is not one of the "
                              f"model's classes ({', '.join(self.classes)})")
        return np.array([index[v] for v in names], np.int64).reshape(y.shape)

    def remap_classes(self, ds: D.Dataset) -> D.Dataset:
        """A loaded data set whose string labels were numbered by its own sorted names, renumbered
        by the model's class names (which the training data fixed)."""
        if ds.classes is None or self.classes is None or ds.classes == self.classes:
            return ds
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = [c for c in ds.classes if c not in index]
        if unknown:
            row = int(np.argmax(np.asarray(ds.y) == ds.classes.index(unknown[0])))
            raise D.DataError(f"{ds.name}: sample {row}: label '{unknown[0]}' is not one of the model's "
                              f"classes ({', '.join(self.classes)})")
        table = np.array([index[c] for c in ds.classes], np.int64)
        return D.Dataset(ds.X, table[np.asarray(ds.y, np.int64)], list(self.classes), ds.name)

    def prepare(self, X, y=None, source: str = "data") -> D.Dataset:
        """Check and convert arrays for this model, standardized when the model has a scaler
        (raises DataError)."""
        return self._check(X, y, source, scale=True)

    def _check(self, X, y=None, source: str = "data", scale: bool = True) -> D.Dataset:
        X = np.asarray(X)
        if y is None:
            y = np.zeros(len(X), np.int64) if self.ir.target is None or self.ir.target.kind == "class" \
                else np.zeros((len(X),) + self.ir.target.shape)
        t = self.ir.target
        kind = t.kind if t else "class"
        if len(X) == 0:            # an empty split: nothing to check
            ydt, yshape = (np.int64, ()) if kind == "class" else (self.dtype, t.shape)
            return D.Dataset(np.zeros((0,) + self.ir.input_shape, self.dtype), np.zeros((0,) + yshape, ydt), name=source)
        y = self._label_ids(y, source) if kind == "class" else np.asarray(y)
        ds = D.Dataset(X, y, name=source)
        width = (t.classes if t.kind == "class" else int(np.prod(t.shape))) if t else max(int(ds.y.max(initial=0)) + 1, 1)
        ds = D.validate(ds, self.ir.input_shape, kind, width, source)
        X = ds.X
        if not scale:
            return D.Dataset(X, ds.y, self.classes, ds.name)
        if self.scaler is not None:
            X = (X - self.scaler[0]) / self.scaler[1]
        X = np.ascontiguousarray(X, self.dtype)
        y = np.ascontiguousarray(ds.y, np.int64 if kind == "class" else self.dtype)
        return D.Dataset(X, y, self.classes, ds.name)

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

    def predict_proba(self, X, batch: int = 1024) -> np.ndarray:
        """Class probabilities, (n, C): the softmax output as it is; a single sigmoid output p
        (a 0/1 target) becomes the two columns 1 - p, p."""
        out = self.predict(X, batch)
        if out.ndim == 2 and out.shape[1] == 1 and self._is_classifier():
            return np.concatenate([1 - out, out], axis=1)
        if not self._is_classifier():
            raise ValueError(f"model '{self.name}' predicts real values, not class probabilities")
        return out

    def _is_classifier(self) -> bool:
        t = self.ir.target
        return t is not None and (t.kind == "class" or "binary_cross_entropy" in self.ir.loss_kinds)

    def predict_classes(self, X) -> np.ndarray:
        """Predicted class ids (use model.classes to name them)."""
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

    def evaluate(self, X, y, metrics=None) -> Dict[str, float]:
        """Loss terms, total loss and metrics on (X, y): the train block's metrics, a list of
        names, or "all" (every metric that fits the target)."""
        ds = self.prepare(X, y, "data")
        return self._metrics(ds, self.all_metrics() if metrics == "all" else metrics)

    def all_metrics(self) -> List[str]:
        """Every metric that fits the target: accuracy, precision, recall, f1 for classes (and a
        0/1 sigmoid output); mse, mae, r2 for real values."""
        t = self.ir.target
        if t is None:
            return []
        names = ["mse", "mae", "r2"] if t.kind == "real" else []
        if self._is_classifier():
            names = ["accuracy", "precision", "recall", "f1"] + names
        return names

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

    def confusion_matrix(self, X, y) -> np.ndarray:
        """Rows: true classes, columns: predicted classes."""
        ds = self.prepare(X, y, "data")
        _, out = self._evaluate(ds)
        return M.confusion_matrix(ds.y, out, self._num_classes())

    def confusion_matrix_of(self, ds: D.Dataset) -> np.ndarray:
        _, out = self._evaluate(ds)
        return M.confusion_matrix(ds.y, out, self._num_classes())

    def _num_classes(self) -> int:
        t = self.ir.target
        return t.classes if t is not None and t.kind == "class" else 2

    # ------------------------------------------------------------ training
    def fit(self, X, y, epochs: Optional[int] = None, batch=None, validation=None, shuffle: Optional[bool] = None,
            callbacks: Optional[List[Callable]] = None, verbose: bool = False, stop: Optional[EarlyStop] = None,
            log: Optional[Callable[[str], None]] = None, standardize: Optional[bool] = None) -> History:
        """Train on (X, y). `batch` is a number or "full" (default: the train block's, else 32);
        `validation` is (Xv, yv); `callbacks` are called as cb(model, record) after each epoch
        (return True to stop); `stop` is an EarlyStop (default: the train block's);
        `standardize` fits a scaler on X first (default: the train block's `standardize`).
        String labels become class ids (sorted names, kept in model.classes)."""
        if standardize if standardize is not None else self.settings.standardize:
            self.fit_scaler(self._check(X, y, "X", scale=False).X)
        train = self.prepare(X, y, "X")
        val = self.prepare(*validation, source="validation") if validation is not None else None
        log = log or (print if verbose else None)
        history = self._fit(train, val, epochs=epochs, batch=batch, shuffle=shuffle, callbacks=callbacks,
                            stop=stop, log=log)
        if log and history.summary():
            log(history.summary())
        return history

    def _fit(self, train: D.Dataset, val: Optional[D.Dataset], epochs=None, batch=None, shuffle=None,
             callbacks=None, stop=None, log=None, run=None, resume=None, progress=None) -> History:
        """The epoch loop over prepared data. `run` (a RunDir) checkpoints each epoch;
        `resume` is (LoopState, best params, earlier epoch records) from a run's `last`
        checkpoint; `progress` shows it (default: `log`, a function of one line, per epoch)."""
        from .progress import Progress
        s = self.settings
        if not self.loss_names:
            raise ValueError("the model has no loss to train")
        if val is not None and len(val.X) == 0:
            val = None
        n = len(train.X)
        if n == 0:
            raise D.DataError("the training set is empty")
        stop = stop if stop is not None else s.stop
        if stop is not None and stop.monitor.startswith("val.") and val is None:
            raise D.DataError(f"early stopping watches {stop.monitor} but there is no validation data")
        if resume is not None:
            st, best_saved, records = resume
        else:
            epochs = s.epochs if epochs is None else int(epochs)
            batch = s.batch if batch is None else (None if batch == "full" else int(batch))
            if batch is not None and batch < 1:
                raise ValueError(f"batch must be 'full' or a number >= 1, got {batch}")
            st = LoopState(epochs, batch, monitor=stop.monitor if stop else ("val.loss" if val else "train.loss"))
            best_saved, records = None, []
        epochs = st.epochs
        bs = n if st.batch is None else min(st.batch, n)
        shuffle = s.shuffle if shuffle is None else shuffle
        mode, min_delta = (stop.mode, stop.min_delta) if stop else ("min", 0.0)
        base_lr = float(self.ir.optimizer[1].get("lr", _default_lr(self.ir.optimizer[0])))
        if s.lr_scale:
            base_lr *= bs / s.lr_scale
        sched = S.make_schedule(s.schedule[0], base_lr, max(epochs, 1), **s.schedule[1])
        rng = np.random.default_rng([s.seed, 1])
        if resume is not None:
            rng.bit_generator.state = st.rng
            sched.load_state_dict(st.schedule)
        history = History(list(records), st.stopped_epoch, st.best_epoch if stop else None, st.monitor)
        if progress is None:
            progress = Progress("lines" if log else "quiet", write=log)
        k = len(self.loss_names)
        sums = np.zeros(k)
        state_args = [self._state[x.name] for x in self.artifact.states]
        params = self._args()
        best_params = None
        if stop is not None:
            best_params = {nm: np.array(a) for nm, a in (best_saved or {}).items()} or None
        snap_p = [np.empty_like(a) for a in params]          # the params at the start of the epoch,
        snap_s = [np.empty_like(a) for a in state_args]      # to replay a diverged epoch
        epoch_fn = self.artifact.train_epoch
        Y = train.y
        if resume is None:
            st.rng, st.schedule = rng.bit_generator.state, sched.state_dict()
            if run is not None:
                run.start(self, st)
        self._device("hold")     # a CUDA artifact keeps params on the device during the fit
        try:
            while st.done < epochs and not st.finished:
                epoch = st.done
                t0 = time.perf_counter()
                lr = sched.lr_at(epoch)
                order = rng.permutation(n) if shuffle else None
                for a, b in zip(snap_p + snap_s, params + state_args):
                    np.copyto(a, b)
                step0 = self.step
                sums[:] = 0.0
                outs = []
                bar = progress.epoch_start(epoch + 1, epochs, -(-n // bs))
                # the whole epoch in one call: the artifact runs its steps (on a GPU, with the
                # data there) and hands back each batch's loss terms and the outputs, once
                Ye = Y if order is None else Y[order]
                outs = [self._run_epoch(epoch_fn, train, order, bs, lr, epoch, snap_p, snap_s, sums)]
                if bar is not None:
                    bar.update(-(-n // bs))
                self._device("sync")     # the host arrays get the device's values once per epoch
                if not all(np.isfinite(p).all() for p in params):
                    self._diverged(train, order, bs, (n - 1) // bs, step0, lr, epoch, snap_p, snap_s, update=True)
                self.epoch += 1
                st.done += 1
                terms = sums / n
                rec = {"epoch": self.epoch, "lr": lr, "train": {"loss": float(terms.sum())}}
                if k > 1:
                    rec["train"].update({nm: float(v) for nm, v in zip(self.loss_names, terms)})
                rec["train"].update(self._metric_values(Ye, np.concatenate(outs)))
                if val is not None:
                    rec["val"] = self._metrics(val)
                rec["time"] = time.perf_counter() - t0
                history.epochs.append(rec)
                split, _, metric = st.monitor.partition(".")
                watched = rec.get(split, {}).get(metric)
                improved = watched is not None and math.isfinite(watched) and (
                    st.best is None or (watched < st.best - min_delta if mode == "min" else watched > st.best + min_delta))
                if improved:
                    st.best, st.best_epoch, st.wait = float(watched), self.epoch, 0
                    if stop is not None:
                        if best_params is None:
                            best_params = {nm: a.copy() for nm, a in self._params.items()}
                        else:
                            for nm, a in self._params.items():
                                np.copyto(best_params[nm], a)
                elif stop is not None:
                    st.wait += 1
                    if st.wait > stop.patience:          # more than `patience` epochs without improvement
                        st.stopped_epoch = self.epoch
                        st.finished = True
                history.best_epoch = st.best_epoch if stop is not None else None
                history.stopped_epoch = st.stopped_epoch
                sched.observe(rec["val"]["loss"] if "val" in rec else rec["train"]["loss"])
                progress.epoch_end(rec, epochs, bar)
                if callbacks and any([cb(self, rec) for cb in callbacks]):
                    st.finished = True
                if st.done >= epochs:
                    st.finished = True
                st.rng = rng.bit_generator.state
                st.schedule = sched.state_dict()
                if run is not None:
                    run.epoch_end(self, rec, st, best_params, improved)
        except TrainingDiverged as e:
            e.restored_epoch = st.best_epoch if best_params is not None else None
            raise
        finally:        # whatever way the run ends: early stopping's best weights
            self._device("release")
            if best_params is not None and st.best_epoch != self.epoch:
                for nm, a in best_params.items():
                    self._params[nm][...] = a
                history.restored_epoch = st.best_epoch
        return history

    def _run_epoch(self, epoch_fn, train, order, bs, lr, epoch, snap_p, snap_s, sums):
        """One epoch through the artifact's train_epoch; adds the loss terms times the batch
        sizes to `sums` (in batch order) and returns the outputs. A non-finite loss term in any
        batch is diagnosed from the first such batch (runtime/diverge.py replays the epoch
        from its start)."""
        n = len(train.X)
        step0 = self.step
        terms, out = epoch_fn(train.X, train.y, bs, self.dtype.type(lr), step0, self._args(),
                              [self._state[x.name] for x in self.artifact.states], order)
        bad = ~np.isfinite(terms.sum(axis=1))
        if bad.any():
            b = int(np.argmax(bad))
            self.step = step0 + b + 1
            self._diverged(train, order, bs, b, step0, lr, epoch, snap_p, snap_s)
        self.step = step0 + len(terms)
        sizes = np.minimum(bs, n - bs * np.arange(len(terms)))
        for row, w in zip(terms, sizes):          # in batch order, as the per-batch loop sums
            sums += row * w
        return out

    def _diverged(self, train, order, bs, batch_index, step0, lr, epoch, snap_p, snap_s, update=False):
        """Stop the run: find the first non-finite value of the failing step (runtime/diverge.py),
        put back the params of the epoch's start (the last good checkpoint) and raise."""
        from .diverge import diagnose
        self._device("release", sync=False)      # the host arrays hold the epoch's start
        err = diagnose(self, train, order, bs, batch_index, step0, lr, epoch, snap_p, snap_s, update)
        for a, b in zip(snap_p + snap_s, self._args() + [self._state[x.name] for x in self.artifact.states]):
            np.copyto(b, a)
        self.step = step0
        raise err

    def _device(self, what: str, **kw) -> None:
        """hold / sync / release the device copies of params and state: a CUDA artifact keeps
        them on the GPU during a fit (compiler/backend_cuda.py); the CPU's has nothing to do."""
        f = getattr(self.artifact, what, None)
        if f is not None:
            f(**kw)

    def save(self, path: str) -> None:
        """Write params, optimizer state, scaler, class names and the model's source to the
        directory `path`, atomically (load it with netc.load)."""
        from .checkpoint import save
        save(self, path)

    def __repr__(self):
        n = sum(a.size for a in self._params.values())
        return f"<netc.Model '{self.name}': {len(self._params)} params, {n} numbers, {self.artifact.dtype}>"


def _default_lr(opt: str) -> float:
    from netc.compiler.optim import OPTIMIZER_ARGS
    return OPTIMIZER_ARGS[opt]["lr"]


def fmt_metric(v: float, width: int = 0) -> str:
    """4 decimals, or 4 significant digits in scientific notation once a value is huge
    (a diverging loss) or tiny."""
    text = f"{v:.4f}" if v == 0 or 1e-3 <= abs(v) < 1e6 or not math.isfinite(v) else f"{v:.4g}"
    return f"{text:>{width}}"


def format_epoch(rec: dict, epochs: int) -> str:
    width = len(str(epochs))
    parts = [f"epoch {rec['epoch']:>{width}}/{epochs}"]
    for split in ("train", "val"):
        for k, v in rec.get(split, {}).items():
            parts.append(f"{'' if split == 'train' else 'val_'}{k} {fmt_metric(v)}")
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
