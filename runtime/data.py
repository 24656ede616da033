"""Data for training: built-in generators, the bundled digits set, file loaders, checks and splits.

Every function returns a :class:`Dataset`. Loaders keep the data as the file holds it;
:func:`validate` then fits it to a model's input shape and target, and :func:`split` cuts it
into train / validation / test sets. Any problem in the user's data raises :class:`DataError`,
whose message starts with the file path (or the generator's name) and names the offending
row, column or sample.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import numbers
import struct
import warnings
import zlib
from dataclasses import dataclass
from inspect import signature
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from netc.compiler.files import read_arrays
from netc.dsl import UserError, did_you_mean

__all__ = [
    "DataError", "Dataset", "GENERATORS", "generate", "load_digits", "load_mnist", "load_csv", "load_npz",
    "load_idx", "validate", "split", "where",
]

_DIGITS_PATH = Path(__file__).resolve().parent / "datasets" / "digits.npz"
_MNIST_PATH = Path(__file__).resolve().parent / "datasets" / "mnist.npz"


class DataError(UserError):
    """A problem in the user's data; the message names the file (or generator) and the row."""


@dataclass
class Dataset:
    """Samples ``X`` with their targets ``y``.

    ``X`` is float64 of shape ``(n, *feature_shape)``; ``y`` is int64 ``(n,)`` for class
    labels or float64 ``(n, k)`` for real targets. ``classes`` holds the class names when the
    labels were read as strings (index = class id).
    """

    X: np.ndarray
    y: np.ndarray
    classes: list[str] | None = None
    name: str = ""
    lines: np.ndarray | None = None      # each sample's line in its text file (a CSV's), for messages


def where(ds: Dataset, i: int) -> str:
    """Sample `i` as a message names it: by its row in the file (the line a text editor shows,
    as the CSV reader's messages count) when it came from one, and by its 0-based index."""
    if ds.lines is not None and 0 <= i < len(ds.lines):
        return f"row {int(ds.lines[i])}, sample {i}"
    return f"sample {i}"


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    """ (did you mean 'x'?) after a message, or nothing."""
    hint = did_you_mean(word, options)
    return f" ({hint})" if hint else ""


# --------------------------------------------------------------------------- generators

def _int(gen: str, key: str, value, minimum: int) -> int:
    """An integer argument (an integral float such as 500.0 is accepted) of at least ``minimum``."""
    integral = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or value < minimum:
        raise DataError(f"{gen}: {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _float(gen: str, key: str, value, minimum: float = 0.0) -> float:
    """A finite real argument of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < minimum:
        raise DataError(f"{gen}: {key} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _counts(n: int, parts: int) -> np.ndarray:
    """``n`` items dealt over ``parts`` groups as evenly as possible (earlier groups get the rest)."""
    return np.full(parts, n // parts) + (np.arange(parts) < n % parts)


def _shuffled(rng: np.random.Generator, X: np.ndarray, y: np.ndarray, name: str) -> Dataset:
    order = rng.permutation(len(X))
    return Dataset(np.ascontiguousarray(X[order], dtype=np.float64), y[order], name=name)


def linear(n=500, features=3, noise=0.1, seed=0) -> Dataset:
    """Linear regression data: ``y = X @ w + b + noise * N(0, 1)`` with ``X ~ N(0, 1)``.

    ``w`` has a random direction and norm ``sqrt(features)`` (so the signal's variance is
    ``features`` and a linear model's R² is ``features / (features + noise²)``); ``b ~ N(0, 1)``.
    ``y`` has shape ``(n, 1)``.
    """
    n, features = _int("linear", "n", n, 1), _int("linear", "features", features, 1)
    noise, rng = _float("linear", "noise", noise), np.random.default_rng(_int("linear", "seed", seed, 0))
    X = rng.standard_normal((n, features))
    w = rng.standard_normal(features)
    w *= math.sqrt(features) / np.linalg.norm(w)
    b = rng.standard_normal()
    y = X @ w + b + noise * rng.standard_normal(n)
    return Dataset(X, y[:, None], name="linear")


def _blob_centers(rng: np.random.Generator, k: int, features: int, std: float) -> np.ndarray:
    """``k`` centers drawn uniformly in a box, each at least ``6 * std`` from the others.

    The box starts as ``[-6, 6]^features`` (scaled up for std > 1) and grows by 25 % whenever a
    center cannot be placed in 100 draws, so any number of centers can be placed.
    """
    half, min_dist, centers = 6.0 * max(std, 1.0), 6.0 * std, []
    while len(centers) < k:
        for _ in range(100):
            c = rng.uniform(-half, half, features)
            if all(np.linalg.norm(c - other) >= min_dist for other in centers):
                centers.append(c)
                break
        else:
            half *= 1.25
    return np.array(centers)


def blobs(n=400, centers=2, features=None, std=1.0, seed=0) -> Dataset:
    """Gaussian blobs of standard deviation ``std``, one class per blob, balanced counts.

    ``centers`` is a number of blobs (centers drawn at random, well separated) or a list of
    center coordinates. ``features`` is the dimension (default 2, or the given centers').
    """
    std, rng = _float("blobs", "std", std), np.random.default_rng(_int("blobs", "seed", seed, 0))
    if isinstance(centers, (numbers.Real, np.ndarray)) and np.ndim(centers) == 0:
        k = _int("blobs", "centers", centers, 1)
        features = 2 if features is None else _int("blobs", "features", features, 1)
        points = _blob_centers(rng, k, features, std)
    else:
        try:
            points = np.array(centers, dtype=np.float64)
        except (TypeError, ValueError):
            points = np.empty(0)
        if points.ndim != 2 or len(points) == 0 or not np.isfinite(points).all():
            raise DataError(f"blobs: centers must be a number or a list of points [[x, y], ...], "
                            f"got {centers!r}")
        if features is not None and _int("blobs", "features", features, 1) != points.shape[1]:
            raise DataError(f"blobs: features={features} but the centers have "
                            f"{points.shape[1]} coordinates")
        k = len(points)
    n = _int("blobs", "n", n, k)
    y = np.repeat(np.arange(k), _counts(n, k))
    X = points[y] + std * rng.standard_normal((n, points.shape[1]))
    return _shuffled(rng, X, y, "blobs")


def xor(n=400, noise=0.1, seed=0) -> Dataset:
    """The XOR problem: clusters at (0,0), (1,1) (class 0) and (0,1), (1,0) (class 1)."""
    n, noise = _int("xor", "n", n, 4), _float("xor", "noise", noise)
    rng = np.random.default_rng(_int("xor", "seed", seed, 0))
    corners = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    corner = np.repeat(np.arange(4), _counts(n, 4))
    X = corners[corner] + noise * rng.standard_normal((n, 2))
    return _shuffled(rng, X, corner // 2, "xor")


def moons(n=2000, noise=0.2, seed=0) -> Dataset:
    """Two interleaving half circles (the formulas of scikit-learn's ``make_moons``)."""
    n, noise = _int("moons", "n", n, 2), _float("moons", "noise", noise)
    rng = np.random.default_rng(_int("moons", "seed", seed, 0))
    n_out = n // 2
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n - n_out)
    X = np.concatenate([np.c_[np.cos(t_out), np.sin(t_out)],
                        np.c_[1 - np.cos(t_in), 0.5 - np.sin(t_in)]])
    y = np.repeat(np.arange(2), [n_out, n - n_out])
    ds = _shuffled(rng, X, y, "moons")
    ds.X += noise * rng.standard_normal(ds.X.shape)
    return ds


def circles(n=500, noise=0.05, factor=0.5, seed=0) -> Dataset:
    """A circle (class 0) around a smaller one of radius ``factor`` (scikit-learn's ``make_circles``)."""
    n, noise = _int("circles", "n", n, 2), _float("circles", "noise", noise)
    factor = _float("circles", "factor", factor)
    if factor >= 1:
        raise DataError(f"circles: factor must be in [0, 1), got {factor!r}")
    rng = np.random.default_rng(_int("circles", "seed", seed, 0))
    n_out = n // 2
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n - n_out, endpoint=False)
    X = np.concatenate([np.c_[np.cos(t_out), np.sin(t_out)],
                        factor * np.c_[np.cos(t_in), np.sin(t_in)]])
    y = np.repeat(np.arange(2), [n_out, n - n_out])
    ds = _shuffled(rng, X, y, "circles")
    ds.X += noise * rng.standard_normal(ds.X.shape)
    return ds


def spiral(n=1500, classes=3, noise=0.2, seed=0) -> Dataset:
    """The CS231n spiral: ``n`` points split evenly over ``classes`` arms.

    Arm ``k`` has radius ``r = linspace(0, 1)`` and angle ``linspace(4k, 4(k+1)) + noise * N(0, 1)``.
    """
    k = _int("spiral", "classes", classes, 1)
    n, noise = _int("spiral", "n", n, k), _float("spiral", "noise", noise)
    rng = np.random.default_rng(_int("spiral", "seed", seed, 0))
    counts, arms = _counts(n, k), []
    for c, m in enumerate(counts):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, m) + noise * rng.standard_normal(m)
        arms.append(np.c_[r * np.sin(t), r * np.cos(t)])
    y = np.repeat(np.arange(k), counts)
    return _shuffled(rng, np.concatenate(arms), y, "spiral")


GENERATORS: dict[str, Callable[..., Dataset]] = {
    "linear": linear, "blobs": blobs, "xor": xor, "moons": moons, "circles": circles, "spiral": spiral,
}


def generate(name: str, **kwargs) -> Dataset:
    """Run the built-in generator ``name`` with keyword arguments (all seeded; default seed 0).

    Raises :class:`DataError` for an unknown generator, an unknown argument (the message lists
    the allowed ones and suggests the nearest) or a bad argument value.
    """
    if name not in GENERATORS:
        raise DataError(f"{name}: unknown data generator{_did_you_mean(name, GENERATORS)}; "
                        f"available: {', '.join(GENERATORS)}")
    allowed = list(signature(GENERATORS[name]).parameters)
    for key in kwargs:
        if key not in allowed:
            raise DataError(f"{name}: unknown argument '{key}'{_did_you_mean(key, allowed)}; "
                            f"allowed: {', '.join(allowed)}")
    return GENERATORS[name](**kwargs)


# --------------------------------------------------------------------------- bundled and file data

def load_digits() -> Dataset:
    """The bundled digits set: 1,797 8×8 images as X (1797, 64) in [0, 1] and labels 0..9."""
    with np.load(_DIGITS_PATH, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    X = images.reshape(len(images), -1).astype(np.float64) / 16.0
    return Dataset(X, labels.astype(np.int64), name="digits")


def load_mnist() -> Dataset:
    """The bundled MNIST subset: 5,000 28×28 images (500 per digit) as X (5000, 784) in [0, 1]
    and labels 0..9 (see datasets/README.md for its source and licence)."""
    with np.load(_MNIST_PATH, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    X = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return Dataset(X, labels.astype(np.int64), name="mnist")


def _read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _as_labels(source: str, y: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """Labels as stored: strings become class ids (sorted names), integral 1-D floats int64."""
    if y.dtype.kind in "US":
        classes, ids = np.unique(y, return_inverse=True)
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in classes]
        return ids.reshape(y.shape).astype(np.int64), names
    if y.dtype.kind in "biu":
        return y.astype(np.int64), None
    if y.dtype.kind != "f":
        raise DataError(f"{source}: labels must be numbers or strings, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if y.ndim == 1 and np.isfinite(y).all() and (y == np.round(y)).all() and (np.abs(y) < 2 ** 53).all():
        return y.astype(np.int64), None
    return y, None


def _csv_label_column(source: str, header: list[str], label) -> int:
    columns = ", ".join(f"'{h}'" for h in header)
    if label is None:
        return len(header) - 1
    if isinstance(label, numbers.Integral) and not isinstance(label, bool):
        if not -len(header) <= label < len(header):
            raise DataError(f"{source}: label column index {label} is out of range; "
                            f"the file has {len(header)} columns: {columns}")
        return int(label) % len(header)
    if isinstance(label, str):
        if header.count(label) > 1:
            raise DataError(f"{source}: label column '{label}' appears {header.count(label)} times "
                            f"in the header")
        if label in header:
            return header.index(label)
        raise DataError(f"{source}: no column '{label}'{_did_you_mean(label, header)}; "
                        f"columns: {columns}")
    raise DataError(f"{source}: label must be a column name or index, got {label!r}")


def _csv_fast(text: str, delimiter: str, skip: int, width: int) -> np.ndarray | None:
    """All values of an entirely numeric, finite, well-formed file, else None (numpy's C parser)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)      # "input contained no data"
            values = np.loadtxt(io.StringIO(text), delimiter=delimiter, skiprows=skip,
                                comments=None, ndmin=2, dtype=np.float64)
    except ValueError:
        return None
    if values.shape[0] == 0 or values.shape[1] != width or not np.isfinite(values).all():
        return None
    return values


def csv_records(text: str, delimiter: str, source: str) -> list:
    """(row number, fields) of each non-blank row of CSV text; newlines \\n, \\r\\n or \\r, and
    what the csv module cannot read (a stray quote, a NUL) is a DataError naming the row."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        return [(reader.line_num, r) for r in reader if len(r) > 1 or "".join(r).strip()]
    except csv.Error as e:
        raise DataError(f"{source}: row {reader.line_num}: not readable as CSV ({e})") from None


def load_csv(path, label=None) -> Dataset:
    """Load a CSV file whose first row names the columns.

    ``label`` is the label column's name or index (default: the last column); every other
    column is a numeric feature. Numeric labels are kept (integral ones as int64); string
    labels become class ids in the order of their sorted names, recorded in ``classes``.
    Commas, semicolons or tabs separate fields (whichever the header uses most). Rows in
    messages are counted as in a text editor, the header being row 1.
    """
    source = str(path)
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{source}: not a UTF-8 text file (byte {e.start})") from None
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    records = iter(csv_records(text, delimiter, source))
    header_row, header = next(records, (0, None))
    if header is None:
        raise DataError(f"{source}: the file is empty; expected a header row of column names")
    header = [h.strip() for h in header]
    if all(_number(h) is not None for h in header):
        raise DataError(f"{source}: row {header_row} looks like data; the first row must name "
                        f"the columns (a header row)")
    col = _csv_label_column(source, header, label)
    features = [j for j in range(len(header)) if j != col]
    if not features:
        raise DataError(f"{source}: no feature columns; the file has only the label column "
                        f"'{header[col]}'")

    records = list(records)
    lines = np.array([line for line, _ in records], np.int64)
    values = _csv_fast(text, delimiter, header_row, len(header))
    if values is not None:
        y, classes = _as_labels(source, values[:, col])
        return Dataset(np.ascontiguousarray(values[:, features]), y, classes, Path(source).name,
                       lines if len(lines) == len(values) else None)

    rows, labels, label_rows = [], [], []
    for line, record in records:
        if len(record) != len(header):
            raise DataError(f"{source}: row {line} has {len(record)} fields but the header has "
                            f"{len(header)}")
        row = []
        for j in features:
            cell = record[j].strip()
            value = _number(cell)
            if value is None or not math.isfinite(value):
                problem = "is empty" if not cell else \
                    f"'{cell}' is not a {'finite ' if value is not None else ''}number"
                raise DataError(f"{source}: row {line}, column '{header[j]}': {problem}")
            row.append(value)
        rows.append(row)
        labels.append(record[col].strip())
        label_rows.append(line)
    if not rows:
        raise DataError(f"{source}: no data rows after the header")
    y, classes = _csv_labels(source, header[col], labels, label_rows)
    return Dataset(np.array(rows, dtype=np.float64), y, classes, Path(source).name, np.array(label_rows, np.int64))


def _csv_labels(source: str, column: str, labels: list[str], rows: list[int]):
    """Class ids from a label column that holds either only numbers or only names."""
    parsed = [_number(v) for v in labels]
    for value, number, line in zip(labels, parsed, rows):
        if not value:
            raise DataError(f"{source}: row {line}, column '{column}': the label is empty")
        if number is not None and not math.isfinite(number):
            raise DataError(f"{source}: row {line}, column '{column}': label '{value}' is not finite")
        if (number is None) != (parsed[0] is None):
            kind = ("a name", "a number") if number is None else ("a number", "a name")
            raise DataError(f"{source}: row {line}, column '{column}': label '{value}' is {kind[0]} "
                            f"but row {rows[0]}'s label '{labels[0]}' is {kind[1]}; a label column "
                            f"holds either numbers or class names")
    return _as_labels(source, np.array(labels if parsed[0] is None else parsed))


def load_npz(path) -> Dataset:
    """Load a NumPy ``.npz`` (arrays ``X``/``y``, or ``x``/``Y``, or ``images``/``labels``) or ``.npy``.

    A ``.npy`` file (or an ``.npz`` holding one array) is a 2-D table whose last column is the
    label. Pickled (object) arrays are refused.
    """
    source = str(path)
    data = read_arrays(source, DataError)
    if isinstance(data, np.ndarray):
        X, y = _npy_table(source, data)
    else:
        names = list(data)
        x_key = next((k for k in ("X", "x", "images") if k in names), None)
        y_key = next((k for k in ("y", "Y", "labels") if k in names), None)
        if x_key and y_key:
            X, y = data[x_key], data[y_key]
        elif len(names) == 1:
            X, y = _npy_table(source, data[names[0]])
        else:
            raise DataError(f"{source}: expected arrays named X and y (or images and "
                            f"labels); found {', '.join(names) or 'none'}")
    if X.dtype.kind not in "biuf" or X.ndim == 0:
        raise DataError(f"{source}: X must be a numeric array, got dtype {X.dtype} shape {X.shape}")
    if y.ndim == 0 or len(X) != len(y):
        raise DataError(f"{source}: X has {len(X)} samples but y has "
                        f"{len(y) if y.ndim else 'a single value'}")
    y, classes = _as_labels(source, y)
    return Dataset(X.astype(np.float64), y, classes, Path(source).name)


def _npy_table(source: str, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if table.ndim != 2 or table.shape[1] < 2:
        raise DataError(f"{source}: a single array must be a 2-D table (features..., label), "
                        f"got shape {table.shape}")
    return table[:, :-1], table[:, -1]


def _read_idx(path, ndim: int, what: str) -> np.ndarray:
    """An idx file (gzip-compressed or not) of unsigned bytes with ``ndim`` dimensions."""
    raw = _read_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip file ({e})") from None
    expected = 0x0800 + ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != expected:
        found = f"0x{magic:08x}" if magic is not None else f"only {len(raw)} bytes"
        raise DataError(f"{path}: not an idx {what} file: expected magic number 0x{expected:08x} "
                        f"({ndim}-D unsigned bytes), found {found}")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DataError(f"{path}: the idx header is truncated ({len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:start])
    size = math.prod(shape)
    if len(raw) - start != size:
        raise DataError(f"{path}: the header gives dimensions {' x '.join(map(str, shape))} "
                        f"= {size} bytes but the file holds {len(raw) - start} data bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(shape)


def load_idx(images_path, labels_path) -> Dataset:
    """Load images and labels in the MNIST idx format (gzip-compressed or not).

    Returns X float64 ``(n, rows, cols)`` with pixels scaled to [0, 1] and y int64 ``(n,)``.
    """
    images = _read_idx(images_path, 3, "images")
    labels = _read_idx(labels_path, 1, "labels")
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {labels_path} has "
                        f"{len(labels)} labels")
    return Dataset(images.astype(np.float64) / 255.0, labels.astype(np.int64),
                   name=Path(str(images_path)).name)


# --------------------------------------------------------------------------- checks and splits

def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def validate(ds: Dataset, feature_shape: tuple, target_kind: str, num_classes_or_width: int,
             source: str, dtype=np.float64) -> Dataset:
    """Fit a data set to a model: input of shape ``feature_shape`` and a ``"class"`` or ``"real"`` target.

    X is reshaped to ``(n, *feature_shape)`` when each sample holds that many values. Class
    labels must be integers in ``0..C-1`` (``C = num_classes_or_width``; one-hot rows are also
    accepted); real targets are reshaped to ``(n, width)``. NaN or infinite values, an empty
    set or mismatched shapes raise :class:`DataError` naming ``source`` and the first bad sample.
    Returns a new Dataset with X float64 (or ``dtype``: a caller whose X has the model's dtype
    keeps it, no copy) C-contiguous and y int64 (class) or float64 (real).
    """
    if target_kind not in ("class", "real"):
        raise ValueError(f"target_kind must be 'class' or 'real', got {target_kind!r}")
    X, y = np.asarray(ds.X), np.asarray(ds.y)
    n, shape = len(X), tuple(int(d) for d in feature_shape)
    if n == 0:
        raise DataError(f"{source}: the data set is empty")
    if len(y) != n:
        raise DataError(f"{source}: {n} samples but {len(y)} labels")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{source}: samples must be numbers, got dtype {X.dtype}")
    sample = X.shape[1:]
    if math.prod(sample) != math.prod(shape):
        raise DataError(f"{source}: each sample has shape {list(sample)} ({math.prod(sample)} "
                        f"values) but the model's input expects {list(shape)} "
                        f"({math.prod(shape)} values)")
    X = np.ascontiguousarray(X.reshape((n,) + shape), dtype=dtype)
    if not np.isfinite(X).all():
        row, *col = _first_bad(~np.isfinite(X))
        feature = f"feature {col[0] if len(col) == 1 else col}"
        raise DataError(f"{source}: {where(ds, row)}, {feature} is {X[(row, *col)]} (not a finite number)")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{source}: labels must be numbers, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        row, *_ = _first_bad(~np.isfinite(y))
        raise DataError(f"{source}: {where(ds, row)}: label {y[row].tolist()} is not a finite number")
    k = int(num_classes_or_width)
    if target_kind == "real":
        if y.size != n * k:
            raise DataError(f"{source}: each sample has {y.size // n} target values but the "
                            f"target expects {k}")
        return Dataset(X, np.ascontiguousarray(y.reshape(n, k)), ds.classes, ds.name, ds.lines)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.shape[1] == k and ((y == 0) | (y == 1)).all() and (y.sum(1) == 1).all():
        y = y.argmax(1).astype(np.float64)                 # one-hot rows
    if y.ndim != 1:
        raise DataError(f"{source}: a class target needs one label per sample, got labels of "
                        f"shape {list(y.shape[1:])} per sample")
    bad = (y != np.round(y)) | (y < 0) | (y >= k)
    if bad.any():
        row = int(np.argmax(bad))
        value = int(y[row]) if y[row].is_integer() and abs(y[row]) < 2 ** 53 else float(y[row])
        name = f" ('{ds.classes[value]}')" if ds.classes and isinstance(value, int) \
            and 0 <= value < len(ds.classes) else ""
        raise DataError(f"{source}: {where(ds, row)}: label {value}{name} is not a class id; "
                        f"class labels must be integers 0..{k - 1}")
    return Dataset(X, y.astype(np.int64), ds.classes, ds.name, ds.lines)


def _split_counts(n: int, fractions: Sequence[float]) -> np.ndarray:
    """``n`` items shared in proportion to ``fractions`` (largest remainders get the rest)."""
    exact = n * np.asarray(fractions, dtype=np.float64)
    counts = np.floor(exact).astype(np.int64)
    rest = np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]
    counts[rest] += 1
    return counts


def split(ds: Dataset, fractions: tuple[float, ...], seed: int,
          stratify: bool) -> tuple[Dataset, Dataset, Dataset]:
    """Cut a data set into (train, validation, test) after a seeded random permutation.

    ``fractions`` are the train, validation and test shares and sum to 1; with two the test
    set is empty, with one the validation set is empty too. With ``stratify`` (integer class
    labels only; ignored for real targets) each class is split in the same proportions.
    Sizes are rounded by largest remainder. Empty parts keep the trailing shapes of X and y.
    """
    source = ds.name or "data"
    fr = [float(f) for f in fractions]
    if not 1 <= len(fr) <= 3 or any(not math.isfinite(f) or f < 0 for f in fr) \
            or abs(sum(fr) - 1) > 1e-6:
        raise DataError(f"{source}: split fractions must be 1 to 3 non-negative numbers that sum "
                        f"to 1, got {', '.join(f'{f:g}' for f in fr)}")
    fr += [0.0] * (3 - len(fr))
    n = len(ds.X)
    order = np.random.default_rng(seed).permutation(n)
    part = np.empty(n, dtype=np.int64)                     # part of the sample order[i]
    if stratify and ds.y.ndim == 1 and ds.y.dtype.kind in "iu":
        ordered = ds.y[order]
        for c in np.unique(ordered):
            members = np.flatnonzero(ordered == c)
            part[members] = np.repeat(np.arange(3), _split_counts(len(members), fr))
    else:
        part[:] = np.repeat(np.arange(3), _split_counts(n, fr))
    picks = [order[part == j] for j in range(3)]
    return tuple(Dataset(ds.X[p], ds.y[p], ds.classes, ds.name) for p in picks)
