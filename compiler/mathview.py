"""`netc show FILE --stage grad --math`: the gradient as the lecture writes it, read from the graph.

The model's own forward graph is differentiated (`autodiff.grad`, keeping the adjoint of every
node), the forward and train passes run on it (the compiler's own list: stabilize, simplify,
fold_constants, cse), and each remaining adjoint node is printed as an equation in the user's
names. Nothing is a template per example: every equation is what the graph computes, so
`∇_{y_pre} L = (y_hat − onehot(y)) / B` appears only because `simplify` made the graph
compute the softmax cross-entropy gradient that way (`passes.softmax_cross_entropy`).

Notation (the lecture's: one sample is a column vector). A batched value of the graph holds one
sample per row, so `matmul` is rendered in column form: the forward `x @ Wᵀ` of the rows is
`W · x`, the backward `g @ W` is `Wᵀ · g`, and a param's gradient `gᵀ @ h` (a sum over the
batch) is `g · hᵀ`. `⊙` is the elementwise product, `[a > 0]` the 0/1 indicator, `Σ_batch` a
sum over the samples of the batch, `B` the batch size. An op without a lecture name is written
as a call, `op(a, b)`.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Tuple

from netc.dsl import ast as A

from . import passes as P
from .autodiff import grad
from .elaborate import elaborate
from .ir import Graph
from .shapes import is_batched

# precedence: higher binds tighter
_ATOM, _POSTFIX, _MUL, _ADD, _NEG = 100, 90, 50, 40, 45

_FUNCS = {"sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log", "softmax": "softmax",
          "log_softmax": "log_softmax", "softplus": "softplus", "abs": "|{}|", "sqrt": "√",
          "logsumexp": "logsumexp", "sign": "sign"}


def _grad_name(name: str) -> str:
    return f"∇_{{{name}}} L"


class _Renderer:
    def __init__(self, G: Graph, names: Dict[int, str]):
        self.G, self.names = G, names

    def batched(self, n: int) -> bool:
        return is_batched(self.G.shape(n))

    def scalar_like(self, n: int) -> bool:
        """A value that is one number per sample or per batch (a const, a 1/B, an expand of one)."""
        G = self.G
        op = G.op(n)
        if op == "const" or G.shape(n) == ():
            return True
        if op == "expand":
            return self.scalar_like(G.inputs(n)[0])
        if op in ("div", "mul", "neg") and all(self.scalar_like(i) for i in G.inputs(n)):
            return True
        return False

    def render(self, n: int, top: bool = False) -> Tuple[str, int]:
        """(text, precedence) of node n; a named node is its name unless it is the equation's root."""
        if not top and n in self.names:
            return self.names[n], _ATOM
        G = self.G
        op, ins, attrs = G.op(n), G.inputs(n), G.attrs(n)
        if op == "const":
            v = attrs["value"]
            return (f"{v:g}", _ATOM) if v >= 0 else (f"{v:g}", _NEG)
        if op in ("input", "target", "param", "state"):
            return G.node(n)["name"], _ATOM
        if op == "size":
            dims = [G.shape(ins[0])[a] for a in attrs["axes"]]
            k = 1
            for d in dims:
                k *= d if isinstance(d, int) else 1
            sym = [str(d) for d in dims if not isinstance(d, int)]
            text = " · ".join(sym + ([str(k)] if k != 1 or not sym else []))
            return text, (_ATOM if len(sym) + (k != 1) <= 1 else _MUL)
        if op in ("expand", "reshape"):
            return self.render(ins[0])
        if op == "add" and ins[0] == ins[1]:
            return f"2 · {self.text(ins[0], _MUL + 1)}", _MUL
        if op == "add":
            return f"{self.text(ins[0], _ADD)} + {self.text(ins[1], _ADD)}", _ADD
        if op == "sub":
            return f"{self.text(ins[0], _ADD)} − {self.text(ins[1], _ADD + 1)}", _ADD
        if op == "neg":
            return f"−{self.text(ins[0], _MUL + 1)}", _NEG
        if op == "div":
            a, b = ins
            if G.op(a) == "expand":
                a = G.inputs(a)[0]
            if self.render(b)[0] == "1":
                return self.render(a)
            if G.op(a) == "const" and G.attrs(a)["value"] == 1.0:
                return f"1/{self.text(b, _ATOM)}", _MUL
            return f"{self.text(a, _MUL)} / {self.text(b, _MUL + 1)}", _MUL
        if op == "mul":
            return self.product(n)
        if op == "matmul":
            return self.matmul(n)
        if op == "transpose":
            return f"{self.text(ins[0], _POSTFIX)}ᵀ", _POSTFIX
        if op == "maximum" and G.op(ins[1]) == "const" and G.attrs(ins[1])["value"] == 0.0:
            return f"relu({self.text(ins[0])})", _ATOM
        if op == "greater":
            return f"[{self.text(ins[0], _ADD)} > {self.text(ins[1], _ADD)}]", _ATOM
        if op == "onehot":
            return f"onehot({self.text(ins[0])})", _ATOM
        if op in ("reduce_sum", "reduce_mean"):
            axes = tuple(attrs["axes"])
            what = "Σ" if op == "reduce_sum" else "mean"
            if axes == (0,) and self.batched(ins[0]):
                inner, p = self.render(ins[0])
                return (f"{what}_batch {inner}" if p >= _ATOM else f"{what}_batch({inner})"), _MUL
            per_sample = tuple(range(1, len(G.shape(ins[0])))) if self.batched(ins[0]) else ()
            if axes and axes == per_sample[-len(axes):] and len(axes) == 1 and len(per_sample) == 1:
                return f"{what}_k({self.text(ins[0])})", _ATOM
            return f"{what}_{{axes {','.join(str(a) for a in axes)}}}({self.text(ins[0])})", _ATOM
        if op in _FUNCS:
            f = _FUNCS[op]
            if "{}" in f:
                return f.format(self.text(ins[0])), _ATOM
            return f"{f}({self.text(ins[0])})", _ATOM
        # an op without a lecture name: a call with its operands
        args = [self.text(i) for i in ins]
        extra = [f"{k}={v}" for k, v in attrs.items()]
        return f"{op}({', '.join(args + extra)})", _ATOM

    def text(self, n: int, prec: int = 0) -> str:
        t, p = self.render(n)
        return f"({t})" if p < prec else t

    def product(self, n: int) -> Tuple[str, int]:
        """a ⊙ b ⊙ c (flattened), a scalar factor as `s · a`, a factor 1/B as a division."""
        G = self.G
        factors: List[int] = []

        def flat(m):
            if G.op(m) == "mul" and m not in self.names and G.shape(m) == G.shape(n):
                for i in G.inputs(m):
                    flat(i)
            else:
                factors.append(m)
        for i in G.inputs(n):
            flat(i)
        divide = []
        scalars, full = [], []
        for f in factors:
            g = self._strip(f)
            if G.op(g) == "div" and self._is_one(self._strip(G.inputs(g)[0])):
                if self.render(G.inputs(g)[1])[0] != "1":
                    divide.append(G.inputs(g)[1])
            elif self.scalar_like(f):
                scalars.append(f)
            else:
                full.append(f)
        parts = [self.text(f, _MUL + 1) for f in scalars]
        body = " ⊙ ".join(self.text(f, _MUL + 1) for f in full)
        if parts and body:
            body = " · ".join(parts) + " · " + body
        elif parts:
            body = " · ".join(parts)
        if divide:
            body = (f"({body})" if (len(full) + len(scalars)) > 1 else body) \
                + "".join(f" / {self.text(d, _ATOM)}" for d in divide)
        return body or "1", _MUL

    def _strip(self, n: int) -> int:
        """n without broadcasts, reshapes and divisions by a count of 1."""
        G = self.G
        while n not in self.names and (G.op(n) in ("expand", "reshape") or (
                G.op(n) == "div" and self.render(G.inputs(n)[1])[0] == "1")):
            n = G.inputs(n)[0]
        return n

    def _is_one(self, n: int) -> bool:
        G = self.G
        while G.op(n) == "expand":
            n = G.inputs(n)[0]
        return G.op(n) == "const" and G.attrs(n)["value"] == 1.0

    def matmul(self, n: int) -> Tuple[str, int]:
        """Rows in the graph, columns in the lecture: see the module's docstring."""
        G = self.G
        a, b = G.inputs(n)
        attrs = G.attrs(n)
        # each factor in row form: (node, transposed); a batched value's row form is its column's ᵀ
        fa = [a, self.batched(a)]
        fb = [b, self.batched(b)]
        if attrs.get("ta"):
            fa[1] = not fa[1]
        if attrs.get("tb"):
            fb[1] = not fb[1]
        factors = [fa, fb]
        if self.batched(n):              # the result in column form: (a b)ᵀ = bᵀ aᵀ
            factors = [[fb[0], not fb[1]], [fa[0], not fa[1]]]
        parts = []
        for node, t in factors:
            s = self.text(node, _POSTFIX if t else _MUL + 1)
            parts.append(s + ("ᵀ" if t else ""))
        return " · ".join(parts), _MUL


def equations(program: A.Program, disabled=()) -> Tuple[str, List[Tuple[str, str]], List[Tuple[str, str]]]:
    """(model name, forward equations, gradient equations) of a program: (left side, right
    side) pairs, the forward ones in the file's order, the gradient ones from the loss back
    to the input."""
    name, fwd, eqs, _, _ = _analyse(program, disabled)
    return name, fwd, eqs


def structural_keys(G: Graph) -> Dict[int, str]:
    """node -> a digest of what it computes (op, attrs, the digests of its operands; a leaf
    by its name, a constant by its value; a `phase` node is its train-step operand), equal
    for equal computations in two graphs built from one file."""
    keys: Dict[int, str] = {}
    for n in G.topo():
        d = G.node(n)
        op = d["op"]
        if op == "phase":
            keys[n] = keys[G.inputs(n)[0]]
            continue
        if op in ("input", "target", "param", "state"):
            text = f"{op}:{d['name']}"
        else:
            text = f"{op}:{sorted(d['attrs'].items())!r}:{d['shape']!r}:" + ",".join(keys[i] for i in G.inputs(n))
        keys[n] = hashlib.sha1(text.encode()).hexdigest()
    return keys


def value_names(program: A.Program, disabled=()) -> Dict[str, str]:
    """structural key -> the name the math view gives that value (`h`, `z1`, `∇_{h} L`): so a
    picture of any graph of the file (`netc graph`) labels its nodes as `--math` names them."""
    _, _, _, G, names = _analyse(program, disabled)
    keys = structural_keys(G)
    return {keys[n]: name for n, name in names.items() if n in keys}


def _analyse(program: A.Program, disabled=()):
    model = elaborate(program)
    G = model.graph
    P.run(G, P.FORWARD, disabled)
    names: Dict[int, str] = {}
    if not model.losses:                # nothing to differentiate: the forward pass only
        leaves = {n for n in G.g.nodes if G.op(n) in ("input", "target", "param", "state")}
        named = {n: name for name, n in model.defs.items() if n not in leaves}
        R = _Renderer(G, named)
        return model.name, [(name, R.render(n, top=True)[0]) for n, name in named.items()], [], G, named
    for name, n in model.defs.items():
        G.outputs[f"def:{name}"] = n
    total = model.losses[0].node
    for loss in model.losses[1:]:
        total = G.add("add", [total, loss.node])
    for i, loss in enumerate(model.losses):
        G.outputs[f"loss:{loss.name}"] = loss.node
    G.outputs["loss"] = total
    params = [p for p in model.params if p.trainable]
    adjoints: Dict[int, int] = {}
    G.backward_from = G.next_id
    grads = grad(G, total, [p.node for p in params], adjoints)
    for p in params:
        G.outputs[f"grad:{p.name}"] = grads[p.node]
    for name, n in model.defs.items():
        if n in adjoints and n not in [p.node for p in params]:
            G.outputs[f"grad:{name}"] = adjoints[n]
    for n, a in adjoints.items():      # every forward value and its adjoint, followed through the passes
        if n < G.backward_from and G.op(n) not in ("input", "target", "param", "state", "const"):
            G.outputs[f"fwd:{n}"] = n
            G.outputs[f"adj:{n}"] = a
    P.run(G, P.GRAPH, disabled)
    out = G.outputs
    leaves = {n for n in G.g.nodes if G.op(n) in ("input", "target", "param", "state")}
    for name in model.defs:
        n = out[f"def:{name}"]
        if n not in leaves:
            names.setdefault(n, name)
    forward = [(name, out[f"def:{name}"]) for name in model.defs if out[f"def:{name}"] not in leaves]
    # gradient equations: named values first (their name is used by the others), then params
    grad_keys = [k for k in out if k.startswith("grad:")]
    gnames: Dict[int, str] = {}
    for k in grad_keys:
        n = out[k]
        if G.op(n) not in ("const",) and n not in names:
            gnames.setdefault(n, _grad_name(k[5:]))
    allnames = dict(names)
    allnames.update(gnames)
    # an unnamed value read by several others gets a name of its own and its own equation:
    # z1, z2, ... in the forward pass, δ1, δ2, ... in the backward pass
    order = {n: i for i, n in enumerate(G.topo())}
    roots = set(allnames) | {out[k] for k in grad_keys} | {out[f"loss:{ln.name}"] for ln in model.losses}
    consumers: Dict[int, set] = {}
    seen: set = set()
    stack = list(roots)
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        for k, i in enumerate(G.inputs(m)):
            if (G.op(m) == "expand" and k == 1) or G.op(m) == "size":
                continue                        # expand's `like`, size's operand: read for their shape only
            consumers.setdefault(i, set()).add(m)
            if i not in allnames:
                stack.append(i)
    # the forward value whose gradient a node is (the one nearest the loss)
    adj_of: Dict[int, int] = {}
    for k, a in out.items():
        if k.startswith("adj:"):
            F = out[f"fwd:{k[4:]}"]
            if F in G.g and (a not in adj_of or order[F] > order[adj_of[a]]):
                adj_of[a] = F
    shared = [m for m in sorted(consumers, key=lambda n: order[n])
              if len(consumers[m]) > 1 and m not in allnames and not _trivial(G, m)]
    backward = [m for m in shared if G.backward_from is not None and m >= G.backward_from]
    zs = {m for m in shared if m not in backward} | {adj_of[m] for m in backward if m in adj_of}
    zs -= set(allnames)
    fresh = _fresh(set(model.defs) | {p.name for p in model.params})
    znodes = sorted(zs, key=lambda n: order[n])
    for F in znodes:
        allnames[F] = next(fresh)
    kb = 0
    for m in backward:
        if m in adj_of:
            allnames[m] = _grad_name(allnames[adj_of[m]])
        else:
            kb += 1
            allnames[m] = f"δ{kb}"
    R = _Renderer(G, allnames)
    fwd_nodes = [(name, n) for name, n in forward] + [(allnames[m], m) for m in znodes]
    fwd = [(name, R.render(n, top=True)[0]) for name, n in sorted(fwd_nodes, key=lambda t: order[t[1]])]
    for ln in model.losses:
        fwd.append(("L" if len(model.losses) == 1 else f"L_{ln.name}", R.render(out[f"loss:{ln.name}"], top=True)[0]))
    if len(model.losses) > 1:
        fwd.append(("L", " + ".join(f"L_{ln.name}" for ln in model.losses)))
    eqs = []
    emitted = set()
    targets = [(allnames[m], m) for m in allnames if m not in names and m not in zs] + \
        [(_grad_name(k[5:]), out[k]) for k in grad_keys]
    for label, n in sorted(targets, key=lambda t: order[t[1]]):
        if (label, n) in emitted:
            continue
        emitted.add((label, n))
        if allnames.get(n) == label or n not in allnames or G.op(n) == "const":
            eqs.append((label, R.render(n, top=True)[0]))
        else:                           # the same node as another named gradient
            eqs.append((label, allnames[n]))
    return model.name, fwd, eqs, G, allnames


def _fresh(taken):
    """z1, z2, ...: names of unnamed forward values, none of them a name of the file."""
    k = 0
    while True:
        k += 1
        if f"z{k}" not in taken:
            yield f"z{k}"


def _trivial(G: Graph, n: int) -> bool:
    """A node too small to deserve a name: a leaf, a negation, a broadcast, a count."""
    return G.op(n) in ("neg", "expand", "reshape", "size", "const", "onehot", "input", "target", "param", "state") or (
        G.op(n) == "div" and all(G.op(i) in ("const", "expand", "size") for i in G.inputs(n)))


def math_text(program: A.Program, disabled=()) -> str:
    """The text of `netc show FILE --stage grad --math`."""
    name, fwd, eqs = equations(program, disabled)
    lines = [f"# {name}: the forward pass and the "
             f"gradient of the loss L, read from the graph after its passes",
             "# one sample is a column vector; ⊙ elementwise product, [a > 0] 0/1 indicator, "
             "Σ_batch sum over the batch, B batch size", "", "forward:"]
    w = max([len(a) for a, _ in fwd] + [1])
    lines += [f"  {a:<{w}} = {b}" for a, b in fwd]
    if not eqs:
        lines.append("")
        lines.append("no loss: nothing to differentiate (declare `loss ...` for the backward pass)")
        return "\n".join(lines)
    lines += ["", "backward (from the loss to the params):"]
    w = max(len(a) for a, _ in eqs)
    lines += [f"  {a:<{w}} = {b}" for a, b in eqs]
    return "\n".join(lines)
