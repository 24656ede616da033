"""The CUDA backend's split train step (data-parallel training; on the simulator): grad_step
(the gradients copied into one contiguous host buffer) then apply_step is the fused
train_step, and equals the CPU's split step."""
import os

import numpy as np
import pytest

from netc.compiler import frontend
from netc.dsl import parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _batch(ir, dtype, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + tuple(ir.input_shape)).astype(dtype)
    return x, rng.integers(0, ir.target.classes, n).astype(np.int64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_split_equals_fused_and_cpu(dtype):
    path = os.path.join(ROOT, "examples", "moons.net")
    checked = frontend.check(parse(open(path).read(), path))
    fused = frontend.lower(checked, "cuda", dtype)
    split = frontend.lower(checked, "cuda", dtype, split=True)
    cpu = frontend.lower(checked, "cpu", dtype, split=True)
    assert "grad_step" not in fused.entries and "grad_step" in split.entries
    assert split.grad_layout == cpu.grad_layout
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(p.shape).astype(dtype) for p in checked.model.params]
    states = [np.zeros(next(p.shape for p in checked.model.params if p.name == s.param), dtype)
              for s in checked.train.states]
    runs = [([a.copy() for a in params], [a.copy() for a in states]) for _ in range(3)]
    dt = np.dtype(dtype).type
    lr = dt(0.1)
    for k in range(3):
        x, y = _batch(checked.model, dtype, 12, k)
        step = dt(k + 1)
        terms = [np.zeros(1) for _ in range(3)]
        outs = [fused.train_step(x, y, lr, step, *runs[0], terms[0])]
        for art, (p, s), t in ((split, runs[1], terms[1]), (cpu, runs[2], terms[2])):
            g = np.zeros(art.grad_size, dtype)
            outs.append(art.grad_step(x, y, step, p, g, t))
            art.apply_step(lr, step, p, s, g)
        tol = 1e-5 if dtype == "float32" else 1e-12
        for o, t in zip(outs[1:], terms[1:]):
            np.testing.assert_allclose(o, outs[0], rtol=tol, atol=tol)
            np.testing.assert_allclose(t, terms[0], rtol=tol, atol=tol)
    for (p, s) in runs[1:]:
        for a, b in zip(p + s, runs[0][0] + runs[0][1]):
            np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
    # CUDA split vs CUDA fused: the same kernels' arithmetic
    for a, b in zip(runs[1][0] + runs[1][1], runs[0][0] + runs[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == "float32" else 1e-13, atol=1e-7)
