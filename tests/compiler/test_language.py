"""The whole language, end to end: programs that use every built-in compile, compute what
PyTorch computes from the same params (forward, every loss term, the gradient), and train;
user layers with defaults and activations as arguments; every initializer; every schedule
and lr_scale against PyTorch's schedulers; digits.net exactly as written.

Compiled models are shared (module-scoped fixtures): each Numba compile costs seconds."""
import ast
from pathlib import Path

import numpy as np
import pytest

import netc
from netc.compiler import builtins as builtins_module
from netc.compiler.builtins import BUILTINS
from netc.compiler.calls import Call
from netc.compiler.elaborate import elaborate
from netc.compiler.initializers import INITIALIZERS as INIT_NAMES, initialize
from netc.compiler.optim import OPTIMIZER_ARGS
from netc.dsl import parse
from netc.runtime.schedules import SCHEDULES

torch = pytest.importorskip("torch")
F = torch.nn.functional

ROOT = Path(__file__).resolve().parents[2]

EVERYTHING = """
model everything
input  x[4]
target y: class[3]

layer unit(x, n, act=relu, init=he) {
  return act(dense(x, n, init=init))
}

param W[5, dim(x)] = glorot_normal
param b[5]         = 0.1
param V[5, 4]      = he_normal
param c[5]         = normal(0, 0.01)
param U[3, 5]      = uniform(-0.1, 0.1)
param z[3]         = zeros

h1 = unit(x, 5)
h2 = unit(x, 5, act=gelu, init=glorot)
h3 = unit(h1, 5, act=elu)
h4 = leaky_relu(W @ x + b, 0.1)
h5 = softplus(V @ x + c) + tanh(x @ transpose(V))
h6 = identity(sigmoid(h2)) * sqrt(square(h3) + 1) + abs(h1) - exp(-square(h3)) + log(1 + square(h2))
g  = max(h5, h6) + min(h4, 0)
hc = concat(h1, g, h6)
s  = max(hc) - min(hc) + mean(hc) + sum(h4) / dim(h4)
logits = dense(hc, 3, bias=false) + U @ h4 + z + 0.1 * s
p  = softmax(logits)
lp = log_softmax(logits)

loss main = cross_entropy(p, y)
loss soft = 0.5 * cross_entropy(p, onehot(y))
loss nll  = -0.1 * sum(onehot(y) * lp)
loss reg  = 1e-3 * l2(weights) + 1e-4 * l1(params) + 1e-3 * l2([W, V])
output p
optimizer sgd(lr=0.05, momentum=0.9)
"""


def everything_torch(P, X, y):
    """EVERYTHING, written in PyTorch: (p, {term: value})."""
    dense = lambda h, k, bias=True: h @ P[f"{k}.W"].T + (P[f"{k}.b"] if bias else 0)
    h1 = F.relu(dense(X, "h1.unit.dense"))
    h2 = F.gelu(dense(X, "h2.unit.dense"))
    h3 = F.elu(dense(h1, "h3.unit.dense"))
    h4 = F.leaky_relu(X @ P["W"].T + P["b"], 0.1)
    h5 = F.softplus(X @ P["V"].T + P["c"]) + torch.tanh(X @ P["V"].T)
    h6 = torch.sigmoid(h2) * torch.sqrt(h3 ** 2 + 1) + h1.abs() - torch.exp(-h3 ** 2) + torch.log(1 + h2 ** 2)
    g = torch.maximum(h5, h6) + torch.minimum(h4, torch.zeros_like(h4))
    hc = torch.cat([h1, g, h6], dim=1)
    s = hc.amax(1) - hc.amin(1) + hc.mean(1) + h4.sum(1) / 5
    logits = hc @ P["logits.dense.W"].T + h4 @ P["U"].T + P["z"] + 0.1 * s[:, None]
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(y, 3).double()
    weights = [v for v in P.values() if v.ndim == 2]
    terms = {
        "main": F.nll_loss(torch.log(p), y),
        "soft": 0.5 * (-(onehot * torch.log(p)).sum(1)).mean(),
        "nll": -0.1 * (onehot * torch.log_softmax(logits, 1)).sum(1).mean(),
        "reg": 1e-3 * sum((w ** 2).sum() for w in weights) + 1e-4 * sum(v.abs().sum() for v in P.values())
        + 1e-3 * ((P["W"] ** 2).sum() + (P["V"] ** 2).sum()),
    }
    return p, terms


def data(n=60, d=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, d)) * 2
    y = rng.integers(0, classes, n)
    return centers[y] + 0.5 * rng.standard_normal((n, d)), y


@pytest.fixture(scope="module")
def everything():
    return netc.compile(EVERYTHING, dtype="float64", seed=4)


def test_the_language_contract_builtins_exist():
    """Every built-in that LANGUAGE.md lists has an implementation."""
    functions = """dense sigmoid tanh relu leaky_relu softmax log_softmax identity elu gelu softplus exp log
        sqrt abs square sum mean max min transpose concat onehot dim cross_entropy binary_cross_entropy
        mse mae huber l2 l1""".split()
    assert not [f for f in functions if f not in BUILTINS]
    assert {"zeros", "normal", "uniform", "glorot", "glorot_normal", "he", "he_normal"} <= set(INIT_NAMES)
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad"} <= set(OPTIMIZER_ARGS)
    assert {"constant", "step", "exponential", "cosine", "warmup", "plateau"} <= set(SCHEDULES)


def test_builtins_use_only_the_call_api():
    """A built-in reads its arguments, builds nodes and reports through its `Call`, never
    through the elaborator: every attribute of a Call that builtins.py uses is public API."""
    tree = ast.parse(Path(builtins_module.__file__).read_text())
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "c"}
    public = {name for name in dir(Call) if not name.startswith("_")}
    assert used and used <= public, sorted(used - public)


def test_params_have_hierarchical_names(everything):
    assert list(everything.params) == [
        "W", "b", "V", "c", "U", "z", "h1.unit.dense.W", "h1.unit.dense.b", "h2.unit.dense.W", "h2.unit.dense.b",
        "h3.unit.dense.W", "h3.unit.dense.b", "logits.dense.W"]
    assert everything.loss_names == ["main", "soft", "nll", "reg"]


def test_initializers_are_the_ones_written(everything):
    inits = {p.name: (p.init.kind, p.init.args) for p in everything.ir.params}
    assert inits["W"] == ("glorot_normal", ())
    assert inits["b"] == ("const", (0.1,))
    assert inits["V"] == ("he_normal", ())
    assert inits["c"] == ("normal", (0.0, 0.01))
    assert inits["U"] == ("uniform", (-0.1, 0.1))
    assert inits["z"] == ("zeros", ())
    assert inits["h1.unit.dense.W"] == ("he", ())            # the layer's default argument
    assert inits["h2.unit.dense.W"] == ("glorot", ())        # given at the call
    assert inits["h1.unit.dense.b"] == ("zeros", ())
    np.testing.assert_array_equal(everything.params["b"], 0.1)
    np.testing.assert_array_equal(everything.params["z"], 0.0)
    assert np.all(np.abs(everything.params["U"]) <= 0.1)


def test_forward_and_every_loss_term_equal_pytorch(everything):
    X, y = data(40)
    P = {k: torch.tensor(v.copy()) for k, v in everything.params.items()}
    p, terms = everything_torch(P, torch.tensor(X), torch.tensor(y))
    np.testing.assert_allclose(everything.predict(X), p.numpy(), rtol=1e-10, atol=1e-12)
    got = everything.evaluate(X, y)
    for name, value in terms.items():
        np.testing.assert_allclose(got[name], value.item(), rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(got["loss"], sum(v.item() for v in terms.values()), rtol=1e-10)


def test_gradient_equals_pytorch_then_training_lowers_the_loss(everything):
    X, y = data(60, seed=1)
    before = {k: v.copy() for k, v in everything.params.items()}
    P = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in before.items()}
    _, terms = everything_torch(P, torch.tensor(X), torch.tensor(y))
    sum(terms.values()).backward()
    everything.fit(X, y, epochs=1, batch="full", shuffle=False)     # sgd, first step: p -= lr * grad
    for k, v in everything.params.items():
        np.testing.assert_allclose(v, before[k] - 0.05 * P[k].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
    start = everything.evaluate(X, y)["loss"]
    history = everything.fit(X, y, epochs=30, batch=20)
    losses = [r["train"]["loss"] for r in history.epochs]
    assert everything.evaluate(X, y)["loss"] < 0.7 * start
    assert losses[-1] < losses[0]
    assert set(history.epochs[-1]["train"]) >= {"main", "soft", "nll", "reg"}


REGRESSION = """
model regress
input  x[3]
target t[2]
h = tanh(dense(x, 8, bias=false, init=normal(0, 0.5)))
r = dense(h, 2, init=uniform(-0.5, 0.5))
q = sigmoid(dense(h, 2, init=he_normal))
loss a = mse(r, t)
loss b = 0.5 * mae(r, t) + huber(r, t, delta=0.5)
loss c = 0.1 * binary_cross_entropy(q, t)
output r
optimizer rmsprop(lr=0.01, momentum=0.5)
schedule step(every=2, gamma=0.5)
train {
  batch    = 16
  epochs   = 5
  shuffle  = false
  lr_scale = 32
  metrics  = mse, mae
}
"""


def test_real_targets_losses_lr_scale_and_a_schedule_equal_pytorch():
    """mse, mae, huber, binary_cross_entropy, an output that is not the first loss's input,
    rmsprop with momentum, step(every=2) and lr_scale (lr * 16 / 32), for 5 epochs."""
    model = netc.compile(REGRESSION, dtype="float64", seed=2)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 3))
    T = 1 / (1 + np.exp(-(X @ rng.standard_normal((3, 2)))))      # in (0, 1), for the BCE term too
    P = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.params.items()}

    def forward(x, t):
        h = torch.tanh(x @ P["h.dense.W"].T)
        r = h @ P["r.dense.W"].T + P["r.dense.b"]
        q = torch.sigmoid(h @ P["q.dense.W"].T + P["q.dense.b"])
        return r, {"a": F.mse_loss(r, t), "b": 0.5 * F.l1_loss(r, t) + F.huber_loss(r, t, delta=0.5),
                   "c": 0.1 * F.binary_cross_entropy(q, t)}

    Xt, Tt = torch.tensor(X), torch.tensor(T)
    r, terms = forward(Xt, Tt)
    np.testing.assert_allclose(model.predict(X), r.detach().numpy(), rtol=1e-10)
    got = model.evaluate(X, T)
    for k, v in terms.items():
        np.testing.assert_allclose(got[k], v.item(), rtol=1e-10, err_msg=k)
    opt = torch.optim.RMSprop(list(P.values()), lr=0.01 * 16 / 32, momentum=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for epoch in range(5):
        for i in range(0, 64, 16):
            opt.zero_grad()
            sum(forward(Xt[i:i + 16], Tt[i:i + 16])[1].values()).backward()
            opt.step()
        sched.step()
    history = model.fit(X, T)
    assert [r["lr"] for r in history.epochs] == pytest.approx([0.005, 0.005, 0.0025, 0.0025, 0.00125])
    for k, v in model.params.items():
        np.testing.assert_allclose(v, P[k].detach().numpy(), rtol=1e-6, atol=1e-6, err_msg=k)


# ---------------------------------------------------------------- schedules vs PyTorch
SCHEDULED = """
model cmp
input  x[4]
target y: class[3]
h = tanh(dense(x, 8))
p = softmax(dense(h, 3))
loss cross_entropy(p, y)
optimizer sgd(lr=0.2, momentum=0.9)
schedule {schedule}
"""

EPOCHS = 8
SCHEDULE_CASES = {
    "constant": lambda opt: None,
    "step(every=3, gamma=0.5)": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "exponential(gamma=0.8)": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8),
    "cosine(min_lr=0.01)": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS, eta_min=0.01),
    "warmup(3, then=cosine(min_lr=0.01))": lambda opt: torch.optim.lr_scheduler.SequentialLR(
        opt, [torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / 4, total_iters=3),
              torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS - 3, eta_min=0.01)], milestones=[3]),
    # a relative threshold of 0.9: an epoch that does not cut the loss tenfold cuts the rate
    "plateau(patience=0, factor=0.5, threshold=0.9)": lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=0.5, patience=0, threshold=0.9),
}


@pytest.mark.parametrize("schedule", list(SCHEDULE_CASES))
def test_schedule_trajectory_equals_pytorch(schedule):
    model = netc.compile(SCHEDULED.format(schedule=schedule), dtype="float64", seed=1)
    X, y = data(40, seed=5)
    P = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.params.items()}
    forward = lambda x: torch.softmax(
        torch.tanh(x @ P["h.dense.W"].T + P["h.dense.b"]) @ P["p.dense.W"].T + P["p.dense.b"], dim=1)
    opt = torch.optim.SGD(list(P.values()), lr=0.2, momentum=0.9)
    sched = SCHEDULE_CASES[schedule](opt)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    lrs = []
    for epoch in range(EPOCHS):
        lrs.append(opt.param_groups[0]["lr"])
        total = 0.0
        for i in range(0, 40, 10):
            opt.zero_grad()
            loss = F.nll_loss(torch.log(forward(Xt[i:i + 10])), yt[i:i + 10])
            loss.backward()
            opt.step()
            total += loss.item() * 10
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(total / 40)                 # netc watches the train loss without validation data
        elif sched is not None:
            sched.step()
    history = model.fit(X, y, epochs=EPOCHS, batch=10, shuffle=False)
    np.testing.assert_allclose([r["lr"] for r in history.epochs], lrs, rtol=1e-12)
    if schedule.startswith("plateau"):
        assert len(set(lrs)) > 2                   # the case does reduce the rate, more than once
    for k, v in model.params.items():
        np.testing.assert_allclose(v, P[k].detach().numpy(), rtol=1e-6, atol=1e-6, err_msg=k)


# ---------------------------------------------------------------- initializers
@pytest.mark.parametrize("kind,args,mean,std", [
    ("zeros", (), 0.0, 0.0),
    ("const", (0.3,), 0.3, 0.0),
    ("normal", (1.0, 0.5), 1.0, 0.5),
    ("uniform", (-2.0, 1.0), -0.5, 3 / np.sqrt(12)),
    ("glorot", (), 0.0, np.sqrt(2 / (200 + 100))),         # uniform(±sqrt(6 / (fan_in + fan_out)))
    ("glorot_normal", (), 0.0, np.sqrt(2 / (200 + 100))),
    ("he", (), 0.0, np.sqrt(2 / 200)),                      # uniform(±sqrt(6 / fan_in))
    ("he_normal", (), 0.0, np.sqrt(2 / 200)),
])
def test_initializer_statistics(kind, args, mean, std):
    """W[100, 200]: fan_out 100, fan_in 200 (PyTorch's convention for W[out, in])."""
    w = initialize(kind, args, (100, 200), np.random.default_rng(0))
    assert w.shape == (100, 200)
    assert abs(w.mean() - mean) < 0.02 + 0.05 * std
    assert abs(w.std() - std) < 0.03 * std + 1e-12


def test_every_initializer_name_elaborates():
    decls = "\n".join(f"param P{k}[2, 3] = {text}" for k, text in enumerate(
        ["zeros", "0", "0.5", "-1", "normal(0, 0.1)", "normal(mean=1, std=2)", "uniform(-1, 1)", "glorot",
         "glorot_normal", "he", "he_normal"]))
    uses = " + ".join(f"sum(P{k})" for k in range(11))
    ir = elaborate(parse(f"model m\ninput x[3]\ntarget t[1]\n{decls}\nloss mse(dense(x, 1), t) + {uses}\n"))
    assert [(p.init.kind, p.init.args) for p in ir.params[:11]] == [
        ("zeros", ()), ("zeros", ()), ("const", (0.5,)), ("const", (-1.0,)), ("normal", (0.0, 0.1)),
        ("normal", (1.0, 2.0)), ("uniform", (-1.0, 1.0)), ("glorot", ()), ("glorot_normal", ()), ("he", ()),
        ("he_normal", ())]


# ---------------------------------------------------------------- language features without kernels
def check(body: str, head="model m\ninput x[4]\ntarget y: class[3]\n"):
    return elaborate(parse(head + body))


def test_default_optimizer_is_adam_with_pytorch_defaults():
    ir = check("loss cross_entropy(softmax(dense(x, 3)), y)\n")
    assert ir.optimizer[:2] == ("adam", {})
    assert OPTIMIZER_ARGS["adam"]["lr"] == 0.001


def test_layers_call_layers_and_each_call_site_gets_its_own_params():
    ir = check("""
layer inner(x, n) {
  return tanh(dense(x, n))
}
layer outer(x, n, act=relu) {
  a = inner(x, n)
  return act(inner(a, n))
}
h = outer(x, 4) + outer(x, 4, act=sigmoid)
loss cross_entropy(softmax(dense(h, 3)), y)
""")
    assert [p.name for p in ir.params] == [
        "h.outer.a.inner.dense.W", "h.outer.a.inner.dense.b", "h.outer.inner.dense.W", "h.outer.inner.dense.b",
        "h.outer_1.a.inner.dense.W", "h.outer_1.a.inner.dense.b", "h.outer_1.inner.dense.W",
        "h.outer_1.inner.dense.b", "loss.dense.W", "loss.dense.b"]


def test_a_layer_may_be_passed_as_an_argument_and_a_name_may_hold_a_builtin():
    ir = check("""
layer twice(x, f) {
  return f(f(x, 4), 4)
}
layer block(x, n) {
  return relu(dense(x, n))
}
act = gelu
h = act(twice(x, block))
loss cross_entropy(softmax(dense(h, 3)), y)
""")
    assert [p.name for p in ir.params][:4] == ["h.twice.block.dense.W", "h.twice.block.dense.b",
                                               "h.twice.block_1.dense.W", "h.twice.block_1.dense.b"]


def test_dim_and_params_by_their_full_name():
    ir = check("""
h = relu(dense(x, 6))
param W[3, dim(h)] = glorot
p = softmax(W @ h)
loss main = cross_entropy(p, y)
loss reg = 1e-3 * l2([W, h.dense.W]) + 1e-4 * l1(weights) + 1e-5 * l2(params)
""")
    assert [p.shape for p in ir.params] == [(6, 4), (6,), (3, 6)]
    assert [l.name for l in ir.losses] == ["main", "reg"]


def test_a_default_output_is_the_first_losss_prediction():
    ir = check("p = softmax(dense(x, 3))\nloss cross_entropy(p, y)\n")
    assert ir.output_name == "p"


def test_statements_in_any_order():
    ir = check("loss cross_entropy(p, y)\np = softmax(logits)\nlogits = dense(h, 3)\nh = relu(dense(x, 5))\n")
    assert [p.name for p in ir.params] == ["logits.dense.W", "logits.dense.b", "h.dense.W", "h.dense.b"] or \
        [p.name for p in ir.params] == ["h.dense.W", "h.dense.b", "logits.dense.W", "logits.dense.b"]


# ---------------------------------------------------------------- digits.net, exactly as written
def test_digits_exactly_as_written_reaches_95_percent_and_reports_every_term():
    from netc.runtime import data as D
    from netc.runtime.settings import load
    path = ROOT / "examples" / "digits.net"
    contract = ROOT.parent / "shared" / "LANGUAGE.md"
    if contract.exists():            # the example is the contract's program, character for character
        text = contract.read_text()
        assert path.read_text().strip() in text.replace("```\n# digits.net", "# digits.net")
    model = netc.compile(str(path))
    s = model.settings
    ds = load(s.data, s.base_dir)
    train, val, test = D.split(ds, s.split, s.seed, stratify=True)
    history = model.fit(train.X, train.y, validation=(val.X, val.y))
    assert history.epochs
    for record in history.epochs:
        for split in ("train", "val"):
            assert {"loss", "main", "aux", "decay"} <= set(record[split]), record
    assert model.evaluate(test.X, test.y)["accuracy"] >= 0.95
