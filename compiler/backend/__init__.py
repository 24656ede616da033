"""The backends, in one table: a backend is a leaf package (`backend/cpu`, `backend/cuda`)
with its lowering table, code generator, kernels and compiled-model class, imported only when
asked for (`get`), so the CPU path never imports numba.cuda.

Each backend package offers:
  NAME                                       "cpu" | "cuda"
  RULES                                      its `fuse.Rules` (what fuses, kernel kinds)
  LOWERINGS                                  its lowering table, one entry per registry op
  compile(checked, dtype, threads) -> CompiledModel
  source(checked, dtype) -> str              the generated source, nothing imported or jitted
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Optional

from netc.dsl import NetcError
from netc.dsl.ast import NO_SPAN

from .contract import CompiledModel, MissingLowering  # noqa: F401  (the contract, for callers)

BACKENDS = {"cpu": "netc.compiler.backend.cpu", "cuda": "netc.compiler.backend.cuda"}
DEVICES = ("cpu", "cuda", "auto")        # what a user may ask for: a backend, or the best here


def get(name: str) -> ModuleType:
    """The backend package `name` ("cpu" or "cuda"), imported on first use."""
    return importlib.import_module(BACKENDS[name])


def unavailable(name: str) -> Optional[str]:
    """Why backend `name` cannot run here, or None when it can."""
    if name == "cpu":
        return None
    if importlib.util.find_spec("numba_cuda") is None:
        return "the CUDA backend needs the package numba-cuda (pip install 'netc[cuda]')"
    try:
        from numba import cuda           # optional: only when the GPU is asked for
    except ImportError as e:          # numba-cuda without its CUDA bindings
        return f"numba.cuda cannot be imported ({e})"
    try:
        if not cuda.is_available():
            return "no CUDA GPU, driver or toolkit was found (numba.cuda.is_available() is false)"
    except Exception as e:            # a broken driver or toolkit install
        return f"the CUDA driver or toolkit does not work: {e}"
    return None


def select(device: Optional[str], model=None, source: Optional[str] = None) -> str:
    """'cpu' or 'cuda' for a requested device: None means the train block's `device = ...`
    (else the CPU); 'auto' is the GPU when there is one, else the CPU. Raises NetcError for an
    unknown device, or when CUDA is asked for and cannot run here."""
    span = NO_SPAN
    if device is None:
        value, span = (model.train.get("device") if model is not None else None) or ("cpu", NO_SPAN)
        device = getattr(value, "name", value)
    if device not in DEVICES:
        raise NetcError.single(f"unknown device '{device}'", span, "one of: cpu, cuda, auto", source)
    if device == "cpu":
        return "cpu"
    why = unavailable("cuda")
    if why is None:
        return "cuda"
    if device == "auto":
        return "cpu"
    raise NetcError.single(f"cannot train on the GPU: {why}", span,
                           "use --device cpu, or --device auto to fall back to the CPU when there is no GPU",
                           source)
