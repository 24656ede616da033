"""Numba's start-up in a process whose kernels are in Numba's cache (a warm `netc train`).

Numba's cache holds the compiled machine code, yet loading it (`Cache.load_overload`) first
"refreshes" the CPU target: it imports and registers the typing and lowering of everything
Numba can compile (arrays, linear algebra, random, dicts, lists, jitclass, ...), about 0.3 s
of every process, needed to compile but not to run code already compiled. And the first
thing that refresh does, `numba.np.linalg.ensure_blas`, is `import scipy.linalg.cython_blas`,
which runs all of `scipy/linalg/__init__.py` (0.15-0.25 s: decompositions, matrix functions,
SciPy's array-API layer) for the one extension module whose BLAS function pointers Numba's
`np.dot` calls.

So the CPU backend, for the dispatchers of its generated module only:
  - `preload_blas()` loads `scipy.linalg.cython_blas` by itself (its parent package's
    `__init__` is not run), so that Numba's import of it, when it refreshes or at the first
    BLAS call of loaded code, finds it in `sys.modules`;
  - `quick_load(module)` makes each dispatcher's cache load the code with only what running
    it needs (Numba's runtime, NRT, initialized), not the refresh. A miss (not in the cache,
    or compiled for other types) compiles as before: Numba's compiler refreshes the target
    itself before compiling.

Both are skipped where Numba or SciPy are not shaped as expected (another version): Numba's
own path then runs, only slower. (A program that later imports `scipy.linalg` gets the real
package; `scipy.linalg.cython_blas` is then in `sys.modules` but not an attribute of it.)
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys

from ...cache import import_spec

BLAS = "scipy.linalg.cython_blas"


def preload_blas() -> bool:
    """Load SciPy's `cython_blas` without `scipy.linalg`'s package import. Whether it is
    loaded now (False where SciPy or `scipy.linalg` was imported already, or is absent)."""
    if BLAS in sys.modules or "scipy.linalg" in sys.modules:
        return False
    try:
        import scipy
        folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
        spec = importlib.machinery.PathFinder.find_spec(BLAS, [folder])
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return False
        import_spec(BLAS, spec)
    except Exception:       # no SciPy, another layout: Numba imports it its own way
        return False
    return True


def _loader(cache):
    """A `load_overload` for one dispatcher's cache: Numba's, without the target's refresh."""
    def load_overload(sig, target_context):
        rtsys.initialize(target_context)        # the runtime (NRT) the loaded code calls
        with cache._guard_against_spurious_io_errors():
            return cache._load_overload(sig, target_context)
    return load_overload


def quick_load(module: ModuleType) -> int:
    """Give each @njit dispatcher of `module` the quick cache load; how many got it."""
    n = 0
    for value in vars(module).values():
        cache = getattr(value, "_cache", None) if isinstance(value, Dispatcher) else None
        if cache is not None and hasattr(cache, "_load_overload") and \
                hasattr(cache, "_guard_against_spurious_io_errors") and "load_overload" not in vars(cache):
            cache.load_overload = _loader(cache)
            n += 1
    return n


def refreshed() -> bool:
    """Whether Numba's CPU target has loaded its registries in this process (a test's probe)."""
    return "numba.np.arraymath" in sys.modules

