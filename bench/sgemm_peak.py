"""The machine's measured sgemm peak (float32 np.dot, BLAS threads as netc uses them), GFLOP/s."""
import time

import numpy as np

from netc.compiler.threads import configure

configure()            # BLAS threads as netc sets them
best = 0
for n in (512, 1024, 2048):
    a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32); c = np.empty_like(a)
    np.dot(a, b, out=c)
    reps = max(3, int(2e9 / (2 * n ** 3)))
    t = time.perf_counter()
    for _ in range(reps):
        np.dot(a, b, out=c)
    dt = (time.perf_counter() - t) / reps
    g = 2 * n ** 3 / dt / 1e9
    best = max(best, g)
    print(f"sgemm {n}: {g:.1f} GFLOP/s")
print(f"peak {best:.1f} GFLOP/s")
