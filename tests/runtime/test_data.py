"""Tests of netc.runtime.data: generators, the digits set, file loaders, validate and split."""
import gzip
import struct

import numpy as np
import pytest

from netc.runtime import data
from netc.runtime.data import DataError, Dataset

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# --------------------------------------------------------------------------- generators

@pytest.mark.parametrize("name", sorted(data.GENERATORS))
def test_generators_are_deterministic(name):
    a, b = data.generate(name, seed=4), data.generate(name, seed=4)
    c = data.generate(name, seed=5)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    assert a.X.dtype == np.float64 and a.X.flags.c_contiguous
    assert a.name == name


@pytest.mark.parametrize("name, kwargs, n, features, classes", [
    ("blobs", dict(n=300, centers=3, features=4), 300, 4, 3),
    ("xor", dict(n=400), 400, 2, 2),
    ("moons", dict(n=2000), 2000, 2, 2),
    ("circles", dict(n=500), 500, 2, 2),
    ("spiral", dict(n=1500, classes=3), 1500, 2, 3),
    ("spiral", dict(n=10, classes=4), 10, 2, 4),
])
def test_class_generators_shapes_and_balance(name, kwargs, n, features, classes):
    ds = data.generate(name, **kwargs)
    assert ds.X.shape == (n, features)
    assert ds.y.shape == (n,) and ds.y.dtype == np.int64
    counts = np.bincount(ds.y, minlength=classes)
    assert len(counts) == classes and counts.max() - counts.min() <= 1
    assert not np.array_equal(ds.y, np.sort(ds.y))          # classes are interleaved


def test_defaults_match_the_documented_sizes():
    sizes = {"linear": 500, "blobs": 400, "xor": 400, "moons": 2000, "circles": 500, "spiral": 1500}
    for name, n in sizes.items():
        assert len(data.generate(name).X) == n


def test_linear_is_a_regression_a_linear_model_fits():
    for seed in range(5):
        ds = data.generate("linear", n=500, features=3, noise=0.1, seed=seed)
        assert ds.X.shape == (500, 3) and ds.y.shape == (500, 1) and ds.y.dtype == np.float64
        A = np.c_[ds.X, np.ones(500)]
        coef, *_ = np.linalg.lstsq(A, ds.y, rcond=None)
        residual = ds.y - A @ coef
        assert 1 - residual.var() / ds.y.var() >= 0.98


def _logistic_accuracy(ds, steps=300, lr=0.5):
    """Accuracy of one sigmoid neuron trained by full-batch gradient descent."""
    X, t = ds.X, ds.y.astype(float)
    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(X @ w + b)))
        w -= lr * X.T @ (p - t) / len(t)
        b -= lr * np.mean(p - t)
    return np.mean(((X @ w + b) > 0) == (t == 1))


def test_two_blobs_are_separable_by_one_neuron():
    for seed in range(6):
        assert _logistic_accuracy(data.generate("blobs", n=400, centers=2, seed=seed)) >= 0.95


def test_blob_centers_are_well_separated_and_many_fit():
    ds = data.generate("blobs", n=2000, centers=12, std=0.5, seed=1)
    means = np.array([ds.X[ds.y == k].mean(0) for k in range(12)])
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dist[~np.eye(12, dtype=bool)].min() > 2.5


def test_blobs_with_given_centers():
    ds = data.generate("blobs", n=100, centers=[[0, 0, 0], [10, 10, 10]], std=0.1)
    assert ds.X.shape == (100, 3)
    np.testing.assert_allclose(ds.X[ds.y == 1].mean(0), [10, 10, 10], atol=0.1)
    with pytest.raises(DataError, match="features=2 but the centers have 3"):
        data.generate("blobs", centers=[[0, 0, 0], [1, 1, 1]], features=2)


def test_xor_clusters_and_labels():
    ds = data.generate("xor", n=400, noise=0.0)
    corners = {tuple(p): int(c) for p, c in zip(ds.X, ds.y)}
    assert corners == {(0.0, 0.0): 0, (1.0, 1.0): 0, (0.0, 1.0): 1, (1.0, 0.0): 1}


def test_moons_and_circles_geometry():
    moons = data.generate("moons", n=200, noise=0.0)
    upper = moons.X[moons.y == 0]
    np.testing.assert_allclose(np.linalg.norm(upper, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(moons.X[moons.y == 1] - [1.0, 0.5], axis=1), 1.0)
    circles = data.generate("circles", n=200, noise=0.0, factor=0.3)
    radius = np.linalg.norm(circles.X, axis=1)
    np.testing.assert_allclose(radius[circles.y == 0], 1.0)
    np.testing.assert_allclose(radius[circles.y == 1], 0.3)


def test_spiral_radius_runs_from_0_to_1():
    ds = data.generate("spiral", n=300, classes=3, noise=0.0)
    r = np.linalg.norm(ds.X, axis=1)
    assert r.min() == 0.0 and np.isclose(r.max(), 1.0)


@pytest.mark.parametrize("name, kwargs, message", [
    ("moons", dict(nosie=0.1), "moons: unknown argument 'nosie' (did you mean 'noise'?); "
                               "allowed: n, noise, seed"),
    ("spiral", dict(clases=3), "did you mean 'classes'?"),
    ("moon", {}, "moon: unknown data generator (did you mean 'moons'?); available: linear, blobs"),
    ("moons", dict(n=0), "moons: n must be an integer >= 2, got 0"),
    ("moons", dict(n=2.5), "moons: n must be an integer"),
    ("moons", dict(n=True), "moons: n must be an integer"),
    ("xor", dict(noise=-1), "xor: noise must be a number >= 0"),
    ("linear", dict(noise=float("nan")), "linear: noise must be a number"),
    ("linear", dict(seed=-1), "linear: seed must be an integer >= 0"),
    ("circles", dict(factor=1.0), "circles: factor must be in [0, 1)"),
    ("blobs", dict(centers="two"), "blobs: centers must be a number or a list of points"),
    ("spiral", dict(n=2, classes=3), "spiral: n must be an integer >= 3"),
])
def test_generator_argument_errors(name, kwargs, message):
    with pytest.raises(DataError) as err:
        data.generate(name, **kwargs)
    assert message in str(err.value)
    assert str(err.value).startswith(name)


def test_integral_float_arguments_are_accepted():
    assert len(data.generate("moons", n=100.0).X) == 100


# --------------------------------------------------------------------------- digits

def test_digits():
    ds = data.load_digits()
    assert ds.X.shape == (1797, 64) and ds.X.dtype == np.float64
    assert ds.y.shape == (1797,) and ds.y.dtype == np.int64
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    np.testing.assert_array_equal(ds.X * 16, np.round(ds.X * 16))
    assert set(ds.y.tolist()) == set(range(10))
    assert np.bincount(ds.y).min() >= 170
    assert ds.name == "digits"


def test_mnist():
    ds = data.load_mnist()
    assert ds.X.shape == (5000, 784) and ds.X.dtype == np.float64
    assert ds.y.shape == (5000,) and ds.y.dtype == np.int64
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    np.testing.assert_array_equal(ds.X * 255, np.round(ds.X * 255))
    assert np.bincount(ds.y).tolist() == [500] * 10
    assert ds.name == "mnist"
    # real digits: the mean image of each class differs from the others', strokes are sparse
    means = np.stack([ds.X[ds.y == c].mean(0) for c in range(10)])
    assert 0.08 < ds.X.mean() < 0.2 and np.min(np.abs(means[:, None] - means[None]).sum(-1) + np.eye(10) * 1e9) > 10


@pytest.mark.parametrize("loader,shape", [(data.load_digits, (1, 8, 8)), (data.load_mnist, (1, 28, 28)),
                                          (data.load_mnist, (784,))])
def test_bundled_images_take_the_declared_input_shape(loader, shape):
    ds = loader()
    got = data.validate(ds, shape, "class", 10, ds.name)
    assert got.X.shape == (len(ds.X),) + shape and got.X.flags.c_contiguous
    side = int(np.sqrt(ds.X.shape[1]))
    np.testing.assert_array_equal(got.X.reshape(len(ds.X), side, side)[7], ds.X[7].reshape(side, side))


def test_image_sizes_that_do_not_match_name_both():
    with pytest.raises(DataError, match=r"each sample has shape \[64\] \(64 values\) but the model's input "
                                        r"expects \[1, 28, 28\] \(784 values\)"):
        data.validate(data.load_digits(), (1, 28, 28), "class", 10, "digits")


def test_csv_and_npz_images_take_the_declared_input_shape(tmp_path):
    ds = data.load_digits()
    X, y = ds.X[:20], ds.y[:20]
    np.savez(tmp_path / "d.npz", X=X.reshape(20, 8, 8), y=y)       # stored as 8x8 images
    rows = [",".join([f"p{i}" for i in range(64)] + ["digit"])]
    rows += [",".join([repr(float(v)) for v in x] + [str(c)]) for x, c in zip(X, y)]
    csv = _write(tmp_path / "d.csv", "\n".join(rows) + "\n")
    for loaded in (data.load_npz(str(tmp_path / "d.npz")), data.load_csv(csv, label="digit")):
        got = data.validate(loaded, (1, 8, 8), "class", 10, "f")
        np.testing.assert_allclose(got.X, X.reshape(20, 1, 8, 8))


# --------------------------------------------------------------------------- csv

def _write(path, text):
    path.write_text(text)
    return str(path)


def test_csv_round_trip_with_string_labels(tmp_path):
    digits = data.load_digits()
    rows = [",".join([f"p{i}" for i in range(64)] + ["digit"])]
    rows += [",".join([str(v) for v in x.tolist()] + [NAMES[c]]) for x, c in zip(digits.X, digits.y)]
    ds = data.load_csv(_write(tmp_path / "digits.csv", "\n".join(rows) + "\n"), label="digit")
    assert ds.classes == sorted(NAMES)
    np.testing.assert_array_equal(ds.X, digits.X)
    assert [ds.classes[i] for i in ds.y] == [NAMES[c] for c in digits.y]
    assert ds.y.dtype == np.int64


def test_csv_numeric_labels_by_index_and_default(tmp_path):
    path = _write(tmp_path / "t.csv", "a,label,b\n1,0,2\n3,1,4.5\n")
    by_name = data.load_csv(path, label="label")
    by_index = data.load_csv(path, label=1)
    for ds in (by_name, by_index):
        np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4.5]])
        np.testing.assert_array_equal(ds.y, [0, 1])
        assert ds.y.dtype == np.int64 and ds.classes is None
    last = data.load_csv(path)
    np.testing.assert_array_equal(last.X, [[1, 0], [3, 1]])
    np.testing.assert_array_equal(last.y, [2, 4.5])
    assert last.y.dtype == np.float64


def test_csv_quoting_blank_lines_semicolons(tmp_path):
    quoted = data.load_csv(_write(tmp_path / "q.csv", 'x,"y z"\n\n"1.5", "cat"\n2,dog\n\n'))
    np.testing.assert_array_equal(quoted.X, [[1.5], [2.0]])
    assert quoted.classes == ["cat", "dog"]
    semi = data.load_csv(_write(tmp_path / "s.csv", "x;y\n1;2\n3;4\n"))
    np.testing.assert_array_equal(semi.X, [[1], [3]])
    parsed = data.load_csv(_write(tmp_path / "p.csv", 'x,y\r\n"1",2\r\n3, 4.0\r\n'))  # csv module path
    np.testing.assert_array_equal(parsed.X, semi.X)
    np.testing.assert_array_equal(parsed.y, semi.y)
    assert parsed.y.dtype == semi.y.dtype == np.int64


@pytest.mark.parametrize("text, label, message", [
    ("", None, "the file is empty"),
    ("x,y\n", None, "no data rows after the header"),
    ("1,2\n3,4\n", None, "row 1 looks like data"),
    ("x,y\n1,2\n3,4,5\n", None, "row 3 has 3 fields but the header has 2"),
    ("x,y\n1,2\n\nabc,1\n", None, "row 4, column 'x': 'abc' is not a number"),
    ("x,y\n1,2\n,1\n", None, "row 3, column 'x': is empty"),
    ("x,y\n1,2\nnan,1\n", None, "row 3, column 'x': 'nan' is not a finite number"),
    ("x,y\n1,\n", None, "row 2, column 'y': the label is empty"),
    ("x,y\n1,2\n1,cat\n", None, "row 3, column 'y': label 'cat' is a name but row 2's label '2' "
                                "is a number"),
    ("x,label\n1,2\n", "lable", "no column 'lable' (did you mean 'label'?); columns: 'x', 'label'"),
    ("x,label\n1,2\n", 5, "label column index 5 is out of range"),
    ("y\n1\n", None, "no feature columns"),
])
def test_csv_errors_name_file_and_row(tmp_path, text, label, message):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as err:
        data.load_csv(path, label=label)
    assert str(err.value).startswith(path)
    assert message in str(err.value)


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        data.load_csv(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- npz / npy

def test_npz_names_and_npy_table(tmp_path):
    X, y = np.arange(12.0).reshape(3, 4), np.array([0, 1, 0])
    for xk, yk in [("X", "y"), ("x", "Y"), ("images", "labels")]:
        np.savez(tmp_path / f"{xk}.npz", **{xk: X, yk: y})
        ds = data.load_npz(tmp_path / f"{xk}.npz")
        np.testing.assert_array_equal(ds.X, X)
        np.testing.assert_array_equal(ds.y, y)
    np.save(tmp_path / "t.npy", np.c_[X, y])
    ds = data.load_npz(tmp_path / "t.npy")
    np.testing.assert_array_equal(ds.X, X)
    assert ds.y.dtype == np.int64
    np.savez(tmp_path / "s.npz", X=X, y=np.array(["b", "a", "b"]))
    assert data.load_npz(tmp_path / "s.npz").classes == ["a", "b"]


@pytest.mark.parametrize("arrays, message", [
    (dict(a=np.zeros(3), b=np.zeros(3)), "expected arrays named X and y (or images and labels); found a, b"),
    (dict(X=np.zeros((3, 2)), y=np.zeros(2)), "X has 3 samples but y has 2"),
    (dict(X=np.array(["a", "b"]), y=np.zeros(2)), "X must be a numeric array"),
    (dict(table=np.zeros(5)), "a single array must be a 2-D table"),
])
def test_npz_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        data.load_npz(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_npz_refuses_pickles_and_garbage(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "junk.npz").write_bytes(b"not numpy")
    for name in ("obj.npy", "junk.npz"):
        with pytest.raises(DataError, match="not a readable .npz/.npy file"):
            data.load_npz(tmp_path / name)
    with pytest.raises(DataError, match="file not found"):
        data.load_npz(tmp_path / "missing.npz")


# --------------------------------------------------------------------------- idx

def _idx(array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def mnist_like():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), np.array([3, 1, 4, 1, 5], np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, mnist_like, compress):
    images, labels = mnist_like
    pack = gzip.compress if compress else (lambda b: b)
    (tmp_path / "img").write_bytes(pack(_idx(images)))
    (tmp_path / "lbl").write_bytes(pack(_idx(labels)))
    ds = data.load_idx(tmp_path / "img", tmp_path / "lbl")
    assert ds.X.shape == (5, 28, 28) and ds.X.dtype == np.float64
    np.testing.assert_array_equal(ds.X, images / 255.0)
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.y.dtype == np.int64


@pytest.mark.parametrize("which, content, message", [
    ("img", lambda im, lb: _idx(lb), "not an idx images file: expected magic number 0x00000803"),
    ("lbl", lambda im, lb: _idx(im), "not an idx labels file: expected magic number 0x00000801 "
                                     "(1-D unsigned bytes), found 0x00000803"),
    ("img", lambda im, lb: _idx(im.astype(np.int8), code=0x09), "found 0x00000903"),
    ("img", lambda im, lb: _idx(im)[:-10], "= 3920 bytes but the file holds 3910 data bytes"),
    ("img", lambda im, lb: b"\x00\x00", "found only 2 bytes"),
    ("img", lambda im, lb: _idx(im)[:10], "the idx header is truncated"),
    ("lbl", lambda im, lb: gzip.compress(_idx(lb))[:-8], "corrupt gzip file"),
    ("lbl", lambda im, lb: _idx(lb[:4]), "5 images but"),
])
def test_idx_errors(tmp_path, mnist_like, which, content, message):
    images, labels = mnist_like
    (tmp_path / "img").write_bytes(_idx(images))
    (tmp_path / "lbl").write_bytes(_idx(labels))
    (tmp_path / which).write_bytes(content(images, labels))
    with pytest.raises(DataError) as err:
        data.load_idx(tmp_path / "img", tmp_path / "lbl")
    expected_file = "img" if message == "5 images but" else which
    assert str(err.value).startswith(str(tmp_path / expected_file))
    assert message in str(err.value)


# --------------------------------------------------------------------------- validate

def test_validate_reshapes_and_converts():
    images = Dataset(np.zeros((4, 8, 8), np.float32), np.array([0.0, 1.0, 2.0, 9.0]))
    ds = data.validate(images, (64,), "class", 10, "d.npz")
    assert ds.X.shape == (4, 64) and ds.X.dtype == np.float64 and ds.X.flags.c_contiguous
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [0, 1, 2, 9]
    flat = Dataset(np.zeros((4, 64)), np.zeros(4, np.int64))
    assert data.validate(flat, (1, 8, 8), "class", 2, "d").X.shape == (4, 1, 8, 8)
    real = data.validate(Dataset(np.zeros((4, 2)), np.arange(4)), (2,), "real", 1, "d")
    assert real.y.shape == (4, 1) and real.y.dtype == np.float64
    onehot = Dataset(np.zeros((3, 2)), np.eye(3)[[2, 0, 1]])
    assert data.validate(onehot, (2,), "class", 3, "d").y.tolist() == [2, 0, 1]


def test_validate_keeps_classes_and_generated_data_passes():
    ds = data.validate(data.generate("spiral"), (2,), "class", 3, "spiral")
    assert ds.y.dtype == np.int64
    neuron = data.validate(data.generate("blobs", seed=3), (2,), "real", 1, "blobs")
    assert neuron.y.shape == (400, 1) and set(neuron.y.ravel()) == {0.0, 1.0}


@pytest.mark.parametrize("X, y, shape, kind, k, message", [
    (np.zeros((0, 2)), np.zeros(0), (2,), "class", 2, "the data set is empty"),
    (np.zeros((3, 64)), np.zeros(3), (2,), "class", 2,
     "each sample has shape [64] (64 values) but the model's input expects [2] (2 values)"),
    (np.zeros((3, 2)), np.zeros(4), (2,), "class", 2, "3 samples but 4 labels"),
    (np.array([[0, 1], [2, np.inf], [np.nan, 0]]), np.zeros(3), (2,), "class", 2,
     "sample 1, feature 1 is inf"),
    (np.zeros((2, 2, 2)) + [[[0, 0], [0, np.nan]]], np.zeros(2), (2, 2), "class", 2,
     "sample 0, feature [1, 1] is nan"),
    (np.zeros((3, 2)), np.array([0, np.nan, 1]), (2,), "class", 2, "sample 1: label nan is not a"),
    (np.zeros((3, 2)), np.array([0, 1, 2]), (2,), "class", 2,
     "sample 2: label 2 is not a class id; class labels must be integers 0..1"),
    (np.zeros((3, 2)), np.array([0, -1, 1]), (2,), "class", 2, "sample 1: label -1 is not a class id"),
    (np.zeros((3, 2)), np.array([0, 0.5, 1]), (2,), "class", 2, "sample 1: label 0.5 is not a class"),
    (np.zeros((3, 2)), np.zeros((3, 2)), (2,), "class", 3, "needs one label per sample"),
    (np.zeros((3, 2)), np.zeros((3, 2)), (2,), "real", 1,
     "each sample has 2 target values but the target expects 1"),
])
def test_validate_errors(X, y, shape, kind, k, message):
    with pytest.raises(DataError) as err:
        data.validate(Dataset(X, y), shape, kind, k, "data.csv")
    assert str(err.value).startswith("data.csv: ") and message in str(err.value)


def test_validate_names_the_class_of_a_bad_label():
    ds = Dataset(np.zeros((3, 1)), np.array([0, 2, 1]), classes=["a", "b", "c"])
    with pytest.raises(DataError, match=r"sample 1: label 2 \('c'\) is not a class id"):
        data.validate(ds, (1,), "class", 2, "f.csv")


# --------------------------------------------------------------------------- split

def test_split_sizes_are_exact_and_deterministic():
    ds = data.load_digits()
    train, val, test = data.split(ds, (0.8, 0.1, 0.1), seed=0, stratify=False)
    assert (len(train.X), len(val.X), len(test.X)) == (1437, 180, 180)
    ids = np.concatenate([train.X, val.X, test.X])
    assert len(np.unique(ids, axis=0)) == len(np.unique(ds.X, axis=0))
    again = data.split(ds, (0.8, 0.1, 0.1), seed=0, stratify=False)
    np.testing.assert_array_equal(again[0].X, train.X)
    other = data.split(ds, (0.8, 0.1, 0.1), seed=1, stratify=False)
    assert not np.array_equal(other[0].y, train.y)


def test_split_is_a_partition():
    ds = Dataset(np.arange(50.0)[:, None], np.arange(50) % 3)
    parts = data.split(ds, (0.7, 0.15, 0.15), seed=2, stratify=True)
    rows = np.sort(np.concatenate([p.X[:, 0] for p in parts]))
    np.testing.assert_array_equal(rows, np.arange(50.0))
    for p in parts:
        np.testing.assert_array_equal(p.y, p.X[:, 0].astype(int) % 3)


def test_split_stratified_keeps_class_proportions():
    y = np.repeat([0, 1], [900, 100])
    ds = Dataset(np.zeros((1000, 2)), y, classes=["a", "b"], name="d")
    train, val, test = data.split(ds, (0.8, 0.1, 0.1), seed=0, stratify=True)
    assert np.bincount(train.y).tolist() == [720, 80]
    assert np.bincount(val.y).tolist() == [90, 10] and np.bincount(test.y).tolist() == [90, 10]
    assert train.classes == ["a", "b"] and train.name == "d"
    assert not np.array_equal(train.y, np.sort(train.y))     # classes interleaved


def test_split_fewer_fractions_and_empty_parts():
    ds = data.generate("linear", n=10)
    train, val, test = data.split(ds, (0.8, 0.2), seed=0, stratify=True)
    assert (len(train.X), len(val.X), len(test.X)) == (8, 2, 0)
    assert test.X.shape == (0, 3) and test.y.shape == (0, 1)
    train, val, test = data.split(ds, (1.0,), seed=0, stratify=False)
    assert len(train.X) == 10 and val.X.shape == (0, 3) and test.y.shape == (0, 1)


@pytest.mark.parametrize("fractions", [(0.5, 0.4), (0.5, 0.6, -0.1), (0.2,) * 5, ()])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(DataError, match="split fractions must be 1 to 3 non-negative numbers"):
        data.split(data.generate("xor"), fractions, seed=0, stratify=False)
