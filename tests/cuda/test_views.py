"""batchnorm and dropout on the CUDA backend (simulator): the train step of a model with both
equals the CPU's after 3 steps within 1e-5 (float32) -- params, running statistics, optimizer
state, loss terms, outputs: the GPU draws the same dropout masks --, evaluate and predict use the
running statistics and no dropout as on the CPU, and the model's kernels (dropout's device
function included) compile to PTX for sm_90."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import netc
from netc.compiler.frontend import check, lower
from netc.dsl import parse

SOURCE = """model views
input  x[6]
target y: class[3]
h = dropout(relu(batchnorm(dense(x, 8, bias=false), momentum=0.3)), 0.4)   # a bias before batchnorm has a zero gradient: Adam would amplify rounding noise
p = softmax(dense(h, 3))
loss cross_entropy(p, y)
optimizer adam(lr=0.01)
"""
TOL = 1e-5


def close(got, want, what):
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, err_msg=what)


@pytest.fixture(scope="module")
def pair():
    cpu = netc.compile(SOURCE, dtype="float32", seed=0)
    gpu = lower(check(parse(SOURCE)), device="cuda", dtype="float32")
    return cpu, gpu


def test_train_step_evaluate_and_predict_equal_the_cpu(pair):
    cpu, gpu = pair
    names = [p.name for p in cpu.ir.params]
    p_cpu = [cpu.params[n].copy() for n in names]
    p_gpu = [a.copy() for a in p_cpu]
    s_cpu = [np.zeros_like(cpu.params[s.param]) for s in cpu.artifact.states]
    s_gpu = [a.copy() for a in s_cpu]
    rng = np.random.default_rng(1)
    l_cpu, l_gpu = np.zeros(1), np.zeros(1)
    for step in range(1, 4):
        x = (rng.standard_normal((8, 6)) * 2 + 1).astype(np.float32)
        y = rng.integers(0, 3, 8)
        o_cpu = cpu.artifact.train_step(x, y, np.float32(0.01), np.float32(step), p_cpu, s_cpu, l_cpu)
        o_gpu = gpu.train_step(x, y, np.float32(0.01), np.float32(step), p_gpu, s_gpu, l_gpu)
        close(l_gpu, l_cpu, f"loss at step {step}")
        close(o_gpu, o_cpu, f"output at step {step}")
    for n, a, b in zip(names, p_gpu, p_cpu):
        close(a, b, f"param {n} after 3 steps")
    for s, a, b in zip(cpu.artifact.states, s_gpu, s_cpu):
        close(a, b, f"state {s.name} after 3 steps")
    rm = p_cpu[names.index("h.batchnorm.running_mean")]
    assert np.all(rm != 0), "the train step updated the running mean"
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    e_cpu, e_gpu = np.zeros(1), np.zeros(1)
    close(gpu.evaluate(x, y, p_gpu, e_gpu), cpu.artifact.evaluate(x, y, p_cpu, e_cpu), "evaluate output")
    close(e_gpu, e_cpu, "evaluate loss")
    want = cpu.artifact.predict(x, p_cpu)
    close(gpu.predict(x, p_gpu), want, "predict")
    # predict of a single sample does not depend on the batch: running statistics, no dropout
    close(cpu.artifact.predict(x[:1], p_cpu), want[:1], "predict of one sample")
    gpu.release()


PTX = textwrap.dedent("""
    import sys
    from numba import cuda
    from netc.compiler.backend.cuda import kernels as K
    from netc.compiler.cache import load_module
    from netc.compiler.frontend import check, kernels_source
    from netc.dsl import parse
    assert not K.SIM
    module = load_module(kernels_source(check(parse(sys.argv[1])), "cuda", "float32"))
    for name, sig in module.KERNELS:
        ptx, _ = cuda.compile_ptx(getattr(module, name).py_func, sig, cc=(9, 0))
        assert ".target sm_90" in ptx, name
    print("compiled", len(module.KERNELS), "kernels")
""")


def test_kernels_compile_to_ptx_for_cc_90(pair):
    assert "K.dropout_keep(" in pair[1].source          # dropout's device function is among them
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-c", PTX, SOURCE], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    assert "compiled" in r.stdout


def test_train_epoch_equals_the_cpu_steps(pair):
    """The epoch path (data on the device, batches gathered there) draws the same masks and
    updates the same running statistics as the CPU's train steps."""
    cpu, gpu = pair
    rng = np.random.default_rng(4)
    X = rng.standard_normal((20, 6)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    order = rng.permutation(20)
    p1 = [cpu.params[p.name].copy() for p in cpu.ir.params]
    s1 = [np.zeros_like(cpu.params[s.param]) for s in gpu.states]
    p2, s2 = [a.copy() for a in p1], [a.copy() for a in s1]
    terms, outs, losses = [], [], np.zeros(1)
    for step, i in enumerate(range(0, 20, 8), start=1):
        idx = order[i:i + 8]
        outs.append(cpu.artifact.train_step(X[idx], y[idx], np.float32(0.01), np.float32(step), p1, s1, losses))
        terms.append(losses.copy())
    got_terms, got_outs = gpu.train_epoch(X, y, 8, np.float32(0.01), 0, p2, s2, order=order)
    gpu.release()
    close(got_terms, np.array(terms), "loss terms of each batch")
    close(got_outs, np.concatenate(outs), "outputs")
    for a, b in zip(p2 + s2, p1 + s1):
        close(a, b, "params, buffers and state after the epoch")
