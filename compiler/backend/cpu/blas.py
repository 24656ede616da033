"""The matrix product that generated CPU code calls: one @njit helper, compiled once into
Numba's cache for every model. A generated function that wrote `np.dot` on transposed views
itself would make Numba type and lower its np.dot once per layout of the operands, in each
model's cold compile (0.1-0.2 s each, ~0.5 s of the mnist step's 2.7 s); calling this helper
costs a cache load instead. Its own module, so that importing it loads nothing else (the
kernels module's ufunc is built at import)."""
import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def gemm(a, b, out, ta, tb):
    """out = op(a) @ op(b), op transposing where ta / tb: np.dot on the same views as before,
    so the same BLAS call and the same numbers."""
    if ta:
        if tb:
            np.dot(a.T, b.T, out)
        else:
            np.dot(a.T, b, out)
    elif tb:
        np.dot(a, b.T, out)
    else:
        np.dot(a, b, out)
