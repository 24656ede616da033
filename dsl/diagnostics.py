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


class NetcError(Exception):
    """A mistake of the user's (in a .net file, the data or the command line). Never a bug."""

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


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    """A 'did you mean' hint for a misspelled name, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
