"""netc: a declarative neural-network compiler.

    import netc
    model = netc.compile("examples/moons.net")          # or netc.compile(source_text)
    history = model.fit(X, y, epochs=50, validation=(Xv, yv))
    proba = model.predict(X_test)
    model.save("moons.ckpt"); model = netc.load("moons.ckpt")
"""
from __future__ import annotations

import os
from typing import Optional

from netc.dsl import NetcError, parse
from netc.runtime.data import DataError
from netc.runtime.model import History, Model, TrainingDiverged

__version__ = "0.1.0"
__all__ = ["compile", "load", "Model", "History", "NetcError", "DataError", "TrainingDiverged"]


def _read(path_or_source: str):
    text = str(path_or_source)
    if "\n" not in text and (text.endswith(".net") or os.path.exists(text)):
        try:
            with open(text, encoding="utf-8") as f:
                return f.read(), text
        except OSError as e:
            raise NetcError.single(f"cannot read {text}: {e.strerror}") from None
    return text, "<string>"


def compile(path_or_source, dtype: str = "float32", seed: Optional[int] = None, disabled_passes=()) -> Model:
    """Compile a `.net` file (a path) or source text into a Model with freshly initialized params.
    Raises NetcError (with every problem of the file) for mistakes in it."""
    from netc.compiler.pipeline import compile_program
    from netc.runtime.settings import resolve
    source, file = _read(path_or_source)
    program = parse(source, file)
    artifact = compile_program(program, dtype=dtype, disabled=disabled_passes)
    settings = resolve(artifact.model, file, source)
    return Model(artifact, settings, file, source, seed)


def load(path: str) -> Model:
    """A model saved with Model.save: recompiled from its stored source (from the kernel cache
    when it is there), with its params and optimizer state."""
    from netc.runtime import checkpoint
    try:
        meta, arrays = checkpoint.read(path)
    except ValueError as e:
        raise NetcError.single(str(e)) from None
    model = compile(meta["source"], dtype=meta["dtype"]) if meta.get("file", "<string>") == "<string>" \
        else _compile_as(meta)
    for k, v in arrays.items():
        kind, _, name = k.partition("/")
        target = model._params if kind == "param" else model._state
        if name not in target or target[name].shape != v.shape:
            raise NetcError.single(f"{path}: array '{k}' does not fit the model")
        target[name][...] = v
    model.step, model.epoch = int(meta["step"]), int(meta["epoch"])
    return model


def _compile_as(meta) -> Model:
    """Compile stored source under its original file name (diagnostics and relative data paths)."""
    from netc.compiler.pipeline import compile_program
    from netc.runtime.settings import resolve
    program = parse(meta["source"], meta["file"])
    artifact = compile_program(program, dtype=meta["dtype"])
    return Model(artifact, resolve(artifact.model, meta["file"], meta["source"]), meta["file"], meta["source"])
