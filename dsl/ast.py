"""The AST of a `.net` file: frozen dataclasses, every node carrying the `Span` it came from.

The parser builds these; the compiler reads them. Nothing here knows about graphs or kernels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union


@dataclass(frozen=True)
class Span:
    """A range of source text: 1-based line and column; `end_*` is exclusive like Lark's."""
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_SPAN = Span("<builtin>", 0, 0, 0, 0)


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Num:
    value: float            # int-valued literals keep an int value
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class Str:
    value: str
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class Name:
    """A name; dotted names (`val.loss`) keep their dots in `id`."""
    id: str
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class BinOp:
    op: str                 # one of + - * / ** @
    left: "Expr"
    right: "Expr"
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class UnaryOp:
    op: str                 # "-" (a unary "+" is dropped by the parser)
    operand: "Expr"
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class Keyword:
    name: str
    value: "Expr"
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class Call:
    func: str
    args: Tuple["Expr", ...]
    kwargs: Tuple[Keyword, ...]
    span: Span = field(default=NO_SPAN, compare=False)
    func_span: Span = field(default=NO_SPAN, compare=False)   # the callee's name alone

    def kwarg(self, name: str) -> Optional["Expr"]:
        for k in self.kwargs:
            if k.name == name:
                return k.value
        return None


@dataclass(frozen=True)
class ListExpr:
    items: Tuple["Expr", ...]
    span: Span = field(default=NO_SPAN, compare=False)


Expr = Union[Num, Str, Bool, Name, BinOp, UnaryOp, Call, ListExpr]


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class ModelDecl:
    name: str
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class InputDecl:
    name: str
    dims: Tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False)
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class TargetDecl:
    """`target y: class[10]` has kind "class"; `target r[1]` has kind "real"."""
    name: str
    kind: str
    dims: Tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False)
    name_span: Span = field(default=NO_SPAN, compare=False)
    kind_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class ParamDecl:
    name: str
    dims: Tuple[Expr, ...]
    init: Optional[Expr]
    span: Span = field(default=NO_SPAN, compare=False)
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class Assign:
    name: str
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False)
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class OutputDecl:
    name: str
    span: Span = field(default=NO_SPAN, compare=False)
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class LossDecl:
    name: Optional[str]
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class OptimizerDecl:
    call: Call
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class ScheduleDecl:
    call: Call
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class TrainItem:
    """`key = v1, v2, ...` inside a train block; a single value is a 1-tuple."""
    key: str
    values: Tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False)
    key_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class TrainBlock:
    items: Tuple[TrainItem, ...]
    span: Span = field(default=NO_SPAN, compare=False)

    def get(self, key: str) -> Optional[TrainItem]:
        for it in self.items:
            if it.key == key:
                return it
        return None


@dataclass(frozen=True)
class LayerParam:
    name: str
    default: Optional[Expr]
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True)
class LayerDef:
    """`layer name(p1, p2=default) { statements; return expr }`; body holds Assign and ParamDecl."""
    name: str
    params: Tuple[LayerParam, ...]
    body: Tuple[Union[Assign, ParamDecl], ...]
    ret: Expr
    span: Span = field(default=NO_SPAN, compare=False)
    name_span: Span = field(default=NO_SPAN, compare=False)


Statement = Union[ModelDecl, InputDecl, TargetDecl, ParamDecl, Assign, OutputDecl, LossDecl,
                  OptimizerDecl, ScheduleDecl, TrainBlock, LayerDef]


@dataclass(frozen=True)
class Program:
    file: str
    source: str
    statements: Tuple[Statement, ...]

    def of_type(self, cls):
        return [s for s in self.statements if isinstance(s, cls)]
