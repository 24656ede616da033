"""The schema of the `train { ... }` block: its keys, in one list, and the check of a block's
shape (known keys, each given once). What each value means is the runtime's to check
(`netc.runtime.settings.resolve`), against this same list of keys."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from netc.dsl import ast as A
from netc.dsl.diagnostics import Collector, did_you_mean

from .values import static_value

# every key a train block may set, in the order messages list them
TRAIN_KEYS: List[str] = ["data", "split", "batch", "epochs", "shuffle", "seed", "metrics", "stop", "lr_scale",
                         "standardize", "device"]

# the keys whose value is always a list (`split = 0.8, 0.2`; `metrics = accuracy`); the others
# hold their single value itself
LIST_KEYS: Tuple[str, ...] = ("split", "metrics")


def read_train_block(blocks: List[A.TrainBlock], diag: Collector) -> Dict[str, Tuple[Any, A.Span]]:
    """The settings of a program's train blocks as {key: (value as data, span)}; reports a
    second block, unknown keys and keys given twice to `diag`."""
    for extra in blocks[1:]:
        diag.error(extra.span, "a second `train` block")
    out: Dict[str, Tuple[Any, A.Span]] = {}
    if not blocks:
        return out
    for it in blocks[0].items:
        if it.key not in TRAIN_KEYS:
            diag.error(it.key_span, f"unknown train setting '{it.key}'",
                       did_you_mean(it.key, TRAIN_KEYS) or "allowed: " + ", ".join(TRAIN_KEYS))
            continue
        if it.key in out:
            diag.error(it.key_span, f"train setting '{it.key}' is given twice")
            continue
        vals = [static_value(v) for v in it.values]
        out[it.key] = (vals[0] if len(vals) == 1 and it.key not in LIST_KEYS else vals, it.span)
    return out
