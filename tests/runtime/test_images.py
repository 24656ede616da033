"""Convolutional networks end to end (issue 10): examples/lenet.net learns the bundled mnist
set; a conv + pooling + dense model takes the same steps as PyTorch from the same weights and
batches (float64, SGD with momentum and Adam); the equation form `conv(x, K) + c` with a
[n, 1, 1] param broadcasts like the layer's bias."""
import os

import numpy as np
import pytest

import netc
from netc.runtime import data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LENET = os.path.join(ROOT, "examples", "lenet.net")


@pytest.fixture(scope="module")
def mnist():
    ds = data.load_mnist()
    order = np.random.default_rng(0).permutation(len(ds.X))
    return ds.X[order].reshape(-1, 1, 28, 28), ds.y[order]


def test_lenet_learns_mnist(mnist):
    """Two epochs on 2,000 images: a broken convolution or pooling (or its gradient) stays far
    below this; the full run (`netc train examples/lenet.net`, 30 epochs) reaches >= 0.97."""
    X, y = mnist
    model = netc.compile(LENET, seed=0)
    assert [tuple(model.params[k].shape) for k in ("c1.conv2d.W", "c1.conv2d.b", "c2.conv2d.W")] == \
        [(6, 1, 5, 5), (6,), (16, 1 * 6, 5, 5)]
    history = model.fit(X[:2000], y[:2000], epochs=2, batch=64)
    assert history["train.loss"][-1] < history["train.loss"][0]
    acc = (model.predict(X[4000:]).argmax(1) == y[4000:]).mean()
    assert acc >= 0.8, acc


SMALL = """
model small
input  img[2, 7, 6]
target y: class[3]
param K[3, 2, 3, 2] = he
param c[3, 1, 1] = 0
a = maxpool(relu(conv(img, K, pad=1) + c), 3, stride=2)
b = avgpool(conv2d(a, 4, [2, 2], stride=[1, 2], pad=[1, 1]), 2, stride=1)
p = softmax(dense(flatten(b), 3))
loss cross_entropy(p, y)
optimizer OPT
"""


def _torch_model(torch, params):
    F = torch.nn.functional
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}

    def forward(x):
        a = F.max_pool2d(F.relu(F.conv2d(x, t["K"], padding=1) + t["c"]), 3, stride=2)
        b = F.avg_pool2d(F.conv2d(a, t["b.conv2d.W"], t["b.conv2d.b"], stride=(1, 2), padding=(1, 1)), 2, stride=1)
        return F.linear(b.flatten(1), t["p.dense.W"], t["p.dense.b"])
    return t, forward


@pytest.mark.parametrize("opt", ["sgd(lr=0.05, momentum=0.9)", "adam(lr=0.01)"])
def test_conv_model_steps_equal_pytorch(opt):
    torch = pytest.importorskip("torch")
    model = netc.compile(SMALL.replace("OPT", opt), dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 2, 7, 6))
    y = rng.integers(0, 3, 80)
    t, forward = _torch_model(torch, {k: v.copy() for k, v in model.params.items()})
    o = (torch.optim.SGD(t.values(), lr=0.05, momentum=0.9) if opt.startswith("sgd")
         else torch.optim.Adam(t.values(), lr=0.01))
    model.fit(X, y, epochs=1, batch=4, shuffle=False)            # 20 steps
    for i in range(0, 80, 4):
        o.zero_grad()
        torch.nn.functional.cross_entropy(forward(torch.tensor(X[i:i + 4])), torch.tensor(y[i:i + 4])).backward()
        o.step()
    for k, v in model.params.items():
        np.testing.assert_allclose(v, t[k].detach().numpy(), rtol=0, atol=1e-6, err_msg=k)
    with torch.no_grad():
        want = torch.softmax(forward(torch.tensor(X)), 1).numpy()
    np.testing.assert_allclose(model.predict(X), want, atol=1e-9)
