"""`netc export` (a trained run -> an ONNX file that onnxruntime runs like `netc predict`, with
the class names of a CSV's string labels), `netc summary` (the per-statement table, its param
total and the FLOPs of xor counted by hand), and one number called "params" everywhere."""
import csv
import json

import numpy as np
import pytest

import netc
from netc.compiler import export_onnx
from netc.compiler.summary import summarize
from netc.runtime.build import check_source


def test_summary_of_xor_counts_params_and_flops_by_hand(run_main, example):
    code, out, err = run_main("summary", example("xor"))
    assert code == 0, err
    model = netc.compile(example("xor"))
    total = sum(p.size for p in model.params.values())
    assert total == 17
    assert f"params: {total} in 4 tensors" in out
    lines = out.splitlines()
    for text in ("h_pre = W_h @ x + b_h", "h     = sigmoid(h_pre)", "y_pre = W_o @ h + b_o",
                 "y_hat = softmax(y_pre)", "loss cross_entropy(y_hat, y)", "W_h [3, 2] = 6", "b_o [2] = 2"):
        assert any(text in l for l in lines), text
    # the hand count, per sample (a matrix product m x k by k x n is 2mkn; elementwise ops 1 per
    # element; a reduction 1 per input element; softmax 3 per element; log_softmax 3 per
    # element + 1 per row):
    h_pre = 2 * 3 * 2 + 3            # W_h @ x: 3 outputs of 2 multiply-adds; + b_h
    h = 3                            # sigmoid
    y_pre = 2 * 2 * 3 + 2            # W_o @ h + b_o
    y_hat = 3 * 2                    # softmax of 2 values
    loss = (3 * 2 + 1) + 2 + 2 + 1 + 1   # log_softmax (stabilized), * onehot, sum, neg, batch mean
    s = model.summary()
    rows = {r.text.split("=")[0].split("(")[0].strip(): r.forward for r in s.rows}
    assert rows["h_pre"] == h_pre and rows["h"] == h and rows["y_pre"] == y_pre and rows["y_hat"] == y_hat
    assert rows["loss cross_entropy"] == loss
    assert s.forward == h_pre + h + y_pre + y_hat + loss == 51 and s.forward_fixed == 0
    assert "forward FLOPs: 51 per sample" in out
    assert s.params == total
    # a train step costs more than its forward, and the update's cost does not grow with the batch
    assert s.train > 2 * s.forward and s.train_fixed > 0


def test_summary_of_digits_matches_the_model(example):
    model = netc.compile(example("digits"))
    s = model.summary()
    assert s.params == sum(p.size for p in model.params.values()) == 18516
    assert sum(r.param_count for r in s.rows) == s.params
    assert sum(r.forward for r in s.rows) == s.forward
    h1 = next(r for r in s.rows if r.text.startswith("h1"))
    assert h1.shape == (128,) and [n for n, _ in h1.params] == ["h1.block.dense.W", "h1.block.dense.b"]
    assert h1.forward == 2 * 64 * 128 + 128 + 128           # dense (matmul + bias) and relu
    decay = next(r for r in s.rows if r.text.startswith("loss decay"))
    assert decay.forward == 0 and decay.fixed > 0            # the weight penalty is per step


def test_summary_of_a_file_with_a_mistake_exits_2(run_main, tmp_path):
    f = tmp_path / "bad.net"
    f.write_text("model bad\ninput x[2]\np = softmax(dense(x, 2)\n")
    code, out, err = run_main("summary", f)
    assert code == 2 and "bad.net:" in err and "Traceback" not in err


def test_check_and_train_say_the_same_params(run_main, example, tmp_path):
    code, out, _ = run_main("check", example("moons"))
    assert code == 0 and "82 params in 4 tensors" in out
    code, out, err = run_main("train", example("moons"), "--epochs", "1", "--out", tmp_path / "r")
    assert code == 0 and "82 params in 4 tensors" in out + err
    assert "82 params in 4 tensors" in repr(netc.compile(example("moons")))


onnx_needed = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("onnx", "onnxruntime")),
    reason="netc export needs onnx, and the test runs the file with onnxruntime")


@onnx_needed
def test_export_of_a_run_runs_like_netc_predict(run_main, tmp_path):
    import onnx
    import onnxruntime as ort
    # a CSV with string labels and features of very different scales, standardized
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    X = np.c_[rng.normal(size=200) * 100 + 500 + 80 * y, rng.normal(size=200) * 0.01 + 0.01 * y]
    data = tmp_path / "d.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "kind"])
        for row, k in zip(X, y):
            w.writerow([f"{row[0]:.9g}", f"{row[1]:.9g}", ["cat", "dog"][k]])
    net = tmp_path / "pets.net"
    net.write_text(f"""model pets
input x[2]
target y: class[2]
p = softmax(dense(relu(dense(x, 8)), 2))
loss cross_entropy(p, y)
optimizer adam(lr=0.05)
train {{
  data = csv("{data}", label="kind")
  standardize = true
  batch = 32
  epochs = 2
}}
""")
    code, out, err = run_main("train", net, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    code, out, err = run_main("export", tmp_path / "run", "-o", tmp_path / "pets.onnx")
    assert code == 0, err
    assert "opset 17" in out and "standardization folded in" in out and "cat, dog" in out
    code, out, err = run_main("predict", tmp_path / "run", "--data", data, "-o", tmp_path / "p.csv")
    assert code == 0, err
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    proto = onnx.load(str(tmp_path / "pets.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    classes = json.loads(meta["classes"])
    assert classes == ["cat", "dog"] and meta["standardized_inside"] == "true"
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    raw = np.loadtxt(data, delimiter=",", skiprows=1, usecols=(0, 1), dtype=np.float32)
    got = sess.run(None, {"x": raw})[0]
    want = np.array([[float(r["p_cat"]), float(r["p_dog"])] for r in rows])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert [classes[k] for k in got.argmax(axis=1)] == [r["class"] for r in rows]


def test_export_without_onnx_is_a_clear_error(run_main, tmp_path, example, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_onnx(name, *a, **kw):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real(name, *a, **kw)
    code, _, err = run_main("train", example("xor"), "--epochs", "1", "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    code, out, err = run_main("export", tmp_path / "r", "-o", tmp_path / "x.onnx")
    assert code == 2 and "pip install 'netc[onnx]'" in err and "Traceback" not in err


def test_export_of_a_missing_checkpoint_exits_2(run_main, tmp_path):
    code, _, err = run_main("export", tmp_path / "nothing", "-o", tmp_path / "x.onnx")
    assert code == 2 and "Traceback" not in err


@pytest.mark.parametrize("name", ["xor", "moons", "spiral", "linear", "neuron", "digits"])
def test_summary_of_every_example_adds_up(name, example):
    checked, _ = check_source(open(example(name)).read(), example(name))
    s = summarize(checked.train.forward, checked.train.graph, checked.model, checked.program)
    assert s.params == sum(int(np.prod(p.shape)) for p in checked.model.params)
    assert sum(r.param_count for r in s.rows) == s.params          # every param in exactly one row
    assert sum(r.forward for r in s.rows) == s.forward and sum(r.fixed for r in s.rows) == s.forward_fixed
    assert s.forward > 0 and s.train > s.forward


@onnx_needed
def test_export_of_an_op_without_a_mapping_exits_2_at_its_line(run_main, tmp_path, example, monkeypatch):
    code, _, err = run_main("train", example("xor"), "--epochs", "1", "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    monkeypatch.delitem(export_onnx.EXPORTS, "sigmoid")
    code, out, err = run_main("export", tmp_path / "r", "-o", tmp_path / "x.onnx")
    assert code == 2 and "Traceback" not in err
    assert "xor.net:10:" in err and "op 'sigmoid' has no ONNX mapping" in err and "h     = sigmoid(h_pre)" in err
    assert not (tmp_path / "x.onnx").exists()
