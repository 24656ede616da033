"""A convolutional network with every image layer of a vision course -- conv2d, batchnorm per
channel, relu, maxpool, flatten, dense, softmax cross-entropy -- takes the same 20 steps as its
PyTorch twin from the same weights and batches (float64), with SGD momentum and with Adam: the
params, batchnorm's running statistics (momentum 0.1, unbiased variance) and predict, which equals
PyTorch's eval() output (the running statistics, not the batch's)."""
import numpy as np
import pytest

import netc

torch = pytest.importorskip("torch")

CNN = """
model cnn
input  img[2, 6, 6]
target y: class[4]
h = maxpool(relu(batchnorm(conv2d(img, 3, 3, pad=1))), 2)    # [3, 3, 3]
p = softmax(dense(flatten(h), 4))
loss cross_entropy(p, y)
optimizer {opt}
"""

OPTS = {
    "sgd(lr=0.05, momentum=0.9)": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "adam(lr=0.01)": lambda ps: torch.optim.Adam(ps, lr=0.01),
}
N, BATCH = 100, 5                     # 20 steps in one epoch


@pytest.mark.parametrize("opt", list(OPTS))
def test_cnn_twenty_steps_equal_pytorch(opt, bn_torch, check_bn_state):
    model = netc.compile(CNN.format(opt=opt), dtype="float64", seed=7)
    assert sorted(model.params) == sorted([
        "h.conv2d.W", "h.conv2d.b", "h.batchnorm.gamma", "h.batchnorm.beta",
        "h.batchnorm.running_mean", "h.batchnorm.running_var", "p.dense.W", "p.dense.b"])
    rng = np.random.default_rng(4)
    X = rng.standard_normal((N, 2, 6, 6)) * 2 + 0.5         # off-centre: the statistics matter
    y = rng.integers(0, 4, N)
    p = {k: v.copy() for k, v in model.params.items()}
    conv = torch.nn.Conv2d(2, 3, 3, padding=1).double()
    lin = torch.nn.Linear(27, 4).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(p["h.conv2d.W"]))
        conv.bias.copy_(torch.tensor(p["h.conv2d.b"]))
        lin.weight.copy_(torch.tensor(p["p.dense.W"]))
        lin.bias.copy_(torch.tensor(p["p.dense.b"]))
    bn = bn_torch(p, "h.batchnorm", 3, 0.1, 1e-5, 2)
    net = torch.nn.Sequential(conv, bn, torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), lin)
    topt = OPTS[opt](list(net.parameters()))
    Xt, yt = torch.tensor(X), torch.tensor(y)
    net.train()
    for i in range(0, N, BATCH):
        topt.zero_grad()
        torch.nn.functional.cross_entropy(net(Xt[i:i + BATCH]), yt[i:i + BATCH]).backward()
        topt.step()

    model.fit(X, y, epochs=1, batch=BATCH, shuffle=False)
    assert model.step == 20
    for ours, theirs in (("h.conv2d.W", conv.weight), ("h.conv2d.b", conv.bias),
                         ("p.dense.W", lin.weight), ("p.dense.b", lin.bias)):
        assert not np.array_equal(model.params[ours], p[ours]), f"{ours} never moved"
        np.testing.assert_allclose(model.params[ours], theirs.detach().numpy(), rtol=1e-6, atol=1e-6, err_msg=ours)
    assert not np.array_equal(model.params["h.batchnorm.running_var"], p["h.batchnorm.running_var"])
    check_bn_state(model, "h.batchnorm", bn)
    # the running statistics are buffers, not optimizer state
    assert all("running" not in k for k in model.state)

    net.eval()
    with torch.no_grad():
        want = torch.softmax(net(Xt), dim=1).numpy()
        batch_stats = torch.softmax(net.train()(Xt), dim=1).numpy()
    got = model.predict(X)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert not np.allclose(got, batch_stats, atol=1e-6)     # predict really used the running statistics
