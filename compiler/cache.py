"""The kernel cache: generated source is written to a content-addressed directory and imported
from there, so Numba's own `cache=True` finds its compiled code on the next run.

Key: the generated source (a canonical function of the graph, dtype and backend) and the
versions of netc, numba and numpy. Entries are written atomically (temp file + rename)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numba
import numpy as np

NETC_VERSION = "0.1.0"


def cache_dir() -> Path:
    root = os.environ.get("NETC_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netc"


def key_of(source: str) -> str:
    h = hashlib.sha256()
    for part in (source, NETC_VERSION, numba.__version__, np.__version__, sys.version):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_module(source: str) -> ModuleType:
    """Import `source` as a module from the cache (writing it there first if it is new)."""
    key = key_of(source)
    name = f"netc_kernels_{key}"
    if name in sys.modules:
        return sys.modules[name]
    folder = cache_dir() / key
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kernels.py"
    if not path.exists() or path.read_text() != source:   # new, or a damaged entry
        _write_atomic(path, source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
