"""Inputs without labels for `netc predict`, and the predictions written as CSV."""
from __future__ import annotations

import csv
import math
from typing import List, Optional

import numpy as np

from netc.compiler.files import read_arrays

from . import data as D
from .settings import load_spec


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def read_features_csv(path: str, width: int, label=None, known_label=None) -> np.ndarray:
    """The samples of a CSV file, (n, width) float64. A header row is optional. A label column
    is dropped when `label` (name or index) names it, or when the file has one column more
    than the model takes and `known_label` (the training file's label column) or else the
    last column is it. Errors name the file, row and column."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise D.DataError(f"{source}: file not found") from None
    except OSError as e:
        raise D.DataError(f"{source}: cannot read the file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise D.DataError(f"{source}: not a UTF-8 text file (byte {e.start})") from None
    first = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    rows = D.csv_records(text, delimiter, source)
    if not rows:
        raise D.DataError(f"{source}: the file is empty")
    header = None
    if any(_number(c) is None for c in rows[0][1]):
        header = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise D.DataError(f"{source}: no data rows after the header")
    ncol = len(header) if header else len(rows[0][1])
    names = header or [str(j) for j in range(ncol)]
    drop = None
    if label is not None:
        if isinstance(label, int):
            if not -ncol <= label < ncol:
                raise D.DataError(f"{source}: label column index {label} is out of range ({ncol} columns)")
            drop = label % ncol
        elif header and label in header:
            drop = header.index(label)
        else:
            raise D.DataError(f"{source}: no column '{label}'" + (f"; columns: {', '.join(header)}" if header else
                                                                    " (the file has no header row)"))
    elif ncol == width + 1:
        drop = header.index(known_label) if header and isinstance(known_label, str) and known_label in header \
            else (known_label % ncol if isinstance(known_label, int) else ncol - 1)
    keep = [j for j in range(ncol) if j != drop]
    if len(keep) != width:
        raise D.DataError(f"{source}: {len(keep)} feature columns but the model takes {width} input values"
                          + (f" (dropped the label column '{names[drop]}')" if drop is not None else ""))
    out = np.empty((len(rows), width))
    for i, (line, rec) in enumerate(rows):
        if len(rec) != ncol:
            raise D.DataError(f"{source}: row {line} has {len(rec)} fields but {'the header has' if header else 'row 1 has'} {ncol}")
        for k, j in enumerate(keep):
            cell = rec[j].strip()
            v = _number(cell)
            if v is None or not math.isfinite(v):
                problem = "is empty" if not cell else f"'{cell}' is not a {'finite ' if v is not None else ''}number"
                raise D.DataError(f"{source}: row {line}, column '{names[j]}': {problem}")
            out[i, k] = v
    return out


def read_features(spec: dict, width: int, known_label=None) -> np.ndarray:
    """Samples for prediction from a data spec (see settings.parse_data_arg); labels, if the
    source has them, are ignored."""
    path = spec["args"][0] if spec["args"] else None
    if spec["source"] == "csv":
        return read_features_csv(path, width, spec["kwargs"].get("label"), known_label)
    if spec["source"] in ("npz", "npy"):
        z = read_arrays(path, D.DataError)
        if isinstance(z, np.ndarray):
            X = z
        else:
            key = next((k for k in ("X", "x", "images") if k in z), None)
            if key is None and len(z) == 1:
                key = next(iter(z))
            if key is None:
                raise D.DataError(f"{path}: expected an array named X (or x, images); found {', '.join(z)}")
            X = z[key]
        if X.dtype.kind not in "biuf" or X.ndim == 0:
            raise D.DataError(f"{path}: samples must be a numeric array, got dtype {X.dtype} shape {X.shape}")
        X = X.reshape(len(X), -1).astype(np.float64) if X.ndim > 1 else X.reshape(len(X), 1).astype(np.float64)
        if X.shape[1] == width + 1:
            X = X[:, :-1]
        return X
    return load_spec(spec).X


def columns(model) -> List[str]:
    """The CSV columns of predictions: p_<class> per class then `class` for a classifier, the
    output's values otherwise."""
    out_shape = model.ir.graph.shape(model.ir.output)[1:]
    width = int(np.prod(out_shape)) if out_shape else 1
    if model.is_classifier():
        k = model.num_classes()
        names = model.classes or [str(i) for i in range(k)]
        return [f"p_{n}" for n in names] + ["class"]
    name = model.ir.output_name
    return [name] if width == 1 else [f"{name}_{i}" for i in range(width)]


def write_predictions(model, X: np.ndarray, out) -> int:
    """Write the predictions of the samples X (raw) as CSV to the open file `out`; returns the
    number of rows."""
    fmt = "%.9g" if model.dtype == np.float32 else "%.17g"
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns(model))
    if model.is_classifier():
        proba = model.predict_proba(X)
        cls = proba.argmax(axis=1)
        names = model.classes
        for p, c in zip(proba, cls):
            w.writerow([fmt % v for v in p] + [names[c] if names else int(c)])
    else:
        out_ = model.predict(X).reshape(len(X), -1)
        for row in out_:
            w.writerow([fmt % v for v in row])
    return len(X)
