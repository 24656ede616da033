"""The `train` block and `schedule` statement, resolved into plain settings, with located
diagnostics for values that make no sense. Command-line and Python overrides go on top."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, List, Optional, Tuple

from netc.compiler.elaborate import ModelIR, Ref, StaticCall
from netc.dsl.ast import NO_SPAN
from netc.dsl.diagnostics import Collector, did_you_mean

from . import data as D
from . import metrics as M
from . import schedules as S


@dataclass
class EarlyStop:
    monitor: str = "val.loss"        # split.metric
    patience: int = 10
    min_delta: float = 0.0
    mode: str = "min"                # min | max, from the metric


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
    base_dir: str = "."


def resolve(model: ModelIR, file: str, source: str) -> TrainSettings:
    """Settings from a model's train block; raises NetcError listing every bad value."""
    diag = Collector(source)
    s = TrainSettings(base_dir=os.path.dirname(os.path.abspath(file)) if os.path.exists(file) else os.getcwd())
    t = model.train
    kind = model.target.kind if model.target else None
    s.metrics = default_metrics(model)

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
    if "stop" in t:
        v, span = t["stop"]
        s.stop = early_stop(v, span, model, diag)
    for key in ("standardize", "device"):
        if key in t:
            diag.error(t[key][1], f"train setting '{key}' is not supported yet")
    if model.schedule is not None:
        s.schedule = schedule_of(model.schedule, diag)
    diag.raise_if_errors()
    return s


def show(v) -> str:
    return v.name if isinstance(v, (Ref, StaticCall)) else repr(v)


def default_metrics(model: ModelIR) -> List[str]:
    if model.target is None:
        return []
    if model.target.kind == "real" and "binary_cross_entropy" in model.loss_kinds:
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
            diag.error(span, f"unknown argument '{k}' of early",
                       did_you_mean(k, ["patience", "min_delta", "monitor"]) or "allowed: patience, min_delta")
    mon = v.args[0] if v.args else kw.get("monitor", Ref("val.loss"))
    mon = mon.name if isinstance(mon, Ref) else str(mon)
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
    if not isinstance(patience, (int, float)) or patience < 0 or patience != int(patience):
        diag.error(span, "patience must be a whole number >= 0")
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
    if len(call.args) > len(allowed):
        diag.error(call.span, f"schedule {call.name} takes {len(allowed)} arguments ({', '.join(allowed)})")
    for k, v in zip(allowed, call.args):
        kwargs[k] = v
    for k, v in call.kwargs:
        if k not in allowed:
            diag.error(call.span, f"unknown argument '{k}' of schedule {call.name}",
                       did_you_mean(k, allowed) or "allowed: " + ", ".join(allowed))
        kwargs[k] = v
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


SOURCES = ["linear", "blobs", "xor", "moons", "circles", "spiral", "digits", "csv", "npz", "npy", "idx"]


def load(source, base_dir: str) -> D.Dataset:
    """Read the data a train block names (raises DataError)."""
    name = source.name
    if name == "digits":
        return D.load_digits()
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
