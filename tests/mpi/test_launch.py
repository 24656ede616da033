"""The data-parallel launcher's pieces that need no MPI: shares of a global batch, --ranks
stripped from the command line, the rank named from mpiexec's report, and the clear exit-2
errors when mpi4py is missing."""
import os
import subprocess
import sys

import numpy as np

from netc.runtime import distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shares_are_contiguous_and_uneven():
    assert list(dist.shares(32, 3)) == [0, 11, 22, 32]
    assert list(dist.shares(4, 4)) == [0, 1, 2, 3, 4]
    assert list(dist.shares(2, 3)) == [0, 1, 2, 2]         # a last batch smaller than the ranks
    for b in range(1, 40):
        for n in range(1, 6):
            off = dist.shares(b, n)
            assert off[0] == 0 and off[-1] == b and np.all(np.diff(off) >= 0) and np.ptp(np.diff(off)) <= 1


def test_without_ranks():
    assert dist.without_ranks(["train", "m.net", "--ranks", "3", "--epochs", "2"]) == ["train", "m.net", "--epochs", "2"]
    assert dist.without_ranks(["train", "--ranks=2", "m.net"]) == ["train", "m.net"]


def test_the_dead_rank_is_named(tmp_path):
    (tmp_path / "4242").write_text("1")
    report = ("=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n=   PID 4242 RUNNING AT node7\n"
              "=   EXIT CODE: 9\nYOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)\n")
    assert dist.died(report, str(tmp_path)) == "rank 1 (pid 4242 on node7) died: Killed (signal 9)"
    assert dist.died(report.replace("4242", "77"), str(tmp_path)).startswith("a rank (pid 77 on node7)")
    assert dist.died("all fine", str(tmp_path)) is None


def test_single_process_imports_no_mpi():
    code = ("import sys, netc; from netc.runtime import distributed as d; "
            "assert d.world() is None and not d.active() and d.is_root(); assert 'mpi4py' not in sys.modules")
    env = {k: v for k, v in os.environ.items() if k not in dist.SIZE_VARS}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def _no_mpi4py(tmp_path):
    shim = tmp_path / "shim" / "mpi4py"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('no mpi4py here')\n")
    env = {k: v for k, v in os.environ.items() if k not in dist.SIZE_VARS}
    env["PYTHONPATH"] = str(tmp_path / "shim") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_ranks_without_mpi4py_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "netc.cli", "train", os.path.join(ROOT, "examples", "xor.net"),
                        "--ranks", "2", "--out", str(tmp_path / "r")], capture_output=True, text=True,
                       env=_no_mpi4py(tmp_path), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--ranks needs mpi4py: pip install 'netc[mpi]'" in r.stderr
    assert "Traceback" not in r.stderr


def test_mpiexec_without_mpi4py_exits_2(tmp_path):
    env = _no_mpi4py(tmp_path)
    env["PMI_SIZE"] = "2"               # as mpiexec -n 2 tells its processes
    r = subprocess.run([sys.executable, "-m", "netc.cli", "train", os.path.join(ROOT, "examples", "xor.net"),
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "mpi4py is not installed" in r.stderr and "Traceback" not in r.stderr
