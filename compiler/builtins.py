"""Built-in functions of the language, each a composition of registry primitives.

Every entry has a signature [(name, default)] (REQUIRED for required arguments) that the
elaborator binds calls against, so arity and keyword errors are uniform and located. An
implementation is a function of one `calls.Call` and uses only its API (arguments, the graph,
new params, loss records, errors and warnings), never the elaborator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

from .batching import sample_axes
from .calls import REQUIRED, Call
from .shapes import fmt_shape, is_batched, per_sample
from .values import InitSpec, Ref, Tensor


@dataclass
class Builtin:
    fn: Callable[[Call], object]
    signature: List[tuple]
    doc: str


BUILTINS: Dict[str, Builtin] = {}


def builtin(name, signature, doc=""):
    def deco(fn):
        BUILTINS[name] = Builtin(fn, signature, doc)
        return fn
    return deco


# ------------------------------------------------------------------ activations
def _unary(name, op, doc):
    BUILTINS[name] = Builtin(lambda c: Tensor(c.G.add(op, [c.tensor("x")], span=c.span)), [("x", REQUIRED)], doc)


_unary("sigmoid", "sigmoid", "1 / (1 + exp(-x))")
_unary("tanh", "tanh", "hyperbolic tangent")
_unary("exp", "exp", "e ** x")
_unary("log", "log", "natural logarithm")
_unary("sqrt", "sqrt", "square root")
_unary("abs", "abs", "absolute value")
_unary("softplus", "softplus", "log(1 + exp(x))")


@builtin("gelu", [("x", REQUIRED)], "x * (1 + erf(x / sqrt(2))) / 2, exact (PyTorch's default gelu)")
def _gelu(c):
    G, x = c.G, c.tensor("x")
    cdf = G.add("mul", [G.add("add", [G.const(1.0), G.add("erf", [G.add("mul", [x, G.const(2 ** -0.5)])])]),
                        G.const(0.5)])
    return Tensor(G.add("mul", [x, cdf], span=c.span))


def _vector_op(op):
    def fn(c: Call):
        x = c.tensor("x")
        if len(per_sample(c.G.shape(x))) == 0:
            c.error(f"{c.name} needs a vector, got a scalar", arg="x")
        if per_sample(c.G.shape(x))[-1] == 1:
            c.warn(f"{c.name} of a single value is constant ({'1' if op == 'softmax' else '0'}), whatever its input",
                   "for one output use sigmoid; for C classes give softmax C values")
        return Tensor(c.G.add(op, [x], span=c.span))
    return fn


BUILTINS["softmax"] = Builtin(_vector_op("softmax"), [("x", REQUIRED)], "exp(x) / sum(exp(x)), over the last axis")
BUILTINS["log_softmax"] = Builtin(_vector_op("log_softmax"), [("x", REQUIRED)], "log(softmax(x)), stably")


@builtin("relu", [("x", REQUIRED)], "max(x, 0)")
def _relu(c):
    return Tensor(c.G.add("maximum", [c.tensor("x"), c.G.const(0.0)], span=c.span))


@builtin("leaky_relu", [("x", REQUIRED), ("slope", 0.01)], "x if x > 0 else slope * x")
def _leaky_relu(c):
    x, a = c.tensor("x"), c.number("slope")
    if not 0 <= a < 1:
        c.error("the slope of leaky_relu must be in [0, 1)", arg="slope")
    return Tensor(c.G.add("maximum", [x, c.G.add("mul", [x, c.G.const(a)])], span=c.span))


@builtin("elu", [("x", REQUIRED), ("alpha", 1.0)], "x if x > 0 else alpha * (exp(x) - 1)")
def _elu(c):
    G, x = c.G, c.tensor("x")
    neg = G.add("sub", [G.add("exp", [G.add("minimum", [x, G.const(0.0)])]), G.const(1.0)])
    return Tensor(G.add("add", [G.add("maximum", [x, G.const(0.0)]), G.add("mul", [neg, G.const(c.number("alpha"))])],
                        span=c.span))


@builtin("identity", [("x", REQUIRED)], "x itself")
def _identity(c):
    return Tensor(c.tensor("x"))


@builtin("square", [("x", REQUIRED)], "x * x")
def _square(c):
    x = c.tensor("x")
    return Tensor(c.G.add("mul", [x, x], span=c.span))


# ------------------------------------------------------------------ math
@builtin("sum", [("x", REQUIRED)], "sum of the elements of x (per sample)")
def _sum(c):
    x = c.tensor("x")
    axes = sample_axes(c.G, x)
    return Tensor(c.G.add("reduce_sum", [x], {"axes": axes}, span=c.span) if axes else x)


@builtin("mean", [("x", REQUIRED)], "mean of the elements of x (per sample)")
def _mean(c):
    x = c.tensor("x")
    axes = sample_axes(c.G, x)
    return Tensor(c.G.add("reduce_mean", [x], {"axes": axes}, span=c.span) if axes else x)


def _minmax(op, reduce):
    def fn(c):
        a = c.tensor("a")
        if not c.has("b"):       # max(x): the largest element of x (per sample)
            axes = sample_axes(c.G, a)
            return Tensor(c.G.add(reduce, [a], {"axes": axes}, span=c.span) if axes else a)
        return Tensor(c.elementwise(op, a, c.tensor("b")))
    return fn


BUILTINS["max"] = Builtin(_minmax("maximum", "reduce_max"), [("a", REQUIRED), ("b", None)],
                          "max(x): the largest element of x (per sample); max(a, b): elementwise maximum")
BUILTINS["min"] = Builtin(_minmax("minimum", "reduce_min"), [("a", REQUIRED), ("b", None)],
                          "min(x): the smallest element of x (per sample); min(a, b): elementwise minimum")


@builtin("concat", [("*xs", REQUIRED)], "vectors joined end to end: concat(a, b, ...) or concat([a, b, ...])")
def _concat(c):
    G = c.G
    exprs = c.exprs("*xs")
    if len(exprs) < 2:
        c.error("concat joins at least two tensors", "write concat(a, b, ...)")
    nodes = []
    for e in exprs:
        v = c.evaluate(e)
        if not isinstance(v, Tensor):
            c.error("concat joins tensors, not numbers or names of functions", at=e.span)
        nodes.append(c.real(v.node, e))
    shapes = [G.shape(n) for n in nodes]
    if len({is_batched(s) for s in shapes}) > 1:
        c.error("concat cannot join per-sample values with params: "
                + ", ".join(fmt_shape(s) + (" (per sample)" if is_batched(s) else " (a param)") for s in shapes))
    if any(not per_sample(s) for s in shapes):
        c.error("concat joins vectors (or tensors along their last axis), not scalars: got "
                + " and ".join(fmt_shape(s) for s in shapes))
    ranks = {len(s) for s in shapes}
    last = [per_sample(s)[:-1] for s in shapes]
    if len(ranks) > 1 or any(l != last[0] for l in last):
        c.error("concat joins tensors along their last axis; the other sizes must be equal, got "
                + " and ".join(fmt_shape(s) for s in shapes))
    return Tensor(G.add("concat", nodes, {"axis": len(shapes[0]) - 1}, span=c.span))


@builtin("transpose", [("x", REQUIRED)], "the transpose of a matrix")
def _transpose(c):
    x = c.tensor("x")
    if is_batched(c.G.shape(x)) or len(c.G.shape(x)) != 2:
        c.error(f"transpose needs a param matrix, got {fmt_shape(c.G.shape(x))}", arg="x")
    return Tensor(c.G.add("transpose", [x], span=c.span))


@builtin("onehot", [("y", REQUIRED), ("classes", None)], "one-hot rows of class labels")
def _onehot(c):
    y = c.tensor("y", labels=True)
    t = c.target
    if c.G.node(y)["dtype"] != "int":
        c.error("onehot needs class labels (a `target NAME: class[C]`)", arg="y")
    C = c.number("classes") if c.has("classes") else t.classes
    if C != int(C) or C < 1:
        c.error(f"the number of classes of onehot must be a positive whole number, got {C:g}", arg="classes")
    C = int(C)
    return Tensor(c.G.add("onehot", [y], {"classes": C}, span=c.span))


@builtin("dim", [("x", REQUIRED)], "the size of a vector (for shapes)")
def _dim(c):
    s = per_sample(c.G.shape(c.tensor("x")))
    if len(s) != 1:
        c.error(f"dim needs a vector, got shape {fmt_shape(s)}", arg="x")
    return s[0]


# ------------------------------------------------------------------ layers
@builtin("dense", [("x", REQUIRED), ("n", REQUIRED), ("bias", True), ("init", None)],
         "a fully connected layer: W @ x + b with W[n, dim(x)] and b[n]")
def _dense(c):
    G = c.G
    x = c.tensor("x")
    s = per_sample(G.shape(x))
    if not is_batched(G.shape(x)) or len(s) != 1:
        c.error(f"dense needs a per-sample vector, got shape {fmt_shape(G.shape(x))}",
                "flatten it first: dense(flatten(x), n)" if is_batched(G.shape(x)) and len(s) > 1 else None,
                arg="x")
    n = c.number("n")
    if n != int(n) or n <= 0:
        c.error("the size of a dense layer must be a positive whole number", arg="n")
    n = int(n)
    init = c.init("init", InitSpec("he"))
    W = c.new_param("W", (n, s[0]), init)
    out = G.add("matmul", [x, W], {"tb": True}, span=c.span)
    bias = c.value("bias")
    if not isinstance(bias, bool):
        c.error("bias is true or false", arg="bias")
    if bias:
        b = c.new_param("b", (n,), InitSpec("zeros"))
        out = G.add("add", [out, b], span=c.span)
    return Tensor(out)


# ------------------------------------------------------------------ images [C, H, W]
def _image(c: Call, arg: str = "x") -> int:
    """Argument `arg` as per-sample images [C, H, W]."""
    x = c.tensor(arg)
    s = c.G.shape(x)
    if not is_batched(s) or len(s) != 4:
        hint = ("declare the input as images: input NAME[C, H, W] (e.g. [1, 28, 28])"
                if is_batched(s) and len(s) == 2 else "give it per-sample images [C, H, W]")
        c.error(f"{c.name} needs images [C, H, W] per sample, got shape {fmt_shape(s)}", hint, arg=arg)
    return x


def _pair(c: Call, arg: str, least: int) -> tuple:
    """A size given as a number or [rows, columns]: a pair of whole numbers >= least."""
    v = c.value(arg)
    items = v if isinstance(v, list) else [v, v]
    ok = len(items) == 2 and all(isinstance(i, (int, float)) and not isinstance(i, bool)
                                  and i == int(i) and i >= least for i in items)
    if not ok:
        c.error(f"{arg} of {c.name} must be a whole number >= {least} or a pair [rows, columns] of them",
                f"write {arg}=2 or {arg}=[2, 3]", arg=arg)
    return (int(items[0]), int(items[1]))


def _fits(c: Call, x: int, k: tuple, stride: tuple, pad: tuple, what: str, arg: str) -> tuple:
    """The output size of a k window sliding over x's [H, W]; an error when it does not fit."""
    H, W = c.G.shape(x)[2:]
    ho, wo = (H + 2 * pad[0] - k[0]) // stride[0] + 1, (W + 2 * pad[1] - k[1]) // stride[1] + 1
    if ho < 1 or wo < 1 or H + 2 * pad[0] < k[0] or W + 2 * pad[1] < k[1]:
        padded = f" (padded by {pad[0]}x{pad[1]}: {H + 2 * pad[0]}x{W + 2 * pad[1]})" if any(pad) else ""
        c.error(f"the {k[0]}x{k[1]} {what} of {c.name} is larger than its input {fmt_shape(c.G.shape(x))}{padded}",
                f"use a smaller {what}, pad the input (pad=...), or pool less before it", arg=arg)
    return ho, wo


def _convolve(c: Call, x: int, K: int, karg: str) -> int:
    G = c.G
    stride, pad = _pair(c, "stride", 1), _pair(c, "pad", 0)
    sx, sk = G.shape(x), G.shape(K)
    _fits(c, x, sk[2:], stride, pad, "kernel", karg)
    if sk[1] != sx[1]:
        c.error(f"the kernel {fmt_shape(sk)} has {sk[1]} input channels but the image {fmt_shape(sx)} has {sx[1]}",
                f"make the kernel's second size {sx[1]}: [{sk[0]}, {sx[1]}, {sk[2]}, {sk[3]}]", arg=karg)
    return G.add("conv2d", [x, K], {"stride": stride, "pad": pad}, span=c.span)


@builtin("conv", [("x", REQUIRED), ("K", REQUIRED), ("stride", 1), ("pad", 0)],
         "2-D cross-correlation of images x[C, H, W] with kernels K[n, C, kh, kw] (no bias): [n, Ho, Wo]")
def _conv(c):
    x = _image(c)
    K = c.tensor("K")
    sk = c.G.shape(K)
    if is_batched(sk) or len(sk) != 4:
        c.error(f"the kernel of conv must be a param [n, C, kh, kw], got shape {fmt_shape(sk)}",
                "declare it as param K[n, C, kh, kw] = he", arg="K")
    return Tensor(_convolve(c, x, K, "K"))


@builtin("conv2d", [("x", REQUIRED), ("n", REQUIRED), ("k", REQUIRED), ("stride", 1), ("pad", 0),
                    ("bias", True), ("init", None)],
         "a convolution layer: n filters W[n, C, kh, kw] (k a number or [kh, kw]) and a bias b[n]")
def _conv2d(c):
    G = c.G
    x = _image(c)
    n = c.number("n")
    if n != int(n) or n <= 0:
        c.error("the number of filters of conv2d must be a positive whole number", arg="n")
    n = int(n)
    k = _pair(c, "k", 1)
    _fits(c, x, k, _pair(c, "stride", 1), _pair(c, "pad", 0), "kernel", "k")
    bias = c.value("bias")
    if not isinstance(bias, bool):
        c.error("bias is true or false", arg="bias")
    W = c.new_param("W", (n, G.shape(x)[1]) + k, c.init("init", InitSpec("he")))
    out = _convolve(c, x, W, "k")
    if bias:
        b = c.new_param("b", (n,), InitSpec("zeros"))
        out = G.add("add", [out, G.add("reshape", [b], {"shape": (n, 1, 1)})], span=c.span)
    return Tensor(out)


def _pool(op):
    def fn(c):
        x = _image(c)
        k = _pair(c, "k", 1)
        stride = _pair(c, "stride", 1) if c.has("stride") else k
        _fits(c, x, k, stride, (0, 0), "window", "k")
        return Tensor(c.G.add(op, [x], {"k": k, "stride": stride}, span=c.span))
    return fn


BUILTINS["maxpool"] = Builtin(_pool("maxpool"), [("x", REQUIRED), ("k", REQUIRED), ("stride", None)],
                              "the maximum of each k x k window (k a number or [kh, kw]), windows `stride` apart "
                              "(default k: not overlapping)")
BUILTINS["avgpool"] = Builtin(_pool("avgpool"), [("x", REQUIRED), ("k", REQUIRED), ("stride", None)],
                              "the mean of each k x k window (k a number or [kh, kw]), windows `stride` apart "
                              "(default k: not overlapping)")


@builtin("global_avgpool", [("x", REQUIRED)], "the mean of each channel of images [C, H, W]: a vector [C]")
def _global_avgpool(c):
    x = _image(c)
    return Tensor(c.G.add("reduce_mean", [x], {"axes": (2, 3)}, span=c.span))


@builtin("flatten", [("x", REQUIRED)], "a per-sample tensor as a vector of its elements (row-major)")
def _flatten(c):
    x = c.tensor("x")
    s = c.G.shape(x)
    if not is_batched(s):
        c.error(f"flatten takes a per-sample value, got the shared shape {fmt_shape(s)}", arg="x")
    size = 1
    for d in s[1:]:
        size *= d
    return Tensor(x if len(s) == 2 else c.G.add("reshape", [x], {"shape": (s[0], size)}, span=c.span))


@builtin("reshape", [("x", REQUIRED), ("sizes", REQUIRED)],
         "a per-sample tensor in another shape of the same number of elements: reshape(x, [4, 4])")
def _reshape(c):
    x = c.tensor("x")
    s = c.G.shape(x)
    sizes = c.value("sizes")
    sizes = sizes if isinstance(sizes, list) else [sizes]
    if not sizes or not all(isinstance(d, (int, float)) and not isinstance(d, bool) and d == int(d) and d >= 1
                            for d in sizes):
        c.error("the sizes of reshape are a list of positive whole numbers", "write reshape(x, [4, 4])", arg="sizes")
    sizes = tuple(int(d) for d in sizes)
    have, want = 1, 1
    for d in per_sample(s):
        have *= d
    for d in sizes:
        want *= d
    if have != want:
        c.error(f"reshape cannot make {fmt_shape(s)} ({have} elements) into {list(sizes)} ({want} elements)",
                "the sizes must multiply to the same number of elements", arg="sizes")
    shape = ((s[0],) if is_batched(s) else ()) + sizes
    return Tensor(x if shape == tuple(s) else c.G.add("reshape", [x], {"shape": shape}, span=c.span))


# ------------------------------------------------------------------ losses (per sample)
def _prediction(c: Call, name: str) -> int:
    p = c.tensor(name)
    if not is_batched(c.G.shape(p)):
        c.error(f"the prediction given to {c.name} does not depend on the input", arg=name)
    c.record_loss(p)
    return p


def _real_target(c: Call, name: str) -> int:
    y = c.tensor(name, labels=True)
    if c.G.node(y)["dtype"] == "int":
        c.error(f"{c.name} compares real values, but '{c.written_name(name)}' holds class labels",
                "use cross_entropy for a class target, or declare `target NAME[k]` for real values", arg=name)
    return y


def _same_shape(c: Call, a: int, b: int):
    sa, sb = per_sample(c.G.shape(a)), per_sample(c.G.shape(b))
    if sa != sb:
        c.error(f"{c.name} needs equal shapes, got {fmt_shape(sa)} and {fmt_shape(sb)}")


def _warn_probabilities(c: Call, p: int, loss: str) -> None:
    """A linear layer's output fed straight to a cross-entropy: logits, not probabilities."""
    G = c.G
    if G.op(p) == "matmul" or (G.op(p) == "add" and any(G.op(i) == "matmul" for i in G.inputs(p))):
        c.warn(f"{loss} expects probabilities, but its first argument looks like the raw output of a linear layer",
               "apply softmax (several classes) or sigmoid (0/1 targets) first", arg="p")


@builtin("cross_entropy", [("p", REQUIRED), ("y", REQUIRED)],
         "-log p[y] for class labels y (or -sum(y log p) for one-hot/probability rows)")
def _cross_entropy(c):
    G = c.G
    p = _prediction(c, "p")
    y = c.tensor("y", labels=True)
    sp = per_sample(G.shape(p))
    if len(sp) != 1:
        c.error(f"cross_entropy needs a vector of class probabilities, got shape {fmt_shape(sp)}", arg="p")
    _warn_probabilities(c, p, "cross_entropy")
    if G.op(p) == "sigmoid" and sp[0] > 1:
        c.warn(f"sigmoid feeds cross_entropy over {sp[0]} classes: its outputs do not sum to 1",
               "use softmax for one of several classes, or binary_cross_entropy for independent 0/1 targets", arg="p")
    if G.node(y)["dtype"] == "int":
        classes = c.target.classes
        if sp[0] != classes:
            c.error(f"the prediction has {sp[0]} classes but the target '{c.target.name}' has {classes}", arg="p")
        t = G.add("onehot", [y], {"classes": classes})
    else:
        _same_shape(c, p, y)
        t = y
    picked = G.add("reduce_sum", [G.add("mul", [t, G.add("log", [p])])], {"axes": (1,)})
    return Tensor(G.add("neg", [picked], span=c.span))


@builtin("binary_cross_entropy", [("p", REQUIRED), ("t", REQUIRED)],
         "-(t log p + (1 - t) log(1 - p)), averaged over the elements")
def _bce(c):
    G = c.G
    p = _prediction(c, "p")
    t = _real_target(c, "t")
    _same_shape(c, p, t)
    _warn_probabilities(c, p, "binary_cross_entropy")
    if G.op(p) == "softmax":
        c.warn("softmax feeds binary_cross_entropy",
               "use sigmoid for independent 0/1 targets, or cross_entropy with a class target", arg="p")
    one = G.const(1.0)
    pos = G.add("mul", [t, G.add("log", [p])])
    neg = G.add("mul", [G.add("sub", [one, t]), G.add("log", [G.add("sub", [one, p])])])
    e = G.add("neg", [G.add("add", [pos, neg])])
    return Tensor(G.add("reduce_mean", [e], {"axes": sample_axes(c.G, e)}, span=c.span))


def _regression(kind):
    def fn(c):
        G = c.G
        a = _prediction(c, "a")
        b = _real_target(c, "b")
        _same_shape(c, a, b)
        d = G.add("sub", [a, b])
        if kind == "mse":
            e = G.add("mul", [d, d])
        elif kind == "mae":
            e = G.add("abs", [d])
        else:       # huber, as torch.nn.HuberLoss: 0.5 d² if |d| < delta else delta (|d| - delta/2)
            delta = c.number("delta")
            if delta <= 0:
                c.error("delta of huber must be positive", arg="delta")
            ad = G.add("abs", [d])
            q = G.add("minimum", [ad, G.const(delta)])
            e = G.add("add", [G.add("mul", [G.add("mul", [q, q]), G.const(0.5)]),
                              G.add("mul", [G.add("sub", [ad, q]), G.const(delta)])])
        return Tensor(G.add("reduce_mean", [e], {"axes": sample_axes(c.G, e)}, span=c.span))
    return fn


BUILTINS["mse"] = Builtin(_regression("mse"), [("a", REQUIRED), ("b", REQUIRED)], "mean squared error")
BUILTINS["mae"] = Builtin(_regression("mae"), [("a", REQUIRED), ("b", REQUIRED)], "mean absolute error")
BUILTINS["huber"] = Builtin(_regression("huber"), [("a", REQUIRED), ("b", REQUIRED), ("delta", 1.0)], "Huber loss")


# ------------------------------------------------------------------ regularizers
def _param_set(c: Call) -> List[int]:
    v = c.value("of")
    if isinstance(v, Ref) and v.name == "weights":
        return [p.node for p in c.params if p.is_weight]
    if isinstance(v, Ref) and v.name == "params":
        return [p.node for p in c.params if p.trainable]
    if isinstance(v, list):
        out = []
        for item, span in zip(v, c.item_spans("of", len(v))):
            if not isinstance(item, Tensor):
                c.error(f"{c.name} takes tensors", at=span)
            out.append(item.node)
        return out
    if isinstance(v, Tensor):
        return [v.node]
    c.error(f"{c.name} takes `weights`, `params`, a param or a list of params", arg="of")


def _norm(kind):
    def fn(c):
        G = c.G
        terms = []
        for n in _param_set(c):
            e = G.add("mul", [n, n]) if kind == "l2" else G.add("abs", [n])
            axes = sample_axes(c.G, e)
            terms.append(G.add("reduce_sum", [e], {"axes": axes}) if axes else e)
        if not terms:
            c.error(f"{c.name} has nothing to regularize: the model has no such params")
        total = terms[0]
        for t in terms[1:]:
            total = G.add("add", [total, t])
        return Tensor(total)
    return fn


BUILTINS["l2"] = Builtin(_norm("l2"), [("of", REQUIRED)], "sum of squares of the params (weights: matrices only)")
BUILTINS["l1"] = Builtin(_norm("l1"), [("of", REQUIRED)], "sum of absolute values of the params")


# ------------------------------------------------------------------ batch normalization, dropout
# Both have a train view and a predict view, joined by a `phase(train, predict)` node that the
# compiler resolves per entry point (traingraph.view): the train step normalizes with batch
# statistics, updates the running ones and draws dropout masks; evaluate and predict use the
# running statistics and no dropout.
@builtin("batchnorm", [("x", REQUIRED), ("momentum", 0.1), ("eps", 1e-5)],
         "batch normalization: per channel of [C, H, W] (the first axis of any per-sample shape), per feature of [n] (PyTorch's BatchNorm)")
def _batchnorm(c):
    G, x = c.G, c.tensor("x")
    s = G.shape(x)
    ps = per_sample(s)
    if not is_batched(s) or not ps:
        c.error(f"batchnorm needs a per-sample [n] or [C, H, W] value, got {fmt_shape(s)}", arg="x",
                hint="batchnorm normalizes over the batch: give it a layer's output")
    momentum, eps = c.number("momentum"), c.number("eps")
    if not 0.0 <= momentum <= 1.0:
        c.error("the momentum of batchnorm must be in [0, 1]", arg="momentum")
    if eps <= 0:
        c.error("the eps of batchnorm must be positive", arg="eps")
    C = ps[0]
    axes = (0,) + tuple(range(2, len(s)))                      # the batch and the spatial axes
    gamma = c.new_param("gamma", (C,), InitSpec("ones"))
    beta = c.new_param("beta", (C,), InitSpec("zeros"))
    rmean = c.new_buffer("running_mean", (C,), InitSpec("zeros"))
    rvar = c.new_buffer("running_var", (C,), InitSpec("ones"))

    def bcast(v):                                               # [C] -> [C, 1, 1] against [B, C, H, W]
        return v if len(ps) == 1 else G.add("reshape", [v], {"shape": (C,) + (1,) * (len(ps) - 1)})

    def normalize(mean, inv_std):
        d = G.add("sub", [x, bcast(mean)])
        return G.add("add", [G.add("mul", [d, bcast(G.add("mul", [inv_std, gamma]))]), bcast(beta)])

    def inv_std(var):
        return G.add("div", [G.const(1.0), G.add("sqrt", [G.add("add", [var, G.const(eps)])])])

    # train view: batch statistics (biased variance normalizes; the unbiased one is kept)
    mean = G.add("reduce_mean", [x], {"axes": axes})
    d = G.add("sub", [x, G.add("expand", [mean, x], {"axes": axes})])
    var = G.add("reduce_mean", [G.add("mul", [d, d])], {"axes": axes})
    train = G.add("add", [G.add("mul", [d, G.add("expand", [G.add("mul", [inv_std(var), gamma]), x], {"axes": axes})]),
                          G.add("expand", [beta, x], {"axes": axes})])
    n = G.add("size", [x], {"axes": axes})
    unbiased = G.add("mul", [var, G.add("div", [n, G.add("maximum", [G.add("sub", [n, G.const(1.0)]), G.const(1.0)])])])
    keep, new = G.const(1.0 - momentum), G.const(momentum)
    c.update(rmean, G.add("add", [G.add("mul", [rmean, keep]), G.add("mul", [mean, new])]))
    c.update(rvar, G.add("add", [G.add("mul", [rvar, keep]), G.add("mul", [unbiased, new])]))
    # predict view: the running statistics
    predict = normalize(rmean, inv_std(rvar))
    return Tensor(G.add("phase", [train, predict], span=c.span))


@builtin("dropout", [("x", REQUIRED), ("rate", REQUIRED)],
         "inverted dropout: while training each element is zeroed with probability rate and the rest scaled by 1/(1-rate)")
def _dropout(c):
    G, x = c.G, c.tensor("x")
    rate = c.number("rate")
    if not 0.0 <= rate < 1.0:
        c.error(f"the rate of dropout must be in [0, 1), got {rate:g}", arg="rate",
                hint="rate is the probability of dropping an element: 0.5 drops half")
    if not is_batched(G.shape(x)):
        c.error(f"dropout needs a per-sample value, got {fmt_shape(G.shape(x))}", arg="x")
    if rate == 0.0:
        return Tensor(x)
    # the layer's key: a number in [0, 2**24) drawn from the model's seed when the params are
    # initialized (its integer part is the key), saved with the params, so a resumed run
    # draws the same masks
    seed = c.new_buffer("seed", (1,), InitSpec("uniform", (0.0, float(2 ** 24))))
    mask = G.add("dropout_mask", [x, seed, c.step()], {"rate": rate})
    return Tensor(G.add("phase", [G.add("mul", [x, mask]), x], span=c.span))
