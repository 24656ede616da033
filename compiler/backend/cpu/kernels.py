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
