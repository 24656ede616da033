"""`netc train` runs as users expect them, and `netc eval`, `netc predict`, `netc plot`:
the moons acceptance, run directories, exact resume (after a stop and after SIGKILL),
a changed file refused on resume, reproducibility, divergence and data-error messages,
and a real CSV file with string class names."""
import json
import os
import signal

import numpy as np
import pytest

import netc
from netc.cli import main

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def weights(path):
    with np.load(os.path.join(path, "weights.npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def records(run_dir, drop=("time",)):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in f]


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert sorted(wa) == sorted(wb)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and wa[k].tobytes() == wb[k].tobytes(), k


# ------------------------------------------------------------------ moons, exactly as written
def test_moons_reaches_095_and_reports_early_stopping(tmp_path, run_main, example):
    code, out, err = run_main("train", example("moons"), "--out", tmp_path / "r", "--json")
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["test"]["accuracy"] >= 0.95
    stopped, best = res["stopped_epoch"], res["best_epoch"]
    assert stopped is not None and stopped < 300 and stopped - best == 21       # more than patience=20
    assert f"early stopping: stopped at epoch {stopped}; restored the weights of epoch {best}" in out
    assert f"epoch {stopped:>3}/300" in out and f"epoch {stopped + 1:>3}/300" not in out   # one line per epoch
    # the run directory
    r = tmp_path / "r"
    assert (r / "moons.net").read_text() == open(example("moons")).read()
    settings = json.loads((r / "settings.json").read_text())
    assert settings["settings"]["stop"] == {"monitor": "val.loss", "patience": 20, "min_delta": 0.0, "mode": "min"}
    assert settings["settings"]["data"] == {"source": "moons", "args": [], "kwargs": {"n": 2000, "noise": 0.2, "seed": 0}}
    recs = records(r, drop=())
    assert [x["epoch"] for x in recs] == list(range(1, stopped + 1)) and all("time" in x for x in recs)
    assert set(recs[0]["train"]) == {"loss", "accuracy", "f1"} and set(recs[0]["val"]) == {"loss", "accuracy", "f1"}
    last = json.loads((r / "last" / "model.json").read_text())
    assert last["epoch"] == stopped and last["training"]["finished"] and last["training"]["best_epoch"] == best
    assert {"rng", "schedule", "wait", "best"} <= set(last["training"])
    assert json.loads((r / "best" / "model.json").read_text())["epoch"] == best


# ------------------------------------------------------------------ eval / predict / plot
@pytest.fixture(scope="module")
def small_run(tmp_path_factory, example):
    """A short moons run with --plot, shared by the eval/predict/plot tests."""
    out = tmp_path_factory.mktemp("small") / "run"
    code = main(["train", example("moons"), "--epochs", "25", "--out", str(out), "--plot", "--quiet"])
    assert code == 0
    return out


def check_png(path, min_w=400, min_h=300):
    import matplotlib.image as mpimg
    assert os.path.getsize(path) > 5000
    img = mpimg.imread(str(path))
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (w, h)
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05                                     # not blank
    assert len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50
    non_white = (rgb < 0.9).any(axis=1).mean()
    assert non_white > 0.02, non_white


def test_train_plot_writes_the_pngs(small_run):
    for name in ("loss.png", "metrics.png", "regions.png"):
        check_png(small_run / name)


def test_plot_command(small_run, tmp_path, run_main):
    code, out, err = run_main("plot", small_run, "-o", tmp_path / "pics")
    assert code == 0, err
    for name in ("loss.png", "metrics.png", "regions.png"):
        assert name in out
        check_png(tmp_path / "pics" / name)
    code, out, err = run_main("plot", tmp_path / "nothing")
    assert code == 2 and err.startswith("error:") and "no such run directory" in err


CONV_NET = """model tinycnn
input img[1, 8, 8]
target y: class[10]
a = maxpool(relu(conv2d(img, 6, 3, pad=1)), 2)
p = softmax(dense(flatten(a), 10))
loss cross_entropy(p, y)
optimizer adam(lr=0.01)
train {
  data = digits
  epochs = 2
  batch = 64
}
"""


def test_plot_of_a_conv_model_shows_its_first_filters(tmp_path, run_main):
    src = tmp_path / "tinycnn.net"
    src.write_text(CONV_NET)
    code, out, err = run_main("train", src, "--out", tmp_path / "run", "--plot", "--quiet")
    assert code == 0, err
    check_png(tmp_path / "run" / "filters.png")
    code, out, err = run_main("plot", tmp_path / "run", "-o", tmp_path / "pics")
    assert code == 0 and "filters.png" in out, err
    check_png(tmp_path / "pics" / "filters.png")
    # the grid shows the learned kernel: a tile per filter, on the filter's own scale
    from netc.runtime.plots import first_filters
    name, W = first_filters(netc.load(str(tmp_path / "run")))
    assert name == "a.conv2d.W" and W.shape == (6, 1, 3, 3)


def test_no_filters_for_a_model_without_convolutions(small_run):
    assert not (small_run / "filters.png").exists()


def test_eval_command_metrics_and_confusion_matrix(small_run, run_main):
    code, out, err = run_main("eval", small_run)
    assert code == 0, err
    assert "train" in out and "val" in out and "test" in out
    for m in ("loss", "accuracy", "precision", "recall", "f1"):
        assert f"\n{m} " in out
    assert "confusion matrix (test; rows: true class, columns: predicted class)" in out
    code, out, err = run_main("eval", small_run, "--data", "moons(n=400, noise=0.2, seed=7)", "--json")
    assert code == 0, err
    res = json.loads(out)
    cm = np.array(res["confusion_matrix"]["matrix"])
    assert cm.shape == (2, 2) and cm.sum() == 400 and res["confusion_matrix"]["split"] == "data"
    assert np.trace(cm) / 400 == pytest.approx(res["data"]["accuracy"])
    assert res["data"]["accuracy"] > 0.85


def test_predict_command_writes_probabilities_and_class(small_run, tmp_path, run_main):
    from netc.runtime import data
    ds = data.moons(n=50, seed=11)
    csv = tmp_path / "X.csv"
    csv.write_text("a,b\n" + "\n".join(f"{x0!r},{x1!r}" for x0, x1 in ds.X.tolist()) + "\n")
    code, out, err = run_main("predict", small_run, "--data", csv, "-o", tmp_path / "out.csv")
    assert code == 0, err
    assert "wrote 50 predictions" in out
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "p_0,p_1,class" and len(lines) == 51
    vals = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_allclose(vals[:, :2].sum(1), 1, atol=1e-6)
    np.testing.assert_array_equal(vals[:, 2], vals[:, :2].argmax(1))
    assert (vals[:, 2] == ds.y).mean() > 0.85
    # a file with the label column too: the extra column is dropped
    csv2 = tmp_path / "Xy.csv"
    csv2.write_text("a,b,label\n" + "\n".join(f"{x0!r},{x1!r},{c}" for (x0, x1), c in zip(ds.X.tolist(), ds.y)) + "\n")
    code, out, err = run_main("predict", small_run, "--data", csv2)
    assert code == 0 and out.splitlines() == lines
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,x\n")
    code, out, err = run_main("predict", small_run, "--data", bad)
    assert code == 2 and f"{bad}: row 3, column 'b': 'x' is not a number" in err


# ------------------------------------------------------------------ resume, reproducibility
RESUMABLE = """model spiral
input  x[2]
target y: class[3]
h1 = relu(dense(x, 64))
h2 = relu(dense(h1, 64))
p  = softmax(dense(h2, 3))
loss cross_entropy(p, y)
optimizer adam(lr=0.01)
schedule cosine(min_lr=0.0001)
train {
  data   = spiral(n=1500, classes=3, noise=0.2, seed=0)
  split  = 0.8, 0.1, 0.1
  batch  = 16
  epochs = 30
  stop   = early(val.loss, patience=25)
}
"""


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    f = d / "spiral.net"
    f.write_text(RESUMABLE)
    code = main(["train", str(f), "--out", str(d / "full"), "--quiet"])
    assert code == 0
    return d, f


def _kill_after(train_until, f, out, epochs_done, sig):
    # Ctrl-C's default action (a background job of a shell may inherit SIGINT ignored)
    return train_until(f, out, epochs_done, sig, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_a_kill_or_a_stop_is_bitwise_identical(resumable, sig, spawn, train_until):
    d, f = resumable
    out = str(d / f"cut-{int(sig)}")
    code, err = _kill_after(train_until, f, out, 4, sig)
    assert code == (-9 if sig == signal.SIGKILL else 130), err
    if sig == signal.SIGINT:
        assert "interrupted; the last checkpoint is" in err and "--resume" in err and "Traceback" not in err
    done = len(records(out))
    assert 4 <= done < 30, done                     # really cut in the middle
    p = spawn("train", f, "--resume", out)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    assert "resuming the run in" in stdout
    assert_same_weights(d / "full" / "last", os.path.join(out, "last"))
    assert_same_weights(d / "full" / "best", os.path.join(out, "best"))
    assert records(d / "full") == records(out)


def test_same_file_and_seed_give_identical_runs_and_another_seed_does_not(resumable, run_main):
    d, f = resumable
    code, _, err = run_main("train", f, "--out", d / "again", "--quiet")
    assert code == 0, err
    assert_same_weights(d / "full" / "last", d / "again" / "last")
    assert records(d / "full") == records(d / "again")
    code, _, err = run_main("train", f, "--out", d / "seed5", "--quiet", "--seed", "5", "--epochs", "3")
    assert code == 0
    assert records(d / "seed5") != records(d / "full")[:3]


def test_resume_refuses_a_changed_file_and_accepts_a_comment(resumable, tmp_path, run_main):
    d, _ = resumable
    f = tmp_path / "m.net"
    f.write_text(RESUMABLE)
    code, _, err = run_main("train", f, "--out", tmp_path / "r", "--quiet", "--epochs", "2")
    assert code == 0, err
    f.write_text(RESUMABLE.replace("adam(lr=0.01)", "adam(lr=0.02)"))
    code, out, err = run_main("train", f, "--resume", tmp_path / "r")
    assert code == 2 and "Traceback" not in err
    assert "has changed since the run in" in err
    assert "line 8 was: optimizer adam(lr=0.01)" in err and "line 8 now: optimizer adam(lr=0.02)" in err
    f.write_text("# a comment only\n" + RESUMABLE)
    code, out, err = run_main("train", f, "--resume", tmp_path / "r", "--epochs", "3")
    assert code == 0, err
    assert "resuming the run in" in out and len(records(tmp_path / "r")) == 3
    code, out, err = run_main("train", f, "--resume", tmp_path / "r")
    assert code == 0 and "nothing to resume" in out
    code, out, err = run_main("train", f, "--resume", tmp_path / "r", "--seed", "3")
    assert code == 2 and "--seed cannot be given with --resume" in err


# ------------------------------------------------------------------ divergence
DIVERGES = """model bad
input x[2]
target t[1]
param w[1, 2] = 1
z = w @ x
r = log(z)          # NaN where z <= 0
loss mse(r, t)
optimizer sgd(lr=0.01)
train {
  data = linear(n=100, features=2, seed=0)
  epochs = 3
}
"""


def test_divergence_stops_with_the_line_and_the_last_good_checkpoint(tmp_path, spawn):
    f = tmp_path / "bad.net"
    f.write_text(DIVERGES)
    p = spawn("train", f, "--out", tmp_path / "r")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 1 and "Traceback" not in err
    assert "error: training diverged at epoch 1, step 1" in err and "loss 'loss' is nan" in err
    assert f"{f}:6:5: note: the first non-finite value (nan) is computed by `log`" in err
    assert "    r = log(z)" in err
    assert f"last good checkpoint: {tmp_path / 'r' / 'last'} (epoch 0)" in err


# ------------------------------------------------------------------ data errors
TWO_CLASS = """model m
input x[2]
target y: class[2]
p = softmax(dense(x, 2))
loss cross_entropy(p, y)
optimizer sgd(lr=0.1)
train {
  data = csv("DATA", label="LABEL")
  epochs = 1
}
"""


@pytest.mark.parametrize("content, label, message", [
    ("a,b,c,y\n1,2,3,0\n4,5,6,1\n", "y", "each sample has shape [3] (3 values) but the model's input expects [2]"),
    ("a,b,y\n1,2,0\nnan,5,1\n", "y", "row 3, column 'a': 'nan' is not a finite number"),
    ("a,b,y\n1,2,0\n1,inf,1\n", "y", "row 3, column 'b': 'inf' is not a finite number"),
    ("a,b,y\n1,2,0\n3,4,1\n5,6,2\n", "y", "sample 2: label 2 is not a class id; class labels must be integers 0..1"),
    ("a,b,y\n1,2,0\n", "label", "no column 'label'"),
    ("", "y", "the file is empty"),
    ("a,b,y\n1,2\n", "y", "row 2 has 2 fields but the header has 3"),
])
def test_data_errors_name_the_file_and_row(tmp_path, run_main, content, label, message):
    data = tmp_path / "d.csv"
    data.write_text(content)
    f = tmp_path / "m.net"
    f.write_text(TWO_CLASS.replace("DATA", str(data)).replace("LABEL", label))
    code, out, err = run_main("train", f, "--out", tmp_path / "r")
    assert code == 2
    assert err.startswith("error: ") and "d.csv" in err and message in err, err
    assert "Traceback" not in err


def test_a_data_error_through_the_real_command_has_no_traceback(tmp_path, spawn):
    f = tmp_path / "m.net"
    f.write_text(TWO_CLASS.replace("DATA", str(tmp_path / "missing.csv")).replace("LABEL", "y"))
    p = spawn("train", f, "--out", tmp_path / "r")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and err.strip() == f"error: {tmp_path / 'missing.csv'}: file not found"


# ------------------------------------------------------------------ a real CSV file with class names
def test_digits_from_a_csv_with_class_names_match_the_bundled_set(tmp_path, run_main, example):
    from netc.runtime import data
    digits = data.load_digits()
    rows = [",".join([f"p{i}" for i in range(64)] + ["digit"])]
    rows += [",".join([repr(v) for v in x.tolist()] + [DIGIT_NAMES[c]]) for x, c in zip(digits.X, digits.y)]
    (tmp_path / "digits.csv").write_text("\n".join(rows) + "\n")
    src = open(example("digits")).read()
    assert "data    = digits" in src
    (tmp_path / "digits_csv.net").write_text(src.replace("data    = digits", 'data    = csv("digits.csv", label="digit")'))
    results = {}
    for name, f in (("bundled", example("digits")), ("csv", tmp_path / "digits_csv.net")):
        code, out, err = run_main("train", f, "--epochs", "15", "--out", tmp_path / name, "--quiet", "--json")
        assert code == 0, err
        results[name] = json.loads(out.strip().splitlines()[-1])
    a, b = results["bundled"]["test"]["accuracy"], results["csv"]["test"]["accuracy"]
    assert a >= 0.9 and b >= 0.9 and abs(a - b) <= 0.03, (a, b)
    meta = json.loads((tmp_path / "csv" / "last" / "model.json").read_text())
    assert meta["classes"] == sorted(DIGIT_NAMES)
    # predictions name the classes; eval maps the file's names to the model's classes
    code, out, err = run_main("predict", tmp_path / "csv", "--data", tmp_path / "digits.csv")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split(",")[:2] == ["p_eight", "p_five"] and lines[0].endswith(",class")
    predicted = [line.rsplit(",", 1)[1] for line in lines[1:]]
    assert np.mean([p == DIGIT_NAMES[c] for p, c in zip(predicted, digits.y)]) > 0.9
    few = tmp_path / "few.csv"
    few.write_text("\n".join([rows[0]] + [r for r in rows[1:] if r.endswith((",seven", ",one"))]) + "\n")
    code, out, err = run_main("eval", tmp_path / "csv", "--data", few, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["data"]["accuracy"] > 0.9
    cm = np.array(res["confusion_matrix"]["matrix"])
    classes = res["confusion_matrix"]["classes"]
    assert cm.sum() == (digits.y == 7).sum() + (digits.y == 1).sum()
    assert cm[classes.index("seven")].sum() == (digits.y == 7).sum()
