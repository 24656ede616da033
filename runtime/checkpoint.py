"""Checkpoints: a directory holding `weights.npz` (params and optimizer state; never pickle)
and `model.json` (the model's source and its hash, dtype, step, epoch). Written atomically:
everything goes to a temporary directory that is renamed into place."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

FORMAT = 1


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def save(model, path: str, extra: dict | None = None) -> None:
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-ckpt-")
    try:
        arrays = {f"param/{k}": v for k, v in model._params.items()}
        arrays.update({f"state/{k}": v for k, v in model._state.items()})
        with open(os.path.join(tmp, "weights.npz"), "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        src = model.source
        meta = {"format": FORMAT, "model": model.name, "file": model.file, "source": src,
                "source_sha256": source_hash(src), "dtype": model.artifact.dtype, "step": model.step,
                "epoch": model.epoch}
        meta.update(extra or {})
        with open(os.path.join(tmp, "model.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=".old-ckpt-")
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read(path: str):
    """(metadata, arrays) of a checkpoint; raises ValueError for a damaged one."""
    try:
        with open(os.path.join(path, "model.json")) as f:
            meta = json.load(f)
        with np.load(os.path.join(path, "weights.npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable netc checkpoint ({e})") from None
    if meta.get("source_sha256") != source_hash(meta.get("source", "")):
        raise ValueError(f"{path}: the checkpoint's source does not match its hash")
    return meta, arrays
