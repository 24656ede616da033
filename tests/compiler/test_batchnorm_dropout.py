"""batchnorm and dropout: from identical weights and batches, 20 steps equal PyTorch's params and
running statistics (float64) with SGD momentum and with Adam, per feature ([n]) and per channel
([C, H, W]); predict equals PyTorch's eval() output. Dropout: the identity in predict; in training
the kept fraction and the mean; the masks keyed by (seed, step, element).

The image model reduces with a param instead of flatten + dense (flatten is helper D1's, not in
this tree yet): o = sum(relu(batchnorm(img)) * V)."""
import numpy as np
import pytest

import netc

torch = pytest.importorskip("torch")

FEATURES = """
model bnf
input  x[5]
target y: class[3]
h = relu(batchnorm(dense(x, 6), momentum={mom}))
p = softmax(dense(h, 3))
loss cross_entropy(p, y)
optimizer {opt}
"""

IMAGE = """
model bni
input  img[2, 3, 4]
target t[1]
param V[2, 3, 4] = normal(0, 0.5)
h = relu(batchnorm(img, eps=0.001))
o = sum(h * V)
loss mean(square(o - t))
output o
optimizer {opt}
"""

OPTS = {
    "sgd(lr=0.1, momentum=0.9)": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adam(lr=0.01)": lambda ps: torch.optim.Adam(ps, lr=0.01),
}


@pytest.mark.parametrize("opt", list(OPTS))
def test_per_feature_twenty_steps_equal_pytorch(opt, bn_torch, check_bn_state):
    model = netc.compile(FEATURES.format(opt=opt, mom=0.2), dtype="float64", seed=3)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((80, 5)) * 2 + 1, rng.integers(0, 3, 80)
    p = {k: v.copy() for k, v in model.params.items()}
    lin1, lin2 = torch.nn.Linear(5, 6).double(), torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        for lin, pre in ((lin1, "h.dense"), (lin2, "p.dense")):
            lin.weight.copy_(torch.tensor(p[f"{pre}.W"]))
            lin.bias.copy_(torch.tensor(p[f"{pre}.b"]))
    bn = bn_torch(p, "h.batchnorm", 6, 0.2, 1e-5, 1)
    net = torch.nn.Sequential(lin1, bn, torch.nn.ReLU(), lin2)
    topt = OPTS[opt](list(net.parameters()))
    Xt, yt = torch.tensor(X), torch.tensor(y)
    net.train()
    for epoch in range(5):
        for i in range(0, 80, 20):
            topt.zero_grad()
            torch.nn.functional.cross_entropy(net(Xt[i:i + 20]), yt[i:i + 20]).backward()
            topt.step()
    model.fit(X, y, epochs=5, batch=20, shuffle=False)
    assert model.step == 20
    for pre, lin in (("h.dense", lin1), ("p.dense", lin2)):
        np.testing.assert_allclose(model.params[f"{pre}.W"], lin.weight.detach().numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(model.params[f"{pre}.b"], lin.bias.detach().numpy(), rtol=1e-6, atol=1e-6)
    check_bn_state(model, "h.batchnorm", bn)
    net.eval()
    with torch.no_grad():
        want = torch.softmax(net(Xt), dim=1).numpy()
    np.testing.assert_allclose(model.predict(X), want, rtol=1e-9, atol=1e-9)
    # the running statistics are not optimizer state: the optimizer's state names only params
    assert all(not k.startswith("h.batchnorm.running") for k in model.state)


@pytest.mark.parametrize("opt", list(OPTS))
def test_per_channel_image_twenty_steps_equal_pytorch(opt, bn_torch, check_bn_state):
    model = netc.compile(IMAGE.format(opt=opt), dtype="float64", seed=5)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 24)) * 3 - 1
    t = rng.standard_normal(40)
    p = {k: v.copy() for k, v in model.params.items()}
    bn = bn_torch(p, "h.batchnorm", 2, 0.1, 1e-3, 2)
    V = torch.tensor(p["V"], requires_grad=True)
    topt = OPTS[opt](list(bn.parameters()) + [V])
    Xt, tt = torch.tensor(X).reshape(40, 2, 3, 4), torch.tensor(t)
    fwd = lambda x: (torch.relu(bn(x)) * V).sum(dim=(1, 2, 3))
    bn.train()
    for epoch in range(2):
        for i in range(0, 40, 4):
            topt.zero_grad()
            torch.nn.functional.mse_loss(fwd(Xt[i:i + 4]), tt[i:i + 4]).backward()
            topt.step()
    model.fit(X, t, epochs=2, batch=4, shuffle=False)
    assert model.step == 20
    np.testing.assert_allclose(model.params["V"], V.detach().numpy(), rtol=1e-6, atol=1e-6)
    check_bn_state(model, "h.batchnorm", bn)
    bn.eval()
    with torch.no_grad():
        want = fwd(Xt).numpy()
    np.testing.assert_allclose(np.ravel(model.predict(X)), want, rtol=1e-9, atol=1e-9)


def test_running_statistics_are_saved_and_loaded(tmp_path):
    model = netc.compile(IMAGE.format(opt="sgd(lr=0.01)"), dtype="float64", seed=5)
    rng = np.random.default_rng(2)
    X, t = rng.standard_normal((16, 24)) + 2, rng.standard_normal(16)
    model.fit(X, t, epochs=1, batch=8, shuffle=False)
    rm = model.params["h.batchnorm.running_mean"].copy()
    assert np.all(rm != 0)
    model.save(tmp_path / "m")
    back = netc.load(tmp_path / "m")
    np.testing.assert_array_equal(back.params["h.batchnorm.running_mean"], rm)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


# ------------------------------------------------------------------ dropout
DROP = """
model drop
input  x[1000]
target t[1]
param w[1000] = 1
h = dropout(x * w, {rate})
loss mean(square(sum(h) - t))
output h
optimizer sgd(lr=0.0)
"""


@pytest.fixture(scope="module")
def dropout_model():
    return netc.compile(DROP.format(rate=0.3), dtype="float64", seed=0)


def _train_output(model, X, step):
    t = np.zeros((len(X), 1))
    out = np.empty((len(X), 1000))
    losses = np.zeros(1)
    model.artifact.train_step(X, t, 0.0, step, model.param_arrays(), model.state_arrays(), losses, out)
    return out


def test_dropout_is_the_identity_in_predict(dropout_model):
    X = np.random.default_rng(0).standard_normal((7, 1000))
    np.testing.assert_array_equal(dropout_model.predict(X), X)


def test_dropout_keeps_one_minus_rate_and_preserves_the_mean(dropout_model):
    X = np.ones((100, 1000))                              # 10**5 elements
    out = _train_output(dropout_model, X, 1)
    kept = np.mean(out != 0)
    assert abs(kept - 0.7) <= 0.01
    assert set(np.unique(out)) == {0.0, 1 / 0.7}
    assert abs(out.mean() - 1.0) <= 0.015
    # a counter-based generator: the same step draws the same mask, another step another one
    np.testing.assert_array_equal(_train_output(dropout_model, X, 1), out)
    other = _train_output(dropout_model, X, 2)
    assert np.mean((other != 0) == (out != 0)) < 0.7
    # ... and it is the registry's reference formula of (seed, step, flat index)
    from netc.compiler.ops import REGISTRY
    seed = dropout_model.params["h.dropout.seed"]
    np.testing.assert_array_equal(out, REGISTRY["dropout_mask"].ref(X, seed, 1.0, rate=0.3))


def test_dropout_gradient_is_masked():
    model = netc.compile("""
model dg
input  x[50]
target t[1]
param w[50] = 1
h = dropout(x * w, 0.5)
loss mean(square(sum(h) - t))
output h
optimizer sgd(lr=1.0)
""", dtype="float64", seed=0)
    X, t = np.ones((1, 50)), np.zeros((1, 1))
    out = _train_output_n(model, X, t)
    # d loss / d w = 2 sum(h) * mask: the dropped elements keep w = 1
    w = model.params["w"]
    np.testing.assert_array_equal(w[out == 0], 1.0)
    np.testing.assert_allclose(w[out != 0], 1.0 - 2 * out.sum() * 2.0)


def _train_output_n(model, X, t):
    out = np.empty((len(X), X.shape[1]))
    model.artifact.train_step(X, t, 1.0, 1, model.param_arrays(), model.state_arrays(), np.zeros(1), out)
    return out[0]


def test_rate_out_of_range_is_a_located_error():
    from netc.dsl import NetcError
    with pytest.raises(NetcError) as e:
        netc.compile(DROP.format(rate=1.5))
    assert "rate of dropout" in str(e.value) and ":6:" in str(e.value)


def test_show_optimized_prints_both_views_and_no_phase_reaches_the_kernels():
    from netc.compiler.frontend import check, kernels_source
    from netc.compiler.show import stage
    from netc.dsl import parse
    src = FEATURES.format(opt="sgd(lr=0.1)", mom=0.1).replace("h = relu(", "h = dropout(relu(").replace(
        "momentum=0.1))", "momentum=0.1)), 0.5)")
    text = stage(parse(src), "optimized")
    train, _, predict = text.partition("# optimized predict graph")
    assert "# optimized train_step graph" in train and "dropout_mask(" in train and "reduce_mean(" in train
    assert predict and "dropout_mask(" not in predict and "running_mean" in predict
    assert "update:h.batchnorm.running_var" in train and "update:" not in predict
    for device in ("cpu",):
        assert "phase" not in kernels_source(check(parse(src)), device, "float64")


@pytest.mark.parametrize("off", ["dce", "fuse"])
def test_switching_off_dce_or_fuse_changes_nothing(off):
    src = FEATURES.format(opt="sgd(lr=0.1, momentum=0.9)", mom=0.1).replace("h = relu(", "h = dropout(relu(").replace(
        "momentum=0.1))", "momentum=0.1)), 0.5)")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    got = []
    for disabled in ((), (off,)):
        m = netc.compile(src, dtype="float64", seed=0, disabled_passes=disabled)
        m.fit(X, y, epochs=2, batch=8, shuffle=False)
        got.append(np.concatenate([m.predict(X).ravel()] + [v.ravel() for v in m.params.values()]))
    np.testing.assert_allclose(got[1], got[0], rtol=1e-12, atol=1e-12)


NRT_MODEL = """model m
input img[2, 3, 3]
target y[1]
param V[2, 3, 3] = normal(0, 0.5)
h = dropout(relu(batchnorm(img)), 0.3)
o = sum(h * V)
output o
loss mean(square(o - y))
optimizer adam(lr=0.01)
"""


def test_steady_state_step_with_batchnorm_and_dropout_allocates_nothing(nrt_allocations):
    """As tests/compiler/test_codegen.py's NRT test, on an image model with both."""
    step, noop = nrt_allocations(NRT_MODEL)
    assert step == noop, (step, noop)
    step_off, noop_off = nrt_allocations(NRT_MODEL, ["memplan"])       # the check can fail
    assert step_off[0] > noop_off[0] + 5, (step_off, noop_off)


BAD = [
    ("param M[4, 5]\nz = batchnorm(M)", "batchnorm needs a per-sample [n] or [C, H, W] value", 5),
    ("z = batchnorm(sum(x))", "batchnorm needs a per-sample [n] or [C, H, W] value", 4),
    ("z = batchnorm(dense(x, 4), momentum=2)", "the momentum of batchnorm must be in [0, 1]", 4),
    ("z = batchnorm(dense(x, 4), eps=0)", "the eps of batchnorm must be positive", 4),
    ("param w[4]\nz = dropout(w, 0.5)", "dropout needs a per-sample value", 5),
]


@pytest.mark.parametrize("stmt,msg,line", BAD)
def test_mistakes_are_located_errors(stmt, msg, line):
    from netc.dsl import NetcError
    src = "model bad\ninput x[4]\ntarget y: class[3]\n" + stmt + "\nloss cross_entropy(softmax(dense(x, 3)), y)\n"
    with pytest.raises(NetcError) as e:
        netc.compile(src)
    assert msg in str(e.value) and f":{line}:" in str(e.value), str(e.value)


def test_a_divergence_after_dropout_is_named_as_the_forward_op(tmp_path):
    """dropout's mask reads the step count; the node after it is still forward, not update."""
    from netc.runtime.diverge import TrainingDiverged
    f = tmp_path / "bad.net"
    f.write_text("""model bad
input x[2]
target t[1]
param w[1, 2] = 1
z = dropout(w @ x, 0.1)
r = log(z)
loss mse(r, t)
optimizer sgd(lr=0.01)
""")
    m = netc.compile(str(f))
    X = np.array([[-1.0, -2.0]] * 16)
    with pytest.raises(TrainingDiverged) as err:
        m.fit(X, np.ones((16, 1)), epochs=1, batch=8, shuffle=False)
    assert err.value.origin["kind"] == "forward" and err.value.origin["op"] == "log", err.value.origin


def test_sequence_input_is_per_channel_as_batchnorm1d(bn_torch, check_bn_state):
    """[C, L] per sample: statistics over the batch and L, as torch's BatchNorm1d on (N, C, L)."""
    model = netc.compile("""model seq
input  s[3, 5]
target t[1]
param V[3, 5] = normal(0, 0.5)
o = sum(batchnorm(s) * V)
loss mean(square(o - t))
output o
optimizer sgd(lr=0.1)
""", dtype="float64", seed=2)
    rng = np.random.default_rng(3)
    X, t = rng.standard_normal((12, 15)) * 2 + 0.5, rng.standard_normal((12, 1))
    p = {k: v.copy() for k, v in model.params.items()}
    bn = bn_torch(p, "o.batchnorm", 3, 0.1, 1e-5, 1)
    V = torch.tensor(p["V"], requires_grad=True)
    topt = torch.optim.SGD(list(bn.parameters()) + [V], lr=0.1)
    Xt, tt = torch.tensor(X).reshape(12, 3, 5), torch.tensor(t[:, 0])
    for i in range(0, 12, 4):
        topt.zero_grad()
        torch.nn.functional.mse_loss((bn(Xt[i:i + 4]) * V).sum(dim=(1, 2)), tt[i:i + 4]).backward()
        topt.step()
    model.fit(X, t, epochs=1, batch=4, shuffle=False)
    np.testing.assert_allclose(model.params["V"], V.detach().numpy(), rtol=1e-6, atol=1e-6)
    check_bn_state(model, "o.batchnorm", bn)
