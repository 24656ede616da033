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
NO_CUDA = "numba-cuda is not installed (pip install 'netc[cuda]')"


class _Skipped(pytest.Item):
    """A test file of this directory that cannot be imported without numba-cuda: one test
    that skips and says why (instead of the file vanishing from the report)."""

    def runtest(self):
        pytest.skip(NO_CUDA)

    def reportinfo(self):
        return self.path, 0, f"{self.path.name} (needs numba-cuda)"


class _NotImported(pytest.File):
    def collect(self):
        item = _Skipped.from_parent(self, name="needs numba-cuda")
        item.add_marker(pytest.mark.skip(reason=NO_CUDA))
        yield item


def pytest_pycollect_makemodule(module_path, parent):
    """Without numba-cuda a test file here is not imported (its imports would fail): it is
    collected as one skipped test with the reason."""
    if not HAVE_NUMBA_CUDA:
        return _NotImported.from_parent(parent, path=module_path)
    return None
