"""The `netc` command as a user runs it: real trainings, diagnostics with exit status 2 and no
traceback, the generated source, the kernel cache."""
import json

import pytest


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("name,check", [
    ("linear", lambda r: r["test"]["r2"] >= 0.98),
    ("neuron", lambda r: r["train"]["accuracy"] >= 0.95),
    ("xor", lambda r: r["train"]["accuracy"] >= 0.98),
    ("spiral", lambda r: r["test"]["accuracy"] >= 0.90),
])
def test_language_contract_programs_train(name, check, netc_cmd, example):
    r = netc_cmd("train", example(name), "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    res = last_json(r.stdout)
    assert res["model"] == name
    assert check(res), res


BAD = {
    "syntax": ("model m\ninput x[2]\ny = (x +\n", 3),
    "unknown name": ("model m\ninput x[2]\ntarget y: class[2]\np = softmax(dense(xx, 2))\nloss cross_entropy(p, y)\n", 4),
    "shape mismatch": ("model m\ninput x[2]\ntarget t[1]\nparam W[3, 4] = glorot\nh = W @ x\nloss mse(h, t)\n", 5),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_file_gets_located_diagnostic_and_status_2(kind, tmp_path, netc_cmd):
    src, line = BAD[kind]
    f = tmp_path / "bad.net"
    f.write_text(src)
    r = netc_cmd("check", str(f))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"bad.net:{line}:" in r.stderr
    assert "^" in r.stderr          # the caret under the offending text
    r = netc_cmd("train", str(f))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_show_kernels_prints_generated_source(netc_cmd, example):
    r = netc_cmd("show", example("xor"), "--stage", "kernels")
    assert r.returncode == 0, r.stderr
    assert "def train_step(" in r.stdout and "def predict(" in r.stdout and "@njit" in r.stdout
    assert "np.dot(" in r.stdout              # matrix products through BLAS


@pytest.mark.parametrize("stage", ["ast", "ir", "grad", "optimized"])
def test_show_stages(stage, netc_cmd, example):
    r = netc_cmd("show", example("xor"), "--stage", stage)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_second_run_hits_the_kernel_cache(tmp_path, netc_cmd, example):
    env = {"NETC_CACHE_DIR": str(tmp_path / "cache")}
    args = ("train", example("xor"), "--epochs", "2", "--json", "--quiet")
    first = netc_cmd(*args, env=env)
    assert first.returncode == 0, first.stderr
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1
    cached = list((entries[0] / "__pycache__").glob("*.nbi"))
    assert cached, "Numba wrote no cache index next to the generated module"
    second = netc_cmd(*args, env=env)
    assert second.returncode == 0
    assert last_json(first.stdout) == last_json(second.stdout)     # same seed, same result
    assert len(list((tmp_path / "cache").iterdir())) == 1


CHECK_AND_SUMMARY = """
import sys
from netc.cli import main
from netc.compiler.backend.cpu import warmstart
codes = [main(["check", sys.argv[1]]), main(["summary", sys.argv[1]])]
print("RESULT", codes, warmstart.refreshed(), [m for m in sys.modules if m.startswith("netc_kernels")])
"""


def test_check_and_summary_compile_nothing(tmp_path, example):
    """`netc check` and `netc summary` generate no kernels (the cache stays empty) and never
    start Numba's compiler."""
    import os
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", CHECK_AND_SUMMARY, example("digits_cnn")], capture_output=True,
                       text=True, env=dict(os.environ, NETC_CACHE_DIR=str(tmp_path / "cache")), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "RESULT [0, 0] False []"
    assert not (tmp_path / "cache").exists()
