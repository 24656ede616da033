"""The call API of built-in functions: what a built-in's implementation may use.

A built-in (see `builtins.py`) is a function of one `Call`: it reads its arguments
(`tensor`, `number`, `value`, `has`, `exprs`), adds nodes to the graph (`G`, `elementwise`),
makes params (`new_param`, `init`), records a loss's prediction (`record_loss`), reads the
model's declarations (`target`, `params`), and reports mistakes (`error`, `warn`). It never
sees the elaborator itself: the elaborator implements `Host` and hands each call over.

`bind` matches a call's arguments to a signature [(name, default)], for built-ins and user
layers alike, so that arity and keyword errors are uniform and located.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from netc.dsl import ast as A
from netc.dsl.diagnostics import did_you_mean

from . import batching
from .ir import Graph
from .optim import step_leaf
from .values import InitSpec, ParamInfo, Ref, TargetInfo, Tensor, describe, is_number

REQUIRED = object()      # the default of a required argument in a signature


class Host(Protocol):
    """What a call needs of the elaborator that expands it (implemented by `Elaborator`)."""
    G: Graph
    target: Optional[TargetInfo]
    params: List[ParamInfo]
    builtins: Dict[str, Any]

    def eval(self, scope, expr) -> Any: ...
    def error(self, span, msg, hint=None) -> None: ...       # records the error; does not return
    def warn(self, span, msg, hint=None) -> None: ...
    def float_tensor(self, node: int, expr) -> int: ...
    def new_param(self, name: str, shape, init: InitSpec, span, trainable: bool = True) -> int: ...
    def call_prefix(self, what: str) -> str: ...
    def eval_init(self, scope, expr, default: InitSpec) -> InitSpec: ...
    def record_loss(self, prediction: int, kind: str) -> None: ...


class Call:
    """One call of a built-in, with its arguments bound (name -> AST expression or default).
    Arguments are evaluated when asked for, in the order the built-in asks."""

    def __init__(self, host: Host, scope, expr: A.Call, args: Dict[str, Any]):
        self._host, self._scope, self._expr, self._args = host, scope, expr, args
        self._prefix: Optional[str] = None

    # ---------------------------------------------------------- the call itself
    @property
    def name(self) -> str:
        """The function's name (`relu`), also when called through an argument (`act(h)`)."""
        return self._expr.func

    @property
    def span(self) -> A.Span:
        """Where the whole call is written."""
        return self._expr.span

    @property
    def G(self) -> Graph:
        """The graph the call adds its nodes to."""
        return self._host.G

    # ---------------------------------------------------------- arguments
    def has(self, arg: str) -> bool:
        """Whether argument `arg` is given (it is not its default None)."""
        return self._args[arg] is not None

    def span_of(self, arg: str) -> A.Span:
        """Where argument `arg` is written (the whole call when it is a default)."""
        a = self._args[arg]
        return a.span if hasattr(a, "span") else self._expr.span

    def written_name(self, arg: str) -> str:
        """The name written as argument `arg` (`y` in `mse(p, y)`), else the argument's name."""
        return getattr(self._args[arg], "id", arg)

    def value(self, arg: str):
        """Argument `arg` evaluated: a Tensor, a number, a bool, a Ref, a list or a string."""
        a = self._args[arg]
        if isinstance(a, (A.Num, A.Str, A.Bool, A.Name, A.BinOp, A.UnaryOp, A.Call, A.ListExpr)):
            return self._host.eval(self._scope, a)
        return a             # a Python default

    def tensor(self, arg: str, labels: bool = False) -> int:
        """Argument `arg` as a graph node (numbers become constants); class labels only where
        `labels` allows them."""
        v = self.value(arg)
        if isinstance(v, Tensor):
            if not labels:
                a = self._args[arg]
                self._host.float_tensor(v.node, a if hasattr(a, "span") else self._expr)
            return v.node
        if is_number(v):
            return self.G.const(float(v))
        hint = f"'{v.name}' is a function: call it" if isinstance(v, Ref) and v.name in self._host.builtins else None
        self._host.error(self.span_of(arg), f"argument '{arg}' of {self.name} must be a tensor, "
                         f"got {describe(v)}", hint)

    def number(self, arg: str) -> float:
        """Argument `arg` as a finite number."""
        v = self.value(arg)
        if not is_number(v) or not math.isfinite(v):
            self._host.error(self.span_of(arg), f"argument '{arg}' of {self.name} must be a finite number, "
                             f"got {describe(v)}")
        return v

    def exprs(self, arg: str) -> List[A.Expr]:
        """The expressions of a variadic argument (`concat(a, b)`) or of a list written as the
        argument (`concat([a, b])`, `l2([W1, W2])`): handles for `evaluate` and `real`."""
        a = self._args[arg]
        items = list(a) if isinstance(a, list) else [a]
        if len(items) == 1 and isinstance(items[0], A.ListExpr):
            return list(items[0].items)
        return items

    def item_spans(self, arg: str, n: int) -> List[A.Span]:
        """Where each of the `n` items of a list-valued argument is written: the items of a list
        literal, or the argument itself for each when the list comes from a name."""
        a = self._args[arg]
        if isinstance(a, A.ListExpr):
            return [i.span for i in a.items]
        return [self.span_of(arg)] * n

    def evaluate(self, expr: A.Expr):
        """One expression of `exprs`, evaluated."""
        return self._host.eval(self._scope, expr)

    def real(self, node: int, expr: A.Expr) -> int:
        """`node`, which must hold real numbers, not class labels (`expr` is where it is written)."""
        return self._host.float_tensor(node, expr)

    # ---------------------------------------------------------- building
    def elementwise(self, op: str, x: int, y: int) -> int:
        """A broadcasting binary op of per-sample values (see batching.elementwise)."""
        return batching.elementwise(self.G, op, x, y, self.span, self.name, self._host.error)

    def init(self, arg: str, default: InitSpec) -> InitSpec:
        """Argument `arg` as an initializer, `default` when it is not given."""
        expr = self._args[arg]
        return self._host.eval_init(self._scope, expr, default) if expr is not None else default

    def new_param(self, local: str, shape: Sequence[int], init: InitSpec) -> int:
        """A param of this call, named after the definition the call appears in and the call
        (`h.dense.W`, then `h.dense_1.W` for a second call), made where the call is written."""
        if self._prefix is None:
            self._prefix = self._host.call_prefix(self.name)
        return self._host.new_param(f"{self._prefix}.{local}", tuple(shape), init, self._expr.span)

    def new_buffer(self, local: str, shape: Sequence[int], init: InitSpec) -> int:
        """A buffer of this call, named like its params (`bn.batchnorm.running_mean`): model
        state that the train step may update (through `update`) but that has no gradient, no
        optimizer update and no regularization; saved, loaded and resumed with the params."""
        if self._prefix is None:
            self._prefix = self._host.call_prefix(self.name)
        return self._host.new_param(f"{self._prefix}.{local}", tuple(shape), init, self._expr.span, trainable=False)

    def step(self) -> int:
        """The train step's 1-based step count (a scalar input of the train step)."""
        return step_leaf(self.G)

    def update(self, buffer: int, value: int) -> None:
        """The train step assigns `value` to `buffer` (evaluate and predict leave it as is)."""
        self.G.outputs[f"update:{self.G.node(buffer)['name']}"] = value

    def record_loss(self, prediction: int) -> None:
        """Records that this loss function compares `prediction` (for the default output)."""
        self._host.record_loss(prediction, self.name)

    @property
    def target(self) -> Optional[TargetInfo]:
        """The model's `target` declaration, if any."""
        return self._host.target

    @property
    def params(self) -> Tuple[ParamInfo, ...]:
        """The params made so far (all of them for terms over `weights` or `params`)."""
        return tuple(self._host.params)

    # ---------------------------------------------------------- diagnostics
    def error(self, msg: str, hint: Optional[str] = None, arg: Optional[str] = None,
              at: Optional[A.Span] = None) -> None:
        """Reports a mistake at argument `arg`, at the span `at`, or at the whole call, and
        abandons the statement (does not return)."""
        span = at if at is not None else self.span_of(arg) if arg else self._expr.span
        self._host.error(span, msg, hint)

    def warn(self, msg: str, hint: Optional[str] = None, arg: Optional[str] = None) -> None:
        """A warning at argument `arg`, or at the whole call."""
        self._host.warn(self.span_of(arg) if arg else self._expr.span, msg, hint)


def bind(e: A.Call, signature, what: str, error) -> Dict[str, Any]:
    """Match a call's positional and keyword arguments to a signature [(name, default)], with
    REQUIRED as the default of a required argument and a last name `*xs` taking the rest.
    `error(span, message, hint=None)` reports a mistake and does not return."""
    names = [n for n, _ in signature]
    out: Dict[str, Any] = {}
    variadic = names and names[-1].startswith("*")
    if len(e.args) > len(names) and not variadic:
        error(e.args[len(names)].span,
              f"{what} takes {len(names)} argument{'s' if len(names) != 1 else ''} ({', '.join(names)}), "
              f"got {len(e.args) + len(e.kwargs)}")
    for i, a in enumerate(e.args):
        if variadic and i >= len(names) - 1:
            out.setdefault(names[-1], []).append(a)
        else:
            out[names[i]] = a
    for kw in e.kwargs:
        if kw.name not in names or (variadic and kw.name == names[-1]):
            error(kw.span, f"unknown argument '{kw.name}' of {what}",
                  did_you_mean(kw.name, names) or "allowed: " + ", ".join(names))
        if kw.name in out:
            error(kw.span, f"argument '{kw.name}' of {what} is given twice")
        out[kw.name] = kw.value
    for n, default in signature:
        if n not in out:
            if default is REQUIRED:
                error(e.span, f"{what} needs the argument '{n}'",
                      f"call it as {e.func}({', '.join(x for x, d in signature if d is REQUIRED)})")
            out[n] = default if not n.startswith("*") else []
    return out
