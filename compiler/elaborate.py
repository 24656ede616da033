"""AST -> IR: resolves names, expands built-ins and user layers, adds the batch axis, checks
shapes. Every mistake becomes a located diagnostic; all of them are reported together.

Programs are written per sample: `W @ x + b` with x a vector becomes X Wᵀ + b on a batch.
Names are single-assignment and evaluated on demand, so statements may come in any order
that respects definitions (a cycle is an error).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import networkx as nx

from netc.dsl import ast as A
from netc.dsl.diagnostics import Collector, did_you_mean

from .ir import B, Graph, ShapeError, fmt_shape, is_batched, per_sample
from .ops import broadcast_shape


class Abort(Exception):
    """Unwinds the evaluation of one statement after its error has been recorded."""


# ------------------------------------------------------------------ values
@dataclass(frozen=True)
class Tensor:
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


@dataclass(frozen=True)
class Ref:
    """A bare name that is not a tensor: `weights`, `params`, an activation used as `act=relu`."""
    name: str


# ------------------------------------------------------------------ results
@dataclass
class InitSpec:
    kind: str                # zeros | const | normal | uniform | glorot | glorot_normal | he | he_normal
    args: Tuple[float, ...] = ()


@dataclass
class ParamInfo:
    name: str
    shape: Tuple[int, ...]
    init: InitSpec
    node: int
    span: A.Span
    is_weight: bool          # a matrix (regularized by l2(weights)); biases are not


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


# ------------------------------------------------------------------ scopes
class Scope:
    """Definitions of one level (the file, or one expansion of a layer), evaluated on demand."""

    def __init__(self, prefix: str, parent: Optional["Scope"] = None):
        self.prefix, self.parent = prefix, parent
        self.defs: Dict[str, Any] = {}          # name -> statement
        self.values: Dict[str, Any] = {}        # name -> evaluated value
        self.busy: List[str] = []               # names being evaluated (cycle detection)

    def qualify(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name


class Elaborator:
    def __init__(self, program: A.Program):
        from .builtins import BUILTINS
        self.program = program
        self.diag = Collector(program.source)
        self.G = Graph()
        self.builtins = BUILTINS
        self.layers: Dict[str, A.LayerDef] = {}
        self.layer_stack: List[str] = []
        self.params: List[ParamInfo] = []
        self.param_names: Dict[str, int] = {}
        self.name_counts: Dict[str, int] = {}
        self.input: Optional[Tuple[str, Tuple[int, ...], int]] = None
        self.target: Optional[TargetInfo] = None
        self.predictions: List[int] = []           # first tensor argument of each loss call
        self.loss_kinds: List[str] = []
        self.call_scope: List[str] = []            # prefixes for params made by calls
        self.call_sites: List[Tuple[str, A.Span]] = []   # the layer calls being expanded

    # ---------------------------------------------------------- diagnostics
    def error(self, span, msg, hint=None):
        """Records an error and abandons the statement being evaluated."""
        if self.call_sites:          # inside a layer: say which call of it went wrong
            where = ", ".join(f"layer '{n}' called at line {sp.line}, column {sp.col}"
                              for n, sp in reversed(self.call_sites))
            hint = f"{hint} ({where})" if hint else f"in {where}"
        self.diag.error(span, msg, hint)
        raise Abort()

    # ---------------------------------------------------------- the program
    def run(self) -> ModelIR:
        prog = self.program
        top = Scope("")
        self.top = top
        model_decls = prog.of_type(A.ModelDecl)
        name = model_decls[0].name if model_decls else "model"
        if not model_decls:
            self.diag.error(A.Span(prog.file, 1, 1, 1, 2), "a .net file starts with `model NAME`",
                            "add a first line such as `model mymodel`")
        for extra in model_decls[1:]:
            self.diag.error(extra.span, "a second `model` statement", "a file describes one model")
        for st in prog.statements:
            if isinstance(st, A.LayerDef):
                if st.name in self.layers:
                    self.diag.error(st.name_span, f"layer '{st.name}' is defined twice "
                                    f"(first at line {self.layers[st.name].span.line})",
                                    "a layer is defined once; choose a new name")
                elif st.name in self.builtins:
                    self.diag.error(st.name_span, f"layer '{st.name}' has the name of a built-in",
                                    "choose another name")
                else:
                    self.layers[st.name] = st
            elif isinstance(st, (A.InputDecl, A.TargetDecl, A.ParamDecl, A.Assign)):
                self.define(top, st)
        # inputs and targets first: everything else depends on their shapes
        for st in prog.statements:
            if isinstance(st, (A.InputDecl, A.TargetDecl)):
                self.try_eval_name(top, st.name)
        if self.input is None and not prog.of_type(A.InputDecl):
            self.diag.error(A.Span(prog.file, 1, 1, 1, 2), "the model has no `input`",
                            "declare one, e.g. `input x[2]`")
        # definitions over `weights`/`params` see every param: they come after the others
        late = [st for st in prog.statements if isinstance(st, A.Assign) and uses_all_params(st.value)]
        for st in prog.statements:
            if isinstance(st, (A.ParamDecl, A.Assign)) and st not in late:
                self.try_eval_name(top, st.name)
        losses = self.eval_losses(top, late)
        output, output_name = self.eval_output(top)
        optimizer = self.eval_optimizer()
        schedules = prog.of_type(A.ScheduleDecl)
        schedule = static_value(schedules[0].call) if schedules else None
        for extra in schedules[1:]:
            self.diag.error(extra.span, "a second `schedule` statement")
        train = self.eval_train()
        self.check_unused(losses, output)
        self.diag.raise_if_errors()
        inp = self.input
        return ModelIR(name, self.G, inp[0], inp[1], inp[2], self.target, self.params, losses,
                       output, output_name, optimizer, schedule, train,
                       self.warnings(), self.loss_kinds)

    def warnings(self) -> list:
        """The warnings, sorted by position, each once (a layer called twice warns once)."""
        seen, out = set(), []
        for w in sorted(self.diag.warnings, key=lambda d: d.sort_key()):
            key = (w.span, w.message)
            if key not in seen:
                seen.add(key)
                out.append(w)
        return out

    def define(self, scope: Scope, st) -> None:
        if st.name in scope.defs:
            first = scope.defs[st.name]
            self.diag.error(st.name_span, f"'{st.name}' is defined twice (first at line {first.span.line})",
                            "a name is defined once; choose a new name")
            return
        scope.defs[st.name] = st

    def try_eval_name(self, scope: Scope, name: str):
        try:
            return self.lookup(scope, name, scope.defs[name].name_span)
        except Abort:
            return None

    # ---------------------------------------------------------- names
    def lookup(self, scope: Scope, name: str, span):
        s = scope
        while s is not None:
            if name in s.values:
                if s.values[name] is None:      # its definition failed: already reported
                    raise Abort()
                return s.values[name]
            if name in s.defs:
                return self.eval_def(s, name, span)
            s = s.parent
        if name in ("weights", "params") or name in self.builtins or name in INIT_NAMES or name in self.layers:
            return Ref(name)
        if name in self.param_names:         # a param by its full name: `h1.dense.W`
            return Tensor(self.param_names[name])
        known = set()
        s = scope
        while s is not None:
            known |= set(s.defs) | set(s.values)
            s = s.parent
        hint = did_you_mean(name, known | {"weights", "params"}) or \
            did_you_mean(name, list(self.builtins) + list(self.layers) + list(self.param_names))
        if hint is None and self.layer_stack:
            hint = "a layer sees only its arguments and its own definitions; pass the value as an argument"
        self.error(span, f"unknown name '{name}'", hint)

    def bound(self, scope: Scope, name: str) -> bool:
        """Whether `name` is an argument or a definition visible from `scope`."""
        s = scope
        while s is not None:
            if name in s.values or name in s.defs:
                return True
            s = s.parent
        return False

    def eval_def(self, scope: Scope, name: str, span):
        if name in scope.busy:
            cycle = " -> ".join(scope.busy[scope.busy.index(name):] + [name])
            self.error(span, f"'{name}' is defined in terms of itself ({cycle})",
                       "a name must be defined from names defined before it, without a cycle")
        st = scope.defs[name]
        scope.busy.append(name)
        value = None
        try:
            if isinstance(st, A.InputDecl):
                value = self.eval_input(st)
            elif isinstance(st, A.TargetDecl):
                value = self.eval_target(st)
            elif isinstance(st, A.ParamDecl):
                value = self.eval_param(scope, st)
            else:
                self.call_scope.append(scope.qualify(name))
                try:
                    value = self.eval(scope, st.value)
                finally:
                    self.call_scope.pop()
        finally:
            scope.busy.pop()
            scope.values[name] = value
        return value

    # ---------------------------------------------------------- declarations
    def eval_dims(self, scope, dims, what) -> Tuple[int, ...]:
        out = []
        for d in dims:
            v = self.eval(scope, d)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
                got = f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else describe(v)
                self.error(d.span, f"the size of {what} must be a whole number, got {got}",
                           "sizes are numbers, or dim(x) for the size of a vector")
            if v <= 0:
                self.error(d.span, f"the size of {what} must be positive, got {int(v)}")
            out.append(int(v))
        return tuple(out)

    def eval_input(self, st: A.InputDecl):
        if self.input is not None:
            self.error(st.name_span, "a second `input`", "netc models have one input for now")
        shape = self.eval_dims(self.top, st.dims, f"input '{st.name}'")
        node = self.G.leaf("input", st.name, (B,) + shape, span=st.span)
        self.input = (st.name, shape, node)
        return Tensor(node)

    def eval_target(self, st: A.TargetDecl):
        if self.target is not None:
            self.error(st.name_span, "a second `target`", "netc models have one target for now")
        shape = self.eval_dims(self.top, st.dims, f"target '{st.name}'")
        if st.kind == "class":
            if len(shape) != 1:
                self.error(st.span, "a class target has one size: the number of classes",
                           "write e.g. `target y: class[10]`")
            if shape[0] < 2:
                self.error(st.dims[0].span, "a class target needs at least 2 classes")
            node = self.G.leaf("target", st.name, (B,), dtype="int", span=st.span)
            self.target = TargetInfo(st.name, "class", (), shape[0], node, st.span)
        elif st.kind == "real":
            node = self.G.leaf("target", st.name, (B,) + shape, span=st.span)
            self.target = TargetInfo(st.name, "real", shape, None, node, st.span)
        else:
            self.error(st.kind_span, f"unknown target kind '{st.kind}'",
                       did_you_mean(st.kind, ["class"]) or "write `target y: class[C]` or `target r[k]`")
        return Tensor(node)

    def eval_param(self, scope: Scope, st: A.ParamDecl):
        shape = self.eval_dims(scope, st.dims, f"param '{st.name}'")
        default = InitSpec("zeros") if len(shape) < 2 else InitSpec("glorot")
        try:
            init = self.eval_init(scope, st.init, default=default)
        except Abort:
            # reported; the param's shape is known, so its uses can still be checked
            init = default
        return Tensor(self.new_param(scope.qualify(st.name), shape, init, st.span))

    def new_param(self, name: str, shape, init: InitSpec, span) -> int:
        node = self.G.leaf("param", name, tuple(shape), span=span)
        self.params.append(ParamInfo(name, tuple(shape), init, node, span, is_weight=len(shape) >= 2))
        self.param_names[name] = node
        return node

    def unique_scope(self, base: str) -> str:
        """`h.dense`, then `h.dense_1`, ...: each call site's params get their own names."""
        k = self.name_counts.get(base, 0)
        self.name_counts[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def call_prefix(self, what: str) -> str:
        outer = self.call_scope[-1] if self.call_scope else ""
        return self.unique_scope(f"{outer}.{what}" if outer else what)

    def eval_init(self, scope, expr, default: InitSpec) -> InitSpec:
        """An initializer: a number, a name (`glorot`) or a call (`normal(0, 0.1)`)."""
        if expr is None:
            return default
        if isinstance(expr, A.Call):
            name, where = expr.func, expr.func_span
        elif isinstance(expr, A.Name) and not self.bound(scope, expr.id):
            name, where = expr.id, expr.span
        else:
            v = self.eval(scope, expr)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if not math.isfinite(v):
                    self.error(expr.span, f"a constant initializer must be a finite number, got {v}")
                return InitSpec("zeros") if v == 0 else InitSpec("const", (float(v),))
            name, where = (v.name if isinstance(v, Ref) else None), expr.span
        if name not in INIT_NAMES:
            shown = f"'{name}'" if name is not None else "this expression"
            self.error(where, f"unknown initializer {shown}",
                       did_you_mean(str(name), INIT_NAMES) or "one of: " + ", ".join(INIT_NAMES) + ", or a number")
        want = INIT_NAMES[name]
        names = [k for k, _ in want]
        given: Dict[str, float] = {}
        if isinstance(expr, A.Call):
            if len(expr.args) > len(want):
                self.error(expr.args[len(want)].span,
                           f"initializer '{name}' takes {len(want)} argument{'s' if len(want) != 1 else ''}"
                           + (f" ({', '.join(names)})" if want else "") + f", got {len(expr.args)}")
            given = {k: self.number(scope, a) for k, a in zip(names, expr.args)}
            for kw in expr.kwargs:
                if kw.name not in names:
                    self.error(kw.span, f"unknown argument '{kw.name}' of initializer '{name}'",
                               did_you_mean(kw.name, names) or ("allowed: " + ", ".join(names) if names
                                                                 else f"'{name}' takes no arguments"))
                if kw.name in given:
                    self.error(kw.span, f"argument '{kw.name}' of initializer '{name}' is given twice")
                given[kw.name] = self.number(scope, kw.value)
        missing = [k for k, d in want if k not in given and d is None]
        if missing:
            self.error(expr.span, f"initializer '{name}' needs {' and '.join(repr(k) for k in missing)}",
                       f"write e.g. `{INIT_EXAMPLES[name]}`")
        args = tuple(float(given.get(k, d)) for k, d in want)
        if not all(math.isfinite(a) for a in args):
            self.error(expr.span, f"the arguments of initializer '{name}' must be finite numbers")
        if name == "normal" and args[1] <= 0:
            self.error(expr.span, f"the standard deviation of normal must be positive, got {args[1]:g}")
        if name == "uniform" and not args[0] < args[1]:
            self.error(expr.span, f"uniform(low, high) needs low < high, got {args[0]:g} and {args[1]:g}")
        return InitSpec(name, args)

    def number(self, scope, expr) -> float:
        v = self.eval(scope, expr)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.error(expr.span, f"expected a number here, got {describe(v)}")
        return v

    # ---------------------------------------------------------- expressions
    def eval(self, scope: Scope, e):
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, (A.Str, A.Bool)):
            return e.value
        if isinstance(e, A.Name):
            return self.lookup(scope, e.id, e.span)
        if isinstance(e, A.ListExpr):
            return [self.eval(scope, i) for i in e.items]
        if isinstance(e, A.UnaryOp):
            v = self.eval(scope, e.operand)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v
            return Tensor(self.G.add("neg", [self.float_tensor(self.tensor(v, e.operand), e.operand)], span=e.span))
        if isinstance(e, A.BinOp):
            return self.binop(scope, e)
        if isinstance(e, A.Call):
            return self.call(scope, e)
        self.error(e.span, "this expression cannot be used here")

    def tensor(self, v, expr) -> int:
        """A value as a graph node: numbers become constants."""
        if isinstance(v, Tensor):
            return v.node
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return self.G.const(float(v))
        hint = None
        if isinstance(v, Ref) and (v.name in self.builtins or v.name in self.layers):
            hint = f"'{v.name}' is a function: call it, e.g. {v.name}(x)"
        elif isinstance(v, Ref) and v.name in ("weights", "params"):
            hint = f"'{v.name}' stands for a set of params: use it inside l2(...) or l1(...)"
        self.error(expr.span, f"expected a tensor or a number, got {describe(v)}", hint)

    def float_tensor(self, node: int, expr) -> int:
        """`node`, which must hold real numbers: class labels only go to cross_entropy and onehot."""
        if self.G.node(node)["dtype"] == "int":
            name = f"'{expr.id}'" if isinstance(expr, A.Name) else "this value"
            self.error(expr.span, f"{name} holds class labels (whole numbers 0..C-1), not real values",
                       "compute with onehot(y), or give the labels to cross_entropy")
        return node

    def binop(self, scope, e: A.BinOp):
        try:
            a = self.eval(scope, e.left)
        except Abort:
            self.eval(scope, e.right)      # its own mistakes are reported too, then give up
            raise
        b = self.eval(scope, e.right)
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        if num(a) and num(b):
            if e.op == "@":
                self.error(e.span, "'@' multiplies matrices and vectors, not numbers", "use '*' for numbers")
            try:
                r = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
                     "**": lambda: a ** b}[e.op]()
            except ZeroDivisionError:
                self.error(e.span, "division by zero")
            except (OverflowError, ValueError):
                r = math.inf
            if not isinstance(r, (int, float)) or not math.isfinite(r):
                show = lambda v: f"({v:g})" if v < 0 else f"{v:g}"
                self.error(e.span, f"{show(a)} {e.op} {show(b)} is not a finite real number")
            return r
        x, y = self.float_tensor(self.tensor(a, e.left), e.left), self.float_tensor(self.tensor(b, e.right), e.right)
        if e.op == "@":
            return Tensor(self.matmul(x, y, e))
        op = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}[e.op]
        return Tensor(self.elementwise(op, x, y, e.span, f"'{e.op}'"))

    def elementwise(self, op: str, x: int, y: int, span, what: str) -> int:
        """A broadcasting binary op with per-sample semantics: per-sample shapes broadcast
        right-aligned, and the batch axis stays first."""
        G = self.G
        sx, sy = G.shape(x), G.shape(y)
        px, py = per_sample(sx), per_sample(sy)
        try:
            out = broadcast_shape([px, py])
        except ShapeError:
            self.error(span, f"shapes {fmt_shape(sx)} and {fmt_shape(sy)} do not match for {what}",
                       "sizes must be equal or 1 (compared from the right)")
        if is_batched(sx) or is_batched(sy):
            x = self.align(x, len(out))
            y = self.align(y, len(out))
        return G.add(op, [x, y], span=span)

    def align(self, n: int, rank: int) -> int:
        """Pad a batched value's per-sample shape with 1s on the left up to `rank`."""
        s = self.G.shape(n)
        if not is_batched(s) or len(s) - 1 == rank:
            return n
        return self.G.add("reshape", [n], {"shape": (B,) + (1,) * (rank - len(s) + 1) + tuple(s[1:])})

    def matmul(self, x: int, y: int, e) -> int:
        G = self.G
        sx, sy = G.shape(x), G.shape(y)
        px, py = per_sample(sx), per_sample(sy)
        bx, by = is_batched(sx), is_batched(sy)

        def bad(msg=None):
            self.error(e.span, msg or f"shapes {fmt_shape(sx)} and {fmt_shape(sy)} do not fit for '@'",
                       f"'A @ B' needs the last size of A ({px[-1]}) to equal the first size of B ({py[0]})"
                       if msg is None else None)
        if not px or not py:
            bad(f"'@' needs vectors or matrices, got {fmt_shape(sx)} and {fmt_shape(sy)}; use '*' to scale by a number")
        if px[-1] != py[0]:
            bad()
        if bx and by:
            self.error(e.span, "'@' between two per-sample values is not supported",
                       "one operand must be a param (a matrix shared by all samples)")
        if not bx and not by:
            if len(px) == 2 and len(py) == 2:
                return G.add("matmul", [x, y], span=e.span)
            if len(px) == 2 and len(py) == 1:
                r = G.add("matmul", [G.add("reshape", [y], {"shape": (1, py[0])}), x], {"tb": True}, span=e.span)
                return G.add("reshape", [r], {"shape": (px[0],)})
            if len(px) == 1 and len(py) == 2:
                r = G.add("matmul", [G.add("reshape", [x], {"shape": (1, px[0])}), y], span=e.span)
                return G.add("reshape", [r], {"shape": (py[1],)})
            r = G.add("matmul", [G.add("reshape", [x], {"shape": (1, px[0])}),
                                 G.add("reshape", [y], {"shape": (py[0], 1)})], span=e.span)
            return G.add("reshape", [r], {"shape": ()})
        if by:      # W @ x: per sample [o, i] @ [i]  ->  X Wᵀ
            if len(py) != 1 or len(px) > 2:
                bad("'@' with a per-sample operand needs a vector: W @ x with W a matrix and x a vector")
            w = x if len(px) == 2 else G.add("reshape", [x], {"shape": (1, px[0])})
            r = G.add("matmul", [y, w], {"tb": True}, span=e.span)
            return r if len(px) == 2 else G.add("reshape", [r], {"shape": (B,)})
        # x @ W: per sample [i] @ [i, o]  ->  X W
        if len(px) != 1 or len(py) > 2:
            bad("'@' with a per-sample operand needs a vector: x @ W with x a vector and W a matrix")
        w = y if len(py) == 2 else G.add("reshape", [y], {"shape": (py[0], 1)})
        r = G.add("matmul", [x, w], span=e.span)
        return r if len(py) == 2 else G.add("reshape", [r], {"shape": (B,)})

    # ---------------------------------------------------------- calls
    def call(self, scope, e: A.Call):
        if self.bound(scope, e.func):
            # a name that holds a function: `act(h)` in a layer called with act=relu
            v = self.lookup(scope, e.func, e.func_span)
            if not (isinstance(v, Ref) and (v.name in self.builtins or v.name in self.layers)):
                self.error(e.func_span, f"'{e.func}' is not a function: it holds {describe(v)}",
                           "only a name given a built-in or a layer (e.g. act=relu) can be called")
            e = dataclasses.replace(e, func=v.name)
        if e.func in self.layers:
            return self.expand_layer(scope, e)
        spec = self.builtins.get(e.func)
        if spec is None:
            self.error(e.func_span, f"unknown function or layer '{e.func}'",
                       did_you_mean(e.func, list(self.builtins) + list(self.layers)))
        args = bind(self, e, spec.signature, e.func)
        return spec.fn(Call(self, scope, e, args))

    def expand_layer(self, scope, e: A.Call):
        """The layer's body, evaluated in a scope of its own with the call's arguments: each
        call site gets its own params, named after the definition the call appears in."""
        ld = self.layers[e.func]
        if e.func in self.layer_stack:
            chain = " -> ".join(self.layer_stack + [e.func])
            self.error(e.func_span, f"layer '{e.func}' calls itself ({chain})", "layers may not be recursive")
        sig = [(p.name, p.default if p.default is not None else REQUIRED) for p in ld.params]
        defaults = {p.name: p.default for p in ld.params}
        args = bind(self, e, sig, f"layer '{ld.name}'")
        own = Scope("")                 # where defaults are evaluated: built-ins and layers only
        values = {}
        for name, expr in args.items():
            if isinstance(expr, _Given):
                values[name] = expr.value
            else:
                values[name] = self.eval(own if expr is defaults[name] else scope, expr)
        prefix = self.call_prefix(ld.name)
        inner = Scope(prefix)           # layer bodies see their arguments and layers only
        inner.values.update(values)
        self.layer_stack.append(e.func)
        self.call_sites.append((e.func, e.func_span))
        self.call_scope.append(prefix)
        try:
            for st in ld.body:
                if st.name in values:
                    self.error(st.name_span, f"'{st.name}' is an argument of layer '{ld.name}' and cannot be "
                               "defined again in it", "choose a new name")
                self.define(inner, st)
            for st in ld.body:
                self.lookup(inner, st.name, st.name_span)
            return self.eval(inner, ld.ret)
        finally:
            self.call_scope.pop()
            self.call_sites.pop()
            self.layer_stack.pop()

    # ---------------------------------------------------------- losses, output, optimizer, train
    def eval_losses(self, top: Scope, late) -> List[LossInfo]:
        decls = self.program.of_type(A.LossDecl)
        # terms over `weights`/`params` see every param, so they come after the others
        first = [k for k, d in enumerate(decls) if not uses_all_params(d.value)]
        ordered = first + [None] + [k for k, d in enumerate(decls) if uses_all_params(d.value)]
        names = [d.name or ("loss" if len(decls) == 1 else f"loss{k}") for k, d in enumerate(decls)]
        for k, d in enumerate(decls):
            if names[k] == "loss" and len(decls) > 1:
                self.diag.error(d.span, "with several terms, 'loss' names their total, not one term",
                                "give this term another name")
                names[k] = f"loss{k}"
            elif names[k] in names[:k]:
                self.diag.error(d.span, f"two loss terms are named '{names[k]}' "
                                f"(the first at line {decls[names.index(names[k])].span.line})",
                                "give each term its own name: `loss NAME = ...`")
        out: Dict[int, LossInfo] = {}
        for k in ordered:
            if k is None:           # the other terms are made: now the definitions over all params
                for st in late:
                    self.try_eval_name(top, st.name)
                continue
            d, name = decls[k], names[k]
            if name in names[:k]:
                continue
            self.call_scope.append(name)
            try:
                v = self.eval(top, d.value)
                node = self.float_tensor(self.tensor(v, d.value), d.value)
                out[k] = LossInfo(name, self.batch_mean(node, d), d.span)
            except Abort:
                pass
            finally:
                self.call_scope.pop()
        params = {p.node for p in self.params}
        for k, info in out.items():
            if not params & (nx.ancestors(self.G.g, info.node) | {info.node}):
                self.diag.warn(decls[k].span, f"loss '{info.name}' does not depend on any param",
                               "training cannot change it; did you mean to use the model's prediction?")
        return [out[k] for k in sorted(out)]

    def batch_mean(self, node: int, d) -> int:
        s = self.G.shape(node)
        ps = per_sample(s)
        if any(x != 1 for x in ps):
            self.error(d.value.span, f"a loss must be a scalar per sample, got shape {fmt_shape(s)}",
                       "reduce it with sum(...) or mean(...)")
        if ps:
            node = self.G.add("reshape", [node], {"shape": (B,) if is_batched(s) else ()})
        if is_batched(s):
            node = self.G.add("reduce_mean", [node], {"axes": (0,)}, span=d.span)
        return node

    def eval_output(self, top: Scope):
        decls = self.program.of_type(A.OutputDecl)
        for extra in decls[1:]:
            self.diag.error(extra.span, "a second `output` statement")
        if decls:
            d = decls[0]
            try:
                v = self.lookup(top, d.name, d.name_span)
                node = self.tensor(v, A.Name(d.name, d.name_span))
                before = nx.ancestors(self.G.g, node) | {node}
                if self.input is None or self.input[2] not in before:
                    self.error(d.name_span, f"output '{d.name}' does not depend on the input")
                if self.target is not None and self.target.node in before:
                    self.error(d.name_span, f"output '{d.name}' depends on the target '{self.target.name}'",
                               "predict has no target: output a value computed from the input alone")
                return node, d.name
            except Abort:
                return None, d.name
        for node in self.predictions:      # the first prediction that predict can compute
            before = nx.ancestors(self.G.g, node)
            if self.input is not None and self.input[2] in before \
                    and (self.target is None or self.target.node not in before):
                name = next((n for n, v in top.values.items() if isinstance(v, Tensor) and v.node == node), "output")
                return node, name
        return None, ""

    def eval_optimizer(self):
        from .optim import OPTIMIZER_ARGS
        decls = self.program.of_type(A.OptimizerDecl)
        for extra in decls[1:]:
            self.diag.error(extra.span, "a second `optimizer` statement")
        if not decls:
            return ("adam", {}, A.NO_SPAN)
        c = decls[0].call
        if c.func not in OPTIMIZER_ARGS:
            self.diag.error(c.func_span, f"unknown optimizer '{c.func}'",
                            did_you_mean(c.func, OPTIMIZER_ARGS) or "one of: " + ", ".join(OPTIMIZER_ARGS))
            return ("sgd", {}, c.span)
        allowed = OPTIMIZER_ARGS[c.func]
        args = {}
        if len(c.args) > 1:
            self.diag.error(c.args[1].span, f"{c.func} takes only the learning rate positionally",
                            "name the others, e.g. momentum=0.9")
        elif c.args:
            args["lr"] = c.args[0]
        for kw in c.kwargs:
            if kw.name not in allowed:
                self.diag.error(kw.span, f"unknown argument '{kw.name}' of optimizer {c.func}",
                                did_you_mean(kw.name, allowed) or "allowed: " + ", ".join(allowed))
            elif kw.name in args:
                self.diag.error(kw.span, f"'{kw.name}' is given twice")
            else:
                args[kw.name] = kw.value
        out = {}
        for k, expr in args.items():
            v = static_value(expr)
            if isinstance(allowed[k], bool):
                if not isinstance(v, bool):
                    self.diag.error(expr.span, f"'{k}' of {c.func} is true or false")
                    continue
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                self.diag.error(expr.span, f"'{k}' of {c.func} must be a number")
                continue
            elif v < 0:
                self.diag.error(expr.span, f"'{k}' of {c.func} must not be negative")
                continue
            out[k] = v
        if c.func == "sgd" and out.get("nesterov") and (not out.get("momentum") or out.get("dampening", 0)):
            self.diag.error(c.span, "nesterov needs momentum > 0 and dampening = 0 (as in PyTorch)")
        return (c.func, out, c.span)

    def eval_train(self):
        blocks = self.program.of_type(A.TrainBlock)
        for extra in blocks[1:]:
            self.diag.error(extra.span, "a second `train` block")
        out = {}
        if not blocks:
            return out
        for it in blocks[0].items:
            if it.key not in TRAIN_KEYS:
                self.diag.error(it.key_span, f"unknown train setting '{it.key}'",
                                did_you_mean(it.key, TRAIN_KEYS) or "allowed: " + ", ".join(TRAIN_KEYS))
                continue
            if it.key in out:
                self.diag.error(it.key_span, f"train setting '{it.key}' is given twice")
                continue
            vals = [static_value(v) for v in it.values]
            out[it.key] = (vals[0] if len(vals) == 1 and it.key not in ("split", "metrics") else vals, it.span)
        return out

    def check_unused(self, losses: List[LossInfo], output: Optional[int]):
        """Warns of params that nothing uses, or whose uses reach no loss and not the output."""
        roots = [l.node for l in losses] + ([output] if output is not None else [])
        reach = set(roots)
        for r in roots:
            reach |= nx.ancestors(self.G.g, r)
        for p in self.params:
            if not self.G.g.out_degree(p.node):
                self.diag.warn(p.span, f"param '{p.name}' is never used")
            elif p.node not in reach and not self.diag.errors:
                self.diag.warn(p.span, f"param '{p.name}' reaches no loss and not the output",
                               "it is never trained; remove what computes with it")


# ------------------------------------------------------------------ built-in calls
REQUIRED = object()


@dataclass
class _Given:
    """An argument value supplied by the compiler itself rather than an AST expression."""
    value: Any


@dataclass
class Call:
    """What a built-in's implementation receives: the elaborator, the scope, the call, and its
    bound arguments (name -> AST expression or a default)."""
    el: Elaborator
    scope: Scope
    expr: A.Call
    args: Dict[str, Any]

    @property
    def G(self) -> Graph:
        return self.el.G

    def span_of(self, name):
        a = self.args[name]
        return a.span if hasattr(a, "span") else self.expr.span

    def value(self, name):
        a = self.args[name]
        if isinstance(a, _Given):
            return a.value
        if isinstance(a, (A.Num, A.Str, A.Bool, A.Name, A.BinOp, A.UnaryOp, A.Call, A.ListExpr)):
            return self.el.eval(self.scope, a)
        return a             # a Python default

    def tensor(self, name, labels: bool = False) -> int:
        """Argument `name` as a graph node; class labels only where `labels` allows them."""
        v = self.value(name)
        if isinstance(v, Tensor):
            if not labels:
                a = self.args[name]
                self.el.float_tensor(v.node, a if hasattr(a, "span") else self.expr)
            return v.node
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return self.G.const(float(v))
        hint = f"'{v.name}' is a function: call it" if isinstance(v, Ref) and v.name in self.el.builtins else None
        self.el.error(self.span_of(name), f"argument '{name}' of {self.expr.func} must be a tensor, "
                      f"got {describe(v)}", hint)

    def number(self, name) -> float:
        v = self.value(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.el.error(self.span_of(name), f"argument '{name}' of {self.expr.func} must be a finite number, "
                          f"got {describe(v)}")
        return v

    def error(self, msg, hint=None, arg=None):
        self.el.error(self.span_of(arg) if arg else self.expr.span, msg, hint)


def bind(el: Elaborator, e: A.Call, signature, what: str) -> Dict[str, Any]:
    """Match a call's positional and keyword arguments to a signature [(name, default)]."""
    names = [n for n, _ in signature]
    out: Dict[str, Any] = {}
    variadic = names and names[-1].startswith("*")
    if len(e.args) > len(names) and not variadic:
        el.error(e.args[len(names)].span,
                 f"{what} takes {len(names)} argument{'s' if len(names) != 1 else ''} ({', '.join(names)}), "
                 f"got {len(e.args) + len(e.kwargs)}")
    for i, a in enumerate(e.args):
        if variadic and i >= len(names) - 1:
            out.setdefault(names[-1], []).append(a)
        else:
            out[names[i]] = a
    for kw in e.kwargs:
        if kw.name not in names or (variadic and kw.name == names[-1]):
            el.error(kw.span, f"unknown argument '{kw.name}' of {what}",
                     did_you_mean(kw.name, names) or "allowed: " + ", ".join(names))
        if kw.name in out:
            el.error(kw.span, f"argument '{kw.name}' of {what} is given twice")
        out[kw.name] = kw.value
    for n, default in signature:
        if n not in out:
            if default is REQUIRED:
                el.error(e.span, f"{what} needs the argument '{n}'",
                         f"call it as {e.func}({', '.join(x for x, d in signature if d is REQUIRED)})")
            out[n] = default if not n.startswith("*") else []
    return out


def uses_all_params(e) -> bool:
    """Whether an expression names `weights` or `params` (and must see every param)."""
    return any(isinstance(n, A.Name) and n.id in ("weights", "params") for n in walk(e))


def walk(e):
    yield e
    for child in getattr(e, "args", ()) or ():
        yield from walk(child)
    for kw in getattr(e, "kwargs", ()) or ():
        yield from walk(kw.value)
    for attr in ("left", "right", "operand"):
        if hasattr(e, attr):
            yield from walk(getattr(e, attr))
    for item in getattr(e, "items", ()) or ():
        yield from walk(item)


# initializer -> its arguments and defaults (None: required)
INIT_NAMES: Dict[str, List[Tuple[str, Optional[float]]]] = {
    "zeros": [], "ones": [],
    "normal": [("mean", 0.0), ("std", None)],
    "uniform": [("low", None), ("high", None)],
    "glorot": [], "glorot_normal": [], "he": [], "he_normal": [],
}
INIT_EXAMPLES = {"normal": "normal(0, 0.1)", "uniform": "uniform(-0.1, 0.1)"}


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

TRAIN_KEYS = ["data", "split", "batch", "epochs", "shuffle", "seed", "metrics", "stop", "lr_scale",
              "standardize", "device"]


def elaborate(program: A.Program) -> ModelIR:
    """Check a parsed program and build its forward graph; raises NetcError with every error."""
    return Elaborator(program).run()
