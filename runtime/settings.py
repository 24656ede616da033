"""The `train` block and `schedule` statement, resolved into plain settings, with located
diagnostics for values that make no sense. Command-line and Python overrides go on top."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np

from netc.compiler.backend import DEVICES
from netc.compiler.trainblock import read_train_block
from netc.compiler.values import ModelIR, Ref, StaticCall, static_value
from netc.dsl import ast as A
from netc.dsl.ast import NO_SPAN
from netc.dsl import NetcError
from netc.dsl.diagnostics import Collector, Diagnostic, did_you_mean

from . import data as D
from . import metrics as M
from . import schedules as S


@dataclass
class EarlyStop:
    monitor: str = "val.loss"        # split.metric
    patience: int = 10
    min_delta: float = 0.0
    mode: str = "min"                # min | max, from the metric


def monitor_key(name: str) -> str:
    """What early stopping watches, as "split.metric": the Keras spellings "val_loss" and
    "loss" (training) are "val.loss" and "train.loss"."""
    if "." in name:
        return name
    if name.startswith("val_"):
        return "val." + name[len("val_"):]
    return "train." + (name[len("train_"):] if name.startswith("train_") else name)


@dataclass
class TrainSettings:
    data: Any = None                 # a StaticCall, a Ref, or None (data given from Python / CLI)
    split: Tuple[float, ...] = (1.0,)
    batch: Optional[int] = 32        # None: full batch
    epochs: int = 10
    shuffle: bool = True
    seed: int = 0
    metrics: List[str] = field(default_factory=list)
    stop: Optional[EarlyStop] = None
    lr_scale: Optional[float] = None  # reference batch size: lr * batch / lr_scale
    schedule: Tuple[str, dict] = ("constant", {})
    standardize: bool = False        # fit mean/std on the train split, stored with the model
    device: str = "cpu"              # cpu | cuda | auto: the train block's choice
    base_dir: str = "."

    def to_json(self) -> dict:
        """The resolved settings as JSON (what a run directory's settings.json and a
        checkpoint's model.json hold)."""
        return {
            "data": data_spec(self.data, self.base_dir) if self.data is not None else None,
            "split": list(self.split), "batch": "full" if self.batch is None else self.batch,
            "epochs": self.epochs, "shuffle": self.shuffle, "seed": self.seed, "metrics": list(self.metrics),
            "stop": None if self.stop is None else {"monitor": self.stop.monitor, "patience": self.stop.patience,
                                                    "min_delta": self.stop.min_delta, "mode": self.stop.mode},
            "lr_scale": self.lr_scale, "schedule": [self.schedule[0], self.schedule[1]],
            "standardize": self.standardize, "base_dir": self.base_dir,
        }

    def apply_json(self, doc: Optional[dict]) -> None:
        """The settings a checkpoint was trained with (its `to_json`, command-line overrides
        included) on top of those of its source: seed, epochs, shuffle, batch, split,
        standardize and data."""
        if not doc:
            return
        self.seed, self.epochs = doc.get("seed", self.seed), doc.get("epochs", self.epochs)
        self.shuffle = doc.get("shuffle", self.shuffle)
        self.batch = None if doc.get("batch") == "full" else doc.get("batch", self.batch)
        self.split = tuple(doc.get("split", self.split))
        self.standardize = doc.get("standardize", self.standardize)
        if doc.get("data") is not None:
            self.data = doc["data"]

    @staticmethod
    def check_overrides(ov: dict) -> None:
        """Raise NetcError for a command line's overrides that make no sense (before compiling)."""
        # the bounds of the train block's `epochs` and `seed` (resolve)
        for key in ("epochs", "seed"):
            v = ov.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise NetcError.single(f"--{key} must be >= 0, got {v}", hint=f"a whole number, as `{key}` in a train block")
        b = ov.get("batch")
        if b is not None and b != "full":
            try:
                ok = int(b) >= 1
            except ValueError:
                ok = False
            if not ok:
                raise NetcError.single(f"--batch is a number >= 1 or 'full', got '{b}'")

    def override(self, seed=None, epochs=None, batch=None, data=None) -> None:
        """The command line's overrides (None: keep the train block's): `batch` is a number or
        "full", `data` a data spec (see parse_data_arg). Raises NetcError for bad values."""
        self.check_overrides({"epochs": epochs, "seed": seed, "batch": batch})
        if seed is not None:
            self.seed = int(seed)
        if epochs is not None:
            self.epochs = int(epochs)
        if batch is not None:
            self.batch = None if batch == "full" else int(batch)
        if data is not None:
            self.data = data


def resolve(model: ModelIR, file: str, source: str) -> TrainSettings:
    """Settings from a model's train block; raises NetcError listing every bad value."""
    return _resolve(model.train, model.schedule, model, file, source)


def train_block_errors(program: A.Program) -> List[Diagnostic]:
    """The train block's and schedule's bad values, found without the model (for a file whose
    model has errors too, so that `check` reports every problem at once): what `resolve` would
    say except what depends on the model (metrics that fit its target, early stopping's
    monitor). The block's unknown or repeated keys are the front end's to report."""
    t = read_train_block(program.of_type(A.TrainBlock), Collector(program.source))
    schedules = program.of_type(A.ScheduleDecl)
    schedule = static_value(schedules[0].call) if schedules else None
    try:
        _resolve(t, schedule, None, program.file, program.source)
    except NetcError as e:
        return list(e.diagnostics)
    return []


def _resolve(t: dict, schedule, model: Optional[ModelIR], file: str, source: str) -> TrainSettings:
    diag = Collector(source)
    s = TrainSettings(base_dir=os.path.dirname(os.path.abspath(file)) if os.path.exists(file) else os.getcwd())
    kind = model.target.kind if model is not None and model.target else None
    s.metrics = default_metrics(model) if model is not None else []

    def num(key, lo, integer=False):
        v, span = t[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= lo and (not integer or v == int(v))
        if not ok:
            diag.error(span, f"'{key}' must be {'a whole number' if integer else 'a number'} >= {lo}, got {show(v)}")
            return None
        return int(v) if integer else float(v)

    if "data" in t:
        v, span = t["data"]
        if not isinstance(v, (StaticCall, Ref)) or (isinstance(v, Ref) and v.name not in SOURCES) or \
                (isinstance(v, StaticCall) and v.name not in SOURCES):
            name = v.name if isinstance(v, (StaticCall, Ref)) else show(v)
            diag.error(span, f"unknown data source '{name}'",
                       did_you_mean(str(name), SOURCES) or "one of: " + ", ".join(SOURCES))
        elif isinstance(v, StaticCall) and v.name in ("csv", "npz", "npy", "idx") and \
                not all(isinstance(a, str) for a in v.args):
            diag.error(v.span, f"{v.name} takes file names in double quotes",
                       'for example csv("data.csv", label="class")')
        else:
            s.data = v
    if "split" in t:
        v, span = t["split"]
        if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0 for f in v) \
                or not 1 <= len(v) <= 3 or abs(sum(v) - 1) > 1e-6:
            diag.error(span, "split is 1 to 3 fractions (train, val, test) that sum to 1",
                       "for example `split = 0.8, 0.1, 0.1`")
        else:
            s.split = tuple(float(f) for f in v)
    if "batch" in t:
        v, span = t["batch"]
        if isinstance(v, Ref) and v.name == "full":
            s.batch = None
        elif isinstance(v, Ref):
            diag.error(span, f"'batch' is a whole number >= 1 or full, got {v.name}",
                       did_you_mean(v.name, ["full"]) or "for batch gradient descent write `batch = full`")
        else:
            s.batch = num("batch", 1, integer=True)
    if "epochs" in t:
        s.epochs = num("epochs", 0, integer=True)
    if "seed" in t:
        s.seed = num("seed", 0, integer=True)
    if "shuffle" in t:
        v, span = t["shuffle"]
        if not isinstance(v, bool):
            diag.error(span, "shuffle is true or false")
        s.shuffle = bool(v)
    if "lr_scale" in t:
        s.lr_scale = num("lr_scale", 1)
    if "metrics" in t:
        v, span = t["metrics"]
        names = [m.name if isinstance(m, Ref) else m for m in v]
        bad = [m for m in names if m not in M.METRICS]
        if bad:
            diag.error(span, f"unknown metric '{bad[0]}'",
                       did_you_mean(str(bad[0]), M.METRICS) or "one of: " + ", ".join(M.METRICS))
        elif kind:
            wrong = [m for m in names if not metric_fits(m, model)]
            if wrong:
                diag.error(span, f"metric '{wrong[0]}' does not fit a {kind} target")
            s.metrics = list(dict.fromkeys(names))
    if "stop" in t and model is not None:
        v, span = t["stop"]
        s.stop = early_stop(v, span, model, diag)
    if "standardize" in t:
        v, span = t["standardize"]
        if not isinstance(v, bool):
            diag.error(span, f"standardize is true or false, got {show(v)}")
        else:
            s.standardize = v
    if "device" in t:            # frontend.lower chose the backend from it; checked here too
        v, span = t["device"]
        name = getattr(v, "name", v)
        if name not in DEVICES:
            diag.error(span, f"unknown device '{show(v)}'", "one of: " + ", ".join(DEVICES))
        else:
            s.device = name
    if schedule is not None:
        s.schedule = schedule_of(schedule, diag)
    diag.raise_if_errors()
    return s


def missing_output(model: ModelIR) -> Optional[Diagnostic]:
    """The error of a model trained or evaluated on labelled data without an output (what
    `predict` returns, what the metrics are computed from), or None. Without an `output`
    statement the output is the prediction given to the first loss function, or for a loss
    written by hand (`loss -sum(onehot(y) * log(p))`) the last named value it uses that predict
    can compute (`p`); a loss with neither (`loss -sum(onehot(y) * log_softmax(dense(x, 3)))`)
    leaves the file to say which value it is. Compiling such a model is fine; `netc check`
    warns, `netc train` and `netc eval` refuse."""
    if model.output is not None or model.target is None or not model.losses:
        return None
    return Diagnostic(model.losses[0].span, "the model has no output: this loss is written by hand and names no "
                      "value that predict can compute, so netc cannot tell what the model predicts (what predict "
                      "returns and the metrics are computed from)",
                      "name the prediction and add `output NAME`, e.g. `p = softmax(dense(h, 3))` and `output p`")


def show(v) -> str:
    if v is None:                    # static_value of an expression that is not a constant
        return "an expression that is not a constant"
    return v.name if isinstance(v, (Ref, StaticCall)) else repr(v)


def default_metrics(model: ModelIR) -> List[str]:
    if model.target is None:
        return []
    if model.target.kind == "real" and "binary_cross_entropy" in model.loss_kinds \
            and int(np.prod(model.target.shape)) == 1:       # one 0/1 output: a binary classifier
        return ["accuracy"]
    return M.default_metrics(model.target.kind)


def metric_fits(name: str, model: ModelIR) -> bool:
    if model.target.kind == "class":
        return M.METRICS[name].on == "labels"
    return True


def early_stop(v, span, model: ModelIR, diag: Collector) -> Optional[EarlyStop]:
    if not isinstance(v, StaticCall) or v.name != "early":
        diag.error(span, "stop takes early(val.METRIC, patience=N, min_delta=d)")
        return None
    kw = v.kw()
    for k in kw:
        if k not in ("patience", "min_delta", "monitor"):
            diag.error(v.span_of(k), f"unknown argument '{k}' of early",
                       did_you_mean(k, ["patience", "min_delta", "monitor"]) or "allowed: patience, min_delta")
    mon = v.args[0] if v.args else kw.get("monitor", Ref("val.loss"))
    mon = monitor_key(mon.name if isinstance(mon, Ref) else str(mon))
    split, _, metric = mon.partition(".")
    losses = {"loss"} | {l.name for l in model.losses}
    allowed = sorted(losses | set(M.METRICS))
    if split not in ("val", "train") or metric not in allowed:
        diag.error(span, f"early stopping cannot watch '{mon}'",
                   did_you_mean(mon, [f"val.{m}" for m in allowed]) or "watch val.loss or val.METRIC, e.g. val.accuracy")
        return None
    mode = "min" if metric in losses else ("max" if M.METRICS[metric].greater_is_better else "min")
    patience = kw.get("patience", 10)
    min_delta = kw.get("min_delta", 0.0)
    if isinstance(patience, bool) or not isinstance(patience, (int, float)) or patience < 0 \
            or patience != int(patience):
        diag.error(v.span_of("patience"), f"patience must be a whole number >= 0, got {show(patience)}")
        return None
    if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or min_delta < 0:
        diag.error(v.span_of("min_delta"), f"min_delta must be a number >= 0, got {show(min_delta)}")
        return None
    return EarlyStop(mon, int(patience), float(min_delta), mode)


def schedule_of(call, diag: Collector):
    if isinstance(call, Ref):
        call = StaticCall(call.name, (), (), NO_SPAN)
    if call.name not in S.SCHEDULES:
        diag.error(call.span, f"unknown schedule '{call.name}'",
                   did_you_mean(call.name, S.SCHEDULES) or "one of: " + ", ".join(S.SCHEDULES))
        return ("constant", {})
    allowed = list(S.SCHEDULE_ARGS[call.name])
    kwargs = {}
    errors = len(diag.errors)
    if len(call.args) > len(allowed):
        diag.error(call.span, f"schedule {call.name} takes {len(allowed)} arguments ({', '.join(allowed)}), "
                   f"got {len(call.args)}")
    for k, v in zip(allowed, call.args):
        kwargs[k] = v
    for k, v in call.kwargs:
        if k not in allowed:
            diag.error(call.span_of(k), f"unknown argument '{k}' of schedule {call.name}",
                       did_you_mean(k, allowed) or "allowed: " + ", ".join(allowed))
        kwargs[k] = v
    if len(diag.errors) > errors:       # make_schedule would only repeat what was said
        return ("constant", {})
    if "then" in kwargs:
        inner = kwargs["then"]
        if isinstance(inner, (StaticCall, Ref)):
            kwargs["then"] = list(schedule_of(inner if isinstance(inner, StaticCall) else
                                              StaticCall(inner.name, (), (), call.span), diag))
    try:        # check values now (a throwaway instance) so mistakes are located
        S.make_schedule(call.name, 0.1, 1000, **kwargs)
    except ValueError as e:
        diag.error(call.span, str(e))
    return (call.name, kwargs)


SOURCES = ["linear", "blobs", "xor", "moons", "circles", "spiral", "digits", "mnist", "csv", "npz", "npy", "idx"]


def load(source, base_dir: str) -> D.Dataset:
    """Read the data a train block names (raises DataError)."""
    name = source.name
    if name == "digits":
        return D.load_digits()
    if name == "mnist":
        return D.load_mnist()
    args = list(source.args) if isinstance(source, StaticCall) else []
    kw = source.kw() if isinstance(source, StaticCall) else {}
    if name in D.GENERATORS:
        if args:
            raise D.DataError(f"{name}: give its arguments by name, e.g. {name}(n=500, seed=0)")
        return D.generate(name, **kw)
    path = lambda p: p if os.path.isabs(p) else os.path.join(base_dir, p)
    if name == "csv":
        if not args:
            raise D.DataError('csv: give the file, e.g. csv("data.csv", label="class")')
        return D.load_csv(path(args[0]), label=kw.get("label"))
    if name in ("npz", "npy"):
        return D.load_npz(path(args[0]))
    if name == "idx":
        if len(args) != 2:
            raise D.DataError('idx: give the images and labels files, e.g. idx("images.gz", "labels.gz")')
        return D.load_idx(path(args[0]), path(args[1]))
    raise D.DataError(f"unknown data source '{name}'")


# ------------------------------------------------------------------ data specs
# A data source as plain JSON ({"source": name, "args": [...], "kwargs": {...}}, file paths made
# absolute) so that a run directory or a checkpoint can reload exactly the data it trained on.
FILE_SOURCES = ("csv", "npz", "npy", "idx")


def data_spec(source, base_dir: str) -> dict:
    """The JSON form of a train block's `data` value (a StaticCall or a Ref; a spec is kept)."""
    if isinstance(source, dict):
        return source
    args = list(source.args) if isinstance(source, StaticCall) else []
    kw = source.kw() if isinstance(source, StaticCall) else {}
    if source.name in FILE_SOURCES:
        args = [os.path.normpath(os.path.join(base_dir, a)) if isinstance(a, str) else a for a in args]
    plain = lambda v: v.name if isinstance(v, (Ref, StaticCall)) else v
    return {"source": source.name, "args": [plain(a) for a in args],
            "kwargs": {k: plain(v) for k, v in kw.items()}}


def spec_text(spec: dict) -> str:
    """`moons(n=2000, seed=0)`, `csv("/abs/data.csv", label="y")`, `digits`."""
    parts = [repr(a) if not isinstance(a, str) else f'"{a}"' for a in spec["args"]]
    parts += [f"{k}=" + (f'"{v}"' if isinstance(v, str) else repr(v)) for k, v in spec["kwargs"].items()]
    return spec["source"] + (f"({', '.join(parts)})" if parts or spec["source"] not in ("digits", "mnist") else "")


def load_spec(spec: dict) -> D.Dataset:
    """Load the data a spec names (raises DataError)."""
    call = StaticCall(spec["source"], tuple(spec["args"]), tuple(spec["kwargs"].items()), NO_SPAN)
    return load(call if spec["args"] or spec["kwargs"] else Ref(spec["source"]), os.getcwd())


def parse_data_arg(text: str, label=None) -> dict:
    """The spec of a command line's `--data`: a file (.csv, .npz, .npy; `--label` names a CSV's
    label column), a built-in set or generator (`digits`, `moons`), or a source written as in
    a train block (`moons(n=500, seed=1)`, `idx("images.gz", "labels.gz")`)."""
    text = text.strip()
    ext = os.path.splitext(text)[1].lower()
    label = label_arg(label) if isinstance(label, str) else label
    if ext in (".csv", ".txt", ".tsv"):
        return {"source": "csv", "args": [os.path.abspath(text)], "kwargs": {} if label is None else {"label": label}}
    if label is not None and ext not in (".csv", ".txt", ".tsv") and not (ext == "" and text.startswith("csv(")):
        raise D.DataError(f"--label {label}: names the label column of a CSV file, but --data {text} is not one "
                          f"(its labels are its own)")
    if ext in (".npz", ".npy"):
        return {"source": "npz", "args": [os.path.abspath(text)], "kwargs": {}}
    if os.path.exists(text):
        raise D.DataError(f"{text}: unknown data file type '{ext}'; give a .csv, .npz or .npy file, "
                          f'or idx("images", "labels")')
    v = data_call(text)
    if v.name not in SOURCES:
        hint = did_you_mean(str(v.name), SOURCES)
        raise D.DataError(f"--data: no file or data source '{v.name}'" + (f" ({hint})" if hint else "")
                          + f"; data sources: {', '.join(SOURCES)}")
    spec = data_spec(v, os.getcwd())
    if label is not None and spec["source"] == "csv":
        spec["kwargs"]["label"] = label
    return spec


# A data source as a train block writes it: NAME, or NAME(value, ..., key=value, ...) whose
# values are numbers, "strings", true/false or names.
_TOKEN = re.compile(r'\s*(?:(?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<str>"[^"\n]*")'
                    r'|(?P<name>[A-Za-z_][A-Za-z_0-9.]*)|(?P<punct>[(),=]))')


def data_call(text: str):
    """A data source written as in a train block (`moons(n=500, seed=1)`, `digits`) as the
    value the train block's `data = ...` has: a StaticCall, or a Ref for a bare name."""
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise NetcError.single(f"--data: cannot read '{text}' as a data source (at '{text[pos:].strip()}')",
                                   hint='for example moons(n=500, seed=1) or idx("images.gz", "labels.gz")')
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    value = {"true": True, "false": False}

    def literal(kind, word):
        if kind == "num":
            return float(word) if any(c in word for c in ".eE") else int(word)
        if kind == "str":
            return word[1:-1]
        return value[word] if word in value else Ref(word)

    def bad(why):
        return NetcError.single(f"--data: cannot read '{text}' as a data source ({why})",
                                hint='for example moons(n=500, seed=1) or idx("images.gz", "labels.gz")')

    if not tokens or tokens[0][0] != "name":
        raise bad("it must start with the name of a data source")
    name = tokens[0][1]
    if len(tokens) == 1:
        return Ref(name)
    if tokens[1] != ("punct", "("):
        raise NetcError.single(f"--data: give one data source, got '{text}'")
    if tokens[-1] != ("punct", ")"):
        raise bad("a '(' without its ')'")
    args, kwargs, inner = [], [], tokens[2:-1]
    items, cur = [], []
    for t in inner:
        if t == ("punct", ","):
            items.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur or items:
        items.append(cur)
    for item in items:
        if len(item) == 1 and item[0][0] != "punct":
            if kwargs:
                raise bad("a value without a name after key=value")
            args.append(literal(*item[0]))
        elif len(item) == 3 and item[0][0] == "name" and item[1] == ("punct", "=") and item[2][0] != "punct":
            kwargs.append((item[0][1], literal(*item[2])))
        else:
            raise bad("each argument is a value or key=value")
    return StaticCall(name, tuple(args), tuple(kwargs), NO_SPAN, tuple(NO_SPAN for _ in kwargs))


def label_arg(text: Optional[str]):
    """`--label`: a column name, or a 0-based column index when it is a whole number."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def load_data(s: TrainSettings) -> D.Dataset:
    """The data of the settings: a train block's source or a spec from the command line."""
    return load_spec(s.data) if isinstance(s.data, dict) else load(s.data, s.base_dir)
