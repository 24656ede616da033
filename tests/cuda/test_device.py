"""Device selection and its errors, the runtime's loop on the CUDA artifact, and the CPU path
never importing numba.cuda."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import netc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XOR = os.path.join(ROOT, "examples", "xor.net")


def _without_simulator():
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


def _run(code, *args):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=_without_simulator(),
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_cpu_path_never_imports_numba_cuda():
    r = _run("""
        import sys, numpy as np, netc
        m = netc.compile(sys.argv[1], seed=0)
        rng = np.random.default_rng(0)
        m.fit(rng.standard_normal((16, 2)), rng.integers(0, 2, 16), epochs=2)
        m.predict(rng.standard_normal((4, 2)))
        assert "numba.cuda" not in sys.modules, "the CPU path imported numba.cuda"
        print("ok")
    """, XOR)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


@pytest.mark.skipif(os.environ.get("NETC_CUDA_REAL") == "1", reason="there is a GPU")
def test_cuda_without_a_gpu_is_a_clear_error_with_status_2():
    r = subprocess.run([sys.executable, "-m", "netc.cli", "train", XOR, "--device", "cuda", "--epochs", "1"],
                       env=_without_simulator(), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "cannot train on the GPU" in r.stderr and "--device auto" in r.stderr


@pytest.mark.skipif(os.environ.get("NETC_CUDA_REAL") == "1", reason="there is a GPU")
def test_auto_falls_back_to_the_cpu_and_the_train_block_chooses():
    r = _run("""
        import sys, netc
        from netc.dsl import NetcError
        m = netc.compile(sys.argv[1], device="auto")
        assert m.artifact.device == "cpu", "auto chose the GPU without one"
        src = open(sys.argv[1]).read().replace("epochs = 500", "epochs = 500\\n  device = cuda")
        try:
            netc.compile(src)
        except NetcError as e:
            assert "cannot train on the GPU" in str(e), e
            print("ok")
        bad = src.replace("device = cuda", "device = gpu")
        try:
            netc.compile(bad)
        except NetcError as e:
            assert "unknown device 'gpu'" in str(e) and ":" in str(e), e
            print("ok2")
    """, XOR)
    assert r.returncode == 0 and "ok" in r.stdout and "ok2" in r.stdout, r.stdout + r.stderr[-3000:]


@pytest.mark.parametrize("resident", [True, False], ids=["data-on-device", "data-streamed"])
def test_fit_on_cuda_equals_fit_on_cpu(monkeypatch, resident):
    """The runtime's own loop (shuffled batches, epochs, sync at epoch ends, release at the end)
    over the CUDA artifact: same params, history (losses and train metrics) and predictions as
    on the CPU. Each epoch is one train_epoch call (the data set on the device, or streamed
    from the host when it does not fit); the per-batch train_step is never called."""
    from netc.compiler.backend.cuda.artifact import CudaArtifact
    rng = np.random.default_rng(0)
    X = rng.standard_normal((28, 2)).astype(np.float32)          # 4 batches, the last of 4 rows
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    calls = {"train_step": 0, "train_epoch": 0}
    for name in calls:
        def counted(self, *a, _f=getattr(CudaArtifact, name), _name=name, **kw):
            calls[_name] += 1
            return _f(self, *a, **kw)
        monkeypatch.setattr(CudaArtifact, name, counted)
    monkeypatch.setattr(CudaArtifact, "_fits", lambda self, nbytes: resident)
    runs = {}
    for device in ("cpu", "cuda"):
        m = netc.compile(XOR, seed=0, device=device)
        h = m.fit(X, y, epochs=3, batch=8)
        runs[device] = (m, h)
    (mc, hc), (mg, hg) = runs["cpu"], runs["cuda"]
    assert calls == {"train_step": 0, "train_epoch": 3}
    assert mg.step == mc.step == 12
    assert hasattr(mg.artifact, "hold") and not mg.artifact._mirrors and not mg.artifact._data, \
        "device copies left after the fit"
    for k in mc.params:
        np.testing.assert_allclose(mg.params[k], mc.params[k], rtol=1e-5, atol=1e-5, err_msg=k)
    for k in mc.state:
        np.testing.assert_allclose(mg.state[k], mc.state[k], rtol=1e-5, atol=1e-5, err_msg=k)
    assert [sorted(e["train"]) for e in hg.epochs] == [sorted(e["train"]) for e in hc.epochs]
    for key in hc.epochs[0]["train"]:
        np.testing.assert_allclose(hg["train." + key], hc["train." + key], rtol=1e-5, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(mg.predict(X), mc.predict(X), rtol=1e-5, atol=1e-5)
    # host edits between fits are seen (the device copies were given up)
    mg.params["b_o"] = np.zeros(2)
    mc.params["b_o"] = np.zeros(2)
    np.testing.assert_allclose(mg.predict(X), mc.predict(X), rtol=1e-5, atol=1e-5)


BAD = """model bad
input x[2]
target t[1]
param w[1, 2] = 1
z = w @ x           # overflows float32 where x is huge
loss mse(z, t)
optimizer sgd(lr=0.01)
"""


@pytest.mark.filterwarnings("ignore::RuntimeWarning")     # the simulator's NumPy scalars warn on inf
def test_divergence_on_cuda_is_diagnosed_like_on_the_cpu(tmp_path):
    """The epoch ran on the device past the failing step; the host finds the first batch with
    a non-finite loss, replays it and names the op and line, and puts back the epoch's params.
    (An overflow, not log of a negative: the simulator's math.log raises where a GPU gives NaN.)"""
    from netc.runtime.model import TrainingDiverged
    f = tmp_path / "bad.net"
    f.write_text(BAD)
    X = np.array([[0.1, 0.1]] * 8 + [[3e38, 3e38]] * 8 + [[0.1, 0.2]] * 8, np.float32)
    errors = {}
    for device in ("cpu", "cuda"):
        m = netc.compile(str(f), device=device)
        before = {k: v.copy() for k, v in m.params.items()}
        with pytest.raises(TrainingDiverged) as err:
            m.fit(X, np.ones((24, 1)), epochs=3, batch=8, shuffle=False)
        errors[device] = err.value
        assert m.step == 0
        for k, v in m.params.items():                     # back to the last good (finite) weights
            np.testing.assert_array_equal(v, before[k])
    e = errors["cuda"]
    assert (e.epoch, e.step) == (1, 2)                     # the second batch overflows
    assert e.origin["op"] == "matmul" and e.origin["line"] == 5 and e.origin["kind"] == "forward"
    assert e.origin["value"] == "inf" and "loss 'loss' is inf" in str(e)
    assert str(e) == str(errors["cpu"])


def test_show_kernels_for_cuda():
    from netc.cli import main
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["show", XOR, "--stage", "kernels", "--device", "cuda"]) == 0
    text = buf.getvalue()
    assert "@cuda.jit" in text and "def train_step(" in text and "line 10" in text
