"""User-facing errors: one exception type carrying every diagnostic of a check, sorted by position.

A diagnostic renders as

    model.net:7:12: error: shapes [3, 2] and [4] do not match for '@'
        h_pre = W_h @ x + b_h
                ^^^^^^^
    hint: ...
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, List, Optional

from .ast import Span, NO_SPAN


@dataclass
class Diagnostic:
    span: Span
    message: str
    hint: Optional[str] = None
    severity: str = "error"          # "error" or "warning"

    def sort_key(self):
        return (self.span.file, self.span.line, self.span.col)


def _caret_lines(span: Span, source: Optional[str]) -> List[str]:
    if not source or span.line <= 0:
        return []
    lines = source.splitlines()
    if span.line > len(lines):
        return []
    text = lines[span.line - 1].expandtabs(1)
    start = max(span.col - 1, 0)
    if span.end_line == span.line and span.end_col > span.col:
        width = span.end_col - span.col
    else:
        width = max(len(text.rstrip()) - start, 1)
    width = max(1, min(width, max(len(text) - start, 1)))
    return ["    " + text, "    " + " " * start + "^" * width]


def render(diag: Diagnostic, source: Optional[str]) -> str:
    if diag.span.line > 0:
        head = f"{diag.span}: {diag.severity}: {diag.message}"
    elif diag.span.file == NO_SPAN.file:          # not tied to a file: the command line, a path
        head = f"{diag.severity}: {diag.message}"
    else:
        head = f"{diag.span.file}: {diag.severity}: {diag.message}"
    out = [head] + _caret_lines(diag.span, source)
    if diag.hint:
        out.append(f"    hint: {diag.hint}")
    return "\n".join(out)


class UserError(Exception):
    """The base of every error that is the user's mistake -- in a .net file, the data, the
    command line, a run directory or the environment -- and never a bug. The CLI catches this
    one class: it prints the message and exits with status 2, without a traceback."""

    def render(self) -> str:
        return f"error: {self}"


class NetcError(UserError):
    """A mistake of the user's located in a source (a .net file, or the command line when the
    span is empty): one or more diagnostics, sorted by position."""

    def __init__(self, diagnostics: Iterable[Diagnostic], source: Optional[str] = None):
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(render(d, self.source) for d in self.diagnostics)

    @classmethod
    def single(cls, message: str, span: Span = NO_SPAN, hint: Optional[str] = None,
               source: Optional[str] = None) -> "NetcError":
        return cls([Diagnostic(span, message, hint)], source)


class Collector:
    """Gathers diagnostics during a check so that all of them are reported at once."""

    def __init__(self, source: Optional[str] = None):
        self.source = source
        self.errors: List[Diagnostic] = []
        self.warnings: List[Diagnostic] = []

    def error(self, span: Span, message: str, hint: Optional[str] = None) -> None:
        self.errors.append(Diagnostic(span, message, hint))

    def warn(self, span: Span, message: str, hint: Optional[str] = None) -> None:
        self.warnings.append(Diagnostic(span, message, hint, "warning"))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise NetcError(self.errors, self.source)


def closest(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate closest to a misspelled `name`, compared case-insensitively
    (`Relu` finds `relu`, `W_H` finds `W_h`), or None when none is close."""
    by_folded: dict = {}
    for c in sorted(set(candidates)):
        by_folded.setdefault(c.casefold(), c)
    folded = name.casefold()
    if folded in by_folded:
        return by_folded[folded]
    close = difflib.get_close_matches(folded, list(by_folded), n=1, cutoff=0.6)
    return by_folded[close[0]] if close else None


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The one 'did you mean' hint of netc: "did you mean 'x'?" for the closest candidate
    (see `closest`), or None."""
    close = closest(name, candidates)
    return f"did you mean '{close}'?" if close else None
