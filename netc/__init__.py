"""netc: a declarative neural-network compiler.

    import netc
    model = netc.compile("examples/moons.net")          # or netc.compile(source_text)
    history = model.fit(X, y, epochs=50, batch_size=32, validation_split=0.2)   # Keras-shaped
    history.history["val_loss"]
    proba = model.predict(X_test); model.predict_classes(X_test); model.score(X_test, y_test)
    model.save("moons.npz"); model = netc.load("moons.npz")
    clf = netc.NetcClassifier("examples/moons.net", epochs=50).fit(X, y)     # scikit-learn-shaped

docs/python.md describes the API.
"""
from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Optional

_imported_at = time.perf_counter()      # when `import netc` began (`netc train --verbose`'s start-up line)

if TYPE_CHECKING:
    from netc.dsl import NetcError, UserError
    from netc.runtime.data import DataError
    from netc.runtime.diverge import TrainingDiverged
    from netc.runtime.estimator import Estimator, NetcClassifier, NetcRegressor
    from netc.runtime.loop import History
    from netc.runtime.model import FitError, Model
    from netc.runtime.settings import EarlyStop

__version__ = "0.1.0"
__all__ = ["compile", "load", "Model", "History", "EarlyStop", "Estimator", "NetcClassifier", "NetcRegressor",
           "NetcError", "UserError", "DataError", "FitError", "TrainingDiverged"]

# `import netc` imports none of Numba, NumPy, networkx, SciPy or Lark (0.5-1 s together): each
# name below is imported from its module when first used.
_EXPORTS = {"Model": "netc.runtime.model", "FitError": "netc.runtime.model", "History": "netc.runtime.loop",
            "EarlyStop": "netc.runtime.settings", "Estimator": "netc.runtime.estimator",
            "NetcClassifier": "netc.runtime.estimator", "NetcRegressor": "netc.runtime.estimator",
            "NetcError": "netc.dsl", "UserError": "netc.dsl", "DataError": "netc.runtime.data",
            "TrainingDiverged": "netc.runtime.diverge"}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'netc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


def _build():
    return importlib.import_module("netc.runtime.build")


def compile(path_or_source, dtype: str = "float32", seed: Optional[int] = None, disabled_passes=(),
            device: Optional[str] = None) -> "Model":
    """Compile a `.net` file (a path) or source text into a Model with freshly initialized params.
    `device`: "cpu", "cuda" or "auto" (the GPU when there is one); None: the train block's
    `device = ...`, else the CPU. Raises NetcError (with every problem of the file) for mistakes
    in it, and for "cuda" where no GPU or CUDA toolkit is present."""
    build = _build()
    source, file = build.read_source(path_or_source)
    return build.build(source, file, dtype=dtype, device=device, disabled=disabled_passes, seed=seed)


def load(path: str) -> "Model":
    """A model saved with Model.save (or a checkpoint of a run; a run directory stands for its
    final weights): recompiled from its stored source (from the kernel cache when it is there),
    with its params, optimizer state, scaler, class names and settings. Raises a UserError
    (runtime.checkpoint.CheckpointError) for a missing, damaged or unfitting checkpoint."""
    return _build().load(path)
