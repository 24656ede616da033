"""Hand-written Numba helpers that generated CPU code calls for ops with no array-expression
form (row-wise softmax, one-hot). Everything else is emitted inline by codegen_cpu."""
import numpy as np
from numba import njit


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
