"""The kernel cache: content-addressed, safe when two processes compile the same model at once,
a damaged entry is detected and rebuilt; `netc cache info|clear`; `--threads` and
`--verbose` of `netc train`."""
import json
import os
import subprocess
import sys

import numpy as np

from netc.compiler import cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XOR = os.path.join(ROOT, "examples", "xor.net")

WORKER = """
import sys, json, numpy as np, netc
m = netc.compile(sys.argv[1], seed=0)
rng = np.random.default_rng(0)
X = rng.standard_normal((32, 2)).astype(np.float32); y = rng.integers(0, 2, 32)
m.fit(X, y, epochs=3, batch=8, shuffle=False)
print(json.dumps({k: v.tolist() for k, v in m.params.items()}))
"""


def run(args, env, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **env), cwd=cwd)


def test_two_processes_compile_the_same_model_at_once(tmp_path):
    env = {"NETC_CACHE_DIR": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, XOR], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ, **env)) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    a, b = (json.loads(o.strip().splitlines()[-1]) for o, _ in outs)
    assert a == b
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1
    folder = entries[0]
    assert sorted(f.name for f in folder.iterdir() if not f.name.startswith(".")) == ["__pycache__", "kernels.py", "meta.json"]
    assert not [f for f in folder.iterdir() if f.name.startswith(".tmp-")]     # no temporary leftovers
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["sha256"] == cache.sha256((folder / "kernels.py").read_text())
    # and a third process finds it (warm: no new entry, same result)
    third = run(["-c", WORKER, XOR], env)
    assert third.returncode == 0 and json.loads(third.stdout.strip().splitlines()[-1]) == a
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_damaged_entry_is_detected_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("NETC_CACHE_DIR", str(tmp_path / "c"))
    source = "import numpy as np\nfrom numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n"
    folder = cache.ensure_entry(source, "cpu", "t")
    path = folder / "kernels.py"
    assert cache.entries()[0]["ok"]
    path.write_text(source.replace("x + 1", "x + 2"))            # damaged: the source no longer matches
    assert not cache.entries()[0]["ok"]
    (folder / "__pycache__").mkdir(exist_ok=True)
    (folder / "__pycache__" / "stale.nbi").write_text("junk")
    again = cache.ensure_entry(source, "cpu", "t")
    assert again == folder and path.read_text() == source and cache.entries()[0]["ok"]
    assert not (folder / "__pycache__" / "stale.nbi").exists()       # Numba's stale cache went too
    (folder / "meta.json").unlink()                                # half-written: no meta
    cache.ensure_entry(source, "cpu", "t")
    assert cache.entries()[0]["ok"]
    mod = cache.load_module(source, "cpu", "t")
    assert mod.f(np.float64(1.0)) == 2.0


def test_key_depends_on_source_backend_and_versions(monkeypatch):
    k = cache.key_of("x = 1\n")
    assert k == cache.key_of("x = 1\n") and k != cache.key_of("x = 2\n") and k != cache.key_of("x = 1\n", "cuda")
    monkeypatch.setattr(cache, "NETC_VERSION", "9.9.9")
    assert cache.key_of("x = 1\n") != k


def test_cli_cache_info_clear_threads_and_verbose(tmp_path):
    env = {"NETC_CACHE_DIR": str(tmp_path / "cache")}
    r = run(["-m", "netc.cli", "train", XOR, "--epochs", "2", "--quiet", "--verbose", "--threads", "1"], env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "BLAS 1" in r.stderr and "--threads" in r.stderr                   # what it chose, and why
    for stage in ("elaborate", "codegen", "cache/import", "jit train_step"):
        assert stage in r.stderr, stage
    assert "stabilize" in r.stderr and "memplan" in r.stderr                  # which rewrites fired
    info = run(["-m", "netc.cli", "cache", "info"], env)
    assert info.returncode == 0 and "1 entries" in info.stdout and "xor" in info.stdout and " ok" in info.stdout
    clear = run(["-m", "netc.cli", "cache", "clear"], env)
    assert clear.returncode == 0 and "removed 1" in clear.stdout
    assert "0 entries" in run(["-m", "netc.cli", "cache", "info"], env).stdout


def test_cli_graph_writes_dot(tmp_path):
    out = tmp_path / "g.dot"
    r = run(["-m", "netc.cli", "graph", XOR, "--train", "-o", str(out)], {})   # the whole step (default: forward)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("digraph") and 'class="backward"' in text and 'class="update"' in text
    bad = run(["-m", "netc.cli", "graph", XOR, "-o", str(tmp_path / "g.txt")], {})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_damaged_numba_cache_files_are_dropped_and_rebuilt(tmp_path, monkeypatch):
    """Issue 15, finding 3: Numba's own cache files are sealed (their hashes in meta.json)
    after a compile; a truncated or flipped one is dropped before Numba can load it."""
    env = {"NETC_CACHE_DIR": str(tmp_path / "cache")}
    first = run(["-c", WORKER, XOR], env)
    assert first.returncode == 0, first.stderr
    folder = next((tmp_path / "cache").iterdir())
    files = sorted((folder / "__pycache__").iterdir())
    for f in files:                                  # every .nbc (the compiled code) cut short
        if f.suffix == ".nbc":
            f.write_bytes(f.read_bytes()[:100])
    second = run(["-c", WORKER, XOR], env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]
    sealed = json.loads((folder / "meta.json").read_text())["numba"]
    assert sealed.keys() == {f.name for f in (folder / "__pycache__").iterdir()}
    nbi = next(f for f in (folder / "__pycache__").iterdir() if f.suffix == ".nbi")
    data = bytearray(nbi.read_bytes())               # a flipped byte in an index
    data[len(data) // 2] ^= 0x5A
    nbi.write_bytes(bytes(data))
    third = run(["-c", WORKER, XOR], env)
    assert third.returncode == 0, third.stderr
    assert third.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]
    # meta.json holding [] is a damaged entry, listed as such and rebuilt, never an AttributeError
    monkeypatch.setenv("NETC_CACHE_DIR", str(tmp_path / "cache"))
    (folder / "meta.json").write_text("[]")
    assert cache.entries()[0]["ok"] is False
    source = (folder / "kernels.py").read_text()
    assert cache.ensure_entry(source, "cpu", "xor") == folder and cache.entries()[0]["ok"]
    assert not (folder / "__pycache__").exists()
    # a cache whose entries cannot be removed reports none removed
    monkeypatch.setattr(cache.shutil, "rmtree", lambda *a, **k: None)
    assert cache.clear() == 0


def test_a_cache_that_vanishes_while_numba_writes_it_does_not_fail_the_run(tmp_path, monkeypatch):
    """Issue 15, finding 3: `netc cache clear` while another process compiles: Numba's cache
    write fails, the compiled code is there, the step runs."""
    import netc
    from numba.core import caching
    monkeypatch.setenv("NETC_CACHE_DIR", str(tmp_path / "c"))
    real, failed = caching.IndexDataCacheFile.save, []

    def save(self, key, data):
        if not failed:
            failed.append(key)
            raise FileNotFoundError(2, "No such file or directory", "removed by netc cache clear")
        return real(self, key, data)
    monkeypatch.setattr(caching.IndexDataCacheFile, "save", save)
    src = ("model vanish\ninput x[3]\ntarget y: class[2]\np = softmax(dense(x, 2))\n"
           "loss cross_entropy(p, y)\noptimizer sgd(lr=0.1)\n")
    m = netc.compile(src, seed=0)
    X, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
    m.fit(X, y, epochs=1, batch=4, shuffle=False)
    assert failed and m.step == 1


WARM = WORKER + """
import numba
from netc.compiler.backend.cpu import warmstart
print(json.dumps({"refreshed": warmstart.refreshed(), "scipy.linalg": "scipy.linalg" in sys.modules,
                  "predict": m.predict(X[:4]).tolist()}))
@numba.njit
def later(a):                   # compiled after the cached kernels: Numba's usual path, BLAS too
    return np.dot(a, a.T)[0, 0] + np.linalg.det(np.eye(2))
import scipy.linalg
print(json.dumps({"later": float(later(np.ones((2, 3)))), "solve": scipy.linalg.solve(np.eye(2), np.ones(2)).tolist()}))
"""


def test_a_warm_process_runs_the_cached_kernels_without_numba_s_compiler_set_up(tmp_path):
    """With the kernels in the cache, a process loads and runs them without Numba's registry
    set-up or scipy.linalg's package import (backend/cpu/warmstart.py): the same numbers as the
    process that compiled them, and Numba still compiles (BLAS included) what comes later."""
    env = {"NETC_CACHE_DIR": str(tmp_path / "cache")}
    cold, warm = run(["-c", WARM, XOR], env), run(["-c", WARM, XOR], env)
    assert cold.returncode == 0 and warm.returncode == 0, cold.stderr + warm.stderr
    (params_c, state_c, later_c), (params_w, state_w, later_w) = \
        ([json.loads(l) for l in r.stdout.strip().splitlines()[-3:]] for r in (cold, warm))
    assert params_w == params_c and state_w["predict"] == state_c["predict"] and later_w == later_c
    assert state_c["refreshed"] and not state_w["refreshed"] and not state_w["scipy.linalg"]
    assert later_w == {"later": 4.0, "solve": [1.0, 1.0]}
