"""A compiled model with its params and optimizer state: predict, evaluate, the metrics of a
data set, save. Training is runtime/loop.py's (`Model.fit` prepares the arrays and calls it);
data preparation is runtime/prepare.py's."""
from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Callable, Dict, List, Optional

import numpy as np

from netc.dsl import NetcError, UserError, parse
from netc.dsl.diagnostics import did_you_mean

from . import checkpoint
from . import data as D
from . import loop
from netc.compiler import export_onnx, summary as S
from netc.compiler.backend.contract import CompiledModel
from netc.compiler.cache import NETC_VERSION
from netc.compiler.initializers import initialize

from . import metrics as M
from . import prepare as P
from .diverge import TrainingDiverged
from .loop import History, keras_key
from .progress import Progress
from .settings import EarlyStop, TrainSettings, load_data, load_spec, monitor_key

__all__ = ["Model", "History", "TrainingDiverged", "ParamView", "FitError"]


class FitError(UserError, ValueError):
    """A mistake in the arguments of fit, predict or score (a conflicting or invalid value)."""


class Model:
    """A compiled `.net` model. Params and optimizer state are NumPy arrays that the compiled
    kernels update in place."""

    def __init__(self, artifact: CompiledModel, settings: TrainSettings, file: str = "<string>",
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
        self.scaler: Optional[P.Scaler] = None       # (mean, std), float64
        self.stop_training = False                   # a callback sets it to end fit after this epoch (Keras')
        self._init_params(settings.seed if seed is None else seed)

    # ------------------------------------------------------------ params
    def _init_params(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._params: Dict[str, np.ndarray] = {}
        for p in self.ir.params:
            self._params[p.name] = initialize(p.init.kind, p.init.args, p.shape, rng, self.dtype)
        self._state: Dict[str, np.ndarray] = {
            s.name: np.full(self._params[s.param].shape, s.init, self.dtype) for s in self.artifact.states}

    @property
    def params(self) -> "ParamView":
        """name -> array; assign with model.params["W"] = array (shape checked). Includes the
        buffers (batchnorm's running statistics, dropout's seed: `ParamInfo.trainable` false)."""
        return ParamView(self._params, self.dtype)

    @property
    def state(self) -> Dict[str, np.ndarray]:
        """The optimizer's state arrays by name (momentum buffers, moments, ...)."""
        return self._state

    def param_arrays(self) -> List[np.ndarray]:
        """The live param arrays in the order of the compiled entry points' arguments."""
        return [self._params[p.name] for p in self.ir.params]

    def state_arrays(self) -> List[np.ndarray]:
        """The live optimizer-state arrays in the order of the compiled train step's arguments."""
        return [self._state[s.name] for s in self.artifact.states]

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def loss_names(self) -> List[str]:
        return self.artifact.loss_names

    def load_arrays(self, arrays: Dict[str, np.ndarray], where: str = "checkpoint",
                    standardized: Optional[bool] = None) -> Dict[str, np.ndarray]:
        """Params, optimizer state and scaler from a checkpoint's arrays: every param and state
        array present, with its shape and the model's dtype; the scaler both or neither (and
        present exactly when `standardized`); early stopping's best params all or none.
        Raises CheckpointError. Returns the `best/...` arrays, if any."""
        dtype = np.dtype(self.artifact.dtype)
        best, scaler = {}, {}
        for k, v in arrays.items():
            kind, _, name = k.partition("/")
            if kind == "scaler" and name in ("mean", "std"):
                scaler[name] = v
                continue
            target = self._params if kind in ("param", "best") else self._state if kind == "state" else None
            if target is None or name not in target:
                raise checkpoint.CheckpointError(f"{where}: array '{k}' is not one of the model's")
            if target[name].shape != v.shape or v.dtype != dtype:
                raise checkpoint.CheckpointError(
                    f"{where}: array '{k}' has shape {list(v.shape)} and dtype {v.dtype}; the model's "
                    f"is {list(target[name].shape)} {dtype}")
        for kind, store in (("param", self._params), ("state", self._state)):
            missing = [n for n in store if f"{kind}/{n}" not in arrays]
            if missing:
                raise checkpoint.CheckpointError(f"{where}: the checkpoint has no array for {kind} "
                                                 f"'{missing[0]}'" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        has_best = [n for n in self._params if f"best/{n}" in arrays]
        if has_best and len(has_best) != len(self._params):
            raise checkpoint.CheckpointError(f"{where}: early stopping's best params are incomplete")
        shape = tuple(self.ir.input_shape)
        if scaler:
            if set(scaler) != {"mean", "std"} or any(a.shape != shape for a in scaler.values()) \
                    or not all(np.isfinite(a).all() for a in scaler.values()) or (scaler["std"] <= 0).any():
                raise checkpoint.CheckpointError(f"{where}: the standardization (scaler/mean, scaler/std) is "
                                                 f"damaged: it needs finite means and positive scales of shape {list(shape)}")
        if standardized is not None and standardized != bool(scaler):
            raise checkpoint.CheckpointError(f"{where}: model.json says standardized={str(standardized).lower()} "
                                             f"but the arrays {'lack' if standardized else 'hold'} a scaler")
        for k, v in arrays.items():
            kind, _, name = k.partition("/")
            if kind == "best":
                best[name] = v
            elif kind in ("param", "state"):
                (self._params if kind == "param" else self._state)[name][...] = v
        self.scaler = None if not scaler else (np.asarray(scaler["mean"], np.float64),
                                               np.asarray(scaler["std"], np.float64))
        return best

    # ------------------------------------------------------------ data
    def fit_scaler(self, X) -> None:
        """Standardization (per input value: mean 0, std 1) fitted on the samples X; stored with
        the model and applied by predict, evaluate and fit. Constant features keep std 1."""
        self.scaler = P.fit_scaler(X, self.ir.input_shape)

    def remap_classes(self, ds: D.Dataset) -> D.Dataset:
        """A loaded data set whose string labels were numbered by its own sorted names, renumbered
        by the model's class names (which the training data fixed)."""
        trained_on_ids = self.classes is None and self.step > 0
        return P.remap_classes(ds, P.NUMERIC if trained_on_ids else self.classes)

    def prepare(self, X, y=None, source: str = "data", scale: bool = True) -> D.Dataset:
        """Check and convert arrays for this model (raises DataError): string labels become class
        ids (learning model.classes when it is None); with `scale`, standardized when the model
        has a scaler and cast to its dtype."""
        ds, self.classes = P.prepare(X, y, self.ir, self.dtype, self.classes, self.scaler, source, scale)
        return ds

    def load_dataset(self, spec: Optional[dict] = None) -> D.Dataset:
        """The data of `spec` (default: the train block's `data`), checked against the model;
        string labels are numbered by the model's class names when it has them."""
        t = self.ir.target
        if t is None:
            raise NetcError.single(f"{self.file}: model '{self.name}' has no target, so it cannot be "
                                   f"trained or evaluated on labelled data")
        if spec is None and self.settings.data is None:
            raise NetcError.single(f"{self.file}: the train block names no data",
                                   hint="add `data = ...` to the train block, or give the arrays: fit(X, y)")
        ds = load_spec(spec) if spec is not None else load_data(self.settings)
        ds = self.remap_classes(ds)
        width = t.classes if t.kind == "class" else int(np.prod(t.shape))
        return D.validate(ds, self.ir.input_shape, t.kind, width, ds.name or "data")

    def split(self, ds: D.Dataset):
        """(train, val, test) as the train block's `split` cuts them (stratified for class
        targets), unprepared."""
        s = self.settings
        return D.split(ds, s.split, s.seed, self.ir.target.kind == "class")

    def file_data(self):
        """(train, val, test) of the train block's `data`, cut by its `split`, unprepared; the
        class names of a fresh model are fixed by it."""
        ds = self.load_dataset()
        if self.classes is None and self.step == 0:
            self.classes = ds.classes
        return self.split(ds)

    # ------------------------------------------------------------ entry points
    def _one_sample(self, X) -> bool:
        """Whether X is one sample (its shape is the input's), not an array of samples."""
        return np.shape(X) == tuple(self.ir.input_shape)

    def predict(self, X, batch: int = 1024) -> np.ndarray:
        """The model's `output` for each row of X (probabilities for a softmax output); for one
        sample (an array of the input's shape) its one output."""
        if not self.artifact.has_predict:
            raise FitError(f"model '{self.name}' has no output to predict: add `output NAME` to the file")
        if self._one_sample(X):
            return self.predict(np.asarray(X)[None], batch)[0]
        ds = self.prepare(X, None, "X")
        outs = [self.artifact.predict(ds.X[i:i + batch], self.param_arrays()) for i in range(0, len(ds.X), batch)]
        return np.concatenate(outs) if outs else np.zeros((0,) + self.ir.graph.shape(self.ir.output)[1:])

    def predict_proba(self, X, batch: int = 1024) -> np.ndarray:
        """Class probabilities, (n, C): the softmax output as it is; a single sigmoid output p
        (a 0/1 target) becomes the two columns 1 - p, p."""
        if self._one_sample(X):
            return self.predict_proba(np.asarray(X)[None], batch)[0]
        out = self.predict(X, batch)
        if out.ndim == 2 and out.shape[1] == 1 and self.is_classifier():
            return np.concatenate([1 - out, out], axis=1)
        if not self.is_classifier():
            raise ValueError(f"model '{self.name}' predicts real values, not class probabilities")
        return out

    def is_classifier(self) -> bool:
        """Whether the model predicts classes: a class target, or a 0/1 target of binary cross entropy."""
        t = self.ir.target
        return t is not None and (t.kind == "class" or "binary_cross_entropy" in self.ir.loss_kinds)

    def num_classes(self) -> int:
        """The number of classes (2 for a 0/1 sigmoid output)."""
        t = self.ir.target
        return t.classes if t is not None and t.kind == "class" else 2

    def predict_classes(self, X) -> np.ndarray:
        """The predicted classes: their names when the model was trained on string labels
        (model.classes), else class ids; one for one sample."""
        if self._one_sample(X):
            return self.predict_classes(np.asarray(X)[None])[0]
        ids = M.predicted_labels(self.predict(X))
        return np.asarray(self.classes)[ids] if self.classes else ids

    def score(self, X, y) -> float:
        """As scikit-learn's: the accuracy of a classifier, the R^2 of a regression on (X, y)."""
        name = "accuracy" if self.is_classifier() else "r2"
        if self.ir.target is None:
            raise FitError(f"model '{self.name}' has no target to score against")
        return self.evaluate(X, y, [name])[name]

    def losses_and_outputs(self, ds: D.Dataset, batch: int = 1024):
        """Loss terms (batch-size weighted means) and outputs over a prepared data set."""
        k = len(self.loss_names)
        sums = np.zeros(k)
        losses = np.zeros(k)
        outs = []
        for i in range(0, len(ds.X), batch):
            xb, yb = ds.X[i:i + batch], ds.y[i:i + batch]
            out = self.artifact.evaluate(xb, yb, self.param_arrays(), losses)
            sums += losses * len(xb)
            if self.ir.output is not None:          # a model without `output` has losses only
                outs.append(out)
        return sums / max(len(ds.X), 1), (np.concatenate(outs) if outs else None)

    def evaluate(self, X=None, y=None, metrics=None) -> Dict[str, float]:
        """Loss terms, total loss and metrics on (X, y) -- with no arrays, on the test part of
        the train block's `data` and `split` (the part fit() without arrays never sees): the
        train block's metrics, a list of names, or "all" (every metric that fits the target)."""
        if X is None and y is None:
            _, _, test = self.file_data()
            if len(test.X) == 0:
                raise FitError(f"{self.file}: the train block's split has no test part; give evaluate(X, y)")
            X, y = test.X, test.y
        ds = self.prepare(X, y, "data")
        return self.metrics_of(ds, self.all_metrics() if metrics == "all" else metrics)

    def all_metrics(self) -> List[str]:
        """Every metric that fits the target: accuracy, precision, recall, f1 for classes (and a
        0/1 sigmoid output); mse, mae, r2 for real values."""
        t = self.ir.target
        if t is None:
            return []
        names = ["mse", "mae", "r2"] if t.kind == "real" else []
        if self.is_classifier():
            names = ["accuracy", "precision", "recall", "f1"] + names
        return names

    def metrics_of(self, ds: D.Dataset, names: Optional[List[str]] = None) -> Dict[str, float]:
        """Total loss, each loss term (when there are several) and the metrics `names` (default:
        the train block's) of a prepared data set; {} for an empty one."""
        if len(ds.X) == 0:
            return {}
        terms, out = self.losses_and_outputs(ds)
        res = {"loss": float(terms.sum())}
        if len(terms) > 1:
            res.update({n: float(v) for n, v in zip(self.loss_names, terms)})
        res.update(self.metric_values(ds.y, out, names))
        return res

    def metric_values(self, y, out, names=None) -> Dict[str, float]:
        """The metrics `names` (default: the train block's) of outputs `out` against targets `y`."""
        names = self.settings.metrics if names is None else names
        t = self.ir.target
        if out is None or not names or t is None or self.ir.output is None:
            return {}
        return M.compute(names, y, out, t.kind, t.classes)

    def metric_values_epochs(self, ys, outs) -> List[Dict[str, float]]:
        """metric_values of several epochs' outputs outs[e] against ys[e] (at once where it can)."""
        names = self.settings.metrics
        t = self.ir.target
        if outs is None or not names or t is None or self.ir.output is None:
            return [{} for _ in range(len(ys))]
        return M.compute_epochs(names, ys, outs, t.kind, t.classes)

    def confusion_matrix(self, X, y) -> np.ndarray:
        """Rows: true classes, columns: predicted classes."""
        return self.confusion_matrix_of(self.prepare(X, y, "data"))

    def confusion_matrix_of(self, ds: D.Dataset) -> np.ndarray:
        """The confusion matrix of a prepared data set."""
        _, out = self.losses_and_outputs(ds)
        return M.confusion_matrix(ds.y, out, self.num_classes())

    # ------------------------------------------------------------ training
    def fit(self, X=None, y=None, epochs: Optional[int] = None, batch=None, validation=None,
            shuffle: Optional[bool] = None, callbacks: Optional[list] = None, verbose=None,
            stop=loop.SETTINGS, log: Optional[Callable[[str], None]] = None,
            standardize: Optional[bool] = None, *, batch_size=None, validation_data=None,
            validation_split: float = 0.0, initial_epoch: Optional[int] = None) -> History:
        """Train on (X, y), as Keras' fit does; returns a History (`history.history["val_loss"]`).

        X, y: the samples and targets (string labels become class ids: sorted names, kept in
        model.classes); neither: the train block's `data`, cut by its `split` (its validation
        part validates). `epochs`: how many epochs this call trains (default: the train
        block's); the epochs are numbered on from the model's (a second fit(epochs=2) after 5
        trains epochs 6 and 7); with `initial_epoch` (Keras'), `epochs` is the last epoch and
        the call trains epochs initial_epoch+1 .. epochs. `batch_size` (or `batch`): a number
        or "full" (default: the train block's, else 32). `validation_data` (or `validation`):
        (Xv, yv); `validation_split`: the LAST fraction of X, y (before any shuffling) validates
        instead (`validation_data` wins when both are given). `callbacks`: functions cb(model,
        record) or Keras-style objects with on_epoch_end(epoch, logs) (and optionally
        on_train_begin/on_epoch_begin/on_train_end); returning True or setting
        model.stop_training stops after the epoch. `stop`: an EarlyStop, a monitored name
        ("val_loss", "val_accuracy", ...), True (the train block's, else val_loss with patience
        10) or None/False (no early stopping); default: the train block's, switched off with a
        warning when there is no validation data. `verbose`: 0 silent, 1 a bar per epoch in a
        terminal and a line per epoch otherwise, 2 a line per epoch; default 1 when stdout is
        a terminal, else 0. `log`: a function of one line that gets the epoch lines instead.
        `standardize` fits a scaler on the training samples first (default: the train block's
        `standardize`). The loop itself is runtime/loop.py's `fit`."""
        batch = _same("batch", batch, "batch_size", batch_size)
        if initial_epoch is not None and (isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer))
                                          or initial_epoch < 0):
            raise FitError(f"initial_epoch must be a whole number >= 0, got {initial_epoch!r}")
        validation = _same("validation", validation, "validation_data", validation_data)
        if X is None:
            if y is not None:
                raise FitError("fit got targets y but no samples X")
            tr, va, _ = self.file_data()
            X, y = tr.X, tr.y
            if validation is None and not validation_split and len(va.X):
                validation = (va.X, va.y)
        elif y is None and self.ir.target is not None:
            raise FitError(f"fit(X) needs the targets too: fit(X, y) (model '{self.name}' has target "
                           f"'{self.ir.target.name}')")
        if validation_split:
            X, y, held = _split_last(X, y, validation_split)
            if validation is None:
                validation = held
        if validation is not None and (not isinstance(validation, (tuple, list)) or len(validation) != 2):
            raise FitError("validation_data must be a pair (X_val, y_val)" +
                           (" (sample weights are not supported)" if isinstance(validation, (tuple, list))
                            and len(validation) == 3 else ""))
        if standardize if standardize is not None else self.settings.standardize:
            self.fit_scaler(self.prepare(X, y, "X", scale=False).X)
        train = self.prepare(X, y, "X")
        val = self.prepare(*validation, source="validation") if validation is not None else None
        if val is not None and len(val.X) == 0:
            val = None
        stop = self._early_stop(stop, val is not None)
        progress = _progress(verbose, log)
        history = loop.fit(self, train, val, epochs=epochs, batch=batch, shuffle=shuffle, callbacks=callbacks,
                           stop=stop, progress=progress, initial_epoch=initial_epoch or 0)
        if history.summary():
            progress.note(history.summary())
        history.params["verbose"] = 0 if progress.mode == "quiet" else (2 if progress.mode == "lines" else 1)
        return history

    def _early_stop(self, stop, has_val: bool) -> Optional[EarlyStop]:
        """fit's `stop` as an EarlyStop, or None (see fit)."""
        if stop is loop.SETTINGS:
            stop = self.settings.stop
            if stop is not None and stop.monitor.startswith("val.") and not has_val:
                warnings.warn(f"{self.file}: early stopping watches {keras_key(stop.monitor)} but fit has no "
                              f"validation data, so it trains without early stopping (give validation_data= or "
                              f"validation_split=, or stop=None to silence this)", UserWarning, stacklevel=3)
                return None
            return stop
        if stop is None or stop is False:
            return None
        if stop is True:
            return self.settings.stop or self._early_stop("val_loss", has_val)
        if isinstance(stop, str):
            stop = EarlyStop(stop, mode="")
        elif isinstance(stop, dict):
            stop = EarlyStop(**{"mode": "", **stop})
        if not isinstance(stop, EarlyStop):
            raise FitError(f"stop must be an EarlyStop, a monitored name such as 'val_loss', True or None; "
                           f"got {stop!r}")
        mon = monitor_key(stop.monitor)
        split, _, metric = mon.partition(".")
        losses = {"loss"} | set(self.loss_names)
        known = sorted(losses | set(M.METRICS))
        if split not in ("train", "val") or metric not in known:
            names = known + [f"val_{k}" for k in known]
            hint = did_you_mean(keras_key(stop.monitor), names)
            raise FitError(f"early stopping cannot watch '{stop.monitor}'" + (f"; {hint}" if hint else
                                                                              "; watch val_loss or val_METRIC"))
        mode = stop.mode or ("min" if metric in losses else "max" if M.METRICS[metric].greater_is_better else "min")
        return EarlyStop(mon, stop.patience, stop.min_delta, mode)

    def save(self, path) -> str:
        """Write params, optimizer state, scaler, class names and the model's source, atomically,
        to `path` (load it with netc.load): a path ending in `.npz` is one file (the arrays and
        the metadata as `meta/model.json`), any other path a checkpoint directory (`weights.npz`
        and `model.json`). Returns the path."""
        path = os.fspath(path)
        if path.endswith(".npz"):
            checkpoint.save_file(self, path)
        else:
            checkpoint.save(self, path)
        return path

    def count_params(self) -> int:
        """The number of trainable numbers (the `params` of summary(); buffers such as
        batchnorm's running statistics are not counted)."""
        return sum(self._params[p.name].size for p in self.ir.params if p.trainable)

    # ------------------------------------------------------------ leaving netc
    def to_onnx(self):
        """The predict graph as an onnx ModelProto: a dynamic batch dimension, input and output
        named as in the .net file, the standardization folded in (it takes raw features), the
        params as initializers in the model's dtype, and metadata: netc version, the source's
        sha256, for a classifier the class names and the output's columns (JSON). Needs `pip install 'netc[onnx]'`."""
        meta = {"netc_version": NETC_VERSION, "source_sha256": checkpoint.source_hash(self.source),
                "model": self.name, "dtype": str(self.dtype), "output": self.ir.output_name,
                "standardized_inside": "true" if self.scaler is not None else "false"}
        if self.is_classifier():
            names = list(self.classes or [str(i) for i in range(self.num_classes())])
            width = int(np.prod(self.ir.graph.shape(self.ir.output)[1:])) if self.ir.output is not None else 0
            meta["classes"] = json.dumps(names)
            # what each output column is: p of every class, or (one sigmoid column) p of the second
            meta["columns"] = json.dumps([f"p_{n}" for n in names] if width == len(names) else [f"p_{names[-1]}"])
        return export_onnx.to_onnx(self.artifact.graph, self.ir, self._params, self.dtype, self.scaler, meta,
                                   self.source)

    def export_onnx(self, path: str) -> str:
        """Write the predict graph to `path` as an ONNX file (see `to_onnx`), atomically; returns path."""
        proto = self.to_onnx()
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
        os.replace(tmp, path)
        return path

    def summary(self, print_fn: Optional[Callable[[str], None]] = None) -> Optional[S.Summary]:
        """The model as written, one row per statement: output shape per sample, params (names,
        shapes, counts), forward FLOPs per sample; totals, and the FLOPs of a whole train step.
        Prints as the table of `netc summary` (`print(model.summary())`); its fields hold the
        numbers. With `print_fn` (Keras'), the table goes to it and None is returned."""
        table = S.summarize(self.artifact.forward, self.artifact.graph, self.ir, parse(self.source, self.file))
        if print_fn is not None:
            print_fn(table.table())
            return None
        return table

    def __repr__(self):
        trained = [p.name for p in self.ir.params if p.trainable]      # buffers aside
        n = sum(self._params[k].size for k in trained)
        buffers = len(self.ir.params) - len(trained)
        extra = f", {buffers} buffer{'s' if buffers != 1 else ''}" if buffers else ""
        return f"<netc.Model '{self.name}': {n} params in {len(trained)} tensors{extra}, {self.artifact.dtype}>"


class ParamView(dict):
    """model.params: reading gives the live arrays; assigning copies into them (shape checked)."""

    def __init__(self, store: Dict[str, np.ndarray], dtype):
        super().__init__(store)
        self._store, self._dtype = store, dtype

    def __setitem__(self, name, value):
        if name not in self._store:
            hint = did_you_mean(name, self._store)
            raise KeyError(f"no param '{name}'" + (f"; {hint}" if hint else ""))
        value = np.asarray(value, dtype=self._dtype)
        if value.shape != self._store[name].shape:
            raise ValueError(f"param '{name}' has shape {self._store[name].shape}, got {value.shape}")
        self._store[name][...] = value

    def __missing__(self, name):
        hint = did_you_mean(str(name), self._store)
        raise KeyError(f"no param '{name}'" + (f"; {hint}" if hint else f" (the params: {', '.join(self._store)})"))


def _same(name: str, value, alias: str, alias_value):
    """One of two spellings of an argument (netc's and Keras'); both only when they agree."""
    if alias_value is None:
        return value
    if value is not None and not (value is alias_value or (isinstance(value, (int, str)) and value == alias_value)):
        raise FitError(f"fit got {name}={value!r} and {alias}={alias_value!r}; give one")
    return alias_value


def _split_last(X, y, fraction):
    """(X, y, (X_val, y_val)): Keras' validation_split, the last `fraction` of the samples."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise FitError(f"validation_split must be a number >= 0 and < 1, got {fraction!r}")
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise FitError(f"X has {len(X)} samples but y has {len(y)}")
    at = int(len(X) * (1 - fraction))
    return X[:at], y[:at], (X[at:], y[at:])


def _progress(verbose, log) -> Progress:
    """fit's display: `log` gets the lines; else by `verbose` (see Model.fit)."""
    if log is not None:
        return Progress("lines", write=log)
    if verbose is None:
        verbose = 1 if getattr(sys.stdout, "isatty", lambda: False)() else 0
    if verbose is False or verbose == 0:
        return Progress("quiet")
    if verbose == 2:
        return Progress("lines")
    if verbose is True or verbose == 1:
        return Progress.for_output()
    raise FitError(f"verbose must be 0, 1 or 2, got {verbose!r}")
