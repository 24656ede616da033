"""Hand-written Numba helpers that generated CPU code calls: the error function (a ufunc) and
the row max/min of the max/min reductions. Everything else -- the softmax family's row
kernels included -- is emitted inline by the code generator from the lowering table."""
import math

import numpy as np
from numba import njit, vectorize


@vectorize(["float32(float32)", "float64(float64)"], cache=True)
def erf(x):
    """The error function, elementwise (a ufunc: arrays and scalars alike)."""
    return math.erf(x)


@njit(cache=True, nogil=True)
def rowextreme(x2, largest):
    """The maximum (largest=True) or minimum of each row of a 2-d array."""
    out = np.empty(x2.shape[0], dtype=x2.dtype)
    for i in range(x2.shape[0]):
        m = x2[i, 0]
        for j in range(1, x2.shape[1]):
            m = max(m, x2[i, j]) if largest else min(m, x2[i, j])
        out[i] = m
    return out


@njit(cache=True, nogil=True, inline="always")
def _mix32(x):
    """The 32-bit mixer of `ops.mix32` on an int64 in [0, 2**32) (products stay < 2**63)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x4F6CDD1D) & 0xFFFFFFFF
    return x ^ (x >> 16)


@njit(cache=True, nogil=True, inline="always")
def dropout_keep(seed, step, flat, threshold):
    """Whether inverted dropout keeps element `flat` in step `step` (ops.dropout_keep_ref):
    its hash >= threshold = ceil(rate 2**32), i.e. hash / 2**32 >= rate."""
    h = _mix32(np.int64(seed) & 0xFFFFFFFF)
    h = _mix32(h ^ (np.int64(step) & 0xFFFFFFFF))
    h = _mix32(h ^ (np.int64(flat) & 0xFFFFFFFF))
    return h >= threshold


# ======================================================================= images (NCHW)
# Each kernel writes into the `out` array it is given (a slot of the arena), so a step
# allocates nothing. Pooling: direct loops. Convolutions: im2col + one BLAS product over the
# batch (below); direct loops over the kernel offsets were measured 5-20x slower at every
# shape tried, from 1x1 kernels on 2x2 images to LeNet's (bench/RESULTS.md). Where a kernel
# offset meets the zero padding, the loop bounds skip it instead of reading a padded copy.
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True, nogil=True, inline="always")
def _span(j, pw, sw, wo, width):
    """The output columns x whose input column x * sw + j - pw lies inside [0, width)."""
    lo = 0
    if j < pw:
        lo = (pw - j + sw - 1) // sw
    hi = (width - 1 - j + pw) // sw + 1
    if hi > wo:
        hi = wo
    return lo, hi


@njit(cache=True, nogil=True, fastmath=FAST)
def maxpool(x, out, kh, kw, sh, sw):
    nb, C = x.shape[0], x.shape[1]
    ho, wo = out.shape[2], out.shape[3]
    for b in range(nb):
        for c in range(C):
            xc = x[b, c]
            for y in range(ho):
                for xo in range(wo):
                    m = xc[y * sh, xo * sw]
                    for i in range(kh):
                        for j in range(kw):
                            v = xc[y * sh + i, xo * sw + j]
                            if v > m:
                                m = v
                    out[b, c, y, xo] = m


@njit(cache=True, nogil=True, fastmath=FAST)
def maxpool_dx(x, g, out, kh, kw, sh, sw):
    """g routed to the first maximum of each window (row-major), summed where windows overlap."""
    nb, C = x.shape[0], x.shape[1]
    ho, wo = g.shape[2], g.shape[3]
    out[:] = 0
    for b in range(nb):
        for c in range(C):
            xc = x[b, c]
            for y in range(ho):
                for xo in range(wo):
                    m = xc[y * sh, xo * sw]
                    ai, aj = 0, 0
                    for i in range(kh):
                        for j in range(kw):
                            v = xc[y * sh + i, xo * sw + j]
                            if v > m:
                                m, ai, aj = v, i, j
                    out[b, c, y * sh + ai, xo * sw + aj] += g[b, c, y, xo]


@njit(cache=True, nogil=True, fastmath=FAST)
def avgpool(x, out, kh, kw, sh, sw):
    nb, C = x.shape[0], x.shape[1]
    ho, wo = out.shape[2], out.shape[3]
    scale = 1.0 / (kh * kw)
    for b in range(nb):
        for c in range(C):
            xc = x[b, c]
            for y in range(ho):
                for xo in range(wo):
                    s = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            s += xc[y * sh + i, xo * sw + j]
                    out[b, c, y, xo] = s * scale


@njit(cache=True, nogil=True, fastmath=FAST)
def avgpool_dx(g, out, kh, kw, sh, sw):
    nb, C = g.shape[0], g.shape[1]
    ho, wo = g.shape[2], g.shape[3]
    scale = 1.0 / (kh * kw)
    out[:] = 0
    for b in range(nb):
        for c in range(C):
            dc = out[b, c]
            for y in range(ho):
                for xo in range(wo):
                    v = g[b, c, y, xo] * scale
                    for i in range(kh):
                        for j in range(kw):
                            dc[y * sh + i, xo * sw + j] += v


# ----------------------------------------------------------------------- im2col + BLAS
# The batch's patches as one matrix cols[C*kh*kw, B*Ho*Wo] (a row per kernel element, a
# column per output pixel), so each convolution and both of its adjoints are ONE matrix
# product of the batch (sgemm/dgemm). `scratch` (a slot of the arena, (C*kh*kw + n) * B*Ho*Wo
# elements) holds the patches and the [n, B*Ho*Wo] operand or result.
@njit(cache=True, nogil=True)
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, ho, wo):
    """cols[(c, i, j), (b, y, x)] = x[b, c, y*sh + i - ph, x*sw + j - pw], 0 in the padding."""
    nb, C, H, W = x.shape
    P = ho * wo
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                lo, hi = _span(j, pw, sw, wo, W)
                off = j - pw
                for b in range(nb):
                    for y in range(ho):
                        iy = y * sh + i - ph
                        d = b * P + y * wo
                        if iy < 0 or iy >= H:
                            for xo in range(wo):
                                cols[r, d + xo] = 0
                            continue
                        for xo in range(lo):
                            cols[r, d + xo] = 0
                        if sw == 1:                 # a contiguous run: vectorized
                            for xo in range(lo, hi):
                                cols[r, d + xo] = x[b, c, iy, xo + off]
                        else:
                            for xo in range(lo, hi):
                                cols[r, d + xo] = x[b, c, iy, xo * sw + off]
                        for xo in range(hi, wo):
                            cols[r, d + xo] = 0


@njit(cache=True, nogil=True)
def _col2im(cols, dx, kh, kw, sh, sw, ph, pw, ho, wo):
    """The adjoint of _im2col: each column entry added back at the pixel it was read from."""
    nb, C, H, W = dx.shape
    P = ho * wo
    dx[:] = 0
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                lo, hi = _span(j, pw, sw, wo, W)
                off = j - pw
                for b in range(nb):
                    for y in range(ho):
                        iy = y * sh + i - ph
                        if iy < 0 or iy >= H:
                            continue
                        d = b * P + y * wo
                        if sw == 1:
                            for xo in range(lo, hi):
                                dx[b, c, iy, xo + off] += cols[r, d + xo]
                        else:
                            for xo in range(lo, hi):
                                dx[b, c, iy, xo * sw + off] += cols[r, d + xo]


@njit(cache=True, nogil=True)
def _split(scratch, ck, n, cols_n):
    flat = scratch.reshape(-1)
    cols = flat[:ck * cols_n].reshape((ck, cols_n))
    other = flat[ck * cols_n:(ck + n) * cols_n].reshape((n, cols_n))
    return cols, other


@njit(cache=True, nogil=True)
def conv2d_gemm(x, w, out, scratch, sh, sw, ph, pw):
    """conv2d as cols = im2col(x); y = W[n, CK] @ cols, laid out back as [B, n, Ho, Wo]."""
    nb = x.shape[0]
    n, C, kh, kw = w.shape
    ho, wo = out.shape[2], out.shape[3]
    P = ho * wo
    cols, y = _split(scratch, C * kh * kw, n, nb * P)
    _im2col(x, cols, kh, kw, sh, sw, ph, pw, ho, wo)
    np.dot(w.reshape((n, C * kh * kw)), cols, y)
    o3 = out.reshape((nb, n, P))
    for b in range(nb):
        for f in range(n):
            for p in range(P):
                o3[b, f, p] = y[f, b * P + p]


@njit(cache=True, nogil=True)
def _gather_g(g, gt):
    """g[B, n, Ho, Wo] as gt[n, B*Ho*Wo]."""
    nb, n = g.shape[0], g.shape[1]
    P = g.shape[2] * g.shape[3]
    g3 = g.reshape((nb, n, P))
    for b in range(nb):
        for f in range(n):
            for p in range(P):
                gt[f, b * P + p] = g3[b, f, p]


@njit(cache=True, nogil=True)
def conv2d_dw_gemm(x, g, out, scratch, sh, sw, ph, pw):
    """dW[n, CK] = g[n, B*P] @ cols[CK, B*P]^T."""
    nb, C = x.shape[0], x.shape[1]
    n, ho, wo = g.shape[1], g.shape[2], g.shape[3]
    kh, kw = out.shape[2], out.shape[3]
    cols, gt = _split(scratch, C * kh * kw, n, nb * ho * wo)
    _im2col(x, cols, kh, kw, sh, sw, ph, pw, ho, wo)
    _gather_g(g, gt)
    np.dot(gt, cols.T, out.reshape((n, C * kh * kw)))


@njit(cache=True, nogil=True)
def conv2d_dx_gemm(g, w, out, scratch, sh, sw, ph, pw):
    """dcols[CK, B*P] = W[n, CK]^T @ g[n, B*P]; dx = col2im(dcols)."""
    nb = g.shape[0]
    n, C, kh, kw = w.shape
    ho, wo = g.shape[2], g.shape[3]
    cols, gt = _split(scratch, C * kh * kw, n, nb * ho * wo)
    _gather_g(g, gt)
    np.dot(w.reshape((n, C * kh * kw)).T, gt, cols)
    _col2im(cols, out, kh, kw, sh, sw, ph, pw, ho, wo)
