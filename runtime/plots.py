"""Pictures of a training run (the `plot` extra: matplotlib), written as PNG files:

    loss.png      the training and validation loss per epoch (and each loss term of several)
    metrics.png   each metric per epoch, training and validation
    regions.png   for a model of 2-D inputs: its decision regions (or its output, for a real
                  target) over the plane, with the data points on top
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
from .metrics import METRICS, predicted_labels
from .rundir import RunDir
from .session import load_dataset


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
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if all(y > 0 for r in records for y in [r["train"]["loss"]]):
        ax.set_yscale("log")
    ax.set_title(f"{title} loss".strip())
    ax.grid(True, alpha=0.3)
    ax.legend()
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
            ax.set_xlabel("epoch")
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


def plot_regions(model, X: np.ndarray, y: np.ndarray, path: str, title: str = "",
                 resolution: int = 300) -> Optional[str]:
    """The decision regions of a model of 2-D inputs (X raw, unstandardized) with the points
    (X, y) on top; for a real target, the model's output as colours. None if the input is not 2-D."""
    if tuple(model.ir.input_shape) != (2,) or not model.artifact.has_predict:
        return None
    plt = _pyplot()
    X = np.asarray(X, np.float64).reshape(len(X), 2)
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-9)
    g0, g1 = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution))
    grid = np.c_[g0.ravel(), g1.ravel()]
    out = model.predict(grid)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    classifier = model.is_classifier()
    y = np.asarray(y)
    if classifier:
        labels = predicted_labels(out).reshape(g0.shape)
        k = model.num_classes()
        cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
        ax.contourf(g0, g1, labels, levels=np.arange(k + 1) - 0.5, cmap=cmap, alpha=0.3, vmin=-0.5,
                    vmax=(10 if k <= 10 else 20) - 0.5)
        if out.ndim == 2 and out.shape[1] <= 2:        # the 0.5 boundary of a binary classifier
            p1 = (out[:, -1]).reshape(g0.shape)
            ax.contour(g0, g1, p1, levels=[0.5], colors="k", linewidths=1)
        yy = y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
        ids = (yy > 0.5).astype(int) if yy.dtype.kind == "f" else yy.astype(int)
        names = model.classes or [str(i) for i in range(k)]
        for c in np.unique(ids):
            sel = ids == c
            ax.scatter(X[sel, 0], X[sel, 1], s=10, color=cmap(c), edgecolors="k", linewidths=0.3,
                       label=names[c] if c < len(names) else str(c))
        ax.legend(loc="best", fontsize="small")
    else:
        v = out.reshape(len(grid), -1)[:, 0].reshape(g0.shape)
        cs = ax.contourf(g0, g1, v, levels=30, cmap="viridis", alpha=0.8)
        fig.colorbar(cs, ax=ax, label=model.ir.output_name)
        yy = y.reshape(len(y), -1)[:, 0]
        ax.scatter(X[:, 0], X[:, 1], c=yy, cmap="viridis", norm=cs.norm, s=12, edgecolors="k", linewidths=0.4)
    ax.set_xlabel(f"{model.ir.input_name}[0]")
    ax.set_ylabel(f"{model.ir.input_name}[1]")
    ax.set_title(f"{title} decision regions".strip() if classifier else f"{title} output".strip())
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
    `data` (X, y raw) are loaded from the run's checkpoint and settings when not given."""
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
    if tuple(model.ir.input_shape) == (2,) and model.ir.target is not None:
        if data is None:
            spec = (doc.get("settings") or {}).get("data")
            if spec is not None:
                ds = load_dataset(model, spec)
                data = (ds.X, ds.y)
        if data is not None:
            p = plot_regions(model, data[0], data[1], os.path.join(out_dir, "regions.png"), model.name)
            if p:
                paths.append(p)
    return paths
