"""The split train step of data-parallel training: grad_step (forward and backward into one
contiguous gradient buffer) then apply_step (the optimizer's update from it) is the fused
train_step, step after step, for the examples' optimizers; generated only when asked."""
import pathlib

import numpy as np
import pytest

from netc.compiler import frontend
from netc.dsl import parse
from netc.runtime.model import Model
from netc.runtime.settings import resolve

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

# (example, optimizer put in its place): SGD with momentum, Nesterov, Adam; the CNN (batchnorm,
# dropout) with SGD, since Adam turns the conv bias's gradient -- zero but for rounding, the
# batchnorm after it removes the bias -- into full steps of noise
CASES = {"moons": ("moons.net", None), "moons-adam": ("moons.net", "adam(lr=0.01)"),
         "digits": ("digits.net", None), "spiral": ("spiral.net", None),
         "digits_cnn-sgd": ("digits_cnn.net", "sgd(lr=0.05, momentum=0.9)")}


def example(name, optimizer=None):
    src = (EXAMPLES / name).read_text()
    if optimizer:
        lines = src.splitlines()
        lines = [f"optimizer {optimizer}" if l.startswith("optimizer ") else l for l in lines]
        src = "\n".join(lines) + "\n"
    return src


def _models(name, dtype, device="cpu"):
    src = example(*CASES[name])
    checked = frontend.check(parse(src, name))
    fused = frontend.lower(checked, device, dtype)
    split = frontend.lower(checked, device, dtype, split=True)
    settings = resolve(checked.model, name, src)
    return Model(fused, settings, name, src, 3), Model(split, settings, name, src, 3)


def _batch(model, n, seed=0):
    rng = np.random.default_rng(seed)
    ir = model.ir
    x = rng.standard_normal((n,) + tuple(ir.input_shape)).astype(model.dtype)
    t = ir.target
    if t.kind == "class":
        y = rng.integers(0, t.classes, n).astype(np.int64)
    else:
        y = rng.standard_normal((n,) + tuple(t.shape)).astype(model.dtype)
    return x, y


def run_both(name, dtype, device="cpu", steps=4, n=16):
    a, b = _models(name, dtype, device)
    art = b.artifact
    assert "grad_step" not in a.artifact.entries          # generated only when asked
    grads = np.zeros(art.grad_size, b.dtype)
    pa, sa, pb, sb = a.param_arrays(), a.state_arrays(), b.param_arrays(), b.state_arrays()
    for p, q in zip(pa + sa, pb + sb):
        np.testing.assert_array_equal(p, q)
    la, lb = np.zeros(len(a.loss_names)), np.zeros(len(b.loss_names))
    lr = b.dtype.type(0.05)
    for k in range(steps):
        x, y = _batch(a, n, k)
        step = b.dtype.type(k + 1)
        oa = a.artifact.train_step(x, y, lr, step, pa, sa, la)
        ob = art.grad_step(x, y, step, pb, grads, lb)
        art.apply_step(lr, step, pb, sb, grads)
        # the same arithmetic; only fastmath's contraction may differ where the fused step
        # computed a gradient inside its update's loop
        tol = 1e-6 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(la, lb, rtol=tol, atol=tol)
        np.testing.assert_allclose(np.asarray(oa), np.asarray(ob), rtol=tol, atol=tol)
    return pa + sa, pb + sb


@pytest.mark.parametrize("name,dtype", [("moons", "float32"), ("moons", "float64"), ("moons-adam", "float64"),
                                        ("digits", "float32"), ("spiral", "float64"), ("digits_cnn-sgd", "float64")])
def test_split_equals_fused_cpu(name, dtype):
    fused, split = run_both(name, dtype)
    tol = 1e-6 if dtype == "float32" else 1e-13
    for p, q in zip(fused, split):
        np.testing.assert_allclose(p, q, rtol=tol, atol=tol)


def test_gradient_buffer_layout():
    _, b = _models("moons", "float32")
    art = b.artifact
    names = [nm for nm, _, _ in art.grad_layout]
    assert names == [p.name for p in b.ir.params if p.trainable]
    offs = [o for _, o, _ in art.grad_layout]
    sizes = [int(np.prod(s)) for _, _, s in art.grad_layout]
    assert offs == list(np.cumsum([0] + sizes[:-1]))
    assert art.grad_size == sum(sizes)
