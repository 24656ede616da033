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
        assert not hasattr(m.artifact, "hold"), "auto chose the GPU without one"
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


def test_fit_on_cuda_equals_fit_on_cpu():
    """The runtime's own loop (shuffled batches, epochs, sync at epoch ends, release at the end)
    over the CUDA artifact: same params, history and predictions as on the CPU."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    runs = {}
    for device in ("cpu", "cuda"):
        m = netc.compile(XOR, seed=0, device=device)
        h = m.fit(X, y, epochs=3, batch=8)
        runs[device] = (m, h)
    (mc, hc), (mg, hg) = runs["cpu"], runs["cuda"]
    assert hasattr(mg.artifact, "hold") and not mg.artifact._mirrors, "device copies left after the fit"
    for k in mc.params:
        np.testing.assert_allclose(mg.params[k], mc.params[k], rtol=1e-5, atol=1e-5, err_msg=k)
    for k in mc.state:
        np.testing.assert_allclose(mg.state[k], mc.state[k], rtol=1e-5, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(hg["train.loss"], hc["train.loss"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mg.predict(X), mc.predict(X), rtol=1e-5, atol=1e-5)
    # host edits between fits are seen (the device copies were given up)
    mg.params["b_o"] = np.zeros(2)
    mc.params["b_o"] = np.zeros(2)
    np.testing.assert_allclose(mg.predict(X), mc.predict(X), rtol=1e-5, atol=1e-5)


def test_show_kernels_for_cuda():
    from netc.cli import main
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["show", XOR, "--stage", "kernels", "--device", "cuda"]) == 0
    text = buf.getvalue()
    assert "@cuda.jit" in text and "def train_step(" in text and "line 10" in text
