"""OLD PATH, kept only until the CLI calls `compiler.frontend` (issue 9). Nothing inside
compiler/ imports this module.

    kernels_source(program, dtype, disabled) -> frontend.kernels_source(frontend.check(program, disabled), "cuda", dtype)
    DEVICES, resolve_device, unavailable     -> backend.DEVICES, backend.select, backend.unavailable("cuda")
"""
from __future__ import annotations

from .backend import DEVICES, select, unavailable  # noqa: F401
from .frontend import check
from .frontend import kernels_source as _kernels_source

resolve_device = select


def kernels_source(program, dtype: str = "float32", disabled=()) -> str:
    return _kernels_source(check(program, disabled), "cuda", dtype)
