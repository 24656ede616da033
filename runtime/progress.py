"""How a training run shows its progress: a tqdm bar per epoch when the output is a terminal,
one line per epoch otherwise, nothing with `--quiet` (the final table is printed by the CLI)."""
from __future__ import annotations

import math
import sys
from typing import Callable, Optional

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
                    file=self.stream, dynamic_ncols=True, mininterval=0.1)

    def epoch_end(self, rec: dict, epochs: int, bar=None) -> None:
        if bar is not None:
            bar.close()
        if self.mode != "quiet":
            self.write(format_epoch(rec, epochs))

    def note(self, text: str) -> None:
        """A message of the run (early stopping, resuming): shown unless quiet."""
        if self.mode != "quiet":
            self.write(text)


def fmt_metric(v: float, width: int = 0) -> str:
    """4 decimals, or 4 significant digits in scientific notation once a value is huge
    (a diverging loss) or tiny."""
    text = f"{v:.4f}" if v == 0 or 1e-3 <= abs(v) < 1e6 or not math.isfinite(v) else f"{v:.4g}"
    return f"{text:>{width}}"


def format_epoch(rec: dict, epochs: int) -> str:
    """The line of one epoch: its number, the train and val metrics, the lr and its time."""
    width = len(str(epochs))
    parts = [f"epoch {rec['epoch']:>{width}}/{epochs}"]
    for split in ("train", "val"):
        for k, v in rec.get(split, {}).items():
            parts.append(f"{'' if split == 'train' else 'val_'}{k} {fmt_metric(v)}")
    parts.append(f"lr {rec['lr']:.4g}")
    parts.append(f"{rec['time'] * 1000:.0f} ms")
    return "  ".join(parts)
