"""The `.net` language: its AST, its parser and its diagnostics."""
from . import ast
from .ast import Program, Span
from .diagnostics import Collector, Diagnostic, NetcError, UserError, closest, did_you_mean
from .parser import parse, parse_file

__all__ = ["ast", "parse", "parse_file", "Program", "NetcError", "UserError", "Diagnostic", "Collector",
           "closest", "did_you_mean", "Span"]
