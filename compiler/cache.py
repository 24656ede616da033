"""The kernel cache: generated source is written to a content-addressed directory and imported
from there, so Numba's own `cache=True` finds its compiled code next to it on the next run.

Key: a hash of the generated source -- a canonical function of the optimized graph (node
order, names and attributes are deterministic) and the dtype -- with the backend and the
versions of netc, numba, llvmlite, numpy and Python. An entry is a folder
`<cache>/<key>/` holding `kernels.py` and `meta.json` (which stores the SHA-256 of the
source, and of each file Numba adds in `__pycache__/` once it has compiled: see `seal`).

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
import time
from pathlib import Path
from types import ModuleType
from typing import Dict, List

import llvmlite
import numba
import numpy as np

from .files import atomic_write

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
    atomic_write(str(path), text)


def _read_meta(folder: Path) -> dict:
    """An entry's meta.json, or {} when it is missing or damaged (not a JSON object)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _entry_ok(folder: Path, source: str) -> bool:
    """The entry holds exactly `source`, and its stored hash agrees."""
    try:
        text = (folder / "kernels.py").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    return _read_meta(folder).get("sha256") == sha256(text) == sha256(source)


# ------------------------------------------------------------------ Numba's files, sealed
# Numba loads its cache (`__pycache__/*.nbi`, `*.nbc`: pickles and machine code) without
# checking it, so a damaged file is an UnpicklingError, or a crash. `seal` records the SHA-256
# of every file there after a compile (meta.json's "numba"); before an entry is used, a file
# that is not recorded as it is (damaged, or written by a process that died before sealing)
# drops the entry's Numba cache, which Numba then rebuilds.
def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _numba_files(folder: Path) -> Dict[str, str]:
    pyc = folder / "__pycache__"
    if not pyc.is_dir():
        return {}
    return {p.name: _file_hash(p) for p in sorted(pyc.iterdir()) if p.is_file() and not p.name.startswith(".")}


def seal(module: ModuleType) -> None:
    """Record the hashes of the Numba cache files of `module`'s entry (after a compile)."""
    folder = Path(module.__file__).parent
    meta = _read_meta(folder)
    if not meta:
        return
    try:
        files = _numba_files(folder)
        if meta.get("numba") != files:
            _write_atomic(folder / "meta.json", json.dumps(dict(meta, numba=files), indent=1))
    except OSError:
        pass                    # a cache we may not write to: Numba could not cache there either


def _numba_ok(folder: Path) -> bool:
    sealed = _read_meta(folder).get("numba") or {}
    try:
        found = _numba_files(folder)
    except OSError:
        return False
    return isinstance(sealed, dict) and all(sealed.get(name) == h for name, h in found.items())


def _drop_numba(folder: Path) -> None:
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)


def ensure_entry(source: str, backend: str = "cpu", model: str = "") -> Path:
    """The cache folder of `source`, written (or rebuilt when damaged) if needed."""
    key = key_of(source, backend)
    folder = cache_dir() / key
    if _entry_ok(folder, source):
        if not _numba_ok(folder):
            _drop_numba(folder)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "kernels.py").exists() or (folder / "meta.json").exists() or (folder / "__pycache__").exists():
        # damaged or half-written: Numba's cache of it is not to be trusted either
        _drop_numba(folder)
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
    return import_spec(name, importlib.util.spec_from_file_location(name, folder / "kernels.py"))


def import_spec(name: str, spec) -> ModuleType:
    """Import the module `spec` finds as sys.modules[name] (taken out again if it fails)."""
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
        meta = _read_meta(folder)
        try:
            ok = meta.get("sha256") == sha256((folder / "kernels.py").read_text(encoding="utf-8")) \
                and _numba_ok(folder)
        except (OSError, ValueError):
            ok = False
        created = meta.get("created")
        out.append({"key": folder.name, "model": str(meta.get("model", "?")), "backend": str(meta.get("backend", "?")),
                    "created": created if isinstance(created, (int, float)) and 0 < created < 1e11 else None, "bytes": _size(folder), "ok": ok,
                    "compiled": any((folder / "__pycache__").glob("*.nbi")) if (folder / "__pycache__").is_dir() else False})
    return out


def clear() -> int:
    """Remove every entry; returns how many were removed."""
    root = cache_dir()
    n = 0
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                n += not folder.exists()        # a read-only cache removes nothing
    return n
