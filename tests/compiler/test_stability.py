"""Logits of magnitude 1e4: with the `stabilize` pass, the loss and its gradient stay finite and
equal the stable form (computed here in NumPy), for each stabilizing rewrite and however the
user wrote the pattern: nested in the loss, through a named value, a user layer, an output."""
import numpy as np
import pytest
from scipy.special import expit, log_expit, logsumexp, softmax

import netc

HEAD = "model s\ninput x[2]\n"
CE = {
    "nested": "target y: class[3]\nloss cross_entropy(softmax(dense(x, 3)), y)\n",
    "named": "target y: class[3]\nz = dense(x, 3)\np = softmax(z)\nloss cross_entropy(p, y)\n",
    "layer": "target y: class[3]\nlayer head(h) {\n  return softmax(dense(h, 3))\n}\np = head(x)\nloss cross_entropy(p, y)\n",
    "output": "target y: class[3]\np = softmax(dense(x, 3))\noutput p\nloss main = cross_entropy(p, y)\n",
    "by hand (log-sum-exp)": "target y: class[3]\nz = dense(x, 3)\nloss log(sum(exp(z))) - sum(z * onehot(y))\n",
    "log-sum-exp named, in a layer": "target y: class[3]\nlayer lse(v) {\n  s = sum(exp(v))\n  return log(s)\n}\n"
                                     "z = dense(x, 3)\nl = lse(z)\nloss l - sum(z * onehot(y))\n",
}
BCE = {
    "nested": "target t[1]\nloss binary_cross_entropy(sigmoid(dense(x, 1)), t)\n",
    "named": "target t[1]\nz = dense(x, 1)\np = sigmoid(z)\nloss binary_cross_entropy(p, t)\n",
    "layer": "target t[1]\nlayer prob(h) {\n  return sigmoid(dense(h, 1))\n}\np = prob(x)\noutput p\nloss binary_cross_entropy(p, t)\n",
}
OPT = "optimizer sgd(lr=1.0)\n"

X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5], [0.3, -1.0]])
Y = np.array([2, 0, 1, 0])
T = np.array([[0.0], [1.0], [1.0], [0.0]])


def _compile(body, disabled=()):
    return netc.compile(HEAD + body + OPT, dtype="float64", seed=0, disabled_passes=disabled)


def _set_big(m, classes):
    W = np.array([[1e4, -2e4], [-1e4, 3e4], [2e4, 1e4]])[:classes]
    for k, v in m.params.items():
        m.params[k] = W if v.ndim == 2 else np.zeros(v.shape)
    return W


def _step(m, y):
    """Loss (evaluate), then one SGD step with lr 1: the applied change is minus the gradient."""
    names = list(m.params)
    losses = np.zeros(len(m.loss_names))
    m.artifact.evaluate(X, y, [m.params[k] for k in names], losses)
    loss = losses.sum()
    before = {k: m.params[k].copy() for k in names}
    m.artifact.train_step(X, y, 1.0, 1.0, [m.params[k] for k in names], [], losses)
    grads = {k: before[k] - m.params[k] for k in names}
    return loss, next(g for k, g in grads.items() if g.ndim == 2), next(g for k, g in grads.items() if g.ndim == 1)


@pytest.mark.parametrize("how", list(CE))
def test_softmax_cross_entropy_at_logits_1e4(how):
    m = _compile(CE[how])
    W = _set_big(m, 3)
    z = X @ W.T
    assert np.abs(z).max() >= 1e4
    loss, gW, gb = _step(m, Y)
    want = np.mean(logsumexp(z, axis=1) - z[np.arange(4), Y])
    onehot = np.eye(3)[Y]
    d = (softmax(z, axis=1) - onehot) / 4                # the gradient softmax(z) - onehot(y), per sample
    assert np.isfinite(loss) and np.all(np.isfinite(gW)) and np.all(np.isfinite(gb))
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(gW, d.T @ X, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb, d.sum(0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("how", list(BCE))
def test_sigmoid_binary_cross_entropy_at_logits_1e4(how):
    m = _compile(BCE[how])
    W = _set_big(m, 1)
    z = X @ W.T
    loss, gW, gb = _step(m, T)
    want = -np.mean(T * log_expit(z) + (1 - T) * log_expit(-z))
    d = (expit(z) - T) / 4
    assert np.isfinite(loss) and np.all(np.isfinite(gW))
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(gW, d.T @ X, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb, d.sum(0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("body,y", [(CE["named"], Y), (BCE["named"], T), (CE["by hand (log-sum-exp)"], Y)])
def test_without_stabilize_the_same_programs_overflow(body, y):
    """The control: the naive forms really are unstable at these logits (so the tests above test
    the rewrites)."""
    m = _compile(body, disabled=("stabilize",))
    _set_big(m, 3 if "class" in body else 1)
    with np.errstate(all="ignore"):
        loss, gW, gb = _step(m, y)
    assert not (np.isfinite(loss) and np.all(np.isfinite(gW)))
