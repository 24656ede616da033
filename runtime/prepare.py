"""Data made ready for one model: string labels numbered by the model's class names, a loaded
data set renumbered by them, samples and targets checked against the model's input shape and
target (shapes, NaN, label range: runtime/data.py's `validate`), and the standardization
fitted on a training split and applied. Every problem raises DataError."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from netc.compiler.values import ModelIR

from . import data as D

Scaler = Tuple[np.ndarray, np.ndarray]          # (mean, std), float64


def fit_scaler(X, input_shape) -> Scaler:
    """Standardization (per input value: mean 0, std 1) fitted on the samples X. Constant
    features keep std 1."""
    X = np.asarray(X, np.float64).reshape((len(X),) + tuple(input_shape))
    if len(X) == 0:
        raise D.DataError("cannot standardize: the training set is empty")
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return mean, std


def label_ids(y, classes: Optional[List[str]], source: str) -> Tuple[np.ndarray, Optional[List[str]]]:
    """(class ids, class names): string labels numbered by `classes` (their sorted names when
    `classes` is None); other labels are returned as they are."""
    y = np.asarray(y)
    if y.dtype.kind not in "USO":
        return y, classes
    names = np.asarray([str(v) for v in y.reshape(-1)])
    if classes is None:
        classes = sorted(set(names.tolist()))
    index = {c: i for i, c in enumerate(classes)}
    bad = [i for i, v in enumerate(names) if v not in index]
    if bad:
        raise D.DataError(f"{source}: sample {bad[0]}: label '{names[bad[0]]}' is not one of the "
                          f"model's classes ({', '.join(classes)})")
    return np.array([index[v] for v in names], np.int64).reshape(y.shape), classes


NUMERIC = []          # as `classes`: a trained model whose labels were class ids, not names


def remap_classes(ds: D.Dataset, classes: Optional[List[str]]) -> D.Dataset:
    """A loaded data set whose string labels were numbered by its own sorted names, renumbered
    by the model's class names `classes` (which the training data fixed)."""
    if ds.classes is None or classes is None or ds.classes == classes:
        return ds
    if classes is NUMERIC:
        raise D.DataError(f"{ds.name}: has string labels ({', '.join(ds.classes[:4])}"
                          f"{', ...' if len(ds.classes) > 4 else ''}) but the model was trained on numeric "
                          f"class ids; give the data it was trained on, with numbers as labels")
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in ds.classes if c not in index]
    if unknown:
        row = int(np.argmax(np.asarray(ds.y) == ds.classes.index(unknown[0])))
        raise D.DataError(f"{ds.name}: {D.where(ds, row)}: label '{unknown[0]}' is not one of the model's "
                          f"classes ({', '.join(classes)})")
    table = np.array([index[c] for c in ds.classes], np.int64)
    return D.Dataset(ds.X, table[np.asarray(ds.y, np.int64)], list(classes), ds.name, ds.lines)


def prepare(X, y, ir: ModelIR, dtype, classes: Optional[List[str]], scaler: Optional[Scaler],
            source: str = "data", scale: bool = True) -> Tuple[D.Dataset, Optional[List[str]]]:
    """(the data set, the class names): arrays checked and converted for the model `ir` --
    targets of zeros when `y` is None, string labels numbered (learning `classes` when they
    are None) -- then, with `scale`, standardized by `scaler` and cast to `dtype`."""
    X = np.asarray(X)
    if y is None:
        y = np.zeros(len(X), np.int64) if ir.target is None or ir.target.kind == "class" \
            else np.zeros((len(X),) + ir.target.shape)
    t = ir.target
    kind = t.kind if t else "class"
    if len(X) == 0:            # an empty split: nothing to check
        ydt, yshape = (np.int64, ()) if kind == "class" else (dtype, t.shape)
        return D.Dataset(np.zeros((0,) + ir.input_shape, dtype), np.zeros((0,) + yshape, ydt), name=source), classes
    if kind == "class":
        y, classes = label_ids(y, classes, source)
    else:
        y = np.asarray(y)
    ds = D.Dataset(X, y, name=source)
    width = (t.classes if t.kind == "class" else int(np.prod(t.shape))) if t else max(int(ds.y.max(initial=0)) + 1, 1)
    # samples already in the model's dtype are checked as they are (not copied to float64 and
    # back); a read-only array is copied still (the kernels are compiled for writeable ones)
    same = scale and scaler is None and X.dtype == np.dtype(dtype) and X.flags.writeable
    ds = D.validate(ds, ir.input_shape, kind, width, source, dtype if same else np.float64)
    X = ds.X
    if not scale:
        return D.Dataset(X, ds.y, classes, ds.name), classes
    if scaler is not None:
        X = (X - scaler[0]) / scaler[1]
    with np.errstate(over="ignore", invalid="ignore"):      # values beyond the dtype: refused below
        X = np.ascontiguousarray(X, dtype)
        y = np.ascontiguousarray(ds.y, np.int64 if kind == "class" else dtype)
    for cast, orig, what in ((X, ds.X, "feature"), (y, ds.y, "target")):
        if cast.dtype.kind == "f" and not np.isfinite(cast).all():     # finite in float64, not in the model's dtype
            row, *col = D._first_bad(~np.isfinite(cast))
            raise D.DataError(f"{source}: sample {row}, {what} {col[0] if len(col) == 1 else col}: "
                              f"{orig[(row, *col)]:g}" + (" (standardized)" if what == "feature" and scaler else "")
                              + f" is beyond the range of {np.dtype(dtype).name} (about "
                              f"±{float(np.finfo(dtype).max):.3g})")
    return D.Dataset(X, y, classes, ds.name), classes
