"""The data-parallel acceptance cases, shared by the single-process reference (in pytest) and
the MPI runs (dp_cases.py): small variants of the examples, a few epochs each."""
import pathlib
import re

import netc
from netc.runtime import loop, session

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def variant(file, optimizer=None, epochs=None, stop=None, drop=()):
    src = (EXAMPLES / file).read_text()
    if optimizer:
        src = re.sub(r"(?m)^optimizer .*$", f"optimizer {optimizer}", src)
    if epochs:
        src = re.sub(r"(?m)^(\s*epochs\s*=\s*)\d+", rf"\g<1>{epochs}", src)
    if stop:
        src = re.sub(r"(?m)^(\s*stop\s*=\s*).*$", rf"\g<1>{stop}", src)
    for a, b in drop:
        assert a in src, a
        src = src.replace(a, b)
    return src


# name -> (source, dtype)
CASES = {
    # SGD with momentum (and dampening); early stopping that fires
    "moons-sgd-f64": (variant("moons.net", epochs=40, stop="early(val.loss, patience=1, min_delta=0.002)"), "float64"),
    "moons-sgd-f32": (variant("moons.net", epochs=6), "float32"),
    "moons-adam-f64": (variant("moons.net", optimizer="adam(lr=0.01)", epochs=5), "float64"),
    # two losses + l2, Nesterov, a step schedule, early stopping on val.accuracy
    "digits-f32": (variant("digits.net", epochs=3), "float32"),
    # the CNN in float64: with Adam, a float32 CNN's gradients that cancel to near zero make
    # the step's sign depend on the order of the sums (a share per rank), beyond 1e-5 after
    # one epoch; float64 keeps that order's effect below 1e-10. The CNN without dropout (masks keyed by the index in the rank's batch) and without
    # batchnorm (statistics per rank, like DDP): see docs/distributed.md
    "digits_cnn-adam-f64": (variant("digits_cnn.net", epochs=1, drop=[
        ("dropout(flatten(b), 0.3)", "flatten(b)"), ("relu(batchnorm(conv2d(a, 32, 3, pad=1)))", "relu(conv2d(a, 32, 3, pad=1))")]),
        "float64"),
    # batchnorm: per-rank batch statistics (not the single-process run's), running statistics
    # broadcast from rank 0: dp_cases.py checks that every rank ends with the same params
    "moons-bn": (variant("moons.net", epochs=3, drop=[("tanh(dense(x, 16))", "tanh(batchnorm(dense(x, 16)))")]),
                 "float32"),
}


def fit_case(name):
    """(model, history) of one case, trained on its train block's data and split."""
    src, dtype = CASES[name]
    model = netc.compile(src, dtype=dtype)
    train, val, _ = session.prepare_splits(model, session.split(model, session.load_dataset(model)))
    history = loop.fit(model, train, val)
    return model, history
