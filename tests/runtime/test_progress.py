"""Live progress (issue 13, item 1): under a terminal the bar moves within an epoch (the
compiled epoch runs in chunks of batches), a compile notice names the time Numba took, and
epoch lines fit the terminal; the compiled epoch computes what the per-batch steps do."""
import os
import pty
import re
import subprocess
import sys
import fcntl
import struct
import termios
import time

import numpy as np
import pytest

import netc
from netc.runtime.progress import format_epoch

BIG = """model big
input x[2]
target y: class[2]
h1 = relu(dense(x, 256))
h2 = relu(dense(h1, 256))
p = softmax(dense(h2, 2))
output p
loss cross_entropy(p, y)
optimizer sgd(lr=0.01)
train {
  data = moons(n=100000, noise=0.2, seed=0)
  batch = 4
  epochs = 1
}
"""


def _run_in_pty(argv, env, cwd, columns=120, timeout=300):
    """(exit status, everything the process wrote to its terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=cwd,
                         close_fds=True)
    os.close(slave)
    chunks, t0 = [], time.time()
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:                 # EIO: the process closed its terminal
            break
        if not data:
            break
        chunks.append(data)
        if time.time() - t0 > timeout:
            p.kill()
            break
    os.close(master)
    return p.wait(), b"".join(chunks).decode("utf-8", "replace")


def test_bar_moves_within_one_epoch_of_a_100k_sample_model(tmp_path):
    f = tmp_path / "big.net"
    f.write_text(BIG)
    env = dict(os.environ, TERM="xterm")             # the session's kernel cache: compiled once
    env.pop("COLUMNS", None)
    rc, text = _run_in_pty([sys.executable, "-m", "netc.cli", "train", str(f), "--out", str(tmp_path / "run")],
                           env, tmp_path)
    assert rc == 0, text[-3000:]
    total = 25000                                        # 100k samples, batch 4
    counts = [int(c) for c in re.findall(rf"epoch 1/1:.*?\|\s*(\d+)/{total} \[", text)]
    moving = sorted({c for c in counts if 0 < c < total})
    assert len(moving) >= 3, counts                      # the count changed at least 3 times in the epoch
    assert re.search(rf"/{total} \[\d\d:\d\d<\d\d:\d\d", text)            # elapsed < ETA
    # the compile notice, and what the first compile took (or loading it from the kernel cache)
    assert re.search(r"compiling kernels \.\.\..*(compiled kernels|loaded kernels from the cache) in \d+\.\d\d s",
                     text), text[:2000]
    epoch_line = next(l for l in re.split(r"[\r\n]", text) if l.startswith("epoch 1/1  "))
    assert len(epoch_line) < 120


def test_epoch_lines_fit_the_terminal_and_keep_their_losses():
    rec = {"epoch": 7, "lr": 0.01, "time": 0.123,
           "train": {"loss": 0.5, "accuracy": 0.9, "f1": 0.8, "precision": 0.7, "recall": 0.6},
           "val": {"loss": 0.6, "accuracy": 0.85, "f1": 0.75, "precision": 0.65, "recall": 0.55}}
    full = format_epoch(rec, 300)
    assert format_epoch(rec, 300, width=len(full) + 1) == full       # fits already: unchanged
    for width in (120, 80, 60, 40):
        line = format_epoch(rec, 300, width=width)
        assert len(line) < width, (width, line)
        assert line.startswith("epoch   7/300") and "loss 0.5000" in line
        if width >= 60:
            assert "val_loss 0.6000" in line, line


MOONS = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "moons.net")


@pytest.fixture(scope="module")
def moons():
    return netc.compile(MOONS)


def test_chunked_epoch_equals_the_steps_one_by_one(moons):
    """The compiled epoch, run in uneven chunks in a shuffled order, gives the per-batch
    steps' loss terms, outputs, params and optimizer state bit for bit."""
    m = moons
    rng = np.random.default_rng(3)
    n, bs = 203, 16
    X = rng.standard_normal((n, 2)).astype(np.float32)
    y = rng.integers(0, 2, n)
    order = rng.permutation(n)
    art = m.artifact
    p1, s1 = [a.copy() for a in m.param_arrays()], [a.copy() for a in m.state_arrays()]
    p2, s2 = [a.copy() for a in p1], [a.copy() for a in s1]
    nb = -(-n // bs)
    terms = np.zeros((nb, len(m.loss_names)))
    outs = []
    for j in range(nb):
        idx = order[j * bs:(j + 1) * bs]
        outs.append(art.train_step(X[idx], y[idx], np.float32(0.1), np.float32(9 + j + 1), p1, s1, terms[j]).copy())
    T, O = None, None
    epoch_art = netc.compile(MOONS).artifact       # an artifact whose step was not called on its own
    for a, b in ((0, 1), (1, 5), (5, nb)):
        T, O = epoch_art.train_epoch(X, y, bs, np.float32(0.1), 9, p2, s2, order, a, b, T, O)
    assert epoch_art._epoch_types          # the compiled epoch loop ran (not the per-batch fallback)
    assert np.array_equal(T, terms) and np.array_equal(O, np.concatenate(outs))
    for a, b in zip(p1 + s1, p2 + s2):
        assert np.array_equal(a, b)
    # in stored order, all at once: the per-batch fallback (this artifact's step is compiled
    # on its own) and the compiled loop agree
    fresh = lambda: ([a.copy() for a in m.param_arrays()], [a.copy() for a in m.state_arrays()])
    T2, O2 = art.train_epoch(X, y, bs, np.float32(0.1), 9, *fresh())
    T3, O3 = epoch_art.train_epoch(X, y, bs, np.float32(0.1), 9, *fresh())
    assert T2.shape == (nb, len(m.loss_names)) and np.isfinite(T2).all()
    assert np.array_equal(T2, T3) and np.array_equal(O2, O3)


ALLOC_SCRIPT = """
import os, sys
os.environ["NUMBA_NRT_STATS"] = "1"
import numpy as np
from numba.core.runtime import rtsys
import netc
m = netc.compile(sys.argv[1])
X = np.zeros((256, 2), np.float32)
y = np.zeros(256, np.int64)
p, s = m.param_arrays(), m.state_arrays()
T, O = m.artifact.train_epoch(X, y, 16, np.float32(0.01), 0, p, s, None, 0, 1)
def allocs(a, b):
    s0 = rtsys.get_allocation_stats()
    m.artifact.train_epoch(X, y, 16, np.float32(0.01), 0, p, s, None, a, b, T, O)
    return rtsys.get_allocation_stats().alloc - s0.alloc
print(allocs(0, 1), allocs(1, 13))
"""


def test_compiled_epoch_allocates_nothing_per_batch():
    """The compiled epoch's batches allocate nothing: a chunk of 1 batch and one of 12 cost
    the same NRT allocations (slices and the arena are views)."""
    r = subprocess.run([sys.executable, "-c", ALLOC_SCRIPT, MOONS], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    one, twelve = map(int, r.stdout.split())
    assert one == twelve, (one, twelve)
