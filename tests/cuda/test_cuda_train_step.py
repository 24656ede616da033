"""For the six example programs (float32): the CUDA train step equals the CPU train step after
5 steps (same initial params, same batches of 8 samples) within 1e-5 — params, optimizer
state, loss terms and outputs — on the CUDA simulator; evaluate and predict too. And the
residency contract: held params stay on the device until sync(); unheld ones are written
through. digits_cnn.net (every image op, batchnorm and dropout) in its tiny form: 3 steps of 2
samples."""
import glob
import os
import re
import tempfile

import numpy as np
import pytest

import netc
from netc.compiler.frontend import check, lower
from netc.dsl import parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# lenet's 28x28 convolutions are too slow for the simulator (a Python thread per output pixel):
# digits_cnn covers the image ops here, bench/gpu_check.sh runs lenet on a real GPU
EXAMPLES = [p for p in sorted(glob.glob(os.path.join(ROOT, "examples", "*.net")))
            if os.path.basename(p) != "lenet.net"]
# a small convolutional model with every image op (strided, padded, non-square and 1x1
# convolutions; overlapping max pooling; average and global average pooling), as a file
CONV_SMALL = os.path.join(tempfile.mkdtemp(prefix="netc-cuda-"), "conv_small.net")
with open(CONV_SMALL, "w") as _f:
    _f.write("""model conv_small
input img[1, 6, 6]
target y: class[3]
param K[3, 1, 3, 2] = he
param c[3, 1, 1] = 0.1
a = maxpool(relu(conv(img, K, pad=1) + c), 3, stride=2)
b = avgpool(relu(conv2d(a, 4, [2, 3], stride=[1, 2], pad=1)), 2, stride=1)
g = global_avgpool(conv2d(b, 2, 1))
p = softmax(dense(flatten(b), 3) + dense(g, 3))
loss cross_entropy(p, y)
optimizer adam(lr=0.01)
""")
EXAMPLES.append(CONV_SMALL)
BATCH, STEPS, TOL = 8, 5, 1e-5
# digits_cnn (16 and 32 channels of 8x8 on the simulator): the contract's tiny batch and 3 steps
# keep it within a minute. Its optimizer is SGD with momentum here, not the file's Adam: its
# conv2d bias feeds a batchnorm over the same channels, so its gradient is zero in exact
# arithmetic and Adam's g / sqrt(v) turns the rounding noise into steps of +-lr -- the CPU in
# float32 and in float64 already disagree on it by 0.0075 after 3 steps (and on that batchnorm's
# running_mean, hence on evaluate and predict), while every other param agrees to 3e-7. Under
# SGD every param, buffer, output and prediction is compared strictly; Adam on CUDA is compared
# on conv_small and the other examples.
TINY = {"digits_cnn.net": (2, 3)}
ADAM = "optimizer adam(lr=0.003)"
with open(os.path.join(ROOT, "examples", "digits_cnn.net")) as _f:
    _src = _f.read()
assert _src.count(ADAM) == 1
DIGITS_CNN_SGD = os.path.join(os.path.dirname(CONV_SMALL), "digits_cnn.net")
with open(DIGITS_CNN_SGD, "w") as _f:
    _f.write(_src.replace(ADAM, "optimizer sgd(lr=0.05, momentum=0.9)"))
EXAMPLES = [DIGITS_CNN_SGD if os.path.basename(p) == "digits_cnn.net" else p for p in EXAMPLES]


def batches(model, rng, batch=BATCH, steps=STEPS):
    ir = model.ir
    out = []
    for _ in range(steps):
        x = rng.standard_normal((batch,) + tuple(ir.input_shape)).astype(np.float32)
        t = ir.target
        if t.kind == "class":
            y = rng.integers(0, t.classes, batch).astype(np.int64)
        else:       # in [0, 1): a valid target for mse and binary cross-entropy alike
            y = rng.random((batch,) + tuple(t.shape)).astype(np.float32)
        out.append((x, y))
    return out


def close(got, want, what):
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, err_msg=what)


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: os.path.basename(p))
def pair(request):
    path = request.param
    cpu = netc.compile(path, dtype="float32", seed=0)
    with open(path) as f:
        gpu = lower(check(parse(f.read(), path)), device="cuda", dtype="float32")
    return (cpu, gpu) + TINY.get(os.path.basename(path), (BATCH, STEPS))


def test_train_step_equals_cpu(pair):
    cpu, gpu, batch, steps = pair
    assert gpu.device == "cuda" and "@cuda.jit" in gpu.source
    names = [p.name for p in cpu.ir.params]
    p_cpu = [cpu.params[n].copy() for n in names]
    p_gpu = [a.copy() for a in p_cpu]
    s_cpu = [np.full(cpu.params[s.param].shape, s.init, np.float32) for s in cpu.artifact.states]
    s_gpu = [a.copy() for a in s_cpu]
    assert [s.name for s in gpu.states] == [s.name for s in cpu.artifact.states]
    lr = np.float32(cpu.ir.optimizer[1].get("lr", 0.01))
    gpu.hold()                      # params and state stay on the device until sync()
    start = [a.copy() for a in p_gpu]
    k = len(cpu.loss_names)
    l_cpu, l_gpu = np.zeros(k), np.zeros(k)
    for step, (x, y) in enumerate(batches(cpu, np.random.default_rng(1), batch, steps), start=1):
        o_cpu = cpu.artifact.train_step(x, y, lr, np.float32(step), p_cpu, s_cpu, l_cpu)
        o_gpu = gpu.train_step(x, y, lr, np.float32(step), p_gpu, s_gpu, l_gpu)
        close(l_gpu, l_cpu, f"loss terms at step {step}")
        if o_cpu is not None:
            close(o_gpu, o_cpu, f"output at step {step}")
    assert all(np.array_equal(a, b) for a, b in zip(p_gpu, start)), "held params changed on the host"
    gpu.sync()
    assert any(not np.array_equal(a, b) for a, b in zip(p_gpu, start)), "sync() changed nothing"
    for n, a, b in zip(names, p_gpu, p_cpu):
        close(a, b, f"param {n} after {steps} steps")
    for s, a, b in zip(cpu.artifact.states, s_gpu, s_cpu):
        close(a, b, f"state {s.name} after {steps} steps")
    # evaluate and predict read the device-resident params
    x, y = batches(cpu, np.random.default_rng(2), batch, 1)[0]
    e_cpu, e_gpu = np.zeros(k), np.zeros(k)
    close(gpu.evaluate(x, y, p_gpu, e_gpu), cpu.artifact.evaluate(x, y, p_cpu, e_cpu), "evaluate output")
    close(e_gpu, e_cpu, "evaluate loss terms")
    if cpu.artifact.has_predict:
        close(gpu.predict(x, p_gpu), cpu.artifact.predict(x, p_cpu), "predict")
    gpu.release()
    # without hold(): write-through, the host arrays are updated by every step
    x, y = batches(cpu, np.random.default_rng(3), batch, 1)[0]
    cpu.artifact.train_step(x, y, lr, np.float32(steps + 1), p_cpu, s_cpu, l_cpu)
    gpu.train_step(x, y, lr, np.float32(steps + 1), p_gpu, s_gpu, l_gpu)
    for n, a, b in zip(names, p_gpu, p_cpu):
        close(a, b, f"param {n} after a write-through step")


def test_train_epoch_fast_path_equals_steps():
    """train_epoch (data on the device, shuffled batches gathered there, loss terms kept
    there) equals the same epoch as train_step calls."""
    path = os.path.join(ROOT, "examples", "moons.net")
    with open(path) as f:
        gpu = lower(check(parse(f.read(), path)), device="cuda", dtype="float32")
    cpu = netc.compile(path, dtype="float32", seed=0)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((20, 2)).astype(np.float32)
    y = rng.integers(0, 2, 20)
    order = rng.permutation(20)
    p1 = [cpu.params[p.name].copy() for p in cpu.ir.params]
    s1 = [np.zeros_like(cpu.params[s.param]) for s in gpu.states]
    p2, s2 = [a.copy() for a in p1], [a.copy() for a in s1]
    lr, k = np.float32(0.1), len(gpu.loss_names)
    terms, outs, losses = [], [], np.zeros(k)
    for step, i in enumerate(range(0, 20, 8), start=1):
        idx = order[i:i + 8]
        outs.append(cpu.artifact.train_step(X[idx], y[idx], lr, np.float32(step), p1, s1, losses))
        terms.append(losses.copy())
    got_terms, got_outs = gpu.train_epoch(X, y, 8, lr, 0, p2, s2, order=order)
    gpu.release()
    assert got_terms.shape == (3, k)
    close(got_terms, np.array(terms), "loss terms of each batch")
    close(got_outs, np.concatenate(outs), "outputs")
    for a, b in zip(p2 + s2, p1 + s1):
        close(a, b, "params and state after the epoch")


def test_train_epochs_equals_the_cpu_block():
    """train_epochs (whole epochs one after another, a rate each, shuffled) on the device
    equals the CPU's compiled block of the same epochs."""
    path = os.path.join(ROOT, "examples", "moons.net")
    with open(path) as f:
        gpu = lower(check(parse(f.read(), path)), device="cuda", dtype="float32")
    cpu = netc.compile(path, dtype="float32", seed=0)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((20, 2)).astype(np.float32)
    y = rng.integers(0, 2, 20)
    orders = np.stack([rng.permutation(20) for _ in range(3)])
    p1 = [cpu.params[p.name].copy() for p in cpu.ir.params]
    s1 = [np.zeros_like(cpu.params[s.param]) for s in gpu.states]
    p2, s2 = [a.copy() for a in p1], [a.copy() for a in s1]
    lrs = [0.1, 0.05, 0.025]
    t1, o1 = cpu.artifact.train_epochs(X, y, 8, lrs, 0, p1, s1, orders)
    t2, o2 = gpu.train_epochs(X, y, 8, lrs, 0, p2, s2, orders)
    gpu.release()
    assert t1.shape == t2.shape == (3, 3, len(gpu.loss_names)) and o1.shape == o2.shape == (3, 20, 2)
    close(t2, t1, "loss terms of each epoch's batches")
    close(o2, o1, "outputs of each epoch")
    for a, b in zip(p2 + s2, p1 + s1):
        close(a, b, "params and state after the epochs")


def test_without_the_fuse_pass_every_pointwise_node_is_its_own_kernel():
    """`--no-pass fuse` reaches the CUDA backend: one generated kernel per pointwise node (and
    still the CPU's train step); with fusion the same model needs fewer launches."""
    path = os.path.join(ROOT, "examples", "xor.net")
    with open(path) as f:
        text = f.read()
    fused = lower(check(parse(text, path)), device="cuda", dtype="float32")
    single = lower(check(parse(text, path), disabled=("fuse",)), device="cuda", dtype="float32")
    docs = re.findall(r'"""(.*) over \[', single.source)
    assert docs and all("," not in d for d in docs), "a kernel with several ops without the fuse pass"
    assert single.source.count("K.launch(") > fused.source.count("K.launch(")
    cpu = netc.compile(path, dtype="float32", seed=0)
    p_cpu = [cpu.params[p.name].copy() for p in cpu.ir.params]
    p_gpu = [a.copy() for a in p_cpu]
    s_cpu = [np.zeros_like(cpu.params[s.param]) for s in single.states]
    s_gpu = [a.copy() for a in s_cpu]
    k = len(cpu.loss_names)
    l_cpu, l_gpu = np.zeros(k), np.zeros(k)
    for step, (x, y) in enumerate(batches(cpu, np.random.default_rng(5))[:2], start=1):
        close(single.train_step(x, y, np.float32(0.1), np.float32(step), p_gpu, s_gpu, l_gpu),
              cpu.artifact.train_step(x, y, np.float32(0.1), np.float32(step), p_cpu, s_cpu, l_cpu), "output")
        close(l_gpu, l_cpu, "loss terms")
    for a, b in zip(p_gpu + s_gpu, p_cpu + s_cpu):
        close(a, b, "params and state")


def test_both_backends_satisfy_one_contract():
    """The CPU and the CUDA compiled models are both CompiledModels, with the same train_step
    signature (an `out` array included); CUDA's train_step writes its output into `out`."""
    import inspect
    from netc.compiler.backend.contract import CompiledModel
    path = os.path.join(ROOT, "examples", "xor.net")
    with open(path) as f:
        checked = check(parse(f.read(), path))
    cpu, gpu = lower(checked, "cpu", "float32"), lower(checked, device="cuda", dtype="float32")
    assert isinstance(cpu, CompiledModel) and isinstance(gpu, CompiledModel)
    assert (cpu.device, gpu.device) == ("cpu", "cuda")
    sig = [list(inspect.signature(a.train_step).parameters) for a in (cpu, gpu)]
    assert sig[0] == sig[1] == ["x", "y", "lr", "step", "params", "states", "losses", "out"]
    model = netc.compile(path, dtype="float32", seed=0)
    x, y = batches(model, np.random.default_rng(5))[0]
    params = [model.params[p.name].copy() for p in model.ir.params]
    states = [np.full(model.params[s.param].shape, s.init, np.float32) for s in gpu.states]
    want = cpu.train_step(x, y, np.float32(0.1), np.float32(1), [a.copy() for a in params],
                          [a.copy() for a in states], np.zeros(len(cpu.loss_names)))
    out = np.empty_like(want)
    got = gpu.train_step(x, y, np.float32(0.1), np.float32(1), params, states, np.zeros(len(gpu.loss_names)), out)
    assert got is out
    close(out, want, "train_step output written into out")
