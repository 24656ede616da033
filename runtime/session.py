"""A training run from a `.net` file, as `netc train` does it: compile, load and split the
data, standardize, train with a run directory, and resume such a run exactly. Also the data
preparation `netc eval` and `netc plot` share."""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from netc.dsl import NetcError

from . import checkpoint
from . import data as D
from . import loop
from .build import build, read_source
from .loop import History, LoopState
from .model import Model
from .overrides import apply_sets
from .rundir import RunDir, source_changes
from .settings import TrainSettings, missing_output


def load_dataset(model: Model, spec: Optional[dict] = None) -> D.Dataset:
    """The data of `spec` (default: the model's train block), checked against the model
    (Model.load_dataset); for netc train and eval also refused for a model whose output
    cannot be inferred, and with values beyond the model's dtype named by their row."""
    if model.ir.target is not None:
        missing = missing_output(model.ir)
        if missing is not None:
            raise NetcError([missing], model.source)
    ds = model.load_dataset(spec)
    _fits_dtype(ds, model.dtype, model.ir.target.kind)
    return ds


def _fits_dtype(ds: D.Dataset, dtype, kind: str) -> None:
    """Refuse values finite in float64 but not in the model's dtype here, before the split, so
    that the message names the sample's row in the file (Model.prepare checks a split again)."""
    big = float(np.finfo(dtype).max)
    for values, what in ((ds.X, "feature"), (ds.y if kind == "real" else None, "target")):
        if values is None or not (np.abs(values) > big).any():
            continue
        row, *col = D._first_bad(np.abs(values) > big)
        raise D.DataError(f"{ds.name or 'data'}: {D.where(ds, row)}, {what} {col[0] if len(col) == 1 else col}: "
                          f"{values[(row, *col)]:g} is beyond the range of {np.dtype(dtype).name} (about ±{big:.3g})")


def data_hash(ds: D.Dataset) -> str:
    h = hashlib.sha256()
    for a in (ds.X, ds.y):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def split(model: Model, ds: D.Dataset):
    """(train, val, test) as the settings cut them (stratified for class targets), unprepared."""
    return model.split(ds)


def prepare_splits(model: Model, parts):
    return tuple(model.prepare(d.X, d.y, d.name) for d in parts)


@dataclass
class Job:
    model: Model
    train: D.Dataset
    val: D.Dataset
    test: D.Dataset
    run: Optional[RunDir]
    resume: Optional[loop.Resume] = None    # (LoopState, best params, records) for loop.fit
    compile_s: float = 0.0
    notes: list = field(default_factory=list)

    def fit(self, progress) -> History:
        return loop.fit(self.model, self.train, self.val if len(self.val.X) else None, run=self.run,
                        resume=self.resume, progress=progress)

    def results(self) -> dict:
        m = self.model
        res = {"model": m.name, "epochs": m.epoch}
        for name, d in (("train", self.train), ("val", self.val), ("test", self.test)):
            if len(d.X):
                res[name] = m.metrics_of(d)
        return res


def new_job(file: str, *, dtype: Optional[str] = None, disabled=(), out: Optional[str] = None,
            overrides: Optional[dict] = None, run_dir: bool = True, device: Optional[str] = None,
            sets=()) -> Job:
    """Compile `file` (with the --set items `sets` written in), load and split its data (or
    overrides["data"]), fit the scaler on the training split if asked, and create the run
    directory."""
    ov = {k: v for k, v in (overrides or {}).items() if v is not None}
    TrainSettings.check_overrides(ov)
    t0 = time.perf_counter()
    source, shown = read_source(file)
    model = build(source, shown, dtype=dtype or "float32", device=device, disabled=disabled, seed=ov.get("seed"),
                  sets=tuple(sets))
    compile_s = time.perf_counter() - t0
    model.settings.override(**ov)
    ds, (train, val, test) = _fresh_data(model)
    rd = None
    if run_dir:
        doc = {"netc": checkpoint.netc_version(), "model": model.name, "file": os.path.abspath(file),
               "source_file": f"{model.name}.net", "dtype": model.artifact.dtype, "no_pass": list(disabled),
               "overrides": ov, "set": list(sets), "settings": model.settings.to_json(), "classes": model.classes,
               "data": {"sha256": data_hash(ds), "samples": len(ds.X), "train": len(train.X),
                        "val": len(val.X), "test": len(test.X)},
               "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        rd = RunDir.create(out, model, doc)
    return Job(model, train, val, test, rd, compile_s=compile_s, notes=setting_notes(model, ov, ds, train))


def setting_notes(model: Model, ov: dict, ds: D.Dataset, train: D.Dataset) -> list:
    """What a new run should know about the settings it did not choose. Like Keras' `fit`,
    netc does not guess epochs, a split or scaling; a model with no `epochs` anywhere (a bare
    model trained on a CSV file, say) hears what the defaults are. A 2-way split's second part
    is the validation split: said once, since a reader may take it for a test split."""
    set_here = model.ir.train
    notes = []
    if "epochs" not in set_here and ov.get("epochs") is None:
        unset = {"epochs": f"{model.settings.epochs} epochs"}
        if "split" not in set_here:
            unset["split"] = f"all {len(ds.X)} samples for training, none held out to validate"
        X = np.asarray(train.X, np.float64).reshape(len(train.X), -1)
        if not model.settings.standardize and len(X) > 1:
            mean, std = np.abs(X.mean(0)).max(), X.std(0).max()
            if mean > 1 or std > 2:
                unset["standardize"] = (f"the features as they are (means up to {mean:.3g}, standard deviations "
                                        f"up to {std:.3g})")
        if len(unset) > 1:
            notes.append(f"hint: nothing sets {', '.join(unset)}, so this run takes the defaults: "
                         + "; ".join(unset.values()) + ". Like Keras, netc does not guess them; for a real run give "
                         "e.g. --set train.epochs=200 --set train.split=0.8,0.2 --set train.standardize=true "
                         "(or write them in the train block)")
    if len(model.settings.split) == 2:
        notes.append(f"split = {', '.join(f'{f:g}' for f in model.settings.split)}: the second part is the "
                     f"validation split ('val'); for a test split give three fractions, e.g. split = 0.8, 0.1, 0.1")
    return notes


def _fresh_data(model: Model):
    """The data of a new run: loaded, class names fixed, split, the scaler fitted, prepared."""
    ds = load_dataset(model)
    model.classes = ds.classes
    parts = split(model, ds)
    if model.settings.standardize:
        model.fit_scaler(parts[0].X)
    return ds, prepare_splits(model, parts)


def _same_source(file: str, source: str, path: str, doc: dict) -> None:
    """Refuse to resume with a `file` whose model differs from the run's `source`."""
    try:
        with open(file, encoding="utf-8") as f:
            current = f.read()
    except OSError as e:
        raise NetcError.single(f"cannot read {file}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise NetcError.single(f"cannot read {file}: not UTF-8 text") from None
    if doc.get("set"):                  # the run's source holds its --set values
        current = apply_sets(current, file, doc["set"])[0]
    changes = source_changes(source, current)
    if changes:
        raise NetcError.single(
            f"{file} has changed since the run in {path} started, so resuming would not continue "
            f"the same training:\n" + "\n".join(changes),
            hint=f"put the file back as it was (the run's copy is {os.path.join(path, doc.get('source_file', ''))}), "
                 f"or start a new run without --resume")


def _restart(rd: RunDir, doc: dict, file: Optional[str], path: str, write: bool = True) -> Job:
    """A run killed before its first checkpoint was complete: nothing was trained, so the run
    starts again in its directory from its own copy of the source and its settings (the same
    seed gives the same initial params)."""
    try:
        with open(os.path.join(rd.path, os.path.basename(doc.get("source_file") or "")), encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError):
        raise checkpoint.CheckpointError(f"{path}: the run has no checkpoint and no readable copy of its "
                                         f"source; start a new run") from None
    if file is not None:
        _same_source(file, source, path, doc)
    ov = doc.get("overrides", {})
    TrainSettings.check_overrides(ov)
    shown = file or doc.get("file") or "<string>"
    t0 = time.perf_counter()
    model = build(source, shown, dtype=doc.get("dtype", "float32"), disabled=tuple(doc.get("no_pass", ())),
                  seed=ov.get("seed"))
    compile_s = time.perf_counter() - t0
    model.settings.override(**ov)
    ds, (train, val, test) = _fresh_data(model)
    if data_hash(ds) != doc.get("data", {}).get("sha256"):
        raise D.DataError(f"{ds.name}: the data differs from the data the run in {path} started with; "
                          f"resuming needs the same data")
    if write:
        rd.truncate(0)
    return Job(model, train, val, test, rd, None, compile_s,
               [f"the run in {path} was stopped before its first checkpoint was complete; starting it again"])


RESUME_FIXED = ("seed", "batch", "data", "dtype", "no_pass", "out", "set")


def resume_job(path: str, file: Optional[str] = None, *, epochs: Optional[int] = None,
               given: Optional[dict] = None, write: bool = True) -> Job:
    """Continue the run in `path` from its `last` checkpoint: the same source, settings, data,
    params, optimizer and schedule state, shuffle generator and early-stopping state, so that
    it ends exactly where the uninterrupted run would. `file`, when given, must hold the same
    model (comments and blank lines aside). `epochs` may extend a run. `write` false (a
    data-parallel run's ranks but 0): read the run directory, change nothing in it."""
    rd = RunDir(path)
    for k, v in (given or {}).items():
        if v not in (None, False, [], ()):
            raise NetcError.single(f"--{k.replace('_', '-')} cannot be given with --resume: the run keeps "
                                   f"its settings", hint="start a new run to change them")
    doc = rd.read_settings()
    if not rd.has_checkpoint() and not rd.records():
        job = _restart(rd, doc, file, path, write)
        if epochs is not None:
            job.model.settings.epochs = epochs
        return job
    meta, arrays = checkpoint.read(rd.last)
    if meta.get("training") is None or "done" not in meta["training"]:
        raise NetcError.single(f"{rd.last}: this checkpoint holds no training state to resume from")
    source = meta["source"]
    shown = file or doc.get("file") or meta.get("file")
    if file is not None:
        _same_source(file, source, path, doc)
    t0 = time.perf_counter()
    model = build(source, shown, dtype=meta["dtype"], disabled=doc.get("no_pass", ()))
    compile_s = time.perf_counter() - t0
    model.settings.override(**doc.get("overrides", {}))
    model.file = meta["file"]               # as the run's first checkpoint recorded it
    model.classes = meta.get("classes")
    best = model.load_arrays(arrays, rd.last, meta["standardized"])
    model.step, model.epoch = int(meta["step"]), int(meta["epoch"])
    st = LoopState.from_json(meta["training"])
    ds = load_dataset(model)
    if data_hash(ds) != doc.get("data", {}).get("sha256"):
        raise D.DataError(f"{ds.name}: the data differs from the data the run in {path} started with; "
                          f"resuming needs the same data")
    train, val, test = prepare_splits(model, split(model, ds))
    notes = []
    if epochs is not None and epochs != st.epochs:
        if epochs < st.done:
            raise NetcError.single(f"--epochs {epochs}: the run in {path} has already done {st.done} epochs")
        if st.stopped_epoch is None:
            st.epochs, st.finished = epochs, st.done >= epochs
            model.settings.epochs = epochs
            notes.append(f"the run now has {epochs} epochs")
    records = rd.truncate(st.done) if write else rd.records(st.done)
    if st.finished:
        why = f"early stopping ended it at epoch {st.stopped_epoch}" if st.stopped_epoch else \
            f"it ran all {st.epochs} epochs"
        notes.append(f"the run in {path} has finished ({why}); nothing to resume")
    else:
        notes.append(f"resuming the run in {path} at epoch {st.done + 1} of {st.epochs}")
    return Job(model, train, val, test, rd, (st, best, records), compile_s, notes)
