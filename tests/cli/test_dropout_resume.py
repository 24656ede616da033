"""A run with dropout and batchnorm cut by SIGKILL and resumed is bitwise identical to the run
that was never cut: dropout's masks are keyed by (seed, step, element), the seed and the running
statistics are saved with the params. Shown on an MLP and on examples/digits_cnn.net (the
contract's file: conv, batchnorm per channel, maxpool, dropout, Adam), each cut in the middle of
its run: params, buffers, optimizer state and metrics.jsonl equal the uninterrupted run's."""
import json
import os
import signal

import numpy as np
import pytest

from netc.cli import main

DROPOUT_MLP = """model dropmlp
input  x[2]
target y: class[3]
h1 = dropout(relu(batchnorm(dense(x, 32))), 0.3)
h2 = dropout(relu(dense(h1, 32)), 0.2)
p  = softmax(dense(h2, 3))
loss cross_entropy(p, y)
optimizer sgd(lr=0.05, momentum=0.9)
train {
  data   = spiral(n=900, classes=3, noise=0.2, seed=0)
  split  = 0.8, 0.1, 0.1
  batch  = 16
  epochs = 25
  stop   = early(val.loss, patience=25)
}
"""


def _weights(path):
    with np.load(os.path.join(path, "weights.npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in f]


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert wa[k].tobytes() == wb[k].tobytes(), k


def _cut_and_resume(spawn, train_until, f, out, cut_after, epochs, extra=()):
    """Train F into OUT, SIGKILL it once CUT_AFTER epochs are recorded, resume it to its end;
    returns how many epochs the cut run had recorded."""
    code, _ = train_until(f, out, cut_after, signal.SIGKILL, *extra)
    assert code == -9
    done = len(_records(out))
    assert cut_after <= done < epochs, done          # really cut in the middle
    p = spawn("train", f, "--resume", out)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    assert "resuming the run in" in stdout
    return done


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("dropresume")
    f = d / "dropmlp.net"
    f.write_text(DROPOUT_MLP)
    assert main(["train", str(f), "--out", str(d / "full"), "--quiet"]) == 0
    return d, f


def test_resume_after_sigkill_with_dropout_is_bitwise_identical(full_run, spawn, train_until):
    d, f = full_run
    out = str(d / "cut")
    _cut_and_resume(spawn, train_until, f, out, 4, 25)
    full = _weights(d / "full" / "last")
    assert "h1.batchnorm.running_var" in " ".join(full) and any(k.endswith("dropout.seed") for k in full)
    _same_weights(d / "full" / "last", os.path.join(out, "last"))
    _same_weights(d / "full" / "best", os.path.join(out, "best"))
    assert _records(d / "full") == _records(out)


CNN_EPOCHS = 4          # ~0.2 s an epoch: cut after the first, well before the end


def test_resume_after_sigkill_of_digits_cnn_is_bitwise_identical(tmp_path, spawn, train_until, example):
    f = example("digits_cnn")
    full = str(tmp_path / "full")
    assert main(["train", f, "--epochs", str(CNN_EPOCHS), "--out", full, "--quiet"]) == 0
    assert len(_records(full)) == CNN_EPOCHS
    out = str(tmp_path / "cut")
    _cut_and_resume(spawn, train_until, f, out, 1, CNN_EPOCHS, extra=("--epochs", str(CNN_EPOCHS)))
    w = _weights(os.path.join(full, "last"))
    for key in ("param/b.batchnorm.running_mean", "param/b.batchnorm.running_var", "param/h.dropout.seed",
                "state/b.conv2d.W.exp_avg", "state/K.exp_avg_sq", "best/b.batchnorm.running_var"):
        assert key in w, key                          # buffers, the mask seed, Adam's state are saved
    _same_weights(full + "/last", os.path.join(out, "last"))
    _same_weights(full + "/best", os.path.join(out, "best"))
    assert _records(full) == _records(out)
