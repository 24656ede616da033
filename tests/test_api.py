"""The embedding API of issue 2: netc.compile, fit, predict, params, save / netc.load."""
import numpy as np
import pytest

import netc

SOURCE = """
model api
input  x[2]
target y: class[2]
h = tanh(dense(x, 8))
p = softmax(dense(h, 2))
loss cross_entropy(p, y)
optimizer sgd(lr=0.5, momentum=0.9)
"""


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)          # XOR-like quadrants
    return X, y


def test_compile_fit_predict_save_load(data, tmp_path):
    X, y = data
    model = netc.compile(SOURCE, seed=0)
    assert list(model.params) == ["h.dense.W", "h.dense.b", "p.dense.W", "p.dense.b"]
    history = model.fit(X[:240], y[:240], epochs=60, batch=32, validation=(X[240:], y[240:]))
    assert len(history.epochs) == 60
    assert history["train.loss"][-1] < history["train.loss"][0]
    proba = model.predict(X[240:])
    assert proba.shape == (60, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert (proba.argmax(1) == y[240:]).mean() >= 0.9
    model.save(tmp_path / "api.ckpt")
    again = netc.load(str(tmp_path / "api.ckpt"))
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], again.params[k])
    np.testing.assert_array_equal(again.predict(X[240:]), proba)
    assert again.step == model.step


def test_params_are_assignable_and_checked(data):
    X, _ = data
    model = netc.compile(SOURCE, seed=0)
    model.params["p.dense.W"] = np.zeros((2, 8))
    model.params["p.dense.b"] = np.array([0.0, 0.0])
    np.testing.assert_allclose(model.predict(X[:5]), 0.5)             # all-zero logits
    with pytest.raises(ValueError, match="shape"):
        model.params["p.dense.W"] = np.zeros((3, 3))
    with pytest.raises(KeyError, match="did you mean"):
        model.params["p.dense.w"] = np.zeros((2, 8))


def test_bad_data_is_a_clear_error():
    model = netc.compile(SOURCE, seed=0)
    with pytest.raises(netc.DataError, match="label"):
        model.fit(np.zeros((4, 2)), np.array([0, 1, 2, 1]), epochs=1)
    with pytest.raises(netc.DataError, match="expects"):
        model.fit(np.zeros((4, 3)), np.array([0, 1, 1, 1]), epochs=1)
