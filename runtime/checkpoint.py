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
import os
import shutil
from typing import Dict, Optional, Tuple

import numpy as np

from netc.dsl import UserError

FORMAT = 2


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


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        arrays = {f"param/{k}": v for k, v in model.params.items()}
        arrays.update({f"state/{k}": v for k, v in model.state.items()})
        if model.scaler is not None:
            arrays["scaler/mean"], arrays["scaler/std"] = model.scaler
        if best_params is not None:
            arrays.update({f"best/{k}": v for k, v in best_params.items()})
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


def _complete(path: str) -> bool:
    try:
        _read(path)
        return True
    except CheckpointError:
        return False


def recover(path: str) -> None:
    """Put back the newest complete checkpoint when a save was cut short between its renames."""
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


def _read(path: str) -> Tuple[dict, Dict[str, np.ndarray]]:
    try:
        with open(os.path.join(path, "model.json")) as f:
            meta = json.load(f)
        with np.load(os.path.join(path, "weights.npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, json.JSONDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise CheckpointError(f"{path}: not a readable netc checkpoint ({reason})") from None
    if not isinstance(meta, dict) or "source" not in meta:
        raise CheckpointError(f"{path}: not a netc checkpoint (model.json has no source)")
    if meta.get("source_sha256") != source_hash(meta.get("source", "")):
        raise CheckpointError(f"{path}: the checkpoint's source does not match its hash")
    return meta, arrays


def read(path: str) -> Tuple[dict, Dict[str, np.ndarray]]:
    """(metadata, arrays) of a checkpoint; raises CheckpointError for a missing or damaged one."""
    path = resolve(path)
    recover(path)
    return _read(path)


def resolve(path: str) -> str:
    """A checkpoint directory, or the checkpoint a run directory stands for: its `best` when
    the run used early stopping (those are the weights it ended with), else its `last`."""
    if os.path.exists(os.path.join(path, "model.json")) or os.path.isdir(_sibling(path, "new")) \
            or os.path.isdir(_sibling(path, "old")):
        return path
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "settings.json")):
        try:
            with open(os.path.join(path, "settings.json")) as f:
                stop = json.load(f).get("settings", {}).get("stop")
        except (OSError, ValueError):
            stop = None
        for name in (("best", "last") if stop else ("last", "best")):
            p = os.path.join(path, name)
            if os.path.isdir(p) or os.path.isdir(_sibling(p, "new")) or os.path.isdir(_sibling(p, "old")):
                return p
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    return path
