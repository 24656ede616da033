"""The values of the front end: what the elaborator computes with (Tensor, Ref, StaticCall) and
what it hands to the rest of netc (ModelIR with its ParamInfo, LossInfo, TargetInfo, InitSpec).

Plain data only: this module imports nothing of the compiler but the IR's Graph, so every other
part of netc (built-ins, passes, backends, the runtime's settings) can read these types without
depending on how a program is elaborated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from netc.dsl import ast as A

from .ir import Graph


# ------------------------------------------------------------------ values of expressions
@dataclass(frozen=True)
class Tensor:
    """A value computed by the graph: the id of its node."""
    node: int


@dataclass(frozen=True)
class StaticCall:
    """A call kept as data (initializers, data sources, schedules, `early(...)`)."""
    name: str
    args: tuple
    kwargs: tuple            # ((key, value), ...)
    span: A.Span
    kwarg_spans: tuple = ()  # the span of each `key=value`, in the order of `kwargs`

    def kw(self) -> dict:
        return dict(self.kwargs)

    def span_of(self, key: str) -> A.Span:
        """Where `key=...` is written (the whole call when it is not)."""
        for (k, _), sp in zip(self.kwargs, self.kwarg_spans):
            if k == key:
                return sp
        return self.span


@dataclass(frozen=True, repr=False)
class Ref:
    """A bare name that is not a tensor: `weights`, `params`, an activation used as `act=relu`.
    Its repr is the name as written, so a message quoting a value (`got {v!r}`) shows the
    user's text, never an internal type."""
    name: str

    def __repr__(self) -> str:
        return self.name


# ------------------------------------------------------------------ the elaborated model
@dataclass
class InitSpec:
    kind: str                # a name of compiler.initializers (zeros, const, normal, uniform, glorot, ...)
    args: Tuple[float, ...] = ()


@dataclass
class ParamInfo:
    name: str
    shape: Tuple[int, ...]
    init: InitSpec
    node: int
    span: A.Span
    is_weight: bool          # a matrix (regularized by l2(weights)); biases are not
    trainable: bool = True   # False: a buffer (batchnorm's running statistics, dropout's seed):
                             # no gradient, no optimizer update, never regularized; saved like a param


@dataclass
class LossInfo:
    name: str
    node: int                # the term's batch mean, a scalar
    span: A.Span


@dataclass
class TargetInfo:
    name: str
    kind: str                # class | real
    shape: Tuple[int, ...]   # per sample: () for class labels
    classes: Optional[int]
    node: int
    span: A.Span


@dataclass
class ModelIR:
    name: str
    graph: Graph
    input_name: str
    input_shape: Tuple[int, ...]
    input_node: int
    target: Optional[TargetInfo]
    params: List[ParamInfo]
    losses: List[LossInfo]
    output: Optional[int]
    output_name: str
    optimizer: Tuple[str, dict, A.Span]
    schedule: Optional[StaticCall]
    train: Dict[str, Tuple[Any, A.Span]]          # key -> (value, span)
    warnings: list = field(default_factory=list)
    loss_kinds: List[str] = field(default_factory=list)   # the loss functions called, in order
    defs: Dict[str, int] = field(default_factory=dict)    # top-level name -> its tensor's node (summary)


# ------------------------------------------------------------------ helpers on values
def static_value(e: A.Expr):
    """An AST expression as plain data (for train settings and initializers)."""
    if isinstance(e, (A.Num, A.Str, A.Bool)):
        return e.value
    if isinstance(e, A.Name):
        return Ref(e.id)
    if isinstance(e, A.UnaryOp) and isinstance(e.operand, A.Num):
        return -e.operand.value
    if isinstance(e, A.ListExpr):
        return [static_value(i) for i in e.items]
    if isinstance(e, A.Call):
        return StaticCall(e.func, tuple(static_value(a) for a in e.args),
                          tuple((k.name, static_value(k.value)) for k in e.kwargs), e.span,
                          tuple(k.span for k in e.kwargs))
    if isinstance(e, A.BinOp) and isinstance(e.left, A.Num) and isinstance(e.right, A.Num):
        try:
            r = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
                 "/": lambda a, b: a / b, "**": lambda a, b: a ** b}.get(e.op, lambda a, b: None)(
                e.left.value, e.right.value)
        except (ArithmeticError, ValueError):
            return None
        return r if isinstance(r, int) or (isinstance(r, float) and math.isfinite(r)) else None
    return None


def is_number(v) -> bool:
    """A Python number of the language (true and false are not numbers)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def describe(v) -> str:
    """A value as the user would name it, for messages."""
    if isinstance(v, Tensor):
        return "a tensor"
    if isinstance(v, Ref):
        return f"'{v.name}'"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)
