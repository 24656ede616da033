"""`netc show --stage grad --math`: the gradient as the lecture writes it, read from the graph;
the softmax cross-entropy gradient is p − onehot(y) in the graph and in the generated kernel."""
import os
import re

import numpy as np
import pytest

from netc.cli import main
from netc.compiler.backend import cpu
from netc.compiler.frontend import check, kernels_source
from netc.compiler.mathview import equations
from netc.dsl import parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _example(name):
    path = os.path.join(ROOT, "examples", f"{name}.net")
    with open(path) as f:
        return parse(f.read(), path)


def test_xor_math_shows_the_lectures_backprop(capsys):
    assert main(["show", os.path.join(ROOT, "examples", "xor.net"), "--stage", "grad", "--math"]) == 0
    out = capsys.readouterr().out
    eq = dict(re.findall(r"^\s+(\S.*?)\s+= (.*)$", out, flags=re.M))
    assert eq["∇_{y_pre} L"] == "(y_hat − onehot(y)) / B"
    assert eq["∇_{h_pre} L"] == "∇_{h} L ⊙ h ⊙ (1 − h)"
    assert eq["∇_{W_o} L"] == "∇_{y_pre} L · hᵀ"
    assert eq["∇_{h} L"] == "W_oᵀ · ∇_{y_pre} L"
    assert eq["∇_{W_h} L"] == "∇_{h_pre} L · xᵀ"
    assert eq["∇_{b_o} L"] == "Σ_batch ∇_{y_pre} L"
    assert eq["h_pre"] == "W_h · x + b_h"
    # backward order: from the loss to the first layer
    keys = [k for k in eq if k.startswith("∇")]
    assert keys.index("∇_{y_pre} L") < keys.index("∇_{h} L") < keys.index("∇_{h_pre} L") < keys.index("∇_{W_h} L")


def test_math_reads_the_graph_not_a_template():
    # without simplify the graph keeps exp(log_softmax) and a row sum, and the view says so
    _, _, plain = equations(_example("xor"))
    _, _, raw = equations(_example("xor"), disabled=("simplify",))
    assert "y_hat − onehot(y)" in dict(plain)["∇_{y_pre} L"]
    assert "y_hat" not in dict(raw)["∇_{y_pre} L"] and "exp(" in dict(raw)["∇_{y_pre} L"] and "Σ_k" in dict(raw)["∇_{y_pre} L"]


def test_math_of_the_other_lecture_programs():
    _, fwd, eqs = equations(_example("spiral"))        # relu mlp: the mask is an indicator
    text = "\n".join(f"{a} = {b}" for a, b in eqs)
    assert "(p − onehot(y)) / B" in text
    assert "∇_{h2} L ⊙ [h2 > 0]" in text and "∇_{h1} L ⊙ [h1 > 0]" in text
    # a layer's unnamed pre-activation gets a name of its own, and its gradient that name
    f = dict(fwd)
    z = next(k for k, v in f.items() if v == "p.dense.W · h2 + p.dense.b")
    assert f["p"] == f"softmax({z})" and dict(eqs)[f"∇_{{{z}}} L"] == "(p − onehot(y)) / B"
    _, fwd, eqs = equations(_example("linear"))         # mse: 2 (y_hat − y) / B
    z = next(k for k, v in fwd if v == "y_hat − y")
    assert dict(eqs)["∇_{y_hat} L"] == f"2 · ({z} / B)"
    _, fwd, eqs = equations(_example("digits"))         # several losses: the aux head's 0.3, l2
    d = dict(eqs)
    assert "L_main" in dict(fwd) and dict(fwd)["L"] == "L_main + L_aux + L_decay"
    assert any("(0.3 / B)" in b and "aux − onehot(y)" in "".join(x for _, x in eqs) for b in d.values())
    assert "aux.dense.Wᵀ" in d["∇_{h1} L"] and "h2.block.dense.Wᵀ" in d["∇_{h1} L"]
    _, _, eqs = equations(_example("digits_cnn"))      # ops without a lecture name: calls
    assert any("conv2d_dw(" in b for _, b in eqs)


def test_auxiliary_names_never_take_a_name_of_the_file():
    src = open(os.path.join(ROOT, "examples", "spiral.net")).read().replace("h1 = relu(dense(x, 64))",
                                                                             "z1 = dense(x, 64)\nh1 = relu(z1)")
    _, fwd, eqs = equations(parse(src, "spiral.net"))
    names = [a for a, _ in fwd]
    assert names.count("z1") == 1 and dict(fwd)["z1"] == "z1.dense.W · x + z1.dense.b"   # the params are named after z1
    assert dict(eqs)["∇_{z1} L"] == "∇_{h1} L ⊙ [h1 > 0]"


def test_softmax_cross_entropy_gradient_is_p_minus_onehot_in_graph_and_kernel():
    checked = check(_example("xor"))
    graphs, _ = cpu.entry_graphs(checked)
    E = graphs["train_step"]
    ops = [E.op(n) for n in E.g.nodes]
    assert "exp" not in ops                           # no exp of the log-softmax
    subs = [n for n in E.g.nodes if E.op(n) == "sub" and [E.op(i) for i in E.inputs(n)] == ["softmax", "onehot"]]
    assert len(subs) == 1
    assert E.node(E.inputs(subs[0])[0]).get("span").line == 12       # the model's own y_hat
    src = kernels_source(checked, "cpu", "float32")
    step = src[src.index("def train_step"):src.index("def evaluate")]
    assert not re.search(r"# exp\b(?!and)", step.replace("# expand", "")) and "exp, mul, sub" not in step
    # the kernel of the rows: log_softmax's own max-shifted exp stays; no elementwise exp loop
    assert not re.search(r"np\.exp\(m\d+\[", step)


def test_the_new_gradient_equals_the_old_one_in_float64():
    import netc
    src = open(os.path.join(ROOT, "examples", "xor.net")).read()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 2))
    y = rng.integers(0, 2, 16)
    a = netc.compile(src, dtype="float64", seed=1)
    b = netc.compile(src, dtype="float64", seed=1, disabled_passes=("simplify",))
    a.fit(X, y, epochs=3, batch=8, shuffle=False, standardize=False)
    b.fit(X, y, epochs=3, batch=8, shuffle=False, standardize=False)
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-9, atol=1e-12)


def test_cuda_kernels_compute_p_minus_onehot_too():
    pytest.importorskip("numba.cuda")
    src = kernels_source(check(_example("xor")), "cuda", "float32")
    exps = [line for line in src.splitlines() if "math.exp(" in line]
    assert exps and all("# sigmoid" in line for line in exps), exps      # no exp of the log-softmax
    assert "onehot mul expand sub" in src


def test_math_without_a_loss_and_with_another_stage(tmp_path, capsys):
    f = tmp_path / "a.net"
    f.write_text("model a\ninput x[2]\nparam W[3, 2] = glorot\nh = tanh(W @ x)\noutput h\n")
    assert main(["show", str(f), "--stage", "grad", "--math"]) == 0
    out = capsys.readouterr().out
    assert "h = tanh(W · x)" in out and "no loss: nothing to differentiate" in out
    assert main(["show", str(f), "--stage", "kernels", "--math"]) == 2
    assert "--math goes with --stage grad" in capsys.readouterr().err
