"""`netc` in scripts and in a student's first session: --version, a closed pipe, --json alone
on stdout, command-line values checked like the file's, --set, every problem of a file in one
`check`, a hand-written loss without an output, the hint for a bare model, the validation
split named, and data errors that name the file's row (issue 13, "The command line")."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from netc.cli import _parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = """model tiny
input x[2]
target y: class[2]
p = softmax(dense(x, 2))
loss cross_entropy(p, y)
optimizer sgd(lr=0.5, momentum=0.9)
train {
  data = moons(n=200, seed=0)
  batch = 50
  epochs = 3
}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(the .net file, a finished run of it, a CSV of samples), shared by this file's tests."""
    d = tmp_path_factory.mktemp("scripting")
    f = d / "tiny.net"
    f.write_text(TINY)
    assert main(["train", str(f), "--out", str(d / "run"), "--quiet"]) == 0
    samples = d / "samples.csv"
    rows = np.random.default_rng(0).normal(size=(2000, 2))
    samples.write_text("a,b\n" + "".join(f"{a:.3f},{b:.3f}\n" for a, b in rows))
    return f, d / "run", samples


def closed_pipe(*argv, env=None):
    """`netc ARGV` writing into a pipe whose reader has gone (as `| head` leaves it once it
    has its lines): (status, stderr)."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "netc.cli", *map(str, argv)], stdout=w, stderr=subprocess.PIPE,
                           text=True, timeout=300, env=None if env is None else dict(os.environ, **env))
    finally:
        os.close(w)
    return p.returncode, p.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    import netc
    assert capsys.readouterr().out.strip() == f"netc {netc.__version__}"


def test_a_closed_pipe_ends_quietly(tiny, tmp_path):
    f, run, samples = tiny
    for argv in (("show", f), ("cache", "info"), ("predict", run, "--data", samples)):
        code, err = closed_pipe(*argv, env={"NETC_CACHE_DIR": str(tmp_path / "cache")})
        assert code == 141, (argv, code, err)     # 128 + SIGPIPE, as the shell reports a program SIGPIPE ended
        assert err == "", (argv, err)          # no traceback, no "error: Broken pipe"


def test_json_with_quiet_is_the_json_alone(tiny, tmp_path, run_main):
    f, _, _ = tiny
    code, out, err = run_main("train", f, "--out", tmp_path / "r", "--json", "--quiet", "--epochs", "2")
    assert code == 0, err
    res = json.loads(out)                      # the whole of stdout: `| python -m json.tool` works
    assert res["model"] == "tiny" and res["epochs"] == 2 and "accuracy" in res["train"]


@pytest.mark.parametrize("argv,message", [
    (("--seed", "-1"), "error: --seed must be >= 0, got -1"),
    (("--epochs", "-2"), "error: --epochs must be >= 0, got -2"),
    (("--batch", "0"), "--batch is a number >= 1 or 'full', got '0'"),
    (("--threads", "0"), "--threads must be at least 1"),
    (("--set", "train.seed=-1"), "--set train.seed=-1: error: 'seed' must be a whole number >= 0, got -1"),
])
def test_command_line_values_are_checked_like_the_files(argv, message, tiny, tmp_path, run_main):
    f, _, _ = tiny
    code, out, err = run_main("train", f, "--out", tmp_path / "r", *argv)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_check_reports_the_train_block_with_the_models_errors(tmp_path, run_main):
    f = tmp_path / "bad.net"
    f.write_text(TINY.replace("dense(x, 2)", "dense(xx, 2)").replace("moons(n=200", "moonz(n=200")
                 .replace("epochs = 3", "epochs = -3"))
    for cmd in ("check", "train"):
        code, out, err = run_main(cmd, f)
        assert code == 2, err
        assert "bad.net:4:19: error: unknown name 'xx'" in err
        assert "bad.net:8:3: error: unknown data source 'moonz'" in err and "did you mean 'moons'?" in err
        assert "bad.net:10:3: error: 'epochs' must be a whole number >= 0, got -3" in err
        assert "3 errors" in err


def test_set_overrides_any_key_and_the_run_keeps_what_was_trained(tiny, tmp_path, run_main):
    f, _, _ = tiny
    out_dir = tmp_path / "r"
    code, out, err = run_main("train", f, "--set", "optimizer.lr=0.01", "--set", "train.epochs=5",
                              "--set", "train.metrics=accuracy,f1", "--set", "optimizer.nesterov=true",
                              "--out", out_dir, "--json", "--quiet")
    assert code == 0, err
    res = json.loads(out)
    assert res["epochs"] == 5 and set(res["train"]) == {"loss", "accuracy", "f1"}
    trained = (out_dir / "tiny.net").read_text()           # the run's copy: the source as trained
    assert "optimizer sgd(lr=0.01, momentum=0.9, nesterov=true)" in trained and "epochs = 5" in trained
    assert "  metrics = accuracy,f1\n}" in trained and trained.count("\n") == TINY.count("\n") + 1
    settings = json.loads((out_dir / "settings.json").read_text())
    assert settings["settings"]["epochs"] == 5
    assert settings["set"] == ["optimizer.lr=0.01", "train.epochs=5", "train.metrics=accuracy,f1",
                               "optimizer.nesterov=true"]
    # a key the file lacks, the whole optimizer, a schedule the file lacks
    code, out, err = run_main("train", f, "--set", "train.split=0.5,0.5", "--set", "optimizer=adam(lr=0.01)",
                              "--set", "schedule=step(every=2, gamma=0.5)", "--set", "train.epochs=2",
                              "--out", tmp_path / "r2", "--json", "--quiet")
    assert code == 0, err
    assert set(json.loads(out)) >= {"train", "val"}
    trained = (tmp_path / "r2" / "tiny.net").read_text()
    assert "optimizer adam(lr=0.01)" in trained and "schedule step(every=2, gamma=0.5)" in trained
    # resuming with the file: the run's --set values are part of its source
    code, out, err = run_main("train", f, "--resume", out_dir, "--epochs", "6", "--quiet")
    assert code == 0, err


@pytest.mark.parametrize("sets,messages", [
    (["train.epochs=-5"], ["--set train.epochs=-5: error: 'epochs' must be a whole number >= 0, got -5"]),
    (["train.epoch=5"], ["--set train.epoch=5: error: unknown train setting 'epoch'", "did you mean 'epochs'?"]),
    (["optimizer.momentun=0.5"], ["--set optimizer.momentun=0.5: error: unknown argument 'momentun' of optimizer sgd",
                                  "did you mean 'momentum'?"]),
    (["optimizer.lr=-1", "train.data=moonz"], ["--set optimizer.lr=-1: error: 'lr' of sgd must not be negative",
                                               "--set train.data=moonz: error: unknown data source 'moonz'",
                                               "2 errors"]),
    (["lr=0.1"], ["--set lr=0.1: error: not a key of the file", "did you mean 'optimizer.lr'?"]),
    (["epochs=3"], ["did you mean 'train.epochs'?"]),
    (["train.epochs"], ["--set takes KEY=VALUE"]),
    (["schedule.gamma=0.5"], ["the file has no schedule statement", "--set schedule=cosine(epochs=100)"]),
    (["train.epochs=(3"], ["--set train.epochs=(3: error:"]),
])
def test_set_values_are_diagnosed_like_the_file(sets, messages, tiny, tmp_path, run_main):
    f, _, _ = tiny
    argv = [a for s in sets for a in ("--set", s)]
    for cmd in (("train", f, "--out", tmp_path / "r"), ("check", f)):
        code, out, err = run_main(*cmd, *argv)
        assert code == 2 and "Traceback" not in err, err
        for m in messages:
            assert m in err, (m, err)
    assert not (tmp_path / "r").exists()


def test_set_cannot_change_a_resumed_run(tiny, run_main):
    f, run, _ = tiny
    code, out, err = run_main("train", "--resume", run, "--set", "train.epochs=9")
    assert code == 2 and "--set cannot be given with --resume" in err


def test_threads_help_agrees_with_the_docs():
    help_text = next(a.help for a in _parser()._subparsers._group_actions[0].choices["train"]._actions
                     if "--threads" in a.option_strings)
    docs = open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8").read()
    row = next(line for line in docs.splitlines() if line.startswith("| `--threads N`"))
    assert "every core available to this process" in help_text and "NETC_THREADS" in help_text
    assert "every core available to this process" in row and "NETC_THREADS" in row
    assert "not kept busy" not in help_text


HAND = """model hand
input x[2]
target y: class[2]
param W[2, 2] = glorot
param b[2] = 0
p = softmax(W @ x + b)
loss -sum(onehot(y) * log(p))
optimizer sgd(lr=0.5)
train {
  data = moons(n=100)
  epochs = 2
}
"""


def test_a_hand_written_loss_without_output(tmp_path, run_main):
    """The output is inferred from a hand-written loss's named prediction; without one, check
    warns and train refuses at the loss (before: check passed silently, train crashed)."""
    f = tmp_path / "hand.net"
    f.write_text(HAND)
    code, out, err = run_main("check", f)
    assert code == 0, err
    code, out, err = run_main("train", f, "--out", tmp_path / "r", "--quiet", "--json")
    assert code == 0, err
    assert "accuracy" in json.loads(out)["train"]
    code, out, err = run_main("predict", tmp_path / "r", "--data", "moons(n=5)")
    assert code == 0 and len(out.strip().splitlines()) == 6, (out, err)        # a header and 5 rows
    f.write_text(HAND.replace("p = softmax(W @ x + b)\n", "").replace("log(p)", "softmax(W @ x + b)"))
    code, out, err = run_main("check", f)           # compiles; check warns at the loss
    assert code == 0 and "hand.net:6:1: warning: the model has no output" in err and "netc train needs one" in err
    code, out, err = run_main("train", f, "--out", tmp_path / "r2")
    assert code == 2 and "Traceback" not in err, err
    assert "hand.net:6:1: error: the model has no output" in err and "`output NAME`" in err


BARE = """model iris
input x[4]
target y: class[3]
p = softmax(dense(x, 3))
loss cross_entropy(p, y)
"""


@pytest.fixture(scope="module")
def iris_like(tmp_path_factory):
    d = tmp_path_factory.mktemp("iris")
    rng = np.random.default_rng(0)
    names = ["setosa", "versicolor", "virginica"]
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.5, 2.0]])
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for i in range(60):
        x = centers[i % 3] + rng.normal(0, 0.3, 4)
        lines.append(",".join(f"{v:.1f}" for v in x) + "," + names[i % 3])
    (d / "iris.csv").write_text("\n".join(lines) + "\n")
    (d / "iris.net").write_text(BARE)
    return d


def test_a_bare_model_on_a_csv_file_hears_the_defaults(iris_like, tmp_path, run_main):
    code, out, err = run_main("train", iris_like / "iris.net", "--data", iris_like / "iris.csv", "--out", tmp_path / "r")
    assert code == 0, err
    hint = next(line for line in out.splitlines() if line.startswith("hint:"))
    assert "10 epochs" in hint and "all 60 samples for training" in hint and "means up to" in hint
    assert "--set train.epochs=" in hint and "train.split=" in hint and "train.standardize=true" in hint
    # a file that chooses its settings is not told
    code, out, err = run_main("train", iris_like / "iris.net", "--data", iris_like / "iris.csv", "--out",
                              tmp_path / "r2", "--set", "train.epochs=2")
    assert code == 0 and "hint:" not in out, err


def test_a_two_way_split_names_its_second_part(iris_like, tmp_path, run_main):
    code, out, err = run_main("train", iris_like / "iris.net", "--data", iris_like / "iris.csv", "--out",
                              tmp_path / "r", "--set", "train.split=0.8,0.2", "--set", "train.epochs=2")
    assert code == 0, err
    assert "split = 0.8, 0.2: the second part is the validation split ('val')" in out
    assert re.search(r"^ +train +val$", out, re.M)


def test_data_errors_name_the_row_of_the_file(tiny, tmp_path, run_main):
    f, _, _ = tiny
    bad = tmp_path / "bad.csv"                 # the header is row 1; a blank line still counts
    bad.write_text("a,b,y\n1,2,0\n\n3,4,1\n5,6,2\n")
    code, out, err = run_main("train", f, "--data", bad, "--out", tmp_path / "r")
    assert code == 2 and "bad.csv: row 5, sample 2: label 2 is not a class id" in err, err
    bad.write_text("a,b,y\n1,2,0\n3,4,1\n\n5,1e40,1\n")       # finite in float64, not in float32
    code, out, err = run_main("train", f, "--data", bad, "--out", tmp_path / "r")
    assert code == 2 and "bad.csv: row 5, sample 2, feature 1: 1e+40 is beyond the range of float32" in err, err
    bad.write_text("a,b,y\n1,2,0\n3,4,1\n5,nan,1\n")          # the reader's own errors count the same way
    code, out, err = run_main("train", f, "--data", bad, "--out", tmp_path / "r")
    assert code == 2 and "bad.csv: row 4, column 'b'" in err, err
