"""Evaluation metrics, in NumPy and float64: the names a ``train`` block's ``metrics`` accepts.

The functions at the top take plain arrays (``accuracy``, ``confusion_matrix``,
``precision_recall_f1``, ``mse``, ``mae``, ``r2``) and agree with ``sklearn.metrics``.
``METRICS`` is the registry of metric names; each entry is called on the model's raw output
for a target kind, and ``compute`` evaluates a list of names at once.

Conventions:

- a model's class output is ``(n, C)`` probabilities (the prediction is the argmax) or, for
  a sigmoid output, ``(n, 1)``: the probability of class 1, predicted when it is > 0.5 (as
  Keras' ``binary_accuracy``);
- precision, recall and F1 are macro averages over all ``num_classes`` classes, as
  ``sklearn``'s ``average="macro", zero_division=0`` with ``labels=range(num_classes)``:
  a class never predicted has precision 0, a class absent from the targets has recall 0;
- ``r2`` is the uniform average of the per-column R² (``sklearn``'s default); a column with
  constant targets scores 1.0 if predicted exactly and 0.0 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from netc.dsl import UserError, did_you_mean

TARGET_KINDS = ("class", "real")


class MetricError(UserError, ValueError):
    """A metric that does not exist, or does not fit the targets and predictions given."""


def _class_ids(a: np.ndarray, what: str) -> np.ndarray:
    """A 1-D array of integral values as int64 class ids."""
    if a.dtype.kind not in "iub":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise MetricError(f"{what} must be class ids (integers), or probabilities of shape "
                             f"(n, C) or (n, 1)")
    return a.astype(np.int64)


def predicted_labels(output) -> np.ndarray:
    """Class ids from a model output: ``(n,)`` ids as they are, ``(n, 1)`` probabilities of
    class 1 thresholded at 0.5, ``(n, C)`` probabilities by argmax."""
    out = np.asarray(output)
    if out.ndim == 1:
        return _class_ids(out, "predictions")
    if out.ndim == 2:
        if out.shape[1] == 1:
            return (out[:, 0] > 0.5).astype(np.int64)
        return np.argmax(out, axis=1).astype(np.int64)
    raise MetricError(f"predictions must have shape (n,) or (n, C), got {out.shape}")


def true_labels(y_true) -> np.ndarray:
    """Class ids from targets: ``(n,)`` or ``(n, 1)`` ids, or ``(n, C)`` one-hot rows."""
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        return _class_ids(y, "targets")
    if y.ndim == 2:
        return np.argmax(y, axis=1).astype(np.int64)
    raise MetricError(f"class targets must have shape (n,) or (n, C), got {y.shape}")


def _label_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = true_labels(y_true), predicted_labels(y_pred)
    if t.shape != p.shape:
        raise MetricError(f"{t.shape[0]} targets but {p.shape[0]} predictions")
    return t, p


def accuracy(y_true, proba_or_pred) -> float:
    """The fraction of samples whose predicted class is the true class."""
    t, p = _label_pair(y_true, proba_or_pred)
    if t.size == 0:
        raise MetricError("accuracy of no samples")
    return float(np.mean(t == p))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts: rows are true classes, columns predicted."""
    t, p = _label_pair(y_true, y_pred)
    for ids, what in ((t, "target"), (p, "predicted")):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise MetricError(f"{what} class ids must be in 0..{num_classes - 1}, "
                             f"got {ids.min()}..{ids.max()}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, 0 where ``den`` is 0."""
    return np.divide(num, den, out=np.zeros(num.shape), where=den != 0)


def precision_recall_f1(y_true, y_pred, num_classes: int) -> tuple[float, float, float]:
    """Macro-averaged precision, recall and F1 (the mean of the per-class F1 scores)."""
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(cm)
    precision = _safe_ratio(tp, cm.sum(axis=0))
    recall = _safe_ratio(tp, cm.sum(axis=1))
    f1 = _safe_ratio(2.0 * precision * recall, precision + recall)
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def _value_pair(y, yhat) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions as float64 ``(n, k)`` arrays of the same shape."""
    y, yhat = np.asarray(y, dtype=np.float64), np.asarray(yhat, dtype=np.float64)
    if y.size != yhat.size or y.shape[:1] != yhat.shape[:1]:
        raise MetricError(f"targets of shape {y.shape} but predictions of shape {yhat.shape}")
    if y.size == 0:
        raise MetricError("a metric of no samples")
    return y.reshape(len(y), -1), yhat.reshape(len(yhat), -1)


def mse(y, yhat) -> float:
    """Mean squared error over all samples and outputs."""
    y, yhat = _value_pair(y, yhat)
    return float(np.mean((y - yhat) ** 2))


def mae(y, yhat) -> float:
    """Mean absolute error over all samples and outputs."""
    y, yhat = _value_pair(y, yhat)
    return float(np.mean(np.abs(y - yhat)))


def r2(y, yhat) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``, averaged over output columns."""
    y, yhat = _value_pair(y, yhat)
    ss_res = np.sum((y - yhat) ** 2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    constant = np.where(ss_res == 0, 1.0, 0.0)
    return float(np.mean(np.where(ss_tot == 0, constant, 1.0 - _safe_ratio(ss_res, ss_tot))))


def _check_kind(target_kind: str) -> None:
    if target_kind not in TARGET_KINDS:
        raise MetricError(f"target kind must be one of {', '.join(TARGET_KINDS)}, "
                         f"got {target_kind!r}")


@dataclass(frozen=True)
class Metric:
    """A metric usable by name in a ``train`` block.

    ``on`` says what ``fn`` takes: ``"labels"`` (true ids, predicted ids, number of classes),
    for class targets or a single 0/1 real output; ``"values"`` (targets, predictions), for
    real targets. ``greater_is_better`` tells early stopping and ``plateau`` which way is up.
    """

    name: str
    on: str
    greater_is_better: bool
    fn: Callable[..., float]

    def __call__(self, y_true, output, target_kind: str, num_classes: int | None = None) -> float:
        """The metric of a model's ``output`` against ``y_true`` (see ``compute``)."""
        _check_kind(target_kind)
        if self.on == "values":
            if target_kind != "real":
                raise MetricError(f"metric {self.name!r} is for real-valued targets, "
                                 f"not class targets")
            return self.fn(y_true, output)
        if target_kind == "class":
            out = np.asarray(output)
            width = out.shape[1] if out.ndim == 2 else None
            if num_classes is None:
                num_classes = 2 if width in (None, 1) else width
            if width == 1 and num_classes != 2:
                raise MetricError(f"a single probability output needs 2 classes, "
                                 f"not {num_classes}")
            return self.fn(y_true, out, num_classes)
        # a real target read as 0/1: the sigmoid output of a binary classifier
        y, out = _value_pair(y_true, output)
        if y.shape[1] != 1:
            raise MetricError(f"metric {self.name!r} on a real target needs a single 0/1 "
                             f"column, got {y.shape[1]}")
        return self.fn((y[:, 0] > 0.5).astype(np.int64), out, 2)


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "labels", True, lambda t, p, c: accuracy(t, p)),
    Metric("precision", "labels", True, lambda t, p, c: precision_recall_f1(t, p, c)[0]),
    Metric("recall", "labels", True, lambda t, p, c: precision_recall_f1(t, p, c)[1]),
    Metric("f1", "labels", True, lambda t, p, c: precision_recall_f1(t, p, c)[2]),
    Metric("mse", "values", False, mse),
    Metric("mae", "values", False, mae),
    Metric("r2", "values", True, r2),
)}


def check_names(names) -> None:
    """Raise ``MetricError`` (a ValueError) naming the first unknown metric, with a did-you-mean."""
    for name in names:
        if name not in METRICS:
            hint = did_you_mean(name, METRICS)
            hint = f" ({hint})" if hint else ""
            raise MetricError(f"unknown metric {name!r}{hint}; metrics: {', '.join(METRICS)}")


def compute(names, y_true, output, target_kind: str,
            num_classes: int | None = None) -> dict[str, float]:
    """The metrics ``names`` of a model's ``output`` against ``y_true``.

    ``target_kind="class"``: ``y_true`` holds class ids (or one-hot rows) and ``output`` is
    ``(n, C)`` probabilities, or ``(n, 1)`` the probability of class 1 of 2; ``num_classes``
    defaults to what the output's shape says. ``target_kind="real"``: ``output`` is
    ``(n, k)`` like ``y_true``; the class metrics then apply to a single 0/1 column (both
    sides thresholded at 0.5).
    """
    return compute_epochs(names, np.asarray(y_true)[None], np.asarray(output)[None], target_kind, num_classes)[0]


def compute_epochs(names, ys, outputs, target_kind: str,
                   num_classes: int | None = None) -> list[dict[str, float]]:
    """``compute`` of each of several epochs' outputs at once: ``outputs[e]`` against
    ``ys[e]``, a dict per epoch, the same values. The accuracy of class ids against ``(n, C)``
    or ``(n, 1)`` probabilities is counted for all epochs in one pass; the other metrics are
    computed epoch by epoch."""
    check_names(names)
    res: list[dict[str, float]] = [{} for _ in range(len(outputs))]
    for name in names:
        vals = _accuracy_epochs(ys, outputs, num_classes) \
            if name == "accuracy" and target_kind == "class" else None
        if vals is None:
            vals = [METRICS[name](y, out, target_kind, num_classes) for y, out in zip(ys, outputs)]
        for d, v in zip(res, vals):
            d[name] = v
    return res


def _accuracy_epochs(ys, outputs, num_classes: int | None):
    """The accuracies of epochs of class ids ``ys`` [epochs, n] (or [epochs, n, 1]) against
    probabilities ``outputs`` [epochs, n, C] (or [epochs, n, 1]), as ``accuracy`` gives them;
    None where that case is not this one (``compute`` then checks and says why)."""
    y, out = np.asarray(ys), np.asarray(outputs)
    if y.ndim == 3 and y.shape[2] == 1:
        y = y[..., 0]
    if out.ndim != 3 or y.ndim != 2 or y.dtype.kind not in "iu" or y.shape != out.shape[:2] or y.shape[1] == 0 \
            or (out.shape[2] == 1 and num_classes not in (None, 2)):
        return None
    if out.shape[2] == 1:
        pred = out[..., 0] > 0.5
    elif out.shape[2] == 2:          # argmax of two (the first of equals, NaN counting as largest), faster
        a, b = out[..., 0], out[..., 1]
        pred = (b > a) | (np.isnan(b) & ~np.isnan(a))
    else:
        pred = np.argmax(out, axis=2)
    n = y.shape[1]
    return [float(c / n) for c in (y == pred).sum(axis=1)]


def default_metrics(target_kind: str) -> list[str]:
    """What a training reports when its ``train`` block names no metrics."""
    _check_kind(target_kind)
    return ["accuracy"] if target_kind == "class" else ["mse", "r2"]
