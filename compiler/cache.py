"""The kernel cache: generated source is written to a content-addressed directory and imported
from there, so Numba's own `cache=True` finds its compiled code next to it on the next run.

Key: a hash of the generated source -- a canonical function of the optimized graph (node
order, names and attributes are deterministic) and the dtype -- with the backend and the
versions of netc, numba, llvmlite, numpy and Python. An entry is a folder
`<cache>/<key>/` holding `kernels.py` and `meta.json` (which stores the SHA-256 of the
source); Numba adds `__pycache__/`.

Safety: every file is written to a temporary name and renamed into place (atomic on POSIX),
`meta.json` last, so a reader sees a complete entry or none. Two processes compiling the
same model write identical bytes, so whichever rename wins, both import the same source; a
crashed writer leaves only a temporary file. On load, an entry whose source does not match
its stored hash (a damaged or half-written entry) is rebuilt, its stale Numba cache removed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Dict, List

import llvmlite
import numba
import numpy as np

NETC_VERSION = "0.1.0"


def cache_dir() -> Path:
    root = os.environ.get("NETC_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netc"


def versions() -> Dict[str, str]:
    return {"netc": NETC_VERSION, "numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "numpy": np.__version__, "python": sys.version.split()[0]}


def key_of(source: str, backend: str = "cpu") -> str:
    h = hashlib.sha256()
    for part in [source, backend] + [f"{k}={v}" for k, v in sorted(versions().items())]:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _entry_ok(folder: Path, source: str) -> bool:
    """The entry holds exactly `source`, and its stored hash agrees."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        text = (folder / "kernels.py").read_text()
    except (OSError, ValueError):
        return False
    return meta.get("sha256") == sha256(text) == sha256(source)


def ensure_entry(source: str, backend: str = "cpu", model: str = "") -> Path:
    """The cache folder of `source`, written (or rebuilt when damaged) if needed."""
    key = key_of(source, backend)
    folder = cache_dir() / key
    if _entry_ok(folder, source):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "kernels.py").exists() or (folder / "meta.json").exists():
        # damaged or half-written: Numba's cache of it is not to be trusted either
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    _write_atomic(folder / "kernels.py", source)
    meta = {"sha256": sha256(source), "backend": backend, "model": model, "created": time.time(),
            "versions": versions()}
    _write_atomic(folder / "meta.json", json.dumps(meta, indent=1))
    return folder


def load_module(source: str, backend: str = "cpu", model: str = "") -> ModuleType:
    """Import `source` as a module from the cache (writing it there first if it is new)."""
    key = key_of(source, backend)
    name = f"netc_kernels_{key}"
    if name in sys.modules:
        return sys.modules[name]
    folder = ensure_entry(source, backend, model)
    spec = importlib.util.spec_from_file_location(name, folder / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# ------------------------------------------------------------------ netc cache info|clear
def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def entries() -> List[dict]:
    """One record per cache entry: key, model, backend, created, bytes, ok (hash verified)."""
    root = cache_dir()
    out = []
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        try:
            meta = json.loads((folder / "meta.json").read_text())
            ok = meta.get("sha256") == sha256((folder / "kernels.py").read_text())
        except (OSError, ValueError):
            meta, ok = {}, False
        out.append({"key": folder.name, "model": meta.get("model", "?"), "backend": meta.get("backend", "?"),
                    "created": meta.get("created"), "bytes": _size(folder), "ok": ok,
                    "compiled": any((folder / "__pycache__").glob("*.nbi")) if (folder / "__pycache__").is_dir() else False})
    return out


def clear() -> int:
    """Remove every entry; returns how many."""
    root = cache_dir()
    n = 0
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                n += 1
    return n
