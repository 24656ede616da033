"""The training loop and the Python API, in process: fit/predict/evaluate/save/load, batching,
early stopping (and the best weights restored whatever way the run ends), standardization,
string labels, divergence diagnostics, reproducibility, progress, checkpoints."""
import io
import os

import numpy as np
import pytest

import netc
from netc.runtime import checkpoint, data, loop
from netc.runtime.diverge import TrainingDiverged
from netc.runtime.progress import Progress
from netc.runtime.rundir import source_changes
from netc.runtime.settings import EarlyStop

# no train block: a complete model that trains on arrays alone
CLF = """model clf
input  x[2]
target y: class[3]
h = tanh(dense(x, 8))
p = softmax(dense(h, 3))
loss cross_entropy(p, y)
optimizer sgd(lr=0.2, momentum=0.9)
"""

REG = """model reg
input  x[3]
target y[1]
y_hat = dense(x, 1)
loss mse(y_hat, y)
optimizer sgd(lr=0.05)
"""


@pytest.fixture(scope="module")
def blobs():
    ds = data.blobs(n=300, centers=3, seed=2)
    tr, va, te = data.split(ds, (0.6, 0.2, 0.2), seed=0, stratify=True)
    return tr, va, te


def fresh(src=CLF, **kw):
    return netc.compile(src, **kw)      # the kernels come from this process's module cache


def test_model_without_train_block_trains_on_arrays(blobs):
    tr, va, te = blobs
    m = fresh()
    assert m.settings.data is None
    h = m.fit(tr.X, tr.y, epochs=15, batch=16, validation=(va.X, va.y))
    assert len(h) == 15 and len(h["val.loss"]) == 15 and len(h["train.loss"]) == 15
    assert h["train.loss"][-1] < h["train.loss"][0]
    assert m.epoch == 15 and m.step == 15 * -(-len(tr.X) // 16)
    proba = m.predict(te.X)
    assert proba.shape == (len(te.X), 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(m.predict_proba(te.X), proba)
    np.testing.assert_array_equal(m.predict_classes(te.X), proba.argmax(1))
    res = m.evaluate(te.X, te.y, metrics="all")
    assert set(res) == {"loss", "accuracy", "precision", "recall", "f1"}
    assert res["accuracy"] > 0.9
    cm = m.confusion_matrix(te.X, te.y)
    assert cm.shape == (3, 3) and cm.sum() == len(te.X) and np.trace(cm) / cm.sum() == pytest.approx(res["accuracy"])


def test_save_and_load_keep_params_state_classes_and_scaler(blobs, tmp_path):
    tr, va, te = blobs
    names = np.array(["red", "green", "blue"])
    m = fresh()
    m.fit(tr.X * 100 + 5, names[tr.y], epochs=8, batch=32, standardize=True)
    assert m.classes == ["blue", "green", "red"]
    mean, std = m.scaler
    np.testing.assert_allclose(mean, (tr.X * 100 + 5).mean(0))
    np.testing.assert_allclose(std, (tr.X * 100 + 5).std(0))
    m.save(str(tmp_path / "ck"))
    with np.load(tmp_path / "ck" / "weights.npz", allow_pickle=False) as z:
        assert {"scaler/mean", "scaler/std"} <= set(z.files)
        assert any(k.startswith("state/") for k in z.files)
    back = netc.load(str(tmp_path / "ck"))
    assert back.classes == m.classes and back.step == m.step and back.epoch == m.epoch
    for k, v in m.params.items():
        np.testing.assert_array_equal(back.params[k], v)
    for k, v in m.state.items():
        np.testing.assert_array_equal(back.state[k], v)
    np.testing.assert_array_equal(back.predict(te.X * 100 + 5), m.predict(te.X * 100 + 5))
    # string labels are mapped by the model's classes when evaluating
    assert back.evaluate(te.X * 100 + 5, names[te.y])["accuracy"] > 0.9
    with pytest.raises(data.DataError, match="label 'purple' is not one of the model's classes"):
        back.evaluate(te.X[:2], np.array(["red", "purple"]))


@pytest.mark.parametrize("batch, steps", [(4, 3), ("full", 1), (1, 10), (10, 1), (64, 1)])
def test_batch_sizes_and_the_last_partial_batch(batch, steps):
    X = np.random.default_rng(0).normal(size=(10, 2))
    y = np.arange(10) % 3
    m = fresh()
    m.fit(X, y, epochs=2, batch=batch)
    assert m.step == 2 * steps          # the last partial batch is a step of its own (kept)


def _tracking(m):
    snaps = {}

    def cb(model, rec):
        snaps[rec["epoch"]] = {k: v.copy() for k, v in model.params.items()}
    return snaps, cb


def test_early_stopping_restores_the_best_weights(blobs):
    tr, va, _ = blobs
    m = fresh()
    snaps, cb = _tracking(m)
    noisy = np.random.default_rng(0).permutation(va.y)      # a validation loss that soon gets worse
    h = m.fit(tr.X, tr.y, epochs=200, batch=8, validation=(va.X, noisy), callbacks=[cb],
              stop=EarlyStop("val.loss", patience=3, min_delta=0.0, mode="min"))
    assert h.stopped_epoch is not None and h.stopped_epoch < 200
    losses = h["val.loss"]
    best = int(np.argmin(losses)) + 1
    assert h.best_epoch == best and h.restored_epoch == best
    assert h.stopped_epoch == best + 4            # more than `patience` epochs without improvement
    for k, v in m.params.items():
        np.testing.assert_array_equal(v, snaps[best][k])
    assert "restored the weights of epoch" in h.summary()


def test_best_weights_are_restored_when_the_run_is_interrupted(blobs):
    tr, va, _ = blobs
    m = fresh()
    snaps, track = _tracking(m)
    accs = {}

    def interrupt(model, rec):
        accs[rec["epoch"]] = rec["val"]["accuracy"]
        if rec["epoch"] == 6:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        m.fit(tr.X, tr.y, epochs=50, batch=64, validation=(va.X, va.y), callbacks=[track, interrupt],
              stop=EarlyStop("val.accuracy", patience=50, mode="max"))
    best = max(accs, key=lambda e: (accs[e], -e))       # the first epoch of the highest accuracy
    assert best != 6 or len(set(accs.values())) == 1
    for k, v in m.params.items():
        np.testing.assert_array_equal(v, snaps[best][k])


def test_callback_can_stop_the_run(blobs):
    tr, _, _ = blobs
    m = fresh()
    h = m.fit(tr.X, tr.y, epochs=30, callbacks=[lambda model, rec: rec["epoch"] == 4])
    assert len(h) == 4 and m.epoch == 4


def test_same_seed_gives_bitwise_identical_training(blobs):
    tr, va, _ = blobs
    runs = []
    for seed in (3, 3, 4):
        m = fresh(seed=seed)
        m.settings.seed = seed
        h = m.fit(tr.X, tr.y, epochs=5, batch=16, validation=(va.X, va.y))
        runs.append(({k: v.copy() for k, v in m.params.items()}, [{k: v for k, v in r.items() if k != "time"}
                                                                  for r in h.epochs]))
    (p1, h1), (p2, h2), (p3, h3) = runs
    assert h1 == h2
    for k in p1:
        assert p1[k].tobytes() == p2[k].tobytes()
    assert h1 != h3 and any(p1[k].tobytes() != p3[k].tobytes() for k in p1)


def test_regression_metrics_and_predict_proba_refused():
    ds = data.linear(n=200, features=3, noise=0.1, seed=1)
    m = fresh(REG)
    m.fit(ds.X, ds.y, epochs=30, batch=16)
    res = m.evaluate(ds.X, ds.y, metrics="all")
    assert set(res) == {"loss", "mse", "mae", "r2"}
    assert res["r2"] > 0.95 and res["mse"] == pytest.approx(res["loss"], rel=1e-4)
    with pytest.raises(ValueError, match="predicts real values"):
        m.predict_proba(ds.X)


def test_standardize_train_key(tmp_path):
    src = CLF + "train {\n  data = blobs(n=200, centers=3, seed=1)\n  standardize = true\n}\n"
    assert netc.compile(src).settings.standardize is True
    with pytest.raises(netc.NetcError, match="standardize is true or false"):
        netc.compile(CLF + "train {\n  standardize = 3\n}\n")
    # fitted on the training split only, and applied to every split
    from netc.runtime import session
    f = tmp_path / "s.net"
    f.write_text(CLF + "train {\n  data = blobs(n=200, centers=3, seed=1)\n  split = 0.5, 0.25, 0.25\n"
                 "  standardize = true\n}\n")
    job = session.new_job(str(f), run_dir=False)
    ds = data.blobs(n=200, centers=3, seed=1)
    tr, va, _ = data.split(ds, (0.5, 0.25, 0.25), 0, stratify=True)
    mean, std = job.model.scaler
    np.testing.assert_allclose(mean, tr.X.mean(0))
    np.testing.assert_allclose(std, tr.X.std(0))
    assert not np.allclose(mean, ds.X.mean(0))
    np.testing.assert_allclose(job.val.X, (va.X - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(job.train.X.mean(0), 0, atol=1e-5)


# ------------------------------------------------------------------ divergence
BAD = """model bad
input x[2]
target t[1]
param w[1, 2] = 1
z = w @ x
r = log(z)          # NaN where z <= 0
loss mse(r, t)
optimizer sgd(lr=0.01)
"""


def test_divergence_names_the_op_and_line_of_the_first_nonfinite_value(tmp_path):
    f = tmp_path / "bad.net"
    f.write_text(BAD)
    m = netc.compile(str(f))
    X = np.array([[1.0, 1.0]] * 8 + [[-1.0, -2.0]] * 8)
    before = {k: v.copy() for k, v in m.params.items()}
    with pytest.raises(TrainingDiverged) as err:
        m.fit(X, np.ones((16, 1)), epochs=3, batch=8, shuffle=False)
    e = err.value
    assert (e.epoch, e.step) == (1, 2)                 # the second batch holds the negative z
    assert e.origin["op"] == "log" and e.origin["line"] == 6 and e.origin["kind"] == "forward"
    assert e.origin["value"] == "nan"
    assert "loss 'loss' is nan" in str(e)
    assert f"{f}:6:5" in str(e) and "r = log(z)" in str(e)
    for k, v in m.params.items():                     # back to the last good (finite) weights
        np.testing.assert_array_equal(v, before[k])


def test_divergence_in_the_update_names_the_optimizer_and_param(tmp_path):
    f = tmp_path / "up.net"
    f.write_text(REG.replace("lr=0.05", "lr=1e38"))
    m = netc.compile(str(f))
    ds = data.linear(n=64, features=3, seed=0)
    with pytest.raises(TrainingDiverged) as err:
        m.fit(ds.X * 1000, ds.y, epochs=2, batch=16)     # lr * gradient overflows float32
    e = err.value
    assert e.origin["kind"] == "update" and e.origin["line"] == 6 and e.step == 2 and e.origin["step"] == 1
    assert "sgd update of param 'y_hat.dense.W'" in str(e) and "optimizer sgd(lr=1e38)" in str(e)
    assert all(np.isfinite(v).all() for v in m.params.values())


# ------------------------------------------------------------------ progress
class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise(blobs):
    tr, _, _ = blobs
    tty = FakeTTY()
    p = Progress.for_output(stream=tty)
    assert p.mode == "bar"
    m = fresh()
    loop.fit(m, m.prepare(tr.X, tr.y), None, epochs=2, batch=30, progress=p)
    out = tty.getvalue()
    assert "batch" in out and "\r" in out and "|" in out      # tqdm's bar
    assert "epoch 1/2  loss" in out and "epoch 2/2  loss" in out
    plain = io.StringIO()
    assert Progress.for_output(stream=plain).mode == "lines"
    assert Progress.for_output(quiet=True, stream=tty).mode == "quiet"
    lines = Progress.for_output(stream=plain)
    loop.fit(m, m.prepare(tr.X, tr.y), None, epochs=2, batch=30, progress=lines)
    assert plain.getvalue().count("\n") == 2 and "\r" not in plain.getvalue()


# ------------------------------------------------------------------ checkpoints and changes
def test_checkpoint_recovers_from_a_save_cut_between_its_renames(tmp_path):
    m = fresh()
    path = str(tmp_path / "last")
    m.save(path)
    os.replace(path, str(tmp_path / ".last.old"))         # killed after the first rename
    m.step = 7
    checkpoint.save(m, str(tmp_path / "tmp"))
    os.replace(str(tmp_path / "tmp"), str(tmp_path / ".last.new"))
    meta, _ = checkpoint.read(path)
    assert meta["step"] == 7 and os.path.isdir(path)
    assert not (tmp_path / ".last.old").exists() and not (tmp_path / ".last.new").exists()
    os.replace(path, str(tmp_path / ".last.old"))
    (tmp_path / ".last.new").mkdir()                     # an incomplete new one is ignored
    meta, _ = checkpoint.read(path)
    assert meta["step"] == 7
    (tmp_path / "last" / "weights.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable netc checkpoint"):
        checkpoint.read(path)


def test_source_changes_ignore_comments_and_blank_lines():
    old = "model m  # a model\ninput x[2]\n\noptimizer sgd(lr=0.1)\n"
    assert source_changes(old, "# new comment\nmodel m\ninput x[2]   # the input\noptimizer sgd(lr=0.1)\n") == []
    ch = source_changes(old, "model m\ninput x[2]\noptimizer sgd(lr=0.5)\n")
    assert ch == ["  line 4 was: optimizer sgd(lr=0.1)", "  line 3 now: optimizer sgd(lr=0.5)"]
    assert source_changes('data = csv("a#b.csv")', 'data = csv("a#c.csv")')
