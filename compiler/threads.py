"""Thread counts. On a small machine a BLAS pool and a Numba pool oversubscribe the cores and a
step becomes many times slower, so netc decides both.

The generated kernels are serial loops around BLAS calls: the only parallelism of a step is
BLAS's. So BLAS gets the cores this process may run on (its CPU affinity), or `--threads N` /
NETC_THREADS, through threadpoolctl. Numba's own pool is not started by netc (starting it would
only add idle threads that oversubscribe BLAS's), and when something else already started it,
it is limited to the same count. (A rule of "cores minus the load average" was tried and
dropped: the 1-minute average counts netc's own recent work and halved mnist's throughput.)
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import numba
import threadpoolctl
from numba.np.ufunc import parallel

_chosen: Dict[str, object] = {}
_limiter = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure(threads: Optional[int] = None) -> Dict[str, object]:
    """Set the thread counts (once per process, unless `threads` is given) and return what
    was chosen: {"threads", "source", "blas": [library names], "numba"}."""
    global _limiter
    if _chosen and threads is None:
        return dict(_chosen)
    cores = available_cores()
    if threads:
        n, source = int(threads), "--threads"
    elif os.environ.get("NETC_THREADS", "").strip().isdigit() and int(os.environ["NETC_THREADS"]) > 0:
        n, source = int(os.environ["NETC_THREADS"]), "NETC_THREADS"
    else:
        n, source = cores, f"{cores} cores available to this process"
    blas = []
    try:
        _limiter = threadpoolctl.threadpool_limits(n, user_api="blas")
        blas = sorted({f"{i['internal_api']}" for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"})
    except Exception as e:         # a BLAS threadpoolctl cannot drive: say so
        blas = [f"not set ({type(e).__name__})"]
    numba_threads = "pool not started (kernels are serial)"
    try:
        if getattr(parallel, "_is_initialized", False):
            k = min(n, numba.config.NUMBA_NUM_THREADS)
            numba.set_num_threads(k)
            numba_threads = k
    except Exception:
        pass
    _chosen.clear()
    _chosen.update(threads=n, source=source, blas=blas, numba=numba_threads)
    return dict(_chosen)


def describe(chosen: Dict[str, object]) -> str:
    return (f"threads: BLAS {chosen['threads']} ({', '.join(chosen['blas']) or 'no BLAS found'}), "
            f"Numba {chosen['numba']}; from {chosen['source']}")
