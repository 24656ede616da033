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
