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
    from netc.compiler import cuda_kernels as KK
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
    from netc.compiler import cuda_kernels as KK
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
    from netc.compiler import cuda_kernels as KK
    x = np.random.default_rng(2).standard_normal((3, 7, 5))
    for kind, want in (("sum", x.sum(1) / 7.0), ("max", x.max(1)), ("min", x.min(1))):
        out = cuda.device_array((3, 5))
        KK.reduce_cols(cuda.to_device(x), out, 7.0 if kind == "sum" else 1.0, kind)
        np.testing.assert_allclose(out.copy_to_host(), want, rtol=1e-12, err_msg=kind)
