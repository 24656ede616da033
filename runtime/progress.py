"""How a training run shows its progress: a tqdm bar per epoch when the output is a terminal
(moved after each chunk of batches the compiled epoch runs, about every 0.1 s, with its ETA;
a "compiling kernels ..." notice while Numba compiles, then the time it took; epoch lines cut
to the terminal's width), one line per epoch otherwise, nothing with `--quiet` (the final
table is printed by the CLI)."""
from __future__ import annotations

import math
import shutil
import sys
import time
from typing import Callable, Dict, Optional

from tqdm import tqdm


class Progress:
    """mode: "bar" (tqdm bar over the batches of each epoch, then the epoch's line), "lines"
    (one line per epoch) or "quiet". `write` prints one line (default: to `stream`)."""

    def __init__(self, mode: str = "lines", stream=None, write: Optional[Callable[[str], None]] = None):
        assert mode in ("bar", "lines", "quiet"), mode
        self.mode = mode
        self.stream = stream if stream is not None else sys.stdout
        self._write = write

    @classmethod
    def for_output(cls, quiet: bool = False, stream=None) -> "Progress":
        """A bar when `stream` (stdout) is a terminal, lines otherwise, nothing when quiet."""
        stream = stream if stream is not None else sys.stdout
        if quiet:
            return cls("quiet", stream)
        isatty = getattr(stream, "isatty", lambda: False)
        return cls("bar" if isatty() else "lines", stream)

    def write(self, line: str) -> None:
        if self._write is not None:
            self._write(line)
        else:
            print(line, file=self.stream, flush=True)

    def epoch_start(self, epoch: int, epochs: int, steps: int):
        """A bar to .update(1) after each batch, or None."""
        if self.mode != "bar":
            return None
        width = len(str(epochs))
        return tqdm(total=steps, desc=f"epoch {epoch:>{width}}/{epochs}", unit="batch", leave=False,
                    file=self.stream, dynamic_ncols=True, mininterval=0.1, miniters=1)

    def epoch_end(self, rec: dict, epochs: int, bar=None) -> None:
        if bar is not None:
            bar.close()
        if self.mode != "quiet":
            width = terminal_width() if self.mode == "bar" else None
            self.write(format_epoch(rec, epochs, width))

    def compiling(self) -> "_CompileNotice":
        """A context for the kernels' first compile: with a bar, "compiling kernels ..." is
        shown meanwhile and replaced by the time it took (notice.done(seconds, timings));
        nothing otherwise (`--verbose` prints the timings)."""
        return _CompileNotice(self if self.mode == "bar" else None)

    def note(self, text: str) -> None:
        """A message of the run (early stopping, resuming): shown unless quiet."""
        if self.mode != "quiet":
            self.write(text)


class _CompileNotice:
    def __init__(self, progress: Optional[Progress]):
        self.progress = progress
        self.shown = False
        self.t0 = time.perf_counter()

    def __enter__(self) -> "_CompileNotice":
        if self.progress is not None:
            self.progress.stream.write("compiling kernels ...")
            self.progress.stream.flush()
            self.shown = True
        return self

    def done(self, seconds: float, timings: Optional[Dict[str, float]] = None) -> None:
        """The compile took `seconds` (0.0: nothing to compile, say nothing)."""
        if not self.shown:
            return
        self._clear()
        if seconds > 0:
            cached = any("from Numba's cache" in k for k in (timings or {}))
            what = "loaded kernels from the cache" if cached else "compiled kernels"
            self.progress.write(f"{what} in {seconds:.2f} s")

    def _clear(self) -> None:
        if self.shown:
            self.progress.stream.write("\r\033[K" if _ansi_ok(self.progress.stream) else "\r" + " " * 21 + "\r")
            self.progress.stream.flush()
            self.shown = False

    def __exit__(self, *exc) -> None:
        self._clear()


def _ansi_ok(stream) -> bool:
    return getattr(stream, "isatty", lambda: False)()


def terminal_width() -> int:
    """The columns of the terminal (COLUMNS, else the terminal's size, else 80)."""
    return shutil.get_terminal_size((80, 24)).columns


def fmt_metric(v: float, width: int = 0) -> str:
    """4 decimals, or 4 significant digits in scientific notation once a value is huge
    (a diverging loss) or tiny."""
    text = f"{v:.4f}" if v == 0 or 1e-3 <= abs(v) < 1e6 or not math.isfinite(v) else f"{v:.4g}"
    return f"{text:>{width}}"


def format_epoch(rec: dict, epochs: int, width: Optional[int] = None) -> str:
    """The line of one epoch: its number, the train and val metrics, the lr and its time.
    With `width` (a terminal's columns) the line is made to fit: single spaces, then without
    the lr, the time and the metrics from the last, the losses kept."""
    digits = len(str(epochs))
    parts = [f"epoch {rec['epoch']:>{digits}}/{epochs}"]
    for split in ("train", "val"):
        for k, v in rec.get(split, {}).items():
            parts.append(f"{'' if split == 'train' else 'val_'}{k} {fmt_metric(v)}")
    parts.append(f"lr {rec['lr']:.4g}")
    parts.append(f"{rec['time'] * 1000:.0f} ms")
    line = "  ".join(parts)
    if width is None or len(line) < width:
        return line
    return _fit(parts, width - 1)


def _fit(parts, width: int) -> str:
    """parts joined by one space, dropping the least important until they fit `width` (the
    epoch number and the first loss always stay, cut if even they do not fit)."""
    parts = list(parts)
    drop = [len(parts) - 2, len(parts) - 1]                      # the lr, the time
    drop += [k for k in range(len(parts) - 3, 1, -1) if "loss" not in parts[k].split(" ")[0]]
    drop += [k for k in range(len(parts) - 3, 1, -1) if "loss" in parts[k].split(" ")[0]]
    gone = set()
    for k in drop:
        line = " ".join(p for i, p in enumerate(parts) if i not in gone)
        if len(line) <= width:
            return line
        gone.add(k)
    return " ".join(p for i, p in enumerate(parts) if i not in gone)[:width]
