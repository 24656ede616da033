"""The CUDA tests run on Numba's CUDA simulator (no GPU needed), unless NETC_CUDA_REAL=1 asks
for the real device (bench/gpu_check.sh). Numba reads NUMBA_ENABLE_CUDASIM when it is first
imported, and other tests import it before this file runs: the config is reloaded here.
Without numba-cuda the whole directory is skipped."""
import importlib.util
import os
import sys

import pytest

SIMULATED = os.environ.get("NETC_CUDA_REAL") != "1"
if SIMULATED:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    if "numba" in sys.modules:          # Numba reads its config when first imported
        sys.modules["numba"].core.config.reload_config()


@pytest.fixture(autouse=True, scope="package")
def _fast_thread_switches():
    """The simulator's block runner polls its threads, so every syncthreads() costs a GIL
    switch interval (5 ms by default); a short interval makes the kernel tests ~8x faster.
    Only for these tests: the rest of the suite keeps the default."""
    if not SIMULATED:
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    yield
    sys.setswitchinterval(old)

HAVE_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
collect_ignore_glob = [] if HAVE_NUMBA_CUDA else ["test_*.py"]


def pytest_collection_modifyitems(config, items):
    if HAVE_NUMBA_CUDA:
        return
    skip = pytest.mark.skip(reason="numba-cuda is not installed (pip install 'netc[cuda]')")
    for item in items:
        if "tests/cuda" in str(item.fspath):
            item.add_marker(skip)
