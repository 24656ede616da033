"""Data-parallel training under mpiexec (-n 2 and -n 3) equals the single-process run with the
same seed: final params within 1e-5 (float32) / 1e-10 (float64), the same early-stopping
epoch, for SGD with momentum and Adam; a rank killed with SIGKILL ends the job within seconds
naming the rank, and resuming (with another number of ranks) continues exactly; bad launches
exit 2. Skipped, with the reason, without mpi4py or mpiexec."""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_cases import CASES, EXAMPLES, fit_case  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
if importlib.util.find_spec("mpi4py") is None:
    pytest.skip("mpi4py is not installed (pip install 'netc[mpi]')", allow_module_level=True)
if not os.path.exists(MPIEXEC):
    pytest.skip("mpiexec is not on PATH (pip install 'netc[mpi]' installs MPICH's)", allow_module_level=True)

RUNS = {2: ["moons-sgd-f64", "moons-sgd-f32", "digits-f32", "digits_cnn-adam-f64", "moons-bn"],
        3: ["moons-sgd-f64", "moons-adam-f64"]}
TOL = {"float32": 1e-5, "float64": 1e-10}


def _env():
    env = dict(os.environ)
    env.pop("NETC_THREADS", None)
    return env


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    """{ranks: folder of case.npz}: one mpiexec launch per rank count, all its cases."""
    out = {}
    for n, names in RUNS.items():
        d = tmp_path_factory.mktemp(f"ranks{n}")
        r = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, os.path.join(HERE, "dp_cases.py"), str(d)] + names,
                           capture_output=True, text=True, timeout=300, env=_env())
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out[n] = d
    return out


@pytest.fixture(scope="module")
def single():
    """The single-process reference of each case."""
    return {name: fit_case(name) for name in sorted({c for names in RUNS.values() for c in names} - {"moons-bn"})}


@pytest.mark.parametrize("ranks,name", [(n, c) for n, names in RUNS.items() for c in names if c != "moons-bn"])
def test_equals_single_process(parallel, single, ranks, name):
    model, history = single[name]
    got = np.load(parallel[ranks] / f"{name}.npz")
    tol = TOL[CASES[name][1]]
    assert int(got["epochs"]) == len(history.epochs)
    assert int(got["stopped"]) == (history.stopped_epoch or 0)
    assert int(got["best"]) == (history.best_epoch or 0)
    for k, v in model.params.items():
        np.testing.assert_allclose(got["p:" + k], v, rtol=0, atol=tol, err_msg=f"{name}: {k}")
    np.testing.assert_allclose(got["loss"], history["train.loss"], rtol=10 * tol)


def test_batchnorm_ranks_agree(parallel):
    """With batchnorm (per-rank statistics) the ranks still end with the same params and
    running statistics (dp_cases.py asserts it on every rank), and training went somewhere."""
    got = np.load(parallel[2] / "moons-bn.npz")
    assert int(got["epochs"]) == 3 and got["loss"][-1] < got["loss"][0]
    assert any(k.startswith("p:") and "running_mean" in k for k in got.files)


def test_early_stopping_fires(single):
    """The early-stopping case stops before its last epoch (so "the same epoch" means something)."""
    _, history = single["moons-sgd-f64"]
    assert history.stopped_epoch is not None and history.stopped_epoch < 40


def _netc(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "netc.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), **kw)


def _rank_pid(marker: str, rank: int):
    """The pid of MPI rank `rank` of the job whose command line contains `marker`."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if marker.encode() not in f.read():
                    continue
            with open(f"/proc/{p}/environ", "rb") as f:
                if f"PMI_RANK={rank}".encode() in f.read().split(b"\0"):
                    return int(p)
        except OSError:
            continue
    return None


def test_sigkill_then_resume(tmp_path):
    """SIGKILL of rank 1 mid-run: the job ends within 10 s, non-zero, naming rank 1; resuming
    on 3 ranks ends with the params of an uninterrupted single-process run."""
    src = tmp_path / "moons_long.net"
    text = (EXAMPLES / "moons.net").read_text()
    text = "\n".join(l for l in text.splitlines() if not l.strip().startswith("stop"))
    # few steps per epoch (batch 200: 7), so that the job is short, yet killed mid-run
    src.write_text(text.replace("epochs  = 300", "epochs  = 60").replace("batch   = 32", "batch   = 200"))
    run = tmp_path / "run"
    p = _netc("train", str(src), "--ranks", "2", "--dtype", "float64", "--quiet", "--out", str(run))
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    pid = _rank_pid(str(run), 1)
    assert p.poll() is None and pid is not None, "the run ended before it could be killed"
    os.kill(pid, signal.SIGKILL)
    t0 = time.time()
    out, err = p.communicate(timeout=30)
    assert time.time() - t0 < 10
    assert p.returncode != 0
    assert f"rank 1 (pid {pid}" in err, err
    done = len(metrics.read_text().splitlines())
    assert 3 <= done < 60
    r = subprocess.run([sys.executable, "-m", "netc.cli", "train", "--resume", str(run), "--ranks", "3", "--quiet"],
                       capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    import netc
    from netc.runtime import session
    job = session.new_job(str(src), dtype="float64", run_dir=False)
    job.fit(None)
    resumed = netc.load(str(run))
    assert resumed.epoch == 60
    for k, v in job.model.params.items():
        np.testing.assert_allclose(resumed.params[k], v, rtol=0, atol=1e-10, err_msg=k)


def test_bad_launch_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "netc.cli", "train", str(EXAMPLES / "xor.net"), "--ranks", "3",
                        "--batch", "2", "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 2, r.stdout + r.stderr
    assert "3 ranks but a global batch of 2" in r.stderr
    assert r.stderr.count("global batch of 2") == 1          # rank 0 alone says it
