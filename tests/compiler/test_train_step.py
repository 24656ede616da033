"""The whole compiled train step of a 2-hidden-layer model, in float64: the gradient it applies
equals central finite differences of the compiled loss."""
import numpy as np

import netc

SOURCE = """
model mlp2
input  x[5]
target y: class[3]
h1 = tanh(dense(x, 7, init=glorot))
h2 = sigmoid(dense(h1, 6, init=glorot))
p  = softmax(dense(h2, 3, init=glorot))
loss main = cross_entropy(p, y)
loss reg  = 1e-3 * l2(weights)
optimizer sgd(lr=1.0)
"""


def test_compiled_train_step_gradient_matches_finite_differences():
    m = netc.compile(SOURCE, dtype="float64", seed=3)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((11, 5))
    y = rng.integers(0, 3, 11)
    names = list(m.params)
    before = {k: v.copy() for k, v in m.params.items()}
    losses = np.zeros(len(m.loss_names))

    def loss_at(params):
        m.artifact.evaluate(X, y, [params[k] for k in names], losses)
        return losses.sum()

    # one SGD step with lr = 1: the params move by exactly minus the gradient
    m.artifact.train_step(X, y, 1.0, 1.0, [m.params[k] for k in names], [], losses)
    applied = {k: before[k] - m.params[k] for k in names}
    for k in names:
        p = {n: before[n].copy() for n in names}
        num = np.zeros_like(p[k])
        h = 1e-6
        for idx in np.ndindex(p[k].shape):
            old = p[k][idx]
            p[k][idx] = old + h
            up = loss_at(p)
            p[k][idx] = old - h
            down = loss_at(p)
            p[k][idx] = old
            num[idx] = (up - down) / (2 * h)
        err = np.max(np.abs(applied[k] - num)) / max(1.0, np.max(np.abs(num)))
        assert err <= 1e-6, f"{k}: relative error {err:.2e}"
