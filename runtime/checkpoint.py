"""Checkpoints: a directory holding `weights.npz` (never pickle) and `model.json`.

    weights.npz   param/NAME      the params
                  state/NAME      the optimizer's state (momentum buffers, moments, ...)
                  scaler/mean     the standardization fitted on the training split (if any)
                  scaler/std
                  best/NAME       early stopping's best params so far (training checkpoints only)
    model.json    format, netc version, model name, file, source and its sha256, dtype, step,
                  epoch, class names (string labels), the resolved train settings, and for a
                  checkpoint written during training the state of the training loop:
                  {"epochs", "batch", "done", "rng", "schedule", "best", "best_epoch", "wait",
                   "monitor", "finished", "stopped_epoch"}

A checkpoint may also be ONE `.npz` file (`Model.save("model.npz")`): the arrays above plus
`meta/model.json`, the metadata as UTF-8 bytes (a uint8 array), written atomically.

Written atomically: the new checkpoint is written (and fsynced) to `.NAME.new` beside it, the
old one renamed to `.NAME.old`, the new one renamed into place, the old one removed. A
process killed between the two renames leaves a complete `.NAME.new` (or `.NAME.old`), which
`recover` puts back in place, so a checkpoint path always yields the newest complete one.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
import os
import shutil
from typing import Dict, Optional, Tuple

import numpy as np

from netc.compiler.files import atomic_open, fsync_dir, read_arrays
from netc.dsl import UserError

FORMAT = 2
META = "meta/model.json"          # the metadata's member in a one-file checkpoint


class CheckpointError(UserError, ValueError):
    """A checkpoint or run directory that is missing, damaged, or does not fit the model."""


@functools.lru_cache(maxsize=None)
def netc_version() -> str:
    """The installed netc's version (what checkpoints and run directories record)."""
    return importlib.metadata.version("netc")


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def _sibling(path: str, kind: str) -> str:
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f".{name}.{kind}")


_fsync_dir = fsync_dir


def metadata(model, training: Optional[dict] = None) -> dict:
    src = model.source
    return {"format": FORMAT, "netc": netc_version(), "model": model.name, "file": model.file,
            "source": src, "source_sha256": source_hash(src), "dtype": model.artifact.dtype,
            "step": model.step, "epoch": model.epoch, "classes": model.classes,
            "standardized": model.scaler is not None, "settings": model.settings.to_json(),
            "training": training}


def save(model, path: str, training: Optional[dict] = None,
         best_params: Optional[Dict[str, np.ndarray]] = None, extra: Optional[dict] = None) -> None:
    """Write `model` (params, optimizer state, scaler, metadata) to the directory `path`."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    recover(path)                       # a previous save that was cut short
    new, old = _sibling(path, "new"), _sibling(path, "old")
    shutil.rmtree(new, ignore_errors=True)
    os.makedirs(new)
    try:
        arrays = _arrays(model, best_params)
        with open(os.path.join(new, "weights.npz"), "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        meta = metadata(model, training)
        meta.update(extra or {})
        with open(os.path.join(new, "model.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(new)
        if os.path.exists(path):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(new, path)
        _fsync_dir(parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if os.path.exists(path):
            shutil.rmtree(new, ignore_errors=True)
        raise


def _arrays(model, best_params=None) -> Dict[str, np.ndarray]:
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays.update({f"state/{k}": v for k, v in model.state.items()})
    if model.scaler is not None:
        arrays["scaler/mean"], arrays["scaler/std"] = model.scaler
    if best_params is not None:
        arrays.update({f"best/{k}": v for k, v in best_params.items()})
    return arrays


def save_file(model, path: str) -> None:
    """Write `model` as ONE .npz file at `path`: its arrays and `meta/model.json`."""
    arrays = _arrays(model)
    arrays[META] = np.frombuffer(json.dumps(metadata(model)).encode("utf-8"), np.uint8)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def _is_file(path: str) -> bool:
    return os.path.isfile(path) and str(path).endswith(".npz")


def _complete(path: str) -> bool:
    try:
        _read(path)
        return True
    except CheckpointError:
        return False


def exists(path: str) -> bool:
    """Whether `path` holds a complete checkpoint (after putting back a cut-short save's)."""
    recover(path)
    return _complete(path)


def recover(path: str) -> None:
    """Put back the newest complete checkpoint when a save was cut short between its renames."""
    if _is_file(path):
        return
    if os.path.exists(os.path.join(path, "model.json")):
        return
    for kind in ("new", "old"):
        cand = _sibling(path, kind)
        if os.path.isdir(cand) and _complete(cand):
            if os.path.exists(path):
                shutil.rmtree(path, ignore_errors=True)
            os.replace(cand, path)
            shutil.rmtree(_sibling(path, "old"), ignore_errors=True)
            return


def _read_file(path: str) -> Tuple[dict, Dict[str, np.ndarray]]:
    arrays = read_arrays(path, CheckpointError, f"{path}: not a readable netc checkpoint ({{reason}})")
    if not isinstance(arrays, dict) or META not in arrays:
        raise CheckpointError(f"{path}: not a netc checkpoint (a .npz file without {META}; "
                              f"Model.save('....npz') writes one)")
    try:
        meta = json.loads(arrays.pop(META).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: {META} is damaged ({e})") from None
    _check_source(meta, path)
    return meta, _float_arrays(arrays, path)


def _check_source(meta, path: str) -> None:
    if not isinstance(meta, dict) or not isinstance(meta.get("source"), str):
        raise CheckpointError(f"{path}: not a netc checkpoint (model.json has no source)")
    if meta.get("source_sha256") != source_hash(meta["source"]):
        raise CheckpointError(f"{path}: the checkpoint's source does not match its hash")
    check_meta(meta, path)


def _float_arrays(arrays, path: str) -> Dict[str, np.ndarray]:
    for k, v in arrays.items():
        if v.dtype.kind != "f":
            raise CheckpointError(f"{path}: array '{k}' has dtype {v.dtype}; a checkpoint holds float arrays")
    return arrays


def _read(path: str) -> Tuple[dict, Dict[str, np.ndarray]]:
    if _is_file(path):
        return _read_file(path)
    try:
        with open(os.path.join(path, "model.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError, RecursionError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise CheckpointError(f"{path}: not a readable netc checkpoint ({reason})") from None
    _check_source(meta, path)
    arrays = read_arrays(os.path.join(path, "weights.npz"), CheckpointError,
                         f"{path}: not a readable netc checkpoint (weights.npz: {{reason}})")
    if not isinstance(arrays, dict):
        raise CheckpointError(f"{path}: weights.npz is not a .npz archive")
    return meta, _float_arrays(arrays, path)


# ------------------------------------------------------------ the one schema of model.json
def _int(v, lo=0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _opt(test):
    return lambda v: v is None or test(v)


_META = {
    "format": lambda v: v == FORMAT,
    "model": lambda v: isinstance(v, str),
    "file": lambda v: isinstance(v, str),
    "dtype": lambda v: v in ("float32", "float64"),
    "step": _int, "epoch": _int,
    "classes": _opt(lambda v: isinstance(v, list) and len(v) >= 1 and all(isinstance(c, str) for c in v)),
    "standardized": lambda v: isinstance(v, bool),
    "settings": _opt(lambda v: isinstance(v, dict)),
    "training": _opt(lambda v: isinstance(v, dict)),
}
_SETTINGS = {
    "seed": _int, "epochs": _int, "shuffle": lambda v: isinstance(v, bool),
    "batch": lambda v: v == "full" or _int(v, 1),
    "split": lambda v: isinstance(v, list) and 1 <= len(v) <= 3 and all(_num(x) and 0 <= x <= 1 for x in v)
    and sum(v) <= 1 + 1e-9,
    "standardize": lambda v: isinstance(v, bool),
    "data": _opt(lambda v: isinstance(v, dict) and isinstance(v.get("source"), str)
                 and isinstance(v.get("args", []), list) and isinstance(v.get("kwargs", {}), dict)),
}
_TRAINING = {     # the training loop's state (runtime.loop.LoopState) in a `last` checkpoint
    "epochs": _int, "batch": _opt(lambda v: _int(v, 1)), "done": _int,
    "rng": lambda v: isinstance(v, dict), "schedule": lambda v: isinstance(v, dict),
    "monitor": lambda v: isinstance(v, str), "best": _opt(lambda v: _num(v) or v in ("inf", "-inf", "nan")),
    "best_epoch": _opt(_int), "wait": _int, "finished": lambda v: isinstance(v, bool),
    "stopped_epoch": _opt(_int),
}


def _check(doc: dict, schema: dict, where: str, required: bool) -> None:
    for key, ok in schema.items():
        if key not in doc:
            if required:
                raise CheckpointError(f"{where}: '{key}' is missing")
            continue
        if not ok(doc[key]):
            shown = json.dumps(doc[key])
            raise CheckpointError(f"{where}: '{key}' has an invalid value "
                                  f"{shown if len(shown) < 60 else shown[:57] + '...'}")


def check_meta(meta: dict, path: str) -> None:
    """model.json against the one schema of this format (types, ranges, the loop's state);
    raises CheckpointError naming the first field that does not fit."""
    where = f"{path}: model.json"
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{where}: format {json.dumps(meta.get('format'))} is not the format this netc "
                              f"reads ({FORMAT})", ) from None
    _check(meta, _META, where, True)
    if meta["settings"] is not None:
        _check(meta["settings"], _SETTINGS, f"{where} settings", False)
    tr = meta["training"]
    if tr is not None and "done" in tr:
        _check(tr, _TRAINING, f"{where} training", True)
        if tr["done"] > tr["epochs"] or tr["done"] != meta["epoch"]:
            raise CheckpointError(f"{where} training: 'done' ({tr['done']}) does not fit epochs {tr['epochs']} "
                                  f"and the checkpoint's epoch {meta['epoch']}")
        try:
            np.random.default_rng().bit_generator.state = tr["rng"]
        except (TypeError, ValueError, KeyError, OverflowError):
            raise CheckpointError(f"{where} training: 'rng' is not the shuffle generator's state") from None
        if isinstance(tr["best"], float) and math.isnan(tr["best"]):
            raise CheckpointError(f"{where} training: 'best' is NaN")


def read(path: str) -> Tuple[dict, Dict[str, np.ndarray]]:
    """(metadata, arrays) of a checkpoint; raises CheckpointError for a missing or damaged one."""
    path = resolve(path)
    recover(path)
    return _read(path)


def resolve(path: str) -> str:
    """A checkpoint directory, or the checkpoint a run directory stands for: its `best` when
    the run used early stopping (those are the weights it ended with), else its `last`."""
    if _is_file(path) or os.path.exists(os.path.join(path, "model.json")) \
            or os.path.isdir(_sibling(path, "new")) \
            or os.path.isdir(_sibling(path, "old")):
        return path
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "settings.json")):
        try:
            with open(os.path.join(path, "settings.json"), encoding="utf-8") as f:
                doc = json.load(f)
            stop = doc["settings"]["stop"]
        except (OSError, ValueError, RecursionError, KeyError, TypeError):
            stop = None
        for name in (("best", "last") if stop else ("last", "best")):
            p = os.path.join(path, name)
            if os.path.isdir(p) or os.path.isdir(_sibling(p, "new")) or os.path.isdir(_sibling(p, "old")):
                return p
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    return path
