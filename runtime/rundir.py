"""A run directory: everything a training run leaves behind, and what `--resume` reads.

    runs/<model>-<YYYYmmdd-HHMMSS>/
      <model>.net      the model's source, as trained
      settings.json    the resolved settings, the command-line overrides, the data (its spec,
                       sha256 and split sizes), dtype, disabled passes
      metrics.jsonl    one JSON object per finished epoch (the History records)
      metrics.csv      the same as a table, as Keras' CSVLogger writes it: one header, one row
                       per epoch, stable columns (epoch, loss, <train metrics>, val_loss,
                       <val metrics>, lr, time)
      tensorboard/     with --tensorboard: TensorBoard event files, as Keras writes them
                       (train/ and validation/, tags epoch_loss, epoch_accuracy, ...,
                       epoch_learning_rate), for `tensorboard --logdir runs`
      last/            checkpoint after the latest finished epoch, with the loop's state
                       (written before training too, as epoch 0)
      best/            checkpoint of the best epoch so far (the early-stopping monitor, else
                       val.loss, else the training loss)
      *.png            with --plot (or `netc plot DIR`)

Each epoch appends its line to metrics.jsonl (and its row to metrics.csv); the checkpoints
(`best` if it improved, then `last`) are written at most every `checkpoint_every` seconds (1 s;
`--checkpoint-every`), at the end and when the run stops early, interrupted or diverged. A run
killed at any moment therefore resumes from `last` and drops the lines of metrics.jsonl beyond
its epoch.
"""
from __future__ import annotations

import copy
import difflib
import json
import os
import re
import time
from typing import Dict, List, Optional

import numpy as np

from netc.compiler.files import atomic_open, atomic_write
from netc.dsl import NetcError

from . import checkpoint


class RunDir:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.last = os.path.join(self.path, "last")
        self.best = os.path.join(self.path, "best")
        self.metrics = os.path.join(self.path, "metrics.jsonl")
        self.csv = os.path.join(self.path, "metrics.csv")
        self.tensorboard: Optional["TensorBoardLog"] = None
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
            if cls(out).has_checkpoint() or cls(out).has_records():
                raise NetcError.single(f"{out}: already holds a run",
                                       hint=f"continue it with --resume {out}, or choose another --out")
            # a run killed before its first checkpoint: nothing in it to keep, so start it again
        if os.path.exists(out) and not os.path.isdir(out):
            raise NetcError.single(f"--out {out}: exists and is not a directory")
        rd = cls(out)
        os.makedirs(rd.path, exist_ok=True)
        atomic_write(os.path.join(rd.path, f"{model.name}.net"), model.source)
        _write_json(rd.settings_file, doc)
        atomic_write(rd.metrics, "")
        if os.path.exists(rd.csv):
            os.remove(rd.csv)
        return rd

    def has_checkpoint(self) -> bool:
        """Whether `last` holds a complete checkpoint (or a cut-short save left one to put back)."""
        return checkpoint.exists(self.last)

    def has_records(self) -> bool:
        try:
            return os.path.getsize(self.metrics) > 0
        except OSError:
            return False

    def read_settings(self) -> dict:
        try:
            with open(self.settings_file, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError, RecursionError) as e:
            raise checkpoint.CheckpointError(f"{self.shown}: not a run directory (no readable settings.json: "
                             f"{getattr(e, 'strerror', None) or e})") from None
        ok = isinstance(doc, dict) and isinstance(doc.get("overrides", {}), dict) \
            and isinstance(doc.get("no_pass", []), list) and all(isinstance(n, str) for n in doc.get("no_pass", [])) \
            and isinstance(doc.get("data", {}), dict) and isinstance(doc.get("source_file", ""), str) \
            and doc.get("dtype", "float32") in ("float32", "float64") \
            and isinstance(doc.get("file", ""), (str, type(None))) \
            and isinstance(doc.get("settings", {}), dict) \
            and set(doc.get("overrides", {})) <= {"epochs", "seed", "batch", "data"}
        if not ok:
            raise checkpoint.CheckpointError(f"{self.shown}: settings.json is damaged (not the settings of a netc run)")
        return doc

    # ------------------------------------------------------------ the epoch hooks of loop.fit
    def start(self, model, state) -> None:
        """The checkpoint of epoch 0 (the initial params), so there is always a last good one."""
        checkpoint.save(model, self.last, training=state.to_json())
        self._written = time.monotonic()        # the next checkpoint is due checkpoint_every after this one

    def log_tensorboard(self) -> "TensorBoardLog":
        """Also write TensorBoard event files (into tensorboard/) at each epoch's end."""
        self.tensorboard = TensorBoardLog(os.path.join(self.path, "tensorboard"))
        return self.tensorboard

    # Checkpoints are written at most every `checkpoint_every` seconds (0: every epoch), at the
    # end, and whatever way the run stops (loop.fit calls `flush`): a checkpoint costs fsyncs, and
    # a run of 500 epochs of milliseconds each spent 30 s in them. Between writes the latest
    # finished epoch (and the best one) wait in memory as copies; a run killed meanwhile resumes
    # from the last written epoch, which gives the same numbers (metrics lines beyond it are
    # dropped on resume).
    checkpoint_every = 1.0

    # metrics.jsonl and metrics.csv stay open between checkpoints (appended and flushed at each
    # epoch's end, so a reader or a kill sees whole lines): opening both, and reading the CSV's
    # header, at every epoch cost more than the epoch of a small model.
    _files: Optional[Dict[str, object]] = None
    _csv_header: Optional[List[str]] = None

    def epoch_end(self, model, rec: dict, state, best_params, improved: bool) -> None:
        self._append(self.metrics, json.dumps(rec) + "\n")
        self._csv_row(rec)
        if self.tensorboard is not None:
            self.tensorboard.write(rec)
        now = time.monotonic()
        due = state.finished or now - getattr(self, "_written", 0.0) >= self.checkpoint_every
        if improved:
            best = {"epoch_of": rec["epoch"], "monitor": state.monitor, "value": state.best}
            self._best = (model, best) if due else (_Frozen(model), best)
        # the loop's state as of this epoch: a shallow copy (the loop assigns new rng and schedule
        # states each epoch, never changes them in place), turned into JSON when it is written
        self._last = (model, state, best_params) if due else \
            (_Frozen(model), copy.copy(state), _copied(best_params))
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the checkpoints waiting in memory: `best` (if it improved), then `last`."""
        self.close()
        best, last = getattr(self, "_best", None), getattr(self, "_last", None)
        self._best = self._last = None
        if best is not None:
            checkpoint.save(best[0], self.best, training=best[1])
        if last is not None:
            checkpoint.save(last[0], self.last, training=last[1].to_json(), best_params=last[2])
        self._written = time.monotonic()

    def _append(self, path: str, text: str) -> None:
        files = self._files if self._files is not None else {}
        self._files = files
        f = files.get(path)
        if f is None:
            f = files[path] = open(path, "a", encoding="utf-8")
        f.write(text)
        f.flush()

    def close(self) -> None:
        """Close metrics.jsonl and metrics.csv (reopened at the next epoch's end)."""
        for f in (self._files or {}).values():
            f.close()
        self._files, self._csv_header = None, None

    # ------------------------------------------------------------ resuming
    def records(self, upto: Optional[int] = None) -> List[dict]:
        """The epoch records of metrics.jsonl (with `upto`, epochs <= upto). A last line cut
        short by a kill is left out; a damaged line among the records wanted raises
        CheckpointError naming it (nothing is dropped silently)."""
        try:
            with open(self.metrics, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        out, bad = [], None
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or not checkpoint._int(rec.get("epoch"), 1):
                    raise ValueError("not an epoch record")
            except (ValueError, RecursionError):
                if i == len(lines):         # no newline after it: a line cut short by a kill
                    break
                bad = bad or i
                continue
            if upto is not None and rec["epoch"] > upto:
                continue
            out.append(rec)
        if bad is not None and [r["epoch"] for r in out] != list(range(1, (upto or len(out)) + 1)):
            raise checkpoint.CheckpointError(
                f"{self.metrics}:{bad}: this line of the run's metrics is damaged (not an epoch record)\n"
                f"    hint: repair or delete line {bad}; netc drops no records on its own")
        return out

    def truncate(self, upto: int) -> List[dict]:
        """Drop the lines of epochs after `upto` (written after the last checkpoint)."""
        self.close()
        recs = self.records(upto)
        with atomic_open(self.metrics, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
        write_csv(self.csv, recs)
        return recs

    def _csv_row(self, rec: dict) -> None:
        """Append the epoch's row to metrics.csv. The first row (or a resumed run that has no
        metrics.csv yet) writes the file from metrics.jsonl, header first; a record with other
        columns than the header's rewrites it from the records, so the columns stay one table."""
        row = csv_row(rec)
        header = self._csv_header
        if header is None and os.path.exists(self.csv) and os.path.getsize(self.csv) > 0:
            with open(self.csv, encoding="utf-8") as f:
                header = f.readline().rstrip("\n").split(",")
        if header is None or header != list(row):      # the first epoch (or a run from before metrics.csv)
            f = (self._files or {}).pop(self.csv, None)
            if f is not None:
                f.close()
            write_csv(self.csv, self.records())         # (metrics.jsonl is flushed: it has this epoch)
            self._csv_header = None                     # read back once: the columns of all records
        else:
            self._csv_header = header
            self._append(self.csv, ",".join(_cell(v) for v in row.values()) + "\n")


# ------------------------------------------------------------------ metrics.csv
def csv_row(rec: dict) -> Dict[str, object]:
    """An epoch record as Keras names its columns: epoch, loss, accuracy, ..., val_loss,
    val_accuracy, ..., lr, time (a loss term of several: its own name, val_ its val value)."""
    row: Dict[str, object] = {"epoch": rec.get("epoch")}
    train = rec.get("train", {})
    for k in ["loss"] + [k for k in train if k != "loss"]:
        if k in train:
            row[k] = train[k]
    val = rec.get("val") or {}
    for k in ["loss"] + [k for k in val if k != "loss"]:
        if k in val:
            row[f"val_{k}"] = val[k]
    row["lr"] = rec.get("lr")
    row["time"] = rec.get("time")
    return row


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_csv(path: str, records: List[dict]) -> None:
    """metrics.csv from epoch records: the columns of every record, in first-seen order."""
    rows = [csv_row(r) for r in records]
    cols: Dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    lines = [",".join(cols)] if rows else []
    lines += [",".join(_cell(r.get(c)) for c in cols) for r in rows]
    atomic_write(path, "\n".join(lines) + ("\n" if lines else ""))


# ------------------------------------------------------------------ TensorBoard
class TensorBoardLog:
    """TensorBoard event files as Keras' TensorBoard callback writes them: `train/` and
    `validation/` below `logdir`, one scalar per metric per epoch (`epoch_loss`,
    `epoch_accuracy`, ...; the learning rate as `epoch_learning_rate` in train/), so a
    metric's train and validation curves share one chart. Written by tensorboardX when it is
    installed, else by PyTorch's `torch.utils.tensorboard` (which needs the tensorboard
    package); neither: a user error that says what to install."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self.Writer = self.writer_class()
        self._writers: Dict[str, object] = {}

    @staticmethod
    def writer_class():
        try:
            from tensorboardX import SummaryWriter
            return SummaryWriter
        except ImportError:
            pass
        try:
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter
        except ImportError:
            pass
        raise NetcError.single("--tensorboard needs tensorboardX (or PyTorch with tensorboard) installed",
                               hint="pip install 'netc[tensorboard]'  (or: pip install tensorboardX)")

    def _writer(self, split: str):
        if split not in self._writers:
            self._writers[split] = self.Writer(os.path.join(self.logdir, split))
        return self._writers[split]

    def write(self, rec: dict) -> None:
        epoch = int(rec["epoch"])
        for split, name in (("train", "train"), ("val", "validation")):
            values = rec.get(split) or {}
            if not values:
                continue
            w = self._writer(name)
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    w.add_scalar(f"epoch_{k}", float(v), epoch)
            if split == "train" and rec.get("lr") is not None:
                w.add_scalar("epoch_learning_rate", float(rec["lr"]), epoch)
            w.flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers = {}


class _Frozen:
    """What a checkpoint reads of a model (params, optimizer state, metadata), copied at an
    epoch's end, for a checkpoint written later."""

    def __init__(self, model):
        for k in ("source", "name", "file", "artifact", "step", "epoch", "classes", "scaler", "settings"):
            setattr(self, k, getattr(model, k))
        self.params = {k: np.array(v) for k, v in model.params.items()}
        self.state = {k: np.array(v) for k, v in model.state.items()}


def _copied(arrays: Optional[Dict[str, np.ndarray]]) -> Optional[Dict[str, np.ndarray]]:
    return None if arrays is None else {k: np.array(v) for k, v in arrays.items()}


def _write_json(path: str, doc: dict) -> None:
    atomic_write(path, json.dumps(doc, indent=1))


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
