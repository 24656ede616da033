"""Pictures of a training run (the `plot` extra: matplotlib), written as PNG files:

    loss.png      the training and validation loss per epoch (and each loss term of several),
                  and below it the learning rate of each epoch (schedules, warm-up)
    metrics.png   each metric per epoch, training and validation
    confusion.png for a classifier: the confusion matrix of the test split (else validation,
                  else training), counts and row shares
    regions.png   for a model of 2-D inputs: its decision regions shaded by the predicted
                  class's probability (or its output, for a real target) over the plane, with
                  the train / val / test points on top (circles, squares, triangles)

Epoch axes have integer ticks.
    filters.png   for a convolutional model: the learned filters of its first convolution as
                  an image grid (a row per filter, a column per input channel; one grid of
                  tiles for a single channel), each on a symmetric scale (white 0)
"""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np

from netc.dsl import UserError

from . import checkpoint
from .build import load
from .metrics import METRICS, confusion_matrix, predicted_labels
from .rundir import RunDir
from . import session


class PlotError(UserError):
    """Plotting is not possible: matplotlib is missing, or there is nothing to plot."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotError("plots need matplotlib: pip install 'netc[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _epoch_axis(ax) -> None:
    """Whole epochs on the x axis (no 2.5 on a short run)."""
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _series(records: List[dict], split: str, key: str):
    xs = [r["epoch"] for r in records if key in r.get(split, {})]
    ys = [r[split][key] for r in records if key in r.get(split, {})]
    return xs, ys


def plot_history(records: List[dict], out_dir: str, title: str = "", best_epoch: Optional[int] = None) -> List[str]:
    """loss.png and (when there are metrics) metrics.png from epoch records; returns the paths."""
    plt = _pyplot()
    if not records:
        raise PlotError("no epochs to plot (metrics.jsonl is empty)")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    train_keys = list(dict.fromkeys(k for r in records for k in r.get("train", {})))
    loss_terms = [k for k in train_keys if k != "loss" and any(k == t for t in _loss_like(records))]
    lrs = [(r["epoch"], r["lr"]) for r in records if r.get("lr") is not None]
    if lrs:
        fig, (ax, lax) = plt.subplots(2, 1, figsize=(6.4, 6.4), dpi=100, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.2]})
    else:
        fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    for split, style in (("train", "-"), ("val", "-")):
        xs, ys = _series(records, split, "loss")
        if xs:
            ax.plot(xs, ys, style, label=f"{split} loss")
    for term in loss_terms:
        xs, ys = _series(records, "train", term)
        ax.plot(xs, ys, "--", lw=1, label=f"train {term}")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", ls=":", label=f"best epoch {best_epoch}")
    _epoch_axis(ax)
    ax.set_ylabel("loss")
    if all(y > 0 for r in records for y in [r["train"]["loss"]]):
        ax.set_yscale("log")
    ax.set_title(f"{title} loss".strip())
    ax.grid(True, alpha=0.3)
    ax.legend()
    if lrs:
        ax.set_xlabel("")
        lax.plot([e for e, _ in lrs], [v for _, v in lrs], color="tab:purple", marker="." if len(lrs) < 30 else None)
        lax.set_ylabel("learning rate")
        lax.grid(True, alpha=0.3)
        lax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        _epoch_axis(lax)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "loss.png"))
    fig.savefig(paths[-1])
    plt.close(fig)

    metrics = [k for k in train_keys if k != "loss" and k not in loss_terms]
    metrics += [k for r in records for k in r.get("val", {}) if k not in metrics and k != "loss"
                and k not in loss_terms]
    metrics = list(dict.fromkeys(metrics))
    if metrics:
        cols = min(len(metrics), 2)
        rows = -(-len(metrics) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6.4 if cols == 1 else 9.6, 3.6 * rows), dpi=100, squeeze=False)
        for ax, m in zip(axes.ravel(), metrics):
            for split in ("train", "val"):
                xs, ys = _series(records, split, m)
                if xs:
                    ax.plot(xs, ys, label=split)
            if best_epoch is not None:
                ax.axvline(best_epoch, color="grey", ls=":")
            ax.set_title(m)
            _epoch_axis(ax)
            ax.grid(True, alpha=0.3)
            ax.legend()
        for ax in axes.ravel()[len(metrics):]:
            ax.axis("off")
        fig.suptitle(f"{title} metrics".strip())
        fig.tight_layout()
        paths.append(os.path.join(out_dir, "metrics.png"))
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def _loss_like(records: List[dict]) -> List[str]:
    """Loss term names: keys present in every train record that are not metric names."""
    keys = set(records[0].get("train", {}))
    return [k for k in keys if k not in METRICS and k != "loss"]


SPLIT_MARKERS = (("train", "o"), ("val", "s"), ("test", "^"))


def plot_regions(model, X: np.ndarray, y: np.ndarray, path: str, title: str = "",
                 resolution: int = 300, part: Optional[np.ndarray] = None) -> Optional[str]:
    """The decision regions of a model of 2-D inputs (X raw, unstandardized) with the points
    (X, y) on top; for a real target, the model's output as colours. A classifier's regions
    are shaded by the predicted class's probability (pale where the model is unsure) with its
    decision boundaries drawn; `part` (0 train, 1 val, 2 test per point) picks each point's
    marker. None if the input is not 2-D."""
    if tuple(model.ir.input_shape) != (2,) or not model.artifact.has_predict:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    X = np.asarray(X, np.float64).reshape(len(X), 2)
    part = np.zeros(len(X), np.int64) if part is None else np.asarray(part).reshape(len(X))
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-9)
    g0, g1 = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution))
    grid = np.c_[g0.ravel(), g1.ravel()]
    out = model.predict(grid)
    fig, ax = plt.subplots(figsize=(6.8, 5.8), dpi=100)
    classifier = model.is_classifier()
    y = np.asarray(y)
    extent = (g0.min(), g0.max(), g1.min(), g1.max())
    if classifier:
        labels = predicted_labels(out).reshape(g0.shape)
        k = model.num_classes()
        cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
        probs = np.asarray(out, np.float64).reshape(len(grid), -1)
        if probs.shape[1] == 1:                           # one sigmoid output: p and 1 - p
            probs = np.c_[1 - probs[:, 0], probs[:, 0]]
        conf = probs.max(axis=1).reshape(g0.shape)
        floor = 1.0 / max(probs.shape[1], 2)
        strength = np.clip((conf - floor) / (1 - floor), 0, 1)       # 0: a coin toss, 1: certain
        rgba = np.array([cmap(c) for c in range(k)])[labels]
        rgba[..., 3] = 0.08 + 0.5 * strength
        ax.imshow(rgba, origin="lower", extent=extent, aspect="auto", interpolation="bilinear")
        ax.contour(g0, g1, labels, levels=np.arange(k) + 0.5, colors="k", linewidths=0.8)
        yy = y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
        ids = (yy > 0.5).astype(int) if yy.dtype.kind == "f" else yy.astype(int)
        names = model.classes or [str(i) for i in range(k)]
        for j, (split, marker) in enumerate(SPLIT_MARKERS):
            on = part == j
            for c in np.unique(ids[on]):
                sel = on & (ids == c)
                ax.scatter(X[sel, 0], X[sel, 1], s=14 if j == 0 else 22, marker=marker, color=cmap(c),
                           edgecolors="k", linewidths=0.35 if j == 0 else 0.8)
        handles = [Line2D([], [], ls="", marker="o", color=cmap(c), markeredgecolor="k",
                          label=names[c] if c < len(names) else str(c)) for c in range(k)]
        handles += [Line2D([], [], ls="", marker=m, color="white", markeredgecolor="k",
                           label=f"{split} ({int(np.sum(part == j))})")
                    for j, (split, m) in enumerate(SPLIT_MARKERS) if np.any(part == j)]
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.8)
        sm = plt.cm.ScalarMappable(cmap="Greys", norm=plt.Normalize(floor, 1.0))
        fig.colorbar(sm, ax=ax, label="probability of the predicted class (shading)", fraction=0.046)
    else:
        v = out.reshape(len(grid), -1)[:, 0].reshape(g0.shape)
        cs = ax.contourf(g0, g1, v, levels=30, cmap="viridis", alpha=0.8)
        fig.colorbar(cs, ax=ax, label=model.ir.output_name)
        yy = y.reshape(len(y), -1)[:, 0]
        for j, (split, marker) in enumerate(SPLIT_MARKERS):
            sel = part == j
            if np.any(sel):
                ax.scatter(X[sel, 0], X[sel, 1], c=yy[sel], cmap="viridis", norm=cs.norm, s=14, marker=marker,
                           edgecolors="k", linewidths=0.4, label=f"{split} ({int(sel.sum())})")
        ax.legend(loc="best", fontsize="small")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel(f"{model.ir.input_name}[0]")
    ax.set_ylabel(f"{model.ir.input_name}[1]")
    ax.set_title(f"{title} decision regions".strip() if classifier else f"{title} output".strip())
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion(model, X: np.ndarray, y: np.ndarray, path: str, title: str = "", split: str = "") -> Optional[str]:
    """The confusion matrix of a classifier on (X raw, y class ids) as a picture: counts, and
    each row's share as the colour (rows: true class, columns: predicted). None for a
    regression model or no samples."""
    if not model.is_classifier() or not model.artifact.has_predict or len(X) == 0:
        return None
    y = np.asarray(y)
    if y.dtype.kind == "f":
        if y.ndim > 1 and y.shape[-1] > 1:
            return None                                   # one-hot / probability rows: no labels
        y = (y.reshape(len(y), -1)[:, 0] > 0.5).astype(np.int64)
    plt = _pyplot()
    k = max(model.num_classes(), 2)
    pred = predicted_labels(model.predict(X))
    cm = confusion_matrix(y.reshape(len(y)), pred, k)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    names = model.classes or [str(i) for i in range(k)]
    side = min(12.0, 3.2 + 0.55 * k)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), dpi=100)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if k <= 20:
                ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=9 if k <= 10 else 7,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names[:k], rotation=45 if max(len(n) for n in names[:k]) > 3 else 0, ha="right"
                       if max(len(n) for n in names[:k]) > 3 else "center")
    ax.set_yticklabels(names[:k])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} confusion matrix ({split}: {cm.sum()} samples, accuracy {acc:.3f})".replace("( ", "(").strip())
    fig.colorbar(im, ax=ax, label="share of the true class", fraction=0.046)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def first_filters(model) -> Optional[tuple]:
    """(name, array [n, C, kh, kw]) of the model's first convolution kernel (its first param
    of rank 4, as declared or created), or None."""
    for p in model.ir.params:
        if len(p.shape) == 4:
            return p.name, np.asarray(model.params[p.name], np.float64)
    return None


def plot_filters(model, path: str, title: str = "", max_filters: int = 64, max_channels: int = 8) -> Optional[str]:
    """The first convolution's filters as an image grid (None for a model without one)."""
    found = first_filters(model)
    if found is None:
        return None
    name, W = found
    plt = _pyplot()
    n, C = min(W.shape[0], max_filters), min(W.shape[1], max_channels)
    tiles = [(f, c) for f in range(n) for c in range(C)]
    cols = C if C > 1 else int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(len(tiles) / cols))
    side = max(0.45, min(1.2, 8.0 / max(cols, rows)))
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.5, cols * side + 1.2), max(3.5, rows * side + 0.8)),
                             dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (f, c) in enumerate(tiles):
        ax = axes.ravel()[k]
        w = W[f, c]
        lim = max(float(np.abs(W[f]).max()), 1e-12)         # one scale per filter, 0 is white
        ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        if C > 1 and f == 0:
            ax.set_title(f"ch {c}", fontsize="small")
        if k % cols == 0 and C > 1:
            ax.text(-0.6, (w.shape[0] - 1) / 2, str(f), ha="right", va="center", fontsize="small")
    shown = f"{n} of {W.shape[0]} filters" if n < W.shape[0] else f"{n} filters"
    fig.suptitle(f"{title} {name}: {shown} {W.shape[2]}x{W.shape[3]}".strip(), fontsize="medium")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_run(run_path: str, out_dir: Optional[str] = None, model=None, data=None) -> List[str]:
    """Every plot of a run directory (into `out_dir`, default the run directory). `model` and
    `data` (X, y raw, and optionally the split of each sample: 0 train, 1 val, 2 test) are
    loaded from the run's checkpoint and settings (cut as the run's split) when not given."""
    rd = RunDir(run_path)
    out_dir = out_dir or rd.path
    records = rd.records()
    best_epoch = None
    try:
        doc = rd.read_settings()
    except checkpoint.CheckpointError:
        doc = {}
    if model is None:
        model = load(rd.path)
    if (doc.get("settings") or {}).get("stop"):
        best = [r for r in records if r.get("epoch")]
        if best:
            try:
                meta, _ = checkpoint.read(rd.best)
                best_epoch = (meta.get("training") or {}).get("epoch_of")
            except checkpoint.CheckpointError:
                best_epoch = None
    if not records:
        raise PlotError(f"{rd.shown}: no epochs to plot (metrics.jsonl is empty)")
    paths = plot_history(records, out_dir, model.name, best_epoch)
    p = plot_filters(model, os.path.join(out_dir, "filters.png"), model.name)
    if p:
        paths.append(p)
    if model.ir.target is not None and (tuple(model.ir.input_shape) == (2,) or model.is_classifier()):
        if data is None:
            spec = (doc.get("settings") or {}).get("data")
            if spec is not None:
                parts = session.split(model, session.load_dataset(model, spec))
                data = (np.concatenate([d.X for d in parts]), np.concatenate([d.y for d in parts]),
                        np.repeat(np.arange(3), [len(d.X) for d in parts]))
        if data is not None:
            part = data[2] if len(data) > 2 else np.zeros(len(data[0]), np.int64)
            p = plot_regions(model, data[0], data[1], os.path.join(out_dir, "regions.png"), model.name, part=part)
            if p:
                paths.append(p)
            for j, name in ((2, "test"), (1, "val"), (0, "train")):
                if np.any(part == j):
                    p = plot_confusion(model, data[0][part == j], data[1][part == j],
                                       os.path.join(out_dir, "confusion.png"), model.name, name)
                    if p:
                        paths.append(p)
                    break
    return paths
