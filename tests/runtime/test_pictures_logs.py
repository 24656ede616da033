"""Pictures and logs a student reads: `netc graph` (the file's names and lines, a forward view
by default, a PNG without Graphviz), `netc plot` (integer epoch ticks, the learning rate,
a confusion matrix, shaded decision regions with train/val/test markers), metrics.csv and
TensorBoard event files."""
import csv
import json
import os
import struct
import sys

import numpy as np
import pytest

from netc.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XOR = os.path.join(ROOT, "examples", "xor.net")
MOONS = os.path.join(ROOT, "examples", "moons.net")


def _has(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


TB = _has("tensorboardX") or (_has("torch.utils.tensorboard") and _has("tensorboard"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """moons for 3 epochs with --plot (and --tensorboard when a writer is installed)."""
    out = str(tmp_path_factory.mktemp("run") / "moons")
    argv = ["train", MOONS, "--epochs", "3", "--quiet", "--out", out, "--plot"] + (["--tensorboard"] if TB else [])
    assert main(argv) == 0
    return out


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the plotting code makes (kept open to be inspected)."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    kept, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    for f in kept:
        if f is not None:
            close(f)


# ------------------------------------------------------------------ logs
def test_metrics_csv_one_header_one_row_per_epoch_stable_columns(run):
    recs = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    text = open(os.path.join(run, "metrics.csv")).read()
    assert text.count("epoch,") == 1
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == len(recs) == 3
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "lr", "time"]
    for row, rec in zip(rows, recs):
        assert int(row["epoch"]) == rec["epoch"]
        assert float(row["loss"]) == rec["train"]["loss"] and float(row["val_accuracy"]) == rec["val"]["accuracy"]
        assert float(row["lr"]) == rec["lr"]


def _events(path):
    """The records of a TFRecord event file (length, crc, data, crc), decoded as Event protos."""
    try:
        from tensorboardX.proto.event_pb2 import Event
    except ImportError:
        from tensorboard.compat.proto.event_pb2 import Event
    out = []
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        ev = Event()
        ev.ParseFromString(data[i + 12:i + 12 + n])
        out.append(ev)
        i += 12 + n + 4
    return out


@pytest.mark.skipif(not TB, reason="neither tensorboardX nor PyTorch's tensorboard writer is installed")
def test_tensorboard_event_files_hold_the_epochs_as_keras_names_them(run):
    recs = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    got = {}
    for split in ("train", "validation"):
        d = os.path.join(run, "tensorboard", split)
        (name,) = [f for f in os.listdir(d) if "tfevents" in f]
        for ev in _events(os.path.join(d, name)):
            for v in ev.summary.value:
                got[(split, v.tag, ev.step)] = v.simple_value
    for rec in recs:
        e = rec["epoch"]
        assert got[("train", "epoch_loss", e)] == pytest.approx(rec["train"]["loss"], rel=1e-6)
        assert got[("validation", "epoch_accuracy", e)] == pytest.approx(rec["val"]["accuracy"], rel=1e-6)
        assert got[("train", "epoch_learning_rate", e)] == pytest.approx(rec["lr"])


def test_tensorboard_missing_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "r"
    assert main(["train", XOR, "--epochs", "1", "--quiet", "--out", str(out), "--tensorboard"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'netc[tensorboard]'" in err and "Traceback" not in err
    assert not out.exists()                      # checked before any run directory is made


# ------------------------------------------------------------------ plots
def test_plot_writes_lr_confusion_and_regions(run):
    for name in ("loss.png", "metrics.png", "confusion.png", "regions.png"):
        with open(os.path.join(run, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name


def test_plot_pictures_inspected(run, figures, tmp_path):
    from netc.runtime.plots import plot_run
    paths = plot_run(run, str(tmp_path))
    assert {os.path.basename(p) for p in paths} >= {"loss.png", "confusion.png", "regions.png"}
    loss_fig, metrics_fig, regions_fig, confusion_fig = [f for f in figures if f is not None][:4]
    loss_ax, lr_ax = loss_fig.axes[:2]
    assert lr_ax.get_ylabel() == "learning rate"
    for ax in (loss_ax, lr_ax, metrics_fig.axes[0]):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks      # whole epochs only
    legend = [t.get_text() for t in regions_fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("train (") for t in legend) and any(t.startswith("val (") for t in legend) \
        and any(t.startswith("test (") for t in legend)
    img = regions_fig.axes[0].get_images()[0].get_array()
    alpha = np.asarray(img)[..., 3]
    assert alpha.max() - alpha.min() > 0.3              # shaded by the probability, not flat
    counts = [int(t.get_text()) for t in confusion_fig.axes[0].texts]
    assert sum(counts) == 300                           # the test split of moons (15% of 2000)
    assert "test: 300 samples" in confusion_fig.axes[0].get_title()


# ------------------------------------------------------------------ graph
def test_graph_forward_view_with_names_and_lines(tmp_path, capsys):
    out = tmp_path / "g.dot"
    assert main(["graph", XOR, "-o", str(out)]) == 0
    dot = out.read_text()
    assert 'label="h_pre\\nadd [B, 3]\\n9: h_pre = W_h @ x + b_h"' in dot
    assert 'label="y_hat\\nsoftmax [B, 2]\\n12: y_hat = softmax(y_pre)"' in dot
    assert 'label="h\\nsigmoid [B, 3]\\n10: h = sigmoid(h_pre)"' in dot
    assert 'class="backward"' not in dot and 'class="update"' not in dot
    assert "forward pass and loss" in dot and "backward" not in dot.split("label=")[1].split(";")[0]
    trained = tmp_path / "t.dot"
    assert main(["graph", XOR, "--train", "-o", str(trained)]) == 0
    t = trained.read_text()
    assert 'class="backward"' in t and 'class="update"' in t and "train step: forward (blue), backward (red)" in t
    # the backward nodes carry the names of `show --stage grad --math`
    for label in ("∇_{y_pre} L\\nmul [B, 2]", "∇_{W_o} L\\nmatmul [2, 3]", "∇_{h} L\\nmatmul [B, 3]",
                  "∇_{h_pre} L\\nmul [B, 3]", "∇_{b_h} L\\nreduce_sum [3]"):
        assert f'label="{label}' in t, label
    pred = tmp_path / "p.dot"
    assert main(["graph", XOR, "--entry", "predict", "-o", str(pred)]) == 0
    p = pred.read_text()
    assert "predict: the forward pass only" in p and "onehot" not in p


def test_graph_png_without_graphviz(tmp_path, monkeypatch, capsys):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)     # no `dot` program
    out = tmp_path / "g.png"
    assert main(["graph", XOR, "--train", "-o", str(out)]) == 0
    assert "drawn with matplotlib" in capsys.readouterr().out
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg
    img = mpimg.imread(str(out))
    assert img.shape[0] > 400 and img.shape[1] > 400 and img.std() > 0.05      # a picture, not blank


def test_metrics_csv_follows_a_resumed_run(tmp_path):
    out = str(tmp_path / "xor")
    assert main(["train", XOR, "--epochs", "2", "--quiet", "--out", out]) == 0
    os.remove(os.path.join(out, "metrics.csv"))                 # a run from before metrics.csv
    assert main(["train", "--resume", out, "--epochs", "4", "--quiet"]) == 0
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    assert [int(r["epoch"]) for r in rows] == [r["epoch"] for r in recs] == [1, 2, 3, 4]
    assert [float(r["loss"]) for r in rows] == [r["train"]["loss"] for r in recs]
