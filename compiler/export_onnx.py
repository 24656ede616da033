"""The predict graph as an ONNX model: one table, `EXPORTS`, keyed by registry op name.

    proto = to_onnx(graph, model, params, dtype="float32", scaler=(mean, std), metadata={...})

The graph exported is the *predict* entry graph (`predict_graph`: the train graph cut to the
model's `output`, dead code dropped: no loss, target, auxiliary head or optimizer state). Each
node becomes the ONNX nodes of its `EXPORTS` entry; leaves become the graph's input (named as
in the `.net` file, with a dynamic batch dimension "batch"), initializers (params, in the
model's float type) and constants. An op without an entry is a NetcError naming the op and its
`.net` line, never a broken file. `onnx` is an optional dependency (`pip install
'netc[onnx]'`): it is imported inside the functions that need it.

Versions are pinned so that onnxruntime loads the file: opset `OPSET` of the default domain and
IR version `IR_VERSION` (onnx's `make_model` would stamp the newest it knows).

What a new op needs here: one entry `EXPORTS["op"] = fn(e, n, ins, attrs) -> value name`,
where `e` is the `Emitter` (add ONNX nodes and initializers), `n` the IR node, `ins` the ONNX
names of its operands.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from netc.dsl.ast import NO_SPAN
from netc.dsl.diagnostics import Diagnostic, NetcError

from .ir import LEAF_OPS, Graph
from .passes import dce
from .shapes import B
from .traingraph import view
from .values import ModelIR

OPSET = 17           # ONNX default-domain opset: onnxruntime >= 1.12 runs it
IR_VERSION = 8       # the IR version that goes with opset 17


class MissingExport(NetcError):
    """An op of the predict graph without an entry in EXPORTS."""


def predict_graph(G: Graph) -> Graph:
    """The predict entry graph of a train graph: its `output` and what it needs, nothing else."""
    if "output" not in G.outputs:
        raise NetcError.single("the model has no output to export",
                               hint="add `output NAME` (or a loss whose prediction depends on the input)")
    E = G.cut("predict", {"output": G.outputs["output"]})
    view(E, "predict")          # batchnorm's running statistics, no dropout
    dce(E)
    return E


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise NetcError.single("exporting to ONNX needs the onnx package",
                               hint="pip install 'netc[onnx]'") from None
    return onnx, helper, numpy_helper


class Emitter:
    """Collects the ONNX nodes and initializers of one graph; names values uniquely."""

    def __init__(self, G: Graph, dtype: np.dtype):
        self.onnx, self.helper, self.numpy_helper = _onnx()
        self.G, self.dtype = G, np.dtype(dtype)
        self.elem = self.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes: list = []
        self.inits: list = []
        self.names: Dict[int, str] = {}
        self._used: set = set()
        self._consts: Dict[Tuple, str] = {}

    def fresh(self, base: str) -> str:
        base = base.replace(".", "_") or "v"
        name, k = base, 1
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def init(self, array: np.ndarray, base: str) -> str:
        """An initializer holding `array` (its own dtype); constants (base "c") are shared."""
        a = np.asarray(array)
        key = (a.dtype.str, a.shape, a.tobytes())
        if base == "c" and key in self._consts:
            return self._consts[key]
        name = self.fresh(base)
        self.inits.append(self.numpy_helper.from_array(a, name))
        if base == "c":
            self._consts[key] = name
        return name

    def const(self, value: float) -> str:
        """A scalar constant of the model's float type."""
        return self.init(np.asarray(value, self.dtype), "c")

    def ints(self, values) -> str:
        """A 1-D int64 constant (axes, shapes, pads)."""
        return self.init(np.asarray(list(values), np.int64), "c")

    def node(self, op_type: str, inputs: List[str], base: str = "t", **attrs) -> str:
        """Add one ONNX node; returns the name of its (single) output."""
        out = self.fresh(base)
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=self.fresh("n_" + op_type), **attrs))
        return out

    def model(self, name: str, inputs: list, outputs: list):
        """The ModelProto of what was emitted, at the pinned opset and IR version."""
        graph = self.helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        return self.helper.make_model(graph, producer_name="netc", ir_version=IR_VERSION,
                                      opset_imports=[self.helper.make_opsetid("", OPSET)])

    def onnx_shape(self, shape) -> List[int]:
        """An IR shape as a Reshape target: the batch axis becomes 0 (copy the input's dim)."""
        return [0 if d == B else int(d) for d in shape]


def _simple(op_type: str, **fixed):
    return lambda e, n, ins, attrs: e.node(op_type, ins, **fixed)


def _matmul(e: Emitter, n: int, ins: List[str], attrs: dict) -> str:
    # Gemm: op(A) @ op(B) with transpose flags as attributes (a dense layer is x W^T)
    return e.node("Gemm", ins, transA=int(bool(attrs.get("ta"))), transB=int(bool(attrs.get("tb"))))


def _greater(e, n, ins, attrs):
    return e.node("Cast", [e.node("Greater", ins)], to=e.elem)


def _reduce(op_type):
    def fn(e, n, ins, attrs):
        axes = list(attrs["axes"])
        if op_type == "ReduceSum":         # opset 13+: axes are an input
            return e.node(op_type, [ins[0], e.ints(axes)], keepdims=0)
        return e.node(op_type, ins, axes=axes, keepdims=0)
    return fn


def _expand(e, n, ins, attrs):
    # g with the reduced axes put back (size 1), broadcast to the shape of `like`
    g = e.node("Unsqueeze", [ins[0], e.ints(sorted(attrs["axes"]))])
    return e.node("Expand", [g, e.node("Shape", [ins[1]])])


def _size(e, n, ins, attrs):
    dims = e.node("Gather", [e.node("Shape", [ins[0]]), e.ints(attrs["axes"])], axis=0)
    return e.node("Cast", [e.node("ReduceProd", [dims], keepdims=0)], to=e.elem)


def _reshape(e, n, ins, attrs):
    return e.node("Reshape", [ins[0], e.ints(e.onnx_shape(attrs["shape"]))])


def _onehot(e, n, ins, attrs):
    # label == [0, 1, ..., C-1] (onnxruntime has no OneHot with float64 values)
    hit = e.node("Equal", [e.node("Unsqueeze", [ins[0], e.ints([-1])]), e.ints(range(attrs["classes"]))])
    return e.node("Cast", [hit], to=e.elem)


def _softplus(e, n, ins, attrs):
    if e.dtype == np.float32:
        return e.node("Softplus", ins)
    # onnxruntime has no float64 Softplus: max(x, 0) + log(1 + exp(-|x|)), stable, as netc computes it
    tail = e.node("Log", [e.node("Add", [e.const(1.0), e.node("Exp", [e.node("Neg", [e.node("Abs", ins)])])])])
    return e.node("Add", [e.node("Max", [ins[0], e.const(0.0)]), tail])


def _erf(e, n, ins, attrs):
    if e.dtype == np.float32:
        return e.node("Erf", ins)
    # onnxruntime has no float64 Erf: computed in float32 (relative error ~1e-7)
    f32 = e.helper.np_dtype_to_tensor_dtype(np.dtype(np.float32))
    return e.node("Cast", [e.node("Erf", [e.node("Cast", ins, to=f32)])], to=e.elem)


def _slice(e, n, ins, attrs):
    return e.node("Slice", [ins[0], e.ints([attrs["start"]]), e.ints([attrs["stop"]]), e.ints([attrs["axis"]])])


def _pad(e, n, ins, attrs):
    rank = len(e.G.shape(e.G.inputs(n)[0]))
    pads = [0] * (2 * rank)
    pads[attrs["axis"]], pads[rank + attrs["axis"]] = attrs["before"], attrs["after"]
    return e.node("Pad", [ins[0], e.ints(pads)], mode="constant")


# onnxruntime's CPU provider has no float64 kernel for these: a float64 model runs them in
# float32 (relative error ~1e-7, like erf; docs/cli.md)
FLOAT32_ONLY = ("AveragePool", "Conv")


def _node_f32(e, op_type: str, ins: List[str], **attrs) -> str:
    if e.dtype == np.float32 or op_type not in FLOAT32_ONLY:
        return e.node(op_type, ins, **attrs)
    f32 = e.helper.np_dtype_to_tensor_dtype(np.dtype(np.float32))
    out = e.node(op_type, [e.node("Cast", [i], to=f32) for i in ins], **attrs)
    return e.node("Cast", [out], to=e.elem)


def _conv2d(e, n, ins, attrs):
    (sh, sw), (ph, pw) = attrs["stride"], attrs["pad"]
    return _node_f32(e, "Conv", ins, strides=[int(sh), int(sw)], pads=[int(ph), int(pw), int(ph), int(pw)])


def _pool(op_type):
    def fn(e, n, ins, attrs):
        return _node_f32(e, op_type, ins, kernel_shape=[int(k) for k in attrs["k"]],
                         strides=[int(s) for s in attrs["stride"]])
    return fn


# Ops that exist only in a train step, never in a predict graph: the adjoints of the image ops
# (the gradient), dropout's masks, and `phase`, which the predict view resolves to its
# evaluation operand before export (traingraph.view).
TRAINING_ONLY = ("conv2d_dx", "conv2d_dw", "maxpool_dx", "avgpool_dx", "dropout_mask", "phase")

# One entry per registry op that can reach a predict graph (keyed by the registry's names).
EXPORTS: Dict[str, Callable[[Emitter, int, List[str], dict], str]] = {
    "add": _simple("Add"), "sub": _simple("Sub"), "mul": _simple("Mul"), "div": _simple("Div"),
    "pow": _simple("Pow"), "maximum": _simple("Max"), "minimum": _simple("Min"), "greater": _greater,
    "neg": _simple("Neg"), "exp": _simple("Exp"), "log": _simple("Log"), "sqrt": _simple("Sqrt"),
    "abs": _simple("Abs"), "sign": _simple("Sign"), "sigmoid": _simple("Sigmoid"), "tanh": _simple("Tanh"),
    "softplus": _softplus, "erf": _erf,
    "softmax": _simple("Softmax", axis=-1), "log_softmax": _simple("LogSoftmax", axis=-1),
    "logsumexp": _reduce("ReduceLogSumExp"),
    "reduce_sum": _reduce("ReduceSum"), "reduce_mean": _reduce("ReduceMean"),
    "reduce_max": _reduce("ReduceMax"), "reduce_min": _reduce("ReduceMin"),
    "expand": _expand, "size": _size, "reshape": _reshape, "transpose": _simple("Transpose", perm=[1, 0]),
    "matmul": _matmul, "onehot": _onehot, "concat": lambda e, n, ins, attrs: e.node("Concat", ins, axis=attrs["axis"]),
    "slice": _slice, "pad": _pad,
    "conv2d": _conv2d, "maxpool": _pool("MaxPool"), "avgpool": _pool("AveragePool"),
}


def emit(e: Emitter, inputs: Dict[int, str], params: Dict[str, np.ndarray], source: Optional[str] = None) -> None:
    """Translate every node of e.G into ONNX nodes (e.names: node -> ONNX value name): input
    leaves read the names `inputs` gives them, params become initializers of the model's float
    type, constants scalar initializers. Every op without an EXPORTS entry is reported at once,
    each at its `.net` line (MissingExport), before anything is emitted."""
    E = e.G
    missing = [n for n in E.topo() if E.op(n) not in EXPORTS and E.op(n) not in LEAF_OPS]
    if missing:
        diags = [Diagnostic(E.node(n)["span"] or NO_SPAN, f"op '{E.op(n)}' has no ONNX mapping; cannot export",
                            "netc's ONNX export covers: " + ", ".join(sorted(EXPORTS))) for n in missing]
        raise MissingExport(diags, source)
    dense = _dense_biases(E)
    skip = set(dense.values())
    for n in E.topo():
        d = E.node(n)
        op = d["op"]
        if n in skip:
            continue
        if n in dense:               # matmul + bias: one Gemm with C
            m = dense[n]
            bias = next(i for i in E.inputs(n) if i != m)
            e.names[n] = _matmul(e, m, [e.names[i] for i in E.inputs(m)] + [e.names[bias]], E.attrs(m))
        elif op == "input" and n in inputs:
            e.names[n] = inputs[n]
        elif op == "param":
            e.names[n] = e.init(np.asarray(params[d["name"]], e.dtype), d["name"])
        elif op == "const":
            e.names[n] = e.const(d["attrs"]["value"])
        elif op in LEAF_OPS:
            raise NetcError.single(f"the predict graph reads the {op} '{d['name']}', which ONNX export cannot feed",
                                   d["span"] or NO_SPAN, source=source)
        else:
            e.names[n] = EXPORTS[op](e, n, [e.names[i] for i in E.inputs(n)], d["attrs"])


def _dense_biases(E: Graph) -> Dict[int, int]:
    """add node -> the matmul it adds a bias to, where the two become one Gemm (A, B, C): the
    matmul has no other user and the bias is a vector over the product's columns (or a scalar),
    as PyTorch exports a linear layer."""
    out = {}
    for a in E.nodes_with(op="add"):
        ops = E.inputs(a)
        for k, m in enumerate(ops):
            other = ops[1 - k]
            if E.op(m) == "matmul" and m != other and len(set(E.users(m))) == 1 and E.outputs.get("output") != m \
                    and E.g.number_of_edges(m, a) == 1 and E.shape(a) == E.shape(m) \
                    and E.shape(other) in ((), (E.shape(m)[-1],), (1, E.shape(m)[-1])):
                out[a] = m
                break
    return out


def graph_proto(G: Graph, inputs: List[int], outputs: List[int], dtype="float32", name: str = "graph"):
    """Any IR graph without params as an ONNX model: the given input leaves (in order, named
    after them) and outputs `out0`, `out1`, ... (the registry test runs every op through this)."""
    e = Emitter(G, dtype)
    h = e.helper
    feeds = {n: e.fresh(G.node(n)["name"] or f"in{k}") for k, n in enumerate(inputs)}
    vis = [_value_info(h, feeds[n], h.np_dtype_to_tensor_dtype(np.dtype(np.int64)) if G.node(n)["dtype"] == "int"
                       else e.elem, G.shape(n)) for n in inputs]
    emit(e, feeds, {})
    outs = []
    for k, n in enumerate(outputs):
        e.nodes.append(h.make_node("Identity", [e.names[n]], [f"out{k}"], name=e.fresh("n_out")))
        outs.append(_value_info(h, f"out{k}", e.elem, G.shape(n)))
    return e.model(name, vis, outs)


def _value_info(helper, name: str, elem, shape) -> object:
    return helper.make_tensor_value_info(name, elem, ["batch" if d == B else int(d) for d in shape])


def to_onnx(G: Graph, model: ModelIR, params: Dict[str, np.ndarray], dtype="float32",
            scaler: Optional[Tuple[np.ndarray, np.ndarray]] = None, metadata: Optional[Dict[str, str]] = None,
            source: Optional[str] = None):
    """An onnx ModelProto computing the `output` of the train graph `G` (its predict graph) for
    a batch of raw inputs. `params`: name -> array (stored in `dtype`); `scaler`: (mean, std)
    of the input's standardization, folded into the graph; `metadata`: string key/values
    stored in the model. Raises NetcError for an op without an ONNX mapping (naming it and its
    line of `source`) and when onnx is not installed."""
    E = predict_graph(G)
    e = Emitter(E, dtype)
    helper = e.helper
    out_node = E.outputs["output"]
    in_name = e.fresh(model.input_name)
    inputs = [_value_info(helper, in_name, e.elem, (B,) + tuple(model.input_shape))]
    x = in_name
    if scaler is not None:       # (raw - mean) / std, in the model's float type
        mean, std = (np.asarray(a, np.float64).reshape(model.input_shape) for a in scaler)
        x = e.node("Sub", [x, e.init(mean.astype(e.dtype), "scaler_mean")], base="centered")
        x = e.node("Div", [x, e.init(std.astype(e.dtype), "scaler_std")], base="standardized")
    emit(e, {model.input_node: x}, params, source)
    out_name = e.fresh(model.output_name or "output")
    e.nodes.append(helper.make_node("Identity", [e.names[out_node]], [out_name], name=e.fresh("n_output")))
    outputs = [_value_info(helper, out_name, e.elem, E.shape(out_node))]
    proto = e.model(model.name, inputs, outputs)
    proto.doc_string = f"netc model '{model.name}': predict"
    for k, v in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    return proto

