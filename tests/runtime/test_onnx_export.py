"""ONNX export (issue 11): every example and a model with a user layer, concat and every
activation, trained 1-2 epochs, exported, checked by onnx's full checker and run by
onnxruntime: its output equals netc's predict within 1e-5 (float32) for batches of 1 and 37;
standardization and string class labels travel inside the file; an op without a mapping is a
located error."""
import json
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (pip install 'netc[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the ONNX export tests run the file with onnxruntime")

import netc
from netc.compiler import export_onnx
from netc.compiler.ir import Graph
from netc.compiler.ops import REGISTRY
from netc.dsl import NetcError
from netc.runtime import session

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
NAMES = ["xor", "moons", "spiral", "linear", "neuron", "digits", "digits_cnn"]

ACTIVATIONS = """
model acts
input  x[4]
target y: class[3]
layer twice(x, n, act=relu) {
  h = act(dense(x, n))
  return concat(h, sigmoid(h))
}
a = twice(x, 5, act=tanh)
b = twice(x, 3)
h = concat(a, b, leaky_relu(dense(x, 2)), elu(dense(x, 2)), gelu(dense(x, 2)), softplus(dense(x, 2)))
z = dense(h, 3) + 0.1 * exp(-abs(dense(x, 3))) + sqrt(1 + square(dense(x, 3))) - log(1 + sigmoid(dense(x, 3)))
r = 0.01 * (mean(h) + max(h) - min(h) + log(sum(exp(h))) + sum(identity(h)))
p = softmax(z + r + 0.1 * log_softmax(dense(x, 3)))
loss cross_entropy(p, y)
optimizer adam(lr=0.01)
train {
  data = blobs(n=200, centers=3, features=4, seed=1)
  batch = 16
  epochs = 2
}
"""


def _session(sess_model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(sess_model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _trained(source, file, epochs=1):
    model = netc.compile(source if file == "<string>" else file, seed=0)
    train, val, _ = session.split(model, session.load_dataset(model))
    model.fit(train.X, train.y, epochs=epochs, validation=(val.X, val.y) if len(val.X) else None)
    return model, np.asarray(train.X)


@pytest.fixture(scope="module", params=NAMES + ["acts"])
def trained(request):
    if request.param == "acts":
        return _trained(ACTIVATIONS, "<string>", epochs=2)
    return _trained(None, os.path.join(EXAMPLES, request.param + ".net"))


def test_exported_model_checks_and_matches_predict(trained, tmp_path):
    model, X = trained
    path = model.export_onnx(str(tmp_path / "m.onnx"))
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == export_onnx.OPSET and proto.ir_version == export_onnx.IR_VERSION
    assert [i.name for i in proto.graph.input] == [model.ir.input_name]
    assert [o.name for o in proto.graph.output] == [model.ir.output_name]
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer
               if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["netc_version"] == netc.__version__ and len(meta["source_sha256"]) == 64
    if model.name == "neuron":          # one sigmoid column: the probability of class 1
        assert json.loads(meta["columns"]) == ["p_1"] and json.loads(meta["classes"]) == ["0", "1"]
    elif model.name == "moons":
        assert json.loads(meta["columns"]) == ["p_0", "p_1"]
    elif model.name == "linear":
        assert "classes" not in meta
    sess = _session(proto)
    rng = np.random.default_rng(0)
    Xs = X[rng.choice(len(X), 100, replace=len(X) < 100)].astype(np.float32)
    want = model.predict(Xs)
    for batch in (1, 37):
        got = np.concatenate([sess.run(None, {model.ir.input_name: Xs[i:i + batch]})[0]
                              for i in range(0, len(Xs), batch)])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_acts_model_really_has_a_layer_concat_and_every_activation():
    proto = netc.compile(ACTIVATIONS, seed=0).to_onnx()
    ops = {n.op_type for n in proto.graph.node}
    assert {"Concat", "Tanh", "Sigmoid", "Max", "Min", "Exp", "Erf", "Softplus", "Softmax", "Sqrt", "Log",
            "Abs", "Gemm", "LogSoftmax", "ReduceLogSumExp", "ReduceMean", "ReduceMax", "ReduceMin",
            "ReduceSum"} <= ops, ops


def test_standardized_string_labels_round_trip(tmp_path):
    src = """
model flowers
input x[2]
target y: class[3]
p = softmax(dense(tanh(dense(x, 8)), 3))
loss cross_entropy(p, y)
optimizer adam(lr=0.05)
train {
  data = blobs(n=10, centers=3, features=2, seed=0)
  standardize = true
  batch = 16
  epochs = 2
}
"""
    rng = np.random.default_rng(3)
    names = np.array(["iris", "rose", "tulip"])
    y = rng.integers(0, 3, 300)
    X = rng.normal(size=(300, 2)) * [50.0, 0.01] + [1000.0, -3.0] + y[:, None] * [60.0, 0.02]
    model = netc.compile(src, seed=0)
    model.fit(X, names[y], epochs=2)
    assert model.scaler is not None and model.classes == list(names)
    proto = onnx.load(model.export_onnx(str(tmp_path / "f.onnx")))
    onnx.checker.check_model(proto, full_check=True)
    classes = json.loads({p.key: p.value for p in proto.metadata_props}["classes"])
    out = _session(proto).run(None, {"x": X.astype(np.float32)})[0]
    onnx_names = [classes[k] for k in out.argmax(axis=1)]
    netc_names = list(model.predict_classes(X))          # the class names (string labels)
    assert onnx_names == netc_names
    assert len(set(netc_names)) == 3                  # the classes are really told apart
    np.testing.assert_allclose(out, model.predict(X), rtol=1e-5, atol=1e-5)


def test_an_op_without_a_mapping_names_the_op_and_its_line(monkeypatch):
    model = netc.compile(os.path.join(EXAMPLES, "xor.net"), seed=0)
    monkeypatch.delitem(export_onnx.EXPORTS, "sigmoid")
    with pytest.raises(NetcError) as e:
        model.to_onnx()
    msg = e.value.render()
    assert "op 'sigmoid' has no ONNX mapping" in msg and "xor.net:10:" in msg


def test_every_registry_op_has_an_export_entry():
    """Every op that can reach a predict graph has an entry; the others (gradient adjoints,
    dropout's masks, the train/predict `phase`) are named as training-only."""
    assert sorted(set(REGISTRY) - set(export_onnx.EXPORTS)) == sorted(export_onnx.TRAINING_ONLY)
    assert sorted(set(export_onnx.EXPORTS) - set(REGISTRY)) == []


def test_float64_models_export_doubles():
    for src, tol in ((os.path.join(EXAMPLES, "moons.net"), 1e-12), (ACTIVATIONS, 1e-6)):   # gelu's erf: float32
        model = netc.compile(src, dtype="float64", seed=0)
        proto = model.to_onnx()
        onnx.checker.check_model(proto, full_check=True)
        assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
        X = np.random.default_rng(0).normal(size=(37, model.ir.input_shape[0]))
        np.testing.assert_allclose(_session(proto).run(None, {"x": X})[0], model.predict(X), rtol=tol, atol=tol)

OP_CASES = [(name, i) for name in sorted(export_onnx.EXPORTS) for i in range(len(REGISTRY[name].cases))]


@pytest.mark.parametrize("name,i", OP_CASES)
def test_every_op_case_runs_in_onnxruntime_like_its_reference(name, i):
    """Each registry op's ONNX entry, on each of the registry's cases (batch 3 and 1), in
    float64 against the op's NumPy reference."""
    case = REGISTRY[name].cases[i]
    rng = np.random.default_rng(0)
    G = Graph()
    ins = [G.leaf("input", f"a{k}", s, dtype="int" if case.is_int(k) else "float") for k, s in enumerate(case.shapes)]
    n = G.add(name, ins, case.attrs)
    proto = export_onnx.graph_proto(G, ins, [n], "float64", name)
    onnx.checker.check_model(proto, full_check=True)
    sess = _session(proto)
    for batch in (3, 1):
        feeds = [case.sample(k, rng, batch) for k in range(len(ins))]
        want = REGISTRY[name].ref(*feeds, **case.attrs)
        got = sess.run(None, {f"a{k}": f for k, f in enumerate(feeds)})[0]
        assert got.shape == np.shape(want), (got.shape, np.shape(want))
        # float64 erf, Conv and AveragePool run in float32 in onnxruntime (docs/cli.md)
        tol = 1e-6 if name in ("erf", "conv2d", "avgpool") else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_digits_exports_its_predict_graph_only_with_dense_layers_as_gemm():
    proto = netc.compile(os.path.join(EXAMPLES, "digits.net"), seed=0).to_onnx()
    ops = [n.op_type for n in proto.graph.node]
    # three dense layers (bias folded into Gemm's C), two relus, the softmax: the auxiliary head,
    # the losses and the target are not there
    assert ops == ["Gemm", "Max", "Gemm", "Max", "Gemm", "Softmax", "Identity"]
    assert all(len(n.input) == 3 for n in proto.graph.node if n.op_type == "Gemm")
    assert sorted(t.name for t in proto.graph.initializer if "aux" in t.name) == []
