"""The red-team findings of issue 15, one test each: nothing a user does (a kill, a damaged or
tampered file, a full or read-only disk, a file in another encoding) crashes netc, loses a run
or is trusted silently. Every refusal is a UserError: a message and exit status 2."""
import errno
import json
import os
import shutil

import numpy as np
import pytest

import netc
from netc.runtime import checkpoint

TINY = """model tiny
input  x[2]
target y: class[2]
h = relu(dense(x, 8))
p = softmax(dense(h, 2))
loss cross_entropy(p, y)
optimizer adam(lr=0.01)
train {
  data   = blobs(n=120, centers=2, seed=0)
  split  = 0.8, 0.2
  batch  = 16
  epochs = 3
  standardize = true
}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder, tiny.net, a finished 3-epoch run directory)."""
    from netc.cli import main
    d = tmp_path_factory.mktemp("redteam")
    f = d / "tiny.net"
    f.write_text(TINY)
    assert main(["train", str(f), "--out", str(d / "run"), "--quiet"]) == 0
    return d, f, d / "run"


def weights(path):
    with np.load(os.path.join(path, "weights.npz")) as z:
        return {k: z[k] for k in z.files}


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return sorted(wa) == sorted(wb) and all(wa[k].tobytes() == wb[k].tobytes() for k in wa)


def killed_in_first_checkpoint(run, dest):
    """The state a SIGKILL during the first checkpoint leaves: the run's files, an empty
    metrics.jsonl, a half-written .last.new/ and no last/."""
    dest.mkdir()
    for name in ("settings.json", "tiny.net"):
        shutil.copy(run / name, dest / name)
    (dest / "metrics.jsonl").write_text("")
    (dest / ".last.new").mkdir()
    data = (run / "last" / "weights.npz").read_bytes()
    (dest / ".last.new" / "weights.npz").write_bytes(data[:len(data) // 2])
    return dest


# 1 ------------------------------------------------------------------------------------------
def test_a_kill_during_the_first_checkpoint_leaves_a_run_that_resumes_and_restarts(tiny, tmp_path, run_main):
    d, f, run = tiny
    r = killed_in_first_checkpoint(run, tmp_path / "r")
    code, out, err = run_main("train", "--resume", r)
    assert code == 0, err
    assert "starting it again" in out + err
    assert same_weights(run / "last", r / "last")              # the run it would have been
    assert len((r / "metrics.jsonl").read_text().splitlines()) == 3
    r2 = killed_in_first_checkpoint(run, tmp_path / "r2")
    code, out, err = run_main("train", f, "--out", r2, "--quiet")
    assert code == 0, err
    assert same_weights(run / "last", r2 / "last")
    code, out, err = run_main("train", f, "--out", r2, "--quiet")   # now it holds a run
    assert code == 2 and "already holds a run" in err


# 2 ------------------------------------------------------------------------------------------
def test_a_damaged_metrics_line_is_refused_never_dropped(tiny, tmp_path, run_main):
    _, _, run = tiny
    r = tmp_path / "r"
    shutil.copytree(run, r)
    lines = (r / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("{", "[", 1)
    damaged = "".join(lines)
    (r / "metrics.jsonl").write_text(damaged)
    code, out, err = run_main("train", "--resume", r, "--epochs", "4", "--quiet")
    assert code == 2 and "metrics.jsonl:2" in err and "Traceback" not in err
    assert (r / "metrics.jsonl").read_text() == damaged          # epoch 3 is still there
    # a last line cut short by a kill (no newline after it) is what resume drops
    (r / "metrics.jsonl").write_text("".join(l for i, l in enumerate(
        (run / "metrics.jsonl").read_text().splitlines(keepends=True))) + '{"epoch": 4, "lo')
    code, out, err = run_main("train", "--resume", r, "--epochs", "4", "--quiet")
    assert code == 0, err
    recs = [json.loads(l) for l in (r / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in recs] == [1, 2, 3, 4]


# 4 ------------------------------------------------------------------------------------------
def test_file_system_errors_are_messages_with_status_2(tiny, tmp_path, run_main, monkeypatch):
    _, f, run = tiny
    data = tmp_path / "x.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    code, out, err = run_main("predict", run, "--data", data, "-o", tmp_path / "missing" / "p.csv")
    assert code == 2 and "No such file or directory" in err and "Traceback" not in err
    (tmp_path / "adir").mkdir()
    code, out, err = run_main("predict", run, "--data", data, "-o", tmp_path / "adir")
    assert code == 2 and "Is a directory" in err
    assert sorted(os.listdir(tmp_path)) == ["adir", "x.csv"]      # no stray temporary file
    (tmp_path / "afile").write_text("")
    code, out, err = run_main("train", f, "--out", tmp_path / "afile" / "run", "--quiet")
    assert code == 2 and "afile" in err and "Traceback" not in err
    code, out, err = run_main("plot", run, "-o", tmp_path / "afile")
    assert code == 2 and "afile" in err

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "p.csv"))
    monkeypatch.setattr("netc.cli.write_predictions", full)
    code, out, err = run_main("predict", run, "--data", data, "-o", tmp_path / "p.csv")
    assert code == 2 and "No space left on device" in err and "disk is full" in err
    assert not (tmp_path / "p.csv").exists() and sorted(os.listdir(tmp_path)) == ["adir", "afile", "x.csv"]


# 5 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "crc", "empty", "text"])
def test_a_truncated_or_damaged_checkpoint_is_a_checkpoint_error(tiny, tmp_path, run_main, damage):
    _, _, run = tiny
    ck = tmp_path / "ck"
    shutil.copytree(run / "last", ck)
    w = ck / "weights.npz"
    data = bytearray(w.read_bytes())
    if damage == "truncate":
        data = data[:len(data) * 2 // 3]
    elif damage == "crc":
        data[200] ^= 0xFF                     # inside the first array's bytes (stored, not compressed)
    elif damage == "empty":
        data = b""
    else:
        data = b"if you trust the file\n"
    w.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="not a readable netc checkpoint"):
        netc.load(str(ck))
    for cmd in (("eval", ck), ("predict", ck, "--data", "blobs(n=5, centers=2)")):
        code, out, err = run_main(*cmd)
        assert code == 2 and "weights.npz" in err and "Traceback" not in err and "allow_pickle" not in err


def test_a_data_file_that_is_no_npz_is_a_data_error(tiny, tmp_path, run_main):
    _, _, run = tiny
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"\x80\x04K\x01.")                            # a pickle
    code, out, err = run_main("eval", run, "--data", bad)
    assert code == 2 and "x.npz" in err and "allow_pickle" not in err and "trust" not in err
    np.savez(bad, X=np.zeros((4, 2)), y=np.zeros(4))
    bad.write_bytes(bad.read_bytes()[:-30])
    code, out, err = run_main("predict", run, "--data", bad)
    assert code == 2 and "not a readable .npz/.npy file" in err


# 6 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,where", [(b"model m\n# caf\xe9\ninput x[2]\n", ":2:6:"),
                                       (b"model m\ninput x[2]\x00\xff\n", ":2:12:"),
                                       (b"\xff\xfe", ":1:1:")])
def test_a_net_file_that_is_not_utf8_is_located(tmp_path, run_main, raw, where):
    f = tmp_path / "m.net"
    f.write_bytes(raw)
    for cmd in ("check", "train", "show"):
        code, out, err = run_main(cmd, f)
        assert code == 2 and f"{f}{where} error:" in err and "not UTF-8" in err and "Traceback" not in err


# 10 -----------------------------------------------------------------------------------------
def _tamper_meta(ck, fn):
    meta = json.loads((ck / "model.json").read_text())
    fn(meta)
    (ck / "model.json").write_text(json.dumps(meta))


def _tamper_arrays(ck, fn):
    arrays = weights(ck)
    fn(arrays)
    np.savez(ck / "weights.npz", **arrays)


TAMPER = {
    "a missing param": (lambda a: a.pop(next(k for k in a if k.startswith("param/"))), None, "no array for param"),
    "a missing state": (lambda a: a.pop(next(k for k in a if k.startswith("state/"))), None, "no array for state"),
    "a param of another dtype": (lambda a: a.update({k: a[k].astype(np.float64) for k in a if k.startswith("param/")}),
                                 None, "dtype float64"),
    "a 2-D scaler": (lambda a: a.update({"scaler/mean": np.zeros((2, 2))}), None, "standardization"),
    "a missing scaler": (lambda a: a.pop("scaler/std"), None, "standardization"),
    "format 99": (None, lambda m: m.update(format=99), "format 99"),
    "done -5": (None, lambda m: m["training"].update(done=-5), "'done'"),
    "a settings list": (None, lambda m: m.update(settings=[]), "'settings'"),
    "a string step": (None, lambda m: m.update(step="7"), "'step'"),
    "classes of numbers": (None, lambda m: m.update(classes=[0, 1]), "'classes'"),
    "an rng that is no state": (None, lambda m: m["training"].update(rng={"x": 1}), "'rng'"),
    "standardized without a scaler": (lambda a: [a.pop("scaler/mean"), a.pop("scaler/std")], None, "scaler"),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_a_tampered_checkpoint_is_refused(tiny, tmp_path, run_main, case):
    _, _, run = tiny
    arrays_fn, meta_fn, message = TAMPER[case]
    r = tmp_path / "r"
    shutil.copytree(run, r)
    if arrays_fn:
        _tamper_arrays(r / "last", arrays_fn)
    if meta_fn:
        _tamper_meta(r / "last", meta_fn)
    with pytest.raises(checkpoint.CheckpointError, match=message.replace("(", r"\(")):
        netc.load(str(r / "last"))
    code, out, err = run_main("train", "--resume", r, "--epochs", "4", "--quiet")
    assert code == 2 and message in err and "Traceback" not in err, err


# 11 -----------------------------------------------------------------------------------------
def test_a_resumed_checkpoint_keeps_the_file_as_given(tiny, tmp_path, run_main, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.net").write_text(TINY)
    code, out, err = run_main("train", "tiny.net", "--out", "r", "--quiet", "--epochs", "1")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "last" / "model.json").read_text())["file"] == "tiny.net"
    code, out, err = run_main("train", "--resume", "r", "--epochs", "2", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "last" / "model.json").read_text())["file"] == "tiny.net"


# 9 ------------------------------------------------------------------------------------------
def test_nothing_silently_wrong(tiny, tmp_path, run_main, monkeypatch):
    _, f, run = tiny
    words = tmp_path / "words.csv"                  # the tiny model learned class ids 0/1
    words.write_text("a,b,label\n0.1,0.2,cat\n0.3,0.1,dog\n1.0,2.0,cat\n")
    code, out, err = run_main("eval", run, "--data", words)
    assert code == 2 and "string labels (cat, dog)" in err and "accuracy" not in out
    huge = tmp_path / "huge.csv"                    # finite in float64, not in float32
    huge.write_text("a,b,label\n0.1,0.2,0\n1e40,0.1,1\n")
    for cmd in (("eval", run, "--data", huge), ("predict", run, "--data", huge)):
        code, out, err = run_main(*cmd)
        assert code == 2 and "sample 1, feature 0: 1e+40" in err and "float32" in err, err
        assert "RuntimeWarning" not in err and "diverge" not in err
    code, out, err = run_main("eval", run, "--data", "blobs(n=20, centers=2)", "--label", "3")
    assert code == 2 and "--label 3" in err
    monkeypatch.setattr("netc.compiler.cache.shutil.rmtree", lambda *a, **k: None)    # a cache we cannot change
    code, out, err = run_main("cache", "clear")
    assert code == 0 and out.startswith("removed 0 entries")


# 13 -----------------------------------------------------------------------------------------
def test_the_final_table_separates_large_values_and_no_internal_repr_leaks(tmp_path, run_main):
    from netc.cli import _summary
    table = _summary({"train": {"loss": 76457.194481, "mae": 12.5}, "val": {"loss": 659.79, "mae": 123456.25}})
    rows = table.splitlines()
    assert rows[1].split() == ["loss", "76457.1945", "659.7900"]
    assert rows[2].split() == ["mae", "12.5000", "123456.2500"]
    assert len({len(r) for r in rows}) == 1                       # columns still aligned
    f = tmp_path / "m.net"
    f.write_text(TINY.replace("optimizer adam(lr=0.01)", "optimizer adam(lr=0.01)\nschedule step(every=nan)"))
    code, out, err = run_main("check", f)
    assert code == 2 and "every must be an integer >= 1, got nan" in err and "Ref(" not in err


def test_a_cache_path_that_is_a_file_is_a_message_with_status_2(tiny, tmp_path, netc_cmd):
    _, f, _ = tiny
    (tmp_path / "cachefile").write_text("")
    r = netc_cmd("train", f, "--epochs", "1", "--quiet", env={"NETC_CACHE_DIR": str(tmp_path / "cachefile")})
    assert r.returncode == 2 and "cachefile" in r.stderr and "Traceback" not in r.stderr, r.stderr
