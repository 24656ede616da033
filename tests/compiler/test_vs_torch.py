"""From identical weights and identical batches, netc's params after 50 steps equal PyTorch's
(float64) for every optimizer, with momentum, nesterov, dampening and weight decay."""
import numpy as np
import pytest

import netc

torch = pytest.importorskip("torch")

MODEL = """
model cmp
input  x[4]
target y: class[3]
h = tanh(dense(x, 8))
p = softmax(dense(h, 3))
loss cross_entropy(p, y)
optimizer {opt}
"""

OPTIMIZERS = {
    "sgd(lr=0.1, momentum=0.9, nesterov=true, weight_decay=0.001)":
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "sgd(lr=0.1, momentum=0.9, dampening=0.9)":
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.9),
    "sgd(lr=0.2)": lambda ps: torch.optim.SGD(ps, lr=0.2),
    "adam(lr=0.01, weight_decay=0.01)": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01),
    "adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6)":
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    "adamw(lr=0.01, weight_decay=0.1)": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    "rmsprop(lr=0.01, momentum=0.5, weight_decay=0.01)":
        lambda ps: torch.optim.RMSprop(ps, lr=0.01, momentum=0.5, weight_decay=0.01),
    "adagrad(lr=0.1, lr_decay=0.01, weight_decay=0.01)":
        lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=0.01),
}


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_fifty_steps_equal_pytorch(opt):
    model = netc.compile(MODEL.format(opt=opt), dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = rng.integers(0, 3, 200)
    p = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.params.items()}
    ref_model = lambda x: torch.softmax(
        torch.tanh(x @ p["h.dense.W"].T + p["h.dense.b"]) @ p["p.dense.W"].T + p["p.dense.b"], dim=1)
    torch_opt = OPTIMIZERS[opt](list(p.values()))
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for epoch in range(5):
        for i in range(0, 200, 20):
            torch_opt.zero_grad()
            loss = torch.nn.functional.nll_loss(torch.log(ref_model(Xt[i:i + 20])), yt[i:i + 20])
            loss.backward()
            torch_opt.step()
    model.fit(X, y, epochs=5, batch=20, shuffle=False)
    assert model.step == 50
    for k, v in model.params.items():
        np.testing.assert_allclose(v, p[k].detach().numpy(), rtol=1e-6, atol=1e-6, err_msg=k)
