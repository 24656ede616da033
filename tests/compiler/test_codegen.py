"""The generated CPU code: a steady-state train step allocates nothing (Numba's NRT statistics),
switching any pass off changes no result beyond float rounding (on the examples), batch sizes
may vary between calls, and outputs are fresh arrays."""
import os

import numpy as np
import pytest

import netc
from netc.compiler.passes import PASS_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MLP = '''model m
input x[6]
target y: class[3]
h = relu(dense(x, 8))
p = softmax(dense(h, 3))
output p
loss main = cross_entropy(p, y)
loss reg = 1e-3 * l2(weights)
optimizer sgd(lr=0.1, momentum=0.9, nesterov=true)
'''

# every image op: im2col convolutions (stride, padding, a non-square kernel, a 1x1 kernel on a
# 1x1 image), overlapping max pooling, average pooling, global average pooling
CONV = '''model m
input x[2, 9, 9]
target y: class[3]
a = relu(conv2d(x, 4, 3, pad=1))
b = maxpool(a, 3, stride=2)
c = relu(conv2d(b, 4, [2, 3], stride=[1, 2], pad=[0, 1]))
d = avgpool(c, 1)
e = conv2d(maxpool(d, 2), 2, 1)
p = softmax(dense(flatten(d), 3) + dense(global_avgpool(e), 3))
loss main = cross_entropy(p, y)
optimizer adam(lr=0.01)
'''


def test_steady_state_train_step_allocates_nothing(nrt_allocations):
    """Per call, the compiled step allocates exactly what unboxing its arguments costs (one
    MemInfo per array argument, the same as a do-nothing function): its body allocates nothing.
    Without the memory plan it does allocate, so the check can fail."""
    step, noop = nrt_allocations(MLP)
    assert step == noop, (step, noop)
    step_off, noop_off = nrt_allocations(MLP, ["memplan"])
    assert step_off[0] > noop_off[0] + 5, (step_off, noop_off)


def test_steady_state_train_step_of_a_conv_model_allocates_nothing(nrt_allocations):
    """The same for convolutions (their im2col work arrays are arena slots) and pooling."""
    step, noop = nrt_allocations(CONV)
    assert step == noop, (step, noop)
    step_off, noop_off = nrt_allocations(CONV, ["memplan"])
    assert step_off[0] > noop_off[0] + 5, (step_off, noop_off)


EXAMPLES = ["digits", "neuron"]      # aux head, l2, nesterov, relu, softmax CE; sigmoid BCE


def _run_steps(name, disabled):
    m = netc.compile(os.path.join(ROOT, "examples", f"{name}.net"), dtype="float64", seed=0,
                     disabled_passes=disabled)
    rng = np.random.default_rng(1)
    d = m.ir.input_shape[0]
    t = m.ir.target
    params = list(m.params.values())
    states = [m.state[s.name] for s in m.artifact.states]
    losses = np.zeros(len(m.loss_names))
    trace = []
    for i, B in enumerate((16, 16, 7)):              # a partial last batch too
        X = rng.standard_normal((B, d))
        y = rng.integers(0, t.classes, B) if t.kind == "class" else (rng.random((B,) + t.shape) > 0.5) * 1.0
        out = m.artifact.train_step(X, y, 0.05, float(i + 1), params, states, losses)
        trace.append((losses.copy(), None if out is None else out.copy()))
    return trace, {k: v.copy() for k, v in m.params.items()}, {k: v.copy() for k, v in m.state.items()}


_reference = {}


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("off", PASS_NAMES)
def test_switching_a_pass_off_changes_no_result(name, off):
    if name not in _reference:
        _reference[name] = _run_steps(name, ())
    ref_trace, ref_p, ref_s = _reference[name]
    trace, p, s = _run_steps(name, (off,))
    for (l0, o0), (l1, o1) in zip(ref_trace, trace):
        np.testing.assert_allclose(l1, l0, rtol=1e-9, atol=1e-12)
        if o0 is not None:
            np.testing.assert_allclose(o1, o0, rtol=1e-9, atol=1e-12)
    for k in ref_p:
        np.testing.assert_allclose(p[k], ref_p[k], rtol=1e-9, atol=1e-12, err_msg=k)
    for k in ref_s:
        np.testing.assert_allclose(s[k], ref_s[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_outputs_are_fresh_arrays_and_batch_sizes_vary():
    m = netc.compile(os.path.join(ROOT, "examples", "spiral.net"), seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 2)).astype(np.float32)
    params = list(m.params.values())
    a = m.artifact.predict(X[:20], params)
    b = m.artifact.predict(X[20:27], params)         # another batch size: its own arena
    c = m.artifact.predict(X[:20], params)
    assert a is not c and a.shape == (20, 3) and b.shape == (7, 3)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(m.predict(X), np.concatenate([a, m.artifact.predict(X[20:], params)]), rtol=1e-6)
    np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-5)


def test_a_method_bound_before_the_first_call_pays_the_first_call_once(monkeypatch):
    """`step = art.train_step` taken before the first call keeps calling the instance's
    first-call path; after that first call it must go straight to the compiled step (no
    timing, no sealing of the cache entry again: that once cost 0.5 ms a step)."""
    from netc.compiler.backend.cpu import artifact as A
    sealed = []
    monkeypatch.setattr(A, "seal", lambda module: sealed.append(module))
    m = netc.compile(MLP, seed=0)
    art = m.artifact
    step = art.train_step                       # bound before the first call
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    y = rng.integers(0, 3, 4)
    losses = np.zeros(len(m.loss_names))
    for i in range(3):
        step(x, y, np.float32(0.1), np.float32(i + 1), m.param_arrays(), m.state_arrays(), losses)
    assert len(sealed) == 1
