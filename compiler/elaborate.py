"""AST -> IR: resolves names (scopes, definitions, user layers), expands built-in calls and
checks the model's declarations. Every mistake becomes a located diagnostic; all of them are
reported together.

Names are single-assignment and evaluated on demand, so statements may come in any order
that respects definitions (a cycle is an error). Programs are written per sample; the batched
form of each operation is built by `batching`. The rest lives with its owner: the value types
in `values`, the call API of built-ins in `calls` (the Elaborator is its `Host`), the
built-ins in `builtins`, the initializers in `initializers`, the train block's keys in
`trainblock`, the optimizers' arguments in `optim`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Tuple

import networkx as nx

from netc.dsl import ast as A
from netc.dsl.diagnostics import Collector, did_you_mean

from . import batching, initializers
from .builtins import BUILTINS
from .calls import REQUIRED, Call, bind
from .ir import Graph
from .shapes import B
from .optim import OPTIMIZER_ARGS
from .trainblock import read_train_block
from .values import (InitSpec, LossInfo, ModelIR, ParamInfo, Ref, TargetInfo, Tensor, describe,
                     is_number, static_value)

MAX_FLOAT = 1.7976931348623157e308
# bounds on what elaboration builds: a layer calling a layer twice, 25 levels deep, is refused
MAX_NODES = 200_000       # operations in the forward graph
MAX_EXPANSIONS = 20_000   # layer calls expanded (each evaluates the layer's body)


class Abort(Exception):
    """Unwinds the evaluation of one statement after its error has been recorded."""


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
    """Elaborates one program; implements `calls.Host` for the built-ins it expands."""

    def __init__(self, program: A.Program):
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

    def warn(self, span, msg, hint=None):
        self.diag.warn(span, msg, hint)

    def record_loss(self, prediction: int, kind: str) -> None:
        """A loss function `kind` was called on `prediction` (the default output's candidates)."""
        self.predictions.append(prediction)
        self.loss_kinds.append(kind)

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
        output, output_name = self.eval_output(top, losses)
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
                       self.warnings(), self.loss_kinds,
                       {k: v.node for k, v in top.values.items() if isinstance(v, Tensor)})

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
        if name in ("weights", "params") or name in self.builtins or name in initializers.INITIALIZERS \
                or name in self.layers:
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
            if not is_number(v) or not math.isfinite(v) or v != int(v):
                got = f"{v:g}" if is_number(v) else describe(v)
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

    def new_param(self, name: str, shape, init: InitSpec, span, trainable: bool = True) -> int:
        node = self.G.leaf("param", name, tuple(shape), span=span)
        self.params.append(ParamInfo(name, tuple(shape), init, node, span, is_weight=trainable and len(shape) >= 2,
                                     trainable=trainable))
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
            if is_number(v):
                if not math.isfinite(v):
                    self.error(expr.span, f"a constant initializer must be a finite number, got {v}")
                return initializers.constant(v)
            name, where = (v.name if isinstance(v, Ref) else None), expr.span
        return initializers.resolve(name, where, expr if isinstance(expr, A.Call) else None, expr.span,
                                    lambda a: self.number(scope, a), self.error)

    def number(self, scope, expr) -> float:
        v = self.eval(scope, expr)
        if not is_number(v):
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
            if is_number(v):
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
        if is_number(v):
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
        if is_number(a) and is_number(b):
            if e.op == "@":
                self.error(e.span, "'@' multiplies matrices and vectors, not numbers", "use '*' for numbers")
            try:
                if e.op == "**" and abs(a) > 1 and abs(b) * math.log10(abs(a)) > 309:
                    raise OverflowError         # never computed: 10 ** 10 ** 10 has 10^10 digits
                r = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
                     "**": lambda: a ** b}[e.op]()
            except ZeroDivisionError:
                self.error(e.span, "division by zero")
            except (OverflowError, ValueError):
                r = math.inf
            if not isinstance(r, (int, float)) or abs(r) > MAX_FLOAT or r != r:
                show = lambda v: f"({v:g})" if v < 0 else f"{v:g}"
                self.error(e.span, f"{show(a)} {e.op} {show(b)} is not a finite real number")
            return r
        x, y = self.float_tensor(self.tensor(a, e.left), e.left), self.float_tensor(self.tensor(b, e.right), e.right)
        if e.op == "@":
            return Tensor(batching.matmul(self.G, x, y, e.span, self.error))
        op = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}[e.op]
        return Tensor(batching.elementwise(self.G, op, x, y, e.span, f"'{e.op}'", self.error))

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
        args = bind(e, spec.signature, e.func, self.error)
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
        args = bind(e, sig, f"layer '{ld.name}'", self.error)
        own = Scope("")                 # where defaults are evaluated: built-ins and layers only
        values = {}
        for name, expr in args.items():
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
            self.expansions = getattr(self, "expansions", 0) + 1
            if self.expansions > MAX_EXPANSIONS + 1:
                raise Abort()                   # said once, below
            if self.expansions > MAX_EXPANSIONS or self.G.g.number_of_nodes() > MAX_NODES:
                self.expansions = MAX_EXPANSIONS + 1
                self.error(e.func_span, f"the model grows past {MAX_EXPANSIONS:,} layer calls or {MAX_NODES:,} "
                           f"operations here (each call of a layer adds its whole body)",
                           "call layers fewer times, or share a result by naming it")
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
                out[k] = LossInfo(name, batching.batch_mean(self.G, node, d.value.span, d.span, self.error), d.span)
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

    def eval_output(self, top: Scope, losses=()):
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
        # a first loss written by hand (`loss -sum(onehot(y) * log(p))`) gives no prediction:
        # the last value the file names that this loss uses, that predict can compute, and
        # that has a prediction's shape (one value per class, or the target's shape)
        if self.target is None or not losses:
            return None, ""
        used = nx.ancestors(self.G.g, losses[0].node)
        t = self.target
        want = (t.classes,) if t.kind == "class" else tuple(t.shape)
        for st in reversed(self.program.statements):
            v = top.values.get(st.name) if isinstance(st, A.Assign) else None
            if isinstance(v, Tensor) and v.node in used and self.input is not None \
                    and tuple(self.G.shape(v.node))[1:] == want:
                before = nx.ancestors(self.G.g, v.node)
                if self.input[2] in before and t.node not in before:
                    return v.node, st.name
        return None, ""

    def eval_optimizer(self):
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
            elif not is_number(v):
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
        return read_train_block(self.program.of_type(A.TrainBlock), self.diag)

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


def elaborate(program: A.Program) -> ModelIR:
    """Check a parsed program and build its forward graph; raises NetcError with every error."""
    return Elaborator(program).run()
