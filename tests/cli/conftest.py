"""Helpers of the CLI tests: the example files, `netc` as its own process, `netc` in this
process."""
import os
import subprocess
import sys
import tempfile
import time

import pytest

from netc.cli import main

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


@pytest.fixture(scope="session")
def example():
    """example("moons") -> the path of examples/moons.net."""
    return lambda name: os.path.join(EXAMPLES, f"{name}.net")


@pytest.fixture(scope="session")
def spawn():
    """spawn(*argv, cwd=None, env=None, **popen_kw): start `netc ARGV` as its own process (a
    Popen with text pipes); `env` adds to this process's environment."""
    def start(*argv, cwd=None, env=None, **kw):
        e = None if env is None else dict(os.environ, **env)
        return subprocess.Popen([sys.executable, "-m", "netc.cli", *map(str, argv)], cwd=cwd, env=e,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    return start


@pytest.fixture(scope="session")
def train_until(spawn):
    """train_until(f, out, epochs, sig, *extra, **popen_kw): start `netc train F --out OUT
    --quiet EXTRA`, send it `sig` once `epochs` epochs are in its metrics.jsonl (or it ended,
    or 120 s passed); (exit status, stderr)."""
    def run(f, out, epochs, sig, *extra, **kw):
        p = spawn("train", f, "--out", out, "--quiet", *extra, **kw)
        metrics = os.path.join(out, "metrics.jsonl")
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            try:
                with open(metrics) as fh:
                    if sum(1 for _ in fh) >= epochs:
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.002)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        return p.returncode, err
    return run


@pytest.fixture(scope="session")
def netc_cmd(spawn):
    """netc_cmd(*argv, env=None, cwd=None): `netc ARGV` run to its end as a user runs it, in a
    scratch directory unless `cwd` is given (so run folders never land in the checkout); a
    CompletedProcess."""
    def run(*argv, env=None, cwd=None):
        p = spawn(*argv, cwd=cwd if cwd is not None else tempfile.mkdtemp(prefix="netc-cli-"), env=env)
        try:
            out, err = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)
    return run


@pytest.fixture
def run_main(capsys):
    """run_main(*argv): `netc ARGV` in this process (the compiled kernels are shared):
    (status, stdout, stderr)."""
    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run
