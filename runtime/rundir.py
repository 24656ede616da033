"""A run directory: everything a training run leaves behind, and what `--resume` reads.

    runs/<model>-<YYYYmmdd-HHMMSS>/
      <model>.net      the model's source, as trained
      settings.json    the resolved settings, the command-line overrides, the data (its spec,
                       sha256 and split sizes), dtype, disabled passes
      metrics.jsonl    one JSON object per finished epoch (the History records)
      last/            checkpoint after the latest finished epoch, with the loop's state
                       (written before training too, as epoch 0)
      best/            checkpoint of the best epoch so far (the early-stopping monitor, else
                       val.loss, else the training loss)
      *.png            with --plot (or `netc plot DIR`)

Each epoch appends its line to metrics.jsonl, then writes `best` (if it improved), then
`last`; a run killed at any moment therefore resumes from `last` and drops the lines of
metrics.jsonl beyond its epoch.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import time
from typing import List, Optional

from netc.dsl import NetcError

from . import checkpoint


class RunDir:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.last = os.path.join(self.path, "last")
        self.best = os.path.join(self.path, "best")
        self.metrics = os.path.join(self.path, "metrics.jsonl")
        self.settings_file = os.path.join(self.path, "settings.json")
        self.shown = path            # as the user gave it, for messages

    # ------------------------------------------------------------ creating
    @classmethod
    def create(cls, out: Optional[str], model, doc: dict) -> "RunDir":
        """A new run directory (`out`, or runs/<model>-<time>/ with a suffix if it exists)."""
        if out is None:
            base = os.path.join("runs", f"{model.name}-{time.strftime('%Y%m%d-%H%M%S')}")
            out, i = base, 2
            while os.path.exists(out):
                out, i = f"{base}-{i}", i + 1
        elif os.path.exists(os.path.join(out, "settings.json")) or os.path.exists(os.path.join(out, "last")):
            raise NetcError.single(f"{out}: already holds a run",
                                   hint=f"continue it with --resume {out}, or choose another --out")
        rd = cls(out)
        os.makedirs(rd.path, exist_ok=True)
        with open(os.path.join(rd.path, f"{model.name}.net"), "w", encoding="utf-8") as f:
            f.write(model.source)
        _write_json(rd.settings_file, doc)
        open(rd.metrics, "w").close()
        return rd

    def read_settings(self) -> dict:
        try:
            with open(self.settings_file) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{self.shown}: not a run directory (no readable settings.json: "
                             f"{getattr(e, 'strerror', None) or e})") from None

    # ------------------------------------------------------------ the epoch hooks of loop.fit
    def start(self, model, state) -> None:
        """The checkpoint of epoch 0 (the initial params), so there is always a last good one."""
        checkpoint.save(model, self.last, training=state.to_json())

    def epoch_end(self, model, rec: dict, state, best_params, improved: bool) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if improved:
            checkpoint.save(model, self.best, training={"epoch_of": rec["epoch"], "monitor": state.monitor,
                                                        "value": state.best})
        checkpoint.save(model, self.last, training=state.to_json(), best_params=best_params)

    # ------------------------------------------------------------ resuming
    def records(self, upto: Optional[int] = None) -> List[dict]:
        """The epoch records of metrics.jsonl (complete lines; with `upto`, epochs <= upto)."""
        out = []
        try:
            with open(self.metrics) as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break               # a line cut short by a kill
                    if upto is not None and rec.get("epoch", 0) > upto:
                        break
                    out.append(rec)
        except FileNotFoundError:
            pass
        return out

    def truncate(self, upto: int) -> List[dict]:
        """Drop the lines of epochs after `upto` (written after the last checkpoint)."""
        recs = self.records(upto)
        tmp = self.metrics + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
        os.replace(tmp, self.metrics)
        return recs


def _write_json(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


# ------------------------------------------------------------ "what changed" for --resume
_COMMENT = re.compile(r'("[^"]*"|\'[^\']*\')|#.*')


def _code(line: str) -> str:
    """A line without its comment and surrounding whitespace (strings keep their '#')."""
    return _COMMENT.sub(lambda m: m.group(1) or "", line).strip()


def source_changes(old: str, new: str) -> List[str]:
    """The changed lines between two versions of a .net file, ignoring comments, blank lines
    and indentation (which do not change the model); [] when the model is the same."""
    a, b = old.splitlines(), new.splitlines()
    ca, cb = [_code(x) for x in a], [_code(x) for x in b]
    if [x for x in ca if x] == [x for x in cb if x]:
        return []
    out = []
    sm = difflib.SequenceMatcher(None, ca, cb, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal" or (not any(ca[i1:i2]) and not any(cb[j1:j2])):
            continue
        for i in range(i1, i2):
            if ca[i]:
                out.append(f"  line {i + 1} was: {a[i].strip()}")
        for j in range(j1, j2):
            if cb[j]:
                out.append(f"  line {j + 1} now: {b[j].strip()}")
    return out
