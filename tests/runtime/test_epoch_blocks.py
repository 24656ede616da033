"""Blocks of short epochs (issue 14, item 1): when nothing has to happen between two epochs
(no validation, early stopping, callback, run directory, bar or loss-watching schedule), `fit`
runs several epochs in one compiled call (the artifact's train_epochs) and makes their records
afterwards -- with the numbers of the epoch-by-epoch loop, bit for bit, a divergence included."""
import numpy as np
import pytest

import netc
from netc.runtime import loop
from netc.runtime.diverge import TrainingDiverged
from netc.runtime.metrics import _accuracy_epochs, accuracy, compute, compute_epochs

CLF = """model clf
input x[2]
target y: class[3]
h = relu(dense(x, 8))
p = softmax(dense(h, 3))
output p
loss cross_entropy(p, y)
optimizer sgd(lr=0.05, momentum=0.9)
schedule step(every=3, gamma=0.5)
"""

# sgd on a least-squares problem with a rate above 2/lambda_max: the weights grow by a
# constant factor each step and overflow float32 after some tens of epochs
GROWS = """model grows
input x[2]
target t[1]
y_hat = dense(x, 1)
loss mse(y_hat, t)
optimizer sgd(lr=1.3)
"""


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((203, 2)).astype(np.float32)      # 203 rows: a short last batch
    y = rng.integers(0, 3, 203)
    return X, y


def _counted(m, calls):
    """Count the artifact's train_epochs calls (and the epochs in them)."""
    inner = m.artifact.train_epochs

    def train_epochs(X, y, batch, lrs, *a, **k):
        calls.append(len(lrs))
        return inner(X, y, batch, lrs, *a, **k)
    m.artifact.train_epochs = train_epochs


def _records(h):
    return [{k: v for k, v in r.items() if k != "time"} for r in h.epochs]


@pytest.mark.parametrize("shuffle", [False, True])
def test_blocks_give_the_epoch_by_epoch_numbers(data, shuffle):
    X, y = data
    a, b = netc.compile(CLF), netc.compile(CLF)
    calls = []
    _counted(a, calls)
    ha = a.fit(X, y, epochs=40, batch=16, shuffle=shuffle)
    hb = b.fit(X, y, epochs=40, batch=16, shuffle=shuffle, callbacks=[lambda m, r: False])   # a callback: epoch by epoch
    assert calls and max(calls) > 1 and sum(calls) < 40          # blocks ran, after a first single epoch
    assert _records(ha) == _records(hb)
    assert [r["lr"] for r in ha.epochs][:7] == [0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k])
    for s1, s2 in zip(a.state_arrays(), b.state_arrays()):
        assert np.array_equal(s1, s2)
    assert (a.epoch, a.step) == (b.epoch, b.step) == (40, 40 * 13)


def test_no_blocks_when_something_runs_between_epochs(data):
    X, y = data
    m = netc.compile(CLF)
    calls = []
    _counted(m, calls)
    m.fit(X, y, epochs=6, batch=16, validation=(X[:20], y[:20]))
    m.fit(X, y, epochs=6, batch=16, callbacks=[lambda m, r: False])
    assert calls == []


def test_a_divergence_inside_a_block_is_diagnosed_as_epoch_by_epoch():
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((64, 2)) * 3).astype(np.float32)
    t = X @ np.array([[1.0], [-2.0]], np.float32)
    a, b = netc.compile(GROWS), netc.compile(GROWS)
    calls = []
    _counted(a, calls)
    with pytest.raises(TrainingDiverged) as ea:
        a.fit(X, t, epochs=400, batch=64, shuffle=False)
    with pytest.raises(TrainingDiverged) as eb:
        b.fit(X, t, epochs=400, batch=64, shuffle=False, callbacks=[lambda m, r: False])
    assert max(calls) > 1                                   # it diverged inside a block
    assert ea.value.epoch > 3
    assert (ea.value.epoch, ea.value.step) == (eb.value.epoch, eb.value.step)
    assert str(ea.value) == str(eb.value)
    for k in a.params:                                      # both back at the last good epoch's start
        assert np.array_equal(a.params[k], b.params[k]) and np.isfinite(a.params[k]).all()


def test_accuracy_of_many_epochs_at_once_equals_one_by_one():
    rng = np.random.default_rng(0)
    for C in (1, 2, 3, 10):
        out = rng.random((5, 100, C)).astype(np.float32)
        out[0, :10] = np.nan                  # NaN counts as the largest, as argmax has it
        out[1, :5, 0] = np.nan
        out[2, :5] = out[2, :5, :1]           # ties: the first of equals
        y = rng.integers(0, max(C, 2), (5, 100))
        assert _accuracy_epochs(y, out, None) == [accuracy(y[e], out[e]) for e in range(5)]
    out = rng.random((3, 50, 4))
    y = rng.integers(0, 4, (3, 50))
    names = ["accuracy", "f1", "precision"]
    assert compute_epochs(names, y, out, "class") == [compute(names, y[e], out[e], "class") for e in range(3)]


@pytest.mark.parametrize("chunk_epochs", [5, 2, 0])
def test_train_epochs_equals_one_train_epoch_per_epoch(data, monkeypatch, chunk_epochs):
    """The artifact's train_epochs, shuffled, with the gather buffer holding all 5 epochs, 2 at
    a time, or less than one (then epoch by epoch, in chunks), gives train_epoch's numbers."""
    X, y = data
    m = netc.compile(CLF)
    art = m.artifact
    row = X[:1].nbytes + y[:1].astype(np.int64).nbytes
    monkeypatch.setattr(type(art), "CHUNK_BYTES", max(1, chunk_epochs * row * len(X) + 3))
    rng = np.random.default_rng(2)
    orders = np.stack([rng.permutation(len(X)) for _ in range(5)])
    lrs = [0.05, 0.04, 0.03, 0.02, 0.01]
    p1, s1 = [a.copy() for a in m.param_arrays()], [a.copy() for a in m.state_arrays()]
    p2, s2 = [a.copy() for a in p1], [a.copy() for a in s1]
    T, O = art.train_epochs(X, y, 16, lrs, 7, p1, s1, orders)
    nb = -(-len(X) // 16)
    for e in range(5):
        t, o = art.train_epoch(X, y, 16, np.float32(lrs[e]), 7 + e * nb, p2, s2, orders[e])
        assert np.array_equal(T[e], t) and np.array_equal(O[e], o)
    for a, b in zip(p1 + s1, p2 + s2):
        assert np.array_equal(a, b)
