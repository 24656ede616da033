"""From `.net` source to a Model, the one way: parse, the compiler's front end (`check`, then
`lower` onto a backend), the train block's settings, `Model(...)`. `netc.compile`,
`netc.load`, a run directory's resume and `netc plot` all build their models here.

    model = build(source, file, dtype="float32", device="cpu")
    model = load(path)              # a checkpoint, or a run directory's final weights
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

from netc.compiler import frontend
from netc.dsl import NetcError, parse
from netc.dsl.parser import decode

from . import checkpoint
from .model import Model
from .settings import TrainSettings, resolve


def read_source(path_or_source: str) -> Tuple[str, str]:
    """(source text, file name): the text of a `.net` file when given its path, else the
    text itself as "<string>". Raises NetcError for a file that cannot be read."""
    text = str(path_or_source)
    if "\n" not in text and (text.endswith(".net") or os.path.exists(text)):
        try:
            with open(text, "rb") as f:
                return decode(f.read(), text), text
        except OSError as e:
            raise NetcError.single(f"cannot read {text}: {e.strerror}") from None
    return text, "<string>"


def check_source(source: str, file: str = "<string>", disabled=()) -> Tuple[frontend.Checked, TrainSettings]:
    """What `netc check` finds, without generating kernels: the front end's check of the model
    and the train block's settings. Raises NetcError with every problem of the file."""
    checked = frontend.check(parse(source, file), tuple(disabled))
    return checked, resolve(checked.model, file, source)


def build(source: str, file: str = "<string>", *, dtype: str = "float32", device: Optional[str] = "cpu",
          disabled=(), seed: Optional[int] = None) -> Model:
    """A Model with freshly initialized params (`seed`: default the train block's) compiled from
    `source` (named `file` in diagnostics; relative data paths are relative to it). `device`:
    "cpu", "cuda", "auto", or None for the train block's `device`. Raises NetcError with every
    problem of the file."""
    checked = frontend.check(parse(source, file), tuple(disabled))
    compiled = frontend.lower(checked, device=device, dtype=dtype)
    return Model(compiled, resolve(compiled.model, file, source), file, source, seed)


def load(path: str) -> Model:
    """A model saved with Model.save (or a checkpoint of a run; a run directory stands for its
    final weights): rebuilt from its stored source (from the kernel cache when it is there),
    with its params, optimizer state, scaler, class names and settings. Raises
    CheckpointError for a missing, damaged or unfitting checkpoint."""
    path = checkpoint.resolve(path)
    meta, arrays = checkpoint.read(path)
    file = meta.get("file", "<string>")
    # source text was compiled for the train block's device, a file's source for the CPU
    model = build(meta["source"], file, dtype=meta["dtype"], device=None if file == "<string>" else "cpu")
    model.load_arrays(arrays, path, meta["standardized"])
    model.step, model.epoch = int(meta["step"]), int(meta["epoch"])
    model.classes = meta.get("classes")
    model.settings.apply_json(meta.get("settings"))
    return model
