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


def compile(path_or_source, dtype: str = "float32", seed: Optional[int] = None, disabled_passes=(),
            device: Optional[str] = None) -> Model:
    """Compile a `.net` file (a path) or source text into a Model with freshly initialized params.
    `device`: "cpu", "cuda" or "auto" (the GPU when there is one); None: the train block's
    `device = ...`, else the CPU. Raises NetcError (with every problem of the file) for mistakes
    in it, and for "cuda" where no GPU or CUDA toolkit is present."""
    from netc.compiler.pipeline import compile_program
    from netc.runtime.settings import resolve
    source, file = _read(path_or_source)
    program = parse(source, file)
    artifact = compile_program(program, dtype=dtype, disabled=disabled_passes, device=device)
    settings = resolve(artifact.model, file, source)
    return Model(artifact, settings, file, source, seed)


def load(path: str) -> Model:
    """A model saved with Model.save (or a checkpoint of a run; a run directory stands for its
    final weights): recompiled from its stored source (from the kernel cache when it is there),
    with its params, optimizer state, scaler, class names and settings."""
    from netc.runtime import checkpoint
    try:
        path = checkpoint.resolve(path)
        meta, arrays = checkpoint.read(path)
    except ValueError as e:
        raise NetcError.single(str(e)) from None
    model = compile(meta["source"], dtype=meta["dtype"]) if meta.get("file", "<string>") == "<string>" \
        else _compile_as(meta)
    try:
        model.load_arrays(arrays, path)
    except ValueError as e:
        raise NetcError.single(str(e)) from None
    model.step, model.epoch = int(meta["step"]), int(meta["epoch"])
    model.classes = meta.get("classes")
    _apply_settings(model, meta.get("settings"))
    return model


def _apply_settings(model: Model, doc) -> None:
    """The settings a checkpoint was trained with (command-line overrides included)."""
    if not doc:
        return
    s = model.settings
    s.seed, s.epochs, s.shuffle = doc.get("seed", s.seed), doc.get("epochs", s.epochs), doc.get("shuffle", s.shuffle)
    s.batch = None if doc.get("batch") == "full" else doc.get("batch", s.batch)
    s.split = tuple(doc.get("split", s.split))
    s.standardize = doc.get("standardize", s.standardize)
    if doc.get("data") is not None:
        s.data = doc["data"]


def _compile_as(meta) -> Model:
    """Compile stored source under its original file name (diagnostics and relative data paths)."""
    from netc.compiler.pipeline import compile_program
    from netc.runtime.settings import resolve
    program = parse(meta["source"], meta["file"])
    artifact = compile_program(program, dtype=meta["dtype"])
    return Model(artifact, resolve(artifact.model, meta["file"], meta["source"]), meta["file"], meta["source"])
