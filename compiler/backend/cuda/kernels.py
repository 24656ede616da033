"""Hand-written CUDA kernels that the generated code launches for the ops that are not
pointwise: the tiled shared-memory matrix product (with transpose flags), row reductions
(softmax, log-softmax, sums over trailing axes, log-sum-exp) and column reductions (sums over
leading axes: bias gradients, batch means). Pointwise work is not here: the code generator emits it
as one fused kernel per group of the graph.

Each kernel comes from a factory per (dtype, variant), so shared-array sizes and transpose
flags are compile-time constants; `variants(dtype)` lists every one with its signature, which
the PTX test compiles for compute capability 9.0. Imported only by the CUDA backend.
"""
from __future__ import annotations

import math
import sys
from functools import lru_cache
from typing import List, Tuple

import numpy as np
from numba import cuda, float32, float64
from numba.core import types
from numba.np import numpy_support

# the simulator (NUMBA_ENABLE_CUDASIM=1) replaces numba.cuda's functions with its own
SIM = cuda.to_device.__module__.startswith("numba.cuda.simulator")


def _sim_shared_array(self, shape, dtype, alignment=None):
    """The simulator's `cuda.shared.array`, without its race. The simulator runs each thread
    of a block as a Python thread and gives them one array per call site, found in a dict and
    created by the first thread to ask; its own version looks the site up, allocates and stores
    in three steps, so two threads that ask at the same time (a thread switch between the
    lookup and the store) each get an array of their own: a reduction then reads elements no
    thread wrote (uninitialized memory: garbage, an overflow in a later exp), now and then,
    more often the more switches. Here the store is one atomic `setdefault`: every thread of
    the block gets the array stored first. The call site is the caller's (file, line), as in
    the simulator (one shared array per line)."""
    if alignment is not None:
        raise RuntimeError("Array alignment is not supported in cudasim")
    if isinstance(dtype, types.Type):
        dtype = numpy_support.as_dtype(dtype)
    if shape == 0:                           # dynamic shared memory: one buffer, no race
        count = self._dynshared_size // dtype.itemsize
        return np.frombuffer(self._dynshared.data, dtype=dtype, count=count)
    f = sys._getframe(1)
    caller = (f.f_code.co_filename, f.f_lineno)
    res = self._allocations.get(caller)
    if res is None:
        res = self._allocations.setdefault(caller, np.empty(shape, dtype))
    return res


if SIM:
    from numba.cuda.simulator import kernelapi as _kernelapi
    _kernelapi.FakeCUDAShared.array = _sim_shared_array

# Launch shapes. The simulator runs every thread as a Python thread, so it gets small blocks;
# the kernels are the same and the small tiles exercise their edge handling.
EW_THREADS = 32 if SIM else 256          # fused pointwise kernels: threads per block,
EW_BLOCKS = 1 if SIM else 2048           # ... at most this many blocks
ROW_NT = 2 if SIM else 32               # row reductions: threads per row (a power of two), ...
ROW_RPB = 8                              # ... rows per block;
WIDE_NT = 4 if SIM else 256              # long rows: a block of WIDE_NT threads per row, ...
WIDE_ROWS = 2 if SIM else 264            # ... when there are fewer rows than this
COL_THREADS = 8 if SIM else 128          # column reductions: threads per block
MM_T = 2 if SIM else 16                  # matmul: blocks of MM_T x MM_T threads, ...
MM_RS = (1, 4) if SIM else (1, 2, 4)     # ... each computing r x r outputs (r chosen per shape),
MM_BK = 8 if SIM else 16                 # ... stepping through k by MM_BK
MM_BIG = 1 if SIM else 264               # the largest r that still gives this many blocks


def _nbtype(dtype):
    return {"float32": float32, "float64": float64}[np.dtype(dtype).name]


def blocks(n: int, threads: int) -> int:
    return max((n + threads - 1) // threads, 1)


# ============================================================== matrix product
@lru_cache(maxsize=None)
def matmul_kernel(ta: bool, tb: bool, r: int, dtype: str):
    """c = op(a) @ op(b), op = transpose where ta/tb. A block of T x T threads computes a
    (T r) x (T r) tile of c, stepping through k in tiles of MM_BK held in shared memory; each
    thread keeps r x r accumulators in registers. Tile loads are coalesced along the fastest
    axis of the operand as stored (transposed on the way into shared memory, whose rows are
    padded against bank conflicts)."""
    T, BK = MM_T, MM_BK
    BT = T * r
    BTP = BT + 1                 # padded rows of the shared tiles (a literal: shared shapes must be)
    NT = T * T
    TILE = BT * BK               # elements of one operand tile
    dt = _nbtype(dtype)
    zero = np.dtype(dtype).type(0)

    @cuda.jit(cache=not SIM)
    def mm(a, b, c):
        sa = cuda.shared.array((BK, BTP), dt)     # sa[k, m]
        sb = cuda.shared.array((BK, BTP), dt)     # sb[k, n]
        acc = cuda.local.array((r, r), dt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * T + tx
        bm = cuda.blockIdx.y * BT
        bn = cuda.blockIdx.x * BT
        M = c.shape[0]
        N = c.shape[1]
        K = a.shape[0] if ta else a.shape[1]
        for i in range(r):
            for j in range(r):
                acc[i, j] = zero
        for k0 in range(0, K, BK):
            for e in range(tid, TILE, NT):
                if ta:                       # a is [K, M]: consecutive threads along m
                    kl, ml = e // BT, e % BT
                    m, k = bm + ml, k0 + kl
                    sa[kl, ml] = a[k, m] if (m < M and k < K) else zero
                else:                        # a is [M, K]: along k
                    ml, kl = e // BK, e % BK
                    m, k = bm + ml, k0 + kl
                    sa[kl, ml] = a[m, k] if (m < M and k < K) else zero
                if tb:                       # b is [N, K]: along k
                    nl, kl = e // BK, e % BK
                    n, k = bn + nl, k0 + kl
                    sb[kl, nl] = b[n, k] if (n < N and k < K) else zero
                else:                        # b is [K, N]: along n
                    kl, nl = e // BT, e % BT
                    n, k = bn + nl, k0 + kl
                    sb[kl, nl] = b[k, n] if (n < N and k < K) else zero
            cuda.syncthreads()
            for kk in range(BK):
                for i in range(r):
                    av = sa[kk, ty + i * T]
                    for j in range(r):
                        acc[i, j] += av * sb[kk, tx + j * T]
            cuda.syncthreads()
        for i in range(r):
            m = bm + ty + i * T
            if m < M:
                for j in range(r):
                    n = bn + tx + j * T
                    if n < N:
                        c[m, n] = acc[i, j]
    return mm


def matmul(a, b, c, ta: bool, tb: bool) -> None:
    """Launch c = op(a) @ op(b) (device arrays), with the largest register tile that still
    keeps the GPU busy for this shape."""
    M, N = c.shape
    r = MM_RS[0]
    for cand in MM_RS:
        if blocks(M, MM_T * cand) * blocks(N, MM_T * cand) >= MM_BIG:
            r = cand
    bt = MM_T * r
    matmul_kernel(ta, tb, r, c.dtype.name)[(blocks(N, bt), blocks(M, bt)), (MM_T, MM_T)](a, b, c)


# ============================================================== row reductions
@lru_cache(maxsize=None)
def row_kernel(kind: str, dtype: str, wide: bool = False):
    """Rows of a [rows, n] array, each reduced by NT threads that stride over it and combine
    through shared memory; a block holds RPB rows (threadIdx.y). Narrow: a warp per row, many
    rows per block (softmax over classes); wide: a whole block per row (a long sum).
    kind: "sum" (out[row] = sum / denom), "max", "min", "lse" (log-sum-exp, out[row]),
    "softmax", "log_softmax" (out[row, :])."""
    NT, RPB = (WIDE_NT, 1) if wide else (ROW_NT, ROW_RPB)
    dt = _nbtype(dtype)
    zero = np.dtype(dtype).type(0)
    ninf = np.dtype(dtype).type(-np.inf)
    is_max, is_min = kind == "max", kind == "min"       # compile-time constants
    soft, logsoft = kind == "softmax", kind == "log_softmax"

    if kind in ("sum", "max", "min"):
        init = ninf if is_max else (-ninf if is_min else zero)

        @cuda.jit(cache=not SIM)
        def rows(x, out, denom):
            sh = cuda.shared.array((RPB, NT), dt)
            t = cuda.threadIdx.x
            w = cuda.threadIdx.y
            row = cuda.blockIdx.x * RPB + w
            valid = row < x.shape[0]
            s = init
            if valid:
                for j in range(t, x.shape[1], NT):
                    if is_max:
                        s = max(s, x[row, j])
                    elif is_min:
                        s = min(s, x[row, j])
                    else:
                        s += x[row, j]
            sh[w, t] = s              # tree reduction in shared memory, written inline: a
            cuda.syncthreads()        # device function would need a GPU to compile for
            h = NT // 2
            while h > 0:
                if t < h:
                    if is_max:
                        sh[w, t] = max(sh[w, t], sh[w, t + h])
                    elif is_min:
                        sh[w, t] = min(sh[w, t], sh[w, t + h])
                    else:
                        sh[w, t] += sh[w, t + h]
                cuda.syncthreads()
                h //= 2
            if valid and t == 0:
                out[row] = sh[w, 0] / denom
        return rows

    @cuda.jit(cache=not SIM)
    def rows(x, out):
        sh = cuda.shared.array((RPB, NT), dt)
        t = cuda.threadIdx.x
        w = cuda.threadIdx.y
        row = cuda.blockIdx.x * RPB + w
        valid = row < x.shape[0]
        n = x.shape[1]
        m = ninf
        if valid:
            for j in range(t, n, NT):
                m = max(m, x[row, j])
        sh[w, t] = m
        cuda.syncthreads()
        h = NT // 2
        while h > 0:
            if t < h:
                sh[w, t] = max(sh[w, t], sh[w, t + h])
            cuda.syncthreads()
            h //= 2
        m = sh[w, 0]
        cuda.syncthreads()
        s = zero
        if valid:
            for j in range(t, n, NT):
                e = math.exp(x[row, j] - m)
                if soft:
                    out[row, j] = e
                s += e
        sh[w, t] = s
        cuda.syncthreads()
        h = NT // 2
        while h > 0:
            if t < h:
                sh[w, t] += sh[w, t + h]
            cuda.syncthreads()
            h //= 2
        s = sh[w, 0]
        if valid:
            if soft:
                for j in range(t, n, NT):
                    out[row, j] = out[row, j] / s
            elif logsoft:
                lse = m + math.log(s)
                for j in range(t, n, NT):
                    out[row, j] = x[row, j] - lse
            elif t == 0:                             # lse
                out[row] = m + math.log(s)
    return rows


def _rows(kind, x, out, *extra) -> None:
    nrows, n = x.shape
    wide = n > 8 * ROW_NT and nrows < WIDE_ROWS
    nt, rpb = (WIDE_NT, 1) if wide else (ROW_NT, ROW_RPB)
    if nrows > 0:
        row_kernel(kind, out.dtype.name, wide)[blocks(nrows, rpb), (nt, rpb)](x, out, *extra)


def reduce_rows(x, out, denom, kind: str = "sum") -> None:
    """out[o] = reduce_r x[o, r] (sum / denom, max or min), for x [O, R] and out [O]."""
    _rows(kind, x, out, out.dtype.type(denom))


def softmax_rows(x, out) -> None:
    _rows("softmax", x, out)


def log_softmax_rows(x, out) -> None:
    _rows("log_softmax", x, out)


def logsumexp_rows(x, out) -> None:
    _rows("lse", x, out)


# ============================================================== column reductions
@lru_cache(maxsize=None)
def col_kernel(kind: str, dtype: str):
    """out[o, i] = reduce_r x[o, r, i] (sum / denom, max or min): one thread per (o, i),
    consecutive threads on consecutive i, so each step of the loop over r reads one coalesced
    row."""
    zero = np.dtype(dtype).type(0)
    ninf = np.dtype(dtype).type(-np.inf)
    is_max, is_min = kind == "max", kind == "min"
    init = ninf if is_max else (-ninf if is_min else zero)

    @cuda.jit(cache=not SIM)
    def cols(x, out, denom):
        k = cuda.grid(1)
        O, R, I = x.shape
        if k < O * I:
            o = k // I
            i = k - o * I
            s = init
            for r in range(R):
                if is_max:
                    s = max(s, x[o, r, i])
                elif is_min:
                    s = min(s, x[o, r, i])
                else:
                    s += x[o, r, i]
            out[o, i] = s / denom
    return cols


def reduce_cols(x, out, denom, kind: str = "sum") -> None:
    """For x [O, R, I] and out [O, I] (I > 1): the reduction over the middle axis."""
    n = out.shape[0] * out.shape[1]
    col_kernel(kind, out.dtype.name)[blocks(n, COL_THREADS), COL_THREADS](x, out, out.dtype.type(denom))


# ============================================================== the epoch fast path
@cuda.jit(cache=not SIM)
def _gather(x, idx, out):
    """out[i, :] = x[idx[i], :] for 2-D views."""
    k = cuda.grid(1)
    w = x.shape[1]
    if k < out.shape[0] * w:
        i = k // w
        out[i, k - i * w] = x[idx[i], k - i * w]


def gather_rows(x, idx):
    """The rows idx of device array x, as a new device array (a shuffled batch)."""
    out = cuda.device_array((idx.shape[0],) + tuple(x.shape[1:]), x.dtype)
    w = 1
    for d in x.shape[1:]:
        w *= d
    n = idx.shape[0] * w
    if n:
        _gather[blocks(n, EW_THREADS), EW_THREADS](x.reshape((x.shape[0], w)), idx, out.reshape((idx.shape[0], w)))
    return out


# ============================================================== small helpers
def launch(kernel, n: int, *args) -> None:
    """A fused pointwise kernel over n elements (its threads stride over them when there are
    more than EW_BLOCKS * EW_THREADS)."""
    if n > 0:
        kernel[min(blocks(n, EW_THREADS), EW_BLOCKS), EW_THREADS](n, *args)


def variants(dtype: str) -> List[Tuple[object, str]]:
    """Every kernel of this module for `dtype`, with a signature, for ahead-of-time checks."""
    a2 = f"{dtype}[:, ::1]"
    out = []
    for ta in (False, True):
        for tb in (False, True):
            for r in MM_RS:
                out.append((matmul_kernel(ta, tb, r, dtype), f"({a2}, {a2}, {a2})"))
    for wide in (False, True):
        for kind in ("sum", "max", "min"):
            out.append((row_kernel(kind, dtype, wide), f"({a2}, {dtype}[::1], {dtype})"))
        for kind in ("softmax", "log_softmax"):
            out.append((row_kernel(kind, dtype, wide), f"({a2}, {a2})"))
        out.append((row_kernel("lse", dtype, wide), f"({a2}, {dtype}[::1])"))
    for kind in ("sum", "max", "min"):
        out.append((col_kernel(kind, dtype), f"({dtype}[:, :, ::1], {a2}, {dtype})"))
    for x in (a2, "int64[:, ::1]"):
        out.append((_gather, f"({x}, int64[::1], {x})"))
    a4 = f"{dtype}[:, :, :, ::1]"
    for kind in IMAGE_KINDS:
        arrays = 3 if kind.startswith("conv") or kind == "maxpool_dx" else 2
        out.append((image_kernel(kind, dtype), "(" + ", ".join([a4] * arrays + ["int64"] * 4) + ")"))
    return out


# ============================================================== images (NCHW): convolution and pooling
# One thread per output element, each gathering what it needs (no atomics): the input
# gradients find the outputs whose windows cover their pixel. Factories per dtype, so the
# accumulators keep the model's float type.
@lru_cache(maxsize=None)
def image_kernel(kind: str, dtype: str):
    zero = np.dtype(dtype).type(0)

    if kind == "conv2d":
        @cuda.jit(cache=not SIM)
        def k_conv2d(x, w, out, sh, sw, ph, pw):
            k = cuda.grid(1)
            nb, n, ho, wo = out.shape
            C, H, W = x.shape[1], x.shape[2], x.shape[3]
            kh, kw = w.shape[2], w.shape[3]
            if k < nb * n * ho * wo:
                xo = k % wo
                y = (k // wo) % ho
                o = (k // (wo * ho)) % n
                b = k // (wo * ho * n)
                s = zero
                for c in range(C):
                    for i in range(kh):
                        iy = y * sh + i - ph
                        if iy >= 0 and iy < H:
                            for j in range(kw):
                                ix = xo * sw + j - pw
                                if ix >= 0 and ix < W:
                                    s += x[b, c, iy, ix] * w[o, c, i, j]
                out[b, o, y, xo] = s
        return k_conv2d

    if kind == "conv2d_dx":
        @cuda.jit(cache=not SIM)
        def k_conv2d_dx(g, w, out, sh, sw, ph, pw):
            k = cuda.grid(1)
            nb, C, H, W = out.shape
            n, ho, wo = g.shape[1], g.shape[2], g.shape[3]
            kh, kw = w.shape[2], w.shape[3]
            if k < nb * C * H * W:
                ix = k % W
                iy = (k // W) % H
                c = (k // (W * H)) % C
                b = k // (W * H * C)
                s = zero
                for i in range(kh):
                    ty = iy + ph - i
                    if ty >= 0 and ty % sh == 0 and ty // sh < ho:
                        y = ty // sh
                        for j in range(kw):
                            tx = ix + pw - j
                            if tx >= 0 and tx % sw == 0 and tx // sw < wo:
                                for o in range(n):
                                    s += g[b, o, y, tx // sw] * w[o, c, i, j]
                out[b, c, iy, ix] = s
        return k_conv2d_dx

    if kind == "conv2d_dw":
        @cuda.jit(cache=not SIM)
        def k_conv2d_dw(x, g, out, sh, sw, ph, pw):
            k = cuda.grid(1)
            n, C, kh, kw = out.shape
            nb, H, W = x.shape[0], x.shape[2], x.shape[3]
            ho, wo = g.shape[2], g.shape[3]
            if k < n * C * kh * kw:
                j = k % kw
                i = (k // kw) % kh
                c = (k // (kw * kh)) % C
                o = k // (kw * kh * C)
                s = zero
                for b in range(nb):
                    for y in range(ho):
                        iy = y * sh + i - ph
                        if iy >= 0 and iy < H:
                            for xo in range(wo):
                                ix = xo * sw + j - pw
                                if ix >= 0 and ix < W:
                                    s += g[b, o, y, xo] * x[b, c, iy, ix]
                out[o, c, i, j] = s
        return k_conv2d_dw

    if kind in ("maxpool", "avgpool"):
        is_max = kind == "maxpool"

        @cuda.jit(cache=not SIM)
        def k_pool(x, out, kh, kw, sh, sw):
            k = cuda.grid(1)
            nb, C, ho, wo = out.shape
            if k < nb * C * ho * wo:
                xo = k % wo
                y = (k // wo) % ho
                c = (k // (wo * ho)) % C
                b = k // (wo * ho * C)
                m = x[b, c, y * sh, xo * sw]
                s = zero
                for i in range(kh):
                    for j in range(kw):
                        v = x[b, c, y * sh + i, xo * sw + j]
                        m = max(m, v)
                        s += v
                out[b, c, y, xo] = m if is_max else s / (kh * kw)
        return k_pool

    if kind == "maxpool_dx":
        @cuda.jit(cache=not SIM)
        def k_maxpool_dx(x, g, out, kh, kw, sh, sw):
            k = cuda.grid(1)
            nb, C, H, W = out.shape
            ho, wo = g.shape[2], g.shape[3]
            if k < nb * C * H * W:
                ix = k % W
                iy = (k // W) % H
                c = (k // (W * H)) % C
                b = k // (W * H * C)
                s = zero
                for y in range(max(0, (iy - kh + sh) // sh), min(ho, iy // sh + 1)):
                    for xo in range(max(0, (ix - kw + sw) // sw), min(wo, ix // sw + 1)):
                        # the first maximum of window (y, xo), row-major, as the CPU and PyTorch
                        m = x[b, c, y * sh, xo * sw]
                        ai = 0
                        aj = 0
                        for i in range(kh):
                            for j in range(kw):
                                v = x[b, c, y * sh + i, xo * sw + j]
                                if v > m:
                                    m = v
                                    ai = i
                                    aj = j
                        if y * sh + ai == iy and xo * sw + aj == ix:
                            s += g[b, c, y, xo]
                out[b, c, iy, ix] = s
        return k_maxpool_dx

    if kind == "avgpool_dx":
        @cuda.jit(cache=not SIM)
        def k_avgpool_dx(g, out, kh, kw, sh, sw):
            k = cuda.grid(1)
            nb, C, H, W = out.shape
            ho, wo = g.shape[2], g.shape[3]
            if k < nb * C * H * W:
                ix = k % W
                iy = (k // W) % H
                c = (k // (W * H)) % C
                b = k // (W * H * C)
                s = zero
                for y in range(max(0, (iy - kh + sh) // sh), min(ho, iy // sh + 1)):
                    for xo in range(max(0, (ix - kw + sw) // sw), min(wo, ix // sw + 1)):
                        s += g[b, c, y, xo]
                out[b, c, iy, ix] = s / (kh * kw)
        return k_avgpool_dx
    raise ValueError(kind)


IMAGE_KINDS = ("conv2d", "conv2d_dx", "conv2d_dw", "maxpool", "avgpool", "maxpool_dx", "avgpool_dx")


def image(kind: str, ins, out, a: int, b: int, c: int, d: int) -> None:
    """Launch the image kernel `kind`: operands `ins`, result `out`, its four int attributes
    (stride and pad for a convolution, window and stride for a pooling)."""
    n = 1
    for dim in out.shape:
        n *= dim
    if n:
        image_kernel(kind, out.dtype.name)[blocks(n, EW_THREADS), EW_THREADS](*ins, out, a, b, c, d)


def empty(shape, dtype):
    return cuda.device_array(shape, dtype)


def planned(alloc, nb: int):
    """The buffers `alloc(nb)` makes, allocated once per batch size and reused every step."""
    plans = alloc.__dict__.setdefault("plans", {})
    if nb not in plans:
        plans[nb] = alloc(nb)
    return plans[nb]


# ---------------------------------------------------------------- dropout's counter-based mask
@cuda.jit(device=True, inline=True)
def _mix32(x):
    """The 32-bit mixer of `ops.mix32` on an int64 in [0, 2**32) (products stay < 2**63)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x = x ^ (x >> 15)
    x = (x * 0x4F6CDD1D) & 0xFFFFFFFF
    return x ^ (x >> 16)


@cuda.jit(device=True, inline=True)
def dropout_keep(seed, step, flat, threshold):
    """Whether inverted dropout keeps element `flat` in step `step`: the CPU's formula
    (ops.dropout_keep_ref), so the GPU draws the same masks."""
    h = _mix32(int(seed) & 0xFFFFFFFF)
    h = _mix32(h ^ (int(step) & 0xFFFFFFFF))
    h = _mix32(h ^ (int(flat) & 0xFFFFFFFF))
    return h >= threshold
