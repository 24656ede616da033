"""The Python API as Keras and scikit-learn users write it (issue 13, item 2): fit with
batch_size / validation_split / validation_data / initial_epoch / verbose / callback objects,
History.history with Keras' keys, fit() on the file's own data, stop=None, predict of one
sample, class names back, score, summary, count_params, save to a path, and the
scikit-learn-shaped estimators (fit, predict, predict_proba, score, classes_, get/set_params,
clone)."""
import os
import warnings

import numpy as np
import pytest

import netc
from netc.runtime import data

CLF = """model clf
input  x[2]
target y: class[2]
h = tanh(dense(x, 8))
p = softmax(dense(h, 2))
output p
loss cross_entropy(p, y)
optimizer sgd(lr=0.3, momentum=0.9)
train {
  metrics = accuracy
}
"""

# the same model with its own data, a 3-way split and early stopping in the file
FILE = CLF.replace("""train {
  metrics = accuracy
}""", """train {
  data    = moons(n=200, noise=0.1, seed=0)
  split   = 0.6, 0.2, 0.2
  epochs  = 3
  metrics = accuracy
  stop    = early(val_loss, patience=5)
}""")

REG = """model reg
input  x[3]
target y[1]
y_hat = dense(x, 1)
output y_hat
loss mse(y_hat, y)
optimizer sgd(lr=0.05)
"""


@pytest.fixture(scope="module")
def xy():
    ds = data.moons(n=250, noise=0.1, seed=1)
    return np.asarray(ds.X, np.float64), np.asarray(ds.y)


@pytest.fixture(scope="module")
def reg_xy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    return X, X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.05 * rng.standard_normal((200, 1))


class Recorder:
    """A Keras-style callback object."""

    def __init__(self, stop_at=None):
        self.stop_at, self.seen, self.began, self.ended, self.model = stop_at, [], 0, 0, None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        self.began += 1

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((epoch, dict(logs)))
        if epoch == self.stop_at:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.ended += 1


# ------------------------------------------------------------ as a Keras user writes it
def test_fit_as_keras_users_write_it(xy):
    X, y = xy
    model = netc.compile(CLF, seed=0)
    cb = Recorder()
    h = model.fit(X, y, batch_size=32, validation_split=0.2, epochs=3, callbacks=[cb])
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert all(len(v) == 3 for v in h.history.values())
    assert h.epoch == [0, 1, 2] and len(h) == 3
    assert h["val_loss"] == h.history["val_loss"] == h["val.loss"]          # the old spelling still works
    assert h["loss"] == h["train.loss"] and h["learning_rate"] == h["lr"] == [0.3] * 3
    at = int(len(X) * 0.8)                      # Keras: the LAST 20% validates, taken before shuffling
    assert h.params["steps"] == -(-at // 32)
    assert h["val_loss"][-1] == pytest.approx(model.evaluate(X[at:], y[at:])["loss"], rel=1e-5)
    assert h.history["loss"][-1] < h.history["loss"][0]
    # the callback object: Keras' hooks, 0-based epochs, flat logs with Keras' keys
    assert cb.model is model and cb.began == 1 and cb.ended == 1
    assert [e for e, _ in cb.seen] == [0, 1, 2]
    assert cb.seen[-1][1]["val_loss"] == h["val_loss"][-1] and set(cb.seen[0][1]) == set(h.history)


def test_a_callback_object_stops_the_run_with_stop_training(xy):
    X, y = xy
    model = netc.compile(CLF, seed=0)
    h = model.fit(X, y, epochs=10, validation_data=(X[:50], y[:50]), callbacks=[Recorder(stop_at=1)])
    assert h.epoch == [0, 1] and model.epoch == 2


def test_callback_functions_still_get_the_model_and_the_record(xy):
    X, y = xy
    model = netc.compile(CLF, seed=0)
    seen = []
    model.fit(X, y, epochs=2, callbacks=[lambda m, rec: seen.append((m is model, rec["epoch"], rec["train"]["loss"]))])
    assert [(same, e) for same, e, _ in seen] == [(True, 1), (True, 2)]
    with pytest.raises(TypeError, match="on_epoch_end"):
        model.fit(X, y, epochs=1, callbacks=[object()])


def test_a_second_fit_continues_and_numbers_its_epochs(xy):
    X, y = xy
    model = netc.compile(CLF, seed=0)
    model.fit(X, y, epochs=3)
    lines = []
    h = model.fit(X, y, epochs=2, log=lines.append)
    assert [ln.split("  ")[0] for ln in lines] == ["epoch 4/5", "epoch 5/5"]      # not "epoch 4/2"
    assert h.epoch == [3, 4] and model.epoch == 5
    # Keras' initial_epoch: `epochs` is the last epoch, the call trains the ones after initial_epoch
    again = netc.compile(CLF, seed=0)
    lines = []
    h = again.fit(X, y, epochs=5, initial_epoch=3, log=lines.append)
    assert h.epoch == [3, 4] and again.epoch == 5 and lines[0].startswith("epoch 4/5")


def test_history_keys_fail_loudly(xy):
    X, y = xy
    model = netc.compile(CLF, seed=0)
    h = model.fit(X, y, epochs=1)
    with pytest.raises(KeyError, match="no validation data"):
        h["val_loss"]                   # was [] silently
    with pytest.raises(KeyError, match="did you mean 'accuracy'"):
        h["acuracy"]
    assert "loss" in h and "val_loss" not in h


def test_fit_arguments_in_both_spellings_and_their_mistakes(xy):
    X, y = xy
    model = netc.compile(CLF, seed=0)
    h = model.fit(X, y, epochs=1, batch=50, batch_size=50, validation=(X[:20], y[:20]))
    assert h.params["steps"] == 5 and "val_loss" in h
    with pytest.raises(netc.FitError, match="batch_size"):
        model.fit(X, y, epochs=1, batch=10, batch_size=20)
    with pytest.raises(netc.FitError, match="validation_split"):
        model.fit(X, y, epochs=1, validation_split=1.5)
    with pytest.raises(netc.FitError, match="sample weights"):
        model.fit(X, y, epochs=1, validation_data=(X, y, np.ones(len(y))))
    with pytest.raises(netc.FitError, match="targets"):
        model.fit(X, epochs=1)
    with pytest.raises(netc.FitError, match="verbose"):
        model.fit(X, y, epochs=1, verbose=7)
    with pytest.raises(netc.FitError, match="initial_epoch"):
        model.fit(X, y, epochs=3, initial_epoch=-1)


def test_verbose(xy, capsys):
    X, y = xy
    model = netc.compile(CLF, seed=0)
    model.fit(X, y, epochs=2)                  # pytest's stdout is not a terminal: silent by default
    model.fit(X, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(X, y, epochs=2, verbose=2, validation_split=0.2)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("epoch 4/5") and "val_loss" in out[0] and "val.loss" not in out[0]


# ------------------------------------------------------------ the file's own data, early stopping
def test_fit_without_arrays_trains_on_the_files_data_and_split():
    model = netc.compile(FILE, seed=0)
    h = model.fit()
    assert len(h) == 3 and "val_accuracy" in h.history          # the split's validation part validates
    tr, va, te = model.file_data()
    assert h.params["steps"] == -(-len(tr.X) // 32) and len(va.X) == 40
    assert h["val_loss"][-1] == pytest.approx(model.evaluate(va.X, va.y)["loss"], rel=1e-5) \
        or h.restored_epoch is not None
    assert model.evaluate() == model.evaluate(te.X, te.y) and len(te.X) == 40     # the split's test part


def test_stop_none_switches_early_stopping_off_and_no_validation_is_no_crash(xy):
    X, y = xy
    model = netc.compile(FILE, seed=0)
    assert model.settings.stop.monitor == "val.loss"             # early(val_loss) in the file, Keras' spelling
    for off in (None, False):
        h = model.fit(X, y, epochs=2, stop=off)                   # stop=False was an AttributeError
        assert h.best_epoch is None and len(h) == 2
    with pytest.warns(UserWarning, match="no validation data"):
        h = model.fit(X, y, epochs=2)                              # the file's early stopping, nothing to watch
    assert len(h) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = model.fit(X, y, epochs=30, validation_split=0.25, stop="val_accuracy")
    assert h.monitor == "val.accuracy" and h.best_epoch is not None
    with pytest.raises(netc.FitError, match="did you mean 'val_accuracy'"):
        model.fit(X, y, epochs=1, validation_split=0.2, stop="val_acurracy")
    with pytest.raises(netc.DataError, match="no validation data"):
        model.fit(X, y, epochs=1, stop="val_loss")                 # asked for explicitly: an error


# ------------------------------------------------------------ predict, score, summary, save
def test_predict_one_sample_and_class_names(xy):
    X, y = xy
    names = np.array(["circle", "square"])
    model = netc.compile(CLF, seed=0)
    model.fit(X, names[y], epochs=5)
    one = model.predict(X[0])                     # was "each sample has shape [] (1 values)"
    np.testing.assert_allclose(one, model.predict(X[:1])[0])
    assert one.shape == (2,)
    assert model.predict_proba(X[0]).shape == (2,)
    labels = model.predict_classes(X[:20])
    assert labels.dtype.kind == "U" and set(labels) <= {"circle", "square"}
    assert model.predict_classes(X[0]) == labels[0]
    np.testing.assert_array_equal(labels, names[model.predict(X[:20]).argmax(1)])
    assert model.score(X, names[y]) == pytest.approx(np.mean(model.predict_classes(X) == names[y]))


def test_score_summary_count_params(xy, reg_xy):
    X, y = xy
    clf = netc.compile(CLF, seed=0)
    clf.fit(X, y, epochs=5)
    assert clf.score(X, y) == pytest.approx(clf.evaluate(X, y, ["accuracy"])["accuracy"]) and clf.score(X, y) > 0.7
    assert clf.count_params() == 2 * 8 + 8 + 8 * 2 + 2 == clf.summary().params
    lines = []
    assert clf.summary(print_fn=lines.append) is None and "params: 42" in lines[0]
    Xr, yr = reg_xy
    reg = netc.compile(REG, seed=0)
    reg.fit(Xr, yr, epochs=20, batch_size=16)
    pred = reg.predict(Xr)
    r2 = 1 - ((yr - pred) ** 2).sum() / ((yr - yr.mean()) ** 2).sum()
    assert reg.score(Xr, yr) == pytest.approx(r2, rel=1e-4) and r2 > 0.95


def test_save_honours_the_path(xy, tmp_path):
    X, y = xy
    model = netc.compile(CLF, seed=0)
    model.fit(X, np.array(["a", "b"])[y], epochs=2)
    path = model.save(tmp_path / "x.npz")
    assert os.path.isfile(path) and os.listdir(tmp_path) == ["x.npz"]     # was a directory named x.npz
    back = netc.load(path)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert back.classes == ["a", "b"] and back.epoch == 2
    model.save(tmp_path / "ck")                                      # other paths: a checkpoint directory
    assert sorted(os.listdir(tmp_path / "ck")) == ["model.json", "weights.npz"]
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(netc.UserError, match="not a netc checkpoint"):
        netc.load(str(tmp_path / "plain.npz"))


def test_param_names_are_suggested_case_insensitively():
    model = netc.compile(CLF, seed=0)
    with pytest.raises(KeyError, match="did you mean 'h.dense.W'"):
        model.params["H.Dense.w"]
    with pytest.raises(KeyError, match="did you mean 'h.dense.W'"):
        model.params["h.dense.w"] = np.zeros((8, 2))


# ------------------------------------------------------------ as a scikit-learn user writes it
def test_estimators_as_scikit_learn_users_write_them(xy, reg_xy):
    X, y = xy
    names = np.array(["no", "yes"])
    clf = netc.NetcClassifier(CLF, epochs=8, batch_size=16, random_state=0)
    assert clf.fit(X[:200], names[y[:200]]) is clf
    assert list(clf.classes_) == ["no", "yes"] and clf.n_features_in_ == 2
    pred = clf.predict(X[200:])
    assert pred.shape == (50,) and set(pred) <= {"no", "yes"}
    proba = clf.predict_proba(X[200:])
    assert proba.shape == (50, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(1)])
    assert clf.score(X[200:], names[y[200:]]) == pytest.approx(np.mean(pred == names[y[200:]]))
    assert clf.score(X[200:], names[y[200:]]) > 0.7
    params = clf.get_params()
    assert params["epochs"] == 8 and params["model"] == CLF
    assert clf.set_params(epochs=2) is clf and clf.epochs == 2
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        clf.set_params(epoch=3)
    assert "NetcClassifier(" in repr(clf) and "epochs=2" in repr(clf)
    Xr, yr = reg_xy
    reg = netc.NetcRegressor(REG, epochs=20, batch_size=16)
    reg.fit(Xr, yr)
    assert reg.predict(Xr).shape == (200,) and reg.score(Xr, yr) > 0.95
    with pytest.raises(netc.FitError, match="NetcRegressor"):
        netc.NetcClassifier(REG, epochs=1).fit(Xr, yr)
    with pytest.raises(netc.FitError, match="not fitted"):
        netc.NetcRegressor(REG).predict(Xr)
    est = netc.Estimator(CLF, epochs=2).fit(X, y)            # either kind
    assert est._estimator_type == "classifier" and list(est.classes_) == [0, 1]


def test_estimators_work_with_scikit_learns_tools(xy):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score
    X, y = xy
    clf = netc.NetcClassifier(CLF, epochs=3, random_state=1)
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == clf.get_params()
    scores = cross_val_score(clf, X, y, cv=2)
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores), sklearn.__version__


def test_a_model_without_output_trains_on_its_losses(xy):
    X, y = xy
    # a hand-written loss of a named prediction: that value is the output (compiler/elaborate.py)
    model = netc.compile("""model hand
input  x[2]
target y: class[2]
p = softmax(dense(x, 2))
loss -sum(onehot(y) * log(p))
optimizer sgd(lr=0.1)
train {
  metrics = accuracy
}
""", seed=0)
    h = model.fit(X, y, epochs=2, validation_split=0.2)       # was "zero-dimensional arrays cannot be concatenated"
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert model.predict(X).shape == (len(X), 2)
    # no named value to predict with: the fit trains on the losses alone, without metrics
    model = netc.compile("""model hand
input  x[2]
target y: class[2]
loss -sum(onehot(y) * log(softmax(dense(x, 2))))
optimizer sgd(lr=0.1)
train {
  metrics = accuracy
}
""", seed=0)
    h = model.fit(X, y, epochs=2, validation_split=0.2)
    assert list(h.history) == ["loss", "val_loss", "lr"]
    assert set(model.evaluate(X, y)) == {"loss"}
    with pytest.raises(netc.UserError, match="no output"):
        model.predict(X)
