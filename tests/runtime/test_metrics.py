"""Metrics: hand-computed cases, sklearn parity, edge cases, the registry and ``compute``."""

import numpy as np
import pytest

from netc.runtime.metrics import (METRICS, accuracy, compute, confusion_matrix,
                                  default_metrics, mae, mse, precision_recall_f1,
                                  predicted_labels, r2, true_labels)

Y3 = np.array([0, 0, 1, 1, 2, 2])
P3 = np.array([0, 1, 1, 1, 0, 2])


def onehot_proba(ids, num_classes):
    """Probability rows whose argmax is ``ids``."""
    proba = np.full((len(ids), num_classes), 0.1 / max(num_classes - 1, 1))
    proba[np.arange(len(ids)), ids] = 0.9
    return proba


# --- hand-computed ----------------------------------------------------------------------------

def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y3, P3, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_accuracy_ids_and_probabilities():
    assert accuracy(Y3, P3) == pytest.approx(4 / 6)
    assert accuracy(Y3, onehot_proba(P3, 3)) == pytest.approx(4 / 6)
    assert accuracy(onehot_proba(Y3, 3), P3) == pytest.approx(4 / 6)  # one-hot targets
    assert accuracy(Y3.astype(float).reshape(-1, 1), P3) == pytest.approx(4 / 6)
    assert isinstance(accuracy(Y3, P3), float)


def test_precision_recall_f1_by_hand():
    # per class: precision 1/2, 2/3, 1; recall 1/2, 1, 1/2; f1 1/2, 4/5, 2/3
    p, r, f = precision_recall_f1(Y3, P3, 3)
    assert p == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert r == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert f == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_regression_by_hand():
    y = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]])
    yhat = np.array([[1.0, 1.0], [2.0, 1.0], [4.0, 2.0]])
    assert mse(y, yhat) == pytest.approx(2 / 6)
    assert mae(y, yhat) == pytest.approx(2 / 6)
    # columns: 1 - 1/2 and 1 - 1/2
    assert r2(y, yhat) == pytest.approx(0.5)


# --- edge cases -------------------------------------------------------------------------------

def test_binary_sigmoid_output_thresholds_at_one_half():
    proba = np.array([[0.2], [0.5], [0.51], [0.9]])
    assert predicted_labels(proba).tolist() == [0, 0, 1, 1]
    t = np.array([[0.0], [0.0], [1.0], [0.0]])
    assert accuracy(t, proba) == 0.75
    assert compute(["accuracy", "f1"], t, proba, "class", 2) == pytest.approx(
        {"accuracy": 0.75, "f1": (0.8 + 2 / 3) / 2})
    # a real 0/1 target with a sigmoid output (binary_cross_entropy models)
    assert compute(["accuracy"], t, proba, "real") == {"accuracy": 0.75}


def test_empty_class_counts_zero():
    # class 2 is neither a target nor a prediction; class 1 is never predicted
    y, p = np.array([0, 0, 1]), np.array([0, 0, 0])
    prec, rec, f1 = precision_recall_f1(y, p, 3)
    assert prec == pytest.approx((2 / 3) / 3)
    assert rec == pytest.approx(1 / 3)
    assert f1 == pytest.approx(0.8 / 3)


def test_perfect_prediction():
    proba = onehot_proba(Y3, 3)
    scores = compute(["accuracy", "precision", "recall", "f1"], Y3, proba, "class", 3)
    assert scores == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    y = np.linspace(-1, 1, 7).reshape(-1, 1)
    assert compute(["mse", "mae", "r2"], y, y, "real") == {"mse": 0.0, "mae": 0.0, "r2": 1.0}


def test_r2_constant_targets():
    y = np.full(5, 3.0)
    assert r2(y, y) == 1.0
    assert r2(y, y + 0.1) == 0.0
    # one constant column predicted exactly, one ordinary column with R² = 0.5
    y2 = np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 3.0]])
    assert r2(y2, np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 4.0]])) == pytest.approx(0.75)


def test_vector_and_column_shapes_agree():
    y, yhat = np.array([1.0, 2.0, 4.0]), np.array([[1.5], [2.0], [3.0]])
    for fn in (mse, mae, r2):
        assert fn(y, yhat) == fn(y.reshape(-1, 1), yhat) == fn(y, yhat.ravel())


# --- sklearn parity ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed, num_classes", [(0, 2), (1, 3), (2, 5), (3, 10)])
def test_classification_matches_sklearn(seed, num_classes):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, 60)
    proba = rng.dirichlet(np.ones(num_classes), 60)
    pred = proba.argmax(axis=1)
    labels = list(range(num_classes))
    assert accuracy(y, proba) == pytest.approx(skm.accuracy_score(y, pred), rel=1e-12)
    assert np.array_equal(confusion_matrix(y, pred, num_classes),
                          skm.confusion_matrix(y, pred, labels=labels))
    expected = skm.precision_recall_fscore_support(y, pred, labels=labels, average="macro",
                                                   zero_division=0)[:3]
    assert precision_recall_f1(y, pred, num_classes) == pytest.approx(expected, rel=1e-12)


def test_missing_classes_match_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    y, p = np.array([0, 0, 1, 3, 3]), np.array([0, 3, 3, 3, 0])  # class 2 nowhere, 1 unpredicted
    expected = skm.precision_recall_fscore_support(y, p, labels=[0, 1, 2, 3], average="macro",
                                                   zero_division=0)[:3]
    assert precision_recall_f1(y, p, 4) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_matches_sklearn(outputs):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(outputs)
    y = rng.normal(size=(50, outputs))
    yhat = y + rng.normal(scale=0.5, size=y.shape)
    assert mse(y, yhat) == pytest.approx(skm.mean_squared_error(y, yhat), rel=1e-12)
    assert mae(y, yhat) == pytest.approx(skm.mean_absolute_error(y, yhat), rel=1e-12)
    assert r2(y, yhat) == pytest.approx(skm.r2_score(y, yhat), rel=1e-12)
    y[:, 0] = 2.0  # a constant column: sklearn's force_finite convention
    assert r2(y, yhat) == pytest.approx(skm.r2_score(y, yhat), rel=1e-12)


# --- registry and compute ---------------------------------------------------------------------

def test_registry():
    assert set(METRICS) == {"accuracy", "f1", "precision", "recall", "mse", "mae", "r2"}
    assert [m for m in METRICS if not METRICS[m].greater_is_better] == ["mse", "mae"]
    assert default_metrics("class") == ["accuracy"]
    assert default_metrics("real") == ["mse", "r2"]


def test_compute_class_and_real():
    proba = onehot_proba(P3, 3)
    scores = compute(["accuracy", "recall"], Y3, proba, "class")  # C inferred from the output
    assert scores == pytest.approx({"accuracy": 4 / 6, "recall": 2 / 3})
    assert all(type(v) is float for v in scores.values())
    y = np.array([[1.0], [2.0], [3.0]])
    assert compute(["mae", "mse"], y, y + 1, "real") == {"mae": 1.0, "mse": 1.0}


@pytest.mark.parametrize("call, message", [
    (lambda: compute(["acuracy"], Y3, P3, "class", 3),
     r"unknown metric 'acuracy' \(did you mean 'accuracy'\?\); metrics: accuracy, precision"),
    (lambda: compute(["r2"], Y3, onehot_proba(P3, 3), "class", 3), "for real-valued targets"),
    (lambda: compute(["f1"], np.zeros((3, 2)), np.zeros((3, 2)), "real"), "single 0/1 column"),
    (lambda: compute(["accuracy"], Y3, P3, "ordinal"), "target kind must be one of"),
    (lambda: compute(["f1"], Y3, np.zeros((6, 1)), "class", 3), "needs 2 classes, not 3"),
    (lambda: confusion_matrix(Y3, P3, 2), r"target class ids must be in 0..1, got 0..2"),
    (lambda: accuracy(Y3, P3[:4]), "6 targets but 4 predictions"),
    (lambda: accuracy(Y3, np.full(6, 0.3)), "must be class ids"),
    (lambda: accuracy([], []), "no samples"),
    (lambda: mse(np.zeros(3), np.zeros(4)), r"shape \(3,\) but predictions of shape \(4,\)"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_true_labels_from_one_hot():
    assert true_labels(np.eye(3)[[2, 0, 1]]).tolist() == [2, 0, 1]
