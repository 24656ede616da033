"""From `.net` source to a Model, the one way: parse, the compiler's front end (`check`, then
`lower` onto a backend), the train block's settings, `Model(...)`. `netc.compile`,
`netc.load`, a run directory's resume and `netc plot` all build their models here.

    model = build(source, file, dtype="float32", device="cpu")
    model = load(path)              # a checkpoint, or a run directory's final weights
"""
from __future__ import annotations

import math
import os
import time
from collections import Counter
from typing import Optional, Tuple

import numpy as np

from netc.compiler import frontend
from netc.dsl import NetcError, parse
from netc.dsl.diagnostics import Diagnostic
from netc.dsl.parser import decode

from . import checkpoint, distributed
from .model import Model
from .overrides import apply_sets, relocate
from .settings import TrainSettings, missing_output, resolve, train_block_errors


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


def check_source(source: str, file: str = "<string>", disabled=(), sets=()) -> Tuple[frontend.Checked, TrainSettings]:
    """What `netc check` finds, without generating kernels: the front end's check of the model
    and the train block's settings (`sets`: --set KEY=VALUE items, see overrides). Raises
    NetcError with every problem of the file."""
    edited, regions = apply_sets(source, file, sets)
    try:
        checked, settings = _checked(edited, file, disabled)
        check_memory(checked, "float32", settings.batch)
        missing = missing_output(checked.model)
        if missing is not None:                 # fine to compile; training needs an output
            checked.model.warnings.append(Diagnostic(missing.span, missing.message + "; netc train needs one",
                                                     missing.hint, "warning"))
    except NetcError as e:
        raise relocate(e, edited, regions, source) from None
    return checked, settings


def _checked(source: str, file: str, disabled=()) -> Tuple[frontend.Checked, TrainSettings]:
    """The front end's check and the train block's settings; every problem of both at once
    (the model's errors and a misspelled data source in one report)."""
    t0 = time.perf_counter()
    program = parse(source, file)
    t_parse = time.perf_counter() - t0
    try:
        checked = frontend.check(program, tuple(disabled))
    except NetcError as e:
        seen = {(d.span, d.message) for d in e.diagnostics}
        more = [d for d in train_block_errors(program) if (d.span, d.message) not in seen]
        if more:
            raise NetcError(list(e.diagnostics) + more, e.source if e.source is not None else source) from None
        raise
    checked.timings = {"parse": t_parse, **checked.timings}       # the stages in order, for --verbose
    return checked, resolve(checked.model, file, source)


def size_text(n: int) -> str:
    for unit, k in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << k:
            return f"{n / (1 << k):.1f} {unit}"
    return f"{n} bytes"


def machine_memory() -> Optional[int]:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(checked: frontend.Checked, dtype: str, batch: Optional[int]) -> int:
    """The memory a training step needs, about: every param with its gradient and optimizer
    state, and the train graph's values for a batch (`batch`, or 1 sample for a full batch,
    whose size depends on the data). Raises NetcError at the largest param when that is more
    than this machine's memory, before anything is allocated. Returns the bytes."""
    item = np.dtype(dtype).itemsize
    states = Counter(s.param for s in checked.train.states)
    params = {p.name: math.prod(p.shape) * item * (2 + states[p.name]) for p in checked.model.params}
    g = checked.train.graph
    values = sum(math.prod(d if isinstance(d, int) else (batch or 1) for d in g.shape(n)) * item for n in g.g.nodes)
    need = sum(params.values()) + values
    have = machine_memory()
    if have is not None and need > have and checked.model.params:
        p = max(checked.model.params, key=lambda q: params[q.name])
        raise NetcError.single(
            f"param '{p.name}' {list(p.shape)} is {math.prod(p.shape):,} numbers: with its gradient and optimizer "
            f"state {size_text(params[p.name])} as {dtype}; a training step needs about {size_text(need)}, more than this "
            f"machine's {size_text(have)}", p.span, hint="use smaller shapes", source=checked.program.source)
    return need


def build(source: str, file: str = "<string>", *, dtype: str = "float32", device: Optional[str] = "cpu",
          disabled=(), seed: Optional[int] = None, sets=()) -> Model:
    """A Model with freshly initialized params (`seed`: default the train block's) compiled from
    `source` (named `file` in diagnostics; relative data paths are relative to it). `device`:
    "cpu", "cuda", "auto", or None for the train block's `device`. `sets`: --set KEY=VALUE
    items written into the source first (the model's source is then the edited one, as
    trained; see overrides). Raises NetcError with every problem of the file."""
    edited, regions = apply_sets(source, file, sets)
    try:
        checked, settings = _checked(edited, file, disabled)
        check_memory(checked, dtype, settings.batch)
    except NetcError as e:
        raise relocate(e, edited, regions, source) from None
    # under mpiexec with several ranks: with the split train step of data-parallel training
    compiled = frontend.lower(checked, device=device, dtype=dtype, split=distributed.active())
    return Model(compiled, resolve(compiled.model, file, edited), file, edited, seed)


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
