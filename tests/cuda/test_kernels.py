"""The hand-written kernels at their edges, on the simulator: matrix products of sizes that are
not multiples of the tiles (every transpose flag, every register tile r), narrow and wide row
reductions with rows that do not fill a block, column reductions."""
import numpy as np
import pytest

M, N, K = 5, 11, 19          # none a multiple of a tile


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_every_flag_and_tile(ta, tb):
    from numba import cuda
    from netc.compiler.backend.cuda import kernels as KK
    rng = np.random.default_rng(0)
    a = rng.standard_normal((K, M) if ta else (M, K))
    b = rng.standard_normal((N, K) if tb else (K, N))
    want = (a.T if ta else a) @ (b.T if tb else b)
    da, db = cuda.to_device(a), cuda.to_device(b)
    for r in KK.MM_RS:
        c = cuda.device_array((M, N), np.float64)
        bt = KK.MM_T * r
        KK.matmul_kernel(ta, tb, r, "float64")[(KK.blocks(N, bt), KK.blocks(M, bt)), (KK.MM_T, KK.MM_T)](da, db, c)
        np.testing.assert_allclose(c.copy_to_host(), want, rtol=1e-12, atol=1e-12, err_msg=f"r={r}")


@pytest.mark.parametrize("shape", [(11, 3), (1, 37), (3, 40)])   # narrow; wide; narrow, long rows
def test_row_kernels(shape):
    from numba import cuda
    from scipy import special
    from netc.compiler.backend.cuda import kernels as KK
    x = np.random.default_rng(1).standard_normal(shape)
    dx = cuda.to_device(x)
    for kind, want in (("sum", x.sum(1) / 2.0), ("max", x.max(1)), ("min", x.min(1))):
        out = cuda.device_array(shape[0])
        KK.reduce_rows(dx, out, 2.0 if kind == "sum" else 1.0, kind)
        np.testing.assert_allclose(out.copy_to_host(), want, rtol=1e-12, err_msg=kind)
    out = cuda.device_array(shape[0])
    KK.logsumexp_rows(dx, out)
    np.testing.assert_allclose(out.copy_to_host(), special.logsumexp(x, axis=1), rtol=1e-12)
    out = cuda.device_array(shape)
    KK.softmax_rows(dx, out)
    np.testing.assert_allclose(out.copy_to_host(), special.softmax(x, axis=1), rtol=1e-12)
    KK.log_softmax_rows(dx, out)
    np.testing.assert_allclose(out.copy_to_host(), special.log_softmax(x, axis=1), rtol=1e-12)


def test_column_reductions():
    from numba import cuda
    from netc.compiler.backend.cuda import kernels as KK
    x = np.random.default_rng(2).standard_normal((3, 7, 5))
    for kind, want in (("sum", x.sum(1) / 7.0), ("max", x.max(1)), ("min", x.min(1))):
        out = cuda.device_array((3, 5))
        KK.reduce_cols(cuda.to_device(x), out, 7.0 if kind == "sum" else 1.0, kind)
        np.testing.assert_allclose(out.copy_to_host(), want, rtol=1e-12, err_msg=kind)


def test_shared_arrays_are_shared_when_threads_ask_at_once(monkeypatch):
    """Every thread of a block gets the same shared array even when they ask for it at the
    same time. The simulator's own `cuda.shared.array` looks the call site up, allocates and
    stores in three steps: a thread switch in between gave two threads two arrays and the
    reductions read elements nobody wrote (garbage, now and then, in the full suite). Here the
    allocation waits until a second thread asks too (as a thread switch at the worst moment
    would), and unwritten memory is NaN: without the fix, NaN every time."""
    import threading
    from numba import cuda
    from netc.compiler.backend.cuda import kernels as KK
    if not KK.SIM:
        pytest.skip("a simulator race")
    empty, second, asked = np.empty, threading.Event(), []

    def slow_empty(shape, dtype=float, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():   # a simulated thread
            asked.append(1)
            if len(asked) == 1:
                second.wait(0.5)         # the first waits for a second thread to ask
            second.set()
        out = empty(shape, dtype, *args, **kwargs)
        out.fill(np.nan)
        return out

    x = np.random.default_rng(2).standard_normal((KK.ROW_RPB, 3 * KK.ROW_NT))
    dx, out = cuda.to_device(x), cuda.device_array(x.shape[0])
    soft = cuda.device_array(x.shape)
    a, b = np.random.default_rng(3).standard_normal((2, 9, 9))
    c = cuda.device_array((9, 9))
    monkeypatch.setattr(np, "empty", slow_empty)
    KK.reduce_rows(dx, out, 1.0)
    assert second.is_set(), "no second thread asked for the shared array"
    KK.softmax_rows(dx, soft)
    KK.matmul(cuda.to_device(a), cuda.to_device(b), c, False, False)
    monkeypatch.setattr(np, "empty", empty)
    np.testing.assert_allclose(out.copy_to_host(), x.sum(1), rtol=1e-12)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(soft.copy_to_host(), e / e.sum(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(c.copy_to_host(), a @ b, rtol=1e-12)
