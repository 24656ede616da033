"""Hand-written Numba helpers that generated CPU code calls for ops with no array-expression
form (row-wise softmax, one-hot). Everything else is emitted inline by codegen_cpu."""
import math

import numpy as np
from numba import njit, vectorize


@njit(cache=True, nogil=True)
def softmax(x):
    n = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape((x.size // n, n))
    out = np.empty_like(x2)
    for i in range(x2.shape[0]):
        m = x2[i, 0]
        for j in range(1, n):
            m = max(m, x2[i, j])
        s = 0.0
        for j in range(n):
            e = np.exp(x2[i, j] - m)
            out[i, j] = e
            s += e
        for j in range(n):
            out[i, j] = out[i, j] / s
    return out.reshape(x.shape)


@njit(cache=True, nogil=True)
def log_softmax(x):
    n = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape((x.size // n, n))
    out = np.empty_like(x2)
    for i in range(x2.shape[0]):
        m = x2[i, 0]
        for j in range(1, n):
            m = max(m, x2[i, j])
        s = 0.0
        for j in range(n):
            s += np.exp(x2[i, j] - m)
        lse = m + np.log(s)
        for j in range(n):
            out[i, j] = x2[i, j] - lse
    return out.reshape(x.shape)


@njit(cache=True, nogil=True)
def onehot(y, classes, zero):
    out = np.zeros((y.shape[0], classes), dtype=type(zero))
    for i in range(y.shape[0]):
        out[i, y[i]] = 1
    return out


# ---- helpers for the primitives the language added (erf for gelu, max/min reductions)
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


@njit(cache=True, nogil=True)
def logsumexp(x, k):
    """log(sum(exp(x))) over the trailing k axes, max-shifted (the registry's array-expression
    lowering of `logsumexp`; generated code normally emits it as a row loop)."""
    n = 1
    for a in range(x.ndim - k, x.ndim):
        n *= x.shape[a]
    x2 = np.ascontiguousarray(x).reshape((x.size // n, n))
    out = rowextreme(x2, True)
    for i in range(x2.shape[0]):
        m = out[i]
        s = 0.0
        for j in range(n):
            s += np.exp(x2[i, j] - m)
        out[i] = m + np.log(s)
    return out
