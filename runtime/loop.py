"""The training loop around a model's compiled train step: epochs, batching and shuffling,
the learning-rate schedule, metrics per epoch, early stopping (the best weights put back
whatever way the run ends), divergence (diagnosed by runtime/diverge.py), progress, and the
hooks a run directory uses to checkpoint every epoch (so that a run resumes exactly).

    history = fit(model, train, val)          # prepared data sets (Model.prepare)

`Model.fit` prepares arrays and calls `fit`; `netc train` calls it with a run directory, and
with the loop's state from a checkpoint to resume."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from netc.compiler.optim import OPTIMIZER_ARGS
from netc.dsl.diagnostics import did_you_mean

from . import data as D
from . import distributed
from . import schedules as S
from . import diverge
from .diverge import TrainingDiverged
from .progress import Progress
from .settings import EarlyStop


@dataclass
class History:
    """What `fit` returns, shaped as Keras' History: `history.history` is a dict of lists
    keyed as Keras keys them (loss, accuracy, ..., the loss terms, val_loss, val_accuracy,
    ..., lr), `history.epoch` the 0-based indices of the epochs; `history["val_loss"]` one
    list (the older spellings "val.loss", "train.loss" are accepted; an unknown key raises
    KeyError with a did-you-mean). `epochs` holds the raw records: {"epoch" (1-based),
    "lr", "train": {...}, "val": {...}, "time"}."""
    epochs: List[dict] = field(default_factory=list)
    stopped_epoch: Optional[int] = None       # epoch early stopping ended the run at (1-based)
    best_epoch: Optional[int] = None          # epoch whose weights were restored (1-based)
    monitor: Optional[str] = None             # what best_epoch is best at, e.g. "val.loss"
    restored_epoch: Optional[int] = None      # set when the weights of best_epoch were put back
    params: dict = field(default_factory=dict)                        # Keras': epochs, steps, verbose
    model: Any = field(default=None, repr=False, compare=False)       # the model that was trained

    def summary(self) -> Optional[str]:
        """The early-stopping line: where it stopped and which epoch's weights were restored."""
        if self.best_epoch is None:
            return None
        best = [e for e in self.epochs if e["epoch"] == self.best_epoch]
        split, _, name = (self.monitor or "val.loss").partition(".")
        value = f" ({keras_key(self.monitor or 'val.loss')} = {best[0][split][name]:.4f})" \
            if best and name in best[0].get(split, {}) else ""
        head = f"early stopping: stopped at epoch {self.stopped_epoch}" if self.stopped_epoch else \
            "early stopping: ran all epochs"
        if self.restored_epoch is not None:
            return f"{head}; restored the weights of epoch {self.restored_epoch}{value}"
        return f"{head}; the last epoch ({self.best_epoch}) was the best{value}"

    @property
    def history(self) -> Dict[str, List[float]]:
        """Keras' dict: each value's list over the epochs, keyed loss, accuracy, ... (training),
        val_loss, val_accuracy, ... (validation, when there was validation data), lr."""
        out: Dict[str, List[float]] = {}
        for rec in self.epochs:
            for k, v in epoch_logs(rec).items():
                out.setdefault(k, []).append(v)
        return out

    @property
    def epoch(self) -> List[int]:
        """The epochs' indices, 0-based as Keras' (the epoch line's number is one more)."""
        return [rec["epoch"] - 1 for rec in self.epochs]

    def __getitem__(self, key: str) -> List[float]:
        """history["val_loss"] (or "val.loss") -> that value for each epoch."""
        h = self.history
        k = keras_key(key)
        if k in h:
            return h[k]
        hint = did_you_mean(k, h)
        why = "the history has no epochs" if not self.epochs else \
            "there was no validation data" if k.startswith("val_") and not any("val" in e for e in self.epochs) \
            else "it has " + ", ".join(h)
        raise KeyError(f"no '{key}' in the history ({why})" + (f"; {hint}" if hint else ""))

    def __contains__(self, key) -> bool:
        return isinstance(key, str) and keras_key(key) in self.history

    def __len__(self) -> int:
        return len(self.epochs)


def keras_key(key: str) -> str:
    """The Keras spelling of a history or log key: "val.loss" -> "val_loss", "train.loss" or
    "train_loss" -> "loss", "learning_rate" -> "lr"; others as they are."""
    split, dot, name = key.partition(".")
    if dot and split in ("train", "val"):
        return name if split == "train" else f"val_{name}"
    if key.startswith("train_"):
        return key[len("train_"):]
    return "lr" if key == "learning_rate" else key


def epoch_logs(rec: dict) -> Dict[str, float]:
    """An epoch's record as Keras' flat logs: loss, metrics and loss terms, then val_..., then lr."""
    logs = dict(rec.get("train", {}))
    logs.update({f"val_{k}": v for k, v in rec.get("val", {}).items()})
    logs["lr"] = rec["lr"]
    return logs


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


# (the loop's state, early stopping's best params, the epoch records so far): a run's `last`
# checkpoint, to continue from
Resume = Tuple[LoopState, Optional[dict], List[dict]]


SETTINGS = EarlyStop("settings")       # fit(stop=SETTINGS): the train block's early stopping (None: none)


def fit(model, train: D.Dataset, val: Optional[D.Dataset], *, epochs=None, batch=None, shuffle=None,
        callbacks: Optional[list] = None, stop: Optional[EarlyStop] = SETTINGS,
        log: Optional[Callable[[str], None]] = None, run=None, resume: Optional[Resume] = None,
        progress: Optional[Progress] = None, initial_epoch: int = 0) -> History:
    """Train `model` (a runtime.model.Model) on prepared data sets. `epochs`, `batch` (a
    number or "full"), `shuffle` and `stop` (SETTINGS; None: no early stopping) default to the
    model's settings; `callbacks` are functions called as cb(model, record) after each epoch
    or Keras-style objects (`on_epoch_end(epoch, logs)`, see `Callbacks`), either stopping the
    run by returning True; `initial_epoch` (Keras'): the epochs before it count as done, so
    the run trains epochs initial_epoch+1 .. epochs; `run` (a RunDir) checkpoints each epoch;
    `resume` continues from a run's `last` checkpoint; `progress` shows it (default: `log`, a
    function of one line, per epoch). Raises TrainingDiverged."""
    s = model.settings
    if not model.loss_names:
        raise ValueError("the model has no loss to train")
    if val is not None and len(val.X) == 0:
        val = None
    n = len(train.X)
    if n == 0:
        raise D.DataError("the training set is empty")
    stop = s.stop if stop is SETTINGS else stop
    if stop is not None and stop.monitor.startswith("val.") and val is None:
        raise D.DataError(f"early stopping watches {stop.monitor} but there is no validation data")
    if resume is not None:
        st, best_saved, records = resume
    else:
        epochs = s.epochs if epochs is None else int(epochs)
        batch = s.batch if batch is None else (None if batch == "full" else int(batch))
        if batch is not None and batch < 1:
            raise ValueError(f"batch must be 'full' or a number >= 1, got {batch}")
        st = LoopState(epochs, batch, done=min(int(initial_epoch), epochs),
                       monitor=stop.monitor if stop else ("val.loss" if val else "train.loss"))
        if initial_epoch:
            model.epoch = st.done
        best_saved, records = None, []
    bs = n if st.batch is None else min(st.batch, n)
    dp = distributed.runner(model, train, bs)     # under mpiexec: data-parallel epochs, else None
    if dp is not None and not dp.root:            # rank 0 alone prints and writes the run directory
        run, progress, log = None, Progress("quiet"), None
    shuffle = s.shuffle if shuffle is None else shuffle
    sched = S.make_schedule(s.schedule[0], base_lr(model, bs), max(st.epochs, 1), **s.schedule[1])
    rng = np.random.default_rng([s.seed, 1])
    if resume is not None:
        rng.bit_generator.state = st.rng
        S.restore(sched, st.schedule)
    history = History(list(records), st.stopped_epoch, st.best_epoch if stop else None, st.monitor,
                      model=model)
    if progress is None:
        progress = Progress("lines" if log else "quiet", write=log)
    if dp is not None:
        progress.note(dp.describe())
    best_params = None
    if stop is not None:
        best_params = {nm: np.array(a) for nm, a in (best_saved or {}).items()} or None
    if resume is None:
        st.rng, st.schedule = rng.bit_generator.state, sched.state_dict()
        if run is not None:
            run.start(model, st)
    loop = dp or _Epochs(model, train, bs)
    total = model.epoch - st.done + st.epochs     # the epoch lines count on from the model's epochs so far
    history.params = {"epochs": total, "steps": -(-n // bs), "batch_size": bs}
    cbs = Callbacks(callbacks, model)
    cbs.train_begin()
    art = model.artifact
    art.hold()       # a CUDA artifact keeps params on the device during the fit
    # Short epochs run in blocks, one compiled call each, when nothing has to happen between two
    # of them: no validation, early stopping, callback, run directory or lr schedule that watches
    # the loss (their records are made after the block, with the same numbers; under a terminal
    # their lines are printed without a bar: an epoch of a block takes at most a few ms)
    blocks = dp is None and val is None and stop is None and run is None and not cbs.items \
        and not sched.observes
    try:
        if st.done < st.epochs and not st.finished:
            with progress.compiling() as notice:      # Numba's compile (or its cache) before the first batch
                notice.done(loop.compile(sched.lr_at(st.done), shuffle), art.timings)
        while st.done < st.epochs and not st.finished:
            k = loop.block_size(st.epochs - st.done) if blocks else 1
            if k > 1:
                blocks = _block(loop, model, train, k, st, sched, rng, shuffle, history, progress, total)
                continue
            epoch = st.done
            t0 = time.perf_counter()
            lr = sched.lr_at(epoch)
            order = rng.permutation(n) if shuffle else None
            cbs.epoch_begin(model.epoch)
            bar = progress.epoch_start(model.epoch + 1, total, -(-n // bs))
            terms, out = loop.run(order, lr, epoch, bar)
            model.epoch += 1
            st.done += 1
            rec = _record(model, lr, terms, train.y if order is None else train.y[order], out, val)
            rec["time"] = time.perf_counter() - t0
            loop.per_epoch = rec["time"]
            history.epochs.append(rec)
            improved = _watch(st, stop, rec, model.epoch)
            if improved and stop is not None:
                best_params = _keep_best(model, best_params)
            history.best_epoch = st.best_epoch if stop is not None else None
            history.stopped_epoch = st.stopped_epoch
            sched.observe(rec["val"]["loss"] if "val" in rec else rec["train"]["loss"])
            progress.epoch_end(rec, total, bar)
            if cbs.epoch_end(rec):
                st.finished = True
            if st.done >= st.epochs:
                st.finished = True
            st.rng = rng.bit_generator.state
            st.schedule = sched.state_dict()
            if run is not None:
                run.epoch_end(model, rec, st, best_params, improved)
        cbs.train_end(history)
    except TrainingDiverged as e:
        e.restored_epoch = st.best_epoch if best_params is not None else None
        raise
    finally:        # whatever way the run ends: the checkpoints waiting, early stopping's best weights
        art.release()
        if run is not None:
            run.flush()
        if best_params is not None and st.best_epoch != model.epoch:
            for nm, a in best_params.items():
                model.params[nm] = a
            history.restored_epoch = st.best_epoch
    return history


def _block(loop: "_Epochs", model, train: D.Dataset, k: int, st: LoopState, sched, rng, shuffle: bool,
           history: History, progress: Progress, total: int) -> bool:
    """k epochs in one compiled call (`_Epochs.run_block`), then their records, as the loop
    makes them epoch by epoch. Whether to go on in blocks: False when a loss or a param turned
    non-finite in the block -- the params, the step and the shuffle generator are then put
    back at the block's start, and the loop replays the epochs one by one to diagnose it."""
    t0 = time.perf_counter()
    e0, n = st.done, len(train.X)
    lrs = [sched.lr_at(e0 + i) for i in range(k)]
    rng_state = rng.bit_generator.state
    orders = np.stack([rng.permutation(n) for _ in range(k)]) if shuffle else None
    got = loop.run_block(orders, lrs)
    if got is None:
        rng.bit_generator.state = rng_state
        return False
    terms, outs = got
    each = (time.perf_counter() - t0) / k
    loop.per_epoch = each
    ys = train.y[orders] if shuffle else np.broadcast_to(train.y, (k,) + train.y.shape)
    metrics = model.metric_values_epochs(ys, outs)
    for i in range(k):
        model.epoch += 1
        st.done += 1
        rec = _record(model, lrs[i], terms[i], None, None, None, metrics[i])
        rec["time"] = each
        history.epochs.append(rec)
        _watch(st, None, rec, model.epoch)
        sched.observe(rec["train"]["loss"])
        progress.epoch_end(rec, total)
    if st.done >= st.epochs:
        st.finished = True
    st.rng = rng.bit_generator.state
    st.schedule = sched.state_dict()
    return True


class Callbacks:
    """The callbacks of one fit. A function is called as cb(model, record) after each epoch;
    an object as Keras calls its callbacks: `set_model(model)` (or its `model` attribute set)
    first, then whichever of on_train_begin(logs), on_epoch_begin(epoch, logs),
    on_epoch_end(epoch, logs) and on_train_end(logs) it has, with 0-based epoch indices and
    Keras' flat logs (loss, accuracy, val_loss, ..., lr). A callback stops the run by
    returning True or by setting model.stop_training = True (Keras' way)."""

    HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end")

    def __init__(self, callbacks, model):
        self.model = model
        self.items = list(callbacks or [])
        for cb in self.items:
            if not callable(cb) and not any(hasattr(cb, h) for h in self.HOOKS):
                raise TypeError(f"callback {cb!r} is neither a function cb(model, record) nor an object with "
                                f"on_epoch_end(epoch, logs)")
        model.stop_training = False
        for cb in self._objects():
            if hasattr(cb, "set_model"):
                cb.set_model(model)
            else:
                try:
                    cb.model = model
                except AttributeError:
                    pass

    def _objects(self):
        return [cb for cb in self.items if any(hasattr(cb, h) for h in self.HOOKS)]

    def _call(self, hook: str, *args) -> bool:
        stop = False
        for cb in self._objects():
            if hasattr(cb, hook) and getattr(cb, hook)(*args) is True:
                stop = True
        return stop

    def train_begin(self) -> None:
        self._call("on_train_begin", {})

    def epoch_begin(self, epoch: int) -> None:
        self._call("on_epoch_begin", epoch, {})

    def epoch_end(self, rec: dict) -> bool:
        """Whether a callback asked to stop after this epoch (`rec["epoch"]` is 1-based)."""
        stop = False
        for cb in self.items:
            if any(hasattr(cb, h) for h in self.HOOKS):
                stop |= hasattr(cb, "on_epoch_end") and cb.on_epoch_end(rec["epoch"] - 1, epoch_logs(rec)) is True
            else:
                stop |= bool(cb(self.model, rec))
        return stop or bool(getattr(self.model, "stop_training", False))

    def train_end(self, history: History) -> None:
        self._call("on_train_end", epoch_logs(history.epochs[-1]) if history.epochs else {})


def base_lr(model, batch: int) -> float:
    """The optimizer's learning rate (its default when the file gives none), scaled by
    batch / lr_scale when the train block sets `lr_scale`."""
    opt, args = model.ir.optimizer[0], model.ir.optimizer[1]
    lr = float(args.get("lr", OPTIMIZER_ARGS[opt]["lr"]))
    if model.settings.lr_scale:
        lr *= batch / model.settings.lr_scale
    return lr


def _record(model, lr: float, terms: np.ndarray, y: np.ndarray, out: np.ndarray, val, metrics=None) -> dict:
    """The epoch's record: the mean loss terms and the metrics of the outputs the training
    steps computed (`metrics` when they are computed already), and the validation set's."""
    rec = {"epoch": model.epoch, "lr": lr, "train": {"loss": float(terms.sum())}}
    if len(terms) > 1:
        rec["train"].update({nm: float(v) for nm, v in zip(model.loss_names, terms)})
    rec["train"].update(model.metric_values(y, out) if metrics is None else metrics)
    if val is not None:
        rec["val"] = model.metrics_of(val)
    return rec


def _watch(st: LoopState, stop: Optional[EarlyStop], rec: dict, epoch: int) -> bool:
    """Whether the monitored value improved; counts early stopping's patience."""
    mode, min_delta = (stop.mode, stop.min_delta) if stop else ("min", 0.0)
    split, _, metric = st.monitor.partition(".")
    watched = rec.get(split, {}).get(metric)
    improved = watched is not None and math.isfinite(watched) and (
        st.best is None or (watched < st.best - min_delta if mode == "min" else watched > st.best + min_delta))
    if improved:
        st.best, st.best_epoch, st.wait = float(watched), epoch, 0
    elif stop is not None:
        st.wait += 1
        if st.wait > stop.patience:          # more than `patience` epochs without improvement
            st.stopped_epoch = epoch
            st.finished = True
    return improved


def _keep_best(model, best_params: Optional[dict]) -> dict:
    """A copy of the params (into the arrays of the previous best, once there are some)."""
    if best_params is None:
        return {nm: a.copy() for nm, a in model.params.items()}
    for nm, a in model.params.items():
        np.copyto(best_params[nm], a)
    return best_params


def _mean_terms(terms: np.ndarray, n: int, bs: int) -> np.ndarray:
    """[epochs, terms]: each epoch's mean loss terms over its n samples from the per-batch
    means terms[epoch, batch] (batches of bs, the last one shorter), summed in batch order in
    float64 -- the sums a per-batch loop of Python floats makes."""
    nb = terms.shape[1]
    acc = np.zeros((terms.shape[0], terms.shape[2]))
    for j in range(nb - 1):
        acc += terms[:, j, :] * bs
    return (acc + terms[:, nb - 1, :] * (n - bs * (nb - 1))) / n


class _Epochs:
    """The epochs of one fit, each from a snapshot of the params and state at its start (so
    that a diverged epoch can be replayed). An epoch is one call of the artifact's compiled
    train_epoch, or -- while a bar shows progress -- a few: chunks of batches sized to take
    about CHUNK_S each (measured as it goes), the bar moved after each."""

    CHUNK_S = 0.1           # seconds a chunk of batches should take when a bar is shown
    GROWTH = 4              # a chunk is at most this many times the previous one

    def __init__(self, model, train: D.Dataset, bs: int):
        self.model, self.train, self.bs = model, train, bs
        self.X = np.ascontiguousarray(train.X)           # the compiled loop slices views of these
        self.y = np.ascontiguousarray(train.y)
        self.params, self.states = model.param_arrays(), model.state_arrays()
        self.snap_p = [np.empty_like(a) for a in self.params]     # the params at the start of the epoch,
        self.snap_s = [np.empty_like(a) for a in self.states]     # to replay a diverged epoch
        self.per_batch: Optional[float] = None                    # seconds a batch takes, measured
        self.chunk = 1
        self.per_epoch: Optional[float] = None                    # seconds an epoch takes, measured
        self.block = 1
        self.out_bytes = 0                                        # an epoch's outputs, measured by `run`

    BLOCK_S = 0.1           # seconds a block of short epochs should take
    BLOCK_BYTES = 16 << 20  # at most this much of outputs per block

    def block_size(self, left: int) -> int:
        """Epochs in the next block: about BLOCK_S worth at the pace `run` measured (growing at
        most GROWTH times per block), at most `left`, their outputs at most BLOCK_BYTES."""
        if self.per_epoch is None:
            return 1
        want = min(int(self.BLOCK_S / max(self.per_epoch, 1e-9)), self.BLOCK_BYTES // max(self.out_bytes, 1))
        self.block = max(1, min(want, self.block * self.GROWTH, left))
        return self.block

    def run_block(self, orders, lrs):
        """(mean loss terms [epochs, terms], outputs [epochs, n, ...]) of len(lrs) epochs run in
        one call of the artifact's train_epochs (epoch e at lrs[e], in orders[e] when given),
        the same numbers as `run` epoch by epoch; None when a loss term or a param turned
        non-finite: the params, the state and the step are then those of the block's start."""
        m, bs = self.model, self.bs
        n = len(self.X)
        nb, k = -(-n // bs), len(lrs)
        self.snapshot()
        step0 = m.step
        terms, outs = m.artifact.train_epochs(self.X, self.y, bs, lrs, step0, self.params, self.states, orders)
        m.artifact.sync()
        if not np.isfinite(terms).all() or not all(np.isfinite(p).all() for p in self.params):
            m.artifact.release(sync=False)
            for a, b in zip(self.params + self.states, self.snap_p + self.snap_s):
                np.copyto(a, b)               # put back the snapshot
            m.artifact.hold()
            return None
        m.step = step0 + k * nb
        return _mean_terms(terms, n, bs), outs

    def snapshot(self) -> None:
        """The params and state of now into snap_p / snap_s (what a divergence puts back)."""
        for a, b in zip(self.snap_p + self.snap_s, self.params + self.states):
            np.copyto(a, b)

    def compile(self, lr: float, shuffle: bool) -> float:
        """Compile the epoch's kernels (or load them from the cache) before the first batch:
        the seconds it took (0.0 when they were ready)."""
        order = np.empty(0, np.int64) if shuffle else None
        return self.model.artifact.compile_epoch(self.X, self.y, self.bs, self.model.dtype.type(lr), self.params,
                                                 self.states, order)

    def run(self, order, lr: float, epoch: int, bar=None):
        """(mean loss terms, outputs) of one epoch. A non-finite loss term in any batch is
        diagnosed from the first such batch, a non-finite param after the epoch from its last."""
        m, bs = self.model, self.bs
        n = len(self.X)
        nb = -(-n // bs)
        self.snapshot()
        step0 = m.step
        terms, out = np.zeros((nb, len(m.loss_names))), None
        j = 0
        while j < nb:
            e = nb if bar is None else min(nb, j + self._next_chunk())
            t0 = time.perf_counter()
            # the artifact runs the steps of batches j..e-1 in one compiled call (on a GPU, with
            # the data there) and writes their loss terms and outputs
            terms, out = m.artifact.train_epoch(self.X, self.y, bs, m.dtype.type(lr), step0, self.params,
                                                self.states, order, j, e, terms, out)
            self._measured(time.perf_counter() - t0, e - j)
            if not np.isfinite(terms[j:e]).all():
                b = j + int(np.argmax(~np.isfinite(terms[j:e].sum(axis=1))))
                m.step = step0 + b + 1
                self.diverged(order, b, step0, lr, epoch)
            if bar is not None:
                bar.update(e - j)
            j = e
        m.step = step0 + nb
        m.artifact.sync()     # the host arrays get the device's values once per epoch
        if not all(np.isfinite(p).all() for p in self.params):
            self.diverged(order, (n - 1) // bs, step0, lr, epoch, update=True)
        self.out_bytes = 0 if out is None else out.nbytes
        return _mean_terms(terms[None], n, bs)[0], out

    def _next_chunk(self) -> int:
        """Batches in the next chunk: about CHUNK_S worth at the measured pace, growing from
        one batch at most GROWTH times per chunk (a first measurement can be off)."""
        if self.per_batch is None:
            return 1
        want = max(1, int(self.CHUNK_S / max(self.per_batch, 1e-9)))
        self.chunk = min(want, self.chunk * self.GROWTH)
        return self.chunk

    def _measured(self, seconds: float, batches: int) -> None:
        if batches > 0:
            self.per_batch = seconds / batches

    def diverged(self, order, batch_index: int, step0: int, lr: float, epoch: int, update: bool = False):
        """Stop the run: find the first non-finite value of the failing step (diverge.py), put
        back the params of the epoch's start (the last good checkpoint) and raise."""
        self.model.artifact.release(sync=False)      # the host arrays hold the epoch's start
        diverge.stop(self, order, batch_index, step0, lr, epoch, update)
